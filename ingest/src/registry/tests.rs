//! The registry client and loader against a scripted HTTP server on 127.0.0.1: the failures a
//! real registry cannot be made to show on demand (503s, nonsense, a wrong URL's 404, a
//! closed port). The real registry (Apicurio) is exercised by the integration tests.

use std::collections::VecDeque;
use std::sync::Mutex;

use schemas::wire::WireFormat;
use schemas::{FieldDef, FieldType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

/// Answers each request with the next scripted (status, body), then 500s; records requests.
struct Scripted {
    url: String,
    requests: Arc<Mutex<Vec<String>>>,
}

async fn scripted(answers: Vec<(u16, &'static str)>) -> Scripted {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/apis/ccompat/v7", listener.local_addr().unwrap());
    let requests = Arc::new(Mutex::new(Vec::new()));
    let answers = Arc::new(Mutex::new(VecDeque::from(answers)));
    let seen = Arc::clone(&requests);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut request = Vec::new();
            let mut buffer = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match socket.read(&mut buffer).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buffer[..n]),
                }
            }
            seen.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&request).into_owned());
            let (status, body) = answers.lock().unwrap().pop_front().unwrap_or((500, "{}"));
            let response = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
        }
    });
    Scripted { url, requests }
}

fn config(url: &str) -> SchemaRegistryConfig {
    SchemaRegistryConfig {
        url: url.into(),
        username: String::new(),
        password_env: String::new(),
        password_file: String::new(),
        token_env: String::new(),
        token_file: String::new(),
        ca_file: String::new(),
        cert_file: String::new(),
        key_file: String::new(),
        timeout_ms: schemas::duration::Millis(2_000),
        retry_max_ms: schemas::duration::Millis(400),
    }
}

fn event_schema() -> EventSchema {
    let field = |name: &str, field_type| FieldDef {
        name: name.into(),
        field_type,
        required: true,
        path: None,
    };
    EventSchema {
        fields: vec![
            field("ts", FieldType::Timestamp),
            field("user", FieldType::String),
        ],
        event_time_index: 0,
        max_record_bytes: 1024,
        max_string_bytes: 64,
        event_time_min_micros: 0,
        event_time_max_micros: i64::MAX,
        wire: WireFormat::avro(),
    }
}

const SCHEMA_ANSWER: &str = r#"{"schema": "{\"type\":\"record\",\"name\":\"E\",\"fields\":[{\"name\":\"ts\",\"type\":\"long\"},{\"name\":\"user\",\"type\":\"string\"}]}"}"#;

fn payload(id: u32) -> Vec<u8> {
    let mut payload = vec![0];
    payload.extend_from_slice(&id.to_be_bytes());
    payload.extend_from_slice(&[2, 4, b'a', b'b']); // ts 1, user "ab"
    payload
}

