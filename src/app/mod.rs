//! `Config` → [`App::build`] (bind every listener, load the identity, set up federation) →
//! [`App::run`] (serve until shutdown, then drain).
//!
//! Two kinds of threads: the data plane runs on `workers` threads ([`fedgate_dataplane::workers`]), each
//! accepting from every listener (a `dup` of the same listening socket, registered with its
//! own runtime) and serving the connections it accepted to the end; everything else (admin,
//! reload, identity, federation, bridge TLS state) runs on the caller's runtime.
//!
//! Invariants: `build` binds every socket before anything is served, so a bad address fails
//! startup and tests can read the bound ports; `run` stops accepting on shutdown, marks the
//! gateway not ready only once every worker has closed its copy of every listening socket
//! (so the kernel refuses new connections), waits for live connections up to
//! `drain_timeout`, then closes whatever is left, stops the workers and returns; background
//! components (reload, identity, federation, admin) stop only after the drain.

pub mod federation;
pub mod reload;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fedgate_federation::refresh::AuthorityExpiry;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::{Admin, AdminSource, Readiness};
use crate::config::{Accept, BridgeIdentity, Config, ListenerKind};
use crate::gateway::listener::bind;
use crate::gateway::{Handler, Listener, ListenerState};
use crate::identity::files::{IdentityError, IdentityFiles};
use crate::identity::issuer::{IssuedBridgeIdentity, IssuedIdentity, IssuedIdentityError};
use crate::identity::{Identity, Origin, StartError, StartedSource};
use crate::telemetry::Metrics;
use federation::{Federation, FederationReadiness, FederationSetupError, FederationView};
use fedgate_dataplane::handoff::Dealer;
use fedgate_dataplane::listen::{self, AcceptMode, WorkerSocket};
use fedgate_dataplane::serve::Connections;
use fedgate_federation::BundleSet;
pub use reload::{ReloadError, ReloadEvent, Reloader};

