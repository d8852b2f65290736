//! Sidecar ↔ sidecar mTLS on 127.0.0.1 (no gateway): same and federated trust domains,
//! allow lists in both directions, trust-domain confusion, PROXY v2 to the app, trusted relays.
// Helpers outside #[test] fns unwrap too: in a test, a panic is the failure report we want.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/sidecar_certs.rs"]
mod certs;
#[path = "support/sidecar_harness.rs"]
mod harness;

use std::path::Path;
use std::sync::Arc;

use certs::{bundle_map_json, bundle_set, write_atomic, IdentityFiles, TestCa};
use fedgate::sidecar::metrics::Direction;
use fedgate_dataplane::proxy_protocol::{ProxyHeader, TLV_ORIGIN_ID, TLV_SPIFFE_ID};
use fedgate_dataplane::relay::RELAY_ALPN;
use harness::{
    echo_app, http_get, metric, round_trip, server_name, tls_connector, tls_connector_offering,
    RunningSidecar,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CLIENT_A: &str = "spiffe://cluster-a.test/ns/demo/sa/client";
const ECHO_A: &str = "spiffe://cluster-a.test/ns/demo/sa/echo";
const ECHO_B: &str = "spiffe://cluster-b.test/ns/demo/sa/echo";
const RELAY_B: &str = "spiffe://cluster-b.test/ns/gateway/sa/ingress";

fn identity_toml(td: &str, files: &IdentityFiles, federated: Option<&Path>) -> String {
    let mut s = format!(
        "trust_domain = \"{td}\"\nreload_interval = \"50ms\"\ndrain_timeout = \"2s\"\n\
         [identity]\nsvid = {:?}\nkey = {:?}\nbundle = {:?}\n",
        files.svid, files.key, files.bundle
    );
    if let Some(f) = federated {
        s.push_str(&format!("federated_bundles = {f:?}\n"));
    }
    s.push_str("[admin]\nlisten = \"127.0.0.1:0\"\n");
    s
}

fn outbound_toml(server: &str, connect: std::net::SocketAddr, allow: &[&str]) -> String {
    format!(
        "[[outbound]]\nname = \"to-echo\"\nlisten = \"127.0.0.1:0\"\nserver_name = \"{server}\"\n\
         connect = [\"{connect}\"]\nallow = {allow:?}\nconnect_timeout = \"2s\"\n\
         handshake_timeout = \"5s\"\n"
    )
}

fn inbound_toml(forward: std::net::SocketAddr, allow: &[&str], relays: &[&str]) -> String {
    format!(
        "[[inbound]]\nname = \"echo\"\nlisten = \"127.0.0.1:0\"\nforward = \"{forward}\"\n\
         allow = {allow:?}\ntrusted_relays = {relays:?}\nproxy_protocol = true\n\
         proxy_header_timeout = \"2s\"\nhandshake_timeout = \"5s\"\n"
    )
}

/// Starts B (inbound, echo app behind it) and A (outbound to B), both in `td_a`/`td_b`.
struct Pair {
    a: RunningSidecar,
    b: RunningSidecar,
    app: tokio::sync::mpsc::UnboundedReceiver<harness::AppConn>,
    _dir: tempfile::TempDir,
}

async fn pair(
    ca_a: &TestCa,
    ca_b: &TestCa,
    client_id: &str,
    server_id: &str,
    outbound_allow: &[&str],
    inbound_allow: &[&str],
) -> Pair {
    pair_with(
        ca_a,
        ca_b,
        (client_id, server_id),
        outbound_allow,
        inbound_allow,
        ("", ""),
    )
    .await
}

/// Like [`pair`], with `extra.0` appended to A's `[[outbound]]` and `extra.1` to B's
/// `[[inbound]]`.
async fn pair_with(
    ca_a: &TestCa,
    ca_b: &TestCa,
    (client_id, server_id): (&str, &str),
    outbound_allow: &[&str],
    inbound_allow: &[&str],
    extra: (&str, &str),
) -> Pair {
    let dir = tempfile::tempdir().unwrap();
    let files_a = ca_a.write_identity(&dir.path().join("a"), client_id);
    let files_b = ca_b.write_identity(&dir.path().join("b"), server_id);
    let federated = ca_a.td != ca_b.td;
    let (map_a, map_b) = (
        dir.path().join("a/peers.json"),
        dir.path().join("b/peers.json"),
    );
    if federated {
        write_atomic(&map_a, &bundle_map_json(&[ca_b]));
        write_atomic(&map_b, &bundle_map_json(&[ca_a]));
    }
    let (app_addr, app) = echo_app(true).await;
    let b = RunningSidecar::start(
        &dir.path().join("b"),
        &format!(
            "{}{}{}",
            identity_toml(&ca_b.td.to_string(), &files_b, federated.then_some(&*map_b)),
            inbound_toml(app_addr, inbound_allow, &[]),
            extra.1
        ),
    )
    .await;
    let a = RunningSidecar::start(
        &dir.path().join("a"),
        &format!(
            "{}{}{}",
            identity_toml(&ca_a.td.to_string(), &files_a, federated.then_some(&*map_a)),
            outbound_toml("echo.cluster-b.test", b.addr("echo"), outbound_allow),
            extra.0
        ),
    )
    .await;
    Pair {
        a,
        b,
        app,
        _dir: dir,
    }
}

#[tokio::test]
async fn same_trust_domain_round_trip_and_app_sees_client_id() {
    let ca = TestCa::new("cluster-a.test");
    let mut p = pair(
        &ca,
        &ca,
        CLIENT_A,
        ECHO_A,
        &[ECHO_A],
        &["spiffe://cluster-a.test/ns/demo/*"],
    )
    .await;

    assert_eq!(round_trip(p.a.addr("to-echo"), b"ping").await, b"ping");

    let seen = p.app.recv().await.unwrap();
    let header = seen.header.unwrap();
    assert_eq!(header.tlv(TLV_SPIFFE_ID), Some(CLIENT_A.as_bytes()));
    assert_eq!(header.tlv(TLV_ORIGIN_ID), None);
    let (src, dst) = header.addresses.unwrap();
    assert_eq!(dst, p.b.addr("echo"));
    assert!(src.ip().is_loopback());

    let ev = p.a.next_event().await;
    assert_eq!((ev.direction, ev.outcome), (Direction::Outbound, "ok"));
    assert_eq!(ev.peer_id.unwrap().to_string(), ECHO_A);
    let ev = p.b.next_event().await;
    assert_eq!((ev.direction, ev.outcome), (Direction::Inbound, "ok"));
    assert_eq!(ev.peer_id.unwrap().to_string(), CLIENT_A);

    let metrics = http_get(p.a.addr("admin"), "/metrics").await;
    assert_eq!(
        metric(
            &metrics,
            "fedgate_sidecar_connections_total{direction=\"outbound\",listener=\"to-echo\",outcome=\"ok\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(http_get(p.b.addr("admin"), "/healthz").await, "ok\n");
    assert_eq!(http_get(p.b.addr("admin"), "/readyz").await, "ok\n");
    p.a.stop().await;
    p.b.stop().await;
}

#[tokio::test]
async fn federated_trust_domains_verify_each_other_with_peer_bundles() {
    let (ca_a, ca_b) = (TestCa::new("cluster-a.test"), TestCa::new("cluster-b.test"));
    let mut p = pair(&ca_a, &ca_b, CLIENT_A, ECHO_B, &[ECHO_B], &[CLIENT_A]).await;

    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(round_trip(p.a.addr("to-echo"), &big).await, big);
    let header = p.app.recv().await.unwrap().header.unwrap();
    assert_eq!(header.tlv(TLV_SPIFFE_ID), Some(CLIENT_A.as_bytes()));
    assert_eq!(p.a.next_event().await.peer_id.unwrap().to_string(), ECHO_B);
    assert_eq!(
        p.b.next_event().await.peer_id.unwrap().to_string(),
        CLIENT_A
    );
}

#[tokio::test]
async fn outbound_refuses_a_server_outside_its_allow_list() {
    let (ca_a, ca_b) = (TestCa::new("cluster-a.test"), TestCa::new("cluster-b.test"));
    let mut p = pair(
        &ca_a,
        &ca_b,
        CLIENT_A,
        ECHO_B,
        &["spiffe://cluster-b.test/ns/demo/sa/other"],
        &[CLIENT_A],
    )
    .await;

    assert_eq!(round_trip(p.a.addr("to-echo"), b"secret").await, b"");
    let ev = p.a.next_event().await;
    assert_eq!(ev.outcome, "server_not_allowed");
    assert!(ev.peer_id.is_none());
    // B saw the client abort the handshake, and its app was never dialled.
    assert_eq!(p.b.next_event().await.outcome, "handshake_failed");
    assert!(p.app.try_recv().is_err());

    let metrics = http_get(p.a.addr("admin"), "/metrics").await;
    assert_eq!(
        metric(
            &metrics,
            "fedgate_sidecar_connections_total{direction=\"outbound\",listener=\"to-echo\",outcome=\"server_not_allowed\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
}

#[tokio::test]
async fn inbound_refuses_a_client_outside_its_allow_list() {
    let (ca_a, ca_b) = (TestCa::new("cluster-a.test"), TestCa::new("cluster-b.test"));
    let mut p = pair(
        &ca_a,
        &ca_b,
        CLIENT_A,
        ECHO_B,
        &[ECHO_B],
        &["spiffe://cluster-a.test/ns/demo/sa/someone-else"],
    )
    .await;

    assert_eq!(round_trip(p.a.addr("to-echo"), b"secret").await, b"");
    let ev = p.b.next_event().await;
    assert_eq!(ev.outcome, "client_not_allowed");
    assert!(p.app.try_recv().is_err());
    let metrics = http_get(p.b.addr("admin"), "/metrics").await;
    assert_eq!(
        metric(
            &metrics,
            "fedgate_sidecar_connections_total{direction=\"inbound\",listener=\"echo\",outcome=\"client_not_allowed\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
}

/// B holds the bundles of both cluster-a and cluster-b. A client whose SVID *claims*
/// `cluster-a.test` but chains to cluster-b's CA must be refused: it is validated with
/// cluster-a's bundle only (invariant 1 of docs/threat-model.md).
#[tokio::test]
async fn client_chaining_to_another_trust_domain_is_refused() {
    let (ca_a, ca_b) = (TestCa::new("cluster-a.test"), TestCa::new("cluster-b.test"));
    let ca_c = TestCa::new("cluster-c.test");
    let dir = tempfile::tempdir().unwrap();
    let files_b = ca_b.write_identity(&dir.path().join("b"), ECHO_B);
    let map = dir.path().join("b/peers.json");
    write_atomic(&map, &bundle_map_json(&[&ca_a]));
    let (app_addr, mut app) = echo_app(true).await;
    let mut b = RunningSidecar::start(
        &dir.path().join("b"),
        &format!(
            "{}{}",
            identity_toml("cluster-b.test", &files_b, Some(&map)),
            inbound_toml(app_addr, &["*"], &[])
        ),
    )
    .await;
    let trust = bundle_set(&[&ca_a, &ca_b]);

    async fn attempt(addr: std::net::SocketAddr, connector: tokio_rustls::TlsConnector) -> Vec<u8> {
        let tcp = TcpStream::connect(addr).await.unwrap();
        // TLS 1.3: the client may finish its side before the server refuses its certificate.
        let Ok(mut tls) = connector
            .connect(server_name("echo.cluster-b.test"), tcp)
            .await
        else {
            return Vec::new();
        };
        let _ = tls.write_all(b"hello").await;
        let _ = tls.shutdown().await;
        let mut out = Vec::new();
        let read = tokio::time::timeout(harness::WAIT, tls.read_to_end(&mut out)).await;
        assert!(read.is_ok(), "no EOF in time");
        out
    }

    let confused = ca_b.issue(CLIENT_A).x509();
    assert_eq!(
        attempt(b.addr("echo"), tls_connector(&confused, trust.clone())).await,
        b""
    );
    assert_eq!(b.next_event().await.outcome, "handshake_failed");

    let stranger = ca_c
        .issue("spiffe://cluster-c.test/ns/demo/sa/client")
        .x509();
    assert_eq!(
        attempt(b.addr("echo"), tls_connector(&stranger, trust.clone())).await,
        b""
    );
    assert_eq!(b.next_event().await.outcome, "handshake_failed");
    assert!(app.try_recv().is_err());

    // Control: the genuine cluster-a client gets through with the same server config.
    let genuine = ca_a.issue(CLIENT_A).x509();
    assert_eq!(
        attempt(b.addr("echo"), tls_connector(&genuine, trust)).await,
        b"hello"
    );
    assert!(app.recv().await.unwrap().header.is_some());
}

/// Sets up B with a trusted relay and returns (B, app receiver, relay connector, tempdir).
async fn relay_setup(
    allow: &[&str],
) -> (
    RunningSidecar,
    tokio::sync::mpsc::UnboundedReceiver<harness::AppConn>,
    tokio_rustls::TlsConnector,
    tokio_rustls::TlsConnector,
    MoreClients,
) {
    let (ca_a, ca_b) = (TestCa::new("cluster-a.test"), TestCa::new("cluster-b.test"));
    let dir = tempfile::tempdir().unwrap();
    let files_b = ca_b.write_identity(&dir.path().join("b"), ECHO_B);
    let map = dir.path().join("b/peers.json");
    write_atomic(&map, &bundle_map_json(&[&ca_a]));
    let (app_addr, app) = echo_app(true).await;
    let b = RunningSidecar::start(
        &dir.path().join("b"),
        &format!(
            "{}{}",
            identity_toml("cluster-b.test", &files_b, Some(&map)),
            inbound_toml(app_addr, allow, &[RELAY_B])
        ),
    )
    .await;
    let trust = bundle_set(&[&ca_a, &ca_b]);
    let relay = tls_connector_offering(&ca_b.issue(RELAY_B).x509(), trust.clone(), &[RELAY_ALPN]);
    let more = MoreClients {
        relay_without_protocol: tls_connector(&ca_b.issue(RELAY_B).x509(), trust.clone()),
        direct_with_protocol: tls_connector_offering(
            &ca_a.issue(CLIENT_A).x509(),
            trust.clone(),
            &[RELAY_ALPN],
        ),
        direct_with_h2: tls_connector_offering(
            &ca_a.issue(CLIENT_A).x509(),
            trust.clone(),
            &[b"h2"],
        ),
        _dir: dir,
    };
    let direct = tls_connector(&ca_a.issue(CLIENT_A).x509(), trust);
    (b, app, relay, direct, more)
}

/// The clients that negotiate the relay role wrongly, and one offering another protocol.
struct MoreClients {
    /// The trusted relay's identity, not offering the relay protocol.
    relay_without_protocol: tokio_rustls::TlsConnector,
    /// An ordinary client (not a trusted relay) offering the relay protocol.
    direct_with_protocol: tokio_rustls::TlsConnector,
    /// An ordinary client offering `h2` only.
    direct_with_h2: tokio_rustls::TlsConnector,
    _dir: tempfile::TempDir,
}

async fn send_over_tls(
    addr: std::net::SocketAddr,
    connector: &tokio_rustls::TlsConnector,
    bytes: &[u8],
) -> Vec<u8> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut tls = connector
        .connect(server_name("echo.cluster-b.test"), tcp)
        .await
        .unwrap();
    // Writes may fail once the sidecar has refused us; what comes back tells the outcome.
    let _ = tls.write_all(bytes).await;
    let _ = tls.shutdown().await;
    let mut out = Vec::new();
    let read = tokio::time::timeout(harness::WAIT, tls.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "no EOF in time");
    out
}

#[tokio::test]
async fn trusted_relay_origin_is_passed_to_the_app() {
    let (mut b, mut app, relay, _direct, _dir) = relay_setup(&[CLIENT_A]).await;
    let addrs = (
        "10.1.0.7:40000".parse().unwrap(),
        "10.2.0.9:15002".parse().unwrap(),
    );
    let mut bytes = ProxyHeader::proxy(addrs.0, addrs.1)
        .with_tlv(TLV_ORIGIN_ID, CLIENT_A.as_bytes())
        .encode()
        .unwrap();
    bytes.extend_from_slice(b"payload");

    assert_eq!(
        send_over_tls(b.addr("echo"), &relay, &bytes).await,
        b"payload"
    );
    let header = app.recv().await.unwrap().header.unwrap();
    assert_eq!(header.tlv(TLV_SPIFFE_ID), Some(RELAY_B.as_bytes()));
    assert_eq!(header.tlv(TLV_ORIGIN_ID), Some(CLIENT_A.as_bytes()));
    // Addresses are the real sockets of the connection, not the relay's claims.
    assert_ne!(header.addresses.unwrap(), addrs);
    let ev = b.next_event().await;
    assert_eq!(ev.outcome, "ok");
    assert_eq!(ev.peer_id.unwrap().to_string(), RELAY_B);
    assert_eq!(ev.origin_id.unwrap().to_string(), CLIENT_A);
}

#[tokio::test]
async fn a_non_relay_clients_proxy_header_is_just_data() {
    let (mut b, mut app, _relay, direct, _dir) = relay_setup(&[CLIENT_A]).await;
    let mut bytes = ProxyHeader::local()
        .with_tlv(
            TLV_ORIGIN_ID,
            b"spiffe://cluster-b.test/ns/admin/sa/root".to_vec(),
        )
        .encode()
        .unwrap();
    bytes.extend_from_slice(b"after");

    // The whole fake header comes back as echoed application data.
    assert_eq!(send_over_tls(b.addr("echo"), &direct, &bytes).await, bytes);
    let header = app.recv().await.unwrap().header.unwrap();
    assert_eq!(header.tlv(TLV_SPIFFE_ID), Some(CLIENT_A.as_bytes()));
    assert_eq!(header.tlv(TLV_ORIGIN_ID), None);
    let ev = b.next_event().await;
    assert_eq!(ev.origin_id, None);
}

/// A trusted relay whose connection did not negotiate the relay protocol is refused, and its
/// first bytes (here a well-formed header naming an allowed origin) are never read as a header;
/// a client that negotiated it without being a trusted relay is refused too (ADR 0007).
#[tokio::test]
async fn the_relay_role_must_be_negotiated_by_a_trusted_relay() {
    // RELAY_B is in `allow` too: even so, without the protocol it is not taken for a caller.
    let (mut b, mut app, _relay, _direct, more) = relay_setup(&[CLIENT_A, RELAY_B]).await;
    let mut bytes = ProxyHeader::local()
        .with_tlv(TLV_ORIGIN_ID, CLIENT_A.as_bytes())
        .encode()
        .unwrap();
    bytes.extend_from_slice(b"payload");
    let refused = [
        (&more.relay_without_protocol, "relay_not_negotiated"),
        (&more.direct_with_protocol, "not_a_trusted_relay"),
    ];
    for (client, outcome) in refused {
        assert_eq!(send_over_tls(b.addr("echo"), client, &bytes).await, b"");
        assert_eq!(b.next_event().await.outcome, outcome);
        assert!(app.try_recv().is_err());
    }
}

/// A client offering another application protocol is served as before (no protocol selected):
/// the relay config is used only for a ClientHello that offers the relay protocol.
#[tokio::test]
async fn clients_offering_other_alpn_protocols_still_connect() {
    let (mut b, mut app, _relay, _direct, more) = relay_setup(&[CLIENT_A]).await;
    assert_eq!(
        send_over_tls(b.addr("echo"), &more.direct_with_h2, b"hi").await,
        b"hi"
    );
    let header = app.recv().await.unwrap().header.unwrap();
    assert_eq!(header.tlv(TLV_SPIFFE_ID), Some(CLIENT_A.as_bytes()));
    assert_eq!(b.next_event().await.outcome, "ok");
}

#[tokio::test]
async fn relayed_origin_outside_the_allow_list_is_refused() {
    let (mut b, mut app, relay, _direct, _dir) = relay_setup(&[CLIENT_A]).await;
    let mut bytes = ProxyHeader::local()
        .with_tlv(
            TLV_ORIGIN_ID,
            b"spiffe://cluster-a.test/ns/demo/sa/intruder".to_vec(),
        )
        .encode()
        .unwrap();
    bytes.extend_from_slice(b"payload");
    assert_eq!(send_over_tls(b.addr("echo"), &relay, &bytes).await, b"");
    assert_eq!(b.next_event().await.outcome, "origin_not_allowed");
    assert!(app.try_recv().is_err());
}

#[tokio::test]
async fn relay_without_a_valid_proxy_header_is_refused() {
    let (mut b, mut app, relay, _direct, _dir) = relay_setup(&[CLIENT_A]).await;
    assert_eq!(
        send_over_tls(b.addr("echo"), &relay, b"GET / HTTP/1.1\r\n\r\n").await,
        b""
    );
    assert_eq!(b.next_event().await.outcome, "relay_proxy_header");

    let bad_origin = ProxyHeader::local()
        .with_tlv(TLV_ORIGIN_ID, b"not a spiffe id".to_vec())
        .encode()
        .unwrap();
    assert_eq!(
        send_over_tls(b.addr("echo"), &relay, &bad_origin).await,
        b""
    );
    assert_eq!(b.next_event().await.outcome, "relay_invalid_origin");
    assert!(app.try_recv().is_err());
}

/// An address nobody listens on (bound, then closed).
async fn dead_addr() -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

#[tokio::test]
async fn outbound_fails_over_to_the_next_endpoint_and_reports_none_reachable() {
    let ca = TestCa::new("cluster-a.test");
    let dir = tempfile::tempdir().unwrap();
    let files_a = ca.write_identity(&dir.path().join("a"), CLIENT_A);
    let files_b = ca.write_identity(&dir.path().join("b"), ECHO_A);
    let (app_addr, _app) = echo_app(true).await;
    let b = RunningSidecar::start(
        &dir.path().join("b"),
        &format!(
            "{}{}",
            identity_toml("cluster-a.test", &files_b, None),
            inbound_toml(app_addr, &[CLIENT_A], &[])
        ),
    )
    .await;
    let (dead1, dead2) = (dead_addr().await, dead_addr().await);
    let listeners = format!(
        "[[outbound]]\nname = \"failover\"\nlisten = \"127.0.0.1:0\"\n\
         server_name = \"echo.cluster-a.test\"\nconnect = [\"{dead1}\", \"{}\"]\n\
         allow = [\"{ECHO_A}\"]\n\
         [[outbound]]\nname = \"nowhere\"\nlisten = \"127.0.0.1:0\"\n\
         server_name = \"echo.cluster-a.test\"\nconnect = [\"{dead1}\", \"{dead2}\"]\n\
         allow = [\"{ECHO_A}\"]\n",
        b.addr("echo")
    );
    let mut a = RunningSidecar::start(
        &dir.path().join("a"),
        &format!(
            "{}{listeners}",
            identity_toml("cluster-a.test", &files_a, None)
        ),
    )
    .await;
    // Round-robin starts at a different endpoint each time; every call must succeed.
    for _ in 0..3 {
        assert_eq!(round_trip(a.addr("failover"), b"ping").await, b"ping");
        assert_eq!(a.next_event().await.outcome, "ok");
    }
    assert_eq!(round_trip(a.addr("nowhere"), b"ping").await, b"");
    let ev = a.next_event().await;
    assert_eq!(
        (ev.listener.as_str(), ev.outcome),
        ("nowhere", "upstream_unavailable")
    );
}

#[tokio::test]
async fn a_client_that_never_completes_the_handshake_is_closed_at_the_timeout() {
    let ca = TestCa::new("cluster-a.test");
    let dir = tempfile::tempdir().unwrap();
    let files_b = ca.write_identity(&dir.path().join("b"), ECHO_A);
    let (app_addr, mut app) = echo_app(true).await;
    let inbound = inbound_toml(app_addr, &["*"], &[]).replace("\"5s\"", "\"200ms\"");
    let mut b = RunningSidecar::start(
        &dir.path().join("b"),
        &format!(
            "{}{inbound}",
            identity_toml("cluster-a.test", &files_b, None)
        ),
    )
    .await;
    let mut silent = TcpStream::connect(b.addr("echo")).await.unwrap();
    assert_eq!(b.next_event().await.outcome, "handshake_timeout");
    let mut buf = Vec::new();
    let read = tokio::time::timeout(harness::WAIT, silent.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "not closed");
    assert!(app.try_recv().is_err());
}

/// The outbound direction of trust-domain confusion: a server presenting
/// `spiffe://cluster-b.test/...` (the allowed ID) signed by cluster-a's CA is refused, as is one
/// signed by a CA nobody trusts, although sidecar A holds both cluster-a's and cluster-b's bundles.
#[tokio::test]
async fn server_chaining_to_another_trust_domain_is_refused() {
    use fedgate_federation::tls::{server_config, Authorizer, SpiffeClientVerifier};
    let (ca_a, ca_b) = (TestCa::new("cluster-a.test"), TestCa::new("cluster-b.test"));
    let ca_x = TestCa::new("cluster-b.test"); // same name, different key: not cluster-b's CA
    let dir = tempfile::tempdir().unwrap();
    let files_a = ca_a.write_identity(&dir.path().join("a"), CLIENT_A);
    let map_a = dir.path().join("a/peers.json");
    write_atomic(&map_a, &bundle_map_json(&[&ca_b]));

    // Fake servers: each accepts mTLS from anyone cluster-a's bundle validates.
    let mut upstreams = Vec::new();
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel::<()>();
    for impostor in [ca_a.issue(ECHO_B), ca_x.issue(ECHO_B)] {
        let verifier = Arc::new(SpiffeClientVerifier::new(
            bundle_set(&[&ca_a]),
            Authorizer::any(),
        ));
        let cfg = server_config(&impostor.x509(), verifier).unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        upstreams.push(listener.local_addr().unwrap());
        let seen_tx = seen_tx.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                if let Ok(mut tls) = acceptor.accept(tcp).await {
                    let mut buf = [0; 1];
                    if matches!(tls.read(&mut buf).await, Ok(n) if n > 0) {
                        let _ = seen_tx.send(());
                    }
                }
            }
        });
    }
    for upstream in upstreams {
        let mut a = RunningSidecar::start(
            &dir.path().join("a"),
            &format!(
                "{}{}",
                identity_toml("cluster-a.test", &files_a, Some(&map_a)),
                outbound_toml("echo.cluster-b.test", upstream, &[ECHO_B])
            ),
        )
        .await;
        assert_eq!(round_trip(a.addr("to-echo"), b"secret").await, b"");
        assert_eq!(a.next_event().await.outcome, "handshake_failed");
        a.stop().await;
    }
    assert!(
        seen.try_recv().is_err(),
        "an impostor received application data"
    );
}

/// X509-SVID.md §4.3: a client whose chain runs through an intermediate CA without keyCertSign
/// is refused by the inbound side (a real handshake with sidecar B), although the chain
/// otherwise reaches cluster-a's root; the same chain through a proper intermediate passes.
#[tokio::test]
async fn client_whose_intermediate_lacks_key_cert_sign_is_refused() {
    use rcgen::KeyUsagePurpose;
    let (ca_a, ca_b) = (TestCa::new("cluster-a.test"), TestCa::new("cluster-b.test"));
    let dir = tempfile::tempdir().unwrap();
    let files_b = ca_b.write_identity(&dir.path().join("b"), ECHO_B);
    let map = dir.path().join("b/peers.json");
    write_atomic(&map, &bundle_map_json(&[&ca_a]));
    let (app_addr, mut app) = echo_app(true).await;
    let mut b = RunningSidecar::start(
        &dir.path().join("b"),
        &format!(
            "{}{}",
            identity_toml("cluster-b.test", &files_b, Some(&map)),
            inbound_toml(app_addr, &["*"], &[])
        ),
    )
    .await;
    let trust = bundle_set(&[&ca_a, &ca_b]);

    async fn attempt(addr: std::net::SocketAddr, connector: tokio_rustls::TlsConnector) -> Vec<u8> {
        let tcp = TcpStream::connect(addr).await.unwrap();
        // TLS 1.3: the client may finish its side before the server refuses its certificate.
        let Ok(mut tls) = connector
            .connect(server_name("echo.cluster-b.test"), tcp)
            .await
        else {
            return Vec::new();
        };
        let _ = tls.write_all(b"hello").await;
        let _ = tls.shutdown().await;
        let mut out = Vec::new();
        let read = tokio::time::timeout(harness::WAIT, tls.read_to_end(&mut out)).await;
        assert!(read.is_ok(), "no EOF in time");
        out
    }

    for bad in [Some(vec![KeyUsagePurpose::DigitalSignature]), None] {
        let svid = ca_a.sign_svid_via_intermediate(CLIENT_A, bad).x509();
        assert_eq!(svid.chain().len(), 2);
        assert_eq!(
            attempt(b.addr("echo"), tls_connector(&svid, trust.clone())).await,
            b""
        );
        assert_eq!(b.next_event().await.outcome, "handshake_failed");
    }
    assert!(app.try_recv().is_err());

    // Control: the same shape of chain, with keyCertSign on the intermediate, gets through.
    let good = ca_a
        .sign_svid_via_intermediate(CLIENT_A, Some(vec![KeyUsagePurpose::KeyCertSign]))
        .x509();
    assert_eq!(
        attempt(b.addr("echo"), tls_connector(&good, trust)).await,
        b"hello"
    );
    assert!(app.recv().await.unwrap().header.is_some());
}

/// The outbound direction: a server presenting the allowed ID through an intermediate without
/// keyCertSign is refused by sidecar A before any application data reaches it.
#[tokio::test]
async fn server_whose_intermediate_lacks_key_cert_sign_is_refused() {
    use fedgate_federation::tls::{server_config, Authorizer, SpiffeClientVerifier};
    use rcgen::KeyUsagePurpose;
    let (ca_a, ca_b) = (TestCa::new("cluster-a.test"), TestCa::new("cluster-b.test"));
    let dir = tempfile::tempdir().unwrap();
    let files_a = ca_a.write_identity(&dir.path().join("a"), CLIENT_A);
    let map_a = dir.path().join("a/peers.json");
    write_atomic(&map_a, &bundle_map_json(&[&ca_b]));

    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut upstreams = Vec::new();
    for kus in [
        Some(vec![KeyUsagePurpose::DigitalSignature]),
        Some(vec![KeyUsagePurpose::KeyCertSign]),
    ] {
        let svid = ca_b.sign_svid_via_intermediate(ECHO_B, kus).x509();
        let verifier = Arc::new(SpiffeClientVerifier::new(
            bundle_set(&[&ca_a]),
            Authorizer::any(),
        ));
        let acceptor =
            tokio_rustls::TlsAcceptor::from(Arc::new(server_config(&svid, verifier).unwrap()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        upstreams.push(listener.local_addr().unwrap());
        let seen_tx = seen_tx.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                if let Ok(mut tls) = acceptor.accept(tcp).await {
                    let mut buf = [0; 6];
                    if tls.read_exact(&mut buf).await.is_ok() {
                        let _ = seen_tx.send(());
                        let _ = tls.write_all(&buf).await;
                        let _ = tls.shutdown().await;
                    }
                }
            }
        });
    }
    // The bad server first: refused, and it never sees data.
    let mut a = RunningSidecar::start(
        &dir.path().join("a"),
        &format!(
            "{}{}",
            identity_toml("cluster-a.test", &files_a, Some(&map_a)),
            outbound_toml("echo.cluster-b.test", upstreams[0], &[ECHO_B])
        ),
    )
    .await;
    assert_eq!(round_trip(a.addr("to-echo"), b"secret").await, b"");
    assert_eq!(a.next_event().await.outcome, "handshake_failed");
    a.stop().await;
    assert!(seen.try_recv().is_err(), "the bad server received data");

    // Control: the good server is reached through the same sidecar config.
    let a = RunningSidecar::start(
        &dir.path().join("a"),
        &format!(
            "{}{}",
            identity_toml("cluster-a.test", &files_a, Some(&map_a)),
            outbound_toml("echo.cluster-b.test", upstreams[1], &[ECHO_B])
        ),
    )
    .await;
    assert_eq!(round_trip(a.addr("to-echo"), b"secret").await, b"secret");
    a.stop().await;
    assert!(seen.recv().await.is_some());
}

/// A connection through the sidecar listener at `addr`, proven established end to end (one
/// byte echoed by the app), held open by the caller.
async fn held_connection(addr: std::net::SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"x").await.unwrap();
    let mut b = [0u8; 1];
    tokio::time::timeout(std::time::Duration::from_secs(10), s.read_exact(&mut b))
        .await
        .expect("no echo in time")
        .unwrap();
    assert_eq!(&b, b"x");
    s
}

/// A connection to `addr` that is closed without a byte (EOF or reset).
async fn closed_at_once(addr: std::net::SocketAddr) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut out = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("the connection over the limit was not closed");
    assert!(read.is_err() || out.is_empty(), "{out:?}");
}

