//! Keeps the agent's [`Snapshot`] current: mints one X509-SVID per SPIFFE ID that an entry
//! grants, from a CA directory (`fedgate ca init`), and re-mints them at half their lifetime;
//! watches the CA directory and the federated bundle map (the file the gateway distributes)
//! and republishes on every change.
//!
//! Why minting rather than serving pre-issued SVID files: the agent then owns rotation (no
//! external job has to renew one file per entry before it expires), every SVID is for exactly
//! the entry's SPIFFE ID by construction, and keys never exist outside the agent's memory.
//!
//! Invariants:
//! * a snapshot is published before [`Minter::start`] returns, with an SVID for every granted
//!   SPIFFE ID; a later failure (a half-written CA directory, a broken bundle map, a refused
//!   issue) is logged and the previous snapshot stays published: nothing is ever withdrawn;
//! * SVIDs are re-minted at half their lifetime, and at once when the CA directory changes;
//!   a failed re-mint is retried after [`RETRY`] while the old SVIDs stay in force;
//! * the local trust domain's bundle is the CA's `bundle.json`; an entry for the local trust
//!   domain in the federated map is ignored (the CA is authoritative), as in
//!   `Identity::with_federated`;
//! * the JWT-SVID signer in a snapshot is the one of the CA the snapshot's bundle comes from
//!   (loaded together, `jwt.key` is watched with the other CA files), so a JWT-SVID minted
//!   from a snapshot validates against that snapshot's local bundle; a CA directory without
//!   `jwt.key` still serves X509-SVIDs, and `FetchJWTSVID` says to run `fedgate ca rotate`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fedgate_federation::distribute::BundleMapError;
use fedgate_federation::watch::{FileWatch, WatchError};
use fedgate_federation::{
    error_chain, Bundle, BundleSet, SpiffeId, SvidError, TrustDomain, X509Svid,
};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Snapshot;
use crate::ca::{Ca, CaError, BUNDLE_JSON, CA_KEY, CA_PEM, JWT_KEY, ROOT_KEY, ROOT_PEM};
use crate::config::entries::Entries;

/// How soon a failed re-mint is retried.
pub const RETRY: Duration = Duration::from_secs(5);

/// Where the agent's SVIDs and bundles come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MintConfig {
    /// The agent's trust domain: the CA must be this domain's.
    pub trust_domain: TrustDomain,
    /// A CA directory written by `fedgate ca init`.
    pub ca_dir: PathBuf,
    /// The SPIFFE bundle map of federated trust domains; may not exist yet.
    pub federated_bundles: Option<PathBuf>,
    /// Lifetime of each minted X509-SVID; JWT-SVIDs live `min(svid_ttl, MAX_JWT_TTL)`
    /// ([`super::jwt_ttl`]).
    pub svid_ttl: Duration,
}

/// Why the agent could not mint or load what it serves.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MintError {
    #[error("cannot load the CA from {}", dir.display())]
    Ca {
        dir: PathBuf,
        // Boxed: the CA's error is large and this travels through every `Result` here.
        #[source]
        source: Box<CaError>,
    },
    #[error(
        "the CA in {} is for trust domain {found}, not the agent's {expected}",
        dir.display()
    )]
    WrongTrustDomain {
        dir: PathBuf,
        found: TrustDomain,
        expected: TrustDomain,
    },
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("federated bundle map {} is not a valid SPIFFE bundle map", path.display())]
    BundleMap {
        path: PathBuf,
        #[source]
        source: Box<BundleMapError>,
    },
    #[error("cannot issue an SVID for {id}")]
    Issue {
        id: SpiffeId,
        #[source]
        source: Box<CaError>,
    },
    #[error("the SVID issued for {id} does not load")]
    Svid {
        id: SpiffeId,
        #[source]
        source: Box<SvidError>,
    },
}

/// Owns the CA and the watches; publishes [`Snapshot`]s.
pub struct Minter {
    config: MintConfig,
    entries: Arc<Entries>,
    ca_watch: FileWatch<Ca, MintError>,
    map_watch: Option<FileWatch<Vec<Bundle>, MintError>>,
    ca: Ca,
    federated: Vec<Bundle>,
    svids: BTreeMap<SpiffeId, X509Svid>,
    renew_at: Instant,
    tx: watch::Sender<Arc<Snapshot>>,
}

