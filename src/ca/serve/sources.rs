//! What the issuing endpoint re-reads while it runs: the CA directory, the member bundles (files,
//! or member federation endpoints polled by the federation refresher) and the endpoint's own
//! SVID. Each change that loads is published on a `watch` channel; a change that does not load
//! is logged and the previous version stays in force.
//!
//! Invariants:
//! * Each member bundle is parsed for its own trust domain and kept in a `BundleSet` that holds
//!   only member trust domains; a client SVID is therefore verified only against the bundle of
//!   its own trust domain, and an SVID of any other trust domain is refused at the handshake.
//! * A bundle file that stops parsing never drops (or widens) trust: the last good bundle of
//!   that trust domain stays. Bundles of federated members follow the refresher's rules
//!   (same trust domain and profile only, no sequence rollback, last-known-good on failure).
//! * The server TLS config is rebuilt once per change, never per connection, and disables
//!   session resumption so that a bundle change applies to the very next connection.
//! * The CA is replaced only by one of the same trust domain, and the endpoint SVID only by one
//!   in the CA's trust domain.
//! * Change detection is `fedgate_federation::watch::FileWatch`'s (content, stable reads
//!   only, every `poll_interval`): one watch for the CA directory, one for the SVID and key,
//!   one per member bundle file. Each version is tried once; a refused one is retried when
//!   the files change again.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fedgate_federation::bundle::{Bundle, BundleError, BundleSet};
use fedgate_federation::endpoint::{FetchOptions, Profile, Relationship, WebRoots};
use fedgate_federation::refresh::{Peer, RefreshPolicy, Refresher};
use fedgate_federation::spiffe_id::{SpiffeId, TrustDomain};
use fedgate_federation::store::{Store, StoreError};
use fedgate_federation::svid::{SvidError, X509Svid};
use fedgate_federation::tls::{self, Authorizer, SpiffeClientVerifier};
use fedgate_federation::watch::{FileWatch, WatchError};
use rustls::server::NoServerSessionStorage;
use rustls::ServerConfig;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::config::{Member, MemberProfile, MemberSource, ServeConfig};
use crate::ca::{self, Ca, CaError};

/// Loads, watches and publishes the endpoint's CA, member bundles and TLS config.
pub struct Sources {
    ca_dir: PathBuf,
    /// The CA directory's files; each new version is loaded with `Ca::load`.
    ca_watch: FileWatch<(), Infallible>,
    /// The endpoint SVID and key, parsed and checked against the CA's trust domain.
    svid_watch: FileWatch<X509Svid, SourceError>,
    members: Vec<MemberState>,
    /// Members whose bundles come from their federation endpoints.
    federated: Option<Federated>,
    svid: X509Svid,
    interval: Duration,
    /// Publishes the CA that signs; each request uses whatever is current.
    ca_tx: watch::Sender<Arc<Ca>>,
    /// Publishes the server TLS config; each new connection uses whatever is current.
    tls_tx: watch::Sender<Arc<ServerConfig>>,
}

/// What [`Sources::load`] returns: the sources to run, and receivers of the CA and TLS config.
pub type Loaded = (
    Sources,
    watch::Receiver<Arc<Ca>>,
    watch::Receiver<Arc<ServerConfig>>,
);

/// A member whose bundle is a file.
struct MemberState {
    trust_domain: TrustDomain,
    /// The bundle file; remembers the version last seen (loaded or refused).
    watch: FileWatch<Bundle, SourceError>,
    /// The last bundle that parsed.
    bundle: Bundle,
}

/// Members whose bundles the federation refresher keeps fresh.
struct Federated {
    /// Taken and spawned by `run`.
    refresher: Option<Refresher>,
    /// The refresher's snapshots (only these members' trust domains).
    rx: watch::Receiver<BundleSet>,
    /// False once the refresher has stopped (its sender is gone).
    watching: bool,
    trust_domains: Vec<TrustDomain>,
}

