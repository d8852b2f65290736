//! PKI and a running `fedgate ca serve` for the issuer tests: four CAs made with
//! `fedgate::ca::Ca` (bridge.test, cluster-a.test, cluster-b.test as members, cluster-c.test
//! as a non-member), SVIDs for gateways and workloads, and the issuing endpoint on 127.0.0.1:0.

#![allow(dead_code)] // each test file uses a different subset
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic fails the test

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fedgate::ca::serve::{Issuer, IssuerMetrics, ServeConfig};
use fedgate::ca::{Ca, InitOptions};
use fedgate::identity::issuer::{IssuerClient, IssuerClientConfig};
use fedgate_federation::tls::{self, Authorizer, SpiffeServerVerifier};
use fedgate_federation::{BundleSet, SpiffeId, TrustDomain, X509Svid};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub const ENDPOINT_ID: &str = "spiffe://bridge.test/ca-endpoint";
pub const GW_A: &str = "spiffe://cluster-a.test/ns/fedgate/sa/gateway";
pub const GW_B: &str = "spiffe://cluster-b.test/ns/fedgate/sa/gateway";
pub const BRIDGE_A: &str = "spiffe://bridge.test/gateway/cluster-a";
pub const BRIDGE_B: &str = "spiffe://bridge.test/gateway/cluster-b";

pub fn id(s: &str) -> SpiffeId {
    SpiffeId::parse(s).unwrap()
}

/// The CAs and files of one test, in a temporary directory.
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub bridge: Ca,
    pub a: Ca,
    pub b: Ca,
    pub c: Ca,
}

impl Pki {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let opts = InitOptions {
            ttl: Duration::from_secs(30 * 86_400),
            refresh_hint: Some(Duration::from_secs(300)),
            intermediate: false,
        };
        let init = |td: &str| Ca::init(&TrustDomain::new(td).unwrap(), &opts).unwrap();
        let pki = Self {
            bridge: init("bridge.test"),
            a: init("cluster-a.test"),
            b: init("cluster-b.test"),
            c: init("cluster-c.test"),
            dir,
        };
        for (name, ca) in [
            ("bridge-ca", &pki.bridge),
            ("a-ca", &pki.a),
            ("b-ca", &pki.b),
        ] {
            ca.save(&pki.path(name)).unwrap();
        }
        std::fs::write(pki.path("a-bundle.json"), pki.a.bundle().to_json()).unwrap();
        std::fs::write(pki.path("b-bundle.json"), pki.b.bundle().to_json()).unwrap();
        let endpoint = pki
            .bridge
            .issue(&id(ENDPOINT_ID), Duration::from_secs(86_400), &[])
            .unwrap();
        endpoint
            .write(&pki.path("endpoint"), pki.bridge.bundle())
            .unwrap();
        pki
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The endpoint config: members a and b, gateways a and b mapped, polled every 50 ms.
    pub fn config_text(&self, extra: &str) -> String {
        format!(
            r#"ca_dir = "bridge-ca"
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
svid = "endpoint/svid.pem"
key = "endpoint/svid.key"
default_ttl = "1h"
max_ttl = "24h"
poll_interval = "50ms"
handshake_timeout = "5s"
{extra}
[[members]]
trust_domain = "cluster-a.test"
bundle = "a-bundle.json"
[[members]]
trust_domain = "cluster-b.test"
bundle = "b-bundle.json"
[[policy]]
local = "{GW_A}"
bridge = "{BRIDGE_A}"
[[policy]]
local = "{GW_B}"
bridge = "{BRIDGE_B}"
"#
        )
    }

    pub fn write_config(&self, extra: &str) -> PathBuf {
        let path = self.path("ca-serve.toml");
        std::fs::write(&path, self.config_text(extra)).unwrap();
        path
    }

    /// An X509-SVID issued by `ca`.
    pub fn svid(ca: &Ca, id_str: &str) -> Arc<X509Svid> {
        let issued = ca
            .issue(&id(id_str), Duration::from_secs(3600), &[])
            .unwrap();
        Arc::new(
            X509Svid::from_pem(issued.chain_pem().as_bytes(), issued.key_pem().as_bytes()).unwrap(),
        )
    }

    /// The bridge trust domain's bundle, as the gateways hold it.
    pub fn bridge_bundles(&self) -> BundleSet {
        BundleSet::from_bundles([self.bridge.bundle().clone()]).unwrap()
    }

