//! The `braid` command: one binary for every component of the pipeline.
//!
//! The layers live in their own crates (schemas, ingest, speed-layer, batch-layer, serving, jobs);
//! this crate holds the CLI, the demo event generator and the glue between them.

pub mod allocator;
pub mod cli;
pub mod commands;
pub mod generate;
pub mod logging;
pub mod metrics;
pub mod progress;
pub mod settings;
pub mod stop;
