//! The Workload API as an identity source: a client on a Unix socket, and
//! [`WorkloadApiSource`], an [`IdentitySource`] fed by the `FetchX509SVID` stream of a SPIRE
//! agent or `fedgate agent` (the serving side is `crate::workload`).
//!
//! Invariants (those of every identity source, `super`):
//! * [`WorkloadApiSource::start`] returns only after the first valid `X509SVIDResponse` has
//!   been published as an [`Identity`]; it retries (with backoff) until its startup timeout;
//! * each later response that converts (`super::convert`: the key must match the leaf, the
//!   SVID must be in the configured trust domain) is published; one that does not is logged,
//!   counted in [`SourceStats::rejected`], and the previous identity stays in force;
//! * a stream error or end reconnects after `fedgate_dataplane::backoff::Backoff`; an
//!   identity is never withdrawn (even on `PermissionDenied`);
//! * every call carries the `workload.spiffe.io: true` metadata;
//! * a socket path that exists but is not a Unix socket is refused at once
//!   ([`ClientError::NotASocket`]): no agent will ever listen there, so waiting is pointless;
//!   a path that does not exist (yet) is waited for, as an agent that is still starting.
//!
//! [`start_source`] is how an application (`fedgate run`'s `[identity]`, `fedgate sidecar`'s
//! `[identity]`) starts this source: one client, one set of counters ([`SourceStatus`]) that
//! both show in `/status` the same way.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fedgate_dataplane::backoff::Backoff;
use fedgate_federation::TrustDomain;
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status, Streaming};

use super::{Identity, IdentitySource, SourceTask, StartedSource};
use crate::workload::convert::{
    bundle_from_der, federated_from_map, svid_from_message, ConvertError,
};
use crate::workload::proto::spiffe_workload_api_client::SpiffeWorkloadApiClient;
use crate::workload::proto::{X509svidRequest, X509svidResponse};
use crate::workload::SECURITY_HEADER;

/// Default first reconnect delay; it doubles up to [`DEFAULT_MAX_BACKOFF`].
pub const DEFAULT_FIRST_BACKOFF: Duration = Duration::from_millis(100);
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long [`start_source`] waits for a first identity (a SPIRE agent may still be starting).
pub const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// A Workload API client whose every call carries the security header.
pub type Client = SpiffeWorkloadApiClient<InterceptedService<Channel, AddHeader>>;

/// Adds `workload.spiffe.io: true` to every request.
#[derive(Clone, Copy, Debug, Default)]
pub struct AddHeader;

impl tonic::service::Interceptor for AddHeader {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        req.metadata_mut()
            .insert(SECURITY_HEADER, MetadataValue::from_static("true"));
        Ok(req)
    }
}

/// Why the Workload API could not be reached or gave nothing usable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error("{0:?} is not a Workload API socket address; write \"unix:///path/to/agent.sock\"")]
    BadAddress(String),
    #[error(
        "{} exists but is not a Unix socket; point the socket address at the agent's socket",
        path.display()
    )]
    NotASocket { path: PathBuf },
    #[error("cannot connect to the Workload API at {}", path.display())]
    Connect {
        path: PathBuf,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("the Workload API answered {:?}: {}", status.code(), status.message())]
    Status { status: Status },
    #[error("the Workload API closed the stream before sending an SVID")]
    StreamEnded,
    #[error("the Workload API sent an unusable X509-SVID response")]
    Invalid(#[source] ConvertError),
    #[error("no usable identity from the Workload API within {timeout:?}; last error: {last}")]
    Timeout { timeout: Duration, last: String },
}

/// The path of a `unix:///path` (or `unix:/path`) address, as go-spiffe accepts them.
pub fn socket_path(addr: &str) -> Result<PathBuf, ClientError> {
    crate::config::workload_api_socket(addr).ok_or_else(|| ClientError::BadAddress(addr.to_owned()))
}

/// Starts a source on `socket` for `trust_domain`, waiting up to `timeout` for a first SVID
/// ([`DEFAULT_STARTUP_TIMEOUT`] in `fedgate run` and `fedgate sidecar`), boxed as an
/// application holds its identity sources, with its counters for `/status`.
pub async fn start_source_with(
    socket: &Path,
    trust_domain: &TrustDomain,
    timeout: Duration,
) -> Result<(StartedSource, SourceStatus), ClientError> {
    let (source, rx) = WorkloadApiSource::start(socket, trust_domain, timeout).await?;
    let status = SourceStatus {
        stats: source.stats(),
        socket: socket.to_path_buf(),
    };
    Ok(((Box::new(source) as Box<dyn IdentitySource>, rx), status))
}

