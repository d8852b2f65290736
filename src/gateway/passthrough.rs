//! SNI passthrough: peek the ClientHello, route on its SNI, dial an upstream, replay the
//! peeked bytes, relay (`pump::pump_tcp`).
//!
//! Invariants (5 and 7 of docs/threat-model.md): TLS is never terminated and no key is held; the peek
//! buffer never exceeds the listener's `max_client_hello`; the ClientHello must be complete
//! before `peek_timeout`; nothing is sent upstream until a route and a live upstream exist,
//! so trying the next upstream after a failed dial is always safe; every refusal closes only
//! this connection, with one log line and one `Reject` metric, and never panics.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::config::ListenerLimits;
use crate::gateway::state::{ConnContext, ListenerState, RouteTarget};
use crate::telemetry::metrics::UpstreamLabels;
use fedgate_dataplane::pump::{pump_tcp, PumpError, PumpFailure, PumpStats};
use fedgate_dataplane::sni::{ClientHelloInfo, HelloAssembler, SniError};
use fedgate_dataplane::upstreams::{DialFailure, Endpoint};

/// Bytes asked for per read while assembling the ClientHello.
const PEEK_READ: usize = 4096;

/// Why a connection was closed before splicing. `label()` is the metric label.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Reject {
    #[error("listener is at its connection limit")]
    OverLimit,
    #[error("no complete ClientHello within the peek timeout")]
    PeekTimeout,
    #[error("client closed the connection before a complete ClientHello")]
    ClientClosed,
    #[error("ClientHello larger than the listener's max_client_hello")]
    ClientHelloTooLarge,
    #[error("unacceptable ClientHello")]
    ClientHello(#[source] SniError),
    #[error("ClientHello has no SNI and the listener has no default route")]
    NoSni,
    #[error("no route for the SNI and the listener has no default route")]
    UnknownSni,
    #[error("every upstream of the route refused or timed out")]
    UpstreamUnavailable,
    #[error("i/o error before splicing")]
    Io(#[source] std::io::Error),
}

/// How a relayed connection ended (the `outcome` label of `fedgate_connections_total`). Its
/// discriminant indexes the route's cached counters (below `state::OUTCOMES`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Finish {
    /// Both sides closed.
    Closed,
    /// No bytes either way for `idle_timeout`.
    IdleTimeout,
    /// A reset or other I/O error on the client side.
    ClientError,
    /// A reset or other I/O error on the upstream side.
    UpstreamError,
    /// A local resource failed (e.g. no pipe for splice).
    LocalError,
    /// Still open when the drain deadline passed.
    Drained,
}

// === impl Reject ===

impl Reject {
    pub fn label(&self) -> &'static str {
        match self {
            Reject::OverLimit => "over_limit",
            Reject::PeekTimeout => "peek_timeout",
            Reject::ClientClosed => "client_closed",
            Reject::ClientHelloTooLarge => "client_hello_too_large",
            Reject::ClientHello(e) => e.label(),
            Reject::NoSni => "no_sni",
            Reject::UnknownSni => "unknown_sni",
            Reject::UpstreamUnavailable => "upstream_unavailable",
            Reject::Io(_) => "io_error",
        }
    }
}

// === impl Finish ===

const _: () = assert!(Finish::Drained as usize + 1 == crate::gateway::state::OUTCOMES);

impl Finish {
    fn label(self) -> &'static str {
        match self {
            Finish::Closed => "closed",
            Finish::IdleTimeout => "idle_timeout",
            Finish::ClientError => "client_error",
            Finish::UpstreamError => "upstream_error",
            Finish::LocalError => "local_error",
            Finish::Drained => "drained",
        }
    }
}

