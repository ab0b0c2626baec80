//! Hostile input against the real `braid serve` (issue 22): every operation and every
//! parameter that the server's own /openapi.json documents is sent values generated to be
//! hostile (arbitrary bytes percent-encoded, invalid UTF-8, NUL, numbers and times out of any
//! range, SQL, oversized text), one parameter at a time with the others valid. No answer may be
//! a 5xx or a dropped connection; every 4xx is the documented JSON error, its status is one the
//! document lists for the operation, and a 400 names the parameter that was made hostile.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};
use serde_json::Value;
use sqlx::PgPool;

use crate::support::{Pipeline, log_of};

const TOKEN: &str = "fuzz-admin-token";
/// Generated values per parameter, on top of the fixed hostile list.
const CASES_PER_PARAMETER: usize = 48;

/// One response: its status, content type and body, as received.
struct Answer {
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

fn header_value<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let Some(end) = raw.windows(2).position(|w| w == b"\r\n") else {
            return body;
        };
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&raw[..end])
                .split(';')
                .next()
                .unwrap_or("0")
                .trim(),
            16,
        )
        .unwrap_or(0);
        if size == 0 {
            return body;
        }
        body.extend_from_slice(&raw[end + 2..end + 2 + size]);
        raw = &raw[end + 2 + size + 2..];
    }
}

/// Sends one request of raw bytes and reads the whole answer; `None` when the server closed
/// the connection without one (a panic in a handler does that).
fn exchange(address: &str, request: &[u8]) -> Option<Answer> {
    let mut stream = TcpStream::connect(address).expect("connect to braid serve");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    // A server may answer (413) before reading all of a large body: read the answer anyway.
    let _ = stream.write_all(request);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let split = response.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let raw_body = &response[split + 4..];
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let body = if header_value(&head, "transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        dechunk(raw_body)
    } else {
        raw_body.to_vec()
    };
    Some(Answer {
        status,
        content_type: header_value(&head, "content-type")
            .unwrap_or("")
            .to_string(),
        body,
    })
}

fn request_bytes(method: &str, target: &str, headers: &[(&str, Vec<u8>)], body: &[u8]) -> Vec<u8> {
    let mut request = format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n", body.len()).into_bytes();
    for (name, value) in headers {
        request.extend_from_slice(name.as_bytes());
        request.extend_from_slice(b": ");
        request.extend_from_slice(value);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"\r\n");
    request.extend_from_slice(body);
    request
}