/// A running source's socket and counters, as `/status` shows them (`identity_source`).
#[derive(Clone, Debug)]
pub struct SourceStatus {
    pub stats: Arc<SourceStats>,
    pub socket: PathBuf,
}

impl SourceStatus {
    /// `{"source": "workload_api", "socket", "updates", "rejected", "reconnects", "last_error"}`.
    pub fn status(&self) -> serde_json::Value {
        self.stats.status(&self.socket)
    }
}

/// Refuses a `socket` path that exists and is not a socket; a missing one is fine (an agent
/// may still be starting).
fn check_socket_path(socket: &Path) -> Result<(), ClientError> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::metadata(socket) {
        Ok(meta) if !meta.file_type().is_socket() => Err(ClientError::NotASocket {
            path: socket.to_path_buf(),
        }),
        _ => Ok(()),
    }
}

/// Connects to the Workload API socket at `path`, adding the security header to every call.
pub async fn connect(path: &Path) -> Result<Client, ClientError> {
    let channel = channel(path).await?;
    Ok(SpiffeWorkloadApiClient::with_interceptor(
        channel, AddHeader,
    ))
}

/// A gRPC channel to the Unix socket at `path` (no header added: see [`connect`]).
pub async fn channel(path: &Path) -> Result<Channel, ClientError> {
    let target = Arc::new(path.to_path_buf());
    // The URI is required by the HTTP/2 layer but unused: the connector dials the socket.
    let channel = Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let target = target.clone();
            async move {
                UnixStream::connect(target.as_path())
                    .await
                    .map(TokioIo::new)
            }
        }))
        .await
        .map_err(|source| ClientError::Connect {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(channel)
}

/// Opens a `FetchX509SVID` stream on `path`.
pub async fn fetch_x509_stream(path: &Path) -> Result<Streaming<X509svidResponse>, ClientError> {
    let mut client = connect(path).await?;
    let resp = client
        .fetch_x509svid(X509svidRequest {})
        .await
        .map_err(|status| ClientError::Status { status })?;
    Ok(resp.into_inner())
}

/// Counters of a [`WorkloadApiSource`], readable while it runs (for `/status` and metrics).
#[derive(Debug, Default)]
pub struct SourceStats {
    /// Identities published (the first one included).
    pub updates: AtomicU64,
    /// Responses refused (key mismatch, wrong trust domain, malformed).
    pub rejected: AtomicU64,
    /// Times the stream was (re)opened after an error or an end.
    pub reconnects: AtomicU64,
    /// The last error seen, cleared by the next published identity.
    pub last_error: Mutex<Option<String>>,
}

impl SourceStats {
    /// The counters and the last error as `/status` shows them.
    pub fn status(&self, socket: &Path) -> serde_json::Value {
        let last_error = self.last_error.lock().ok().and_then(|e| e.clone());
        serde_json::json!({
            "source": "workload_api",
            "socket": socket.display().to_string(),
            "updates": self.updates.load(Ordering::Relaxed),
            "rejected": self.rejected.load(Ordering::Relaxed),
            "reconnects": self.reconnects.load(Ordering::Relaxed),
            "last_error": last_error,
        })
    }

    fn set_error(&self, e: String) {
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(e);
        }
    }

    fn clear_error(&self) {
        if let Ok(mut last) = self.last_error.lock() {
            *last = None;
        }
    }
}

/// Keeps an [`Identity`] current from a Workload API's `FetchX509SVID` stream.
pub struct WorkloadApiSource {
    socket: PathBuf,
    trust_domain: TrustDomain,
    tx: watch::Sender<Arc<Identity>>,
    stream: Option<Streaming<X509svidResponse>>,
    backoff: Backoff,
    stats: Arc<SourceStats>,
}

// === impl WorkloadApiSource ===

