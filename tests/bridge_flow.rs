//! Bridged mode end to end on 127.0.0.1: caller (cluster-a) → egress A → ingress B → destination
//! (cluster-b), with A's side holding only cluster-a's bundle (+ the bridge bundle for the
//! gateways) and B's side only cluster-b's; plus every refusal path of the bridge.
//!
//! The outer hops (the workloads' sidecars) are plain tokio-rustls clients and servers here;
//! each gateway task reports completion on a channel, so metrics are read only after the
//! connection's outcome was recorded (no sleeps as synchronisation).

// Helpers outside #[test] fns unwrap too: a failure is a test failure with a backtrace.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/bridge_certs.rs"]
mod bridge_certs;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bridge_certs::workloads::{self, drain, round_trip, Destination};
use bridge_certs::{IssuedSvid, TestCa};
use fedgate::bridge::egress::{self, EgressRoutes, EgressState};
use fedgate::bridge::ingress::{HeaderLimits, IngressRoutes, IngressState};
use fedgate::bridge::metrics::{
    DirectionLabels, HandshakeLabels, ListenerLabels, ReasonLabels, RuleLabels,
};
use fedgate::bridge::runtime::BridgeHandler;
use fedgate::bridge::{
    BridgeMetrics, BridgePeer, BridgePeers, EgressRoute, Identities, IngressRoute, Swap, Timeouts,
};
use fedgate_dataplane::accept::Acceptor;
use fedgate_dataplane::proxy_protocol::{ProxyHeader, TLV_AUTHORITY, TLV_ORIGIN_ID, TLV_SPIFFE_ID};
use fedgate_dataplane::relay::RELAY_ALPN;
use fedgate_dataplane::serve::{self, Connections, Service};
use fedgate_dataplane::upstreams::Upstreams;
use fedgate_federation::tls::{Authorizer, SpiffeClientVerifier, SpiffeServerVerifier};
use fedgate_federation::{BundleSet, SpiffeId, TrustDomain};
use rustls::pki_types::ServerName;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_util::sync::CancellationToken;

const CLIENT: &str = "/ns/demo/sa/client";
const ECHO: &str = "/ns/demo/sa/echo";
const DEST: &str = "echo.cluster-b.test";
const OPEN: &str = "open.cluster-b.test";

/// The three CAs and every SVID of the topology.
struct Pki {
    a: TestCa,
    b: TestCa,
    bridge: TestCa,
    client: IssuedSvid,
    echo: IssuedSvid,
    egress_local: IssuedSvid,
    ingress_local: IssuedSvid,
    gw_a: IssuedSvid,
    gw_b: IssuedSvid,
}

/// A running bridge gateway listener.
struct Gateway<S> {
    addr: SocketAddr,
    cell: Arc<Swap<S>>,
    metrics: BridgeMetrics,
    /// One message per finished connection (after its outcome was counted).
    done: mpsc::UnboundedReceiver<()>,
    _shutdown: tokio_util::sync::DropGuard,
}

fn timeouts() -> Timeouts {
    Timeouts {
        handshake: Duration::from_secs(5),
        connect: Duration::from_secs(5),
        idle: Duration::from_secs(30),
    }
}

impl Pki {
    fn new() -> Pki {
        let a = TestCa::new("cluster-a.test");
        let b = TestCa::new("cluster-b.test");
        let bridge = TestCa::new("bridge.test");
        Pki {
            client: a.issue(CLIENT),
            echo: b.issue(ECHO),
            egress_local: a.issue("/ns/gateway/sa/egress"),
            ingress_local: b.issue("/ns/gateway/sa/ingress"),
            gw_a: bridge.issue("/gateway/cluster-a"),
            gw_b: bridge.issue("/gateway/cluster-b"),
            a,
            b,
            bridge,
        }
    }

    fn egress_ids(&self, bridge_svid: &IssuedSvid) -> Identities {
        Identities::new(
            self.egress_local.svid(),
            self.a.bundle(),
            bridge_svid.svid(),
            self.bridge.bundle(),
            false,
        )
        .unwrap()
    }

    fn ingress_ids(&self, bridge_svid: &IssuedSvid) -> Identities {
        Identities::new(
            self.ingress_local.svid(),
            self.b.bundle(),
            bridge_svid.svid(),
            self.bridge.bundle(),
            false,
        )
        .unwrap()
    }
}

fn id(s: &str) -> SpiffeId {
    SpiffeId::parse(s).unwrap()
}

async fn bind() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    (l, addr)
}

async fn spawn_destination(pki: &Pki) -> Destination {
    workloads::spawn_destination(&pki.b, &pki.echo).await
}

