//! SNI passthrough end to end over real sockets: the client does TLS with the upstream
//! through the gateway (which never decrypts); routing, failover and every refusal path.
// Helpers outside #[test] fns unwrap too: a failed step is a test failure.
#![allow(clippy::unwrap_used)]

#[path = "support/gw.rs"]
mod gw_support;

use std::time::Duration;

use gw_support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_exact_and_wildcard_names() {
    let pki = Pki::new();
    let (exact, _e) = tls_echo(&pki, "exact").await;
    let (wild, _w) = tls_echo(&pki, "wild").await;
    let (other, _o) = tls_echo(&pki, "other").await;
    let cfg = format!(
        "{HEADER}{}",
        listener(
            "egress",
            "",
            &[
                ("api.cluster-b.test", &[exact]),
                ("*.cluster-b.test", &[wild]),
                ("*.cluster-c.test", &[other])
            ]
        )
    );
    let app = TestApp::start(&cfg).await;
    let gw = app.addr("egress");
    assert_eq!(
        tag_via(&pki, gw, "api.cluster-b.test").await.unwrap(),
        "exact"
    );
    assert_eq!(
        tag_via(&pki, gw, "API.Cluster-B.test").await.unwrap(),
        "exact"
    );
    assert_eq!(
        tag_via(&pki, gw, "web.cluster-b.test").await.unwrap(),
        "wild"
    );
    assert_eq!(
        tag_via(&pki, gw, "x.cluster-c.test").await.unwrap(),
        "other"
    );
    let (mut stream, tag) = connect_tls(&pki, gw, "db.cluster-b.test").await.unwrap();
    assert_eq!(tag, "wild");
    echo(&mut stream, "hello through the gateway").await;
    close(stream).await;
    app.wait_metric("fedgate_connections_total{listener=\"egress\",route=\"*.cluster-b.test\",outcome=\"closed\"}", 2.0).await;
    assert!(
        app.metric(
            "fedgate_bytes_total{listener=\"egress\",route=\"*.cluster-b.test\",direction=\"in\"}"
        )
        .await
            > 0.0
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_with_failover_to_next_upstream() {
    let pki = Pki::new();
    let (a, _a) = tls_echo(&pki, "a").await;
    let (b, _b) = tls_echo(&pki, "b").await;
    let dead = dead_addr().await;
    let cfg = format!(
        "{HEADER}{}",
        listener("egress", "", &[("*.cluster-b.test", &[a, dead, b])])
    );
    let app = TestApp::start(&cfg).await;
    let mut tags = Vec::new();
    for _ in 0..6 {
        tags.push(
            tag_via(&pki, app.addr("egress"), "svc.cluster-b.test")
                .await
                .unwrap(),
        );
    }
    // Cursor 0: a; 1: dead → b; 2: b; then again.
    assert_eq!(tags, ["a", "b", "b", "a", "b", "b"]);
    let failures = format!(
        "fedgate_upstream_connect_failures_total{{listener=\"egress\",route=\"*.cluster-b.test\",upstream=\"{dead}\"}}"
    );
    assert_eq!(app.metric(&failures).await, 2.0);
    app.stop().await;
}

async fn refused(app: &TestApp, listener: &str, bytes: &[u8], reason: &str) {
    refused_then(app, listener, bytes, false, reason).await
}

async fn refused_then(app: &TestApp, listener: &str, bytes: &[u8], half_close: bool, reason: &str) {
    let metric = format!(
        "fedgate_rejected_connections_total{{listener=\"{listener}\",reason=\"{reason}\"}}"
    );
    let before = app.metric(&metric).await;
    let mut tcp = TcpStream::connect(app.addr(listener)).await.unwrap();
    // The gateway may close while we still write; that is the expected refusal.
    let _ = tcp.write_all(bytes).await;
    if half_close {
        tcp.shutdown().await.unwrap();
    }
    expect_closed(&mut tcp).await;
    app.wait_metric(&metric, before + 1.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_non_tls_and_bad_client_hellos() {
    let pki = Pki::new();
    let (up, _u) = tls_echo(&pki, "up").await;
    let cfg = format!(
        "{HEADER}{}",
        listener(
            "egress",
            "peek_timeout = \"300ms\"",
            &[("*.cluster-b.test", &[up])]
        )
    );
    let app = TestApp::start(&cfg).await;

    refused(
        &app,
        "egress",
        b"\x00\x01\x02 garbage garbage garbage",
        "not_tls",
    )
    .await;
    refused(
        &app,
        "egress",
        b"GET / HTTP/1.1\r\nHost: svc.cluster-b.test\r\n\r\n",
        "not_tls",
    )
    .await;

    // Truncated: half a ClientHello, then silence until the peek timeout.
    let hello = pki.client_hello("svc.cluster-b.test");
    refused(&app, "egress", &hello[..hello.len() / 2], "peek_timeout").await;

    // An SNI with a character DNS names cannot have, at the same length.
    let mut bad = pki.client_hello("badxname.cluster-b.test");
    let at = bad.windows(8).position(|w| w == b"badxname").unwrap();
    bad[at + 3] = b'_';
    refused(&app, "egress", &bad, "invalid_server_name").await;

    // A 64 KiB ClientHello: a handshake header announcing 64 KiB, then the bytes.
    let mut big = vec![0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0x01, 0x00, 0x00];
    big.resize(64 * 1024, 0);
    let metric_large =
        "fedgate_rejected_connections_total{listener=\"egress\",reason=\"client_hello_too_large\"}";
    let metric_malformed =
        "fedgate_rejected_connections_total{listener=\"egress\",reason=\"malformed_client_hello\"}";
    let before = app.metric(metric_large).await + app.metric(metric_malformed).await;
    let mut tcp = TcpStream::connect(app.addr("egress")).await.unwrap();
    let _ = tcp.write_all(&big).await;
    expect_closed(&mut tcp).await;
    app.wait_until(|| async {
        app.metric(metric_large).await + app.metric(metric_malformed).await == before + 1.0
    })
    .await;

    // Unknown SNI and no SNI, without a default route.
    refused(
        &app,
        "egress",
        &pki.client_hello("svc.cluster-z.test"),
        "unknown_sni",
    )
    .await;
    refused(&app, "egress", &pki.client_hello("127.0.0.1"), "no_sni").await;

    // Client gone before a full hello.
    refused_then(&app, "egress", b"\x16\x03\x01", true, "client_closed").await;

    // Still serving after all that.
    assert_eq!(
        tag_via(&pki, app.addr("egress"), "svc.cluster-b.test")
            .await
            .unwrap(),
        "up"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_route_takes_missing_and_unknown_sni() {
    let pki = Pki::new();
    let (b, _b) = tls_echo(&pki, "b").await;
    let (fallback, _f) = tls_echo(&pki, "fallback").await;
    let routes = listener(
        "ingress",
        "default_route = \"fallback\"",
        &[("*.cluster-b.test", &[b]), ("fallback.test", &[fallback])],
    )
    .replace(
        "sni = \"fallback.test\"",
        "name = \"fallback\"\nsni = \"fallback.test\"",
    );
    let app = TestApp::start(&format!("{HEADER}{routes}")).await;
    let gw = app.addr("ingress");
    assert_eq!(tag_via(&pki, gw, "x.cluster-b.test").await.unwrap(), "b");
    assert_eq!(tag_via(&pki, gw, "127.0.0.1").await.unwrap(), "fallback");
    assert_eq!(
        tag_via(&pki, gw, "fallback.test").await.unwrap(),
        "fallback"
    );
    app.stop().await;
}

/// Writes `bytes` one at a time, `gap` apart, on a blocking socket, then finishes the TLS
/// handshake with the same rustls client and reads the upstream's tag.
fn dribble_then_handshake(
    pki: &Pki,
    gw: std::net::SocketAddr,
    gap: Duration,
) -> std::io::Result<String> {
    use std::io::{BufRead, Write};
    let name = rustls::pki_types::ServerName::try_from("slow.cluster-b.test").unwrap();
    let mut conn = rustls::ClientConnection::new(pki.client_config(), name).unwrap();
    let mut hello = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut hello).unwrap();
    }
    let mut sock = std::net::TcpStream::connect(gw)?;
    sock.set_read_timeout(Some(Duration::from_secs(10)))?;
    for byte in &hello {
        sock.write_all(std::slice::from_ref(byte))?;
        // Pacing the client, not synchronising with the gateway.
        std::thread::sleep(gap);
    }
    let mut tls = std::io::BufReader::new(rustls::StreamOwned::new(conn, sock));
    let mut tag = String::new();
    tls.read_line(&mut tag)?;
    if tag.is_empty() {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(tag.trim().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dribbled_hello_accepted_before_timeout_refused_after() {
    let pki = Arc::new(Pki::new());
    let (up, _u) = tls_echo(&pki, "up").await;
    let cfg = format!(
        "{HEADER}{}{}",
        listener(
            "patient",
            "peek_timeout = \"20s\"",
            &[("*.cluster-b.test", &[up])]
        ),
        listener(
            "strict",
            "peek_timeout = \"300ms\"",
            &[("*.cluster-b.test", &[up])]
        ),
    );
    let app = TestApp::start(&cfg).await;
    let hello_len = pki.client_hello("slow.cluster-b.test").len() as u32;

    let (p, gw) = (pki.clone(), app.addr("patient"));
    let tag = tokio::task::spawn_blocking(move || {
        dribble_then_handshake(&p, gw, Duration::from_millis(1))
    })
    .await
    .unwrap();
    assert_eq!(tag.unwrap(), "up");

    // Spread the hello over twice the peek timeout.
    let gap = Duration::from_millis(600) / hello_len;
    let (p, gw) = (pki.clone(), app.addr("strict"));
    let result = tokio::task::spawn_blocking(move || dribble_then_handshake(&p, gw, gap))
        .await
        .unwrap();
    assert!(
        result.is_err(),
        "a hello completed after the peek timeout must be refused"
    );
    app.wait_metric(
        "fedgate_rejected_connections_total{listener=\"strict\",reason=\"peek_timeout\"}",
        1.0,
    )
    .await;
    app.stop().await;
}

use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_refusal_and_reset_close_only_that_connection() {
    let pki = Pki::new();
    let (good, _g) = tls_echo(&pki, "good").await;
    let (resetter, _r) = tcp_resetter().await;
    let dead = dead_addr().await;
    let cfg = format!(
        "{HEADER}{}",
        listener(
            "egress",
            "connect_timeout = \"2s\"",
            &[
                ("down.cluster-b.test", &[dead]),
                ("reset.cluster-b.test", &[resetter]),
                ("*.cluster-b.test", &[good])
            ]
        )
    );
    let app = TestApp::start(&cfg).await;
    let gw = app.addr("egress");

    // A long-lived connection through the good route stays up throughout.
    let (mut live, tag) = connect_tls(&pki, gw, "ok.cluster-b.test").await.unwrap();
    assert_eq!(tag, "good");

    assert!(tag_via(&pki, gw, "down.cluster-b.test").await.is_err());
    app.wait_metric(
        "fedgate_rejected_connections_total{listener=\"egress\",reason=\"upstream_unavailable\"}",
        1.0,
    )
    .await;

    assert!(tag_via(&pki, gw, "reset.cluster-b.test").await.is_err());
    app.wait_until(|| async {
        app.metric("fedgate_connections_total{listener=\"egress\",route=\"reset.cluster-b.test\",outcome=\"upstream_error\"}").await
            + app.metric("fedgate_connections_total{listener=\"egress\",route=\"reset.cluster-b.test\",outcome=\"closed\"}").await
            == 1.0
    })
    .await;

    echo(&mut live, "still here").await;
    assert_eq!(
        tag_via(&pki, gw, "again.cluster-b.test").await.unwrap(),
        "good"
    );
    close(live).await;
    app.stop().await;
}

/// A hand-built ClientHello handshake message of exactly `size` bytes for `name`, padded with a
/// large key_share-like extension (as post-quantum key shares make them).
fn large_client_hello_msg(name: &str, size: usize) -> Vec<u8> {
    fn vec_u16(data: &[u8]) -> Vec<u8> {
        let mut v = u16::try_from(data.len()).unwrap().to_be_bytes().to_vec();
        v.extend_from_slice(data);
        v
    }
    let build = |pad: usize| {
        let mut sni = vec![0u8];
        sni.extend_from_slice(&vec_u16(name.as_bytes()));
        let mut exts = Vec::new();
        exts.extend_from_slice(&0u16.to_be_bytes());
        exts.extend_from_slice(&vec_u16(&vec_u16(&sni)));
        exts.extend_from_slice(&0xfe00u16.to_be_bytes());
        let share: Vec<u8> = (0..pad).map(|i| (i % 251) as u8).collect();
        exts.extend_from_slice(&vec_u16(&share));
        let mut body = vec![3, 3];
        body.extend_from_slice(&[7; 32]);
        body.push(0);
        body.extend_from_slice(&vec_u16(&[0x13, 0x01]));
        body.extend_from_slice(&[1, 0]);
        body.extend_from_slice(&vec_u16(&exts));
        let mut msg = vec![1];
        msg.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes()[1..]);
        msg.extend_from_slice(&body);
        msg
    };
    let pad = size - build(0).len();
    let msg = build(pad);
    assert_eq!(msg.len(), size);
    msg
}

/// Frames a handshake message into TLS records of at most `record` bytes each.
fn records(msg: &[u8], record: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in msg.chunks(record) {
        out.extend_from_slice(&[0x16, 0x03, 0x01]);
        out.extend_from_slice(&u16::try_from(chunk.len()).unwrap().to_be_bytes());
        out.extend_from_slice(chunk);
    }
    out
}

/// An upstream that reads exactly `len` bytes of its first connection and reports them.
async fn recording_upstream(
    len: usize,
) -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Receiver<Vec<u8>>,
) {
    use tokio::io::AsyncReadExt;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut tcp, _) = l.accept().await.unwrap();
        let mut buf = vec![0u8; len];
        tcp.read_exact(&mut buf).await.unwrap();
        let _ = tx.send(buf);
    });
    (addr, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_post_quantum_client_hello_is_routed_with_its_exact_bytes() {
    let msg = large_client_hello_msg("pq.cluster-b.test", 20 * 1024);
    // A full 16 KiB record and the rest (what a TLS stack sends), and many small records.
    for (record, what) in [(16 * 1024, "two records"), (700, "many small records")] {
        let hello = records(&msg, record);
        let (up, received) = recording_upstream(hello.len()).await;
        let cfg = format!(
            "{HEADER}{}",
            listener("egress", "", &[("*.cluster-b.test", &[up])])
        );
        let app = TestApp::start(&cfg).await;
        let mut tcp = TcpStream::connect(app.addr("egress")).await.unwrap();
        tcp.write_all(&hello).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(10), received)
            .await
            .unwrap_or_else(|_| panic!("{what}: upstream received nothing"))
            .unwrap_or_else(|_| panic!("{what}: upstream gone"));
        assert!(got == hello, "{what}: upstream received other bytes");
        drop(tcp);
        app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_hello_over_the_configured_bound_is_refused() {
    let (up, _u) = tcp_sink().await;
    let cfg = format!(
        "{HEADER}{}",
        listener(
            "egress",
            "max_client_hello = 16384",
            &[("*.cluster-b.test", &[up])]
        )
    );
    let app = TestApp::start(&cfg).await;
    let msg = large_client_hello_msg("pq.cluster-b.test", 20 * 1024);
    refused(
        &app,
        "egress",
        &records(&msg, 16 * 1024),
        "client_hello_too_large",
    )
    .await;
    // Declared within the bound, but framed in records whose headers push it past it: the
    // buffer never grows beyond the bound.
    let msg = large_client_hello_msg("pq.cluster-b.test", 16 * 1024 - 100);
    refused(&app, "egress", &records(&msg, 10), "client_hello_too_large").await;
    app.stop().await;
}
