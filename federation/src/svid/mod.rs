//! X509-SVIDs: loading from PEM, and validation (X509-SVID.md) in [`verify`].
//!
//! Invariants: an `X509Svid` has a non-empty chain whose leaf carries exactly one URI SAN that
//! is a valid SPIFFE ID, and a private key whose public key equals the leaf's; its `Debug`
//! output never contains key material (threat-model invariant 8).

pub mod verify;

use std::fmt;
use std::path::{Path, PathBuf};

use rustls_pki_types::pem::{self, PemObject, SectionKind};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::crypto::provider;
use crate::spiffe_id::SpiffeId;
use verify::VerifyError;

/// The labels accepted for the private key.
const KEY_LABELS: &str = "PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY";

/// An SVID with its private key: the leaf first, then any intermediates.
pub struct X509Svid {
    id: SpiffeId,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SvidError {
    #[error("cannot read {what} file {path}")]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid SVID in {chain} (key {key})")]
    InFiles {
        chain: PathBuf,
        key: PathBuf,
        #[source]
        source: Box<SvidError>,
    },
    #[error("the {0} is empty; expected PEM data")]
    Empty(&'static str),
    #[error("the {what} is not valid PEM")]
    Pem {
        what: &'static str,
        #[source]
        source: pem::Error,
    },
    #[error("the {what} holds PEM block(s) labelled {found}; expected {expected}")]
    WrongPemLabel {
        what: &'static str,
        found: String,
        expected: &'static str,
    },
    #[error("the private key PEM holds {0} keys; expected exactly one")]
    MultipleKeys(usize),
    #[error("the leaf certificate is not a valid X509-SVID")]
    Leaf(#[source] VerifyError),
    #[error("the private key is not usable (unsupported or malformed)")]
    UnsupportedKey(#[source] rustls::Error),
    #[error("the private key does not match the leaf certificate's public key")]
    KeyMismatch,
}

// === impl X509Svid ===

impl X509Svid {
    /// Loads the chain (`CERTIFICATE` blocks, leaf first) and the key (PKCS#8, SEC1 or PKCS#1).
    /// Errors name the files.
    pub fn load(chain_path: &Path, key_path: &Path) -> Result<Self, SvidError> {
        let read = |what, path: &Path| {
            std::fs::read(path).map_err(|source| SvidError::Read {
                what,
                path: path.to_owned(),
                source,
            })
        };
        let chain = read("certificate chain", chain_path)?;
        let key = read("private key", key_path)?;
        Self::from_pem(&chain, &key).map_err(|e| SvidError::InFiles {
            chain: chain_path.to_owned(),
            key: key_path.to_owned(),
            source: Box::new(e),
        })
    }

    /// Parses the chain PEM (leaf first) and the key PEM, and checks that they belong together.
    pub fn from_pem(chain_pem: &[u8], key_pem: &[u8]) -> Result<Self, SvidError> {
        let chain = parse_chain(chain_pem)?;
        let key = parse_key(key_pem)?;
        Self::from_der(chain, key)
    }

    /// Builds an SVID from DER parts, with the same checks as [`X509Svid::from_pem`].
    pub fn from_der(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self, SvidError> {
        let leaf = chain.first().ok_or(SvidError::Empty("certificate chain"))?;
        let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref())
            .map_err(|e| SvidError::Leaf(VerifyError::BadCertificate(e.to_string())))?;
        let id = verify::id_of(&cert).map_err(SvidError::Leaf)?;
        let signing_key = provider()
            .key_provider
            .load_private_key(key.clone_key())
            .map_err(SvidError::UnsupportedKey)?;
        match signing_key.public_key() {
            Some(spki) if spki.as_ref() == cert.public_key().raw => {}
            _ => return Err(SvidError::KeyMismatch),
        }
        Ok(Self { id, chain, key })
    }

    pub fn id(&self) -> &SpiffeId {
        &self.id
    }

    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    pub fn key(&self) -> PrivateKeyDer<'static> {
        self.key.clone_key()
    }
}

impl Clone for X509Svid {
    fn clone(&self) -> Self {
        Self {
            id: self.id.clone(),
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl fmt::Debug for X509Svid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("X509Svid")
            .field("id", &self.id)
            .field("chain_len", &self.chain.len())
            .field("key", &"<redacted>")
            .finish()
    }
}

// === private ===

fn parse_chain(pem_bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, SvidError> {
    const WHAT: &str = "certificate chain";
    if pem_bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(SvidError::Empty(WHAT));
    }
    let mut chain = Vec::new();
    for item in <(SectionKind, Vec<u8>)>::pem_slice_iter(pem_bytes) {
        let (kind, der) = item.map_err(|source| SvidError::Pem { what: WHAT, source })?;
        if kind != SectionKind::Certificate {
            return Err(wrong_label(WHAT, pem_bytes, "CERTIFICATE"));
        }
        chain.push(CertificateDer::from(der));
    }
    if chain.is_empty() {
        return Err(wrong_label(WHAT, pem_bytes, "CERTIFICATE"));
    }
    Ok(chain)
}

fn parse_key(pem_bytes: &[u8]) -> Result<PrivateKeyDer<'static>, SvidError> {
    const WHAT: &str = "private key";
    if pem_bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(SvidError::Empty(WHAT));
    }
    let mut keys = Vec::new();
    for item in <(SectionKind, Vec<u8>)>::pem_slice_iter(pem_bytes) {
        let (kind, der) = item.map_err(|source| SvidError::Pem { what: WHAT, source })?;
        match kind {
            SectionKind::PrivateKey | SectionKind::EcPrivateKey | SectionKind::RsaPrivateKey => {
                keys.push((kind, der));
            }
            _ => return Err(wrong_label(WHAT, pem_bytes, KEY_LABELS)),
        }
    }
    match keys.len() {
        0 => Err(wrong_label(WHAT, pem_bytes, KEY_LABELS)),
        1 => {
            let (kind, der) = keys.remove(0);
            PrivateKeyDer::from_pem(kind, der).ok_or(SvidError::Empty(WHAT))
        }
        n => Err(SvidError::MultipleKeys(n)),
    }
}

fn wrong_label(what: &'static str, pem_bytes: &[u8], expected: &'static str) -> SvidError {
    let labels = pem_labels(pem_bytes);
    let found = if labels.is_empty() {
        "none (no `-----BEGIN ...-----` line)".to_owned()
    } else {
        labels.join(", ")
    };
    SvidError::WrongPemLabel {
        what,
        found,
        expected,
    }
}

/// The labels of all `-----BEGIN <label>-----` lines, for error messages.
fn pem_labels(pem_bytes: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(pem_bytes);
    text.lines()
        .filter_map(|line| {
            line.trim()
                .strip_prefix("-----BEGIN ")?
                .strip_suffix("-----")
        })
        .map(|label| label.chars().take(64).collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn pem_labels_are_listed() {
        let text = b"junk\n-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n\
                     -----BEGIN ENCRYPTED PRIVATE KEY-----\n";
        assert_eq!(pem_labels(text), ["PUBLIC KEY", "ENCRYPTED PRIVATE KEY"]);
        assert!(pem_labels(b"no pem here").is_empty());
    }

    #[test]
    fn empty_and_wrong_label_errors() {
        assert!(matches!(
            parse_chain(b" \n"),
            Err(SvidError::Empty("certificate chain"))
        ));
        assert!(matches!(
            parse_key(b""),
            Err(SvidError::Empty("private key"))
        ));
        let err = parse_chain(
            b"-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("OPENSSH PRIVATE KEY") && msg.contains("CERTIFICATE"),
            "{msg}"
        );
        let err = parse_key(b"hello").unwrap_err();
        assert!(err.to_string().contains("none"), "{err}");
    }

    fn pem_like() -> impl Strategy<Value = Vec<u8>> {
        let label = prop_oneof![
            Just("CERTIFICATE"),
            Just("PRIVATE KEY"),
            Just("EC PRIVATE KEY"),
            Just("RSA PRIVATE KEY"),
            Just("PUBLIC KEY"),
            Just("X"),
        ];
        (label, "[A-Za-z0-9+/=\n]{0,200}", any::<bool>()).prop_map(|(l, body, end)| {
            let mut s = format!("-----BEGIN {l}-----\n{body}\n");
            if end {
                s.push_str(&format!("-----END {l}-----\n"));
            }
            s.into_bytes()
        })
    }

    proptest! {
        #[test]
        fn arbitrary_pem_never_panics(chain in pem_like(), key in pem_like()) {
            let _ = X509Svid::from_pem(&chain, &key);
        }

        #[test]
        fn arbitrary_bytes_never_panic(chain in prop::collection::vec(any::<u8>(), 0..256),
                                       key in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = X509Svid::from_pem(&chain, &key);
            let der = CertificateDer::from(chain);
            let _ = verify::spiffe_id_of(&der);
            let _ = verify::verify(
                std::slice::from_ref(&der),
                &crate::bundle::BundleSet::new(),
                rustls_pki_types::UnixTime::now(),
            );
        }
    }
}
