//! Cross-checks after the layers are merged: each failure names its key.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::str::FromStr;

use chrono::DateTime;

use super::{BraidConfig, ConfigError, RawConfig, SchemaConfig, SchemaFormat};
use crate::alert::AlertRule;
use crate::arrow::RESERVED_COLUMNS;
use crate::dimension::{Dimension, DimensionSource};
use crate::event_schema::{EventSchema, FieldType, is_identifier, is_topic_name};
use crate::pg_layout::{BTREE_ENTRY_LIMIT, MAX_INDEXABLE_STRING_BYTES, largest_key_entry_bytes};
use crate::record::{STORABLE_TIME_MAX_MICROS, STORABLE_TIME_MIN_MICROS};
use crate::view::View;
use crate::wire::WireFormat;

type Result<T> = std::result::Result<T, ConfigError>;

/// The most payload bytes a dead letter may keep: PostgreSQL stores at most 1 GB in one field.
const MAX_DEAD_LETTER_PAYLOAD_BYTES: usize = (1 << 30) - 1;

fn require(condition: bool, key: &str, reason: &str) -> Result<()> {
    if condition {
        Ok(())
    } else {
        Err(ConfigError::invalid(key, reason))
    }
}

fn parse_instant(key: &str, text: &str) -> Result<i64> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_micros())
        .map_err(|e| {
            ConfigError::invalid(key, format!("`{text}` is not an RFC 3339 instant ({e})"))
        })
}

fn check_cron(key: &str, expression: &str) -> Result<()> {
    cron::Schedule::from_str(expression)
        .map(|_| ())
        .map_err(|e| {
            ConfigError::invalid(
                key,
                format!(
                    "`{expression}` is not a cron expression with six fields, seconds first ({e})"
                ),
            )
        })
}

/// An Avro name: a letter or `_`, then letters, digits or `_`.
fn is_avro_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn event_schema(config: &SchemaConfig) -> Result<EventSchema> {
    require(
        !config.fields.is_empty(),
        "schema.fields",
        "declare at least one field with [[schema.fields]]",
    )?;
    let mut seen = HashSet::new();
    for (index, field) in config.fields.iter().enumerate() {
        let key = format!("schema.fields[{index}].name");
        require(
            is_identifier(&field.name, 63),
            &key,
            &format!(
                "`{}` must be lowercase letters, digits and `_`, starting with a letter or `_`",
                field.name
            ),
        )?;
        require(
            !RESERVED_COLUMNS.contains(&field.name.as_str()),
            &key,
            &format!("`{}` is reserved for a derived column", field.name),
        )?;
        require(
            seen.insert(field.name.as_str()),
            &key,
            &format!("`{}` is declared twice", field.name),
        )?;
        if let Some(path) = &field.path {
            let key = format!("schema.fields[{index}].path");
            require(
                config.format != SchemaFormat::Json,
                &key,
                "JSON is read by top-level key only: a path needs schema.format = \"avro\" or \"protobuf\"",
            )?;
            require(
                path.split('.').all(is_avro_name),
                &key,
                &format!(
                    "`{path}` must be field names joined by `.`, each a letter or `_` then letters, digits or `_`"
                ),
            )?;
        }
    }
    for (index, field) in config.fields.iter().enumerate() {
        for other in &config.fields[..index] {
            let (a, b) = (field.path(), other.path());
            require(
                a != b,
                &format!("schema.fields[{index}].path"),
                &format!("`{a}` is read by the field `{}` too", other.name),
            )?;
            let nested = |inner: &str, outer: &str| {
                inner
                    .strip_prefix(outer)
                    .is_some_and(|rest| rest.starts_with('.'))
            };
            require(
                !nested(a, b) && !nested(b, a),
                &format!("schema.fields[{index}].path"),
                &format!(
                    "`{a}` and the field `{}`'s `{b}` would make one writer field both a value and a record",
                    other.name
                ),
            )?;
        }
    }
    let event_time = config.event_time.as_deref().ok_or_else(|| {
        ConfigError::invalid(
            "schema.event_time",
            "name the event-time field (a required timestamp field)",
        )
    })?;
    let event_time_index = config
        .fields
        .iter()
        .position(|f| f.name == event_time)
        .ok_or_else(|| {
            ConfigError::invalid(
                "schema.event_time",
                format!("`{event_time}` is not a declared field"),
            )
        })?;
    let field = &config.fields[event_time_index];
    require(
        field.field_type == FieldType::Timestamp && field.required,
        "schema.event_time",
        &format!("`{event_time}` must be a required timestamp field"),
    )?;
    require(
        config.max_record_bytes > 0,
        "schema.max_record_bytes",
        "must be greater than zero",
    )?;
    require(
        (1..=MAX_INDEXABLE_STRING_BYTES).contains(&config.max_group_value_bytes),
        "schema.max_group_value_bytes",
        &format!(
            "must be 1 to {MAX_INDEXABLE_STRING_BYTES} bytes: a group key must fit in a PostgreSQL index entry"
        ),
    )?;
    let min = parse_instant("schema.event_time_min", &config.event_time_min)?;
    let max = parse_instant("schema.event_time_max", &config.event_time_max)?;
    require(
        min < max,
        "schema.event_time_max",
        "must be later than schema.event_time_min",
    )?;
    let storable = STORABLE_TIME_MIN_MICROS..=STORABLE_TIME_MAX_MICROS;
    require(
        storable.contains(&min),
        "schema.event_time_min",
        "must lie in the years 1 to 9999, the range every store holds",
    )?;
    require(
        storable.contains(&max),
        "schema.event_time_max",
        "must lie in the years 1 to 9999, the range every store holds",
    )?;
    Ok(EventSchema {
        fields: config.fields.clone(),
        event_time_index,
        max_record_bytes: config.max_record_bytes,
        max_string_bytes: config.max_group_value_bytes,
        event_time_min_micros: min,
        event_time_max_micros: max,
        wire: match config.format {
            SchemaFormat::Json => WireFormat::Json,
            SchemaFormat::Avro => WireFormat::avro(),
            SchemaFormat::Protobuf => WireFormat::protobuf(),
        },
    })
}

