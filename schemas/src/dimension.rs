//! Dimensions: attributes of a key field (a campaign and region per `ad_id`), joined to a view's
//! merged rows when they are read. Views store raw keys in both layers, so batch ⊕ speed stays
//! exact by construction. A dimension's change applies to all history at once ("current
//! attributes"), unless it is `versioned`: then each row is a version valid from its
//! `valid_from` until the next version of its key, and each bucket joins the version valid at
//! its start ("attributes as of the bucket").

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::event_schema::{EventSchema, FieldType, is_identifier};

/// The column of a versioned dimension's rows that says from when each version holds.
pub const VALID_FROM: &str = "valid_from";

/// The PostgreSQL schema of the dimension tables Braid keeps (loaded from files, followed from
/// Kafka). A user's own table is read where it is.
pub const BRAID_DIMENSION_SCHEMA: &str = "braid_dimensions";

/// A dimension as written in `[[dimensions]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DimensionConfig {
    /// The dimension's name: `[a-z_][a-z0-9_]*`.
    pub name: String,
    /// The event field whose values the dimension describes (string, i64 or bool).
    pub key: String,
    /// The attributes, each a name and a type (`string`, `i64`, `f64`, `bool`).
    pub attributes: Vec<AttributeConfig>,
    /// Where its rows come from: exactly one of `postgres_table`, `file`, `csv`, `kafka_topic`.
    pub source: SourceConfig,
    /// Whether its rows are versions: each has a `valid_from` (an RFC 3339 time or epoch
    /// milliseconds) and holds until the next version of its key; a bucket joins the version
    /// valid at its start. Default: false (the current row applies to all history).
    #[serde(default)]
    pub versioned: bool,
}

/// An attribute as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributeConfig {
    /// Its name, also its column: `[a-z_][a-z0-9_]*`, unlike any event field.
    pub name: String,
    /// Its type.
    #[serde(rename = "type")]
    pub attribute_type: FieldType,
}

/// `source = { ... }` as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// A table the user owns, `schema.table`, read in place: a column named like the key and one
    /// per attribute.
    #[serde(default)]
    pub postgres_table: Option<String>,
    /// A Parquet file, loaded by `braid dimensions load NAME`.
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// A CSV file with a header row, loaded by `braid dimensions load NAME`.
    #[serde(default)]
    pub csv: Option<PathBuf>,
    /// A compacted Kafka topic of JSON objects (key and attributes), followed by
    /// `braid dimensions follow`.
    #[serde(default)]
    pub kafka_topic: Option<String>,
    /// The topic's format: `json`.
    #[serde(default)]
    pub format: Option<String>,
}

/// Where a dimension's rows come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DimensionSource {
    /// The user's table, read in place.
    PostgresTable {
        /// Its schema.
        schema: String,
        /// Its name.
        table: String,
    },
    /// A Parquet file.
    Parquet(PathBuf),
    /// A CSV file with a header row.
    Csv(PathBuf),
    /// A compacted Kafka topic of JSON objects.
    KafkaTopic(String),
}

/// A validated dimension.
#[derive(Debug, Clone, PartialEq)]
pub struct Dimension {
    /// The name.
    pub name: String,
    /// The key field.
    pub key: String,
    /// The key field's type.
    pub key_type: FieldType,
    /// The attributes, in declaration order.
    pub attributes: Vec<Attribute>,
    /// The source.
    pub source: DimensionSource,
    /// The longest string key kept, in bytes (`schema.max_group_value_bytes`): an event whose
    /// key is longer is refused by both layers, so no row could join it, and the key must fit
    /// in the table's primary-key index.
    pub max_key_bytes: usize,
    /// Whether its rows are versions ([`VALID_FROM`]).
    pub versioned: bool,
}

/// An attribute of a dimension, as a view serves it.
#[derive(Debug, Clone, PartialEq)]
pub struct Attribute {
    /// Its name (its column in the dimension's table and in answers).
    pub name: String,
    /// Its type.
    pub attribute_type: FieldType,
    /// The dimension's name.
    pub dimension: String,
    /// The dimension's table, `schema.table` (identifiers from validated config).
    pub table: String,
    /// The key field it is joined on.
    pub key: String,
    /// Whether its dimension keeps versions: a row joins the version valid at its bucket's
    /// start.
    pub versioned: bool,
}

/// Why a dimension was refused: the key inside `dimensions[i]` and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct DimensionError {
    /// The key, e.g. `key` or `source.postgres_table`.
    pub key: &'static str,
    /// Why.
    pub reason: String,
}

fn refuse(key: &'static str, reason: impl Into<String>) -> DimensionError {
    DimensionError {
        key,
        reason: reason.into(),
    }
}

impl Dimension {
    /// The table its rows are read from, `schema.table`.
    pub fn table(&self) -> String {
        match &self.source {
            DimensionSource::PostgresTable { schema, table } => format!("{schema}.{table}"),
            _ => format!("{BRAID_DIMENSION_SCHEMA}.{}", self.name),
        }
    }
}

