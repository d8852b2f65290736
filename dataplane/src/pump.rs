//! Bidirectional byte pumping with half-close and an idle timeout; optional splice(2) for
//! TCP↔TCP.
//!
//! Invariants:
//! * both directions run concurrently; when one side reaches EOF, the other side's write half is
//!   shut down and the opposite direction keeps running until it ends too (half-close);
//! * the pump ends with `Ok(stats)` once both directions have ended, or with the first error;
//!   "no byte moved in either direction for `idle`" is an error of kind
//!   [`io::ErrorKind::TimedOut`];
//! * every error returned carries a [`PumpError`] (which side failed, bytes moved so far); get
//!   it back with [`PumpError::from_io`];
//! * memory per connection is bounded: for [`pump`], two userspace buffers of at most
//!   [`MAX_BUFFER`] bytes; for [`pump_tcp`] on Linux, nothing while idle, and while moving data
//!   at most one read's worth of bytes the destination has not taken yet plus one kernel pipe
//!   per direction in bulk.

use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

#[cfg(target_os = "linux")]
mod tcp;

/// First userspace buffer size per direction: one TLS record, and what an idle connection costs.
pub const INITIAL_BUFFER: usize = 16 * 1024;
/// Buffer size a direction grows to after a read fills its buffer: bulk transfers then use fewer,
/// larger reads and writes.
pub const MAX_BUFFER: usize = 64 * 1024;

/// Bytes moved in each direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PumpStats {
    pub client_to_upstream: u64,
    pub upstream_to_client: u64,
}

/// What ended a pump early. Attached to the `io::Error` a pump returns.
#[derive(Debug, thiserror::Error)]
#[error(
    "pump ended early after {} bytes client→upstream and {} bytes upstream→client",
    stats.client_to_upstream,
    stats.upstream_to_client
)]
pub struct PumpError {
    #[source]
    pub failure: PumpFailure,
    /// Bytes delivered before the failure.
    pub stats: PumpStats,
}

