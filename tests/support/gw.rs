//! Test support for gateway tests: a test PKI (rcgen), TLS echo upstreams, a TLS client that
//! does TLS end to end through the gateway, an in-process `App`, and an admin HTTP client.
// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]
// Test setup that fails should panic with a backtrace, as in #[test] functions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use fedgate::app::{App, Reloader};
use fedgate::config::Config;
use fedgate_federation::tls::provider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Names every test upstream certificate covers.
pub const CERT_NAMES: &[&str] = &[
    "*.cluster-b.test",
    "*.cluster-c.test",
    "api.cluster-b.test",
    "fallback.test",
    "127.0.0.1",
];

/// A CA and one server certificate for [`CERT_NAMES`], signed by it.
pub struct Pki {
    pub ca: CertificateDer<'static>,
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivatePkcs8KeyDer<'static>,
}

impl Pki {
    pub fn new() -> Pki {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "fedgate test ca");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(
            CERT_NAMES.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
        .unwrap();
        let leaf = params.signed_by(&key, &ca, &ca_key).unwrap();
        Pki {
            ca: ca.der().clone(),
            chain: vec![leaf.der().clone()],
            key: PrivatePkcs8KeyDer::from(key.serialize_der()),
        }
    }

    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let cfg = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                self.chain.clone(),
                PrivateKeyDer::Pkcs8(self.key.clone_key()),
            )
            .unwrap();
        Arc::new(cfg)
    }

    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.clone()).unwrap();
        let cfg = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(cfg)
    }

    /// The raw first flight (ClientHello records) a rustls client sends for `name`; an IP
    /// address sends no SNI.
    pub fn client_hello(&self, name: &str) -> Vec<u8> {
        let server_name = ServerName::try_from(name.to_string()).unwrap();
        let mut conn = rustls::ClientConnection::new(self.client_config(), server_name).unwrap();
        let mut out = Vec::new();
        while conn.wants_write() {
            conn.write_tls(&mut out).unwrap();
        }
        out
    }
}

/// A TLS server that answers each connection with `<tag>\n` and then echoes until EOF.
pub async fn tls_echo(pki: &Pki, tag: &str) -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(pki.server_config());
    let tag = tag.to_string();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let tag = tag.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let (mut r, mut w) = tokio::io::split(tls);
                if w.write_all(format!("{tag}\n").as_bytes()).await.is_err() {
                    return;
                }
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    (addr, task)
}

/// A TCP server that accepts and holds connections, never sending anything; counts accepts.
pub async fn tcp_sink() -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = tcp.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                }
            });
        }
    });
    (addr, task)
}

/// A TCP server that reads a little and then resets the connection (SO_LINGER 0).
pub async fn tcp_resetter() -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                return;
            };
            let mut buf = [0u8; 16];
            let _ = tcp.read(&mut buf).await;
            let _ = socket2::SockRef::from(&tcp).set_linger(Some(Duration::ZERO));
            drop(tcp);
        }
    });
    (addr, task)
}

/// An address with nothing listening (bound, then closed).
pub async fn dead_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

pub type Tls = tokio_rustls::client::TlsStream<TcpStream>;

/// TLS through the gateway at `gw` with SNI `name` (an IP sends none); returns the stream and
/// the upstream's tag line.
pub async fn connect_tls(
    pki: &Pki,
    gw: SocketAddr,
    name: &str,
) -> std::io::Result<(BufReader<Tls>, String)> {
    let tcp = TcpStream::connect(gw).await?;
    let connector = tokio_rustls::TlsConnector::from(pki.client_config());
    let server_name = ServerName::try_from(name.to_string()).unwrap();
    let tls = tokio::time::timeout(Duration::from_secs(10), connector.connect(server_name, tcp))
        .await
        .map_err(|_| std::io::Error::other("handshake timed out"))??;
    let mut reader = BufReader::new(tls);
    let mut tag = String::new();
    reader.read_line(&mut tag).await?;
    if tag.is_empty() {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok((reader, tag.trim().to_string()))
}

/// Sends `msg` and expects it echoed back.
pub async fn echo(stream: &mut BufReader<Tls>, msg: &str) {
    stream
        .get_mut()
        .write_all(format!("{msg}\n").as_bytes())
        .await
        .unwrap();
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_line(&mut line))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(line.trim(), msg);
}

/// TLS through the gateway, returning only the upstream tag; closes cleanly.
pub async fn tag_via(pki: &Pki, gw: SocketAddr, name: &str) -> std::io::Result<String> {
    let (stream, tag) = connect_tls(pki, gw, name).await?;
    close(stream).await;
    Ok(tag)
}

/// Closes cleanly: close_notify + FIN, then reads to EOF so no unread bytes turn the close
/// into a reset.
pub async fn close(mut stream: BufReader<Tls>) {
    let _ = stream.get_mut().shutdown().await;
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest)).await;
}

