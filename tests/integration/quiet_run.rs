//! A normal run logs no ERROR and no WARN, from Braid or from its libraries (issue 22): the
//! demo (`braid up --generate`, as scripts/run.sh starts it) on a fresh topic, database and Delta
//! table, with the scheduler firing batch runs, compaction and vacuum; a restart; and the same
//! jobs run from the command line. Every line of every process's log is checked, with the
//! default log filter (RUST_LOG unset).

use std::process::Output;

use sqlx::PgPool;

use crate::http::free_address;
use crate::support::{Pipeline, run, stderr};

/// The lines an operator's alerting would fire on.
fn alarming(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|line| line.contains(" WARN ") || line.contains(" ERROR "))
        .collect()
}

fn checked(what: &str, output: &Output, alarms: &mut Vec<String>) -> String {
    let log = stderr(output);
    assert!(output.status.success(), "{what} failed:\n{log}");
    alarms.extend(alarming(&log).into_iter().map(|l| format!("{what}: {l}")));
    log
}

#[sqlx::test(migrations = false)]
async fn a_normal_run_logs_no_error_and_no_warn(pool: PgPool) {
    let pipeline = Pipeline::new("quiet-run", &pool).await;
    let listen = free_address();
    let up = |seconds: &str| {
        let mut command = pipeline.braid();
        command
            .args(["up", "--generate", "400", "--duration", seconds])
            .env_remove("RUST_LOG")
            .env("BRAID__SERVING__LISTEN", &listen)
            .env("BRAID__JOBS__BATCH__SCHEDULE", "*/4 * * * * *")
            .env("BRAID__JOBS__COMPACT__SCHEDULE", "*/6 * * * * *")
            .env("BRAID__JOBS__VACUUM__SCHEDULE", "*/9 * * * * *");
        run(&mut command)
    };
    let mut alarms = Vec::new();
    let first = checked("braid up (first start)", &up("14"), &mut alarms);
    assert!(
        first.contains("creating the Delta table"),
        "the first start says it creates the table:\n{first}"
    );
    for job in ["batch", "compact", "vacuum"] {
        let ran = format!("job=\"{job}\" trigger=\"schedule\"");
        assert!(
            first
                .lines()
                .any(|l| l.contains("job succeeded") && l.contains(&ran)),
            "the scheduler ran {job} during the run:\n{first}"
        );
    }
    checked("braid up (restart)", &up("8"), &mut alarms);
    // The layers stop independently, so the sink may stand behind the speed layer's positions,
    // and a batch run waits for the sink to reach them: let it catch up first, as a deployment's
    // always-running sink would (otherwise the run below waits out its timeout, rightly).
    let mut sink = pipeline.start_sink("catch-up", "catch-up");
    crate::support::sink_caught_up(&pipeline, &mut sink).await;
    sink.kill();
    let sink_log = crate::support::log_of(&pipeline, "sink", "catch-up");
    alarms.extend(
        alarming(&sink_log)
            .into_iter()
            .map(|l| format!("braid sink (catch-up): {l}")),
    );
    for job in ["batch", "compact", "vacuum"] {
        let mut command = pipeline.braid();
        command.args(["jobs", "run", job]).env_remove("RUST_LOG");
        checked(
            &format!("braid jobs run {job}"),
            &run(&mut command),
            &mut alarms,
        );
    }
    let mut command = pipeline.braid();
    command.arg("migrate").env_remove("RUST_LOG");
    checked("braid migrate (again)", &run(&mut command), &mut alarms);
    assert!(
        alarms.is_empty(),
        "a normal run logged:\n{}",
        alarms.join("\n")
    );
}