/// Which party an error is attributed to (the `error_source` of a metric or log line).
#[derive(Debug, thiserror::Error)]
pub enum PumpFailure {
    /// No byte moved in either direction for this long.
    #[error("connection idle for {0:?}")]
    Idle(Duration),
    /// Reading from or writing to the client failed (reset, broken pipe, TLS error).
    #[error("client connection failed")]
    Client(#[source] io::Error),
    /// Reading from or writing to the upstream failed.
    #[error("upstream connection failed")]
    Upstream(#[source] io::Error),
    /// A local resource failed (e.g. no file descriptors left for a pipe).
    #[error("local resource failure")]
    Local(#[source] io::Error),
}

/// One of the two streams a pump joins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Client,
    Upstream,
}

/// Pumps TCP↔TCP holding no buffer while idle: on Linux through a stack buffer, and with
/// `splice` set bulk data zero-copy with splice(2) (see `tcp`); [`pump`] elsewhere.
pub async fn pump_tcp(
    client: TcpStream,
    upstream: TcpStream,
    idle: Duration,
    splice: bool,
) -> io::Result<PumpStats> {
    #[cfg(target_os = "linux")]
    {
        let (mut client, mut upstream) = (client, upstream);
        tcp::pump(&mut client, &mut upstream, idle, splice).await
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = splice;
        pump(client, upstream, idle).await
    }
}

/// Pumps any two streams (e.g. TLS) with userspace buffers.
///
/// Each direction starts with an [`INITIAL_BUFFER`] and grows to [`MAX_BUFFER`] once a read
/// fills it. Writes are flushed whenever the reader has nothing more for the moment, and on EOF
/// the writer is shut down (for TLS: close_notify, then TCP FIN).
pub async fn pump<A, B>(mut client: A, mut upstream: B, idle: Duration) -> io::Result<PumpStats>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let mut c2u = Direction::new();
    let mut u2c = Direction::new();
    let mut timer = IdleTimer::new(idle);
    poll_fn(|cx| {
        let mut progressed = false;
        let mut step = |copy: &mut Direction,
                        from: Side,
                        r: &mut dyn AsyncReadWrite,
                        w: &mut dyn AsyncReadWrite| {
            if copy.done {
                return Ok(());
            }
            match copy.poll_copy(cx, Pin::new(r), Pin::new(w), &mut progressed) {
                Poll::Ready(Ok(())) => {
                    copy.done = true;
                    Ok(())
                }
                Poll::Ready(Err(Fault::Read(e))) => Err(side_failure(from, e)),
                Poll::Ready(Err(Fault::Write(e))) => Err(side_failure(from.other(), e)),
                Poll::Pending => Ok(()),
            }
        };
        let result = step(&mut c2u, Side::Client, &mut client, &mut upstream)
            .and_then(|()| step(&mut u2c, Side::Upstream, &mut upstream, &mut client));
        let stats = PumpStats {
            client_to_upstream: c2u.moved,
            upstream_to_client: u2c.moved,
        };
        if let Err(failure) = result {
            return Poll::Ready(Err(pump_error(failure, stats)));
        }
        if c2u.done && u2c.done {
            return Poll::Ready(Ok(stats));
        }
        if progressed {
            timer.touch();
        }
        match timer.poll_expired(cx) {
            Poll::Ready(()) => Poll::Ready(Err(pump_error(PumpFailure::Idle(idle), stats))),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

// === impl PumpError ===

impl PumpError {
    /// The details of an error returned by [`pump`] or [`pump_tcp`].
    pub fn from_io(error: &io::Error) -> Option<&PumpError> {
        error.get_ref()?.downcast_ref()
    }
}

// === impl PumpFailure ===

impl PumpFailure {
    /// A short, stable label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            PumpFailure::Idle(_) => "idle_timeout",
            PumpFailure::Client(_) => "client",
            PumpFailure::Upstream(_) => "upstream",
            PumpFailure::Local(_) => "local",
        }
    }

    fn kind(&self) -> io::ErrorKind {
        match self {
            PumpFailure::Idle(_) => io::ErrorKind::TimedOut,
            PumpFailure::Client(e) | PumpFailure::Upstream(e) | PumpFailure::Local(e) => e.kind(),
        }
    }
}

// === impl Side ===

impl Side {
    fn other(self) -> Side {
        match self {
            Side::Client => Side::Upstream,
            Side::Upstream => Side::Client,
        }
    }
}

fn side_failure(side: Side, e: io::Error) -> PumpFailure {
    match side {
        Side::Client => PumpFailure::Client(e),
        Side::Upstream => PumpFailure::Upstream(e),
    }
}

fn pump_error(failure: PumpFailure, stats: PumpStats) -> io::Error {
    io::Error::new(failure.kind(), PumpError { failure, stats })
}

/// Object-safe union of the two traits, so one closure can drive both directions.
trait AsyncReadWrite: AsyncRead + AsyncWrite + Unpin {}
impl<T: AsyncRead + AsyncWrite + Unpin + ?Sized> AsyncReadWrite for T {}

/// Which half of a copy failed: the reader's side or the writer's side.
enum Fault {
    Read(io::Error),
    Write(io::Error),
}

/// One direction of a userspace copy (the shape of tokio's `CopyBuffer`, plus buffer growth,
/// half-close and fault attribution).
struct Direction {
    buf: Box<[u8]>,
    /// `buf[pos..cap]` is read but not yet written.
    pos: usize,
    cap: usize,
    read_done: bool,
    need_flush: bool,
    /// EOF seen, data written, writer shut down.
    done: bool,
    moved: u64,
}

// === impl Direction ===

impl Direction {
    fn new() -> Self {
        Self {
            buf: vec![0; INITIAL_BUFFER].into_boxed_slice(),
            pos: 0,
            cap: 0,
            read_done: false,
            need_flush: false,
            done: false,
            moved: 0,
        }
    }

    fn poll_copy(
        &mut self,
        cx: &mut Context<'_>,
        mut reader: Pin<&mut dyn AsyncReadWrite>,
        mut writer: Pin<&mut dyn AsyncReadWrite>,
        progressed: &mut bool,
    ) -> Poll<Result<(), Fault>> {
        loop {
            if self.pos == self.cap && !self.read_done {
                // A read that filled the whole buffer suggests bulk: grow before the next read.
                if self.cap == self.buf.len() && self.buf.len() < MAX_BUFFER {
                    self.buf = vec![0; MAX_BUFFER].into_boxed_slice();
                }
                let mut rb = ReadBuf::new(&mut self.buf);
                match reader.as_mut().poll_read(cx, &mut rb) {
                    Poll::Ready(Ok(())) => {
                        let n = rb.filled().len();
                        self.pos = 0;
                        self.cap = n;
                        if n == 0 {
                            self.read_done = true;
                        } else {
                            *progressed = true;
                        }
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(Fault::Read(e))),
                    Poll::Pending => {
                        // Nothing more to read for now: push out what was written.
                        if self.need_flush {
                            ready!(writer.as_mut().poll_flush(cx)).map_err(Fault::Write)?;
                            self.need_flush = false;
                        }
                        return Poll::Pending;
                    }
                }
            }
            while self.pos < self.cap {
                let n = ready!(writer
                    .as_mut()
                    .poll_write(cx, &self.buf[self.pos..self.cap]))
                .map_err(Fault::Write)?;
                if n == 0 {
                    let e = io::Error::new(io::ErrorKind::WriteZero, "peer accepted no bytes");
                    return Poll::Ready(Err(Fault::Write(e)));
                }
                self.pos += n;
                self.moved += n as u64;
                self.need_flush = true;
                *progressed = true;
            }
            if self.read_done {
                // Half-close: poll_shutdown flushes first.
                ready!(writer.as_mut().poll_shutdown(cx)).map_err(Fault::Write)?;
                return Poll::Ready(Ok(()));
            }
        }
    }
}

/// `last + idle`, saturating: a huge `idle` (e.g. `Duration::MAX` for "never") must not panic
/// on `Instant` overflow. tokio clamps far deadlines itself.
fn idle_deadline(last: Instant, idle: Duration) -> Instant {
    // 30 years: longer than any connection, and representable wherever `Instant` is.
    const FAR: Duration = Duration::from_secs(30 * 365 * 24 * 3600);
    last.checked_add(idle.min(FAR))
        .unwrap_or_else(|| last + Duration::from_secs(24 * 3600))
}

/// An idle deadline that is cheap to push back: progress only records the time; the timer is
/// re-armed lazily when it fires early.
struct IdleTimer {
    idle: Duration,
    last: Instant,
    sleep: Pin<Box<Sleep>>,
}

// === impl IdleTimer ===

impl IdleTimer {
    fn new(idle: Duration) -> Self {
        let last = Instant::now();
        Self {
            idle,
            last,
            sleep: Box::pin(tokio::time::sleep_until(idle_deadline(last, idle))),
        }
    }

    fn touch(&mut self) {
        self.last = Instant::now();
    }

    /// Ready once `idle` has passed since the last `touch`.
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        // Bounded: after a reset the deadline is in the future, so the next poll is Pending.
        while self.sleep.as_mut().poll(cx).is_ready() {
            let deadline = idle_deadline(self.last, self.idle);
            if deadline <= Instant::now() {
                return Poll::Ready(());
            }
            self.sleep.as_mut().reset(deadline);
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn unbounded_idle_does_not_overflow() {
        let (mut client, gw_client) = tokio::io::duplex(64);
        let (gw_upstream, mut upstream) = tokio::io::duplex(64);
        let pumped = tokio::spawn(pump(gw_client, gw_upstream, Duration::MAX));
        client.write_all(b"ping").await.unwrap();
        client.shutdown().await.unwrap();
        let mut got = Vec::new();
        upstream.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"ping");
        drop(upstream);
        let stats = pumped.await.unwrap().unwrap();
        assert_eq!(stats.client_to_upstream, 4);
    }

    #[test]
    fn idle_deadline_saturates() {
        let now = Instant::now();
        assert_eq!(
            idle_deadline(now, Duration::from_secs(5)),
            now + Duration::from_secs(5)
        );
        assert!(idle_deadline(now, Duration::MAX) > now + Duration::from_secs(365 * 24 * 3600));
    }

    #[test]
    fn pump_error_round_trips_through_io_error() {
        let stats = PumpStats {
            client_to_upstream: 3,
            upstream_to_client: 4,
        };
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        let err = pump_error(PumpFailure::Upstream(reset), stats);
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
        let detail = PumpError::from_io(&err).unwrap();
        assert_eq!(detail.stats, stats);
        assert_eq!(detail.failure.label(), "upstream");
        assert!(PumpError::from_io(&io::Error::other("x")).is_none());
    }
}
