//! Opening, creating and evolving the Delta table, and reading positions from its log.

use std::collections::BTreeMap;

use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake::kernel::{StructField, StructType};
use deltalake::logstore::LogStore as _;
use deltalake::protocol::SaveMode;
use deltalake::{DeltaTable, DeltaTableBuilder};

use super::{Lake, LakeError};
use schemas::position::{Partition, Positions};

/// The application-transaction id of one partition of `topic`.
pub fn app_id(topic: &str, partition: Partition) -> String {
    format!("braid-sink:{topic}:{partition}")
}

impl Lake {
    /// Opens the table at its latest version, creating it on first start (partitioned by
    /// `event_date`) and adding columns for new optional fields. An S3 table's store is
    /// checked first ([`super::store::check_store`]).
    pub async fn open(&self) -> Result<DeltaTable, LakeError> {
        let uri = self.uri();
        let url = deltalake::table::builder::ensure_table_uri(uri)?;
        let mut table = DeltaTableBuilder::from_url(url)?
            .with_storage_options(self.storage_options().clone())
            .build()?;
        super::store::check_store(uri, &table, self.storage_options()).await?;
        // Load only a table that exists: loading an empty location makes the Delta kernel log
        // an ERROR ("No files in log segment") although nothing is wrong on a first start.
        if table.log_store().is_delta_table_location().await? {
            table.load().await?;
        }
        let wanted: StructType = self
            .schema()
            .delta_arrow_schema()
            .as_ref()
            .try_into_kernel()?;
        if table.version().is_none() {
            tracing::info!(uri, "creating the Delta table");
            let created = table
                .create()
                .with_columns(wanted.fields().cloned())
                .with_partition_columns([schemas::arrow::EVENT_DATE])
                .with_table_name("braid_events")
                .with_save_mode(SaveMode::Ignore)
                .await?;
            // Another sink may have created it first; load whatever is there now.
            let mut table = created;
            table.update_state().await?;
            return evolve(table, &wanted, uri).await;
        }
        evolve(table, &wanted, uri).await
    }

    /// The next offset the log of `table` records for each of `partitions` of the lake's
    /// topic (absent if never committed).
    pub async fn positions_in_log(
        &self,
        table: &DeltaTable,
        partitions: &[Partition],
    ) -> Result<Positions, LakeError> {
        positions_in_log(table, self.topic(), partitions).await
    }
}

/// Adds nullable columns for configured fields the table lacks; refuses any other change.
async fn evolve(
    table: DeltaTable,
    wanted: &StructType,
    uri: &str,
) -> Result<DeltaTable, LakeError> {
    let current = table.snapshot()?.schema();
    let mut missing: Vec<StructField> = Vec::new();
    for field in wanted.fields() {
        match current.field(field.name()) {
            Some(existing) if existing.data_type() == field.data_type() => {}
            Some(existing) => {
                return Err(LakeError::SchemaMismatch {
                    uri: uri.to_string(),
                    reason: format!(
                        "column `{}` is {:?} in the table but {:?} in the config",
                        field.name(),
                        existing.data_type(),
                        field.data_type()
                    ),
                });
            }
            None if field.is_nullable() => missing.push(field.clone()),
            None => {
                return Err(LakeError::SchemaMismatch {
                    uri: uri.to_string(),
                    reason: format!(
                        "new field `{}` must be optional (required = false): old files have no value for it",
                        field.name()
                    ),
                });
            }
        }
    }
    if missing.is_empty() {
        return Ok(table);
    }
    let names: Vec<&str> = missing.iter().map(|f| f.name().as_str()).collect();
    tracing::info!(uri, columns = ?names, "adding nullable columns for new optional fields");
    Ok(table.add_columns().with_fields(missing).await?)
}

