//! `braid jobs`: the scheduler, the history, and running a job now.

use std::process::ExitCode;

use jobs::JobKind;
use schemas::BraidConfig;

use crate::cli::{JobsArgs, JobsCommand};
use crate::stop::StopFlag;

/// The enabled schedules, in the order they are listed in `[jobs]`.
pub fn schedules(config: &BraidConfig) -> Vec<(JobKind, String)> {
    let jobs = &config.jobs;
    [
        (JobKind::Batch, jobs.batch.enabled, &jobs.batch.schedule),
        (
            JobKind::Compact,
            jobs.compact.enabled,
            &jobs.compact.schedule,
        ),
        (JobKind::Vacuum, jobs.vacuum.enabled, &jobs.vacuum.schedule),
        (JobKind::Prune, jobs.prune.enabled, &jobs.prune.schedule),
    ]
    .into_iter()
    .filter(|(_, enabled, _)| *enabled)
    .map(|(kind, _, schedule)| (kind, schedule.clone()))
    .collect()
}

/// Runs the subcommand.
pub async fn run(config: BraidConfig, args: &JobsArgs) -> anyhow::Result<ExitCode> {
    let pool = super::connect(&config).await?;
    super::migrate(&pool, &config).await?;
    match &args.command {
        None => {
            let stop = StopFlag::default();
            stop.stop_on_signals();
            jobs::run_scheduler(
                &crate::settings::jobs::context(&config, pool),
                &schedules(&config),
                stop.shared(),
            )
            .await?;
        }
        Some(JobsCommand::List { limit }) => {
            println!(
                "{:>6}  {:<7} {:<8} {:<9} {:<20} {:>7}  {:>8} {:>7} {:>10} {:>10}  error",
                "id",
                "job",
                "trigger",
                "status",
                "started (UTC)",
                "seconds",
                "version",
                "epoch",
                "read",
                "written"
            );
            for run in jobs::history::list(&pool, *limit).await? {
                let seconds = run.finished_at.map(|f| {
                    format!(
                        "{:.1}",
                        (f - run.started_at).num_milliseconds() as f64 / 1000.0
                    )
                });
                let show = |v: Option<i64>| v.map_or("-".to_string(), |v| v.to_string());
                println!(
                    "{:>6}  {:<7} {:<8} {:<9} {:<20} {:>7}  {:>8} {:>7} {:>10} {:>10}  {}",
                    run.id,
                    run.job,
                    run.trigger,
                    run.status,
                    run.started_at.format("%Y-%m-%d %H:%M:%S"),
                    seconds.unwrap_or_else(|| "-".into()),
                    show(run.delta_version),
                    show(run.cut_epoch),
                    show(run.rows_read),
                    show(run.rows_written),
                    run.error.unwrap_or_default()
                );
            }
            for (view, fingerprint) in schemas::pg::backfilling_views(&pool, &config.views).await? {
                println!(
                    "view {view} (definition {fingerprint}) is backfilling: its history is missing \
                     until a batch run of this definition publishes (braid jobs run batch)"
                );
            }
        }
        Some(JobsCommand::Run { name }) => {
            let kind = JobKind::parse(name).ok_or_else(|| {
                anyhow::anyhow!(
                    "unknown job `{name}`; `braid jobs run` runs batch, compact and vacuum \
                     (the replays have their own commands: braid replay, braid recover)"
                )
            })?;
            let output = jobs::run_job(
                &crate::settings::jobs::context(&config, pool),
                kind,
                "manual",
            )
            .await?;
            println!("{name} succeeded: {:?}", output.report());
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_enabled_job_is_scheduled() {
        let demo = include_str!("../../braid.toml");
        let all = BraidConfig::load_from(Some(("braid.toml", demo)), []).unwrap();
        let kinds: Vec<JobKind> = schedules(&all).into_iter().map(|(kind, _)| kind).collect();
        assert_eq!(
            kinds,
            [
                JobKind::Batch,
                JobKind::Compact,
                JobKind::Vacuum,
                JobKind::Prune
            ]
        );
        let env = [(
            "BRAID__JOBS__COMPACT__ENABLED".to_string(),
            "false".to_string(),
        )];
        let without_compact = BraidConfig::load_from(Some(("braid.toml", demo)), env).unwrap();
        let kinds: Vec<JobKind> = schedules(&without_compact)
            .into_iter()
            .map(|(kind, _)| kind)
            .collect();
        assert_eq!(kinds, [JobKind::Batch, JobKind::Vacuum, JobKind::Prune]);
    }
}
