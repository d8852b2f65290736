//! Bridged mode: re-originated mTLS across a bridge trust domain (docs/bridge.md).
//!
//! ```text
//! caller ─mTLS(local td)→ egress ─mTLS(bridge td) + PROXY v2→ ingress ─mTLS(local td)→ destination
//! ```
//!
//! * [`egress`] terminates the caller's mTLS (local trust domain only), authorizes the caller for
//!   the destination it asked for (its SNI), dials the peer's ingress with the bridge SVID (server
//!   pinned to the route's `peer_id`) and sends the caller's ID and the destination as the first
//!   bytes inside that TLS session (PROXY v2 with `TLV_ORIGIN_ID` and `TLV_AUTHORITY`).
//! * [`ingress`] terminates bridge mTLS, accepts only configured bridge peers, reads the PROXY v2
//!   header with a deadline and a size limit, accepts the origin ID only from a peer allowed to
//!   speak for its trust domain (invariant 4), authorizes (origin → destination) and re-originates
//!   mTLS to the destination with the local SVID.
//! * [`policy`] holds every authorization decision as a pure function; [`tls`] builds the rustls
//!   configs once per SVID/bundle change; [`metrics`] counts every refusal; [`runtime`] wires
//!   the listeners into `fedgate run`, whose accept loop (`crate::gateway::listener`) hands
//!   each connection to a bridge side. Upstreams, TLS deadlines and the hot-swap cell come from
//!   `fedgate_dataplane` (`upstreams`, `tls`, `swap`).
//!
//! Invariants: default deny everywhere (no route or no rule → refused, invariant 6); an SVID is
//! only ever verified against the bundle of the trust domain it claims (local on the outside,
//! bridge between gateways, invariant 1); every refusal ends that one connection with one log
//! line and one metric, never a panic (invariant 7).

pub mod egress;
pub mod ingress;
pub mod metrics;
pub mod mux;
pub mod policy;
pub mod runtime;
pub mod tls;

use std::io;
use std::sync::Arc;
use std::time::Duration;

use fedgate_dataplane::proxy_protocol::{ProxyError, ProxyHeader};
use fedgate_dataplane::tls::HandshakeError;
use fedgate_dataplane::upstreams::{DialFailure, Endpoint, Upstreams};
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

pub use fedgate_dataplane::swap::Swap;
pub use metrics::BridgeMetrics;
pub use policy::{BridgePeer, BridgePeers, Denial, EgressRoute, IngressRoute};
pub use tls::{BridgeTlsError, Identities};

/// Timeouts shared by both bridge sides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Time for the downstream TLS handshake to complete.
    pub handshake: Duration,
    /// Time to connect (TCP + TLS handshake) to one upstream address.
    pub connect: Duration,
    /// No bytes in either direction for this long closes the connection.
    pub idle: Duration,
}

/// Which hop of a bridged connection an event is about (a metric label).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// The accepted connection (caller → egress, or egress → ingress).
    Downstream,
    /// The connection this gateway dials (egress → ingress, or ingress → destination).
    Upstream,
}

