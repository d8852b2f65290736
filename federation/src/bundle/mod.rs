//! SPIFFE trust bundles and the per-trust-domain `BundleSet`.
//!
//! Invariants:
//! * A `BundleSet` maps each trust domain to exactly one bundle and never merges authorities
//!   across domains; it is an immutable snapshot (cheap to clone).
//! * `spiffe_sequence` is a property of the bundle document: writers of a local bundle
//!   (`fedgate ca`, `fedgate bundle create`) choose it with [`next_sequence`], which always
//!   grows and is at least the Unix time of the write; servers serve it unchanged.

pub mod document;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls_pki_types::{CertificateDer, TrustAnchor};

use crate::spiffe_id::TrustDomain;

pub use document::{EntryError, MAX_BUNDLE_LEN};

/// The trust bundle of one trust domain.
#[derive(Clone, Debug)]
pub struct Bundle {
    trust_domain: TrustDomain,
    x509_authorities: Vec<CertificateDer<'static>>,
    jwt_authorities: Vec<JwtAuthority>,
    refresh_hint: Option<Duration>,
    sequence: Option<u64>,
    /// webpki trust anchors of `x509_authorities`, kept in step with it so that
    /// verification never re-parses the certificates per handshake.
    anchors: Vec<TrustAnchor<'static>>,
    /// The certificate facts webpki anchors lack (validity, subject), `anchors[i]` ↔
    /// `anchor_info[i]`: a trust anchor's certificate must be within its validity window at
    /// verification time (threat model: a bundle's expiry bounds trust).
    anchor_info: Vec<AnchorInfo>,
}

/// What verification needs to know about the certificate behind one trust anchor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnchorInfo {
    /// `notBefore`, unix seconds.
    pub not_before: i64,
    /// `notAfter`, unix seconds.
    pub not_after: i64,
    /// The certificate's subject, as x509-parser prints it (for error messages).
    pub subject: String,
}

/// A JWT-SVID signing key (`use = "jwt-svid"`), kept as its JWK so it round-trips.
#[derive(Clone, Debug, PartialEq)]
pub struct JwtAuthority {
    pub key_id: String,
    pub jwk: serde_json::Map<String, serde_json::Value>,
}

/// A warning about an entry the spec says to ignore (unknown `use` or `kty`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundleWarning(pub String);

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    #[error("bundle for {td} is not valid JSON")]
    Json {
        td: TrustDomain,
        #[source]
        source: serde_json::Error,
    },
    #[error("bundle for {td} is {len} bytes, over the {MAX_BUNDLE_LEN}-byte limit")]
    TooLarge { td: TrustDomain, len: usize },
    #[error("bundle for {td} is not a JSON object (expected a JWKS document)")]
    NotAnObject { td: TrustDomain },
    #[error(
        "bundle for {td} has no `keys` member (SPIFFE_Trust_Domain_and_Bundle.md §4.1.3: \
         it must be present; use [] for a bundle that trusts nothing)"
    )]
    MissingKeys { td: TrustDomain },
    #[error("bundle for {td}: `keys` must be an array of JWKs")]
    KeysNotArray { td: TrustDomain },
    #[error("bundle for {td}: keys[{index}] is malformed: {reason}")]
    BadEntry {
        td: TrustDomain,
        index: usize,
        reason: EntryError,
    },
    #[error(
        "bundle for {td}: `{field}` must be an unsigned 64-bit integer, got {value} \
         (SPIFFE_Trust_Domain_and_Bundle.md §4.1)"
    )]
    BadInteger {
        td: TrustDomain,
        field: &'static str,
        value: String,
    },
    #[error("cannot read bundle file {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid bundle file {path}")]
    InFile {
        path: PathBuf,
        #[source]
        source: Box<BundleError>,
    },
    #[error("trust domain {0} appears twice; each trust domain has exactly one bundle")]
    DuplicateTrustDomain(TrustDomain),
}

/// Immutable snapshot: trust domain → bundle.
#[derive(Clone, Debug, Default)]
pub struct BundleSet {
    bundles: Arc<BTreeMap<TrustDomain, Arc<Bundle>>>,
}

/// Where verification finds the bundle of a trust domain.
pub trait BundleSource {
    /// Returns the bundle for `td`; never falls back to another trust domain's bundle.
    fn bundle_for(&self, td: &TrustDomain) -> Option<Arc<Bundle>>;
}

