//! Braid's single source of truth.
//!
//! Everything both layers must agree on lives here, so that the speed layer (Rust,
//! incremental) and the batch layer (Polars) cannot drift apart:
//!
//! - [`config`]: the layered `braid.toml` (embedded defaults, then the file, then
//!   `BRAID__SECTION__KEY` environment variables);
//! - [`event_schema`] and [`record`]: the declared event fields and the validator that turns
//!   a raw Kafka message into a typed [`record::Record`] or a precise [`record::Rejection`];
//! - [`view`]: view definitions (filter, group-by, time bucket, mergeable metrics),
//!   checked against the schema and fingerprinted;
//! - [`plan`]: one plan per view — each metric's stored column, fold, merge rule, read and
//!   answer type — from which every backend lowers;
//! - [`arrow`] and [`pg_layout`]: the Delta table's Arrow schema and the PostgreSQL tables
//!   derived from the same definitions;
//! - [`alert`]: alert rules over the merged views, validated against the views;
//! - [`pg`] (feature `postgres`): migrations and the metadata store (positions, epochs,
//!   cuts, dead letters).

pub mod alert;
pub mod arrow;
pub mod config;
pub mod dimension;
pub mod duration;
pub mod event_schema;
pub mod field;
pub mod lake_uri;
#[cfg(feature = "postgres")]
pub mod pg;
pub mod pg_layout;
pub mod plan;
pub mod position;
pub mod quantile;
pub mod quote;
mod raw_value;
pub mod record;
pub mod rfc3339;
pub mod sample;
pub mod sketch;
pub mod validation_rules;
pub mod view;
pub mod wire;

pub use config::{BraidConfig, ConfigError};
pub use event_schema::{EventSchema, FieldDef, FieldType};
pub use record::{Record, Rejection, Value};
pub use view::{Metric, MetricKind, View};
