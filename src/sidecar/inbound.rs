//! Inbound listeners: a peer connects with mTLS, the sidecar verifies it and forwards plain TCP
//! to the local app, optionally announcing the verified identity with a PROXY v2 header.
//!
//! Invariants:
//! * a client certificate is required and validated with the bundle of the client's own trust
//!   domain; the client must be in `allow` or `trusted_relays`, else the handshake fails;
//! * a PROXY v2 header is read from inside TLS (with a deadline and a size limit) only on a
//!   connection that negotiated the relay protocol ([`fedgate_dataplane::relay`]) *and* whose client is in
//!   `trusted_relays`; it must be there and well formed. A client that negotiated the protocol
//!   without being a trusted relay, and a trusted relay that did not negotiate it, are refused.
//!   Anyone else's bytes are application data, never interpreted (invariant 9 of docs/threat-model.md);
//! * the identity that must be in `allow` is the relayed origin when a relay names one, else the
//!   verified client itself (default deny);
//! * the app is dialled only after all of the above, so a refused peer never reaches it;
//! * the PROXY v2 header to the app carries the *verified* client ID (TLV 0xE0) and the origin
//!   relayed by a trusted relay (TLV 0xE1), and the real socket addresses of the connection.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use fedgate_federation::tls::{is_not_authorized, peer_id};
use fedgate_federation::SpiffeId;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::timeout;

use super::config::InboundConfig;
use super::tls::TlsSnapshot;
use super::{Ending, Peer};
use fedgate_dataplane::proxy_protocol::{
    read_proxy_header, ProxyError, ProxyHeader, TLV_ORIGIN_ID, TLV_SPIFFE_ID,
};
use fedgate_dataplane::pump::{pump, PumpStats};
use fedgate_dataplane::tls::HandshakeError;

/// One inbound listener's shared state.
#[derive(Debug)]
pub struct Inbound {
    /// Position in `Config::inbound` and `TlsSnapshot::inbound`.
    pub index: usize,
    pub config: InboundConfig,
    /// The TLS configs in force; each connection takes the latest when it starts.
    pub tls: watch::Receiver<Arc<TlsSnapshot>>,
}