/// Percent-encodes every byte outside the unreserved set, so that any byte string travels.
pub(super) fn encode(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Values chosen by hand: the classics that break parsers and databases.
fn fixed_hostile_values() -> Vec<Vec<u8>> {
    let texts: Vec<String> = vec![
        String::new(),
        " ".into(),
        "\0".into(),
        "abc\0def".into(),
        "'; DROP TABLE braid_internal.epoch; --".into(),
        "count:desc;SELECT pg_sleep(10)".into(),
        "(SELECT 1)".into(),
        "1e309".into(),
        "-1".into(),
        "0".into(),
        "-0".into(),
        "+5".into(),
        "0x10".into(),
        "NaN".into(),
        "inf".into(),
        "9223372036854775807".into(),
        "9223372036854775808".into(),
        "-9223372036854775809".into(),
        "340282366920938463463374607431768211456".into(),
        "18446744073709551615s".into(),
        "9223372036854775807m".into(),
        "99999999999999999999d".into(),
        "0s".into(),
        "-5m".into(),
        "1.5m".into(),
        "5 m".into(),
        "0000-01-01T00:00:00Z".into(),
        "9999-12-31T23:59:59Z".into(),
        "+275760-09-13T00:00:00Z".into(),
        "-000001-01-01T00:00:00Z".into(),
        "2026-02-30T00:00:00Z".into(),
        "2026-01-01T00:00:00+23:59".into(),
        "2026-01-01T00:00:00-23:59".into(),
        "2026-01-01T24:00:00Z".into(),
        "2026-01-01T23:59:60Z".into(),
        "2026-01-01T00:00:00.9999999999999999Z".into(),
        "\u{202E}gnp.exe".into(),
        "\u{FFFD}".into(),
        "😀".repeat(100),
        "a".repeat(5000),
        ",,,".into(),
        "count:desc,count:asc".into(),
        "count:".into(),
        ":desc".into(),
        "true".into(),
        "TRUE".into(),
        "null".into(),
        "[]".into(),
        "{}".into(),
        "%".into(),
        "%zz".into(),
        "\\".into(),
        "\"".into(),
    ];
    let mut values: Vec<Vec<u8>> = texts.into_iter().map(String::into_bytes).collect();
    // Not UTF-8 once percent-decoded.
    values.extend([
        vec![0xff],
        vec![0xc3],
        vec![b'a', 0xc3, 0x28],
        vec![0xed, 0xa0, 0x80],
    ]);
    values
}

/// Values generated by proptest: arbitrary bytes, arbitrary text, numbers, times with any
/// field out of range, durations with any number and unit.
fn generated_values() -> impl Strategy<Value = Vec<u8>> {
    let time = (
        -300_000i64..300_000,
        0u32..14,
        0u32..33,
        0u32..26,
        0u32..62,
        0u32..62,
        prop::sample::select(vec!["Z", "+00:00", "-12:00", "+99:99", ""]),
    )
        .prop_map(|(y, mo, d, h, mi, s, z)| {
            format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{z}").into_bytes()
        });
    let duration = (
        any::<u64>(),
        prop::sample::select(vec!["s", "m", "h", "d", "w", "ms", "", "y", "M"]),
    )
        .prop_map(|(n, unit)| format!("{n}{unit}").into_bytes());
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..48),
        "\\PC{0,24}".prop_map(String::into_bytes),
        any::<i128>().prop_map(|n| n.to_string().into_bytes()),
        any::<f64>().prop_map(|n| n.to_string().into_bytes()),
        time,
        duration,
    ]
}

fn hostile_values(runner: &mut TestRunner) -> Vec<Vec<u8>> {
    let strategy = generated_values();
    let mut values = fixed_hostile_values();
    for _ in 0..CASES_PER_PARAMETER {
        values.push(strategy.new_tree(runner).expect("a value").current());
    }
    values
}

/// A parameter of an operation, from the document.
#[derive(Debug, Clone)]
struct Parameter {
    name: String,
    location: String,
    required: bool,
    /// An enum value when the schema has one (the view's name).
    first_allowed: Option<String>,
}

/// One operation of the document.
#[derive(Debug)]
struct Operation {
    method: String,
    path: String,
    parameters: Vec<Parameter>,
    /// The status codes the document lists.
    statuses: Vec<u16>,
    admin: bool,
}

fn operations(document: &Value) -> Vec<Operation> {
    let mut operations = Vec::new();
    for (path, methods) in document["paths"].as_object().expect("paths") {
        for (method, operation) in methods.as_object().expect("methods") {
            let parameters = operation["parameters"]
                .as_array()
                .map(|list| {
                    list.iter()
                        .map(|p| Parameter {
                            name: p["name"].as_str().unwrap().to_string(),
                            location: p["in"].as_str().unwrap().to_string(),
                            required: p["required"].as_bool().unwrap_or(false),
                            first_allowed: p["schema"]["enum"][0].as_str().map(str::to_string),
                        })
                        .collect()
                })
                .unwrap_or_default();
            let statuses = operation["responses"]
                .as_object()
                .expect("responses")
                .keys()
                .map(|k| k.parse().expect("a status"))
                .collect();
            operations.push(Operation {
                method: method.to_uppercase(),
                path: path.clone(),
                parameters,
                statuses,
                admin: operation.get("security").is_some(),
            });
        }
    }
    operations
}

/// A value the server accepts for `parameter` on `path` (views are bucketed by 1m or 10s).
fn valid_value(parameter: &Parameter, path: &str) -> String {
    if let Some(allowed) = &parameter.first_allowed {
        return allowed.clone();
    }
    match (parameter.name.as_str(), path.ends_with("/top")) {
        ("window", _) => "5m".into(),
        ("metric", true) => "count".into(),
        ("id", _) => "1".into(),
        ("job", _) => "no_such_job".into(),
        _ => String::new(),
    }
}

