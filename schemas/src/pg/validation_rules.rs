//! The validation rules recorded per topic (owner of `braid_internal.validation_rules`).

use sqlx::{PgConnection, PgPool};

use crate::validation_rules::{RuleDifference, ValidationRules};

/// A process's validation rules differ from the ones recorded for its topic.
#[derive(Debug, thiserror::Error)]
#[error(
    "the validation rules of topic `{topic}` differ from the recorded ones: {}. Both layers must \
     accept the same records: run every layer with the same [schema], and record a changed schema \
     with `braid migrate` before restarting the layers",
    differences.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
)]
pub struct RulesDiffer {
    /// The topic.
    pub topic: String,
    /// What differs, by config key.
    pub differences: Vec<RuleDifference>,
}

/// Why checking the rules failed.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// The rules differ: the operator's to fix; retrying fails the same way.
    #[error(transparent)]
    Differ(#[from] RulesDiffer),
    /// The database failed; retry.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The recorded rules are not a JSON object of strings (edited by hand?).
    #[error("the recorded validation rules cannot be read: {0}")]
    Unreadable(#[from] serde_json::Error),
}

impl RulesError {
    /// Whether asking again may succeed: only when the database could not be asked.
    pub fn is_retryable(&self) -> bool {
        matches!(self, RulesError::Database(e) if !super::is_data_error(e))
    }
}

/// Checks `rules` against the ones recorded for `topic`, recording them if none are.
///
/// Run it inside the transaction whose writes the rules must cover: it reads the recorded row
/// `FOR SHARE`, so `braid migrate` ([`record_validation_rules`], which takes the row `FOR
/// UPDATE`) cannot record other rules until that transaction has ended, and a transaction that
/// starts after it sees them. A check outside the writing transaction would leave a window in
/// which a flush commits under rules that are no longer the recorded ones.
pub async fn check_validation_rules(
    conn: &mut PgConnection,
    topic: &str,
    rules: &ValidationRules,
) -> Result<(), RulesError> {
    let fingerprint = rules.fingerprint();
    let recorded: Option<(String,)> = sqlx::query_as(
        "SELECT fingerprint FROM braid_internal.validation_rules WHERE topic = $1 FOR SHARE",
    )
    .bind(topic)
    .fetch_optional(&mut *conn)
    .await?;
    if recorded.as_ref().is_some_and(|(f,)| *f == fingerprint) {
        return Ok(());
    }
    // None recorded yet (record these), or different (say how). One statement: the insert's
    // result, or the row another process recorded first. When that process's insert was still
    // uncommitted as the statement began, the insert waits for it and then does nothing, and
    // the statement's snapshot does not see the row: a second statement does.
    let inserted_or_seen: Option<(String,)> = sqlx::query_as(
        "WITH inserted AS (
            INSERT INTO braid_internal.validation_rules (topic, fingerprint, rules) VALUES ($1, $2, $3::jsonb)
            ON CONFLICT (topic) DO NOTHING RETURNING rules)
         SELECT rules::text FROM inserted
         UNION ALL SELECT rules::text FROM braid_internal.validation_rules WHERE topic = $1
         LIMIT 1",
    )
    .bind(topic)
    .bind(&fingerprint)
    .bind(rules.to_json())
    .fetch_optional(&mut *conn)
    .await?;
    let (stored,) = match inserted_or_seen {
        Some(row) => row,
        None => sqlx::query_as(
            "SELECT rules::text FROM braid_internal.validation_rules WHERE topic = $1 FOR SHARE",
        )
        .bind(topic)
        .fetch_one(&mut *conn)
        .await?,
    };
    let differences = rules.differences(&ValidationRules::from_json(&stored)?);
    if differences.is_empty() {
        return Ok(());
    }
    Err(RulesDiffer {
        topic: topic.to_string(),
        differences,
    }
    .into())
}

/// The rules of `schema`, once checked against the ones recorded for `topic` (a layer's start).
pub async fn agreed_rules(
    pool: &PgPool,
    topic: &str,
    schema: &crate::EventSchema,
) -> Result<ValidationRules, RulesError> {
    let rules = ValidationRules::of(schema);
    check_validation_rules(&mut *pool.acquire().await?, topic, &rules).await?;
    tracing::info!(
        fingerprint = rules.fingerprint(),
        "validation rules agree with the recorded ones"
    );
    Ok(rules)
}

/// Records `rules` for `topic` (`braid migrate`: the operator accepts a changed schema), and
/// returns how they differ from the rules recorded before.
pub async fn record_validation_rules(
    pool: &PgPool,
    topic: &str,
    rules: &ValidationRules,
) -> Result<Vec<RuleDifference>, RulesError> {
    let mut tx = pool.begin().await?;
    let before: Option<(String,)> = sqlx::query_as(
        "SELECT rules::text FROM braid_internal.validation_rules WHERE topic = $1 FOR UPDATE",
    )
    .bind(topic)
    .fetch_optional(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO braid_internal.validation_rules (topic, fingerprint, rules) VALUES ($1, $2, $3::jsonb)
         ON CONFLICT (topic) DO UPDATE
           SET fingerprint = EXCLUDED.fingerprint, rules = EXCLUDED.rules, recorded_at = now()
         WHERE braid_internal.validation_rules.fingerprint <> EXCLUDED.fingerprint",
    )
    .bind(topic)
    .bind(rules.fingerprint())
    .bind(rules.to_json())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    match before {
        Some((old,)) => Ok(rules.differences(&ValidationRules::from_json(&old)?)),
        None => Ok(Vec::new()),
    }
}
