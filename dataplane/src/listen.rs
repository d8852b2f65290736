//! Listening sockets for the data-plane workers: how one listener's connections are spread
//! across worker threads.
//!
//! * [`AcceptMode::Shared`] (the default): one socket, one accept queue. Every worker registers
//!   a `dup` of it with its own reactor, so a new connection wakes the workers polling it and
//!   the first one to call `accept` takes it (the idle worker wins).
//! * [`AcceptMode::ReusePort`]: one socket per worker, all bound to the same address with
//!   `SO_REUSEPORT`. The kernel hashes each new connection to one socket of the group, so each
//!   worker has its own accept queue and a connection wakes exactly one worker.
//! * [`AcceptMode::Handoff`]: one socket, accepted from by one thread that deals connections
//!   to the workers in turn ([`crate::handoff`]): one blocked `accept` is woken per connection,
//!   then the one worker it is dealt to.
//!
//! Invariants:
//! * a `ReusePort` group is made only of this process's sockets: each socket of the group is
//!   checked after `bind` and before `listen` (a TCP socket joins the port's group, and can be
//!   handed connections, only once it listens), and the whole group once more after the last
//!   one listens. The check reads the kernel's listening-socket tables (`/proc/net/tcp`,
//!   `/proc/net/tcp6`) and refuses if any socket listens on the same port that is not one of
//!   ours. `SO_REUSEPORT` would otherwise let a second process (of the same user: the kernel
//!   refuses other users) join the port silently and take a share of the connections. A second
//!   fedgate started on the same address therefore fails at start in both modes, as it would
//!   without `SO_REUSEPORT`, and never takes a connection of the first;
//! * [`worker_sockets`] returns exactly one source per worker; in `Shared` and `ReusePort`
//!   each is a socket, the original among them, so no copy outlives the workers' accept loops;
//!   in `Handoff` the one socket belongs to the dealer thread, which [`WorkerSockets::dealer`]
//!   stops.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;

use socket2::{Domain, Protocol, Socket, Type};

use crate::accept::Acceptor;
use crate::handoff::{self, Dealer, Inbox};

/// The listen backlog of every data-plane socket.
pub const BACKLOG: i32 = 4096;

/// How a listener's connections are spread across workers (see the module doc).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AcceptMode {
    /// One socket polled by every worker.
    #[default]
    Shared,
    /// One `SO_REUSEPORT` socket per worker, guarded against foreign members.
    ReusePort,
    /// One socket and one thread accepting from it, dealing connections to the workers.
    Handoff,
}

/// What one worker accepts from.
#[derive(Debug)]
pub enum WorkerSocket {
    /// Its own socket (a member of a `SO_REUSEPORT` group) or a `dup` of the shared one.
    Listener(TcpListener),
    /// The connections the listener's hand-off thread deals to this worker.
    Inbox(Inbox),
}

/// Every worker's source for one listener, and the hand-off thread if there is one.
#[derive(Debug)]
pub struct WorkerSockets {
    /// One per worker, in worker order.
    pub sockets: Vec<WorkerSocket>,
    /// `Handoff` only: stop it at shutdown to close the socket ([`Dealer::stop`]).
    pub dealer: Option<Dealer>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ListenError {
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("cannot make the listening socket of worker {worker} for {addr}: {source}")]
    Worker {
        addr: SocketAddr,
        worker: usize,
        #[source]
        source: io::Error,
    },
    #[error("cannot start the accept hand-off thread for {addr}: {source}")]
    Handoff {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error(
        "cannot check who else listens on port {port} (reading {table}): {source}; \
         set `accept = \"shared\"` where /proc is not mounted"
    )]
    Check {
        port: u16,
        table: &'static str,
        #[source]
        source: io::Error,
    },
    #[error(
        "another socket listens on port {port} (socket inode {inode}), so a SO_REUSEPORT group \
         on {addr} would share its connections with it; stop the other process (is a second \
         fedgate running with the same config?) or set `accept = \"shared\"`"
    )]
    Foreign {
        addr: SocketAddr,
        port: u16,
        inode: u64,
    },
}

/// Binds `addr` for the data plane: `SO_REUSEADDR` (quick restarts), `TCP_NODELAY` (inherited
/// by every accepted socket), `SO_REUSEPORT` in
/// [`AcceptMode::ReusePort`] (refused with [`io::ErrorKind::AddrInUse`] and a
/// [`ListenError::Foreign`] inside if another socket listens on the port), non-blocking,
/// listening with [`BACKLOG`].
pub fn bind(addr: SocketAddr, mode: AcceptMode) -> io::Result<TcpListener> {
    bind_member(addr, mode, &[]).map_err(ListenError::into_io)
}

