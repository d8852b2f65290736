//! TCP↔TCP pumping through a stack buffer, with optional splice(2) for bulk.
//!
//! Each direction reads into a 16 KiB buffer on the stack and writes what it got straight on.
//! tokio clears a socket's readiness after a read that did not fill the buffer (the socket is
//! drained), so a small request costs one `read` and one `write` and no extra call that only
//! returns EAGAIN. With `splice` set, a direction that has already moved [`SPLICE_AFTER`]
//! (1 MiB) and whose read fills the buffer is a bulk flow: it then moves data socket → pipe →
//! socket with `splice(2)` (no copy through userspace) until the source has nothing more, and
//! goes back to reading. Requests, responses and short downloads below the threshold never
//! touch a pipe, however large their single reads. With 16 bulk streams splice cut the CPU per GB
//! by 35–44 % at even throughput, but it lowers single-stream throughput a little on loopback
//! (docs/benchmarks.md), so it is opt-in.
//!
//! Invariants:
//! * no per-connection buffer while idle: the read buffer lives on the stack for one poll; bytes
//!   the destination does not take at once go to a heap buffer that is freed once written;
//! * a direction splices from its source only into an EMPTY pipe, so EAGAIN on that call can
//!   only mean "socket not readable", and EAGAIN while draining only "socket not writable":
//!   tokio's readiness (`try_io`) is never cleared for the wrong reason;
//! * a direction holds a pipe only while it has data in flight: once the pipe is drained and the
//!   source has nothing more, the empty pipe goes back to a bounded pool. Idle connections hold
//!   no pipes (pipes count against the per-user `pipe-user-pages-soft` limit, beyond which the
//!   kernel shrinks new pipes to a page or two);
//! * a pipe holding data is never pooled: on error it is closed;
//! * if the kernel refuses splice for a socket (EINVAL, ENOSYS, EOPNOTSUPP: nothing was read)
//!   or no pipe can be created, that direction keeps reading and writing through userspace.

use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::mem::MaybeUninit;
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{fcntl, splice, FcntlArg, OFlag, SpliceFFlags};
use nix::unistd::pipe2;
use tokio::io::{AsyncRead, AsyncWriteExt, Interest, ReadBuf};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::{idle_deadline, pump_error, side_failure, PumpFailure, PumpStats, Side};

/// Requested pipe capacity. Larger pipes mean fewer splice calls per byte in bulk transfers;
/// the kernel refuses (EPERM) beyond `/proc/sys/fs/pipe-max-size` or the per-user budget, in
/// which case the pipe keeps its default size (64 KiB).
const PIPE_SIZE: usize = 256 * 1024;
/// Empty pipes kept for reuse per worker thread. Bounded so that a burst of connections does
/// not keep `pipe-user-pages-soft` budget or file descriptors (two per pipe) forever.
const POOL_CAPACITY: usize = 32;
/// Bytes read per userspace step; a read that fills it may switch the direction to splice.
const READ_BUFFER: usize = 16 * 1024;
/// Bytes a direction moves through userspace before a full read switches it to splice: below
/// this a flow is a message, not bulk, and a pipe's two extra syscalls per chunk (and its
/// `pipe-user-pages` budget) are not worth it.
pub(super) const SPLICE_AFTER: u64 = 1024 * 1024;

/// Runs both directions until both end, one fails, or the connection is idle for `idle`.
pub(super) async fn pump(
    client: &mut TcpStream,
    upstream: &mut TcpStream,
    idle: Duration,
    splice: bool,
) -> io::Result<PumpStats> {
    let shared = Shared::new();
    let (client_read, client_write) = client.split();
    let (upstream_read, upstream_write) = upstream.split();
    let c2u = direction(client_read, upstream_write, Side::Client, splice, &shared);
    let u2c = direction(upstream_read, client_write, Side::Upstream, splice, &shared);
    let result = tokio::select! {
        r = futures_util::future::try_join(c2u, u2c) => r.map(|_| ()),
        () = shared.idle_expired(idle) => Err(PumpFailure::Idle(idle)),
    };
    let stats = shared.stats();
    result
        .map(|()| stats)
        .map_err(|failure| pump_error(failure, stats))
}

/// State both directions and the idle watcher share. Atomics because the pump future must be
/// `Send`; both directions are polled by the same task, so there is no real contention.
struct Shared {
    start: Instant,
    /// Nanoseconds since `start` at the last byte moved in either direction.
    last_activity: AtomicU64,
    c2u: AtomicU64,
    u2c: AtomicU64,
}

// === impl Shared ===

impl Shared {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            last_activity: AtomicU64::new(0),
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

    fn moved(&self, counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
        self.touch();
    }
}

/// Which end of a direction failed.
enum Fault {
    Read(io::Error),
    Write(io::Error),
}

/// What one userspace step did.
struct Step {
    /// Bytes read; 0 is EOF.
    read: usize,
    /// Of those, bytes the destination took at once (the rest is in `pending`).
    written: usize,
}

