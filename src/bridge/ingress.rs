//! Bridge ingress: terminate bridge mTLS from a configured peer gateway, read the PROXY v2 header
//! (deadline + size limit), accept the origin ID only from a peer allowed to speak for its trust
//! domain, authorize origin → destination, and re-originate mTLS to the destination with the
//! local SVID (optionally passing the origin on in a PROXY v2 header).
//!
//! Invariants (4, 6, 7 and 9 of docs/threat-model.md): the peer is verified with the bridge
//! bundle only and must be a configured bridge peer; no peer may speak for the local trust
//! domain (refused when the state is built, whatever the config loader let through); the header
//! is read only on a connection that negotiated the relay protocol ([`fedgate_dataplane::relay`]), and sent
//! on to the destination only once it has selected it; nothing is dialed before the header is
//! read and every check passed; a missing, junk, oversized or slow header closes the connection;
//! the destination's ID must be on the route's `server_id` list, checked inside the handshake.

mod tunnel;

use std::net::SocketAddr;
use std::sync::Arc;

use fedgate_federation::tls::Authorizer;
use fedgate_federation::{SpiffeId, TrustDomain};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ServerConfig};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::policy::{
    authorize_ingress, authorize_origin, authorize_peer, BridgePeers, IngressRoute,
};
use super::tls::{BridgeTlsError, Identities};
use super::{BridgeMetrics, BridgeReject, Timeouts};
use fedgate_dataplane::proxy_protocol::{
    read_proxy_header, ProxyHeader, TLV_AUTHORITY, TLV_ORIGIN_ID, TLV_SPIFFE_ID,
};
use fedgate_dataplane::route::{RouteError, RouteTable};

/// The routes of an ingress listener, each with the slot of its destination TLS config.
#[derive(Debug)]
pub struct IngressRoutes {
    table: RouteTable<IngressEntry>,
    /// `server_id` and `send_proxy_header` of each route, by slot: one destination client config
    /// is built per slot.
    server_ids: Vec<(Authorizer, bool)>,
}

/// A route and the slot of its destination TLS config in `IngressState::to_destinations`.
#[derive(Debug)]
struct IngressEntry {
    slot: usize,
    route: Arc<IngressRoute>,
}

/// Why an [`IngressState`] cannot be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IngressStateError {
    #[error(transparent)]
    Tls(#[from] BridgeTlsError),
    /// A peer listed as speaking for this gateway's own trust domain: it could then assert any
    /// of our own workloads as the origin of a connection.
    #[error(
        "bridge peer {peer} may speak for {local}, the local trust domain of this gateway; a \
         bridge peer must never speak for our own workloads: remove {local} from its \
         may_speak_for"
    )]
    PeerSpeaksForLocal { peer: SpiffeId, local: TrustDomain },
}

/// Limits on the PROXY v2 header a peer egress sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderLimits {
    /// The whole header (16-byte preamble + addresses + TLVs) must arrive within this time.
    pub timeout: std::time::Duration,
    /// Headers declaring more bytes than this are refused before they are read.
    pub max_len: usize,
}

/// Everything an ingress connection needs, immutable; swapped as a whole on change.
#[derive(Debug)]
pub struct IngressState {
    pub listener: String,
    peers: Arc<BridgePeers>,
    routes: Arc<IngressRoutes>,
    server: Arc<ServerConfig>,
    to_destinations: Vec<Arc<ClientConfig>>,
    pub header: HeaderLimits,
    pub timeouts: Timeouts,
    pub metrics: BridgeMetrics,
    /// Cancelled when the gateway shuts down: tunnels send GOAWAY and end once their streams
    /// have (per-connection hops are drained by the accept loop).
    drain: CancellationToken,
    /// Cancelled when a newer state replaces this one ([`IngressState::retire`]): tunnels
    /// accepted with this state send GOAWAY, so the peer moves new streams to a tunnel checked
    /// with the new peers, routes, bundles and SVIDs, while live streams finish.
    retired: CancellationToken,
}