/// Serves one accepted connection to the end; logs and counts its outcome.
pub(crate) async fn serve(
    mut client: TcpStream,
    peer: SocketAddr,
    state: &ListenerState,
    cx: &ConnContext,
) {
    let limits = state.config.limits;
    let listener = &*cx.listener;
    let (peeked, hello) = match peek_client_hello(&mut client, &limits).await {
        Ok(p) => p,
        Err(reject) => return refuse(cx, peer, None, &reject),
    };
    let sni = hello.server_name.as_deref();
    let Some(route) = state.route(sni) else {
        let reject = if sni.is_none() {
            Reject::NoSni
        } else {
            Reject::UnknownSni
        };
        return refuse(cx, peer, sni, &reject);
    };
    let (mut upstream, upstream_addr) = match connect(route, limits.connect_timeout, cx).await {
        Some(u) => u,
        None => return refuse(cx, peer, sni, &Reject::UpstreamUnavailable),
    };
    // Counted live on its route until this function returns (or its future is dropped).
    let _live = crate::telemetry::metrics::Live::new(route.live(cx).clone());
    // The client socket has TCP_NODELAY from the listening socket (`listen::bind`).
    let _ = upstream.set_nodelay(true);
    if let Err(e) = upstream.write_all(&peeked).await {
        return refuse(cx, peer, sni, &Reject::Io(e));
    }
    let replayed = peeked.len() as u64;
    drop(peeked);

    let result = tokio::select! {
        r = pump_tcp(client, upstream, limits.idle_timeout, state.splice()) => r,
        _ = cx.hard_stop.cancelled() => Err(std::io::Error::other("drain deadline passed")),
    };
    let (finish, stats, error) = match result {
        Ok(stats) => (Finish::Closed, stats, None),
        Err(_) if cx.hard_stop.is_cancelled() => (Finish::Drained, PumpStats::default(), None),
        Err(e) => match PumpError::from_io(&e) {
            Some(p) => {
                let finish = match &p.failure {
                    PumpFailure::Idle(_) => Finish::IdleTimeout,
                    PumpFailure::Client(_) => Finish::ClientError,
                    PumpFailure::Upstream(_) => Finish::UpstreamError,
                    _ => Finish::LocalError,
                };
                let cause = std::error::Error::source(&p.failure).map(|c| c.to_string());
                (finish, p.stats, cause)
            }
            None => (
                Finish::LocalError,
                PumpStats::default(),
                Some(e.to_string()),
            ),
        },
    };
    let (bytes_in, bytes_out) = (
        replayed + stats.client_to_upstream,
        stats.upstream_to_client,
    );
    route.finished(cx, finish as usize, finish.label()).inc();
    route.bytes_in(cx).inc_by(bytes_in);
    route.bytes_out(cx).inc_by(bytes_out);
    tracing::info!(
        listener,
        %peer,
        sni = sni.unwrap_or("-"),
        route = %route.name,
        upstream = %upstream_addr,
        outcome = finish.label(),
        bytes_in,
        bytes_out,
        error = error.as_deref(),
        "connection closed"
    );
}

fn refuse(cx: &ConnContext, peer: SocketAddr, sni: Option<&str>, reject: &Reject) {
    cx.metrics.reject(&cx.listener, reject.label());
    let cause = std::error::Error::source(reject).map(|c| c.to_string());
    tracing::info!(
        listener = &*cx.listener,
        %peer,
        sni = sni.unwrap_or("-"),
        reason = reject.label(),
        cause = cause.as_deref(),
        "connection refused: {reject}"
    );
}

/// Reads until the buffer holds a complete ClientHello, within the listener's size and time
/// bounds. Returns the bytes read (to replay upstream) and what the hello says.
async fn peek_client_hello(
    client: &mut TcpStream,
    limits: &ListenerLimits,
) -> Result<(Vec<u8>, ClientHelloInfo), Reject> {
    let deadline = Instant::now() + limits.peek_timeout;
    // One read's worth: typical ClientHellos are 300 B to 2 KiB (more with post-quantum key
    // shares), so one allocation serves most connections; grow only as bytes arrive.
    let mut buf = Vec::with_capacity(PEEK_READ.min(limits.max_client_hello));
    // The same bound applies to the handshake message: a hello declaring more is refused as
    // soon as its length is visible, without waiting for the buffer to fill. The assembler
    // resumes after the records it has walked, so each read costs only its new bytes.
    let mut hello = HelloAssembler::new(limits.max_client_hello);
    loop {
        if buf.len() >= limits.max_client_hello {
            return Err(Reject::ClientHelloTooLarge);
        }
        let start = buf.len();
        let want = (limits.max_client_hello - start).min(PEEK_READ);
        buf.reserve_exact(want);
        buf.resize(start + want, 0);
        let read = tokio::time::timeout_at(deadline, client.read(&mut buf[start..])).await;
        let n = match read {
            Err(_) => return Err(Reject::PeekTimeout),
            Ok(Err(e)) => return Err(Reject::Io(e)),
            Ok(Ok(n)) => n,
        };
        buf.truncate(start + n);
        match hello.parse(&buf) {
            Ok(Some(info)) => return Ok((buf, info)),
            Err(e) => return Err(Reject::ClientHello(e)),
            Ok(None) if n == 0 => return Err(Reject::ClientClosed),
            Ok(None) => {}
        }
    }
}

/// Dials the route's upstreams in round-robin order, each within `timeout`; counts every
/// failure. `None` when all failed.
async fn connect<'r>(
    route: &'r RouteTarget,
    timeout: Duration,
    cx: &ConnContext,
) -> Option<(TcpStream, &'r Endpoint)> {
    let failed = |upstream: &Endpoint, failure: DialFailure<std::convert::Infallible>| {
        let error = match failure {
            DialFailure::Connect(e) => e.to_string(),
            DialFailure::Timeout(_) | DialFailure::Attempt(_) => format!(
                "no connection within {}",
                humantime::format_duration(timeout)
            ),
        };
        cx.metrics
            .upstream_connect_failures
            .get_or_create(&UpstreamLabels {
                listener: cx.listener.to_string(),
                route: route.name.clone(),
                upstream: upstream.to_string(),
            })
            .inc();
        tracing::debug!(listener = &*cx.listener, route = %route.name, %upstream, %error, "upstream connect failed; trying the next");
    };
    route.upstreams.connect_tcp(timeout, failed).await.ok()
}