// === impl Minter ===

impl Minter {
    /// Loads the CA and the bundle map, mints every entry's SVID and publishes the first
    /// snapshot. Any error here is a startup error.
    pub fn start(
        config: MintConfig,
        entries: Arc<Entries>,
    ) -> Result<(Minter, watch::Receiver<Arc<Snapshot>>), MintError> {
        let mut ca_watch = ca_watch(&config.ca_dir, &config.trust_domain);
        let ca = ca_watch.load().map_err(from_watch)?;
        let mut map_watch = config.federated_bundles.as_deref().map(map_watch);
        let federated = match map_watch.as_mut() {
            Some(w) => w.load().map_err(from_watch)?,
            None => Vec::new(),
        };
        let svids = mint_all(&ca, &entries, config.svid_ttl)?;
        warn_without_jwt_key(&ca, &config.ca_dir);
        let snapshot = snapshot_of(&config, &ca, &federated, svids.clone());
        let (tx, rx) = watch::channel(Arc::new(snapshot));
        let renew_at = Instant::now() + config.svid_ttl / 2;
        Ok((
            Minter {
                config,
                entries,
                ca_watch,
                map_watch,
                ca,
                federated,
                svids,
                renew_at,
                tx,
            },
            rx,
        ))
    }

    /// A receiver of the published snapshots.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.tx.subscribe()
    }

    /// Re-mints at half-life and polls the CA directory and the bundle map every `poll` until
    /// `shutdown`.
    pub async fn run(mut self, poll: Duration, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep_until(self.renew_at) => self.remint("renewal"),
                _ = tick.tick() => self.poll_once(),
            }
        }
    }

    /// One poll of the CA directory and the bundle map; publishes on a change that loads.
    pub fn poll_once(&mut self) {
        if let Some(result) = self.ca_watch.poll_once() {
            match result.map_err(from_watch) {
                Ok(ca) => {
                    tracing::info!(ca_dir = %self.config.ca_dir.display(), "CA directory changed; re-minting SVIDs");
                    warn_without_jwt_key(&ca, &self.config.ca_dir);
                    self.ca = ca;
                    self.remint("CA change");
                }
                Err(e) => tracing::warn!(
                    error = %error_chain(&e),
                    "the CA directory changed but does not load; keeping the current CA and SVIDs"
                ),
            }
        }
        let Some(map_watch) = self.map_watch.as_mut() else {
            return;
        };
        if let Some(result) = map_watch.poll_once() {
            match result.map_err(from_watch) {
                Ok(federated) => {
                    tracing::info!(
                        trust_domains = federated.len(),
                        "federated bundle map changed"
                    );
                    self.federated = federated;
                    self.publish();
                }
                Err(e) => tracing::warn!(
                    error = %error_chain(&e),
                    "the federated bundle map changed but does not load; keeping the previous bundles"
                ),
            }
        }
    }

    /// Mints every SVID anew and publishes; on failure keeps the old ones and retries soon.
    fn remint(&mut self, why: &str) {
        match mint_all(&self.ca, &self.entries, self.config.svid_ttl) {
            Ok(svids) => {
                tracing::info!(count = svids.len(), reason = why, "SVIDs minted");
                self.svids = svids;
                self.renew_at = Instant::now() + self.config.svid_ttl / 2;
                self.publish();
            }
            Err(e) => {
                tracing::warn!(
                    error = %error_chain(&e),
                    retry_in_s = RETRY.as_secs(),
                    "cannot mint SVIDs; the current ones stay in force"
                );
                self.renew_at = Instant::now() + RETRY;
            }
        }
    }

    fn publish(&self) {
        let snapshot = snapshot_of(&self.config, &self.ca, &self.federated, self.svids.clone());
        self.tx.send_replace(Arc::new(snapshot));
    }
}

