//! One active process per role (the scheduler, the alert evaluator): a session advisory lock
//! held on a connection of its own. A process that does not get it is standby and tries
//! again; when the active process dies its connection closes and the lock is free.

use sqlx::pool::PoolConnection;
use sqlx::{PgExecutor, PgPool, Postgres};

/// A held advisory lock and the connection that holds it. Dropped without [`LeaderLock::release`]
/// (a leader that panicked, or whose task was cancelled), it closes that connection, which frees
/// the lock: returned to the pool, the connection would keep the lock for as long as it lives,
/// and a leader started again in this process (`braid up` restarts the scheduler and the alert
/// evaluator) would wait as a standby behind its own idle connection.
pub struct LeaderLock {
    /// `None` once released.
    connection: Option<PoolConnection<Postgres>>,
    key: &'static str,
    backend_pid: i32,
}

impl LeaderLock {
    /// Takes the lock named `key` if it is free (`pg_try_advisory_lock(hashtext(key))`).
    pub async fn try_take(pool: &PgPool, key: &'static str) -> Result<Option<Self>, sqlx::Error> {
        let mut connection = pool.acquire().await?;
        let (taken, backend_pid): (bool, i32) =
            sqlx::query_as("SELECT pg_try_advisory_lock(hashtext($1)), pg_backend_pid()")
                .bind(key)
                .fetch_one(&mut *connection)
                .await?;
        Ok(taken.then_some(Self {
            connection: Some(connection),
            key,
            backend_pid,
        }))
    }

    /// Whether the lock's connection still answers (if it does not, the lock is gone).
    pub async fn still_held(&mut self) -> bool {
        let Some(connection) = self.connection.as_mut() else {
            return false;
        };
        sqlx::query("SELECT 1")
            .execute(&mut **connection)
            .await
            .is_ok()
    }

    /// The server process holding the lock, for [`held_by`] checks inside other transactions.
    pub fn backend_pid(&self) -> i32 {
        self.backend_pid
    }

    /// Releases the lock and closes its connection (a pooled connection could keep it).
    pub async fn release(mut self) {
        let Some(mut connection) = self.connection.take() else {
            return;
        };
        let _ = sqlx::query("SELECT pg_advisory_unlock(hashtext($1))")
            .bind(self.key)
            .execute(&mut *connection)
            .await;
        let _ = connection.detach();
    }
}

impl Drop for LeaderLock {
    fn drop(&mut self) {
        if let Some(connection) = self.connection.take() {
            // Closing the connection ends its session, and with it the lock.
            drop(connection.detach());
        }
    }
}

/// Whether the server process `backend_pid` still holds the advisory lock named `key` (as
/// [`LeaderLock::try_take`] takes it): a fence that a leader's writes check inside their own
/// transaction, so that a leader whose lock connection was lost (and whose successor may
/// already run) writes nothing. Only that key counts: another advisory lock the same server
/// process happens to hold (sqlx's while it migrates, a transaction's own) does not.
pub async fn held_by(
    executor: impl PgExecutor<'_>,
    backend_pid: i32,
    key: &str,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT EXISTS (SELECT 1 FROM pg_locks, (SELECT hashtext($2)::bigint AS k) AS key \
         WHERE pid = $1 AND {OWN_KEY})"
    )))
    .bind(backend_pid)
    .bind(key)
    .fetch_one(executor)
    .await
}

/// The granted one-bigint advisory lock whose key is `key.k` (a bigint key shows in pg_locks
/// as its high half in classid, its low half in objid, and objsubid 1).
const OWN_KEY: &str = "locktype = 'advisory' AND granted AND objsubid = 1 \
     AND classid = ((key.k >> 32) & 4294967295)::text::oid \
     AND objid = (key.k & 4294967295)::text::oid";

/// The server process holding the advisory lock named `key` (as [`LeaderLock::try_take`]
/// takes it), if any: whether a leader (scheduler, alert evaluator) is running.
pub async fn holder(executor: impl PgExecutor<'_>, key: &str) -> Result<Option<i32>, sqlx::Error> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT pid FROM pg_locks, (SELECT hashtext($1)::bigint AS k) AS key \
         WHERE {OWN_KEY} LIMIT 1"
    )))
    .bind(key)
    .fetch_optional(executor)
    .await
}
