//! The Workload API gRPC service (tonic) and its Unix socket.
//!
//! Every call goes through [`check_header`] (the `workload.spiffe.io: true` metadata, else
//! `InvalidArgument`), then is attested ([`super::attest`]) and matched against the entries
//! (no match: `PermissionDenied`). Streams are driven by the `watch` channel of [`Snapshot`]s
//! the [`Minter`](super::mint::Minter) publishes: the current state at once, then a message
//! each time what this caller is served changes, until the client goes away or shutdown.
//! The unary JWT methods read the snapshot current when they are called: `FetchJWTSVID` mints
//! with its JWT signer (no file is read per call), `ValidateJWTSVID` validates against its
//! bundles.
//!
//! Invariants: [`bind`] never removes anything but a socket, and never one that a live
//! server still answers on; the accept loop never ends on an accept error and never spins
//! (capped backoff); the socket file is removed when [`serve`] returns.

use std::collections::BTreeSet;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fedgate_dataplane::backoff::Backoff;
use fedgate_federation::{error_chain, SpiffeId};
use futures_util::Stream;
use tokio::net::UnixListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::UdsConnectInfo;
use tonic::{Request, Response, Status};

use super::attest::Caller;
use super::authority::{shim, ShimmedStream};
use super::convert;
use super::proto::spiffe_workload_api_server::{SpiffeWorkloadApi, SpiffeWorkloadApiServer};
use super::proto::{
    JwtBundlesRequest, JwtBundlesResponse, JwtsvidRequest, JwtsvidResponse, ValidateJwtsvidRequest,
    ValidateJwtsvidResponse, WitBundlesRequest, WitBundlesResponse, WitsvidRequest,
    WitsvidResponse, X509BundlesRequest, X509BundlesResponse, X509svidRequest, X509svidResponse,
};
use super::{Snapshot, SECURITY_HEADER};
use crate::config::entries::{Entries, Selector};

const FIRST_BACKOFF: Duration = Duration::from_millis(5);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// The security-header check as a function pointer, so the service type can be named.
type HeaderCheck = fn(Request<()>) -> Result<Request<()>, Status>;

/// The Workload API service behind the header check, as [`serve`] mounts it.
pub type WorkloadApiService = tonic::service::interceptor::InterceptedService<
    SpiffeWorkloadApiServer<WorkloadApi>,
    HeaderCheck,
>;

/// A server-streaming response.
type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Why the socket cannot be served.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BindError {
    #[error(
        "{} exists and is not a socket; refusing to remove it (choose another `socket` path \
         or remove the file yourself)",
        path.display()
    )]
    NotASocket { path: PathBuf },
    #[error(
        "{} is a socket another server is listening on; is an agent already running?",
        path.display()
    )]
    InUse { path: PathBuf },
    #[error("the directory of {} does not exist; create it first", path.display())]
    NoDirectory { path: PathBuf },
    #[error("cannot {what} {}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The Workload API service: entries, snapshots and the shutdown that ends its streams.
#[derive(Clone)]
pub struct WorkloadApi {
    entries: Arc<Entries>,
    snapshots: watch::Receiver<Arc<Snapshot>>,
    shutdown: CancellationToken,
}

// === impl WorkloadApi ===

impl WorkloadApi {
    pub fn new(
        entries: Arc<Entries>,
        snapshots: watch::Receiver<Arc<Snapshot>>,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            entries,
            snapshots,
            shutdown,
        }
    }

    /// The SPIFFE IDs the caller of `req` is entitled to; `PermissionDenied` if none.
    fn attest<T>(&self, req: &Request<T>, method: &'static str) -> Result<Vec<SpiffeId>, Status> {
        let cred = req
            .extensions()
            .get::<UdsConnectInfo>()
            .and_then(|info| info.peer_cred);
        let Some(cred) = cred else {
            tracing::warn!(
                method,
                "Workload API caller without peer credentials; refused"
            );
            return Err(Status::permission_denied(
                "no identity issued: the caller's credentials are unavailable",
            ));
        };
        let caller = Caller::from_cred(&cred);
        let selectors = caller.selectors();
        let ids = self.entries.matching(&selectors);
        if ids.is_empty() {
            tracing::info!(
                method,
                uid = caller.uid,
                gid = caller.gid,
                pid = caller.pid,
                selectors = %join(&selectors),
                "Workload API caller matches no entry; refused"
            );
            return Err(Status::permission_denied("no identity issued"));
        }
        tracing::debug!(
            method,
            uid = caller.uid,
            pid = caller.pid,
            ids = ids.len(),
            "Workload API caller attested"
        );
        Ok(ids)
    }

    fn stream<T, F>(&self, build: F) -> ResponseStream<T>
    where
        T: PartialEq + Clone + Send + Sync + 'static,
        F: Fn(&Snapshot) -> Result<T, Status> + Send + Sync + 'static,
    {
        Box::pin(watch_stream(
            self.snapshots.clone(),
            self.shutdown.clone(),
            build,
        ))
    }

    /// The tonic service with the security-header check in front of every method.
    pub fn into_service(self) -> WorkloadApiService {
        SpiffeWorkloadApiServer::with_interceptor(self, check_header as HeaderCheck)
    }
}

