//! The `serving` schema: merged views for BI tools and the read-only role that reads them.

use schemas::pg_layout::ViewLayout;
use schemas::view::{MetricKind, View};
use sqlx::PgPool;

/// The SELECT of a view's merged rows: active batch rows ⊕ speed rows with epoch ≥ the active
/// run's covered epoch (all speed rows before the first batch run), per group and bucket;
/// counts and sums add, min and max combine, and `avg_<field>` = sum / count.
///
/// Identifiers, the view's name and its fingerprint come from validated configuration
/// (`[a-z_][a-z0-9_]*` and hex), so they can stand in the statement.
pub fn merged_select(view: &View) -> String {
    let layout = ViewLayout::of(view);
    let groups: Vec<&str> = layout.group_names();
    let stored: Vec<&str> = groups
        .iter()
        .copied()
        .chain(["bucket_start"])
        .chain(layout.metric_names())
        .collect();
    let stored = stored.join(", ");
    let mut outputs: Vec<String> = groups
        .iter()
        .map(|g| g.to_string())
        .chain(["bucket_start".to_string()])
        .collect();
    for metric in &view.metrics {
        let c = &metric.column;
        // Sums of i64 fields are numeric and stay numeric: they may exceed bigint.
        let merged = match metric.kind {
            MetricKind::Count => format!("sum({c})::bigint AS {c}"),
            MetricKind::Sum => format!("sum({c}) AS {c}"),
            MetricKind::Min => format!("min({c}) AS {c}"),
            MetricKind::Max => format!("max({c}) AS {c}"),
        };
        outputs.push(merged);
    }
    for (avg, sum) in avg_columns(view) {
        outputs.push(format!(
            "sum({sum})::double precision / NULLIF(sum(count), 0) AS {avg}"
        ));
    }
    let group_by: Vec<&str> = groups.iter().copied().chain(["bucket_start"]).collect();
    format!(
        "WITH active AS (SELECT run_id, covered_epoch FROM braid_internal.batch_runs \
           WHERE view_name = '{name}' AND fingerprint = '{fingerprint}' AND status = 'active') \
         SELECT {outputs} FROM ( \
           SELECT {stored} FROM {batch} WHERE run_id = (SELECT run_id FROM active) \
           UNION ALL \
           SELECT {stored} FROM {speed} WHERE epoch >= coalesce((SELECT covered_epoch FROM active), 0) \
         ) AS rows GROUP BY {group_by}",
        name = view.name,
        fingerprint = view.fingerprint,
        outputs = outputs.join(", "),
        batch = layout.batch_table,
        speed = layout.speed_table,
        group_by = group_by.join(", "),
    )
}

/// `avg_<field>` for every sum of a view that also counts, with the sum's column.
pub fn avg_columns(view: &View) -> Vec<(String, String)> {
    if !view.metrics.iter().any(|m| m.kind == MetricKind::Count) {
        return Vec::new();
    }
    view.metrics
        .iter()
        .filter(|m| m.kind == MetricKind::Sum)
        .map(|m| {
            (
                format!("avg_{}", m.field.as_deref().unwrap_or_default()),
                m.column.clone(),
            )
        })
        .collect()
}

/// Why installing the serving schema failed.
#[derive(Debug, thiserror::Error)]
pub enum ServingSqlError {
    /// The database refused a statement.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// (Re)creates `serving.<view>` for every view and, when `bi_password` is given, the login
/// role `bi_role` that may read the `serving` schema and nothing else.
pub async fn install(
    pool: &PgPool,
    views: &[View],
    bi_role: &str,
    bi_password: Option<&str>,
) -> Result<(), ServingSqlError> {
    let mut tx = pool.begin().await?;
    for view in views {
        let layout = ViewLayout::of(view);
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP VIEW IF EXISTS {serving}; CREATE VIEW {serving} AS {select}",
            serving = layout.serving_view,
            select = merged_select(view),
        )))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    let Some(password) = bi_password else {
        tracing::info!(
            "BRAID_BI_PASSWORD is not set: the read-only role for BI tools was not created or changed"
        );
        return Ok(());
    };
    let (exists,): (bool,) =
        sqlx::query_as("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
            .bind(bi_role)
            .fetch_one(pool)
            .await?;
    let verb = if exists { "ALTER" } else { "CREATE" };
    // Utility statements take no parameters: let the server quote the role and the password.
    let statements: Vec<(String,)> = sqlx::query_as(
        "SELECT format($3 || ' ROLE %I LOGIN PASSWORD %L NOSUPERUSER NOCREATEDB NOCREATEROLE', $1::text, $2::text)
         UNION ALL SELECT format('GRANT USAGE ON SCHEMA serving TO %I', $1::text)
         UNION ALL SELECT format('GRANT SELECT ON ALL TABLES IN SCHEMA serving TO %I', $1::text)
         UNION ALL SELECT format('ALTER DEFAULT PRIVILEGES IN SCHEMA serving GRANT SELECT ON TABLES TO %I', $1::text)",
    )
    .bind(bi_role)
    .bind(password)
    .bind(verb)
    .fetch_all(pool)
    .await?;
    for (statement,) in statements {
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
            .execute(pool)
            .await?;
    }
    tracing::info!(
        role = bi_role,
        "read-only role for BI tools ready: it can read the serving schema only"
    );
    Ok(())
}
