//! The dead-letter store: refused records with their reason and position.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use sqlx::{Postgres, Transaction};

use crate::position::{Offset, Partition};
use crate::record::Rejection;

/// Which layer refused the record. Both refuse the same records; each stores its own row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    /// The speed layer.
    Speed,
    /// The Delta sink.
    Sink,
    /// A dimension's follower (messages of a dimension topic).
    Dimension,
}

impl Layer {
    /// The value stored in `dead_letters.layer`.
    pub fn as_str(self) -> &'static str {
        match self {
            Layer::Speed => "speed",
            Layer::Sink => "sink",
            Layer::Dimension => "dimension",
        }
    }
}

/// One refused record.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// The partition it came from.
    pub partition: Partition,
    /// Its offset.
    pub offset: Offset,
    /// Why it was refused.
    pub rejection: Rejection,
    /// A bounded prefix of the raw payload.
    pub payload_prefix: Vec<u8>,
    /// The full payload length in bytes.
    pub payload_len: i32,
}

impl DeadLetter {
    /// Keeps at most `max_payload_bytes` of the payload, and its full length.
    pub fn new(
        partition: Partition,
        offset: Offset,
        rejection: Rejection,
        payload: &[u8],
        max_payload_bytes: usize,
    ) -> Self {
        let kept = payload.len().min(max_payload_bytes);
        Self {
            partition,
            offset,
            rejection,
            payload_prefix: payload[..kept].to_vec(),
            payload_len: i32::try_from(payload.len()).unwrap_or(i32::MAX),
        }
    }
}

/// The most characters of a reason stored.
const REASON_MAX_CHARS: usize = 1000;

/// A reason text PostgreSQL always takes, whatever the input held: NUL escaped, bounded.
/// (Rejections quote input through `record::quote_input` already; this is the last guard.)
fn storable_reason(reason: &str) -> String {
    let mut text: String = reason.chars().take(REASON_MAX_CHARS).collect();
    if text.len() < reason.len() {
        text.push('…');
    }
    text.replace('\0', "\\0")
}

/// Inserts dead letters inside the caller's transaction (the one that stores the offsets).
/// A letter already stored for the same layer and position is left as it is.
pub async fn insert_dead_letters(
    tx: &mut Transaction<'_, Postgres>,
    layer: Layer,
    topic: &str,
    letters: &[DeadLetter],
) -> Result<u64, sqlx::Error> {
    if letters.is_empty() {
        return Ok(0);
    }
    let partitions: Vec<i32> = letters.iter().map(|l| l.partition).collect();
    let offsets: Vec<i64> = letters.iter().map(|l| l.offset).collect();
    let codes: Vec<&str> = letters.iter().map(|l| l.rejection.code()).collect();
    let reasons: Vec<String> = letters
        .iter()
        .map(|l| storable_reason(&l.rejection.to_string()))
        .collect();
    let payloads: Vec<&[u8]> = letters
        .iter()
        .map(|l| l.payload_prefix.as_slice())
        .collect();
    let lengths: Vec<i32> = letters.iter().map(|l| l.payload_len).collect();
    // The counts per layer and reason move in the same statement, by the rows actually
    // inserted, locked in (layer, reason) order so that concurrent writers cannot deadlock.
    let inserted: i64 = sqlx::query_scalar(
        "WITH inserted AS (
           INSERT INTO braid_internal.dead_letters (layer, topic, partition, \"offset\", reason_code, reason, payload, payload_len)
           SELECT $1, $2, p, o, c, r, b, l
           FROM UNNEST($3::int[], $4::bigint[], $5::text[], $6::text[], $7::bytea[], $8::int[]) AS t(p, o, c, r, b, l)
           ON CONFLICT (layer, topic, partition, \"offset\") DO NOTHING
           RETURNING layer, reason_code, received_at),
         counted AS (
           INSERT INTO braid_internal.dead_letter_counts AS c (layer, reason_code, count, newest)
           SELECT layer, reason_code, count(*), max(received_at) FROM inserted
           GROUP BY layer, reason_code ORDER BY layer, reason_code
           ON CONFLICT (layer, reason_code) DO UPDATE SET count = c.count + EXCLUDED.count,
             newest = greatest(c.newest, EXCLUDED.newest)
           RETURNING 1)
         SELECT count(*) FROM inserted",
    )
    .bind(layer.as_str())
    .bind(topic)
    .bind(&partitions)
    .bind(&offsets)
    .bind(&codes)
    .bind(&reasons)
    .bind(&payloads)
    .bind(&lengths)
    .fetch_one(&mut **tx)
    .await?;
    Ok(inserted as u64)
}

/// The positions of `topic` that the speed layer dead-lettered as `refused_by_database`, per
/// partition: records that passed validation but that PostgreSQL refused. The batch layer
/// leaves them out too, so that both layers agree.
pub async fn refused_by_database(
    db: impl sqlx::PgExecutor<'_>,
    topic: &str,
) -> Result<BTreeMap<Partition, Vec<Offset>>, sqlx::Error> {
    let rows: Vec<(i32, i64)> = sqlx::query_as(
        "SELECT partition, \"offset\" FROM braid_internal.dead_letters \
         WHERE layer = 'speed' AND topic = $1 AND reason_code = $2 ORDER BY partition, \"offset\"",
    )
    .bind(topic)
    .bind(Rejection::REFUSED_BY_DATABASE)
    .fetch_all(db)
    .await?;
    let mut refused: BTreeMap<Partition, Vec<Offset>> = BTreeMap::new();
    for (partition, offset) in rows {
        refused.entry(partition).or_default().push(offset);
    }
    Ok(refused)
}

/// How many records one layer refused for one reason.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ReasonCount {
    /// The layer: speed, sink or dimension.
    pub layer: String,
    /// The reason's code, e.g. `not_json`.
    pub reason_code: String,
    /// Records refused.
    pub count: i64,
    /// When the newest of them was stored.
    pub newest: DateTime<Utc>,
}

