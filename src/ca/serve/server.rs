//! The bridge CA's issuing endpoint: HTTP/1.1 over mTLS, `POST /v1/issue` signs a CSR as the
//! caller's bridge SVID.
//!
//! Protocol (docs/bridge-ca.md):
//! * The client authenticates with its *local* X509-SVID; the handshake verifies it against the
//!   bundle of its own (member) trust domain. Non-members and bad chains fail the handshake.
//! * `POST /v1/issue[?ttl=<duration>]`, `Content-Type: application/pkcs10`, body = the CSR in
//!   DER. The CSR's single URI SAN is the requested bridge ID; it must be exactly the ID the
//!   policy maps the caller's local ID to. `ttl` is a humantime duration (`90s`, `1h`), default
//!   `default_ttl`, at most `max_ttl`.
//! * `200`, `Content-Type: application/pem-certificate-chain`: the bridge SVID, leaf first.
//! * Each caller (its verified SPIFFE ID) has a token bucket ([`super::rate_limit`]); a
//!   request that finds it empty gets `429` with `Retry-After` (seconds), before anything else
//!   is looked at.
//! * Refusals: `403` (policy: unknown identity, someone else's bridge ID, CA CSR, bad CSR
//!   signature or shape, ttl too long), `400` (bad request: content type, ttl syntax), `413`
//!   (body over [`MAX_CSR_BYTES`]), `408` (body slower than the handshake timeout), `500` (the
//!   CA could not sign); the body is one line naming
//!   the reason. Each refusal, handshake failures included, is one log line and one increment
//!   of `issuer_refusals_total{reason}`.
//! * `GET /healthz` → `200 ok`.
//!
//! Invariants: the caller identity comes only from the verified peer certificate; nothing from
//! the request body or headers can change it. Keys are never logged (the endpoint never sees
//! the client's key). A failing connection ends that connection only; the accept loop never
//! exits on an accept error.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use fedgate_federation::https::{self, HttpsApp, HttpsListener, Refusal as HttpsRefusal};
use fedgate_federation::spiffe_id::SpiffeId;
use fedgate_federation::tls::{peer_id, verify_error_of};
use fedgate_federation::VerifyError;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use rustls::{CertificateError, ServerConfig};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::{watch, OwnedSemaphorePermit};
use tokio_util::sync::CancellationToken;

use super::policy::{inspect_csr, Policy, Refusal, MAX_CSR_BYTES};
use super::rate_limit::{Decision, RateLimit, RateLimiter};
use crate::ca::{describe, Ca, CaError};

/// Media type of the request body (RFC 5967).
pub const PKCS10: &str = "application/pkcs10";
/// Media type of the response body (RFC 8555 §9.1).
pub const PEM_CHAIN: &str = "application/pem-certificate-chain";

/// The issuing endpoint. Build it with [`IssuerServer::new`], then [`run`](Self::run) it.
pub struct IssuerServer {
    shared: Arc<Shared>,
    /// The newest TLS config; each accepted connection uses whatever is current.
    tls: watch::Receiver<Arc<ServerConfig>>,
    /// Bounds the TLS handshake and the request-header read.
    handshake_timeout: Duration,
    /// Connections beyond this many are closed at accept and counted.
    max_connections: usize,
}

/// Counters of the issuing endpoint (registered under the `issuer_` prefix).
#[derive(Clone, Debug)]
pub struct IssuerMetrics {
    refusals: Family<ReasonLabel, Counter>,
    issued: Counter,
    /// Bumped after every counted event; tests and status pages await it instead of polling.
    events: Arc<watch::Sender<u64>>,
    seq: Arc<AtomicU64>,
}

/// The `reason` label of `issuer_refusals_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// State shared by all requests.
struct Shared {
    policy: Policy,
    /// Bounds reading the request body (a client dribbling its CSR holds nothing for long).
    body_timeout: Duration,
    /// The CA that signs; replaced by `Sources` when the CA directory changes.
    ca: watch::Receiver<Arc<Ca>>,
    metrics: IssuerMetrics,
    /// Per-caller token buckets of `POST /v1/issue`.
    rate: RateLimiter,
}

/// The verified local SPIFFE ID of the connection's client, set per connection.
#[derive(Clone, Debug)]
struct Caller(SpiffeId);

