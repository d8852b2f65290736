//! The demo's probes: a call through a sidecar's outbound listener, a plain HTTP GET of an
//! admin endpoint, and a look at the certificate a TLS server presents. Each runs in process,
//! or as a hidden child (`fedgate demo call|http-get|peek-cert`) inside a network namespace.
//!
//! Invariants: every probe is bounded by a deadline and reads a bounded amount; a call counts
//! as *denied* only when the connection was accepted and then closed (or reset) without a
//! greeting, and as *failed* for anything else (e.g. nothing listening), so a broken setup is
//! never mistaken for a refusal.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context as _};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;

use super::echo::Greeting;

/// Most bytes a probe reads from a response.
const MAX_RESPONSE: usize = 1 << 20;

/// What a call through a sidecar produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallOutcome {
    /// The echo answered and echoed our message back.
    Answered(Greeting),
    /// The connection was accepted, then closed without an answer: someone refused it.
    Denied(String),
    /// Anything else (connect refused, timeout, a garbled answer).
    Failed(String),
}

// === impl CallOutcome ===

impl CallOutcome {
    /// One line for the report.
    pub fn describe(&self) -> String {
        match self {
            CallOutcome::Answered(g) => g.line(),
            CallOutcome::Denied(why) => format!("denied ({why})"),
            CallOutcome::Failed(why) => format!("failed ({why})"),
        }
    }

    /// The exit code of `fedgate demo call` for this outcome.
    pub fn exit_code(&self) -> u8 {
        match self {
            CallOutcome::Answered(_) => 0,
            CallOutcome::Denied(_) => 3,
            CallOutcome::Failed(_) => 1,
        }
    }

    /// Rebuilds the outcome from a `fedgate demo call` child's exit code and output.
    pub fn from_child(code: Option<i32>, stdout: &str, stderr: &str) -> Self {
        let first = |s: &str| s.lines().next().unwrap_or("").trim().to_owned();
        match code {
            Some(0) => match Greeting::parse(&first(stdout)) {
                Some(g) => CallOutcome::Answered(g),
                None => CallOutcome::Failed(format!("unexpected output {:?}", first(stdout))),
            },
            Some(3) => CallOutcome::Denied(first(stderr)),
            _ => CallOutcome::Failed(first(stderr)),
        }
    }
}

/// Connects to a sidecar's outbound listener at `addr`, sends `message` and expects the echo's
/// greeting followed by `message` back.
pub async fn call(addr: SocketAddr, message: &str, deadline: Duration) -> CallOutcome {
    match tokio::time::timeout(deadline, call_inner(addr, message)).await {
        Ok(outcome) => outcome,
        Err(_) => CallOutcome::Failed(format!(
            "no answer from {addr} within {}",
            humantime::format_duration(deadline)
        )),
    }
}

async fn call_inner(addr: SocketAddr, message: &str) -> CallOutcome {
    let mut stream = match TcpStream::connect(addr).await {
        Ok(s) => s,
        Err(e) => return CallOutcome::Failed(format!("cannot connect to {addr}: {e}")),
    };
    let line = format!("{}\n", message.trim_end());
    if let Err(e) = stream.write_all(line.as_bytes()).await {
        return CallOutcome::Denied(format!("closed while sending: {e}"));
    }
    let mut reader = BufReader::new(stream).take(MAX_RESPONSE as u64);
    let mut greeting = String::new();
    match reader.read_line(&mut greeting).await {
        Ok(0) => return CallOutcome::Denied("connection closed without an answer".into()),
        Ok(_) => {}
        Err(e) => return CallOutcome::Denied(format!("connection ended without an answer: {e}")),
    }
    let Some(g) = Greeting::parse(&greeting) else {
        return CallOutcome::Failed(format!("unexpected answer {:?}", greeting.trim_end()));
    };
    let mut echoed = String::new();
    match reader.read_line(&mut echoed).await {
        Ok(_) if echoed == line => CallOutcome::Answered(g),
        Ok(_) => CallOutcome::Failed(format!(
            "echo mismatch: sent {:?}, got {:?}",
            line.trim_end(),
            echoed.trim_end()
        )),
        Err(e) => CallOutcome::Failed(format!("echo not received: {e}")),
    }
}

/// `GET path` over plain HTTP/1.1 to `addr`: the status code and the body.
pub async fn http_get(
    addr: SocketAddr,
    path: &str,
    deadline: Duration,
) -> anyhow::Result<(u16, String)> {
    match tokio::time::timeout(deadline, http_get_inner(addr, path)).await {
        Ok(r) => r,
        Err(_) => bail!(
            "GET http://{addr}{path}: no response within {}",
            humantime::format_duration(deadline)
        ),
    }
}

async fn http_get_inner(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("GET http://{addr}{path}: cannot connect"))?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(req.as_bytes())
        .await
        .with_context(|| format!("GET http://{addr}{path}: cannot send the request"))?;
    let mut raw = Vec::new();
    (&mut stream)
        .take(MAX_RESPONSE as u64)
        .read_to_end(&mut raw)
        .await
        .with_context(|| format!("GET http://{addr}{path}: cannot read the response"))?;
    parse_response(&raw).with_context(|| format!("GET http://{addr}{path}"))
}

/// Parses an HTTP/1.1 response (`Connection: close`; plain or chunked body).
pub fn parse_response(raw: &[u8]) -> anyhow::Result<(u16, String)> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("the response has no end of headers")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let code: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked {
        dechunk(body).context("bad chunked body")?
    } else {
        body.to_owned()
    };
    Ok((code, body))
}

fn dechunk(mut s: &str) -> Option<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = s.split_once("\r\n")?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            return Some(out);
        }
        out.push_str(rest.get(..size)?);
        s = rest.get(size..)?.strip_prefix("\r\n")?;
    }
}

/// The DER of the leaf certificate the TLS server at `addr` presents for `server_name`. The
/// handshake is aborted right after the server's certificate arrives: nothing is trusted and
/// no data is exchanged.
pub async fn peek_cert(
    addr: SocketAddr,
    server_name: &str,
    deadline: Duration,
) -> anyhow::Result<Vec<u8>> {
    let name = ServerName::try_from(server_name.to_owned())
        .with_context(|| format!("{server_name:?} is not a valid TLS server name"))?;
    let tcp = tokio::time::timeout(deadline, TcpStream::connect(addr))
        .await
        .with_context(|| {
            format!(
                "no connection to {addr} within {}",
                humantime::format_duration(deadline)
            )
        })?
        .with_context(|| format!("cannot connect to {addr}"))?;
    let leaf = fedgate_federation::tls::peek::peek_leaf(tcp, name, deadline).await;
    leaf.map(|der| der.as_ref().to_vec()).with_context(|| {
        format!(
            "{addr} presented no certificate within {}",
            humantime::format_duration(deadline)
        )
    })
}

/// Lowercase hex SHA-256 of `der`, as `fedgate svid inspect` prints fingerprints.
pub fn fingerprint(der: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, der);
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}
