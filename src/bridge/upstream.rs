//! Dialing an upstream over mTLS: try each address of a route once, round-robin, and move to the
//! next on a TCP or TLS failure (nothing has been sent yet, so retrying is safe).
//!
//! Invariant: every attempt (TCP connect + TLS handshake) is bounded by the connect timeout, and
//! every handshake attempt is counted in the upstream handshake metric.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::policy::Upstreams;
use super::{BridgeMetrics, BridgeReject, Side};

/// Connects to the first address of `upstreams` (in rotation) that completes TCP and a TLS
/// handshake with `config` within `connect_timeout`, sending `server_name` as SNI.
pub async fn connect(
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
    for addr in upstreams.rotation() {
        let attempt = async {
            let tcp = TcpStream::connect((addr.host.as_str(), addr.port))
                .await
                .map_err(|e| (false, format!("connecting to {addr}: {e}")))?;
            // Bridged traffic is request/response: don't let Nagle delay small records.
            let _ = tcp.set_nodelay(true);
            connector
                .connect(server_name.clone(), tcp)
                .await
                .map_err(|e| (true, format!("TLS handshake with {addr}: {e}")))
        };
        match tokio::time::timeout(connect_timeout, attempt).await {
            Ok(Ok(tls)) => {
                metrics.handshake(listener, Side::Upstream, "ok");
                return Ok(tls);
            }
            Ok(Err((handshake, msg))) => {
                if handshake {
                    metrics.handshake(listener, Side::Upstream, "error");
                }
                tracing::debug!(listener, route, %addr, error = %msg, "upstream attempt failed");
                last = msg;
            }
            Err(_) => {
                metrics.handshake(listener, Side::Upstream, "timeout");
                last = format!("{addr}: no connection within {connect_timeout:?}");
                tracing::debug!(listener, route, %addr, "upstream attempt timed out");
            }
        }
    }
    Err(BridgeReject::UpstreamUnavailable {
        route: route.to_owned(),
        last,
    })
}
