//! The schema registry, for topics in Confluent's wire format: the writer schema a message names
//! is fetched once per id (`GET {url}/schemas/ids/{id}`, Confluent's REST API, which Apicurio
//! Registry serves under `/apis/ccompat/v7`), compiled against the event schema and kept in the
//! event schema's [`WriterSchemas`], before the first message naming it is validated.
//!
//! A registry that is down, slow or answers nonsense delays the layer (it retries with backoff,
//! and says so), never refuses a record; only a registry's plain "no such schema" (HTTP 404 with
//! Confluent's error code 40403) refuses the records naming that id, as `unknown_schema_id`. A
//! 404 without that code (a wrong `schema_registry.url`, say) is retried like an outage, so a
//! misconfigured URL cannot dead-letter a topic.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use schemas::EventSchema;
use schemas::config::SchemaRegistryConfig;
use schemas::config::secrets::redact_url;
use schemas::wire::{
    AvroPlan, LoadedSchema, ProtobufPlan, SchemaId, WireFormat, WriterSchemas, schema_id_of,
};

use crate::metrics as m;

/// The first wait before a failed fetch is tried again; doubled up to `retry_max_ms`.
const FIRST_RETRY: Duration = Duration::from_millis(200);

/// Confluent's error code for "schema not found".
const SCHEMA_NOT_FOUND: i64 = 40403;

/// The largest answer read from the registry: a schema is kilobytes; more is nonsense.
const MAX_ANSWER_BYTES: usize = 8 << 20;

/// Why the registry could not be asked, or gave no usable answer. All but the set-up errors
/// are retried.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry could not be reached, or did not answer in time (its fault or the
    /// network's; retried).
    #[error("the schema registry at {url} cannot be reached: {source}")]
    Unreachable {
        /// The registry's URL, credentials hidden.
        url: String,
        /// The HTTP client's error.
        source: reqwest::Error,
    },
    /// The registry answered with an unexpected status (retried: a 5xx is its fault, a 401 or
    /// 403 a credential an operator can fix, a 404 without Confluent's error code a wrong URL).
    #[error("the schema registry answered HTTP {status} for schema id {id}: {body}")]
    Status {
        /// The schema id asked for.
        id: SchemaId,
        /// The HTTP status.
        status: u16,
        /// The start of the answer's body.
        body: String,
    },
    /// The registry's answer is not a schema (retried: the registry's fault).
    #[error("the schema registry's answer for schema id {id} is not a schema: {detail}")]
    BadAnswer {
        /// The schema id asked for.
        id: SchemaId,
        /// What is wrong with it.
        detail: String,
    },
    /// A secret the configuration names is not in the environment (the operator's error; the
    /// layer does not start).
    #[error("{key} names the environment variable {var}, which is not set")]
    MissingSecret {
        /// The config key.
        key: &'static str,
        /// The variable.
        var: String,
    },
    /// A secret file the configuration names cannot be read or is empty (the operator's
    /// error; the layer does not start).
    #[error("{key} {path}: {detail}")]
    SecretFile {
        /// The config key.
        key: &'static str,
        /// The file.
        path: String,
        /// Why it cannot be used (never its content).
        detail: String,
    },
    /// `schema_registry.cert_file` and `key_file` do not make a client identity (the
    /// operator's error; the layer does not start).
    #[error("schema_registry.cert_file {path} and its key_file: {detail}")]
    ClientCertificate {
        /// The certificate file.
        path: String,
        /// Why they cannot be used.
        detail: String,
    },
    /// `schema_registry.ca_file` cannot be read or holds no certificate (the operator's
    /// error; the layer does not start).
    #[error("schema_registry.ca_file {path}: {detail}")]
    CaFile {
        /// The file.
        path: String,
        /// Why it cannot be used.
        detail: String,
    },
    /// The registry refused a new version of a subject as incompatible with the ones before
    /// (HTTP 409; Apicurio's body says `error_code` 0, so the status decides).
    #[error("the schema registry refused the schema for subject {subject} as incompatible: {body}")]
    Incompatible {
        /// The subject.
        subject: String,
        /// The start of the answer's body.
        body: String,
    },
    /// The registry answered a registration with an unexpected status or body.
    #[error(
        "the schema registry did not register the schema for subject {subject}: HTTP {status}: {body}"
    )]
    NotRegistered {
        /// The subject.
        subject: String,
        /// The HTTP status.
        status: u16,
        /// The start of the answer's body.
        body: String,
    },
    /// The registry's answer is larger than [`MAX_ANSWER_BYTES`] (retried: its fault).
    #[error("the schema registry's answer is over {MAX_ANSWER_BYTES} bytes")]
    AnswerTooLarge,
    /// The HTTP client cannot be built (the operator's error, e.g. TLS settings).
    #[error("the schema registry's HTTP client cannot be built: {0}")]
    Client(reqwest::Error),
}