fn ingress_routes(dest: SocketAddr) -> Arc<IngressRoutes> {
    let route = |name: &str, allow: &[&str]| IngressRoute {
        name: name.into(),
        upstreams: Upstreams::from_socket_addrs([dest]),
        server_id: Authorizer::from_patterns(&["spiffe://cluster-b.test/ns/demo/sa/echo"]).unwrap(),
        allow: Authorizer::from_patterns(allow).unwrap(),
        send_proxy_header: true,
    };
    Arc::new(
        IngressRoutes::new([
            (
                DEST.to_owned(),
                route("echo", &["spiffe://cluster-a.test/ns/demo/sa/client"]),
            ),
            // Open to any origin: only the peer's `may_speak_for` limits who arrives here.
            (OPEN.to_owned(), route("open", &["*"])),
        ])
        .unwrap(),
    )
}

fn ingress_peers() -> Arc<BridgePeers> {
    Arc::new(
        BridgePeers::new([BridgePeer {
            id: id("spiffe://bridge.test/gateway/cluster-a"),
            may_speak_for: vec![TrustDomain::new("cluster-a.test").unwrap()],
        }])
        .unwrap(),
    )
}

fn header_limits() -> HeaderLimits {
    HeaderLimits {
        timeout: Duration::from_millis(300),
        max_len: 4096,
    }
}

async fn spawn_ingress(ids: &Identities, dest: SocketAddr) -> Gateway<IngressState> {
    let metrics = BridgeMetrics::new();
    let state = IngressState::new(
        "bridge-in",
        ingress_peers(),
        ingress_routes(dest),
        ids,
        header_limits(),
        timeouts(),
        metrics.clone(),
    )
    .unwrap();
    spawn_gateway("bridge-in", state, metrics, BridgeHandler::Ingress).await
}

fn egress_routes(ingress: SocketAddr) -> Arc<EgressRoutes> {
    let route = |name: &str, allow: &[&str]| EgressRoute {
        name: name.into(),
        upstreams: Upstreams::from_socket_addrs([ingress]),
        peer_id: id("spiffe://bridge.test/gateway/cluster-b"),
        allow: Authorizer::from_patterns(allow).unwrap(),
        send_proxy_header: true,
        transport: fedgate::config::Transport::Tls,
    };
    let client = "spiffe://cluster-a.test/ns/demo/sa/client";
    Arc::new(
        EgressRoutes::new([
            (DEST.to_owned(), route("echo", &[client])),
            // Allowed at the egress, but the ingress has no route for it.
            (
                "unrouted.cluster-b.test".to_owned(),
                route("unrouted", &[client]),
            ),
            // A route without any allow rule: default deny.
            ("closed.cluster-b.test".to_owned(), route("closed", &[])),
        ])
        .unwrap(),
    )
}

async fn spawn_egress(ids: &Identities, ingress: SocketAddr) -> Gateway<EgressState> {
    let metrics = BridgeMetrics::new();
    let state = EgressState::new(
        "bridge-out",
        egress_routes(ingress),
        ids,
        timeouts(),
        metrics.clone(),
    )
    .unwrap();
    spawn_gateway("bridge-out", state, metrics, BridgeHandler::Egress).await
}

/// Serves `state` on a fresh loopback listener through the data plane's accept loop
/// (`fedgate_dataplane::serve`) and the bridge's connection handler, as `fedgate run` does;
/// each finished connection is reported on `Gateway::done`.
async fn spawn_gateway<S>(
    name: &str,
    state: S,
    metrics: BridgeMetrics,
    handler: fn(Arc<Swap<S>>) -> BridgeHandler,
) -> Gateway<S>
where
    S: Send + Sync + 'static,
{
    let cell = Arc::new(Swap::new(Arc::new(state)));
    let (listener, addr) = bind().await;
    let (tx, done) = mpsc::unbounded_channel();
    let shutdown = CancellationToken::new();
    let service = Reporting {
        handler: handler(Arc::clone(&cell)),
        limit: Arc::new(Semaphore::new(1000)),
        done: tx,
    };
    let stop = shutdown.clone();
    let acceptor = Acceptor::new(listener, name);
    tokio::spawn(async move {
        serve::serve(acceptor, service, &Connections::default(), &stop).await;
    });
    Gateway {
        addr,
        cell,
        metrics,
        done,
        _shutdown: shutdown.drop_guard(),
    }
}

/// A bridge listener's connections, each reported on `done` once its outcome was recorded.
struct Reporting {
    handler: BridgeHandler,
    limit: Arc<Semaphore>,
    done: mpsc::UnboundedSender<()>,
}

impl Service for Reporting {
    type State = ();

    fn state(&self) {}

    fn limit<'a>(&'a self, (): &'a ()) -> &'a Arc<Semaphore> {
        &self.limit
    }

    fn refuse(&self, (): &(), peer: SocketAddr) {
        panic!("connection from {peer} over the test limit");
    }

    fn serve(
        &self,
        (): (),
        tcp: TcpStream,
        _: SocketAddr,
        permit: OwnedSemaphorePermit,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let handler = self.handler.clone();
        let done = self.done.clone();
        async move {
            handler.serve(tcp).await;
            drop(permit);
            let _ = done.send(());
        }
    }
}

