//! The demo's echo workload and probes (src/demo/{echo,probe}.rs) over real sockets on
//! 127.0.0.1:0: PROXY v2 handling, greetings, the call outcomes the scenarios rely on, and the
//! admin HTTP parser.

// Helpers outside #[test] fns unwrap too: a panic there is a test failure with a backtrace.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use fedgate_dataplane::proxy_protocol::{ProxyHeader, TLV_AUTHORITY, TLV_ORIGIN_ID, TLV_SPIFFE_ID};
use fedgate_demo::echo::{self, Greeting, HeaderOutcome};
use fedgate_demo::probe::{self, CallOutcome};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

const A_APP: &str = "spiffe://cluster-a.demo/ns/demo/sa/app";
const B_GW: &str = "spiffe://cluster-b.demo/fedgate/gateway";

/// Starts the echo on 127.0.0.1:0; it stops when the returned token is cancelled.
async fn start_echo() -> (SocketAddr, CancellationToken) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let token = CancellationToken::new();
    tokio::spawn(echo::serve(l, token.clone()));
    (addr, token)
}

fn header(tlvs: &[(u8, &[u8])]) -> Vec<u8> {
    let mut h = ProxyHeader::proxy(
        "10.0.0.1:40000".parse().unwrap(),
        "10.0.0.2:7443".parse().unwrap(),
    );
    for (k, v) in tlvs {
        h = h.with_tlv(*k, v.to_vec());
    }
    h.encode().unwrap()
}

/// Sends `bytes`, half-closes, returns everything the echo sent back.
async fn exchange(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    s.shutdown().await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn echo_greets_with_peer_and_origin_then_echoes_payload_sent_with_the_header() {
    let (addr, stop) = start_echo().await;
    let mut bytes = header(&[
        (TLV_SPIFFE_ID, B_GW.as_bytes()),
        (TLV_ORIGIN_ID, A_APP.as_bytes()),
        (TLV_AUTHORITY, b"echo.cluster-b.demo"),
    ]);
    // Payload in the same segment as the header: it must be echoed, not parsed.
    bytes.extend_from_slice(b"ping 1\n\r\n\r\n\0\r\nQUIT\n");
    let out = exchange(addr, &bytes).await;
    assert_eq!(
        out,
        format!("peer={B_GW} origin={A_APP}\nping 1\n\r\n\r\n\0\r\nQUIT\n")
    );
    stop.cancel();
}

#[tokio::test]
async fn echo_without_origin_says_dash() {
    let (addr, stop) = start_echo().await;
    let mut bytes = header(&[(TLV_SPIFFE_ID, A_APP.as_bytes())]);
    bytes.extend_from_slice(b"hello\n");
    assert_eq!(
        exchange(addr, &bytes).await,
        format!("peer={A_APP} origin=-\nhello\n")
    );
    let bytes = header(&[]);
    assert_eq!(exchange(addr, &bytes).await, "peer=- origin=-\n");
    stop.cancel();
}

#[tokio::test]
async fn echo_refuses_a_connection_without_a_proxy_header() {
    let (addr, stop) = start_echo().await;
    let out = exchange(addr, b"GET / HTTP/1.1\r\n\r\n").await;
    assert!(out.starts_with("error="), "{out:?}");
    assert_eq!(out.lines().count(), 1, "{out:?}");
    stop.cancel();
}

#[tokio::test]
async fn echo_keeps_the_greeting_on_one_printable_line() {
    let (addr, stop) = start_echo().await;
    let bytes = header(&[(TLV_SPIFFE_ID, b"spiffe://x/a b\nc\x01")]);
    assert_eq!(
        exchange(addr, &bytes).await,
        "peer=spiffe://x/a_b?c? origin=-\n"
    );
    stop.cancel();
}

#[tokio::test]
async fn read_header_stops_at_the_end_of_the_header() {
    let mut bytes = header(&[(TLV_SPIFFE_ID, A_APP.as_bytes())]);
    bytes.extend_from_slice(b"payload");
    let (mut client, mut server) = tokio::io::duplex(4096);
    client.write_all(&bytes).await.unwrap();
    drop(client);
    match echo::read_header(&mut server, echo::MAX_HEADER, Duration::from_secs(5)).await {
        HeaderOutcome::Header(h) => assert_eq!(h.peer_id(), Some(A_APP)),
        other => panic!("{other:?}"),
    }
    let mut rest = Vec::new();
    server.read_to_end(&mut rest).await.unwrap();
    assert_eq!(rest, b"payload");
}

#[tokio::test]
async fn read_header_reports_close_oversize_and_timeout() {
    let (client, mut server) = tokio::io::duplex(64);
    drop(client);
    assert_eq!(
        echo::read_header(&mut server, echo::MAX_HEADER, Duration::from_secs(5)).await,
        HeaderOutcome::Closed
    );

    let big = header(&[(TLV_SPIFFE_ID, &[b'a'; 300])]);
    let (mut client, mut server) = tokio::io::duplex(4096);
    client.write_all(&big).await.unwrap();
    match echo::read_header(&mut server, 100, Duration::from_secs(5)).await {
        HeaderOutcome::Invalid(reason) => assert!(reason.contains("limit"), "{reason}"),
        other => panic!("{other:?}"),
    }

    // A header that stops half-way: refused when the (short, tested) deadline passes.
    let (mut client, mut server) = tokio::io::duplex(64);
    client.write_all(&header(&[])[..5]).await.unwrap();
    match echo::read_header(&mut server, echo::MAX_HEADER, Duration::from_millis(200)).await {
        HeaderOutcome::Invalid(reason) => assert!(reason.starts_with("timeout"), "{reason}"),
        other => panic!("{other:?}"),
    }
    drop(client);
}

#[test]
fn greeting_lines_round_trip() {
    for g in [
        Greeting {
            peer: Some(A_APP.into()),
            origin: None,
        },
        Greeting {
            peer: Some(B_GW.into()),
            origin: Some(A_APP.into()),
        },
        Greeting {
            peer: None,
            origin: None,
        },
    ] {
        assert_eq!(Greeting::parse(&g.line()), Some(g.clone()));
        assert_eq!(Greeting::parse(&format!("{}\n", g.line())), Some(g));
    }
    for bad in [
        "",
        "peer=",
        "hello",
        "peer=x",
        "peer=x origin=",
        "error=timeout",
    ] {
        assert_eq!(Greeting::parse(bad), None, "{bad:?}");
    }
}

/// A stand-in for a sidecar outbound listener that behaves per `mode`.
async fn fake_outbound(mode: &'static str) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let mut line = Vec::new();
            let mut b = [0u8; 1];
            while s.read_exact(&mut b).await.is_ok() && b[0] != b'\n' {
                line.push(b[0]);
            }
            line.push(b'\n');
            match mode {
                "answer" => {
                    let mut out = format!("peer={A_APP} origin=-\n").into_bytes();
                    out.extend_from_slice(&line);
                    let _ = s.write_all(&out).await;
                }
                "garble" => {
                    let _ = s.write_all(b"peer=x origin=-\nsomething else\n").await;
                }
                _ => {} // "close": a refusal closes without an answer
            }
        }
    });
    addr
}

