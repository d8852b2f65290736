//! Keeps the sidecar's TLS configs current: rebuilds them whenever the identity changes and
//! swaps them in. The identity comes from an [`IdentityInput`]:
//! * [`IdentityInput::Files`]: the identity files (a [`FileSource`]), polled every
//!   `reload_interval` and at once on SIGHUP;
//! * [`IdentityInput::Stream`]: the receiver of a running streaming source (the Workload API,
//!   `crate::identity::workload_api`, started by [`start_workload_api`]); every identity it
//!   publishes is built and swapped in as a file change is. SIGHUP has nothing to re-read.
//!
//! Invariants:
//! * configs are rebuilt once per observed change of the identity (for files: of their
//!   content, detected by `fedgate_federation::watch::FileWatch`), never per connection;
//! * a change that does not load or build (half-written file, key not matching the cert, bad
//!   bundle) is refused with one log line and a metric, and the configs in force stay; it is
//!   retried when any of the files changes again (a streamed update the source refuses never
//!   reaches the reloader: the source keeps its previous identity and counts it);
//! * the swap is a `watch` send: connections already open keep the `Arc` they started with;
//! * the bundle set of every config is the identity's, one bundle per trust domain, never
//!   merged (`super::tls`), whichever input it came from.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::config::{Config, IdentityPaths};
use super::metrics::SidecarMetrics;
use super::tls::TlsSnapshot;
use crate::identity::files::{FileSource, IdentityError, IdentityFiles};
use crate::identity::workload_api::{self, ClientError, SourceStatus};
use crate::identity::{Identity, IdentitySource};
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

/// Counts of reload attempts, for operators and tests (a failed reload changes no snapshot).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReloadStatus {
    /// Changes of the identity that were loaded and swapped in.
    pub succeeded: u64,
    /// Changes that were refused (the configs in force stayed).
    pub failed: u64,
    /// Why the last refused change was refused.
    pub last_error: Option<String>,
}

/// Where the [`Reloader`] gets new identities from.
pub enum IdentityInput {
    /// The identity files; remembers the version last attempted (successfully or not).
    Files(FileSource),
    /// The receiver of a streaming source that runs on its own (the Workload API).
    Stream(watch::Receiver<Arc<Identity>>),
}

/// A started Workload API identity: the source to run, the input for the [`Reloader`], the
/// first snapshot (generation 0) and the source's counters for `/status`.
pub struct StartedWorkloadApi {
    pub source: Box<dyn IdentitySource>,
    pub input: IdentityInput,
    pub snapshot: TlsSnapshot,
    pub status: SourceStatus,
}

/// The background task that keeps [`TlsSnapshot`]s current.
pub struct Reloader {
    config: Arc<Config>,
    /// Sends each new snapshot; connection handlers `borrow()` the latest when they start.
    tx: watch::Sender<Arc<TlsSnapshot>>,
    /// Updated after every attempt, successful or not.
    status: watch::Sender<ReloadStatus>,
    input: IdentityInput,
    metrics: Arc<SidecarMetrics>,
}

/// The identity files named by `paths`.
pub fn identity_files(paths: &IdentityPaths) -> IdentityFiles {
    IdentityFiles {
        svid: paths.svid.clone(),
        key: paths.key.clone(),
        bundle: paths.bundle.clone(),
        federated_bundles: paths.federated_bundles.clone(),
    }
}

/// Loads the identity files (blocking file I/O and parsing) and builds every TLS config;
/// returns the source that keeps watching the files, and the first snapshot (generation 0).
pub fn load(
    config: &Config,
    paths: &IdentityPaths,
) -> Result<(FileSource, TlsSnapshot), LoadError> {
    let (source, identity) = FileSource::start(&identity_files(paths), &config.trust_domain)?;
    let identity: Arc<Identity> = identity.borrow().clone();
    Ok((source, TlsSnapshot::build(&identity, config, 0)?))
}

/// Starts the Workload API source on `socket` (the gateway's: it waits for a first SVID of
/// the configured trust domain for up to `timeout`, `workload_api::DEFAULT_STARTUP_TIMEOUT`
/// in `fedgate sidecar` as in `fedgate run`, and refuses a path that is not a socket at once)
/// and builds the first snapshot from its identity.
pub async fn start_workload_api(
    config: &Config,
    socket: &Path,
    timeout: Duration,
) -> Result<StartedWorkloadApi, LoadError> {
    let ((source, mut rx), status) =
        workload_api::start_source_with(socket, &config.trust_domain, timeout).await?;
    let identity = rx.borrow_and_update().clone();
    let snapshot = TlsSnapshot::build(&identity, config, 0)?;
    Ok(StartedWorkloadApi {
        source,
        input: IdentityInput::Stream(rx),
        snapshot,
        status,
    })
}

/// What woke the reloader.
enum Wake {
    Shutdown,
    Tick,
    Request,
    RequestsGone,
    Streamed,
    StreamGone,
}

// === impl Reloader ===

impl Reloader {
    /// `input` is the one that gave the snapshot in `tx` (see [`load`] and
    /// [`start_workload_api`]): it knows the version that snapshot was built from.
    pub fn new(
        config: Arc<Config>,
        tx: watch::Sender<Arc<TlsSnapshot>>,
        status: watch::Sender<ReloadStatus>,
        input: IdentityInput,
        metrics: Arc<SidecarMetrics>,
    ) -> Self {
        Self {
            config,
            tx,
            status,
            input,
            metrics,
        }
    }