#[derive(Debug, Deserialize)]
struct IssueParams {
    ttl: Option<String>,
}

/// Why a request failed, beyond the policy's own refusals.
#[derive(Debug, thiserror::Error)]
enum Rejection {
    #[error(transparent)]
    Policy(#[from] Refusal),
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("the request body is larger than {MAX_CSR_BYTES} bytes")]
    TooLarge,
    #[error("the request body did not arrive within {0:?}")]
    SlowBody(Duration),
    #[error("the CA cannot sign: {0}")]
    Issue(#[source] CaError),
    #[error(
        "too many requests from this caller; retry after {} s (rate_limit in ca-serve.toml)",
        .0.as_secs()
    )]
    RateLimited(Duration),
}

// === impl IssuerServer ===

impl IssuerServer {
    /// An endpoint applying `policy`, signing with the current CA on `ca`, accepting
    /// connections with the current config on `tls`.
    pub fn new(
        policy: Policy,
        ca: watch::Receiver<Arc<Ca>>,
        tls: watch::Receiver<Arc<ServerConfig>>,
        metrics: IssuerMetrics,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                policy,
                body_timeout: super::config::DEFAULT_HANDSHAKE_TIMEOUT,
                ca,
                metrics,
                rate: RateLimiter::new(RateLimit::default()),
            }),
            tls,
            handshake_timeout: super::config::DEFAULT_HANDSHAKE_TIMEOUT,
            max_connections: super::config::DEFAULT_MAX_CONNECTIONS,
        }
    }

    /// Bounds the number of open connections (default 1024); more are closed and counted as
    /// `too_many_connections`.
    pub fn with_max_connections(mut self, max: usize) -> Self {
        self.max_connections = max.max(1);
        self
    }

    /// The per-caller rate limit of `POST /v1/issue` (default 60 per minute, burst 10). Call
    /// before [`run`](Self::run).
    pub fn with_rate_limit(mut self, limit: RateLimit) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.rate = RateLimiter::new(limit);
        }
        self
    }

    /// Bounds the TLS handshake, the request-header read and the body read (default 10 s
    /// each). Call before [`run`](Self::run).
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.body_timeout = timeout;
        }
        self
    }

    /// Accepts connections until `shutdown` is cancelled, then drains open connections (each
    /// finishes its current request, bounded by 5 s; see `fedgate_federation::https`).
    pub async fn run(self, listener: TcpListener, shutdown: CancellationToken) {
        let app = Arc::new(IssuerApp {
            router: router(self.shared.clone()),
            metrics: self.shared.metrics.clone(),
        });
        let settings = HttpsListener {
            name: "issuing endpoint",
            tls: self.tls,
            max_connections: self.max_connections,
            handshake_timeout: self.handshake_timeout,
            max_buf_size: None,
        };
        https::serve(listener, settings, app, shutdown).await;
    }
}

/// The issuing endpoint's side of `fedgate_federation::https`: refusal logs and metrics, and
/// the router with the connection's verified caller.
struct IssuerApp {
    router: Router,
    metrics: IssuerMetrics,
}

impl HttpsApp for IssuerApp {
    type Guard = OwnedSemaphorePermit;

    fn admit(&self, permit: OwnedSemaphorePermit) -> OwnedSemaphorePermit {
        permit
    }

    fn refuse(&self, peer: SocketAddr, refusal: HttpsRefusal<'_>) {
        let reason = match refusal {
            HttpsRefusal::OverLimit => {
                tracing::warn!(%peer, reason = "too_many_connections", "issuing endpoint at its connection limit; closing");
                "too_many_connections"
            }
            HttpsRefusal::Handshake(e) => {
                let reason = handshake_reason(e);
                tracing::warn!(%peer, reason, error = %e, "issuing endpoint refused a client at the TLS handshake");
                reason
            }
            HttpsRefusal::HandshakeTimeout => {
                tracing::warn!(%peer, reason = "handshake_timeout", "issuing endpoint TLS handshake timed out");
                "handshake_timeout"
            }
        };
        self.metrics.refuse(reason);
    }

