//! Alert delivery, silences and the leader fence on a real PostgreSQL database.

use sqlx::PgPool;

use super::leader;

#[sqlx::test(migrator = "crate::pg::MIGRATOR")]
async fn held_by_counts_only_the_named_leader_lock(pool: PgPool) {
    // A server process holding some unrelated advisory locks (one bigint key, two int keys).
    let mut other = pool.acquire().await.unwrap();
    let other_pid: i32 =
        sqlx::query_scalar("SELECT pg_backend_pid() FROM (SELECT pg_advisory_lock(42), pg_advisory_lock(7, 9)) AS taken")
            .fetch_one(&mut *other)
            .await
            .unwrap();
    let mut lock = leader::LeaderLock::try_take(&pool, "braid.test-leader")
        .await
        .unwrap()
        .expect("the lock is free");
    let leader_pid = lock.backend_pid();
    assert!(lock.still_held().await);
    assert!(
        !leader::held_by(&pool, other_pid, "braid.test-leader")
            .await
            .unwrap(),
        "another advisory lock is not the leader's"
    );
    assert!(
        leader::held_by(&pool, leader_pid, "braid.test-leader")
            .await
            .unwrap()
    );
    assert!(
        !leader::held_by(&pool, leader_pid, "braid.another-leader")
            .await
            .unwrap(),
        "the leader of one role does not hold another's"
    );
    assert_eq!(
        leader::holder(&pool, "braid.test-leader").await.unwrap(),
        Some(leader_pid)
    );
    lock.release().await;
    assert!(
        !leader::held_by(&pool, leader_pid, "braid.test-leader")
            .await
            .unwrap()
    );
}
