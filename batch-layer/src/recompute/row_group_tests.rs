//! The files the sink and compaction write keep their row groups to
//! [`crate::sink::ROW_GROUP_ROWS`] rows, however large the file: a batch decodes a row group's
//! columns whole, so its memory follows the row group, not the table. (The soak found the
//! scheduler's memory growing with the table: compacted files were one row group each.)

use deltalake::parquet::file::reader::{FileReader, SerializedFileReader};

use super::test_lake::{append, config, payload};
use crate::lake::Lake;
use crate::lake::maintenance::MIN_SMALL_FILES;
use crate::sink::{ROW_GROUP_ROWS, writer_properties};

/// The rows of each row group of a local Parquet file.
fn row_groups(uri: &str) -> Vec<i64> {
    let path = uri.strip_prefix("file://").unwrap_or(uri);
    let reader = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
    reader
        .metadata()
        .row_groups()
        .iter()
        .map(|group| group.num_rows())
        .collect()
}

#[tokio::test]
async fn compacted_files_keep_row_groups_bounded() {
    let config = config("row-groups", false);
    let dir = std::env::temp_dir().join(format!("braid-row-groups-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let lake = Lake::in_folder(&dir, &config);
    let mut table = lake.open().await.unwrap();
    // Small files that compaction joins into one of more than two row groups' rows.
    let per_file = ROW_GROUP_ROWS as i64 * 5 / 8;
    let mut offset = 0;
    for _ in 0..MIN_SMALL_FILES {
        let records: Vec<(i64, Vec<u8>)> = (offset..offset + per_file)
            .map(|o| (o, payload(o, None)))
            .collect();
        let file = append(&mut table, &config, "row-groups", &records).await;
        assert_eq!(
            row_groups(&file),
            vec![per_file],
            "a small file is one row group"
        );
        offset += per_file;
    }

    let compacted = lake
        .compact(writer_properties(schemas::config::Compression::Zstd))
        .await
        .unwrap();
    assert_eq!(compacted.files_removed, MIN_SMALL_FILES);
    table.update_state().await.unwrap();
    let files: Vec<String> = table.get_file_uris().unwrap().collect();
    let groups: Vec<i64> = files.iter().flat_map(|file| row_groups(file)).collect();
    assert_eq!(
        groups.iter().sum::<i64>(),
        offset,
        "the compacted files hold every record"
    );
    // Full row groups, then the rest: 4 × 5/8 of a row group is 2 1/2 of them.
    let full = ROW_GROUP_ROWS as i64;
    assert_eq!(
        groups,
        vec![full, full, full / 2],
        "row groups of at most {ROW_GROUP_ROWS} rows"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