fn join(selectors: &BTreeSet<Selector>) -> String {
    selectors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Refuses a call without `workload.spiffe.io: true` (SPIFFE_Workload_Endpoint.md §6).
pub fn check_header(req: Request<()>) -> Result<Request<()>, Status> {
    match req.metadata().get(SECURITY_HEADER).map(|v| v.to_str()) {
        Some(Ok("true")) => Ok(req),
        _ => Err(Status::invalid_argument(
            "security header missing from request",
        )),
    }
}

/// The current snapshot's message at once, then each time it differs from the last one sent;
/// ends when the snapshots end or at `shutdown`, or after a first error.
fn watch_stream<T, F>(
    rx: watch::Receiver<Arc<Snapshot>>,
    shutdown: CancellationToken,
    build: F,
) -> impl Stream<Item = Result<T, Status>> + Send + 'static
where
    T: PartialEq + Clone + Send + Sync + 'static,
    F: Fn(&Snapshot) -> Result<T, Status> + Send + Sync + 'static,
{
    struct State<T, F> {
        rx: watch::Receiver<Arc<Snapshot>>,
        shutdown: CancellationToken,
        build: F,
        last: Option<T>,
        first: bool,
        done: bool,
    }
    let state = State {
        rx,
        shutdown,
        build,
        last: None,
        first: true,
        done: false,
    };
    futures_util::stream::unfold(state, |mut s| async move {
        if s.done {
            return None;
        }
        loop {
            if !s.first {
                tokio::select! {
                    () = s.shutdown.cancelled() => return None,
                    changed = s.rx.changed() => if changed.is_err() { return None },
                }
            }
            s.first = false;
            let snapshot = s.rx.borrow_and_update().clone();
            match (s.build)(&snapshot) {
                Ok(msg) if s.last.as_ref() == Some(&msg) => continue,
                Ok(msg) => {
                    s.last = Some(msg.clone());
                    return Some((Ok(msg), s));
                }
                Err(status) => {
                    s.done = true;
                    return Some((Err(status), s));
                }
            }
        }
    })
}

#[tonic::async_trait]
impl SpiffeWorkloadApi for WorkloadApi {
    type FetchX509SVIDStream = ResponseStream<X509svidResponse>;
    type FetchX509BundlesStream = ResponseStream<X509BundlesResponse>;
    type FetchJWTBundlesStream = ResponseStream<JwtBundlesResponse>;
    type FetchWITSVIDStream = ResponseStream<WitsvidResponse>;
    type FetchWITBundlesStream = ResponseStream<WitBundlesResponse>;

    async fn fetch_x509svid(
        &self,
        request: Request<X509svidRequest>,
    ) -> Result<Response<Self::FetchX509SVIDStream>, Status> {
        let ids = self.attest(&request, "FetchX509SVID")?;
        Ok(Response::new(self.stream(move |snapshot| {
            let resp = convert::x509_svid_response(snapshot, &ids).map_err(|e| {
                tracing::error!(error = %e, "cannot encode an X509-SVID response");
                Status::internal("cannot encode the SVID")
            })?;
            if resp.svids.is_empty() {
                return Err(Status::unavailable("no SVID minted yet for this caller"));
            }
            Ok(resp)
        })))
    }

    async fn fetch_x509_bundles(
        &self,
        request: Request<X509BundlesRequest>,
    ) -> Result<Response<Self::FetchX509BundlesStream>, Status> {
        self.attest(&request, "FetchX509Bundles")?;
        Ok(Response::new(self.stream(|snapshot| {
            Ok(convert::x509_bundles_response(snapshot))
        })))
    }

    async fn fetch_jwt_bundles(
        &self,
        request: Request<JwtBundlesRequest>,
    ) -> Result<Response<Self::FetchJWTBundlesStream>, Status> {
        self.attest(&request, "FetchJWTBundles")?;
        Ok(Response::new(self.stream(|snapshot| {
            Ok(convert::jwt_bundles_response(snapshot))
        })))
    }

    /// Checks the request (an audience is required, none empty; a requested SPIFFE ID must be
    /// one the caller is entitled to), then mints with the current snapshot's JWT signer one
    /// JWT-SVID for `audience` per entitled ID (or for the requested one), living
    /// [`Snapshot::jwt_ttl`]. A CA without a JWT key gives `Unavailable`, saying to run
    /// `fedgate ca rotate`.
    async fn fetch_jwtsvid(
        &self,
        request: Request<JwtsvidRequest>,
    ) -> Result<Response<JwtsvidResponse>, Status> {
        let ids = self.attest(&request, "FetchJWTSVID")?;
        let req = request.get_ref();
        if req.audience.iter().all(|a| a.is_empty()) {
            return Err(Status::invalid_argument("audience must be specified"));
        }
        if req.audience.iter().any(|a| a.is_empty()) {
            return Err(Status::invalid_argument(
                "audience must not contain an empty string",
            ));
        }
        let ids: Vec<SpiffeId> = if req.spiffe_id.is_empty() {
            ids
        } else {
            match ids.into_iter().find(|id| id.to_string() == req.spiffe_id) {
                Some(id) => vec![id],
                None => {
                    return Err(Status::permission_denied(format!(
                        "no identity issued for {}",
                        req.spiffe_id
                    )))
                }
            }
        };
        let snapshot = self.snapshots.borrow().clone();
        let signer = snapshot.jwt_signer.as_ref().map_err(|e| {
            tracing::warn!(error = %e, "FetchJWTSVID refused: the CA has no JWT signing key");
            Status::unavailable(format!("cannot mint JWT-SVIDs: {e}"))
        })?;
        let audience: Vec<&str> = req.audience.iter().map(String::as_str).collect();
        let resp = convert::jwt_svid_response(
            signer,
            &ids,
            &audience,
            SystemTime::now(),
            snapshot.jwt_ttl,
        )
        .map_err(|e| {
            tracing::error!(error = %error_chain(&e), "cannot mint a JWT-SVID");
            Status::internal(format!("cannot mint the JWT-SVID: {}", error_chain(&e)))
        })?;
        tracing::debug!(
            ids = resp.svids.len(),
            audience = %audience.join(","),
            ttl_s = snapshot.jwt_ttl.as_secs(),
            "JWT-SVIDs minted"
        );
        Ok(Response::new(resp))
    }

    /// Validates `svid` for `audience` against the JWT authorities of the bundle of its
    /// `sub`'s trust domain in the current snapshot (the local bundle or a federated one),
    /// with `fedgate_federation::jwt::validate`. An invalid token is `InvalidArgument` with the
    /// reason, as SPIRE answers; a valid one gives its SPIFFE ID and its claims.
    async fn validate_jwtsvid(
        &self,
        request: Request<ValidateJwtsvidRequest>,
    ) -> Result<Response<ValidateJwtsvidResponse>, Status> {
        self.attest(&request, "ValidateJWTSVID")?;
        let req = request.get_ref();
        if req.audience.is_empty() {
            return Err(Status::invalid_argument("audience must be specified"));
        }
        if req.svid.is_empty() {
            return Err(Status::invalid_argument("svid must be specified"));
        }
        let snapshot = self.snapshots.borrow().clone();
        match convert::validate_jwt_svid(&snapshot, &req.svid, &req.audience, SystemTime::now()) {
            Ok(resp) => Ok(Response::new(resp)),
            Err(e) => {
                let reason = error_chain(&e);
                tracing::debug!(error = %reason, "ValidateJWTSVID: the token is not valid");
                Err(Status::invalid_argument(format!(
                    "the JWT-SVID is not valid: {reason}"
                )))
            }
        }
    }

    async fn fetch_witsvid(
        &self,
        _request: Request<WitsvidRequest>,
    ) -> Result<Response<Self::FetchWITSVIDStream>, Status> {
        Err(Status::unimplemented(
            "the WIT-SVID profile is not supported",
        ))
    }

    async fn fetch_wit_bundles(
        &self,
        _request: Request<WitBundlesRequest>,
    ) -> Result<Response<Self::FetchWITBundlesStream>, Status> {
        Err(Status::unimplemented(
            "the WIT-SVID profile is not supported",
        ))
    }
}

// === socket ===

/// Binds the Workload API socket at `path`. A socket left there by a previous run is
/// removed; anything else at that path, or a socket a live server answers on, is refused.
/// The socket is made connectable by every local user (mode 0777): who gets an identity is
/// decided by attestation, not by file permissions.
pub fn bind(path: &Path) -> Result<UnixListener, BindError> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(BindError::InUse {
                    path: path.to_owned(),
                });
            }
            tracing::info!(path = %path.display(), "removing a stale Workload API socket");
            std::fs::remove_file(path).map_err(|source| BindError::Io {
                what: "remove the stale socket",
                path: path.to_owned(),
                source,
            })?;
        }
        Ok(_) => {
            return Err(BindError::NotASocket {
                path: path.to_owned(),
            })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(BindError::Io {
                what: "inspect",
                path: path.to_owned(),
                source,
            })
        }
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.is_dir() {
            return Err(BindError::NoDirectory {
                path: path.to_owned(),
            });
        }
    }
    let listener = UnixListener::bind(path).map_err(|source| BindError::Io {
        what: "listen on",
        path: path.to_owned(),
        source,
    })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777)).map_err(|source| {
        BindError::Io {
            what: "set the permissions of",
            path: path.to_owned(),
            source,
        }
    })?;
    Ok(listener)
}