/// A view's group key at its largest (every string at `schema.max_group_value_bytes`) must fit in
/// a PostgreSQL index entry, or a valid record could be refused by the database.
fn check_key_fits_an_index(key: &str, view: &View, schema: &EventSchema) -> Result<()> {
    let entry = largest_key_entry_bytes(&view.group_by_types, schema.max_string_bytes);
    let strings = view
        .group_by_types
        .iter()
        .filter(|t| **t == FieldType::String)
        .count();
    require(
        entry <= BTREE_ENTRY_LIMIT,
        key,
        &format!(
            "view `{}`: its {strings} string group-by fields of up to schema.max_group_value_bytes = {} bytes each \
             make a key of up to {entry} bytes, over PostgreSQL's index entry limit of {BTREE_ENTRY_LIMIT}; \
             lower schema.max_group_value_bytes or group by fewer string fields",
            view.name, schema.max_string_bytes
        ),
    )
}

/// `[schema_registry]`: a URL wherever messages need one; the secrets' variables named, never
/// the secrets.
fn schema_registry(raw: &RawConfig) -> Result<()> {
    let registry = &raw.schema_registry;
    if raw.schema.format != SchemaFormat::Json {
        require(
            !registry.url.is_empty(),
            "schema_registry.url",
            "schema.format is not json, so the writer schemas come from a registry: set its URL (e.g. http://127.0.0.1:18081/apis/ccompat/v7)",
        )?;
    }
    if !registry.url.is_empty() {
        require(
            registry.url.starts_with("http://") || registry.url.starts_with("https://"),
            "schema_registry.url",
            "must be an http:// or https:// URL",
        )?;
    }
    let token = !registry.token_env.is_empty() || !registry.token_file.is_empty();
    require(
        !token || registry.username.is_empty(),
        if registry.token_env.is_empty() {
            "schema_registry.token_file"
        } else {
            "schema_registry.token_env"
        },
        "use either basic authentication (username) or a bearer token, not both",
    )?;
    require(
        registry.token_env.is_empty() || registry.token_file.is_empty(),
        "schema_registry.token_file",
        "give the token in token_env or in token_file, not both",
    )?;
    require(
        registry.password_env.is_empty() || registry.password_file.is_empty(),
        "schema_registry.password_file",
        "give the password in password_env or in password_file, not both",
    )?;
    for (key, set) in [
        (
            "schema_registry.password_env",
            !registry.password_env.is_empty(),
        ),
        (
            "schema_registry.password_file",
            !registry.password_file.is_empty(),
        ),
    ] {
        require(
            !set || !registry.username.is_empty(),
            key,
            "a password needs schema_registry.username",
        )?;
    }
    require(
        registry.cert_file.is_empty() == registry.key_file.is_empty(),
        if registry.cert_file.is_empty() {
            "schema_registry.cert_file"
        } else {
            "schema_registry.key_file"
        },
        "a client certificate needs both cert_file and key_file",
    )?;
    require(
        (1..=600_000).contains(&registry.timeout_ms.0),
        "schema_registry.timeout_ms",
        "must be between 1 and 600000 milliseconds",
    )?;
    require(
        (200..=3_600_000).contains(&registry.retry_max_ms.0),
        "schema_registry.retry_max_ms",
        "must be between 200 and 3600000 milliseconds",
    )?;
    Ok(())
}

