//! The `prune` job: alert history older than `alerting.retention_hours` and dead letters older
//! than `speed.dead_letter_retention_hours` deleted in chunks of [`CHUNK`] rows, each chunk its
//! own short transaction, so that neither a long lock nor a long transaction holds up the
//! evaluator or the speed layer.

use alerts_store::retention as alert_retention;
use chrono::{DateTime, Duration, Utc};
use schemas::duration::Hours;
use schemas::pg::dead_letters;
use sqlx::PgPool;

use super::ProcedureError;
use crate::history::JobReport;

/// Rows deleted per statement.
pub const CHUNK: i64 = 5_000;

/// What a prune deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Resolved and inactive alert instances.
    pub instances: u64,
    /// Alert transitions (with their deliveries).
    pub transitions: u64,
    /// Dead letters.
    pub dead_letters: u64,
}

/// The cut-offs of a prune at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cutoffs {
    /// Alert history before this goes.
    pub alerts: DateTime<Utc>,
    /// Dead letters before this go.
    pub dead_letters: DateTime<Utc>,
}

/// How long the prune keeps old rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retentions {
    /// Resolved alert history (`alerting.retention_hours`).
    pub alerts: Hours,
    /// Dead letters (`speed.dead_letter_retention_hours`).
    pub dead_letters: Hours,
}

