//! The test CA behind every root-crate test factory (`sidecar_certs.rs`, `bridge_certs.rs`,
//! `gw.rs`): one self-signed root per trust domain (rcgen) that signs X509-SVIDs with exactly
//! one SPIFFE URI SAN, CA=false, digitalSignature and both TLS EKUs, in a chosen validity
//! window. Each factory adds its own issuing helpers as inherent methods in its own module.
//!
//! Declared from those files with `#[path = "spiffe_ca.rs"] mod spiffe_ca;`.
#![allow(dead_code)]
// each test binary uses a different subset
// Test support: a failed unwrap here is a test failure with a backtrace, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use fedgate_federation::{Bundle, TrustDomain};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;

/// A self-signed root CA of one trust domain.
pub struct TestCa {
    pub td: TrustDomain,
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// A signed X509-SVID: PEM chain (the leaf), PEM key, and the leaf's DER for comparisons.
#[derive(Clone)]
pub struct SignedSvid {
    pub chain_pem: String,
    pub key_pem: String,
    pub leaf: CertificateDer<'static>,
}

impl TestCa {
    pub fn new(td: &str) -> TestCa {
        let now = OffsetDateTime::now_utc();
        TestCa::with_validity(
            td,
            now - time::Duration::days(1),
            now + time::Duration::days(365),
        )
    }

    /// A root valid from `not_before` to `not_after` (e.g. an expired one).
    pub fn with_validity(
        td: &str,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> TestCa {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{td} test CA"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.subject_alt_names = vec![SanType::URI(format!("spiffe://{td}").try_into().unwrap())];
        params.not_before = not_before;
        params.not_after = not_after;
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            td: TrustDomain::new(td).unwrap(),
            cert,
            key,
        }
    }

    /// The root certificate.
    pub fn der(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }

    /// The trust domain's bundle: this CA only.
    pub fn bundle(&self) -> Bundle {
        let mut b = Bundle::new(self.td.clone());
        b.add_x509_authority(self.der());
        b
    }

    /// The bundle as SPIFFE bundle JSON (JWKS).
    pub fn bundle_json(&self) -> Vec<u8> {
        self.bundle().to_json()
    }

    /// Signs an SVID for the full ID `id` (which may name another trust domain: that is how
    /// trust-domain confusion is tested), valid from `not_before` to `not_after`.
    pub fn sign_svid(
        &self,
        id: &str,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> SignedSvid {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.subject_alt_names = vec![SanType::URI(id.try_into().unwrap())];
        params.is_ca = IsCa::NoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        params.not_before = not_before;
        params.not_after = not_after;
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        SignedSvid {
            chain_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            leaf: cert.der().clone(),
        }
    }

    /// An SVID for the full ID `id`, valid from a minute ago for a day, issued through a fresh
    /// intermediate CA (`CA:TRUE`) of this root with `key_usages` (`None`: no key usage
    /// extension). The chain PEM is the leaf, then the intermediate.
    pub fn sign_svid_via_intermediate(
        &self,
        id: &str,
        key_usages: Option<Vec<KeyUsagePurpose>>,
    ) -> SignedSvid {
        let now = OffsetDateTime::now_utc();
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{} test intermediate", self.td));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = key_usages.unwrap_or_default();
        params.subject_alt_names = vec![SanType::URI(
            format!("spiffe://{}", self.td).try_into().unwrap(),
        )];
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(30);
        let ca_key = KeyPair::generate().unwrap();
        let intermediate = params.signed_by(&ca_key, &self.cert, &self.key).unwrap();
        let intermediate_ca = TestCa {
            td: self.td.clone(),
            cert: intermediate,
            key: ca_key,
        };
        let mut svid = intermediate_ca.sign_svid(
            id,
            now - time::Duration::minutes(1),
            now + time::Duration::days(1),
        );
        svid.chain_pem.push_str(&intermediate_ca.cert.pem());
        svid
    }

    /// [`sign_svid`](Self::sign_svid) valid from a minute ago for a day.
    pub fn sign_svid_now(&self, id: &str) -> SignedSvid {
        let now = OffsetDateTime::now_utc();
        self.sign_svid(
            id,
            now - time::Duration::minutes(1),
            now + time::Duration::days(1),
        )
    }
}
