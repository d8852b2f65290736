//! Test certificate factory for the bridge tests: one self-signed CA per trust domain (rcgen),
//! SVIDs with one SPIFFE URI SAN, optionally with a chosen validity window.
//!
//! Declared from each test file with `#[path = "support/bridge_certs.rs"] mod bridge_certs;`.
#![allow(dead_code)] // each test file uses a different subset

use std::time::Duration;

use fedgate_federation::{Bundle, SpiffeId, TrustDomain, X509Svid};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use time::OffsetDateTime;

/// A trust domain's CA.
pub struct TestCa {
    pub td: TrustDomain,
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// An issued SVID as PEM, plus the parsed value.
pub struct IssuedSvid {
    pub id: SpiffeId,
    pub chain_pem: String,
    pub key_pem: String,
}

impl TestCa {
    pub fn new(td: &str) -> TestCa {
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{td} test CA"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params
            .subject_alt_names
            .push(SanType::URI(format!("spiffe://{td}").try_into().unwrap()));
        params.not_before = OffsetDateTime::now_utc() - time::Duration::days(1);
        params.not_after = OffsetDateTime::now_utc() + time::Duration::days(365);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            td: TrustDomain::new(td).unwrap(),
            cert,
            key,
        }
    }

    /// The trust domain's bundle: this CA only.
    pub fn bundle(&self) -> Bundle {
        let mut b = Bundle::new(self.td.clone());
        b.add_x509_authority(self.cert.der().clone());
        b
    }

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

    pub fn issue_valid(
        &self,
        path: &str,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> IssuedSvid {
        let id = format!("spiffe://{}{}", self.td, path);
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.subject_alt_names = vec![SanType::URI(id.clone().try_into().unwrap())];
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
        IssuedSvid {
            id: SpiffeId::parse(&id).unwrap(),
            chain_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

impl IssuedSvid {
    pub fn svid(&self) -> X509Svid {
        X509Svid::from_pem(self.chain_pem.as_bytes(), self.key_pem.as_bytes()).unwrap()
    }
}
