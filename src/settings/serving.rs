//! The API's settings from the configuration: what it serves (`[[views]]`, `[serving]`, the
//! alert rules' names), the consumer groups its Kafka watch reports, and its answer cache.

use schemas::BraidConfig;
use serving::ServingSettings;
use serving::api::{AnswerCache, Limits, WatchedGroup};

/// What the API serves, with the admin endpoints' token (`None` turns them off).
pub fn settings(config: &BraidConfig, admin_token: Option<String>) -> ServingSettings {
    ServingSettings {
        views: config.views.clone(),
        topic: config.kafka.topic.clone(),
        limits: Limits {
            max_limit: config.serving.max_limit,
            max_range_seconds: i64::from(config.serving.max_range_days) * 86_400,
        },
        admin_token,
        alert_rules: config.alerts.iter().map(|r| r.name.clone()).collect(),
    }
}

/// The consumer groups whose positions the API's Kafka watch reports: the speed layer's and
/// the sink's (`kafka.speed_group`, `kafka.sink_group`).
pub fn watched_groups(config: &BraidConfig) -> Vec<WatchedGroup> {
    vec![
        WatchedGroup {
            layer: "speed".into(),
            group: config.kafka.speed_group.clone(),
        },
        WatchedGroup {
            layer: "sink".into(),
            group: config.kafka.sink_group.clone(),
        },
    ]
}

/// The cache of recent answers (`serving.answer_cache_ms`, `serving.answer_cache_entries`).
pub fn answer_cache(config: &BraidConfig) -> AnswerCache {
    AnswerCache::new(
        config.serving.answer_cache_ms.duration(),
        config.serving.answer_cache_entries,
    )
}