#[tokio::test]
async fn call_outcomes_distinguish_answer_denial_and_failure() {
    let ok = probe::call(fake_outbound("answer").await, "hi", Duration::from_secs(5)).await;
    assert_eq!(
        ok,
        CallOutcome::Answered(Greeting {
            peer: Some(A_APP.into()),
            origin: None
        })
    );
    assert_eq!(ok.exit_code(), 0);

    let denied = probe::call(fake_outbound("close").await, "hi", Duration::from_secs(5)).await;
    assert!(matches!(denied, CallOutcome::Denied(_)), "{denied:?}");
    assert_eq!(denied.exit_code(), 3);

    let garbled = probe::call(fake_outbound("garble").await, "hi", Duration::from_secs(5)).await;
    assert!(matches!(garbled, CallOutcome::Failed(_)), "{garbled:?}");

    // Nothing listening: a failure, never a denial.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = l.local_addr().unwrap();
    drop(l);
    let failed = probe::call(closed, "hi", Duration::from_secs(5)).await;
    assert!(matches!(failed, CallOutcome::Failed(_)), "{failed:?}");
    assert_eq!(failed.exit_code(), 1);
}

#[test]
fn call_outcomes_survive_the_child_round_trip() {
    let g = Greeting {
        peer: Some(B_GW.into()),
        origin: Some(A_APP.into()),
    };
    assert_eq!(
        CallOutcome::from_child(Some(0), &format!("{}\n", g.line()), ""),
        CallOutcome::Answered(g)
    );
    assert_eq!(
        CallOutcome::from_child(Some(3), "", "denied (closed)\n"),
        CallOutcome::Denied("denied (closed)".into())
    );
    assert!(matches!(
        CallOutcome::from_child(Some(0), "junk", ""),
        CallOutcome::Failed(_)
    ));
    assert!(matches!(
        CallOutcome::from_child(None, "", "killed"),
        CallOutcome::Failed(_)
    ));
}

#[test]
fn http_responses_parse_plain_and_chunked() {
    let plain = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
    assert_eq!(probe::parse_response(plain).unwrap(), (200, "ok".into()));
    let chunked =
        b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n";
    assert_eq!(
        probe::parse_response(chunked).unwrap(),
        (503, "{\"a\":1}".into())
    );
    assert!(probe::parse_response(b"garbage").is_err());
    assert!(probe::parse_response(b"HTTP/1.1 abc\r\n\r\n").is_err());
}

#[tokio::test]
async fn http_get_reads_a_real_response() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut buf = vec![0u8; 1024];
        let n = s.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"GET /readyz HTTP/1.1\r\n"));
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 14\r\n\r\n{\"ready\":true}")
            .await
            .unwrap();
    });
    let (code, body) = probe::http_get(addr, "/readyz", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(code, 200);
    assert!(body.starts_with("{\"ready\":true"));
}

mod props {
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn greeting_parse_never_panics(s in ".{0,200}") {
            let _ = super::Greeting::parse(&s);
        }

        #[test]
        fn http_parse_never_panics(b in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = super::probe::parse_response(&b);
        }
    }
}

#[tokio::test]
async fn peek_cert_sees_the_presented_leaf_without_trusting_it() {
    use std::sync::Arc;

    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["echo.cluster-b.demo".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let der = cert.der().to_vec();
    let config = rustls::ServerConfig::builder_with_provider(fedgate_federation::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        // The probe aborts the handshake: the server must never see a finished one.
        let _ = done_tx.send(acceptor.accept(s).await.is_ok());
    });
    let seen = probe::peek_cert(addr, "echo.cluster-b.demo", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(seen, der);
    assert_eq!(probe::fingerprint(&seen).len(), 64);
    assert!(!done_rx.await.unwrap(), "the handshake must not complete");
}