pub(super) fn validate(raw: RawConfig) -> Result<BraidConfig> {
    let kafka = &raw.kafka;
    require(
        !kafka.brokers.trim().is_empty(),
        "kafka.brokers",
        "must name at least one broker, e.g. 127.0.0.1:9092",
    )?;
    require(
        is_topic_name(&kafka.topic),
        "kafka.topic",
        "must be 1 to 249 characters of letters, digits, `.`, `_` and `-`",
    )?;
    require(
        !kafka.speed_group.is_empty(),
        "kafka.speed_group",
        "must not be empty",
    )?;
    require(
        !kafka.sink_group.is_empty(),
        "kafka.sink_group",
        "must not be empty",
    )?;
    require(
        kafka.speed_group != kafka.sink_group,
        "kafka.sink_group",
        "must differ from kafka.speed_group",
    )?;
    for reserved in [
        "group.id",
        "bootstrap.servers",
        "enable.auto.commit",
        "auto.offset.reset",
    ] {
        require(
            !kafka.options.contains_key(reserved),
            &format!("kafka.options.{reserved}"),
            "is set by Braid itself (use kafka.brokers or the consumer groups instead)",
        )?;
    }

    require(
        !kafka.options.contains_key("isolation.level"),
        "kafka.options.isolation.level",
        "both layers read committed records only (read_committed), so that an offset means the same record to each; it cannot be changed",
    )?;

    // One parser for every scheme accepted here: what Braid later reads, writes and cleans
    // under these URIs is derived from the same parse.
    crate::lake_uri::LakeUri::parse(&raw.lake.uri).map_err(|e| match e {
        crate::lake_uri::LakeUriError::Empty => {
            ConfigError::invalid("lake.uri", "must be a local path or s3://bucket/prefix")
        }
        other => ConfigError::invalid("lake.uri", other.to_string()),
    })?;
    require(
        raw.batch.slice_records >= 1,
        "batch.slice_records",
        "must be at least 1 (records per time slice of a batch's view)",
    )?;
    if !raw.batch.spark.staging_uri.trim().is_empty() {
        crate::lake_uri::LakeUri::parse(&raw.batch.spark.staging_uri)
            .map_err(|e| ConfigError::invalid("batch.spark.staging_uri", e.to_string()))?;
    }

    let url = &raw.postgres.url;
    require(
        url.starts_with("postgres://") || url.starts_with("postgresql://"),
        "postgres.url",
        "must start with postgres:// or postgresql://",
    )?;
    require(
        raw.postgres.max_connections > 0,
        "postgres.max_connections",
        "must be at least 1",
    )?;
    require(
        raw.speed.flush_interval_ms.0 > 0,
        "speed.flush_interval_ms",
        "must be at least 1",
    )?;
    require(
        raw.speed.flush_max_records > 0,
        "speed.flush_max_records",
        "must be at least 1",
    )?;
    require(
        raw.sink.flush_interval_ms.0 > 0,
        "sink.flush_interval_ms",
        "must be at least 1",
    )?;
    require(
        raw.sink.flush_max_bytes > 0,
        "sink.flush_max_bytes",
        "must be at least 1",
    )?;
    for (key, bytes) in [
        (
            "speed.dead_letter_max_payload_bytes",
            raw.speed.dead_letter_max_payload_bytes,
        ),
        (
            "sink.dead_letter_max_payload_bytes",
            raw.sink.dead_letter_max_payload_bytes,
        ),
    ] {
        require(
            bytes <= MAX_DEAD_LETTER_PAYLOAD_BYTES,
            key,
            "must be at most 1073741823 (the largest value PostgreSQL stores in one field)",
        )?;
    }
    check_cron("jobs.batch.schedule", &raw.jobs.batch.schedule)?;
    require(
        raw.jobs.retry_attempts >= 1,
        "jobs.retry_attempts",
        "must be at least 1",
    )?;
    require(
        raw.jobs.batch.wait_timeout_s.0 >= 1,
        "jobs.batch.wait_timeout_s",
        "must be at least 1",
    )?;
    check_cron("jobs.compact.schedule", &raw.jobs.compact.schedule)?;
    check_cron("jobs.vacuum.schedule", &raw.jobs.vacuum.schedule)?;
    check_cron("jobs.prune.schedule", &raw.jobs.prune.schedule)?;
    require(
        raw.speed.dead_letter_retention_hours.0 >= 1,
        "speed.dead_letter_retention_hours",
        "must be at least 1",
    )?;
    require(
        raw.jobs.vacuum.retention_hours.0 >= 1,
        "jobs.vacuum.retention_hours",
        "must be at least 1: vacuum also deletes files no version references yet, which a running sink may be about to commit",
    )?;
    raw.serving.listen.parse::<SocketAddr>().map_err(|_| {
        ConfigError::invalid(
            "serving.listen",
            format!(
                "`{}` is not host:port, e.g. 127.0.0.1:8080",
                raw.serving.listen
            ),
        )
    })?;
    for (value, key) in [
        (
            raw.serving.bi_statement_timeout_ms.0,
            "serving.bi_statement_timeout_ms",
        ),
        (
            raw.serving.bi_idle_in_transaction_timeout_ms.0,
            "serving.bi_idle_in_transaction_timeout_ms",
        ),
    ] {
        require(
            (1..=86_400_000).contains(&value),
            key,
            "must be between 1 and 86400000 (one day), in milliseconds",
        )?;
    }
    require(
        raw.serving.bi_connection_limit >= 1,
        "serving.bi_connection_limit",
        "must be at least 1",
    )?;
    require(
        raw.serving.max_limit > 0,
        "serving.max_limit",
        "must be at least 1",
    )?;
    require(
        raw.serving.max_range_days > 0,
        "serving.max_range_days",
        "must be at least 1",
    )?;

    require(
        is_identifier(&raw.serving.bi_role, 63),
        "serving.bi_role",
        "must be lowercase letters, digits and `_`, starting with a letter or `_`",
    )?;
    let schema = event_schema(&raw.schema)?;
    schema_registry(&raw)?;
    let mut names = HashSet::new();
    let mut views = Vec::with_capacity(raw.views.len());
    for (index, view) in raw.views.iter().enumerate() {
        let key = format!("views[{index}]");
        require(
            names.insert(view.name.as_str()),
            &key,
            &format!("view `{}` is declared twice", view.name),
        )?;
        let view = view
            .validate(&schema)
            .map_err(|e| ConfigError::invalid(&key, e.to_string()))?;
        check_key_fits_an_index(&key, &view, &schema)?;
        views.push(view);
    }
    let dimensions = dimensions(&raw, &schema, &mut views)?;
    let alerts = alerts(&raw, &views)?;

    Ok(BraidConfig {
        kafka: raw.kafka,
        lake: raw.lake,
        postgres: raw.postgres,
        speed: raw.speed,
        sink: raw.sink,
        jobs: raw.jobs,
        batch: raw.batch,
        serving: raw.serving,
        schema,
        schema_registry: raw.schema_registry,
        views,
        alerting: raw.alerting,
        alerts,
        dimensions,
        file: None,
    })
}

