//! The demo clickstream: page views, clicks and purchases with skewed popularity, a fraction
//! of late events and a fraction of malformed records. Deterministic for a given seed.

use chrono::{DateTime, SecondsFormat};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::sampler::{Zipf, weighted};

const COUNTRIES: [(&str, u32); 12] = [
    ("US", 30),
    ("IN", 14),
    ("DE", 8),
    ("GB", 8),
    ("BR", 7),
    ("FR", 6),
    ("JP", 6),
    ("CA", 5),
    ("ES", 4),
    ("MX", 4),
    ("NG", 4),
    ("AU", 4),
];
const DEVICES: [(&str, u32); 3] = [("mobile", 60), ("desktop", 35), ("tablet", 5)];
const EVENT_TYPES: [(&str, u32); 3] = [("page_view", 80), ("click", 17), ("purchase", 3)];
const SECTIONS: [&str; 6] = ["home", "product", "search", "cart", "blog", "help"];
const PAGES: usize = 500;
const USERS: usize = 50_000;

/// The kinds of malformed record the generator emits: one per rejection reason the demo schema
/// can give (it has no f64 field and no timestamp field besides the event time).
pub const MALFORMED_KINDS: [&str; 9] = [
    "too_large",
    "not_json",
    "not_object",
    "missing_field",
    "wrong_type",
    "bad_event_time",
    "event_time_out_of_range",
    "unstorable_text",
    "string_too_long",
];

/// How the generator shapes the stream.
#[derive(Debug, Clone)]
pub struct ClickstreamOptions {
    /// The RNG seed.
    pub seed: u64,
    /// Fraction of events moved 1 s to 30 min into the past.
    pub late_fraction: f64,
    /// Fraction of malformed records.
    pub malformed_fraction: f64,
    /// Fraction of valid records with hostile values (see [`hostile_payload`]).
    pub hostile_fraction: f64,
}

/// One generated Kafka message.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratedMessage {
    /// The message key (the user id, so a user's events stay in order).
    pub key: String,
    /// The payload: a JSON event, or a malformed record.
    pub payload: Vec<u8>,
    /// `None` for a valid event, or the rejection code the record is meant to get.
    pub malformed: Option<&'static str>,
    /// Whether the event time was moved into the past.
    pub late: bool,
}

#[derive(Serialize)]
struct Event<'a> {
    event_id: String,
    ts: String,
    event_type: &'a str,
    user_id: String,
    page: String,
    country: &'a str,
    device: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    price_cents: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    is_new_user: Option<bool>,
}

/// An endless, deterministic stream of demo messages.
pub struct Clickstream {
    rng: ChaCha8Rng,
    options: ClickstreamOptions,
    pages: Zipf,
    users: Zipf,
    sequence: u64,
}

pub(crate) fn rfc3339_millis(micros: i64) -> String {
    DateTime::from_timestamp_micros(micros)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
        .unwrap_or_else(|| micros.to_string())
}

impl Clickstream {
    /// A stream for these options.
    pub fn new(options: ClickstreamOptions) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(options.seed),
            pages: Zipf::new(PAGES, 1.1),
            users: Zipf::new(USERS, 0.7),
            options,
            sequence: 0,
        }
    }

    /// The next message, with its event time taken from `now_micros` (moved back if late).
    pub fn next_message(&mut self, now_micros: i64) -> GeneratedMessage {
        let sequence = self.sequence;
        self.sequence += 1;
        let rng = &mut self.rng;
        let user_id = format!("u{:05}", self.users.sample(rng));
        let page_rank = self.pages.sample(rng);
        let page = format!("/{}/{}", SECTIONS[page_rank % SECTIONS.len()], page_rank);
        let event_type = *weighted(rng, &EVENT_TYPES);
        let late = rng.random_bool(self.options.late_fraction);
        let event_micros = if late {
            now_micros - rng.random_range(1..=1_800) * 1_000_000
        } else {
            now_micros
        };
        let event = Event {
            event_id: format!("{:x}-{sequence}", self.options.seed),
            ts: rfc3339_millis(event_micros),
            event_type,
            user_id: user_id.clone(),
            page,
            country: weighted::<&str>(rng, &COUNTRIES),
            device: weighted::<&str>(rng, &DEVICES),
            // Prices spread over 1.99 to 499.99, with cheap items more common.
            price_cents: (event_type == "purchase")
                .then(|| (199.0 * 251f64.powf(rng.random::<f64>())) as i64),
            duration_ms: (event_type == "page_view").then(|| rng.random_range(100..=120_000)),
            is_new_user: rng.random_bool(0.7).then(|| rng.random_bool(0.1)),
        };
        let malformed = rng
            .random_bool(self.options.malformed_fraction)
            .then(|| MALFORMED_KINDS[rng.random_range(0..MALFORMED_KINDS.len())]);
        let hostile = malformed.is_none()
            && self.options.hostile_fraction > 0.0
            && rng.random_bool(self.options.hostile_fraction);
        let payload = match malformed {
            None if hostile => {
                let variant = rng.random_range(0..HOSTILE_VARIANTS);
                hostile_payload(variant, &event, event_micros)
            }
            None => serde_json::to_vec(&event).expect("events serialise"),
            Some(kind) => malformed_payload(kind, &event),
        };
        GeneratedMessage {
            key: user_id,
            payload,
            malformed,
            late,
        }
    }
}

/// How many kinds of hostile valid record [`hostile_payload`] makes.
const HOSTILE_VARIANTS: u32 = 8;