/// What one request varied, to check the answer against.
struct Case<'a> {
    operation: &'a Operation,
    /// The parameter made hostile, if any.
    hostile: Option<&'a str>,
    /// A description for failure messages.
    label: String,
}

fn check(case: &Case<'_>, answer: Option<Answer>) {
    let label = &case.label;
    let answer = answer.unwrap_or_else(|| panic!("{label}: the connection closed with no answer"));
    assert!(
        answer.status < 500,
        "{label}: answered {} {}",
        answer.status,
        String::from_utf8_lossy(&answer.body)
    );
    if answer.status < 400 {
        return;
    }
    assert!(
        case.operation.statuses.contains(&answer.status),
        "{label}: {} is not a status the document lists for {} {} ({:?})",
        answer.status,
        case.operation.method,
        case.operation.path,
        case.operation.statuses
    );
    assert!(
        answer.content_type.starts_with("application/json"),
        "{label}: content type `{}`",
        answer.content_type
    );
    let body: Value = serde_json::from_slice(&answer.body).unwrap_or_else(|e| {
        panic!(
            "{label}: the error is not JSON ({e}): {}",
            String::from_utf8_lossy(&answer.body)
        )
    });
    let error = &body["error"];
    assert_eq!(error["status"], answer.status, "{label}: {body}");
    assert!(
        error["code"].as_str().is_some_and(|c| !c.is_empty()),
        "{label}: {body}"
    );
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{label}: {body}"
    );
    assert!(error["retryable"].is_boolean(), "{label}: {body}");
    if answer.status == 400 {
        let named = error["parameter"]
            .as_str()
            .unwrap_or_else(|| panic!("{label}: a 400 names no parameter: {body}"));
        if let Some(hostile) = case.hostile {
            assert_eq!(named, hostile, "{label}: {body}");
        }
    }
}

/// Sends requests to the server under test and checks every answer.
struct Prober {
    address: String,
    requests: usize,
}

impl Prober {
    /// Sends one request for `case`, checks its answer with [`check`], and returns its status.
    fn probe(
        &mut self,
        case: &Case<'_>,
        method: &str,
        target: &str,
        headers: &[(&str, Vec<u8>)],
        body: &[u8],
    ) -> u16 {
        let answer = exchange(&self.address, &request_bytes(method, target, headers, body));
        let status = answer.as_ref().map_or(0, |a| a.status);
        check(case, answer);
        self.requests += 1;
        status
    }
}

/// Builds the request target of `operation` with `hostile` (a parameter name and raw bytes)
/// in place of that parameter's valid value, or as an extra query parameter.
fn target(operation: &Operation, hostile: Option<(&str, &[u8])>) -> String {
    let mut path = operation.path.clone();
    let mut query: Vec<String> = Vec::new();
    for parameter in &operation.parameters {
        let value = match hostile {
            Some((name, bytes)) if name == parameter.name => Some(encode(bytes)),
            _ if parameter.required || parameter.location == "path" => {
                Some(encode(valid_value(parameter, &operation.path).as_bytes()))
            }
            _ => None,
        };
        let Some(value) = value else { continue };
        if parameter.location == "path" {
            path = path.replace(&format!("{{{}}}", parameter.name), &value);
        } else {
            query.push(format!("{}={value}", encode(parameter.name.as_bytes())));
        }
    }
    if let Some((name, bytes)) = hostile
        && !operation.parameters.iter().any(|p| p.name == name)
    {
        query.push(format!("{}={}", encode(name.as_bytes()), encode(bytes)));
    }
    if query.is_empty() {
        path
    } else {
        format!("{path}?{}", query.join("&"))
    }
}

fn auth(operation: &Operation) -> Vec<(&'static str, Vec<u8>)> {
    if operation.admin {
        vec![("Authorization", format!("Bearer {TOKEN}").into_bytes())]
    } else {
        Vec::new()
    }
}