// === impl IngressRoutes ===

impl IngressRoutes {
    /// Builds the table from `(sni pattern, route)` pairs; a bad or duplicate pattern is refused.
    pub fn new(
        routes: impl IntoIterator<Item = (String, IngressRoute)>,
    ) -> Result<Self, RouteError> {
        let (table, routes) = super::policy::indexed(routes)?;
        Ok(Self::from_table(&table, routes))
    }

    /// The routes of a table already built and checked (the listener config's), which maps
    /// each pattern to an index of `routes`; a route's index is its TLS config slot.
    pub fn from_table(table: &RouteTable<usize>, routes: Vec<IngressRoute>) -> Self {
        let server_ids = routes
            .iter()
            .map(|r| (r.server_id.clone(), r.send_proxy_header))
            .collect();
        let routes: Vec<Arc<IngressRoute>> = routes.into_iter().map(Arc::new).collect();
        Self {
            table: table.map(|&slot| IngressEntry {
                slot,
                route: Arc::clone(&routes[slot]),
            }),
            server_ids,
        }
    }
}

impl std::borrow::Borrow<IngressRoute> for IngressEntry {
    fn borrow(&self) -> &IngressRoute {
        &self.route
    }
}

// === impl IngressState ===

impl IngressState {
    /// Builds the rustls configs (once) for `ids`, `peers` and `routes`.
    pub fn new(
        listener: impl Into<String>,
        peers: Arc<BridgePeers>,
        routes: Arc<IngressRoutes>,
        ids: &Identities,
        header: HeaderLimits,
        timeouts: Timeouts,
        metrics: BridgeMetrics,
    ) -> Result<Self, IngressStateError> {
        if let Some(peer) = peers.speaking_for(ids.local_domain()) {
            return Err(IngressStateError::PeerSpeaksForLocal {
                peer: peer.id.clone(),
                local: ids.local_domain().clone(),
            });
        }
        let server = ids.ingress_server_config()?;
        let to_destinations = routes
            .server_ids
            .iter()
            .map(|(allow, relay)| ids.destination_client_config(allow, *relay))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            listener: listener.into(),
            peers,
            routes,
            server,
            to_destinations,
            header,
            timeouts,
            metrics,
            drain: CancellationToken::new(),
            retired: CancellationToken::new(),
        })
    }

    /// Marks this state as replaced: its tunnels drain (GOAWAY). Called by the runtime after
    /// storing the new state.
    pub fn retire(&self) {
        self.retired.cancel();
    }

    /// Drains this state's tunnels (GOAWAY) when `drain` is cancelled.
    pub fn with_drain(mut self, drain: CancellationToken) -> Self {
        self.drain = drain;
        self
    }
}

/// Serves one accepted connection and records its outcome: one log line and one metric for a
/// refusal or failure.
pub async fn serve_connection(state: Arc<IngressState>, tcp: TcpStream) {
    let peer = tcp.peer_addr().ok();
    if let Err(reject) = handle_connection(Arc::clone(&state), tcp).await {
        super::log_reject(&state.listener, "ingress", peer, &reject);
        state.metrics.reject(&state.listener, &reject);
    }
}

