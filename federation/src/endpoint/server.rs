//! Bundle endpoint server: serves the newest local bundle over HTTPS (SPIFFE_Federation.md
//! §5.2.1.3 and §5.2.2.3).
//!
//! Invariants:
//! * `GET`/`HEAD` of the configured path answer the newest bundle published on the watch
//!   channel, as `application/json` with a strong `ETag` (SHA-256 of the body); a matching
//!   `If-None-Match` answers `304`. Other methods get `405` with `Allow`, other paths `404`.
//! * The server never requests a client certificate.
//! * At most `max_connections` connections are open at once (default
//!   [`DEFAULT_MAX_CONNECTIONS`]); one more is closed at accept, before the TLS handshake, with
//!   a log line and one `fedgate_bundle_endpoint_refusals_total{reason="too_many_connections"}`.
//!   A connection's slot is free again before its end is signalled on [`EndpointMetrics`].
//! * A connection's failure (handshake timeout, TLS error, HTTP error) ends that connection
//!   only, with a log line; the accept loop backs off on accept errors and never exits on them.
//! * [`BundleFileSource`] publishes a bundle whose `spiffe_sequence` grows with every change
//!   of the file's authorities, and never decreases, including across restarts (the first
//!   sequence is at least the Unix time in seconds).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::{watch, OwnedSemaphorePermit};
use tokio_util::sync::CancellationToken;

use crate::bundle::{Bundle, BundleError};
use crate::https::{self, HttpsApp, HttpsListener, Refusal};
use crate::spiffe_id::TrustDomain;
use crate::svid::{SvidError, X509Svid};
use crate::tls;
use crate::watch::{FileWatch, WatchError};

/// Default bound on concurrent connections (the same default as `fedgate ca serve`).
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// The federation endpoint server. Build it, then [`run`](Self::run) it on a bound listener.
#[derive(Debug)]
pub struct BundleEndpoint {
    /// The path the bundle is served at (default `/`).
    path: String,
    /// The newest local bundle; each request serves whatever is current.
    bundle: watch::Receiver<Arc<Bundle>>,
    /// The newest TLS configuration; each new connection uses whatever is current.
    tls: watch::Receiver<Arc<ServerConfig>>,
    /// Bounds the TLS handshake and the wait for request headers of slow clients.
    handshake_timeout: Duration,
    /// Connections beyond this many are closed at accept and counted.
    max_connections: usize,
    metrics: EndpointMetrics,
}

/// Metrics of a bundle endpoint server; cheap to clone (clones share the series).
///
/// * `fedgate_bundle_endpoint_refusals_total{reason}`: connections closed before a request,
///   by reason (`too_many_connections`, `handshake_failed`, `handshake_timeout`);
/// * `fedgate_bundle_endpoint_open_connections`: connections currently open.
#[derive(Clone, Debug, Default)]
pub struct EndpointMetrics {
    refusals: Family<ReasonLabel, Counter>,
    open: Gauge,
    /// Bumped after every refusal and every connection end (tests await it instead of polling).
    events: Arc<watch::Sender<u64>>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// One connection's slot: on drop, frees the permit, then updates the gauge and signals.
struct Slot {
    permit: Option<OwnedSemaphorePermit>,
    metrics: EndpointMetrics,
}

/// The server's credentials: Web PKI certificate (`https_web`) or X509-SVID (`https_spiffe`).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum ServerTls {
    Web {
        chain: Vec<CertificateDer<'static>>,
        key: Arc<PrivateKeyDer<'static>>,
    },
    Spiffe(X509Svid),
}

/// Where [`ServerTls`] comes from, so that it can be reloaded when the files change.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum ServerTlsFiles {
    Web { cert: PathBuf, key: PathBuf },
    Spiffe { svid: PathBuf, key: PathBuf },
}

/// Polls the local bundle file and publishes each change with a growing sequence.
#[derive(Debug)]
pub struct BundleFileSource {
    trust_domain: TrustDomain,
    path: PathBuf,
    interval: Duration,
    /// The file's content version last seen (published or refused).
    watch: FileWatch<Bundle, EndpointError>,
    /// Publishes the bundle to serve; the server holds the receivers.
    tx: watch::Sender<Arc<Bundle>>,
}

