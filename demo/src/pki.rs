//! The demo's PKI: SPIFFE CAs and SVIDs made by the real CLI (`fedgate ca init|issue|rotate`
//! children), and a private Web CA (rcgen, in process) for the `https_web` federation endpoint.
//!
//! Invariants: every identity the demo uses is listed in [`Identities`], so configs and
//! scenarios name the same IDs; keys are written only by `fedgate ca` children or
//! [`fedgate_federation::fs::write_private`] (0600).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};

use super::children::Launcher;

pub const TD_A: &str = "cluster-a.demo";
pub const TD_B: &str = "cluster-b.demo";
pub const TD_BRIDGE: &str = "bridge.demo";
/// A third trust domain nobody federates with (scenario 4).
pub const TD_C: &str = "cluster-c.demo";

/// Bound on each `fedgate ca` child.
const CA_DEADLINE: Duration = Duration::from_secs(20);

/// One SVID the demo issues: its ID and where `fedgate ca issue` writes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Svid {
    pub id: String,
    pub dir: PathBuf,
}

/// Every identity of the demo.
#[derive(Clone, Debug)]
pub struct Identities {
    /// CA directories (`fedgate ca init --out`), one per trust domain.
    pub ca_a: PathBuf,
    pub ca_b: PathBuf,
    pub ca_bridge: PathBuf,
    pub ca_c: PathBuf,
    /// An impostor CA that also calls itself cluster-a.demo (scenario 4).
    pub ca_impostor: PathBuf,
    /// The workload of each cluster (its sidecar fronts the echo and the caller).
    pub app_a: Svid,
    pub app_b: Svid,
    /// A workload of cluster A that no rule allows (scenario 3).
    pub intruder_a: Svid,
    /// A workload of the unfederated cluster-c.demo (scenario 4).
    pub app_c: Svid,
    /// The impostor CA's SVID for A's workload ID, the very ID every rule allows (scenario 4).
    pub impostor_a: Svid,
    /// Each gateway's local SVID (terminates bridge-egress, re-originates at bridge-ingress).
    pub gateway_a: Svid,
    pub gateway_b: Svid,
    /// Each gateway's bridge SVID.
    pub bridge_a: Svid,
    pub bridge_b: Svid,
    /// Cluster B's federation endpoint (`https_spiffe`).
    pub endpoint_b: Svid,
    /// Cluster A's federation endpoint: a Web PKI certificate from the private Web CA.
    pub web_ca: PathBuf,
    pub web_cert: PathBuf,
    pub web_key: PathBuf,
}

// === impl Svid ===

impl Svid {
    fn new(root: &Path, name: &str, id: String) -> Self {
        Self {
            id,
            dir: root.join("svid").join(name),
        }
    }

    pub fn pem(&self) -> PathBuf {
        self.dir.join("svid.pem")
    }

    pub fn key(&self) -> PathBuf {
        self.dir.join("svid.key")
    }
}

// === impl Identities ===

impl Identities {
    /// The layout under the demo directory `root`.
    pub fn new(root: &Path) -> Self {
        let pki = root.join("pki");
        Self {
            ca_a: pki.join(TD_A),
            ca_b: pki.join(TD_B),
            ca_bridge: pki.join(TD_BRIDGE),
            ca_c: pki.join(TD_C),
            ca_impostor: pki.join(format!("impostor-{TD_A}")),
            app_a: Svid::new(root, "app-a", format!("spiffe://{TD_A}/ns/demo/sa/app")),
            app_b: Svid::new(root, "app-b", format!("spiffe://{TD_B}/ns/demo/sa/app")),
            intruder_a: Svid::new(
                root,
                "intruder-a",
                format!("spiffe://{TD_A}/ns/demo/sa/intruder"),
            ),
            app_c: Svid::new(root, "app-c", format!("spiffe://{TD_C}/ns/demo/sa/app")),
            impostor_a: Svid::new(
                root,
                "impostor-a",
                format!("spiffe://{TD_A}/ns/demo/sa/app"),
            ),
            gateway_a: Svid::new(
                root,
                "gateway-a",
                format!("spiffe://{TD_A}/fedgate/gateway"),
            ),
            gateway_b: Svid::new(
                root,
                "gateway-b",
                format!("spiffe://{TD_B}/fedgate/gateway"),
            ),
            bridge_a: Svid::new(
                root,
                "bridge-a",
                format!("spiffe://{TD_BRIDGE}/gateway/cluster-a"),
            ),
            bridge_b: Svid::new(
                root,
                "bridge-b",
                format!("spiffe://{TD_BRIDGE}/gateway/cluster-b"),
            ),
            endpoint_b: Svid::new(
                root,
                "endpoint-b",
                format!("spiffe://{TD_B}/fedgate/bundle-endpoint"),
            ),
            web_ca: pki.join("web-ca").join("ca.pem"),
            web_cert: pki.join("web-ca").join("endpoint-a.pem"),
            web_key: pki.join("web-ca").join("endpoint-a.key"),
        }
    }

    /// The bundle file a CA directory publishes (updated in place by `ca rotate`).
    pub fn bundle(ca_dir: &Path) -> PathBuf {
        ca_dir.join("bundle.json")
    }

    /// (CA directory, SVID) for every SVID, in issue order.
    pub fn all_svids(&self) -> Vec<(&Path, &Svid)> {
        vec![
            (&self.ca_a, &self.app_a),
            (&self.ca_a, &self.intruder_a),
            (&self.ca_a, &self.gateway_a),
            (&self.ca_b, &self.app_b),
            (&self.ca_b, &self.gateway_b),
            (&self.ca_b, &self.endpoint_b),
            (&self.ca_c, &self.app_c),
            (&self.ca_impostor, &self.impostor_a),
            (&self.ca_bridge, &self.bridge_a),
            (&self.ca_bridge, &self.bridge_b),
        ]
    }

