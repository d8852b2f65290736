//! Unit tests of the inbound checks: authorization, the relayed origin, the app's header.

use super::*;
use fedgate_dataplane::proxy_protocol::Tlv;
use fedgate_federation::tls::Authorizer;
use std::time::Duration;

fn id(s: &str) -> SpiffeId {
    SpiffeId::parse(s).unwrap()
}

fn inbound(allow: &[&str], relays: &[&str]) -> InboundConfig {
    InboundConfig {
        name: "in".into(),
        listen: "127.0.0.1:0".parse().unwrap(),
        forward: fedgate_dataplane::upstreams::Endpoint::new("127.0.0.1", 1),
        allow: Authorizer::from_patterns(allow).unwrap(),
        proxy_protocol: true,
        trusted_relays: Authorizer::from_patterns(relays).unwrap(),
        proxy_header_timeout: Duration::from_secs(1),
        max_proxy_header: 4096,
        limits: crate::config::sidecar::ConnectionLimits {
            connect_timeout: Duration::from_secs(1),
            handshake_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(1),
            max_connections: 1,
        },
    }
}

const RELAY: &str = "spiffe://b.test/ns/gateway/sa/ingress";
const CALLER: &str = "spiffe://a.test/ns/demo/sa/client";

#[test]
fn direct_client_must_be_allowed() {
    let cfg = inbound(&[CALLER], &[RELAY]);
    assert!(authorize(&cfg, &id(CALLER), None).is_ok());
    let err = authorize(&cfg, &id("spiffe://a.test/ns/demo/sa/other"), None).unwrap_err();
    assert_eq!(err.label(), "client_not_allowed");
}

#[test]
fn relayed_origin_is_what_must_be_allowed() {
    let cfg = inbound(&[CALLER], &[RELAY]);
    assert!(authorize(&cfg, &id(RELAY), Some(&id(CALLER))).is_ok());
    let err = authorize(&cfg, &id(RELAY), Some(&id("spiffe://c.test/x"))).unwrap_err();
    assert_eq!(err.label(), "origin_not_allowed");
    // A relay without an origin stands for itself, and it is not in `allow`.
    assert_eq!(
        authorize(&cfg, &id(RELAY), None).unwrap_err().label(),
        "client_not_allowed"
    );
}

#[test]
fn empty_allow_list_denies_everyone() {
    let cfg = inbound(&[], &[RELAY]);
    assert!(authorize(&cfg, &id(CALLER), None).is_err());
    assert!(authorize(&cfg, &id(RELAY), Some(&id(CALLER))).is_err());
}

#[test]
fn origin_tlv_must_be_a_spiffe_id() {
    let relay = id(RELAY);
    let none = ProxyHeader::default();
    assert_eq!(relayed_origin(&relay, &none).unwrap(), None);
    let good = ProxyHeader {
        addresses: None,
        tlvs: vec![Tlv {
            kind: TLV_ORIGIN_ID,
            value: CALLER.as_bytes().to_vec(),
        }],
    };
    assert_eq!(relayed_origin(&relay, &good).unwrap(), Some(id(CALLER)));
    for bad in [&b"not-an-id"[..], b"spiffe://A.test/x"] {
        let h = ProxyHeader {
            addresses: None,
            tlvs: vec![Tlv {
                kind: TLV_ORIGIN_ID,
                value: bad.to_vec(),
            }],
        };
        assert_eq!(
            relayed_origin(&relay, &h).unwrap_err().label(),
            "relay_invalid_origin"
        );
    }
    // A non-UTF-8 origin never reaches `relayed_origin`: decoding refuses the header.
    let not_utf8 = ProxyHeader::local().with_tlv(TLV_ORIGIN_ID, &b"\xff\xfe"[..]);
    let bytes = not_utf8.encode().unwrap();
    assert!(ProxyHeader::decode(&bytes, bytes.len()).is_err());
}

#[test]
fn app_header_carries_verified_client_and_origin() {
    let addrs: (SocketAddr, SocketAddr) = (
        "10.0.0.1:1234".parse().unwrap(),
        "10.0.0.2:7443".parse().unwrap(),
    );
    let h = app_header(Some(addrs), &id(RELAY), Some(&id(CALLER)));
    assert_eq!(h.addresses, Some(addrs));
    assert_eq!(
        h.tlvs,
        vec![
            Tlv {
                kind: TLV_SPIFFE_ID,
                value: RELAY.as_bytes().to_vec()
            },
            Tlv {
                kind: TLV_ORIGIN_ID,
                value: CALLER.as_bytes().to_vec()
            },
        ]
    );
    let direct = app_header(None, &id(CALLER), None);
    assert_eq!(direct.tlvs.len(), 1);
}