/// Polls the certificate/SVID and key files and publishes a new TLS configuration on change.
#[derive(Debug)]
pub struct ServerTlsSource {
    interval: Duration,
    watch: FileWatch<Arc<ServerConfig>, EndpointError>,
    tx: watch::Sender<Arc<ServerConfig>>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EndpointError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("bundle file {path} is not a valid SPIFFE bundle for {trust_domain}")]
    Bundle {
        trust_domain: TrustDomain,
        path: PathBuf,
        #[source]
        source: Box<BundleError>,
    },
    #[error("no PEM certificate in {path}; expected CERTIFICATE blocks, leaf first")]
    NoCertificate { path: PathBuf },
    #[error("cannot read a PEM private key from {path}; expected a PRIVATE KEY block")]
    Key {
        path: PathBuf,
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    #[error("cannot load the X509-SVID {svid} with key {key}")]
    Svid {
        svid: PathBuf,
        key: PathBuf,
        #[source]
        source: Box<SvidError>,
    },
    #[error("cannot build the server TLS configuration (does the key match the certificate?)")]
    TlsConfig(#[source] rustls::Error),
}

// === impl BundleEndpoint ===

impl BundleEndpoint {
    /// Serves `bundle` at `path` (which must start with `/`) with the credentials on `tls`.
    pub fn new(
        path: impl Into<String>,
        bundle: watch::Receiver<Arc<Bundle>>,
        tls: watch::Receiver<Arc<ServerConfig>>,
    ) -> Self {
        let mut path = path.into();
        if !path.starts_with('/') {
            path.insert(0, '/');
        }
        Self {
            path,
            bundle,
            tls,
            handshake_timeout: Duration::from_secs(10),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            metrics: EndpointMetrics::default(),
        }
    }

    /// Bounds the number of open connections (default [`DEFAULT_MAX_CONNECTIONS`], at least 1);
    /// more are closed before the TLS handshake and counted as `too_many_connections`.
    pub fn with_max_connections(mut self, max: usize) -> Self {
        self.max_connections = max.max(1);
        self
    }

    /// Counts into `metrics` (register them with [`EndpointMetrics::register`]).
    pub fn with_metrics(mut self, metrics: EndpointMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Bounds the TLS handshake and the request-header read (default 10 s).
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// The axum router answering bundle requests (no TLS; used by `run` and tests).
    pub fn router(&self) -> Router {
        let state = Arc::new(Handler {
            path: self.path.clone(),
            bundle: self.bundle.clone(),
            cache: Mutex::new(None),
        });
        Router::new().fallback(serve_bundle).with_state(state)
    }

    /// Accepts connections until `shutdown` is cancelled, then drains open connections
    /// (each is asked to finish its current request and given 5 s; see [`crate::https`]).
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> Result<(), EndpointError> {
        let app = Arc::new(EndpointApp {
            router: self.router(),
            max_connections: self.max_connections,
            metrics: self.metrics.clone(),
        });
        let settings = HttpsListener {
            name: "bundle endpoint",
            tls: self.tls,
            max_connections: self.max_connections,
            handshake_timeout: self.handshake_timeout,
            // Bounded per-connection memory: a bundle request needs a few hundred bytes of
            // headers.
            max_buf_size: Some(16 * 1024),
        };
        https::serve(listener, settings, app, shutdown).await;
        Ok(())
    }
}

/// The bundle endpoint's side of [`crate::https`]: its router, logs and metrics.
struct EndpointApp {
    router: Router,
    max_connections: usize,
    metrics: EndpointMetrics,
}

impl HttpsApp for EndpointApp {
    type Guard = Slot;

    fn admit(&self, permit: OwnedSemaphorePermit) -> Slot {
        Slot::new(permit, self.metrics.clone())
    }

    fn refuse(&self, peer: SocketAddr, refusal: Refusal<'_>) {
        match refusal {
            Refusal::OverLimit => {
                tracing::warn!(
                    %peer,
                    reason = "too_many_connections",
                    max_connections = self.max_connections,
                    "bundle endpoint at its connection limit; closing"
                );
                // Counted before the close, so a client that sees the close sees the count.
                self.metrics.refuse("too_many_connections");
            }
            Refusal::Handshake(e) => {
                tracing::info!(%peer, error = %e, "bundle endpoint TLS handshake failed");
                self.metrics.refuse("handshake_failed");
            }
            Refusal::HandshakeTimeout => {
                tracing::info!(%peer, "bundle endpoint TLS handshake timed out");
                self.metrics.refuse("handshake_timeout");
            }
        }
    }

    fn router(&self, _: SocketAddr, _: &rustls::ServerConnection) -> Option<Router> {
        Some(self.router.clone())
    }
}

// === impl EndpointMetrics ===

impl EndpointMetrics {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `fedgate_bundle_endpoint_refusals_total{reason}` and
    /// `fedgate_bundle_endpoint_open_connections` in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "fedgate_bundle_endpoint_refusals",
            "Bundle endpoint connections closed before a request, by reason \
             (too_many_connections, handshake_failed, handshake_timeout)",
            self.refusals.clone(),
        );
        registry.register(
            "fedgate_bundle_endpoint_open_connections",
            "Bundle endpoint connections currently open",
            self.open.clone(),
        );
    }

    /// How many connections were refused with `reason`.
    pub fn refusals(&self, reason: &'static str) -> u64 {
        self.refusals.get_or_create(&ReasonLabel { reason }).get()
    }

    /// Connections currently open.
    pub fn open_connections(&self) -> i64 {
        self.open.get()
    }

    /// A receiver of the number of events (refusals and connection ends) so far.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.events.subscribe()
    }

    fn refuse(&self, reason: &'static str) {
        self.refusals.get_or_create(&ReasonLabel { reason }).inc();
        self.bump();
    }

    fn bump(&self) {
        self.events.send_modify(|n| *n += 1);
    }
}

