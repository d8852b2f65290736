//! Test support for federation I/O tests: an rcgen CA, a real bundle endpoint, and hostile
//! raw-HTTP servers over tokio-rustls, all on 127.0.0.1:0.
// Each test binary uses a different subset; a failed unwrap here is a test failure.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fedgate_federation::endpoint::server::ServerTls;
use fedgate_federation::endpoint::{BundleEndpoint, FetchOptions, Profile, Relationship, WebRoots};
use fedgate_federation::{Bundle, SpiffeId, TrustDomain};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// A CA for one trust domain (SPIFFE) or for private Web PKI.
pub struct TestCa {
    pub td: TrustDomain,
    pub cert: rcgen::Certificate,
    key: KeyPair,
}

/// A leaf certificate with its key.
pub struct Leaf {
    pub chain: Vec<CertificateDer<'static>>,
    pub chain_pem: String,
    pub key_pem: String,
    pub key_der: PrivateKeyDer<'static>,
}

impl TestCa {
    /// A self-signed CA whose URI SAN is `spiffe://<td>` (X509-SVID.md §3.2).
    pub fn new(td: &str) -> Self {
        Self::with_uri(td, &format!("spiffe://{td}"))
    }

    /// A CA for trust domain `td` whose certificate claims `uri` as its SPIFFE ID.
    pub fn with_uri(td: &str, uri: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name
            .push(DnType::CommonName, format!("{td} Root CA"));
        p.distinguished_name
            .push(DnType::OrganizationName, "Fedgate  Test");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        p.subject_alt_names = vec![SanType::URI(uri.try_into().unwrap())];
        let cert = p.self_signed(&key).unwrap();
        Self {
            td: TrustDomain::new(td).unwrap(),
            cert,
            key,
        }
    }

    /// A Web PKI CA (no SPIFFE ID).
    pub fn web(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, name);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = p.self_signed(&key).unwrap();
        Self {
            td: TrustDomain::new("web.invalid").unwrap(),
            cert,
            key,
        }
    }

    pub fn der(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }

    /// The bundle of this CA's trust domain holding just this CA.
    pub fn bundle(&self) -> Bundle {
        let mut b = Bundle::new(self.td.clone());
        b.add_x509_authority(self.der());
        b
    }

    pub fn id(&self, path: &str) -> SpiffeId {
        SpiffeId::parse(&format!("spiffe://{}{}", self.td, path)).unwrap()
    }

    /// An X509-SVID for `spiffe://<td><path>`.
    pub fn svid(&self, path: &str) -> Leaf {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        p.subject_alt_names = vec![SanType::URI(
            format!("spiffe://{}{}", self.td, path)
                .as_str()
                .try_into()
                .unwrap(),
        )];
        self.sign(p)
    }

    /// A Web PKI server certificate for `dns` names and 127.0.0.1 if `ip` is set.
    pub fn server(&self, dns: &[&str], ip: bool) -> Leaf {
        let mut p =
            CertificateParams::new(dns.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        if ip {
            p.subject_alt_names
                .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        }
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(p)
    }

    fn sign(&self, p: CertificateParams) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.cert, &self.key).unwrap();
        Leaf {
            chain: vec![cert.der().clone()],
            chain_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            key_der: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        }
    }
}

/// An https_spiffe relationship for `td` pinning `endpoint_id`, bootstrapped with `bootstrap`.
pub fn spiffe_rel(
    td: &TrustDomain,
    url: &str,
    endpoint_id: &SpiffeId,
    bootstrap: Bundle,
) -> Relationship {
    Relationship {
        trust_domain: td.clone(),
        url: url.parse().unwrap(),
        profile: Profile::HttpsSpiffe {
            endpoint_id: endpoint_id.clone(),
            bootstrap,
        },
    }
}

impl Leaf {
    pub fn svid_tls(&self) -> ServerTls {
        ServerTls::Spiffe(
            fedgate_federation::X509Svid::from_pem(
                self.chain_pem.as_bytes(),
                self.key_pem.as_bytes(),
            )
            .unwrap(),
        )
    }

    pub fn web_tls(&self) -> ServerTls {
        ServerTls::Web {
            chain: self.chain.clone(),
            key: Arc::new(self.key_der.clone_key()),
        }
    }
}

/// A bundle with a sequence number.
pub fn with_seq(mut b: Bundle, seq: u64) -> Bundle {
    b.set_sequence(Some(seq));
    b
}

/// An https_web relationship for `td` trusting `ca` only.
pub fn web_rel(td: &TrustDomain, url: &str, ca: &TestCa) -> Relationship {
    Relationship {
        trust_domain: td.clone(),
        url: url.parse().unwrap(),
        profile: Profile::HttpsWeb {
            roots: WebRoots::Custom(vec![ca.der()]),
        },
    }
}