#[tokio::test]
async fn answers_are_classified() {
    let registry = scripted(vec![
        (200, SCHEMA_ANSWER),
        (
            200,
            r#"{"schema": "syntax = \"proto3\";", "schemaType": "PROTOBUF"}"#,
        ),
        (
            404,
            r#"{"error_code": 40403, "message": "Schema 9 not found"}"#,
        ),
        (404, "<html>Not Found</html>"),
        (200, r#"{"subject": "x"}"#),
        (401, r#"{"error_code": 401}"#),
    ])
    .await;
    let client = RegistryClient::new(&config(&format!("{}/", registry.url))).unwrap();
    assert!(matches!(
        client.schema_by_id(1).await,
        Ok(Lookup::Found { schema_type, .. }) if schema_type == "AVRO"
    ));
    assert!(matches!(
        client.schema_by_id(2).await,
        Ok(Lookup::Found { schema_type, .. }) if schema_type == "PROTOBUF"
    ));
    assert_eq!(client.schema_by_id(9).await.unwrap(), Lookup::Unknown);
    // A 404 that is not the registry's "no such schema" (a wrong URL): an error, retried.
    assert!(matches!(
        client.schema_by_id(9).await,
        Err(RegistryError::Status { status: 404, .. })
    ));
    assert!(matches!(
        client.schema_by_id(3).await,
        Err(RegistryError::BadAnswer { id: 3, .. })
    ));
    assert!(matches!(
        client.schema_by_id(4).await,
        Err(RegistryError::Status { status: 401, .. })
    ));
    let requests = registry.requests.lock().unwrap();
    assert!(
        requests[0].starts_with("GET /apis/ccompat/v7/schemas/ids/1 "),
        "{}",
        requests[0]
    );
}

/// Down, then nonsense, then a wrong URL's 404, then the schema: the loader waits through all
/// of it and loads the schema; the record then validates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loader_waits_out_an_outage_and_loads() {
    let registry = scripted(vec![
        (503, "{}"),
        (200, "not json"),
        (404, "no such path"),
        (200, SCHEMA_ANSWER),
    ])
    .await;
    let schema = event_schema();
    let loader = SchemaLoader::new(&schema, &config(&registry.url), "test")
        .unwrap()
        .expect("an Avro schema has a loader");
    let runtime = tokio::runtime::Handle::current();
    let stop = AtomicBool::new(false);
    let loaded = tokio::task::spawn_blocking(move || {
        let loaded = loader.ensure(&payload(5), &runtime, &stop);
        // Loaded once: no second request.
        loader.ensure(&payload(5), &runtime, &stop);
        loaded
    })
    .await
    .unwrap();
    assert!(loaded);
    assert_eq!(registry.requests.lock().unwrap().len(), 4);
    let record = schema.validate(&payload(5)).unwrap();
    assert_eq!(record.event_time_micros, 1_000); // 1 ms
}

/// A registry that never answers: the loader waits until stopped, loads nothing, and so no
/// record is refused for the outage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_ends_the_wait_without_loading() {
    // A port nothing listens on.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let schema = event_schema();
    let loader = SchemaLoader::new(&schema, &config(&url), "test")
        .unwrap()
        .unwrap();
    let runtime = tokio::runtime::Handle::current();
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = Arc::clone(&stop);
    let waiting = tokio::task::spawn_blocking(move || loader.ensure(&payload(6), &runtime, &stop));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "still waiting for the registry");
    stopping.store(true, Ordering::Relaxed);
    assert!(!waiting.await.unwrap());
    assert!(schema.wire.writer_schemas().unwrap().is_empty());
}

/// A plain "no such id" and a schema that does not resolve are loaded as such: their records
/// are refused with the reason, and not asked for again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_unresolvable_ids_are_remembered() {
    let registry = scripted(vec![
        (404, r#"{"error_code": 40403, "message": "not found"}"#),
        (200, r#"{"schema": "{\"type\":\"record\",\"name\":\"E\",\"fields\":[{\"name\":\"ts\",\"type\":\"string\"}]}"}"#),
    ])
    .await;
    let schema = event_schema();
    let loader = SchemaLoader::new(&schema, &config(&registry.url), "test")
        .unwrap()
        .unwrap();
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let stop = AtomicBool::new(false);
        assert!(loader.ensure(&payload(7), &runtime, &stop));
        assert!(loader.ensure(&payload(8), &runtime, &stop));
        assert!(loader.ensure(&payload(7), &runtime, &stop));
        // No header: nothing to load.
        assert!(loader.ensure(b"{}", &runtime, &stop));
    })
    .await
    .unwrap();
    assert_eq!(registry.requests.lock().unwrap().len(), 2);
    assert_eq!(
        schema.validate(&payload(7)).unwrap_err().code(),
        "unknown_schema_id"
    );
    assert_eq!(
        schema.wire.writer_schemas().unwrap().len(),
        1,
        "an unknown id is remembered by the loader only (bounded), not among the schemas"
    );
    let rejection = schema.validate(&payload(8)).unwrap_err();
    assert_eq!(rejection.code(), "unresolvable_schema");
    assert!(rejection.to_string().contains("`user`"), "{rejection}");
}

