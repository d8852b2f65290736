//! The multiplexed bridge transport (`transport = "mux"`) end to end on 127.0.0.1: caller
//! (cluster-a) → egress A → one HTTP/2 tunnel → ingress B → destination (cluster-b); plus the
//! per-stream security checks of the ingress, driven by a hand-rolled tunnel peer.
//!
//! Each gateway task reports completion on a channel, so metrics are read only after an outcome
//! was recorded (no sleeps as synchronisation).

// Helpers outside #[test] fns unwrap too: a failure is a test failure with a backtrace.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/bridge_certs.rs"]
mod bridge_certs;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bridge_certs::workloads::{self, drain, round_trip, Destination};
use bridge_certs::{IssuedSvid, TestCa};
use bytes::Bytes;
use fedgate::bridge::egress::{EgressRoutes, EgressState};
use fedgate::bridge::ingress::{HeaderLimits, IngressRoutes, IngressState};
use fedgate::bridge::metrics::{ListenerLabels, ReasonLabels, RuleLabels};
use fedgate::bridge::mux::{MUX_ALPN, ORIGIN_HEADER, REASON_HEADER};
use fedgate::bridge::runtime::BridgeHandler;
use fedgate::bridge::{
    BridgeMetrics, BridgePeer, BridgePeers, EgressRoute, Identities, IngressRoute, Swap, Timeouts,
};
use fedgate::config::Transport;
use fedgate_dataplane::accept::Acceptor;
use fedgate_dataplane::proxy_protocol::{TLV_ORIGIN_ID, TLV_SPIFFE_ID};
use fedgate_dataplane::serve::{self, Connections, Service};
use fedgate_dataplane::upstreams::Upstreams;
use fedgate_federation::tls::{Authorizer, SpiffeServerVerifier};
use fedgate_federation::{BundleSet, SpiffeId, TrustDomain};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;

const CLIENT: &str = "/ns/demo/sa/client";
const ECHO: &str = "/ns/demo/sa/echo";
const DEST: &str = "echo.cluster-b.test";

struct Pki {
    a: TestCa,
    b: TestCa,
    bridge: TestCa,
    client: IssuedSvid,
    other: IssuedSvid,
    echo: IssuedSvid,
    egress_local: IssuedSvid,
    ingress_local: IssuedSvid,
    gw_a: IssuedSvid,
    gw_b: IssuedSvid,
    gw_c: IssuedSvid,
}

impl Pki {
    fn new() -> Pki {
        let a = TestCa::new("cluster-a.test");
        let b = TestCa::new("cluster-b.test");
        let bridge = TestCa::new("bridge.test");
        Pki {
            client: a.issue(CLIENT),
            other: a.issue("/ns/demo/sa/other"),
            echo: b.issue(ECHO),
            egress_local: a.issue("/ns/gateway/sa/egress"),
            ingress_local: b.issue("/ns/gateway/sa/ingress"),
            gw_a: bridge.issue("/gateway/cluster-a"),
            gw_b: bridge.issue("/gateway/cluster-b"),
            // A member of the bridge domain that is no configured peer of ingress B.
            gw_c: bridge.issue("/gateway/cluster-c"),
            a,
            b,
            bridge,
        }
    }

    fn egress_ids(&self) -> Identities {
        Identities::new(
            self.egress_local.svid(),
            self.a.bundle(),
            self.gw_a.svid(),
            self.bridge.bundle(),
            false,
        )
        .unwrap()
    }

    fn ingress_ids(&self) -> Identities {
        Identities::new(
            self.ingress_local.svid(),
            self.b.bundle(),
            self.gw_b.svid(),
            self.bridge.bundle(),
            false,
        )
        .unwrap()
    }
}

fn id(s: &str) -> SpiffeId {
    SpiffeId::parse(s).unwrap()
}

fn timeouts() -> Timeouts {
    Timeouts {
        handshake: Duration::from_secs(5),
        connect: Duration::from_secs(5),
        idle: Duration::from_secs(30),
    }
}

