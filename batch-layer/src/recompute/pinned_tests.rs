//! A batch reads the pinned version with the snapshot's schema and only the configured topic's
//! records, whatever order the files are listed in.

use std::collections::BTreeMap;

use polars::prelude::*;
use schemas::BraidConfig;

use super::compute::{compute_view, records_below_cut};
use super::test_lake::append;
use crate::lake::Lake;

const BEFORE: &str = r#"
[kafka]
topic = "events"
[schema]
event_time = "ts"
fields = [{ name = "ts", type = "timestamp" }, { name = "n", type = "i64" }]
"#;

/// The same schema after an optional field was added, and a view grouped by it.
const AFTER: &str = r#"
[kafka]
topic = "events"
[schema]
event_time = "ts"
fields = [
  { name = "ts", type = "timestamp" },
  { name = "n", type = "i64" },
  { name = "tag", type = "string", required = false },
]
[[views]]
name = "by_tag"
group_by = ["tag"]
bucket = "1d"
metrics = ["count", "sum(n)"]
"#;

fn config(text: &str) -> BraidConfig {
    BraidConfig::load_from(Some(("pinned.toml", text)), []).expect("the test config is valid")
}

use super::test_lake::payload;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_reads_the_snapshot_schema_in_any_file_order_and_only_its_topic() {
    let dir = std::env::temp_dir().join(format!("braid-pinned-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (before, after) = (config(BEFORE), config(AFTER));

    let mut table = Lake::in_folder(&dir, &before).open().await.unwrap();
    let old: Vec<(i64, Vec<u8>)> = (0..40).map(|o| (o, payload(o, None))).collect();
    let old_file = append(&mut table, &before, "events", &old).await;
    // Another topic's records at the same partition and offsets (kafka.topic changed, lake.uri
    // did not).
    let foreign: Vec<(i64, Vec<u8>)> = (0..30).map(|o| (o, payload(o, Some("x")))).collect();
    let foreign_file = append(&mut table, &before, "old-topic", &foreign).await;

    let lake = Lake::in_folder(&dir, &after);
    let mut table = lake.open().await.unwrap();
    let tags = ["a", "b", "c"];
    let new: Vec<(i64, Vec<u8>)> = (40..100)
        .map(|o| (o, payload(o, Some(tags[o as usize % 3]))))
        .collect();
    let new_file = append(&mut table, &after, "events", &new).await;

    // The oracle: a fold over the configured topic's records.
    let mut expected: BTreeMap<Option<String>, (i64, i128)> = BTreeMap::new();
    for (offset, tag) in old.iter().map(|(o, _)| (*o, None)).chain(
        new.iter()
            .map(|(o, _)| (*o, Some(tags[*o as usize % 3].to_string()))),
    ) {
        let entry = expected.entry(tag).or_default();
        entry.0 += 1;
        entry.1 += i128::from(offset);
    }

    let view = &after.views[0];
    let orders = [
        [&old_file, &foreign_file, &new_file],
        [&new_file, &old_file, &foreign_file],
        [&foreign_file, &new_file, &old_file],
    ];
    for order in orders {
        let mut pinned = lake.pinned(&table).unwrap();
        pinned.reorder(|files| *files = order.iter().map(|f| (*f).clone()).collect());
        let records = records_below_cut(&pinned, &[(0, 100)].into(), &BTreeMap::new())
            .unwrap()
            .expect("records below the cut");
        let frame = compute_view(records, view, &after.schema)
            .unwrap_or_else(|e| panic!("files in order {order:?}: {e}"));
        let mut computed: BTreeMap<Option<String>, (i64, i128)> = BTreeMap::new();
        let counts = frame.column(&view.metrics[0].column).unwrap();
        let sums = frame.column(&view.metrics[1].column).unwrap();
        for row in 0..frame.height() {
            let tag = match frame.column("tag").unwrap().get(row).unwrap() {
                AnyValue::Null => None,
                value => Some(value.str_value().to_string()),
            };
            let count = counts.get(row).unwrap().extract::<i64>().unwrap();
            let sum = match sums.get(row).unwrap() {
                AnyValue::Int128(v) => v,
                other => panic!("sum(n) is {other:?}"),
            };
            computed.insert(tag, (count, sum));
        }
        assert_eq!(computed, expected, "files in order {order:?}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
