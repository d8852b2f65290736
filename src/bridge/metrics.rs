//! Prometheus metrics of the bridge listeners.
//!
//! Invariant: every refusal increments exactly one `fedgate_bridge_rejects_total` sample (by
//! reason) plus, where it applies, the more specific family (handshakes, denials by rule,
//! PROXY header errors, origins refused). Families are cheap `Arc` clones: the handlers hold a
//! `BridgeMetrics` and the registry holds the same families.

use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::{Registry, Unit};

/// The bridge's metric families.
#[derive(Clone, Debug, Default)]
pub struct BridgeMetrics {
    /// TLS handshakes by listener, side (downstream/upstream) and outcome (ok or an error label).
    pub handshakes: Family<HandshakeLabels, Counter>,
    /// Authorization denials by listener and rule (`Denial::label`).
    pub denials: Family<RuleLabels, Counter>,
    /// Origin IDs an ingress refused (unparsable, or asserted by a peer not allowed to).
    pub origins_refused: Family<ListenerLabels, Counter>,
    /// PROXY v2 header errors by listener and reason (`ProxyError::label`).
    pub proxy_header_errors: Family<ReasonLabels, Counter>,
    /// Every refused or failed connection by listener and reason (`BridgeReject::label`).
    pub rejects: Family<ReasonLabels, Counter>,
    /// Connections authorized and forwarded (pumping started), by listener and route.
    pub forwarded: Family<RouteLabels, Counter>,
    /// Bytes pumped, by listener and direction (`downstream_to_upstream` or the reverse).
    pub bytes: Family<DirectionLabels, Counter>,
    /// Seconds until the bridge SVID's notAfter, computed at scrape time.
    pub svid_expiry: SvidExpiry,
    /// Multiplexed transport (`transport = "mux"`): tunnels open now, by listener.
    pub mux_tunnels_open: Family<ListenerLabels, Gauge>,
    /// Tunnels opened (egress) or accepted (ingress), by listener.
    pub mux_tunnels_opened: Family<ListenerLabels, Counter>,
    /// Streams open now, by listener.
    pub mux_streams_open: Family<ListenerLabels, Gauge>,
    /// Streams opened (egress) or accepted (ingress), by listener.
    pub mux_streams: Family<ListenerLabels, Counter>,
    /// Streams that ended with a reset or an error after they were forwarded, by listener.
    pub mux_stream_resets: Family<ListenerLabels, Counter>,
    /// Streams refused before forwarding, by listener and reason (`BridgeReject::label`).
    pub mux_stream_refusals: Family<ReasonLabels, Counter>,
    /// The last refusals and their totals by reason, for `/status` (shared with the gateway's
    /// `Metrics::denials` when built by the app; see [`BridgeMetrics::with_denials`]).
    pub recent: crate::telemetry::Denials,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HandshakeLabels {
    pub listener: String,
    pub side: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabels {
    pub listener: String,
    pub rule: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub listener: String,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    pub listener: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabels {
    pub listener: String,
    pub direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub listener: String,
    pub route: String,
}

/// The bridge SVID's notAfter, shared between the identity reloader (writer) and the registry
/// (reader at scrape time).
#[derive(Clone, Debug, Default)]
pub struct SvidExpiry {
    current: Arc<RwLock<Option<(String, SystemTime)>>>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SvidLabels {
    spiffe_id: String,
}

// === impl BridgeMetrics ===

impl BridgeMetrics {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records refusals in `denials` (a ring shared with the rest of the process).
    pub fn with_denials(mut self, denials: crate::telemetry::Denials) -> Self {
        self.recent = denials;
        self
    }

    /// Registers every family (and the expiry collector) under `fedgate_bridge_*`. Call once per
    /// registry.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("fedgate_bridge");
        r.register(
            "handshakes",
            "Bridge TLS handshakes by listener, side and outcome",
            self.handshakes.clone(),
        );
        r.register(
            "authorization_denials",
            "Bridge authorization denials by listener and rule",
            self.denials.clone(),
        );
        r.register(
            "origins_refused",
            "Origin SPIFFE IDs refused by a bridge ingress",
            self.origins_refused.clone(),
        );
        r.register(
            "proxy_header_errors",
            "PROXY v2 header errors at a bridge ingress by reason",
            self.proxy_header_errors.clone(),
        );
        r.register(
            "rejects",
            "Bridged connections refused or failed, by listener and reason",
            self.rejects.clone(),
        );
        r.register(
            "forwarded",
            "Bridged connections authorized and forwarded, by listener and route",
            self.forwarded.clone(),
        );
        r.register(
            "bytes",
            "Bytes pumped through bridged connections, by listener and direction",
            self.bytes.clone(),
        );
        r.register(
            "mux_tunnels_open",
            "Multiplexed bridge tunnels open now, by listener",
            self.mux_tunnels_open.clone(),
        );
        r.register(
            "mux_tunnels_opened",
            "Multiplexed bridge tunnels opened (egress) or accepted (ingress), by listener",
            self.mux_tunnels_opened.clone(),
        );
        r.register(
            "mux_streams_open",
            "Streams open now on multiplexed bridge tunnels, by listener",
            self.mux_streams_open.clone(),
        );
        r.register(
            "mux_streams",
            "Streams opened (egress) or accepted (ingress) on multiplexed bridge tunnels",
            self.mux_streams.clone(),
        );
        r.register(
            "mux_stream_resets",
            "Forwarded streams that ended with a reset or an error, by listener",
            self.mux_stream_resets.clone(),
        );
        r.register(
            "mux_stream_refusals",
            "Streams refused before forwarding, by listener and reason",
            self.mux_stream_refusals.clone(),
        );
        r.register_collector(Box::new(self.svid_expiry.clone()));
    }

    pub fn handshake(&self, listener: &str, side: super::Side, outcome: &'static str) {
        self.handshakes
            .get_or_create(&HandshakeLabels {
                listener: listener.to_owned(),
                side: side.label(),
                outcome,
            })
            .inc();
    }

    /// Counts a refusal under its reason and, where it applies, in the specific family.
    pub fn reject(&self, listener: &str, reject: &super::BridgeReject) {
        use super::BridgeReject as R;
        self.recent.record(listener, reject.label());
        self.rejects
            .get_or_create(&ReasonLabels {
                listener: listener.to_owned(),
                reason: reject.label(),
            })
            .inc();
        match reject {
            R::Denied(d) => {
                self.denials
                    .get_or_create(&RuleLabels {
                        listener: listener.to_owned(),
                        rule: d.label(),
                    })
                    .inc();
                if d.refuses_origin() {
                    self.origin_refused(listener);
                }
            }
            R::OriginInvalid { .. } | R::RelayNotNegotiated { .. } => self.origin_refused(listener),
            R::ProxyHeader(e) => {
                self.proxy_header_errors
                    .get_or_create(&ReasonLabels {
                        listener: listener.to_owned(),
                        reason: e.label(),
                    })
                    .inc();
            }
            _ => {}
        }
    }

    pub fn forwarded(&self, listener: &str, route: &str) {
        self.forwarded
            .get_or_create(&RouteLabels {
                listener: listener.to_owned(),
                route: route.to_owned(),
            })
            .inc();
    }

    pub fn bytes(&self, listener: &str, stats: fedgate_dataplane::pump::PumpStats) {
        for (direction, n) in [
            ("downstream_to_upstream", stats.client_to_upstream),
            ("upstream_to_downstream", stats.upstream_to_client),
        ] {
            self.bytes
                .get_or_create(&DirectionLabels {
                    listener: listener.to_owned(),
                    direction,
                })
                .inc_by(n);
        }
    }

    /// A stream refused before forwarding, by reason (the refusal itself is counted by
    /// [`BridgeMetrics::reject`], like a refused connection).
    pub fn mux_refused(&self, listener: &str, reject: &super::BridgeReject) {
        self.mux_stream_refusals
            .get_or_create(&ReasonLabels {
                listener: listener.to_owned(),
                reason: reject.label(),
            })
            .inc();
    }

    /// A tunnel opened; the guard counts it open until dropped.
    pub fn mux_tunnel(&self, listener: &str) -> OpenGuard {
        let labels = ListenerLabels {
            listener: listener.to_owned(),
        };
        self.mux_tunnels_opened.get_or_create(&labels).inc();
        OpenGuard::new(self.mux_tunnels_open.get_or_create(&labels).clone())
    }

    /// A stream opened; the guard counts it open until dropped.
    pub fn mux_stream(&self, listener: &str) -> OpenGuard {
        let labels = ListenerLabels {
            listener: listener.to_owned(),
        };
        self.mux_streams.get_or_create(&labels).inc();
        OpenGuard::new(self.mux_streams_open.get_or_create(&labels).clone())
    }

    /// A forwarded stream ended with a reset or error.
    pub fn mux_reset(&self, listener: &str) {
        self.mux_stream_resets
            .get_or_create(&ListenerLabels {
                listener: listener.to_owned(),
            })
            .inc();
    }

    fn origin_refused(&self, listener: &str) {
        self.origins_refused
            .get_or_create(&ListenerLabels {
                listener: listener.to_owned(),
            })
            .inc();
    }
}

/// Holds one unit of an "open now" gauge; gives it back when dropped.
#[derive(Debug)]
pub struct OpenGuard(Gauge);

impl OpenGuard {
    fn new(gauge: Gauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

// === impl SvidExpiry ===

impl SvidExpiry {
    /// Records the SVID now in force (`None` clears the gauge).
    pub fn set(&self, svid: Option<(String, SystemTime)>) {
        match self.current.write() {
            Ok(mut g) => *g = svid,
            Err(poisoned) => *poisoned.into_inner() = svid,
        }
    }

    /// Seconds from `now` until notAfter (negative once expired).
    pub fn seconds_left(&self, now: SystemTime) -> Option<f64> {
        let current = match self.current.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        current.map(|(_, not_after)| match not_after.duration_since(now) {
            Ok(left) => left.as_secs_f64(),
            Err(past) => -past.duration().as_secs_f64(),
        })
    }
}

impl Collector for SvidExpiry {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let current = match self.current.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        let Some((id, _)) = current else {
            return Ok(());
        };
        let Some(left) = self.seconds_left(SystemTime::now()) else {
            return Ok(());
        };
        let gauge = ConstGauge::new(left);
        let mut metric = encoder.encode_descriptor(
            "svid_expiry",
            "Seconds until the bridge SVID's notAfter (negative once expired)",
            Some(&Unit::Seconds),
            gauge.metric_type(),
        )?;
        let labels = SvidLabels { spiffe_id: id };
        gauge.encode(metric.encode_family(&labels)?)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::telemetry::metrics::encode;

    #[test]
    fn expiry_gauge_counts_down_and_goes_negative() {
        let e = SvidExpiry::default();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        assert_eq!(e.seconds_left(now), None);
        e.set(Some((
            "spiffe://bridge.test/gw".into(),
            now + Duration::from_secs(60),
        )));
        assert_eq!(e.seconds_left(now), Some(60.0));
        assert_eq!(e.seconds_left(now + Duration::from_secs(90)), Some(-30.0));
    }

    #[test]
    fn registered_families_appear_in_the_exposition() {
        let m = BridgeMetrics::new();
        let mut registry = Registry::default();
        m.register(&mut registry);
        m.handshake("bridge-in", super::super::Side::Downstream, "ok");
        m.svid_expiry.set(Some((
            "spiffe://bridge.test/gw".into(),
            SystemTime::now() + Duration::from_secs(3600),
        )));
        let text = encode(&registry);
        assert!(
            text.contains(
                "fedgate_bridge_handshakes_total{listener=\"bridge-in\",side=\"downstream\",outcome=\"ok\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "fedgate_bridge_svid_expiry_seconds{spiffe_id=\"spiffe://bridge.test/gw\"}"
            ),
            "{text}"
        );
    }
}
