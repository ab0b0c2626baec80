//! A webhook: one JSON POST per transition, with the idempotency key as a header.

use std::time::Duration;

use crate::store::Transition;
use schemas::config::WebhookConfig;

use super::payload::{IDEMPOTENCY_HEADER, body, idempotency_key};
use crate::error::AlertError;

/// A configured webhook, ready to send.
pub struct Webhook {
    receiver: String,
    url: String,
    token: Option<String>,
    client: reqwest::Client,
}

impl Webhook {
    /// Builds the client; reads the token from the environment (a missing variable is the
    /// operator's error, named).
    pub fn new(name: &str, config: &WebhookConfig, timeout: Duration) -> Result<Self, AlertError> {
        let token = match &config.token_env {
            Some(var) => Some(std::env::var(var).map_err(|_| AlertError::MissingToken {
                webhook: name.to_string(),
                var: var.clone(),
            })?),
            None => None,
        };
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| AlertError::Receiver {
                receiver: format!("webhook:{name}"),
                reason: e.to_string(),
            })?;
        Ok(Self {
            receiver: format!("webhook:{name}"),
            url: config.url.clone(),
            token,
            client,
        })
    }

    /// Posts `transition`; any answer but 2xx is a failure worth retrying.
    pub async fn send(&self, transition: &Transition) -> Result<(), String> {
        let mut request = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(
                IDEMPOTENCY_HEADER,
                idempotency_key(transition, &self.receiver),
            )
            .body(body(transition, &self.receiver).to_string());
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(|e| {
            // reqwest's message names the URL, which may carry a secret in its query.
            let kind = if e.is_timeout() {
                "timed out"
            } else if e.is_connect() {
                "cannot connect"
            } else {
                "request failed"
            };
            format!("{kind}: {}", e.without_url())
        })?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("the receiver answered HTTP {status}"))
        }
    }
}
