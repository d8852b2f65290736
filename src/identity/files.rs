//! The file-based [`IdentitySource`]: an SVID, its key, the local trust domain's bundle and,
//! optionally, a SPIFFE bundle map of federated trust domains, read from files and re-read
//! when they change (the gateway's `[identity]`, the `[bridge]` `svid`/`key` files, the
//! sidecar's identity files).
//!
//! Invariants:
//! * a published `Identity` has an SVID whose SPIFFE ID is in the configured trust domain and
//!   a local bundle parsed for that trust domain;
//! * change detection is [`FileWatch`]'s: by content, only on a read that no writer raced; a
//!   change that does not load is logged and the previous identity stays published (a
//!   half-written rotation never drops the working identity), and is retried when the files
//!   change again;
//! * the SVID and the local bundle are required; a federated map that does not exist (yet)
//!   means "no peer domains yet" (a warning), so a workload can start before its gateway has
//!   distributed anything; the local bundle file is authoritative for the local trust domain;
//! * every change is polled once per interval or [`FileSource::poll_handle`] wake-up, logged,
//!   and reported to the source's [`ReloadHook`] (if any) after it was published or refused.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fedgate_federation::distribute::BundleMapError;
use fedgate_federation::watch::{FileWatch, WatchError};
use fedgate_federation::{Bundle, BundleError, SpiffeId, SvidError, TrustDomain, X509Svid};
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

use super::{Identity, IdentitySource, ReloadHook, SourceTask};
use fedgate_federation::error_chain;

/// How often identity files are checked for changes.
pub const IDENTITY_POLL: Duration = Duration::from_secs(2);

/// Where an identity's files are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityFiles {
    /// PEM chain, leaf first.
    pub svid: PathBuf,
    /// PEM private key of the leaf.
    pub key: PathBuf,
    /// SPIFFE bundle (JWKS) of the SVID's own trust domain.
    pub bundle: PathBuf,
    /// SPIFFE bundle map of federated trust domains (workloads only); may not exist yet.
    pub federated_bundles: Option<PathBuf>,
}

/// Why the identity files could not be loaded; each names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    #[error("cannot load the SVID from {} and {}", chain.display(), key.display())]
    Svid {
        chain: PathBuf,
        key: PathBuf,
        // Boxed: core's error is large and this travels through every `Result` here.
        #[source]
        source: Box<SvidError>,
    },
    #[error(
        "the SVID in {} is {id}, which is not in the configured trust domain {expected}; \
         fix the trust domain or issue an SVID of that domain",
        path.display()
    )]
    WrongTrustDomain {
        path: PathBuf,
        id: SpiffeId,
        expected: TrustDomain,
    },
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the bundle {} is not a valid SPIFFE bundle for {trust_domain}", path.display())]
    Bundle {
        path: PathBuf,
        trust_domain: TrustDomain,
        #[source]
        source: Box<BundleError>,
    },
    #[error("federated bundle map {} is not a valid SPIFFE bundle map", path.display())]
    BundleMap {
        path: PathBuf,
        #[source]
        source: Box<BundleMapError>,
    },
}

/// Polls identity files and publishes each version that loads.
pub struct FileSource {
    watch: FileWatch<Identity, IdentityError>,
    /// Sends each newly loaded identity; receivers rebuild their TLS configs.
    tx: watch::Sender<Arc<Identity>>,
    /// Told of every version published or refused, after the source's own log line.
    hook: Option<ReloadHook>,
    /// Wakes the polling loop at once (SIGHUP), besides its interval.
    poll_now: Arc<Notify>,
}

// === impl IdentityFiles ===

impl From<&crate::config::IdentityConfig> for IdentityFiles {
    fn from(i: &crate::config::IdentityConfig) -> Self {
        let (svid, key, bundle) = (i.svid.clone(), i.key.clone(), i.bundle.clone());
        Self::new(svid, key, bundle)
    }
}

impl From<&crate::config::sidecar::IdentityPaths> for IdentityFiles {
    fn from(p: &crate::config::sidecar::IdentityPaths) -> Self {
        let (svid, key, bundle) = (p.svid.clone(), p.key.clone(), p.bundle.clone());
        let federated_bundles = p.federated_bundles.clone();
        Self {
            svid,
            key,
            bundle,
            federated_bundles,
        }
    }
}