/// Why an inbound connection ended before or while relaying.
#[derive(Debug, thiserror::Error)]
pub enum InboundError {
    #[error("TLS handshake timed out")]
    HandshakeTimeout,
    #[error("client is not in the allow list or trusted_relays")]
    ClientNotAllowed,
    #[error("TLS handshake failed")]
    Handshake(#[source] io::Error),
    #[error("client presented no SPIFFE ID")]
    NoPeerId,
    #[error(
        "client {client} negotiated the relay protocol but is not in trusted_relays; add it to \
         trusted_relays if it is a fedgate gateway that relays callers to this workload"
    )]
    NotATrustedRelay { client: SpiffeId },
    #[error(
        "trusted relay {relay} did not negotiate the relay protocol, so its first bytes are not \
         read as a relay header; the relaying route must set send_proxy_header = true"
    )]
    RelayNotNegotiated { relay: SpiffeId },
    #[error("trusted relay {relay} sent no valid PROXY v2 header")]
    ProxyHeader {
        relay: SpiffeId,
        #[source]
        source: ProxyError,
    },
    #[error("trusted relay {relay} relayed an invalid origin ID {origin:?}")]
    InvalidOrigin { relay: SpiffeId, origin: String },
    #[error("client {client} is not in the allow list")]
    NotAllowed { client: SpiffeId },
    #[error("origin {origin} relayed by {relay} is not in the allow list")]
    OriginNotAllowed { relay: SpiffeId, origin: SpiffeId },
    #[error("cannot connect to the app at {forward}")]
    AppUnavailable {
        forward: String,
        #[source]
        source: io::Error,
    },
    /// Only possible if the IDs exceed the header's 64 KiB, which SPIFFE ID limits rule out.
    #[error("cannot encode the PROXY v2 header for the app")]
    AppHeader(#[source] ProxyError),
    #[error("relaying failed")]
    Relay(#[source] io::Error),
}

// === impl Inbound ===

impl Inbound {
    pub fn new(
        index: usize,
        config: InboundConfig,
        tls: watch::Receiver<Arc<TlsSnapshot>>,
    ) -> Self {
        Self { index, config, tls }
    }

    /// Handles one peer connection to the end. `peer` is set once the client is verified.
    pub async fn handle(
        &self,
        tcp: &mut TcpStream,
        peer: &mut Option<Peer>,
    ) -> Result<PumpStats, InboundError> {
        let addresses = match (tcp.peer_addr(), tcp.local_addr()) {
            (Ok(src), Ok(dst)) => Some((src, dst)),
            _ => None,
        };
        let configs = {
            // Every snapshot is built from the same config as `self.index`, one config per
            // listener in order, so the index is always in range.
            let snapshot = self.tls.borrow();
            snapshot.inbound[self.index].clone()
        };
        let _ = tcp.set_nodelay(true);
        // The ClientHello picks the config: the relay config only for a client offering the
        // relay protocol (so other clients' ALPN offers are not refused for want of a match).
        let handshake = fedgate_dataplane::tls::accept_lazy(
            tcp,
            self.config.limits.handshake_timeout,
            |hello| configs.for_client(fedgate_dataplane::relay::offered(hello.alpn())),
        );
        let mut tls = match handshake.await {
            Ok(tls) => tls,
            Err(HandshakeError::Timeout(_)) => return Err(InboundError::HandshakeTimeout),
            Err(e) if e.rustls().is_some_and(is_not_authorized) => {
                return Err(InboundError::ClientNotAllowed)
            }
            Err(HandshakeError::Io(e)) => return Err(InboundError::Handshake(e)),
        };
        let client = peer_id(tls.get_ref().1).ok_or(InboundError::NoPeerId)?;
        let relay = fedgate_dataplane::relay::negotiated(tls.get_ref().1);
        let trusted = self.config.trusted_relays.allows(&client);
        let origin = if relay != trusted {
            return Err(if relay {
                InboundError::NotATrustedRelay { client }
            } else {
                InboundError::RelayNotNegotiated { relay: client }
            });
        } else if relay {
            let header = read_proxy_header(
                &mut tls,
                self.config.max_proxy_header,
                self.config.proxy_header_timeout,
            )
            .await
            .map_err(|source| InboundError::ProxyHeader {
                relay: client.clone(),
                source,
            })?;
            relayed_origin(&client, &header)?
        } else {
            None
        };
        authorize(&self.config, &client, origin.as_ref())?;
        tracing::debug!(client_id = %client, origin_id = ?origin.as_ref().map(ToString::to_string), "inbound client verified");
        let (id, relayed) = (client.clone(), origin.clone());
        *peer = Some(Peer {
            id,
            origin: relayed,
        });

        let mut app = timeout(
            self.config.limits.connect_timeout,
            self.config.forward.dial(),
        )
        .await
        .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")))
        .map_err(|source| InboundError::AppUnavailable {
            forward: self.config.forward.to_string(),
            source,
        })?;
        let _ = app.set_nodelay(true);
        if self.config.proxy_protocol {
            let header = app_header(addresses, &client, origin.as_ref());
            let bytes = header.encode().map_err(InboundError::AppHeader)?;
            app.write_all(&bytes).await.map_err(InboundError::Relay)?;
        }
        pump(tls, app, self.config.limits.idle_timeout)
            .await
            .map_err(InboundError::Relay)
    }
}

/// The origin ID a trusted relay's header names, if any ([`ProxyHeader::origin_id`]; a decoded
/// header's TLV is UTF-8); it must be a SPIFFE ID.
fn relayed_origin(
    relay: &SpiffeId,
    header: &ProxyHeader,
) -> Result<Option<SpiffeId>, InboundError> {
    let parse = |origin: &str| {
        SpiffeId::parse(origin).map_err(|_| InboundError::InvalidOrigin {
            relay: relay.clone(),
            origin: origin.to_owned(),
        })
    };
    header.origin_id().map(parse).transpose()
}

/// Default deny: the origin (when relayed) or else the client must be allowed.
fn authorize(
    config: &InboundConfig,
    client: &SpiffeId,
    origin: Option<&SpiffeId>,
) -> Result<(), InboundError> {
    match origin {
        Some(origin) if config.allow.allows(origin) => Ok(()),
        Some(origin) => Err(InboundError::OriginNotAllowed {
            relay: client.clone(),
            origin: origin.clone(),
        }),
        None if config.allow.allows(client) => Ok(()),
        None => Err(InboundError::NotAllowed {
            client: client.clone(),
        }),
    }
}

/// The PROXY v2 header sent to the app.
fn app_header(
    addresses: Option<(SocketAddr, SocketAddr)>,
    client: &SpiffeId,
    origin: Option<&SpiffeId>,
) -> ProxyHeader {
    let tlvs = Vec::new();
    let header = ProxyHeader { addresses, tlvs }.with_tlv(TLV_SPIFFE_ID, client.to_string());
    match origin {
        Some(origin) => header.with_tlv(TLV_ORIGIN_ID, origin.to_string()),
        None => header,
    }
}

// === impl InboundError ===

impl Ending for InboundError {
    /// The metric label (`outcome`) of a refusal, or the relay's error.
    fn refusal(&self) -> Result<&'static str, &io::Error> {
        Ok(match self {
            Self::HandshakeTimeout => "handshake_timeout",
            Self::ClientNotAllowed | Self::NotAllowed { .. } => "client_not_allowed",
            Self::Handshake(_) => "handshake_failed",
            Self::NoPeerId => "no_peer_id",
            Self::NotATrustedRelay { .. } => "not_a_trusted_relay",
            Self::RelayNotNegotiated { .. } => "relay_not_negotiated",
            Self::ProxyHeader { .. } => "relay_proxy_header",
            Self::InvalidOrigin { .. } => "relay_invalid_origin",
            Self::OriginNotAllowed { .. } => "origin_not_allowed",
            Self::AppUnavailable { .. } => "app_unavailable",
            Self::AppHeader(_) => "app_header",
            Self::Relay(e) => return Err(e),
        })
    }
}

#[cfg(test)]
mod tests;
