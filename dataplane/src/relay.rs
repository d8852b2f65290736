//! The relay role, negotiated per connection with a dedicated ALPN protocol (ADR 0007).
//!
//! A *relay* is a fedgate hop that forwards a caller's connection and tells the next hop who the
//! caller is, in a PROXY v2 header sent as the first bytes inside the TLS session: the bridge
//! egress towards a peer ingress, and the bridge ingress towards a destination sidecar.
//!
//! Invariants (invariant 9 of docs/threat-model.md, which states it and the attack it stops):
//! * a receiver reads a relay header **only** on a connection whose TLS handshake selected
//!   [`RELAY_ALPN`]; on any other connection the stream bytes are the caller's data and are never
//!   interpreted, whatever the configuration says;
//! * a sender writes a relay header **only** after the handshake selected [`RELAY_ALPN`], and it
//!   offers the protocol only on routes configured to send one;
//! * a receiver that expects a relay (a bridge ingress always; a sidecar for a client in
//!   `trusted_relays`) refuses a connection that did not negotiate the protocol, and a sidecar
//!   refuses a client that negotiated it without being a trusted relay.
//!
//! ALPN is part of the authenticated TLS handshake transcript, so neither a caller writing bytes
//! into the stream nor anyone on the path can add or remove it; the relay role is a property of
//! the connection, never of two settings that must agree.

use rustls::CommonState;

/// The ALPN protocol ID of a relay hop: "the first bytes in this session are a PROXY v2 header
/// from a relay that vouches for the origin it names".
pub const RELAY_ALPN: &[u8] = b"fedgate-relay/1";

/// The ALPN protocol ID of a multiplexed bridge tunnel (fedgate's `bridge::mux`): "this session
/// speaks HTTP/2, one CONNECT stream per relayed connection, the origin in a request header".
/// Kept beside [`RELAY_ALPN`] so the two cannot collide; never accepted as the relay protocol.
pub const MUX_ALPN: &[u8] = b"fedgate-mux/1";

/// Whether the handshake on `conn` selected the relay protocol.
pub fn negotiated(conn: &CommonState) -> bool {
    conn.alpn_protocol() == Some(RELAY_ALPN)
}

/// Whether a ClientHello's ALPN offer (`None`: no ALPN extension) includes the relay protocol.
pub fn offered<'a>(mut protocols: Option<impl Iterator<Item = &'a [u8]>>) -> bool {
    protocols
        .as_mut()
        .is_some_and(|offer| offer.any(|p| p == RELAY_ALPN))
}

/// The ALPN list a sender offers: the relay protocol when it will send a relay header, else none.
pub fn alpn_offer(sends_header: bool) -> Vec<Vec<u8>> {
    if sends_header {
        vec![RELAY_ALPN.to_vec()]
    } else {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offered_only_when_the_relay_protocol_is_in_the_list() {
        let none: Option<std::vec::IntoIter<&[u8]>> = None;
        assert!(!offered(none));
        assert!(!offered(Some(Vec::<&[u8]>::new().into_iter())));
        assert!(!offered(Some(vec![&b"h2"[..], b"http/1.1"].into_iter())));
        assert!(!offered(Some(vec![&b"fedgate-relay/10"[..]].into_iter())));
        assert!(!offered(Some(vec![&b"fedgate-relay"[..]].into_iter())));
        assert!(offered(Some(vec![&b"h2"[..], RELAY_ALPN].into_iter())));
    }

    #[test]
    fn the_offer_follows_the_route_setting() {
        assert_eq!(alpn_offer(true), vec![RELAY_ALPN.to_vec()]);
        assert!(alpn_offer(false).is_empty());
    }
}