/// Reads until EOF or error; panics if the peer keeps the connection open past 10 s.
pub async fn expect_closed(stream: &mut TcpStream) {
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "gateway did not close the connection");
}

/// A gateway running in-process.
pub struct TestApp {
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub admin: SocketAddr,
    pub listeners: Vec<(String, SocketAddr)>,
    pub reloader: Reloader,
    pub bundle_endpoint: Option<SocketAddr>,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<Result<(), fedgate::app::AppError>>,
}

impl TestApp {
    /// Writes `toml` to a temp dir, builds the app and runs it.
    pub async fn start(toml: &str) -> TestApp {
        Self::start_with(toml, |a| a).await
    }

    pub async fn start_with(toml: &str, tweak: impl FnOnce(App) -> App) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("gateway.toml");
        std::fs::write(&config_path, toml).unwrap();
        let config = Config::load(&config_path).unwrap();
        let app = tweak(App::build(config).await.unwrap());
        let shutdown = CancellationToken::new();
        let admin = app.admin_addr();
        let listeners = app.listener_addrs();
        let reloader = app.reloader();
        let bundle_endpoint = app.bundle_endpoint_addr();
        let task = tokio::spawn(app.run(shutdown.clone()));
        let app = TestApp {
            dir,
            config_path,
            admin,
            listeners,
            reloader,
            bundle_endpoint,
            shutdown,
            task,
        };
        app.wait_until(|| async { get(app.admin, "/healthz").await.0 == 200 })
            .await;
        app
    }

    pub fn addr(&self, name: &str) -> SocketAddr {
        self.listeners.iter().find(|(n, _)| n == name).unwrap().1
    }

    /// Current value of the sample whose line starts with `prefix` (0 when absent).
    pub async fn metric(&self, prefix: &str) -> f64 {
        let (_, text) = get(self.admin, "/metrics").await;
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }

    /// Connections accepted by data-plane `worker` on `listener`, from `/metrics`.
    pub async fn worker_accepted(&self, listener: &str, worker: usize) -> f64 {
        self.metric(&format!(
            "fedgate_worker_accepted_connections_total{{listener=\"{listener}\",worker=\"{worker}\"}}"
        ))
        .await
    }

    /// Polls `cond` every 10 ms for at most 10 s (a readiness check, not a timing assumption).
    pub async fn wait_until<F, Fut>(&self, mut cond: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        for _ in 0..1000 {
            if cond().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("condition not reached within 10 s");
    }

    /// Waits until the metric sample `prefix` equals `value`.
    pub async fn wait_metric(&self, prefix: &str, value: f64) {
        for _ in 0..1000 {
            if self.metric(prefix).await == value {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let (_, text) = get(self.admin, "/metrics").await;
        panic!("metric {prefix} never became {value}:\n{text}");
    }

    /// Cancels and waits for `run` to return.
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}

/// `GET path` on the admin server: (status, body).
pub async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let Ok(mut tcp) = TcpStream::connect(addr).await else {
        return (0, String::new());
    };
    let req = format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut raw))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// A passthrough listener table in TOML.
pub fn listener(name: &str, extra: &str, routes: &[(&str, &[SocketAddr])]) -> String {
    let mut s = format!("[[listeners]]\nname = \"{name}\"\nlisten = \"127.0.0.1:0\"\nkind = \"passthrough\"\n{extra}\n");
    for (sni, ups) in routes {
        let ups: Vec<String> = ups.iter().map(|u| format!("\"{u}\"")).collect();
        s.push_str(&format!(
            "[[listeners.routes]]\nsni = \"{sni}\"\nupstreams = [{}]\n",
            ups.join(", ")
        ));
    }
    s
}

/// The config header every test uses (admin on port 0).
pub const HEADER: &str = "trust_domain = \"cluster-a.test\"\ndrain_timeout = \"5s\"\n[admin]\nlisten = \"127.0.0.1:0\"\n";

#[path = "spiffe_ca.rs"]
mod spiffe_ca;
/// A SPIFFE trust domain's CA for tests (the shared `spiffe_ca::TestCa`), writing files.
pub use spiffe_ca::TestCa as SpiffeCa;

impl SpiffeCa {
    /// Writes the trust domain's bundle (SPIFFE JWKS) to `path`.
    pub fn write_bundle(&self, path: &std::path::Path) {
        std::fs::write(path, self.bundle_json()).unwrap();
    }

    /// Issues an X509-SVID for `spiffe://<td><path>` and writes chain and key PEM files.
    pub fn write_svid(&self, path: &str, chain: &std::path::Path, key_path: &std::path::Path) {
        let svid = self.sign_svid_now(&format!("spiffe://{}{path}", self.td));
        std::fs::write(chain, svid.chain_pem).unwrap();
        std::fs::write(key_path, svid.key_pem).unwrap();
    }
}