fn mint_all(
    ca: &Ca,
    entries: &Entries,
    ttl: Duration,
) -> Result<BTreeMap<SpiffeId, X509Svid>, MintError> {
    entries
        .ids()
        .into_iter()
        .map(|id| {
            let issued = ca.issue(&id, ttl, &[]).map_err(|source| MintError::Issue {
                id: id.clone(),
                source: Box::new(source),
            })?;
            let svid =
                X509Svid::from_pem(issued.chain_pem().as_bytes(), issued.key_pem().as_bytes())
                    .map_err(|source| MintError::Svid {
                        id: id.clone(),
                        source: Box::new(source),
                    })?;
            Ok((id, svid))
        })
        .collect()
}

/// A CA without a JWT signing key serves X509-SVIDs only; say so once per load, not per call.
fn warn_without_jwt_key(ca: &Ca, dir: &Path) {
    if let Err(e) = ca.jwt_signer(dir) {
        tracing::warn!(error = %e, "FetchJWTSVID will answer Unavailable");
    }
}

fn snapshot_of(
    config: &MintConfig,
    ca: &Ca,
    federated: &[Bundle],
    svids: BTreeMap<SpiffeId, X509Svid>,
) -> Snapshot {
    let local = ca.bundle().clone();
    let mut bundles = BundleSet::new().with(local);
    for b in federated {
        if b.trust_domain() != ca.trust_domain() {
            bundles = bundles.with(b.clone());
        }
    }
    Snapshot {
        trust_domain: ca.trust_domain().clone(),
        bundles,
        svids,
        jwt_signer: ca.jwt_signer(&config.ca_dir).map_err(Arc::new),
        jwt_ttl: super::jwt_ttl(config.svid_ttl),
    }
}

/// Watches the CA directory's files; each new version is loaded with [`Ca::load`].
fn ca_watch(dir: &Path, td: &TrustDomain) -> FileWatch<Ca, MintError> {
    let owned = dir.to_path_buf();
    let td = td.clone();
    let required = [dir.join(CA_PEM), dir.join(CA_KEY), dir.join(BUNDLE_JSON)];
    FileWatch::new(required, move |_| {
        let ca = Ca::load(&owned).map_err(|source| MintError::Ca {
            dir: owned.clone(),
            source: Box::new(source),
        })?;
        if ca.trust_domain() != &td {
            return Err(MintError::WrongTrustDomain {
                dir: owned.clone(),
                found: ca.trust_domain().clone(),
                expected: td.clone(),
            });
        }
        Ok(ca)
    })
    .with_optional(dir.join(ROOT_PEM))
    .with_optional(dir.join(ROOT_KEY))
    .with_optional(dir.join(JWT_KEY))
}

/// Watches the federated bundle map. A map that does not exist (yet) is empty: the gateway
/// may not have distributed one when the agent starts. An existing map must parse.
fn map_watch(path: &Path) -> FileWatch<Vec<Bundle>, MintError> {
    let owned = path.to_path_buf();
    FileWatch::new(Vec::<PathBuf>::new(), move |contents: &[Vec<u8>]| {
        let bytes = contents.first().map(Vec::as_slice).unwrap_or_default();
        fedgate_federation::distribute::bundles_of_map_file(&owned, bytes).map_err(|source| {
            MintError::BundleMap {
                path: owned.clone(),
                source: Box::new(source),
            }
        })
    })
    .with_optional(path.to_path_buf())
}