/// `[[dimensions]]`, checked against the schema and the views; each view gets the attributes of
/// the dimensions keyed on one of its group fields.
fn dimensions(raw: &RawConfig, schema: &EventSchema, views: &mut [View]) -> Result<Vec<Dimension>> {
    let mut dimensions: Vec<Dimension> = Vec::with_capacity(raw.dimensions.len());
    for (index, config) in raw.dimensions.iter().enumerate() {
        let key = |k: &str| format!("dimensions[{index}].{k}");
        let dimension = config.validate(schema).map_err(|e| {
            ConfigError::invalid(
                key(e.key),
                format!("dimension `{}`: {}", config.name, e.reason),
            )
        })?;
        require(
            !dimensions.iter().any(|d| d.name == dimension.name),
            &key("name"),
            &format!("dimension `{}` is declared twice", dimension.name),
        )?;
        for attribute in &dimension.attributes {
            if let Some(other) = dimensions
                .iter()
                .find(|d| d.attributes.iter().any(|a| a.name == attribute.name))
            {
                return Err(ConfigError::invalid(
                    key("attributes"),
                    format!(
                        "attribute `{}` is also an attribute of dimension `{}`",
                        attribute.name, other.name
                    ),
                ));
            }
            for view in views.iter() {
                for column in view.answer_names() {
                    require(
                        column != attribute.name,
                        &key("attributes"),
                        &format!(
                            "attribute `{}` has the name of a column of view `{}`",
                            attribute.name, view.name
                        ),
                    )?;
                }
            }
        }
        if let DimensionSource::KafkaTopic(topic) = &dimension.source {
            require(
                *topic != raw.kafka.topic,
                &key("source.kafka_topic"),
                "must differ from kafka.topic (the event stream)",
            )?;
        }
        dimensions.push(dimension);
    }
    for view in views.iter_mut() {
        view.attributes = dimensions
            .iter()
            .filter(|d| view.group_by.contains(&d.key))
            .flat_map(|d| d.attributes.iter().cloned())
            .collect();
    }
    Ok(dimensions)
}

