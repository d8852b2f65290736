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
//! * [`BundleFileSource`] serves the bundle file as it is: the `spiffe_sequence` it serves is
//!   the file's own (or none, if the file has none), never one the process invents. So every
//!   replica serving the same file serves the same document, and therefore the same body and
//!   the same `ETag`, whatever its start time or history.
//! * A new version of the file is served only if [`next_served`] accepts it: its sequence is
//!   higher than the one being served (an absent sequence is lower than any), or it is equal
//!   and the content (authorities, JWT keys, refresh hint) is unchanged. A changed content
//!   without a higher sequence, or a lower sequence, is refused with
//!   [`EndpointError::Sequence`] and the bundle being served stays (last good).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

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

/// Polls the local bundle file and publishes each new version that [`next_served`] accepts.
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
    #[error(
        "bundle file {path} refused: {refusal}; run `fedgate ca rotate` (or raise \
         spiffe_sequence in the file above {}) to publish a change; keeping the bundle being \
         served",
        show_sequence(refusal.served())
    )]
    Sequence {
        path: PathBuf,
        refusal: SequenceRefusal,
    },
}

/// Why [`next_served`] refused a new version of the bundle file. Peers order bundles by
/// `spiffe_sequence` alone: they refuse a lower one as a rollback and cannot tell a changed
/// bundle with the same sequence from the one they hold.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SequenceRefusal {
    #[error(
        "its content changed but its spiffe_sequence ({}) is not higher than the one being \
         served ({})",
        show_sequence(*.file), show_sequence(*.served)
    )]
    NotIncreased {
        served: Option<u64>,
        file: Option<u64>,
    },
    #[error(
        "its spiffe_sequence ({}) is lower than the one being served ({}); peers would refuse \
         it as a rollback",
        show_sequence(*.file), show_sequence(*.served)
    )]
    Lower {
        served: Option<u64>,
        file: Option<u64>,
    },
}

impl SequenceRefusal {
    /// The sequence being served when the file was refused.
    pub fn served(&self) -> Option<u64> {
        match self {
            Self::NotIncreased { served, .. } | Self::Lower { served, .. } => *served,
        }
    }
    /// The sequence of the refused file.
    pub fn file(&self) -> Option<u64> {
        match self {
            Self::NotIncreased { file, .. } | Self::Lower { file, .. } => *file,
        }
    }
}

fn show_sequence(seq: Option<u64>) -> String {
    seq.map_or_else(|| "absent".to_string(), |s| s.to_string())
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
    /// receiver to hand to [`BundleEndpoint::new`]. The bundle is served as the file has it,
    /// sequence included; a file without `spiffe_sequence` is served without one, with a
    /// warning (peers cannot order its changes, so none will be accepted until it has one).
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
        let bundle = watch.load().map_err(from_watch)?;
        if bundle.sequence().is_none() {
            tracing::warn!(
                path = %path.display(), trust_domain = %trust_domain,
                "bundle file has no spiffe_sequence: it is served without one, and a change of it \
                 will be refused until it has one; write bundles with `fedgate ca` or \
                 `fedgate bundle create`, which set it"
            );
        }
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
        let next = match next_served(&served, file_bundle) {
            Ok(None) => return false,
            Ok(Some(next)) => next,
            Err(refusal) => {
                let e = EndpointError::Sequence {
                    path: self.path.clone(),
                    refusal,
                };
                tracing::error!(
                    trust_domain = %self.trust_domain, error = %crate::error_chain(&e),
                    "bundle file change refused"
                );
                return false;
            }
        };
        tracing::info!(
            trust_domain = %self.trust_domain, sequence = ?next.sequence(),
            authorities = next.x509_authorities().len(), "serving updated bundle"
        );
        self.tx.send_replace(Arc::new(next));
        true
    }
}