impl<S> Gateway<S> {
    async fn finished(&mut self) {
        tokio::time::timeout(Duration::from_secs(10), self.done.recv())
            .await
            .expect("gateway connection did not finish")
            .unwrap();
    }

    fn denials(&self, listener: &str, rule: &'static str) -> u64 {
        self.metrics
            .denials
            .get_or_create(&RuleLabels {
                listener: listener.into(),
                rule,
            })
            .get()
    }

    fn rejects(&self, listener: &str, reason: &'static str) -> u64 {
        self.metrics
            .rejects
            .get_or_create(&ReasonLabels {
                listener: listener.into(),
                reason,
            })
            .get()
    }

    fn handshakes(&self, listener: &str, side: &'static str, outcome: &'static str) -> u64 {
        self.metrics
            .handshakes
            .get_or_create(&HandshakeLabels {
                listener: listener.into(),
                side,
                outcome,
            })
            .get()
    }
}

/// Cluster A's workload side: mTLS client with `svid`, trusting only cluster-a's bundle.
async fn call(
    pki: &Pki,
    svid: &IssuedSvid,
    egress: SocketAddr,
    sni: &str,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    workloads::call(&pki.a, svid, &pki.egress_local.id, egress, sni).await
}

/// A gateway's side of the bridge: mTLS client with the bridge SVID `svid`, server pinned to
/// ingress B's bridge ID, offering the relay protocol as a fedgate egress does.
async fn bridge_dial(
    pki: &Pki,
    svid: &IssuedSvid,
    ingress: SocketAddr,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    bridge_dial_offering(pki, svid, ingress, vec![RELAY_ALPN.to_vec()]).await
}

/// [`bridge_dial`] offering the ALPN protocols `alpn` instead.
async fn bridge_dial_offering(
    pki: &Pki,
    svid: &IssuedSvid,
    ingress: SocketAddr,
    alpn: Vec<Vec<u8>>,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let verifier = SpiffeServerVerifier::new(
        BundleSet::new().with(pki.bridge.bundle()),
        Authorizer::exact(pki.gw_b.id.clone()),
    );
    let mut config =
        fedgate_federation::tls::client_config(Some(&svid.svid()), Arc::new(verifier)).unwrap();
    config.alpn_protocols = alpn;
    let tcp = TcpStream::connect(ingress).await.unwrap();
    TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from(DEST).unwrap(), tcp)
        .await
        .unwrap()
}

struct World {
    pki: Pki,
    dest: Destination,
    ingress: Gateway<IngressState>,
    egress: Gateway<EgressState>,
}

async fn world() -> World {
    let pki = Pki::new();
    let dest = spawn_destination(&pki).await;
    let ingress = spawn_ingress(&pki.ingress_ids(&pki.gw_b), dest.addr).await;
    let egress = spawn_egress(&pki.egress_ids(&pki.gw_a), ingress.addr).await;
    World {
        pki,
        dest,
        ingress,
        egress,
    }
}

#[tokio::test]
async fn workload_a_reaches_workload_b_across_the_bridge_and_b_learns_a() {
    let mut w = world().await;
    let mut conn = call(&w.pki, &w.pki.client, w.egress.addr, DEST)
        .await
        .unwrap();
    assert_eq!(
        round_trip(&mut conn, b"hello bridge").await,
        b"hello bridge"
    );
    // 1 MiB both ways, byte-exact.
    let big: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
    assert_eq!(round_trip(&mut conn, &big).await, big);

    let seen = w.dest.seen.recv().await.unwrap();
    // The destination's mTLS peer is ingress B's local identity (cluster-b only) ...
    assert_eq!(seen.tls_peer, w.pki.ingress_local.id);
    // ... and it learns the origin and the bridge peer that relayed it.
    assert_eq!(
        seen.header.tlv(TLV_ORIGIN_ID),
        Some(w.pki.client.id.to_string().as_bytes())
    );
    assert_eq!(
        seen.header.tlv(TLV_SPIFFE_ID),
        Some(w.pki.gw_a.id.to_string().as_bytes())
    );
    assert_eq!(seen.header.tlv(TLV_AUTHORITY), Some(DEST.as_bytes()));
    // The caller's socket addresses travel too.
    let (src, _) = seen.header.addresses.unwrap();
    assert_eq!(src, conn.get_ref().0.local_addr().unwrap());

    conn.shutdown().await.unwrap();
    assert!(drain(&mut conn).await.is_empty());
    w.egress.finished().await;
    w.ingress.finished().await;
    assert_eq!(w.egress.handshakes("bridge-out", "downstream", "ok"), 1);
    assert_eq!(w.egress.handshakes("bridge-out", "upstream", "ok"), 1);
    assert_eq!(w.ingress.handshakes("bridge-in", "downstream", "ok"), 1);
    assert_eq!(w.ingress.handshakes("bridge-in", "upstream", "ok"), 1);
    // Every byte the caller sent and got back was counted at both gateways.
    let sent = (b"hello bridge".len() + big.len()) as u64;
    for (g, listener) in [
        (&w.egress.metrics, "bridge-out"),
        (&w.ingress.metrics, "bridge-in"),
    ] {
        for direction in ["downstream_to_upstream", "upstream_to_downstream"] {
            let n = g
                .bytes
                .get_or_create(&DirectionLabels {
                    listener: listener.into(),
                    direction,
                })
                .get();
            assert_eq!(n, sent, "{listener} {direction}");
        }
    }
}

