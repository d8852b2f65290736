//! Bidirectional byte pumping with half-close and an idle timeout; splice(2) for TCP↔TCP.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// Bytes moved in each direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PumpStats {
    pub client_to_upstream: u64,
    pub upstream_to_client: u64,
}

/// Pumps TCP↔TCP, zero-copy with splice(2) on Linux, userspace copy elsewhere.
pub async fn pump_tcp(
    _client: TcpStream,
    _upstream: TcpStream,
    _idle: Duration,
) -> io::Result<PumpStats> {
    todo!()
}

/// Pumps any two streams (e.g. TLS) with userspace buffers.
pub async fn pump<A, B>(_client: A, _upstream: B, _idle: Duration) -> io::Result<PumpStats>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    todo!()
}
