//! Dimensions for the unit tests, validated against the demo's schema.

use schemas::BraidConfig;
use schemas::dimension::Dimension;

const DEMO: &str = include_str!("../../braid.toml");

/// Dimension `d` keyed by `key` (a field of the demo's schema) with `attributes`
/// (`name type` pairs), followed from a topic.
pub(crate) fn dimension(key: &str, attributes: &[(&str, &str)]) -> Dimension {
    let attributes: Vec<String> = attributes
        .iter()
        .map(|(name, t)| format!("{{ name = \"{name}\", type = \"{t}\" }}"))
        .collect();
    let extra = format!(
        "[[dimensions]]\nname = \"d\"\nkey = \"{key}\"\nattributes = [{}]\nsource = {{ kafka_topic = \"d\" }}\n",
        attributes.join(", ")
    );
    let config = BraidConfig::load_from(
        Some(("test.toml", &format!("{DEMO}\n{extra}"))),
        std::iter::empty(),
    )
    .unwrap();
    config.dimensions.into_iter().next().unwrap()
}
