//! PROXY v2 over real TCP sockets on 127.0.0.1: the reader takes exactly the header from a
//! segment that also carries payload, and a silent or oversized sender is refused in bounded
//! time.

// Helpers outside `#[test]` fns are not covered by clippy.toml's allow-*-in-tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use fedgate_dataplane::proxy_protocol::{
    read_proxy_header, ProxyError, ProxyHeader, TLV_AUTHORITY, TLV_ORIGIN_ID,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const MAX: usize = 1024;

async fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (connected, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
    (connected.unwrap(), accepted.unwrap().0)
}

#[tokio::test]
async fn header_and_payload_in_one_segment() {
    let (mut sender, mut receiver) = tcp_pair().await;
    let header = ProxyHeader::proxy(sender.local_addr().unwrap(), sender.peer_addr().unwrap())
        .with_tlv(TLV_ORIGIN_ID, "spiffe://cluster-a.test/ns/app/sa/caller")
        .with_tlv(TLV_AUTHORITY, "svc.cluster-b.test:8443");
    let mut wire = header.encode().unwrap();
    wire.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
    sender.write_all(&wire).await.unwrap();
    sender.shutdown().await.unwrap();

    let got = read_proxy_header(&mut receiver, MAX, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(got, header);
    assert_eq!(
        got.origin_id(),
        Some("spiffe://cluster-a.test/ns/app/sa/caller")
    );
    assert_eq!(got.authority(), Some("svc.cluster-b.test:8443"));
    let mut payload = Vec::new();
    receiver.read_to_end(&mut payload).await.unwrap();
    assert_eq!(payload, b"GET / HTTP/1.1\r\n\r\n");
}

#[tokio::test]
async fn silent_sender_times_out() {
    let (sender, mut receiver) = tcp_pair().await;
    let err = read_proxy_header(&mut receiver, MAX, Duration::from_millis(50))
        .await
        .unwrap_err();
    assert!(matches!(err, ProxyError::Timeout(_)), "{err}");
    drop(sender);
}

#[tokio::test]
async fn tls_client_hello_is_not_a_proxy_header() {
    let (mut sender, mut receiver) = tcp_pair().await;
    sender.write_all(b"\x16\x03\x01\x00\xc8\x01").await.unwrap();
    let err = read_proxy_header(&mut receiver, MAX, Duration::from_secs(10))
        .await
        .unwrap_err();
    assert_eq!(err.label(), "not_proxy_v2");
}

#[tokio::test]
async fn oversized_header_is_refused_before_its_body_arrives() {
    let (mut sender, mut receiver) = tcp_pair().await;
    let header = ProxyHeader::local().with_tlv(0x30, vec![0; 4000]);
    let wire = header.encode().unwrap();
    // Only the fixed part is sent; the refusal cannot depend on the rest.
    sender.write_all(&wire[..16]).await.unwrap();
    let err = read_proxy_header(&mut receiver, MAX, Duration::from_secs(10))
        .await
        .unwrap_err();
    assert!(matches!(err, ProxyError::TooLong { max: MAX, .. }), "{err}");
    drop(sender);
}
