//! The per-listener state every gateway connection is served with, and what a connection
//! task carries besides its socket. Shared by the accept loop ([`super::listener`]) and the
//! connection handlers ([`super::passthrough`], the bridge), which import it from here only.
//!
//! Invariants: a [`ListenerState`] is immutable and replaced whole on reload (through the
//! listener's `watch` channel); a connection reads it once, at accept, so a reload affects
//! only new connections; at most `max_connections` connections hold a permit of the state's
//! semaphore (a reload that changes the limit starts a fresh semaphore, so connections from
//! before the reload count against the old limit only).

use std::sync::{Arc, OnceLock};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::config::{ListenerConfig, ListenerKind, ListenerMode};
use crate::telemetry::metrics::{BytesLabels, ConnectionLabels};
use crate::telemetry::Metrics;
use fedgate_dataplane::route::{RouteError, RouteTable};
use fedgate_dataplane::upstreams::Upstreams;

/// Everything a new connection needs from configuration; replaced whole on reload.
#[derive(Debug)]
pub struct ListenerState {
    pub config: ListenerConfig,
    routes: RouteTable<Arc<RouteTarget>>,
    pub(crate) limit: Arc<Semaphore>,
}

/// A route's upstreams, tried round-robin.
#[derive(Debug)]
pub struct RouteTarget {
    pub name: String,
    pub upstreams: Upstreams,
    /// This route's metric handles (passthrough).
    pub(crate) counters: RouteCounters,
}

/// The metric handles of one route, each looked up in its family at its first use and kept:
/// later connections count without building label strings or taking the families' locks
/// (which every worker shares). A handle is created at the first connection that needs it, so
/// `/metrics` shows the same series as looking them up per connection would.
#[derive(Debug, Default)]
pub(crate) struct RouteCounters {
    live: OnceLock<Gauge>,
    /// Bytes `in` (client → upstream) and `out`.
    bytes: [OnceLock<Counter>; 2],
    /// Finished connections by outcome index (the passthrough handler's `Finish`).
    finished: [OnceLock<Counter>; OUTCOMES],
}

/// How many outcomes a routed connection can end with.
pub(crate) const OUTCOMES: usize = 6;

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
        // The table was built and checked with the config; only its values change here.
        let targets: Vec<Arc<RouteTarget>> = config
            .routes()
            .iter()
            .map(|r| {
                Arc::new(RouteTarget {
                    name: r.name.to_owned(),
                    upstreams: Upstreams::new(r.upstreams.to_vec()),
                    counters: RouteCounters::default(),
                })
            })
            .collect();
        let routes = config.route_table.map(|&i| targets[i].clone());
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
        self.config.kind()
    }

    /// Passthrough listeners: move bulk data with splice(2).
    pub fn splice(&self) -> bool {
        matches!(
            self.config.mode,
            ListenerMode::Passthrough { splice: true, .. }
        )
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
    /// Connections of this route currently relayed (`fedgate_route_active_connections`).
    pub(crate) fn live(&self, cx: &ConnContext) -> &Gauge {
        self.counters
            .live
            .get_or_init(|| cx.metrics.route_active(&cx.listener, &self.name))
    }

    /// Bytes relayed from the client to the upstream (`direction="in"`).
    pub(crate) fn bytes_in(&self, cx: &ConnContext) -> &Counter {
        self.bytes(cx, 0, "in")
    }

    /// Bytes relayed from the upstream to the client (`direction="out"`).
    pub(crate) fn bytes_out(&self, cx: &ConnContext) -> &Counter {
        self.bytes(cx, 1, "out")
    }

    fn bytes(&self, cx: &ConnContext, slot: usize, direction: &'static str) -> &Counter {
        self.counters.bytes[slot].get_or_init(|| {
            cx.metrics
                .bytes
                .get_or_create(&BytesLabels {
                    listener: cx.listener.to_string(),
                    route: self.name.clone(),
                    direction,
                })
                .clone()
        })
    }

    /// Finished connections with outcome number `index` (below [`OUTCOMES`]) named `label`.
    pub(crate) fn finished(&self, cx: &ConnContext, index: usize, label: &'static str) -> &Counter {
        self.counters.finished[index.min(OUTCOMES - 1)].get_or_init(|| {
            cx.metrics
                .connections
                .get_or_create(&ConnectionLabels {
                    listener: cx.listener.to_string(),
                    route: self.name.clone(),
                    outcome: label,
                })
                .clone()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse_upstream, ListenerLimits, RouteConfig};

    fn config(
        max_connections: usize,
        routes: &[(&str, &[&str])],
        default_route: Option<&str>,
    ) -> ListenerConfig {
        let routes: Vec<RouteConfig> = routes
            .iter()
            .map(|(sni, ups)| RouteConfig {
                name: sni.to_string(),
                sni: sni.to_string(),
                upstreams: ups.iter().map(|u| parse_upstream(u).unwrap()).collect(),
                bridge: (),
            })
            .collect();
        ListenerConfig {
            name: "egress".into(),
            listen: "127.0.0.1:0".parse().unwrap(),
            limits: ListenerLimits {
                max_connections,
                ..ListenerLimits::DEFAULT
            },
            default_route: default_route.map(String::from),
            route_table: crate::config::listener::route_table(&routes, default_route).unwrap(),
            mode: ListenerMode::Passthrough {
                splice: false,
                routes,
            },
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
            r.upstreams
                .rotation()
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
