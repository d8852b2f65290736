//! Where fedgate's own identities come from: one [`Identity`] type and the [`IdentitySource`]s
//! that keep one current.
//!
//! * [`files`]: SVID, key and bundle files (the gateway's `[identity]`, the `[bridge]`
//!   `svid`/`key` files, the sidecar's identity files and federated bundle map), polled with
//!   `fedgate_federation::watch::FileWatch`.
//! * [`issuer`]: the gateway's bridge SVID, obtained and renewed from `fedgate ca serve`.
//! * [`workload_api`]: X509-SVIDs and bundles streamed from a SPIFFE Workload API socket (a
//!   SPIRE agent's or `fedgate agent`'s `FetchX509SVID`): the gateway's and the sidecar's
//!   `[identity] source = "workload_api"`, both started by [`start`].
//!
//! The application chooses a source per identity (from its configuration) and hands the
//! source's receiver to whatever builds TLS configs from it; nothing downstream knows where
//! an identity came from.
//!
//! The **Workload API** source is the third implementation of [`IdentitySource`]: it
//! publishes the first `X509SVIDResponse` as an `Identity` (the SVID, its key, its own trust
//! domain's bundle in `bundle`, federated bundles in `bundles`) before its constructor returns,
//! then in `run` republishes every streamed update and reconnects with
//! `fedgate_dataplane::backoff::Backoff` on stream errors, ignoring the `poll` interval.
//!
//! Invariants (every source): a published identity's SVID is in the trust domain the source
//! was configured for; `bundles` holds `bundle` and at most one bundle per trust domain; a
//! source publishes a first identity before it is handed out and never withdraws one (a
//! failed reload, renewal or stream update keeps the previous identity in force).

pub mod files;
pub mod issuer;
pub mod workload_api;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use fedgate_federation::{Bundle, BundleSet, TrustDomain, X509Svid};
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

/// An X509-SVID (chain and key) with the bundles it is used with.
#[derive(Clone, Debug)]
pub struct Identity {
    pub svid: X509Svid,
    /// The bundle of the SVID's own trust domain.
    pub bundle: Bundle,
    /// `bundle` plus, for a workload, the bundles of federated trust domains: one per domain.
    pub bundles: BundleSet,
}

/// The task a source runs to keep its identity current.
pub type SourceTask = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A started source with a receiver of its identity (the app keeps both until it runs).
pub type StartedSource = (Box<dyn IdentitySource>, watch::Receiver<Arc<Identity>>);

/// Told what a source made of one change of its inputs: `Ok` with the identity it published,
/// or `Err` with why it refused the change (the error chain; the previous identity stays).
/// Given at construction (`files::FileSource::with_hook`, [`start`]); the sidecar counts
/// refused reloads with it.
pub type ReloadHook = Arc<dyn Fn(Result<&Identity, &str>) + Send + Sync>;

/// Something that keeps one [`Identity`] current and publishes it on a `watch` channel.
pub trait IdentitySource: Send {
    /// The identity in force; a new value is sent on every change.
    fn subscribe(&self) -> watch::Receiver<Arc<Identity>>;

    /// Keeps the identity current until `shutdown`. `poll` is how often a polling source
    /// re-reads its inputs; a streaming source ignores it.
    fn run(self: Box<Self>, poll: Duration, shutdown: CancellationToken) -> SourceTask;
}

/// Where an application's own identity comes from (`[identity]` of `fedgate run` and
/// `fedgate sidecar`).
#[derive(Clone, Debug)]
pub enum Origin {
    /// SVID, key and bundle files (and, for a workload, a federated bundle map), polled.
    Files(files::IdentityFiles),
    /// The `FetchX509SVID` stream of the Workload API on this Unix socket.
    WorkloadApi(PathBuf),
}

impl Origin {
    /// The one choice of `fedgate run` and `fedgate sidecar`: the identity files when
    /// configured, else the Workload API socket when configured (`None`: a gateway without
    /// an identity of its own).
    pub fn choose(files: Option<files::IdentityFiles>, socket: Option<&Path>) -> Option<Self> {
        match (files, socket) {
            (Some(files), _) => Some(Self::Files(files)),
            (None, Some(socket)) => Some(Self::WorkloadApi(socket.to_owned())),
            (None, None) => None,
        }
    }
}

impl From<&crate::config::sidecar::WorkloadIdentity> for Origin {
    fn from(w: &crate::config::sidecar::WorkloadIdentity) -> Self {
        use crate::config::sidecar::WorkloadIdentity;
        match w {
            WorkloadIdentity::Files(paths) => Self::Files(paths.into()),
            WorkloadIdentity::WorkloadApi { socket } => Self::WorkloadApi(socket.clone()),
        }
    }
}

/// A started identity source, kept by the application until it runs it.
pub struct Started {
    pub source: Box<dyn IdentitySource>,
    /// The identity in force; a new value on every published change.
    pub identity: watch::Receiver<Arc<Identity>>,
    /// [`Origin::WorkloadApi`]: the source's counters and socket, for `/status`.
    pub status: Option<workload_api::SourceStatus>,
    /// [`Origin::Files`]: makes the running source poll at once (SIGHUP).
    pub poll_now: Option<Arc<Notify>>,
}

/// Why an identity source could not start (no first identity).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Files(#[from] files::IdentityError),
    #[error(transparent)]
    WorkloadApi(#[from] workload_api::ClientError),
}

/// Starts the source of `origin` for trust domain `td`: loads the files now, or waits up to
/// `startup_timeout` for a first SVID from the Workload API. `hook` is told of every later
/// reload of the files (a streaming source counts its own rejections in its status).
pub async fn start(
    origin: &Origin,
    td: &TrustDomain,
    startup_timeout: Duration,
    hook: Option<ReloadHook>,
) -> Result<Started, StartError> {
    Ok(match origin {
        Origin::Files(paths) => {
            let (source, identity) = files::FileSource::start(paths, td)?;
            let source = source.with_hook(hook);
            Started {
                poll_now: Some(source.poll_handle()),
                source: Box::new(source),
                identity,
                status: None,
            }
        }
        Origin::WorkloadApi(socket) => {
            tracing::info!(
                socket = %socket.display(),
                "waiting for the workload identity from the Workload API"
            );
            let ((source, identity), status) =
                workload_api::start_source_with(socket, td, startup_timeout).await?;
            Started {
                source,
                identity,
                status: Some(status),
                poll_now: None,
            }
        }
    })
}

// === impl Identity ===

impl Identity {
    /// An SVID with only its own trust domain's bundle.
    pub fn new(svid: X509Svid, bundle: Bundle) -> Self {
        let bundles = BundleSet::new().with(bundle.clone());
        Self {
            svid,
            bundle,
            bundles,
        }
    }

    /// An SVID with its own trust domain's `local` bundle and `federated` ones. An entry of
    /// `federated` for the local trust domain is ignored: the local bundle is authoritative.
    pub fn with_federated(svid: X509Svid, local: Bundle, federated: Vec<Bundle>) -> Self {
        let mut identity = Self::new(svid, local);
        let local_td: &TrustDomain = identity.bundle.trust_domain();
        let mut bundles = identity.bundles.clone();
        for bundle in federated {
            if bundle.trust_domain() == local_td {
                tracing::debug!(
                    trust_domain = %local_td,
                    "ignoring the local trust domain's entry in the federated bundle map; \
                     the local bundle file is authoritative"
                );
                continue;
            }
            bundles = bundles.with(bundle);
        }
        identity.bundles = bundles;
        identity
    }
}
