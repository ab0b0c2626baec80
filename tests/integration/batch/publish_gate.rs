//! Stopping a batch run right before it publishes, to look at (or kill) it there: the test holds
//! the lock every publish takes first, on a connection of its own.

use std::time::Duration;

use sqlx::PgPool;
use sqlx::pool::PoolConnection;
use sqlx::postgres::Postgres;

use crate::support::wait_until;

/// While it lives, batch runs of this database stop at their publish.
pub struct PublishGate(PoolConnection<Postgres>);

impl PublishGate {
    /// Takes the publish lock.
    pub async fn close(pool: &PgPool) -> Self {
        let mut connection = pool.acquire().await.unwrap();
        sqlx::query("SELECT pg_advisory_lock(hashtext($1))")
            .bind(batch_layer::recompute::PUBLISH_LOCK)
            .execute(&mut *connection)
            .await
            .unwrap();
        Self(connection)
    }

    /// Waits until a batch run of this database waits at the gate: it has taken its cut, loaded
    /// its rows and begun to publish. (A Spark run on two cores takes minutes.)
    pub async fn wait_for_a_run(&self, pool: &PgPool) {
        wait_until("a batch run to reach its publish", Duration::from_secs(600), || async {
            let (waiting,): (i64,) = sqlx::query_as(
                "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database
                 WHERE d.datname = current_database() AND l.locktype = 'advisory' AND NOT l.granted",
            )
            .fetch_one(pool)
            .await
            .unwrap();
            waiting > 0
        })
        .await;
    }

    /// Releases the lock: the waiting run publishes.
    pub async fn open(mut self) {
        sqlx::query("SELECT pg_advisory_unlock(hashtext($1))")
            .bind(batch_layer::recompute::PUBLISH_LOCK)
            .execute(&mut *self.0)
            .await
            .unwrap();
    }
}
