//! Avro and Protobuf topics through the real schema registry (Apicurio, Confluent's API) and
//! the real broker (this module: Avro, and what both share; `protobuf`: Protobuf): both layers
//! read a stream of generated events, hostile ones among them, a second writer
//! schema registered mid-stream, a transactional producer's committed and aborted records, and
//! messages that do not decode; their views, the lake and their dead letters must equal an
//! independent decoding (apache-avro's own reader, prost-reflect's) and fold. And a registry
//! that is down delays the layers without a single dead letter.

mod protobuf;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use apache_avro::Schema;
use apache_avro::types::Value as Avro;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::Value as Json;
use sqlx::PgPool;

use crate::compare::{Source, assert_rows_equal, read_rows};
use crate::oracle::{self, RawMessage};
use crate::support::{
    Pipeline, dead_letters, kafka_brokers, read_topic, run, sink_caught_up, speed_caught_up,
    stderr, wait_until,
};

/// The registry's Confluent API. Tests fail (not skip) without it.
pub fn registry_url() -> String {
    std::env::var("BRAID_SCHEMA_REGISTRY_URL").expect(
        "BRAID_SCHEMA_REGISTRY_URL is not set: start the services with scripts/services.sh up and eval its env",
    )
}

/// Registers `schema` under `subject` with plain HTTP (not Braid's client); its id. Apicurio's
/// in-memory storage answers 500 to registrations that collide (tests run in parallel): those
/// are tried again.
async fn register(subject: &str, schema_type: &str, schema: &str) -> u32 {
    let mut attempts = 0;
    let response = loop {
        attempts += 1;
        let response = reqwest::Client::new()
            .post(format!("{}/subjects/{subject}/versions", registry_url()))
            .header("Content-Type", "application/vnd.schemaregistry.v1+json")
            .body(serde_json::json!({ "schemaType": schema_type, "schema": schema }).to_string())
            .send()
            .await
            .unwrap();
        if response.status().is_server_error() && attempts < 10 {
            tokio::time::sleep(Duration::from_millis(100 * attempts)).await;
            continue;
        }
        break response;
    };
    assert!(response.status().is_success(), "{:?}", response.status());
    let body: Json = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    body["id"].as_u64().unwrap() as u32
}

/// The text of the writer schema of an id, from the registry (plain HTTP).
async fn schema_text(id: u32) -> Option<String> {
    let response = reqwest::get(format!("{}/schemas/ids/{id}", registry_url()))
        .await
        .unwrap();
    if response.status().as_u16() == 404 {
        return None;
    }
    let body: Json = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    Some(body["schema"].as_str().unwrap().to_string())
}

/// The Avro writer schema of an id.
async fn schema_of(id: u32) -> Option<Schema> {
    Some(Schema::parse_str(&schema_text(id).await?).unwrap())
}

/// A payload's schema id and what follows it, or the code the header makes it refused with
/// (size first, as validation checks it).
fn header(payload: &[u8]) -> Result<(u32, &[u8]), &'static str> {
    if payload.len() > 65_536 {
        return Err("too_large"); // schema.max_record_bytes, before anything else
    }
    if payload.is_empty() || payload.len() < 5 {
        return Err(if payload.first().is_some_and(|&b| b != 0) {
            "wrong_magic_byte"
        } else {
            "undecodable"
        });
    }
    if payload[0] != 0 {
        return Err("wrong_magic_byte");
    }
    Ok((
        u32::from_be_bytes(payload[1..5].try_into().unwrap()),
        &payload[5..],
    ))
}

/// A second version of the demo's writer schema, as a team evolves it: fields reordered, one
/// added with a default, an optional one turned into a union the other way round.
const V2: &str = r#"{"type": "record", "name": "Event", "namespace": "braid.generated", "fields": [
  {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-micros"}},
  {"name": "referrer", "type": "string", "default": ""},
  {"name": "event_id", "type": "string"},
  {"name": "event_type", "type": "string"},
  {"name": "user_id", "type": "string"},
  {"name": "page", "type": "string"},
  {"name": "country", "type": "string"},
  {"name": "device", "type": "string"},
  {"name": "price_cents", "type": ["null", "long"], "default": null},
  {"name": "duration_ms", "type": ["long", "null"]},
  {"name": "is_new_user", "type": ["null", "boolean"], "default": null}
]}"#;