/// The next offset recorded in the Delta log for each of `partitions` (absent if never committed).
pub async fn positions_in_log(
    table: &DeltaTable,
    topic: &str,
    partitions: &[Partition],
) -> Result<Positions, LakeError> {
    let snapshot = table.snapshot()?;
    let log_store = table.log_store();
    let mut positions = BTreeMap::new();
    for &partition in partitions {
        if let Some(version) = snapshot
            .transaction_version(log_store.as_ref(), app_id(topic, partition))
            .await?
        {
            positions.insert(partition, version);
        }
    }
    Ok(positions)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use schemas::{EventSchema, FieldDef, FieldType};

    use super::*;
    use crate::lake::LakeSettings;

    /// The handle of the local table in `dir` with `schema`.
    fn lake(dir: &std::path::Path, schema: EventSchema) -> Lake {
        Lake::new(LakeSettings {
            uri: dir.to_str().unwrap().to_string(),
            storage_options: HashMap::new(),
            schema,
            topic: "t".into(),
        })
    }

    fn schema(extra: Option<FieldDef>) -> EventSchema {
        let mut fields = vec![
            FieldDef {
                name: "ts".into(),
                field_type: FieldType::Timestamp,
                required: true,
                path: None,
            },
            FieldDef {
                name: "n".into(),
                field_type: FieldType::I64,
                required: false,
                path: None,
            },
        ];
        fields.extend(extra);
        EventSchema {
            fields,
            event_time_index: 0,
            max_record_bytes: 100,
            max_string_bytes: 100,
            event_time_min_micros: 0,
            event_time_max_micros: i64::MAX,
            wire: Default::default(),
        }
    }

    /// Counts ERROR events of the Delta libraries, from any thread.
    struct DeltaErrors;

    static DELTA_ERRORS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for DeltaErrors {
        fn on_event(
            &self,
            event: &tracing::Event<'_>,
            _: tracing_subscriber::layer::Context<'_, S>,
        ) {
            let target = event.metadata().target();
            if *event.metadata().level() == tracing::Level::ERROR
                && (target.starts_with("buoyant_kernel") || target.starts_with("deltalake"))
            {
                DELTA_ERRORS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
    }

    /// A first start finds no table and creates one: an expected state, logged at INFO, not
    /// the Delta kernel's ERROR about an empty log.
    #[tokio::test]
    async fn creating_the_table_on_a_first_start_logs_no_error() {
        use tracing_subscriber::layer::SubscriberExt as _;
        use tracing_subscriber::util::SubscriberInitExt as _;
        let _ = tracing_subscriber::registry().with(DeltaErrors).try_init();
        let dir = std::env::temp_dir().join(format!("braid-first-start-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let before = DELTA_ERRORS.load(std::sync::atomic::Ordering::SeqCst);
        let table = lake(&dir, schema(None)).open().await.unwrap();
        assert_eq!(table.version(), Some(0));
        assert_eq!(
            DELTA_ERRORS.load(std::sync::atomic::Ordering::SeqCst),
            before,
            "the Delta libraries logged an ERROR on a first start"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn creates_once_adds_optional_fields_and_refuses_required_ones() {
        let dir = std::env::temp_dir().join(format!("braid-table-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let table = lake(&dir, schema(None)).open().await.unwrap();
        assert_eq!(table.version(), Some(0));
        let again = lake(&dir, schema(None)).open().await.unwrap();
        assert_eq!(
            again.version(),
            Some(0),
            "opening an existing table changes nothing"
        );

        let optional = FieldDef {
            name: "tag".into(),
            field_type: FieldType::String,
            required: false,
            path: None,
        };
        let evolved = lake(&dir, schema(Some(optional))).open().await.unwrap();
        assert_eq!(evolved.version(), Some(1));
        assert!(
            evolved
                .snapshot()
                .unwrap()
                .schema()
                .field("tag")
                .is_some_and(|f| f.is_nullable())
        );

        let required = FieldDef {
            name: "must".into(),
            field_type: FieldType::String,
            required: true,
            path: None,
        };
        let err = lake(&dir, schema(Some(required))).open().await.unwrap_err();
        assert!(
            err.to_string()
                .contains("new field `must` must be optional"),
            "{err}"
        );

        let retyped = FieldDef {
            name: "n".into(),
            field_type: FieldType::String,
            required: false,
            path: None,
        };
        let mut fields = schema(None);
        fields.fields[1] = retyped;
        let err = lake(&dir, fields).open().await.unwrap_err();
        assert!(err.to_string().contains("column `n`"), "{err}");
        assert!(
            lake(&dir, schema(None))
                .positions_in_log(&evolved, &[0])
                .await
                .unwrap()
                .is_empty()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
