//! A real HTTP receiver for webhook notifications (axum on 127.0.0.1), which the tests can take
//! down (its port closed, so connections are refused) and bring back on the same port.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::Value;
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

/// The receiver; dropped, it stops.
pub struct Receiver {
    /// Where it listens.
    pub address: SocketAddr,
    received: Received,
    shutdown: Option<oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<()>>,
}

async fn hook(State(received): State<Received>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    received.lock().unwrap().push(Delivery {
        idempotency_key: text("idempotency-key").unwrap_or_default(),
        authorization: text("authorization"),
        body,
    });
    StatusCode::OK
}

impl Receiver {
    /// Starts on a free port.
    pub async fn start() -> Self {
        let mut receiver = Self {
            address: "127.0.0.1:0".parse().unwrap(),
            received: Received::default(),
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
            .with_state(self.received.clone());
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
        self.received.lock().unwrap().clone()
    }
}
