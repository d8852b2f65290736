//! `fedgate sidecar`: the workload-side mTLS proxy, used in both trust modes.
//!
//! ```text
//! app ─TCP→ [outbound] ─mTLS(SVID)→ (gateways) → [inbound] ─TCP(+PROXY v2)→ app
//! ```
//!
//! Life of the process: [`Config::load`] → [`Sidecar::build`] (load the identity, build every
//! TLS config, bind every listener) → log the bound addresses → [`Sidecar::run`] until the
//! shutdown token fires → drain live connections for up to `drain_timeout`.
//!
//! Shared pieces it is built on: `crate::identity::start` (the identity source of
//! `fedgate run`: watched files, or the Workload API stream), the mTLS config builders of
//! `fedgate_federation::tls` (as the bridge's), `fedgate_dataplane` (accept loop, connection
//! limit, drain, upstreams, TLS deadlines, PROXY v2), `crate::admin` and `crate::telemetry`.
//! Its own modules: [`config`] (a re-export of `crate::config::sidecar`), [`tls`] (one
//! snapshot of every listener's configs), [`reload`] (follow the source, rebuild, swap, count),
//! [`outbound`] and [`inbound`] (one connection each), [`metrics`], `status` (`/status`).
//!
//! Invariants: connection tasks are tracked and drained; a connection's errors end at its task
//! (one log line + one metric + one [`ConnectionEvent`]) and never stop an accept loop; each
//! listener holds at most its `max_connections` connections: one more is closed at accept,
//! before any TLS or dial, and counted (outcome `too_many_connections`, counted before the
//! close); a connection's slot is free again before its [`ConnectionEvent`] is sent; with
//! `[identity] source = "workload_api"`, `build` returns only once the first SVID has been
//! streamed (or fails after `startup_timeout`), and the source runs with the listeners until
//! shutdown, never withdrawing the identity in force.

pub mod inbound;
pub mod metrics;
pub mod outbound;
pub mod reload;
mod status;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use fedgate_dataplane::accept::Acceptor;
use fedgate_dataplane::pump::{PumpError, PumpStats};
use fedgate_dataplane::serve::{self, Connections, Service};
use prometheus_client::registry::Registry;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use self::inbound::Inbound;
use self::metrics::{Direction, SidecarMetrics};
use self::outbound::Outbound;
use self::reload::{LoadError, Outcomes, ReloadStatus, Reloader};
use self::tls::TlsSnapshot;
use crate::admin::Admin;
/// The sidecar's config file model lives with the gateway's, in `crate::config::sidecar`.
pub use crate::config::sidecar as config;
pub use crate::config::sidecar::{Config, ConfigError, WorkloadIdentity};
use crate::identity::{Origin, Started};
use fedgate_federation::error_chain;
use fedgate_federation::SpiffeId;

/// A sidecar with its identity loaded and every listener bound, ready to [`run`](Self::run).
pub struct Sidecar {
    config: Arc<Config>,
    /// Every outbound listener, then every inbound one.
    listeners: Vec<(Side, TcpListener)>,
    admin: Option<TcpListener>,
    /// Publishes TLS snapshots; the reloader owns it once running.
    tls_tx: watch::Sender<Arc<TlsSnapshot>>,
    /// The identity source (files or Workload API), its first identity marked seen.
    identity: Started,
    /// Reload counts (metrics and [`ReloadStatus`]); also the identity source's hook.
    outcomes: Arc<Outcomes>,
    registry: Arc<Registry>,
    /// Reload requests (SIGHUP): each one makes the reloader poll the files at once.
    reload_requests: Option<mpsc::Receiver<()>>,
    /// One event per finished connection (for tests and debugging); sends never block.
    events: broadcast::Sender<ConnectionEvent>,
}

/// Why a sidecar could not start.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The identity files are missing or unusable, or the Workload API gave no usable
    /// identity in time: an operator error (exit 64).
    #[error(transparent)]
    Identity(#[from] LoadError),
    #[error("cannot bind {what} listener {name:?} to {addr}")]
    Bind {
        what: &'static str,
        name: String,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// What happened to one connection, sent when it ends.
#[derive(Clone, Debug)]
pub struct ConnectionEvent {
    pub direction: Direction,
    pub listener: String,
    /// `ok` or the refusal/failure reason (the metric label).
    pub outcome: &'static str,
    /// Outbound: the verified server. Inbound: the verified client.
    pub peer_id: Option<SpiffeId>,
    /// Inbound only: the origin a trusted relay spoke for.
    pub origin_id: Option<SpiffeId>,
}

/// A bound listener, for logging, tests and `/status` (`{"kind", "name", "address"}`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct BoundAddr {
    /// `outbound`, `inbound` or `admin`.
    pub kind: &'static str,
    pub name: String,
    #[serde(rename = "address")]
    pub addr: SocketAddr,
}

/// What one listener serves.
#[derive(Clone)]
enum Side {
    Outbound(Arc<Outbound>),
    Inbound(Arc<Inbound>),
}

/// Who a connection is with, once verified: outbound the server; inbound the client and the
/// origin a trusted relay spoke for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub id: SpiffeId,
    pub origin: Option<SpiffeId>,
}