fn from_watch(e: WatchError<MintError>) -> MintError {
    match e {
        WatchError::Read { path, source } => MintError::Read { path, source },
        WatchError::Parse(e) => e,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::ca::InitOptions;
    use crate::config::entries::{Entry, Selector};

    fn setup(dir: &Path, ttl: Duration) -> (MintConfig, Arc<Entries>) {
        let td = TrustDomain::new("cluster-a.test").unwrap();
        let opts = InitOptions {
            ttl: Duration::from_secs(24 * 3600),
            refresh_hint: None,
            intermediate: false,
        };
        Ca::init(&td, &opts).unwrap().save(&dir.join("ca")).unwrap();
        let entries = Entries::new(
            td.clone(),
            vec![Entry {
                spiffe_id: SpiffeId::parse("spiffe://cluster-a.test/app").unwrap(),
                selectors: BTreeSet::from([Selector::Uid(1)]),
            }],
        )
        .unwrap();
        let config = MintConfig {
            trust_domain: td,
            ca_dir: dir.join("ca"),
            federated_bundles: Some(dir.join("missing-map.json")),
            svid_ttl: ttl,
        };
        (config, Arc::new(entries))
    }

    fn leaf(snapshot: &Snapshot) -> Vec<u8> {
        snapshot.svids.values().next().unwrap().chain()[0].to_vec()
    }

    #[tokio::test]
    async fn svids_are_reminted_at_half_their_lifetime() {
        let dir = tempfile::tempdir().unwrap();
        let ttl = Duration::from_secs(2);
        let (config, entries) = setup(dir.path(), ttl);
        let (minter, mut rx) = Minter::start(config, entries).unwrap();
        let first = leaf(&rx.borrow_and_update());
        assert_eq!(
            rx.borrow().bundles.len(),
            1,
            "a missing map is no federated domain"
        );
        let started = tokio::time::Instant::now();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(minter.run(Duration::from_secs(3600), shutdown.clone()));
        tokio::time::timeout(Duration::from_secs(20), rx.changed())
            .await
            .unwrap()
            .unwrap();
        assert!(
            started.elapsed() >= ttl / 2 - Duration::from_millis(50),
            "not before half-life"
        );
        assert_ne!(
            leaf(&rx.borrow_and_update()),
            first,
            "a new SVID at half-life"
        );
        shutdown.cancel();
        task.await.unwrap();
    }

    #[test]
    fn the_snapshot_carries_the_cas_jwt_signer_and_the_jwt_ttl() {
        let dir = tempfile::tempdir().unwrap();
        let (config, entries) = setup(dir.path(), Duration::from_secs(3600));
        let ca_dir = config.ca_dir.clone();
        let (_minter, rx) = Minter::start(config.clone(), entries.clone()).unwrap();
        let snapshot = rx.borrow().clone();
        assert_eq!(snapshot.jwt_ttl, crate::workload::MAX_JWT_TTL, "capped");
        let id = SpiffeId::parse("spiffe://cluster-a.test/app").unwrap();
        let token = snapshot
            .jwt_signer
            .as_ref()
            .unwrap()
            .mint(&id, &["svc"], snapshot.jwt_ttl)
            .unwrap();
        let local = snapshot.local_bundle().unwrap();
        let svid = fedgate_federation::jwt::validate(
            &token,
            local.as_ref(),
            "svc",
            std::time::SystemTime::now(),
        )
        .unwrap();
        assert_eq!(svid.spiffe_id, id);

        // A CA directory from before JWT-SVIDs still serves X509-SVIDs; the snapshot says
        // why there is no signer. A short svid_ttl is the JWT lifetime too.
        std::fs::remove_file(ca_dir.join(JWT_KEY)).unwrap();
        let config = MintConfig {
            svid_ttl: Duration::from_secs(120),
            ..config
        };
        let (_minter, rx) = Minter::start(config, entries).unwrap();
        let snapshot = rx.borrow().clone();
        assert_eq!(snapshot.svids.len(), 1);
        assert_eq!(snapshot.jwt_ttl, Duration::from_secs(120));
        let err = snapshot.jwt_signer.as_ref().unwrap_err();
        assert!(matches!(**err, CaError::NoJwtKey { .. }), "{err}");
        assert!(err.to_string().contains("fedgate ca rotate"), "{err}");
    }

    #[test]
    fn a_broken_ca_directory_keeps_the_current_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let (config, entries) = setup(dir.path(), Duration::from_secs(600));
        let ca_dir = config.ca_dir.clone();
        let (mut minter, mut rx) = Minter::start(config, entries).unwrap();
        rx.borrow_and_update();
        std::fs::write(ca_dir.join(CA_PEM), "half-written").unwrap();
        minter.poll_once();
        assert!(!rx.has_changed().unwrap(), "nothing withdrawn or replaced");

        let other = TrustDomain::new("cluster-z.test").unwrap();
        let opts = InitOptions {
            ttl: Duration::from_secs(3600),
            refresh_hint: None,
            intermediate: false,
        };
        Ca::init(&other, &opts).unwrap().save(&ca_dir).unwrap();
        minter.poll_once();
        assert!(
            !rx.has_changed().unwrap(),
            "a CA of another trust domain is refused"
        );
    }
}
