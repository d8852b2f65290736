//! The gateway's Prometheus metrics (one struct of prometheus-client families with typed
//! labels) and the one `/metrics` encoder every admin route uses ([`encode`], [`CONTENT_TYPE`]).
//!
//! Invariants: every label value comes from configuration (listener and route names,
//! upstream addresses) or from a fixed vocabulary (`Reject::label`, outcomes), never from
//! the network, so label cardinality is bounded by the config.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The `Content-Type` of every `/metrics` response (OpenMetrics text, which Prometheus reads).
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `registry` in the OpenMetrics text format, ending with `# EOF`. Encoding into a `String`
/// cannot fail; a collector that errors is logged and the text encoded so far returned.
pub(crate) use fedgate_federation::metrics::encode_text as encode;

/// One unit of a live-connection gauge, held while the connection is open and given back on
/// drop (so a connection future dropped mid-way is uncounted too). Used for the gateway's
/// per-route gauge and the sidecar's per-listener one.
#[derive(Debug)]
pub struct Live(Gauge);

impl Live {
    pub fn new(gauge: Gauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// All data-plane and lifecycle metrics. Cheap to clone (families are `Arc`s inside).
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    /// Finished connections that were routed, by how they ended.
    pub connections: Family<ConnectionLabels, Counter>,
    /// Connections closed before routing or connecting, by reason (`Reject::label`).
    pub rejected: Family<RejectLabels, Counter>,
    /// Failed upstream dials (each endpoint tried counts once).
    pub upstream_connect_failures: Family<UpstreamLabels, Counter>,
    /// Bytes spliced, `direction` = `in` (client → upstream) or `out` (upstream → client).
    pub bytes: Family<BytesLabels, Counter>,
    /// Connections currently held open (from accept to close).
    pub active_connections: Family<ListenerLabels, Gauge>,
    /// Passthrough connections currently spliced to an upstream of a route (from the upstream
    /// connect to close).
    pub route_active_connections: Family<RouteLabels, Gauge>,
    /// Configuration reloads by `result` (`ok` / `failed`).
    pub config_reloads: Family<ResultLabels, Counter>,
    /// Connections accepted, by listener and data-plane worker (how `accept` spreads them).
    pub worker_accepted: Family<WorkerLabels, Counter>,
    /// The last refusals and their totals by reason, for `/status` (not exported as metrics;
    /// `rejected` is the exported count).
    pub denials: super::Denials,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnectionLabels {
    pub listener: String,
    pub route: String,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectLabels {
    pub listener: String,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    pub listener: String,
    pub route: String,
    pub upstream: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BytesLabels {
    pub listener: String,
    pub route: String,
    pub direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub listener: String,
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    pub listener: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WorkerLabels {
    pub listener: String,
    /// The worker's index, `0..workers` (bounded by the `workers` setting).
    pub worker: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

impl ResultLabels {
    /// `result="ok"` or `result="failed"` (reload counters: the gateway's, the sidecar's).
    pub fn of(ok: bool) -> Self {
        let result = if ok { "ok" } else { "failed" };
        Self { result }
    }
}

// === impl Metrics ===

impl Metrics {
    /// Creates the families and registers them under the `fedgate_` prefix.
    pub fn register(registry: &mut Registry) -> Metrics {
        let m = Metrics::default();
        let r = registry.sub_registry_with_prefix("fedgate");
        r.register(
            "connections",
            "Routed connections by listener, route and outcome",
            m.connections.clone(),
        );
        r.register(
            "rejected_connections",
            "Connections refused before splicing, by reason",
            m.rejected.clone(),
        );
        r.register(
            "upstream_connect_failures",
            "Failed upstream connection attempts",
            m.upstream_connect_failures.clone(),
        );
        r.register(
            "bytes",
            "Bytes spliced by direction (in: client to upstream, out: upstream to client)",
            m.bytes.clone(),
        );
        r.register(
            "active_connections",
            "Connections currently open",
            m.active_connections.clone(),
        );
        r.register(
            "route_active_connections",
            "Passthrough connections currently open to an upstream, by listener and route",
            m.route_active_connections.clone(),
        );
        r.register(
            "config_reloads",
            "Configuration reloads by result",
            m.config_reloads.clone(),
        );
        r.register(
            "worker_accepted_connections",
            "Connections accepted, by listener and data-plane worker",
            m.worker_accepted.clone(),
        );
        m
    }

    /// Counts a refusal in `rejected` and records it in `denials`.
    pub fn reject(&self, listener: &str, reason: &'static str) {
        self.denials.record(listener, reason);
        self.rejected
            .get_or_create(&RejectLabels {
                listener: listener.to_string(),
                reason,
            })
            .inc();
    }

    pub fn reload(&self, ok: bool) {
        self.config_reloads
            .get_or_create(&ResultLabels::of(ok))
            .inc();
    }

    /// The live-connection gauge of `route` on `listener` (passthrough listeners).
    pub fn route_active(&self, listener: &str, route: &str) -> Gauge {
        self.route_active_connections
            .get_or_create(&RouteLabels {
                listener: listener.to_string(),
                route: route.to_string(),
            })
            .clone()
    }

    /// The accept counter of `worker` on `listener`.
    pub fn worker_accepted(&self, listener: &str, worker: usize) -> Counter {
        self.worker_accepted
            .get_or_create(&WorkerLabels {
                listener: listener.to_string(),
                worker: worker.to_string(),
            })
            .clone()
    }

    pub fn active(&self, listener: &str) -> Gauge {
        self.active_connections
            .get_or_create(&ListenerLabels {
                listener: listener.to_string(),
            })
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_families_with_prefix_and_labels() {
        let mut registry = Registry::default();
        let m = Metrics::register(&mut registry);
        m.reject("egress", "no_sni");
        m.reload(false);
        m.active("egress").inc();
        let text = encode(&registry);
        assert!(
            text.contains(
                "fedgate_rejected_connections_total{listener=\"egress\",reason=\"no_sni\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("fedgate_config_reloads_total{result=\"failed\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("fedgate_active_connections{listener=\"egress\"} 1"),
            "{text}"
        );
    }
}
