//! Test certificate factory for the bridge tests: the shared [`TestCa`] (`spiffe_ca.rs`) issuing
//! by path inside its trust domain, optionally with a chosen validity window.
//!
//! Declared from each test file with `#[path = "support/bridge_certs.rs"] mod bridge_certs;`.
#![allow(dead_code)]
// each test file uses a different subset
// Test support: a failed unwrap here is a test failure with a backtrace, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use fedgate_federation::{SpiffeId, X509Svid};
use time::OffsetDateTime;

#[path = "spiffe_ca.rs"]
mod spiffe_ca;
pub use spiffe_ca::TestCa;

/// An issued SVID as PEM, plus the parsed value.
pub struct IssuedSvid {
    pub id: SpiffeId,
    pub chain_pem: String,
    pub key_pem: String,
}

impl TestCa {
    /// An SVID for `spiffe://<td><path>` valid from a minute ago for a day.
    pub fn issue(&self, path: &str) -> IssuedSvid {
        let now = OffsetDateTime::now_utc();
        self.issue_valid(
            path,
            now - time::Duration::minutes(1),
            now + time::Duration::days(1),
        )
    }

    /// An SVID that expired an hour ago.
    pub fn issue_expired(&self, path: &str) -> IssuedSvid {
        let now = OffsetDateTime::now_utc();
        self.issue_valid(
            path,
            now - time::Duration::days(2),
            now - time::Duration::hours(1),
        )
    }

    /// An SVID valid for `lifetime` from now.
    pub fn issue_for(&self, path: &str, lifetime: Duration) -> IssuedSvid {
        let now = OffsetDateTime::now_utc();
        self.issue_valid(
            path,
            now - time::Duration::minutes(1),
            now + time::Duration::try_from(lifetime).unwrap(),
        )
    }

    /// An SVID for `spiffe://<td><path>` issued through an intermediate CA with `key_usages`
    /// (`None`: no key usage extension); the chain is the leaf, then the intermediate.
    pub fn issue_via_intermediate(
        &self,
        path: &str,
        key_usages: Option<Vec<rcgen::KeyUsagePurpose>>,
    ) -> IssuedSvid {
        let id = format!("spiffe://{}{}", self.td, path);
        let signed = self.sign_svid_via_intermediate(&id, key_usages);
        IssuedSvid {
            id: SpiffeId::parse(&id).unwrap(),
            chain_pem: signed.chain_pem,
            key_pem: signed.key_pem,
        }
    }

    pub fn issue_valid(
        &self,
        path: &str,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> IssuedSvid {
        let id = format!("spiffe://{}{}", self.td, path);
        let signed = self.sign_svid(&id, not_before, not_after);
        IssuedSvid {
            id: SpiffeId::parse(&id).unwrap(),
            chain_pem: signed.chain_pem,
            key_pem: signed.key_pem,
        }
    }
}

impl IssuedSvid {
    pub fn svid(&self) -> X509Svid {
        X509Svid::from_pem(self.chain_pem.as_bytes(), self.key_pem.as_bytes()).unwrap()
    }
}

/// Stand-ins for the workloads' sidecars: plain tokio-rustls clients and servers.
pub mod workloads {
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::time::Duration;

    use fedgate_dataplane::proxy_protocol::{read_proxy_header, ProxyHeader};
    use fedgate_federation::tls::{Authorizer, SpiffeClientVerifier, SpiffeServerVerifier};
    use fedgate_federation::{BundleSet, SpiffeId};
    use rustls::pki_types::ServerName;
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::mpsc;
    use tokio_rustls::{TlsAcceptor, TlsConnector};

    use super::{IssuedSvid, TestCa};

    /// What a destination saw on one connection.
    #[derive(Debug)]
    pub struct Observed {
        pub tls_peer: SpiffeId,
        pub header: ProxyHeader,
    }

    pub struct Destination {
        pub addr: SocketAddr,
        pub seen: mpsc::UnboundedReceiver<Observed>,
    }

    /// A destination workload of `ca`'s domain: mTLS server with `svid` that trusts only its
    /// own domain, selects the relay protocol, reads the PROXY v2 header its gateway sends,
    /// reports it, then echoes.
    pub async fn spawn_destination(ca: &TestCa, svid: &IssuedSvid) -> Destination {
        let verifier = SpiffeClientVerifier::new(
            BundleSet::new().with(ca.bundle()),
            Authorizer::member_of(ca.td.clone()),
        );
        let mut config =
            fedgate_federation::tls::server_config(&svid.svid(), Arc::new(verifier)).unwrap();
        // It reads a relay header, so it accepts the relay role (ADR 0007).
        config.alpn_protocols = vec![fedgate_dataplane::relay::RELAY_ALPN.to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, seen) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let tls_peer = fedgate_federation::tls::peer_id(tls.get_ref().1).unwrap();
                    let Ok(header) =
                        read_proxy_header(&mut tls, 4096, Duration::from_secs(5)).await
                    else {
                        return;
                    };
                    let _ = tx.send(Observed { tls_peer, header });
                    echo(tls).await;
                });
            }
        });
        Destination { addr, seen }
    }

    pub async fn echo<S: AsyncRead + AsyncWrite + Unpin>(mut s: S) {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if s.write_all(&buf[..n]).await.is_err() || s.flush().await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = s.shutdown().await;
    }

    /// A calling workload: mTLS client with `svid`, trusting only `ca`'s bundle, requiring the
    /// server to be `server`, sending `sni`.
    pub async fn call(
        ca: &TestCa,
        svid: &IssuedSvid,
        server: &SpiffeId,
        addr: SocketAddr,
        sni: &str,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let verifier = SpiffeServerVerifier::new(
            BundleSet::new().with(ca.bundle()),
            Authorizer::exact(server.clone()),
        );
        let config =
            fedgate_federation::tls::client_config(Some(&svid.svid()), Arc::new(verifier)).unwrap();
        let tcp = TcpStream::connect(addr).await?;
        TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from(sni.to_owned()).unwrap(), tcp)
            .await
    }

    pub async fn round_trip<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, msg: &[u8]) -> Vec<u8> {
        s.write_all(msg).await.unwrap();
        s.flush().await.unwrap();
        let mut got = vec![0u8; msg.len()];
        tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut got))
            .await
            .expect("echo timed out")
            .unwrap();
        got
    }

    /// Reads until the peer closes; returns what arrived (a refused connection yields nothing).
    pub async fn drain<S: AsyncRead + Unpin>(s: &mut S) -> Vec<u8> {
        let mut got = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got))
            .await
            .expect("connection was not closed");
        got
    }
}

impl IssuedSvid {
    /// Writes `NAME.pem` (chain) and `NAME.key` into `dir`; returns their file names.
    pub fn write(&self, dir: &std::path::Path, name: &str) -> (String, String) {
        let (pem, key) = (format!("{name}.pem"), format!("{name}.key"));
        std::fs::write(dir.join(&pem), &self.chain_pem).unwrap();
        std::fs::write(dir.join(&key), &self.key_pem).unwrap();
        (pem, key)
    }
}

impl TestCa {
    /// Writes the bundle JSON as `NAME` into `dir`.
    pub fn write_bundle(&self, dir: &std::path::Path, name: &str) {
        std::fs::write(dir.join(name), self.bundle().to_json()).unwrap();
    }
}
