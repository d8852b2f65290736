//! Bridge egress: terminate the caller's mTLS (local trust domain), authorize caller →
//! destination, re-originate mTLS to the peer's ingress with the bridge SVID, and send the
//! caller's ID and the destination in a PROXY v2 header as the first bytes inside that session.
//!
//! Invariants: the caller is verified with the local bundle only and must be a member of the
//! local trust domain; the destination is the SNI the caller sent and nothing else; no route or
//! no allow rule → refused before any upstream connection; the peer ingress is pinned to the
//! route's `peer_id` during the handshake; the PROXY header is flushed before pumping. The header
//! is sent only on a connection that negotiated the relay protocol ([`fedgate_dataplane::relay`]), which is
//! offered only by routes with `send_proxy_header = true`: an upstream that did not accept it is
//! refused before any byte is sent. A route with `send_proxy_header = false` (an upstream that is
//! a plain mTLS server, not a fedgate ingress) neither offers the protocol nor sends a header:
//! the first bytes upstream are the caller's own, and a fedgate ingress refuses such a connection.

mod tunnel;

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use fedgate_federation::SpiffeId;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ServerConfig};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use super::mux::pool::MuxPools;
use super::policy::{authorize_egress, EgressRoute, Transport};
use super::tls::{BridgeTlsError, Identities};
use super::{BridgeMetrics, BridgeReject, Side, Timeouts};
use fedgate_dataplane::proxy_protocol::{ProxyHeader, TLV_AUTHORITY, TLV_ORIGIN_ID};
use fedgate_dataplane::route::{RouteError, RouteTable};

/// The routes of an egress listener (shared by every TLS snapshot built for it).
#[derive(Debug)]
pub struct EgressRoutes {
    table: RouteTable<Arc<EgressRoute>>,
    /// Every distinct `(peer_id, send_proxy_header)` of the routes: one bridge client config is
    /// built for each (the relay protocol is offered only with the header).
    peer_ids: BTreeSet<(SpiffeId, bool)>,
    /// The `peer_id`s of `transport = "mux"` routes: one tunnel client config is built for each.
    mux_peer_ids: BTreeSet<SpiffeId>,
}

/// Everything an egress connection needs, immutable; swapped as a whole on SVID, bundle or route
/// changes (live connections keep the snapshot they started with).
#[derive(Debug)]
pub struct EgressState {
    pub listener: String,
    routes: Arc<EgressRoutes>,
    server: Arc<ServerConfig>,
    to_peers: HashMap<(SpiffeId, bool), Arc<ClientConfig>>,
    /// Tunnel client configs by peer (routes with `transport = "mux"`).
    to_peers_mux: HashMap<SpiffeId, Arc<ClientConfig>>,
    /// The tunnels of the mux routes; handed on to the next state on rebuild.
    pools: Arc<MuxPools>,
    /// Increases with every state built: tunnels dialed with an older state's TLS settings are
    /// replaced for new streams (SVID, bundle or route changes).
    generation: u64,
    pub timeouts: Timeouts,
    pub metrics: BridgeMetrics,
}

/// Source of `EgressState::generation`.
static GENERATION: AtomicU64 = AtomicU64::new(1);

// === impl EgressRoutes ===

impl EgressRoutes {
    /// Builds the table from `(sni pattern, route)` pairs; a bad or duplicate pattern is refused.
    pub fn new(
        routes: impl IntoIterator<Item = (String, EgressRoute)>,
    ) -> Result<Self, RouteError> {
        let (table, routes) = super::policy::indexed(routes)?;
        Ok(Self::from_table(&table, routes))
    }

    /// The routes of a table already built and checked (the listener config's), which maps
    /// each pattern to an index of `routes`.
    pub fn from_table(table: &RouteTable<usize>, routes: Vec<EgressRoute>) -> Self {
        let peer_ids = routes
            .iter()
            .map(|r| (r.peer_id.clone(), r.send_proxy_header))
            .collect();
        let mux_peer_ids = routes
            .iter()
            .filter(|r| matches!(r.transport, Transport::Mux { .. }))
            .map(|r| r.peer_id.clone())
            .collect();
        let routes: Vec<Arc<EgressRoute>> = routes.into_iter().map(Arc::new).collect();
        Self {
            table: table.map(|&i| Arc::clone(&routes[i])),
            peer_ids,
            mux_peer_ids,
        }
    }

    pub fn table(&self) -> &RouteTable<Arc<EgressRoute>> {
        &self.table
    }
}

// === impl EgressState ===

