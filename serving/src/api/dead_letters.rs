//! GET /v1/dead-letters: refused records counted per layer and reason; with the admin token,
//! also the most recent ones with a prefix of their payload as text (payloads may hold what
//! producers should not have sent, so they are not public).

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use chrono::SecondsFormat;
use schemas::pg::dead_letters;
use serde_json::{Value, json};

use super::admin::authorize;
use super::error::ApiError;
use super::request_input::{CountParam, query_pairs};
use super::state::AppState;

/// How many characters of a payload are shown.
const PAYLOAD_CHARS_SHOWN: usize = 500;

/// The `recent` of GET /v1/dead-letters: how many recent dead letters are shown.
pub const RECENT: CountParam = CountParam {
    name: "recent",
    min: 0,
    default: 20,
    max: 200,
    description: "How many of the most recent dead letters to show; only with the admin token",
};

fn shown_payload(payload: &[u8]) -> (String, bool) {
    let text = String::from_utf8_lossy(payload);
    let shown: String = text.chars().take(PAYLOAD_CHARS_SHOWN).collect();
    let cut = shown.len() < text.len();
    (shown, cut)
}

/// GET /v1/dead-letters[?recent=N].
pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let mut recent = RECENT.default;
    for pair in query_pairs(raw.as_deref())? {
        match pair.name.as_str() {
            "recent" => recent = RECENT.parse(&pair.value)?,
            other => {
                return Err(ApiError::bad(
                    other,
                    format!("unknown parameter `{other}`; this endpoint takes recent"),
                ));
            }
        }
    }
    // Counts are public; samples need the token (a wrong token is refused, not ignored).
    let with_samples = if headers.contains_key(axum::http::header::AUTHORIZATION) {
        authorize(&state, &headers)?;
        true
    } else {
        false
    };
    let counts: Vec<Value> = dead_letters::counts(&state.pool)
        .await?
        .into_iter()
        .map(|c| {
            json!({
                "layer": c.layer,
                "reason_code": c.reason_code,
                "count": c.count,
                "newest": c.newest.to_rfc3339_opts(SecondsFormat::Millis, true),
            })
        })
        .collect();
    let samples = if with_samples {
        let letters = dead_letters::recent(&state.pool, recent).await?;
        json!(
            letters
                .into_iter()
                .map(|l| {
                    let (payload, cut) = shown_payload(&l.payload);
                    json!({
                        "id": l.id,
                        "layer": l.layer,
                        "topic": l.topic,
                        "partition": l.partition,
                        "offset": l.offset,
                        "reason_code": l.reason_code,
                        "reason": l.reason,
                        "payload_text": payload,
                        "payload_bytes": l.payload_len,
                        "payload_shown_in_part": cut || i64::from(l.payload_len) > l.payload.len() as i64,
                        "received_at": l.received_at.to_rfc3339_opts(SecondsFormat::Millis, true),
                    })
                })
                .collect::<Vec<_>>()
        )
    } else {
        Value::Null
    };
    Ok(Json(json!({
        "counts": counts,
        "recent": samples,
        "recent_needs": if with_samples { Value::Null } else { json!("the admin token (Authorization: Bearer …)") },
    })))
}
