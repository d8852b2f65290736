//! The seam between the gateway and `fedgate_federation`: build the refresher (peers,
//! last-known-good store, distribution) and the bundle endpoint from `[federation]`, report
//! readiness and per-peer status to the admin server, and run them.
//!
//! Invariants: every relationship parameter comes from the config as written (nothing is
//! inferred, SPIFFE_Federation.md §7.2); the data plane sees federation only through the
//! `BundleSet` snapshots of [`Federation::bundles`] (docs/architecture.md, "data flows one way"); the
//! gateway's own bundle enters the refresher's snapshots as a *local* bundle and is kept in
//! step with `[identity] bundle` as that file changes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fedgate_federation::distribute::{
    DistributeError, Distributor, Pkcs12Options, DEFAULT_PKCS12_PASSWORD,
};
use fedgate_federation::endpoint::server::{ServerTlsFiles, ServerTlsSource};
use fedgate_federation::endpoint::{
    BundleEndpoint, BundleFileSource, EndpointError, EndpointMetrics, FetchOptions, Profile,
    Relationship, WebRoots,
};
use fedgate_federation::metrics::FederationMetrics;
use fedgate_federation::refresh::{Peer, RefreshPolicy, Refresher, RefresherHandle};
use fedgate_federation::store::{Store, StoreError};
use fedgate_federation::{Bundle, BundleError, BundleSet, TrustDomain};
use prometheus_client::registry::Registry;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::{
    FederationConfig, PeerConfig, PeerProfile, Pkcs12Config, ServeConfig, ServeProfile,
};
use crate::gateway::listener::bind;
use crate::identity::Identity;

/// How often the served bundle and the endpoint's credentials are checked for changes.
const SERVE_POLL: Duration = Duration::from_secs(2);

/// The federation component of a running gateway.
pub struct Federation {
    refresher: Refresher,
    /// Snapshots, status and `set_local`; shared with the admin view.
    handle: RefresherHandle,
    serve: Option<Serve>,
    /// The gateway identity as reloaded; its bundle is forwarded to the refresher.
    identity: Option<watch::Receiver<Arc<Identity>>>,
    /// Each peer's trust domain and whether it is `required` for readiness.
    peers: Vec<(TrustDomain, bool)>,
}

/// The bundle endpoint, bound and ready to run.
struct Serve {
    listener: TcpListener,
    addr: SocketAddr,
    endpoint: BundleEndpoint,
    bundle: BundleFileSource,
    tls: ServerTlsSource,
}

/// Read-only view of federation state for the admin server.
pub trait FederationView: Send + Sync + 'static {
    /// Whether federation lets the gateway be ready: see [`decide_readiness`].
    fn readiness(&self) -> FederationReadiness;
    /// Per-peer status for `/status`.
    fn peers(&self) -> serde_json::Value;
}

/// Federation's part of the gateway's readiness.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FederationReadiness {
    /// Every peer has a bundle.
    Ready,
    /// Ready, but some non-required peers have no bundle: their first fetch failed and there
    /// is no last-known-good one. The reason names them (reported, not blocking).
    Degraded(String),
    /// Not ready; the reason names the peers readiness waits for.
    NotReady(String),
}

/// What readiness needs to know about one peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PeerReadiness<'a> {
    pub trust_domain: &'a str,
    /// `required = true` in the peer's config.
    pub required: bool,
    /// A bundle is in force (fetched or last-known-good).
    pub has_bundle: bool,
    /// The first fetch attempt has finished, successfully or not.
    pub attempted: bool,
    /// The last fetch error, if the last attempt failed.
    pub last_error: Option<&'a str>,
}