impl IdentityFiles {
    /// SVID, key and local bundle; no federated bundles.
    pub fn new(svid: PathBuf, key: PathBuf, bundle: PathBuf) -> Self {
        Self {
            svid,
            key,
            bundle,
            federated_bundles: None,
        }
    }

    /// Reads and checks the files once (blocking file I/O; the files are small).
    pub fn load(&self, td: &TrustDomain) -> Result<Identity, IdentityError> {
        self.watch(td).load().map_err(from_watch)
    }

    /// A watch of these files that parses them into an identity of `td`.
    pub fn watch(&self, td: &TrustDomain) -> FileWatch<Identity, IdentityError> {
        let files = self.clone();
        let td = td.clone();
        let required = [self.svid.clone(), self.key.clone(), self.bundle.clone()];
        let watch = FileWatch::new(required, move |contents| files.parse(&td, contents));
        match &self.federated_bundles {
            Some(map) => watch.with_optional(map.clone()),
            None => watch,
        }
    }

    /// Builds an identity from the files' contents (SVID, key, bundle, then the map if any).
    fn parse(&self, td: &TrustDomain, contents: &[Vec<u8>]) -> Result<Identity, IdentityError> {
        let [chain, key, bundle, rest @ ..] = contents else {
            return Err(IdentityError::Read {
                path: self.svid.clone(),
                source: std::io::Error::other("fewer contents than watched files"),
            });
        };
        let svid = X509Svid::from_pem(chain, key).map_err(|source| IdentityError::Svid {
            chain: self.svid.clone(),
            key: self.key.clone(),
            source: Box::new(source),
        })?;
        if svid.id().trust_domain() != td {
            return Err(IdentityError::WrongTrustDomain {
                path: self.svid.clone(),
                id: svid.id().clone(),
                expected: td.clone(),
            });
        }
        let local = parse_bundle(td, &self.bundle, bundle)?;
        let federated = match (&self.federated_bundles, rest.first()) {
            (Some(path), Some(map)) => parse_bundle_map(path, map)?,
            _ => Vec::new(),
        };
        Ok(Identity::with_federated(svid, local, federated))
    }
}

fn parse_bundle(td: &TrustDomain, path: &Path, json: &[u8]) -> Result<Bundle, IdentityError> {
    let (bundle, warnings) = Bundle::parse(td, json).map_err(|source| IdentityError::Bundle {
        path: path.to_owned(),
        trust_domain: td.clone(),
        source: Box::new(source),
    })?;
    for w in warnings {
        tracing::warn!(path = %path.display(), trust_domain = %td, warning = %w.0, "bundle entry ignored");
    }
    Ok(bundle)
}

fn parse_bundle_map(path: &Path, bytes: &[u8]) -> Result<Vec<Bundle>, IdentityError> {
    fedgate_federation::distribute::bundles_of_map_file(path, bytes).map_err(|source| {
        IdentityError::BundleMap {
            path: path.to_owned(),
            source: Box::new(source),
        }
    })
}

/// A watch error as an identity error (the read error names the file).
pub fn from_watch(e: WatchError<IdentityError>) -> IdentityError {
    match e {
        WatchError::Read { path, source } => IdentityError::Read { path, source },
        WatchError::Parse(e) => e,
    }
}

// === impl FileSource ===

impl FileSource {
    /// Loads the identity now (an error here is a startup error) and returns the source with
    /// a receiver of the published identity.
    pub fn start(
        files: &IdentityFiles,
        td: &TrustDomain,
    ) -> Result<(FileSource, watch::Receiver<Arc<Identity>>), IdentityError> {
        let mut watch = files.watch(td);
        let identity = watch.load().map_err(from_watch)?;
        let (tx, rx) = watch::channel(Arc::new(identity));
        let (hook, poll_now) = (None, Arc::new(Notify::new()));
        Ok((
            FileSource {
                watch,
                tx,
                hook,
                poll_now,
            },
            rx,
        ))
    }

    /// Reports every later reload, published or refused, to `hook` too.
    pub fn with_hook(mut self, hook: Option<ReloadHook>) -> Self {
        self.hook = hook;
        self
    }

    /// Each `notify_one` on the returned handle makes the running source poll at once.
    pub fn poll_handle(&self) -> Arc<Notify> {
        self.poll_now.clone()
    }

