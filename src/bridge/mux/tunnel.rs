//! One egress-side tunnel: a bridge mTLS connection to a peer ingress, dialed and pinned exactly
//! like a per-connection hop (same client config builder, server pinned to the route's
//! `peer_id`, bridge bundle only), that negotiated [`super::MUX_ALPN`] and speaks HTTP/2; and
//! the CONNECT stream it opens for one caller connection.
//!
//! Invariants: a tunnel is used only if its handshake selected the tunnel protocol; the origin
//! header of a stream is built here from the caller's verified ID and nothing else (the caller's
//! bytes go only into the stream's DATA frames, after the ingress accepted the stream); a tunnel
//! is *usable* for new streams only while its connection runs, the peer has not sent GOAWAY or
//! refused a stream as unprocessed, the peer's certificate has not expired and it was dialed
//! with TLS settings at least as new as the caller's (an SVID, bundle or route change makes
//! older tunnels stale); a closed tunnel is never used again. Dead connections are found by
//! HTTP/2 PINGs ([`KEEPALIVE`]).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use fedgate_federation::SpiffeId;
use http::{HeaderValue, Method, Request, StatusCode};
use rustls::pki_types::ServerName;
use rustls::ClientConfig;

use super::stream::H2Stream;
use super::{
    CONNECTION_WINDOW, MAX_FRAME, MAX_HEADER_LIST, ORIGIN_HEADER, REASON_HEADER, STREAM_WINDOW,
};
use crate::bridge::policy::EgressRoute;
use crate::bridge::{BridgeMetrics, BridgeReject};

/// Interval of the keepalive PINGs on an egress tunnel.
pub const KEEPALIVE: Duration = Duration::from_secs(30);
/// A PING unanswered for this long closes the tunnel (its streams fail, new ones go elsewhere).
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// A live tunnel and its load.
#[derive(Debug)]
pub struct Tunnel {
    send: h2::client::SendRequest<Bytes>,
    /// Streams reserved or open on this tunnel.
    streams: AtomicUsize,
    /// Set by the connection task once the connection ended.
    closed: Arc<AtomicBool>,
    /// No new streams: the peer is going away (GOAWAY, refused stream, no answer).
    draining: AtomicBool,
    /// Generation of the egress TLS settings the tunnel was dialed with
    /// (`EgressState::generation`).
    generation: u64,
    /// The peer's leaf certificate notAfter.
    peer_not_after: Option<SystemTime>,
}

/// A stream slot reserved on a tunnel; gives it back when dropped.
#[derive(Debug)]
pub struct StreamSlot {
    tunnel: Arc<Tunnel>,
}

/// Why a stream could not be opened, and whether another tunnel may be tried (nothing of the
/// caller's was sent: the stream was refused unprocessed or the tunnel is gone).
#[derive(Debug)]
pub struct StreamFailure {
    pub retry: bool,
    pub reject: BridgeReject,
}

// === impl Tunnel ===

