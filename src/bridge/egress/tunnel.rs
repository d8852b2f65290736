//! Egress over `transport = "mux"`: a caller connection that passed every egress check becomes
//! one CONNECT stream on a pooled tunnel to the route's peer ingress.
//!
//! Invariants: called only after the caller was verified (local bundle) and authorized for the
//! destination by the route; the stream's origin header is the caller's verified ID; no caller
//! byte is read before the ingress accepted the stream, so a stream refused unprocessed (GOAWAY,
//! REFUSED_STREAM, tunnel gone) is retried once on another tunnel without loss.

use std::sync::Arc;

use fedgate_federation::SpiffeId;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use super::EgressState;
use crate::bridge::mux::pool::Limits;
use crate::bridge::mux::tunnel::Tunnel;
use crate::bridge::policy::EgressRoute;
use crate::bridge::BridgeReject;

/// Attempts at opening a stream: the first, and one retry on another tunnel.
const ATTEMPTS: usize = 2;

/// Forwards `downstream` (the caller's verified session) as a stream of `route`'s pool.
pub(super) async fn forward(
    state: &Arc<EgressState>,
    route: &EgressRoute,
    limits: Limits,
    caller: &SpiffeId,
    destination: &str,
    downstream: TlsStream<TcpStream>,
) -> Result<(), BridgeReject> {
    let listener = state.listener.as_str();
    let refused = |reject: BridgeReject| {
        state.metrics.mux_refused(listener, &reject);
        reject
    };
    let config = state
        .to_peers_mux
        .get(&route.peer_id)
        .cloned()
        // Built for every mux route's peer_id in `EgressState::new`; absence would be a bug.
        .ok_or_else(|| {
            refused(BridgeReject::UpstreamUnavailable {
                route: route.name.clone(),
                last: format!("no tunnel TLS configuration for {}", route.peer_id),
            })
        })?;
    let pool = state.pools.pool(&route.name, &route.peer_id);
    // The ingress answers after dialing the destination (its own connect timeout).
    let wait = state.timeouts.connect.saturating_mul(2);
    let mut attempt = 1;
    let (slot, stream) = loop {
        let dial = || {
            Tunnel::open(
                listener,
                route,
                Arc::clone(&config),
                state.generation,
                state.timeouts.connect,
                &state.metrics,
            )
        };
        let slot = pool
            .acquire(&route.name, state.generation, limits, dial)
            .await
            .map_err(refused)?;
        match slot
            .open_stream(&route.name, caller, destination, wait)
            .await
        {
            Ok(stream) => break (slot, stream),
            Err(failure) if failure.retry && attempt < ATTEMPTS => {
                tracing::debug!(
                    listener, route = %route.name, error = %failure.reject,
                    "stream not processed by the peer; retrying on another tunnel"
                );
                attempt += 1;
            }
            Err(failure) => return Err(refused(failure.reject)),
        }
    };
    let _open = state.metrics.mux_stream(listener);
    state.metrics.forwarded(listener, &route.name);
    tracing::debug!(
        listener, route = %route.name, %caller, %destination,
        "bridged connection forwarded on a tunnel"
    );
    let pumped = crate::bridge::pump_counted(
        listener,
        downstream,
        stream,
        state.timeouts.idle,
        &state.metrics,
    )
    .await;
    drop(slot);
    if pumped.is_err() {
        state.metrics.mux_reset(listener);
    }
    pumped
}
