//! Polls the identity files and swaps in new TLS configs when they change.
//!
//! Polling (not inotify) because Kubernetes updates mounted Secrets and ConfigMaps by swapping a
//! symlink, which inotify watches on the old target miss.
//!
//! Invariants:
//! * configs are rebuilt once per observed change of the file set, never per connection;
//! * a change that does not load or build (half-written file, key not matching the cert, bad
//!   bundle) is refused with one log line and a metric, and the configs in force stay; it is
//!   retried when any of the files changes again;
//! * the swap is a `watch` send: connections already open keep the `Arc` they started with.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::config::Config;
use super::identity::{Identity, IdentityError};
use super::metrics::SidecarMetrics;
use super::tls::TlsSnapshot;
use fedgate_federation::error_chain;

/// What identifies one version of a file without reading it: (device, inode, length, mtime).
/// The inode catches atomic renames and symlink swaps that keep length and mtime.
type FileStamp = Option<(u64, u64, u64, SystemTime)>;

/// The stamps of every identity file, in a fixed order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fingerprint(Vec<FileStamp>);

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
    /// The file set last attempted (successfully or not).
    last: Fingerprint,
    metrics: Arc<SidecarMetrics>,
}

// === impl Fingerprint ===

impl Fingerprint {
    /// Stamps every identity file of `config` (follows symlinks; a missing file is `None`).
    pub fn of(config: &Config) -> Self {
        Self::of_files(&files(config))
    }

    /// Stamps `files`, in order.
    pub fn of_files(files: &[PathBuf]) -> Self {
        Self(files.iter().map(stamp).collect())
    }
}

fn files(config: &Config) -> Vec<PathBuf> {
    let id = &config.identity;
    let mut files = vec![id.svid.clone(), id.key.clone(), id.bundle.clone()];
    files.extend(id.federated_bundles.clone());
    files
}

fn stamp(path: &PathBuf) -> FileStamp {
    let md = std::fs::metadata(path).ok()?;
    Some((md.dev(), md.ino(), md.len(), md.modified().ok()?))
}

/// Loads the identity files and builds every TLS config (blocking file I/O and parsing).
pub fn load(config: &Config, generation: u64) -> Result<TlsSnapshot, LoadError> {
    let identity = Identity::load(&config.identity, &config.trust_domain)?;
    Ok(TlsSnapshot::build(&identity, config, generation)?)
}

// === impl Reloader ===

impl Reloader {
    /// `last` is the fingerprint taken *before* the snapshot in `tx` was loaded, so a change
    /// racing with that load is picked up by the first poll.
    pub fn new(
        config: Arc<Config>,
        tx: watch::Sender<Arc<TlsSnapshot>>,
        status: watch::Sender<ReloadStatus>,
        last: Fingerprint,
        metrics: Arc<SidecarMetrics>,
    ) -> Self {
        Self {
            config,
            tx,
            status,
            last,
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

    /// One poll: reload if the file set changed since the last attempt.
    pub async fn poll(&mut self) {
        let config = self.config.clone();
        let current = Fingerprint::of(&config);
        if current == self.last {
            return;
        }
        self.last = current;
        let generation = self.tx.borrow().generation + 1;
        let loaded = tokio::task::spawn_blocking(move || load(&config, generation)).await;
        match loaded {
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
    use super::*;

    #[test]
    fn fingerprint_sees_writes_renames_and_appearing_files() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.pem"), dir.path().join("b.json"));
        std::fs::write(&a, "chain").unwrap();
        let files = [a.clone(), b.clone()];
        let first = Fingerprint::of_files(&files);
        assert_eq!(first, Fingerprint::of_files(&files), "nothing changed");

        // b appears.
        std::fs::write(&b, "{}").unwrap();
        let second = Fingerprint::of_files(&files);
        assert_ne!(first, second);

        // a replaced by a rename with the same length: a new inode even if mtime ties.
        let tmp = dir.path().join("a.tmp");
        std::fs::write(&tmp, "CHAIN").unwrap();
        std::fs::rename(&tmp, &a).unwrap();
        let third = Fingerprint::of_files(&files);
        assert_ne!(second, third);

        // b disappears.
        std::fs::remove_file(&b).unwrap();
        assert_ne!(third, Fingerprint::of_files(&files));
    }
}
