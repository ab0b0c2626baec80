//! The API against a real PostgreSQL database per test (`#[sqlx::test]`), through `oneshot`
//! requests. Rows are stored the way the speed layer and the batch layer store them, and every
//! answer is compared with an independent fold over the records those rows came from.

mod admin;
mod alerts_page;
mod bad_input;
mod cache;
mod console;
mod fixture;
mod floats;
mod merge;
mod whole_keys;
