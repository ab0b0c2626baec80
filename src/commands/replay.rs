//! `braid replay` and `braid recover`: operators moving the speed layer through history.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use schemas::BraidConfig;
use schemas::pg_layout::ViewLayout;

use crate::cli::{ReplayArgs, ReplayCommand};
use crate::progress::Progress;
use crate::stop::StopFlag;

/// Kafka's (low, high) watermarks of the configured topic.
async fn watermarks(config: &BraidConfig) -> anyhow::Result<BTreeMap<i32, (i64, i64)>> {
    let kafka = config.kafka.clone();
    let topic = config.kafka.topic.clone();
    tokio::task::spawn_blocking(move || crate::kafka::watermarks(&kafka, &topic)).await?
}

/// Runs `braid replay`.
pub async fn run(config: BraidConfig, args: &ReplayArgs) -> anyhow::Result<ExitCode> {
    let ReplayCommand::Speed { from_cut, no_wait, wait_timeout } = &args.command;
    replay_speed(&config, *from_cut, *no_wait, Duration::from_secs(*wait_timeout)).await
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
    let marks = watermarks(config).await?;
    // Kafka must still hold every record from the cut on; otherwise only the lake can help.
    let last = schemas::pg::last_cut(&pool, topic).await?;
    let cut: BTreeMap<i32, i64> = match last {
        Some(epoch) => sqlx::query_as::<_, (i32, i64)>(
            "SELECT partition, cut_offset FROM braid_internal.cuts WHERE topic = $1 AND epoch = $2",
        )
        .bind(topic)
        .bind(epoch)
        .fetch_all(&pool)
        .await?
        .into_iter()
        .collect(),
        None => BTreeMap::new(),
    };
    for (partition, (low, _)) in &marks {
        let start = cut.get(partition).copied().unwrap_or(0);
        anyhow::ensure!(
            start >= *low,
            "cannot replay partition {partition} of {topic} from offset {start}: Kafka holds it \
             only from offset {low} (retention deleted the rest). The lake holds everything: run \
             `braid recover --from-lake`, then `braid batch run`"
        );
    }
    let starts: BTreeMap<i32, i64> = marks.iter().map(|(p, (low, _))| (*p, *low)).collect();
    let tables: Vec<String> = config
        .views
        .iter()
        .map(|v| ViewLayout::of(v).speed_table)
        .collect();
    let reset =
        schemas::pg::reset_speed_to_last_cut(&pool, topic, &tables, from_cut, &starts).await?;
    let from = reset
        .cut_epoch
        .map_or("the start of the topic (no cut yet)".to_string(), |e| format!("cut {e}"));
    tracing::info!(
        from = %from,
        deleted_rows = reset.deleted_rows,
        records_to_replay = reset.records_to_replay(),
        moved = ?reset.moved,
        "speed rows after the cut deleted and positions moved back; running speed processes re-read from there"
    );
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
            println!("the speed layer has read again up to where it was; the speed rows are rebuilt");
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
pub async fn recover_from_lake(config: BraidConfig) -> anyhow::Result<ExitCode> {
    let pool = super::connect(&config).await?;
    super::migrate(&pool, &config).await?;
    let topic = &config.kafka.topic;
    let marks = watermarks(&config).await?;
    let partitions: Vec<i32> = marks.keys().copied().collect();
    let storage = config.lake.storage_options.clone().into_iter().collect();
    let table = batch_layer::sink::open_or_create(&config.lake.uri, &storage, &config.schema)
        .await
        .with_context(|| format!("opening the Delta table at {} (lake.uri)", config.lake.uri))?;
    let sink = batch_layer::sink::positions_in_log(&table, topic, &partitions).await?;
    anyhow::ensure!(
        !sink.is_empty(),
        "the Delta table at {} holds no records of {topic} yet: nothing to recover from",
        config.lake.uri
    );
    let (cut, moved) = schemas::pg::cut_at_positions(&pool, topic, &sink).await?;
    for (partition, (before, after)) in &moved {
        let low = marks.get(partition).map_or(0, |m| m.0);
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
