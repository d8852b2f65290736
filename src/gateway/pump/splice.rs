//! Zero-copy TCP↔TCP pumping with splice(2): socket → pipe → socket, per direction.
//!
//! Invariants:
//! * a direction splices from its source only into an EMPTY pipe, so EAGAIN on that call can
//!   only mean "socket not readable", and EAGAIN while draining only "socket not writable":
//!   tokio's readiness (`try_io`) is never cleared for the wrong reason;
//! * a direction holds a pipe only while it has data in flight: once the pipe is drained and the
//!   source has nothing more, the empty pipe goes back to a bounded process-wide pool. Idle
//!   connections hold no pipes (pipes count against the per-user `pipe-user-pages-soft` limit,
//!   beyond which the kernel shrinks new pipes to a page or two);
//! * a pipe holding data is never pooled: on error it is closed;
//! * `Unsupported` is returned only if no byte has been read in either direction, so falling
//!   back to the userspace pump loses nothing.

use std::io;
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{fcntl, splice, FcntlArg, OFlag, SpliceFFlags};
use nix::unistd::pipe2;
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::{idle_deadline, pump_error, side_failure, PumpFailure, PumpStats, Side};

/// Requested pipe capacity. Larger pipes mean fewer splice calls per byte in bulk transfers;
/// the kernel refuses (EPERM) beyond `/proc/sys/fs/pipe-max-size` or the per-user budget, in
/// which case the pipe keeps its default size (64 KiB).
const PIPE_SIZE: usize = 256 * 1024;
/// Empty pipes kept for reuse. Bounded so that a burst of connections does not keep
/// `pipe-user-pages-soft` budget or file descriptors (two per pipe) forever.
const POOL_CAPACITY: usize = 32;

/// splice is not usable for these sockets; nothing has been read, fall back to userspace.
#[derive(Debug)]
pub(super) struct Unsupported(pub(super) io::Error);

/// Runs both directions until both end, one fails, or the connection is idle for `idle`.
pub(super) async fn pump(
    client: &TcpStream,
    upstream: &TcpStream,
    idle: Duration,
) -> Result<io::Result<PumpStats>, Unsupported> {
    let shared = Shared::new();
    let c2u = direction(client, upstream, Side::Client, &shared, &shared.c2u);
    let u2c = direction(upstream, client, Side::Upstream, &shared, &shared.u2c);
    let result = tokio::select! {
        r = futures_util::future::try_join(c2u, u2c) => r.map(|_| ()),
        () = shared.idle_expired(idle) => Err(Fault::Failed(PumpFailure::Idle(idle))),
    };
    let stats = shared.stats();
    match result {
        Ok(()) => Ok(Ok(stats)),
        Err(Fault::Unsupported(e)) => Err(Unsupported(e)),
        Err(Fault::Failed(failure)) => Ok(Err(pump_error(failure, stats))),
    }
}

enum Fault {
    Unsupported(io::Error),
    Failed(PumpFailure),
}

/// State both directions and the idle watcher share. Atomics because the pump future must be
/// `Send`; both directions are polled by the same task, so there is no real contention.
struct Shared {
    start: Instant,
    /// Nanoseconds since `start` at the last byte moved in either direction.
    last_activity: AtomicU64,
    /// Set once any splice has read a byte; after that, falling back is no longer lossless.
    moved_any: AtomicBool,
    c2u: AtomicU64,
    u2c: AtomicU64,
}

// === impl Shared ===

impl Shared {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            last_activity: AtomicU64::new(0),
            moved_any: AtomicBool::new(false),
            c2u: AtomicU64::new(0),
            u2c: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let nanos = u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last_activity.store(nanos, Ordering::Relaxed);
    }

    /// Completes once nothing has moved for `idle`.
    async fn idle_expired(&self, idle: Duration) {
        loop {
            let last = Duration::from_nanos(self.last_activity.load(Ordering::Relaxed));
            let deadline = idle_deadline(self.start + last, idle);
            if deadline <= Instant::now() {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }

    fn stats(&self) -> PumpStats {
        PumpStats {
            client_to_upstream: self.c2u.load(Ordering::Relaxed),
            upstream_to_client: self.u2c.load(Ordering::Relaxed),
        }
    }
}

/// Moves bytes from `src` to `dst` until EOF, then shuts down `dst`'s write half.
async fn direction(
    src: &TcpStream,
    dst: &TcpStream,
    from: Side,
    shared: &Shared,
    moved: &AtomicU64,
) -> Result<(), Fault> {
    let read_fault = |e| Fault::Failed(side_failure(from, e));
    let write_fault = |e| Fault::Failed(side_failure(from.other(), e));
    let mut pipe: Option<Pipe> = None;
    loop {
        let p = match pipe.as_mut() {
            Some(p) => p,
            None => {
                src.readable().await.map_err(read_fault)?;
                match Pipe::take() {
                    Ok(p) => pipe.insert(p),
                    Err(e) if !shared.moved_any.load(Ordering::Relaxed) => {
                        return Err(Fault::Unsupported(e))
                    }
                    Err(e) => return Err(Fault::Failed(PumpFailure::Local(e))),
                }
            }
        };
        // The pipe is empty here (invariant): EAGAIN means the socket has nothing.
        let n = match src.try_io(Interest::READABLE, || p.fill_from(src)) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // Nothing in flight: give the pipe back while waiting.
                if let Some(p) = pipe.take() {
                    p.release();
                }
                continue;
            }
            Err(e) if is_unsupported(&e) && !shared.moved_any.load(Ordering::Relaxed) => {
                return Err(Fault::Unsupported(e));
            }
            Err(e) => return Err(read_fault(e)),
        };
        if n == 0 {
            break;
        }
        shared.moved_any.store(true, Ordering::Relaxed);
        shared.touch();
        let mut left = n;
        while left > 0 {
            dst.writable().await.map_err(write_fault)?;
            match dst.try_io(Interest::WRITABLE, || p.drain_into(dst, left)) {
                Ok(0) => {
                    let e = io::Error::new(io::ErrorKind::WriteZero, "splice wrote no bytes");
                    return Err(write_fault(e));
                }
                Ok(m) => {
                    left -= m;
                    moved.fetch_add(m as u64, Ordering::Relaxed);
                    shared.touch();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(write_fault(e)),
            }
        }
    }
    if let Some(p) = pipe.take() {
        p.release();
    }
    socket2::SockRef::from(dst)
        .shutdown(Shutdown::Write)
        .map_err(write_fault)
}

