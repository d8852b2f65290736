//! Polls the identity files (a [`FileSource`]) and swaps in new TLS configs when they change.
//!
//! Invariants:
//! * configs are rebuilt once per observed change of the files' content (detected by
//!   `fedgate_federation::watch::FileWatch`), never per connection;
//! * a change that does not load or build (half-written file, key not matching the cert, bad
//!   bundle) is refused with one log line and a metric, and the configs in force stay; it is
//!   retried when any of the files changes again;
//! * the swap is a `watch` send: connections already open keep the `Arc` they started with.

use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::config::Config;
use super::metrics::SidecarMetrics;
use super::tls::TlsSnapshot;
use crate::identity::files::{FileSource, IdentityError, IdentityFiles};
use crate::identity::Identity;
use fedgate_federation::error_chain;

/// Why an identity could not be turned into TLS configs.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("cannot build TLS configs from the SVID and bundles")]
    Tls(#[from] rustls::Error),
}

/// Counts of reload attempts, for operators and tests (a failed reload changes no snapshot).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReloadStatus {
    /// Changes of the file set that were loaded and swapped in.
    pub succeeded: u64,
    /// Changes that were refused (the configs in force stayed).
    pub failed: u64,
    /// Why the last refused change was refused.
    pub last_error: Option<String>,
}

/// The background task that keeps [`TlsSnapshot`]s current.
pub struct Reloader {
    config: Arc<Config>,
    /// Sends each new snapshot; connection handlers `borrow()` the latest when they start.
    tx: watch::Sender<Arc<TlsSnapshot>>,
    /// Updated after every attempt, successful or not.
    status: watch::Sender<ReloadStatus>,
    /// The identity files; remembers the version last attempted (successfully or not).
    source: FileSource,
    metrics: Arc<SidecarMetrics>,
}

/// The identity files named by `config`.
pub fn identity_files(config: &Config) -> IdentityFiles {
    let id = &config.identity;
    IdentityFiles {
        svid: id.svid.clone(),
        key: id.key.clone(),
        bundle: id.bundle.clone(),
        federated_bundles: id.federated_bundles.clone(),
    }
}

/// Loads the identity files (blocking file I/O and parsing) and builds every TLS config;
/// returns the source that keeps watching the files, and the first snapshot (generation 0).
pub fn load(config: &Config) -> Result<(FileSource, TlsSnapshot), LoadError> {
    let (source, identity) = FileSource::start(&identity_files(config), &config.trust_domain)?;
    let identity: Arc<Identity> = identity.borrow().clone();
    Ok((source, TlsSnapshot::build(&identity, config, 0)?))
}

// === impl Reloader ===

impl Reloader {
    /// `source` is the one that loaded the snapshot in `tx` (see [`load`]): it remembers the
    /// version of the files that snapshot was built from.
    pub fn new(
        config: Arc<Config>,
        tx: watch::Sender<Arc<TlsSnapshot>>,
        status: watch::Sender<ReloadStatus>,
        source: FileSource,
        metrics: Arc<SidecarMetrics>,
    ) -> Self {
        Self {
            config,
            tx,
            status,
            source,
            metrics,
        }
    }

    /// Polls every `reload_interval`, and at once on each message of `requests` (SIGHUP),
    /// until `shutdown`.
    pub async fn run(
        mut self,
        mut requests: Option<mpsc::Receiver<()>>,
        shutdown: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(self.config.reload_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let request = async {
                match requests.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => self.poll().await,
                r = request => match r {
                    Some(()) => self.poll().await,
                    // The signal task is gone: keep polling on the timer only.
                    None => requests = None,
                },
            }
        }
    }

    /// One poll: reload if the files' content changed since the last attempt.
    pub async fn poll(&mut self) {
        let identity = match self.source.poll_once() {
            None => return,
            Some(Ok(identity)) => identity,
            Some(Err(e)) => return self.refuse(error_chain(&LoadError::from(e))),
        };
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
                tracing::info!(
                    generation,
                    %id,
                    "identity files changed: new TLS configs in force for new connections"
                );
                self.metrics.reload(true, Some(generation));
                self.status.send_modify(|s| s.succeeded += 1);
            }
            Ok(Err(e)) => self.refuse(error_chain(&e)),
            Err(e) => self.refuse(format!("identity reload task failed: {e}")),
        }
    }

    fn refuse(&self, error: String) {
        tracing::warn!(
            %error,
            "identity files changed but cannot be used; keeping the TLS configs in force"
        );
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