    fn router(&self, peer: SocketAddr, tls: &rustls::ServerConnection) -> Option<Router> {
        // The verifier made the client certificate mandatory and checked its SPIFFE ID, so
        // this is always `Some`; stay defensive anyway.
        let Some(caller) = peer_id(tls) else {
            tracing::warn!(%peer, reason = "no_client_id", "issuing endpoint client has no SPIFFE ID");
            self.metrics.refuse("no_client_id");
            return None;
        };
        // The caller is taken from the verified certificate only: the extension is set here,
        // per connection, and nothing in a request can replace it.
        Some(self.router.clone().layer(Extension(Caller(caller))))
    }
}

/// The request router (no TLS). Every request must carry a [`Caller`] extension.
fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/issue", post(issue))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(shared)
}

async fn issue(
    State(shared): State<Arc<Shared>>,
    Extension(Caller(caller)): Extension<Caller>,
    params: Result<Query<IssueParams>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match shared.issue(&caller, params, &headers, body).await {
        Ok(pem) => {
            let mut r = Response::new(Body::from(pem));
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(PEM_CHAIN));
            r
        }
        Err(rejection) => {
            let reason = rejection.label();
            tracing::warn!(%caller, reason, error = %rejection, "bridge SVID request refused");
            shared.metrics.refuse(reason);
            let mut r = (
                rejection.status(),
                format!("refused ({reason}): {rejection}\n"),
            )
                .into_response();
            if let Rejection::RateLimited(after) = rejection {
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(after.as_secs()));
            }
            r
        }
    }
}

// === impl Shared ===

impl Shared {
    async fn issue(
        &self,
        caller: &SpiffeId,
        params: Result<Query<IssueParams>, axum::extract::rejection::QueryRejection>,
        headers: &HeaderMap,
        body: Body,
    ) -> Result<String, Rejection> {
        // A caller over its rate is refused before anything else is done for it.
        if let Decision::Limited { retry_after } = self.rate.check(caller) {
            return Err(Rejection::RateLimited(retry_after));
        }
        // Unknown callers are refused before anything they sent is looked at.
        self.policy.mapped(caller)?;
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let media_type = content_type.split(';').next().unwrap_or("").trim();
        if !media_type.eq_ignore_ascii_case(PKCS10) {
            return Err(Rejection::BadRequest(format!(
                "Content-Type must be {PKCS10} (a DER CSR), got {:?}",
                content_type.chars().take(100).collect::<String>()
            )));
        }
        let Query(params) = params.map_err(|e| Rejection::BadRequest(e.body_text()))?;
        let ttl = params
            .ttl
            .as_deref()
            .map(|s| {
                humantime::parse_duration(s).map_err(|e| {
                    Rejection::BadRequest(format!(
                        "ttl {:?} is not a duration such as 90s or 1h: {e}",
                        s.chars().take(40).collect::<String>()
                    ))
                })
            })
            .transpose()?;
        let der =
            tokio::time::timeout(self.body_timeout, axum::body::to_bytes(body, MAX_CSR_BYTES))
                .await
                .map_err(|_| Rejection::SlowBody(self.body_timeout))?
                .map_err(|_| Rejection::TooLarge)?;
        let csr = inspect_csr(&der)?;
        let grant = self.policy.decide(caller, &csr, ttl)?;
        let ca = self.ca.borrow().clone();
        let chain = ca
            .issue_from_csr(&der, &grant.bridge_id, grant.ttl)
            .map_err(Rejection::Issue)?;
        let leaf = chain.first().and_then(|c| describe::describe(c).ok());
        tracing::info!(
            %caller,
            bridge_id = %grant.bridge_id,
            ttl = %humantime::format_duration(grant.ttl),
            serial = leaf.as_ref().map(|l| l.serial.as_str()).unwrap_or("?"),
            not_after = leaf.as_ref().map(|l| l.not_after.as_str()).unwrap_or("?"),
            "issued bridge SVID"
        );
        self.metrics.issued();
        Ok(describe::encode_pem_certs(&chain))
    }
}

// === impl Rejection ===

impl Rejection {
    fn label(&self) -> &'static str {
        match self {
            Self::Policy(r) => r.label(),
            Self::BadRequest(_) => "bad_request",
            Self::TooLarge => "too_large",
            Self::SlowBody(_) => "slow_body",
            Self::Issue(_) => "issue_failed",
            Self::RateLimited(_) => "rate_limited",
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            Self::Policy(_) => StatusCode::FORBIDDEN,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::SlowBody(_) => StatusCode::REQUEST_TIMEOUT,
            Self::Issue(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
        }
    }
}