impl WorkloadApiSource {
    /// Connects to `socket` and waits for a first valid SVID of `trust_domain`, retrying with
    /// the default backoff for at most `timeout`; returns the source and a receiver of its
    /// identity.
    pub async fn start(
        socket: &Path,
        trust_domain: &TrustDomain,
        timeout: Duration,
    ) -> Result<(Self, watch::Receiver<Arc<Identity>>), ClientError> {
        Self::start_with_backoff(
            socket,
            trust_domain,
            timeout,
            Backoff::new(DEFAULT_FIRST_BACKOFF, DEFAULT_MAX_BACKOFF),
        )
        .await
    }

    /// [`start`](Self::start) with another reconnect schedule (tests use a short one).
    pub async fn start_with_backoff(
        socket: &Path,
        trust_domain: &TrustDomain,
        timeout: Duration,
        mut backoff: Backoff,
    ) -> Result<(Self, watch::Receiver<Arc<Identity>>), ClientError> {
        check_socket_path(socket)?;
        let deadline = Instant::now() + timeout;
        let stats = Arc::new(SourceStats::default());
        loop {
            let err = match first_identity(socket, trust_domain).await {
                Ok((identity, stream)) => {
                    stats.updates.fetch_add(1, Ordering::Relaxed);
                    backoff.reset();
                    let (tx, rx) = watch::channel(Arc::new(identity));
                    let source = Self {
                        socket: socket.to_path_buf(),
                        trust_domain: trust_domain.clone(),
                        tx,
                        stream: Some(stream),
                        backoff,
                        stats,
                    };
                    return Ok((source, rx));
                }
                Err(e) => e,
            };
            if let ClientError::Invalid(_) = err {
                stats.rejected.fetch_add(1, Ordering::Relaxed);
            }
            let delay = backoff.next();
            if Instant::now() + delay > deadline {
                return Err(ClientError::Timeout {
                    timeout,
                    last: fedgate_federation::error_chain(&err),
                });
            }
            tracing::warn!(
                socket = %socket.display(),
                error = %fedgate_federation::error_chain(&err),
                retry_ms = delay.as_millis() as u64,
                "no identity from the Workload API yet; retrying"
            );
            tokio::time::sleep(delay).await;
        }
    }

    /// Counters shared with the running source.
    pub fn stats(&self) -> Arc<SourceStats> {
        self.stats.clone()
    }

    /// Republishes every valid streamed update and reconnects on errors until `shutdown`.
    pub async fn run(mut self, shutdown: CancellationToken) {
        loop {
            let stream = match self.stream.take() {
                Some(s) => s,
                None => {
                    let opened = tokio::select! {
                        () = shutdown.cancelled() => return,
                        r = fetch_x509_stream(&self.socket) => r,
                    };
                    self.stats.reconnects.fetch_add(1, Ordering::Relaxed);
                    match opened {
                        Ok(s) => s,
                        Err(e) => {
                            if !self.wait_backoff(&e, &shutdown).await {
                                return;
                            }
                            continue;
                        }
                    }
                }
            };
            let ended = self.follow(stream, &shutdown).await;
            match ended {
                None => return,
                Some(e) => {
                    if !self.wait_backoff(&e, &shutdown).await {
                        return;
                    }
                }
            }
        }
    }

    /// Reads `stream` until it fails or ends (`Some(why)`) or shutdown (`None`).
    async fn follow(
        &mut self,
        mut stream: Streaming<X509svidResponse>,
        shutdown: &CancellationToken,
    ) -> Option<ClientError> {
        loop {
            let next = tokio::select! {
                () = shutdown.cancelled() => return None,
                r = stream.message() => r,
            };
            match next {
                Ok(Some(resp)) => self.apply(&resp),
                Ok(None) => return Some(ClientError::StreamEnded),
                Err(status) => return Some(ClientError::Status { status }),
            }
        }
    }

    /// Publishes the identity in `resp`, or refuses it and keeps the previous one.
    fn apply(&mut self, resp: &X509svidResponse) {
        match identity_from_response(resp, &self.trust_domain) {
            Ok(identity) => {
                tracing::info!(
                    id = %identity.svid.id(),
                    trust_domains = identity.bundles.len(),
                    "identity updated from the Workload API"
                );
                // Counted before it is published: whoever is woken by it sees the count.
                self.stats.updates.fetch_add(1, Ordering::Relaxed);
                self.stats.clear_error();
                self.backoff.reset();
                self.tx.send_replace(Arc::new(identity));
            }
            Err(e) => {
                let e = ClientError::Invalid(e);
                let chain = fedgate_federation::error_chain(&e);
                tracing::warn!(
                    socket = %self.socket.display(),
                    error = %chain,
                    "refused a Workload API update; keeping the previous identity"
                );
                self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                self.stats.set_error(chain);
            }
        }
    }

