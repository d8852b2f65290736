//! Accept hand-off: one thread accepts for every worker of a listener and deals the
//! connections to them, round robin, through bounded per-worker inboxes
//! ([`crate::listen::AcceptMode::Handoff`]).
//!
//! Why: with a shared socket every idle worker's reactor is woken by each new connection and
//! all but one find nothing to accept (a thundering herd that grows with the worker count);
//! with `SO_REUSEPORT` the kernel's hash decides, whatever each worker's load. Here exactly one
//! thread sleeps in a blocking `accept(2)` and each connection wakes exactly one worker, in
//! turn. The price is a second thread wake-up per connection (the dealer's), which the
//! benchmarks weigh (docs/benchmarks.md).
//!
//! Invariants:
//! * only the dealer thread accepts from the socket; it is the only thread polling it, so the
//!   socket is in blocking mode and the dealer sleeps in the kernel, not in a loop;
//! * memory is bounded: each inbox holds at most [`INBOX_CAPACITY`] connections; when the
//!   worker whose turn it is has a full inbox the next one is tried, and when all are full the
//!   dealer waits for room, so the kernel's accept backlog (not this process) absorbs a burst;
//! * accepted sockets are non-blocking and close-on-exec before they are dealt, ready to be
//!   registered with the receiving worker's reactor;
//! * [`Dealer::stop`] shuts the listening socket down (`shutdown(SHUT_RD)`: the kernel stops
//!   listening on the port and wakes the blocked `accept`), waits for the thread, and only then
//!   returns: after it, new connections are refused. The dealer also stops by itself once
//!   every inbox is closed;
//! * an `accept` error other than the shutdown (EMFILE, ENFILE, ECONNABORTED...) is logged and
//!   retried after a capped backoff, as in [`crate::accept`]; it never ends the dealer.

use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::backoff::Backoff;

/// Connections waiting per worker inbox before the dealer tries the next worker.
pub const INBOX_CAPACITY: usize = 256;

const FIRST_BACKOFF: Duration = Duration::from_millis(5);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// One worker's share of a hand-off listener: the connections dealt to it.
#[derive(Debug)]
pub struct Inbox {
    pub(crate) connections: mpsc::Receiver<(TcpStream, SocketAddr)>,
    pub(crate) local_addr: SocketAddr,
}

/// The accepting thread of one listener; see the module invariants.
#[derive(Debug)]
pub struct Dealer {
    listener: Arc<TcpListener>,
    stopping: Arc<AtomicBool>,
    finished: oneshot::Receiver<()>,
}

/// Starts the dealer thread for `listener` (bound and listening) and returns it with one inbox
/// per worker (at least one). `name` names the thread (`fedgate-accept-{name}`) and log lines.
pub fn start(
    listener: TcpListener,
    workers: usize,
    name: &str,
) -> io::Result<(Dealer, Vec<Inbox>)> {
    start_with(listener, workers, name, INBOX_CAPACITY)
}

/// [`start`] with `capacity` connections per inbox.
fn start_with(
    listener: TcpListener,
    workers: usize,
    name: &str,
    capacity: usize,
) -> io::Result<(Dealer, Vec<Inbox>)> {
    let local_addr = listener.local_addr()?;
    listener.set_nonblocking(false)?;
    let (senders, inboxes): (Vec<_>, Vec<_>) = (0..workers.max(1))
        .map(|_| {
            let (tx, rx) = mpsc::channel(capacity);
            let inbox = Inbox {
                connections: rx,
                local_addr,
            };
            (tx, inbox)
        })
        .unzip();
    let listener = Arc::new(listener);
    let stopping = Arc::new(AtomicBool::new(false));
    let (done, finished) = oneshot::channel();
    let thread = {
        let (listener, stopping, name) = (listener.clone(), stopping.clone(), name.to_owned());
        move || {
            deal(&listener, &senders, &stopping, &name);
            // The socket closes when the `Dealer` drops its handle too.
            drop(listener);
            let _ = done.send(());
        }
    };
    std::thread::Builder::new()
        .name(format!("fedgate-accept-{name}"))
        .spawn(thread)?;
    Ok((
        Dealer {
            listener,
            stopping,
            finished,
        },
        inboxes,
    ))
}

// === impl Dealer ===

impl Dealer {
    /// Stops accepting and waits for the thread to end (module invariants).
    pub async fn stop(self) {
        self.stopping.store(true, Ordering::SeqCst);
        if let Err(e) = socket2::SockRef::from(&*self.listener).shutdown(Shutdown::Read) {
            // Not listening any more (e.g. already shut down): the thread is on its way out.
            tracing::debug!(error = %e, "shutting the hand-off listener down");
        }
        drop(self.listener);
        let _ = self.finished.await;
    }
}