/// The readiness rule (docs/configuration.md, `required`):
///
/// - a *required* peer must have a bundle (fetched or last-known-good);
/// - any other peer only needs its first fetch attempt to have finished; if it failed and
///   there is no last-known-good bundle the peer is reported ([`FederationReadiness::Degraded`])
///   but does not make the gateway unready, so one unreachable new peer cannot block a rollout.
pub(crate) fn decide_readiness(peers: &[PeerReadiness<'_>]) -> FederationReadiness {
    let mut waiting_required = Vec::new();
    let mut waiting_first_fetch = Vec::new();
    let mut unreachable = Vec::new();
    for p in peers {
        if p.has_bundle {
            continue;
        }
        if p.required {
            waiting_required.push(match p.last_error {
                Some(e) => format!("{} (required; last error: {e})", p.trust_domain),
                None => format!("{} (required)", p.trust_domain),
            });
        } else if !p.attempted {
            waiting_first_fetch.push(p.trust_domain.to_owned());
        } else {
            unreachable.push(match p.last_error {
                Some(e) => format!("{} ({e})", p.trust_domain),
                None => p.trust_domain.to_owned(),
            });
        }
    }
    let mut reasons = Vec::new();
    if !waiting_required.is_empty() {
        reasons.push(format!(
            "no bundle yet (fetched or last-known-good) for required peer trust domain(s): {}",
            waiting_required.join(", ")
        ));
    }
    if !waiting_first_fetch.is_empty() {
        reasons.push(format!(
            "first bundle fetch not finished for peer trust domain(s): {}",
            waiting_first_fetch.join(", ")
        ));
    }
    if !reasons.is_empty() {
        return FederationReadiness::NotReady(reasons.join("; "));
    }
    if unreachable.is_empty() {
        FederationReadiness::Ready
    } else {
        FederationReadiness::Degraded(format!(
            "no bundle for peer trust domain(s) not marked required (their connections are refused until a fetch succeeds): {}",
            unreachable.join(", ")
        ))
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FederationSetupError {
    #[error("cannot read {what} {}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("bootstrap bundle {} for peer {peer} is not a valid SPIFFE bundle for {endpoint_td} (the endpoint_id's trust domain)", path.display())]
    Bootstrap {
        peer: TrustDomain,
        endpoint_td: TrustDomain,
        path: PathBuf,
        #[source]
        source: Box<BundleError>,
    },
    #[error("no PEM CERTIFICATE in {} (`ca` of peer {peer}); give the private Web PKI roots as PEM", path.display())]
    NoCaCertificates { peer: TrustDomain, path: PathBuf },
    #[error("cannot open the federation state_dir {}", path.display())]
    Store {
        path: PathBuf,
        #[source]
        source: Box<StoreError>,
    },
    #[error("cannot set up the distribution's PKCS#12 truststores (pkcs12_password_file {})", path.display())]
    Pkcs12 {
        path: PathBuf,
        #[source]
        source: DistributeError,
    },
    #[error("cannot set up the bundle endpoint ([federation.serve])")]
    Serve(#[source] Box<EndpointError>),
    #[error(
        "cannot listen on {addr} for the bundle endpoint; is the address in use or not local?"
    )]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// The distributor of `dir` with the configured PKCS#12 truststores; reads the password file.
fn distributor(dir: &Path, pkcs12: &Pkcs12Config) -> Result<Distributor, FederationSetupError> {
    let password = match &pkcs12.password_file {
        None => DEFAULT_PKCS12_PASSWORD.to_owned(),
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|source| FederationSetupError::Read {
                    what: "the PKCS#12 truststore password file",
                    path: path.clone(),
                    source,
                })?;
            // One line; its line ending is not part of the password.
            text.strip_suffix('\n')
                .map(|t| t.strip_suffix('\r').unwrap_or(t))
                .unwrap_or(&text)
                .to_owned()
        }
    };
    Distributor::new(dir)
        .with_pkcs12(Pkcs12Options {
            per_trust_domain: pkcs12.per_trust_domain,
            all: pkcs12.all,
            password,
        })
        .map_err(|source| FederationSetupError::Pkcs12 {
            path: pkcs12.password_file.clone().unwrap_or_default(),
            source,
        })
}

// === impl Federation ===

impl Federation {
    /// Builds the component (binding the bundle endpoint's listener, if any) and registers
    /// its metrics in `registry`.
    pub async fn build(
        config: &FederationConfig,
        local: &TrustDomain,
        identity: Option<watch::Receiver<Arc<Identity>>>,
        registry: &mut Registry,
    ) -> Result<Federation, FederationSetupError> {
        let metrics = FederationMetrics::new();
        metrics.register(registry);
        let peers = config
            .peers
            .iter()
            .map(peer)
            .collect::<Result<Vec<_>, _>>()?;
        let store = match &config.state_dir {
            Some(dir) => Some(Store::open(dir).map_err(|e| FederationSetupError::Store {
                path: dir.clone(),
                source: Box::new(e),
            })?),
            None => None,
        };
        let sink = match &config.distribute_dir {
            Some(dir) => Some(distributor(dir, &config.pkcs12)?),
            None => None,
        };
        let policy = RefreshPolicy {
            min: config.min_refresh,
            max: config.max_refresh,
            default: config.default_refresh,
            ..RefreshPolicy::default()
        };
        let local_bundles: Vec<Bundle> = identity
            .as_ref()
            .map(|rx| rx.borrow().bundle.clone())
            .into_iter()
            .collect();
        let peer_tds = config
            .peers
            .iter()
            .map(|p| (p.trust_domain.clone(), p.required))
            .collect();
        let (refresher, handle) =
            Refresher::new(local_bundles, peers, policy, store, sink, Some(metrics));
        let serve = match &config.serve {
            Some(s) => Some(serve(s, local, registry).await?),
            None => None,
        };
        Ok(Federation {
            refresher,
            handle,
            serve,
            identity,
            peers: peer_tds,
        })
    }

    pub fn view(&self) -> Arc<dyn FederationView> {
        Arc::new(View {
            handle: self.handle.clone(),
            peers: self.peers.clone(),
        })
    }

    /// Snapshots of every trust domain's bundle (local and peers', never merged).
    pub fn bundles(&self) -> watch::Receiver<BundleSet> {
        self.handle.subscribe()
    }

    /// The refresher's handle (status, `refresh_now`).
    pub fn handle(&self) -> RefresherHandle {
        self.handle.clone()
    }

    /// The bundle endpoint's bound address, when `[federation.serve]` is configured.
    pub fn serve_addr(&self) -> Option<SocketAddr> {
        self.serve.as_ref().map(|s| s.addr)
    }

    /// Runs the refresher, the bundle endpoint and the local-bundle forwarder until
    /// `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(self.refresher.run(shutdown.clone()));
        if let Some(s) = self.serve {
            tasks.spawn(s.bundle.run(shutdown.clone()));
            tasks.spawn(s.tls.run(shutdown.clone()));
            let stop = shutdown.clone();
            tasks.spawn(async move {
                if let Err(e) = s.endpoint.run(s.listener, stop).await {
                    tracing::error!(error = %fedgate_federation::error_chain(&e), "bundle endpoint stopped");
                }
            });
        }
        if let Some(mut rx) = self.identity {
            let handle = self.handle.clone();
            let stop = shutdown.clone();
            tasks.spawn(async move {
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        changed = rx.changed() => {
                            if changed.is_err() {
                                return;
                            }
                            let bundle = rx.borrow_and_update().bundle.clone();
                            handle.set_local(bundle);
                        }
                    }
                }
            });
        }
        while tasks.join_next().await.is_some() {}
    }
}