    /// Logs `e` and sleeps the next backoff delay; `false` if shutdown came first.
    async fn wait_backoff(&mut self, e: &ClientError, shutdown: &CancellationToken) -> bool {
        let delay = self.backoff.next();
        let chain = fedgate_federation::error_chain(e);
        tracing::warn!(
            socket = %self.socket.display(),
            error = %chain,
            retry_ms = delay.as_millis() as u64,
            "Workload API stream lost; keeping the current identity and reconnecting"
        );
        self.stats.set_error(chain);
        tokio::select! {
            () = shutdown.cancelled() => false,
            () = tokio::time::sleep(delay) => true,
        }
    }
}

/// The identity carried by a `FetchX509SVID` response: its first SVID (the spec's default
/// identity), which must be in `td`, its bundle as the local bundle, and the federated bundles.
pub fn identity_from_response(
    resp: &X509svidResponse,
    td: &TrustDomain,
) -> Result<Identity, ConvertError> {
    let first = resp.svids.first().ok_or(ConvertError::NoSvid)?;
    let svid = svid_from_message(first)?;
    if svid.id().trust_domain() != td {
        return Err(ConvertError::WrongTrustDomain {
            id: svid.id().clone(),
            expected: td.clone(),
        });
    }
    let local = bundle_from_der(td, &first.bundle, "the SVID's bundle")?;
    let federated = federated_from_map(&resp.federated_bundles)?;
    Ok(Identity::with_federated(svid, local, federated))
}

/// One connection attempt: open the stream and convert its first message.
async fn first_identity(
    socket: &Path,
    td: &TrustDomain,
) -> Result<(Identity, Streaming<X509svidResponse>), ClientError> {
    let mut stream = fetch_x509_stream(socket).await?;
    let first = stream
        .message()
        .await
        .map_err(|status| ClientError::Status { status })?
        .ok_or(ClientError::StreamEnded)?;
    let identity = identity_from_response(&first, td).map_err(ClientError::Invalid)?;
    Ok((identity, stream))
}

impl IdentitySource for WorkloadApiSource {
    fn subscribe(&self) -> watch::Receiver<Arc<Identity>> {
        self.tx.subscribe()
    }

    fn run(self: Box<Self>, _poll: Duration, shutdown: CancellationToken) -> SourceTask {
        Box::pin((*self).run(shutdown))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_addresses() {
        assert_eq!(
            socket_path("unix:///run/spire/agent.sock").unwrap(),
            PathBuf::from("/run/spire/agent.sock")
        );
        assert_eq!(
            socket_path("unix:/tmp/a.sock").unwrap(),
            PathBuf::from("/tmp/a.sock")
        );
        for bad in [
            "/tmp/a.sock",
            "tcp://127.0.0.1:8081",
            "unix://host/tmp/a.sock",
            "unix://",
            "unix:///",
            "unix:relative.sock",
            "unix:///tmp/a.sock?x=1",
        ] {
            assert!(
                matches!(socket_path(bad), Err(ClientError::BadAddress(_))),
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn a_path_that_is_not_a_socket_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("agent.sock");
        std::fs::write(&file, b"data").unwrap();
        let td = TrustDomain::new("a.test").unwrap();
        // A timeout far beyond the test's: the refusal must not wait for it.
        let start = start_source_with(&file, &td, Duration::from_secs(3600));
        let err = tokio::time::timeout(Duration::from_secs(10), start)
            .await
            .expect("refused at once")
            .err()
            .unwrap();
        assert!(matches!(err, ClientError::NotASocket { .. }), "{err}");
        assert!(err.to_string().contains("is not a Unix socket"), "{err}");
        assert!(check_socket_path(&dir.path().join("missing.sock")).is_ok());
        assert!(
            check_socket_path(dir.path()).is_err(),
            "a directory is not a socket"
        );
    }
}