    /// Files: polls every `reload_interval`, and at once on each message of `requests`
    /// (SIGHUP). Stream: rebuilds on every published identity. Until `shutdown`.
    pub async fn run(
        mut self,
        mut requests: Option<mpsc::Receiver<()>>,
        shutdown: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(self.config.reload_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let polls = matches!(self.input, IdentityInput::Files(_));
        // Set once the streaming source is gone (it only ends at shutdown).
        let mut stream_gone = false;
        loop {
            let request = async {
                match requests.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            };
            let streamed = async {
                match &mut self.input {
                    IdentityInput::Stream(rx) if !stream_gone => rx.changed().await.is_ok(),
                    _ => std::future::pending().await,
                }
            };
            let wake = tokio::select! {
                () = shutdown.cancelled() => Wake::Shutdown,
                _ = tick.tick(), if polls => Wake::Tick,
                r = request => match r {
                    Some(()) => Wake::Request,
                    None => Wake::RequestsGone,
                },
                ok = streamed => if ok { Wake::Streamed } else { Wake::StreamGone },
            };
            match wake {
                Wake::Shutdown => return,
                Wake::Tick => self.poll().await,
                Wake::Request if polls => self.poll().await,
                Wake::Request => tracing::info!(
                    "reload requested, but the identity is streamed from the Workload API: \
                     nothing to re-read"
                ),
                // The signal task is gone: keep polling on the timer only.
                Wake::RequestsGone => requests = None,
                Wake::Streamed => {
                    if let IdentityInput::Stream(rx) = &mut self.input {
                        let identity = rx.borrow_and_update().clone();
                        self.rebuild(identity).await;
                    }
                }
                Wake::StreamGone => {
                    tracing::warn!("the identity source stopped; keeping the TLS configs in force");
                    stream_gone = true;
                }
            }
        }
    }

    /// One poll of the files: reload if their content changed since the last attempt. Does
    /// nothing with a streamed identity.
    pub async fn poll(&mut self) {
        let IdentityInput::Files(source) = &mut self.input else {
            return;
        };
        let identity = match source.poll_once() {
            None => return,
            Some(Ok(identity)) => identity,
            Some(Err(e)) => return self.refuse(error_chain(&LoadError::from(e))),
        };
        self.rebuild(identity).await;
    }

    /// Builds the configs of `identity` and swaps them in, or refuses it.
    async fn rebuild(&mut self, identity: Arc<Identity>) {
        let generation = self.tx.borrow().generation + 1;
        let config = self.config.clone();
        let built = tokio::task::spawn_blocking(move || {
            TlsSnapshot::build(&identity, &config, generation).map_err(LoadError::from)
        })
        .await;
        match built {
            Ok(Ok(snapshot)) => {
                let id = snapshot.id.clone();
                // Swap first, then say so: whoever reads the log may connect at once.
                self.tx.send_replace(Arc::new(snapshot));
                match self.input {
                    IdentityInput::Files(_) => tracing::info!(
                        generation,
                        %id,
                        "identity files changed: new TLS configs in force for new connections"
                    ),
                    IdentityInput::Stream(_) => tracing::info!(
                        generation,
                        %id,
                        "identity updated by the Workload API: new TLS configs in force for \
                         new connections"
                    ),
                }
                self.metrics.reload(true, Some(generation));
                self.status.send_modify(|s| s.succeeded += 1);
            }
            Ok(Err(e)) => self.refuse(error_chain(&e)),
            Err(e) => self.refuse(format!("identity reload task failed: {e}")),
        }
    }

    fn refuse(&self, error: String) {
        match self.input {
            IdentityInput::Files(_) => tracing::warn!(
                %error,
                "identity files changed but cannot be used; keeping the TLS configs in force"
            ),
            IdentityInput::Stream(_) => tracing::warn!(
                %error,
                "Workload API identity cannot be used; keeping the TLS configs in force"
            ),
        }
        self.metrics.reload(false, None);
        self.status.send_modify(|s| {
            s.failed += 1;
            s.last_error = Some(error);
        });
    }
}

#[cfg(test)]
mod tests {
    use fedgate_federation::watch::FileWatch;

    #[test]
    fn identity_file_watch_sees_writes_renames_and_appearing_files() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.pem"), dir.path().join("b.json"));
        std::fs::write(&a, "chain").unwrap();
        // The sidecar's layout: required files, then the optional federated map.
        let mut watch = FileWatch::new([a.clone()], |c: &[Vec<u8>]| Ok::<_, ()>(c.to_vec()))
            .with_optional(b.clone());
        assert!(watch.poll_once().is_some(), "first version");
        assert!(watch.poll_once().is_none(), "nothing changed");

        // b appears.
        std::fs::write(&b, "{}").unwrap();
        assert!(watch.poll_once().is_some());

        // a replaced by a rename with the same length.
        let tmp = dir.path().join("a.tmp");
        std::fs::write(&tmp, "CHAIN").unwrap();
        std::fs::rename(&tmp, &a).unwrap();
        assert!(watch.poll_once().is_some());

        // b disappears.
        std::fs::remove_file(&b).unwrap();
        assert!(watch.poll_once().is_some());
    }
}
