//! Test certificate factory for the sidecar tests (rcgen): one CA per trust domain, SVIDs with
//! exactly one SPIFFE URI SAN, bundles and bundle maps, identity files written atomically.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};

use fedgate_federation::{Bundle, BundleSet, TrustDomain, X509Svid};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use rustls_pki_types::CertificateDer;
use time::{Duration, OffsetDateTime};

/// A self-signed root CA of one trust domain.
pub struct TestCa {
    pub td: TrustDomain,
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// An issued SVID in PEM, plus its leaf DER for comparisons.
#[derive(Clone)]
pub struct TestSvid {
    pub chain_pem: String,
    pub key_pem: String,
    pub leaf: CertificateDer<'static>,
}

/// The identity files of one workload in a directory.
#[derive(Clone, Debug)]
pub struct IdentityFiles {
    pub dir: PathBuf,
    pub svid: PathBuf,
    pub key: PathBuf,
    pub bundle: PathBuf,
}

impl TestCa {
    pub fn new(td: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, format!("{td} test root"));
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.subject_alt_names = vec![SanType::URI(format!("spiffe://{td}").try_into().unwrap())];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::hours(1);
        params.not_after = now + Duration::days(30);
        let cert = params.self_signed(&key).unwrap();
        Self {
            td: TrustDomain::new(td).unwrap(),
            cert,
            key,
        }
    }

    pub fn der(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }

    pub fn bundle(&self) -> Bundle {
        let mut b = Bundle::new(self.td.clone());
        b.add_x509_authority(self.der());
        b
    }

    pub fn bundle_json(&self) -> Vec<u8> {
        self.bundle().to_json()
    }

    /// Issues an SVID for `id` (a full `spiffe://` ID, which may name another trust domain:
    /// that is how trust-domain confusion is tested).
    pub fn issue(&self, id: &str) -> TestSvid {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, id);
        params.distinguished_name = dn;
        params.is_ca = IsCa::NoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.subject_alt_names = vec![SanType::URI(id.try_into().unwrap())];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::minutes(5);
        params.not_after = now + Duration::days(1);
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        TestSvid {
            chain_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            leaf: cert.der().clone(),
        }
    }

    /// Issues an SVID and writes it with this CA's bundle into `dir`.
    pub fn write_identity(&self, dir: &Path, id: &str) -> IdentityFiles {
        std::fs::create_dir_all(dir).unwrap();
        let files = IdentityFiles {
            dir: dir.to_owned(),
            svid: dir.join("svid.pem"),
            key: dir.join("svid.key"),
            bundle: dir.join("bundle.json"),
        };
        let svid = self.issue(id);
        write_atomic(&files.svid, svid.chain_pem.as_bytes());
        write_atomic(&files.key, svid.key_pem.as_bytes());
        write_atomic(&files.bundle, &self.bundle_json());
        files
    }
}

impl TestSvid {
    pub fn x509(&self) -> X509Svid {
        X509Svid::from_pem(self.chain_pem.as_bytes(), self.key_pem.as_bytes()).unwrap()
    }

    /// Replaces the SVID files of `files` (key first, then chain, each atomically).
    pub fn install(&self, files: &IdentityFiles) {
        write_atomic(&files.key, self.key_pem.as_bytes());
        write_atomic(&files.svid, self.chain_pem.as_bytes());
    }
}

/// A SPIFFE bundle map (`{"trust_domains": {"td": JWKS}}`) of the given CAs' bundles.
pub fn bundle_map_json(cas: &[&TestCa]) -> Vec<u8> {
    let set = BundleSet::from_bundles(cas.iter().map(|ca| ca.bundle())).unwrap();
    fedgate_federation::distribute::bundle_map_json(&set)
}

pub fn bundle_set(cas: &[&TestCa]) -> BundleSet {
    BundleSet::from_bundles(cas.iter().map(|ca| ca.bundle())).unwrap()
}

/// Writes `bytes` to a temporary sibling and renames it over `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp-write");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}
