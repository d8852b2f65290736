//! Choosing and dialing an upstream: the one place where a listener (passthrough, bridge
//! egress/ingress, sidecar outbound) picks an endpoint of a route and connects to it.
//!
//! Invariants:
//! * each connection starts one endpoint further along than the previous one (round-robin;
//!   the cursor is a relaxed atomic, fairness only) and tries every endpoint at most once;
//! * each attempt (TCP connect plus the caller's own step, e.g. a TLS handshake) is bounded by
//!   the connect timeout;
//! * the next endpoint is tried only after a failure of the previous attempt, which happens
//!   before the caller sends any byte of the connection, so falling over is always safe;
//! * the answer names the endpoint that answered (for metrics and logs); every failure is
//!   handed to the caller's observer with its endpoint, nothing is logged or counted here.
//!
//! Hosts are resolved at connect time, so DNS names follow service changes.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::TcpStream;

/// One upstream address: an IP address or DNS name, and a port.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

/// A route's endpoints with their round-robin cursor.
#[derive(Debug)]
pub struct Upstreams {
    endpoints: Vec<Endpoint>,
    next: AtomicUsize,
}

/// Why one attempt at one endpoint failed.
#[derive(Debug)]
pub enum DialFailure<E> {
    /// The TCP connect failed.
    Connect(io::Error),
    /// The caller's step after the TCP connect (e.g. the TLS handshake) failed.
    Attempt(E),
    /// The attempt did not finish within the connect timeout.
    Timeout(Duration),
}

/// Every endpoint failed (or there was none).
#[derive(Debug, thiserror::Error)]
#[error("no upstream endpoint accepted a connection")]
pub struct Unavailable;

// === impl Endpoint ===

impl Endpoint {
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self {
            host: host.into(),
            port,
        }
    }

    /// Parses `host:port` or `[v6]:port` (no validation of the host name).
    pub fn parse(s: &str) -> Option<Self> {
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return Some(addr.into());
        }
        let (host, port) = s.rsplit_once(':')?;
        let port = port.parse().ok()?;
        (!host.is_empty()).then(|| Self::new(host, port))
    }

    /// A TCP connection to this endpoint (no timeout: see [`Upstreams::connect`]).
    pub async fn dial(&self) -> io::Result<TcpStream> {
        TcpStream::connect((self.host.as_str(), self.port)).await
    }
}

impl From<SocketAddr> for Endpoint {
    fn from(addr: SocketAddr) -> Self {
        Self::new(addr.ip().to_string(), addr.port())
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

// === impl DialFailure ===

impl<E: fmt::Display> fmt::Display for DialFailure<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DialFailure::Connect(e) => e.fmt(f),
            DialFailure::Attempt(e) => e.fmt(f),
            DialFailure::Timeout(after) => write!(f, "no connection within {after:?}"),
        }
    }
}

// === impl Upstreams ===

impl Upstreams {
    pub fn new(endpoints: Vec<Endpoint>) -> Self {
        Self {
            endpoints,
            next: AtomicUsize::new(0),
        }
    }