    /// A leaf for `uri` signed by the CA saved in `ca_dir` (whatever trust domain `uri` names).
    pub fn forge(&self, ca_dir: &str, uri: &str) -> Arc<X509Svid> {
        let dir = self.path(ca_dir);
        let ca_pem = std::fs::read_to_string(dir.join("ca.pem")).unwrap();
        let ca_key =
            rcgen::KeyPair::from_pem(&std::fs::read_to_string(dir.join("ca.key")).unwrap())
                .unwrap();
        let issuer = rcgen::CertificateParams::from_ca_cert_pem(&ca_pem)
            .unwrap()
            .self_signed(&ca_key)
            .unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.subject_alt_names = vec![rcgen::SanType::URI(uri.try_into().unwrap())];
        p.is_ca = rcgen::IsCa::ExplicitNoCa;
        p.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let now = time::OffsetDateTime::now_utc();
        p.not_before = now - time::Duration::minutes(1);
        p.not_after = now + time::Duration::hours(1);
        p.use_authority_key_identifier_extension = true;
        let leaf = p.signed_by(&key, &issuer, &ca_key).unwrap();
        Arc::new(X509Svid::from_pem(leaf.pem().as_bytes(), key.serialize_pem().as_bytes()).unwrap())
    }
}

/// A running issuing endpoint.
pub struct Running {
    pub url: reqwest::Url,
    pub admin: std::net::SocketAddr,
    pub metrics: IssuerMetrics,
    pub shutdown: CancellationToken,
    pub task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Builds and runs the endpoint for the config file at `path`.
    pub async fn start(path: &Path) -> Self {
        let config = ServeConfig::load(path).unwrap();
        let issuer = Issuer::build(&config).await.unwrap();
        let addr = issuer.local_addr().unwrap();
        let admin = issuer.admin_addr().unwrap().unwrap();
        let metrics = issuer.metrics().clone();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(issuer.run(shutdown.clone()));
        Self {
            url: format!("https://{addr}/").parse().unwrap(),
            admin,
            metrics,
            shutdown,
            task,
        }
    }

    /// Waits (bounded) until at least `n` events were counted since `rx` was created.
    pub async fn await_events(rx: &mut watch::Receiver<u64>, n: u64) {
        tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|v| *v >= n))
            .await
            .expect("the endpoint did not count the event in time")
            .unwrap();
    }

    /// `GET /metrics` on the admin listener.
    pub async fn metrics_text(&self) -> String {
        http_get(self.admin, "/metrics").await
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .unwrap()
            .unwrap();
    }
}

/// A client config for `client`: config for the IssuerClient.
pub fn client_config(
    pki: &Pki,
    url: &reqwest::Url,
    local: Arc<X509Svid>,
    requested: &str,
    ttl: Option<Duration>,
    out_dir: Option<PathBuf>,
) -> IssuerClientConfig {
    IssuerClientConfig {
        url: url.clone(),
        ca_endpoint_id: id(ENDPOINT_ID),
        bridge_bundle: watch::channel(pki.bridge_bundles()).1,
        local_svid: watch::channel(local).1,
        requested_id: id(requested),
        ttl,
        out_dir,
    }
}

/// An `IssuerClient` that retries quickly.
pub fn client(cfg: IssuerClientConfig) -> IssuerClient {
    IssuerClient::new(cfg)
        .with_retry(Duration::from_millis(50), Duration::from_millis(200))
        .with_request_timeout(Duration::from_secs(10))
}

/// The usual client: gateway A's SVID asking for its bridge ID, default TTL, no files.
pub fn gw_a_client(pki: &Pki, url: &reqwest::Url) -> IssuerClient {
    client(client_config(
        pki,
        url,
        Pki::svid(&pki.a, GW_A),
        BRIDGE_A,
        None,
        None,
    ))
}

/// A raw `POST /v1/issue` with `body` as `content_type`, authenticated with `local`, the
/// endpoint verified as the tests' endpoint ID. Returns status and body.
pub async fn post_raw(
    pki: &Pki,
    url: &reqwest::Url,
    local: &X509Svid,
    query: &str,
    content_type: &str,
    body: Vec<u8>,
) -> Result<(u16, String), reqwest::Error> {
    post_raw_with_headers(pki, url, local, query, content_type, body)
        .await
        .map(|(status, _, body)| (status, body))
}

/// [`post_raw`], also returning the response headers.
pub async fn post_raw_with_headers(
    pki: &Pki,
    url: &reqwest::Url,
    local: &X509Svid,
    query: &str,
    content_type: &str,
    body: Vec<u8>,
) -> Result<(u16, reqwest::header::HeaderMap, String), reqwest::Error> {
    let verifier = Arc::new(SpiffeServerVerifier::new(
        pki.bridge_bundles(),
        Authorizer::exact(id(ENDPOINT_ID)),
    ));
    let tls = tls::client_config(Some(local), verifier).unwrap();
    let http = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let resp = http
        .post(format!("{url}v1/issue{query}"))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    Ok((status, headers, resp.text().await?))
}

/// A DER CSR for the given URI SANs, with extra extensions.
pub fn csr(sans: &[&str], extra: Vec<rcgen::CustomExtension>) -> Vec<u8> {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    for s in sans {
        p.subject_alt_names
            .push(rcgen::SanType::URI((*s).try_into().unwrap()));
    }
    p.custom_extensions = extra;
    p.serialize_request(&key).unwrap().der().to_vec()
}

/// A plain HTTP/1.1 GET (the admin listener has no TLS); returns the whole response.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    out
}
