//! Rules are checked against the views at load; each refusal names `alerts[i].<key>`.

use crate::config::{BraidConfig, ConfigError};

const DEMO: &str = include_str!("../../../braid.toml");

fn load(rules: &str) -> Result<BraidConfig, ConfigError> {
    let text = format!(
        "{DEMO}\n[alerting.webhooks.ops]\nurl = \"http://127.0.0.1:9/hook\"\ntoken_env = \"OPS_TOKEN\"\n{rules}"
    );
    BraidConfig::load_from(Some(("test.toml", &text)), std::iter::empty())
}

fn refused(rules: &str) -> (String, String) {
    match load(rules) {
        Err(ConfigError::Invalid { key, reason }) => (key, reason),
        other => panic!("expected the rule to be refused, got {other:?}"),
    }
}

const GOOD: &str = r#"
[[alerts]]
name = "purchase_spike"
view = "events_by_type"
where = { event_type = ["purchase", "click"] }
metric = "count"
window = "1m"
op = "gt"
threshold = 100
for = "30s"
keep_firing_for = "2m"
group_by = ["event_type"]
notify = ["webhook:ops", "kafka:braid.alerts"]
"#;

fn with(key: &str, value: &str) -> String {
    GOOD.lines()
        .map(|line| {
            if line.starts_with(&format!("{key} =")) {
                format!("{key} = {value}")
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_good_rule_loads_with_its_parts_typed() {
    let config = load(GOOD).unwrap();
    let demo = config
        .alerts
        .iter()
        .find(|r| r.name == "purchase_spike")
        .unwrap();
    assert_eq!(demo.window.seconds(), 60);
    assert_eq!(demo.for_seconds, 30);
    assert_eq!(demo.keep_firing_for_seconds, 120);
    assert_eq!(demo.threshold, 100.0);
    assert_eq!(demo.group_by, vec![0]);
    assert_eq!(
        demo.filters,
        vec![(
            0,
            crate::view::FilterValues::Text(vec!["purchase".into(), "click".into()])
        )]
    );
    assert_eq!(
        demo.notify
            .iter()
            .map(|r| r.to_string())
            .collect::<Vec<_>>(),
        ["webhook:ops", "kafka:braid.alerts"]
    );
}

#[test]
fn an_unknown_view_is_refused_naming_the_key() {
    let (key, reason) = refused(&with("view", "\"nope\""));
    assert!(
        key.starts_with("alerts[") && key.ends_with("].view"),
        "{key}"
    );
    assert!(reason.contains("unknown view `nope`"), "{reason}");
    assert!(
        reason.contains("events_by_type"),
        "lists the views: {reason}"
    );
}

#[test]
fn an_unknown_metric_is_refused_naming_the_key() {
    let (key, reason) = refused(&with("metric", "\"sum_price\""));
    assert!(key.ends_with("].metric"), "{key}");
    assert!(
        reason.contains("`sum_price` is not a numeric metric"),
        "{reason}"
    );
    assert!(reason.contains("[count]"), "{reason}");
}

#[test]
fn a_window_shorter_than_the_bucket_or_not_a_multiple_is_refused() {
    // events_by_type has 10 s buckets.
    let (key, reason) = refused(&with("window", "\"5s\""));
    assert!(key.ends_with("].window"), "{key}");
    assert!(
        reason.contains("shorter than view `events_by_type`'s bucket `10s`"),
        "{reason}"
    );
    let (key, reason) = refused(&with("window", "\"15s\""));
    assert!(key.ends_with("].window"), "{key}");
    assert!(reason.contains("not a whole number"), "{reason}");
}

#[test]
fn a_negative_or_malformed_hold_time_is_refused() {
    let (key, reason) = refused(&with("for", "\"-1m\""));
    assert!(key.ends_with("].for"), "{key}");
    assert!(reason.contains("negative"), "{reason}");
    let (key, reason) = refused(&with("keep_firing_for", "\"soon\""));
    assert!(key.ends_with("].keep_firing_for"), "{key}");
    assert!(reason.contains("not a duration"), "{reason}");
    assert_eq!(
        load(&with("for", "\"0s\""))
            .unwrap()
            .alerts
            .last()
            .unwrap()
            .for_seconds,
        0
    );
}

#[test]
fn where_group_by_and_notify_are_checked() {
    let (key, reason) = refused(&with("group_by", "[\"country\"]"));
    assert!(key.ends_with("].group_by"), "{key}");
    assert!(
        reason.contains("`country` is not a group field"),
        "{reason}"
    );
    let (key, reason) = refused(&with("where", "{ event_type = 3 }"));
    assert!(key.ends_with("].where"), "{key}");
    assert!(reason.contains("string field"), "{reason}");
    let (key, reason) = refused(&with("notify", "[\"webhook:pager\"]"));
    assert!(key.ends_with("].notify"), "{key}");
    assert!(reason.contains("[alerting.webhooks.pager]"), "{reason}");
    let (key, _) = refused(&with("notify", "[\"email:ops\"]"));
    assert!(key.ends_with("].notify"), "{key}");
    let (key, _) = refused(&with("op", "\"above\""));
    assert!(key.ends_with("].op"), "{key}");
    let (key, _) = refused(&format!("{GOOD}\nunknown_key = 1"));
    assert!(
        key.contains("unknown_key") || key.contains("alerts"),
        "{key}"
    );
}

#[test]
fn a_rule_declared_twice_and_a_token_in_place_of_its_variable_are_refused() {
    let (key, reason) = refused(&format!("{GOOD}\n{GOOD}"));
    assert!(key.ends_with("].name"), "{key}");
    assert!(reason.contains("declared twice"), "{reason}");
    let text = format!(
        "{DEMO}\n[alerting.webhooks.ops]\nurl = \"http://127.0.0.1:9/hook\"\ntoken_env = \"s3cr3t-token\"\n"
    );
    match BraidConfig::load_from(Some(("test.toml", &text)), std::iter::empty()) {
        Err(ConfigError::Invalid { key, reason }) => {
            assert_eq!(key, "alerting.webhooks.ops.token_env");
            assert!(
                !reason.contains("s3cr3t"),
                "the value is not echoed: {reason}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_fingerprint_depends_on_rule_and_labels_only() {
    let mut a = super::Labels::new();
    a.insert("event_type".into(), "purchase".into());
    let mut b = super::Labels::new();
    b.insert("event_type".into(), "click".into());
    assert_eq!(
        super::fingerprint("r", &a),
        super::fingerprint("r", &a.clone())
    );
    assert_ne!(super::fingerprint("r", &a), super::fingerprint("r", &b));
    assert_ne!(super::fingerprint("r", &a), super::fingerprint("s", &a));
    assert_eq!(super::fingerprint("r", &a).len(), 16);
}

#[test]
fn a_rule_watches_any_level_of_a_quantile_metric_and_no_sample() {
    let rule = |metric: &str| {
        GOOD.replace("view = \"events_by_type\"", "view = \"page_latency\"")
            .replace("where = { event_type = [\"purchase\", \"click\"] }", "")
            .replace("group_by = [\"event_type\"]", "group_by = [\"page\"]")
            .replace("metric = \"count\"", &format!("metric = \"{metric}\""))
    };
    for (metric, level) in [
        ("quantile_duration_ms_p99", 0.99),
        ("quantile_duration_ms_p99_9", 0.999),
        ("quantile_duration_ms_p50", 0.5),
        ("quantile_duration_ms_p100", 1.0),
    ] {
        let config = load(&rule(metric)).unwrap_or_else(|e| panic!("{metric}: {e}"));
        let view = config
            .views
            .iter()
            .find(|v| v.name == "page_latency")
            .unwrap();
        let levels = crate::alert::metric_levels(view, metric);
        assert_eq!(levels.len(), 1, "{metric}");
        assert_eq!(levels[0].value(), level, "{metric}");
    }
    for metric in [
        "quantile_duration_ms",
        "quantile_duration_ms_p",
        "quantile_duration_ms_p050",
        "quantile_duration_ms_p101",
        "sample",
    ] {
        let (key, reason) = refused(&rule(metric));
        assert!(key.ends_with("].metric"), "{metric}: {key}");
        assert!(
            reason.contains("quantile_duration_ms_p99"),
            "{metric}: lists the levels: {reason}"
        );
    }
}

#[test]
fn a_rule_groups_by_an_attribute_of_a_dimension_of_its_view() {
    let dimension = "[[dimensions]]\nname = \"pages\"\nkey = \"page\"\nversioned = true\n\
                     attributes = [{ name = \"region\", type = \"string\" }]\n\
                     source = { kafka_topic = \"pages\" }\n";
    let rule = GOOD
        .replace("view = \"events_by_type\"", "view = \"page_views\"")
        .replace("where = { event_type = [\"purchase\", \"click\"] }", "")
        .replace("group_by = [\"event_type\"]", "group_by = [\"region\"]");
    let config = load(&format!("{dimension}\n{rule}")).unwrap();
    let rule = config
        .alerts
        .iter()
        .find(|r| r.name == "purchase_spike")
        .unwrap();
    let view = config
        .views
        .iter()
        .find(|v| v.name == "page_views")
        .unwrap();
    assert_eq!(rule.group_by, [1], "page_views serves page, then region");
    assert_eq!(view.served_name(1), "region");
    let (key, reason) = refused(&format!(
        "{dimension}\n{}",
        GOOD.replace("group_by = [\"event_type\"]", "group_by = [\"region\"]")
    ));
    assert!(key.ends_with("].group_by"), "{key}");
    assert!(
        reason.contains("not a group field or attribute of view `events_by_type`"),
        "{reason}"
    );
}