/// Handles one connection from a peer egress end to end.
pub async fn handle_connection(
    state: Arc<IngressState>,
    tcp: TcpStream,
) -> Result<(), BridgeReject> {
    let mut downstream = super::accept_tls(
        &state.listener,
        TlsAcceptor::from(Arc::clone(&state.server)),
        tcp,
        state.timeouts.handshake,
        &state.metrics,
    )
    .await?;

    let (_, conn) = downstream.get_ref();
    let peer = fedgate_federation::tls::peer_id(conn).ok_or(BridgeReject::NoPeerId)?;
    authorize_peer(&state.peers, &peer)?;
    // A tunnel (invariant 10): HTTP/2 streams, each checked like a connection below.
    if super::mux::negotiated(conn) {
        return tunnel::serve(state, downstream, peer).await;
    }
    // The header is read only from a peer that negotiated the relay role (invariant 9): without
    // it, the first bytes are whatever the peer's caller wrote.
    if !fedgate_dataplane::relay::negotiated(conn) {
        return Err(BridgeReject::RelayNotNegotiated { peer });
    }

    let header = read_proxy_header(&mut downstream, state.header.max_len, state.header.timeout)
        .await
        .map_err(BridgeReject::ProxyHeader)?;
    let (origin, destination) = parse_claims(&header)?;
    let (upstream, route) =
        dispatch(&state, &peer, &origin, &destination, header.addresses).await?;
    state.metrics.forwarded(&state.listener, &route);
    tracing::debug!(
        listener = %state.listener, %route, %peer, %origin, %destination,
        "bridged connection forwarded"
    );
    super::pump_counted(
        &state.listener,
        downstream,
        upstream,
        state.timeouts.idle,
        &state.metrics,
    )
    .await
}

/// What every origin claim of `peer` goes through, on a relay connection or a tunnel stream:
/// the peer may speak for the origin's trust domain, the origin may reach the destination's
/// route, and the destination presents a `server_id` ID (checked in the handshake). Returns the
/// destination session, the relay header already sent when the route asks for it, and the
/// route's name.
async fn dispatch(
    state: &IngressState,
    peer: &SpiffeId,
    origin: &SpiffeId,
    destination: &str,
    addresses: Option<(SocketAddr, SocketAddr)>,
) -> Result<(TlsStream<TcpStream>, String), BridgeReject> {
    authorize_origin(&state.peers, peer, origin)?;
    let entry = authorize_ingress(&state.routes.table, destination, origin)?;
    let (slot, route) = (entry.slot, &entry.route);

    let config = state
        .to_destinations
        .get(slot)
        .cloned()
        // One config per route slot is built in `IngressState::new`; absence would be a bug.
        .ok_or_else(|| BridgeReject::UpstreamUnavailable {
            route: route.name.clone(),
            last: "no destination TLS configuration".into(),
        })?;
    let server_name = ServerName::try_from(destination.to_owned()).map_err(|_| {
        BridgeReject::InvalidDestination {
            destination: destination.to_owned(),
        }
    })?;
    let mut upstream = super::connect_upstream(
        &state.listener,
        &route.name,
        &route.upstreams,
        config,
        server_name,
        state.timeouts.connect,
        &state.metrics,
    )
    .await?;

    if route.send_proxy_header {
        let relayed = relay_header(addresses, origin, peer, destination);
        super::send_relay_header(&mut upstream, &route.name, &relayed).await?;
    }
    Ok((upstream, route.name.clone()))
}

/// The claims of a peer's PROXY header: the origin ID (`TLV_ORIGIN_ID`, must parse as a SPIFFE
/// ID) and the destination (`TLV_AUTHORITY`).
pub fn parse_claims(header: &ProxyHeader) -> Result<(SpiffeId, String), BridgeReject> {
    let origin = header
        .text_tlv(TLV_ORIGIN_ID)
        .map_err(|_| BridgeReject::OriginInvalid {
            reason: "the origin ID TLV is not UTF-8".into(),
        })?
        .ok_or_else(|| BridgeReject::OriginInvalid {
            reason: "the PROXY v2 header carries no origin ID (TLV 0xE1)".into(),
        })?;
    let origin = SpiffeId::parse(origin).map_err(|e| BridgeReject::OriginInvalid {
        reason: format!("{origin:?} is not a SPIFFE ID: {e}"),
    })?;
    let destination = header
        .authority()
        .filter(|a| !a.is_empty())
        .ok_or(BridgeReject::MissingAuthority)?
        .to_owned();
    Ok((origin, destination))
}