#[tokio::test]
async fn caller_from_another_domain_is_refused_at_the_egress() {
    let mut w = world().await;
    // A cluster-b workload, valid in its own domain, calls egress A (which trusts only cluster-a).
    let outsider = w.pki.b.issue(CLIENT);
    if let Ok(mut conn) = call(&w.pki, &outsider, w.egress.addr, DEST).await {
        let _ = conn.write_all(b"hi").await;
        let _ = conn.flush().await;
        assert!(drain(&mut conn).await.is_empty());
    }
    w.egress.finished().await;
    assert_eq!(w.egress.handshakes("bridge-out", "downstream", "error"), 1);
    assert_eq!(w.egress.rejects("bridge-out", "handshake_failed"), 1);
    assert!(w.dest.seen.try_recv().is_err());
}

#[tokio::test]
async fn caller_not_on_the_allow_list_is_refused() {
    let mut w = world().await;
    let stranger = w.pki.a.issue("/ns/demo/sa/stranger");
    let mut conn = call(&w.pki, &stranger, w.egress.addr, DEST).await.unwrap();
    let _ = conn.write_all(b"hi").await;
    let _ = conn.flush().await;
    assert!(drain(&mut conn).await.is_empty());
    w.egress.finished().await;
    assert_eq!(w.egress.denials("bridge-out", "caller_denied"), 1);
}

#[tokio::test]
async fn destinations_without_an_authorization_rule_are_refused() {
    let mut w = world().await;
    // No egress route at all.
    let mut conn = call(&w.pki, &w.pki.client, w.egress.addr, "nope.cluster-b.test")
        .await
        .unwrap();
    assert!(drain(&mut conn).await.is_empty());
    w.egress.finished().await;
    assert_eq!(w.egress.denials("bridge-out", "no_route"), 1);

    // A route with an empty allow list.
    let mut conn = call(
        &w.pki,
        &w.pki.client,
        w.egress.addr,
        "closed.cluster-b.test",
    )
    .await
    .unwrap();
    assert!(drain(&mut conn).await.is_empty());
    w.egress.finished().await;
    assert_eq!(w.egress.denials("bridge-out", "caller_denied"), 1);

    // Allowed by the egress, but the ingress has no route: refused there.
    let mut conn = call(
        &w.pki,
        &w.pki.client,
        w.egress.addr,
        "unrouted.cluster-b.test",
    )
    .await
    .unwrap();
    let _ = conn.write_all(b"hi").await;
    let _ = conn.flush().await;
    assert!(drain(&mut conn).await.is_empty());
    w.ingress.finished().await;
    w.egress.finished().await;
    assert_eq!(w.ingress.denials("bridge-in", "no_route"), 1);
    assert!(w.dest.seen.try_recv().is_err());
}

#[tokio::test]
async fn peer_asserting_an_origin_it_may_not_speak_for_is_refused() {
    let mut w = world().await;
    let claim = |origin: &str| {
        ProxyHeader::proxy(
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
        )
        .with_tlv(TLV_ORIGIN_ID, origin)
        .with_tlv(TLV_AUTHORITY, OPEN)
        .encode()
        .unwrap()
    };
    // Control: gateway A relaying a cluster-a origin to the open route gets through.
    let mut conn = bridge_dial(&w.pki, &w.pki.gw_a, w.ingress.addr).await;
    conn.write_all(&claim("spiffe://cluster-a.test/ns/other/sa/x"))
        .await
        .unwrap();
    assert_eq!(round_trip(&mut conn, b"ok").await, b"ok");
    w.dest.seen.recv().await.unwrap();
    drop(conn);
    w.ingress.finished().await;

    // Gateway A holds a valid bridge SVID but claims a cluster-c (then a cluster-b) origin: the
    // route would allow anyone, so only invariant 4 stands in the way.
    for origin in [
        "spiffe://cluster-c.test/ns/demo/sa/client",
        "spiffe://cluster-b.test/ns/demo/sa/client",
    ] {
        let mut conn = bridge_dial(&w.pki, &w.pki.gw_a, w.ingress.addr).await;
        conn.write_all(&claim(origin)).await.unwrap();
        conn.write_all(b"payload").await.unwrap();
        conn.flush().await.unwrap();
        assert!(drain(&mut conn).await.is_empty());
        w.ingress.finished().await;
    }
    assert_eq!(
        w.ingress
            .denials("bridge-in", "origin_not_allowed_for_peer"),
        2
    );
    assert_eq!(
        w.ingress
            .metrics
            .origins_refused
            .get_or_create(&ListenerLabels {
                listener: "bridge-in".into()
            })
            .get(),
        2
    );
    assert!(w.dest.seen.try_recv().is_err());
}