/// Serves `api` on `listener` until `shutdown`, then removes the socket file at `path`.
pub async fn serve(
    listener: UnixListener,
    path: &Path,
    api: WorkloadApi,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let incoming = accept_stream(listener, shutdown.clone());
    let result = tonic::transport::Server::builder()
        .add_service(api.into_service())
        .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
        .await;
    if let Err(e) = std::fs::remove_file(path) {
        if e.kind() != io::ErrorKind::NotFound {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove the socket file");
        }
    }
    result
}

/// Accepted connections until shutdown, each behind the `:authority` filter
/// ([`super::authority`]); accept errors are logged and retried after a capped backoff (as
/// `fedgate_dataplane::accept` does for TCP), never handed to tonic.
fn accept_stream(
    listener: UnixListener,
    shutdown: CancellationToken,
) -> impl Stream<Item = Result<ShimmedStream, io::Error>> + Send + 'static {
    let backoff = Backoff::new(FIRST_BACKOFF, MAX_BACKOFF);
    futures_util::stream::unfold(
        (listener, backoff, shutdown),
        |(listener, mut backoff, shutdown)| async move {
            loop {
                let accepted = tokio::select! {
                    biased;
                    () = shutdown.cancelled() => return None,
                    r = listener.accept() => r,
                };
                match accepted {
                    Ok((stream, _)) => {
                        backoff.reset();
                        return Some((Ok(shim(stream)), (listener, backoff, shutdown)));
                    }
                    Err(e) => {
                        let delay = backoff.next();
                        tracing::warn!(
                            error = %e,
                            backoff_ms = delay.as_millis() as u64,
                            "Workload API accept failed; retrying after a backoff"
                        );
                        tokio::select! {
                            () = shutdown.cancelled() => return None,
                            () = tokio::time::sleep(delay) => {}
                        }
                    }
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_must_say_true() {
        let mut ok = Request::new(());
        ok.metadata_mut()
            .insert(SECURITY_HEADER, "true".parse().unwrap());
        assert!(check_header(ok).is_ok());
        let missing = check_header(Request::new(())).unwrap_err();
        assert_eq!(missing.code(), tonic::Code::InvalidArgument);
        let mut wrong = Request::new(());
        wrong
            .metadata_mut()
            .insert(SECURITY_HEADER, "yes".parse().unwrap());
        assert_eq!(
            check_header(wrong).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
    }

    #[test]
    fn bind_refuses_a_file_and_replaces_a_stale_socket() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-socket");
        std::fs::write(&file, "data").unwrap();
        let err = bind(&file).unwrap_err();
        assert!(matches!(err, BindError::NotASocket { .. }), "{err}");
        assert!(err.to_string().contains("is not a socket"), "{err}");
        assert_eq!(std::fs::read(&file).unwrap(), b"data", "left untouched");

        let sub = dir.path().join("subdir");
        std::fs::create_dir(&sub).unwrap();
        assert!(matches!(bind(&sub), Err(BindError::NotASocket { .. })));

        let missing = dir.path().join("nowhere/agent.sock");
        assert!(matches!(bind(&missing), Err(BindError::NoDirectory { .. })));

        let stale = dir.path().join("stale.sock");
        drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
        assert!(stale.exists());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let live = bind(&stale).expect("a stale socket is replaced");
            let err = bind(&stale).unwrap_err();
            assert!(matches!(err, BindError::InUse { .. }), "{err}");
            drop(live);
        });
    }
}
