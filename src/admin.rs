//! The one admin HTTP server of every long-running command (`fedgate run`, `fedgate sidecar`,
//! `fedgate bundle serve`): `/healthz`, `/readyz`, `/metrics`, `/status`, and `/`, the
//! status page ([`status_page`]: the `/status` document as HTML for a person).
//!
//! [`Admin`] pairs a metrics registry with an [`AdminSource`] that answers health, readiness
//! and status; without a source it reports a process that is healthy and ready whenever it
//! answers at all, with an empty status document.
//!
//! Invariants: read-only (GET only; nothing here changes process state); it serves only
//! process-local, non-secret state (no key material, nothing a peer sent); `/readyz` is 200
//! only when the source says ready, else 503 with a JSON `reason`; `/metrics` is the text
//! exposition of one registry ([`crate::telemetry::metrics::encode`]); `/` renders the very
//! value `/status` would return at that moment (one `AdminSource::status` call per request),
//! answers GET and HEAD only (405 otherwise), never echoes the request (path or query) and
//! forbids scripts and external loads with its `Content-Security-Policy`. Unknown paths are
//! 404.

mod status_page;

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::telemetry::metrics;

/// What the admin server reports on; implemented by each command's running state.
pub(crate) trait AdminSource: Send + Sync + 'static {
    /// `false` while the process is starting (`/healthz` is then 503 `starting`).
    fn healthy(&self) -> bool {
        true
    }
    /// The `/readyz` answer.
    fn readiness(&self) -> Readiness {
        Readiness::Serving
    }
    /// The `/status` document.
    fn status(&self) -> serde_json::Value;
}

/// How `/readyz` answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Readiness {
    /// 200 `ok\n` (plain text): a process that loads and binds everything before its admin
    /// server starts, so it is ready whenever it answers.
    Serving,
    /// 200 `{"ready":true}`: a process that tracks readiness, and is ready.
    Ready,
    /// 200 `{"ready":true,"warning":…}`: ready, with a problem that does not block serving
    /// (e.g. a non-required federation peer that cannot be reached).
    ReadyDegraded(String),
    /// 503 `{"ready":false,"reason":…}`: a process that tracks readiness, and is not ready.
    NotReady(String),
}

impl From<Result<(), String>> for Readiness {
    fn from(r: Result<(), String>) -> Self {
        match r {
            Ok(()) => Readiness::Ready,
            Err(reason) => Readiness::NotReady(reason),
        }
    }
}

/// The admin routes over one registry and one source.
#[derive(Clone)]
pub(crate) struct Admin {
    registry: Arc<Registry>,
    source: Arc<dyn AdminSource>,
}

/// The source of an [`Admin`] built without one: healthy, serving, `{}` as status.
struct NoSource;

impl AdminSource for NoSource {
    fn status(&self) -> serde_json::Value {
        serde_json::json!({})
    }
}

// === impl Admin ===

impl Admin {
    /// An admin server exposing `registry` (a `Registry` or an `Arc<Registry>`).
    pub(crate) fn new(registry: impl Into<Arc<Registry>>) -> Self {
        Self {
            registry: registry.into(),
            source: Arc::new(NoSource),
        }
    }

    /// Health, readiness and status come from `source`.
    pub(crate) fn with_source(mut self, source: Arc<dyn AdminSource>) -> Self {
        self.source = source;
        self
    }

    /// The routes, for serving or for mounting into another router.
    pub(crate) fn router(&self) -> Router {
        Router::new()
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics))
            .route("/status", get(status))
            .route("/", get(page))
            .with_state(self.clone())
    }

    /// Serves the routes on `listener` until `shutdown` is cancelled (idle keep-alive
    /// connections are closed then; requests in flight finish).
    pub(crate) async fn serve(
        self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> std::io::Result<()> {
        axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
    }

    /// [`serve`](Self::serve) as the body of a background task (of `fedgate sidecar`,
    /// `bundle serve`, `ca serve`): a failure is logged as `"{what} failed"`, not returned.
    pub(crate) async fn serve_logged(
        self,
        listener: TcpListener,
        shutdown: CancellationToken,
        what: &'static str,
    ) {
        if let Err(e) = self.serve(listener, shutdown).await {
            tracing::error!(error = %e, "{what} failed");
        }
    }
}

async fn healthz(State(a): State<Admin>) -> Response {
    if a.source.healthy() {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n").into_response()
    }
}

async fn readyz(State(a): State<Admin>) -> Response {
    match a.source.readiness() {
        Readiness::Serving => (StatusCode::OK, "ok\n").into_response(),
        Readiness::Ready => {
            (StatusCode::OK, Json(serde_json::json!({ "ready": true }))).into_response()
        }
        Readiness::ReadyDegraded(warning) => (
            StatusCode::OK,
            Json(serde_json::json!({ "ready": true, "warning": warning })),
        )
            .into_response(),
        Readiness::NotReady(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "ready": false, "reason": reason })),
        )
            .into_response(),
    }
}

async fn metrics(State(a): State<Admin>) -> Response {
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        metrics::encode(&a.registry),
    )
        .into_response()
}

async fn status(State(a): State<Admin>) -> Response {
    Json(a.source.status()).into_response()
}

