//! `braid up`: everything in one process.

use std::process::ExitCode;
use std::time::Duration;

use schemas::BraidConfig;

pub(super) mod supervise;

use crate::cli::{GenerateArgs, UpArgs};
use crate::stop::StopFlag;

/// Partitions of the demo topic when `--generate` creates it.
const DEMO_PARTITIONS: i32 = 4;

/// Migrates, starts every component that exists, and waits for Ctrl-C or --duration.
pub async fn run(config: BraidConfig, args: &UpArgs) -> anyhow::Result<ExitCode> {
    let pool = super::connect(&config).await?;
    super::migrate(&pool, &config).await?;
    let stop = StopFlag::default();
    stop.stop_on_signals();
    if let Some(seconds) = args.duration {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(seconds)).await;
            stop.stop();
        });
    }
    if args.generate.is_some() {
        // The demo's topic exists before the layers subscribe, so that they never start on a
        // topic that is not there yet (librdkafka reports that as an error).
        ingest::kafka::ensure_topic(&config.kafka, &config.kafka.topic, DEMO_PARTITIONS).await?;
    }
    // An essential task that ends stops braid up, naming it; the others are started again
    // (see supervise.rs and docs/architecture.md).
    let speed = {
        let (config, pool, flag) = (config.clone(), pool.clone(), stop.clone());
        supervise::essential("speed layer", &stop, async move {
            super::speed::spawn(&config, pool, flag).await
        })
    };
    let sink = {
        let (config, pool, flag) = (config.clone(), pool.clone(), stop.clone());
        supervise::essential("Delta sink", &stop, async move {
            super::sink::spawn(&config, pool, flag).await
        })
    };
    let scheduler = {
        let (context, schedules, flag) = (
            crate::settings::jobs::context(&config, pool.clone()),
            super::jobs::schedules(&config),
            stop.shared(),
        );
        supervise::restarted("job scheduler", &stop, move || {
            let (context, schedules, flag) = (context.clone(), schedules.clone(), flag.clone());
            async move { Ok(jobs::run_scheduler(&context, &schedules, flag).await?) }
        })
    };
    let evaluator = {
        let (context, flag) = (
            crate::settings::alerts::context(&config, pool.clone()),
            stop.shared(),
        );
        supervise::restarted("alert evaluator", &stop, move || {
            let (context, flag) = (context.clone(), flag.clone());
            async move { Ok(alerts::run_evaluator(&context, flag).await?) }
        })
    };
    let follower = {
        let (config, pool, flag) = (config.clone(), pool.clone(), stop.shared());
        supervise::restarted("dimension follower", &stop, move || {
            let (config, pool, flag) = (config.clone(), pool.clone(), flag.clone());
            async move {
                dimensions::follow(&pool, &config.kafka, &config.dimensions, flag).await?;
                Ok(())
            }
        })
    };
    let api = {
        let pools = super::serve::ServePools::new(&config, pool.clone()).await?;
        let (config, flag) = (config.clone(), stop.clone());
        supervise::essential("REST API", &stop, async move {
            super::serve::serve_until_stopped(&config, pools, None, None, flag).await
        })
    };
    let generator = args.generate.map(|rate| {
        let generate = GenerateArgs {
            rate,
            count: None,
            seed: None,
            start: None,
            late_fraction: 0.02,
            malformed_fraction: 0.01,
            hostile_fraction: 0.0,
            stdout: false,
            topic: None,
            partitions: DEMO_PARTITIONS,
            event_interval_us: None,
            workload: crate::cli::Workload::Clickstream,
            format: None,
        };
        let (config, flag) = (config.clone(), stop.clone());
        supervise::essential("demo generator", &stop, async move {
            let encoder =
                crate::generate::encode::encoder_for(&generate, &config, &config.kafka.topic)
                    .await?;
            crate::generate::produce(
                &generate,
                &config.kafka,
                &config.kafka.topic,
                encoder.as_ref(),
                flag,
            )
            .await
        })
    });
    let database = super::migrate::redacted(&config.postgres.url);
    eprintln!(
        "braid is up. Where to look:\n  \
         Kafka topic   {topic} on {brokers} (demo events, when --generate is given)\n  \
         PostgreSQL    {database}: speed rows in braid_internal.speed_<view>_<fingerprint>, \
         refused records in braid_internal.dead_letters\n  \
         Delta table   {lake}\n  \
         REST API      http://{listen}/v1/views (GET /openapi.json describes it)\n  \
         Alerts        http://{listen}/v1/alerts ({rules} rules; braid alerts list)\n\
         Ctrl-C stops.",
        topic = config.kafka.topic,
        brokers = config.kafka.brokers,
        lake = config.lake.uri,
        listen = config.serving.listen,
        rules = config.alerts.len(),
    );
    stop.stopped().await;
    let speed = speed.await??;
    println!(
        "speed layer: {} records aggregated, {} dead letters, {} flushes",
        speed.committed_records, speed.dead_letters, speed.commits
    );
    let sink = sink.await??;
    scheduler.await?;
    evaluator.await?;
    follower.await?;
    api.await??;
    let summary = match generator {
        Some(handle) => Some(handle.await??),
        None => None,
    };
    println!(
        "delta sink: {} records committed to {}, {} dead letters, {} commits",
        sink.committed_records, config.lake.uri, sink.dead_letters, sink.commits
    );
    if let Some(summary) = summary {
        println!(
            "produced {} demo events to Kafka topic {} ({} malformed, {} failed)",
            summary.sent, config.kafka.topic, summary.malformed, summary.failed
        );
    }
    Ok(ExitCode::SUCCESS)
}
