//! `braid replay` and `braid recover`: operators moving the speed layer through history.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use batch_layer::recompute::{AsOf, compute_as_of};
use jobs::procedures::republish::PublishRequest;
use jobs::{JobKind, JobOutput};
use schemas::BraidConfig;

use crate::cli::{ReplayArgs, ReplayCommand};
use crate::progress::Progress;
use crate::stop::StopFlag;

/// Runs `braid replay`.
pub async fn run(config: BraidConfig, args: &ReplayArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        ReplayCommand::Speed {
            from_cut,
            no_wait,
            wait_timeout,
        } => {
            replay_speed(
                &config,
                *from_cut,
                *no_wait,
                Duration::from_secs(*wait_timeout),
            )
            .await
        }
        ReplayCommand::AsOf {
            version,
            timestamp,
            view,
            out,
        } => {
            let as_of = match (version, timestamp) {
                (Some(version), _) => AsOf::Version(*version),
                (None, Some(text)) => AsOf::Timestamp(
                    chrono::DateTime::parse_from_rfc3339(text)
                        .with_context(|| {
                            format!("--timestamp: `{text}` is not an RFC 3339 instant")
                        })?
                        .with_timezone(&chrono::Utc),
                ),
                (None, None) => anyhow::bail!("give --version or --timestamp"),
            };
            let view = config
                .views
                .iter()
                .find(|v| v.name == *view)
                .ok_or_else(|| {
                    anyhow::anyhow!("--view: no view named `{view}` in the configuration")
                })?;
            // The records the speed layer's database refused are left out here too.
            let pool = super::connect(&config).await?;
            let refused = schemas::pg::refused_by_database(&pool, &config.kafka.topic).await?;
            let outcome = compute_as_of(
                &crate::settings::batch_layer::lake(&config),
                view,
                as_of,
                &refused,
                out,
            )
            .await?;
            println!(
                "wrote {} rows of view {} to {}, computed from {} records of Delta version {}",
                outcome.rows,
                view.name,
                out.display(),
                outcome.records,
                outcome.version
            );
            Ok(ExitCode::SUCCESS)
        }
        ReplayCommand::Publish {
            from,
            to,
            topic,
            rate,
            id,
        } => {
            super::publish::run(
                &config,
                PublishRequest {
                    from: from.clone(),
                    to: to.clone(),
                    topic: topic.clone(),
                    rate: *rate,
                    id: id.clone(),
                },
            )
            .await
        }
    }
}

async fn replay_speed(
    config: &BraidConfig,
    from_cut: Option<i64>,
    no_wait: bool,
    wait_timeout: Duration,
) -> anyhow::Result<ExitCode> {
    let pool = super::connect(config).await?;
    super::migrate(&pool, config).await?;
    let topic = &config.kafka.topic;
    let context = crate::settings::jobs::context(config, pool.clone());
    let JobOutput::ReplaySpeed(reset) =
        jobs::run_job(&context, JobKind::ReplaySpeed { from_cut }, "cli").await?
    else {
        unreachable!("a speed replay reports a speed reset");
    };
    let from = reset
        .cut_epoch
        .map_or("the start of the topic (no cut yet)".to_string(), |e| {
            format!("cut {e}")
        });
    println!(
        "replaying {topic} from {from}: deleted {} speed rows; {} records to read again",
        reset.deleted_rows,
        reset.records_to_replay()
    );
    if no_wait || reset.records_to_replay() == 0 {
        return Ok(ExitCode::SUCCESS);
    }
    // Wait until every partition is back where it was, showing progress.
    let stop = StopFlag::default();
    stop.stop_on_signals();
    let total = reset.records_to_replay() as u64;
    let mut progress = Progress::new("replay speed", total);
    let started = Instant::now();
    loop {
        let stored = schemas::pg::load_positions(&pool, topic).await?;
        let done: i64 = reset
            .moved
            .iter()
            .map(|(p, moved)| {
                stored
                    .get(p)
                    .copied()
                    .unwrap_or(moved.after)
                    .min(moved.before)
                    - moved.after
            })
            .sum();
        progress.update(done.max(0) as u64);
        if done as u64 >= total {
            progress.finish(total);
            println!(
                "the speed layer has read again up to where it was; the speed rows are rebuilt"
            );
            return Ok(ExitCode::SUCCESS);
        }
        if stop.is_stopped() || started.elapsed() >= wait_timeout {
            progress.finish(done.max(0) as u64);
            println!(
                "stopped waiting; the replay itself is done and running speed processes keep reading \
                 (is `braid speed` running?)"
            );
            return Ok(ExitCode::SUCCESS);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs `braid recover --from-lake`.
pub async fn recover_from_lake(config: BraidConfig, force: bool) -> anyhow::Result<ExitCode> {
    let pool = super::connect(&config).await?;
    super::migrate(&pool, &config).await?;
    let marks = jobs::procedures::watermarks(&config.kafka).await?;
    let context = crate::settings::jobs::context(&config, pool);
    let JobOutput::Recover(recovery) =
        jobs::run_job(&context, JobKind::Recover { force }, "cli").await?
    else {
        unreachable!("a recovery reports a recovery");
    };
    let (cut, moved, sink) = (&recovery.cut, &recovery.moved, &recovery.sink);
    for (partition, schemas::pg::Moved { before, after }) in moved {
        let low = marks.get(partition).map_or(0, |m| m.low);
        println!(
            "partition {partition}: speed position {before} -> {after} (Kafka holds from {low}; \
             the Delta sink has committed up to {})",
            sink.get(partition).copied().unwrap_or(0)
        );
    }
    let skipped = recovery.skipped();
    println!(
        "took cut {} at the Delta sink's positions; the speed layer resumes there. Until the next \
         batch run the merged answer lacks the {skipped} records the speed layer skipped: run \
         `braid batch run` (or wait for the scheduler) to cover them from the lake",
        cut.epoch
    );
    Ok(ExitCode::SUCCESS)
}
