//! The rules that decide whether a record is valid, by config key. Two processes with equal
//! rules accept and refuse exactly the same records, so the speed layer and the sink must run
//! equal rules: `schemas::pg::check_validation_rules` compares a process's rules with the ones
//! recorded for the topic, and the sink writes their fingerprint into every Delta commit.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::record::{F64_MAGNITUDE_FLOOR, F64_MAGNITUDE_LIMIT, micros_to_rfc3339};
use crate::{EventSchema, FieldType};

/// The rule naming the f64 magnitudes validation accepts. They are constants of the code, not
/// of the config, but a version that accepts other magnitudes accepts other records: with the
/// rule, a speed layer and a sink of two such versions (a rolling upgrade) do not agree to run
/// together. Present only when the schema has an f64 field.
pub const F64_MAGNITUDES_RULE: &str = "validation.f64_magnitudes";

/// The rule naming how Avro datums are read (what converts, what is refused). Like
/// [`F64_MAGNITUDES_RULE`], a constant of the code: present only for an Avro topic, so that
/// two versions that decode differently do not run together.
pub const AVRO_DECODING_RULE: &str = "validation.avro_decoding";

/// The rule naming how Protobuf messages are read, as [`AVRO_DECODING_RULE`] for Avro.
pub const PROTOBUF_DECODING_RULE: &str = "validation.protobuf_decoding";

/// Every setting validation depends on, keyed by where it is configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ValidationRules(BTreeMap<String, String>);

/// One rule that differs between the recorded rules and a process's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleDifference {
    /// The config key.
    pub key: String,
    /// The recorded value (`None`: not recorded).
    pub recorded: Option<String>,
    /// This process's value (`None`: not in this process's config).
    pub here: Option<String>,
}

impl fmt::Display for RuleDifference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "(absent)".into());
        write!(
            f,
            "{}: recorded {}, this process {}",
            self.key,
            show(&self.recorded),
            show(&self.here)
        )
    }
}

impl ValidationRules {
    /// The rules of `schema`.
    pub fn of(schema: &EventSchema) -> Self {
        let mut rules = BTreeMap::new();
        rules.insert(
            "schema.event_time".into(),
            schema.event_time_field().name.clone(),
        );
        rules.insert(
            "schema.max_record_bytes".into(),
            schema.max_record_bytes.to_string(),
        );
        rules.insert(
            "schema.max_group_value_bytes".into(),
            schema.max_string_bytes.to_string(),
        );
        rules.insert(
            "schema.event_time_min".into(),
            micros_to_rfc3339(schema.event_time_min_micros),
        );
        rules.insert(
            "schema.event_time_max".into(),
            micros_to_rfc3339(schema.event_time_max_micros),
        );
        for field in &schema.fields {
            let required = if field.required {
                "required"
            } else {
                "optional"
            };
            // The path only where one is set, so that JSON topics keep their recorded rules.
            let path = match &field.path {
                Some(path) => format!(", path {path}"),
                None => String::new(),
            };
            rules.insert(
                format!("schema.fields.{}", field.name),
                format!("{}, {required}{path}", field.field_type.name()),
            );
        }
        if !matches!(schema.wire, crate::wire::WireFormat::Json) {
            rules.insert("schema.format".into(), schema.wire.name().into());
            let decoding = match schema.wire {
                crate::wire::WireFormat::Protobuf(_) => PROTOBUF_DECODING_RULE,
                _ => AVRO_DECODING_RULE,
            };
            rules.insert(decoding.into(), "1".into());
        }
        if schema.fields.iter().any(|f| f.field_type == FieldType::F64) {
            rules.insert(
                F64_MAGNITUDES_RULE.into(),
                format!("0, or at least {F64_MAGNITUDE_FLOOR:e} and below {F64_MAGNITUDE_LIMIT:e}"),
            );
        }
        Self(rules)
    }

