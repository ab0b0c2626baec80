//! A real HTTP receiver for webhook notifications (axum on 127.0.0.1), which the tests can take
//! down (its port closed, so connections are refused) and bring back on the same port, or have
//! refuse (503) an instance's `firing` until that instance has resolved.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::Value;
use sqlx::PgPool;
use tokio::sync::oneshot;

/// One POST as received.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The `Idempotency-Key` header.
    pub idempotency_key: String,
    /// The `Authorization` header.
    pub authorization: Option<String>,
    /// The JSON body.
    pub body: Value,
}

type Received = Arc<Mutex<Vec<Delivery>>>;

/// What the handler shares: what it accepted, what it refused, and the database it asks
/// whether an instance has resolved (when it refuses firing until then).
#[derive(Clone, Default)]
struct Shared {
    received: Received,
    refused: Received,
    firing_gate: Option<PgPool>,
}

/// The receiver; dropped, it stops.
pub struct Receiver {
    /// Where it listens.
    pub address: SocketAddr,
    shared: Shared,
    shutdown: Option<oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<()>>,
}

/// Whether the database records a `resolved` transition of `fingerprint` after transition `id`.
async fn resolved_after(pool: &PgPool, fingerprint: &str, id: i64) -> bool {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM braid_internal.alert_transitions \
         WHERE fingerprint = $1 AND id > $2 AND to_state = 'resolved')",
    )
    .bind(fingerprint)
    .bind(id)
    .fetch_one(pool)
    .await
    .unwrap_or(false)
}

async fn hook(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    let delivery = Delivery {
        idempotency_key: text("idempotency-key").unwrap_or_default(),
        authorization: text("authorization"),
        body,
    };
    if let Some(pool) = &shared.firing_gate {
        let t = &delivery.body["braid"];
        if t["to"] == "firing"
            && !resolved_after(
                pool,
                t["fingerprint"].as_str().unwrap_or_default(),
                t["id"].as_i64().unwrap_or_default(),
            )
            .await
        {
            shared.refused.lock().unwrap().push(delivery);
            return StatusCode::SERVICE_UNAVAILABLE;
        }
    }
    shared.received.lock().unwrap().push(delivery);
    StatusCode::OK
}

impl Receiver {
    /// Starts on a free port.
    pub async fn start() -> Self {
        Self::start_with(Shared::default()).await
    }

    /// Starts on a free port, answering 503 to an instance's `firing` until `pool` records
    /// that the instance resolved after it.
    pub async fn refusing_firing_until_resolved(pool: PgPool) -> Self {
        Self::start_with(Shared {
            firing_gate: Some(pool),
            ..Shared::default()
        })
        .await
    }

    async fn start_with(shared: Shared) -> Self {
        let mut receiver = Self {
            address: "127.0.0.1:0".parse().unwrap(),
            shared,
            shutdown: None,
            served: None,
        };
        receiver.serve().await;
        receiver
    }

    async fn serve(&mut self) {
        let listener = tokio::net::TcpListener::bind(self.address)
            .await
            .unwrap_or_else(|e| panic!("bind {}: {e}", self.address));
        self.address = listener.local_addr().unwrap();
        let app = Router::new()
            .route("/hook", post(hook))
            .with_state(self.shared.clone());
        let (shutdown, stopped) = oneshot::channel::<()>();
        self.shutdown = Some(shutdown);
        self.served = Some(tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        }));
    }

    /// The webhook URL.
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.address)
    }

    /// Takes the receiver down: its port is closed until [`Self::restart`].
    pub async fn stop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(mut served) = self.served.take() {
            // Keep-alive connections end after their request; one that lingers is cut.
            if tokio::time::timeout(std::time::Duration::from_secs(2), &mut served)
                .await
                .is_err()
            {
                served.abort();
            }
        }
    }

    /// Brings it back on the same port.
    pub async fn restart(&mut self) {
        self.serve().await;
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Delivery> {
        self.shared.received.lock().unwrap().clone()
    }

    /// Everything refused (503) so far.
    pub fn refused(&self) -> Vec<Delivery> {
        self.shared.refused.lock().unwrap().clone()
    }
}
