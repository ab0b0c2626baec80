//! Layered configuration: embedded defaults, then the file, then `BRAID__SECTION__KEY`
//! environment variables. Unknown keys are refused, and every error names the key and why.

mod env;
pub mod secrets;
mod sections;
mod validate;

use std::path::{Path, PathBuf};

pub use crate::event_schema::is_topic_name;
pub use sections::*;

use crate::alert::AlertRule;
use crate::dimension::Dimension;
use crate::event_schema::EventSchema;
use crate::view::View;

/// The embedded defaults, the bottom layer.
pub const DEFAULTS_TOML: &str = include_str!("defaults.toml");

/// The prefix of environment variables that override configuration keys.
pub const ENV_PREFIX: &str = "BRAID__";

/// A validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct BraidConfig {
    /// `[kafka]`.
    pub kafka: KafkaConfig,
    /// `[lake]`.
    pub lake: LakeConfig,
    /// `[postgres]`.
    pub postgres: PostgresConfig,
    /// `[speed]`.
    pub speed: SpeedConfig,
    /// `[sink]`.
    pub sink: SinkConfig,
    /// `[jobs]`.
    pub jobs: JobsConfig,
    /// `[batch]`.
    pub batch: BatchConfig,
    /// `[serving]`.
    pub serving: ServingConfig,
    /// The validated event schema.
    pub schema: EventSchema,
    /// `[schema_registry]`.
    pub schema_registry: SchemaRegistryConfig,
    /// The validated views.
    pub views: Vec<View>,
    /// `[alerting]`.
    pub alerting: AlertingConfig,
    /// The validated alert rules.
    pub alerts: Vec<AlertRule>,
    /// The validated dimensions.
    pub dimensions: Vec<Dimension>,
    /// The file the configuration was read from, if any.
    pub file: Option<PathBuf>,
}

/// Why the configuration was refused. Each error names the key (or the file, or the variable).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("config file {origin} is not valid TOML: {message}")]
    Syntax {
        /// The file (or `embedded defaults`).
        origin: String,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A key holds a value that is refused.
    #[error("config key `{key}`: {reason}")]
    Invalid {
        /// The dotted key, e.g. `kafka.topic` or `views[2]`.
        key: String,
        /// Why it is refused.
        reason: String,
    },
    /// An environment override cannot be applied.
    #[error("environment variable {var}: {reason}")]
    Env {
        /// The variable's name.
        var: String,
        /// Why it cannot be applied.
        reason: String,
    },
}

impl ConfigError {
    pub(crate) fn invalid(key: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

impl BraidConfig {
    /// Loads from the process environment and, if given, a file.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let text = file
            .map(|path| {
                std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })
            })
            .transpose()?;
        let origin = file.map(|p| p.display().to_string());
        let mut config = Self::load_from(origin.as_deref().zip(text.as_deref()), std::env::vars())?;
        config.file = file.map(Path::to_path_buf);
        Ok(config)
    }

    /// Loads from explicit layers: `file` is `(origin, text)`; `env` is every environment
    /// variable (those without the `BRAID__` prefix are ignored).
    pub fn load_from(
        file: Option<(&str, &str)>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let parse = |origin: &str, text: &str| {
            text.parse::<toml::Table>()
                .map_err(|e| ConfigError::Syntax {
                    origin: origin.into(),
                    message: e.to_string(),
                })
        };
        let mut merged = parse("embedded defaults", DEFAULTS_TOML)?;
        if let Some((origin, text)) = file {
            merge(&mut merged, parse(origin, text)?);
        }
        let env: Vec<(String, String)> = env.into_iter().collect();
        env::apply_overrides(&mut merged, env.iter().cloned())?;
        env::apply_kafka_options(&mut merged, &env)?;
        let raw: RawConfig =
            serde_path_to_error::deserialize(toml::Value::Table(merged)).map_err(|e| {
                let key = e.path().to_string();
                ConfigError::invalid(
                    if key == "." {
                        "(top level)".to_string()
                    } else {
                        key
                    },
                    e.into_inner().message().trim().to_string(),
                )
            })?;
        validate::validate(raw)
    }
}

/// Merges `overlay` into `base`: tables merge key by key, everything else is replaced.
fn merge(base: &mut toml::Table, overlay: toml::Table) {
    for (key, value) in overlay {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(base_table)), toml::Value::Table(overlay_table)) => {
                merge(base_table, overlay_table)
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

#[cfg(test)]
mod tests;