#[sqlx::test(migrations = false)]
async fn hostile_parameters_on_every_documented_operation_never_get_a_5xx(pool: PgPool) {
    let pipeline = Pipeline::new("serving-fuzz", &pool).await;
    pipeline.produce(200, 22, 1);
    let (mut api, address) =
        super::serve_ready(&pipeline, "fuzz", &[("BRAID_ADMIN_TOKEN", TOKEN)]).await;
    let document: Value = {
        let answer = exchange(&address, &request_bytes("GET", "/openapi.json", &[], b"")).unwrap();
        serde_json::from_slice(&answer.body).expect("the OpenAPI document")
    };
    let operations = operations(&document);
    assert!(operations.len() >= 11, "{operations:?}");
    let mut runner = TestRunner::new(Config {
        rng_algorithm: proptest::test_runner::RngAlgorithm::ChaCha,
        ..Config::default()
    });
    let mut prober = Prober {
        address: address.clone(),
        requests: 0,
    };
    for operation in &operations {
        // Each parameter the document lists, made hostile in turn.
        for parameter in &operation.parameters {
            for value in hostile_values(&mut runner) {
                if parameter.location == "path" && value.is_empty() {
                    continue; // An empty segment is another route.
                }
                let case = Case {
                    operation,
                    hostile: Some(&parameter.name),
                    label: format!(
                        "{} {} with {}={:?}",
                        operation.method,
                        operation.path,
                        parameter.name,
                        String::from_utf8_lossy(&value)
                    ),
                };
                let target = target(operation, Some((&parameter.name, &value)));
                prober.probe(&case, &operation.method, &target, &auth(operation), b"");
            }
        }
        // Parameters the document does not list, with hostile names.
        for name in [
            "colour",
            "filter.nope",
            "limit[]",
            "'--",
            "\u{0}x",
            "filter.",
        ] {
            let case = Case {
                operation,
                hostile: None,
                label: format!(
                    "{} {} with unknown {name:?}",
                    operation.method, operation.path
                ),
            };
            let target = target(operation, Some((name, b"1")));
            prober.probe(&case, &operation.method, &target, &auth(operation), b"");
        }
        // Raw, unencoded query text (malformed escapes, `+`, separators) after the valid part.
        for raw in [
            "%",
            "%zz",
            "a=%ZZ",
            "&&&",
            "==",
            "+",
            "limit=1&limit=2",
            "%E2%82",
            "k=%2B1",
        ] {
            let base = target(operation, None);
            let joined = if base.contains('?') {
                format!("{base}&{raw}")
            } else {
                format!("{base}?{raw}")
            };
            let case = Case {
                operation,
                hostile: None,
                label: format!("{} {joined}", operation.method),
            };
            prober.probe(&case, &operation.method, &joined, &auth(operation), b"");
        }
        // Hostile tokens on admin operations: never more than 401.
        if operation.admin {
            for token in [
                b"Bearer \xff\xfe".to_vec(),
                b"Bearer ".to_vec(),
                b"bearer fuzz-admin-token".to_vec(),
                vec![b'x'; 4000],
                b"Basic Zm9vOmJhcg==".to_vec(),
            ] {
                let case = Case {
                    operation,
                    hostile: None,
                    label: format!(
                        "{} {} with Authorization {:?}",
                        operation.method,
                        operation.path,
                        String::from_utf8_lossy(&token)
                    ),
                };
                let target = target(operation, None);
                let status = prober.probe(
                    &case,
                    &operation.method,
                    &target,
                    &[("Authorization", token)],
                    b"",
                );
                assert_eq!(status, 401, "{}", case.label);
            }
        }
        // A method the path does not take.
        let other = if operation.method == "GET" {
            "DELETE"
        } else {
            "GET"
        };
        if !operations
            .iter()
            .any(|o| o.path == operation.path && o.method == other)
        {
            let case = Case {
                operation,
                hostile: None,
                label: format!("{other} {}", operation.path),
            };
            let status = prober.probe(
                &case,
                other,
                &target(operation, None),
                &auth(operation),
                b"",
            );
            assert_eq!(status, 405, "{}", case.label);
        }
        // A target longer than the server takes.
        let long = format!(
            "{}?{}",
            target(operation, None).split('?').next().unwrap(),
            "x=1&".repeat(3000)
        );
        let case = Case {
            operation,
            hostile: None,
            label: format!("{} {} with a 12 KB query", operation.method, operation.path),
        };
        let status = prober.probe(&case, &operation.method, &long, &auth(operation), b"");
        assert_eq!(status, 414, "{}", case.label);
    }
    // Hostile bodies for starting jobs: not JSON, not an object, hostile parameter values, and
    // a body over the limit. Every job name the server knows comes from a 404's message.
    let post = operations
        .iter()
        .find(|o| o.method == "POST")
        .expect("the admin POST");
    // Replays that pass validation publish to a topic of this test's own.
    let replay_topic = serde_json::to_string(&format!("{}.fuzz-replay", pipeline.topic)).unwrap();
    let job_values: Vec<String> = fixed_hostile_values()
        .into_iter()
        .map(|v| serde_json::to_string(&String::from_utf8_lossy(&v)).unwrap())
        .chain(
            [
                "null",
                "-1",
                "1e400",
                "18446744073709551616",
                "[1]",
                "{\"a\":{}}",
                "false",
            ]
            .map(str::to_string),
        )
        .collect();
    let bodies: Vec<(Vec<u8>, &str)> = [
        (b"\xff\xfe".to_vec(), "replay_publish"),
        (b"[1,2]".to_vec(), "batch"),
        (b"{\"a\":".to_vec(), "compact"),
        (b"\"text\"".to_vec(), "vacuum"),
        (vec![b' '; 70_000], "batch"),
        (format!("{{\"x\":\"{}\"}}", "a".repeat(70_000)).into_bytes(), "batch"),
    ]
    .into_iter()
    .chain(job_values.iter().flat_map(|value| {
        [
            (format!("{{\"from_cut\":{value}}}").into_bytes(), "replay_speed"),
            (format!("{{\"from\":{value},\"to\":\"2026-01-01T00:00:00Z\",\"topic\":{replay_topic}}}").into_bytes(), "replay_publish"),
            (format!("{{\"from\":\"2026-01-01T00:00:00Z\",\"to\":{value},\"topic\":{replay_topic}}}").into_bytes(), "replay_publish"),
            (format!("{{\"from\":\"2026-01-01T00:00:00Z\",\"to\":\"2026-01-02T00:00:00Z\",\"topic\":{value}}}").into_bytes(), "replay_publish"),
            (format!("{{\"from\":\"2026-01-01T00:00:00Z\",\"to\":\"2026-01-02T00:00:00Z\",\"topic\":{replay_topic},\"rate\":{value}}}").into_bytes(), "replay_publish"),
            (format!("{{\"force\":{value}}}").into_bytes(), "recover"),
            (format!("{{{value}:1}}").into_bytes(), "batch"),
        ]
    }))
    .collect();
    for (body, job) in &bodies {
        let case = Case {
            operation: post,
            hostile: None,
            label: format!(
                "POST {job} with body {:?}",
                String::from_utf8_lossy(&body[..body.len().min(80)])
            ),
        };
        let status = prober.probe(
            &case,
            "POST",
            &format!("/v1/admin/jobs/{job}"),
            &auth(post),
            body,
        );
        if body.len() > ::serving::api::MAX_BODY_BYTES {
            assert_eq!(status, 413, "{}", case.label);
        }
    }
    api.assert_running("braid serve");
    let log = log_of(&pipeline, "serve", "fuzz");
    assert!(
        !log.contains("request failed"),
        "a request failed inside the server:\n{log}"
    );
    assert!(!log.contains("panicked"), "a handler panicked:\n{log}");
    // A job the API accepted must not fail on a parameter the API could have refused.
    for line in log.lines().filter(|l| l.contains("job failed")) {
        for refusable in [
            "error=from:",
            "error=to:",
            "error=topic:",
            "InvalidTopic",
            "FFI nul",
            "no cut -",
        ] {
            assert!(
                !line.contains(refusable),
                "the API accepted a job it should have refused: {line}"
            );
        }
    }
    eprintln!(
        "fuzz: {} hostile requests over {} operations",
        prober.requests,
        operations.len()
    );
}
