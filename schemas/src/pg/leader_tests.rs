//! The leader fence on a real PostgreSQL database.

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

/// A leader that panics (or whose task is cancelled) drops its lock without releasing it: the
/// lock must be freed, not kept by the connection going back to the pool, so that the leader
/// `braid up` starts again can take it.
#[sqlx::test(migrator = "crate::pg::MIGRATOR")]
async fn a_leader_lock_dropped_without_release_is_freed(pool: PgPool) {
    let key = "braid.test-dropped-leader";
    let lock = leader::LeaderLock::try_take(&pool, key)
        .await
        .unwrap()
        .expect("the lock is free");
    let pid = lock.backend_pid();
    let panicked = tokio::spawn(async move {
        let _held = lock;
        panic!("a leader that panics while it holds the lock");
    })
    .await;
    assert!(panicked.unwrap_err().is_panic());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while leader::holder(&pool, key).await.unwrap() == Some(pid) {
        assert!(
            std::time::Instant::now() < deadline,
            "the dropped lock is still held by server process {pid}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        leader::LeaderLock::try_take(&pool, key)
            .await
            .unwrap()
            .is_some(),
        "a new leader takes the lock"
    );
}
