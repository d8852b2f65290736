//! The serving path of fedgate's two small HTTPS servers, the federation bundle endpoint
//! ([`crate::endpoint::server`]) and the bridge CA's issuing endpoint (`fedgate ca serve`):
//! the data plane's accept loop (`fedgate_dataplane::serve`) with a connection limit, a TLS
//! handshake under a deadline (`fedgate_dataplane::tls`) with the TLS config in force, then
//! HTTP/1.1 through an axum router until the connection ends or shutdown.
//!
//! Invariants:
//! * at most `max_connections` connections are open; one more is refused (and counted through
//!   [`HttpsApp::refuse`]) and closed at accept, before any TLS;
//! * a connection's slot (its [`HttpsApp::Guard`]) is released *before* a handshake refusal is
//!   reported, so whoever observes the count can reconnect into the slot;
//! * each connection takes the TLS config in force at accept; a reload affects new connections;
//! * request heads are read under the handshake timeout and bounded by `max_buf_size`;
//! * at shutdown the listening socket closes at once, and each open connection finishes its
//!   current request within [`DRAIN`] before [`serve`] returns.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use fedgate_dataplane::accept::Acceptor;
use fedgate_dataplane::serve::{self, Connections, Service};
use fedgate_dataplane::tls::HandshakeError;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::{ServerConfig, ServerConnection};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// How long an open connection may take to finish its current request after shutdown.
pub const DRAIN: Duration = Duration::from_secs(5);

/// The listener settings of an HTTPS server.
#[derive(Clone, Debug)]
pub struct HttpsListener {
    /// For logs: "bundle endpoint", "issuing endpoint".
    pub name: &'static str,
    /// The TLS config in force (replaced on certificate reload).
    pub tls: watch::Receiver<Arc<ServerConfig>>,
    pub max_connections: usize,
    /// Bound on the TLS handshake and on reading each request head.
    pub handshake_timeout: Duration,
    /// Largest request head buffered, in bytes; `None` keeps hyper's default.
    pub max_buf_size: Option<usize>,
}

/// Why a connection was refused before it reached the router.
#[derive(Debug)]
pub enum Refusal<'a> {
    /// The server is at `max_connections`.
    OverLimit,
    /// The TLS handshake failed (e.g. no or a bad client certificate).
    Handshake(&'a io::Error),
    /// The TLS handshake did not finish within `handshake_timeout`.
    HandshakeTimeout,
}

/// What a server does with its connections: metrics, logs and the router.
pub trait HttpsApp: Send + Sync + 'static {
    /// Held for the life of an admitted connection (it owns the connection's permit).
    type Guard: Send + 'static;

    /// A connection was admitted under the limit.
    fn admit(&self, permit: OwnedSemaphorePermit) -> Self::Guard;

    /// Logs and counts a refusal (the connection is closed right after).
    fn refuse(&self, peer: SocketAddr, refusal: Refusal<'_>);

    /// The router for a connection whose handshake succeeded, or `None` to close it (after
    /// logging and counting why).
    fn router(&self, peer: SocketAddr, tls: &ServerConnection) -> Option<Router>;
}

/// Serves `listener` until `shutdown`, then drains (see the module invariants).
pub async fn serve<A: HttpsApp>(
    listener: TcpListener,
    settings: HttpsListener,
    app: Arc<A>,
    shutdown: CancellationToken,
) {
    let connections = Connections::default();
    let acceptor = Acceptor::new(listener, settings.name);
    let server = Server {
        limit: Arc::new(Semaphore::new(settings.max_connections.max(1))),
        settings,
        app,
        shutdown: shutdown.clone(),
    };
    serve::serve(acceptor, server, &connections, &shutdown).await;
    connections.tracker.close();
    connections.tracker.wait().await;
}

/// The [`Service`] of an HTTPS server.
struct Server<A> {
    settings: HttpsListener,
    limit: Arc<Semaphore>,
    app: Arc<A>,
    shutdown: CancellationToken,
}

impl<A: HttpsApp> Service for Server<A> {
    type State = Arc<ServerConfig>;

    fn state(&self) -> Arc<ServerConfig> {
        self.settings.tls.borrow().clone()
    }

    fn limit<'a>(&'a self, _: &'a Arc<ServerConfig>) -> &'a Arc<Semaphore> {
        &self.limit
    }

    fn refuse(&self, _: &Arc<ServerConfig>, peer: SocketAddr) {
        self.app.refuse(peer, Refusal::OverLimit);
    }

    fn serve(
        &self,
        tls: Arc<ServerConfig>,
        tcp: TcpStream,
        peer: SocketAddr,
        permit: OwnedSemaphorePermit,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let app = Arc::clone(&self.app);
        let timeout = self.settings.handshake_timeout;
        let max_buf_size = self.settings.max_buf_size;
        let shutdown = self.shutdown.clone();
        let name = self.settings.name;
        async move {
            let guard = app.admit(permit);
            let acceptor = tokio_rustls::TlsAcceptor::from(tls);
            let stream = match fedgate_dataplane::tls::accept(&acceptor, tcp, timeout).await {
                Ok(stream) => stream,
                Err(e) => {
                    drop(guard);
                    match &e {
                        HandshakeError::Io(io) => app.refuse(peer, Refusal::Handshake(io)),
                        HandshakeError::Timeout(_) => app.refuse(peer, Refusal::HandshakeTimeout),
                    }
                    return;
                }
            };
            let Some(router) = app.router(peer, stream.get_ref().1) else {
                return;
            };
            let service = hyper_util::service::TowerToHyperService::new(router);
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(timeout);
            if let Some(max) = max_buf_size {
                builder.max_buf_size(max);
            }
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                () = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    match tokio::time::timeout(DRAIN, conn.as_mut()).await {
                        Ok(r) => r,
                        Err(_) => return,
                    }
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "{name} connection ended with an error");
            }
            drop(guard);
        }
    }
}