/// Moves bytes from `src` to `dst` until EOF, then shuts down `dst`'s write half.
async fn direction(
    mut src: ReadHalf<'_>,
    mut dst: WriteHalf<'_>,
    from: Side,
    splice: bool,
    shared: &Shared,
) -> Result<(), PumpFailure> {
    let moved = match from {
        Side::Client => &shared.c2u,
        Side::Upstream => &shared.u2c,
    };
    let fault = |f| match f {
        Fault::Read(e) => side_failure(from, e),
        Fault::Write(e) => side_failure(from.other(), e),
    };
    let mut splice_ok = splice;
    let mut pending = Vec::new();
    // Bytes this direction has read through userspace (the adaptive splice threshold).
    let mut copied = 0u64;
    loop {
        let step = poll_fn(|cx| poll_step(cx, &mut src, dst.as_ref(), &mut pending))
            .await
            .map_err(fault)?;
        if step.read == 0 {
            break;
        }
        copied += step.read as u64;
        shared.moved(moved, step.written);
        if !pending.is_empty() {
            dst.write_all(&pending)
                .await
                .map_err(|e| fault(Fault::Write(e)))?;
            shared.moved(moved, pending.len());
            // Freed, not kept: an idle connection holds no buffer.
            pending = Vec::new();
        }
        if splice_ok && step.read == READ_BUFFER && copied >= SPLICE_AFTER {
            match splice_burst(src.as_ref(), dst.as_ref(), shared, moved).await {
                Ok(Burst::Drained) => {}
                Ok(Burst::Eof) => break,
                Ok(Burst::Unsupported(reason)) => {
                    tracing::debug!(%reason, "splice unavailable; copying through userspace");
                    splice_ok = false;
                }
                Err(f) => return Err(fault(f)),
            }
        }
    }
    socket2::SockRef::from(dst.as_ref())
        .shutdown(Shutdown::Write)
        .map_err(|e| fault(Fault::Write(e)))
}

/// Reads once into a stack buffer and writes what was read without waiting; the part `dst`
/// does not take now is appended to `pending` (empty on entry).
fn poll_step(
    cx: &mut Context<'_>,
    src: &mut ReadHalf<'_>,
    dst: &TcpStream,
    pending: &mut Vec<u8>,
) -> Poll<Result<Step, Fault>> {
    let mut buf = [MaybeUninit::<u8>::uninit(); READ_BUFFER];
    let mut rb = ReadBuf::uninit(&mut buf);
    ready!(Pin::new(src).poll_read(cx, &mut rb)).map_err(Fault::Read)?;
    let data = rb.filled();
    if data.is_empty() {
        return Poll::Ready(Ok(Step {
            read: 0,
            written: 0,
        }));
    }
    let written = match dst.try_write(data) {
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
        Err(e) => return Poll::Ready(Err(Fault::Write(e))),
    };
    pending.extend_from_slice(&data[written..]);
    Poll::Ready(Ok(Step {
        read: data.len(),
        written,
    }))
}

/// How a splice burst ended.
enum Burst {
    /// The source has nothing more for now; the pipe is back in the pool.
    Drained,
    /// The source reached EOF.
    Eof,
    /// splice(2) cannot be used here (nothing was read by the failed call).
    Unsupported(io::Error),
}

