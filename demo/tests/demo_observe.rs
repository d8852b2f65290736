//! What `fedgate demo` reads from the running system (src/demo/observe.rs): gateway `/status`
//! peers, SPIFFE bundle maps, Prometheus samples and refusal log lines.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use fedgate_demo::observe::{
    map_entry, metric_value, peer_view, refusal_cause, refusal_label, PeerView,
};
use serde_json::json;

#[test]
fn peer_view_reads_a_status_peer_list() {
    let status = json!({
        "trust_domain": "cluster-a.demo",
        "peers": [
            {"trust_domain": "other.demo", "sequence": 9},
            {
                "trust_domain": "cluster-b.demo",
                "url": "https://127.0.0.1:1/",
                "sequence": 18446744073709551615u64,
                "last_success": "2026-11-23T11:00:00Z",
                "last_error": "connect: refused",
                "bundle_age": 2.5,
                "time_until_trust_loss": 3600.0,
                "authorities": 2
            }
        ]
    });
    assert_eq!(
        peer_view(&status, "cluster-b.demo"),
        Some(PeerView {
            sequence: Some(u64::MAX),
            last_success: Some("2026-11-23T11:00:00Z".into()),
            last_error: Some("connect: refused".into()),
            bundle_age: Some(2.5),
            time_until_trust_loss: Some(3600.0),
            authorities: Some(2),
        })
    );
    assert_eq!(peer_view(&status, "missing.demo"), None);
    assert_eq!(peer_view(&json!({"peers": 3}), "cluster-b.demo"), None);
    assert_eq!(peer_view(&json!({}), "cluster-b.demo"), None);
}

#[test]
fn peer_view_reads_a_status_peer_map_and_nulls() {
    let status = json!({"peers": {"cluster-b.demo": {"sequence": null, "last_error": null}}});
    assert_eq!(
        peer_view(&status, "cluster-b.demo"),
        Some(PeerView::default())
    );
}

#[test]
fn map_entry_counts_x509_authorities_under_either_key_form() {
    let bundle = json!({
        "keys": [
            {"use": "x509-svid", "kty": "EC"},
            {"use": "x509-svid", "kty": "EC"},
            {"use": "jwt-svid", "kty": "EC"}
        ],
        "spiffe_sequence": 7
    });
    let map = json!({"trust_domains": {"cluster-b.demo": bundle.clone()}});
    assert_eq!(map_entry(&map, "cluster-b.demo"), Some((Some(7), 2)));
    let map = json!({"spiffe://cluster-b.demo": bundle});
    assert_eq!(map_entry(&map, "cluster-b.demo"), Some((Some(7), 2)));
    assert_eq!(map_entry(&map, "cluster-a.demo"), None);
    assert_eq!(
        map_entry(&json!({"cluster-b.demo": {}}), "cluster-b.demo"),
        None
    );
}

#[test]
fn metric_value_finds_the_unlabelled_sample() {
    let text = "# HELP fedgate_sidecar_identity_generation Generation\n\
                # TYPE fedgate_sidecar_identity_generation gauge\n\
                fedgate_sidecar_identity_generation_total 9\n\
                fedgate_sidecar_identity_generation 3\n\
                # EOF\n";
    assert_eq!(
        metric_value(text, "fedgate_sidecar_identity_generation"),
        Some(3.0)
    );
    assert_eq!(metric_value(text, "absent"), None);
    assert_eq!(metric_value("x notanumber\n", "x"), None);
}

#[test]
fn refusal_label_reads_human_and_json_logs() {
    let human = "2026-11-23T11:04:19Z  WARN fedgate::bridge: bridged connection refused \
                 listener=\"bridge-egress\" reason=\"caller_denied\" error=authorization denied";
    assert_eq!(refusal_label(human).as_deref(), Some("caller_denied"));
    let sidecar = "WARN inbound{listener=echo}: fedgate::sidecar: connection refused \
                   outcome=\"client_not_allowed\" error=client is not in the allow list";
    assert_eq!(
        refusal_label(sidecar).as_deref(),
        Some("client_not_allowed")
    );
    let json = r#"{"level":"WARN","fields":{"message":"connection refused","reason":"no_route"}}"#;
    assert_eq!(refusal_label(json).as_deref(), Some("no_route"));
    assert_eq!(
        refusal_label("connection denied without a label").as_deref(),
        Some("refused")
    );
    assert_eq!(
        refusal_label("INFO connection closed outcome=\"closed\""),
        None
    );
}

#[test]
fn refusal_cause_names_the_certificate_problem() {
    let no_bundle = "WARN fedgate::sidecar: connection refused outcome=\"handshake_failed\" \
                     error=TLS handshake failed: invalid peer certificate: \
                     Other(OtherError(NoBundleForTrustDomain(TrustDomain(\"cluster-c.demo\"))))";
    assert_eq!(
        refusal_cause(no_bundle).as_deref(),
        Some("NoBundleForTrustDomain(cluster-c.demo)")
    );
    let unknown = "WARN fedgate::bridge: bridged connection refused reason=\"handshake_failed\" \
                   error=downstream TLS handshake failed: invalid peer certificate: UnknownIssuer";
    assert_eq!(refusal_cause(unknown).as_deref(), Some("UnknownIssuer"));
    let json = r#"{"fields":{"reason":"handshake_failed","error":"invalid peer certificate: UnknownIssuer"}}"#;
    assert_eq!(refusal_cause(json).as_deref(), Some("UnknownIssuer"));
    assert_eq!(
        refusal_cause("connection refused reason=\"caller_denied\""),
        None
    );
}

mod props {
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn readers_never_panic(s in ".{0,300}") {
            let _ = super::refusal_label(&s);
            let _ = super::refusal_cause(&s);
            let _ = super::metric_value(&s, "x");
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&s) {
                let _ = super::peer_view(&v, "a.demo");
                let _ = super::map_entry(&v, "a.demo");
            }
        }
    }
}