/// `[alerting]` and `[[alerts]]`, checked against the views.
fn alerts(raw: &RawConfig, views: &[View]) -> Result<Vec<AlertRule>> {
    let alerting = &raw.alerting;
    for (value, key) in [
        (
            alerting.evaluation_interval_ms.0,
            "alerting.evaluation_interval_ms",
        ),
        (alerting.retry_initial_ms.0, "alerting.retry_initial_ms"),
        (alerting.webhook_timeout_ms.0, "alerting.webhook_timeout_ms"),
    ] {
        require(value > 0, key, "must be at least 1")?;
    }
    require(
        alerting.retry_max_ms >= alerting.retry_initial_ms,
        "alerting.retry_max_ms",
        "must be at least alerting.retry_initial_ms",
    )?;
    require(
        alerting.max_instances > 0,
        "alerting.max_instances",
        "must be at least 1",
    )?;
    require(
        alerting.retention_hours.0 >= 1,
        "alerting.retention_hours",
        "must be at least 1",
    )?;
    for (name, webhook) in &alerting.webhooks {
        let key = format!("alerting.webhooks.{name}");
        require(
            is_identifier(name, 63),
            &key,
            "the name must be lowercase letters, digits and `_`, starting with a letter or `_`",
        )?;
        require(
            webhook.url.starts_with("http://") || webhook.url.starts_with("https://"),
            &format!("{key}.url"),
            "must start with http:// or https://",
        )?;
        if let Some(var) = &webhook.token_env {
            require(
                !var.is_empty()
                    && var
                        .chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'),
                &format!("{key}.token_env"),
                "must name an environment variable (A-Z, 0-9, _), not hold the token",
            )?;
        }
    }
    let webhooks: Vec<&str> = alerting.webhooks.keys().map(String::as_str).collect();
    let mut names = HashSet::new();
    let mut rules = Vec::with_capacity(raw.alerts.len());
    for (index, rule) in raw.alerts.iter().enumerate() {
        require(
            names.insert(rule.name.as_str()),
            &format!("alerts[{index}].name"),
            &format!("rule `{}` is declared twice", rule.name),
        )?;
        rules.push(rule.validate(views, &webhooks).map_err(|e| {
            ConfigError::invalid(
                format!("alerts[{index}].{}", e.key),
                format!("rule `{}`: {}", rule.name, e.reason),
            )
        })?);
    }
    for (index, rule) in rules.iter().enumerate() {
        for receiver in &rule.notify {
            if let crate::alert::Receiver::Kafka(topic) = receiver {
                require(
                    is_topic_name(topic),
                    &format!("alerts[{index}].notify"),
                    &format!(
                        "rule `{}`: `kafka:{topic}`: a topic name is 1 to 249 characters of letters, digits, `.`, `_` and `-`",
                        rule.name
                    ),
                )?;
            }
        }
    }
    Ok(rules)
}
