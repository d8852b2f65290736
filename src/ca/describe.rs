//! Pure helpers to read and describe certificates for people: PEM decoding and encoding,
//! SHA-256 fingerprints, RFC 3339 times and a summary of one certificate.
//!
//! Invariants: nothing here validates trust (that is `fedgate_federation::svid::verify`);
//! nothing here panics on hostile input; fingerprints are lowercase hex of SHA-256 over the
//! DER bytes, everywhere fedgate prints or stores one.

use std::fmt::Write as _;

use base64::Engine as _;
use rustls_pki_types::pem::{self, PemObject, SectionKind};
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
use x509_parser::public_key::PublicKey;

/// Why a PEM file did not yield certificates.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum PemError {
    #[error("no PEM CERTIFICATE block found (the file is empty or not PEM)")]
    Empty,
    #[error("no PEM CERTIFICATE block found; the file holds {0} instead")]
    WrongLabel(String),
    #[error("malformed PEM: {0}")]
    Malformed(String),
}

/// What `svid inspect` and `bundle inspect` show about one certificate.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CertSummary {
    pub subject: String,
    pub issuer: String,
    /// Colon-separated lowercase hex, as `openssl x509 -serial` shows it (with colons).
    pub serial: String,
    pub not_before: String,
    pub not_after: String,
    pub sha256_fingerprint: String,
    pub key_type: String,
    pub is_ca: bool,
    pub uri_sans: Vec<String>,
    pub dns_sans: Vec<String>,
}

/// Decodes every `CERTIFICATE` block of `pem_bytes`, in order.
///
/// Other blocks (keys, for a combined file) are skipped; a file with none is an error that
/// says what it held instead.
pub(crate) fn parse_pem_certs(pem_bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let mut certs = Vec::new();
    let mut other_labels: Vec<&'static str> = Vec::new();
    for item in <(SectionKind, Vec<u8>) as PemObject>::pem_slice_iter(pem_bytes) {
        match item {
            Ok((SectionKind::Certificate, der)) => certs.push(CertificateDer::from(der)),
            Ok((kind, _)) => other_labels.push(label(kind)),
            Err(e) => return Err(PemError::Malformed(pem_error_text(&e))),
        }
    }
    if certs.is_empty() {
        return Err(match other_labels.first() {
            Some(l) => PemError::WrongLabel((*l).to_string()),
            None => PemError::Empty,
        });
    }
    Ok(certs)
}

/// PEM-encodes certificates (64-column base64, `CERTIFICATE` label), in order.
pub(crate) fn encode_pem_certs(certs: &[CertificateDer<'_>]) -> String {
    let mut out = String::new();
    for c in certs {
        out.push_str("-----BEGIN CERTIFICATE-----\n");
        let b64 = base64::engine::general_purpose::STANDARD.encode(c.as_ref());
        for chunk in b64.as_bytes().chunks(64) {
            // base64 output is ASCII, so every chunk is valid UTF-8.
            out.push_str(&String::from_utf8_lossy(chunk));
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
    }
    out
}

/// Lowercase hex SHA-256 of `der`.
pub(crate) fn sha256_hex(der: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, der).as_ref())
}

/// `YYYY-MM-DDTHH:MM:SSZ` (UTC, RFC 3339).
pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Summarizes one DER certificate; the error is x509-parser's reason.
pub fn describe(der: &[u8]) -> Result<CertSummary, String> {
    let cert = parse_cert(der)?;
    let tbs = &cert.tbs_certificate;
    let mut uri_sans = Vec::new();
    let mut dns_sans = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::URI(u) => uri_sans.push((*u).to_string()),
                GeneralName::DNSName(d) => dns_sans.push((*d).to_string()),
                _ => {}
            }
        }
    }
    let is_ca = matches!(cert.basic_constraints(), Ok(Some(bc)) if bc.value.ca);
    Ok(CertSummary {
        subject: tbs.subject.to_string(),
        issuer: tbs.issuer.to_string(),
        serial: hex_colon(tbs.raw_serial()),
        not_before: rfc3339(tbs.validity.not_before.to_datetime()),
        not_after: rfc3339(tbs.validity.not_after.to_datetime()),
        sha256_fingerprint: sha256_hex(der),
        key_type: key_type(&cert),
        is_ca,
        uri_sans,
        dns_sans,
    })
}

/// Parses one DER certificate, refusing trailing bytes.
pub(crate) fn parse_cert(der: &[u8]) -> Result<X509Certificate<'_>, String> {
    match X509Certificate::from_der(der) {
        Ok((rest, _)) if !rest.is_empty() => Err(format!(
            "{} trailing bytes after the certificate",
            rest.len()
        )),
        Ok((_, cert)) => Ok(cert),
        Err(e) => Err(format!("malformed certificate: {e}")),
    }
}