fn is_unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error().map(Errno::from_raw),
        Some(Errno::EINVAL | Errno::ENOSYS | Errno::EOPNOTSUPP)
    )
}

/// A non-blocking pipe used as splice's in-kernel buffer.
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    /// Bytes to request per fill: the pipe's capacity.
    capacity: usize,
}

static POOL: Mutex<Vec<Pipe>> = Mutex::new(Vec::new());

// === impl Pipe ===

impl Pipe {
    /// An empty pipe from the pool, or a new one.
    fn take() -> io::Result<Pipe> {
        match POOL.lock().ok().and_then(|mut pool| pool.pop()) {
            Some(p) => Ok(p),
            None => Pipe::new(),
        }
    }

    fn new() -> io::Result<Pipe> {
        let (read, write) = pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
        // Best effort: keep the default size if the kernel says no.
        let capacity = i32::try_from(PIPE_SIZE)
            .ok()
            .and_then(|size| fcntl(write.as_raw_fd(), FcntlArg::F_SETPIPE_SZ(size)).ok())
            .and_then(|size| usize::try_from(size).ok())
            .or_else(|| {
                let size = fcntl(write.as_raw_fd(), FcntlArg::F_GETPIPE_SZ).ok()?;
                usize::try_from(size).ok()
            })
            .unwrap_or(64 * 1024);
        Ok(Pipe {
            read,
            write,
            capacity,
        })
    }

    /// Returns an EMPTY pipe to the pool (callers guarantee emptiness), or closes it.
    fn release(self) {
        if let Ok(mut pool) = POOL.lock() {
            if pool.len() < POOL_CAPACITY {
                pool.push(self);
            }
        }
    }

    fn fill_from(&self, src: &TcpStream) -> io::Result<usize> {
        let flags = SpliceFFlags::SPLICE_F_NONBLOCK | SpliceFFlags::SPLICE_F_MOVE;
        Ok(splice(
            src.as_fd(),
            None,
            self.write.as_fd(),
            None,
            self.capacity,
            flags,
        )?)
    }

    fn drain_into(&self, dst: &TcpStream, len: usize) -> io::Result<usize> {
        let flags = SpliceFFlags::SPLICE_F_NONBLOCK | SpliceFFlags::SPLICE_F_MOVE;
        Ok(splice(
            self.read.as_fd(),
            None,
            dst.as_fd(),
            None,
            len,
            flags,
        )?)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    async fn tcp_pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (connected, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (connected.unwrap(), accepted.unwrap().0)
    }

    /// Proves the splice path itself runs on this kernel (`pump_tcp` would silently fall back).
    #[tokio::test]
    async fn splice_is_used_for_tcp_and_returns_pipes_to_the_pool() {
        let (mut client, gw_client) = tcp_pair().await;
        let (gw_upstream, mut upstream) = tcp_pair().await;
        let apps = async {
            client.write_all(&[7u8; 100_000]).await.unwrap();
            client.shutdown().await.unwrap();
            let mut got = Vec::new();
            upstream.read_to_end(&mut got).await.unwrap();
            assert_eq!(got, vec![7u8; 100_000]);
            upstream.write_all(b"bye").await.unwrap();
            upstream.shutdown().await.unwrap();
            let mut reply = Vec::new();
            client.read_to_end(&mut reply).await.unwrap();
            assert_eq!(reply, b"bye");
        };
        let pumped = pump(&gw_client, &gw_upstream, Duration::from_secs(30));
        let (result, ()) = tokio::join!(pumped, apps);
        let stats = result.expect("splice unsupported").unwrap();
        assert_eq!(stats.client_to_upstream, 100_000);
        assert_eq!(stats.upstream_to_client, 3);
        let pooled = POOL.lock().unwrap().len();
        assert!(
            (1..=POOL_CAPACITY).contains(&pooled),
            "{pooled} pipes pooled"
        );
    }

    #[test]
    fn pipe_capacity_is_what_the_kernel_reports() {
        let pipe = Pipe::new().unwrap();
        let actual = fcntl(pipe.write.as_raw_fd(), FcntlArg::F_GETPIPE_SZ).unwrap();
        assert_eq!(pipe.capacity, usize::try_from(actual).unwrap());
        let max: usize = std::fs::read_to_string("/proc/sys/fs/pipe-max-size")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        if max >= PIPE_SIZE {
            // Allowed by the system-wide maximum; only the per-user budget could refuse.
            assert!(pipe.capacity == PIPE_SIZE || pipe.capacity <= 64 * 1024);
        }
    }
}