impl DimensionConfig {
    /// Checks the dimension against the schema.
    pub fn validate(&self, schema: &EventSchema) -> Result<Dimension, DimensionError> {
        if !is_identifier(&self.name, 63) {
            return Err(refuse(
                "name",
                "must be lowercase letters, digits and `_`, starting with a letter or `_`",
            ));
        }
        let key_type = schema
            .field(&self.key)
            .map(|f| f.field_type)
            .ok_or_else(|| {
                refuse(
                    "key",
                    format!("`{}` is not a field of the event schema", self.key),
                )
            })?;
        if !matches!(
            key_type,
            FieldType::String | FieldType::I64 | FieldType::Bool
        ) {
            return Err(refuse(
                "key",
                format!(
                    "`{}` is {}; a key is a string, i64 or bool field",
                    self.key,
                    key_type.name()
                ),
            ));
        }
        if self.attributes.is_empty() {
            return Err(refuse("attributes", "declare at least one attribute"));
        }
        if self.versioned && self.key == VALID_FROM {
            return Err(refuse(
                "key",
                "a versioned dimension's key cannot be named valid_from, the column of its versions' starts",
            ));
        }
        let mut attributes: Vec<Attribute> = Vec::new();
        for a in &self.attributes {
            if !is_identifier(&a.name, 63)
                || a.name == "bucket_start"
                || (self.versioned && a.name == VALID_FROM)
            {
                return Err(refuse(
                    "attributes",
                    format!(
                        "`{}` is not a column name (lowercase letters, digits and `_`; not bucket_start, nor valid_from in a versioned dimension)",
                        a.name
                    ),
                ));
            }
            if schema.field(&a.name).is_some() {
                return Err(refuse(
                    "attributes",
                    format!(
                        "`{}` is also a field of the event schema; name the attribute differently",
                        a.name
                    ),
                ));
            }
            if a.attribute_type == FieldType::Timestamp {
                return Err(refuse(
                    "attributes",
                    format!("`{}`: an attribute is a string, i64, f64 or bool", a.name),
                ));
            }
            if attributes.iter().any(|b| b.name == a.name) {
                return Err(refuse(
                    "attributes",
                    format!("`{}` is declared twice", a.name),
                ));
            }
            attributes.push(Attribute {
                name: a.name.clone(),
                attribute_type: a.attribute_type,
                dimension: self.name.clone(),
                table: String::new(),
                key: self.key.clone(),
                versioned: self.versioned,
            });
        }
        let s = &self.source;
        let given = [
            s.postgres_table.is_some(),
            s.file.is_some(),
            s.csv.is_some(),
            s.kafka_topic.is_some(),
        ]
        .iter()
        .filter(|g| **g)
        .count();
        if given != 1 {
            return Err(refuse(
                "source",
                "give exactly one of postgres_table, file, csv or kafka_topic",
            ));
        }
        if s.format.is_some() && s.kafka_topic.is_none() {
            return Err(refuse(
                "source.format",
                "only a kafka_topic source has a format",
            ));
        }
        let source = if let Some(qualified) = &s.postgres_table {
            let (schema_name, table) = qualified.split_once('.').unwrap_or(("public", qualified));
            if !is_identifier(schema_name, 63) || !is_identifier(table, 63) {
                return Err(refuse(
                    "source.postgres_table",
                    format!("`{qualified}` is not schema.table of lowercase identifiers"),
                ));
            }
            DimensionSource::PostgresTable {
                schema: schema_name.to_string(),
                table: table.to_string(),
            }
        } else if let Some(path) = &s.file {
            DimensionSource::Parquet(path.clone())
        } else if let Some(path) = &s.csv {
            DimensionSource::Csv(path.clone())
        } else {
            let topic = s.kafka_topic.clone().unwrap_or_default();
            if !crate::event_schema::is_topic_name(&topic) {
                return Err(refuse(
                    "source.kafka_topic",
                    format!("`{topic}` is not a Kafka topic name"),
                ));
            }
            match s.format.as_deref() {
                None | Some("json") => {}
                Some(other) => {
                    return Err(refuse(
                        "source.format",
                        format!("`{other}` is not a format Braid reads; use json"),
                    ));
                }
            }
            DimensionSource::KafkaTopic(topic)
        };
        let mut dimension = Dimension {
            name: self.name.clone(),
            key: self.key.clone(),
            key_type,
            attributes,
            source,
            max_key_bytes: schema.max_string_bytes,
            versioned: self.versioned,
        };
        let table = dimension.table();
        for a in &mut dimension.attributes {
            a.table.clone_from(&table);
        }
        Ok(dimension)
    }
}

/// How rows aliased `rows` get `attributes`: the select-list entries (`alias.attr AS attr`, each
/// attribute once) and the joins, one per dimension table, aliased `{prefix}0`, `{prefix}1`,
/// ... A key missing from a dimension joins to nulls, so no row is dropped. A versioned
/// dimension joins, for each row, the version of its key valid at the row's `bucket_start`:
/// the latest with `valid_from` at or before it (none before the first version: nulls).
pub fn attribute_joins<'a>(
    attributes: impl IntoIterator<Item = &'a Attribute>,
    rows: &str,
    prefix: &str,
) -> (Vec<String>, String) {
    let mut tables: Vec<&Attribute> = Vec::new();
    let mut columns = Vec::new();
    for attribute in attributes {
        let n = match tables
            .iter()
            .position(|t| t.table == attribute.table && t.key == attribute.key)
        {
            Some(n) => n,
            None => {
                tables.push(attribute);
                tables.len() - 1
            }
        };
        let column = format!("{prefix}{n}.{name} AS {name}", name = attribute.name);
        if !columns.contains(&column) {
            columns.push(column);
        }
    }
    let joins = tables
        .iter()
        .enumerate()
        .map(|(n, t)| {
            let (table, key, alias) = (&t.table, &t.key, format!("{prefix}{n}"));
            if t.versioned {
                format!(
                    " LEFT JOIN LATERAL (SELECT * FROM {table} AS v$ WHERE v$.{key} = {rows}.{key} \
                     AND v$.{VALID_FROM} <= {rows}.bucket_start ORDER BY v$.{VALID_FROM} DESC LIMIT 1) \
                     AS {alias} ON true"
                )
            } else {
                format!(" LEFT JOIN {table} AS {alias} ON {alias}.{key} = {rows}.{key}")
            }
        })
        .collect();
    (columns, joins)
}

#[cfg(test)]
mod tests;