impl Tunnel {
    /// Dials a tunnel for `route` with `config` (a bridge client config offering the tunnel
    /// protocol, pinned to the route's `peer_id`), within `connect_timeout` per step.
    pub async fn open(
        listener: &str,
        route: &EgressRoute,
        config: Arc<ClientConfig>,
        generation: u64,
        connect_timeout: Duration,
        metrics: &BridgeMetrics,
    ) -> Result<Arc<Tunnel>, BridgeReject> {
        // The SNI of a tunnel names the bridge trust domain: it carries no destination (each
        // stream does), and the ingress reads none from it.
        let server_name = ServerName::try_from(route.peer_id.trust_domain().as_str().to_owned())
            .map_err(|_| BridgeReject::InvalidDestination {
                destination: route.peer_id.trust_domain().to_string(),
            })?;
        let tls = crate::bridge::connect_upstream(
            listener,
            &route.name,
            &route.upstreams,
            config,
            server_name,
            connect_timeout,
            metrics,
        )
        .await?;
        let conn = tls.get_ref().1;
        if !super::negotiated(conn) {
            return Err(BridgeReject::MuxRefusedUpstream {
                route: route.name.clone(),
            });
        }
        let peer_not_after = conn
            .peer_certificates()
            .and_then(|c| c.first())
            .and_then(leaf_not_after);
        let handshake = h2::client::Builder::new()
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .max_frame_size(MAX_FRAME)
            .max_header_list_size(MAX_HEADER_LIST)
            .enable_push(false)
            .handshake::<_, Bytes>(tls);
        let (send, mut connection) = tokio::time::timeout(connect_timeout, handshake)
            .await
            .map_err(|_| {
                BridgeReject::MuxProtocol(format!("no HTTP/2 handshake within {connect_timeout:?}"))
            })?
            .map_err(|e| BridgeReject::MuxProtocol(e.to_string()))?;
        let closed = Arc::new(AtomicBool::new(false));
        let open = metrics.mux_tunnel(listener);
        let (flag, listener, name) = (Arc::clone(&closed), listener.to_owned(), route.name.clone());
        let ping = connection.ping_pong();
        tokio::spawn(async move {
            let _open = open;
            let keepalive = async {
                let Some(mut ping) = ping else {
                    return std::future::pending().await;
                };
                loop {
                    tokio::time::sleep(KEEPALIVE).await;
                    let pong =
                        tokio::time::timeout(KEEPALIVE_TIMEOUT, ping.ping(h2::Ping::opaque()));
                    if !matches!(pong.await, Ok(Ok(_))) {
                        return;
                    }
                }
            };
            tokio::select! {
                r = connection => match r {
                    Ok(()) => tracing::debug!(%listener, route = %name, "tunnel closed"),
                    Err(e) => tracing::debug!(%listener, route = %name, error = %e, "tunnel failed"),
                },
                () = keepalive => {
                    tracing::warn!(%listener, route = %name, "tunnel keepalive unanswered; closing it");
                }
            }
            flag.store(true, Ordering::SeqCst);
        });
        tracing::debug!(route = %route.name, peer = %route.peer_id, "tunnel opened");
        Ok(Arc::new(Tunnel {
            send,
            streams: AtomicUsize::new(0),
            closed,
            draining: AtomicBool::new(false),
            generation,
            peer_not_after,
        }))
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Whether new streams of a caller at TLS settings `generation` may use this tunnel at `now`.
    pub fn is_usable(&self, generation: u64, now: SystemTime) -> bool {
        !self.is_closed()
            && !self.draining.load(Ordering::SeqCst)
            && self.generation >= generation
            && self.peer_not_after.is_none_or(|t| now < t)
    }

    /// Whether nothing but live streams keep the tunnel: closed, draining, expired or dialed
    /// with settings older than `latest`.
    pub fn is_stale(&self, latest: u64, now: SystemTime) -> bool {
        !self.is_usable(latest, now)
    }

    /// Streams reserved or open.
    pub fn streams(&self) -> usize {
        self.streams.load(Ordering::SeqCst)
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Stops new streams on this tunnel; live ones go on.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Reserves a stream slot (the pool calls this under its lock, after checking the limit).
    pub fn reserve(self: &Arc<Self>) -> StreamSlot {
        self.streams.fetch_add(1, Ordering::SeqCst);
        StreamSlot {
            tunnel: Arc::clone(self),
        }
    }
}

// === impl StreamSlot ===

impl StreamSlot {
    pub fn tunnel(&self) -> &Arc<Tunnel> {
        &self.tunnel
    }

    /// Opens the CONNECT stream for `destination` on behalf of `origin` (the caller's verified
    /// ID) and waits up to `wait` for the ingress's answer; `Ok` once it accepted (2xx).
    pub async fn open_stream(
        &self,
        route: &str,
        origin: &SpiffeId,
        destination: &str,
        wait: Duration,
    ) -> Result<H2Stream, StreamFailure> {
        let fatal = |reject| StreamFailure {
            retry: false,
            reject,
        };
        let request = connect_request(destination, origin).map_err(fatal)?;
        let tunnel = &self.tunnel;
        let gone = |e: h2::Error| {
            tunnel.drain();
            StreamFailure {
                retry: true,
                reject: BridgeReject::MuxProtocol(e.to_string()),
            }
        };
        let mut send = tokio::time::timeout(wait, tunnel.send.clone().ready())
            .await
            .map_err(|_| {
                tunnel.drain();
                StreamFailure {
                    retry: true,
                    reject: BridgeReject::MuxProtocol(format!(
                        "the tunnel accepted no new stream within {wait:?}"
                    )),
                }
            })?
            .map_err(gone)?;
        let (response, send_stream) = send.send_request(request, false).map_err(gone)?;
        let response = match tokio::time::timeout(wait, response).await {
            Err(_) => {
                // Also what a peer that went away and ignores new streams looks like.
                tunnel.drain();
                return Err(fatal(BridgeReject::MuxProtocol(format!(
                    "the peer ingress did not answer the stream within {wait:?}"
                ))));
            }
            Ok(Err(e)) => {
                let unprocessed = e.reason() == Some(h2::Reason::REFUSED_STREAM)
                    || (e.is_go_away() && e.is_remote());
                if unprocessed {
                    tunnel.drain();
                }
                return Err(StreamFailure {
                    retry: unprocessed || e.is_io(),
                    reject: BridgeReject::MuxProtocol(e.to_string()),
                });
            }
            Ok(Ok(response)) => response,
        };
        if response.status() != StatusCode::OK {
            let reason = response
                .headers()
                .get(REASON_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            return Err(fatal(BridgeReject::MuxStreamRefused {
                route: route.to_owned(),
                status: response.status().as_u16(),
                reason,
            }));
        }
        Ok(H2Stream::new(send_stream, response.into_body()))
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.tunnel.streams.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The CONNECT request of one stream: `:authority` = the destination (a DNS name, no port, no
/// userinfo) and exactly one origin header.
pub fn connect_request(destination: &str, origin: &SpiffeId) -> Result<Request<()>, BridgeReject> {
    let invalid = || BridgeReject::InvalidDestination {
        destination: destination.to_owned(),
    };
    let authority = http::uri::Authority::try_from(destination)
        .ok()
        .filter(|a| !a.as_str().is_empty() && a.as_str() == a.host())
        .ok_or_else(invalid)?;
    let mut parts = http::uri::Parts::default();
    parts.authority = Some(authority);
    let uri = http::Uri::from_parts(parts).map_err(|_| invalid())?;
    let origin =
        HeaderValue::try_from(origin.to_string()).map_err(|_| BridgeReject::OriginInvalid {
            reason: format!("{origin} is not a valid header value"),
        })?;
    Request::builder()
        .method(Method::CONNECT)
        .uri(uri)
        .header(ORIGIN_HEADER, origin)
        .body(())
        .map_err(|_| invalid())
}

/// The notAfter of a DER certificate (`None` if it does not parse).
fn leaf_not_after(der: &rustls::pki_types::CertificateDer<'_>) -> Option<SystemTime> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let secs = u64::try_from(cert.validity().not_after.timestamp()).ok()?;
    SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_requests_carry_the_destination_and_one_origin() {
        let origin = SpiffeId::parse("spiffe://cluster-a.test/ns/x").unwrap();
        let r = connect_request("echo.cluster-b.test", &origin).unwrap();
        assert_eq!(r.method(), Method::CONNECT);
        assert_eq!(r.uri().authority().unwrap().as_str(), "echo.cluster-b.test");
        assert_eq!(r.headers().get_all(ORIGIN_HEADER).iter().count(), 1);
        assert_eq!(r.headers()[ORIGIN_HEADER], origin.to_string().as_str());
        for bad in ["", "a@echo.test", "echo.test:443", "echo.test/x"] {
            assert!(connect_request(bad, &origin).is_err(), "{bad:?}");
        }
    }
}
