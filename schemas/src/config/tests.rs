use super::*;

const DEMO: &str = include_str!("../../../braid.toml");

fn load(file: &str, env: &[(&str, &str)]) -> Result<BraidConfig, ConfigError> {
    BraidConfig::load_from(
        Some(("test.toml", file)),
        env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
    )
}

fn invalid(file: &str, env: &[(&str, &str)]) -> (String, String) {
    match load(file, env) {
        Err(ConfigError::Invalid { key, reason }) => (key, reason),
        other => panic!("expected an invalid key, got {other:?}"),
    }
}

#[test]
fn demo_config_loads_with_defaults_beneath() {
    let config = load(DEMO, &[]).unwrap();
    assert_eq!(config.kafka.topic, "braid.clickstream");
    assert_eq!(
        config.kafka.brokers, "127.0.0.1:19092",
        "from the embedded defaults"
    );
    assert_eq!(
        config.speed.flush_interval_ms.duration(),
        std::time::Duration::from_millis(500)
    );
    assert_eq!(config.schema.event_time_field().name, "ts");
    let names: Vec<_> = config.views.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "page_views",
            "purchases_by_country",
            "events_by_type",
            "unique_visitors",
            "trending_pages",
            "page_latency"
        ]
    );
}

#[test]
fn environment_overrides_the_file_with_the_replaced_type() {
    let config = load(
        DEMO,
        &[
            ("BRAID__KAFKA__BROKERS", "10.1.1.1:9092"),
            ("BRAID__SPEED__FLUSH_INTERVAL_MS", "250"),
            ("BRAID__JOBS__BATCH__ENABLED", "false"),
            ("BRAID__KAFKA__OPTIONS__SECURITY.PROTOCOL", "SASL_SSL"),
            ("BRAID_CONFIG", "ignored: single underscore"),
        ],
    )
    .unwrap();
    assert_eq!(config.kafka.brokers, "10.1.1.1:9092");
    assert_eq!(config.speed.flush_interval_ms.0, 250);
    assert!(!config.jobs.batch.enabled);
    assert_eq!(
        config
            .kafka
            .options
            .get("security.protocol")
            .map(String::as_str),
        Some("SASL_SSL")
    );
}

#[test]
fn the_file_overrides_the_defaults() {
    let config = load(&format!("{DEMO}\n[speed]\nflush_interval_ms = 50\nflush_max_records = 7\ndead_letter_max_payload_bytes = 9\n"), &[]).unwrap();
    assert_eq!(config.speed.flush_max_records, 7);
}

#[test]
fn each_layer_has_its_own_dead_letter_payload_bound() {
    let config = load(DEMO, &[]).unwrap();
    assert_eq!(
        (
            config.speed.dead_letter_max_payload_bytes,
            config.sink.dead_letter_max_payload_bytes
        ),
        (4096, 4096),
        "the same default"
    );
    let config = load(
        &format!("{DEMO}\n[sink]\ndead_letter_max_payload_bytes = 9\n"),
        &[("BRAID__SPEED__DEAD_LETTER_MAX_PAYLOAD_BYTES", "11")],
    )
    .unwrap();
    assert_eq!(config.sink.dead_letter_max_payload_bytes, 9);
    assert_eq!(config.speed.dead_letter_max_payload_bytes, 11);
    for key in ["speed", "sink"] {
        let (invalid_key, reason) = invalid(
            &format!("{DEMO}\n[{key}]\ndead_letter_max_payload_bytes = 1073741824\n"),
            &[],
        );
        assert_eq!(invalid_key, format!("{key}.dead_letter_max_payload_bytes"));
        assert!(reason.contains("at most 1073741823"), "{reason}");
        let at_the_bound = format!("{DEMO}\n[{key}]\ndead_letter_max_payload_bytes = 1073741823\n");
        load(&at_the_bound, &[]).unwrap();
    }
    let (invalid_key, _) = invalid(
        &format!("{DEMO}\n[sink]\ndead_letter_max_payload_bytes = -1\n"),
        &[],
    );
    assert_eq!(invalid_key, "sink.dead_letter_max_payload_bytes");
}

