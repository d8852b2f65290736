//! Keeps the sidecar's TLS configs current. The identity comes from the shared source
//! (`crate::identity::start`, as in `fedgate run`): the identity files, polled every
//! `reload_interval` and at once on SIGHUP, or the Workload API stream. The [`Reloader`]
//! follows what the source publishes, rebuilds the TLS configs of every listener and swaps them
//! in; [`Outcomes`] counts each result, and is the source's `ReloadHook` for refused files.
//!
//! Invariants:
//! * configs are rebuilt once per identity the source publishes (for files: once per change
//!   of their content, detected by `fedgate_federation::watch::FileWatch`), never per
//!   connection;
//! * a change that does not load or build (half-written file, key not matching the cert, bad
//!   bundle) is refused with one log line, one `failed` count and its `last_error`, and the
//!   configs in force stay; the files are retried when any of them changes again (a streamed
//!   update the source refuses never reaches the reloader: the source keeps its previous
//!   identity and counts it in its own status);
//! * the swap is a `watch` send: connections already open keep the `Arc` they started with;
//! * the bundle set of every config is the identity's, one bundle per trust domain, never
//!   merged (`super::tls`), whichever source it came from.

use std::sync::Arc;

use tokio::sync::{mpsc, watch, Notify};
use tokio_util::sync::CancellationToken;

use super::config::Config;
use super::metrics::SidecarMetrics;
use super::tls::TlsSnapshot;
use crate::identity::files::IdentityError;
use crate::identity::workload_api::ClientError;
use crate::identity::{Identity, ReloadHook, StartError};
use fedgate_federation::error_chain;

/// Why an identity could not be turned into TLS configs.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("cannot get the workload identity from the Workload API ([identity] socket)")]
    WorkloadApi(#[from] ClientError),
    #[error("cannot build TLS configs from the SVID and bundles")]
    Tls(#[from] rustls::Error),
}

impl From<StartError> for LoadError {
    fn from(e: StartError) -> Self {
        match e {
            StartError::Files(e) => e.into(),
            StartError::WorkloadApi(e) => e.into(),
        }
    }
}

/// Counts of reload attempts, for operators (`/status` `reloads`) and tests (a failed reload
/// changes no snapshot).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReloadStatus {
    /// Changes of the identity that were loaded and swapped in.
    pub succeeded: u64,
    /// Changes that were refused (the configs in force stayed).
    pub failed: u64,
    /// Why the last refused change was refused.
    pub last_error: Option<String>,
}

/// Where reload results are counted: the metrics and the [`ReloadStatus`].
pub struct Outcomes {
    pub metrics: Arc<SidecarMetrics>,
    pub status: watch::Sender<ReloadStatus>,
}

/// The background task that keeps [`TlsSnapshot`]s current.
pub struct Reloader {
    config: Arc<Config>,
    /// Sends each new snapshot; connection handlers `borrow()` the latest when they start.
    tx: watch::Sender<Arc<TlsSnapshot>>,
    /// The identity in force, as the source publishes it.
    identity: watch::Receiver<Arc<Identity>>,
    outcomes: Arc<Outcomes>,
}

// === impl Outcomes ===

impl Outcomes {
    /// The hook for the identity source: counts each refused change of the files.
    pub fn hook(self: &Arc<Self>) -> ReloadHook {
        let outcomes = self.clone();
        Arc::new(move |result| {
            if let Err(error) = result {
                outcomes.refused(error.to_owned());
            }
        })
    }

    fn swapped(&self, generation: u64) {
        self.metrics.reload(true, Some(generation));
        self.status.send_modify(|s| s.succeeded += 1);
    }

    fn refused(&self, error: String) {
        self.metrics.reload(false, None);
        self.status.send_modify(|s| {
            s.failed += 1;
            s.last_error = Some(error);
        });
    }
}

// === impl Reloader ===

impl Reloader {
    /// `tx` holds the snapshot built from the identity `identity` last marked seen.
    pub fn new(
        config: Arc<Config>,
        tx: watch::Sender<Arc<TlsSnapshot>>,
        identity: watch::Receiver<Arc<Identity>>,
        outcomes: Arc<Outcomes>,
    ) -> Self {
        Self {
            config,
            tx,
            identity,
            outcomes,
        }
    }

    /// Rebuilds on every identity the source publishes, until `shutdown` (or until the source
    /// is gone: the configs in force then stay).
    pub async fn run(mut self, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                r = self.identity.changed() => if r.is_err() {
                    tracing::warn!("the identity source stopped; keeping the TLS configs in force");
                    return;
                },
            }
            let identity = self.identity.borrow_and_update().clone();
            self.rebuild(identity).await;
        }
    }

    /// Builds the configs of `identity` and swaps them in, or refuses it.
    async fn rebuild(&mut self, identity: Arc<Identity>) {
        let generation = self.tx.borrow().generation + 1;
        let config = self.config.clone();
        let built =
            tokio::task::spawn_blocking(move || TlsSnapshot::build(&identity, &config, generation))
                .await;
        let error = match built {
            Ok(Ok(snapshot)) => {
                let id = snapshot.id.clone();
                // Swap first, then say so: whoever reads the log may connect at once.
                self.tx.send_replace(Arc::new(snapshot));
                tracing::info!(
                    generation,
                    %id,
                    "identity changed: new TLS configs in force for new connections"
                );
                return self.outcomes.swapped(generation);
            }
            Ok(Err(e)) => error_chain(&LoadError::from(e)),
            Err(e) => format!("identity reload task failed: {e}"),
        };
        tracing::warn!(%error, "new identity cannot be used; keeping the TLS configs in force");
        self.outcomes.refused(error);
    }
}

/// Turns each message of `requests` (SIGHUP) into an immediate poll of the identity files
/// (`poll_now`); with a streamed identity there is nothing to re-read. Until `shutdown`.
pub async fn forward_requests(
    mut requests: mpsc::Receiver<()>,
    poll_now: Option<Arc<Notify>>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            r = requests.recv() => match (r, &poll_now) {
                // The signal task is gone: the files are still polled on the timer.
                (None, _) => return,
                (Some(()), Some(poll_now)) => poll_now.notify_one(),
                (Some(()), None) => tracing::info!(
                    "reload requested, but the identity is streamed from the Workload API: \
                     nothing to re-read"
                ),
            },
        }
    }
}