#[test]
fn secrets_come_from_the_environment_and_never_show() {
    let mut config = config("https://registry.example/apis/ccompat/v7");
    config.token_env = "BRAID_TEST_REGISTRY_TOKEN_THAT_IS_NOT_SET".into();
    assert!(matches!(
        RegistryClient::new(&config),
        Err(RegistryError::MissingSecret {
            key: "schema_registry.token_env",
            ..
        })
    ));
    let mut config = self::config("https://user:hunter2@registry.example/x");
    config.ca_file = "/nonexistent/ca.pem".into();
    let error = RegistryClient::new(&config).unwrap_err();
    assert!(matches!(error, RegistryError::CaFile { .. }), "{error}");
    config.ca_file = String::new();
    let client = RegistryClient::new(&config).unwrap();
    assert!(!format!("{client:?}").contains("hunter2"));
}

/// An id past i32 names no schema in any registry: unknown at once, without a request; a
/// schema with references to other subjects does not resolve (not read yet).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_past_i32_and_references() {
    let registry = scripted(vec![(
        200,
        r#"{"schema": "{\"type\":\"record\",\"name\":\"E\",\"fields\":[{\"name\":\"ts\",\"type\":\"long\"},{\"name\":\"user\",\"type\":\"Other\"}]}", "references": [{"name": "Other", "subject": "other-value", "version": 1}]}"#,
    )])
    .await;
    let schema = event_schema();
    let loader = SchemaLoader::new(&schema, &config(&registry.url), "test")
        .unwrap()
        .unwrap();
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let stop = AtomicBool::new(false);
        assert!(loader.ensure(&payload(0x8000_0000), &runtime, &stop));
        assert!(loader.ensure(&payload(u32::MAX), &runtime, &stop));
        assert!(loader.ensure(&payload(11), &runtime, &stop));
    })
    .await
    .unwrap();
    assert_eq!(
        registry.requests.lock().unwrap().len(),
        1,
        "only id 11 was asked for"
    );
    assert_eq!(
        schema.wire.writer_schemas().unwrap().len(),
        1,
        "ids past i32 are not remembered (a flood of them cannot grow the map)"
    );
    assert_eq!(
        schema.validate(&payload(0x8000_0000)).unwrap_err().code(),
        "unknown_schema_id"
    );
    let rejection = schema.validate(&payload(11)).unwrap_err();
    assert_eq!(rejection.code(), "unresolvable_schema");
    assert!(rejection.to_string().contains("references"), "{rejection}");
}

/// A Protobuf schema may refer to the well-known `google/protobuf/` files (Confluent's
/// serializers register them as references): they resolve. Any other reference does not, and
/// the reason names it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protobuf_references_to_well_known_files_resolve() {
    let text = r#"syntax = \"proto3\";\nimport \"google/protobuf/timestamp.proto\";\nmessage E { int64 ts = 1; string user = 2; google.protobuf.Timestamp at = 3; }"#;
    let answer = |reference: &str| {
        format!(
            r#"{{"schemaType": "PROTOBUF", "schema": "{text}", "references": [{{"name": "{reference}", "subject": "x", "version": 1}}]}}"#
        )
    };
    // The scripted registry serves answers for the whole test run.
    let well_known: &'static str = answer("google/protobuf/timestamp.proto").leak();
    let other: &'static str = answer("acme/other.proto").leak();
    let registry = scripted(vec![(200, well_known), (200, other)]).await;
    let mut schema = event_schema();
    schema.wire = WireFormat::protobuf();
    let loader = SchemaLoader::new(&schema, &config(&registry.url), "test")
        .unwrap()
        .unwrap();
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let stop = AtomicBool::new(false);
        assert!(loader.ensure(&proto_payload(1), &runtime, &stop));
        assert!(loader.ensure(&proto_payload(2), &runtime, &stop));
    })
    .await
    .unwrap();
    let record = schema.validate(&proto_payload(1)).unwrap();
    assert_eq!(record.event_time_micros, 1_000);
    let rejection = schema.validate(&proto_payload(2)).unwrap_err();
    assert_eq!(rejection.code(), "unresolvable_schema");
    assert!(
        rejection.to_string().contains("acme/other.proto"),
        "{rejection}"
    );
}