    /// Upstreams given as socket addresses (no name resolution needed).
    pub fn from_socket_addrs(addrs: impl IntoIterator<Item = SocketAddr>) -> Self {
        Self::new(addrs.into_iter().map(Endpoint::from).collect())
    }

    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// Every endpoint once, starting one further along than the previous call.
    pub fn rotation(&self) -> impl Iterator<Item = &Endpoint> + '_ {
        let n = self.endpoints.len();
        let start = if n == 0 {
            0
        } else {
            self.next.fetch_add(1, Ordering::Relaxed) % n
        };
        (0..n).map(move |i| &self.endpoints[(start + i) % n])
    }

    /// Plain TCP: the first endpoint (in rotation) that accepts within `timeout`.
    pub async fn connect_tcp(
        &self,
        timeout: Duration,
        failed: impl FnMut(&Endpoint, DialFailure<std::convert::Infallible>),
    ) -> Result<(TcpStream, &Endpoint), Unavailable> {
        self.connect(timeout, |_, tcp| std::future::ready(Ok(tcp)), failed)
            .await
    }

    /// Dials the endpoints in rotation; on each TCP connection runs `attempt` (e.g. a TLS
    /// handshake), the whole attempt within `timeout`. Returns the first success and the
    /// endpoint that gave it; `failed` observes every failure before the next endpoint is
    /// tried.
    pub async fn connect<'a, T, E, F, Fut>(
        &'a self,
        timeout: Duration,
        mut attempt: F,
        mut failed: impl FnMut(&'a Endpoint, DialFailure<E>),
    ) -> Result<(T, &'a Endpoint), Unavailable>
    where
        F: FnMut(&'a Endpoint, TcpStream) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        for endpoint in self.rotation() {
            let one = async {
                let tcp = endpoint.dial().await.map_err(DialFailure::Connect)?;
                attempt(endpoint, tcp).await.map_err(DialFailure::Attempt)
            };
            match tokio::time::timeout(timeout, one).await {
                Ok(Ok(t)) => return Ok((t, endpoint)),
                Ok(Err(e)) => failed(endpoint, e),
                Err(_) => failed(endpoint, DialFailure::Timeout(timeout)),
            }
        }
        Err(Unavailable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A port on 127.0.0.1 where nothing listens (bound, then closed).
    async fn closed_port() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    }

    #[test]
    fn rotation_starts_one_further_each_time_and_covers_all() {
        let ups = Upstreams::new(vec![
            Endpoint::new("a", 1),
            Endpoint::new("b", 1),
            Endpoint::new("c", 1),
        ]);
        let order = || {
            ups.rotation()
                .map(|e| e.host.clone())
                .collect::<Vec<_>>()
                .join(",")
        };
        assert_eq!(order(), "a,b,c");
        assert_eq!(order(), "b,c,a");
        assert_eq!(order(), "c,a,b");
        assert_eq!(order(), "a,b,c");
        assert_eq!(Upstreams::new(vec![]).rotation().count(), 0);
    }

    #[test]
    fn upstreams_rotate_and_cover_every_address() {
        let u = Upstreams::from_socket_addrs([
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
            "[::1]:3".parse().unwrap(),
        ]);
        let first: Vec<_> = u.rotation().map(|a| a.port).collect();
        let second: Vec<_> = u.rotation().map(|a| a.to_string()).collect();
        assert_eq!(first, vec![1, 2, 3]);
        assert_eq!(second, vec!["127.0.0.1:2", "[::1]:3", "127.0.0.1:1"]);
        assert_eq!(Upstreams::new(vec![]).rotation().count(), 0);
    }

    #[test]
    fn endpoints_parse_and_display() {
        let v6 = Endpoint::parse("[::1]:8443").unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 8443));
        assert_eq!(v6.to_string(), "[::1]:8443");
        let name = Endpoint::parse("echo.svc:80").unwrap();
        assert_eq!(name.to_string(), "echo.svc:80");
        assert!(Endpoint::parse("no-port").is_none());
        assert!(Endpoint::parse(":80").is_none());
    }

    #[tokio::test]
    async fn falls_over_to_the_next_endpoint_and_names_the_one_that_answered() {
        let live = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let live_addr = live.local_addr().unwrap();
        let dead = closed_port().await;
        let ups = Upstreams::from_socket_addrs([dead, live_addr]);
        let mut failures = Vec::new();
        let (tcp, answered) = ups
            .connect_tcp(Duration::from_secs(5), |e, f| {
                assert!(matches!(f, DialFailure::Connect(_)));
                failures.push(e.clone());
            })
            .await
            .unwrap();
        assert_eq!(answered, &Endpoint::from(live_addr));
        assert_eq!(tcp.peer_addr().unwrap(), live_addr);
        assert_eq!(failures, vec![Endpoint::from(dead)]);
        let (_server, _) = live.accept().await.unwrap();
        // The next connection starts at the live endpoint: no failure this time.
        let (_, answered) = ups
            .connect_tcp(Duration::from_secs(5), |_, _| panic!("no failure expected"))
            .await
            .unwrap();
        assert_eq!(answered, &Endpoint::from(live_addr));
    }

    #[tokio::test]
    async fn a_failed_attempt_step_moves_on_and_all_failing_is_unavailable() {
        let a = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let b = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ups = Upstreams::from_socket_addrs([a.local_addr().unwrap(), b.local_addr().unwrap()]);
        let mut seen = 0;
        let result = ups
            .connect(
                Duration::from_secs(5),
                |_, _tcp| async { Err::<(), _>("refused by the caller") },
                |_, f| {
                    assert!(matches!(f, DialFailure::Attempt("refused by the caller")));
                    seen += 1;
                },
            )
            .await;
        assert!(result.is_err());
        assert_eq!(seen, 2);
        let none = Upstreams::new(vec![]);
        assert!(none
            .connect_tcp(Duration::from_secs(1), |_, _| {})
            .await
            .is_err());
    }

    #[tokio::test]
    async fn an_attempt_that_hangs_times_out_and_the_next_endpoint_answers() {
        let a = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let b = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        let ups = Upstreams::from_socket_addrs([a_addr, b_addr]);
        let mut timeouts = Vec::new();
        let (peer, answered) = ups
            .connect(
                Duration::from_millis(200),
                |endpoint, tcp| {
                    let hang = endpoint.port == a_addr.port();
                    async move {
                        if hang {
                            std::future::pending::<()>().await;
                        }
                        Ok::<_, io::Error>(tcp.peer_addr().unwrap())
                    }
                },
                |e, f| {
                    assert!(matches!(f, DialFailure::Timeout(_)));
                    timeouts.push(e.port);
                },
            )
            .await
            .unwrap();
        assert_eq!(peer, b_addr);
        assert_eq!(answered.port, b_addr.port());
        assert_eq!(timeouts, vec![a_addr.port()]);
    }
}
