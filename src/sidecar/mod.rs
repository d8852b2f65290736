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
//! Modules: [`config`] (file model), `crate::identity` (SVID + bundles, file source), [`tls`] (rustls configs with
//! allow-list verifiers), [`reload`] (file polling and atomic swap), [`outbound`] and [`inbound`]
//! (one connection each), [`metrics`], [`admin`].
//!
//! Invariants: connection tasks are tracked and drained; a connection's errors end at its task
//! (one log line + one metric + one [`ConnectionEvent`]) and never stop an accept loop; each
//! listener holds at most its `max_connections` connections: one more is closed at accept,
//! before any TLS or dial, and counted (outcome `too_many_connections`, counted before the
//! close); a connection's slot is free again before its [`ConnectionEvent`] is sent.

pub mod admin;
pub mod config;
pub mod inbound;
pub mod metrics;
pub mod outbound;
pub mod reload;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;

use fedgate_federation::net::Acceptor;
use prometheus_client::registry::Registry;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

pub use self::config::{Config, ConfigError};
use self::inbound::{Inbound, InboundPeer};
use self::metrics::{Direction, SidecarMetrics};
use self::outbound::Outbound;
use self::reload::{LoadError, ReloadStatus, Reloader};
use self::tls::TlsSnapshot;
use crate::identity::files::FileSource;
use crate::telemetry::display_chain;
use fedgate_federation::SpiffeId;

/// A sidecar with its identity loaded and every listener bound, ready to [`run`](Self::run).
pub struct Sidecar {
    config: Arc<Config>,
    outbound: Vec<(Arc<Outbound>, TcpListener)>,
    inbound: Vec<(Arc<Inbound>, TcpListener)>,
    admin: Option<TcpListener>,
    /// Publishes TLS snapshots; the reloader owns it once running.
    tls_tx: watch::Sender<Arc<TlsSnapshot>>,
    /// Reload attempt counts; the reloader owns the sender once running.
    reload_status: watch::Sender<ReloadStatus>,
    /// The identity files; remembers the version the first snapshot was built from.
    identity: FileSource,
    metrics: Arc<SidecarMetrics>,
    registry: Arc<Registry>,
    /// Reload requests (SIGHUP): each one makes the reloader poll the files at once.
    reload_requests: Option<mpsc::Receiver<()>>,
    /// One event per finished connection (for tests and debugging); sends never block.
    events: broadcast::Sender<ConnectionEvent>,
}