/// `/`: the status page. axum answers HEAD with the same headers and no body, and any other
/// method with 405 and an `Allow` header.
async fn page(State(a): State<Admin>) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
            ),
        ],
        status_page::render(&a.source.status()),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt as _;

    use super::*;

    struct Fixed {
        healthy: bool,
        readiness: Readiness,
    }

    impl AdminSource for Fixed {
        fn healthy(&self) -> bool {
            self.healthy
        }
        fn readiness(&self) -> Readiness {
            self.readiness.clone()
        }
        fn status(&self) -> serde_json::Value {
            serde_json::json!({ "state": "fixed" })
        }
    }

    async fn get(admin: &Admin, path: &str) -> (StatusCode, Option<String>, String) {
        let req = Request::get(path).body(Body::empty()).unwrap();
        let resp = admin.router().oneshot(req).await.unwrap();
        let code = resp.status();
        let ctype = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned());
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (code, ctype, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn without_a_source_it_is_healthy_ready_and_has_an_empty_status() {
        let admin = Admin::new(Registry::default());
        assert_eq!(get(&admin, "/healthz").await.2, "ok\n");
        let (code, _, body) = get(&admin, "/readyz").await;
        assert_eq!((code, body.as_str()), (StatusCode::OK, "ok\n"));
        let (code, _, body) = get(&admin, "/status").await;
        assert_eq!((code, body.as_str()), (StatusCode::OK, "{}"));
        let (code, ctype, body) = get(&admin, "/metrics").await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(ctype.as_deref(), Some(metrics::CONTENT_TYPE));
        assert!(body.ends_with("# EOF\n"), "{body}");
        assert_eq!(get(&admin, "/nope").await.0, StatusCode::NOT_FOUND);
    }

    async fn send(admin: &Admin, method: &str, path: &str) -> (StatusCode, Response<Body>) {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .body(Body::empty())
            .unwrap();
        let resp = admin.router().oneshot(req).await.unwrap();
        (resp.status(), resp)
    }

    #[tokio::test]
    async fn the_status_page_renders_the_status_document() {
        let admin = Admin::new(Registry::default()).with_source(Arc::new(Fixed {
            healthy: true,
            readiness: Readiness::Ready,
        }));
        let (code, ctype, body) = get(&admin, "/").await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(ctype.as_deref(), Some("text/html; charset=utf-8"));
        assert!(body.contains("<b id=\"state\">fixed</b>"), "{body}");
        let (_, resp) = send(&admin, "GET", "/").await;
        let csp = resp.headers().get(header::CONTENT_SECURITY_POLICY).unwrap();
        assert!(csp.to_str().unwrap().starts_with("default-src 'none'"));
    }

    #[tokio::test]
    async fn odd_status_page_requests_are_answered_sanely() {
        let admin = Admin::new(Registry::default());
        // HEAD: the page's headers, no body.
        let (code, resp) = send(&admin, "HEAD", "/").await;
        assert_eq!(code, StatusCode::OK);
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        assert!(body.is_empty());
        // Any other method: 405 with the allowed ones.
        for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"] {
            let (code, resp) = send(&admin, method, "/").await;
            assert_eq!(code, StatusCode::METHOD_NOT_ALLOWED, "{method}");
            let allow = resp.headers().get(header::ALLOW).unwrap().to_str().unwrap();
            assert!(allow.contains("GET") && allow.contains("HEAD"), "{allow}");
        }
        // Unknown or traversal-looking paths: 404, nothing echoed.
        let long = format!("/{}", "a".repeat(16 * 1024));
        for path in [
            "/..%2f",
            "/..%2f..%2fetc%2fpasswd",
            "//",
            "/index.html",
            "/%3Cscript%3E",
            long.as_str(),
        ] {
            let (code, _, body) = get(&admin, path).await;
            assert_eq!(code, StatusCode::NOT_FOUND, "{path}");
            assert!(!body.contains("script") && !body.contains("aaaa"), "{body}");
        }
        // A query is ignored: the page, without the query in it.
        let (code, _, body) = get(&admin, "/?x=%3Cscript%3Ealert(1)%3C/script%3E&y=%22%3E").await;
        assert_eq!(code, StatusCode::OK);
        assert!(
            !body.contains("<script") && !body.contains("alert(1)"),
            "{body}"
        );
        assert!(
            !body.contains("%3Cscript") && !body.contains("%22"),
            "{body}"
        );
    }

    #[tokio::test]
    async fn a_source_decides_health_readiness_and_status() {
        let starting = Admin::new(Registry::default()).with_source(Arc::new(Fixed {
            healthy: false,
            readiness: Readiness::NotReady("starting: not yet".into()),
        }));
        let (code, _, body) = get(&starting, "/healthz").await;
        assert_eq!(
            (code, body.as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, "starting\n")
        );
        let (code, ctype, body) = get(&starting, "/readyz").await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(ctype.as_deref(), Some("application/json"));
        assert_eq!(body, r#"{"ready":false,"reason":"starting: not yet"}"#);

        let ready = Admin::new(Registry::default()).with_source(Arc::new(Fixed {
            healthy: true,
            readiness: Ok(()).into(),
        }));
        let (code, _, body) = get(&ready, "/readyz").await;
        assert_eq!((code, body.as_str()), (StatusCode::OK, r#"{"ready":true}"#));
        assert_eq!(get(&ready, "/status").await.2, r#"{"state":"fixed"}"#);
    }
}
