//! Test certificate factory on rcgen: one `TestCa` per trust domain, issuing well-formed
//! X509-SVIDs and, through `LeafSpec`, deliberately malformed ones.
//!
//! Shared by the integration tests of this crate; each test binary uses only part of it.
// Each test binary uses a different subset of the factory (dead_code), and a failure to build
// a fixture should panic the test with a backtrace, as `allow-unwrap-in-tests` allows inside
// the tests themselves (unwrap_used).
#![allow(dead_code, clippy::unwrap_used)]

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fedgate_federation::{Bundle, BundleSet, TrustDomain, X509Svid};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime};
use time::OffsetDateTime;

const DAY: i64 = 86_400;

/// "Now" for a test process, in whole unix seconds, read once so fixtures and checks agree.
/// It is the real time because rustls handshakes validate at the real clock.
pub fn now_secs() -> u64 {
    static NOW: OnceLock<u64> = OnceLock::new();
    *NOW.get_or_init(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    })
}

pub fn now() -> UnixTime {
    UnixTime::since_unix_epoch(Duration::from_secs(now_secs()))
}

pub fn td(name: &str) -> TrustDomain {
    TrustDomain::new(name).unwrap()
}

/// A self-signed root CA (or an intermediate) for one trust domain.
pub struct TestCa {
    td: TrustDomain,
    key: KeyPair,
    cert: rcgen::Certificate,
    /// Certificates between a leaf issued by this CA and the root (this CA first), excluding
    /// the root itself.
    intermediates: Vec<CertificateDer<'static>>,
    root: CertificateDer<'static>,
}

/// What to put in a leaf; `LeafSpec::svid(..)` is a well-formed X509-SVID.
#[derive(Clone)]
pub struct LeafSpec {
    pub uris: Vec<String>,
    pub is_ca: bool,
    pub key_usages: Vec<KeyUsagePurpose>,
    pub ekus: Vec<ExtendedKeyUsagePurpose>,
    /// Validity relative to [`now_secs`], in days.
    pub not_before_days: i64,
    pub not_after_days: i64,
}

pub struct Issued {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: KeyPair,
}

// === impl LeafSpec ===

impl LeafSpec {
    pub fn svid(id: &str) -> Self {
        Self {
            uris: vec![id.to_owned()],
            is_ca: false,
            key_usages: vec![KeyUsagePurpose::DigitalSignature],
            ekus: vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            not_before_days: -1,
            not_after_days: 30,
        }
    }
}

// === impl TestCa ===

impl TestCa {
    pub fn new(trust_domain: &str) -> Self {
        let td = td(trust_domain);
        let key = KeyPair::generate().unwrap();
        let cert = ca_params(&td).self_signed(&key).unwrap();
        let root = cert.der().clone();
        Self {
            td,
            key,
            cert,
            intermediates: Vec::new(),
            root,
        }
    }

    /// A self-signed root valid from `not_before_days` to `not_after_days` (relative to
    /// [`now_secs`]), e.g. an expired root with `(-365, -1)`.
    pub fn with_validity(trust_domain: &str, not_before_days: i64, not_after_days: i64) -> Self {
        let td = td(trust_domain);
        let key = KeyPair::generate().unwrap();
        let mut params = ca_params(&td);
        params.not_before = at_days(not_before_days);
        params.not_after = at_days(not_after_days);
        let cert = params.self_signed(&key).unwrap();
        let root = cert.der().clone();
        Self {
            td,
            key,
            cert,
            intermediates: Vec::new(),
            root,
        }
    }