/// Why a bridged connection was closed before (or while) pumping; [`BridgeReject::label`] is the
/// metric label.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BridgeReject {
    #[error("{side} TLS handshake failed: {source}")]
    Handshake {
        side: Side,
        #[source]
        source: io::Error,
    },
    #[error("{side} TLS handshake timed out after {after:?}")]
    HandshakeTimeout { side: Side, after: Duration },
    #[error("the verified peer certificate carries no SPIFFE ID")]
    NoPeerId,
    #[error("the caller sent no SNI: the destination is unknown")]
    NoDestination,
    #[error("authorization denied ({0})")]
    Denied(#[from] Denial),
    #[error("PROXY v2 header refused: {0}")]
    ProxyHeader(#[source] ProxyError),
    #[error(
        "bridge peer {peer} did not negotiate the relay protocol (ALPN {:?}), so its first bytes \
         are not read as an origin header; the peer egress route must have \
         send_proxy_header = true (the default)",
        String::from_utf8_lossy(fedgate_dataplane::relay::RELAY_ALPN)
    )]
    RelayNotNegotiated { peer: fedgate_federation::SpiffeId },
    #[error(
        "the upstream of route {route:?} did not accept the relay protocol (ALPN {:?}), so the \
         origin header cannot be sent; set send_proxy_header = false on the route if the upstream \
         is not a fedgate bridge ingress or a sidecar that lists this gateway in trusted_relays",
        String::from_utf8_lossy(fedgate_dataplane::relay::RELAY_ALPN)
    )]
    RelayRefusedUpstream { route: String },
    #[error("PROXY v2 header carries no destination (TLV_AUTHORITY)")]
    MissingAuthority,
    #[error("destination {destination:?} is not a DNS name usable as SNI")]
    InvalidDestination { destination: String },
    #[error("origin ID refused: {reason}")]
    OriginInvalid { reason: String },
    #[error("no upstream of route {route:?} accepted a connection (last error: {last})")]
    UpstreamUnavailable { route: String, last: String },
    #[error("cannot encode the PROXY v2 header: {0}")]
    ProxyEncode(#[source] ProxyError),
    #[error("I/O error while sending the PROXY v2 header upstream: {0}")]
    ProxySend(#[source] io::Error),
    #[error("connection ended with an error after authorization: {0}")]
    Pump(#[source] io::Error),
    #[error(
        "the upstream of route {route:?} did not accept the tunnel protocol (ALPN {:?}); is it a \
         fedgate bridge ingress of a version with transport = \"mux\"? Otherwise use \
         transport = \"tls\"",
        String::from_utf8_lossy(mux::MUX_ALPN)
    )]
    MuxRefusedUpstream { route: String },
    #[error("HTTP/2 error on the tunnel: {0}")]
    MuxProtocol(String),
    #[error(
        "all {tunnels} tunnels of route {route:?} carry mux_max_streams = {max_streams} streams; \
         raise mux_pool_size or mux_max_streams"
    )]
    MuxSaturated {
        route: String,
        tunnels: usize,
        max_streams: usize,
    },
    #[error(
        "the peer ingress refused the stream of route {route:?} (HTTP {status}, reason {reason:?})"
    )]
    MuxStreamRefused {
        route: String,
        status: u16,
        reason: String,
    },
    #[error("tunnel stream refused: {reason}")]
    MuxBadRequest { reason: String },
}

// === impl Side ===

impl Side {
    pub fn label(self) -> &'static str {
        match self {
            Side::Downstream => "downstream",
            Side::Upstream => "upstream",
        }
    }
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

// === impl BridgeReject ===

impl BridgeReject {
    /// A short stable label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            BridgeReject::Handshake { .. } => "handshake_failed",
            BridgeReject::HandshakeTimeout { .. } => "handshake_timeout",
            BridgeReject::NoPeerId => "no_peer_id",
            BridgeReject::NoDestination => "no_destination",
            BridgeReject::Denied(d) => d.label(),
            BridgeReject::ProxyHeader(_) => "proxy_header",
            BridgeReject::RelayNotNegotiated { .. } => "relay_not_negotiated",
            BridgeReject::RelayRefusedUpstream { .. } => "relay_refused_upstream",
            BridgeReject::MissingAuthority => "missing_authority",
            BridgeReject::InvalidDestination { .. } => "invalid_destination",
            BridgeReject::OriginInvalid { .. } => "origin_invalid",
            BridgeReject::UpstreamUnavailable { .. } => "upstream_unavailable",
            BridgeReject::ProxyEncode(_) => "proxy_encode_failed",
            BridgeReject::ProxySend(_) => "proxy_send_failed",
            BridgeReject::Pump(_) => "pump_error",
            BridgeReject::MuxRefusedUpstream { .. } => "mux_refused_upstream",
            BridgeReject::MuxProtocol(_) => "mux_protocol",
            BridgeReject::MuxSaturated { .. } => "mux_saturated",
            BridgeReject::MuxStreamRefused { .. } => "mux_stream_refused",
            BridgeReject::MuxBadRequest { .. } => "mux_bad_request",
        }
    }
}

/// Accepts the downstream TLS handshake within `timeout`, counting its outcome.
async fn accept_tls(
    listener: &str,
    acceptor: tokio_rustls::TlsAcceptor,
    tcp: TcpStream,
    timeout: Duration,
    metrics: &BridgeMetrics,
) -> Result<tokio_rustls::server::TlsStream<TcpStream>, BridgeReject> {
    let side = Side::Downstream;
    // Small records go out at once (as upstream, `connect_upstream`): without this, a mux
    // tunnel carrying many streams always has unacknowledged bytes in flight, so Nagle's
    // algorithm would hold each small frame for the peer's (delayed) ACK.
    let _ = tcp.set_nodelay(true);
    match fedgate_dataplane::tls::accept(&acceptor, tcp, timeout).await {
        Ok(tls) => {
            metrics.handshake(listener, side, "ok");
            Ok(tls)
        }
        Err(HandshakeError::Io(source)) => {
            metrics.handshake(listener, side, "error");
            Err(BridgeReject::Handshake { side, source })
        }
        Err(HandshakeError::Timeout(after)) => {
            metrics.handshake(listener, side, "timeout");
            Err(BridgeReject::HandshakeTimeout { side, after })
        }
    }
}

