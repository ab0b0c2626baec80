//! docker-compose.yml cannot run here (no Docker engine), so it is checked against the code:
//! the services exist, Braid's commands parse, its environment loads as configuration, and
//! ports agree with the config.

use std::collections::BTreeMap;

use clap::Parser;
use serde_yaml::Value;

use crate::support::repo_root;

fn compose() -> Value {
    let text = std::fs::read_to_string(repo_root().join("docker-compose.yml")).unwrap();
    let mut value: Value = serde_yaml::from_str(&text).unwrap();
    // `<<: *anchor` merges, as Docker Compose applies them.
    value.apply_merge().unwrap();
    value
}

fn environment(service: &Value) -> BTreeMap<String, String> {
    match &service["environment"] {
        Value::Mapping(map) => map
            .iter()
            .map(|(k, v)| {
                let value = match v {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    other => panic!("environment value {other:?}"),
                };
                (k.as_str().unwrap().to_string(), value)
            })
            .collect(),
        Value::Null => BTreeMap::new(),
        other => panic!("environment must be a mapping, got {other:?}"),
    }
}

#[test]
fn compose_services_agree_with_the_code() {
    let compose = compose();
    let services = compose["services"].as_mapping().expect("services");
    let names: Vec<&str> = services.keys().map(|k| k.as_str().unwrap()).collect();
    for expected in [
        "kafka",
        "postgres",
        "s3",
        "s3-bucket",
        "speed",
        "sink",
        "jobs",
        "alerts",
        "serve",
    ] {
        assert!(
            names.contains(&expected),
            "service {expected} missing from {names:?}"
        );
    }
    let demo = std::fs::read_to_string(repo_root().join("braid.toml")).unwrap();

    let kafka_env = environment(&compose["services"]["kafka"]);
    let advertised = &kafka_env["KAFKA_ADVERTISED_LISTENERS"];

    for name in ["speed", "sink", "jobs", "alerts", "serve", "jobs-spark"] {
        let service = &compose["services"][name];
        let command: Vec<String> = match &service["command"] {
            Value::Sequence(items) => items
                .iter()
                .map(|i| i.as_str().unwrap().to_string())
                .collect(),
            other => panic!("{name}: command must be a list, got {other:?}"),
        };
        let argv = std::iter::once("braid".to_string()).chain(command.clone());
        braid::cli::Cli::try_parse_from(argv).unwrap_or_else(|e| {
            panic!("{name}: `braid {}` does not parse: {e}", command.join(" "))
        });
        assert_eq!(
            command.first().map(String::as_str),
            Some(name.trim_end_matches("-spark")),
            "{name} runs `braid {name}`"
        );

        let env = environment(service);
        let layered: Vec<(String, String)> = env
            .iter()
            .filter(|(k, _)| k.starts_with("BRAID__"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let config = schemas::BraidConfig::load_from(Some(("braid.toml", &demo)), layered)
            .unwrap_or_else(|e| {
                panic!("{name}: its environment is not a valid configuration: {e}")
            });
        let brokers = env
            .get("KAFKA_BROKERS")
            .cloned()
            .unwrap_or(config.kafka.brokers.clone());
        assert!(
            advertised.contains(&brokers),
            "{name}: brokers {brokers} are not advertised by kafka ({advertised})"
        );
        let url = env.get("DATABASE_URL").expect("DATABASE_URL");
        assert!(
            url.contains("@postgres:5432/"),
            "{name}: DATABASE_URL must point at the postgres service: {url}"
        );
        let postgres_env = environment(&compose["services"]["postgres"]);
        assert!(
            url.contains(&format!(
                "{}:{}@",
                postgres_env["POSTGRES_USER"], postgres_env["POSTGRES_PASSWORD"]
            )),
            "{name}: credentials differ"
        );
        assert!(
            url.ends_with(&format!("/{}", postgres_env["POSTGRES_DB"])),
            "{name}: database differs"
        );

        let wanted_engine = if name == "jobs-spark" {
            schemas::config::BatchEngine::Spark
        } else {
            schemas::config::BatchEngine::Polars
        };
        assert_eq!(
            config.batch.engine, wanted_engine,
            "{name}: the batch engine"
        );
        if name == "jobs-spark" {
            assert!(
                config
                    .batch
                    .spark
                    .packages
                    .iter()
                    .any(|p| p.starts_with("org.apache.hadoop:hadoop-aws:")),
                "{name}: the S3A connector for the lake on S3"
            );
        }
        // The lake is the bucket on the s3 service, reached with its keys.
        assert!(
            config.lake.uri.starts_with("s3://braid/"),
            "{name}: lake.uri is {}",
            config.lake.uri
        );
        let s3 = &compose["services"]["s3"];
        let s3_env = environment(s3);
        let s3_port = s3["command"][1].as_str().unwrap().trim_start_matches(':');
        let endpoint = config
            .lake
            .storage_options
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("AWS_ENDPOINT_URL"))
            .map(|(_, v)| v.clone())
            .expect("an endpoint in the storage options");
        assert_eq!(
            endpoint,
            format!("http://s3:{s3_port}"),
            "{name}: the endpoint"
        );
        assert_eq!(
            env.get("AWS_ACCESS_KEY_ID"),
            s3_env.get("ROOT_ACCESS_KEY"),
            "{name}: the key"
        );
        assert_eq!(
            env.get("AWS_SECRET_ACCESS_KEY"),
            s3_env.get("ROOT_SECRET_KEY"),
            "{name}: the secret"
        );

        if name == "serve" {
            let port = config
                .serving
                .listen
                .rsplit(':')
                .next()
                .unwrap()
                .to_string();
            let ports: Vec<String> = service["ports"]
                .as_sequence()
                .unwrap()
                .iter()
                .map(|p| p.as_str().unwrap().to_string())
                .collect();
            assert!(
                ports.iter().any(|p| p.ends_with(&format!(":{port}"))),
                "serve publishes {ports:?}, listens on {port}"
            );
            assert!(
                config.serving.listen.starts_with("0.0.0.0:"),
                "serve must listen on all interfaces in a container"
            );
        }
    }
}