// === impl IssuerMetrics ===

impl IssuerMetrics {
    /// Registers `issuer_refusals_total{reason}` and `issuer_issued_total` in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let refusals = Family::<ReasonLabel, Counter>::default();
        let issued = Counter::default();
        registry.register(
            "issuer_refusals",
            "Bridge SVID requests refused, by reason (handshake failures included)",
            refusals.clone(),
        );
        registry.register("issuer_issued", "Bridge SVIDs issued", issued.clone());
        Self {
            refusals,
            issued,
            events: Arc::new(watch::channel(0).0),
            seq: Arc::new(AtomicU64::new(0)),
        }
    }

    /// How many refusals with `reason` were counted.
    pub fn refusals(&self, reason: &'static str) -> u64 {
        self.refusals.get_or_create(&ReasonLabel { reason }).get()
    }

    /// How many SVIDs were issued.
    pub fn issued_count(&self) -> u64 {
        self.issued.get()
    }

    /// A receiver of the number of events (refusals + issuances) counted so far.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.events.subscribe()
    }

    fn refuse(&self, reason: &'static str) {
        self.refusals.get_or_create(&ReasonLabel { reason }).inc();
        self.bump();
    }

    fn issued(&self) {
        self.issued.inc();
        self.bump();
    }

    fn bump(&self) {
        let n = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
        self.events.send_modify(|v| *v = (*v).max(n));
    }
}

/// The refusal reason of a failed TLS handshake (a metric label).
fn handshake_reason(e: &io::Error) -> &'static str {
    let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
        return "handshake_failed";
    };
    match tls {
        rustls::Error::NoCertificatesPresented => "no_client_cert",
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => "untrusted_issuer",
        rustls::Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::NotValidYet,
        ) => "client_cert_expired",
        other => match verify_error_of(other) {
            Some(VerifyError::NoBundleForTrustDomain(_)) => "non_member",
            Some(_) => "bad_client_svid",
            None => "handshake_failed",
        },
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use fedgate_federation::spiffe_id::TrustDomain;
    use rustls::OtherError;

    use super::*;

    fn io_err(e: rustls::Error) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }

    #[test]
    fn handshake_reasons() {
        let td = TrustDomain::new("x.test").unwrap();
        let cases = [
            (io::Error::other("eof"), "handshake_failed"),
            (
                io_err(rustls::Error::NoCertificatesPresented),
                "no_client_cert",
            ),
            (
                io_err(rustls::Error::InvalidCertificate(
                    CertificateError::UnknownIssuer,
                )),
                "untrusted_issuer",
            ),
            (
                io_err(rustls::Error::InvalidCertificate(CertificateError::Expired)),
                "client_cert_expired",
            ),
            (
                io_err(rustls::Error::InvalidCertificate(CertificateError::Other(
                    OtherError(Arc::new(VerifyError::NoBundleForTrustDomain(td.clone()))),
                ))),
                "non_member",
            ),
            (
                io_err(rustls::Error::InvalidCertificate(CertificateError::Other(
                    OtherError(Arc::new(VerifyError::EmptyBundle(td))),
                ))),
                "bad_client_svid",
            ),
        ];
        for (e, want) in cases {
            assert_eq!(handshake_reason(&e), want, "{e}");
        }
    }

    #[test]
    fn metrics_count_by_reason_and_signal_events() {
        let mut reg = Registry::default();
        let m = IssuerMetrics::register(&mut reg);
        let rx = m.subscribe();
        m.refuse("not_mapped_id");
        m.refuse("not_mapped_id");
        m.issued();
        assert_eq!(m.refusals("not_mapped_id"), 2);
        assert_eq!(m.refusals("ca_csr"), 0);
        assert_eq!(m.issued_count(), 1);
        assert_eq!(*rx.borrow(), 3);
        let text = crate::telemetry::metrics::encode(&reg);
        assert!(
            text.contains("issuer_refusals_total{reason=\"not_mapped_id\"} 2"),
            "{text}"
        );
        assert!(text.contains("issuer_issued_total 1"), "{text}");
    }
}
