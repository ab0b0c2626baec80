//! `braid generate --format avro|protobuf`: the writer schema derived from `[schema]`,
//! registered under `<topic>-value`, and the encoder that turns each generated JSON event into
//! a framed datum of it.

use std::time::Duration;

use anyhow::Context;
use schemas::wire::WireFormat;

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