/// A page view in V2's form, framed under `id`.
fn v2_page_view(
    id: u32,
    event_id: &str,
    page: &str,
    minute: u32,
    duration: Option<i64>,
) -> Vec<u8> {
    let schema = Schema::parse_str(V2).unwrap();
    let micros = 1_767_398_400_000_000 + i64::from(minute) * 60_000_000; // 2026-01-03
    let string = |s: &str| Avro::String(s.into());
    let datum = Avro::Record(vec![
        ("ts".into(), Avro::TimestampMicros(micros)),
        ("referrer".into(), string("https://example.org/\u{1F600}")),
        ("event_id".into(), string(event_id)),
        ("event_type".into(), string("page_view")),
        ("user_id".into(), string("u-avro")),
        ("page".into(), string(page)),
        ("country".into(), string("NL")),
        ("device".into(), string("mobile")),
        ("price_cents".into(), Avro::Union(0, Box::new(Avro::Null))),
        (
            "duration_ms".into(),
            match duration {
                Some(ms) => Avro::Union(0, Box::new(Avro::Long(ms))),
                None => Avro::Union(1, Box::new(Avro::Null)),
            },
        ),
        (
            "is_new_user".into(),
            Avro::Union(1, Box::new(Avro::Boolean(true))),
        ),
    ]);
    let body = apache_avro::writer::datum::GenericDatumWriter::builder(&schema)
        .build()
        .unwrap()
        .write_value_to_vec(datum)
        .unwrap();
    let mut payload = vec![0];
    payload.extend_from_slice(&id.to_be_bytes());
    payload.extend_from_slice(&body);
    payload
}