/// The PROXY v2 header the ingress sends to a destination: the original addresses, the origin
/// ID (`TLV_ORIGIN_ID`), the bridge peer that relayed it (`TLV_SPIFFE_ID`) and the destination.
pub fn relay_header(
    addresses: Option<(SocketAddr, SocketAddr)>,
    origin: &SpiffeId,
    peer: &SpiffeId,
    destination: &str,
) -> ProxyHeader {
    ProxyHeader {
        addresses,
        tlvs: Vec::new(),
    }
    .with_tlv(TLV_ORIGIN_ID, origin.to_string())
    .with_tlv(TLV_SPIFFE_ID, peer.to_string())
    .with_tlv(TLV_AUTHORITY, destination)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn header() -> ProxyHeader {
        ProxyHeader::proxy(
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
        )
    }

    #[test]
    fn claims_need_a_spiffe_origin_and_an_authority() {
        let ok = header()
            .with_tlv(TLV_ORIGIN_ID, "spiffe://cluster-a.test/ns/x")
            .with_tlv(TLV_AUTHORITY, "echo.cluster-b.test");
        let (origin, dest) = parse_claims(&ok).unwrap();
        assert_eq!(origin.to_string(), "spiffe://cluster-a.test/ns/x");
        assert_eq!(dest, "echo.cluster-b.test");

        let no_origin = header().with_tlv(TLV_AUTHORITY, "echo.cluster-b.test");
        assert_eq!(
            parse_claims(&no_origin).unwrap_err().label(),
            "origin_invalid"
        );
        // The immediate-peer TLV is not an origin claim.
        let wrong_tlv = no_origin.with_tlv(TLV_SPIFFE_ID, "spiffe://cluster-a.test/ns/x");
        assert_eq!(
            parse_claims(&wrong_tlv).unwrap_err().label(),
            "origin_invalid"
        );
        let not_an_id = header()
            .with_tlv(TLV_ORIGIN_ID, "https://cluster-a.test/x")
            .with_tlv(TLV_AUTHORITY, "echo.cluster-b.test");
        assert_eq!(
            parse_claims(&not_an_id).unwrap_err().label(),
            "origin_invalid"
        );
        let no_authority = header().with_tlv(TLV_ORIGIN_ID, "spiffe://cluster-a.test/ns/x");
        assert_eq!(
            parse_claims(&no_authority).unwrap_err().label(),
            "missing_authority"
        );
        let empty_authority = no_authority.with_tlv(TLV_AUTHORITY, "");
        assert_eq!(
            parse_claims(&empty_authority).unwrap_err().label(),
            "missing_authority"
        );
    }

    #[test]
    fn relay_header_carries_origin_peer_and_destination() {
        let origin = SpiffeId::parse("spiffe://cluster-a.test/ns/x").unwrap();
        let peer = SpiffeId::parse("spiffe://bridge.test/gateway/a").unwrap();
        let h = relay_header(None, &origin, &peer, "echo.cluster-b.test");
        let bytes = h.encode().unwrap();
        let (back, used) = ProxyHeader::decode(&bytes, 4096).unwrap().unwrap();
        assert_eq!(used, bytes.len());
        assert_eq!(back.tlv(TLV_ORIGIN_ID), Some(origin.to_string().as_bytes()));
        assert_eq!(back.tlv(TLV_SPIFFE_ID), Some(peer.to_string().as_bytes()));
        assert_eq!(back.authority(), Some("echo.cluster-b.test"));
    }

    proptest! {
        /// Arbitrary claim bytes never panic, and whatever is accepted is a valid SPIFFE ID
        /// equal to the bytes sent.
        #[test]
        fn arbitrary_claims_never_panic(
            origin in prop::collection::vec(any::<u8>(), 0..64),
            authority in prop::collection::vec(any::<u8>(), 0..64),
        ) {
            let h = header()
                .with_tlv(TLV_ORIGIN_ID, origin.clone())
                .with_tlv(TLV_AUTHORITY, authority);
            if let Ok((id, _)) = parse_claims(&h) {
                prop_assert_eq!(id.to_string().into_bytes(), origin);
            }
        }
    }
}