#[test]
fn unknown_keys_are_refused_with_their_path() {
    let (key, reason) = invalid(
        &DEMO.replace("[kafka]\n", "[kafka]\nbrokerz = \"x\"\n"),
        &[],
    );
    assert_eq!(key, "kafka.brokerz");
    assert!(reason.contains("unknown field `brokerz`"), "{reason}");
    let (key, _) = invalid(&format!("{DEMO}\n[sevring]\nlisten = \"x\"\n"), &[]);
    assert_eq!(key, "sevring");
    let (key, _) = invalid(DEMO, &[("BRAID__SERVING__PORT", "1")]);
    assert_eq!(key, "serving.port");
    let (key, _) = invalid(
        &DEMO.replace("name = \"page\"\n", "name = \"page\"\nnullable = true\n"),
        &[],
    );
    assert_eq!(key, "schema.fields[4].nullable");
}

#[test]
fn wrong_types_name_the_key() {
    let (key, reason) = invalid(
        &format!("{DEMO}\n[postgres]\nmax_connections = \"many\"\n"),
        &[],
    );
    assert_eq!(key, "postgres.max_connections");
    assert!(reason.contains("invalid type"), "{reason}");
    let (key, _) = invalid(&DEMO.replace("type = \"i64\"", "type = \"int\""), &[]);
    assert_eq!(key, "schema.fields[7].type");
}

#[test]
fn syntax_errors_name_the_file_and_line() {
    let err = load("[kafka\n", &[]).unwrap_err();
    assert!(
        matches!(&err, ConfigError::Syntax { origin, .. } if origin == "test.toml"),
        "{err}"
    );
    assert!(err.to_string().contains("line 1"), "{err}");
}

#[test]
fn bad_environment_values_name_the_variable() {
    for (var, value, expected) in [
        (
            "BRAID__SPEED__FLUSH_INTERVAL_MS",
            "soon",
            "must be an integer",
        ),
        (
            "BRAID__JOBS__BATCH__ENABLED",
            "yes",
            "must be true or false",
        ),
        (
            "BRAID__KAFKA__BROKERS__HOST",
            "x",
            "is a value, not a section",
        ),
        ("BRAID__KAFKA", "x", "a section's keys"),
        ("BRAID____X", "x", "empty key segment"),
        (
            "BRAID__VIEWS__0__NAME",
            "x",
            "only be set in the config file",
        ),
    ] {
        match load(DEMO, &[(var, value)]) {
            Err(ConfigError::Env { var: named, reason }) => {
                assert_eq!(named, var);
                assert!(reason.contains(expected), "{var}: {reason}");
            }
            other => panic!("{var}: expected an env error, got {other:?}"),
        }
    }
}

/// A config file, the environment variables set over it, the key its error must name and the
/// words its reason must contain.
type ValueCheckCase = (
    String,
    Vec<(&'static str, &'static str)>,
    &'static str,
    &'static str,
);

