//! Federation metrics (Prometheus, via prometheus-client).
//!
//! Invariants:
//! * Every fetch outcome increments exactly one `fedgate_federation_fetches_total` sample,
//!   labelled with the peer trust domain and `result` = `ok`, `not_modified` or the
//!   [`FetchError::reason_label`](crate::endpoint::FetchError::reason_label) of the refusal.
//! * Gauges that depend on the clock (bundle age, seconds until trust loss) are computed at
//!   scrape time from the bundle in force, so they never go stale between polls.
//! * A failed fetch changes only the counter: the gauges keep describing the last-known-good
//!   bundle (threat-model invariant 3).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::bundle::Bundle;
use crate::spiffe_id::TrustDomain;

/// Federation metrics; cheap to clone (all clones share the same series).
#[derive(Clone, Debug, Default)]
pub struct FederationMetrics {
    /// `fedgate_federation_fetches_total{trust_domain, result}`.
    fetches: Family<Vec<(String, String)>, Counter>,
    /// The bundle in force per trust domain, read by the collector at scrape time.
    bundles: Arc<Mutex<BTreeMap<TrustDomain, BundleGauges>>>,
}

#[derive(Clone, Debug)]
struct BundleGauges {
    updated_at: SystemTime,
    expires_at: Option<SystemTime>,
    sequence: Option<u64>,
    authorities: usize,
}

/// Computes one gauge's value from a trust domain's bundle state (`None`: no sample).
type GaugeFn<'a> = Box<dyn Fn(&BundleGauges) -> Option<f64> + 'a>;

#[derive(Debug)]
struct BundleCollector {
    bundles: Arc<Mutex<BTreeMap<TrustDomain, BundleGauges>>>,
}

// === impl FederationMetrics ===

impl FederationMetrics {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers every series under `registry` (prefix `fedgate_federation_`).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "fedgate_federation_fetches",
            "Bundle endpoint fetches by peer trust domain and result (ok or the refusal reason)",
            self.fetches.clone(),
        );
        registry.register_collector(Box::new(BundleCollector {
            bundles: self.bundles.clone(),
        }));
    }

    /// Counts one fetch outcome: `result` is `ok`, `not_modified` or a refusal reason label.
    pub fn record_fetch(&self, td: &TrustDomain, result: &str) {
        self.fetches
            .get_or_create(&vec![
                ("trust_domain".to_owned(), td.to_string()),
                ("result".to_owned(), result.to_owned()),
            ])
            .inc();
    }

    /// Records `bundle` as the one in force for its trust domain since `updated_at`.
    pub fn record_bundle(&self, bundle: &Bundle, updated_at: SystemTime) {
        let gauges = BundleGauges {
            updated_at,
            expires_at: bundle.trust_expires_at(),
            sequence: bundle.sequence(),
            authorities: bundle.x509_authorities().len(),
        };
        self.bundles
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(bundle.trust_domain().clone(), gauges);
    }

    /// The value of the fetch counter (for status pages and tests).
    pub fn fetch_count(&self, td: &TrustDomain, result: &str) -> u64 {
        self.fetches
            .get_or_create(&vec![
                ("trust_domain".to_owned(), td.to_string()),
                ("result".to_owned(), result.to_owned()),
            ])
            .get()
    }
}

/// Encodes `registry` in the Prometheus/OpenMetrics text format.
pub fn encode_text(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail; an error here would mean a broken collector.
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, registry) {
        tracing::error!(error = %e, "cannot encode metrics");
    }
    out
}

// === impl BundleCollector ===

impl Collector for BundleCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let now = SystemTime::now();
        let bundles = self
            .bundles
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let signed_secs = |from: SystemTime, to: SystemTime| -> f64 {
            match to.duration_since(from) {
                Ok(d) => d.as_secs_f64(),
                Err(e) => -e.duration().as_secs_f64(),
            }
        };
        let gauges: [(&str, &str, GaugeFn<'_>); 4] = [
            (
                "fedgate_federation_bundle_age_seconds",
                "Seconds since the bundle in force for the trust domain was fetched or loaded",
                Box::new(|g| Some(signed_secs(g.updated_at, now))),
            ),
            (
                "fedgate_federation_bundle_sequence",
                "spiffe_sequence of the bundle in force (absent when the bundle has none)",
                Box::new(|g| g.sequence.map(|s| s as f64)),
            ),
            (
                "fedgate_federation_trust_loss_seconds",
                "Seconds until the last X.509 authority of the bundle in force expires",
                Box::new(|g| g.expires_at.map(|t| signed_secs(now, t))),
            ),
            (
                "fedgate_federation_bundle_authorities",
                "Number of X.509 authorities in the bundle in force",
                Box::new(|g| Some(g.authorities as f64)),
            ),
        ];
        for (name, help, value) in gauges.iter() {
            let samples: Vec<(Vec<(String, String)>, f64)> = bundles
                .iter()
                .filter_map(|(td, g)| {
                    value(g).map(|v| (vec![("trust_domain".to_owned(), td.to_string())], v))
                })
                .collect();
            if samples.is_empty() {
                continue;
            }
            let mut metric = encoder.encode_descriptor(
                name,
                help,
                None,
                prometheus_client::metrics::MetricType::Gauge,
            )?;
            for (labels, v) in &samples {
                ConstGauge::new(*v).encode(metric.encode_family(labels)?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_is_encoded_with_labels() {
        let m = FederationMetrics::new();
        let mut reg = Registry::default();
        m.register(&mut reg);
        let td = TrustDomain::new("b.test").unwrap();
        m.record_fetch(&td, "ok");
        m.record_fetch(&td, "ok");
        m.record_fetch(&td, "http_status");
        let text = encode_text(&reg);
        assert!(
            text.contains(
                r#"fedgate_federation_fetches_total{trust_domain="b.test",result="ok"} 2"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"result="http_status"} 1"#), "{text}");
        assert_eq!(m.fetch_count(&td, "ok"), 2);
    }

    #[test]
    fn empty_bundle_has_gauges_but_no_trust_loss() {
        let m = FederationMetrics::new();
        let mut reg = Registry::default();
        m.register(&mut reg);
        let td = TrustDomain::new("c.test").unwrap();
        let mut b = Bundle::new(td);
        b.set_sequence(Some(7));
        m.record_bundle(&b, SystemTime::now());
        let text = encode_text(&reg);
        assert!(
            text.contains(r#"fedgate_federation_bundle_sequence{trust_domain="c.test"} 7"#),
            "{text}"
        );
        assert!(
            text.contains(r#"fedgate_federation_bundle_authorities{trust_domain="c.test"} 0"#),
            "{text}"
        );
        assert!(
            !text.contains("fedgate_federation_trust_loss_seconds{"),
            "{text}"
        );
    }
}