/// The dealer thread's loop: accept, then hand to the next worker with room.
fn deal(
    listener: &TcpListener,
    inboxes: &[mpsc::Sender<(TcpStream, SocketAddr)>],
    stopping: &AtomicBool,
    name: &str,
) {
    let mut backoff = Backoff::new(FIRST_BACKOFF, MAX_BACKOFF);
    let mut turn = 0usize;
    loop {
        let accepted = listener.accept();
        if stopping.load(Ordering::SeqCst) {
            return;
        }
        let (stream, peer) = match accepted {
            Ok(conn) => {
                backoff.reset();
                conn
            }
            Err(e) => {
                let delay = backoff.next();
                tracing::warn!(
                    listener = name,
                    error = %e,
                    backoff_ms = delay.as_millis() as u64,
                    "accept failed; retrying after a backoff"
                );
                std::thread::sleep(delay);
                continue;
            }
        };
        if let Err(e) = stream.set_nonblocking(true) {
            tracing::warn!(listener = name, %peer, error = %e, "closing an accepted connection that cannot be made non-blocking");
            continue;
        }
        match hand(inboxes, turn, (stream, peer)) {
            Some(next) => turn = next,
            None => return,
        }
    }
}

/// Hands `conn` to the first inbox with room, starting at `turn`; waits on `turn`'s inbox when
/// all are full. Returns the next turn, or `None` when every inbox is closed.
fn hand(
    inboxes: &[mpsc::Sender<(TcpStream, SocketAddr)>],
    turn: usize,
    mut conn: (TcpStream, SocketAddr),
) -> Option<usize> {
    let n = inboxes.len();
    let mut closed = 0;
    for offset in 0..n {
        let i = (turn + offset) % n;
        match inboxes[i].try_send(conn) {
            Ok(()) => return Some((i + 1) % n),
            Err(mpsc::error::TrySendError::Full(c)) => conn = c,
            Err(mpsc::error::TrySendError::Closed(c)) => {
                closed += 1;
                conn = c;
            }
        }
    }
    if closed == n {
        return None;
    }
    // Every open inbox is full: wait for room in the first open one from `turn`.
    for offset in 0..n {
        let i = (turn + offset) % n;
        match inboxes[i].blocking_send(conn) {
            Ok(()) => return Some((i + 1) % n),
            Err(mpsc::error::SendError(c)) => conn = c,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    fn listening() -> TcpListener {
        TcpListener::bind("127.0.0.1:0").unwrap()
    }

    #[tokio::test]
    async fn deals_round_robin_then_stops_and_refuses() {
        let (dealer, mut inboxes) = start(listening(), 3, "test").unwrap();
        let addr = inboxes[0].local_addr;
        let mut clients = Vec::new();
        for i in 0..6u8 {
            let mut client = std::net::TcpStream::connect(addr).unwrap();
            client.write_all(&[i]).unwrap();
            let inbox = &mut inboxes[usize::from(i) % 3];
            let (stream, peer) = inbox.connections.recv().await.unwrap();
            assert_eq!(peer, client.local_addr().unwrap());
            assert!(
                stream.take_error().unwrap().is_none(),
                "a healthy connection"
            );
            let mut stream = tokio::net::TcpStream::from_std(stream).unwrap();
            let mut byte = [0u8];
            tokio::io::AsyncReadExt::read_exact(&mut stream, &mut byte)
                .await
                .unwrap();
            assert_eq!(byte, [i], "connection {i} went to worker {}", i % 3);
            clients.push(client);
        }
        dealer.stop().await;
        let refused = std::net::TcpStream::connect(addr);
        assert!(refused.is_err(), "the port still accepts after stop");
    }

    #[tokio::test]
    async fn a_full_inbox_is_skipped() {
        const CAPACITY: usize = 4;
        let (dealer, mut inboxes) = start_with(listening(), 2, "test", CAPACITY).unwrap();
        let addr = inboxes[0].local_addr;
        // Round robin while both have room: connections alternate 0, 1, 0, 1...
        let mut clients: Vec<_> = (0..2 * CAPACITY)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        for _ in 0..CAPACITY {
            inboxes[0].connections.recv().await.unwrap();
        }
        // Nobody drains inbox 1, now full: every next connection goes to inbox 0.
        for _ in 0..3 {
            let mut client = std::net::TcpStream::connect(addr).unwrap();
            client.write_all(b"x").unwrap();
            let (stream, _) = inboxes[0].connections.recv().await.unwrap();
            let mut stream = tokio::net::TcpStream::from_std(stream).unwrap();
            let mut byte = [0u8];
            tokio::io::AsyncReadExt::read_exact(&mut stream, &mut byte)
                .await
                .unwrap();
            assert_eq!(&byte, b"x");
            clients.push(client);
        }
        assert_eq!(inboxes[1].connections.len(), CAPACITY);
        dealer.stop().await;
    }

    #[tokio::test]
    async fn the_dealer_ends_once_every_inbox_is_closed() {
        let (dealer, inboxes) = start(listening(), 2, "test").unwrap();
        let addr = inboxes[0].local_addr;
        drop(inboxes);
        // The next connection finds no worker: the dealer returns and closes the socket.
        let mut client = std::net::TcpStream::connect(addr).unwrap();
        let Dealer {
            finished, listener, ..
        } = dealer;
        drop(listener);
        finished.await.unwrap();
        let mut buf = [0u8; 1];
        // The dealt connection was closed with the dealer's last handle on it.
        assert_eq!(client.read(&mut buf).unwrap_or(0), 0);
        assert!(std::net::TcpStream::connect(addr).is_err());
    }
}