/// The next event of `s` with `outcome`, skipping others.
async fn event_with(s: &mut RunningSidecar, outcome: &str) -> fedgate::sidecar::ConnectionEvent {
    loop {
        let ev = s.next_event().await;
        if ev.outcome == outcome {
            return ev;
        }
    }
}

#[tokio::test]
async fn outbound_connections_over_the_limit_are_closed_and_counted() {
    let ca = TestCa::new("cluster-a.test");
    let mut p = pair_with(
        &ca,
        &ca,
        (CLIENT_A, ECHO_A),
        &[ECHO_A],
        &["spiffe://cluster-a.test/ns/demo/*"],
        ("max_connections = 2\n", ""),
    )
    .await;
    let out = p.a.addr("to-echo");
    let first = held_connection(out).await;
    let _second = held_connection(out).await;
    closed_at_once(out).await;
    let ev = p.a.next_event().await;
    assert_eq!(
        (ev.direction, ev.outcome),
        (Direction::Outbound, "too_many_connections")
    );
    let metrics = http_get(p.a.addr("admin"), "/metrics").await;
    assert_eq!(
        metric(
            &metrics,
            "fedgate_sidecar_connections_total{direction=\"outbound\",listener=\"to-echo\",outcome=\"too_many_connections\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
    // One closes; its slot is free again once its end is reported.
    drop(first);
    assert_eq!(
        event_with(&mut p.a, "ok").await.direction,
        Direction::Outbound
    );
    let _third = held_connection(out).await;
    p.a.stop().await;
    p.b.stop().await;
}

#[tokio::test]
async fn inbound_connections_over_the_limit_are_closed_and_counted() {
    let ca = TestCa::new("cluster-a.test");
    let mut p = pair_with(
        &ca,
        &ca,
        (CLIENT_A, ECHO_A),
        &[ECHO_A],
        &["spiffe://cluster-a.test/ns/demo/*"],
        ("", "max_connections = 2\n"),
    )
    .await;
    let out = p.a.addr("to-echo");
    let first = held_connection(out).await;
    let _second = held_connection(out).await;
    // The third reaches B's inbound, which closes it before the handshake; A then closes the
    // app's connection.
    closed_at_once(out).await;
    let ev = p.b.next_event().await;
    assert_eq!(
        (ev.direction, ev.outcome),
        (Direction::Inbound, "too_many_connections")
    );
    assert!(ev.peer_id.is_none());
    let metrics = http_get(p.b.addr("admin"), "/metrics").await;
    assert_eq!(
        metric(
            &metrics,
            "fedgate_sidecar_connections_total{direction=\"inbound\",listener=\"echo\",outcome=\"too_many_connections\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
    drop(first);
    assert_eq!(
        event_with(&mut p.b, "ok").await.direction,
        Direction::Inbound
    );
    let _third = held_connection(out).await;
    p.a.stop().await;
    p.b.stop().await;
}
