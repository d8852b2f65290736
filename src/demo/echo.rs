//! The demo's echo workload (`fedgate demo echo --listen ADDR`): it reads the PROXY v2 header
//! its sidecar sends, answers one line `peer=<TLV 0xE0> origin=<TLV 0xE1 or ->`, then echoes
//! every byte back until the client closes.
//!
//! Invariants: the header is read with a deadline and a size limit, and bytes after it are
//! payload (never re-parsed); a connection without a valid header gets one
//! `error=<reason>` line and is closed; the greeting is always one line of printable ASCII,
//! whatever the TLVs hold.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::proxy_protocol::{ProxyHeader, TLV_ORIGIN_ID, TLV_SPIFFE_ID};

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

/// Why the echo could not read a header.
#[derive(Debug, PartialEq, Eq)]
pub enum HeaderOutcome {
    /// A header, and the payload bytes that arrived with it.
    Header(ProxyHeader, Vec<u8>),
    /// The client sent something that is not a PROXY v2 header.
    Invalid(String),
    /// The client closed before a whole header arrived.
    Closed,
}

// === impl Greeting ===

impl Greeting {
    pub fn from_header(h: &ProxyHeader) -> Self {
        Self {
            peer: tlv_text(h, TLV_SPIFFE_ID),
            origin: tlv_text(h, TLV_ORIGIN_ID),
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

/// The value of the first TLV of `kind` as printable text: non-printable or non-ASCII bytes
/// (which a SPIFFE ID never holds) become `?`, spaces `_`, so the greeting stays one line.
fn tlv_text(h: &ProxyHeader, kind: u8) -> Option<String> {
    let tlv = h.tlvs.iter().find(|t| t.kind == kind)?;
    Some(
        tlv.value
            .iter()
            .map(|&b| match b {
                b' ' => '_',
                0x21..=0x7e => char::from(b),
                _ => '?',
            })
            .collect(),
    )
}

/// Reads a PROXY v2 header from `r`: at most `max_len` bytes, within `deadline`. Bytes after
/// the header that arrived in the same reads are returned as payload.
pub async fn read_header<R: tokio::io::AsyncRead + Unpin>(
    r: &mut R,
    max_len: usize,
    deadline: Duration,
) -> HeaderOutcome {
    let read = async {
        let mut buf = Vec::with_capacity(256);
        let mut chunk = [0u8; 1024];
        loop {
            match ProxyHeader::decode(&buf, max_len) {
                Ok(Some((h, used))) => return HeaderOutcome::Header(h, buf.split_off(used)),
                Ok(None) => {}
                Err(e) => return HeaderOutcome::Invalid(e.to_string()),
            }
            if buf.len() >= max_len {
                return HeaderOutcome::Invalid(format!("no complete header in {max_len} bytes"));
            }
            let want = chunk.len().min(max_len - buf.len());
            match r.read(&mut chunk[..want]).await {
                Ok(0) => return HeaderOutcome::Closed,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) => return HeaderOutcome::Invalid(format!("read error: {e}")),
            }
        }
    };
    match tokio::time::timeout(deadline, read).await {
        Ok(outcome) => outcome,
        Err(_) => HeaderOutcome::Invalid(format!(
            "no complete header within {}",
            humantime::format_duration(deadline)
        )),
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
    let (header, payload) = match read_header(&mut stream, MAX_HEADER, HEADER_DEADLINE).await {
        HeaderOutcome::Header(h, payload) => (h, payload),
        HeaderOutcome::Invalid(reason) => {
            println!("echo: {from}: refused: {reason}");
            let line = format!("error={}\n", reason.replace(['\n', '\r'], " "));
            let _ = stream.write_all(line.as_bytes()).await;
            return;
        }
        HeaderOutcome::Closed => return,
    };
    let greeting = Greeting::from_header(&header);
    println!("echo: {from}: {}", greeting.line());
    let mut out = greeting.line();
    out.push('\n');
    if stream.write_all(out.as_bytes()).await.is_err() || stream.write_all(&payload).await.is_err()
    {
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