/// Splices `src` → pipe → `dst` until `src` has nothing more to read (or EOF).
async fn splice_burst(
    src: &TcpStream,
    dst: &TcpStream,
    shared: &Shared,
    moved: &AtomicU64,
) -> Result<Burst, Fault> {
    let pipe = match Pipe::take() {
        Ok(p) => p,
        Err(e) => return Ok(Burst::Unsupported(e)),
    };
    loop {
        // The pipe is empty here (invariant): EAGAIN means the socket has nothing.
        let n = match src.try_io(Interest::READABLE, || pipe.fill_from(src)) {
            Ok(0) => {
                pipe.release();
                return Ok(Burst::Eof);
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                pipe.release();
                return Ok(Burst::Drained);
            }
            Err(e) if is_unsupported(&e) => {
                pipe.release();
                return Ok(Burst::Unsupported(e));
            }
            Err(e) => return Err(Fault::Read(e)),
        };
        let mut left = n;
        while left > 0 {
            dst.writable().await.map_err(Fault::Write)?;
            match dst.try_io(Interest::WRITABLE, || pipe.drain_into(dst, left)) {
                Ok(0) => {
                    let e = io::Error::new(io::ErrorKind::WriteZero, "splice wrote no bytes");
                    return Err(Fault::Write(e));
                }
                Ok(m) => {
                    left -= m;
                    shared.moved(moved, m);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(Fault::Write(e)),
            }
        }
    }
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

thread_local! {
    /// Per worker thread: a connection's task never leaves its thread (src/workers.rs), so a
    /// pipe is taken and returned without a lock.
    static POOL: RefCell<Vec<Pipe>> = const { RefCell::new(Vec::new()) };
}

// === impl Pipe ===

impl Pipe {
    /// An empty pipe from the pool, or a new one.
    fn take() -> io::Result<Pipe> {
        match POOL.with_borrow_mut(Vec::pop) {
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
        POOL.with_borrow_mut(|pool| {
            if pool.len() < POOL_CAPACITY {
                pool.push(self);
            }
        });
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

    /// Pumps with splice enabled while `apps` runs, and returns the pump's stats.
    async fn spliced_while(
        gw_client: &mut TcpStream,
        gw_upstream: &mut TcpStream,
        apps: impl std::future::Future<Output = ()>,
    ) -> PumpStats {
        let pumped = pump(gw_client, gw_upstream, Duration::from_secs(30), true);
        let (result, ()) = tokio::join!(pumped, apps);
        result.unwrap()
    }

    fn pooled() -> usize {
        POOL.with_borrow(Vec::len)
    }

    /// Sends `len` bytes client → upstream (written concurrently, so reads fill the buffer) and
    /// 3 bytes back, through the pump with splice enabled; returns the pipes pooled after.
    async fn transfer_with_splice(len: usize) -> usize {
        let (mut client, mut gw_client) = tcp_pair().await;
        let (mut gw_upstream, mut upstream) = tcp_pair().await;
        let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let apps = async {
            let send = async {
                client.write_all(&data).await.unwrap();
                client.shutdown().await.unwrap();
            };
            let receive = async {
                let mut got = Vec::new();
                upstream.read_to_end(&mut got).await.unwrap();
                assert!(got == data, "{} of {len} bytes, or corrupted", got.len());
                upstream.write_all(b"bye").await.unwrap();
                upstream.shutdown().await.unwrap();
            };
            tokio::join!(send, receive);
            let mut reply = Vec::new();
            client.read_to_end(&mut reply).await.unwrap();
            assert_eq!(reply, b"bye");
        };
        let stats = spliced_while(&mut gw_client, &mut gw_upstream, apps).await;
        assert_eq!(stats.client_to_upstream, len as u64);
        assert_eq!(stats.upstream_to_client, 3);
        pooled()
    }

    /// Bulk proves the splice path runs on this kernel (a refusal would silently copy).
    #[tokio::test(flavor = "current_thread")]
    async fn bulk_is_spliced_and_pipes_return_to_the_pool() {
        let pipes = transfer_with_splice(4 * SPLICE_AFTER as usize).await;
        assert!((1..=POOL_CAPACITY).contains(&pipes), "{pipes} pipes pooled");
    }

    /// Below the adaptive threshold a flow copies, even when its reads fill the buffer.
    #[tokio::test(flavor = "current_thread")]
    async fn flows_under_the_threshold_take_no_pipe() {
        let pipes = transfer_with_splice(SPLICE_AFTER as usize - READ_BUFFER).await;
        assert_eq!(pipes, 0, "no pipe was ever created");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn small_messages_take_no_pipe() {
        let (mut client, mut gw_client) = tcp_pair().await;
        let (mut gw_upstream, mut upstream) = tcp_pair().await;
        let apps = async {
            let mut buf = [0u8; 64];
            for i in 0..20u8 {
                client.write_all(&[i; 64]).await.unwrap();
                upstream.read_exact(&mut buf).await.unwrap();
                assert_eq!(buf, [i; 64]);
                upstream.write_all(&[i; 32]).await.unwrap();
                client.read_exact(&mut buf[..32]).await.unwrap();
                assert_eq!(buf[..32], [i; 32]);
            }
            client.shutdown().await.unwrap();
            upstream.shutdown().await.unwrap();
        };
        let stats = spliced_while(&mut gw_client, &mut gw_upstream, apps).await;
        assert_eq!(
            (stats.client_to_upstream, stats.upstream_to_client),
            (1280, 640)
        );
        assert_eq!(pooled(), 0, "no pipe was ever created");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_step_keeps_what_the_destination_cannot_take_yet() {
        let (mut src_peer, mut src) = tcp_pair().await;
        let (dst, mut dst_peer) = tcp_pair().await;
        // Fill dst's send buffer (and its peer's receive buffer): dst takes nothing now.
        let mut queued = 0usize;
        loop {
            match dst.try_write(&[1u8; 65536]) {
                Ok(n) => queued += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
        src_peer.write_all(b"hello").await.unwrap();
        let (mut read_half, _) = src.split();
        let mut pending = Vec::new();
        let step = poll_fn(|cx| poll_step(cx, &mut read_half, &dst, &mut pending))
            .await
            .unwrap_or_else(|_| panic!("step failed"));
        assert_eq!((step.read, step.written), (5, 0));
        assert_eq!(pending, b"hello");
        // What was queued still arrives first, intact.
        let mut got = vec![0u8; queued];
        dst_peer.read_exact(&mut got).await.unwrap();
        assert!(got.iter().all(|b| *b == 1));
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