impl EgressState {
    /// Builds the rustls configs (once) for `ids` and `routes`.
    pub fn new(
        listener: impl Into<String>,
        routes: Arc<EgressRoutes>,
        ids: &Identities,
        timeouts: Timeouts,
        metrics: BridgeMetrics,
    ) -> Result<Self, BridgeTlsError> {
        let server = ids.egress_server_config()?;
        let mut to_peers = HashMap::new();
        for (peer, relay) in &routes.peer_ids {
            to_peers.insert(
                (peer.clone(), *relay),
                ids.bridge_client_config(peer, *relay)?,
            );
        }
        let mut to_peers_mux = HashMap::new();
        for peer in &routes.mux_peer_ids {
            to_peers_mux.insert(peer.clone(), ids.bridge_mux_client_config(peer)?);
        }
        Ok(Self {
            listener: listener.into(),
            routes,
            server,
            to_peers,
            to_peers_mux,
            pools: Arc::default(),
            generation: GENERATION.fetch_add(1, Ordering::SeqCst),
            timeouts,
            metrics,
        })
    }

    /// Takes over `pools` (the previous state's), so live tunnels survive a rebuild; those
    /// dialed with the previous TLS settings are replaced for new streams.
    pub fn with_pools(mut self, pools: Arc<MuxPools>) -> Self {
        self.pools = pools;
        self
    }

    pub fn routes(&self) -> &Arc<EgressRoutes> {
        &self.routes
    }

    /// The tunnel pools of the mux routes.
    pub fn pools(&self) -> &Arc<MuxPools> {
        &self.pools
    }
}

/// Serves one accepted connection and records its outcome: one log line and one metric for a
/// refusal or failure.
pub async fn serve_connection(state: Arc<EgressState>, tcp: TcpStream) {
    let peer = tcp.peer_addr().ok();
    if let Err(reject) = handle_connection(Arc::clone(&state), tcp).await {
        super::log_reject(&state.listener, "egress", peer, &reject);
        state.metrics.reject(&state.listener, &reject);
    }
}

/// Handles one caller connection end to end (returns once both directions are done).
pub async fn handle_connection(
    state: Arc<EgressState>,
    tcp: TcpStream,
) -> Result<(), BridgeReject> {
    let caller_addr = tcp.peer_addr().map_err(|source| BridgeReject::Handshake {
        side: Side::Downstream,
        source,
    })?;
    let local_addr = tcp.local_addr().map_err(|source| BridgeReject::Handshake {
        side: Side::Downstream,
        source,
    })?;

    let downstream = super::accept_tls(
        &state.listener,
        TlsAcceptor::from(Arc::clone(&state.server)),
        tcp,
        state.timeouts.handshake,
        &state.metrics,
    )
    .await?;

    let (_, conn) = downstream.get_ref();
    let caller = fedgate_federation::tls::peer_id(conn).ok_or(BridgeReject::NoPeerId)?;
    let destination = conn
        .server_name()
        .map(str::to_owned)
        .ok_or(BridgeReject::NoDestination)?;

    let route = authorize_egress(state.routes.table(), &destination, &caller)?;
    if let Transport::Mux {
        pool_size,
        max_streams,
    } = route.transport
    {
        let limits = super::mux::pool::Limits {
            pool_size,
            max_streams,
        };
        return tunnel::forward(&state, route, limits, &caller, &destination, downstream).await;
    }
    let config = state
        .to_peers
        .get(&(route.peer_id.clone(), route.send_proxy_header))
        .cloned()
        // Built for every route's peer_id in `EgressState::new`; absence would be a bug, and
        // refusing is the safe answer.
        .ok_or_else(|| BridgeReject::UpstreamUnavailable {
            route: route.name.clone(),
            last: format!("no bridge TLS configuration for {}", route.peer_id),
        })?;
    let server_name =
        ServerName::try_from(destination.clone()).map_err(|_| BridgeReject::NoDestination)?;

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
        let header = origin_header(caller_addr, local_addr, &caller, &destination);
        super::send_relay_header(&mut upstream, &route.name, &header).await?;
    }

    state.metrics.forwarded(&state.listener, &route.name);
    tracing::debug!(
        listener = %state.listener, route = %route.name, %caller, %destination,
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

/// The PROXY v2 header the egress sends first: the caller's socket addresses, its verified ID
/// (`TLV_ORIGIN_ID`) and the destination it asked for (`TLV_AUTHORITY`).
pub fn origin_header(
    caller_addr: SocketAddr,
    local_addr: SocketAddr,
    caller: &SpiffeId,
    destination: &str,
) -> ProxyHeader {
    ProxyHeader::proxy(caller_addr, local_addr)
        .with_tlv(TLV_ORIGIN_ID, caller.to_string())
        .with_tlv(TLV_AUTHORITY, destination)
}
