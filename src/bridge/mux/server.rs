//! The ingress side of a tunnel: HTTP/2 server on a bridge mTLS session that negotiated the
//! tunnel protocol, one task per stream, GOAWAY on drain.
//!
//! Invariants: every stream is handed to `on_stream` (which applies the per-stream checks and
//! answers it) and nothing else reads its bytes; the advertised limits bound what one peer can
//! make this side hold (streams per tunnel, header list size, flow-control windows); on drain the
//! server sends GOAWAY, refuses new streams and returns once the live streams ended (the
//! accept loop's drain deadline bounds that).

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use h2::server::SendResponse;
use h2::RecvStream;
use http::Request;
use tokio::io::{AsyncRead, AsyncWrite};

use super::{CONNECTION_WINDOW, MAX_FRAME, MAX_HEADER_LIST, MAX_STREAMS_PER_TUNNEL, STREAM_WINDOW};
use crate::bridge::BridgeReject;

/// Serves the tunnel on `io` until the peer closes it, it fails, or `drain` completed and its
/// streams ended.
pub async fn serve<T, D, F, Fut>(
    io: T,
    handshake_timeout: Duration,
    drain: D,
    mut on_stream: F,
) -> Result<(), BridgeReject>
where
    T: AsyncRead + AsyncWrite + Unpin,
    D: Future<Output = ()>,
    F: FnMut(Request<RecvStream>, SendResponse<Bytes>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let handshake = h2::server::Builder::new()
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_frame_size(MAX_FRAME)
        .max_header_list_size(MAX_HEADER_LIST)
        .max_concurrent_streams(MAX_STREAMS_PER_TUNNEL)
        .handshake::<_, Bytes>(io);
    let mut conn = tokio::time::timeout(handshake_timeout, handshake)
        .await
        .map_err(|_| {
            BridgeReject::MuxProtocol(format!("no HTTP/2 preface within {handshake_timeout:?}"))
        })?
        .map_err(|e| BridgeReject::MuxProtocol(e.to_string()))?;
    let mut draining = false;
    let mut drain = std::pin::pin!(drain);
    loop {
        tokio::select! {
            next = conn.accept() => match next {
                Some(Ok((request, respond))) => {
                    tokio::spawn(on_stream(request, respond));
                }
                Some(Err(e)) => {
                    // A peer that goes away cleanly is not an error.
                    if e.is_go_away() && e.reason() == Some(h2::Reason::NO_ERROR) {
                        return Ok(());
                    }
                    return Err(BridgeReject::MuxProtocol(e.to_string()));
                }
                None => return Ok(()),
            },
            () = &mut drain, if !draining => {
                draining = true;
                conn.graceful_shutdown();
            }
        }
    }
}