fn key_type(cert: &X509Certificate<'_>) -> String {
    let spki = &cert.tbs_certificate.subject_pki;
    match spki.parsed() {
        Ok(PublicKey::EC(_)) => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|oid| match oid.to_id_string().as_str() {
                    "1.2.840.10045.3.1.7" => "P-256".to_string(),
                    "1.3.132.0.34" => "P-384".to_string(),
                    "1.3.132.0.35" => "P-521".to_string(),
                    other => other.to_string(),
                })
                .unwrap_or_else(|| "unknown curve".to_string());
            format!("ECDSA {curve}")
        }
        Ok(PublicKey::RSA(rsa)) => format!("RSA {}", rsa.key_size()),
        Ok(_) => match spki.algorithm.algorithm.to_id_string().as_str() {
            "1.3.101.112" => "Ed25519".to_string(),
            "1.3.101.113" => "Ed448".to_string(),
            other => format!("unknown ({other})"),
        },
        Err(_) => format!("unparsable ({})", spki.algorithm.algorithm.to_id_string()),
    }
}

fn label(kind: SectionKind) -> &'static str {
    match kind {
        SectionKind::Certificate => "CERTIFICATE",
        SectionKind::PublicKey => "PUBLIC KEY",
        SectionKind::RsaPrivateKey => "RSA PRIVATE KEY",
        SectionKind::PrivateKey => "PRIVATE KEY",
        SectionKind::EcPrivateKey => "EC PRIVATE KEY",
        SectionKind::Crl => "X509 CRL",
        SectionKind::Csr => "CERTIFICATE REQUEST",
        SectionKind::EchConfigList => "ECHCONFIG",
        _ => "an unsupported PEM block",
    }
}

fn pem_error_text(e: &pem::Error) -> String {
    match e {
        pem::Error::MissingSectionEnd { .. } => "a PEM block has no END line".to_string(),
        pem::Error::IllegalSectionStart { .. } => "a PEM BEGIN line is malformed".to_string(),
        pem::Error::Base64Decode(m) => format!("bad base64 in a PEM block ({m})"),
        pem::Error::SectionTooLarge => "a PEM block is too large".to_string(),
        other => other.to_string(),
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn hex_colon(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample_cert() -> CertificateDer<'static> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(vec!["a.example".to_string()]).unwrap();
        p.subject_alt_names
            .push(rcgen::SanType::URI("spiffe://a.test/x".try_into().unwrap()));
        p.self_signed(&key).unwrap().der().clone()
    }

    #[test]
    fn pem_round_trip_keeps_order() {
        let a = sample_cert();
        let b = sample_cert();
        let pem = encode_pem_certs(&[a.clone(), b.clone()]);
        assert_eq!(parse_pem_certs(pem.as_bytes()).unwrap(), vec![a, b]);
    }

    #[test]
    fn pem_errors_say_what_is_wrong() {
        assert_eq!(parse_pem_certs(b"").unwrap_err(), PemError::Empty);
        assert_eq!(
            parse_pem_certs(b"garbage\nmore garbage\n").unwrap_err(),
            PemError::Empty
        );
        let key = rcgen::KeyPair::generate().unwrap().serialize_pem();
        assert_eq!(
            parse_pem_certs(key.as_bytes()).unwrap_err(),
            PemError::WrongLabel("PRIVATE KEY".into())
        );
        let bad = b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            parse_pem_certs(bad).unwrap_err(),
            PemError::Malformed(_)
        ));
        let open = b"-----BEGIN CERTIFICATE-----\nAAAA\n";
        assert!(matches!(
            parse_pem_certs(open).unwrap_err(),
            PemError::Malformed(_)
        ));
    }

    #[test]
    fn describe_reports_sans_key_type_and_fingerprint() {
        let der = sample_cert();
        let s = describe(&der).unwrap();
        assert_eq!(s.uri_sans, vec!["spiffe://a.test/x"]);
        assert_eq!(s.dns_sans, vec!["a.example"]);
        assert_eq!(s.key_type, "ECDSA P-256");
        assert_eq!(s.sha256_fingerprint.len(), 64);
        assert_eq!(s.sha256_fingerprint, sha256_hex(&der));
        assert_eq!(s.not_before, "1975-01-01T00:00:00Z");
        assert!(!s.is_ca);
    }

    #[test]
    fn describe_refuses_trailing_bytes_and_garbage() {
        let mut der = sample_cert().to_vec();
        der.push(0);
        assert!(describe(&der).unwrap_err().contains("trailing"));
        assert!(describe(b"\x30\x03abc").is_err());
    }

    proptest! {
        #[test]
        fn pem_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_pem_certs(&bytes);
        }

        #[test]
        fn describe_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = describe(&bytes);
        }
    }
}
