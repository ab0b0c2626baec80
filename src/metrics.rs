//! Prometheus metrics for the long-running commands.

use std::net::SocketAddr;

use anyhow::Context;

/// Installs the Prometheus recorder and serves /metrics on `address`.
pub fn serve(address: SocketAddr) -> anyhow::Result<()> {
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(address)
        .install()
        .with_context(|| format!("serving metrics on {address}"))?;
    tracing::info!(%address, "serving Prometheus metrics");
    Ok(())
}