// === impl Slot ===

impl Slot {
    fn new(permit: OwnedSemaphorePermit, metrics: EndpointMetrics) -> Self {
        metrics.open.inc();
        Self {
            permit: Some(permit),
            metrics,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        // Free the slot first, so that whoever sees the signal can connect again.
        drop(self.permit.take());
        self.metrics.open.dec();
        self.metrics.bump();
    }
}

/// Shared by all requests of one server.
#[derive(Debug)]
struct Handler {
    path: String,
    bundle: watch::Receiver<Arc<Bundle>>,
    /// The serialized form of the bundle last served, reused while the bundle is unchanged.
    cache: Mutex<Option<(Arc<Bundle>, bytes::Bytes, String)>>,
}

impl Handler {
    fn current(&self) -> (bytes::Bytes, String) {
        let bundle = self.bundle.borrow().clone();
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((b, body, etag)) = cache.as_ref() {
            if Arc::ptr_eq(b, &bundle) {
                return (body.clone(), etag.clone());
            }
        }
        let body = bytes::Bytes::from(bundle.to_json());
        let etag = etag_of(&body);
        *cache = Some((bundle, body.clone(), etag.clone()));
        (body, etag)
    }
}

async fn serve_bundle(
    State(h): State<Arc<Handler>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if uri.path() != h.path {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    }
    if method != Method::GET && method != Method::HEAD {
        let mut r = (StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n").into_response();
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let (body, etag) = h.current();
    let etag_value = HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"\""));
    if if_none_match_hits(&headers, &etag) {
        let mut r = StatusCode::NOT_MODIFIED.into_response();
        r.headers_mut().insert(header::ETAG, etag_value);
        return r;
    }
    let mut r = Response::new(Body::from(body));
    let hs = r.headers_mut();
    hs.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    hs.insert(header::ETAG, etag_value);
    hs.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// A strong entity tag: quoted hex SHA-256 of the body.
pub fn etag_of(body: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, body);
    let hex: String = digest.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("\"{hex}\"")
}

/// RFC 9110 §13.1.2: `*` or any listed tag equal to ours (weak comparison).
fn if_none_match_hits(headers: &HeaderMap, etag: &str) -> bool {
    headers.get_all(header::IF_NONE_MATCH).iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',')
                .map(str::trim)
                .any(|t| t == "*" || t.trim_start_matches("W/") == etag)
        })
    })
}

// === impl ServerTls ===

impl ServerTls {
    /// Loads a Web PKI certificate chain (leaf first) and its private key (PEM).
    pub fn load_web(cert: &Path, key: &Path) -> Result<Self, EndpointError> {
        Self::web_from_pem(cert, &read(cert)?, key, &read(key)?)
    }

