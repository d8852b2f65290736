//! In-process harness for the sidecar tests: start a sidecar from TOML text, test apps that
//! record what they saw (PROXY v2 headers), a plain-TCP client, raw mTLS clients, `/metrics`.
#![allow(dead_code)] // each test binary uses a different subset

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use fedgate::sidecar::tls::TlsSnapshot;
use fedgate::sidecar::{Config, ConnectionEvent, Sidecar};
use fedgate_dataplane::proxy_protocol::{read_proxy_header, ProxyHeader};
use fedgate_federation::tls::{Authorizer, SpiffeServerVerifier};
use fedgate_federation::{BundleSet, X509Svid};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Bound on every wait in these tests: a failure shows up as a timeout, never a hang.
pub const WAIT: Duration = Duration::from_secs(10);

/// A sidecar running in this process.
pub struct RunningSidecar {
    pub addrs: Vec<fedgate::sidecar::BoundAddr>,
    pub events: broadcast::Receiver<ConnectionEvent>,
    pub tls: watch::Receiver<Arc<TlsSnapshot>>,
    pub reloads: watch::Receiver<fedgate::sidecar::reload::ReloadStatus>,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<()>,
}

impl RunningSidecar {
    /// Writes `toml` as `dir/sidecar.toml`, builds the sidecar and runs it.
    pub async fn start(dir: &Path, toml: &str) -> Self {
        let path = dir.join("sidecar.toml");
        std::fs::write(&path, toml).unwrap();
        let config = Config::load(&path).unwrap();
        let sidecar = Sidecar::build(config).await.unwrap();
        let addrs = sidecar.bound_addrs();
        let events = sidecar.connection_events();
        let tls = sidecar.tls_updates();
        let reloads = sidecar.reload_status();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(sidecar.run(shutdown.clone()));
        Self {
            addrs,
            events,
            tls,
            reloads,
            shutdown,
            task,
        }
    }

    pub fn addr(&self, name: &str) -> SocketAddr {
        self.addrs
            .iter()
            .find(|b| b.name == name)
            .unwrap_or_else(|| panic!("no listener {name}"))
            .addr
    }

    /// The next connection event (bounded wait).
    pub async fn next_event(&mut self) -> ConnectionEvent {
        tokio::time::timeout(WAIT, self.events.recv())
            .await
            .expect("no connection event in time")
            .unwrap()
    }

    /// Waits for the TLS snapshot of generation `gen` (bounded wait).
    pub async fn wait_generation(&mut self, gen: u64) {
        tokio::time::timeout(WAIT, self.tls.wait_for(|s| s.generation >= gen))
            .await
            .expect("reload did not happen in time")
            .unwrap();
    }

    /// Waits until `n` reloads have been refused (bounded wait).
    pub async fn wait_failed_reloads(&mut self, n: u64) {
        tokio::time::timeout(WAIT, self.reloads.wait_for(|s| s.failed >= n))
            .await
            .expect("refused reload did not happen in time")
            .unwrap();
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("sidecar did not stop in time")
            .unwrap();
    }
}

/// What a test app saw on one connection.
#[derive(Debug)]
pub struct AppConn {
    pub header: Option<ProxyHeader>,
}

/// An echo app on 127.0.0.1:0. With `expect_proxy`, it first reads a PROXY v2 header. Every
/// accepted connection is reported on the returned channel (after the header, if any).
pub async fn echo_app(expect_proxy: bool) -> (SocketAddr, mpsc::UnboundedReceiver<AppConn>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let header = if expect_proxy {
                    match read_proxy_header(&mut s, 4096, WAIT).await {
                        Ok(h) => Some(h),
                        Err(_) => return,
                    }
                } else {
                    None
                };
                let _ = tx.send(AppConn { header });
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    (addr, rx)
}

/// Sends `msg` through a plain TCP connection to `addr` and returns what came back before EOF
/// (the echo of `msg`, or nothing if the sidecar refused the connection).
pub async fn round_trip(addr: SocketAddr, msg: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    // A refused connection may be reset before the write lands; that is a refusal too.
    let _ = s.write_all(msg).await;
    let _ = s.shutdown().await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut out))
        .await
        .expect("no EOF in time");
    out
}

/// A raw mTLS client with `svid` that trusts `bundles` (any server ID).
pub fn tls_connector(svid: &X509Svid, bundles: BundleSet) -> tokio_rustls::TlsConnector {
    tls_connector_offering(svid, bundles, &[])
}

/// [`tls_connector`] offering the ALPN protocols `alpn` (e.g. the relay protocol, as a gateway
/// relaying a caller does).
pub fn tls_connector_offering(
    svid: &X509Svid,
    bundles: BundleSet,
    alpn: &[&[u8]],
) -> tokio_rustls::TlsConnector {
    let verifier = Arc::new(SpiffeServerVerifier::new(bundles, Authorizer::any()));
    let mut cfg = fedgate_federation::tls::client_config(Some(svid), verifier).unwrap();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

pub fn server_name(s: &str) -> ServerName<'static> {
    ServerName::try_from(s.to_owned()).unwrap()
}

/// GET `path` from an admin server; returns the body.
pub async fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(WAIT, s.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_owned()
}

/// The value of the sample line starting with `prefix` in a metrics text, if any.
pub fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}
