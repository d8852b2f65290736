//! The gateway's own identity: its X509-SVID and its trust domain's bundle, loaded from files
//! and re-loaded when they change.
//!
//! Invariants: a published `Identity` always has an SVID whose SPIFFE ID is in the configured
//! trust domain and a bundle parsed for that trust domain; a file change that fails to load
//! is logged and the previous identity stays published (a half-written rotation never drops
//! the working identity). Polling (mtime + length) instead of inotify: Kubernetes updates
//! mounted Secrets by swapping symlinks, which inotify watches miss.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fedgate_federation::{Bundle, BundleError, SvidError, TrustDomain, X509Svid};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::Identity;
use crate::config::IdentityConfig;
use crate::telemetry::display_chain;

/// How often identity files are checked for changes.
pub const IDENTITY_POLL: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    #[error("cannot load the gateway SVID from {} and {}; check [identity] svid and key", chain.display(), key.display())]
    Svid {
        chain: PathBuf,
        key: PathBuf,
        #[source]
        source: Box<SvidError>,
    },
    #[error("the gateway SVID {id} is not in the configured trust domain {expected}; fix [identity] svid or trust_domain")]
    WrongTrustDomain { id: String, expected: TrustDomain },
    #[error("cannot read the local bundle {}; check [identity] bundle", path.display())]
    ReadBundle {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the local bundle {} is not a valid SPIFFE bundle for {td}", path.display())]
    Bundle {
        path: PathBuf,
        td: TrustDomain,
        #[source]
        source: Box<BundleError>,
    },
}

/// Polls the identity files and publishes each successfully loaded version.
pub struct IdentityWatcher {
    config: IdentityConfig,
    trust_domain: TrustDomain,
    /// Sends each newly loaded identity; receivers (bundle endpoint, bridge) rebuild TLS.
    tx: watch::Sender<Arc<Identity>>,
    seen: Fingerprint,
}

/// (mtime, length) of each watched file; `None` for a file that could not be stat'ed.
type Fingerprint = Vec<Option<(SystemTime, u64)>>;

// === impl Identity ===

impl Identity {
    /// Loads and checks the identity files.
    pub fn load(config: &IdentityConfig, td: &TrustDomain) -> Result<Identity, IdentityError> {
        let svid =
            X509Svid::load(&config.svid, &config.key).map_err(|source| IdentityError::Svid {
                chain: config.svid.clone(),
                key: config.key.clone(),
                source: Box::new(source),
            })?;
        if svid.id().trust_domain() != td {
            return Err(IdentityError::WrongTrustDomain {
                id: svid.id().to_string(),
                expected: td.clone(),
            });
        }
        let json = std::fs::read(&config.bundle).map_err(|source| IdentityError::ReadBundle {
            path: config.bundle.clone(),
            source,
        })?;
        let (bundle, warnings) =
            Bundle::parse(td, &json).map_err(|source| IdentityError::Bundle {
                path: config.bundle.clone(),
                td: td.clone(),
                source: Box::new(source),
            })?;
        for w in warnings {
            tracing::warn!(path = %config.bundle.display(), warning = %w.0, "local bundle entry ignored");
        }
        Ok(Identity { svid, bundle })
    }
}

// === impl IdentityWatcher ===

impl IdentityWatcher {
    /// Loads the identity now (an error here is a startup error) and returns the watcher with
    /// a receiver of the published identity.
    pub fn start(
        config: &IdentityConfig,
        td: &TrustDomain,
    ) -> Result<(IdentityWatcher, watch::Receiver<Arc<Identity>>), IdentityError> {
        let seen = fingerprint(config);
        let identity = Identity::load(config, td)?;
        let (tx, rx) = watch::channel(Arc::new(identity));
        Ok((
            IdentityWatcher {
                config: config.clone(),
                trust_domain: td.clone(),
                tx,
                seen,
            },
            rx,
        ))
    }

    /// Polls every `interval` until `shutdown`.
    pub async fn run(mut self, interval: Duration, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => self.check(),
            }
        }
    }

    fn check(&mut self) {
        let now = fingerprint(&self.config);
        if now == self.seen {
            return;
        }
        match Identity::load(&self.config, &self.trust_domain) {
            Ok(identity) => {
                tracing::info!(id = %identity.svid.id(), "gateway identity reloaded");
                self.seen = now;
                self.tx.send_replace(Arc::new(identity));
            }
            // Keep `seen` unchanged so a rotation finished by the next poll is retried.
            Err(e) => {
                tracing::warn!(error = %display_chain(&e), "identity files changed but do not load; keeping the previous identity")
            }
        }
    }
}

fn fingerprint(config: &IdentityConfig) -> Fingerprint {
    [&config.svid, &config.key, &config.bundle]
        .iter()
        .map(|p| stat(p))
        .collect()
}

fn stat(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes a CA bundle and an SVID for `spiffe://<td><path>` into `dir`.
    fn write_identity(dir: &Path, td: &str, path: &str) -> IdentityConfig {
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
        let config = IdentityConfig {
            svid: dir.join("gw.pem"),
            key: dir.join("gw.key"),
            bundle: dir.join("bundle.json"),
        };
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
        let (mut watcher, mut rx) = IdentityWatcher::start(&config, &td).unwrap();
        rx.borrow_and_update();

        watcher.check();
        assert!(
            !rx.has_changed().unwrap(),
            "unchanged files publish nothing"
        );

        std::fs::write(&config.svid, "half-written").unwrap();
        watcher.check();
        assert!(
            !rx.has_changed().unwrap(),
            "a broken file must not replace the identity"
        );
        assert_eq!(rx.borrow().svid.id().path(), "/gw/one");

        write_identity(dir.path(), "cluster-a.test", "/gw/rotated");
        watcher.check();
        assert!(rx.has_changed().unwrap());
        assert_eq!(rx.borrow_and_update().svid.id().path(), "/gw/rotated");
    }

    #[test]
    fn svid_of_another_trust_domain_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let config = write_identity(dir.path(), "cluster-b.test", "/gw");
        let td = TrustDomain::new("cluster-a.test").unwrap();
        let err = Identity::load(&config, &td).unwrap_err();
        assert!(
            matches!(err, IdentityError::WrongTrustDomain { .. }),
            "{err}"
        );
    }
}
