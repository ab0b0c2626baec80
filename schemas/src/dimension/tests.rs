//! Dimensions are checked against the schema and the views at load; views get their attributes.

use crate::config::{BraidConfig, ConfigError};

const DEMO: &str = include_str!("../../../braid.toml");

fn load(extra: &str) -> Result<BraidConfig, ConfigError> {
    BraidConfig::load_from(
        Some(("test.toml", &format!("{DEMO}\n{extra}"))),
        std::iter::empty(),
    )
}

fn refused(extra: &str) -> (String, String) {
    match load(extra) {
        Err(ConfigError::Invalid { key, reason }) => (key, reason),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

const PAGES: &str = r#"
[[dimensions]]
name = "pages"
key = "page"
attributes = [{ name = "section", type = "string" }, { name = "weight", type = "f64" }]
source = { postgres_table = "public.pages" }
"#;

#[test]
fn views_grouped_by_the_key_serve_its_attributes_after_their_fields() {
    let config = load(PAGES).unwrap();
    let page_views = config
        .views
        .iter()
        .find(|v| v.name == "page_views")
        .unwrap();
    assert_eq!(page_views.served_names(), ["page", "section", "weight"]);
    assert_eq!(
        page_views.served_attribute(1).unwrap().table,
        "public.pages"
    );
    assert!(page_views.served_attribute(0).is_none());
    let by_type = config
        .views
        .iter()
        .find(|v| v.name == "events_by_type")
        .unwrap();
    assert!(by_type.attributes.is_empty(), "not grouped by page");
    let fingerprint = load("").unwrap().views[0].fingerprint.clone();
    assert_eq!(
        config.views[0].fingerprint, fingerprint,
        "attributes do not change stored rows"
    );
}

#[test]
fn clashes_and_sources_are_refused_naming_the_key() {
    let (key, reason) = refused(&format!(
        "{PAGES}\n{}",
        PAGES.replace("\"pages\"", "\"pages2\"")
    ));
    assert_eq!(key, "dimensions[1].attributes");
    assert!(
        reason.contains("also an attribute of dimension `pages`"),
        "{reason}"
    );
    let (key, _) = refused(&PAGES.replace(
        "{ postgres_table = \"public.pages\" }",
        "{ kafka_topic = \"braid.clickstream\" }",
    ));
    assert_eq!(key, "dimensions[0].source.kafka_topic");
    let (key, _) = refused(&PAGES.replace("public.pages", "Public.Pages"));
    assert_eq!(key, "dimensions[0].source.postgres_table");
    let (key, _) = refused(&PAGES.replace(
        "{ postgres_table = \"public.pages\" }",
        "{ csv = \"a.csv\", format = \"json\" }",
    ));
    assert_eq!(key, "dimensions[0].source.format");
    let (key, _) = refused(&PAGES.replace("key = \"page\"", "key = \"ts\""));
    assert_eq!(key, "dimensions[0].key", "a timestamp is not a key");
}

#[test]
fn one_left_join_per_dimension_table_each_attribute_once() {
    let config = load(PAGES).unwrap();
    let view = config
        .views
        .iter()
        .find(|v| v.name == "page_views")
        .unwrap();
    let used = [
        &view.attributes[1],
        &view.attributes[0],
        &view.attributes[1],
    ];
    let (columns, joins) = super::attribute_joins(used, "rows", "d");
    assert_eq!(columns, ["d0.weight AS weight", "d0.section AS section"]);
    assert_eq!(
        joins,
        " LEFT JOIN public.pages AS d0 ON d0.page = rows.page"
    );
}