/// A Protobuf payload naming `id`: the first message, ts 1 (ms), user "ab".
fn proto_payload(id: u32) -> Vec<u8> {
    let mut payload = vec![0];
    payload.extend_from_slice(&id.to_be_bytes());
    payload.extend_from_slice(&[0, 0x08, 0x01, 0x12, 0x02, b'a', b'b']);
    payload
}

/// An id the registry did not know is asked for again once `unknown_ttl` has passed: a schema
/// registered since (or on a replica that lagged) is then read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_ids_are_asked_for_again_after_a_while() {
    let registry = scripted(vec![
        (404, r#"{"error_code": 40403, "message": "not found"}"#),
        (200, SCHEMA_ANSWER),
    ])
    .await;
    let schema = event_schema();
    let loader = SchemaLoader::new(&schema, &config(&registry.url), "test")
        .unwrap()
        .unwrap()
        .with_unknown_ttl(Duration::ZERO);
    let runtime = tokio::runtime::Handle::current();
    let checked = schema.clone();
    tokio::task::spawn_blocking(move || {
        let stop = AtomicBool::new(false);
        assert!(loader.ensure(&payload(7), &runtime, &stop));
        assert_eq!(
            checked.validate(&payload(7)).unwrap_err().code(),
            "unknown_schema_id"
        );
        assert!(loader.ensure(&payload(7), &runtime, &stop));
    })
    .await
    .unwrap();
    assert_eq!(registry.requests.lock().unwrap().len(), 2);
    assert!(schema.validate(&payload(7)).is_ok());
}

/// Secrets from files (mounted secrets): the token or password is sent, its final newline
/// dropped; a missing or empty file stops the start naming the key, never the content.
#[tokio::test]
async fn secrets_come_from_files() {
    let dir = std::env::temp_dir().join(format!("braid-registry-secrets-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let token = dir.join("token");
    std::fs::write(&token, "s3cr3t-token\n").unwrap();
    let registry = scripted(vec![(200, SCHEMA_ANSWER), (200, SCHEMA_ANSWER)]).await;
    let mut with_token = config(&registry.url);
    with_token.token_file = token.to_string_lossy().into_owned();
    RegistryClient::new(&with_token)
        .unwrap()
        .schema_by_id(1)
        .await
        .unwrap();
    let password = dir.join("password");
    std::fs::write(&password, "pa55").unwrap();
    let mut with_password = config(&registry.url);
    with_password.username = "braid".into();
    with_password.password_file = password.to_string_lossy().into_owned();
    RegistryClient::new(&with_password)
        .unwrap()
        .schema_by_id(1)
        .await
        .unwrap();
    let requests = registry.requests.lock().unwrap().clone();
    assert!(
        requests[0].contains("authorization: Bearer s3cr3t-token\r\n"),
        "{}",
        requests[0]
    );
    // braid:pa55 in base64.
    assert!(
        requests[1].contains("authorization: Basic YnJhaWQ6cGE1NQ=="),
        "{}",
        requests[1]
    );
    std::fs::write(&token, "").unwrap();
    let error = RegistryClient::new(&with_token).unwrap_err();
    assert!(
        matches!(
            error,
            RegistryError::SecretFile {
                key: "schema_registry.token_file",
                ..
            }
        ),
        "{error}"
    );
    with_token.token_file = dir.join("absent").to_string_lossy().into_owned();
    let error = RegistryClient::new(&with_token).unwrap_err().to_string();
    assert!(error.contains("schema_registry.token_file"), "{error}");
    let mut certificate = config(&registry.url);
    certificate.cert_file = dir.join("absent.pem").to_string_lossy().into_owned();
    certificate.key_file = certificate.cert_file.clone();
    assert!(matches!(
        RegistryClient::new(&certificate),
        Err(RegistryError::ClientCertificate { .. })
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}
