//! A vacuum that runs while a batch computes keeps the files of the version the batch pinned,
//! even when compaction has just replaced them and the retention is short enough to delete them.

use std::collections::BTreeMap;
use std::time::Duration;

use polars::prelude::*;
use schemas::BraidConfig;
use sqlx::PgPool;

use super::compute::{collect_streaming, records_below_cut};
use super::test_lake::{self, append, first_i64, payload};
use schemas::pg::batch_runs::pinned_versions;

use super::{BatchSettings, pin, publish};
use crate::lake::Lake;
use crate::lake::maintenance::MIN_SMALL_FILES;
use crate::sink::writer_properties;

#[sqlx::test(migrator = "schemas::pg::MIGRATOR")]
async fn vacuum_keeps_the_files_a_running_batch_pinned(pool: PgPool) {
    let config = BraidConfig::load_from(
        Some(("braid.toml", include_str!("../../../braid.toml"))),
        [],
    )
    .unwrap();
    let lake_config = test_lake::config("vacuum-race", false);
    let dir = std::env::temp_dir().join(format!("braid-vacuum-race-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let lake = Lake::in_folder(&dir, &lake_config);
    let mut table = lake.open().await.unwrap();
    // Enough small files in one date for compaction to replace them.
    let mut offset = 0;
    for _ in 0..MIN_SMALL_FILES {
        let records: Vec<(i64, Vec<u8>)> = (offset..offset + 25)
            .map(|o| (o, payload(o, None)))
            .collect();
        append(&mut table, &lake_config, "vacuum-race", &records).await;
        offset += 25;
    }

    let view = &config.views[0];
    schemas::pg::ensure_view_tables(&pool, std::slice::from_ref(view))
        .await
        .unwrap();
    let run_id = publish::begin_run(&pool, view, 1).await.unwrap();
    let settings = BatchSettings {
        lake: lake.clone(),
        views: vec![view.clone()],
        wait_timeout: Duration::from_secs(5),
        engine: Default::default(),
        slice_records: std::num::NonZeroU64::MIN,
    };
    let cut: BTreeMap<i32, i64> = [(0, offset)].into();
    let pinned = pin(&settings, &pool, &[run_id], &cut).await.unwrap();

    // While the run computes: compaction replaces every file it pinned, and a vacuum with no
    // retention deletes whatever no kept version needs.
    let compacted = lake
        .compact(writer_properties(schemas::config::Compression::Zstd))
        .await
        .unwrap();
    assert_eq!(
        compacted.files_removed, MIN_SMALL_FILES,
        "compaction replaced the pinned files"
    );
    let keep = pinned_versions(&pool).await.unwrap();
    lake.vacuum(Duration::ZERO, &keep).await.unwrap();

    let records = records_below_cut(&pinned, &cut, &BTreeMap::new())
        .unwrap()
        .expect("records below the cut");
    let counted = tokio::task::spawn_blocking(move || collect_streaming(records.select([len()])))
        .await
        .unwrap()
        .expect("the pinned files are still there");
    let read = first_i64(&counted, "len");
    assert_eq!(read, offset, "every record below the cut is read");
    std::fs::remove_dir_all(&dir).unwrap();
}
