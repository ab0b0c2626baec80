//! End-to-end tests of the `braid` binary against the real services started by
//! scripts/services.sh (DATABASE_URL and KAFKA_BROKERS must point at them).
//! One test binary with modules, so the workspace links it once.

mod alerts;
mod batch;
mod chaos;
mod cli;
mod compare;
mod compose;
mod console;
mod database;
mod dimensions;
mod hostile;
mod http;
mod jobs;
mod kafka_admin;
mod kafka_roundtrip;
mod latency;
mod oracle;
mod quiet_run;
mod registry;
mod replay;
mod rules_drift;
mod s3;
mod serving;
mod sink;
mod speed;
mod support;
mod transactional;
