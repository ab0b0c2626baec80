//! `braid up` when one of its tasks ends (issue 35, item 2): an essential task stops it with an
//! error naming the task; the dimension follower is started again, and resumes once what
//! stopped it is gone.

use std::time::Duration;

use rdkafka::producer::{BaseProducer, Producer};
use sqlx::PgPool;

use super::{send, write_config};
use crate::support::{Pipeline, Running, kafka_brokers, log_file, wait_until};

fn start_up(pipeline: &Pipeline, name: &str, listen: &str) -> Running {
    let child = pipeline
        .braid()
        .arg("up")
        .env("BRAID__SERVING__LISTEN", listen)
        .stdout(std::process::Stdio::null())
        .stderr(log_file(&format!("{}-up-{name}", pipeline.topic)))
        .spawn()
        .expect("braid up starts");
    Running(child)
}

fn log_of_up(pipeline: &Pipeline, name: &str) -> String {
    crate::support::log_of(pipeline, "up", name)
}

#[sqlx::test(migrations = false)]
async fn a_follower_that_fails_is_started_again_and_resumes(pool: PgPool) {
    let mut pipeline = Pipeline::new("dimensions-up-follower", &pool).await;
    let dimension_topic = format!("{}.pages", pipeline.topic);
    crate::kafka_admin::create_topic_with(&dimension_topic, 1, &[("cleanup.policy", "compact")])
        .await;
    pipeline.config = Some(write_config(
        &pipeline,
        &format!(
            "[[dimensions]]\nname = \"pages\"\nkey = \"page\"\n\
             attributes = [{{ name = \"section\", type = \"string\" }}]\n\
             source = {{ kafka_topic = \"{dimension_topic}\", format = \"json\" }}\n"
        ),
    ));
    let migrated = crate::support::run(pipeline.braid().arg("migrate"));
    assert!(
        migrated.status.success(),
        "{}",
        crate::support::stderr(&migrated)
    );
    pipeline.produce(20, 81, 1);
    // The database fails every write of the follower (not for its values: SQLSTATE P0001).
    for statement in [
        "CREATE FUNCTION public.refuse_rows() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN RAISE EXCEPTION 'the test refuses dimension rows'; END $$",
        "CREATE TRIGGER refuse BEFORE INSERT ON braid_dimensions.pages \
         FOR EACH ROW EXECUTE FUNCTION public.refuse_rows()",
    ] {
        sqlx::query(statement).execute(&pool).await.unwrap();
    }
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .create()
        .unwrap();
    send(
        &producer,
        &dimension_topic,
        "/a",
        Some(r#"{"page": "/a", "section": "s1"}"#),
    );
    producer.flush(Duration::from_secs(10)).unwrap();

    let mut up = start_up(&pipeline, "follower", &crate::http::free_address());
    wait_until(
        "braid up to say the dimension follower ended and is started again",
        Duration::from_secs(60),
        || {
            up.assert_running("braid up");
            let log = log_of_up(&pipeline, "follower");
            async move {
                log.lines().any(|l| {
                    l.contains("ERROR")
                        && l.contains("dimension follower")
                        && l.contains("the test refuses dimension rows")
                        && l.contains("starting it again")
                })
            }
        },
    )
    .await;
    sqlx::query("DROP TRIGGER refuse ON braid_dimensions.pages")
        .execute(&pool)
        .await
        .unwrap();
    wait_until(
        "the restarted follower to apply the message",
        Duration::from_secs(90),
        || {
            up.assert_running("braid up");
            let pool = pool.clone();
            async move {
                sqlx::query_scalar::<_, String>(
                    "SELECT section FROM braid_dimensions.pages WHERE page = '/a'",
                )
                .fetch_optional(&pool)
                .await
                .unwrap()
                .as_deref()
                    == Some("s1")
            }
        },
    )
    .await;
    assert!(
        log_of_up(&pipeline, "follower").contains("starting the task again"),
        "the restart is logged"
    );
}

#[sqlx::test(migrations = false)]
async fn an_essential_task_that_fails_stops_braid_up_naming_it(pool: PgPool) {
    let pipeline = Pipeline::new("dimensions-up-essential", &pool).await;
    pipeline.produce(20, 82, 1);
    // The API's address is taken: the REST API cannot start.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = taken.local_addr().unwrap().to_string();
    let mut up = start_up(&pipeline, "essential", &listen);
    let mut status = None;
    wait_until("braid up to stop", Duration::from_secs(90), || {
        status = up.0.try_wait().unwrap();
        std::future::ready(status.is_some())
    })
    .await;
    let log = log_of_up(&pipeline, "essential");
    assert!(!status.unwrap().success(), "braid up fails:\n{log}");
    assert!(
        log.contains("the REST API failed") && log.contains(&format!("cannot listen on {listen}")),
        "the error names the task and why:\n{log}"
    );
    drop(taken);
}