    /// An intermediate CA of the same trust domain, signed by this CA.
    pub fn child_ca(&self) -> Self {
        self.child_ca_with(Some(vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
        ]))
    }

    /// An intermediate CA signed by this CA with the given key usages (`None`: no key usage
    /// extension at all). It is `CA:TRUE`, so only its key usage can be wrong.
    pub fn child_ca_with(&self, key_usages: Option<Vec<KeyUsagePurpose>>) -> Self {
        self.child_ca_with_key(key_usages, KeyPair::generate().unwrap())
    }

    /// The intermediate this CA would be, re-issued by `parent` with the same name and key
    /// but other key usages: a second certificate for the same issuer of this CA's leaves.
    pub fn reissued_by(
        &self,
        parent: &TestCa,
        key_usages: Option<Vec<KeyUsagePurpose>>,
    ) -> CertificateDer<'static> {
        let key = KeyPair::try_from(self.key.serialize_der()).unwrap();
        parent.child_ca_with_key(key_usages, key).intermediates[0].clone()
    }

    fn child_ca_with_key(&self, key_usages: Option<Vec<KeyUsagePurpose>>, key: KeyPair) -> Self {
        let mut params = ca_params(&self.td);
        let depth = self.intermediates.len() + 1;
        params
            .distinguished_name
            .push(DnType::CommonName, format!("intermediate {depth}"));
        params.key_usages = key_usages.unwrap_or_default();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        let mut intermediates = vec![cert.der().clone()];
        intermediates.extend(self.intermediates.iter().cloned());
        Self {
            td: self.td.clone(),
            key,
            cert,
            intermediates,
            root: self.root.clone(),
        }
    }

    pub fn trust_domain(&self) -> &TrustDomain {
        &self.td
    }

    /// The root certificate this CA chains to.
    pub fn root_der(&self) -> CertificateDer<'static> {
        self.root.clone()
    }

    /// A bundle of this CA's trust domain holding its root.
    pub fn bundle(&self) -> Bundle {
        let mut b = Bundle::new(self.td.clone());
        b.add_x509_authority(self.root_der());
        b
    }

    /// A bundle set with just this trust domain.
    pub fn bundle_set(&self) -> BundleSet {
        BundleSet::from_bundles([self.bundle()]).unwrap()
    }

    /// Issues a leaf from `spec`; the chain is the leaf, then this CA's intermediates.
    pub fn issue(&self, spec: &LeafSpec) -> Issued {
        self.issue_with_key(spec, KeyPair::generate().unwrap())
    }

    /// Issues a leaf from `spec` for the given subject key.
    pub fn issue_with_key(&self, spec: &LeafSpec, key: KeyPair) -> Issued {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "test leaf");
        params.subject_alt_names = spec
            .uris
            .iter()
            .map(|u| SanType::URI(u.as_str().try_into().unwrap()))
            .collect();
        params.is_ca = if spec.is_ca {
            IsCa::Ca(BasicConstraints::Unconstrained)
        } else {
            IsCa::ExplicitNoCa
        };
        params.key_usages = spec.key_usages.clone();
        params.extended_key_usages = spec.ekus.clone();
        params.not_before = at_days(spec.not_before_days);
        params.not_after = at_days(spec.not_after_days);
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        let mut chain = vec![cert.der().clone()];
        chain.extend(self.intermediates.iter().cloned());
        Issued { chain, key }
    }

    /// Issues a leaf from `spec` and returns its chain only.
    pub fn chain(&self, spec: &LeafSpec) -> Vec<CertificateDer<'static>> {
        self.issue(spec).chain
    }

    /// A well-formed SVID `spiffe://<td><path>` with its key.
    pub fn svid(&self, path: &str) -> X509Svid {
        let issued = self.issue(&LeafSpec::svid(&format!("spiffe://{}{path}", self.td)));
        issued.into_svid()
    }
}

impl Issued {
    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.serialize_der()))
    }

    pub fn chain_pem(&self) -> String {
        self.chain
            .iter()
            .map(|c| {
                let b64 = base64_lines(c.as_ref());
                format!("-----BEGIN CERTIFICATE-----\n{b64}-----END CERTIFICATE-----\n")
            })
            .collect()
    }

    pub fn into_svid(self) -> X509Svid {
        let key = self.key_der();
        X509Svid::from_der(self.chain, key).unwrap()
    }
}

fn base64_lines(der: &[u8]) -> String {
    use base64::Engine as _;
    let text = base64::engine::general_purpose::STANDARD.encode(der);
    text.as_bytes()
        .chunks(64)
        .map(|c| format!("{}\n", std::str::from_utf8(c).unwrap()))
        .collect()
}

fn ca_params(td: &TrustDomain) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(DnType::OrganizationName, td.as_str());
    params.subject_alt_names = vec![SanType::URI(td.id_string().as_str().try_into().unwrap())];
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = at_days(-365);
    params.not_after = at_days(3650);
    params
}

fn at_days(days: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(now_secs() as i64 + days * DAY).unwrap()
}

/// The contents of `federation/testdata/<name>`.
pub fn testdata(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// [`now_secs`] plus `days`, as a `SystemTime`.
pub fn system_time_days(days: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs((now_secs() as i64 + days * DAY) as u64)
}