#[tokio::test]
async fn unknown_bridge_peer_is_refused() {
    let mut w = world().await;
    let gw_z = w.pki.bridge.issue("/gateway/cluster-z");
    let mut conn = bridge_dial(&w.pki, &gw_z, w.ingress.addr).await;
    let header = ProxyHeader::proxy(
        "127.0.0.1:1".parse().unwrap(),
        "127.0.0.1:2".parse().unwrap(),
    )
    .with_tlv(TLV_ORIGIN_ID, "spiffe://cluster-a.test/ns/demo/sa/client")
    .with_tlv(TLV_AUTHORITY, DEST);
    let _ = conn.write_all(&header.encode().unwrap()).await;
    let _ = conn.flush().await;
    assert!(drain(&mut conn).await.is_empty());
    w.ingress.finished().await;
    assert_eq!(w.ingress.denials("bridge-in", "unknown_peer"), 1);
}

/// A configured peer whose connection did not negotiate the relay protocol (an egress route with
/// `send_proxy_header = false`, whose first bytes are its caller's) is refused before anything
/// is read, even when those bytes are a well-formed header with an origin it may speak for.
#[tokio::test]
async fn peer_without_the_relay_protocol_is_refused_before_its_bytes_are_read() {
    let mut w = world().await;
    let forged = ProxyHeader::proxy(
        "127.0.0.1:1".parse().unwrap(),
        "127.0.0.1:2".parse().unwrap(),
    )
    .with_tlv(TLV_ORIGIN_ID, "spiffe://cluster-a.test/ns/demo/sa/client")
    .with_tlv(TLV_AUTHORITY, DEST)
    .encode()
    .unwrap();
    let mut conn = bridge_dial_offering(&w.pki, &w.pki.gw_a, w.ingress.addr, Vec::new()).await;
    let _ = conn.write_all(&forged).await;
    let _ = conn.write_all(b"hello").await;
    let _ = conn.flush().await;
    assert!(drain(&mut conn).await.is_empty());
    w.ingress.finished().await;
    assert_eq!(w.ingress.rejects("bridge-in", "relay_not_negotiated"), 1);
    assert!(
        w.dest.seen.try_recv().is_err(),
        "the destination was reached"
    );
}

/// Sends `bytes` as a configured peer and checks the ingress refuses with PROXY `reason`.
async fn header_refused(w: &mut World, bytes: &[u8], reason: &'static str) {
    let mut conn = bridge_dial(&w.pki, &w.pki.gw_a, w.ingress.addr).await;
    let _ = conn.write_all(bytes).await;
    let _ = conn.flush().await;
    if bytes.is_empty() {
        // Missing header: the peer closes its side without sending one.
        let _ = conn.shutdown().await;
    }
    assert!(drain(&mut conn).await.is_empty());
    w.ingress.finished().await;
    assert_eq!(
        w.ingress
            .metrics
            .proxy_header_errors
            .get_or_create(&ReasonLabels {
                listener: "bridge-in".into(),
                reason,
            })
            .get(),
        1,
        "reason {reason}"
    );
}

#[tokio::test]
async fn missing_junk_and_oversized_proxy_headers_are_refused() {
    let mut w = world().await;
    header_refused(&mut w, b"", "eof").await;
    header_refused(
        &mut w,
        b"GET / HTTP/1.1\r\nHost: echo\r\n\r\n",
        "not_proxy_v2",
    )
    .await;
    let huge = ProxyHeader::proxy(
        "127.0.0.1:1".parse().unwrap(),
        "127.0.0.1:2".parse().unwrap(),
    )
    .with_tlv(TLV_ORIGIN_ID, "spiffe://cluster-a.test/ns/demo/sa/client")
    .with_tlv(TLV_AUTHORITY, DEST)
    .with_tlv(0xE5, vec![b'x'; 8000])
    .encode()
    .unwrap();
    header_refused(&mut w, &huge, "too_long").await;
    // A header without the origin TLV: refused as an invalid origin.
    let no_origin = ProxyHeader::proxy(
        "127.0.0.1:1".parse().unwrap(),
        "127.0.0.1:2".parse().unwrap(),
    )
    .with_tlv(TLV_AUTHORITY, DEST)
    .encode()
    .unwrap();
    let mut conn = bridge_dial(&w.pki, &w.pki.gw_a, w.ingress.addr).await;
    conn.write_all(&no_origin).await.unwrap();
    conn.flush().await.unwrap();
    assert!(drain(&mut conn).await.is_empty());
    w.ingress.finished().await;
    assert_eq!(w.ingress.rejects("bridge-in", "origin_invalid"), 1);
    assert!(w.dest.seen.try_recv().is_err());
}