/// A running bridge gateway listener.
struct Gateway<S> {
    addr: SocketAddr,
    cell: Arc<Swap<S>>,
    metrics: BridgeMetrics,
    done: mpsc::UnboundedReceiver<()>,
    _shutdown: tokio_util::sync::DropGuard,
}

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

async fn spawn_gateway<S: Send + Sync + 'static>(
    name: &str,
    state: S,
    metrics: BridgeMetrics,
    handler: fn(Arc<Swap<S>>) -> BridgeHandler,
) -> Gateway<S> {
    let cell = Arc::new(Swap::new(Arc::new(state)));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
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

impl<S> Gateway<S> {
    async fn finished(&mut self) {
        tokio::time::timeout(Duration::from_secs(20), self.done.recv())
            .await
            .expect("gateway connection did not finish")
            .unwrap();
    }

    fn listener_count(&self, listener: &str, family: &str) -> i64 {
        let l = ListenerLabels {
            listener: listener.into(),
        };
        let m = &self.metrics;
        match family {
            "tunnels_opened" => m.mux_tunnels_opened.get_or_create(&l).get() as i64,
            "tunnels_open" => m.mux_tunnels_open.get_or_create(&l).get(),
            "streams" => m.mux_streams.get_or_create(&l).get() as i64,
            "streams_open" => m.mux_streams_open.get_or_create(&l).get(),
            other => panic!("no family {other}"),
        }
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

    fn refusals(&self, listener: &str, reason: &'static str) -> u64 {
        self.metrics
            .mux_stream_refusals
            .get_or_create(&ReasonLabels {
                listener: listener.into(),
                reason,
            })
            .get()
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
}

fn ingress_state(pki: &Pki, dest: SocketAddr, metrics: &BridgeMetrics) -> IngressState {
    let route = IngressRoute {
        name: "echo".into(),
        upstreams: Upstreams::from_socket_addrs([dest]),
        server_id: Authorizer::from_patterns(&["spiffe://cluster-b.test/ns/demo/sa/echo"]).unwrap(),
        allow: Authorizer::from_patterns(&["spiffe://cluster-a.test/ns/demo/sa/client"]).unwrap(),
        send_proxy_header: true,
    };
    let peers = BridgePeers::new([BridgePeer {
        id: id("spiffe://bridge.test/gateway/cluster-a"),
        may_speak_for: vec![TrustDomain::new("cluster-a.test").unwrap()],
    }])
    .unwrap();
    IngressState::new(
        "bridge-in",
        Arc::new(peers),
        Arc::new(IngressRoutes::new([(DEST.to_owned(), route)]).unwrap()),
        &pki.ingress_ids(),
        HeaderLimits {
            timeout: Duration::from_millis(300),
            max_len: 4096,
        },
        timeouts(),
        metrics.clone(),
    )
    .unwrap()
}

async fn spawn_ingress(
    pki: &Pki,
    dest: SocketAddr,
    drain: CancellationToken,
) -> Gateway<IngressState> {
    let metrics = BridgeMetrics::new();
    let state = ingress_state(pki, dest, &metrics).with_drain(drain);
    spawn_gateway("bridge-in", state, metrics, BridgeHandler::Ingress).await
}

fn egress_state(
    pki: &Pki,
    ingress: SocketAddr,
    peer: &str,
    pool_size: usize,
    max_streams: usize,
    metrics: &BridgeMetrics,
) -> EgressState {
    let route = EgressRoute {
        name: "echo".into(),
        upstreams: Upstreams::from_socket_addrs([ingress]),
        peer_id: id(peer),
        allow: Authorizer::from_patterns(&[
            "spiffe://cluster-a.test/ns/demo/sa/client",
            "spiffe://cluster-a.test/ns/demo/sa/other",
        ])
        .unwrap(),
        send_proxy_header: true,
        transport: Transport::Mux {
            pool_size,
            max_streams,
        },
    };
    EgressState::new(
        "bridge-out",
        Arc::new(EgressRoutes::new([(DEST.to_owned(), route)]).unwrap()),
        &pki.egress_ids(),
        timeouts(),
        metrics.clone(),
    )
    .unwrap()
}

async fn spawn_egress(
    pki: &Pki,
    ingress: SocketAddr,
    pool_size: usize,
    max_streams: usize,
) -> Gateway<EgressState> {
    let metrics = BridgeMetrics::new();
    let state = egress_state(
        pki,
        ingress,
        "spiffe://bridge.test/gateway/cluster-b",
        pool_size,
        max_streams,
        &metrics,
    );
    spawn_gateway("bridge-out", state, metrics, BridgeHandler::Egress).await
}

struct World {
    pki: Pki,
    dest: Destination,
    ingress: Gateway<IngressState>,
    egress: Gateway<EgressState>,
    drain: CancellationToken,
}

async fn world(pool_size: usize, max_streams: usize) -> World {
    let pki = Pki::new();
    let dest = workloads::spawn_destination(&pki.b, &pki.echo).await;
    let drain = CancellationToken::new();
    let ingress = spawn_ingress(&pki, dest.addr, drain.clone()).await;
    let egress = spawn_egress(&pki, ingress.addr, pool_size, max_streams).await;
    World {
        pki,
        dest,
        ingress,
        egress,
        drain,
    }
}

async fn call(
    w: &World,
    svid: &IssuedSvid,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    workloads::call(&w.pki.a, svid, &w.pki.egress_local.id, w.egress.addr, DEST).await
}

#[tokio::test]
async fn streams_share_one_tunnel_and_the_destination_learns_the_origin() {
    let mut w = world(2, 256).await;
    for round in 0..3 {
        let mut conn = call(&w, &w.pki.client).await.unwrap();
        assert_eq!(round_trip(&mut conn, b"hello mux").await, b"hello mux");
        let seen = w.dest.seen.recv().await.unwrap();
        assert_eq!(seen.tls_peer, w.pki.ingress_local.id);
        assert_eq!(
            seen.header.tlv(TLV_ORIGIN_ID),
            Some(w.pki.client.id.to_string().as_bytes()),
            "round {round}"
        );
        assert_eq!(
            seen.header.tlv(TLV_SPIFFE_ID),
            Some(w.pki.gw_a.id.to_string().as_bytes())
        );
        drop(conn);
        w.egress.finished().await;
    }
    // One tunnel carried all three connections.
    assert_eq!(w.egress.listener_count("bridge-out", "tunnels_opened"), 1);
    assert_eq!(w.egress.listener_count("bridge-out", "streams"), 3);
    assert_eq!(w.egress.listener_count("bridge-out", "streams_open"), 0);
    assert_eq!(w.ingress.listener_count("bridge-in", "tunnels_opened"), 1);
    assert_eq!(w.ingress.listener_count("bridge-in", "tunnels_open"), 1);
}

#[tokio::test]
async fn many_concurrent_streams_over_one_tunnel() {
    let w = Arc::new(world(1, 64).await);
    let mut tasks = Vec::new();
    for i in 0..40u32 {
        let w = Arc::clone(&w);
        tasks.push(tokio::spawn(async move {
            let mut conn = call(&w, &w.pki.client).await.unwrap();
            let msg = format!("stream {i} ").repeat(100).into_bytes();
            assert_eq!(round_trip(&mut conn, &msg).await, msg);
            conn
        }));
    }
    let mut conns = Vec::new();
    for t in tasks {
        conns.push(t.await.unwrap());
    }
    // All 40 were open at once, on one tunnel.
    assert_eq!(w.egress.listener_count("bridge-out", "streams_open"), 40);
    assert_eq!(w.egress.listener_count("bridge-out", "tunnels_opened"), 1);
    assert_eq!(w.ingress.listener_count("bridge-in", "streams"), 40);
}

#[tokio::test]
async fn bulk_transfer_both_directions_is_byte_exact() {
    let w = world(2, 256).await;
    let conn = call(&w, &w.pki.client).await.unwrap();
    let (mut rd, mut wr) = tokio::io::split(conn);
    let big: Vec<u8> = (0..8 << 20).map(|i: u32| (i % 251) as u8).collect();
    let sent = big.clone();
    // Write and read concurrently: the echo sends back as it receives.
    let writer = tokio::spawn(async move {
        wr.write_all(&sent).await.unwrap();
        wr.flush().await.unwrap();
        wr
    });
    let mut got = vec![0u8; big.len()];
    tokio::time::timeout(Duration::from_secs(60), rd.read_exact(&mut got))
        .await
        .expect("bulk echo timed out")
        .unwrap();
    assert!(got == big, "bulk bytes differ");
    let _ = writer.await.unwrap();
}

#[tokio::test]
async fn half_close_travels_both_ways() {
    let w = world(2, 256).await;
    let mut conn = call(&w, &w.pki.client).await.unwrap();
    conn.write_all(b"last words").await.unwrap();
    // Caller EOF → END_STREAM → the destination sees EOF, echoes, closes → the caller's EOF.
    conn.shutdown().await.unwrap();
    assert_eq!(drain(&mut conn).await, b"last words");
}

#[tokio::test]
async fn caller_bytes_that_look_like_http2_are_only_data() {
    let mut w = world(2, 256).await;
    // An HTTP/2 preface and a HEADERS frame claiming another origin, as the caller's data.
    let forged_origin = b"spiffe://cluster-a.test/ns/admin";
    let mut block = vec![0x00, ORIGIN_HEADER.len() as u8];
    block.extend_from_slice(ORIGIN_HEADER.as_bytes());
    block.push(forged_origin.len() as u8);
    block.extend_from_slice(forged_origin);
    let mut forged = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    forged.extend_from_slice(&[0, 0, block.len() as u8, 0x1, 0x4, 0, 0, 0, 3]);
    forged.extend_from_slice(&block);

    let mut conn = call(&w, &w.pki.client).await.unwrap();
    // Echoed verbatim: the bytes were the stream's data, nothing parsed them.
    assert_eq!(round_trip(&mut conn, &forged).await, forged);
    let seen = w.dest.seen.recv().await.unwrap();
    assert_eq!(
        seen.header.tlv(TLV_ORIGIN_ID),
        Some(w.pki.client.id.to_string().as_bytes())
    );
    // The next stream on the same tunnel is not affected either.
    let mut again = call(&w, &w.pki.other).await.unwrap();
    // `other` may use the egress route, but the ingress route allows only `client`.
    assert!(drain(&mut again).await.is_empty());
    w.egress.finished().await;
    assert_eq!(w.ingress.denials("bridge-in", "origin_denied"), 1);
    assert!(w.dest.seen.try_recv().is_err());
    assert_eq!(w.egress.listener_count("bridge-out", "tunnels_opened"), 1);
}

#[tokio::test]
async fn route_allow_list_applies_per_stream() {
    let mut w = world(1, 256).await;
    let mut ok = call(&w, &w.pki.client).await.unwrap();
    assert_eq!(round_trip(&mut ok, b"allowed").await, b"allowed");
    let mut denied = call(&w, &w.pki.other).await.unwrap();
    assert!(drain(&mut denied).await.is_empty());
    w.egress.finished().await;
    assert_eq!(w.ingress.denials("bridge-in", "origin_denied"), 1);
    assert_eq!(w.ingress.refusals("bridge-in", "origin_denied"), 1);
    // The egress learns the refusal from the answer.
    assert_eq!(w.egress.rejects("bridge-out", "mux_stream_refused"), 1);
    // The allowed stream on the same tunnel goes on.
    assert_eq!(round_trip(&mut ok, b"still here").await, b"still here");
    assert_eq!(w.egress.listener_count("bridge-out", "tunnels_opened"), 1);
}

#[tokio::test]
async fn a_full_pool_refuses_with_a_clear_reason() {
    let mut w = world(1, 1).await;
    let mut first = call(&w, &w.pki.client).await.unwrap();
    assert_eq!(round_trip(&mut first, b"one").await, b"one");
    let mut second = call(&w, &w.pki.client).await.unwrap();
    assert!(drain(&mut second).await.is_empty());
    w.egress.finished().await;
    assert_eq!(w.egress.rejects("bridge-out", "mux_saturated"), 1);
    assert_eq!(w.egress.refusals("bridge-out", "mux_saturated"), 1);
    assert_eq!(round_trip(&mut first, b"two").await, b"two");
}

#[tokio::test]
async fn egress_pins_the_tunnel_peer() {
    let pki = Pki::new();
    let dest = workloads::spawn_destination(&pki.b, &pki.echo).await;
    let ingress = spawn_ingress(&pki, dest.addr, CancellationToken::new()).await;
    let metrics = BridgeMetrics::new();
    // The route expects another gateway than the one listening.
    let state = egress_state(
        &pki,
        ingress.addr,
        "spiffe://bridge.test/gateway/elsewhere",
        2,
        256,
        &metrics,
    );
    let mut egress = spawn_gateway("bridge-out", state, metrics, BridgeHandler::Egress).await;
    let mut conn = workloads::call(&pki.a, &pki.client, &pki.egress_local.id, egress.addr, DEST)
        .await
        .unwrap();
    assert!(drain(&mut conn).await.is_empty());
    egress.finished().await;
    assert_eq!(egress.rejects("bridge-out", "upstream_unavailable"), 1);
    assert_eq!(egress.listener_count("bridge-out", "tunnels_opened"), 0);
}

/// A hand-rolled tunnel peer: dials the ingress with `svid` offering the tunnel protocol and
/// speaks HTTP/2 itself, so it can send what a fedgate egress never would.
async fn raw_tunnel(
    pki: &Pki,
    svid: &IssuedSvid,
    ingress: SocketAddr,
) -> Result<h2::client::SendRequest<Bytes>, h2::Error> {
    let verifier = SpiffeServerVerifier::new(
        BundleSet::new().with(pki.bridge.bundle()),
        Authorizer::exact(pki.gw_b.id.clone()),
    );
    let mut config =
        fedgate_federation::tls::client_config(Some(&svid.svid()), Arc::new(verifier)).unwrap();
    config.alpn_protocols = vec![MUX_ALPN.to_vec()];
    let tcp = TcpStream::connect(ingress).await.unwrap();
    let tls = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("bridge.test").unwrap(), tcp)
        .await
        .unwrap();
    let (send, conn) = h2::client::handshake(tls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    send.ready().await
}

fn connect_to(dest: &str) -> http::request::Builder {
    let mut parts = http::uri::Parts::default();
    parts.authority = Some(dest.parse().unwrap());
    http::Request::builder()
        .method(http::Method::CONNECT)
        .uri(http::Uri::from_parts(parts).unwrap())
}

/// Sends `request` on `send` and returns the answer's status and refusal label.
async fn answer(
    send: &mut h2::client::SendRequest<Bytes>,
    request: http::Request<()>,
) -> (u16, String) {
    let (response, _body) = send.send_request(request, false).unwrap();
    let response = tokio::time::timeout(Duration::from_secs(10), response)
        .await
        .expect("no answer")
        .unwrap();
    let reason = response
        .headers()
        .get(REASON_HEADER)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (response.status().as_u16(), reason)
}

#[tokio::test]
async fn ingress_checks_every_stream_of_a_tunnel() {
    let mut w = world(2, 256).await;
    let mut send = raw_tunnel(&w.pki, &w.pki.gw_a, w.ingress.addr)
        .await
        .unwrap();

    // No origin header.
    let none = connect_to(DEST).body(()).unwrap();
    assert_eq!(
        answer(&mut send, none).await,
        (400, "origin_invalid".into())
    );
    // Two origin headers.
    let two = connect_to(DEST)
        .header(ORIGIN_HEADER, "spiffe://cluster-a.test/ns/demo/sa/client")
        .header(ORIGIN_HEADER, "spiffe://cluster-a.test/ns/demo/sa/client")
        .body(())
        .unwrap();
    assert_eq!(answer(&mut send, two).await, (400, "origin_invalid".into()));
    // An origin of a trust domain this peer may not speak for.
    let foreign = connect_to(DEST)
        .header(ORIGIN_HEADER, "spiffe://cluster-c.test/ns/demo/sa/client")
        .body(())
        .unwrap();
    assert_eq!(
        answer(&mut send, foreign).await,
        (403, "origin_not_allowed_for_peer".into())
    );
    // The route's allow list.
    let other = connect_to(DEST)
        .header(ORIGIN_HEADER, "spiffe://cluster-a.test/ns/demo/sa/other")
        .body(())
        .unwrap();
    assert_eq!(
        answer(&mut send, other).await,
        (403, "origin_denied".into())
    );
    // No route.
    let unrouted = connect_to("nowhere.cluster-b.test")
        .header(ORIGIN_HEADER, "spiffe://cluster-a.test/ns/demo/sa/client")
        .body(())
        .unwrap();
    assert_eq!(answer(&mut send, unrouted).await, (403, "no_route".into()));
    // Nothing was dialed for any of them.
    assert!(w.dest.seen.try_recv().is_err());
    for (reason, n) in [
        ("origin_invalid", 2),
        ("origin_not_allowed_for_peer", 1),
        ("origin_denied", 1),
        ("no_route", 1),
    ] {
        assert_eq!(w.ingress.rejects("bridge-in", reason), n, "{reason}");
        assert_eq!(w.ingress.refusals("bridge-in", reason), n, "{reason}");
    }
    assert_eq!(
        w.ingress
            .denials("bridge-in", "origin_not_allowed_for_peer"),
        1
    );

    // A well-formed stream on the same tunnel is served.
    let ok = connect_to(DEST)
        .header(ORIGIN_HEADER, "spiffe://cluster-a.test/ns/demo/sa/client")
        .body(())
        .unwrap();
    assert_eq!(answer(&mut send, ok).await, (200, String::new()));
    let seen = w.dest.seen.recv().await.unwrap();
    assert_eq!(
        seen.header.tlv(TLV_ORIGIN_ID),
        Some(b"spiffe://cluster-a.test/ns/demo/sa/client".as_slice())
    );
    drop(send);
    w.ingress.finished().await;
}

#[tokio::test]
async fn a_bridge_member_that_is_no_configured_peer_cannot_open_a_tunnel() {
    let mut w = world(2, 256).await;
    let tunnel = raw_tunnel(&w.pki, &w.pki.gw_c, w.ingress.addr).await;
    if let Ok(mut send) = tunnel {
        // The preface may have been written before the ingress closed; no stream gets through.
        let ok = connect_to(DEST)
            .header(ORIGIN_HEADER, "spiffe://cluster-a.test/ns/demo/sa/client")
            .body(())
            .unwrap();
        if let Ok((response, _)) = send.send_request(ok, false) {
            assert!(response.await.is_err());
        }
    }
    w.ingress.finished().await;
    assert_eq!(w.ingress.denials("bridge-in", "unknown_peer"), 1);
    assert_eq!(w.ingress.listener_count("bridge-in", "tunnels_opened"), 0);
    assert!(w.dest.seen.try_recv().is_err());
}

#[tokio::test]
async fn drain_sends_goaway_lets_live_streams_finish_and_new_streams_use_a_new_tunnel() {
    goaway_then_new_tunnel(false).await;
}

#[tokio::test]
async fn a_rebuilt_ingress_state_sends_goaway_on_older_tunnels() {
    goaway_then_new_tunnel(true).await;
}

/// A live stream survives its tunnel's GOAWAY (from the ingress's shutdown drain, or from
/// `retire` after a state rebuild) while new connections go on a new tunnel.
async fn goaway_then_new_tunnel(rebuild: bool) {
    let mut w = world(2, 256).await;
    let mut live = call(&w, &w.pki.client).await.unwrap();
    assert_eq!(round_trip(&mut live, b"before").await, b"before");

    // The ingress state is replaced by one that is not draining, as a rebuilt (or restarted)
    // ingress's would be; the old one's tunnels get GOAWAY from the drain or the retirement.
    let old = w.ingress.cell.load();
    let fresh = ingress_state(&w.pki, w.dest.addr, &w.ingress.metrics);
    w.ingress.cell.store(Arc::new(fresh));
    if rebuild {
        old.retire();
    } else {
        w.drain.cancel();
    }
    // The live stream goes on (its answer also carries the GOAWAY to the egress).
    assert_eq!(round_trip(&mut live, b"during").await, b"during");

    // A new connection is not sent on the draining tunnel: a second tunnel carries it.
    let mut next = call(&w, &w.pki.client).await.unwrap();
    assert_eq!(round_trip(&mut next, b"after").await, b"after");
    assert_eq!(w.egress.listener_count("bridge-out", "tunnels_opened"), 2);

    // The live stream ends normally; then the drained tunnel closes.
    live.shutdown().await.unwrap();
    assert_eq!(drain(&mut live).await, b"");
    w.ingress.finished().await;
    assert_eq!(w.ingress.listener_count("bridge-in", "tunnels_opened"), 2);
    assert_eq!(w.ingress.listener_count("bridge-in", "tunnels_open"), 1);
}

#[tokio::test]
async fn a_rebuilt_egress_state_replaces_tunnels_for_new_streams_only() {
    let mut w = world(2, 256).await;
    let mut live = call(&w, &w.pki.client).await.unwrap();
    assert_eq!(round_trip(&mut live, b"old").await, b"old");
    // A rebuild (as after a bridge SVID rotation) keeps the pools but not their tunnels' turn.
    let old = w.egress.cell.load();
    let rebuilt = egress_state(
        &w.pki,
        w.ingress.addr,
        "spiffe://bridge.test/gateway/cluster-b",
        2,
        256,
        &w.egress.metrics,
    )
    .with_pools(Arc::clone(old.pools()));
    w.egress.cell.store(Arc::new(rebuilt));
    let mut next = call(&w, &w.pki.client).await.unwrap();
    assert_eq!(round_trip(&mut next, b"new").await, b"new");
    assert_eq!(w.egress.listener_count("bridge-out", "tunnels_opened"), 2);
    // The old tunnel's stream is untouched.
    assert_eq!(round_trip(&mut live, b"still").await, b"still");
    drop(live);
    w.egress.finished().await;
}

#[tokio::test]
async fn a_full_tunnel_makes_the_pool_dial_another_up_to_its_size() {
    let mut w = world(2, 1).await;
    let mut first = call(&w, &w.pki.client).await.unwrap();
    assert_eq!(round_trip(&mut first, b"one").await, b"one");
    let mut second = call(&w, &w.pki.client).await.unwrap();
    assert_eq!(round_trip(&mut second, b"two").await, b"two");
    assert_eq!(w.egress.listener_count("bridge-out", "tunnels_opened"), 2);
    // Both tunnels carry their one stream: a third connection is refused.
    let mut third = call(&w, &w.pki.client).await.unwrap();
    assert!(drain(&mut third).await.is_empty());
    w.egress.finished().await;
    assert_eq!(w.egress.rejects("bridge-out", "mux_saturated"), 1);
    // Once a stream ends, its tunnel takes the next one: no third tunnel.
    drop(first);
    w.egress.finished().await;
    let mut fourth = call(&w, &w.pki.client).await.unwrap();
    assert_eq!(round_trip(&mut fourth, b"four").await, b"four");
    assert_eq!(w.egress.listener_count("bridge-out", "tunnels_opened"), 2);
}