    /// [`load_web`](Self::load_web) from contents already read (`cert`/`key` name them).
    fn web_from_pem(
        cert: &Path,
        cert_pem: &[u8],
        key: &Path,
        key_pem: &[u8],
    ) -> Result<Self, EndpointError> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
            .filter_map(Result::ok)
            .collect();
        if chain.is_empty() {
            return Err(EndpointError::NoCertificate {
                path: cert.to_owned(),
            });
        }
        let key_der =
            PrivateKeyDer::from_pem_slice(key_pem).map_err(|source| EndpointError::Key {
                path: key.to_owned(),
                source,
            })?;
        Ok(ServerTls::Web {
            chain,
            key: Arc::new(key_der),
        })
    }

    /// Loads an X509-SVID (chain, leaf first) and its key.
    pub fn load_svid(svid: &Path, key: &Path) -> Result<Self, EndpointError> {
        X509Svid::load(svid, key)
            .map(ServerTls::Spiffe)
            .map_err(|source| EndpointError::Svid {
                svid: svid.to_owned(),
                key: key.to_owned(),
                source: Box::new(source),
            })
    }

    /// A rustls server configuration that never asks for a client certificate.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, EndpointError> {
        let mut config = match self {
            ServerTls::Web { chain, key } => ServerConfig::builder_with_provider(tls::provider())
                .with_safe_default_protocol_versions()
                .map_err(EndpointError::TlsConfig)?
                .with_no_client_auth()
                .with_single_cert(chain.clone(), key.clone_key())
                .map_err(EndpointError::TlsConfig)?,
            ServerTls::Spiffe(svid) => {
                tls::server_config_no_client_auth(svid).map_err(EndpointError::TlsConfig)?
            }
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

// === impl ServerTlsFiles ===

impl ServerTlsFiles {
    pub fn load(&self) -> Result<ServerTls, EndpointError> {
        match self {
            ServerTlsFiles::Web { cert, key } => ServerTls::load_web(cert, key),
            ServerTlsFiles::Spiffe { svid, key } => ServerTls::load_svid(svid, key),
        }
    }

    fn paths(&self) -> [&Path; 2] {
        match self {
            ServerTlsFiles::Web { cert, key } => [cert, key],
            ServerTlsFiles::Spiffe { svid, key } => [svid, key],
        }
    }

    /// [`load`](Self::load) from the files' contents (certificate/SVID first, then key).
    fn parse(&self, contents: &[Vec<u8>]) -> Result<ServerTls, EndpointError> {
        let [chain_pem, key_pem] = contents else {
            return Err(EndpointError::NoCertificate {
                path: self.paths()[0].to_owned(),
            });
        };
        match self {
            ServerTlsFiles::Web { cert, key } => {
                ServerTls::web_from_pem(cert, chain_pem, key, key_pem)
            }
            ServerTlsFiles::Spiffe { svid, key } => X509Svid::from_pem(chain_pem, key_pem)
                .map(ServerTls::Spiffe)
                .map_err(|source| EndpointError::Svid {
                    svid: svid.clone(),
                    key: key.clone(),
                    source: Box::new(source),
                }),
        }
    }

    /// A watch of the files that parses them into a server TLS config.
    fn watch(&self) -> FileWatch<Arc<ServerConfig>, EndpointError> {
        let files = self.clone();
        let paths = self.paths().map(Path::to_path_buf);
        FileWatch::new(paths, move |contents| {
            files.parse(contents)?.server_config()
        })
    }
}

/// A watch error as the endpoint's error (the read error names the file).
fn from_watch(e: WatchError<EndpointError>) -> EndpointError {
    match e {
        WatchError::Read { path, source } => EndpointError::Read { path, source },
        WatchError::Parse(e) => e,
    }
}

// === impl ServerTlsSource ===

impl ServerTlsSource {
    /// Loads the credentials once (errors are fatal here) and returns the source to `run`.
    pub fn new(
        files: ServerTlsFiles,
        interval: Duration,
    ) -> Result<(Self, watch::Receiver<Arc<ServerConfig>>), EndpointError> {
        let mut watch = files.watch();
        let config = watch.load().map_err(from_watch)?;
        let (tx, rx) = watch::channel(config);
        Ok((
            Self {
                interval,
                watch,
                tx,
            },
            rx,
        ))
    }

    /// Polls the files every `interval`; a change that loads is published, one that does not
    /// is logged and the previous credentials stay in use.
    pub async fn run(self, shutdown: CancellationToken) {
        let tx = self.tx;
        self.watch
            .run(self.interval, shutdown, |loaded| match loaded {
                Ok(config) => {
                    tracing::info!("bundle endpoint credentials reloaded");
                    tx.send_replace(config);
                }
                Err(e) => tracing::warn!(
                    error = %crate::error_chain(&from_watch(e)),
                    "new endpoint credentials refused; keeping the current ones"
                ),
            })
            .await;
    }
}

// === impl BundleFileSource ===

impl BundleFileSource {
    /// Loads the bundle file of `td` (errors are fatal here) and returns the source and the
    /// receiver to hand to [`BundleEndpoint::new`]. The first served sequence is
    /// `max(file's sequence, Unix time in seconds)`, so a restart never serves a lower one.
    pub fn new(
        trust_domain: TrustDomain,
        path: impl Into<PathBuf>,
        interval: Duration,
    ) -> Result<(Self, watch::Receiver<Arc<Bundle>>), EndpointError> {
        let path = path.into();
        let (td, file) = (trust_domain.clone(), path.clone());
        let mut watch = FileWatch::new([path.clone()], move |contents: &[Vec<u8>]| {
            let content = contents.first().map(Vec::as_slice).unwrap_or_default();
            Bundle::parse(&td, content)
                .map(|(bundle, _warnings)| bundle)
                .map_err(|source| EndpointError::Bundle {
                    trust_domain: td.clone(),
                    path: file.clone(),
                    source: Box::new(source),
                })
        });
        let mut bundle = watch.load().map_err(from_watch)?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        bundle.set_sequence(Some(bundle.sequence().unwrap_or(0).max(now)));
        let (tx, rx) = watch::channel(Arc::new(bundle));
        let source = Self {
            trust_domain,
            path,
            interval,
            watch,
            tx,
        };
        Ok((source, rx))
    }

    /// Another receiver of the served bundle.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Bundle>> {
        self.tx.subscribe()
    }

    /// Polls the file every `interval` until `shutdown`. Polling (not inotify) because
    /// Kubernetes ConfigMap updates swap a symlink, which breaks inotify watches.
    pub async fn run(mut self, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(self.interval) => {}
            }
            self.poll_once();
        }
    }

    /// Reads the file once and publishes a new bundle if its content changed. Returns whether
    /// a new bundle was published.
    pub fn poll_once(&mut self) -> bool {
        let file_bundle = match self.watch.poll_once() {
            None => return false,
            Some(Ok(b)) => b,
            Some(Err(e @ WatchError::Read { .. })) => {
                tracing::warn!(error = %crate::error_chain(&from_watch(e)), "keeping the bundle being served");
                return false;
            }
            Some(Err(e)) => {
                let e = from_watch(e);
                tracing::warn!(
                    path = %self.path.display(), error = %crate::error_chain(&e),
                    "bundle file changed but is invalid; keeping the bundle being served"
                );
                return false;
            }
        };
        let served = self.tx.borrow().clone();
        let next = next_served(&served, file_bundle);
        if next.same_authorities(&served)
            && next.sequence() == served.sequence()
            && next.refresh_hint() == served.refresh_hint()
        {
            return false;
        }
        tracing::info!(
            trust_domain = %self.trust_domain, sequence = ?next.sequence(),
            authorities = next.x509_authorities().len(), "serving updated bundle"
        );
        self.tx.send_replace(Arc::new(next));
        true
    }
}