/// One stored dead letter, as read back.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredDeadLetter {
    /// Its id (increasing with time).
    pub id: i64,
    /// The layer that refused it.
    pub layer: String,
    /// The topic it came from.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// The reason's code.
    pub reason_code: String,
    /// The reason.
    pub reason: String,
    /// The stored prefix of the payload.
    pub payload: Vec<u8>,
    /// The whole payload's length in bytes.
    pub payload_len: i32,
    /// When it was stored.
    pub received_at: DateTime<Utc>,
}

/// Dead letters counted per layer and reason, the most frequent first: read from
/// `dead_letter_counts`, which every insert and every prune keeps in its own transaction (a few
/// rows, however many letters are stored). `newest` is when the newest letter of that layer and
/// reason was stored, even if the prune job deleted it since.
pub async fn counts(db: impl sqlx::PgExecutor<'_>) -> Result<Vec<ReasonCount>, sqlx::Error> {
    sqlx::query_as(
        "SELECT layer, reason_code, count, newest FROM braid_internal.dead_letter_counts \
         WHERE count > 0 ORDER BY count DESC, layer, reason_code",
    )
    .fetch_all(db)
    .await
}

/// The `limit` most recent dead letters, newest first.
pub async fn recent(
    db: impl sqlx::PgExecutor<'_>,
    limit: i64,
) -> Result<Vec<StoredDeadLetter>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, layer, topic, partition, \"offset\" AS offset, reason_code, reason, payload, payload_len, received_at \
         FROM braid_internal.dead_letters ORDER BY id DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(db)
    .await
}

/// Deletes up to `chunk` dead letters stored before `before` (never the speed layer's
/// `refused_by_database` ones: the batch layer reads them to leave the same records out), and
/// takes them off `dead_letter_counts`, in one transaction. Returns how many were deleted.
pub async fn prune_chunk(
    pool: &sqlx::PgPool,
    before: DateTime<Utc>,
    chunk: i64,
) -> Result<u64, sqlx::Error> {
    let mut tx = pool.begin().await?;
    // The counters are locked in (layer, reason) order first, the order inserts lock them in,
    // so that a prune and a flush cannot deadlock.
    sqlx::query(
        "SELECT 1 FROM braid_internal.dead_letter_counts ORDER BY layer, reason_code FOR UPDATE",
    )
    .execute(&mut *tx)
    .await?;
    let deleted: i64 = sqlx::query_scalar(
        "WITH doomed AS (
           SELECT id FROM braid_internal.dead_letters
           WHERE received_at < $1 AND NOT (layer = 'speed' AND reason_code = $3)
           ORDER BY received_at LIMIT $2),
         deleted AS (
           DELETE FROM braid_internal.dead_letters d USING doomed WHERE d.id = doomed.id
           RETURNING d.layer, d.reason_code),
         counted AS (
           UPDATE braid_internal.dead_letter_counts c SET count = c.count - g.n
           FROM (SELECT layer, reason_code, count(*) AS n FROM deleted
                 GROUP BY layer, reason_code ORDER BY layer, reason_code) g
           WHERE c.layer = g.layer AND c.reason_code = g.reason_code
           RETURNING 1)
         SELECT count(*) FROM deleted",
    )
    .bind(before)
    .bind(chunk)
    .bind(Rejection::REFUSED_BY_DATABASE)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(deleted as u64)
}