/// Why a side ended a connection early: a refusal, or a failure of the relay once begun.
trait Ending: std::error::Error {
    /// The refusal's metric label, or the relay's error.
    fn refusal(&self) -> Result<&'static str, &std::io::Error>;

    /// The metric label (`outcome`).
    fn label(&self) -> &'static str {
        match self.refusal() {
            Ok(label) => label,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => "idle_timeout",
            Err(_) => "relay_error",
        }
    }
}

/// What every connection task needs besides its listener.
struct ConnCtx {
    metrics: Arc<SidecarMetrics>,
    events: broadcast::Sender<ConnectionEvent>,
    /// Fired after the drain deadline: connection tasks stop at once.
    abort: CancellationToken,
}

/// One listener as a data-plane [`Service`].
struct Serving {
    side: Side,
    ctx: Arc<ConnCtx>,
    limit: Arc<Semaphore>,
}

// === impl Sidecar ===

impl Sidecar {
    /// Loads the identity, builds every TLS config and binds every listener. With
    /// `[identity] source = "workload_api"`, waits for a first SVID for up to
    /// `crate::identity::workload_api::DEFAULT_STARTUP_TIMEOUT` (as `fedgate run` does).
    pub async fn build(config: Config) -> Result<Self, BuildError> {
        Self::build_with_startup_timeout(
            config,
            crate::identity::workload_api::DEFAULT_STARTUP_TIMEOUT,
        )
        .await
    }

    /// [`build`](Self::build), waiting at most `startup_timeout` for a first SVID from the
    /// Workload API (unused with identity files).
    pub async fn build_with_startup_timeout(
        config: Config,
        startup_timeout: std::time::Duration,
    ) -> Result<Self, BuildError> {
        let config = Arc::new(config);
        let mut registry = Registry::default();
        let outcomes = Arc::new(Outcomes {
            metrics: Arc::new(SidecarMetrics::register(&mut registry)),
            status: watch::Sender::new(ReloadStatus::default()),
        });
        let origin = Origin::from(&config.identity);
        let hook = Some(outcomes.hook());
        let mut identity =
            crate::identity::start(&origin, &config.trust_domain, startup_timeout, hook)
                .await
                .map_err(LoadError::from)?;
        let first = identity.identity.borrow_and_update().clone();
        let snapshot = TlsSnapshot::build(&first, &config, 0).map_err(LoadError::from)?;
        tracing::info!(id = %snapshot.id, "workload identity loaded");
        let (tls_tx, tls_rx) = watch::channel(Arc::new(snapshot));

        let mut listeners = Vec::with_capacity(config.outbound.len() + config.inbound.len());
        for (i, o) in config.outbound.iter().enumerate() {
            let listener = bind("outbound", &o.name, o.listen).await?;
            let side = Outbound::new(i, o.clone(), tls_rx.clone());
            listeners.push((Side::Outbound(Arc::new(side)), listener));
        }
        for (i, c) in config.inbound.iter().enumerate() {
            let listener = bind("inbound", &c.name, c.listen).await?;
            let side = Inbound::new(i, c.clone(), tls_rx.clone());
            listeners.push((Side::Inbound(Arc::new(side)), listener));
        }
        let admin = match config.admin {
            Some(addr) => Some(bind("admin", "admin", addr).await?),
            None => None,
        };

        let (events, _) = broadcast::channel(1024);
        Ok(Self {
            config,
            listeners,
            admin,
            tls_tx,
            identity,
            outcomes,
            registry: Arc::new(registry),
            reload_requests: None,
            events,
        })
    }

    /// Every bound listener, outbound first, then inbound, then admin.
    pub fn bound_addrs(&self) -> Vec<BoundAddr> {
        let listeners = self.listeners.iter().map(|(side, l)| {
            let (kind, name) = (side.direction().as_str(), side.name());
            (kind, name, l)
        });
        let admin = self.admin.iter().map(|l| ("admin", "admin", l));
        listeners
            .chain(admin)
            .filter_map(|(kind, name, l)| {
                let addr = l.local_addr().ok()?;
                let name = name.to_owned();
                Some(BoundAddr { kind, name, addr })
            })
            .collect()
    }

