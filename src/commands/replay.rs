//! `braid replay` and `braid recover`: operators moving the speed layer through history.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use ingest::kafka::Watermarks;
use batch_layer::recompute::{AsOf, compute_as_of};
use schemas::BraidConfig;
use schemas::pg_layout::ViewLayout;

use crate::cli::{ReplayArgs, ReplayCommand};
use crate::progress::Progress;
use crate::stop::StopFlag;

/// Kafka's watermarks of the configured topic.
async fn watermarks(config: &BraidConfig) -> anyhow::Result<BTreeMap<i32, Watermarks>> {
    let kafka = config.kafka.clone();
    let topic = config.kafka.topic.clone();
    Ok(tokio::task::spawn_blocking(move || ingest::kafka::watermarks(&kafka, &topic)).await??)
}

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
                &batch_layer::lake::Lake::of(&config),
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
                super::publish::PublishRequest {
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

/// Deletes the speed rows after the last cut and moves the positions back to it, after
/// checking that Kafka still holds every record from there. Recorded as the job `job`.
pub async fn reset_speed(
    config: &BraidConfig,
    pool: &sqlx::PgPool,
    from_cut: Option<i64>,
) -> anyhow::Result<schemas::pg::SpeedReset> {
    let topic = &config.kafka.topic;
    let marks = watermarks(config).await?;
    // Kafka must still hold every record from the cut on; otherwise only the lake can help.
    let last = schemas::pg::last_cut(pool, topic).await?;
    let cut = match last {
        Some(epoch) => schemas::pg::cut_offsets(pool, topic, epoch).await?,
        None => BTreeMap::new(),
    };
    for (partition, Watermarks { low, .. }) in &marks {
        let start = cut.get(partition).copied().unwrap_or(0);
        anyhow::ensure!(
            start >= *low,
            "cannot replay partition {partition} of {topic} from offset {start}: Kafka holds it \
             only from offset {low} (retention deleted the rest). The lake holds everything: run \
             `braid recover --from-lake`, then `braid batch run`"
        );
    }
    let starts: BTreeMap<i32, i64> = marks.iter().map(|(p, m)| (*p, m.low)).collect();
    let tables: Vec<String> = config
        .views
        .iter()
        .map(|v| ViewLayout::of(v).speed_table)
        .collect();
    let reset =
        schemas::pg::reset_speed_to_last_cut(pool, topic, &tables, from_cut, &starts).await?;
    tracing::info!(
        cut = ?reset.cut_epoch,
        deleted_rows = reset.deleted_rows,
        records_to_replay = reset.records_to_replay(),
        moved = ?reset.moved,
        "speed rows after the cut deleted and positions moved back; running speed processes re-read from there"
    );
    Ok(reset)
}

/// Runs `operation` recorded in the job history as `name`, triggered by `trigger`.
pub async fn recorded<T, F>(
    pool: &sqlx::PgPool,
    name: &str,
    job: i64,
    operation: F,
    report: impl FnOnce(&T) -> jobs::history::JobReport,
) -> anyhow::Result<T>
where
    F: std::future::Future<Output = anyhow::Result<T>>,
{
    let result = operation.await;
    match &result {
        Ok(value) => jobs::history::finish(pool, job, Ok(&report(value))).await?,
        Err(error) => {
            tracing::error!(job = name, error = format!("{error:#}"), "job failed");
            jobs::history::finish(pool, job, Err(&format!("{error:#}"))).await?
        }
    }
    result
}

/// The job-history report of a speed replay.
pub fn reset_report(reset: &schemas::pg::SpeedReset) -> jobs::history::JobReport {
    jobs::history::JobReport {
        cut_epoch: reset.cut_epoch,
        rows_read: Some(reset.records_to_replay()),
        rows_written: Some(reset.deleted_rows as i64),
        ..Default::default()
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
    let job = jobs::history::start(&pool, "replay_speed", "cli").await?;
    let reset = recorded(
        &pool,
        "replay_speed",
        job,
        reset_speed(config, &pool, from_cut),
        reset_report,
    )
    .await?;
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
            .map(|(p, (before, after))| {
                stored.get(p).copied().unwrap_or(*after).min(*before) - after
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

/// What `recover --from-lake` did: the cut, per partition (before, after), and the sink's
/// committed positions.
pub type Recovery = (
    schemas::pg::Cut,
    BTreeMap<i32, (i64, i64)>,
    BTreeMap<i32, i64>,
);

/// Takes a cut at the Delta sink's positions and moves the speed layer there.
pub async fn recover(
    config: &BraidConfig,
    pool: &sqlx::PgPool,
    force: bool,
) -> anyhow::Result<Recovery> {
    let topic = &config.kafka.topic;
    let marks = watermarks(config).await?;
    let partitions: Vec<i32> = marks.keys().copied().collect();
    let stored = schemas::pg::load_positions(pool, topic).await?;
    let behind: Vec<String> = marks
        .iter()
        .filter_map(|(p, Watermarks { low, .. })| {
            let at = stored.get(p).copied().unwrap_or(0);
            (at < *low).then(|| format!("{p}: {at} < {low}"))
        })
        .collect();
    if behind.is_empty() && !force {
        anyhow::bail!(
            "the speed layer is not behind Kafka's retention on any partition of {topic} (each \
             stored position is at or past Kafka's first offset): it can still read every record it \
             needs, and recovering would make it skip them until the next batch run. Nothing was \
             changed. Pass --force to recover anyway"
        );
    }
    if !behind.is_empty() {
        tracing::info!(partitions = behind.join(", "), "the speed layer is behind Kafka's retention (partition: stored < first offset)");
    }
    let storage = config.lake.storage_options.clone().into_iter().collect();
    let table = batch_layer::lake::open_or_create(&config.lake.uri, &storage, &config.schema)
        .await
        .with_context(|| format!("opening the Delta table at {} (lake.uri)", config.lake.uri))?;
    let sink = batch_layer::lake::positions_in_log(&table, topic, &partitions).await?;
    anyhow::ensure!(
        !sink.is_empty(),
        "the Delta table at {} holds no records of {topic} yet: nothing to recover from",
        config.lake.uri
    );
    let (cut, moved) = schemas::pg::cut_at_positions(pool, topic, &sink).await?;
    tracing::info!(
        cut = cut.epoch,
        ?moved,
        "took a cut at the Delta sink's positions"
    );
    Ok((cut, moved, sink))
}

/// The job-history report of a recovery from the lake.
pub fn recovery_report(recovery: &Recovery) -> jobs::history::JobReport {
    jobs::history::JobReport {
        cut_epoch: Some(recovery.0.epoch),
        rows_read: Some(
            recovery
                .1
                .values()
                .map(|(before, after)| after - before)
                .sum(),
        ),
        ..Default::default()
    }
}

/// Runs `braid recover --from-lake`.
pub async fn recover_from_lake(config: BraidConfig, force: bool) -> anyhow::Result<ExitCode> {
    let pool = super::connect(&config).await?;
    super::migrate(&pool, &config).await?;
    let marks = watermarks(&config).await?;
    let job = jobs::history::start(&pool, "recover", "cli").await?;
    let (cut, moved, sink) = recorded(
        &pool,
        "recover",
        job,
        recover(&config, &pool, force),
        recovery_report,
    )
    .await?;
    for (partition, (before, after)) in &moved {
        let low = marks.get(partition).map_or(0, |m| m.low);
        println!(
            "partition {partition}: speed position {before} -> {after} (Kafka holds from {low}; \
             the Delta sink has committed up to {})",
            sink.get(partition).copied().unwrap_or(0)
        );
    }
    let skipped: i64 = moved.values().map(|(before, after)| after - before).sum();
    println!(
        "took cut {} at the Delta sink's positions; the speed layer resumes there. Until the next \
         batch run the merged answer lacks the {skipped} records the speed layer skipped: run \
         `braid batch run` (or wait for the scheduler) to cover them from the lake",
        cut.epoch
    );
    Ok(ExitCode::SUCCESS)
}
