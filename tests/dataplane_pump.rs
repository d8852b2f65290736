//! Byte pumps over real sockets on 127.0.0.1: bulk integrity both ways, half-close, idle
//! timeout, and resets mid-stream, for the TCP pump with splice (`pump_tcp(.., true)`) and
//! without (`pump_tcp(.., false)`, the default), and the generic userspace pump (`pump`).

// Helpers outside `#[test]` fns are not covered by clippy.toml's allow-*-in-tests; a panic in
// test code is a test failure with a backtrace, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io;
use std::time::Duration;

use fedgate_dataplane::pump::{pump, pump_tcp, PumpError, PumpFailure, PumpStats};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

const BULK: usize = 8 * 1024 * 1024;
/// Generous: the pump must end on its own long before this; hitting it means a hang.
const HANG: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug)]
enum Mode {
    Splice,
    TcpCopy,
    Userspace,
}

async fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (connected, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
    (connected.unwrap(), accepted.unwrap().0)
}

/// `client_app ⇄ [pump] ⇄ upstream_app`, with the pump running in its own task.
struct Relay {
    client: TcpStream,
    upstream: TcpStream,
    pump: JoinHandle<io::Result<PumpStats>>,
}

async fn relay(mode: Mode, idle: Duration) -> Relay {
    let (client, gw_client) = tcp_pair().await;
    let (gw_upstream, upstream) = tcp_pair().await;
    let pump = tokio::spawn(async move {
        match mode {
            Mode::Splice => pump_tcp(gw_client, gw_upstream, idle, true).await,
            Mode::TcpCopy => pump_tcp(gw_client, gw_upstream, idle, false).await,
            Mode::Userspace => pump(gw_client, gw_upstream, idle).await,
        }
    });
    Relay {
        client,
        upstream,
        pump,
    }
}

async fn finish(pump: JoinHandle<io::Result<PumpStats>>) -> io::Result<PumpStats> {
    tokio::time::timeout(HANG, pump)
        .await
        .expect("pump hung")
        .unwrap()
}

