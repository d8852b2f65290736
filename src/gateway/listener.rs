//! Accept loops and the hot-swappable per-listener state.
//!
//! Invariants: a connection reads the listener state once, at accept, so a reload affects only
//! new connections; at most `max_connections` connections hold a permit of the state's
//! semaphore (a reload that changes the limit starts a fresh semaphore, so connections from
//! before the reload count against the old limit only); accept errors back off and never end
//! the loop; every connection task is spawned on the shared `TaskTracker`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use fedgate_dataplane::accept::Acceptor;
use prometheus_client::metrics::gauge::Gauge;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{ListenerConfig, ListenerKind, Upstream};
use crate::gateway::passthrough;
use crate::telemetry::Metrics;
use fedgate_dataplane::route::{RouteError, RouteTable};

/// Everything a new connection needs from configuration; replaced whole on reload.
#[derive(Debug)]
pub struct ListenerState {
    pub config: ListenerConfig,
    routes: RouteTable<Arc<RouteTarget>>,
    limit: Arc<Semaphore>,
}

/// A route's upstreams with its round-robin cursor.
#[derive(Debug)]
pub struct RouteTarget {
    pub name: String,
    pub upstreams: Vec<Upstream>,
    next: AtomicUsize,
}

/// One listener's accept loop, ready to `run` (cloned once per data-plane worker).
#[derive(Clone)]
pub struct Listener {
    name: Arc<str>,
    state: watch::Receiver<Arc<ListenerState>>,
    metrics: Metrics,
    /// Every connection task is spawned here; `App::run` closes and waits on it to drain.
    tracker: TaskTracker,
    /// Cancelled when the drain deadline passes: live connections stop splicing and close.
    hard_stop: CancellationToken,
    /// The connection handler of a bridge listener (`None` for passthrough).
    bridge: Option<crate::bridge::runtime::BridgeHandler>,
}

/// What a connection task carries besides its socket.
#[derive(Clone)]
pub(crate) struct ConnContext {
    pub listener: Arc<str>,
    pub metrics: Metrics,
    pub hard_stop: CancellationToken,
    pub active: Gauge,
}

// === impl ListenerState ===

impl ListenerState {
    /// Builds the state for `config`, keeping `previous`'s connection semaphore when the
    /// limit did not change (so live connections keep counting).
    pub fn new(
        config: ListenerConfig,
        previous: Option<&ListenerState>,
    ) -> Result<ListenerState, RouteError> {
        let mut routes = RouteTable::new();
        for r in &config.routes {
            let target = Arc::new(RouteTarget {
                name: r.name.clone(),
                upstreams: r.upstreams.clone(),
                next: AtomicUsize::new(0),
            });
            if config.default_route.as_deref() == Some(r.name.as_str()) {
                routes.set_default(target.clone());
            }
            routes.insert(&r.sni, target)?;
        }
        let limit = match previous {
            Some(p) if p.config.limits.max_connections == config.limits.max_connections => {
                p.limit.clone()
            }
            _ => Arc::new(Semaphore::new(config.limits.max_connections)),
        };
        Ok(ListenerState {
            config,
            routes,
            limit,
        })
    }

    pub fn kind(&self) -> ListenerKind {
        self.config.kind
    }

    /// The route for `server_name` (exact, then wildcard, then the default route).
    pub fn route(&self, server_name: Option<&str>) -> Option<&Arc<RouteTarget>> {
        self.routes.lookup(server_name)
    }

    /// Connections currently holding a permit of this state's limit.
    pub fn connections_in_use(&self) -> usize {
        self.config
            .limits
            .max_connections
            .saturating_sub(self.limit.available_permits())
    }
}

// === impl RouteTarget ===

impl RouteTarget {
    /// Upstreams in the order to try them: round-robin start, then the rest in order.
    pub fn attempt_order(&self) -> impl Iterator<Item = &Upstream> {
        let n = self.upstreams.len();
        let start = if n == 0 {
            0
        } else {
            self.next.fetch_add(1, Ordering::Relaxed) % n
        };
        (0..n).map(move |i| &self.upstreams[(start + i) % n])
    }
}

// === impl Listener ===

impl Listener {
    pub fn new(
        name: &str,
        state: watch::Receiver<Arc<ListenerState>>,
        metrics: Metrics,
        tracker: TaskTracker,
        hard_stop: CancellationToken,
    ) -> Listener {
        Listener {
            name: Arc::from(name),
            state,
            metrics,
            tracker,
            hard_stop,
            bridge: None,
        }
    }

    /// Serves this listener's connections with `handler` (bridge listener kinds).
    pub fn set_bridge(&mut self, handler: crate::bridge::runtime::BridgeHandler) {
        self.bridge = Some(handler);
    }