/// The fetch relationship for one configured peer.
pub(crate) fn peer(p: &PeerConfig) -> Result<Peer, FederationSetupError> {
    let profile = match &p.profile {
        PeerProfile::HttpsSpiffe {
            endpoint_id,
            bootstrap_bundle,
        } => {
            let json = read("bootstrap_bundle", bootstrap_bundle)?;
            // The endpoint's SVID is verified with the bundle of the endpoint's own trust
            // domain, which need not be the peer's (SPIFFE_Federation.md §5.2.2).
            let endpoint_td = endpoint_id.trust_domain();
            let (bootstrap, _warnings) =
                Bundle::parse(endpoint_td, &json).map_err(|e| FederationSetupError::Bootstrap {
                    peer: p.trust_domain.clone(),
                    endpoint_td: endpoint_td.clone(),
                    path: bootstrap_bundle.clone(),
                    source: Box::new(e),
                })?;
            Profile::HttpsSpiffe {
                endpoint_id: endpoint_id.clone(),
                bootstrap,
            }
        }
        PeerProfile::HttpsWeb { ca: None } => Profile::HttpsWeb {
            roots: WebRoots::System,
        },
        PeerProfile::HttpsWeb { ca: Some(path) } => {
            let pem = read("ca", path)?;
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
                .filter_map(Result::ok)
                .collect();
            if certs.is_empty() {
                return Err(FederationSetupError::NoCaCertificates {
                    peer: p.trust_domain.clone(),
                    path: path.clone(),
                });
            }
            Profile::HttpsWeb {
                roots: WebRoots::Custom(certs),
            }
        }
    };
    Ok(Peer {
        relationship: Relationship {
            trust_domain: p.trust_domain.clone(),
            url: p.url.clone(),
            profile,
        },
        fetch: FetchOptions::default(),
    })
}

