//! Outbound listeners: the app connects over plain TCP, the sidecar dials the configured
//! endpoints (an egress gateway or the peer itself) and speaks mTLS with the workload SVID.
//!
//! Invariants:
//! * the server is verified with the bundle of its *own* trust domain (core's verifier over the
//!   local + federated `BundleSet`) and must be in the listener's allow list; otherwise the
//!   handshake fails and not one app byte is forwarded;
//! * endpoints are tried round-robin (`fedgate_dataplane::upstreams`), the next one on a
//!   connect failure or timeout; nothing has been sent at that point, so retrying is safe;
//! * a connection keeps the TLS config it started with across reloads.

use std::io;
use std::sync::Arc;

use fedgate_dataplane::pump::{pump, PumpStats};
use fedgate_dataplane::tls::HandshakeError;
use fedgate_dataplane::upstreams::{DialFailure, Endpoint, Upstreams};
use fedgate_federation::tls::{is_not_authorized, peer_id};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::TlsConnector;

use super::config::OutboundConfig;
use super::tls::TlsSnapshot;
use super::{Ending, Peer};

/// One outbound listener's shared state.
#[derive(Debug)]
pub struct Outbound {
    /// Position in `Config::outbound` and `TlsSnapshot::outbound`.
    pub index: usize,
    pub config: OutboundConfig,
    /// The TLS configs in force; each connection takes the latest when it starts.
    pub tls: watch::Receiver<Arc<TlsSnapshot>>,
    /// `config.connect`, tried round-robin.
    endpoints: Upstreams,
}

/// Why an outbound connection ended before or while relaying.
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    #[error("no endpoint of {endpoints:?} accepted a connection")]
    UpstreamUnavailable { endpoints: Vec<String> },
    #[error("TLS handshake with {endpoint} timed out")]
    HandshakeTimeout { endpoint: String },
    #[error("server at {endpoint} is not in the allow list")]
    ServerNotAllowed { endpoint: String },
    #[error("TLS handshake with {endpoint} failed")]
    Handshake {
        endpoint: String,
        #[source]
        source: io::Error,
    },
    #[error("server at {endpoint} presented no SPIFFE ID")]
    NoPeerId { endpoint: String },
    #[error("relaying failed")]
    Relay(#[source] io::Error),
}

// === impl Outbound ===

impl Outbound {
    pub fn new(
        index: usize,
        config: OutboundConfig,
        tls: watch::Receiver<Arc<TlsSnapshot>>,
    ) -> Self {
        Self {
            index,
            endpoints: Upstreams::new(config.connect.clone()),
            config,
            tls,
        }
    }

    /// Handles one app connection to the end. `peer` is set once the server is verified.
    pub async fn handle(
        &self,
        app: &mut TcpStream,
        peer: &mut Option<Peer>,
    ) -> Result<PumpStats, OutboundError> {
        // Take the configs first: a reload during the dial must not mix two snapshots.
        let client_config = {
            // Every snapshot is built from the same config as `self.index`, one config per
            // listener in order, so the index is always in range.
            let snapshot = self.tls.borrow();
            snapshot.outbound[self.index].clone()
        };
        let (tcp, endpoint) = self.dial().await?;
        let _ = tcp.set_nodelay(true);
        let _ = app.set_nodelay(true);
        let connector = TlsConnector::from(client_config);
        let name = self.config.server_name.clone();
        let tls = match fedgate_dataplane::tls::connect(
            &connector,
            name,
            tcp,
            self.config.limits.handshake_timeout,
        )
        .await
        {
            Ok(tls) => tls,
            Err(HandshakeError::Timeout(_)) => {
                return Err(OutboundError::HandshakeTimeout { endpoint })
            }
            Err(e) if e.rustls().is_some_and(is_not_authorized) => {
                return Err(OutboundError::ServerNotAllowed { endpoint })
            }
            Err(HandshakeError::Io(source)) => {
                return Err(OutboundError::Handshake { endpoint, source })
            }
        };
        // The verifier already checked the allow list; re-checking the ID here costs nothing
        // and keeps the invariant local to this function.
        let id = match peer_id(tls.get_ref().1) {
            Some(id) if self.config.allow.allows(&id) => id,
            Some(_) => return Err(OutboundError::ServerNotAllowed { endpoint }),
            None => return Err(OutboundError::NoPeerId { endpoint }),
        };
        tracing::debug!(server_id = %id, %endpoint, "outbound mTLS established");
        *peer = Some(Peer { id, origin: None });
        pump(app, tls, self.config.limits.idle_timeout)
            .await
            .map_err(OutboundError::Relay)
    }

    async fn dial(&self) -> Result<(TcpStream, String), OutboundError> {
        let failed = |endpoint: &Endpoint, failure| match failure {
            DialFailure::Connect(e) => {
                tracing::debug!(%endpoint, error = %e, "connect failed; trying the next endpoint");
            }
            DialFailure::Timeout(_) | DialFailure::Attempt(_) => {
                tracing::debug!(%endpoint, "connect timed out; trying the next endpoint");
            }
        };
        match self
            .endpoints
            .connect_tcp(self.config.limits.connect_timeout, failed)
            .await
        {
            Ok((tcp, endpoint)) => Ok((tcp, endpoint.to_string())),
            Err(_) => Err(OutboundError::UpstreamUnavailable {
                endpoints: self
                    .config
                    .connect
                    .iter()
                    .map(Endpoint::to_string)
                    .collect(),
            }),
        }
    }
}

// === impl OutboundError ===

impl Ending for OutboundError {
    /// The metric label (`outcome`) of a refusal, or the relay's error.
    fn refusal(&self) -> Result<&'static str, &io::Error> {
        Ok(match self {
            Self::UpstreamUnavailable { .. } => "upstream_unavailable",
            Self::HandshakeTimeout { .. } => "handshake_timeout",
            Self::ServerNotAllowed { .. } => "server_not_allowed",
            Self::Handshake { .. } => "handshake_failed",
            Self::NoPeerId { .. } => "no_peer_id",
            Self::Relay(e) => return Err(e),
        })
    }
}
