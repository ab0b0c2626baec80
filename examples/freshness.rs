//! Freshness probe for the benchmarks: produce one event at a time to Kafka and time until
//! `GET /v1/views/page_views` counts it.
//!
//! Each probe is a page view of a page no other event has (`/probe/<run>/<n>`) with the wall
//! clock as its event time, produced with acks=all and linger 0; the clock starts when the
//! broker acknowledged it and stops when the API's answer first counts it (polled every 5 ms).
//!
//! usage: freshness BROKERS TOPIC API_ADDRESS PROBES

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

fn counted(api: &str, path: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect(api) else {
        return false;
    };
    let _ = write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {api}\r\nConnection: close\r\n\r\n"
    );
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.contains("\"count\":1")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, brokers, topic, api, probes] = args.as_slice() else {
        eprintln!("usage: freshness BROKERS TOPIC API_ADDRESS PROBES");
        std::process::exit(2);
    };
    let probes: usize = probes.parse().expect("PROBES is a number");
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "0")
        .set("acks", "all")
        .create()
        .expect("a Kafka producer");
    let run = chrono::Utc::now().timestamp();
    let mut latencies = Vec::with_capacity(probes);
    for n in 0..probes {
        let now = chrono::Utc::now();
        let page = format!("/probe/{run}/{n}");
        let event = serde_json::json!({
            "event_id": format!("probe-{run}-{n}"),
            "ts": now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            "event_type": "page_view", "user_id": "probe", "page": page,
            "country": "DE", "device": "web", "duration_ms": 1,
        })
        .to_string();
        let range = |d: i64| {
            (now + chrono::Duration::minutes(d))
                .format("%Y-%m-%dT%H:%M:00Z")
                .to_string()
        };
        let path = format!(
            "/v1/views/page_views?from={}&to={}&filter.page={page}",
            range(-2),
            range(2)
        );
        producer
            .send(BaseRecord::to(topic).key(&page).payload(&event))
            .map_err(|(e, _)| e)
            .expect("enqueued");
        producer
            .flush(Duration::from_secs(10))
            .expect("acknowledged");
        let sent = Instant::now();
        while !counted(api, &path) {
            if sent.elapsed() > Duration::from_secs(30) {
                eprintln!("probe {n} not visible after 30 s");
                std::process::exit(1);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
    }
    latencies.sort_by(f64::total_cmp);
    let pick = |q: f64| latencies[((q * latencies.len() as f64) as usize).min(latencies.len() - 1)];
    println!(
        "freshness, produce to visible in the API ({probes} probes): p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        pick(0.5),
        pick(0.99),
        latencies[latencies.len() - 1]
    );
}
