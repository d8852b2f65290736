//! A gateway listener: the data-plane accept loop ([`fedgate_dataplane::serve`]) serving one
//! listening socket with the listener's state and its connection handler.
//!
//! Invariants: the handler (passthrough or a bridge side) is fixed when the listener is built;
//! a connection reads the listener state once, at accept, and counts against that state's
//! connection limit (see [`super::state`]); accept errors back off and never end the loop;
//! every connection task is spawned on the shared tracker and ends at the hard stop.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use fedgate_dataplane::accept::Acceptor;
use fedgate_dataplane::listen::{self, AcceptMode};
use fedgate_dataplane::serve::{self, Connections, Service};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::config::ListenerKind;
use crate::gateway::passthrough;
use crate::gateway::state::{ConnContext, ListenerState};
use crate::telemetry::Metrics;

/// What serves a listener's connections; fixed when the listener is built.
#[derive(Clone, Debug)]
pub enum Handler {
    /// SNI passthrough (TLS is never terminated).
    Passthrough,
    /// A bridge egress or ingress listener.
    Bridge(Arc<dyn Terminating>),
}

/// The connection handler of a listener kind that terminates TLS (the bridge sides). Defined
/// here and implemented by the bridge, so the gateway's accept path does not depend on the
/// bridge (which builds on the gateway's listener state).
pub trait Terminating: fmt::Debug + Send + Sync + 'static {
    /// Serves one accepted connection to its end, logging and counting refusals itself.
    fn serve_connection(&self, tcp: TcpStream) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// One listener's accept loop, ready to `run` (cloned once per data-plane worker).
#[derive(Clone)]
pub struct Listener {
    name: Arc<str>,
    state: watch::Receiver<Arc<ListenerState>>,
    handler: Handler,
    metrics: Metrics,
    connections: Connections,
}

/// [`Service`] of one worker's copy of a listener.
struct Gateway {
    cx: ConnContext,
    /// This worker's accept counter for the listener.
    accepted: prometheus_client::metrics::counter::Counter,
    state: watch::Receiver<Arc<ListenerState>>,
    handler: Handler,
}

// === impl Listener ===

impl Listener {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `connections` holds the tracker `App::run` drains and the hard stop that ends what is
    /// left after the drain deadline.
    pub fn new(
        name: &str,
        state: watch::Receiver<Arc<ListenerState>>,
        handler: Handler,
        metrics: Metrics,
        connections: Connections,
    ) -> Listener {
        Listener {
            name: Arc::from(name),
            state,
            handler,
            metrics,
            connections,
        }
    }

    /// Accepts until `shutdown` is cancelled, then drops the socket (new connections are
    /// refused by the kernel) and returns; connection tasks live on in the tracker. `worker`
    /// is the data-plane worker this copy runs on (for its accept counter).
    pub async fn run(self, acceptor: Acceptor, worker: usize, shutdown: CancellationToken) {
        let gateway = Gateway {
            accepted: self.metrics.worker_accepted(&self.name, worker),
            cx: ConnContext {
                listener: self.name.clone(),
                active: self.metrics.active(&self.name),
                metrics: self.metrics,
                hard_stop: self.connections.hard_stop.clone(),
            },
            state: self.state,
            handler: self.handler,
        };
        serve::serve(acceptor, gateway, &self.connections, &shutdown).await;
        tracing::info!(listener = %self.name, "listener stopped accepting");
    }
}

// === impl Gateway ===

impl Service for Gateway {
    type State = Arc<ListenerState>;

    fn state(&self) -> Arc<ListenerState> {
        self.state.borrow().clone()
    }

    fn limit<'a>(&'a self, state: &'a Arc<ListenerState>) -> &'a Arc<Semaphore> {
        &state.limit
    }

    fn refuse(&self, _: &Arc<ListenerState>, peer: SocketAddr) {
        tracing::info!(listener = %self.cx.listener, %peer, reason = "over_limit", "connection refused");
        self.cx
            .metrics
            .reject(&self.cx.listener, passthrough::Reject::OverLimit.label());
    }

    fn serve(
        &self,
        state: Arc<ListenerState>,
        stream: TcpStream,
        peer: SocketAddr,
        permit: OwnedSemaphorePermit,
    ) -> impl Future<Output = ()> + Send + 'static {
        self.accepted.inc();
        let cx = self.cx.clone();
        let handler = self.handler.clone();
        async move {
            cx.active.inc();
            // Decrements the gauge and frees the slot also when the hard stop drops this
            // future mid-connection.
            let _guard = Active {
                gauge: &cx.active,
                _permit: permit,
            };
            match (state.kind(), handler) {
                (ListenerKind::Passthrough, _) => {
                    passthrough::serve(stream, peer, &state, &cx).await
                }
                // Boxed (by `Terminating`): a bridge connection's future holds two rustls
                // connections and their handshake state (kilobytes). Inline, it would size
                // every connection task of every listener, so each idle passthrough connection
                // would carry it too (bench/idle_rss.sh, docs/benchmarks.md).
                (ListenerKind::BridgeEgress | ListenerKind::BridgeIngress, Handler::Bridge(b)) => {
                    b.serve_connection(stream).await
                }
                // `App::build` gives every bridge listener its handler; refuse if not.
                (
                    ListenerKind::BridgeEgress | ListenerKind::BridgeIngress,
                    Handler::Passthrough,
                ) => {
                    tracing::error!(
                        listener = %cx.listener, %peer,
                        "bridge listener has no handler; closing"
                    );
                    drop(stream);
                }
            }
        }
    }
}

/// A live connection: counted in the active gauge and holding its slot until dropped.
struct Active<'a> {
    gauge: &'a prometheus_client::metrics::gauge::Gauge,
    /// Released after the gauge is decremented (fields drop after `Drop::drop`).
    _permit: OwnedSemaphorePermit,
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// Binds `addr` with `SO_REUSEADDR` (quick restarts) and a deep accept backlog, for a server
/// that runs on the calling runtime (admin, federation endpoint).
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::from_std(listen::bind(addr, AcceptMode::Shared)?)
}
