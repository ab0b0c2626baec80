//! The Yahoo Streaming Benchmark's ad events: users viewing, clicking and buying from ads;
//! 100 campaigns of 10 ads each. Ad `ad-0427` belongs to campaign `campaign-042` (the ad's
//! number divided by ten), a mapping the benchmark applies when reading. Deterministic for a
//! given seed. The stream has no malformed records and no late events.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::clickstream::{GeneratedMessage, rfc3339_millis};

/// Campaigns in the workload.
pub const CAMPAIGNS: usize = 100;
/// Ads per campaign.
pub const ADS_PER_CAMPAIGN: usize = 10;

const AD_TYPES: [&str; 5] = ["banner", "modal", "sponsored-search", "mail", "mobile"];
const EVENT_TYPES: [&str; 3] = ["view", "click", "purchase"];

#[derive(Serialize)]
struct AdEvent<'a> {
    user_id: String,
    page_id: String,
    ad_id: String,
    ad_type: &'a str,
    event_type: &'a str,
    event_time: String,
    ip_address: String,
}

/// A seeded stream of ad events.
pub struct AdStream {
    rng: ChaCha8Rng,
}

impl AdStream {
    /// The stream of `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// The next event, at `now_micros`.
    pub fn next_message(&mut self, now_micros: i64) -> GeneratedMessage {
        let rng = &mut self.rng;
        let user = rng.random_range(0..100_000u32);
        let event = AdEvent {
            user_id: format!("user-{user:05}"),
            page_id: format!("page-{:04}", rng.random_range(0..1_000u32)),
            ad_id: format!(
                "ad-{:04}",
                rng.random_range(0..CAMPAIGNS * ADS_PER_CAMPAIGN)
            ),
            ad_type: AD_TYPES[rng.random_range(0..AD_TYPES.len())],
            event_type: EVENT_TYPES[rng.random_range(0..EVENT_TYPES.len())],
            event_time: rfc3339_millis(now_micros),
            ip_address: format!(
                "10.{}.{}.{}",
                rng.random_range(0..256u32),
                rng.random_range(0..256u32),
                rng.random_range(1..255u32)
            ),
        };
        GeneratedMessage {
            key: event.user_id.clone(),
            payload: serde_json::to_vec(&event).expect("events serialise"),
            malformed: None,
            late: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ads_map_to_a_hundred_campaigns_and_the_ysb_config_accepts_every_event() {
        let config = schemas::BraidConfig::load_from(
            Some(("ysb.toml", include_str!("../../examples/ysb.toml"))),
            [],
        )
        .unwrap();
        let mut stream = AdStream::new(3);
        let mut campaigns = std::collections::BTreeSet::new();
        for i in 0..5_000 {
            let message = stream.next_message(1_767_225_600_000_000 + i);
            config
                .schema
                .validate(&message.payload)
                .expect("a valid ad event");
            let event: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
            let ad: usize = event["ad_id"].as_str().unwrap()[3..].parse().unwrap();
            campaigns.insert(ad / ADS_PER_CAMPAIGN);
        }
        assert_eq!(campaigns.len(), CAMPAIGNS);
    }
}

/// The campaign dimension of the workload: one message per ad, keyed by `ad_id`, with its
/// `campaign_id` (`ad-0427` → `campaign-042`), for a compacted topic that `braid dimensions
/// follow` keeps in PostgreSQL. Cycles through the ads.
#[derive(Default)]
pub struct CampaignStream {
    next: usize,
}

impl CampaignStream {
    /// The next ad's campaign.
    pub fn next_message(&mut self) -> GeneratedMessage {
        let ad = self.next % (CAMPAIGNS * ADS_PER_CAMPAIGN);
        self.next += 1;
        let ad_id = format!("ad-{ad:04}");
        let payload = serde_json::json!({
            "ad_id": ad_id,
            "campaign_id": format!("campaign-{:03}", ad / ADS_PER_CAMPAIGN),
        });
        GeneratedMessage {
            key: ad_id,
            payload: payload.to_string().into_bytes(),
            malformed: None,
            late: false,
        }
    }
}