    /// One poll: `None` when nothing changed (or a writer was busy); otherwise the new
    /// identity, already published, or why the change was refused (the previous one stays).
    /// Either is logged and reported to the hook.
    pub fn poll_once(&mut self) -> Option<Result<Arc<Identity>, IdentityError>> {
        let loaded = self.watch.poll_once()?;
        let result = publish(&self.tx, loaded);
        match &result {
            Ok(identity) => {
                tracing::info!(id = %identity.svid.id(), "identity files reloaded");
                if let Some(hook) = &self.hook {
                    hook(Ok(identity));
                }
            }
            Err(e) => {
                let error = error_chain(e);
                tracing::warn!(
                    %error,
                    "identity files changed but do not load; keeping the previous identity"
                );
                if let Some(hook) = &self.hook {
                    hook(Err(&error));
                }
            }
        }
        Some(result)
    }

    /// Polls every `interval` (the first poll one interval from now) and on each
    /// [`poll_handle`](Self::poll_handle) notification, until `shutdown`.
    pub async fn run(mut self, interval: Duration, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let poll_now = self.poll_now.clone();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
                () = poll_now.notified() => {}
            }
            self.poll_once();
        }
    }
}

/// Publishes a newly loaded identity on `tx`; a refused one leaves the published one in place.
fn publish(
    tx: &watch::Sender<Arc<Identity>>,
    loaded: Result<Identity, WatchError<IdentityError>>,
) -> Result<Arc<Identity>, IdentityError> {
    let identity = Arc::new(loaded.map_err(from_watch)?);
    tx.send_replace(identity.clone());
    Ok(identity)
}

impl IdentitySource for FileSource {
    fn subscribe(&self) -> watch::Receiver<Arc<Identity>> {
        self.tx.subscribe()
    }

    fn run(self: Box<Self>, poll: Duration, shutdown: CancellationToken) -> SourceTask {
        Box::pin((*self).run(poll, shutdown))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes a CA bundle and an SVID for `spiffe://<td><path>` into `dir`.
    fn write_identity(dir: &Path, td: &str, path: &str) -> IdentityFiles {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
        let ca = ca.self_signed(&ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut leaf = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        leaf.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        let uri = rcgen::Ia5String::try_from(format!("spiffe://{td}{path}")).unwrap();
        leaf.subject_alt_names = vec![rcgen::SanType::URI(uri)];
        let leaf = leaf.signed_by(&key, &ca, &ca_key).unwrap();
        let mut bundle = Bundle::new(TrustDomain::new(td).unwrap());
        bundle.add_x509_authority(ca.der().clone());
        let config = IdentityFiles::new(
            dir.join("gw.pem"),
            dir.join("gw.key"),
            dir.join("bundle.json"),
        );
        std::fs::write(&config.svid, leaf.pem()).unwrap();
        std::fs::write(&config.key, key.serialize_pem()).unwrap();
        std::fs::write(&config.bundle, bundle.to_json()).unwrap();
        config
    }

    #[test]
    fn broken_rotation_keeps_the_previous_identity_until_it_loads() {
        let dir = tempfile::tempdir().unwrap();
        let td = TrustDomain::new("cluster-a.test").unwrap();
        let config = write_identity(dir.path(), "cluster-a.test", "/gw/one");
        let (mut watcher, mut rx) = FileSource::start(&config, &td).unwrap();
        rx.borrow_and_update();

        watcher.poll_once();
        assert!(
            !rx.has_changed().unwrap(),
            "unchanged files publish nothing"
        );

        std::fs::write(&config.svid, "half-written").unwrap();
        watcher.poll_once();
        assert!(
            !rx.has_changed().unwrap(),
            "a broken file must not replace the identity"
        );
        assert_eq!(rx.borrow().svid.id().path(), "/gw/one");

        write_identity(dir.path(), "cluster-a.test", "/gw/rotated");
        watcher.poll_once();
        assert!(rx.has_changed().unwrap());
        assert_eq!(rx.borrow_and_update().svid.id().path(), "/gw/rotated");
    }

    #[test]
    fn svid_of_another_trust_domain_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let config = write_identity(dir.path(), "cluster-b.test", "/gw");
        let td = TrustDomain::new("cluster-a.test").unwrap();
        let err = config.load(&td).unwrap_err();
        assert!(
            matches!(err, IdentityError::WrongTrustDomain { .. }),
            "{err}"
        );
    }
}
