//! `braid dimensions follow` across a database outage (found by the soak, issue 41): the
//! database goes away under the follower (every connection cut, new ones refused) while
//! changes arrive, and comes back. The follower must keep running and apply every change, as
//! the speed layer and the sink do across a PostgreSQL restart; before the fix it exited with
//! the connection's error at the first write.

use std::time::Duration;

use rdkafka::producer::{BaseProducer, Producer};
use sqlx::PgPool;
use tokio::task::JoinSet;

use super::{migrate, send, wait_followed, write_config};
use crate::support::{Pipeline, Running, kafka_brokers, log_file, log_of, stderr, wait_until};

/// A TCP proxy to PostgreSQL that can be cut: stopping it closes every connection through it
/// and refuses new ones until it starts again on the same port.
struct Proxy {
    listen: std::net::SocketAddr,
    target: String,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Proxy {
    async fn start(target: &str) -> Self {
        let listen = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mut proxy = Self {
            listen,
            target: target.to_string(),
            task: None,
        };
        proxy.resume().await;
        proxy
    }

    async fn resume(&mut self) {
        let listener = tokio::net::TcpListener::bind(self.listen).await.unwrap();
        let target = self.target.clone();
        self.task = Some(tokio::spawn(async move {
            // Dropped with the task: every connection's copy is aborted and its sockets closed.
            let mut connections = JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = target.clone();
                connections.spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        }));
    }

    async fn cut(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

#[sqlx::test(migrations = false)]
async fn the_follower_keeps_following_across_a_database_outage(pool: PgPool) {
    let mut pipeline = Pipeline::new("dimensions-outage", &pool).await;
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
    let migrated = migrate(&pipeline);
    assert!(migrated.status.success(), "{}", stderr(&migrated));

    // The follower reaches the database through the proxy only.
    let (server, database) = pipeline.database_url.rsplit_once('/').unwrap();
    let (_, target) = server.rsplit_once('@').unwrap();
    let mut proxy = Proxy::start(target).await;
    let (credentials, _) = server.rsplit_once('@').unwrap();
    let proxied = format!("{credentials}@{}/{database}", proxy.listen);
    let mut follower = Running(
        pipeline
            .braid()
            .args(["dimensions", "follow"])
            .env("DATABASE_URL", &proxied)
            .env("BRAID__POSTGRES__MAX_CONNECTIONS", "2")
            .stdout(std::process::Stdio::null())
            .stderr(log_file(&format!("{}-follow-outage", pipeline.topic)))
            .spawn()
            .expect("braid dimensions follow starts"),
    );
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .create()
        .unwrap();
    let change = |page: &str, section: &str| {
        serde_json::json!({ "page": page, "section": section }).to_string()
    };
    send(
        &producer,
        &dimension_topic,
        "/a",
        Some(&change("/a", "first")),
    );
    producer.flush(Duration::from_secs(10)).unwrap();
    wait_followed(&pool, &dimension_topic, &mut follower).await;

    // The database goes away; a change arrives meanwhile, so the follower writes into the outage.
    proxy.cut().await;
    send(
        &producer,
        &dimension_topic,
        "/a",
        Some(&change("/a", "during")),
    );
    send(
        &producer,
        &dimension_topic,
        "/b",
        Some(&change("/b", "during")),
    );
    producer.flush(Duration::from_secs(10)).unwrap();
    // The follower meets the outage: it ends (the defect) or says it starts again.
    wait_until(
        "the follower to meet the outage",
        Duration::from_secs(60),
        || {
            let ended = follower.0.try_wait().unwrap().is_some();
            let log = log_of(&pipeline, "follow", "outage");
            async move { ended || log.contains("starting it again") }
        },
    )
    .await;
    follower.assert_running("braid dimensions follow, after the database went away");
    proxy.resume().await;
    send(
        &producer,
        &dimension_topic,
        "/c",
        Some(&change("/c", "after")),
    );
    producer.flush(Duration::from_secs(10)).unwrap();
    wait_followed(&pool, &dimension_topic, &mut follower).await;
    let rows: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT page, section FROM braid_dimensions.pages ORDER BY page")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        rows,
        [
            ("/a".to_string(), Some("during".to_string())),
            ("/b".to_string(), Some("during".to_string())),
            ("/c".to_string(), Some("after".to_string())),
        ],
        "every change, the ones sent during the outage too"
    );
}
