//! `braid replay publish`: the CLI of the republish job (`jobs::procedures::republish`), with a
//! progress bar and Ctrl-C stopping it part way (run the same command again to resume).

use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use jobs::procedures::republish::PublishRequest;
use jobs::{JobKind, JobOutput};
use schemas::BraidConfig;

use crate::progress::Progress;
use crate::stop::StopFlag;

/// Runs the republish from the command line, recorded as a job.
pub async fn run(config: &BraidConfig, request: PublishRequest) -> anyhow::Result<ExitCode> {
    let pool = super::connect(config).await?;
    super::migrate(&pool, config).await?;
    let stop = StopFlag::default();
    stop.stop_on_signals();
    let bar: Arc<Mutex<Option<(Progress, u64)>>> = Arc::default();
    let mut context = crate::settings::jobs::context(config, pool);
    context.stop = stop.shared();
    context.progress = Some({
        let bar = bar.clone();
        Arc::new(move |done, total| {
            let mut bar = bar.lock().unwrap_or_else(|p| p.into_inner());
            let (progress, shown) =
                bar.get_or_insert_with(|| (Progress::new("replay publish", total), 0));
            progress.update(done);
            *shown = done;
        })
    });
    let topic = request.topic.clone();
    let result = jobs::run_job(&context, JobKind::ReplayPublish(request), "cli").await;
    if let Some((mut progress, done)) = bar.lock().unwrap_or_else(|p| p.into_inner()).take() {
        progress.finish(done);
    }
    let JobOutput::ReplayPublish(published) = result? else {
        unreachable!("a republish reports what it published");
    };
    println!(
        "published {} records to {topic} ({} selected, {} already there from an earlier run of this replay)",
        published.sent,
        published.selected,
        published.selected - published.sent
    );
    Ok(ExitCode::SUCCESS)
}