/// Why a sidecar could not start.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The identity files are missing or unusable: an operator error (exit 64).
    #[error(transparent)]
    Identity(#[from] LoadError),
    /// The blocking task loading the identity panicked or was cancelled.
    #[error("the identity loading task failed")]
    LoadTask(#[source] tokio::task::JoinError),
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

/// A bound listener, for logging and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BoundAddr {
    /// `outbound`, `inbound` or `admin`.
    pub kind: &'static str,
    pub name: String,
    pub addr: SocketAddr,
}

// === impl Sidecar ===

impl Sidecar {
    /// Loads the identity, builds every TLS config and binds every listener.
    pub async fn build(config: Config) -> Result<Self, BuildError> {
        let config = Arc::new(config);
        let (identity, snapshot) = {
            let config = config.clone();
            tokio::task::spawn_blocking(move || reload::load(&config))
                .await
                .map_err(BuildError::LoadTask)??
        };
        tracing::info!(id = %snapshot.id, "workload identity loaded");
        let (tls_tx, tls_rx) = watch::channel(Arc::new(snapshot));

        let mut outbound = Vec::with_capacity(config.outbound.len());
        for (i, o) in config.outbound.iter().enumerate() {
            let listener = bind("outbound", &o.name, o.listen).await?;
            outbound.push((
                Arc::new(Outbound::new(i, o.clone(), tls_rx.clone())),
                listener,
            ));
        }
        let mut inbound = Vec::with_capacity(config.inbound.len());
        for (i, c) in config.inbound.iter().enumerate() {
            let listener = bind("inbound", &c.name, c.listen).await?;
            inbound.push((
                Arc::new(Inbound::new(i, c.clone(), tls_rx.clone())),
                listener,
            ));
        }
        let admin = match config.admin {
            Some(addr) => Some(bind("admin", "admin", addr).await?),
            None => None,
        };

        let mut registry = Registry::default();
        let metrics = Arc::new(SidecarMetrics::register(&mut registry));
        let (events, _) = broadcast::channel(1024);
        Ok(Self {
            config,
            outbound,
            inbound,
            admin,
            tls_tx,
            reload_status: watch::Sender::new(ReloadStatus::default()),
            identity,
            metrics,
            registry: Arc::new(registry),
            reload_requests: None,
            events,
        })
    }

    /// Every bound listener, outbound first, then inbound, then admin.
    pub fn bound_addrs(&self) -> Vec<BoundAddr> {
        let mut out = Vec::new();
        for (o, l) in &self.outbound {
            out.extend(l.local_addr().ok().map(|addr| BoundAddr {
                kind: "outbound",
                name: o.config.name.clone(),
                addr,
            }));
        }
        for (i, l) in &self.inbound {
            out.extend(l.local_addr().ok().map(|addr| BoundAddr {
                kind: "inbound",
                name: i.config.name.clone(),
                addr,
            }));
        }
        if let Some(l) = &self.admin {
            out.extend(l.local_addr().ok().map(|addr| BoundAddr {
                kind: "admin",
                name: "admin".into(),
                addr,
            }));
        }
        out
    }

    /// The bound address of the outbound listener `name`.
    pub fn outbound_addr(&self, name: &str) -> Option<SocketAddr> {
        self.outbound
            .iter()
            .find(|(o, _)| o.config.name == name)
            .and_then(|(_, l)| l.local_addr().ok())
    }

    /// The bound address of the inbound listener `name`.
    pub fn inbound_addr(&self, name: &str) -> Option<SocketAddr> {
        self.inbound
            .iter()
            .find(|(i, _)| i.config.name == name)
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
        self.reload_status.subscribe()
    }

    /// One [`ConnectionEvent`] per finished connection, from now on.
    pub fn connection_events(&self) -> broadcast::Receiver<ConnectionEvent> {
        self.events.subscribe()
    }

    /// The Prometheus text exposition of the sidecar's metrics.
    pub fn metrics_text(&self) -> String {
        admin::encode(&self.registry)
    }

    /// Serves until `shutdown` fires, then stops accepting and drains live connections for up
    /// to `drain_timeout` before closing the rest.
    pub async fn run(self, shutdown: CancellationToken) {
        let tracker = TaskTracker::new();
        // Cancelled when the drain deadline passes: connection tasks then end at once.
        let abort = CancellationToken::new();
        let ctx = Arc::new(ConnCtx {
            metrics: self.metrics.clone(),
            events: self.events.clone(),
            tracker: tracker.clone(),
            abort: abort.clone(),
        });

        let mut loops = tokio::task::JoinSet::new();
        let reloader = Reloader::new(
            self.config.clone(),
            self.tls_tx,
            self.reload_status,
            self.identity,
            self.metrics.clone(),
        );
        loops.spawn(reloader.run(self.reload_requests, shutdown.clone()));
        for (outbound, listener) in self.outbound {
            loops.spawn(accept_outbound(
                listener,
                outbound,
                ctx.clone(),
                shutdown.clone(),
            ));
        }
        for (inbound, listener) in self.inbound {
            loops.spawn(accept_inbound(
                listener,
                inbound,
                ctx.clone(),
                shutdown.clone(),
            ));
        }
        if let Some(listener) = self.admin {
            loops.spawn(admin::serve(
                listener,
                self.registry.clone(),
                shutdown.clone(),
            ));
        }
        while let Some(res) = loops.join_next().await {
            if let Err(e) = res {
                tracing::error!(error = %e, "a sidecar task panicked");
            }
        }

        let live = tracker.len();
        if live > 0 {
            tracing::info!(live, drain_timeout = ?self.config.drain_timeout, "draining connections");
        }
        if !fedgate_dataplane::shutdown::drain(&tracker, self.config.drain_timeout).await {
            tracing::warn!(
                live = tracker.len(),
                "drain timeout reached; closing the remaining connections"
            );
            abort.cancel();
            tracker.wait().await;
        }
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

/// What every connection task needs besides its listener.
struct ConnCtx {
    metrics: Arc<SidecarMetrics>,
    events: broadcast::Sender<ConnectionEvent>,
    /// Every connection task is spawned on it so `run` can wait for them to drain.
    tracker: TaskTracker,
    /// Fired after the drain deadline: connection tasks stop at once.
    abort: CancellationToken,
}

/// A listener's connection limit, as its accept loop applies it.
struct Limit<'a> {
    ctx: &'a ConnCtx,
    direction: Direction,
    name: &'a str,
    max_connections: usize,
}

/// Accepts until `shutdown`; backs off on accept errors (e.g. EMFILE) instead of exiting. A
/// connection that finds no free slot of the listener's `max_connections` is counted and closed
/// at once; the others are handed to `spawn` with their slot.
async fn accept_loop<F>(
    listener: TcpListener,
    shutdown: CancellationToken,
    limit: Limit<'_>,
    mut spawn: F,
) where
    F: FnMut(TcpStream, SocketAddr, OwnedSemaphorePermit),
{
    let Limit {
        ctx,
        direction,
        name,
        max_connections,
    } = limit;
    let slots = Arc::new(Semaphore::new(max_connections));
    let mut acceptor = Acceptor::new(listener, "sidecar");
    while let Some((stream, addr)) = acceptor.next(&shutdown).await {
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(
                direction = direction.as_str(),
                listener = %name,
                client = %addr,
                max_connections,
                outcome = "too_many_connections",
                "listener at its connection limit; closing"
            );
            // Counted before the close, so a client that sees the close sees the count.
            ctx.finish(direction, name, "too_many_connections", None, None);
            drop(stream);
            continue;
        };
        spawn(stream, addr, permit);
    }
}

async fn accept_outbound(
    listener: TcpListener,
    outbound: Arc<Outbound>,
    ctx: Arc<ConnCtx>,
    shutdown: CancellationToken,
) {
    let spawn_ctx = ctx.clone();
    let config = outbound.config.clone();
    let limit = Limit {
        ctx: &ctx,
        direction: Direction::Outbound,
        name: &config.name,
        max_connections: config.max_connections,
    };
    accept_loop(listener, shutdown, limit, move |mut app, addr, permit| {
        let outbound = outbound.clone();
        let ctx = spawn_ctx.clone();
        let name = outbound.config.name.clone();
        let span = tracing::info_span!("outbound", listener = %name, client = %addr);
        ctx.tracker.clone().spawn(
            async move {
                let _active = ctx.metrics.open(Direction::Outbound, &name);
                let mut peer = None;
                let result = tokio::select! {
                    r = outbound.handle(&mut app, &mut peer) => Some(r),
                    () = ctx.abort.cancelled() => None,
                };
                let (outcome, stats) = match result {
                    Some(Ok(stats)) => {
                        tracing::debug!(?stats, "connection closed");
                        ("ok", Some(stats))
                    }
                    Some(Err(e)) => {
                        log_failure(e.label(), &e);
                        (e.label(), e.relayed())
                    }
                    None => ("drain_timeout", None),
                };
                if let Some(s) = stats {
                    let (to_peer, from_peer) = (s.client_to_upstream, s.upstream_to_client);
                    ctx.metrics
                        .bytes(Direction::Outbound, &name, to_peer, from_peer);
                }
                // The slot is free before the event announces the end.
                drop(permit);
                ctx.finish(Direction::Outbound, &name, outcome, peer, None);
                // Closed only now: the metric and event above precede the app's EOF.
                drop(app);
            }
            .instrument(span),
        );
    })
    .await;
}

async fn accept_inbound(
    listener: TcpListener,
    inbound: Arc<Inbound>,
    ctx: Arc<ConnCtx>,
    shutdown: CancellationToken,
) {
    let spawn_ctx = ctx.clone();
    let config = inbound.config.clone();
    let limit = Limit {
        ctx: &ctx,
        direction: Direction::Inbound,
        name: &config.name,
        max_connections: config.max_connections,
    };
    accept_loop(listener, shutdown, limit, move |mut tcp, addr, permit| {
        let inbound = inbound.clone();
        let ctx = spawn_ctx.clone();
        let name = inbound.config.name.clone();
        let span = tracing::info_span!("inbound", listener = %name, client = %addr);
        ctx.tracker.clone().spawn(
            async move {
                let _active = ctx.metrics.open(Direction::Inbound, &name);
                let mut peer: Option<InboundPeer> = None;
                let result = tokio::select! {
                    r = inbound.handle(&mut tcp, &mut peer) => Some(r),
                    () = ctx.abort.cancelled() => None,
                };
                let (outcome, stats) = match result {
                    Some(Ok(stats)) => {
                        tracing::debug!(?stats, "connection closed");
                        ("ok", Some(stats))
                    }
                    Some(Err(e)) => {
                        log_failure(e.label(), &e);
                        (e.label(), e.relayed())
                    }
                    None => ("drain_timeout", None),
                };
                if let Some(s) = stats {
                    // `pump(tls, app)`: the peer is the pump's "client" side here.
                    let (to_peer, from_peer) = (s.upstream_to_client, s.client_to_upstream);
                    ctx.metrics
                        .bytes(Direction::Inbound, &name, to_peer, from_peer);
                }
                let (client, origin) = match peer {
                    Some(p) => (Some(p.client), p.origin),
                    None => (None, None),
                };
                // The slot is free before the event announces the end.
                drop(permit);
                ctx.finish(Direction::Inbound, &name, outcome, client, origin);
                // Closed only now: the metric and event above precede the peer's EOF.
                drop(tcp);
            }
            .instrument(span),
        );
    })
    .await;
}

/// Refusals are what the sidecar is for (warn); ordinary ends of a relay are debug.
fn log_failure(label: &'static str, err: &dyn std::error::Error) {
    let chain = display_chain(err);
    if matches!(label, "idle_timeout" | "relay_error") {
        tracing::debug!(outcome = label, error = %chain, "connection ended");
    } else {
        tracing::warn!(outcome = label, error = %chain, "connection refused");
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