/// Small limits and timeouts so hostile cases end fast.
pub fn fast_opts() -> FetchOptions {
    FetchOptions {
        max_body: 64 * 1024,
        max_redirects: 3,
        connect_timeout: Duration::from_secs(2),
        timeout: Duration::from_millis(1500),
        read_idle_timeout: Duration::from_millis(500),
        if_none_match: None,
    }
}

/// A running real bundle endpoint.
pub struct Endpoint {
    pub addr: SocketAddr,
    pub bundle: watch::Sender<Arc<Bundle>>,
    pub shutdown: CancellationToken,
    pub task: tokio::task::JoinHandle<()>,
}

impl Endpoint {
    pub async fn start(tls: ServerTls, bundle: Bundle, path: &str) -> Self {
        Self::start_with_timeout(tls, bundle, path, Duration::from_secs(2)).await
    }

    pub async fn start_with_timeout(
        tls: ServerTls,
        bundle: Bundle,
        path: &str,
        handshake_timeout: Duration,
    ) -> Self {
        let config = tls.server_config().unwrap();
        let (_tls_tx, tls_rx) = watch::channel(config);
        let (tx, rx) = watch::channel(Arc::new(bundle));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let server =
            BundleEndpoint::new(path, rx, tls_rx).with_handshake_timeout(handshake_timeout);
        let sd = shutdown.clone();
        let task = tokio::spawn(async move {
            // Keep the TLS sender alive for the server's lifetime.
            let _tls_tx = _tls_tx;
            server.run(listener, sd).await.unwrap();
        });
        Self {
            addr,
            bundle: tx,
            shutdown,
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{}", self.addr.port(), path)
    }
}

/// What a hostile server does with one request.
#[derive(Clone, Debug)]
pub enum Reply {
    /// A complete response.
    Full {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// 200 with chunked encoding and a body that never ends.
    Endless,
    /// Headers announcing a body, then silence (slow loris).
    StallAfterHeaders,
}

impl Reply {
    pub fn json(body: &[u8]) -> Self {
        Reply::Full {
            status: 200,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.to_vec(),
        }
    }
    pub fn status(status: u16) -> Self {
        Reply::Full {
            status,
            headers: vec![],
            body: b"error".to_vec(),
        }
    }
    pub fn redirect(location: &str) -> Self {
        Reply::Full {
            status: 302,
            headers: vec![("Location".into(), location.into())],
            body: vec![],
        }
    }
}

/// A raw HTTP/1.1-over-TLS server whose replies come from `script(request_number, path)`.
pub struct Hostile {
    pub addr: SocketAddr,
    pub requests: Arc<AtomicUsize>,
    shutdown: CancellationToken,
}

type Script = Arc<dyn Fn(usize, &str) -> Reply + Send + Sync>;

impl Hostile {
    pub async fn start(
        tls: ServerTls,
        script: impl Fn(usize, &str) -> Reply + Send + Sync + 'static,
    ) -> Self {
        let script: Script = Arc::new(script);
        let config = tls.server_config().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let requests = Arc::new(AtomicUsize::new(0));
        let (sd, count) = (shutdown.clone(), requests.clone());
        tokio::spawn(async move {
            loop {
                let (tcp, _) = tokio::select! {
                    () = sd.cancelled() => return,
                    r = listener.accept() => match r { Ok(c) => c, Err(_) => continue },
                };
                let (acceptor, script, count, sd) =
                    (acceptor.clone(), script.clone(), count.clone(), sd.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    // Read the request head (bounded).
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16384 {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let line = String::from_utf8_lossy(&head)
                        .lines()
                        .next()
                        .unwrap_or("")
                        .to_owned();
                    let path = line.split(' ').nth(1).unwrap_or("/").to_owned();
                    let n = count.fetch_add(1, Ordering::SeqCst);
                    match script(n, &path) {
                        Reply::Full {
                            status,
                            headers,
                            body,
                        } => {
                            let mut out = format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
                            for (k, v) in headers {
                                out.push_str(&format!("{k}: {v}\r\n"));
                            }
                            out.push_str("\r\n");
                            let _ = tls.write_all(out.as_bytes()).await;
                            let _ = tls.write_all(&body).await;
                            let _ = tls.shutdown().await;
                        }
                        Reply::Endless => {
                            let _ = tls
                                .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
                                .await;
                            let chunk = format!("{:x}\r\n{}\r\n", 4096, " ".repeat(4096));
                            loop {
                                tokio::select! {
                                    () = sd.cancelled() => return,
                                    r = tls.write_all(chunk.as_bytes()) => if r.is_err() { return },
                                }
                            }
                        }
                        Reply::StallAfterHeaders => {
                            let _ = tls
                                .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
                                .await;
                            let _ = tls.flush().await;
                            // Hold the connection open until the test ends.
                            sd.cancelled().await;
                        }
                    }
                });
            }
        });
        Self {
            addr,
            requests,
            shutdown,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{}", self.addr.port(), path)
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