/// An Avro value as the JSON a JSON producer would have sent.
fn to_json(value: &Avro) -> Json {
    match value {
        Avro::Null => Json::Null,
        Avro::Boolean(b) => Json::Bool(*b),
        Avro::Int(i) => Json::from(*i),
        Avro::Long(i) => Json::from(*i),
        Avro::Double(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
        Avro::String(s) | Avro::Enum(_, s) => Json::String(s.clone()),
        // Whole milliseconds as epoch milliseconds, others as RFC 3339; beyond chrono's range
        // (refused either way) as milliseconds.
        Avro::TimestampMicros(micros) => match chrono::DateTime::from_timestamp_micros(*micros) {
            Some(time) if micros % 1_000 != 0 => {
                Json::String(time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
            }
            _ => Json::from(micros.div_euclid(1_000)),
        },
        Avro::Union(_, inner) => to_json(inner),
        Avro::Record(fields) => Json::Object(
            fields
                .iter()
                .map(|(name, value)| (name.clone(), to_json(value)))
                .collect(),
        ),
        other => panic!("the demo schemas hold no {other:?}"),
    }
}

/// The oracle's view of one message: its JSON form when it decodes (by apache-avro's reader and
/// the registry's schema), or the code it must be refused with.
enum Decoded {
    Json(Vec<u8>),
    Refused(&'static str),
}

async fn decode(payload: &[u8], schemas: &mut BTreeMap<u32, Option<Schema>>) -> Decoded {
    let (id, mut body) = match header(payload) {
        Ok(split) => split,
        Err(code) => return Decoded::Refused(code),
    };
    if let std::collections::btree_map::Entry::Vacant(entry) = schemas.entry(id) {
        entry.insert(schema_of(id).await);
    }
    let Some(schema) = &schemas[&id] else {
        return Decoded::Refused("unknown_schema_id");
    };
    let reader = apache_avro::reader::datum::GenericDatumReader::builder(schema)
        .build()
        .unwrap();
    match reader.read_value(&mut body) {
        Ok(value) if body.is_empty() => Decoded::Json(to_json(&value).to_string().into_bytes()),
        _ => Decoded::Refused("undecodable"),
    }
}

/// The messages as the oracle sees them: the decodable ones that `refusal` (a JSON oracle's,
/// e.g. [`oracle::refusal`]) accepts, in their JSON form (for the fold), and the refusals every
/// layer must dead-letter.
pub async fn oracle_of(
    messages: &[RawMessage],
    refusal: fn(&[u8]) -> Option<&'static str>,
) -> (Vec<RawMessage>, BTreeSet<(i32, i64, String)>) {
    let mut schemas = BTreeMap::new();
    let mut decoded = Vec::new();
    for message in messages {
        decoded.push(decode(&message.payload, &mut schemas).await);
    }
    oracle_of_decoded(messages, decoded, refusal)
}

/// The oracle's verdicts, from each message's decoding and `refusal`.
fn oracle_of_decoded(
    messages: &[RawMessage],
    decoded: Vec<Decoded>,
    refusal: fn(&[u8]) -> Option<&'static str>,
) -> (Vec<RawMessage>, BTreeSet<(i32, i64, String)>) {
    let mut accepted = Vec::new();
    let mut refused = BTreeSet::new();
    for (message, decoded) in messages.iter().zip(decoded) {
        let code = match decoded {
            Decoded::Json(json) => match refusal(&json) {
                None => {
                    accepted.push(RawMessage {
                        payload: json,
                        ..message.clone()
                    });
                    continue;
                }
                Some(code) => code,
            },
            Decoded::Refused(code) => code,
        };
        refused.insert((message.partition, message.offset, code.to_string()));
    }
    (accepted, refused)
}

/// The environment of a pipeline reading a topic in `format` through the registry at
/// `registry`.
pub fn registry_pipeline_env(format: &str, registry: &str) -> Vec<(String, String)> {
    vec![
        ("BRAID__SCHEMA__FORMAT".into(), format.into()),
        ("BRAID__SCHEMA_REGISTRY__URL".into(), registry.into()),
        ("BRAID__SCHEMA_REGISTRY__RETRY_MAX_MS".into(), "500".into()),
    ]
}

/// Produces `count` seeded demo events in `format` on 2 partitions, the writer schema
/// registered in the registry itself (whatever the pipeline's layers reach), with `fractions`
/// (generate's `--…-fraction` options).
fn generate_in(format: &str, pipeline: &Pipeline, count: u64, seed: u64, fractions: &[&str]) {
    let output = run(pipeline
        .braid()
        .env("BRAID__SCHEMA_REGISTRY__URL", registry_url())
        .args([
            "generate",
            "--format",
            format,
            "--rate",
            "0",
            "--partitions",
            "2",
        ])
        .args(["--count", &count.to_string(), "--seed", &seed.to_string()])
        .args(fractions));
    assert!(output.status.success(), "generate: {}", stderr(&output));
}

/// A registry format as these tests use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TestFormat {
    Avro,
    Protobuf,
}

impl TestFormat {
    /// As `schema.format` and `braid generate --format` name it.
    fn name(self) -> &'static str {
        match self {
            TestFormat::Avro => "avro",
            TestFormat::Protobuf => "protobuf",
        }
    }

    /// The registry's `schemaType` and the text of the demo's second writer schema.
    fn v2(self) -> (&'static str, &'static str) {
        match self {
            TestFormat::Avro => ("AVRO", V2),
            TestFormat::Protobuf => ("PROTOBUF", protobuf::V2),
        }
    }

    /// A page view in the second schema's form, framed under `id`.
    fn v2_page_view(
        self,
        id: u32,
        event_id: &str,
        page: &str,
        minute: u32,
        duration: Option<i64>,
    ) -> Vec<u8> {
        match self {
            TestFormat::Avro => v2_page_view(id, event_id, page, minute, duration),
            TestFormat::Protobuf => protobuf::v2_page_view(id, event_id, page, minute, duration),
        }
    }

    /// The oracle's verdicts on the topic's messages.
    async fn oracle(
        self,
        messages: &[RawMessage],
    ) -> (Vec<RawMessage>, BTreeSet<(i32, i64, String)>) {
        match self {
            TestFormat::Avro => oracle_of(messages, oracle::refusal).await,
            TestFormat::Protobuf => protobuf::oracle_of(messages).await,
        }
    }
}

/// Both layers read a generated stream in `format` with hostile records, then, mid-stream, a
/// second writer schema's records from a transactional producer (one transaction aborted, one
/// committed) and messages that do not decode (`undecodable`: the format's own, beside the
/// shared ones). Their dead letters, the merged views, the lake (through a batch run) and the
/// SQL views must equal the oracle's decoding and fold.
async fn streams_agree_with_an_independent_decoding(
    pool: PgPool,
    format: TestFormat,
    seed: u64,
    undecodable: fn(&[u8]) -> Vec<Vec<u8>>,
) {
    let pipeline = Pipeline::with_env(
        format.name(),
        &pool,
        registry_pipeline_env(format.name(), &registry_url()),
    )
    .await;
    let fractions = [
        "--late-fraction",
        "0.1",
        "--malformed-fraction",
        "0.05",
        "--hostile-fraction",
        "0.1",
    ];
    generate_in(format.name(), &pipeline, 3_000, seed, &fractions);
    let mut speed = pipeline.start_speed("0", "speed");
    let mut sink = pipeline.start_sink("0", "sink");
    speed_caught_up(&pool, &pipeline, &mut [&mut speed, &mut sink]).await;

    let (schema_type, text) = format.v2();
    let v2 = register(&format!("{}-value", pipeline.topic), schema_type, text).await;
    let transactional: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .set("transactional.id", format!("{}.tx", pipeline.topic))
        .create()
        .unwrap();
    transactional
        .init_transactions(Duration::from_secs(30))
        .unwrap();
    for (commit, prefix) in [(false, "aborted"), (true, "committed")] {
        transactional.begin_transaction().unwrap();
        for i in 0..20 {
            let payload = format.v2_page_view(
                v2,
                &format!("{prefix}-{i}"),
                &format!("/v2/{}", i % 3),
                i % 5,
                (i % 4 != 0).then_some(i64::from(i) * 10),
            );
            transactional
                .send(
                    BaseRecord::to(&pipeline.topic)
                        .partition((i % 2) as i32)
                        .key("v2")
                        .payload(&payload),
                )
                .unwrap();
        }
        // Delivered before the transaction ends, so that an abort has records to abort.
        transactional.flush(Duration::from_secs(30)).unwrap();
        if commit {
            transactional
                .commit_transaction(Duration::from_secs(30))
                .unwrap();
        } else {
            transactional
                .abort_transaction(Duration::from_secs(30))
                .unwrap();
        }
    }
    let valid = format.v2_page_view(v2, "cut", "/cut", 1, Some(5));
    let mut unknown = valid.clone();
    unknown[1..5].copy_from_slice(&999_999u32.to_be_bytes());
    let mut hostile: Vec<Vec<u8>> = vec![
        valid[..valid.len() - 3].to_vec(), // truncated
        unknown,
        [&[1u8][..], &valid[1..]].concat(), // wrong magic byte
        format!(r#"{{"event_id":"json on a {} topic"}}"#, format.name()).into_bytes(),
        Vec::new(), // empty
        vec![0, 0, 0],
        format.v2_page_view(v2, "nul\0id", "/nul", 2, None),
    ];
    hostile.extend(undecodable(&valid));
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .create()
        .unwrap();
    for payload in &hostile {
        producer
            .send(
                BaseRecord::to(&pipeline.topic)
                    .partition(0)
                    .key("hostile")
                    .payload(payload),
            )
            .unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    speed_caught_up(&pool, &pipeline, &mut [&mut speed, &mut sink]).await;
    sink_caught_up(&pipeline, &mut sink).await;

    let messages = read_topic(&pipeline.topic);
    let (accepted, expected) = format.oracle(&messages).await;
    let codes: BTreeSet<&str> = expected.iter().map(|(_, _, c)| c.as_str()).collect();
    for code in [
        "wrong_magic_byte",
        "undecodable",
        "unknown_schema_id",
        "unstorable_text",
    ] {
        assert!(codes.contains(code), "the stream covers {code}: {codes:?}");
    }
    assert!(
        accepted
            .iter()
            .any(|m| String::from_utf8_lossy(&m.payload).contains("committed-")),
        "the committed transaction's records are read"
    );
    assert!(
        !accepted
            .iter()
            .any(|m| String::from_utf8_lossy(&m.payload).contains("aborted-")),
        "the aborted transaction's records are not"
    );
    assert_eq!(
        dead_letters(&pool, "sink").await,
        expected,
        "the sink's dead letters"
    );
    assert_eq!(
        dead_letters(&pool, "speed").await,
        expected,
        "the speed layer's dead letters"
    );

    let truth = oracle::demo_views(accepted.iter());
    let merged = read_rows(&mut pool.acquire().await.unwrap(), Source::Merged).await;
    assert_rows_equal(&truth, &merged, "speed rows");
    // The lake holds every accepted record: a batch run from it gives the same answers.
    let batch = run(pipeline
        .braid()
        .args(["batch", "run", "--wait-timeout", "120"]));
    assert!(batch.status.success(), "batch run: {}", stderr(&batch));
    let merged = read_rows(&mut pool.acquire().await.unwrap(), Source::Merged).await;
    assert_rows_equal(&truth, &merged, "after a batch run over the lake");
    let serving = read_rows(&mut pool.acquire().await.unwrap(), Source::Serving).await;
    assert_rows_equal(&truth, &serving, "the SQL views after a batch run");
    speed.assert_running("braid speed");
    sink.assert_running("braid sink");
}

#[sqlx::test(migrations = false)]
async fn avro_streams_agree_with_an_independent_decoding_in_both_layers(pool: PgPool) {
    // Avro's own: a byte left over after the datum.
    streams_agree_with_an_independent_decoding(pool, TestFormat::Avro, 31, |valid| {
        vec![[valid, &[0]].concat()]
    })
    .await;
}

/// A proxy to the registry that refuses connections while `down` is set; its URL.
async fn registry_proxy(down: Arc<AtomicBool>) -> String {
    let upstream = registry_url();
    let rest = upstream.trim_start_matches("http://");
    let (authority, path) = rest.split_once('/').unwrap();
    let local = crate::support::tcp_proxy(authority.to_string(), down).await;
    format!("http://{local}/{path}")
}

#[sqlx::test(migrations = false)]
async fn a_registry_that_is_down_delays_both_layers_and_refuses_nothing(pool: PgPool) {
    registry_down_delays_both_layers(pool, TestFormat::Avro).await;
}

/// A registry that is down delays both layers reading a topic in `format` and refuses nothing.
async fn registry_down_delays_both_layers(pool: PgPool, format: TestFormat) {
    let down = Arc::new(AtomicBool::new(true));
    let proxied = registry_proxy(Arc::clone(&down)).await;
    let pipeline = Pipeline::with_env(
        &format!("{}_down", format.name()),
        &pool,
        registry_pipeline_env(format.name(), &proxied),
    )
    .await;
    // Registered and produced through the registry itself; the layers only reach the proxy.
    generate_in(
        format.name(),
        &pipeline,
        1_000,
        5,
        &["--malformed-fraction", "0"],
    );
    let mut speed = pipeline.start_speed("0", "speed");
    let mut sink = pipeline.start_sink("0", "sink");
    let waiting = |layer: &'static str| {
        let pipeline = pipeline.clone();
        move || {
            let log = crate::support::log_of(&pipeline, layer, "0");
            async move { log.matches("cannot fetch a writer schema").count() >= 3 }
        }
    };
    wait_until(
        "the speed layer to retry the registry",
        Duration::from_secs(60),
        waiting("speed"),
    )
    .await;
    wait_until(
        "the sink to retry the registry",
        Duration::from_secs(60),
        waiting("sink"),
    )
    .await;
    speed.assert_running("braid speed");
    sink.assert_running("braid sink");
    assert!(dead_letters(&pool, "speed").await.is_empty());
    assert!(dead_letters(&pool, "sink").await.is_empty());
    assert_eq!(
        crate::support::stored_total(&pool, &pipeline.topic).await,
        0
    );

    down.store(false, Ordering::Relaxed);
    speed_caught_up(&pool, &pipeline, &mut [&mut speed, &mut sink]).await;
    sink_caught_up(&pipeline, &mut sink).await;
    let messages = read_topic(&pipeline.topic);
    let (accepted, expected) = format.oracle(&messages).await;
    // No malformed or hostile records were generated: every message is accepted once the
    // registry answers, and none was refused for the outage.
    assert_eq!(accepted.len(), 1_000, "{expected:?}");
    assert_eq!(dead_letters(&pool, "speed").await, expected);
    assert_eq!(dead_letters(&pool, "sink").await, expected);
    let truth = oracle::demo_views(accepted.iter());
    let merged = read_rows(&mut pool.acquire().await.unwrap(), Source::Merged).await;
    assert_rows_equal(&truth, &merged, "after the registry came back");
}