#[test]
fn value_checks_name_the_key_and_reason() {
    let cases: Vec<ValueCheckCase> = vec![
        (
            DEMO.into(),
            vec![("BRAID__KAFKA__TOPIC", "bad topic")],
            "kafka.topic",
            "letters, digits",
        ),
        (
            DEMO.into(),
            vec![("BRAID__KAFKA__BROKERS", " ")],
            "kafka.brokers",
            "at least one broker",
        ),
        (
            DEMO.into(),
            vec![("BRAID__KAFKA__SINK_GROUP", "braid-speed")],
            "kafka.sink_group",
            "must differ",
        ),
        (
            DEMO.into(),
            vec![("BRAID__KAFKA__OPTIONS__GROUP.ID", "x")],
            "kafka.options.group.id",
            "set by Braid",
        ),
        (
            DEMO.into(),
            vec![("BRAID__KAFKA__OPTIONS__ISOLATION.LEVEL", "read_uncommitted")],
            "kafka.options.isolation.level",
            "committed records only",
        ),
        (
            DEMO.into(),
            vec![("BRAID__SCHEMA__MAX_GROUP_VALUE_BYTES", "4000")],
            "schema.max_group_value_bytes",
            "index entry",
        ),
        (
            DEMO.into(),
            vec![("BRAID__LAKE__URI", "gs://bucket/t")],
            "lake.uri",
            "scheme `gs` is not supported",
        ),
        (
            DEMO.into(),
            vec![("BRAID__LAKE__URI", "s3a:///t")],
            "lake.uri",
            "names no bucket",
        ),
        (
            DEMO.into(),
            vec![("BRAID__BATCH__SPARK__STAGING_URI", "hdfs://nn/staging")],
            "batch.spark.staging_uri",
            "scheme `hdfs` is not supported",
        ),
        (
            DEMO.into(),
            vec![("BRAID__BATCH__ENGINE", "flink")],
            "batch.engine",
            "unknown variant `flink`, expected `polars` or `spark`",
        ),
        (
            DEMO.into(),
            vec![("BRAID__BATCH__SLICE_RECORDS", "0")],
            "batch.slice_records",
            "must be at least 1",
        ),
        (
            DEMO.into(),
            vec![("BRAID__BATCH__SLICE_RECORDS", "-5")],
            "batch.slice_records",
            "-5",
        ),
        (
            DEMO.into(),
            vec![("BRAID__BATCH__SPARK__TIMEOUT_S", "-1")],
            "batch.spark.timeout_s",
            "-1",
        ),
        (
            DEMO.into(),
            vec![("BRAID__POSTGRES__URL", "mysql://x")],
            "postgres.url",
            "postgres://",
        ),
        (
            DEMO.into(),
            vec![("BRAID__POSTGRES__MAX_CONNECTIONS", "0")],
            "postgres.max_connections",
            "at least 1",
        ),
        (
            DEMO.into(),
            vec![("BRAID__SPEED__FLUSH_INTERVAL_MS", "0")],
            "speed.flush_interval_ms",
            "at least 1",
        ),
        (
            DEMO.into(),
            vec![("BRAID__JOBS__BATCH__SCHEDULE", "*/15 * * * *")],
            "jobs.batch.schedule",
            "six fields",
        ),
        (
            DEMO.into(),
            vec![("BRAID__SERVING__LISTEN", "localhost")],
            "serving.listen",
            "host:port",
        ),
        (
            DEMO.into(),
            vec![("BRAID__SCHEMA__EVENT_TIME", "page")],
            "schema.event_time",
            "required timestamp",
        ),
        (
            DEMO.into(),
            vec![("BRAID__SCHEMA__EVENT_TIME", "when")],
            "schema.event_time",
            "not a declared field",
        ),
        (
            DEMO.into(),
            vec![("BRAID__SCHEMA__EVENT_TIME_MIN", "2000")],
            "schema.event_time_min",
            "RFC 3339",
        ),
        (
            DEMO.into(),
            vec![("BRAID__SCHEMA__EVENT_TIME_MAX", "1999-01-01T00:00:00Z")],
            "schema.event_time_max",
            "later than",
        ),
        (
            DEMO.replace("name = \"page\"\n", "name = \"Page\"\n"),
            vec![],
            "schema.fields[4].name",
            "lowercase",
        ),
        (
            DEMO.replace("name = \"page\"\n", "name = \"_offset\"\n"),
            vec![],
            "schema.fields[4].name",
            "reserved",
        ),
        (
            DEMO.replace("name = \"page\"\n", "name = \"country\"\n"),
            vec![],
            "schema.fields[5].name",
            "declared twice",
        ),
        (
            DEMO.replace("event_time = \"ts\"\n", ""),
            vec![],
            "schema.event_time",
            "name the event-time field",
        ),
        (
            DEMO.replace("name = \"events_by_type\"", "name = \"page_views\""),
            vec![],
            "views[2]",
            "declared twice",
        ),
        (
            DEMO.replace("group_by = [\"event_type\"]", "group_by = [\"browser\"]"),
            vec![],
            "views[2]",
            "view `events_by_type`: group-by field `browser` is not in the schema",
        ),
    ];
    for (file, env, expected_key, expected_reason) in cases {
        let (key, reason) = invalid(&file, &env);
        assert_eq!(key, expected_key, "{reason}");
        assert!(
            reason.contains(expected_reason),
            "{key}: `{reason}` lacks `{expected_reason}`"
        );
    }
}

