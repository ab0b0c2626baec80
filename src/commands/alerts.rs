//! `braid alerts`: the evaluator, the instances, the history, and a dry evaluation.

use alerts::store;
use chrono::{SecondsFormat, Utc};
use schemas::BraidConfig;
use std::process::ExitCode;

use crate::cli::{AlertsArgs, AlertsCommand};
use crate::stop::StopFlag;

fn show(value: Option<f64>) -> String {
    value.map_or_else(|| "no data".to_string(), |v| v.to_string())
}

fn check_rule(config: &BraidConfig, rule: Option<&str>) -> anyhow::Result<()> {
    if let Some(name) = rule {
        anyhow::ensure!(
            config.alerts.iter().any(|r| r.name == name),
            alerts::AlertError::UnknownRule(name.to_string())
        );
    }
    Ok(())
}

/// Runs the subcommand.
pub async fn run(config: BraidConfig, args: &AlertsArgs) -> anyhow::Result<ExitCode> {
    if let AlertsCommand::Run {
        metrics_listen: Some(address),
    } = &args.command
    {
        crate::metrics::serve(*address)?;
    }
    let pool = super::connect(&config).await?;
    super::migrate(&pool, &config).await?;
    match &args.command {
        AlertsCommand::Run { .. } => {
            let stop = StopFlag::default();
            stop.stop_on_signals();
            alerts::run_evaluator(
                &crate::settings::alerts::context(&config, pool),
                stop.shared(),
            )
            .await?;
        }
        AlertsCommand::List { rule } => {
            check_rule(&config, rule.as_deref())?;
            println!(
                "{:<24} {:<16} {:<9} {:>14}  {:<24} labels",
                "rule", "fingerprint", "state", "value", "evaluated (UTC)"
            );
            for i in store::instances(&pool, rule.as_deref()).await? {
                println!(
                    "{:<24} {:<16} {:<9} {:>14}  {:<24} {}",
                    i.rule,
                    i.fingerprint,
                    i.state,
                    show(i.value),
                    i.evaluated_at.to_rfc3339_opts(SecondsFormat::Secs, true),
                    i.labels
                );
            }
        }
        AlertsCommand::History { rule, limit } => {
            check_rule(&config, rule.as_deref())?;
            for t in store::history(&pool, rule.as_deref(), *limit).await? {
                let e = &t.evaluation;
                println!(
                    "#{} {} {} {} -> {}  {} = {} ({} {}) over [{}, {})  labels {}\n    batch {}  speed {}\n    deliveries {}",
                    t.id,
                    e.at.to_rfc3339_opts(SecondsFormat::Millis, true),
                    e.rule,
                    t.from,
                    t.to,
                    e.metric,
                    show(t.value),
                    e.op,
                    e.threshold,
                    e.window_start.to_rfc3339_opts(SecondsFormat::Secs, true),
                    e.window_end.to_rfc3339_opts(SecondsFormat::Secs, true),
                    t.labels,
                    e.batch.as_deref().unwrap_or("none"),
                    e.speed,
                    t.deliveries,
                );
            }
        }
        AlertsCommand::Test { rule } => {
            let settings = crate::settings::alerts::settings(&config);
            let found = settings
                .rules
                .iter()
                .find(|r| &r.name == rule)
                .ok_or_else(|| alerts::AlertError::UnknownRule(rule.clone()))?;
            let view = settings
                .views
                .iter()
                .find(|v| v.name == found.view)
                .expect("rules are validated against the views");
            let evaluation = alerts::evaluate::evaluate(
                &pool,
                view,
                &settings.topic,
                found,
                Utc::now(),
                settings.max_instances,
            )
            .await?;
            let record = &evaluation.record;
            println!(
                "rule {}: {} {} {} over [{}, {}) of view {} (nothing is written, no one is notified)",
                found.name,
                found.metric,
                found.op.name(),
                found.threshold,
                record
                    .window_start
                    .to_rfc3339_opts(SecondsFormat::Secs, true),
                record.window_end.to_rfc3339_opts(SecondsFormat::Secs, true),
                view.name
            );
            println!(
                "  merged from batch run {} and speed positions {}",
                record.batch.as_deref().unwrap_or("none"),
                record.speed
            );
            if evaluation.instances.is_empty() {
                println!("  no key has rows in the window and no instance is stored");
            }
            for i in &evaluation.instances {
                println!(
                    "  {} value {} holds {} state {} -> {}",
                    serde_json::Value::Object(i.labels.clone()),
                    show(i.value),
                    i.holds,
                    i.before,
                    i.after
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