/// A record that the demo schema accepts, with values every store must still take alike.
fn hostile_payload(variant: u32, event: &Event<'_>, event_micros: i64) -> Vec<u8> {
    let mut value = serde_json::to_value(event).expect("events serialise");
    let object = value.as_object_mut().expect("an event is an object");
    let mut set = |name: &str, v: serde_json::Value| {
        object.insert(name.into(), v);
    };
    match variant {
        // i64 at its bounds: two of them in one group and bucket overflow an i64 sum.
        0 => {
            set("price_cents", i64::MAX.into());
            set("duration_ms", i64::MAX.into());
        }
        1 => {
            set("price_cents", i64::MIN.into());
            set("duration_ms", (i64::MIN + 1).into());
        }
        // Control characters (all but NUL are storable), quotes, commas, backslashes and
        // characters outside the BMP in group-by fields.
        2 => set("page", "/x\u{1}\t\n\"',\\;--\u{7f}\u{feff}😀".into()),
        // A group value exactly at schema.max_group_value_bytes (512), multi-byte characters.
        3 => set("country", "é".repeat(256).into()),
        // The event time as epoch milliseconds.
        4 => set("ts", event_micros.div_euclid(1_000).into()),
        // An unknown field nested deep (below serde_json's recursion limit of 128).
        5 => set(
            "extra",
            serde_json::from_str(&format!("{}1{}", "[".repeat(100), "]".repeat(100)))
                .expect("nested arrays parse"),
        ),
        // A repeated key: the last value counts, in every reader.
        6 => {
            let text = serde_json::to_string(&value).expect("serialises");
            return format!("{{\"page\":\"/first\",{}", &text[1..]).into_bytes();
        }
        // An empty string and a string of spaces as group values.
        _ => {
            set("page", "".into());
            set("device", "   ".into());
        }
    }
    serde_json::to_vec(&value).expect("serialises")
}

/// A record that the default schema refuses with the rejection `kind`.
fn malformed_payload(kind: &str, event: &Event<'_>) -> Vec<u8> {
    let mut value = serde_json::to_value(event).expect("events serialise");
    let object = value.as_object_mut().expect("an event is an object");
    match kind {
        "not_json" => {
            let text = serde_json::to_string(event).expect("events serialise");
            return text.as_bytes()[..text.len() / 2].to_vec();
        }
        "not_object" => {
            return serde_json::to_vec(&[&event.event_id, &event.user_id]).expect("serialises");
        }
        "missing_field" => {
            object.remove("user_id");
        }
        "wrong_type" => {
            object.insert(
                "price_cents".into(),
                serde_json::Value::String("12.50 USD".into()),
            );
        }
        "bad_event_time" => {
            object.insert(
                "ts".into(),
                serde_json::Value::String("yesterday at noon".into()),
            );
        }
        "event_time_out_of_range" => {
            object.insert(
                "ts".into(),
                serde_json::Value::String("1970-01-01T00:00:00.000Z".into()),
            );
        }
        "too_large" => {
            object.insert(
                "padding".into(),
                serde_json::Value::String("x".repeat(70_000)),
            );
        }
        // A NUL in a group-by field: PostgreSQL text cannot hold it.
        "unstorable_text" => {
            object.insert(
                "page".into(),
                serde_json::Value::String(format!("{}\u{0}evil", event.page)),
            );
        }
        // Over schema.max_group_value_bytes (512).
        "string_too_long" => {
            object.insert("user_id".into(), serde_json::Value::String("u".repeat(600)));
        }
        other => unreachable!("unknown malformed kind {other}"),
    }
    serde_json::to_vec(&value).expect("serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(seed: u64, malformed_fraction: f64) -> Clickstream {
        Clickstream::new(ClickstreamOptions {
            seed,
            late_fraction: 0.1,
            malformed_fraction,
            hostile_fraction: 0.2,
        })
    }

    #[test]
    fn the_same_seed_gives_the_same_messages() {
        let (mut a, mut b, mut c) = (stream(1, 0.1), stream(1, 0.1), stream(2, 0.1));
        let first: Vec<_> = (0..200).map(|i| a.next_message(i * 1000)).collect();
        let second: Vec<_> = (0..200).map(|i| b.next_message(i * 1000)).collect();
        let other: Vec<_> = (0..200).map(|i| c.next_message(i * 1000)).collect();
        assert_eq!(first, second);
        assert_ne!(first, other);
    }

    #[test]
    fn every_malformed_kind_is_refused_by_the_demo_schema_for_its_reason() {
        let config = schemas::BraidConfig::load_from(
            Some(("braid.toml", include_str!("../../braid.toml"))),
            [],
        )
        .unwrap();
        let mut generator = stream(3, 0.5);
        let mut seen = std::collections::BTreeSet::new();
        let now = 1_767_225_600_000_000; // 2026-01-01
        for _ in 0..2_000 {
            let message = generator.next_message(now);
            match (message.malformed, config.schema.validate(&message.payload)) {
                (None, Ok(record)) => {
                    assert!(record.event_time_micros <= now);
                }
                (None, Err(rejection)) => panic!("a valid event was refused: {rejection}"),
                (Some(kind), Ok(_)) => panic!("a {kind} record was accepted"),
                (Some(kind), Err(rejection)) => {
                    assert_eq!(rejection.code(), kind);
                    seen.insert(kind);
                }
            }
        }
        assert_eq!(seen.len(), MALFORMED_KINDS.len(), "{seen:?}");
    }
}