/// [`bind`] for a member of a `ReusePort` group whose sockets so far have the inodes `ours`.
fn bind_member(
    addr: SocketAddr,
    mode: AcceptMode,
    ours: &[u64],
) -> Result<TcpListener, ListenError> {
    let os = |source| ListenError::Bind { addr, source };
    let socket =
        Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(os)?;
    socket.set_reuse_address(true).map_err(os)?;
    // Accepted sockets inherit TCP_NODELAY from the listener (Linux copies the option), which
    // saves every relayed connection a setsockopt: a proxy forwards what it has at once.
    socket.set_nodelay(true).map_err(os)?;
    if mode == AcceptMode::ReusePort {
        // socket2 has this only behind its `all` feature; nix's is the same setsockopt.
        nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::ReusePort, &true)
            .map_err(|errno| os(io::Error::from(errno)))?;
    }
    socket.set_nonblocking(true).map_err(os)?;
    socket.bind(&addr.into()).map_err(os)?;
    if mode == AcceptMode::ReusePort {
        // Not listening yet, so not in the port's group: a refusal takes no connection.
        let bound = socket.local_addr().map_err(os)?.as_socket().unwrap_or(addr);
        ensure_exclusive(bound, ours)?;
    }
    socket.listen(BACKLOG).map_err(os)?;
    Ok(socket.into())
}

/// One source per worker for the listener `name` bound as `first` (by [`bind`] with the same
/// `mode`). `Shared`: `dup`s of `first`, the last worker taking `first` itself. `ReusePort`:
/// `first` for worker 0 and a new member of its group for each other worker, after which the
/// group is checked for foreign members (module invariants). `Handoff`: one inbox per worker,
/// fed by a dealer thread that owns `first`.
pub fn worker_sockets(
    first: TcpListener,
    workers: usize,
    mode: AcceptMode,
    name: &str,
) -> Result<WorkerSockets, ListenError> {
    if mode != AcceptMode::Handoff {
        let sockets = own_sockets(first, workers, mode)?;
        return Ok(WorkerSockets {
            sockets: sockets.into_iter().map(WorkerSocket::Listener).collect(),
            dealer: None,
        });
    }
    let addr = first
        .local_addr()
        .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
    let (dealer, inboxes) = handoff::start(first, workers, name)
        .map_err(|source| ListenError::Handoff { addr, source })?;
    Ok(WorkerSockets {
        sockets: inboxes.into_iter().map(WorkerSocket::Inbox).collect(),
        dealer: Some(dealer),
    })
}

/// [`worker_sockets`] for the modes where each worker has a socket of its own.
fn own_sockets(
    first: TcpListener,
    workers: usize,
    mode: AcceptMode,
) -> Result<Vec<TcpListener>, ListenError> {
    let workers = workers.max(1);
    let addr = first.local_addr().map_err(|source| ListenError::Worker {
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        worker: 0,
        source,
    })?;
    let mut sockets = Vec::with_capacity(workers);
    match mode {
        AcceptMode::Shared | AcceptMode::Handoff => {
            for worker in 0..workers - 1 {
                let copy = first.try_clone().map_err(|source| ListenError::Worker {
                    addr,
                    worker,
                    source,
                })?;
                sockets.push(copy);
            }
            sockets.push(first);
        }
        AcceptMode::ReusePort => {
            let mut inodes = vec![inode(&first, addr.port())?];
            sockets.push(first);
            for worker in 1..workers {
                let member =
                    bind_member(addr, AcceptMode::ReusePort, &inodes).map_err(|e| match e {
                        ListenError::Bind { addr, source } => ListenError::Worker {
                            addr,
                            worker,
                            source,
                        },
                        refused => refused,
                    })?;
                inodes.push(inode(&member, addr.port())?);
                sockets.push(member);
            }
            // A foreign socket may have joined between two members' checks.
            ensure_exclusive(addr, &inodes)?;
        }
    }
    Ok(sockets)
}

// === impl WorkerSocket ===

impl WorkerSocket {
    /// The accept loop's source; call it on the worker's runtime (the sockets it yields are
    /// registered with that runtime's reactor).
    pub fn into_acceptor(self, name: &str) -> io::Result<Acceptor> {
        match self {
            WorkerSocket::Listener(l) => {
                Ok(Acceptor::new(tokio::net::TcpListener::from_std(l)?, name))
            }
            WorkerSocket::Inbox(inbox) => Ok(Acceptor::handed(inbox, name)),
        }
    }
}