impl Bundle {
    pub fn new(trust_domain: TrustDomain) -> Self {
        Self {
            trust_domain,
            x509_authorities: Vec::new(),
            jwt_authorities: Vec::new(),
            refresh_hint: None,
            sequence: None,
            anchors: Vec::new(),
            anchor_info: Vec::new(),
        }
    }

    /// Parses the JWKS document of `td`. Ignored entries come back as warnings.
    pub fn parse(td: &TrustDomain, json: &[u8]) -> Result<(Self, Vec<BundleWarning>), BundleError> {
        let parsed = document::parse(td, json)?;
        let mut bundle = Self::new(td.clone());
        for der in parsed.x509 {
            bundle.add_x509_authority(der);
        }
        bundle.jwt_authorities = parsed.jwt;
        bundle.refresh_hint = parsed.refresh_hint;
        bundle.sequence = parsed.sequence;
        Ok((bundle, parsed.warnings))
    }

    /// Reads and parses the bundle file at `path` for `td`; errors name the file.
    pub fn load(td: &TrustDomain, path: &Path) -> Result<(Self, Vec<BundleWarning>), BundleError> {
        let json = std::fs::read(path).map_err(|source| BundleError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(td, &json).map_err(|e| BundleError::InFile {
            path: path.to_owned(),
            source: Box::new(e),
        })
    }

    /// Serializes to the JWKS document (pretty JSON).
    pub fn to_json(&self) -> Vec<u8> {
        document::to_json(self)
    }

    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }
    pub fn x509_authorities(&self) -> &[CertificateDer<'static>] {
        &self.x509_authorities
    }
    pub fn jwt_authorities(&self) -> &[JwtAuthority] {
        &self.jwt_authorities
    }
    pub fn refresh_hint(&self) -> Option<Duration> {
        self.refresh_hint
    }
    pub fn sequence(&self) -> Option<u64> {
        self.sequence
    }
    pub fn set_refresh_hint(&mut self, hint: Option<Duration>) {
        self.refresh_hint = hint;
    }
    pub fn set_sequence(&mut self, sequence: Option<u64>) {
        self.sequence = sequence;
    }
    /// Adds an X.509 authority (DER); duplicates are ignored. A certificate webpki cannot
    /// use as a trust anchor is kept (it round-trips) but anchors nothing.
    pub fn add_x509_authority(&mut self, der: CertificateDer<'static>) {
        if self.x509_authorities.contains(&der) {
            return;
        }
        match anchor_of(&der) {
            Ok((anchor, info)) => {
                self.anchors.push(anchor);
                self.anchor_info.push(info);
            }
            Err(e) => tracing::warn!(
                trust_domain = %self.trust_domain,
                error = %e,
                "x509 authority is not a usable trust anchor; it will trust nothing"
            ),
        }
        self.x509_authorities.push(der);
    }

    pub fn remove_x509_authority(&mut self, der: &CertificateDer<'_>) {
        self.x509_authorities.retain(|a| a.as_ref() != der.as_ref());
        (self.anchors, self.anchor_info) = self
            .x509_authorities
            .iter()
            .filter_map(|a| anchor_of(a).ok())
            .unzip();
    }

    /// Adds a JWT authority. Returns `false` (and changes nothing) if an authority with the
    /// same `kid` is already present: a `kid` names exactly one key (JWT-SVID.md §6.1).
    pub fn add_jwt_authority(&mut self, authority: JwtAuthority) -> bool {
        if self
            .jwt_authorities
            .iter()
            .any(|a| a.key_id == authority.key_id)
        {
            return false;
        }
        self.jwt_authorities.push(authority);
        true
    }

    /// Removes the JWT authority with `key_id`, if present.
    pub fn remove_jwt_authority(&mut self, key_id: &str) {
        self.jwt_authorities.retain(|a| a.key_id != key_id);
    }

    /// The webpki trust anchors of the X.509 authorities, parsed once.
    pub fn trust_anchors(&self) -> &[TrustAnchor<'static>] {
        &self.anchors
    }

    /// The certificate facts behind `anchor`, which must be one of [`Self::trust_anchors`]
    /// (found by identity, else by equal subject and key).
    pub fn anchor_info(&self, anchor: &TrustAnchor<'_>) -> Option<&AnchorInfo> {
        let index = self
            .anchors
            .iter()
            .position(|a| std::ptr::eq(a, anchor))
            .or_else(|| {
                self.anchors.iter().position(|a| {
                    a.subject.as_ref() == anchor.subject.as_ref()
                        && a.subject_public_key_info.as_ref()
                            == anchor.subject_public_key_info.as_ref()
                })
            })?;
        self.anchor_info.get(index)
    }

