//! The merged read's own tests: selections it refuses (without a database), and the two
//! statements' answers compared row for row against a real PostgreSQL database per test
//! (`#[sqlx::test]`), over the rows of `crate::fixture`.

mod selection;
mod whole_keys;
mod whole_keys_types;