    /// Creates every CA and SVID with `fedgate ca` children, and the Web CA in process.
    /// `refresh_hint` goes into each bundle's `spiffe_refresh_hint`; `web_names` are the
    /// names and addresses cluster A's endpoint certificate is valid for.
    pub async fn create(
        &self,
        launcher: &Launcher,
        refresh_hint: Duration,
        web_host: &WebHost,
    ) -> anyhow::Result<()> {
        for (td, dir) in [
            (TD_A, &self.ca_a),
            (TD_B, &self.ca_b),
            (TD_BRIDGE, &self.ca_bridge),
            (TD_C, &self.ca_c),
            (TD_A, &self.ca_impostor),
        ] {
            launcher
                .run_ok(
                    "pki",
                    None,
                    &args(&[
                        "ca",
                        "init",
                        "--trust-domain",
                        td,
                        "--out",
                        &dir.display().to_string(),
                        "--ttl",
                        "720h",
                        "--refresh-hint",
                        &format!("{}s", refresh_hint.as_secs().max(1)),
                    ]),
                    CA_DEADLINE,
                )
                .await?;
        }
        for (ca, svid) in self.all_svids() {
            issue(launcher, ca, svid).await?;
        }
        make_web_pki(self, web_host)
    }
}

/// Issues (or re-issues) `svid` from the CA in `ca` with `fedgate ca issue`.
pub async fn issue(launcher: &Launcher, ca: &Path, svid: &Svid) -> anyhow::Result<()> {
    launcher
        .run_ok(
            "pki",
            None,
            &args(&[
                "ca",
                "issue",
                "--ca",
                &ca.display().to_string(),
                "--id",
                &svid.id,
                "--out",
                &svid.dir.display().to_string(),
                "--ttl",
                "24h",
            ]),
            CA_DEADLINE,
        )
        .await?;
    Ok(())
}

/// Rotates the CA in `ca` with `fedgate ca rotate`: the bundle then lists old and new roots;
/// with `retire_old`, the second phase: only the current root stays.
pub async fn rotate(launcher: &Launcher, ca: &Path, retire_old: bool) -> anyhow::Result<()> {
    let mut a = args(&["ca", "rotate", "--ca", &ca.display().to_string()]);
    if retire_old {
        a.push("--retire-old".into());
    }
    launcher.run_ok("pki", None, &a, CA_DEADLINE).await?;
    Ok(())
}

/// What the https_web endpoint's certificate must be valid for: the host name in its URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WebHost {
    /// A DNS name that resolves to the endpoint (`localhost` on loopback).
    Dns(String),
    /// The endpoint's IP address (inside namespaces, where no name resolves to it).
    Ip(IpAddr),
}

impl WebHost {
    /// The host part of a URL (`[v6]` for IPv6).
    pub fn url_host(&self) -> String {
        match self {
            WebHost::Dns(name) => name.clone(),
            WebHost::Ip(IpAddr::V6(ip)) => format!("[{ip}]"),
            WebHost::Ip(ip) => ip.to_string(),
        }
    }
}

/// The private Web CA and cluster A's endpoint certificate, valid only for `host`.
fn make_web_pki(ids: &Identities, host: &WebHost) -> anyhow::Result<()> {
    let dir = ids
        .web_ca
        .parent()
        .context("the Web CA path has a parent directory")?;
    fedgate_federation::fs::create_private_dir(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let (ca_pem, cert_pem, key_pem) = web_pki(host)?;
    fedgate_federation::fs::write_atomic(&ids.web_ca, ca_pem.as_bytes())
        .with_context(|| format!("cannot write {}", ids.web_ca.display()))?;
    fedgate_federation::fs::write_atomic(&ids.web_cert, cert_pem.as_bytes())
        .with_context(|| format!("cannot write {}", ids.web_cert.display()))?;
    fedgate_federation::fs::write_private(&ids.web_key, key_pem.as_bytes())
        .with_context(|| format!("cannot write {}", ids.web_key.display()))?;
    Ok(())
}

/// A Web CA certificate, and a server certificate and key for `host` signed by it (PEM).
pub fn web_pki(host: &WebHost) -> anyhow::Result<(String, String, String)> {
    let ca_key = KeyPair::generate().context("cannot generate the Web CA key")?;
    let mut ca = CertificateParams::default();
    ca.distinguished_name = name("fedgate demo Web CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let not_before = time::OffsetDateTime::now_utc() - time::Duration::minutes(1);
    ca.not_before = not_before;
    ca.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(30);
    let ca_cert = ca
        .self_signed(&ca_key)
        .context("cannot self-sign the Web CA")?;

    let key = KeyPair::generate().context("cannot generate the endpoint key")?;
    let mut leaf = CertificateParams::default();
    leaf.distinguished_name = name("fedgate demo bundle endpoint");
    leaf.subject_alt_names = vec![match host {
        WebHost::Dns(n) => SanType::DnsName(
            n.clone()
                .try_into()
                .with_context(|| format!("{n:?} is not a DNS name"))?,
        ),
        WebHost::Ip(ip) => SanType::IpAddress(*ip),
    }];
    leaf.is_ca = IsCa::ExplicitNoCa;
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.not_before = not_before;
    leaf.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(7);
    let cert = leaf
        .signed_by(&key, &ca_cert, &ca_key)
        .context("cannot sign the endpoint certificate")?;
    Ok((ca_cert.pem(), cert.pem(), key.serialize_pem()))
}

fn name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "fedgate demo");
    dn.push(DnType::CommonName, cn);
    dn
}

pub fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| (*s).to_owned()).collect()
}