/// Why the endpoint cannot start: each variant names the file and what to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    #[error("cannot load the bridge CA from {dir}")]
    Ca {
        dir: PathBuf,
        #[source]
        source: Box<CaError>,
    },
    #[error("cannot load the endpoint SVID {svid} (key {key}); check `svid` and `key`")]
    Svid {
        svid: PathBuf,
        key: PathBuf,
        #[source]
        source: Box<SvidError>,
    },
    #[error(
        "the endpoint SVID {id} is not in the CA's trust domain {ca_td}; issue it with \
         `fedgate ca issue --ca <ca_dir>` so gateways can verify it with the bridge bundle"
    )]
    SvidTrustDomain { id: SpiffeId, ca_td: TrustDomain },
    #[error("cannot read the bundle of member trust domain {trust_domain} from {path}")]
    ReadBundle {
        trust_domain: TrustDomain,
        path: PathBuf,
        #[source]
        source: ca::FileError,
    },
    #[error("{path} is not a valid SPIFFE bundle for member trust domain {trust_domain}")]
    Bundle {
        trust_domain: TrustDomain,
        path: PathBuf,
        #[source]
        source: BundleError,
    },
    #[error("member trust domain {0} is the bridge CA's own trust domain; list only the gateways' local trust domains")]
    MemberIsBridge(TrustDomain),
    #[error("cannot build the server TLS configuration")]
    Tls(#[source] rustls::Error),
    #[error("member {trust_domain}: {reason}")]
    Federation {
        trust_domain: TrustDomain,
        reason: String,
    },
    #[error("cannot open the state directory {dir}; check its permissions")]
    Store {
        dir: PathBuf,
        #[source]
        source: Box<StoreError>,
    },
}

// === impl Sources ===

impl Sources {
    /// Loads everything once (errors here are startup errors) and returns the receivers of the
    /// CA and of the server TLS config.
    pub fn load(config: &ServeConfig) -> Result<Loaded, SourceError> {
        let mut ca_watch: FileWatch<(), Infallible> =
            FileWatch::new(ca_files(&config.ca_dir), |_| Ok(()));
        // Only marks the version seen: a directory with a missing optional file still loads.
        let _ = ca_watch.load();
        let ca = Ca::load(&config.ca_dir).map_err(|source| SourceError::Ca {
            dir: config.ca_dir.clone(),
            source: Box::new(source),
        })?;
        let mut svid_watch = svid_watch(&config.svid, &config.key, ca.trust_domain());
        let svid = svid_watch.load().map_err(|e| match e {
            WatchError::Read { path, source } => SourceError::Svid {
                svid: config.svid.clone(),
                key: config.key.clone(),
                source: Box::new(SvidError::Read {
                    what: if path == config.svid {
                        "certificate chain"
                    } else {
                        "private key"
                    },
                    path,
                    source,
                }),
            },
            WatchError::Parse(e) => e,
        })?;
        let mut members = Vec::with_capacity(config.members.len());
        let mut peers = Vec::new();
        for m in &config.members {
            if &m.trust_domain == ca.trust_domain() {
                return Err(SourceError::MemberIsBridge(m.trust_domain.clone()));
            }
            match &m.source {
                MemberSource::File(path) => {
                    let (td, file) = (m.trust_domain.clone(), path.clone());
                    let mut watch = FileWatch::new([path.clone()], move |c: &[Vec<u8>]| {
                        parse_bundle(&td, &file, c.first().map(Vec::as_slice).unwrap_or_default())
                    });
                    let bundle = watch.load().map_err(|e| match e {
                        WatchError::Read { path, source } => SourceError::ReadBundle {
                            trust_domain: m.trust_domain.clone(),
                            path: path.clone(),
                            source: ca::FileError::Read { path, source },
                        },
                        WatchError::Parse(e) => e,
                    })?;
                    members.push(MemberState {
                        trust_domain: m.trust_domain.clone(),
                        watch,
                        bundle,
                    });
                }
                MemberSource::Endpoint { url, profile } => peers.push(peer(m, url, profile)?),
            }
        }
        let federated = if peers.is_empty() {
            None
        } else {
            let store = match &config.state_dir {
                Some(dir) => Some(Store::open(dir).map_err(|source| SourceError::Store {
                    dir: dir.clone(),
                    source: Box::new(source),
                })?),
                None => None,
            };
            let trust_domains = peers
                .iter()
                .map(|p| p.relationship.trust_domain.clone())
                .collect();
            let (refresher, handle) =
                Refresher::new(vec![], peers, RefreshPolicy::default(), store, None, None);
            Some(Federated {
                refresher: Some(refresher),
                rx: handle.subscribe(),
                watching: true,
                trust_domains,
            })
        };
        let tls_config = build_tls(&svid, &member_set(&members, federated.as_ref()))
            .map_err(SourceError::Tls)?;
        let (ca_tx, ca_rx) = watch::channel(Arc::new(ca));
        let (tls_tx, tls_rx) = watch::channel(tls_config);
        Ok((
            Self {
                ca_dir: config.ca_dir.clone(),
                ca_watch,
                svid_watch,
                members,
                federated,
                svid,
                interval: config.poll_interval,
                ca_tx,
                tls_tx,
            },
            ca_rx,
            tls_rx,
        ))
    }

