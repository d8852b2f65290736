//! Prometheus metrics of the sidecar (prometheus-client), served on the admin `/metrics`.
//!
//! Invariant: label values come from config names and fixed outcome labels only, never from
//! peer input, so cardinality is bounded by the config.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::telemetry::metrics::{Live, ResultLabels};

/// Which way a listener carries traffic.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Direction {
    Outbound,
    Inbound,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConnectionLabels {
    direction: &'static str,
    listener: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabels {
    direction: &'static str,
    listener: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BytesLabels {
    direction: &'static str,
    listener: String,
    /// `to_peer` (app → mTLS side) or `from_peer`.
    flow: &'static str,
}

/// All sidecar metric families; cheap to share behind an `Arc`.
#[derive(Debug, Default)]
pub struct SidecarMetrics {
    connections: Family<ConnectionLabels, Counter>,
    active: Family<ListenerLabels, Gauge>,
    bytes: Family<BytesLabels, Counter>,
    reloads: Family<ResultLabels, Counter>,
    identity_generation: Gauge,
}

// === impl SidecarMetrics ===

impl SidecarMetrics {
    /// Creates the families and registers them under `fedgate_sidecar_*`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        let sub = registry.sub_registry_with_prefix("fedgate_sidecar");
        sub.register(
            "connections",
            "Connections handled, by listener and outcome (ok or the refusal/failure reason)",
            m.connections.clone(),
        );
        sub.register(
            "active_connections",
            "Connections currently open, by listener",
            m.active.clone(),
        );
        sub.register(
            "bytes",
            "Bytes relayed, by listener and flow (to_peer, from_peer)",
            m.bytes.clone(),
        );
        sub.register(
            "identity_reloads",
            "Reloads of the SVID and bundle files, by result (ok, failed)",
            m.reloads.clone(),
        );
        sub.register(
            "identity_generation",
            "Generation of the TLS configs in force (0 = as loaded at start)",
            m.identity_generation.clone(),
        );
        m
    }

    pub fn connection_done(&self, direction: Direction, listener: &str, outcome: &'static str) {
        self.connections
            .get_or_create(&ConnectionLabels {
                direction: direction.as_str(),
                listener: listener.to_owned(),
                outcome,
            })
            .inc();
    }

    /// Counts a connection as open until the returned guard is dropped.
    pub fn open(&self, direction: Direction, listener: &str) -> Live {
        let direction = direction.as_str();
        let listener = listener.to_owned();
        Live::new(
            self.active
                .get_or_create(&ListenerLabels {
                    direction,
                    listener,
                })
                .clone(),
        )
    }

    pub fn bytes(&self, direction: Direction, listener: &str, to_peer: u64, from_peer: u64) {
        for (flow, n) in [("to_peer", to_peer), ("from_peer", from_peer)] {
            self.bytes
                .get_or_create(&BytesLabels {
                    direction: direction.as_str(),
                    listener: listener.to_owned(),
                    flow,
                })
                .inc_by(n);
        }
    }

    pub fn reload(&self, ok: bool, generation: Option<u64>) {
        self.reloads.get_or_create(&ResultLabels::of(ok)).inc();
        if let Some(g) = generation {
            self.identity_generation
                .set(i64::try_from(g).unwrap_or(i64::MAX));
        }
    }
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Outbound => "outbound",
            Self::Inbound => "inbound",
        }
    }
}
