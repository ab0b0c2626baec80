//! `braid generate --format avro|protobuf`: the writer schema derived from `[schema]`,
//! registered under `<topic>-value`, and the encoder that turns each generated JSON event into
//! a framed datum of it.

use std::time::Duration;

use anyhow::Context;
use schemas::wire::{MAGIC_BYTE, SchemaId, WireFormat};

use super::avro::AvroEncoder;
use super::protobuf::ProtobufEncoder;
use crate::cli::{GenerateArgs, GenerateFormat, Workload};

/// Turns generated JSON events into framed datums of one registered writer schema.
pub enum Encoder {
    Avro(AvroEncoder),
    Protobuf(ProtobufEncoder),
}

impl Encoder {
    /// The framed form of a generated JSON payload, or `None` when the format cannot carry it
    /// (a malformed event: then the JSON bytes are sent, and refused as `wrong_magic_byte`).
    pub fn encode(&self, json: &[u8]) -> Option<Vec<u8>> {
        match self {
            Encoder::Avro(encoder) => encoder.encode(json),
            Encoder::Protobuf(encoder) => encoder.encode(json),
        }
    }
}

/// A payload in Confluent's wire format: the magic byte, the schema id, what precedes the datum
/// (Protobuf's message indexes), the datum.
pub fn framed(id: SchemaId, prefix: &[u8], body: &[u8]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(5 + prefix.len() + body.len());
    payload.push(MAGIC_BYTE);
    payload.extend_from_slice(&id.to_be_bytes());
    payload.extend_from_slice(prefix);
    payload.extend_from_slice(body);
    payload
}

/// The encoder `braid generate` uses for these options: `None` for JSON; for Avro and
/// Protobuf, the writer schema registered under `<topic>-value` first.
pub async fn encoder_for(
    args: &GenerateArgs,
    config: &schemas::BraidConfig,
    topic: &str,
) -> anyhow::Result<Option<Encoder>> {
    let format = args.format.unwrap_or(match config.schema.wire {
        WireFormat::Json => GenerateFormat::Json,
        WireFormat::Avro(_) => GenerateFormat::Avro,
        WireFormat::Protobuf(_) => GenerateFormat::Protobuf,
    });
    let (name, schema_type, writer) = match format {
        GenerateFormat::Json => return Ok(None),
        GenerateFormat::Avro => ("avro", "AVRO", super::avro::writer_schema(&config.schema)?),
        GenerateFormat::Protobuf => (
            "protobuf",
            "PROTOBUF",
            super::protobuf::writer_schema(&config.schema)?,
        ),
    };
    anyhow::ensure!(
        args.workload != Workload::YsbCampaigns,
        "--format {name}: a dimension topic (--workload ysb-campaigns) is JSON"
    );
    anyhow::ensure!(
        !config.schema_registry.url.is_empty(),
        "--format {name} registers its writer schema first: set schema_registry.url (or BRAID__SCHEMA_REGISTRY__URL)"
    );
    let client = ingest::registry::RegistryClient::new(&config.schema_registry)?;
    let subject = format!("{topic}-value");
    // A registry that is briefly down or busy (Apicurio's in-memory storage answers 500 to
    // registrations that collide) is asked again for up to about half a minute.
    let mut wait = Duration::from_millis(200);
    let mut attempts = 0;
    let id = loop {
        attempts += 1;
        match client.register(&subject, schema_type, &writer).await {
            Ok(id) => break id,
            Err(error) if attempts < 10 && registration_may_succeed_later(&error) => {
                tracing::warn!(%error, retry_in_ms = wait.as_millis() as u64, "registering the writer schema failed; trying again");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
            Err(error) => {
                return Err(error).with_context(|| {
                    format!("registering the {schema_type} writer schema under {subject}")
                });
            }
        }
    };
    tracing::info!(
        subject,
        schema_id = id,
        schema_type,
        "registered the writer schema"
    );
    Ok(Some(match format {
        GenerateFormat::Protobuf => {
            Encoder::Protobuf(ProtobufEncoder::new(&config.schema, &writer, id)?)
        }
        _ => Encoder::Avro(AvroEncoder::new(&config.schema, &writer, id)?),
    }))
}

/// Whether a failed registration is worth trying again: the registry down, or failing on its
/// side (5xx); not a refusal (incompatible, unauthorised, a bad request).
fn registration_may_succeed_later(error: &ingest::registry::RegistryError) -> bool {
    use ingest::registry::RegistryError as E;
    match error {
        E::Unreachable { .. } | E::AnswerTooLarge => true,
        E::NotRegistered { status, .. } => *status >= 500,
        _ => false,
    }
}

#[cfg(test)]
pub(crate) mod tests {
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
}