    /// Polls every `poll_interval` until `shutdown`; with federated members, also runs the
    /// federation refresher and rebuilds the TLS config on each of its snapshots.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let refresher = self
            .federated
            .as_mut()
            .and_then(|f| f.refresher.take())
            .map(|r| tokio::spawn(r.run(shutdown.clone())));
        loop {
            let federated_change = async {
                match self.federated.as_mut() {
                    Some(f) if f.watching => f.rx.changed().await.is_ok(),
                    _ => std::future::pending().await,
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(self.interval) => self.poll_once(),
                alive = federated_change => {
                    if alive {
                        tracing::info!("member bundles updated by federation");
                        self.rebuild_tls();
                    } else if let Some(f) = self.federated.as_mut() {
                        // The refresher stopped (shutdown): keep the last snapshot, stop waiting.
                        f.watching = false;
                    }
                }
            }
        }
        if let Some(task) = refresher {
            let _ = task.await;
        }
    }

    /// Re-reads every file once and publishes what changed and loads.
    pub fn poll_once(&mut self) {
        self.poll_ca();
        let svid_changed = self.poll_svid();
        let members_changed = self.poll_members();
        if svid_changed || members_changed {
            self.rebuild_tls();
        }
    }

    fn rebuild_tls(&mut self) {
        match build_tls(
            &self.svid,
            &member_set(&self.members, self.federated.as_ref()),
        ) {
            Ok(config) => {
                self.tls_tx.send_replace(config);
            }
            Err(e) => tracing::warn!(
                error = %fedgate_federation::error_chain(&e),
                "cannot rebuild the issuing endpoint's TLS config; keeping the current one"
            ),
        }
    }

    fn poll_ca(&mut self) {
        if self.ca_watch.poll_once().is_none() {
            return;
        }
        let current_td = self.ca_tx.borrow().trust_domain().clone();
        match Ca::load(&self.ca_dir) {
            Ok(ca) if ca.trust_domain() == &current_td => {
                tracing::info!(dir = %self.ca_dir.display(), "bridge CA reloaded");
                self.ca_tx.send_replace(Arc::new(ca));
            }
            Ok(ca) => tracing::warn!(
                dir = %self.ca_dir.display(), found = %ca.trust_domain(), expected = %current_td,
                "the CA directory now holds a CA of another trust domain; keeping the current CA"
            ),
            Err(e) => tracing::warn!(
                dir = %self.ca_dir.display(), error = %fedgate_federation::error_chain(&e),
                "the CA directory changed but does not load; keeping the current CA"
            ),
        }
    }

    fn poll_svid(&mut self) -> bool {
        match self.svid_watch.poll_once() {
            None => false,
            Some(Ok(svid)) => {
                tracing::info!(id = %svid.id(), "issuing endpoint SVID reloaded");
                self.svid = svid;
                true
            }
            Some(Err(e)) => {
                tracing::warn!(
                    error = %watch_error_chain(&e),
                    "the endpoint SVID changed but does not load; keeping the current one"
                );
                false
            }
        }
    }

    fn poll_members(&mut self) -> bool {
        let mut changed = false;
        for m in &mut self.members {
            match m.watch.poll_once() {
                None => {}
                Some(Ok(bundle)) => {
                    tracing::info!(
                        trust_domain = %m.trust_domain,
                        authorities = bundle.x509_authorities().len(),
                        "member bundle reloaded"
                    );
                    m.bundle = bundle;
                    changed = true;
                }
                Some(Err(e @ WatchError::Read { .. })) => tracing::warn!(
                    trust_domain = %m.trust_domain,
                    error = %watch_error_chain(&e),
                    "cannot read a member bundle; keeping the last good one"
                ),
                Some(Err(e)) => tracing::warn!(
                    error = %watch_error_chain(&e),
                    "a member bundle changed but is invalid; keeping the last good one"
                ),
            }
        }
        changed
    }
}

fn watch_error_chain(e: &WatchError<SourceError>) -> String {
    match e {
        WatchError::Read { .. } => fedgate_federation::error_chain(e),
        WatchError::Parse(e) => fedgate_federation::error_chain(e),
    }
}

/// The CA directory's files, in a fixed order (any of them may be missing).
fn ca_files(dir: &Path) -> Vec<PathBuf> {
    [
        ca::CA_PEM,
        ca::CA_KEY,
        ca::ROOT_PEM,
        ca::ROOT_KEY,
        ca::BUNDLE_JSON,
    ]
    .iter()
    .map(|f| dir.join(f))
    .collect()
}

