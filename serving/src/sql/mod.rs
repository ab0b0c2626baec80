//! The `serving` schema: merged views for BI tools and the read-only role that reads them.

mod bi_role;
#[cfg(test)]
mod tests;

use schemas::config::ServingConfig;
use schemas::pg::batch_runs;
use schemas::pg_layout::{ViewLayout, merge};
use schemas::view::View;
use sha2::{Digest, Sha256};
use sqlx::PgPool;

/// The SELECT of a view's merged rows: active batch rows ⊕ speed rows with epoch ≥ the active
/// run's covered epoch (all speed rows before the first batch run), per group and bucket;
/// counts and sums add, min and max combine, `avg_<field>` = sum / the count of records
/// that have the field ([`View::averages`]), and decayed scores are decayed to `now()`.
///
/// Identifiers, the view's name and its fingerprint come from validated configuration
/// (`[a-z_][a-z0-9_]*` and hex), so they can stand in the statement.
pub fn merged_select(view: &View) -> String {
    let layout = ViewLayout::of(view);
    let groups: Vec<&str> = layout.group_names();
    let stored = layout.stored_columns();
    let mut outputs: Vec<String> = groups
        .iter()
        .map(|g| g.to_string())
        .chain(["bucket_start".to_string()])
        .collect();
    outputs.extend(view.metrics.iter().map(|m| merge::aggregate(m, "now()")));
    // Distinct counts also as the merged sketch, so that BI tools can roll them up exactly:
    // hll_cardinality(hll_union_agg(<metric>_sketch)) over any set of rows.
    outputs.extend(view.metrics.iter().filter_map(|m| {
        merge::merged_sketch(m).map(|sketch| format!("{sketch} AS {}_sketch", m.column))
    }));
    outputs.extend(view.averages().iter().map(merge::average));
    let group_by: Vec<&str> = groups.iter().copied().chain(["bucket_start"]).collect();
    let merged = format!(
        "WITH active AS ({active}) \
         SELECT {outputs} FROM ( \
           SELECT {stored} FROM {batch} WHERE run_id = (SELECT run_id FROM active) \
           UNION ALL \
           SELECT {stored} FROM {speed} WHERE epoch >= coalesce((SELECT covered_epoch FROM active), 0) \
         ) AS rows GROUP BY {group_by}",
        active = batch_runs::active_run_select(
            &format!("'{}'", view.name),
            &format!("'{}'", view.fingerprint)
        ),
        outputs = outputs.join(", "),
        batch = layout.batch_table,
        speed = layout.speed_table,
        group_by = group_by.join(", "),
    );
    with_attributes(view, merged)
}

/// The merged rows with the view's attributes joined (a key missing from its dimension gets
/// nulls), so that BI tools group by campaign as they group by ad.
fn with_attributes(view: &View, merged: String) -> String {
    let (columns, joins) = schemas::dimension::attribute_joins(&view.attributes, "merged", "d");
    if columns.is_empty() {
        return merged;
    }
    format!(
        "SELECT merged.*, {} FROM ({merged}) AS merged{joins}",
        columns.join(", ")
    )
}

/// Why installing the serving schema failed.
#[derive(Debug, thiserror::Error)]
pub enum ServingSqlError {
    /// The database refused a statement.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A serving view whose definition changed could not be replaced within the lock timeout:
    /// a session holds it (a BI tool idle in a transaction?). Nothing was changed; retry once
    /// that session ends.
    #[error(
        "serving view {view} is in use by another session (a BI tool idle in a transaction?) and was not \
         replaced within {LOCK_TIMEOUT}; nothing was changed. End that session (pg_stat_activity) and retry"
    )]
    ViewInUse {
        /// The view.
        view: String,
    },
    /// `serving.bi_role` names a role Braid did not create: Braid will not change its password,
    /// rights or limits.
    #[error(
        "serving.bi_role: role `{role}` exists and was not created by Braid; choose another name \
         (Braid will not take over an existing role's password and rights). If an older Braid \
         created it, adopt it with: COMMENT ON ROLE {role} IS '{mark}'",
        mark = bi_role::MARK
    )]
    RoleNotOurs {
        /// The role.
        role: String,
    },
}

/// How long installing waits for a lock on a serving view before giving up.
pub const LOCK_TIMEOUT: &str = "5s";

/// The comment that marks a serving view with the digest of its definition.
fn definition_comment(select: &str) -> String {
    let digest = Sha256::digest(select.as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("braid definition {hex}")
}

/// Creates `serving.<view>` for every view whose definition changed (or that is missing), and,
/// when `bi_password` is given, the login role `serving.bi_role` that may read the `serving`
/// schema and nothing else. A view whose definition is unchanged is not touched, so a restart
/// never waits on a BI session; a changed one is replaced under a lock timeout.
pub async fn install(
    pool: &PgPool,
    views: &[View],
    serving: &ServingConfig,
    bi_password: Option<&str>,
) -> Result<(), ServingSqlError> {
    let mut tx = pool.begin().await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"
    )))
    .execute(&mut *tx)
    .await?;
    for view in views {
        let layout = ViewLayout::of(view);
        let select = merged_select(view);
        let comment = definition_comment(&select);
        let (current,): (Option<String>,) =
            sqlx::query_as("SELECT obj_description(to_regclass($1), 'pg_class')")
                .bind(&layout.serving_view)
                .fetch_one(&mut *tx)
                .await?;
        if current.as_deref() == Some(comment.as_str()) {
            continue;
        }
        // Identifiers come only from validated configuration; the comment is hex.
        let replaced = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP VIEW IF EXISTS {serving}; CREATE VIEW {serving} AS {select}; \
             COMMENT ON VIEW {serving} IS '{comment}'",
            serving = layout.serving_view,
        )))
        .execute(&mut *tx)
        .await;
        match replaced {
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("55P03") => {
                return Err(ServingSqlError::ViewInUse {
                    view: layout.serving_view,
                });
            }
            other => other?,
        };
        tracing::info!(view = layout.serving_view, "serving view (re)created");
    }
    tx.commit().await?;
    match bi_password {
        Some(password) => bi_role::install(pool, serving, password).await,
        None => {
            tracing::info!(
                "BRAID_BI_PASSWORD is not set: the read-only role for BI tools was not created or changed"
            );
            Ok(())
        }
    }
}
