//! The demo's echo workload (`fedgate demo echo --listen ADDR`): it reads the PROXY v2 header
//! its sidecar sends, answers one line `peer=<TLV 0xE0> origin=<TLV 0xE1 or ->`, then echoes
//! every byte back until the client closes.
//!
//! Invariants: the header is read with a deadline and a size limit by the data plane's
//! reader, which stops exactly at its end, so what follows is payload (never re-parsed); a connection without a valid header gets one
//! `error=<reason>` line and is closed; the greeting is always one line of printable ASCII,
//! whatever the TLVs hold.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use fedgate_dataplane::proxy_protocol::{read_proxy_header, ProxyError, ProxyHeader};

/// Largest PROXY header the echo accepts (two SPIFFE IDs of 2 KiB each fit).
pub const MAX_HEADER: usize = 8192;
/// Time a client has to send the whole PROXY header.
pub const HEADER_DEADLINE: Duration = Duration::from_secs(5);
/// A connection idle for this long in both directions is closed.
const IDLE: Duration = Duration::from_secs(60);

/// What the echo learned from a PROXY v2 header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Greeting {
    /// TLV 0xE0: the peer the sidecar verified.
    pub peer: Option<String>,
    /// TLV 0xE1: the origin a trusted relay (a bridge ingress) vouched for.
    pub origin: Option<String>,
}

/// What the echo made of the start of a connection.
#[derive(Debug, PartialEq, Eq)]
pub enum HeaderOutcome {
    /// A valid header; what follows it is payload.
    Header(ProxyHeader),
    /// The client sent something that is not an acceptable PROXY v2 header (the reason).
    Invalid(String),
    /// The client closed before a whole header arrived.
    Closed,
}

// === impl Greeting ===

impl Greeting {
    pub fn from_header(h: &ProxyHeader) -> Self {
        Self {
            peer: printable(h.peer_id()),
            origin: printable(h.origin_id()),
        }
    }

    /// The greeting line, without the newline.
    pub fn line(&self) -> String {
        format!(
            "peer={} origin={}",
            self.peer.as_deref().unwrap_or("-"),
            self.origin.as_deref().unwrap_or("-")
        )
    }

    /// Parses a greeting line (the inverse of [`line`](Self::line)).
    pub fn parse(line: &str) -> Option<Self> {
        let rest = line.trim_end().strip_prefix("peer=")?;
        let (peer, origin) = rest.split_once(" origin=")?;
        let opt = |s: &str| (s != "-").then(|| s.to_owned());
        if peer.is_empty() || origin.is_empty() || origin.contains(' ') {
            return None;
        }
        Some(Self {
            peer: opt(peer),
            origin: opt(origin),
        })
    }
}

/// A fedgate TLV value (read with the header's accessors) as printable text: non-printable
/// or non-ASCII bytes (which a SPIFFE ID never holds) become `?`, spaces `_`, so the greeting
/// stays one line.
fn printable(value: Option<&str>) -> Option<String> {
    Some(
        value?
            .bytes()
            .map(|b| match b {
                b' ' => '_',
                0x21..=0x7e => char::from(b),
                _ => '?',
            })
            .collect(),
    )
}

/// Reads exactly one PROXY v2 header from `r` (at most `max_len` bytes, within `deadline`)
/// with the data plane's reader, which never consumes payload bytes.
pub async fn read_header<R: tokio::io::AsyncRead + Unpin>(
    r: &mut R,
    max_len: usize,
    deadline: Duration,
) -> HeaderOutcome {
    match read_proxy_header(r, max_len, deadline).await {
        Ok(h) => HeaderOutcome::Header(h),
        Err(ProxyError::Eof) => HeaderOutcome::Closed,
        Err(e) => HeaderOutcome::Invalid(format!("{}: {e}", e.label())),
    }
}

/// Serves the echo on `listener` until `shutdown`; each connection is one task.
pub async fn serve(listener: TcpListener, shutdown: CancellationToken) {
    let tracker = TaskTracker::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    tracker.spawn(handle(stream, peer));
                }
                Err(e) => {
                    eprintln!("echo: accept failed: {e}");
                    // Back off instead of spinning on a persistent accept error (e.g. EMFILE).
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    tracker.close();
    let _ = tokio::time::timeout(Duration::from_secs(2), tracker.wait()).await;
}

async fn handle(mut stream: TcpStream, from: SocketAddr) {
    let header = match read_header(&mut stream, MAX_HEADER, HEADER_DEADLINE).await {
        HeaderOutcome::Header(h) => h,
        HeaderOutcome::Invalid(reason) => {
            println!("echo: {from}: refused: {reason}");
            let line = format!("error={}\n", reason.replace(['\n', '\r'], " "));
            let _ = stream.write_all(line.as_bytes()).await;
            let _ = stream.shutdown().await;
            // Closing with unread input would reset the connection and could discard the
            // error line: drain a bounded amount first.
            let mut sink = [0u8; 4096];
            let drain = async {
                let mut left: usize = 64 * 1024;
                while left > 0 {
                    match stream.read(&mut sink).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => left = left.saturating_sub(n),
                    }
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
            return;
        }
        HeaderOutcome::Closed => return,
    };
    let greeting = Greeting::from_header(&header);
    println!("echo: {from}: {}", greeting.line());
    let mut out = greeting.line();
    out.push('\n');
    if stream.write_all(out.as_bytes()).await.is_err() {
        return;
    }
    let (mut r, mut w) = stream.split();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match tokio::time::timeout(IDLE, r.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => n,
        };
        if w.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = w.shutdown().await;
}