// === impl ListenError ===

impl ListenError {
    /// As the `io::Error` [`bind`] returns: the system's own error for a failed socket call,
    /// `AddrInUse` carrying this error for a foreign member of the port.
    fn into_io(self) -> io::Error {
        match self {
            ListenError::Bind { source, .. } => source,
            ListenError::Foreign { .. } => io::Error::new(io::ErrorKind::AddrInUse, self),
            other => io::Error::other(other),
        }
    }
}

/// The inode of a listening socket (how `/proc/net/tcp` names it).
fn inode(socket: &TcpListener, port: u16) -> Result<u64, ListenError> {
    nix::sys::stat::fstat(socket.as_raw_fd())
        .map(|stat| stat.st_ino)
        .map_err(|errno| ListenError::Check {
            port,
            table: "the socket's inode",
            source: io::Error::from(errno),
        })
}

/// Refuses if the kernel lists a socket listening on `addr`'s port whose inode is not in
/// `ours`.
fn ensure_exclusive(addr: SocketAddr, ours: &[u64]) -> Result<(), ListenError> {
    let port = addr.port();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = match std::fs::read_to_string(table) {
            Ok(text) => text,
            // No IPv6 in this kernel: nothing can listen there.
            Err(e) if e.kind() == io::ErrorKind::NotFound && table.ends_with('6') => continue,
            Err(source) => {
                return Err(ListenError::Check {
                    port,
                    table,
                    source,
                })
            }
        };
        if let Some(inode) = foreign_listener(&text, port, ours) {
            return Err(ListenError::Foreign { addr, port, inode });
        }
    }
    Ok(())
}

/// The inode of a socket in `table` (the text of `/proc/net/tcp` or `tcp6`) that listens on
/// `port` and is not in `ours`, if any. Any local address counts: a listener on the wildcard
/// address with the same port would take connections a more specific group does not match.
/// Lines that do not parse are skipped (the header, and any format this does not know).
pub fn foreign_listener(table: &str, port: u16, ours: &[u64]) -> Option<u64> {
    table
        .lines()
        .filter_map(listening_row)
        .find(|&(p, inode)| p == port && !ours.contains(&inode))
        .map(|(_, inode)| inode)
}

/// `(local port, inode)` of one `/proc/net/tcp{,6}` row in state LISTEN (`0A`), or `None`.
/// Columns: `sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode …`, the
/// port being the hex digits after the last `:` of `local_address`.
fn listening_row(line: &str) -> Option<(u16, u64)> {
    let mut fields = line.split_whitespace();
    let local = fields.nth(1)?;
    let state = fields.nth(1)?;
    let inode = fields.nth(5)?;
    if state != "0A" {
        return None;
    }
    let (_, port) = local.rsplit_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let inode = inode.parse().ok()?;
    Some((port, inode))
}

#[cfg(test)]
mod tests {
    use std::net::TcpStream;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn accepted_sockets_inherit_nodelay() {
        for mode in [
            AcceptMode::Shared,
            AcceptMode::ReusePort,
            AcceptMode::Handoff,
        ] {
            let listener = bind("127.0.0.1:0".parse().unwrap(), mode).unwrap();
            listener.set_nonblocking(false).unwrap();
            let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (accepted, _) = listener.accept().unwrap();
            assert!(accepted.nodelay().unwrap(), "{mode:?}: Nagle is on");
        }
    }

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1268 1 00000000f786b3a5 100 0 0 10 0
   1: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4001 1 00000000f786b3a5 100 0 0 10 0
   2: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 4002 1 000000004f398575 20 4 1 44 146
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5001 1 0000000000000000 100 0 0 10 0
";

    #[test]
    fn finds_only_listeners_on_the_port_that_are_not_ours() {
        // Port 0x1F90 = 8080: inode 4001 listens, 4002 is an established connection.
        assert_eq!(foreign_listener(TCP, 8080, &[]), Some(4001));
        assert_eq!(foreign_listener(TCP, 8080, &[4001]), None);
        assert_eq!(foreign_listener(TCP, 2024, &[]), Some(1268));
        assert_eq!(foreign_listener(TCP, 9999, &[]), None);
        assert_eq!(foreign_listener(TCP6, 8080, &[4001]), Some(5001));
        assert_eq!(foreign_listener(TCP6, 8080, &[5001]), None);
        assert_eq!(foreign_listener("", 8080, &[]), None);
    }

