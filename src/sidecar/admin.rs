//! The sidecar's admin HTTP server: `/healthz` and `/readyz` (200 while running: the identity
//! is loaded and every listener bound before the server starts) and `/metrics` (Prometheus
//! text exposition).
//!
//! Invariant: it serves only process-local, non-secret state (no key material, no peer input).

use std::sync::Arc;

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Serves the admin endpoints on `listener` until `shutdown`.
pub async fn serve(listener: TcpListener, registry: Arc<Registry>, shutdown: CancellationToken) {
    let app = router(registry);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
    {
        tracing::error!(error = %e, "admin server failed");
    }
}

/// The admin routes.
pub fn router(registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(|| async { "ok\n" }))
        .route(
            "/metrics",
            get(move || {
                let registry = registry.clone();
                async move {
                    (
                        StatusCode::OK,
                        [(
                            header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        encode(&registry),
                    )
                        .into_response()
                }
            }),
        )
}

/// The registry in the text exposition format.
pub fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, registry) {
        // Only fails if writing to the String fails, which it does not.
        tracing::error!(error = %e, "cannot encode metrics");
    }
    out
}
