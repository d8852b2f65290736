//! The one accept loop of every data-plane listener (passthrough, bridge egress/ingress,
//! sidecar inbound/outbound): accept, admit under the connection limit, spawn a tracked task.
//!
//! Invariants:
//! * accept errors back off and never end the loop ([`crate::accept`]); the loop returns at
//!   shutdown, dropping the listening socket, and live connections go on in the tracker;
//! * a connection reads the service's state once, at accept ([`Service::state`]); it holds a
//!   permit of the limit that state names for its whole life, and a connection finding no free
//!   permit is handed to [`Service::refuse`] (log and count) and closed right after, before any
//!   byte is read;
//! * every connection task is spawned on [`Connections::tracker`] (so shutdown can drain it)
//!   and ends when [`Connections::hard_stop`] fires; the connection's own future is polled
//!   first, so it can still record a `drained` outcome on the way out;
//! * no allocation besides the task itself, no lock: one permit and one state read per
//!   connection.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::accept::Acceptor;

/// What a listener does with its connections.
pub trait Service: Send + Sync + 'static {
    /// What a connection is served with, read once at accept (e.g. the state in force).
    type State: Send + 'static;

    /// The state for a connection accepted now.
    fn state(&self) -> Self::State;

    /// The connection limit a connection with `state` counts against.
    fn limit<'a>(&'a self, state: &'a Self::State) -> &'a Arc<Semaphore>;

    /// A connection from `peer` found the listener at its limit: log and count it (it is
    /// closed right after this returns).
    fn refuse(&self, state: &Self::State, peer: SocketAddr);

    /// Serves one admitted connection to its end; `permit` is its slot of the limit (drop it
    /// to free the slot earlier than the end of the future).
    fn serve(
        &self,
        state: Self::State,
        stream: TcpStream,
        peer: SocketAddr,
        permit: OwnedSemaphorePermit,
    ) -> impl Future<Output = ()> + Send + 'static;
}

/// Where connection tasks run, and when they must stop; shared by every listener of a server.
#[derive(Clone, Debug, Default)]
pub struct Connections {
    /// Every connection task is spawned here; shutdown closes and drains it.
    pub tracker: TaskTracker,
    /// Cancelled when the drain deadline passes: live connections end at once.
    pub hard_stop: CancellationToken,
}

/// Longest wait for connection tasks to return once the hard stop fired (each returns at its
/// next poll; this only bounds a task stuck in a blocking call).
const HARD_STOP_GRACE: Duration = Duration::from_secs(5);

impl Connections {
    /// Stops taking connections and waits up to `timeout` for the live ones to end; if some
    /// are still open then, fires the hard stop and waits for their tasks (bounded). Returns
    /// whether every connection ended on its own within `timeout`.
    pub async fn drain(&self, timeout: Duration) -> bool {
        let live = self.tracker.len();
        if live > 0 {
            tracing::info!(live_connections = live, ?timeout, "draining connections");
        }
        if crate::shutdown::drain(&self.tracker, timeout).await {
            return true;
        }
        tracing::warn!(
            live_connections = self.tracker.len(),
            "drain deadline passed; closing the remaining connections"
        );
        self.hard_stop.cancel();
        let _ = tokio::time::timeout(HARD_STOP_GRACE, self.tracker.wait()).await;
        false
    }
}

/// Accepts until `shutdown` is cancelled, serving each connection with `service`.
pub async fn serve<S: Service>(
    mut acceptor: Acceptor,
    service: S,
    connections: &Connections,
    shutdown: &CancellationToken,
) {
    while let Some((stream, peer)) = acceptor.next(shutdown).await {
        let state = service.state();
        let Ok(permit) = Arc::clone(service.limit(&state)).try_acquire_owned() else {
            service.refuse(&state, peer);
            drop(stream);
            continue;
        };
        let connection = service.serve(state, stream, peer, permit);
        let hard_stop = connections.hard_stop.clone();
        connections.tracker.spawn(async move {
            tokio::select! {
                biased;
                () = connection => {}
                () = hard_stop.cancelled() => {}
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio::sync::mpsc;

    use super::*;

    /// Echoes one byte back, then holds the connection until the client closes.
    struct Echo {
        limit: Arc<Semaphore>,
        refused: Arc<AtomicUsize>,
        done: mpsc::UnboundedSender<&'static str>,
    }

    impl Service for Echo {
        type State = ();

        fn state(&self) {}

        fn limit<'a>(&'a self, _: &'a ()) -> &'a Arc<Semaphore> {
            &self.limit
        }

        fn refuse(&self, _: &(), _: SocketAddr) {
            self.refused.fetch_add(1, Ordering::SeqCst);
        }

        fn serve(
            &self,
            (): (),
            mut stream: TcpStream,
            _: SocketAddr,
            permit: OwnedSemaphorePermit,
        ) -> impl Future<Output = ()> + Send + 'static {
            let done = self.done.clone();
            async move {
                let mut b = [0u8; 1];
                if stream.read_exact(&mut b).await.is_ok() {
                    let _ = stream.write_all(&b).await;
                    let _ = stream.read(&mut b).await;
                }
                drop(permit);
                let _ = done.send("closed");
            }
        }
    }

    async fn start(
        limit: usize,
    ) -> (
        SocketAddr,
        Arc<AtomicUsize>,
        mpsc::UnboundedReceiver<&'static str>,
        Connections,
        CancellationToken,
        tokio::task::JoinHandle<()>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let refused = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = mpsc::unbounded_channel();
        let service = Echo {
            limit: Arc::new(Semaphore::new(limit)),
            refused: refused.clone(),
            done: tx,
        };
        let connections = Connections::default();
        let shutdown = CancellationToken::new();
        let (c, s) = (connections.clone(), shutdown.clone());
        let task = tokio::spawn(async move {
            serve(Acceptor::new(listener, "test"), service, &c, &s).await;
        });
        (addr, refused, rx, connections, shutdown, task)
    }

    async fn echo(addr: SocketAddr) -> TcpStream {
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(b"x").await.unwrap();
        let mut b = [0u8; 1];
        c.read_exact(&mut b).await.unwrap();
        c
    }

    #[tokio::test]
    async fn over_the_limit_is_refused_and_closed_then_the_slot_is_reused() {
        let (addr, refused, mut done, _, _shutdown, _task) = start(1).await;
        let first = echo(addr).await;
        let mut second = TcpStream::connect(addr).await.unwrap();
        let mut b = [0u8; 1];
        assert_eq!(second.read(&mut b).await.unwrap(), 0, "closed at once");
        assert_eq!(refused.load(Ordering::SeqCst), 1);
        drop(first);
        assert_eq!(done.recv().await, Some("closed"));
        let _third = echo(addr).await;
        assert_eq!(refused.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn shutdown_stops_accepting_and_hard_stop_ends_live_connections() {
        let (addr, _, _done, connections, shutdown, task) = start(10).await;
        let mut live = echo(addr).await;
        shutdown.cancel();
        task.await.unwrap();
        assert!(TcpStream::connect(addr).await.is_err(), "socket closed");
        connections.tracker.close();
        assert_eq!(connections.tracker.len(), 1, "the live connection drains");
        connections.hard_stop.cancel();
        connections.tracker.wait().await;
        let mut b = [0u8; 1];
        assert_eq!(live.read(&mut b).await.unwrap(), 0);
    }
}