/// What the registry says about one id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The schema: its type (`AVRO` when the registry leaves it out) and its text.
    Found {
        /// `AVRO`, `PROTOBUF` or `JSON`.
        schema_type: String,
        /// The schema's text.
        schema: String,
        /// The names of the schemas of other subjects it refers to (`references`; for
        /// Protobuf, the files it imports).
        references: Vec<String>,
    },
    /// The registry has no schema with this id.
    Unknown,
}

/// How requests prove who sends them.
#[derive(Clone)]
enum Auth {
    None,
    Basic {
        username: String,
        password: Option<String>,
    },
    Bearer(String),
}

/// A client of Confluent's schema registry API.
#[derive(Clone)]
pub struct RegistryClient {
    http: reqwest::Client,
    base: String,
    auth: Auth,
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryClient")
            .field("base", &redact_url(&self.base))
            .finish_non_exhaustive()
    }
}

impl RegistryClient {
    /// A client for `[schema_registry]`; reads its secrets from the environment now.
    pub fn new(config: &SchemaRegistryConfig) -> Result<Self, RegistryError> {
        let secret = |key: &'static str, var: &str| {
            std::env::var(var).map_err(|_| RegistryError::MissingSecret {
                key,
                var: var.to_string(),
            })
        };
        let secret_file = |key: &'static str, path: &str| {
            let failed = |detail: String| RegistryError::SecretFile {
                key,
                path: path.to_string(),
                detail,
            };
            let text = std::fs::read_to_string(path).map_err(|e| failed(e.to_string()))?;
            let text = text.strip_suffix('\n').unwrap_or(&text);
            let text = text.strip_suffix('\r').unwrap_or(text);
            if text.is_empty() {
                return Err(failed("the file is empty".into()));
            }
            Ok(text.to_string())
        };
        let auth = if !config.token_env.is_empty() {
            Auth::Bearer(secret("schema_registry.token_env", &config.token_env)?)
        } else if !config.token_file.is_empty() {
            Auth::Bearer(secret_file(
                "schema_registry.token_file",
                &config.token_file,
            )?)
        } else if !config.username.is_empty() {
            let password = if !config.password_env.is_empty() {
                Some(secret(
                    "schema_registry.password_env",
                    &config.password_env,
                )?)
            } else if !config.password_file.is_empty() {
                Some(secret_file(
                    "schema_registry.password_file",
                    &config.password_file,
                )?)
            } else {
                None
            };
            Auth::Basic {
                username: config.username.clone(),
                password,
            }
        } else {
            Auth::None
        };
        let timeout = config.timeout_ms.duration();
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout);
        if !config.ca_file.is_empty() {
            let ca_error = |detail: String| RegistryError::CaFile {
                path: config.ca_file.clone(),
                detail,
            };
            let pem = std::fs::read(&config.ca_file).map_err(|e| ca_error(e.to_string()))?;
            let certificates =
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| ca_error(e.to_string()))?;
            if certificates.is_empty() {
                return Err(ca_error("no PEM certificate in it".into()));
            }
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        if !config.cert_file.is_empty() {
            let identity_error = |detail: String| RegistryError::ClientCertificate {
                path: config.cert_file.clone(),
                detail,
            };
            let mut pem = std::fs::read(&config.cert_file)
                .map_err(|e| identity_error(format!("the certificate: {e}")))?;
            pem.push(b'\n');
            pem.extend(
                std::fs::read(&config.key_file)
                    .map_err(|e| identity_error(format!("the key: {e}")))?,
            );
            let identity =
                reqwest::Identity::from_pem(&pem).map_err(|e| identity_error(e.to_string()))?;
            builder = builder.identity(identity);
        }
        Ok(Self {
            http: builder.build().map_err(RegistryError::Client)?,
            base: config.url.trim_end_matches('/').to_string(),
            auth,
        })
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.get(format!("{}{path}", self.base)).header(
            "Accept",
            "application/vnd.schemaregistry.v1+json, application/json",
        );
        self.authorized(request)
    }

    /// `request` with this client's credentials, if any.
    fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.auth {
            Auth::None => request,
            Auth::Basic { username, password } => request.basic_auth(username, password.as_ref()),
            Auth::Bearer(token) => request.bearer_auth(token),
        }
    }

    /// Registers a schema of `schema_type` (`AVRO`, `PROTOBUF`) under `subject` (a no-op answering the same id when it is
    /// registered already) and returns its id.
    pub async fn register(
        &self,
        subject: &str,
        schema_type: &str,
        schema: &str,
    ) -> Result<SchemaId, RegistryError> {
        let unreachable = |source| RegistryError::Unreachable {
            url: redact_url(&self.base),
            source,
        };
        let path = format!(
            "/subjects/{}/versions",
            subject.replace('%', "%25").replace('/', "%2F")
        );
        let request = self
            .http
            .post(format!("{}{path}", self.base))
            .header("Content-Type", "application/vnd.schemaregistry.v1+json")
            .body(serde_json::json!({ "schemaType": schema_type, "schema": schema }).to_string());
        let response = self.authorized(request).send().await.map_err(unreachable)?;
        let status = response.status().as_u16();
        let body = bounded_body(response)
            .await
            .map_err(|e| e.or_unreachable(&self.base))?;
        let quoted = || String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
        let id = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|json| json.get("id").and_then(serde_json::Value::as_u64))
            .and_then(|id| SchemaId::try_from(id).ok());
        match (status, id) {
            (200, Some(id)) => Ok(id),
            (409, _) => Err(RegistryError::Incompatible {
                subject: subject.to_string(),
                body: quoted(),
            }),
            (status, _) => Err(RegistryError::NotRegistered {
                subject: subject.to_string(),
                status,
                body: quoted(),
            }),
        }
    }

    /// The schema with id `id`.
    pub async fn schema_by_id(&self, id: SchemaId) -> Result<Lookup, RegistryError> {
        let unreachable = |source| RegistryError::Unreachable {
            url: redact_url(&self.base),
            source,
        };
        let response = self
            .get(&format!("/schemas/ids/{id}"))
            .send()
            .await
            .map_err(unreachable)?;
        let status = response.status().as_u16();
        let body = bounded_body(response)
            .await
            .map_err(|e| e.or_unreachable(&self.base))?;
        let json: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
        let field = |name: &str| json.as_ref().and_then(|json| json.get(name));
        match status {
            200 => {
                let schema = field("schema")
                    .and_then(serde_json::Value::as_str)
                    .ok_or_else(|| RegistryError::BadAnswer {
                        id,
                        detail: "no `schema` string".into(),
                    })?;
                let schema_type = field("schemaType")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or("AVRO");
                let references = field("references")
                    .and_then(serde_json::Value::as_array)
                    .map(|references| {
                        references
                            .iter()
                            .map(
                                |r| match r.get("name").and_then(serde_json::Value::as_str) {
                                    Some(name) => name.to_string(),
                                    None => r.to_string(),
                                },
                            )
                            .collect()
                    })
                    .unwrap_or_default();
                Ok(Lookup::Found {
                    schema_type: schema_type.to_string(),
                    schema: schema.to_string(),
                    references,
                })
            }
            404 if field("error_code").and_then(serde_json::Value::as_i64)
                == Some(SCHEMA_NOT_FOUND) =>
            {
                Ok(Lookup::Unknown)
            }
            status => Err(RegistryError::Status {
                id,
                status,
                body: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
            }),
        }
    }
}