/// A gateway with every socket bound, ready to [`run`](App::run).
pub struct App {
    /// Not yet registered with any runtime: each worker registers its own `dup`.
    listeners: Vec<(String, std::net::TcpListener, Listener)>,
    /// Data-plane worker threads to start.
    workers: usize,
    /// How each listener's connections are spread across the workers.
    accept: AcceptMode,
    admin: TcpListener,
    shared: Arc<Shared>,
    /// Connection tasks of every listener, drained on shutdown, and the hard stop that ends
    /// those still open at the drain deadline.
    connections: Connections,
    reloader: Reloader,
    identity: Option<StartedSource>,
    /// Keeps the bridge listeners' TLS state current (`None` without bridge listeners).
    bridge: Option<crate::bridge::runtime::BridgeRuntime>,
    federation: Option<Federation>,
    /// SIGHUP (or any other) reload requests.
    reload_requests: Option<mpsc::Receiver<()>>,
    config_poll: Duration,
    identity_poll: Duration,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppError {
    #[error("cannot listen on {addr} for {what}; is the address in use or not local?")]
    Bind {
        what: String,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "cannot load the gateway identity; check [identity] svid, key, bundle and trust_domain"
    )]
    Identity(#[from] IdentityError),
    #[error("cannot get the gateway identity from the Workload API ([identity] socket)")]
    WorkloadApi(#[from] crate::identity::workload_api::ClientError),
    #[error(transparent)]
    Federation(#[from] FederationSetupError),
    #[error(transparent)]
    Bridge(#[from] crate::bridge::runtime::BridgeSetupError),
    #[error(transparent)]
    BridgeIssuer(#[from] IssuedIdentityError),
    #[error("listener `{listener}`: routes do not build")]
    Routes {
        listener: String,
        #[source]
        source: fedgate_dataplane::route::RouteError,
    },
    #[error("cannot start the data plane")]
    Workers(#[from] fedgate_dataplane::workers::WorkerError),
    #[error("cannot give listener `{listener}` to the data-plane workers")]
    ShareListener {
        listener: String,
        #[source]
        source: fedgate_dataplane::listen::ListenError,
    },
    #[error("admin server failed")]
    Admin(#[source] std::io::Error),
}

impl From<StartError> for AppError {
    fn from(e: StartError) -> Self {
        match e {
            StartError::Files(e) => AppError::Identity(e),
            StartError::WorkloadApi(e) => AppError::WorkloadApi(e),
        }
    }
}

/// State the admin server reads.
struct Shared {
    phase: AtomicU8,
    /// Data-plane worker threads running (0 until `run` starts them).
    workers: AtomicUsize,
    registry: Arc<Registry>,
    reloader: Reloader,
    listeners: Vec<ListenerView>,
    federation: Option<Arc<dyn FederationView>>,
    /// The gateway identity as reloaded, for the local bundle in `/status`.
    identity: Option<watch::Receiver<Arc<Identity>>>,
    /// `[identity] source = "workload_api"`: the source's counters and socket, for `/status`.
    identity_source: Option<crate::identity::workload_api::SourceStatus>,
    /// The bridge identity in force (bridge listeners only), for its SVID expiry in `/status`.
    bridge_identity: Option<watch::Receiver<Arc<Identity>>>,
    /// Recent refusals of every listener (passthrough and bridge), for `/status`.
    denials: crate::telemetry::Denials,
    /// The gateway's metrics, for per-route live connections in `/status`.
    metrics: Metrics,
}

struct ListenerView {
    name: String,
    addr: SocketAddr,
    state: watch::Receiver<Arc<ListenerState>>,
    active: prometheus_client::metrics::gauge::Gauge,
}

const STARTING: u8 = 0;
const RUNNING: u8 = 1;
const DRAINING: u8 = 2;

/// Starts the issued bridge identity when `config` has bridge listeners and `[bridge.issuer]`
/// (`Ok(None)` otherwise). `local` is the `[identity]` channel (bridge listeners require it;
/// without it there is nothing to authenticate with, and the bridge setup reports that).
async fn start_issued(
    config: &Config,
    local: Option<watch::Receiver<Arc<Identity>>>,
    federated: Option<watch::Receiver<BundleSet>>,
) -> Result<Option<IssuedBridgeIdentity>, IssuedIdentityError> {
    let has_bridge_listeners = config
        .listeners
        .iter()
        .any(|l| l.kind() != ListenerKind::Passthrough);
    let (Some(bridge), Some(local), true) = (&config.bridge, local, has_bridge_listeners) else {
        return Ok(None);
    };
    let BridgeIdentity::Issuer(settings) = &bridge.identity else {
        return Ok(None);
    };
    IssuedIdentity::start(
        settings,
        &bridge.trust_domain,
        bridge.bundle.clone(),
        local,
        federated,
    )
    .await
    .map(Some)
}

// === impl App ===

impl App {
    /// Binds every listener and the admin server, loads the identity and builds federation.
    pub async fn build(config: Config) -> Result<App, AppError> {
        let config = Arc::new(config);
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        let connections = Connections::default();

        let accept = match config.accept {
            Accept::Shared => AcceptMode::Shared,
            Accept::Reuseport => AcceptMode::ReusePort,
            Accept::Handoff => AcceptMode::Handoff,
        };
        let mut bound = Vec::new();
        let mut states = HashMap::new();
        let mut views = Vec::new();
        for l in &config.listeners {
            let tcp = listen::bind(l.listen, accept).map_err(|source| AppError::Bind {
                what: format!("listener `{}`", l.name),
                addr: l.listen,
                source,
            })?;
            let addr = tcp.local_addr().map_err(|source| AppError::Bind {
                what: l.name.clone(),
                addr: l.listen,
                source,
            })?;
            let state = ListenerState::new(l.clone(), None).map_err(|source| AppError::Routes {
                listener: l.name.clone(),
                source,
            })?;
            let (tx, rx) = watch::channel(Arc::new(state));
            views.push(ListenerView {
                name: l.name.clone(),
                addr,
                state: rx.clone(),
                active: metrics.active(&l.name),
            });
            bound.push((l.name.clone(), tcp, rx));
            states.insert(l.name.clone(), tx);
        }
        let admin = bind(config.admin.listen).map_err(|source| AppError::Bind {
            what: "the admin server".into(),
            addr: config.admin.listen,
            source,
        })?;

        let files = config.identity.as_ref().map(IdentityFiles::from);
        let origin = Origin::choose(files, config.identity_socket.as_deref());
        let (identity, identity_source) = match origin {
            Some(origin) => {
                let timeout = crate::identity::workload_api::DEFAULT_STARTUP_TIMEOUT;
                let started =
                    crate::identity::start(&origin, &config.trust_domain, timeout, None).await?;
                (Some((started.source, started.identity)), started.status)
            }
            None => (None, None),
        };
        let federation = match &config.federation {
            Some(f) => Some(
                Federation::build(
                    f,
                    &config.trust_domain,
                    identity.as_ref().map(|(_, rx)| rx.clone()),
                    &mut registry,
                )
                .await?,
            ),
            None => None,
        };

        // After federation: a `[[federation.peers]]` entry for the bridge trust domain keeps
        // the bridge bundle fresh.
        let listener_states = states
            .iter()
            .map(|(n, tx)| (n.clone(), tx.subscribe()))
            .collect();
        // `[bridge.issuer]`: obtain the first bridge SVID before the bridge listeners start.
        let issued = start_issued(
            &config,
            identity.as_ref().map(|(_, rx)| rx.clone()),
            federation.as_ref().map(|f| f.bundles()),
        )
        .await?;
        let bridge = crate::bridge::runtime::BridgeRuntime::build(
            &config,
            identity.as_ref().map(|(_, rx)| rx.clone()),
            federation.as_ref().map(|f| f.bundles()),
            issued,
            &listener_states,
            &mut registry,
            metrics.denials.clone(),
        )?;
        // Each listener's handler is fixed here: a bridge side for bridge listeners (built
        // above), passthrough for the others.
        let listeners = bound
            .into_iter()
            .map(|(name, tcp, rx)| {
                let handler = bridge
                    .as_ref()
                    .and_then(|b| b.handler(&name))
                    .map_or(Handler::Passthrough, |b| Handler::Bridge(Arc::new(b)));
                let listener =
                    Listener::new(&name, rx, handler, metrics.clone(), connections.clone());
                (name, tcp, listener)
            })
            .collect();
        let denials = metrics.denials.clone();
        let status_metrics = metrics.clone();
        let reloader = Reloader::new(config.clone(), states, metrics);
        let shared = Arc::new(Shared {
            phase: AtomicU8::new(STARTING),
            workers: AtomicUsize::new(0),
            registry: Arc::new(registry),
            reloader: reloader.clone(),
            listeners: views,
            federation: federation.as_ref().map(|f| f.view()),
            identity: identity.as_ref().map(|(_, rx)| rx.clone()),
            identity_source,
            bridge_identity: bridge.as_ref().map(|b| b.bridge_identity()),
            denials,
            metrics: status_metrics,
        });
        Ok(App {
            listeners,
            workers: config
                .workers
                .unwrap_or_else(fedgate_dataplane::workers::default_count),
            accept,
            admin,
            shared,
            connections,
            reloader,
            identity,
            bridge,
            federation,
            reload_requests: None,
            config_poll: reload::CONFIG_POLL,
            identity_poll: crate::identity::files::IDENTITY_POLL,
        })
    }

    /// The bound address of listener `name`.
    pub fn listener_addr(&self, name: &str) -> Option<SocketAddr> {
        self.shared
            .listeners
            .iter()
            .find(|l| l.name == name)
            .map(|l| l.addr)
    }

    /// Every listener's name and bound address, in config order.
    pub fn listener_addrs(&self) -> Vec<(String, SocketAddr)> {
        self.shared
            .listeners
            .iter()
            .map(|l| (l.name.clone(), l.addr))
            .collect()
    }

    pub fn admin_addr(&self) -> SocketAddr {
        // The socket was bound in `build`; `local_addr` fails only on a closed socket.
        self.admin
            .local_addr()
            .unwrap_or_else(|_| self.reloader.current().admin.listen)
    }

    /// The bundle endpoint's bound address, when `[federation.serve]` is configured.
    pub fn bundle_endpoint_addr(&self) -> Option<SocketAddr> {
        self.federation.as_ref().and_then(|f| f.serve_addr())
    }

    /// The handle that applies new configurations (also used by SIGHUP and the file poller).
    pub fn reloader(&self) -> Reloader {
        self.reloader.clone()
    }

    /// Snapshots of every trust domain's bundle (local and peers', never merged), when
    /// `[federation]` is configured. Consumers (the bridge's verifiers) rebuild on change.
    pub fn bundles(&self) -> Option<watch::Receiver<fedgate_federation::BundleSet>> {
        self.federation.as_ref().map(|f| f.bundles())
    }

    /// The gateway identity as it is reloaded, when `[identity]` is configured.
    pub fn identity(&self) -> Option<watch::Receiver<Arc<Identity>>> {
        self.identity.as_ref().map(|(_, rx)| rx.clone())
    }

    /// Reload whenever a message arrives on `requests` (SIGHUP in `fedgate run`).
    pub fn with_reload_requests(mut self, requests: mpsc::Receiver<()>) -> App {
        self.reload_requests = Some(requests);
        self
    }

    /// Runs `count` data-plane workers instead of the configured number (`--workers`).
    pub fn with_workers(mut self, count: usize) -> App {
        self.workers = count.max(1);
        self
    }

    /// How often the config file is checked for changes (default 2 s).
    pub fn with_config_poll(mut self, interval: Duration) -> App {
        self.config_poll = interval;
        self
    }

    /// How often identity files are checked for changes (default 2 s).
    pub fn with_identity_poll(mut self, interval: Duration) -> App {
        self.identity_poll = interval;
        self
    }

    /// Serves until `shutdown` is cancelled, then drains (see the module doc).
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), AppError> {
        let background = CancellationToken::new();
        let mut tasks = tokio::task::JoinSet::new();

        // Every worker's accept loops; the listening sockets close when all of them end.
        let accepting = TaskTracker::new();
        // Cancelled after the drain: workers then stop, dropping what is left.
        let release = CancellationToken::new();
        for (name, tcp, _) in &self.listeners {
            if let Ok(addr) = tcp.local_addr() {
                tracing::info!(listener = %name, %addr, workers = self.workers, "listening");
            }
        }
        let (per_worker, dealers) = share_listeners(self.listeners, self.workers, self.accept)?;
        // Hand-off threads own their sockets: stopping them is what closes those sockets.
        for dealer in dealers {
            let shutdown = shutdown.clone();
            accepting.spawn(async move {
                shutdown.cancelled().await;
                dealer.stop().await;
            });
        }
        let workers = fedgate_dataplane::workers::Workers::start("fedgate-worker", per_worker, {
            let (accepting, shutdown, release) =
                (accepting.clone(), shutdown.clone(), release.clone());
            move |worker, listeners: Vec<(WorkerSocket, Listener)>| {
                for (socket, listener) in listeners {
                    let acceptor = socket.into_acceptor(listener.name())?;
                    let accept = listener.run(acceptor, worker, shutdown.clone());
                    tokio::spawn(accepting.track_future(accept));
                }
                Ok(release.clone().cancelled_owned())
            }
        })
        .await;
        let workers = match workers {
            Ok(w) => {
                self.shared.workers.store(w.len(), Ordering::SeqCst);
                w
            }
            Err(e) => {
                // Stops the workers that did start (their accept loops are dropped with them).
                release.cancel();
                return Err(e.into());
            }
        };

        if let Ok(addr) = self.admin.local_addr() {
            tracing::info!(%addr, "admin server listening");
        }
        let source: Arc<dyn AdminSource> = self.shared.clone();
        let admin_stop = background.clone();
        let admin = Admin::new(self.shared.registry.clone()).with_source(source);
        let admin = tokio::spawn(admin.serve(self.admin, admin_stop));
        tasks.spawn(
            self.reloader
                .clone()
                .watch_file(self.config_poll, background.clone()),
        );
        if let Some((source, _)) = self.identity {
            tasks.spawn(source.run(self.identity_poll, background.clone()));
        }
        if let Some(b) = self.bridge {
            tasks.spawn(b.run(self.identity_poll, background.clone()));
        }
        if let Some(f) = self.federation {
            tasks.spawn(f.run(background.clone()));
        }
        let mut requests = self.reload_requests;
        self.shared.phase.store(RUNNING, Ordering::SeqCst);

        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(()) = recv(&mut requests) => { let _ = self.reloader.reload(); }
            }
        }

        // Flip readiness only once every listening socket is closed, so "not ready" also
        // means "new connections are refused".
        accepting.close();
        accepting.wait().await;
        self.shared.phase.store(DRAINING, Ordering::SeqCst);
        let drain_timeout = self.reloader.current().drain_timeout;
        self.connections.drain(drain_timeout).await;
        release.cancel();
        workers.join().await;
        background.cancel();
        while tasks.join_next().await.is_some() {}
        // Graceful shutdown closes idle keep-alive connections; bound it anyway.
        let admin_result = tokio::time::timeout(Duration::from_secs(5), admin).await;
        tracing::info!("stopped");
        match admin_result {
            Ok(Ok(Err(e))) => Err(AppError::Admin(e)),
            _ => Ok(()),
        }
    }
}

/// One set of accept sources per worker ([`listen::worker_sockets`]: `dup`s of each bound
/// socket, a `SO_REUSEPORT` group, or a hand-off thread's inboxes), each worker's set in
/// listener order; and the hand-off threads to stop at shutdown.
#[allow(clippy::type_complexity)]
fn share_listeners(
    listeners: Vec<(String, std::net::TcpListener, Listener)>,
    workers: usize,
    accept: AcceptMode,
) -> Result<(Vec<Vec<(WorkerSocket, Listener)>>, Vec<Dealer>), AppError> {
    let workers = workers.max(1);
    let mut per_worker: Vec<Vec<_>> = (0..workers).map(|_| Vec::new()).collect();
    let mut dealers = Vec::new();
    for (name, tcp, listener) in listeners {
        let shared = listen::worker_sockets(tcp, workers, accept, &name).map_err(|source| {
            AppError::ShareListener {
                listener: name,
                source,
            }
        })?;
        dealers.extend(shared.dealer);
        for (set, socket) in per_worker.iter_mut().zip(shared.sockets) {
            set.push((socket, listener.clone()));
        }
    }
    Ok((per_worker, dealers))
}

/// Receives from an optional channel; pending forever when there is none or it closed.
async fn recv(rx: &mut Option<mpsc::Receiver<()>>) -> Option<()> {
    match rx {
        Some(r) => match r.recv().await {
            Some(()) => Some(()),
            None => {
                *rx = None;
                std::future::pending().await
            }
        },
        None => std::future::pending().await,
    }
}

/// `/status` `local_bundle`: the gateway's own trust bundle and when its X.509 authorities
/// expire (same fields as each peer's).
fn local_bundle_status(bundle: &fedgate_federation::Bundle) -> serde_json::Value {
    let mut doc = serde_json::json!({
        "trust_domain": bundle.trust_domain().as_str(),
        "sequence": bundle.sequence(),
        "authorities": bundle.x509_authorities().len(),
    });
    let expiry = AuthorityExpiry::of(Some(bundle));
    if let (Some(doc), Ok(serde_json::Value::Object(expiry))) =
        (doc.as_object_mut(), serde_json::to_value(expiry))
    {
        doc.extend(expiry);
    }
    doc
}

/// `/status` `local_svid` / `bridge_svid`: the SVID's SPIFFE ID, its leaf's RFC 3339
/// `not_after` and the seconds from `now` until then (negative once expired); `not_after` and
/// `seconds_left` are null when the leaf's validity cannot be read.
fn svid_status(identity: &Identity, now: std::time::SystemTime) -> serde_json::Value {
    let not_after = identity
        .svid
        .chain()
        .first()
        .and_then(crate::bridge::tls::leaf_not_after);
    let seconds_left = not_after.map(|t| match t.duration_since(now) {
        Ok(left) => left.as_secs_f64(),
        Err(past) => -past.duration().as_secs_f64(),
    });
    serde_json::json!({
        "spiffe_id": identity.svid.id().to_string(),
        "not_after": not_after.map(|t| humantime::format_rfc3339_seconds(t).to_string()),
        "seconds_left": seconds_left,
    })
}

// === impl Shared ===

impl AdminSource for Shared {
    fn healthy(&self) -> bool {
        self.phase.load(Ordering::SeqCst) != STARTING
    }

    fn readiness(&self) -> Readiness {
        match self.phase.load(Ordering::SeqCst) {
            STARTING => {
                return Readiness::NotReady("starting: listeners are not serving yet".into())
            }
            DRAINING => return Readiness::NotReady("draining: shutting down".into()),
            _ => {}
        }
        match &self.federation {
            Some(f) => match f.readiness() {
                FederationReadiness::Ready => Readiness::Ready,
                FederationReadiness::Degraded(warning) => Readiness::ReadyDegraded(warning),
                FederationReadiness::NotReady(reason) => Readiness::NotReady(reason),
            },
            None => Readiness::Ready,
        }
    }

    fn status(&self) -> serde_json::Value {
        let config = self.reloader.current();
        let now = std::time::SystemTime::now();
        let phase = match self.phase.load(Ordering::SeqCst) {
            STARTING => "starting",
            RUNNING => "running",
            _ => "draining",
        };
        let listeners: Vec<_> = self
            .listeners
            .iter()
            .map(|v| {
                let state = v.state.borrow().clone();
                let c = &state.config;
                let passthrough = c.kind() == ListenerKind::Passthrough;
                serde_json::json!({
                    "name": v.name,
                    "address": v.addr.to_string(),
                    "kind": c.kind().as_str(),
                    "active_connections": v.active.get(),
                    "max_connections": c.limits.max_connections,
                    "default_route": c.default_route,
                    "routes": c.routes().iter().map(|r| serde_json::json!({
                        "name": r.name,
                        "sni": r.sni,
                        "upstreams": r.upstreams.iter().map(|u| u.to_string()).collect::<Vec<_>>(),
                        // Tracked for passthrough routes only (null for bridge routes).
                        "active_connections": passthrough
                            .then(|| self.metrics.route_active(&v.name, r.name).get()),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        serde_json::json!({
            "trust_domain": config.trust_domain.as_str(),
            "state": phase,
            "workers": self.workers.load(Ordering::SeqCst),
            "listeners": listeners,
            "local_bundle": self.identity.as_ref().map(|rx| local_bundle_status(&rx.borrow().bundle)),
            "identity_source": self.identity_source.as_ref().map(|s| s.status()),
            "local_svid": self.identity.as_ref().map(|rx| svid_status(&rx.borrow(), now)),
            "bridge_svid": self.bridge_identity.as_ref().map(|rx| svid_status(&rx.borrow(), now)),
            "peers": self.federation.as_ref().map_or(serde_json::json!([]), |f| f.peers()),
            "denials": self.denials.status(),
        })
    }
}