async fn serve(
    s: &ServeConfig,
    local: &TrustDomain,
    registry: &mut Registry,
) -> Result<Serve, FederationSetupError> {
    let endpoint_err = |e| FederationSetupError::Serve(Box::new(e));
    let (bundle, bundle_rx) =
        BundleFileSource::new(local.clone(), &s.bundle, SERVE_POLL).map_err(endpoint_err)?;
    let files = match &s.profile {
        ServeProfile::HttpsWeb { cert, key } => ServerTlsFiles::Web {
            cert: cert.clone(),
            key: key.clone(),
        },
        ServeProfile::HttpsSpiffe { svid, key } => ServerTlsFiles::Spiffe {
            svid: svid.clone(),
            key: key.clone(),
        },
    };
    let (tls, tls_rx) = ServerTlsSource::new(files, SERVE_POLL).map_err(endpoint_err)?;
    let listener = bind(s.listen).map_err(|source| FederationSetupError::Bind {
        addr: s.listen,
        source,
    })?;
    let addr = listener
        .local_addr()
        .map_err(|source| FederationSetupError::Bind {
            addr: s.listen,
            source,
        })?;
    Ok(Serve {
        listener,
        addr,
        endpoint: BundleEndpoint::new(s.path.clone(), bundle_rx, tls_rx)
            .with_max_connections(s.max_connections)
            .with_metrics(endpoint_metrics(registry)),
        bundle,
        tls,
    })
}

