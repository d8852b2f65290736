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
    peers: Vec<TrustDomain>,
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
    /// `Ok` when every peer has a bundle (fetched or last-known-good).
    fn readiness(&self) -> Result<(), String>;
    /// Per-peer status for `/status`.
    fn peers(&self) -> serde_json::Value;
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
            .map(|p| p.trust_domain.clone())
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
    peers: Vec<TrustDomain>,
}

impl FederationView for View {
    fn readiness(&self) -> Result<(), String> {
        let set = self.handle.bundles();
        let missing: Vec<_> = self
            .peers
            .iter()
            .filter(|td| set.get(td).is_none())
            .map(|td| td.to_string())
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "no bundle yet (fetched or last-known-good) for peer trust domain(s): {}",
                missing.join(", ")
            ))
        }
    }

    fn peers(&self) -> serde_json::Value {
        serde_json::to_value(self.handle.status()).unwrap_or(serde_json::Value::Null)
    }
}