    /// The rules as a JSON object (how they are recorded).
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.0).expect("a map of strings serialises")
    }

    /// Rules recorded as a JSON object; anything else is a decoding error.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// A short stable digest of the rules.
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::digest(self.to_json().as_bytes());
        digest[..8].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The rules that differ from `recorded`, by key.
    pub fn differences(&self, recorded: &ValidationRules) -> Vec<RuleDifference> {
        let keys: std::collections::BTreeSet<&String> =
            self.0.keys().chain(recorded.0.keys()).collect();
        keys.into_iter()
            .filter_map(|key| {
                let (old, new) = (recorded.0.get(key), self.0.get(key));
                (old != new).then(|| RuleDifference {
                    key: key.clone(),
                    recorded: old.cloned(),
                    here: new.cloned(),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BraidConfig;

    fn rules(env: &[(&str, &str)]) -> ValidationRules {
        let config = BraidConfig::load_from(
            Some(("braid.toml", include_str!("../../braid.toml"))),
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
        .unwrap();
        ValidationRules::of(&config.schema)
    }

    #[test]
    fn every_setting_validation_depends_on_is_a_rule_and_named_when_it_differs() {
        let base = rules(&[]);
        assert!(base.differences(&base).is_empty());
        for (key, value, named) in [
            (
                "BRAID__SCHEMA__MAX_RECORD_BYTES",
                "2048",
                "schema.max_record_bytes",
            ),
            (
                "BRAID__SCHEMA__MAX_GROUP_VALUE_BYTES",
                "64",
                "schema.max_group_value_bytes",
            ),
            (
                "BRAID__SCHEMA__EVENT_TIME_MIN",
                "2001-01-01T00:00:00Z",
                "schema.event_time_min",
            ),
            (
                "BRAID__SCHEMA__EVENT_TIME_MAX",
                "2101-01-01T00:00:00Z",
                "schema.event_time_max",
            ),
        ] {
            let changed = rules(&[(key, value)]);
            assert_ne!(changed.fingerprint(), base.fingerprint(), "{key}");
            let differences = changed.differences(&base);
            assert_eq!(differences.len(), 1, "{key}: {differences:?}");
            assert_eq!(differences[0].key, named);
            let shown = value.trim_end_matches("T00:00:00Z");
            assert!(
                differences[0].to_string().contains(shown),
                "{}",
                differences[0]
            );
        }
        let mut schema =
            BraidConfig::load_from(Some(("braid.toml", include_str!("../../braid.toml"))), [])
                .unwrap()
                .schema;
        schema.fields[1].required = !schema.fields[1].required;
        let flipped = ValidationRules::of(&schema);
        let differences = flipped.differences(&base);
        assert_eq!(
            differences
                .iter()
                .map(|d| d.key.clone())
                .collect::<Vec<_>>(),
            vec![format!("schema.fields.{}", schema.fields[1].name)]
        );
        schema.fields.push(crate::FieldDef {
            name: "extra".into(),
            field_type: crate::FieldType::Bool,
            required: false,
            path: None,
        });
        let grown = ValidationRules::of(&schema);
        assert!(
            grown
                .differences(&flipped)
                .iter()
                .any(|d| d.key == "schema.fields.extra" && d.recorded.is_none())
        );
    }

    /// Which f64 values validation accepts is part of the rules: rules recorded by a version
    /// that accepted other magnitudes (before the 1e-200 floor: any below 1e200) differ, naming
    /// the bounds, so a speed layer and a sink of the two versions do not run together.
    #[test]
    fn the_f64_magnitudes_validation_accepts_are_a_rule() {
        let mut schema =
            BraidConfig::load_from(Some(("braid.toml", include_str!("../../braid.toml"))), [])
                .unwrap()
                .schema;
        schema
            .fields
            .retain(|f| f.field_type != crate::FieldType::F64);
        let without_f64 = ValidationRules::of(&schema);
        schema.fields.push(crate::FieldDef {
            name: "price".into(),
            field_type: crate::FieldType::F64,
            required: false,
            path: None,
        });
        let here = ValidationRules::of(&schema);
        // What a version before the floor recorded: the same config, other accepted values.
        let accepted = |v: f64| crate::record::f64_is_storable(v);
        assert!(!accepted(5e-324) && accepted(1e-200) && !accepted(1e200));
        let mut before = here.clone();
        before.0.retain(|key, _| !key.starts_with("validation."));
        let differences = here.differences(&before);
        assert_eq!(differences.len(), 1, "{differences:?}");
        let shown = differences[0].to_string();
        assert!(
            shown.contains("1e-200") && shown.contains("1e200"),
            "{shown}"
        );
        assert_ne!(here.fingerprint(), before.fingerprint());
        // A schema without an f64 field does not depend on them.
        assert!(
            without_f64.0.keys().all(|k| !k.starts_with("validation.")),
            "{without_f64:?}"
        );
    }
}