/// Connects over mTLS to the first endpoint of `upstreams` (in rotation) that completes TCP and
/// a TLS handshake with `config` within `connect_timeout`, sending `server_name` as SNI. A TCP
/// or TLS failure moves on to the next endpoint (nothing has been sent yet); every handshake
/// attempt is counted in the upstream handshake metric.
pub(crate) async fn connect_upstream(
    listener: &str,
    route: &str,
    upstreams: &Upstreams,
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
    connect_timeout: Duration,
    metrics: &BridgeMetrics,
) -> Result<TlsStream<TcpStream>, BridgeReject> {
    let connector = TlsConnector::from(config);
    let mut last = String::from("the route has no upstream addresses");
    let handshake = |_: &Endpoint, tcp: TcpStream| {
        // Bridged traffic is request/response: don't let Nagle delay small records.
        let _ = tcp.set_nodelay(true);
        connector.connect(server_name.clone(), tcp)
    };
    let failed = |addr: &Endpoint, failure: DialFailure<io::Error>| match failure {
        DialFailure::Connect(e) => {
            last = format!("connecting to {addr}: {e}");
            tracing::debug!(listener, route, %addr, error = %last, "upstream attempt failed");
        }
        DialFailure::Attempt(e) => {
            metrics.handshake(listener, Side::Upstream, "error");
            last = format!("TLS handshake with {addr}: {e}");
            tracing::debug!(listener, route, %addr, error = %last, "upstream attempt failed");
        }
        DialFailure::Timeout(after) => {
            metrics.handshake(listener, Side::Upstream, "timeout");
            last = format!("{addr}: no connection within {after:?}");
            tracing::debug!(listener, route, %addr, "upstream attempt timed out");
        }
    };
    match upstreams.connect(connect_timeout, handshake, failed).await {
        Ok((tls, _)) => {
            metrics.handshake(listener, Side::Upstream, "ok");
            Ok(tls)
        }
        Err(_) => Err(BridgeReject::UpstreamUnavailable {
            route: route.to_owned(),
            last,
        }),
    }
}

/// Sends `header` first on `upstream`, flushed, after checking that the upstream's handshake
/// selected the relay protocol (a peer that did not agree to read a header never gets one).
pub(crate) async fn send_relay_header(
    upstream: &mut TlsStream<TcpStream>,
    route: &str,
    header: &ProxyHeader,
) -> Result<(), BridgeReject> {
    use tokio::io::AsyncWriteExt;
    if !fedgate_dataplane::relay::negotiated(upstream.get_ref().1) {
        return Err(BridgeReject::RelayRefusedUpstream {
            route: route.to_owned(),
        });
    }
    upstream
        .write_all(&header.encode().map_err(BridgeReject::ProxyEncode)?)
        .await
        .map_err(BridgeReject::ProxySend)?;
    // tokio-rustls may keep the record buffered when the socket write was Pending; without the
    // flush the reader could wait forever for the header (bench/README.md "Caveats").
    upstream.flush().await.map_err(BridgeReject::ProxySend)
}

/// Pumps bytes between the two TLS sessions until both directions end, counting the bytes moved
/// (also those moved before a failure).
pub(crate) async fn pump_counted<A, B>(
    listener: &str,
    downstream: A,
    upstream: B,
    idle: Duration,
    metrics: &BridgeMetrics,
) -> Result<(), BridgeReject>
where
    A: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    B: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use fedgate_dataplane::pump::{pump, PumpError};
    match pump(downstream, upstream, idle).await {
        Ok(stats) => {
            metrics.bytes(listener, stats);
            Ok(())
        }
        Err(e) => {
            let partial = e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<PumpError>())
                .map(|p| p.stats);
            if let Some(stats) = partial {
                metrics.bytes(listener, stats);
            }
            Err(BridgeReject::Pump(e))
        }
    }
}

/// The one log line of a refused or failed bridged connection.
pub(crate) fn log_reject(
    listener: &str,
    role: &'static str,
    peer: Option<std::net::SocketAddr>,
    reject: &BridgeReject,
) {
    let peer = peer.map(|p| p.to_string()).unwrap_or_default();
    match reject {
        // Ends of connections that were authorized and forwarded are not refusals.
        BridgeReject::Pump(_) => tracing::debug!(
            listener, role, %peer, reason = reject.label(), error = %reject,
            "bridged connection ended with an error"
        ),
        _ => tracing::warn!(
            listener, role, %peer, reason = reject.label(), error = %reject,
            "bridged connection refused"
        ),
    }
}