    /// Accepts until `shutdown` is cancelled, then drops the socket (new connections are
    /// refused by the kernel) and returns; connection tasks live on in the tracker.
    pub async fn run(self, listener: TcpListener, shutdown: CancellationToken) {
        let cx = ConnContext {
            listener: self.name.clone(),
            active: self.metrics.active(&self.name),
            metrics: self.metrics,
            hard_stop: self.hard_stop,
        };
        let mut acceptor = Acceptor::new(listener, &*self.name);
        while let Some((stream, peer)) = acceptor.next(&shutdown).await {
            let state = self.state.borrow().clone();
            let Ok(permit) = state.limit.clone().try_acquire_owned() else {
                tracing::info!(listener = %self.name, %peer, reason = "over_limit", "connection refused");
                cx.metrics
                    .reject(&self.name, passthrough::Reject::OverLimit.label());
                drop(stream);
                continue;
            };
            let cx = cx.clone();
            let bridge = self.bridge.clone();
            self.tracker.spawn(async move {
                cx.active.inc();
                let serve = async {
                    match (state.kind(), bridge) {
                        (ListenerKind::Passthrough, _) => {
                            passthrough::serve(stream, peer, &state, &cx).await
                        }
                        // Boxed: a bridge connection's future holds two rustls connections
                        // and their handshake state (kilobytes). Inline, it would size every
                        // connection task of every listener, so each idle passthrough
                        // connection would carry it too (bench/idle_rss.sh, docs/benchmarks.md).
                        (ListenerKind::BridgeEgress | ListenerKind::BridgeIngress, Some(b)) => {
                            Box::pin(b.serve(stream)).await
                        }
                        // `App::build` attaches a handler to every bridge listener; refuse if not.
                        (ListenerKind::BridgeEgress | ListenerKind::BridgeIngress, None) => {
                            tracing::error!(
                                listener = %cx.listener, %peer,
                                "bridge listener has no handler; closing"
                            );
                            drop(stream);
                        }
                    }
                };
                // Past the drain deadline every phase ends; `serve` is polled first so a
                // relayed connection still records its `drained` outcome.
                tokio::select! {
                    biased;
                    () = serve => {}
                    () = cx.hard_stop.cancelled() => {}
                }
                cx.active.dec();
                drop(permit);
            });
        }
        tracing::info!(listener = %self.name, "listener stopped accepting");
    }
}

/// Binds `addr` with `SO_REUSEADDR` (quick restarts) and a deep accept backlog.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ListenerLimits, RouteConfig};

    fn config(
        max_connections: usize,
        routes: &[(&str, &[&str])],
        default_route: Option<&str>,
    ) -> ListenerConfig {
        ListenerConfig {
            name: "egress".into(),
            listen: "127.0.0.1:0".parse().unwrap(),
            kind: ListenerKind::Passthrough,
            limits: ListenerLimits {
                max_connections,
                ..ListenerLimits::DEFAULT
            },
            default_route: default_route.map(String::from),
            splice: false,
            routes: routes
                .iter()
                .map(|(sni, ups)| RouteConfig {
                    name: sni.to_string(),
                    sni: sni.to_string(),
                    upstreams: ups.iter().map(|u| Upstream::parse(u).unwrap()).collect(),
                    bridge: None,
                })
                .collect(),
            bridge: None,
        }
    }

    #[test]
    fn round_robin_starts_at_the_next_upstream_and_tries_all() {
        let state = ListenerState::new(
            config(1, &[("*.b.test", &["a:1", "b:1", "c:1"])], None),
            None,
        )
        .unwrap();
        let route = state.route(Some("x.b.test")).unwrap();
        let order = |r: &RouteTarget| {
            r.attempt_order()
                .map(|u| u.host.clone())
                .collect::<Vec<_>>()
                .join(",")
        };
        assert_eq!(order(route), "a,b,c");
        assert_eq!(order(route), "b,c,a");
        assert_eq!(order(route), "c,a,b");
        assert_eq!(order(route), "a,b,c");
    }

    #[test]
    fn default_route_and_lookup() {
        let state = ListenerState::new(
            config(
                1,
                &[("api.b.test", &["a:1"]), ("fallback.test", &["f:1"])],
                Some("fallback.test"),
            ),
            None,
        )
        .unwrap();
        assert_eq!(state.route(Some("api.b.test")).unwrap().name, "api.b.test");
        assert_eq!(
            state.route(Some("other.test")).unwrap().name,
            "fallback.test"
        );
        assert_eq!(state.route(None).unwrap().name, "fallback.test");
        let strict =
            ListenerState::new(config(1, &[("api.b.test", &["a:1"])], None), None).unwrap();
        assert!(strict.route(None).is_none() && strict.route(Some("x.test")).is_none());
    }

    #[test]
    fn reload_keeps_the_semaphore_unless_the_limit_changes() {
        let first = ListenerState::new(config(2, &[], None), None).unwrap();
        let _held = first.limit.clone().try_acquire_owned().unwrap();
        let same = ListenerState::new(config(2, &[], None), Some(&first)).unwrap();
        assert_eq!(same.connections_in_use(), 1, "live connections still count");
        let bigger = ListenerState::new(config(5, &[], None), Some(&first)).unwrap();
        assert_eq!(
            bigger.connections_in_use(),
            0,
            "a new limit starts a fresh count"
        );
    }
}
