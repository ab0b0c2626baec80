//! A check the encoders' tests share: generated events, encoded, validate as their JSON does.

use schemas::EventSchema;

use crate::generate::{Clickstream, ClickstreamOptions};

/// Every generated message, hostile and malformed ones included, is refused by a topic in
/// `format` exactly as its JSON form is by a JSON topic, or, when `encode` cannot carry it,
/// sent as JSON and refused as `wrong_magic_byte`; valid ones read back as the same record.
pub(crate) fn events_validate_as_their_json_does(
    json: &EventSchema,
    format: &EventSchema,
    seed: u64,
    encode: impl Fn(&[u8]) -> Option<Vec<u8>>,
) {
    let mut stream = Clickstream::new(ClickstreamOptions {
        seed,
        late_fraction: 0.1,
        malformed_fraction: 0.2,
        hostile_fraction: 0.2,
    });
    let (mut encoded, mut sent_as_json) = (0, 0);
    for i in 0..5_000 {
        let message = stream.next_message(1_767_225_600_000_000 + i * 1_000);
        let from_json = json.validate(&message.payload);
        match encode(&message.payload) {
            Some(payload) => {
                encoded += 1;
                let from_format = format.validate(&payload);
                match (&from_json, &from_format) {
                    (Ok(a), Ok(b)) => assert_eq!(a, b, "message {i}"),
                    (Err(a), Err(b)) => assert_eq!(a.code(), b.code(), "message {i}"),
                    _ => panic!("message {i}: JSON {from_json:?}, encoded {from_format:?}"),
                }
            }
            None => {
                sent_as_json += 1;
                let from_json = from_json.expect_err("a valid event is always encoded");
                let expected = match from_json.code() {
                    "too_large" => "too_large",
                    _ => "wrong_magic_byte",
                };
                assert_eq!(
                    format.validate(&message.payload).unwrap_err().code(),
                    expected,
                    "message {i}"
                );
            }
        }
    }
    assert!(
        encoded > 4_000 && sent_as_json > 100,
        "{encoded} / {sent_as_json}"
    );
}
