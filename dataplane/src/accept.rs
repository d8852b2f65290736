//! Accepting TCP connections for every long-running server in fedgate (data-plane listeners,
//! the bundle endpoint, the issuer).
//!
//! Invariant: an `accept()` error (EMFILE, ENFILE, ECONNABORTED...) never ends a server and
//! never makes it spin: it is logged and retried after a capped exponential backoff (5 ms
//! doubling to 1 s, reset by the next success), and the wait itself ends at shutdown.

use std::net::SocketAddr;
use std::time::Duration;

use crate::backoff::Backoff;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

const FIRST_BACKOFF: Duration = Duration::from_millis(5);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Accepts from one listener until shutdown; see the module invariant.
#[derive(Debug)]
pub struct Acceptor {
    listener: TcpListener,
    name: String,
    backoff: Backoff,
}

// === impl Acceptor ===

impl Acceptor {
    /// `name` identifies the server in log lines (e.g. the listener name).
    pub fn new(listener: TcpListener, name: impl Into<String>) -> Self {
        Self {
            listener,
            name: name.into(),
            backoff: Backoff::new(FIRST_BACKOFF, MAX_BACKOFF),
        }
    }

    /// The next connection, or `None` once `shutdown` is cancelled (checked first).
    pub async fn next(&mut self, shutdown: &CancellationToken) -> Option<(TcpStream, SocketAddr)> {
        loop {
            let accepted = tokio::select! {
                biased;
                () = shutdown.cancelled() => return None,
                r = self.listener.accept() => r,
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
        self.listener.local_addr()
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