/// Deterministic pseudo-random bytes (xorshift64), so corruption or reordering shows.
fn data(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Writes `out` then shuts down writing, while reading everything the peer sends.
async fn exchange(stream: TcpStream, out: Vec<u8>) -> Vec<u8> {
    let (mut r, mut w) = stream.into_split();
    let writer = async move {
        w.write_all(&out).await.unwrap();
        w.shutdown().await.unwrap();
        w
    };
    let reader = async move {
        let mut got = Vec::new();
        r.read_to_end(&mut got).await.unwrap();
        got
    };
    let (_w, got) = tokio::join!(writer, reader);
    got
}

fn failure(err: &io::Error) -> &PumpFailure {
    &PumpError::from_io(err)
        .unwrap_or_else(|| panic!("no PumpError in {err:?}"))
        .failure
}

async fn bulk_both_ways(mode: Mode) {
    let Relay {
        client,
        upstream,
        pump,
    } = relay(mode, HANG).await;
    let (to_upstream, to_client) = (data(1, BULK), data(2, BULK));
    let at_client = tokio::spawn(exchange(client, to_upstream.clone()));
    let at_upstream = tokio::spawn(exchange(upstream, to_client.clone()));
    let (at_client, at_upstream) = (at_client.await.unwrap(), at_upstream.await.unwrap());
    assert_eq!(at_upstream.len(), BULK);
    assert_eq!(at_client.len(), BULK);
    assert!(at_upstream == to_upstream, "client→upstream bytes differ");
    assert!(at_client == to_client, "upstream→client bytes differ");
    let stats = finish(pump).await.unwrap();
    assert_eq!(
        stats,
        PumpStats {
            client_to_upstream: BULK as u64,
            upstream_to_client: BULK as u64
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn splice_moves_8_mib_each_way_byte_exact() {
    bulk_both_ways(Mode::Splice).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_copy_moves_8_mib_each_way_byte_exact() {
    bulk_both_ways(Mode::TcpCopy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn userspace_moves_8_mib_each_way_byte_exact() {
    bulk_both_ways(Mode::Userspace).await;
}

async fn half_close(mode: Mode) {
    let Relay {
        mut client,
        mut upstream,
        pump,
    } = relay(mode, HANG).await;
    client.write_all(b"request").await.unwrap();
    client.shutdown().await.unwrap();

    // The upstream sees EOF after the request, and can still answer.
    let mut request = Vec::new();
    upstream.read_to_end(&mut request).await.unwrap();
    assert_eq!(request, b"request");
    upstream.write_all(b"response").await.unwrap();
    upstream.shutdown().await.unwrap();

    let mut response = Vec::new();
    client.read_to_end(&mut response).await.unwrap();
    assert_eq!(response, b"response");
    let stats = finish(pump).await.unwrap();
    assert_eq!(
        stats,
        PumpStats {
            client_to_upstream: 7,
            upstream_to_client: 8
        }
    );
}

#[tokio::test]
async fn splice_half_close_keeps_the_other_direction() {
    half_close(Mode::Splice).await;
}

#[tokio::test]
async fn tcp_copy_half_close_keeps_the_other_direction() {
    half_close(Mode::TcpCopy).await;
}

#[tokio::test]
async fn userspace_half_close_keeps_the_other_direction() {
    half_close(Mode::Userspace).await;
}

async fn idle_timeout(mode: Mode) {
    let idle = Duration::from_millis(200);
    let Relay {
        mut client,
        upstream,
        pump,
    } = relay(mode, idle).await;
    let started = tokio::time::Instant::now();
    let err = finish(pump).await.unwrap_err();
    assert!(started.elapsed() >= idle);
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    assert!(matches!(failure(&err), PumpFailure::Idle(d) if *d == idle));
    assert_eq!(failure(&err).label(), "idle_timeout");
    // The pump dropped both connections.
    let mut buf = [0u8; 1];
    assert_eq!(client.read(&mut buf).await.unwrap(), 0);
    drop(upstream);
}

#[tokio::test]
async fn splice_idle_timeout_fires() {
    idle_timeout(Mode::Splice).await;
}

#[tokio::test]
async fn tcp_copy_idle_timeout_fires() {
    idle_timeout(Mode::TcpCopy).await;
}

#[tokio::test]
async fn userspace_idle_timeout_fires() {
    idle_timeout(Mode::Userspace).await;
}

async fn traffic_defers_idle_timeout(mode: Mode) {
    // The sleeps pace a slow but live client; the assertion is that 10 × 100 ms of trickling
    // traffic (1 s in all) is not cut by a 600 ms idle timeout, which only fires after it stops.
    let idle = Duration::from_millis(600);
    let Relay {
        mut client,
        mut upstream,
        pump,
    } = relay(mode, idle).await;
    for i in 0..10u8 {
        client.write_all(&[i]).await.unwrap();
        let mut b = [0u8; 1];
        upstream.read_exact(&mut b).await.unwrap();
        assert_eq!(b[0], i);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!pump.is_finished(), "idle timeout fired despite traffic");
    let err = finish(pump).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    let stats = PumpError::from_io(&err).unwrap().stats;
    assert_eq!(stats.client_to_upstream, 10);
}

#[tokio::test]
async fn splice_traffic_defers_idle_timeout() {
    traffic_defers_idle_timeout(Mode::Splice).await;
}

#[tokio::test]
async fn tcp_copy_traffic_defers_idle_timeout() {
    traffic_defers_idle_timeout(Mode::TcpCopy).await;
}

#[tokio::test]
async fn userspace_traffic_defers_idle_timeout() {
    traffic_defers_idle_timeout(Mode::Userspace).await;
}

/// The upstream (or client) reads part of a stream, then resets the connection.
async fn reset_mid_stream(mode: Mode, reset_upstream: bool) {
    let Relay {
        client,
        upstream,
        pump,
    } = relay(mode, HANG).await;
    let (sender, mut receiver) = if reset_upstream {
        (client, upstream)
    } else {
        (upstream, client)
    };
    let writer = tokio::spawn(async move {
        let mut sender = sender;
        let chunk = data(3, 64 * 1024);
        // Ends when the gateway closes this connection after the reset.
        for _ in 0..10_000 {
            if sender.write_all(&chunk).await.is_err() {
                return;
            }
        }
        panic!("writer never noticed the reset");
    });
    let mut buf = vec![0u8; 256 * 1024];
    receiver.read_exact(&mut buf).await.unwrap();
    socket2::SockRef::from(&receiver)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(receiver); // RST, with unread data still queued

    let err = finish(pump).await.unwrap_err();
    let expected = if reset_upstream { "upstream" } else { "client" };
    assert_eq!(failure(&err).label(), expected, "{err:?}");
    // At least what the receiver read before resetting went through.
    let stats = PumpError::from_io(&err).unwrap().stats;
    let delivered = if reset_upstream {
        stats.client_to_upstream
    } else {
        stats.upstream_to_client
    };
    assert!(delivered >= buf.len() as u64, "{stats:?}");
    tokio::time::timeout(HANG, writer)
        .await
        .expect("writer hung")
        .unwrap();
}

#[tokio::test]
async fn splice_upstream_reset_is_an_upstream_error() {
    reset_mid_stream(Mode::Splice, true).await;
}

#[tokio::test]
async fn tcp_copy_upstream_reset_is_an_upstream_error() {
    reset_mid_stream(Mode::TcpCopy, true).await;
}

#[tokio::test]
async fn userspace_upstream_reset_is_an_upstream_error() {
    reset_mid_stream(Mode::Userspace, true).await;
}

#[tokio::test]
async fn splice_client_reset_is_a_client_error() {
    reset_mid_stream(Mode::Splice, false).await;
}

#[tokio::test]
async fn tcp_copy_client_reset_is_a_client_error() {
    reset_mid_stream(Mode::TcpCopy, false).await;
}

#[tokio::test]
async fn userspace_client_reset_is_a_client_error() {
    reset_mid_stream(Mode::Userspace, false).await;
}

#[tokio::test]
async fn pump_works_over_non_tcp_streams() {
    let (client, gw_client) = tokio::io::duplex(1024);
    let (gw_upstream, upstream) = tokio::io::duplex(1024);
    let pump = tokio::spawn(pump(gw_client, gw_upstream, HANG));
    let to_upstream = data(4, 300_000);
    let to_client = data(5, 200_000);
    let (c, u) = tokio::join!(
        duplex_exchange(client, to_upstream.clone()),
        duplex_exchange(upstream, to_client.clone())
    );
    assert!(u == to_upstream && c == to_client);
    let stats = finish(pump).await.unwrap();
    assert_eq!(stats.client_to_upstream, 300_000);
    assert_eq!(stats.upstream_to_client, 200_000);
}

async fn duplex_exchange(stream: tokio::io::DuplexStream, out: Vec<u8>) -> Vec<u8> {
    let (mut r, mut w) = tokio::io::split(stream);
    let writer = async move {
        w.write_all(&out).await.unwrap();
        w.shutdown().await.unwrap();
        w
    };
    let reader = async move {
        let mut got = Vec::new();
        r.read_to_end(&mut got).await.unwrap();
        got
    };
    let (_w, got) = tokio::join!(writer, reader);
    got
}