/// The bundle endpoint's metrics, registered in `registry`.
fn endpoint_metrics(registry: &mut Registry) -> EndpointMetrics {
    let metrics = EndpointMetrics::new();
    metrics.register(registry);
    metrics
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, FederationSetupError> {
    std::fs::read(path).map_err(|source| FederationSetupError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

/// Readiness and status over the refresher's handle.
struct View {
    handle: RefresherHandle,
    peers: Vec<(TrustDomain, bool)>,
}

impl FederationView for View {
    fn readiness(&self) -> FederationReadiness {
        let set = self.handle.bundles();
        let status = self.handle.status();
        let names: Vec<String> = self.peers.iter().map(|(td, _)| td.to_string()).collect();
        let peers: Vec<PeerReadiness<'_>> = self
            .peers
            .iter()
            .zip(&names)
            .map(|((td, required), name)| {
                let st = status.iter().find(|s| s.trust_domain == *name);
                PeerReadiness {
                    trust_domain: name,
                    required: *required,
                    has_bundle: set.get(td).is_some(),
                    // A success (or a stored bundle) sets last_success, a failure last_error.
                    attempted: st
                        .is_some_and(|s| s.last_success.is_some() || s.last_error.is_some()),
                    last_error: st.and_then(|s| s.last_error.as_deref()),
                }
            })
            .collect();
        decide_readiness(&peers)
    }

    fn peers(&self) -> serde_json::Value {
        let mut value =
            serde_json::to_value(self.handle.status()).unwrap_or(serde_json::Value::Null);
        // Add each peer's `required` flag, so /status shows which failures block readiness.
        if let serde_json::Value::Array(entries) = &mut value {
            for entry in entries {
                let required = entry
                    .get("trust_domain")
                    .and_then(serde_json::Value::as_str)
                    .and_then(|name| self.peers.iter().find(|(td, _)| td.to_string() == name))
                    .is_some_and(|(_, r)| *r);
                if let serde_json::Value::Object(map) = entry {
                    map.insert("required".into(), serde_json::Value::Bool(required));
                }
            }
        }
        value
    }
}

#[cfg(test)]
mod readiness_tests {
    use super::{decide_readiness, FederationReadiness, PeerReadiness};

    fn peer(td: &str, required: bool, has_bundle: bool, attempted: bool) -> PeerReadiness<'_> {
        PeerReadiness {
            trust_domain: td,
            required,
            has_bundle,
            attempted,
            last_error: (attempted && !has_bundle).then_some("connect: connection refused"),
        }
    }

    #[test]
    fn no_peers_is_ready() {
        assert_eq!(decide_readiness(&[]), FederationReadiness::Ready);
    }

    #[test]
    fn every_peer_with_a_bundle_is_ready() {
        let peers = [
            peer("a.test", true, true, true),
            peer("b.test", false, true, true),
        ];
        assert_eq!(decide_readiness(&peers), FederationReadiness::Ready);
    }

    #[test]
    fn a_non_required_peer_waits_for_its_first_attempt_only() {
        let before = [
            peer("a.test", false, true, true),
            peer("new.test", false, false, false),
        ];
        match decide_readiness(&before) {
            FederationReadiness::NotReady(r) => {
                assert!(r.contains("first bundle fetch not finished"), "{r}");
                assert!(r.contains("new.test") && !r.contains("a.test"), "{r}");
            }
            other => panic!("expected NotReady, got {other:?}"),
        }
        let after = [
            peer("a.test", false, true, true),
            peer("new.test", false, false, true),
        ];
        match decide_readiness(&after) {
            FederationReadiness::Degraded(r) => {
                assert!(r.contains("new.test (connect: connection refused)"), "{r}");
                assert!(!r.contains("a.test"), "{r}");
            }
            other => panic!("expected Degraded, got {other:?}"),
        }
    }

    #[test]
    fn a_required_peer_without_a_bundle_is_not_ready_even_after_attempts() {
        for attempted in [false, true] {
            let peers = [
                peer("a.test", false, true, true),
                peer("req.test", true, false, attempted),
            ];
            match decide_readiness(&peers) {
                FederationReadiness::NotReady(r) => {
                    assert!(r.contains("required peer trust domain(s): req.test"), "{r}");
                }
                other => panic!("expected NotReady, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_required_peer_with_a_last_known_good_bundle_is_ready() {
        // A stored bundle counts even while the endpoint is down.
        let mut p = peer("req.test", true, true, true);
        p.last_error = Some("timeout: no answer");
        assert_eq!(decide_readiness(&[p]), FederationReadiness::Ready);
    }

    #[test]
    fn not_ready_names_both_kinds_of_waiting_peers() {
        let peers = [
            peer("req.test", true, false, true),
            peer("new.test", false, false, false),
        ];
        match decide_readiness(&peers) {
            FederationReadiness::NotReady(r) => {
                assert!(r.contains("req.test (required; last error:"), "{r}");
                assert!(
                    r.contains(
                        "first bundle fetch not finished for peer trust domain(s): new.test"
                    ),
                    "{r}"
                );
            }
            other => panic!("expected NotReady, got {other:?}"),
        }
    }
}
