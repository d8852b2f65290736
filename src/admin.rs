//! The admin HTTP server: `/healthz`, `/readyz`, `/metrics`, `/status`.
//!
//! Invariants: read-only (GET only; nothing here changes gateway state); `/readyz` is 200 only
//! when the source says ready, else 503 with a JSON `reason`; `/metrics` is the Prometheus
//! text exposition of one registry holding the gateway's and the federation's families.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// What the admin server reports on; implemented by the running app.
pub trait AdminSource: Send + Sync + 'static {
    /// `true` once the gateway is running.
    fn healthy(&self) -> bool;
    /// `Ok` when listeners are bound and every peer has a bundle; otherwise why not.
    fn readiness(&self) -> Result<(), String>;
    /// The `/status` document.
    fn status(&self) -> serde_json::Value;
    fn registry(&self) -> &Registry;
}

/// The admin routes over `source`.
pub fn router(source: Arc<dyn AdminSource>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .with_state(source)
}

/// Serves the admin routes on `listener` until `shutdown` is cancelled.
pub async fn run(
    listener: TcpListener,
    source: Arc<dyn AdminSource>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(source))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

type Source = State<Arc<dyn AdminSource>>;

async fn healthz(State(s): Source) -> Response {
    if s.healthy() {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n").into_response()
    }
}

async fn readyz(State(s): Source) -> Response {
    match s.readiness() {
        Ok(()) => (StatusCode::OK, Json(serde_json::json!({ "ready": true }))).into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "ready": false, "reason": reason })),
        )
            .into_response(),
    }
}

async fn metrics(State(s): Source) -> Response {
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, s.registry()) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode metrics: {e}\n"),
        )
            .into_response(),
    }
}

async fn status(State(s): Source) -> Response {
    Json(s.status()).into_response()
}