#[test]
fn missing_file_is_a_read_error_naming_the_path() {
    let err = BraidConfig::load(Some(Path::new("/nonexistent/braid.toml"))).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }));
    assert!(err.to_string().contains("/nonexistent/braid.toml"), "{err}");
}

#[test]
fn kafka_options_come_from_variables_with_underscores_and_from_files() {
    let dir = std::env::temp_dir().join(format!("braid-secret-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let secret = dir.join("sasl");
    std::fs::write(&secret, "from a file\n").unwrap();
    let config = BraidConfig::load_from(
        Some(("braid.toml", DEMO)),
        [
            (
                "BRAID_KAFKA_OPTION_SASL_USERNAME".to_string(),
                "braid".to_string(),
            ),
            (
                "BRAID_KAFKA_OPTION_SASL_PASSWORD_FILE".to_string(),
                secret.display().to_string(),
            ),
            (
                "BRAID_KAFKA_OPTION_SECURITY_PROTOCOL".to_string(),
                "SASL_PLAINTEXT".to_string(),
            ),
        ],
    )
    .unwrap();
    assert_eq!(config.kafka.options["sasl.username"], "braid");
    assert_eq!(config.kafka.options["sasl.password"], "from a file");
    assert_eq!(config.kafka.options["security.protocol"], "SASL_PLAINTEXT");
    let printed = format!("{config:?}");
    assert!(
        !printed.contains("from a file"),
        "secrets never print: {printed}"
    );

    let missing = BraidConfig::load_from(
        Some(("braid.toml", DEMO)),
        [(
            "BRAID_KAFKA_OPTION_SASL_PASSWORD_FILE".to_string(),
            "/nonexistent/secret".to_string(),
        )],
    )
    .unwrap_err()
    .to_string();
    assert!(
        missing.contains("BRAID_KAFKA_OPTION_SASL_PASSWORD_FILE")
            && missing.contains("/nonexistent/secret"),
        "{missing}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn avro_needs_a_registry_and_paths_need_avro() {
    let (key, reason) = invalid(DEMO, &[("BRAID__SCHEMA__FORMAT", "avro")]);
    assert_eq!(key, "schema_registry.url");
    assert!(reason.contains("registry"), "{reason}");
    let registry = (
        "BRAID__SCHEMA_REGISTRY__URL",
        "http://127.0.0.1:18081/apis/ccompat/v7",
    );
    let config = load(DEMO, &[("BRAID__SCHEMA__FORMAT", "avro"), registry]).unwrap();
    assert_eq!(config.schema.wire.name(), "avro");
    assert_eq!(load(DEMO, &[]).unwrap().schema.wire.name(), "json");
    let (key, _) = invalid(DEMO, &[("BRAID__SCHEMA__FORMAT", "xml"), registry]);
    assert_eq!(key, "schema.format");

    let with_path = DEMO.replacen(
        "name = \"user_id\"",
        "name = \"user_id\"\npath = \"user.id\"",
        1,
    );
    assert_ne!(with_path, DEMO, "the demo config declares user_id");
    let (key, reason) = invalid(&with_path, &[]);
    assert!(key.ends_with(".path"), "{key}");
    assert!(reason.contains("avro"), "{reason}");
    let config = load(&with_path, &[("BRAID__SCHEMA__FORMAT", "avro"), registry]).unwrap();
    assert_eq!(config.schema.field("user_id").unwrap().path(), "user.id");

    let bad_path = with_path.replace("user.id", "user..id");
    let (key, _) = invalid(&bad_path, &[("BRAID__SCHEMA__FORMAT", "avro"), registry]);
    assert!(key.ends_with(".path"), "{key}");
    let (key, _) = invalid(
        DEMO,
        &[
            registry,
            ("BRAID__SCHEMA_REGISTRY__TOKEN_ENV", "T"),
            ("BRAID__SCHEMA_REGISTRY__USERNAME", "u"),
        ],
    );
    assert_eq!(key, "schema_registry.token_env");
    for (settings, expected) in [
        (
            &[
                ("BRAID__SCHEMA_REGISTRY__TOKEN_FILE", "/run/t"),
                ("BRAID__SCHEMA_REGISTRY__USERNAME", "u"),
            ][..],
            "schema_registry.token_file",
        ),
        (
            &[
                ("BRAID__SCHEMA_REGISTRY__TOKEN_FILE", "/run/t"),
                ("BRAID__SCHEMA_REGISTRY__TOKEN_ENV", "T"),
            ],
            "schema_registry.token_file",
        ),
        (
            &[("BRAID__SCHEMA_REGISTRY__PASSWORD_FILE", "/run/p")],
            "schema_registry.password_file",
        ),
        (
            &[
                ("BRAID__SCHEMA_REGISTRY__USERNAME", "u"),
                ("BRAID__SCHEMA_REGISTRY__PASSWORD_FILE", "/run/p"),
                ("BRAID__SCHEMA_REGISTRY__PASSWORD_ENV", "P"),
            ],
            "schema_registry.password_file",
        ),
        (
            &[("BRAID__SCHEMA_REGISTRY__CERT_FILE", "/run/c.pem")],
            "schema_registry.key_file",
        ),
        (
            &[("BRAID__SCHEMA_REGISTRY__KEY_FILE", "/run/k.pem")],
            "schema_registry.cert_file",
        ),
    ] {
        let mut all = vec![registry];
        all.extend_from_slice(settings);
        let (key, _) = invalid(DEMO, &all);
        assert_eq!(key, expected, "{settings:?}");
    }
    let (key, _) = invalid(DEMO, &[("BRAID__SCHEMA_REGISTRY__URL", "ftp://x")]);
    assert_eq!(key, "schema_registry.url");
    let debug = format!(
        "{:?}",
        load(
            DEMO,
            &[(
                "BRAID__SCHEMA_REGISTRY__URL",
                "https://user:secret@registry/x"
            )]
        )
        .unwrap()
        .schema_registry
    );
    assert!(!debug.contains("secret"), "{debug}");
}

#[test]
fn a_path_inside_another_is_refused() {
    let registry = (
        "BRAID__SCHEMA_REGISTRY__URL",
        "http://127.0.0.1:18081/apis/ccompat/v7",
    );
    let avro = ("BRAID__SCHEMA__FORMAT", "avro");
    // user_id reads `user`, page reads `user.page`: `user` both a value and a record.
    let nested = DEMO
        .replacen(
            "name = \"user_id\"",
            "name = \"user_id\"\npath = \"user\"",
            1,
        )
        .replacen(
            "name = \"page\"",
            "name = \"page\"\npath = \"user.page\"",
            1,
        );
    let (key, reason) = invalid(&nested, &[avro, registry]);
    assert!(key.ends_with(".path"), "{key}");
    assert!(reason.contains("both a value and a record"), "{reason}");
    // Two fields reading one writer field.
    let twice = DEMO.replacen("name = \"page\"", "name = \"page\"\npath = \"user_id\"", 1);
    let (key, reason) = invalid(&twice, &[avro, registry]);
    assert!(key.ends_with(".path"), "{key}");
    assert!(reason.contains("user_id"), "{reason}");
}
