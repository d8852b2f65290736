//! The multiplexed bridge transport (`transport = "mux"`, docs/bridge.md "Multiplexed
//! transport"): caller connections ride as HTTP/2 CONNECT streams over a small pool of
//! long-lived bridge mTLS tunnels from an egress to a peer ingress.
//!
//! * [`tunnel`]: one egress-side tunnel (dialed, verified and pinned exactly like a per-connection
//!   bridge hop, then HTTP/2 over it) and the CONNECT stream it opens per caller connection;
//! * [`pool`]: the tunnels of one egress route, least-loaded first, replaced when stale;
//! * [`stream`]: an HTTP/2 stream as a byte stream (`AsyncRead + AsyncWrite`) for the pump;
//! * [`server`]: the ingress side's HTTP/2 loop with drain (GOAWAY) on shutdown.
//!
//! Invariants (invariant 10 of docs/threat-model.md):
//! * a connection is a tunnel **only** if its TLS handshake selected [`MUX_ALPN`]; ALPN is in the
//!   authenticated transcript, so no caller byte can turn a relay or plain connection into a
//!   tunnel or the reverse;
//! * the origin ID of a stream is the [`ORIGIN_HEADER`] request header, written only by the
//!   egress from the caller's verified certificate; caller bytes are only ever DATA of their
//!   own stream (HTTP/2 framing is done by the gateways, never by callers), so a caller cannot
//!   write a header, open a stream or touch another stream;
//! * the ingress applies to every stream exactly the checks of a per-connection hop: the tunnel
//!   peer's verified ID must be allowed to speak for the origin's trust domain, the origin must
//!   be on the route's `allow` list, the destination must present a `server_id` ID.

pub mod pool;
pub mod server;
pub mod stream;
pub mod tunnel;

use rustls::CommonState;

/// ALPN protocol ID of a tunnel (`fedgate-mux/1`): distinct from `fedgate-relay/1` and from plain
/// `h2`.
pub use fedgate_dataplane::relay::MUX_ALPN;

/// Request header carrying the origin's SPIFFE ID; exactly one, set by the egress only.
pub const ORIGIN_HEADER: &str = "fedgate-origin-id";

/// Response header of a refused stream: the ingress's refusal label (`BridgeReject::label`).
pub const REASON_HEADER: &str = "fedgate-reason";

/// Initial per-stream flow-control window (both directions). HTTP/2's default 64 KiB caps a
/// stream at 64 KiB per round trip (6.5 MB/s at 10 ms RTT); 2 MiB lets one bulk stream fill a
/// 1 Gbit/s path at 16 ms RTT. Memory stays bounded: the pump releases capacity only as it
/// reads, and everything a tunnel buffers is bounded by the connection window.
pub const STREAM_WINDOW: u32 = 2 * 1024 * 1024;

/// Initial connection-level window of a tunnel: four bulk streams at full stream window at once
/// before the connection window is the limit; the most one tunnel can buffer on the receiver.
pub const CONNECTION_WINDOW: u32 = 8 * 1024 * 1024;

/// Largest DATA frame either side accepts: the pump moves up to 64 KiB per write, so bulk
/// transfers need a quarter of the frames of HTTP/2's 16 KiB default.
pub const MAX_FRAME: u32 = 64 * 1024;

/// Largest header block accepted (a stream's request carries one SPIFFE ID of at most 2 KiB and
/// a destination name).
pub const MAX_HEADER_LIST: u32 = 16 * 1024;

/// Concurrent streams the ingress allows per tunnel (the egress's `mux_max_streams` upper bound).
pub const MAX_STREAMS_PER_TUNNEL: u32 = 10_000;

/// Whether the handshake on `conn` selected the tunnel protocol.
pub fn negotiated(conn: &CommonState) -> bool {
    conn.alpn_protocol() == Some(MUX_ALPN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tunnel_alpn_cannot_be_confused_with_the_relay_or_h2() {
        assert_ne!(MUX_ALPN, fedgate_dataplane::relay::RELAY_ALPN);
        assert_ne!(MUX_ALPN, b"h2");
        assert!(!fedgate_dataplane::relay::offered(Some(
            vec![MUX_ALPN].into_iter()
        )));
    }
}
