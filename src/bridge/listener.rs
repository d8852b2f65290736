//! The accept loop of a bridge listener: one task per connection, tracked for drain.
//!
//! Invariants: an `accept()` error never ends the loop (it backs off, bounded at one second);
//! the number of live connections is bounded by `max_connections` (over the limit, the new
//! connection is closed at once and counted); on shutdown the loop stops accepting and returns,
//! and the caller waits on the `TaskTracker` for live connections to finish.

use std::future::Future;
use std::sync::Arc;

use fedgate_dataplane::accept::Acceptor;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::BridgeMetrics;

/// Accepts until `shutdown` fires, handing each connection to `handle` in a task on `tracker`.
pub async fn run<F, Fut>(
    listener: TcpListener,
    name: String,
    max_connections: usize,
    metrics: BridgeMetrics,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    handle: F,
) where
    F: Fn(TcpStream) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let limit = Arc::new(Semaphore::new(max_connections));
    let mut acceptor = Acceptor::new(listener, name.clone());
    while let Some((tcp, _)) = acceptor.next(&shutdown).await {
        let Ok(permit) = Arc::clone(&limit).try_acquire_owned() else {
            tracing::warn!(listener = %name, max_connections, "connection limit reached; closing");
            metrics
                .rejects
                .get_or_create(&super::metrics::ReasonLabels {
                    listener: name.clone(),
                    reason: "connection_limit",
                })
                .inc();
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let fut = handle(tcp);
        tracker.spawn(async move {
            fut.await;
            drop(permit);
        });
    }
}