    /// The bound address of the outbound listener `name`.
    pub fn outbound_addr(&self, name: &str) -> Option<SocketAddr> {
        self.listener_addr(Direction::Outbound, name)
    }

    /// The bound address of the inbound listener `name`.
    pub fn inbound_addr(&self, name: &str) -> Option<SocketAddr> {
        self.listener_addr(Direction::Inbound, name)
    }

    fn listener_addr(&self, direction: Direction, name: &str) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|(side, _)| side.direction() == direction && side.name() == name)
            .and_then(|(_, l)| l.local_addr().ok())
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Follows the TLS snapshots in force (a new value after every successful reload).
    pub fn tls_updates(&self) -> watch::Receiver<Arc<TlsSnapshot>> {
        self.tls_tx.subscribe()
    }

    /// Makes every message of `requests` (e.g. SIGHUP) trigger an immediate identity poll.
    pub fn with_reload_requests(mut self, requests: mpsc::Receiver<()>) -> Self {
        self.reload_requests = Some(requests);
        self
    }

    /// Follows the reload attempts (including refused ones).
    pub fn reload_status(&self) -> watch::Receiver<ReloadStatus> {
        self.outcomes.status.subscribe()
    }

    /// One [`ConnectionEvent`] per finished connection, from now on.
    pub fn connection_events(&self) -> broadcast::Receiver<ConnectionEvent> {
        self.events.subscribe()
    }

    /// The Prometheus text exposition of the sidecar's metrics.
    pub fn metrics_text(&self) -> String {
        crate::telemetry::metrics::encode(&self.registry)
    }

    /// Serves until `shutdown` fires, then stops accepting and drains live connections for up
    /// to `drain_timeout` before closing the rest.
    pub async fn run(self, shutdown: CancellationToken) {
        let status = status::SidecarStatus {
            listeners: self.bound_addrs(),
            tls: self.tls_tx.subscribe(),
            reloads: self.outcomes.status.subscribe(),
            identity_source: self.identity.status.clone(),
        };
        let connections = Connections::default();
        let ctx = Arc::new(ConnCtx {
            metrics: self.outcomes.metrics.clone(),
            events: self.events.clone(),
            abort: connections.hard_stop.clone(),
        });

        let mut loops = tokio::task::JoinSet::new();
        let Started {
            source,
            identity,
            poll_now,
            ..
        } = self.identity;
        let reloader = Reloader::new(self.config.clone(), self.tls_tx, identity, self.outcomes);
        loops.spawn(reloader.run(shutdown.clone()));
        // A streaming source ignores the poll interval.
        loops.spawn(source.run(self.config.reload_interval, shutdown.clone()));
        if let Some(requests) = self.reload_requests {
            loops.spawn(reload::forward_requests(
                requests,
                poll_now,
                shutdown.clone(),
            ));
        }
        for (side, listener) in self.listeners {
            let service = Serving {
                limit: Arc::new(Semaphore::new(side.max_connections())),
                side,
                ctx: ctx.clone(),
            };
            let (connections, shutdown) = (connections.clone(), shutdown.clone());
            loops.spawn(async move {
                let acceptor = Acceptor::new(listener, "sidecar");
                serve::serve(acceptor, service, &connections, &shutdown).await;
            });
        }
        if let Some(listener) = self.admin {
            let admin = Admin::new(self.registry.clone()).with_source(Arc::new(status));
            loops.spawn(admin.serve_logged(listener, shutdown.clone(), "admin server"));
        }
        while let Some(res) = loops.join_next().await {
            if let Err(e) = res {
                tracing::error!(error = %e, "a sidecar task panicked");
            }
        }

        connections.drain(self.config.drain_timeout).await;
        tracing::info!("sidecar stopped");
    }
}

async fn bind(what: &'static str, name: &str, addr: SocketAddr) -> Result<TcpListener, BuildError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| BuildError::Bind {
            what,
            name: name.to_owned(),
            addr,
            source,
        })
}

// === impl Side ===

impl Side {
    fn direction(&self) -> Direction {
        match self {
            Side::Outbound(_) => Direction::Outbound,
            Side::Inbound(_) => Direction::Inbound,
        }
    }

    fn name(&self) -> &str {
        match self {
            Side::Outbound(o) => &o.config.name,
            Side::Inbound(i) => &i.config.name,
        }
    }