    /// The `notAfter` of each X.509 authority, in bundle order (authorities whose
    /// certificate does not parse are left out).
    pub fn x509_authorities_not_after(&self) -> Vec<SystemTime> {
        self.x509_authorities.iter().filter_map(not_after).collect()
    }

    /// The earliest `notAfter` of the X.509 authorities: from then on, chains anchored at
    /// that authority are refused. `None` for a bundle without X.509 authorities.
    pub fn earliest_authority_expiry(&self) -> Option<SystemTime> {
        self.x509_authorities_not_after().into_iter().min()
    }

    /// The moment after which no X.509 authority of this bundle is valid any more
    /// (the latest `notAfter`), or `None` for an empty bundle.
    pub fn trust_expires_at(&self) -> Option<SystemTime> {
        self.x509_authorities
            .iter()
            .filter_map(|der| not_after(der))
            .max()
    }
    /// Same authorities (ignores sequence and refresh hint).
    pub fn same_authorities(&self, other: &Bundle) -> bool {
        self.x509_authorities == other.x509_authorities
            && self.jwt_authorities == other.jwt_authorities
    }
}

/// The `spiffe_sequence` for a new version of a bundle whose current sequence is `current`
/// (`None`: a new bundle, or one without a sequence), written `now`:
/// `max(current + 1, Unix time of now in seconds)`. `None` if `current + 1` overflows.
///
/// Strictly greater than `current`, so peers accept the new version. Starting from the clock
/// (not from 1) keeps it above what peers hold even when the writer lost its state (a CA
/// directory re-created from scratch) and above the clock-based sequences that earlier fedgate
/// servers invented at start; a clock that goes back only means `current + 1`.
pub fn next_sequence(current: Option<u64>, now: SystemTime) -> Option<u64> {
    let clock = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    match current {
        Some(c) => Some(c.checked_add(1)?.max(clock)),
        None => Some(clock.max(1)),
    }
}

impl BundleSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a set from `bundles`; two bundles for the same trust domain are refused.
    pub fn from_bundles(bundles: impl IntoIterator<Item = Bundle>) -> Result<Self, BundleError> {
        let mut map = BTreeMap::new();
        for bundle in bundles {
            let td = bundle.trust_domain.clone();
            if map.insert(td.clone(), Arc::new(bundle)).is_some() {
                return Err(BundleError::DuplicateTrustDomain(td));
            }
        }
        Ok(Self {
            bundles: Arc::new(map),
        })
    }
    /// A new snapshot with `bundle` in force for its trust domain (replacing that domain only).
    pub fn with(&self, bundle: Bundle) -> Self {
        let mut map = (*self.bundles).clone();
        map.insert(bundle.trust_domain.clone(), Arc::new(bundle));
        Self {
            bundles: Arc::new(map),
        }
    }
    pub fn get(&self, td: &TrustDomain) -> Option<&Arc<Bundle>> {
        self.bundles.get(td)
    }
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Bundle>> {
        self.bundles.values()
    }
    pub fn len(&self) -> usize {
        self.bundles.len()
    }
    pub fn is_empty(&self) -> bool {
        self.bundles.is_empty()
    }
}

impl BundleSource for BundleSet {
    fn bundle_for(&self, td: &TrustDomain) -> Option<Arc<Bundle>> {
        self.bundles.get(td).cloned()
    }
}

impl BundleSource for Bundle {
    /// A single bundle answers only for its own trust domain.
    fn bundle_for(&self, td: &TrustDomain) -> Option<Arc<Bundle>> {
        (td == &self.trust_domain).then(|| Arc::new(self.clone()))
    }
}

impl std::fmt::Display for BundleWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The webpki trust anchor of an authority, with the validity and subject webpki drops.
fn anchor_of(der: &CertificateDer<'_>) -> Result<(TrustAnchor<'static>, AnchorInfo), String> {
    let anchor = webpki::anchor_from_trusted_cert(der)
        .map_err(|e| e.to_string())?
        .to_owned();
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| format!("cannot read the certificate's validity: {e}"))?;
    let info = AnchorInfo {
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        subject: cert.subject().to_string(),
    };
    Ok((anchor, info))
}

/// `notAfter` of a DER certificate, or `None` if it does not parse.
fn not_after(der: &CertificateDer<'_>) -> Option<SystemTime> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let secs = cert.validity().not_after.timestamp();
    let secs = u64::try_from(secs).ok()?;
    UNIX_EPOCH.checked_add(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests;
