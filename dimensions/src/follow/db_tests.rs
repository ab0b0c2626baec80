//! A batch of a followed topic that the database refuses in part is applied as its messages
//! would be one by one: each refused message is a dead letter, and a key's earlier change in
//! the batch stands where its last one is refused.

use std::collections::BTreeMap;

use schemas::pg::DeadLetter;
use sqlx::PgPool;

use super::{Change, Pending, apply_or_isolate};
use crate::rows::{RawValue, typed_key, typed_row};
use crate::testing::dimension;

/// A section the test's CHECK constraint refuses.
const REFUSED: &str = "refused-by-check";

/// A message of the batch: the key, and its section (None: a tombstone).
type Message = (&'static str, Option<&'static str>);

#[sqlx::test(migrator = "schemas::pg::MIGRATOR")]
async fn a_key_whose_last_change_is_refused_keeps_its_earlier_change_of_the_batch(pool: PgPool) {
    let dimension = dimension("page", &[("section", "string")]);
    crate::store::prepare(&pool, std::slice::from_ref(&dimension))
        .await
        .unwrap();
    let table = dimension.table();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER TABLE {table} ADD CONSTRAINT test_refused CHECK (section IS DISTINCT FROM '{REFUSED}')"
    )))
    .execute(&pool)
    .await
    .unwrap();
    let before: [(&str, &str); 2] = [("/r", "old"), ("/t", "old")];
    for (key, section) in before {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {table} (page, section) VALUES ($1, $2)"
        )))
        .bind(key)
        .bind(section)
        .execute(&pool)
        .await
        .unwrap();
    }
    let messages: [Message; 6] = [
        ("/r", Some("new")),
        ("/r", Some(REFUSED)),
        ("/t", None),
        ("/t", Some(REFUSED)),
        ("/u", Some("u1")),
        ("/u", Some("u2")),
    ];
    let pending: Vec<Pending> = messages
        .iter()
        .enumerate()
        .map(|(offset, (key, section))| {
            let change = match section {
                Some(s) => Change::Upsert(
                    typed_row(0, &dimension, &RawValue::Text(key), &[RawValue::Text(s)]).unwrap(),
                ),
                None => Change::Delete(typed_key(0, &dimension, &RawValue::Text(key)).unwrap()),
            };
            Pending {
                change,
                partition: 0,
                offset: offset as i64,
                kept: key.as_bytes().to_vec(),
                kept_len: key.len() as i32,
            }
        })
        .collect();

    let mut letters: Vec<DeadLetter> = Vec::new();
    let mut tx = pool.begin().await.unwrap();
    apply_or_isolate(&mut tx, &dimension, &pending, &mut letters)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    // The independent fold: the messages one by one, a refused one changing nothing.
    let mut expected: BTreeMap<String, String> = before
        .iter()
        .map(|(k, s)| (k.to_string(), s.to_string()))
        .collect();
    let mut refused = Vec::new();
    for (offset, (key, section)) in messages.iter().enumerate() {
        match section {
            Some(s) if *s == REFUSED => refused.push(offset as i64),
            Some(s) => {
                expected.insert(key.to_string(), s.to_string());
            }
            None => {
                expected.remove(*key);
            }
        }
    }
    let rows: Vec<(String, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT page, section FROM {table}"
    )))
    .fetch_all(&pool)
    .await
    .unwrap();
    let table: BTreeMap<String, String> = rows.into_iter().collect();
    assert_eq!(
        table, expected,
        "the batch applied as its messages one by one"
    );
    let mut dead: Vec<i64> = letters.iter().map(|l| l.offset).collect();
    dead.sort_unstable();
    assert_eq!(dead, refused, "each refused message is one dead letter");
    assert!(
        letters
            .iter()
            .all(|l| l.rejection.code() == "refused_by_database"),
        "{letters:?}"
    );
}
