//! Test helpers: records appended to a real Delta table the way the sink writes them.

use deltalake::DeltaTable;
use deltalake::kernel::Transaction;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use schemas::BraidConfig;

use crate::lake::app_id;
use crate::sink::columns::BatchBuilder;
use crate::sink::writer_properties;

/// The test schema on `topic`: `ts` (the event time) and `n`, and with `tag` the optional
/// string field `tag`.
pub fn config(topic: &str, tag: bool) -> BraidConfig {
    let tag = if tag {
        r#", { name = "tag", type = "string", required = false }"#
    } else {
        ""
    };
    let text = format!(
        r#"
[kafka]
topic = "{topic}"
[schema]
event_time = "ts"
fields = [{{ name = "ts", type = "timestamp" }}, {{ name = "n", type = "i64" }}{tag}]
"#
    );
    BraidConfig::load_from(Some(("lake.toml", text.as_str())), [])
        .expect("the test config is valid")
}

/// A record of the test schemas (`ts`, `n`, optional `tag`) at one instant.
pub fn payload(n: i64, tag: Option<&str>) -> Vec<u8> {
    let mut record = serde_json::json!({ "ts": "2026-03-01T10:00:00Z", "n": n });
    if let Some(tag) = tag {
        record["tag"] = tag.into();
    }
    serde_json::to_vec(&record).unwrap()
}

/// Appends one file of records (`offset`, payload) of `topic`, partition 0, recording the
/// sink's position after the last one; returns the new file's URI.
pub async fn append(
    table: &mut DeltaTable,
    config: &BraidConfig,
    topic: &str,
    records: &[(i64, Vec<u8>)],
) -> String {
    let before: Vec<String> = table.get_file_uris().unwrap().collect();
    let mut builder = BatchBuilder::new(&config.schema);
    for (offset, payload) in records {
        let record = config.schema.validate(payload).expect("a valid record");
        builder.append(&record, topic, 0, *offset, 0, None);
    }
    let next = records.last().map_or(0, |(offset, _)| offset + 1);
    let mut writer = RecordBatchWriter::for_table(table)
        .unwrap()
        .with_writer_properties(writer_properties(schemas::config::Compression::Zstd))
        .with_commit_properties(
            CommitProperties::default()
                .with_application_transactions(vec![Transaction::new(app_id(topic, 0), next)]),
        );
    writer.write(builder.finish().unwrap()).await.unwrap();
    writer.flush_and_commit(table).await.unwrap();
    table
        .get_file_uris()
        .unwrap()
        .find(|f| !before.contains(f))
        .expect("the append added a file")
}

/// The integer in the first row of `column` (a count a test collected).
pub fn first_i64(frame: &polars::prelude::DataFrame, column: &str) -> i64 {
    frame
        .column(column)
        .unwrap()
        .get(0)
        .unwrap()
        .extract::<i64>()
        .unwrap()
}