/// The bundle to serve after the file changed to `file`: its sequence is the file's if that
/// is higher, else the served one plus one when the authorities changed (else unchanged).
pub fn next_served(served: &Bundle, mut file: Bundle) -> Bundle {
    let prev = served.sequence().unwrap_or(0);
    let bump = if file.same_authorities(served) {
        prev
    } else {
        prev.saturating_add(1)
    };
    file.set_sequence(Some(file.sequence().unwrap_or(0).max(bump)));
    file
}

fn read(path: &Path) -> Result<Vec<u8>, EndpointError> {
    std::fs::read(path).map_err(|source| EndpointError::Read {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etag_is_strong_and_content_addressed() {
        let a = etag_of(b"{}");
        assert!(a.starts_with('"') && a.ends_with('"') && !a.starts_with("W/"));
        assert_eq!(a, etag_of(b"{}"));
        assert_ne!(a, etag_of(b"{ }"));
    }

    #[test]
    fn if_none_match_forms() {
        let tag = etag_of(b"x");
        let mut h = HeaderMap::new();
        assert!(!if_none_match_hits(&h, &tag));
        h.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_str(&format!("\"zz\", {tag}")).unwrap(),
        );
        assert!(if_none_match_hits(&h, &tag));
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert!(if_none_match_hits(&h, &tag));
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"other\""));
        assert!(!if_none_match_hits(&h, &tag));
    }

    #[test]
    fn sequence_grows_only_when_authorities_change() {
        let td = TrustDomain::new("a.test").unwrap();
        let mut served = Bundle::new(td.clone());
        served.set_sequence(Some(100));
        // Same (empty) authorities, file without sequence: unchanged.
        assert_eq!(
            next_served(&served, Bundle::new(td.clone())).sequence(),
            Some(100)
        );
        // File with a higher sequence wins.
        let mut f = Bundle::new(td.clone());
        f.set_sequence(Some(500));
        assert_eq!(next_served(&served, f).sequence(), Some(500));
        // Changed authorities with a stale file sequence: previous + 1.
        let mut f = Bundle::new(td);
        f.set_sequence(Some(3));
        f.add_x509_authority(CertificateDer::from(vec![0x30, 0x00]));
        assert_eq!(next_served(&served, f).sequence(), Some(101));
    }
}