/// Why an answer's body could not be read.
enum BodyError {
    Read(reqwest::Error),
    TooLarge,
}

impl BodyError {
    fn or_unreachable(self, url: &str) -> RegistryError {
        match self {
            BodyError::Read(source) => RegistryError::Unreachable {
                url: redact_url(url),
                source,
            },
            BodyError::TooLarge => RegistryError::AnswerTooLarge,
        }
    }
}

/// An answer's body, at most [`MAX_ANSWER_BYTES`].
async fn bounded_body(mut response: reqwest::Response) -> Result<Vec<u8>, BodyError> {
    if response
        .content_length()
        .is_some_and(|length| length > MAX_ANSWER_BYTES as u64)
    {
        return Err(BodyError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Read)? {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Fills the event schema's writer schemas from the registry, as the ingest loop reads
/// messages naming new ids.
#[derive(Debug)]
pub struct SchemaLoader {
    client: RegistryClient,
    event_schema: EventSchema,
    schemas: Arc<WriterSchemas>,
    /// Ids the registry had no schema for, and when it said so, so that a run of records
    /// naming one costs one request. Not in `schemas` (validation refuses an id with no entry
    /// as unknown). Asked for again after `unknown_ttl` (an id registered since, or on a
    /// registry replica that lagged, is then read), and bounded: a producer can name two
    /// billion ids; past [`MAX_UNKNOWN_IDS`] the expired ones, then all, are forgotten.
    unknown: Mutex<HashMap<SchemaId, Instant>>,
    unknown_ttl: Duration,
    retry_max: Duration,
    layer: &'static str,
}

/// The most unknown ids a loader remembers.
pub const MAX_UNKNOWN_IDS: usize = 10_000;

/// How long a loader takes the registry's "no such schema" for an answer.
pub const UNKNOWN_ID_TTL: Duration = Duration::from_secs(60);

impl SchemaLoader {
    /// A loader for an event schema in a registry format; `None` for JSON.
    pub fn new(
        event_schema: &EventSchema,
        config: &SchemaRegistryConfig,
        layer: &'static str,
    ) -> Result<Option<Self>, RegistryError> {
        let Some(schemas) = event_schema.wire.writer_schemas() else {
            return Ok(None);
        };
        Ok(Some(Self {
            client: RegistryClient::new(config)?,
            event_schema: event_schema.clone(),
            schemas: Arc::clone(schemas),
            unknown: Mutex::default(),
            unknown_ttl: UNKNOWN_ID_TTL,
            retry_max: config.retry_max_ms.duration().max(FIRST_RETRY),
            layer,
        }))
    }

    /// Makes sure the writer schema `payload` names is loaded, asking the registry if it is
    /// not, and waiting out an outage for as long as it lasts. `false`: `stop` was set while
    /// waiting (the message is then not to be validated).
    pub fn ensure(
        &self,
        payload: &[u8],
        runtime: &tokio::runtime::Handle,
        stop: &AtomicBool,
    ) -> bool {
        let Some(id) = schema_id_of(payload) else {
            return true; // no header: validation refuses it without a schema
        };
        if self.schemas.contains(id) || self.remembered_unknown(id) {
            return true;
        }
        // Registries number schemas with a signed 32-bit integer: an id past it names none,
        // and is not worth a request (a registry may answer it with a plain 404 or a 400). Not
        // remembered either (a flood of such ids would grow the map): validation refuses an id
        // with no entry as unknown.
        if i32::try_from(id).is_err() {
            return true;
        }
        let mut wait = FIRST_RETRY;
        let mut failures = 0u32;
        loop {
            match runtime.block_on(self.client.schema_by_id(id)) {
                Ok(lookup) => {
                    metrics::counter!(m::SCHEMA_FETCHES_TOTAL, "layer" => self.layer, "outcome" => "answered")
                        .increment(1);
                    match self.compile(id, lookup) {
                        Some(loaded) => self.schemas.insert(id, loaded),
                        None => self.remember_unknown(id),
                    }
                    if failures > 0 {
                        tracing::info!(
                            layer = self.layer,
                            schema_id = id,
                            failures,
                            "the schema registry answered again; the layer goes on"
                        );
                    }
                    return true;
                }
                Err(error) => {
                    failures += 1;
                    metrics::counter!(m::SCHEMA_FETCHES_TOTAL, "layer" => self.layer, "outcome" => "failed")
                        .increment(1);
                    tracing::warn!(
                        layer = self.layer,
                        schema_id = id,
                        %error,
                        retry_in_ms = wait.as_millis() as u64,
                        "cannot fetch a writer schema; the layer waits for the registry (no record is refused for this)"
                    );
                    crate::wait::sleep_unless_stopped(wait, stop);
                    if stop.load(Ordering::Relaxed) {
                        return false;
                    }
                    wait = (wait * 2).min(self.retry_max);
                }
            }
        }
    }

    /// Whether a reference is one Braid serves itself: Protobuf's well-known types
    /// (`google/protobuf/timestamp.proto`, ...), which Confluent's serializers register as
    /// references.
    fn serves_itself(&self, reference: &str) -> bool {
        matches!(self.event_schema.wire, WireFormat::Protobuf(_))
            && reference.starts_with("google/protobuf/")
    }

    fn remembered_unknown(&self, id: SchemaId) -> bool {
        let mut unknown = self
            .unknown
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match unknown.get(&id) {
            Some(since) if since.elapsed() < self.unknown_ttl => true,
            Some(_) => {
                unknown.remove(&id);
                false
            }
            None => false,
        }
    }

    fn remember_unknown(&self, id: SchemaId) {
        let mut unknown = self
            .unknown
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if unknown.len() >= MAX_UNKNOWN_IDS {
            let ttl = self.unknown_ttl;
            unknown.retain(|_, since| since.elapsed() < ttl);
            if unknown.len() >= MAX_UNKNOWN_IDS {
                unknown.clear();
            }
        }
        unknown.insert(id, Instant::now());
    }

    /// Sets how long an unknown id stays unknown (tests).
    #[cfg(test)]
    pub(crate) fn with_unknown_ttl(mut self, ttl: Duration) -> Self {
        self.unknown_ttl = ttl;
        self
    }

    /// What the registry's answer about `id` loads; `None`: it has no such schema.
    fn compile(&self, id: SchemaId, lookup: Lookup) -> Option<LoadedSchema> {
        let loaded = match lookup {
            Lookup::Unknown => {
                tracing::warn!(
                    layer = self.layer,
                    schema_id = id,
                    "the schema registry has no schema with this id; its records are dead-lettered as unknown_schema_id"
                );
                return None;
            }
            Lookup::Found { schema_type, .. }
                if Some(schema_type.as_str()) != self.event_schema.wire.registry_schema_type() =>
            {
                LoadedSchema::Unresolvable(format!(
                    "a {schema_type} schema, and schema.format is {}",
                    self.event_schema.wire.name()
                ))
            }
            Lookup::Found { references, .. }
                if references.iter().any(|name| !self.serves_itself(name)) =>
            {
                LoadedSchema::Unresolvable(format!(
                    "it refers to schemas of other subjects (references: {}), which Braid does not read yet",
                    quoted_list(&references)
                ))
            }
            Lookup::Found { schema, .. } => {
                let fields = &self.event_schema.fields;
                let compiled = match self.event_schema.wire {
                    WireFormat::Protobuf(_) => {
                        ProtobufPlan::compile(fields, &schema).map(LoadedSchema::Protobuf)
                    }
                    _ => AvroPlan::compile(fields, &schema).map(LoadedSchema::Avro),
                };
                compiled.unwrap_or_else(LoadedSchema::Unresolvable)
            }
        };
        match &loaded {
            LoadedSchema::Avro(_) | LoadedSchema::Protobuf(_) => {
                tracing::info!(layer = self.layer, schema_id = id, "loaded a writer schema")
            }
            LoadedSchema::Unresolvable(detail) => tracing::warn!(
                layer = self.layer,
                schema_id = id,
                detail,
                "a writer schema does not resolve to schema.fields; its records are dead-lettered as unresolvable_schema"
            ),
        }
        Some(loaded)
    }
}

/// Up to five names, quoted, for a reason.
fn quoted_list(names: &[String]) -> String {
    let mut listed: Vec<String> = names
        .iter()
        .take(5)
        .map(|n| format!("`{}`", schemas::quote::quote_bounded(n, 100)))
        .collect();
    if names.len() > 5 {
        listed.push(format!("and {} more", names.len() - 5));
    }
    listed.join(", ")
}

#[cfg(test)]
mod tests;
