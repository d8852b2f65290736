//! Ingress over a tunnel (`bridge::mux`): every CONNECT stream of a peer's tunnel is checked
//! exactly like a per-connection relay hop ([`super::dispatch`]) and then pumped to its
//! destination.
//!
//! Invariants: the tunnel peer is the verified, configured bridge peer of the TLS session
//! (checked before the tunnel is served); a stream's origin is its one `fedgate-origin-id`
//! header, and a missing, repeated, non-ASCII or non-SPIFFE origin, a method other than CONNECT
//! or a destination that is not a bare DNS name refuses that stream; a refused stream gets a
//! non-2xx answer with the refusal label, one log line and the refusal metrics of a refused
//! connection (same reasons), and nothing is dialed for it; a stream's bytes are read only after
//! every check passed and the destination session is up.

use std::sync::Arc;

use bytes::Bytes;
use fedgate_federation::SpiffeId;
use h2::server::SendResponse;
use h2::RecvStream;
use http::{Method, Request, Response, StatusCode};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use super::IngressState;
use crate::bridge::mux::stream::H2Stream;
use crate::bridge::mux::{server, ORIGIN_HEADER, REASON_HEADER};
use crate::bridge::BridgeReject;

/// Serves the tunnel of `peer` (already verified and authorized as a bridge peer).
pub(super) async fn serve(
    state: Arc<IngressState>,
    tls: TlsStream<TcpStream>,
    peer: SpiffeId,
) -> Result<(), BridgeReject> {
    let _open = state.metrics.mux_tunnel(&state.listener);
    tracing::debug!(listener = %state.listener, %peer, "tunnel accepted");
    let (drain, retired) = (state.drain.clone(), state.retired.clone());
    // Shutdown or a newer state: GOAWAY, live streams finish.
    let stop = async move {
        tokio::select! {
            () = drain.cancelled() => {}
            () = retired.cancelled() => {}
        }
    };
    let handshake = state.timeouts.handshake;
    let for_streams = Arc::clone(&state);
    server::serve(tls, handshake, stop, move |request, respond| {
        serve_stream(Arc::clone(&for_streams), peer.clone(), request, respond)
    })
    .await
}

/// Serves one stream to its end; refusals and failures are logged and counted here.
async fn serve_stream(
    state: Arc<IngressState>,
    peer: SpiffeId,
    request: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
) {
    let listener = state.listener.as_str();
    let _open = state.metrics.mux_stream(listener);
    let checked = async {
        let (origin, destination) = stream_claims(&request)?;
        let (upstream, route) = super::dispatch(&state, &peer, &origin, &destination, None).await?;
        Ok::<_, BridgeReject>((origin, destination, upstream, route))
    };
    let (origin, destination, upstream, route) = match checked.await {
        Ok(forward) => forward,
        Err(reject) => return refuse(&state, &mut respond, &reject),
    };
    let accepted = Response::builder().status(StatusCode::OK).body(());
    let send = match accepted.map(|r| respond.send_response(r, false)) {
        Ok(Ok(send)) => send,
        // The peer reset the stream meanwhile: nothing to answer.
        Ok(Err(e)) => return failed(&state, &BridgeReject::MuxProtocol(e.to_string())),
        Err(e) => return failed(&state, &BridgeReject::MuxProtocol(e.to_string())),
    };
    state.metrics.forwarded(listener, &route);
    tracing::debug!(
        listener, %route, %peer, %origin, %destination,
        "bridged stream forwarded"
    );
    let stream = H2Stream::new(send, request.into_body());
    if let Err(reject) = crate::bridge::pump_counted(
        listener,
        stream,
        upstream,
        state.timeouts.idle,
        &state.metrics,
    )
    .await
    {
        state.metrics.mux_reset(listener);
        failed(&state, &reject);
    }
}