    proptest! {
        #[test]
        fn any_table_text_is_safe_to_scan(text in "\\PC{0,400}", port: u16) {
            let _ = foreign_listener(&text, port, &[]);
        }

        #[test]
        fn a_listening_row_round_trips(port: u16, inode: u64, ours: bool) {
            let row = format!(
                "   7: 0100007F:{port:04X} 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000  0 {inode} 1 0 100 0 0 10 0"
            );
            let mine = if ours { vec![inode] } else { vec![] };
            let expected = if ours { None } else { Some(inode) };
            prop_assert_eq!(foreign_listener(&row, port, &mine), expected);
        }
    }

    /// Accepts every connection pending on `socket` (non-blocking) and returns how many.
    fn drain(socket: &TcpListener) -> usize {
        let mut n = 0;
        while socket.accept().is_ok() {
            n += 1;
        }
        n
    }

    #[test]
    fn a_reuseport_group_has_one_socket_per_worker_sharing_the_connections() {
        let first = bind("127.0.0.1:0".parse().unwrap(), AcceptMode::ReusePort).unwrap();
        let addr = first.local_addr().unwrap();
        let sockets = own_sockets(first, 3, AcceptMode::ReusePort).unwrap();
        assert_eq!(sockets.len(), 3);
        assert!(sockets.iter().all(|s| s.local_addr().unwrap() == addr));
        let clients: Vec<_> = (0..64).map(|_| TcpStream::connect(addr).unwrap()).collect();
        // Each handshake completed before `connect` returned, so every connection is queued.
        let per_socket: Vec<usize> = sockets.iter().map(drain).collect();
        assert_eq!(per_socket.iter().sum::<usize>(), clients.len());
        assert!(
            per_socket.iter().filter(|&&n| n > 0).count() >= 2,
            "the kernel spreads connections over the group: {per_socket:?}"
        );
    }

    #[test]
    fn shared_mode_hands_every_worker_the_same_socket() {
        let first = bind("127.0.0.1:0".parse().unwrap(), AcceptMode::Shared).unwrap();
        let addr = first.local_addr().unwrap();
        let sockets = own_sockets(first, 2, AcceptMode::Shared).unwrap();
        assert_eq!(sockets.len(), 2);
        let _client = TcpStream::connect(addr).unwrap();
        // One queue: whichever copy accepts takes the one connection.
        assert_eq!(drain(&sockets[0]) + drain(&sockets[1]), 1);
    }

    /// A listening SO_REUSEPORT socket that is not ours, made without the guard (as another
    /// process would).
    fn intruder(addr: SocketAddr) -> Socket {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::ReusePort, &true).unwrap();
        socket.bind(&addr.into()).unwrap();
        socket.listen(16).unwrap();
        socket
    }

    /// The guard, first socket: binding next to someone else's SO_REUSEPORT listener is
    /// refused before `listen`, so the port's group never hands this socket a connection.
    #[test]
    fn a_port_with_a_foreign_listener_is_refused_before_listening() {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = probe.local_addr().unwrap();
        drop(probe);
        let _intruder = intruder(addr);
        // The kernel lets the same user join; the guard is what refuses.
        let err = bind(addr, AcceptMode::ReusePort).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
        let text = err.to_string();
        assert!(text.contains("another socket listens on port"), "{text}");
        assert!(text.contains("accept = \"shared\""), "{text}");
    }

    /// The guard, later members: a foreign socket that joined after the first member is found
    /// before the next member listens.
    #[test]
    fn a_foreign_member_joining_the_group_is_refused() {
        let first = bind("127.0.0.1:0".parse().unwrap(), AcceptMode::ReusePort).unwrap();
        let addr = first.local_addr().unwrap();
        let _intruder = intruder(addr);
        let err = own_sockets(first, 2, AcceptMode::ReusePort).unwrap_err();
        assert!(
            matches!(err, ListenError::Foreign { port, .. } if port == addr.port()),
            "{err}"
        );
    }

    #[test]
    fn without_reuseport_a_taken_port_is_refused_at_bind() {
        let taken = bind("127.0.0.1:0".parse().unwrap(), AcceptMode::Shared).unwrap();
        let addr = taken.local_addr().unwrap();
        assert!(bind(addr, AcceptMode::ReusePort).is_err());
        assert!(bind(addr, AcceptMode::Shared).is_err());
    }
}