#[tokio::test]
async fn proxy_header_dribbled_past_the_deadline_is_refused() {
    let mut w = world().await;
    let header = ProxyHeader::proxy(
        "127.0.0.1:1".parse().unwrap(),
        "127.0.0.1:2".parse().unwrap(),
    )
    .with_tlv(TLV_ORIGIN_ID, "spiffe://cluster-a.test/ns/demo/sa/client")
    .with_tlv(TLV_AUTHORITY, DEST)
    .encode()
    .unwrap();
    let mut conn = bridge_dial(&w.pki, &w.pki.gw_a, w.ingress.addr).await;
    // One byte every 50 ms: the whole header would take seconds; the deadline is 300 ms. The
    // pacing is the behaviour under test, not synchronisation: completion is the `finished`
    // signal below.
    let dribble = tokio::spawn(async move {
        for b in header {
            if conn.write_all(&[b]).await.is_err() || conn.flush().await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        conn
    });
    w.ingress.finished().await;
    dribble.abort();
    assert_eq!(
        w.ingress
            .metrics
            .proxy_header_errors
            .get_or_create(&ReasonLabels {
                listener: "bridge-in".into(),
                reason: "timeout",
            })
            .get(),
        1
    );
    assert!(w.dest.seen.try_recv().is_err());
}

#[tokio::test]
async fn expired_bridge_svid_on_the_egress_side_is_refused_by_the_ingress() {
    let mut w = world().await;
    let expired = w.pki.bridge.issue_expired("/gateway/cluster-a");
    let state = EgressState::new(
        "bridge-out",
        egress_routes(w.ingress.addr),
        &w.pki.egress_ids(&expired),
        timeouts(),
        w.egress.metrics.clone(),
    )
    .unwrap();
    w.egress.cell.store(Arc::new(state));
    let mut conn = call(&w.pki, &w.pki.client, w.egress.addr, DEST)
        .await
        .unwrap();
    let _ = conn.write_all(b"hi").await;
    let _ = conn.flush().await;
    assert!(drain(&mut conn).await.is_empty());
    w.ingress.finished().await;
    w.egress.finished().await;
    assert_eq!(w.ingress.handshakes("bridge-in", "downstream", "error"), 1);
    assert!(w.dest.seen.try_recv().is_err());
}

#[tokio::test]
async fn expired_bridge_svid_on_the_ingress_side_is_refused_by_the_egress() {
    let mut w = world().await;
    let expired = w.pki.bridge.issue_expired("/gateway/cluster-b");
    let state = IngressState::new(
        "bridge-in",
        ingress_peers(),
        ingress_routes(w.dest.addr),
        &w.pki.ingress_ids(&expired),
        header_limits(),
        timeouts(),
        w.ingress.metrics.clone(),
    )
    .unwrap();
    w.ingress.cell.store(Arc::new(state));
    let mut conn = call(&w.pki, &w.pki.client, w.egress.addr, DEST)
        .await
        .unwrap();
    assert!(drain(&mut conn).await.is_empty());
    w.egress.finished().await;
    assert_eq!(w.egress.handshakes("bridge-out", "upstream", "error"), 1);
    assert_eq!(w.egress.rejects("bridge-out", "upstream_unavailable"), 1);
    assert!(w.dest.seen.try_recv().is_err());
}

#[tokio::test]
async fn renewed_bridge_svid_keeps_live_connections_and_is_used_by_new_ones() {
    let mut w = world().await;
    let mut long_lived = call(&w.pki, &w.pki.client, w.egress.addr, DEST)
        .await
        .unwrap();
    assert_eq!(round_trip(&mut long_lived, b"before").await, b"before");
    w.dest.seen.recv().await.unwrap();

    // Both gateways get renewed bridge SVIDs (same IDs, new keys and certificates).
    let gw_a2 = w.pki.bridge.issue("/gateway/cluster-a");
    let gw_b2 = w.pki.bridge.issue("/gateway/cluster-b");
    let egress_state = EgressState::new(
        "bridge-out",
        egress_routes(w.ingress.addr),
        &w.pki.egress_ids(&gw_a2),
        timeouts(),
        w.egress.metrics.clone(),
    )
    .unwrap();
    w.egress.cell.store(Arc::new(egress_state));
    let ingress_state = IngressState::new(
        "bridge-in",
        ingress_peers(),
        ingress_routes(w.dest.addr),
        &w.pki.ingress_ids(&gw_b2),
        header_limits(),
        timeouts(),
        w.ingress.metrics.clone(),
    )
    .unwrap();
    w.ingress.cell.store(Arc::new(ingress_state));

    // The live connection keeps working on its old sessions.
    assert_eq!(round_trip(&mut long_lived, b"after").await, b"after");

    // A new connection through the bridge works with the renewed SVIDs.
    let mut fresh = call(&w.pki, &w.pki.client, w.egress.addr, DEST)
        .await
        .unwrap();
    assert_eq!(round_trip(&mut fresh, b"fresh").await, b"fresh");
    w.dest.seen.recv().await.unwrap();

    // And new connections present the new certificates: the ingress to a bridge client ...
    let probe = bridge_dial(&w.pki, &w.pki.gw_a, w.ingress.addr).await;
    let presented = probe.get_ref().1.peer_certificates().unwrap()[0].clone();
    assert_eq!(presented, gw_b2.svid().chain()[0]);
    drop(probe);
    w.ingress.finished().await;

    // ... and the egress to its ingress (a recording stand-in for ingress B).
    let (recorder, recorder_addr) = bind().await;
    let verifier = SpiffeClientVerifier::new(
        BundleSet::new().with(w.pki.bridge.bundle()),
        Authorizer::member_of(w.pki.bridge.td.clone()),
    );
    let config = fedgate_federation::tls::server_config(&gw_b2.svid(), Arc::new(verifier)).unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let record = tokio::spawn(async move {
        let (tcp, _) = recorder.accept().await.unwrap();
        let tls = acceptor.accept(tcp).await.unwrap();
        tls.get_ref().1.peer_certificates().unwrap()[0].clone()
    });
    let egress_state = EgressState::new(
        "bridge-out",
        egress_routes(recorder_addr),
        &w.pki.egress_ids(&gw_a2),
        timeouts(),
        w.egress.metrics.clone(),
    )
    .unwrap();
    w.egress.cell.store(Arc::new(egress_state));
    let _conn = call(&w.pki, &w.pki.client, w.egress.addr, DEST)
        .await
        .unwrap();
    let presented = tokio::time::timeout(Duration::from_secs(10), record)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(presented, gw_a2.svid().chain()[0]);

    // The long-lived connection still works after all of that.
    assert_eq!(round_trip(&mut long_lived, b"still").await, b"still");
}

/// An egress route with `send_proxy_header = false` re-originates straight to a plain mTLS
/// server (one gateway between two trust domains, as in `bench/scenarios/70-fedgate-bridge-1hop.sh`):
/// the server sees the egress's upstream identity and the caller's bytes first, with no header.
#[tokio::test]
async fn egress_without_proxy_header_reaches_a_plain_mtls_server() {
    let pki = Pki::new();
    // The destination: cluster-b mTLS server that echoes every byte it gets, header or not.
    let verifier = SpiffeClientVerifier::new(
        BundleSet::new().with(pki.b.bundle()),
        Authorizer::member_of(pki.b.td.clone()),
    );
    let config =
        fedgate_federation::tls::server_config(&pki.echo.svid(), Arc::new(verifier)).unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let (listener, dest) = bind().await;
    let (peer_tx, mut peer_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let tls = acceptor.accept(tcp).await.unwrap();
        let _ = peer_tx.send(fedgate_federation::tls::peer_id(tls.get_ref().1).unwrap());
        workloads::echo(tls).await;
    });

    // The egress's upstream ("bridge") identity is its cluster-b SVID, verified by the
    // destination with cluster-b's bundle; the destination is pinned to the echo ID.
    let ids = Identities::new(
        pki.egress_local.svid(),
        pki.a.bundle(),
        pki.ingress_local.svid(),
        pki.b.bundle(),
        false,
    )
    .unwrap();
    let routes = Arc::new(
        EgressRoutes::new([(
            DEST.to_owned(),
            EgressRoute {
                name: "direct".into(),
                upstreams: Upstreams::from_socket_addrs([dest]),
                peer_id: pki.echo.id.clone(),
                allow: Authorizer::from_patterns(&["spiffe://cluster-a.test/ns/demo/sa/client"])
                    .unwrap(),
                send_proxy_header: false,
                transport: fedgate::config::Transport::Tls,
            },
        )])
        .unwrap(),
    );
    let metrics = BridgeMetrics::new();
    let state = Arc::new(
        EgressState::new("direct-out", routes, &ids, timeouts(), metrics.clone()).unwrap(),
    );
    let (egress_listener, egress) = bind().await;
    let (done_tx, mut done) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let (tcp, _) = egress_listener.accept().await.unwrap();
        egress::serve_connection(state, tcp).await;
        let _ = done_tx.send(());
    });

    let mut conn = call(&pki, &pki.client, egress, DEST).await.unwrap();
    // Byte-exact echo: a PROXY header sent upstream would have come back ahead of the message.
    assert_eq!(round_trip(&mut conn, b"no header").await, b"no header");
    assert_eq!(peer_rx.recv().await.unwrap(), pki.ingress_local.id);
    conn.shutdown().await.unwrap();
    assert!(drain(&mut conn).await.is_empty());
    tokio::time::timeout(Duration::from_secs(10), done.recv())
        .await
        .expect("egress connection did not finish")
        .unwrap();
    let forwarded = metrics
        .forwarded
        .get_or_create(&fedgate::bridge::metrics::RouteLabels {
            listener: "direct-out".into(),
            route: "direct".into(),
        })
        .get();
    assert_eq!(forwarded, 1);
}