/// The earliest instant PostgreSQL's `timestamptz` holds (4714-11-24 BC, 00:00 UTC): a cut-off
/// bound before it is refused ("timestamp out of range"), and no row is older.
pub fn earliest_cutoff() -> DateTime<Utc> {
    chrono::NaiveDate::from_ymd_opt(-4713, 11, 24)
        .and_then(|day| day.and_hms_opt(0, 0, 0))
        .map(|midnight| midnight.and_utc())
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

impl Cutoffs {
    /// The retentions, back from `now`. A retention that reaches back past what PostgreSQL
    /// holds (the config only bounds it below) keeps everything: its cut-off is
    /// [`earliest_cutoff`], so that the prune neither panics on the arithmetic nor binds a
    /// time the database refuses.
    pub fn of(retentions: &Retentions, now: DateTime<Utc>) -> Self {
        let back = |retention: Hours| {
            i64::try_from(retention.0)
                .ok()
                .and_then(Duration::try_hours)
                .and_then(|retention| now.checked_sub_signed(retention))
                .map_or(earliest_cutoff(), |cutoff| cutoff.max(earliest_cutoff()))
        };
        Self {
            alerts: back(retentions.alerts),
            dead_letters: back(retentions.dead_letters),
        }
    }
}

/// Deletes everything older than `cutoffs`, `chunk` rows at a time.
pub async fn prune(pool: &PgPool, cutoffs: Cutoffs, chunk: i64) -> Result<Pruned, ProcedureError> {
    let mut pruned = Pruned::default();
    // Instances first: a transition is kept while an instance points at it.
    loop {
        let n = alert_retention::prune_instances(pool, cutoffs.alerts, chunk).await?;
        pruned.instances += n;
        if n < chunk as u64 {
            break;
        }
    }
    loop {
        let n = alert_retention::prune_transitions(pool, cutoffs.alerts, chunk).await?;
        pruned.transitions += n;
        if n < chunk as u64 {
            break;
        }
    }
    loop {
        let n = dead_letters::prune_chunk(pool, cutoffs.dead_letters, chunk).await?;
        pruned.dead_letters += n;
        if n < chunk as u64 {
            break;
        }
    }
    tracing::info!(
        instances = pruned.instances,
        transitions = pruned.transitions,
        dead_letters = pruned.dead_letters,
        alerts_before = %cutoffs.alerts,
        dead_letters_before = %cutoffs.dead_letters,
        "pruned old alert history and dead letters"
    );
    Ok(pruned)
}

/// The job-history report of a prune: rows deleted.
pub fn report(pruned: &Pruned) -> JobReport {
    JobReport {
        rows_written: Some((pruned.instances + pruned.transitions + pruned.dead_letters) as i64),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemas::pg::{DeadLetter, Layer, insert_dead_letters};
    use schemas::record::Rejection;

    /// Stores `count` sink dead letters at offsets 0.., received now.
    async fn insert_sink_dead_letters(pool: &PgPool, count: i64) {
        let letters: Vec<DeadLetter> = (0..count)
            .map(|o| {
                let rejection = Rejection::MissingField { field: "ts".into() };
                DeadLetter::new(0, o, rejection, b"{}", 8)
            })
            .collect();
        let mut tx = pool.begin().await.unwrap();
        insert_dead_letters(&mut tx, Layer::Sink, "t", &letters)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }

    /// The prune in chunks far smaller than what it deletes leaves nothing older than the
    /// cut-offs and everything newer, as counted independently before it ran.
    #[sqlx::test(migrator = "schemas::pg::MIGRATOR")]
    async fn a_prune_in_small_chunks_deletes_exactly_what_is_older_than_the_cutoffs(pool: PgPool) {
        insert_sink_dead_letters(&pool, 23).await;
        sqlx::query(
            "INSERT INTO braid_internal.alert_instances (fingerprint, rule, labels, state, evaluated_at) \
             SELECT 'f' || i, 'r', '{}', CASE WHEN i % 4 = 0 THEN 'firing' ELSE 'resolved' END, \
                    now() - (i || ' days')::interval \
             FROM generate_series(1, 60) AS i",
        )
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query(
            "UPDATE braid_internal.dead_letters SET received_at = now() - (\"offset\" || ' days')::interval",
        )
        .execute(&pool)
        .await
        .unwrap();
        let now = Utc::now();
        let cutoffs = Cutoffs {
            alerts: now - Duration::days(30),
            dead_letters: now - Duration::days(10),
        };
        let count = |sql: &'static str| {
            let pool = pool.clone();
            async move {
                sqlx::query_scalar::<_, i64>(sql)
                    .bind(now)
                    .fetch_one(&pool)
                    .await
                    .unwrap()
            }
        };
        let old_instances = count(
            "SELECT count(*) FROM braid_internal.alert_instances \
             WHERE state = 'resolved' AND evaluated_at < $1 - interval '30 days'",
        )
        .await;
        let old_letters = count(
            "SELECT count(*) FROM braid_internal.dead_letters WHERE received_at < $1 - interval '10 days'",
        )
        .await;
        let pruned = prune(&pool, cutoffs, 2).await.unwrap();
        assert_eq!(pruned.instances as i64, old_instances);
        assert_eq!(pruned.dead_letters as i64, old_letters);
        assert_eq!(
            count(
                "SELECT count(*) FROM braid_internal.alert_instances \
                 WHERE state = 'resolved' AND evaluated_at < $1 - interval '30 days'"
            )
            .await,
            0
        );
        assert_eq!(
            count(
                "SELECT count(*) FROM braid_internal.alert_instances WHERE state = 'firing' AND $1 IS NOT NULL"
            )
            .await,
            15,
            "firing instances are never pruned"
        );
        let counted: i64 = schemas::pg::dead_letters::counts(&pool)
            .await
            .unwrap()
            .iter()
            .map(|c| c.count)
            .sum();
        assert_eq!(
            counted,
            count("SELECT count(*) FROM braid_internal.dead_letters WHERE $1 IS NOT NULL").await
        );
    }

    /// Retentions the config accepts (it bounds them only below) but that reach back past what
    /// PostgreSQL holds, or past what chrono can count: the prune neither panics nor fails, and
    /// deletes nothing; an ordinary retention still deletes exactly the older rows.
    #[sqlx::test(migrator = "schemas::pg::MIGRATOR")]
    async fn a_retention_longer_than_the_database_reaches_keeps_everything(pool: PgPool) {
        insert_sink_dead_letters(&pool, 3).await;
        sqlx::query(
            "UPDATE braid_internal.dead_letters SET received_at = now() - interval '400 days'",
        )
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO braid_internal.alert_instances (fingerprint, rule, labels, state, evaluated_at) \
             SELECT 'f' || i, 'r', '{}', 'resolved', now() - interval '400 days' \
             FROM generate_series(1, 4) AS i",
        )
        .execute(&pool)
        .await
        .unwrap();
        let now = Utc::now();
        let six_thousand_years: u64 = 6_000 * 8_766;
        for (alerts, dead_letters) in [
            // Past PostgreSQL's earliest timestamptz (4713 BC), within chrono's range.
            (six_thousand_years * 2, six_thousand_years * 3),
            // Past chrono's range (about 262,000 years), within i64 hours.
            (3_000_000_000, 10_000_000_000_000),
            // Past i64.
            (u64::MAX, u64::MAX),
        ] {
            let retentions = Retentions {
                alerts: Hours(alerts),
                dead_letters: Hours(dead_letters),
            };
            let cutoffs = Cutoffs::of(&retentions, now);
            assert_eq!(
                cutoffs,
                Cutoffs {
                    alerts: earliest_cutoff(),
                    dead_letters: earliest_cutoff()
                },
                "{retentions:?}"
            );
            let pruned = prune(&pool, cutoffs, 2)
                .await
                .unwrap_or_else(|e| panic!("{retentions:?}: {e}"));
            assert_eq!(pruned, Pruned::default(), "{retentions:?}");
        }

        // An ordinary retention is exactly `now` minus its hours, and prunes the older rows.
        let day = Retentions {
            alerts: Hours(24),
            dead_letters: Hours(48),
        };
        let cutoffs = Cutoffs::of(&day, now);
        assert_eq!(cutoffs.alerts, now - Duration::hours(24));
        assert_eq!(cutoffs.dead_letters, now - Duration::hours(48));
        let pruned = prune(&pool, cutoffs, 2).await.unwrap();
        assert_eq!((pruned.instances, pruned.dead_letters), (4, 3));
    }
}