/// Decides what to serve when the bundle file changed to `file` while `served` is served:
/// * `Ok(None)`: same sequence and same content (authorities, JWT keys, refresh hint), so
///   nothing to publish;
/// * `Ok(Some(file))`: the file's sequence is higher (an absent sequence is lower than any),
///   so it is served, as it is;
/// * `Err(_)`: the content changed without a higher sequence, or the sequence went down.
///
/// Pure, so every replica decides the same for the same file.
pub fn next_served(served: &Bundle, file: Bundle) -> Result<Option<Bundle>, SequenceRefusal> {
    let (old, new) = (served.sequence(), file.sequence());
    // `Option`'s order puts `None` below every `Some`, which is the order peers apply.
    match new.cmp(&old) {
        std::cmp::Ordering::Greater => Ok(Some(file)),
        std::cmp::Ordering::Less => Err(SequenceRefusal::Lower {
            served: old,
            file: new,
        }),
        std::cmp::Ordering::Equal => {
            if file.same_authorities(served) && file.refresh_hint() == served.refresh_hint() {
                Ok(None)
            } else {
                Err(SequenceRefusal::NotIncreased {
                    served: old,
                    file: new,
                })
            }
        }
    }
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

    fn bundle(seq: Option<u64>, roots: &[u8], hint: Option<u64>) -> Bundle {
        let mut b = Bundle::new(TrustDomain::new("a.test").unwrap());
        for r in roots {
            b.add_x509_authority(CertificateDer::from(vec![0x30, 0x01, *r]));
        }
        b.set_sequence(seq);
        b.set_refresh_hint(hint.map(Duration::from_secs));
        b
    }

    #[test]
    fn same_content_and_sequence_is_no_change() {
        let served = bundle(Some(5), &[1], Some(300));
        assert_eq!(
            next_served(&served, bundle(Some(5), &[1], Some(300))).map(|b| b.is_some()),
            Ok(false)
        );
        // Unsequenced and unchanged: still served as is, deterministically.
        let served = bundle(None, &[1], None);
        assert_eq!(
            next_served(&served, bundle(None, &[1], None)).map(|b| b.is_some()),
            Ok(false)
        );
    }

    #[test]
    fn changed_content_with_the_same_sequence_is_refused() {
        let served = bundle(Some(5), &[1], Some(300));
        for changed in [
            bundle(Some(5), &[1, 2], Some(300)), // a root added
            bundle(Some(5), &[2], Some(300)),    // a root replaced
            bundle(Some(5), &[1], Some(60)),     // only the refresh hint
        ] {
            assert_eq!(
                next_served(&served, changed).unwrap_err(),
                SequenceRefusal::NotIncreased {
                    served: Some(5),
                    file: Some(5)
                }
            );
        }
        // Without any sequence a change cannot be ordered either.
        let err = next_served(&bundle(None, &[1], None), bundle(None, &[2], None)).unwrap_err();
        assert_eq!(
            err,
            SequenceRefusal::NotIncreased {
                served: None,
                file: None
            }
        );
        let e = EndpointError::Sequence {
            path: "/b.json".into(),
            refusal: SequenceRefusal::NotIncreased {
                served: Some(5),
                file: Some(5),
            },
        }
        .to_string();
        assert!(
            e.contains("/b.json") && e.contains("(5)") && e.contains("fedgate ca rotate"),
            "{e}"
        );
    }

    #[test]
    fn changed_content_with_a_higher_sequence_is_served_as_is() {
        let served = bundle(Some(5), &[1], Some(300));
        let next = next_served(&served, bundle(Some(6), &[1, 2], Some(300)))
            .unwrap()
            .unwrap();
        assert_eq!(next.sequence(), Some(6));
        assert_eq!(next.x509_authorities().len(), 2);
        // A jump is fine, and the sequence is the file's, not the served one + 1.
        let next = next_served(&served, bundle(Some(1_000), &[2], None))
            .unwrap()
            .unwrap();
        assert_eq!(next.sequence(), Some(1_000));
        // A first sequence for an unsequenced bundle is higher than none.
        let next = next_served(&bundle(None, &[1], None), bundle(Some(1), &[2], None))
            .unwrap()
            .unwrap();
        assert_eq!(next.sequence(), Some(1));
        // Same content, higher sequence: served (peers accept it, nothing is lost).
        assert!(next_served(&served, bundle(Some(7), &[1], Some(300)))
            .unwrap()
            .is_some());
    }

    #[test]
    fn a_lower_or_dropped_sequence_is_refused() {
        let served = bundle(Some(5), &[1], Some(300));
        for (file, seq) in [
            (bundle(Some(4), &[1, 2], Some(300)), Some(4)), // changed content
            (bundle(Some(4), &[1], Some(300)), Some(4)),    // same content
            (bundle(None, &[1], Some(300)), None),          // sequence dropped
        ] {
            assert_eq!(
                next_served(&served, file).unwrap_err(),
                SequenceRefusal::Lower {
                    served: Some(5),
                    file: seq
                }
            );
        }
    }
}