/// X509-SVID.md §4.3 over the bridge: an egress whose bridge SVID chains through an
/// intermediate without keyCertSign is refused by the ingress; through a proper intermediate
/// it gets through.
#[tokio::test]
async fn bridge_svid_through_an_intermediate_without_key_cert_sign_is_refused_by_the_ingress() {
    use rcgen::KeyUsagePurpose;
    let mut w = world().await;
    let bad = w.pki.bridge.issue_via_intermediate(
        "/gateway/cluster-a",
        Some(vec![KeyUsagePurpose::DigitalSignature]),
    );
    let state = EgressState::new(
        "bridge-out",
        egress_routes(w.ingress.addr),
        &w.pki.egress_ids(&bad),
        timeouts(),
        w.egress.metrics.clone(),
    )
    .unwrap();
    w.egress.cell.store(Arc::new(state));
    let mut conn = call(&w.pki, &w.pki.client, w.egress.addr, DEST)
        .await
        .unwrap();
    let _ = conn.write_all(b"hi").await;
    let _ = conn.flush().await;
    assert!(drain(&mut conn).await.is_empty());
    w.ingress.finished().await;
    w.egress.finished().await;
    assert_eq!(w.ingress.handshakes("bridge-in", "downstream", "error"), 1);
    assert!(w.dest.seen.try_recv().is_err());

    // Control: the same shape of chain with keyCertSign is accepted.
    let good = w.pki.bridge.issue_via_intermediate(
        "/gateway/cluster-a",
        Some(vec![KeyUsagePurpose::KeyCertSign]),
    );
    let state = EgressState::new(
        "bridge-out",
        egress_routes(w.ingress.addr),
        &w.pki.egress_ids(&good),
        timeouts(),
        w.egress.metrics.clone(),
    )
    .unwrap();
    w.egress.cell.store(Arc::new(state));
    let mut conn = call(&w.pki, &w.pki.client, w.egress.addr, DEST)
        .await
        .unwrap();
    assert_eq!(round_trip(&mut conn, b"hello").await, b"hello");
    assert_eq!(w.ingress.handshakes("bridge-in", "downstream", "ok"), 1);
}