/// The claims of a stream: its origin (the one origin header, a SPIFFE ID) and its destination
/// (`:authority`, a bare DNS name).
pub fn stream_claims<B>(request: &Request<B>) -> Result<(SpiffeId, String), BridgeReject> {
    if request.method() != Method::CONNECT {
        return Err(BridgeReject::MuxBadRequest {
            reason: format!(
                "method {} (a tunnel carries CONNECT only)",
                request.method()
            ),
        });
    }
    let mut origins = request.headers().get_all(ORIGIN_HEADER).iter();
    let origin = match (origins.next(), origins.next()) {
        (Some(origin), None) => origin,
        (None, _) => {
            return Err(BridgeReject::OriginInvalid {
                reason: format!("the stream carries no {ORIGIN_HEADER} header"),
            })
        }
        (Some(_), Some(_)) => {
            return Err(BridgeReject::OriginInvalid {
                reason: format!("the stream carries more than one {ORIGIN_HEADER} header"),
            })
        }
    };
    let origin = origin.to_str().map_err(|_| BridgeReject::OriginInvalid {
        reason: format!("the {ORIGIN_HEADER} header is not visible ASCII"),
    })?;
    let origin = SpiffeId::parse(origin).map_err(|e| BridgeReject::OriginInvalid {
        reason: format!("{origin:?} is not a SPIFFE ID: {e}"),
    })?;
    let authority = request
        .uri()
        .authority()
        .filter(|a| !a.as_str().is_empty())
        .ok_or(BridgeReject::MissingAuthority)?;
    if authority.as_str() != authority.host() || request.uri().path_and_query().is_some() {
        return Err(BridgeReject::InvalidDestination {
            destination: authority.as_str().to_owned(),
        });
    }
    Ok((origin, authority.as_str().to_owned()))
}

/// The status of a refused stream's answer.
fn status_of(reject: &BridgeReject) -> StatusCode {
    match reject {
        BridgeReject::Denied(_) => StatusCode::FORBIDDEN,
        BridgeReject::OriginInvalid { .. }
        | BridgeReject::MissingAuthority
        | BridgeReject::InvalidDestination { .. }
        | BridgeReject::MuxBadRequest { .. } => StatusCode::BAD_REQUEST,
        _ => StatusCode::BAD_GATEWAY,
    }
}

/// Answers a refused stream (non-2xx, end of stream) and records the refusal.
fn refuse(state: &IngressState, respond: &mut SendResponse<Bytes>, reject: &BridgeReject) {
    state.metrics.mux_refused(&state.listener, reject);
    failed(state, reject);
    let answer = Response::builder()
        .status(status_of(reject))
        .header(REASON_HEADER, reject.label())
        .body(());
    if let Ok(answer) = answer {
        // The peer may have reset the stream already; the refusal is recorded either way.
        let _ = respond.send_response(answer, true);
    } else {
        respond.send_reset(h2::Reason::REFUSED_STREAM);
    }
}

/// The one log line and the metrics of a refused or failed stream.
fn failed(state: &IngressState, reject: &BridgeReject) {
    crate::bridge::log_reject(&state.listener, "ingress", None, reject);
    state.metrics.reject(&state.listener, reject);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect(authority: &str) -> http::request::Builder {
        let mut parts = http::uri::Parts::default();
        parts.authority = Some(authority.parse().unwrap());
        Request::builder()
            .method(Method::CONNECT)
            .uri(http::Uri::from_parts(parts).unwrap())
    }

    const ORIGIN: &str = "spiffe://cluster-a.test/ns/demo/sa/client";

    #[test]
    fn a_stream_needs_exactly_one_spiffe_origin_and_a_bare_destination() {
        let ok = connect("echo.cluster-b.test")
            .header(ORIGIN_HEADER, ORIGIN)
            .body(())
            .unwrap();
        let (origin, dest) = stream_claims(&ok).unwrap();
        assert_eq!(origin.to_string(), ORIGIN);
        assert_eq!(dest, "echo.cluster-b.test");

        let label = |r: Request<()>| stream_claims(&r).unwrap_err().label();
        let none = connect("echo.cluster-b.test").body(()).unwrap();
        assert_eq!(label(none), "origin_invalid");
        let two = connect("echo.cluster-b.test")
            .header(ORIGIN_HEADER, ORIGIN)
            .header(ORIGIN_HEADER, "spiffe://cluster-a.test/other")
            .body(())
            .unwrap();
        assert_eq!(label(two), "origin_invalid");
        let junk = connect("echo.cluster-b.test")
            .header(ORIGIN_HEADER, "https://cluster-a.test/x")
            .body(())
            .unwrap();
        assert_eq!(label(junk), "origin_invalid");
        let port = connect("echo.cluster-b.test:443")
            .header(ORIGIN_HEADER, ORIGIN)
            .body(())
            .unwrap();
        assert_eq!(label(port), "invalid_destination");
        let get = Request::builder()
            .method(Method::GET)
            .uri("https://echo.cluster-b.test/")
            .header(ORIGIN_HEADER, ORIGIN)
            .body(())
            .unwrap();
        assert_eq!(label(get), "mux_bad_request");
    }
}
