//! `BRAID__SECTION__KEY=value` overrides. A value takes the type of the value it replaces
//! (string, integer, float, boolean or array); a new key is a string.

use super::{ConfigError, ENV_PREFIX};

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