    fn max_connections(&self) -> usize {
        match self {
            Side::Outbound(o) => o.config.limits.max_connections,
            Side::Inbound(i) => i.config.limits.max_connections,
        }
    }

    /// Handles one connection to its end: its outcome label and the bytes relayed, as
    /// `(to_peer, from_peer)`.
    async fn handle(
        &self,
        tcp: &mut TcpStream,
        peer: &mut Option<Peer>,
    ) -> (&'static str, Option<(u64, u64)>) {
        let (outcome, stats) = match self {
            Side::Outbound(o) => finished(o.handle(tcp, peer).await),
            Side::Inbound(i) => finished(i.handle(tcp, peer).await),
        };
        // Outbound pumps `(app, tls)`, inbound `(tls, app)`: the pump's "client" side.
        let bytes = stats.map(|s| match self {
            Side::Outbound(_) => (s.client_to_upstream, s.upstream_to_client),
            Side::Inbound(_) => (s.upstream_to_client, s.client_to_upstream),
        });
        (outcome, bytes)
    }
}

/// An ended connection's outcome label and the bytes it relayed; logs a failure.
fn finished<E: Ending>(result: Result<PumpStats, E>) -> (&'static str, Option<PumpStats>) {
    match result {
        Ok(stats) => {
            tracing::debug!(?stats, "connection closed");
            ("ok", Some(stats))
        }
        Err(e) => {
            let (label, chain) = (e.label(), error_chain(&e));
            // Refusals are what the sidecar is for (warn); ordinary ends of a relay are debug.
            if matches!(label, "idle_timeout" | "relay_error") {
                tracing::debug!(outcome = label, error = %chain, "connection ended");
            } else {
                tracing::warn!(outcome = label, error = %chain, "connection refused");
            }
            // Bytes relayed before a relay failure (none for refusals: nothing was relayed).
            let relayed = e.refusal().err().and_then(PumpError::from_io);
            (label, relayed.map(|p| p.stats))
        }
    }
}

// === impl Serving ===

impl Service for Serving {
    type State = ();

    fn state(&self) {}

    fn limit<'a>(&'a self, (): &'a ()) -> &'a Arc<Semaphore> {
        &self.limit
    }

    fn refuse(&self, (): &(), client: SocketAddr) {
        let (direction, name) = (self.side.direction(), self.side.name());
        tracing::warn!(
            direction = direction.as_str(),
            listener = %name,
            %client,
            max_connections = self.side.max_connections(),
            outcome = "too_many_connections",
            "listener at its connection limit; closing"
        );
        // Counted before the close, so a client that sees the close sees the count.
        self.ctx
            .finish(direction, name, "too_many_connections", None, None);
    }

    fn serve(
        &self,
        (): (),
        mut tcp: TcpStream,
        client: SocketAddr,
        permit: OwnedSemaphorePermit,
    ) -> impl Future<Output = ()> + Send + 'static {
        let (side, ctx) = (self.side.clone(), self.ctx.clone());
        let span = match &side {
            Side::Outbound(o) => {
                tracing::info_span!("outbound", listener = %o.config.name, %client)
            }
            Side::Inbound(i) => tracing::info_span!("inbound", listener = %i.config.name, %client),
        };
        async move {
            let (direction, name) = (side.direction(), side.name());
            let _active = ctx.metrics.open(direction, name);
            let mut peer = None;
            let result = tokio::select! {
                r = side.handle(&mut tcp, &mut peer) => Some(r),
                () = ctx.abort.cancelled() => None,
            };
            let (outcome, bytes) = result.unwrap_or(("drain_timeout", None));
            if let Some((to_peer, from_peer)) = bytes {
                ctx.metrics.bytes(direction, name, to_peer, from_peer);
            }
            let (peer_id, origin_id) = peer.map_or((None, None), |p| (Some(p.id), p.origin));
            // The slot is free before the event announces the end.
            drop(permit);
            ctx.finish(direction, name, outcome, peer_id, origin_id);
            // Closed only now: the metric and event above precede the peer's EOF.
            drop(tcp);
        }
        .instrument(span)
    }
}

// === impl ConnCtx ===

impl ConnCtx {
    fn finish(
        &self,
        direction: Direction,
        listener: &str,
        outcome: &'static str,
        peer_id: Option<SpiffeId>,
        origin_id: Option<SpiffeId>,
    ) {
        self.metrics.connection_done(direction, listener, outcome);
        let _ = self.events.send(ConnectionEvent {
            direction,
            listener: listener.to_owned(),
            outcome,
            peer_id,
            origin_id,
        });
    }
}