#[tokio::test]
async fn bridge_svid_through_an_intermediate_without_key_cert_sign_is_refused_by_the_egress() {
    let mut w = world().await;
    let bad = w
        .pki
        .bridge
        .issue_via_intermediate("/gateway/cluster-b", None);
    let state = IngressState::new(
        "bridge-in",
        ingress_peers(),
        ingress_routes(w.dest.addr),
        &w.pki.ingress_ids(&bad),
        header_limits(),
        timeouts(),
        w.ingress.metrics.clone(),
    )
    .unwrap();
    w.ingress.cell.store(Arc::new(state));
    let mut conn = call(&w.pki, &w.pki.client, w.egress.addr, DEST)
        .await
        .unwrap();
    assert!(drain(&mut conn).await.is_empty());
    w.egress.finished().await;
    assert_eq!(w.egress.handshakes("bridge-out", "upstream", "error"), 1);
    assert_eq!(w.egress.rejects("bridge-out", "upstream_unavailable"), 1);
    assert!(w.dest.seen.try_recv().is_err());
}

#[tokio::test]
async fn ingress_state_refuses_a_peer_speaking_for_the_local_domain() {
    let pki = Pki::new();
    // The ingress gateway is in cluster-b: a peer allowed to speak for cluster-b could assert
    // any of cluster-b's own workloads as the origin.
    let peers = Arc::new(
        BridgePeers::new([BridgePeer {
            id: id("spiffe://bridge.test/gateway/cluster-a"),
            may_speak_for: vec![
                TrustDomain::new("cluster-a.test").unwrap(),
                TrustDomain::new("cluster-b.test").unwrap(),
            ],
        }])
        .unwrap(),
    );
    let err = IngressState::new(
        "bridge-in",
        peers,
        ingress_routes("127.0.0.1:1".parse().unwrap()),
        &pki.ingress_ids(&pki.gw_b),
        header_limits(),
        timeouts(),
        BridgeMetrics::new(),
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("spiffe://bridge.test/gateway/cluster-a")
            && msg.contains("cluster-b.test")
            && msg.contains("may_speak_for"),
        "{msg}"
    );
}
