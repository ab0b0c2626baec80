//! The benchmark's support for its pgbench floor: prints the one statement the API runs for a
//! GET /v1/views/{view}?... URI, with its values written as literals, so pgbench runs exactly
//! what the API runs. Not part of the API.
//!
//! cargo run --release -p serving --example bench_statement -- '/v1/views/page_views?from=...'
//! (the configuration comes from BRAID_CONFIG or ./braid.toml and BRAID__ variables, as for braid).

use std::path::PathBuf;

use serving::api::{Bind, KafkaWatch, Limits};
use serving::{AppState, ServingSettings};

fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// A value as a literal; no `:` in the text (pgbench reads `:name` as a variable).
fn literal(bind: &Bind) -> String {
    match bind {
        Bind::Text(v) => format!("{}::text", quote(v)),
        // Quoted: `-9223372036854775808::bigint` casts before the minus and overflows.
        Bind::Int(v) => format!("'{v}'::bigint"),
        Bind::Time(v) => format!(
            "(timestamptz 'epoch' + {} * interval '1 microsecond')",
            v.timestamp_micros()
        ),
        Bind::Texts(v) => format!(
            "ARRAY[{}]::text[]",
            v.iter().map(|t| quote(t)).collect::<Vec<_>>().join(", ")
        ),
        Bind::Ints(v) => format!("ARRAY{v:?}::bigint[]"),
        Bind::Bools(v) => format!("ARRAY{v:?}::boolean[]"),
        Bind::Bool(v) => format!("{v}::boolean"),
        // Debug prints an f64 so that it reads back as the same value.
        Bind::Float(v) => format!("{v:?}::double precision"),
    }
}

/// `sql` with each placeholder `$n` replaced by the n-th literal, in one pass, so that a
/// literal holding `$2` is never rewritten.
fn with_literals(sql: &str, literals: &[String]) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let digits = rest[at + 1..]
            .bytes()
            .take_while(u8::is_ascii_digit)
            .count();
        match rest[at + 1..at + 1 + digits].parse::<usize>() {
            Ok(n) if (1..=literals.len()).contains(&n) => out.push_str(&literals[n - 1]),
            _ => out.push_str(&rest[at..at + 1 + digits]),
        }
        rest = &rest[at + 1 + digits..];
    }
    out.push_str(rest);
    out
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let uri = std::env::args()
        .nth(1)
        .ok_or("give the URI, e.g. '/v1/views/page_views?from=...&to=...'")?;
    let file = std::env::var_os("BRAID_CONFIG")
        .map(PathBuf::from)
        .or_else(|| Some(PathBuf::from("braid.toml")).filter(|p| p.exists()));
    let config = schemas::BraidConfig::load(file.as_deref())?;
    let pool = sqlx::postgres::PgPoolOptions::new().connect_lazy(&config.postgres.url)?;
    let settings = ServingSettings {
        views: config.views.clone(),
        topic: config.kafka.topic.clone(),
        limits: Limits {
            max_limit: config.serving.max_limit,
            max_range_seconds: i64::from(config.serving.max_range_days) * 86_400,
        },
        admin_token: None,
        alert_rules: Vec::new(),
    };
    let state = AppState::new(pool, settings, KafkaWatch::unwatched());
    let statement =
        serving::api::series_statement(&state, &uri).map_err(|e| format!("{uri}: {e}"))?;
    let literals: Vec<String> = statement.values.iter().map(literal).collect();
    println!("{};", with_literals(&statement.sql, &literals));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_literals_once() {
        let literals = vec!["'$2'::text".to_string(), "7::bigint".to_string()];
        assert_eq!(
            with_literals("SELECT $1, $2, $10", &literals),
            "SELECT '$2'::text, 7::bigint, $10"
        );
    }
}
