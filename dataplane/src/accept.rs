//! Accepting TCP connections for every long-running server in fedgate (data-plane listeners,
//! the bundle endpoint, the issuer).
//!
//! Invariant: an `accept()` error (EMFILE, ENFILE, ECONNABORTED...) never ends a server and
//! never makes it spin: it is logged and retried after a capped exponential backoff (5 ms
//! doubling to 1 s, reset by the next success), and the wait itself ends at shutdown. An
//! acceptor fed by a hand-off thread ([`crate::handoff`]) ends when that thread has stopped.

use std::net::SocketAddr;
use std::time::Duration;

use crate::backoff::Backoff;
use crate::handoff::Inbox;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

const FIRST_BACKOFF: Duration = Duration::from_millis(5);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Accepts from one listener until shutdown; see the module invariant.
#[derive(Debug)]
pub struct Acceptor {
    source: Source,
    name: String,
    backoff: Backoff,
}

/// Where an [`Acceptor`]'s connections come from.
#[derive(Debug)]
enum Source {
    /// `accept(2)` on this worker's own (or shared) listening socket.
    Listener(TcpListener),
    /// Dealt by the listener's hand-off thread ([`crate::handoff`]).
    Inbox(Inbox),
}

// === impl Acceptor ===

impl Acceptor {
    /// `name` identifies the server in log lines (e.g. the listener name).
    pub fn new(listener: TcpListener, name: impl Into<String>) -> Self {
        Self::with_source(Source::Listener(listener), name.into())
    }

    /// Takes the connections a hand-off thread deals to `inbox` (it must be called on the
    /// runtime that serves them: each is registered with that runtime's reactor).
    pub fn handed(inbox: Inbox, name: impl Into<String>) -> Self {
        Self::with_source(Source::Inbox(inbox), name.into())
    }

    fn with_source(source: Source, name: String) -> Self {
        Self {
            source,
            name,
            backoff: Backoff::new(FIRST_BACKOFF, MAX_BACKOFF),
        }
    }

    /// The next connection, or `None` once `shutdown` is cancelled (checked first).
    pub async fn next(&mut self, shutdown: &CancellationToken) -> Option<(TcpStream, SocketAddr)> {
        loop {
            let accepted = tokio::select! {
                biased;
                () = shutdown.cancelled() => return None,
                r = self.source.accept() => r?,
            };
            match accepted {
                Ok(conn) => {
                    self.backoff.reset();
                    return Some(conn);
                }
                Err(e) => {
                    let delay = self.backoff.next();
                    tracing::warn!(
                        listener = %self.name,
                        error = %e,
                        backoff_ms = delay.as_millis() as u64,
                        "accept failed; retrying after a backoff"
                    );
                    tokio::select! {
                        () = shutdown.cancelled() => return None,
                        () = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match &self.source {
            Source::Listener(l) => l.local_addr(),
            Source::Inbox(inbox) => Ok(inbox.local_addr),
        }
    }
}

// === impl Source ===

impl Source {
    /// The next connection or accept error; `None` once a hand-off thread has stopped.
    async fn accept(&mut self) -> Option<std::io::Result<(TcpStream, SocketAddr)>> {
        match self {
            Source::Listener(l) => Some(l.accept().await),
            Source::Inbox(inbox) => {
                let (stream, peer) = inbox.connections.recv().await?;
                Some(TcpStream::from_std(stream).map(|s| (s, peer)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepts_then_stops_at_shutdown() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut acceptor = Acceptor::new(listener, "test");
        let shutdown = CancellationToken::new();
        let client = TcpStream::connect(addr).await.unwrap();
        let (_server, peer) = acceptor.next(&shutdown).await.unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        shutdown.cancel();
        assert!(acceptor.next(&shutdown).await.is_none());
    }
}
