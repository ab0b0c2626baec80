//! `BRAID__SECTION__KEY=value` overrides. A value takes the type of the value it replaces
//! (string, integer, float, boolean or array); a new key is a string.
//!
//! librdkafka's keys hold dots, which shells cannot put in a variable name, so
//! `BRAID_KAFKA_OPTION_SASL_PASSWORD=...` sets `kafka.options."sasl.password"` (underscores
//! become dots), and `BRAID_KAFKA_OPTION_SASL_PASSWORD_FILE=/run/secrets/kafka` reads the value
//! from a file (a trailing newline is dropped), so secrets need not sit in the environment.

use super::{ConfigError, ENV_PREFIX};

/// The prefix of librdkafka option variables.
pub const KAFKA_OPTION_PREFIX: &str = "BRAID_KAFKA_OPTION_";

/// Sets `kafka.options` from `BRAID_KAFKA_OPTION_<KEY>` and `BRAID_KAFKA_OPTION_<KEY>_FILE`.
pub(super) fn apply_kafka_options(
    table: &mut toml::Table,
    env: &[(String, String)],
) -> Result<(), ConfigError> {
    let mut options: Vec<&(String, String)> = env
        .iter()
        .filter(|(name, _)| name.starts_with(KAFKA_OPTION_PREFIX))
        .collect();
    options.sort();
    for (var, raw) in options {
        let error = |reason: String| ConfigError::Env {
            var: var.clone(),
            reason,
        };
        let name = &var[KAFKA_OPTION_PREFIX.len()..];
        let (name, value) = match name.strip_suffix("_FILE") {
            Some(name) => {
                let text = std::fs::read_to_string(raw)
                    .map_err(|e| error(format!("cannot read the file `{raw}`: {e}")))?;
                (name, text.trim_end_matches(['\n', '\r']).to_string())
            }
            None => (name, raw.clone()),
        };
        if name.is_empty() || name.split('_').any(str::is_empty) {
            return Err(error(format!(
                "name a librdkafka option with its dots as underscores, e.g. {KAFKA_OPTION_PREFIX}SASL_PASSWORD"
            )));
        }
        let key = name.to_lowercase().replace('_', ".");
        let kafka = table
            .entry("kafka")
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .ok_or_else(|| error("`kafka` is a value, not a section".into()))?;
        let options = kafka
            .entry("options")
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .ok_or_else(|| error("`kafka.options` is a value, not a section".into()))?;
        options.insert(key, toml::Value::String(value));
    }
    Ok(())
}

pub(super) fn apply_overrides(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    let mut overrides: Vec<(String, String)> = env
        .into_iter()
        .filter(|(name, _)| name.starts_with(ENV_PREFIX))
        .collect();
    overrides.sort();
    for (var, raw) in overrides {
        let error = |reason: String| ConfigError::Env {
            var: var.clone(),
            reason,
        };
        let path: Vec<String> = var[ENV_PREFIX.len()..]
            .split("__")
            .map(str::to_lowercase)
            .collect();
        if path.iter().any(String::is_empty) {
            return Err(error("empty key segment; use BRAID__SECTION__KEY".into()));
        }
        if path[0] == "views" || path.get(1).is_some_and(|p| p == "fields") {
            return Err(error(
                "arrays of tables (views, schema fields) can only be set in the config file".into(),
            ));
        }
        let (leaf, sections) = path
            .split_last()
            .expect("split yields at least one segment");
        let mut current = &mut *table;
        for (depth, section) in sections.iter().enumerate() {
            let entry = current
                .entry(section.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            current = entry.as_table_mut().ok_or_else(|| {
                error(format!(
                    "`{}` is a value, not a section",
                    path[..=depth].join(".")
                ))
            })?;
        }
        let value = typed_like(current.get(leaf), &raw).map_err(|expected| {
            error(format!(
                "`{}` must be {expected}, got `{raw}`",
                path.join(".")
            ))
        })?;
        current.insert(leaf.clone(), value);
    }
    Ok(())
}

fn typed_like(existing: Option<&toml::Value>, raw: &str) -> Result<toml::Value, &'static str> {
    use toml::Value;
    Ok(match existing {
        None | Some(Value::String(_)) => Value::String(raw.to_string()),
        Some(Value::Integer(_)) => Value::Integer(raw.trim().parse().map_err(|_| "an integer")?),
        Some(Value::Float(_)) => Value::Float(raw.trim().parse().map_err(|_| "a number")?),
        Some(Value::Boolean(_)) => Value::Boolean(raw.trim().parse().map_err(|_| "true or false")?),
        Some(Value::Array(_)) => {
            let wrapped = format!("v = {raw}");
            let mut table: toml::Table = wrapped
                .parse()
                .map_err(|_| "a TOML array, e.g. [\"a\", \"b\"]")?;
            match table.remove("v") {
                Some(array @ Value::Array(_)) => array,
                _ => return Err("a TOML array, e.g. [\"a\", \"b\"]"),
            }
        }
        Some(Value::Table(_)) => {
            return Err("a section's keys (set BRAID__SECTION__KEY for each key)");
        }
        Some(Value::Datetime(_)) => Value::String(raw.to_string()),
    })
}
