//! Compaction joins a partition's small files into files of at most about
//! [`SMALL_FILE_BYTES`], never into one file of the whole partition: it reads each file whole
//! and holds the file it writes, so its memory stays bounded while a day's data grows. (The
//! soak's scheduler peaked during compactions that joined the day's data into one file.)

use deltalake::DeltaTable;

use super::test_lake::{append, config, first_i64};
use crate::lake::Lake;
use crate::lake::maintenance::{MIN_SMALL_FILES, SMALL_FILE_BYTES};
use crate::sink::writer_properties;

/// A record with a tag of hex digits drawn from `state`, which compress poorly.
fn record(n: i64, state: &mut u64) -> Vec<u8> {
    let tag: String = (0..25)
        .map(|_| {
            *state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            format!("{:08x}", *state >> 32)
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({ "ts": "2026-03-01T10:00:00Z", "n": n, "tag": tag }))
        .unwrap()
}

/// The sizes in bytes of the table's files.
fn sizes(table: &DeltaTable) -> Vec<i64> {
    let mut sizes: Vec<i64> = table
        .snapshot()
        .unwrap()
        .log_data()
        .iter()
        .map(|file| file.size())
        .collect();
    sizes.sort();
    sizes
}

#[tokio::test]
async fn compaction_joins_small_files_into_bounded_files() {
    let config = config("compaction-bins", true);
    let dir = std::env::temp_dir().join(format!("braid-compaction-bins-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // The rows that make a file of about 3/8 of the bound, from a first file elsewhere.
    let mut state = 7u64;
    let probe_dir = dir.with_extension("probe");
    let _ = std::fs::remove_dir_all(&probe_dir);
    let probe = Lake::in_folder(&probe_dir, &config);
    let mut probe_table = probe.open().await.unwrap();
    let records: Vec<(i64, Vec<u8>)> = (0..10_000).map(|o| (o, record(o, &mut state))).collect();
    append(&mut probe_table, &config, "compaction-bins", &records).await;
    let per_file = 10_000 * (SMALL_FILE_BYTES * 3 / 8) / sizes(&probe_table)[0];
    std::fs::remove_dir_all(&probe_dir).unwrap();

    // Small files of about 3/8 of the bound each: two fit a bin together, three do not.
    let lake = Lake::in_folder(&dir, &config);
    let mut table = lake.open().await.unwrap();
    let mut offset = 0i64;
    for _ in 0..MIN_SMALL_FILES + 1 {
        let records: Vec<(i64, Vec<u8>)> = (offset..offset + per_file)
            .map(|o| (o, record(o, &mut state)))
            .collect();
        append(&mut table, &config, "compaction-bins", &records).await;
        offset += per_file;
    }
    table.update_state().await.unwrap();
    let before = sizes(&table);
    assert!(
        before
            .iter()
            .all(|&size| size > SMALL_FILE_BYTES / 3 && size < SMALL_FILE_BYTES / 2),
        "each file between a third and half of the bound: {before:?}"
    );

    let compacted = lake
        .compact(writer_properties(schemas::config::Compression::Zstd))
        .await
        .unwrap();
    table.update_state().await.unwrap();
    let after = sizes(&table);
    // Five files: two bins of two, and one file alone, which is left as it was.
    assert_eq!(compacted.files_removed, 4, "{before:?} → {after:?}");
    assert_eq!(compacted.files_added, 2, "{before:?} → {after:?}");
    assert_eq!(after.len(), 3, "{before:?} → {after:?}");
    assert!(
        after.iter().all(|&size| size <= SMALL_FILE_BYTES),
        "no file above the bound: {before:?} → {after:?}"
    );
    let rows = lake.pinned(&table).unwrap().scan().unwrap();
    let counted = tokio::task::spawn_blocking(move || {
        use polars::prelude::*;
        super::compute::collect_streaming(rows.select([
            len(),
            col(schemas::arrow::OFFSET).n_unique().alias("offsets"),
        ]))
    })
    .await
    .unwrap()
    .unwrap();
    let read = first_i64(&counted, "len");
    let offsets = first_i64(&counted, "offsets");
    assert_eq!(
        (read, offsets),
        (offset, offset),
        "every record is still there, once"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