/// A watch of the endpoint SVID and key that accepts only an SVID of `ca_td`.
fn svid_watch(chain: &Path, key: &Path, ca_td: &TrustDomain) -> FileWatch<X509Svid, SourceError> {
    let (chain, key, ca_td) = (chain.to_path_buf(), key.to_path_buf(), ca_td.clone());
    FileWatch::new([chain.clone(), key.clone()], move |c: &[Vec<u8>]| {
        let [chain_pem, key_pem] = c else {
            return Err(SourceError::Tls(rustls::Error::General(
                "the SVID watch reads two files".into(),
            )));
        };
        let svid = X509Svid::from_pem(chain_pem, key_pem).map_err(|source| SourceError::Svid {
            svid: chain.clone(),
            key: key.clone(),
            source: Box::new(source),
        })?;
        if svid.id().trust_domain() != &ca_td {
            return Err(SourceError::SvidTrustDomain {
                id: svid.id().clone(),
                ca_td: ca_td.clone(),
            });
        }
        Ok(svid)
    })
}

/// The server TLS config: presents `svid`, requires a client SVID that verifies against the
/// bundle of its own trust domain among `members`. Any verified member ID may connect; the
/// issuing policy (not the handshake) decides, so that a refusal gets a reason and a metric.
pub fn build_tls(svid: &X509Svid, members: &BundleSet) -> Result<Arc<ServerConfig>, rustls::Error> {
    let verifier = Arc::new(SpiffeClientVerifier::new(
        members.clone(),
        Authorizer::any(),
    ));
    let mut config = tls::server_config(svid, verifier)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // No resumption: every connection is verified against the current member bundles.
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// The bundles of all members: files, then what the refresher holds for federated members.
fn member_set(members: &[MemberState], federated: Option<&Federated>) -> BundleSet {
    let mut set = BundleSet::new();
    for m in members {
        set = set.with(m.bundle.clone());
    }
    if let Some(f) = federated {
        let snapshot = f.rx.borrow().clone();
        for td in &f.trust_domains {
            if let Some(b) = snapshot.get(td) {
                set = set.with(b.as_ref().clone());
            }
        }
    }
    set
}

fn parse_bundle(td: &TrustDomain, path: &Path, content: &[u8]) -> Result<Bundle, SourceError> {
    let (bundle, warnings) = Bundle::parse(td, content).map_err(|source| SourceError::Bundle {
        trust_domain: td.clone(),
        path: path.to_path_buf(),
        source,
    })?;
    for w in warnings {
        tracing::warn!(path = %path.display(), warning = %w, "member bundle entry ignored");
    }
    Ok(bundle)
}

/// The refresher peer of a federated member: the relationship exactly as configured.
fn peer(m: &Member, url: &str, profile: &MemberProfile) -> Result<Peer, SourceError> {
    let fail = |reason: String| SourceError::Federation {
        trust_domain: m.trust_domain.clone(),
        reason,
    };
    let url: reqwest::Url = url
        .parse()
        .map_err(|e| fail(format!("url {url:?} is not a URL: {e}")))?;
    let profile = match profile {
        MemberProfile::HttpsSpiffe {
            endpoint_id,
            bootstrap_bundle,
        } => {
            let (bootstrap, _) = Bundle::load(endpoint_id.trust_domain(), bootstrap_bundle)
                .map_err(|e| {
                    fail(format!(
                        "bootstrap_bundle {} is not a valid bundle for {}: {}",
                        bootstrap_bundle.display(),
                        endpoint_id.trust_domain(),
                        fedgate_federation::error_chain(&e)
                    ))
                })?;
            Profile::HttpsSpiffe {
                endpoint_id: endpoint_id.clone(),
                bootstrap,
            }
        }
        MemberProfile::HttpsWeb { ca: None } => Profile::HttpsWeb {
            roots: WebRoots::System,
        },
        MemberProfile::HttpsWeb { ca: Some(path) } => {
            let pem =
                ca::read_limited(path).map_err(|e| fail(fedgate_federation::error_chain(&e)))?;
            let certs = ca::describe::parse_pem_certs(&pem)
                .map_err(|e| fail(format!("ca {}: {e}", path.display())))?;
            if certs.is_empty() {
                return Err(fail(format!("ca {}: no CERTIFICATE block", path.display())));
            }
            Profile::HttpsWeb {
                roots: WebRoots::Custom(certs),
            }
        }
    };
    Ok(Peer {
        relationship: Relationship {
            trust_domain: m.trust_domain.clone(),
            url,
            profile,
        },
        fetch: FetchOptions::default(),
    })
}
