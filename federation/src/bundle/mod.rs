//! SPIFFE trust bundles and the per-trust-domain `BundleSet`.
//!
//! Invariant: a `BundleSet` maps each trust domain to exactly one bundle and never merges
//! authorities across domains; it is an immutable snapshot (cheap to clone).

pub mod document;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls_pki_types::CertificateDer;

use crate::spiffe_id::TrustDomain;

/// The trust bundle of one trust domain.
#[derive(Clone, Debug)]
pub struct Bundle {
    trust_domain: TrustDomain,
    x509_authorities: Vec<CertificateDer<'static>>,
    jwt_authorities: Vec<JwtAuthority>,
    refresh_hint: Option<Duration>,
    sequence: Option<u64>,
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
    #[error("TODO")]
    Todo,
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
        }
    }
    /// Parses the JWKS document of `td`. Ignored entries come back as warnings.
    pub fn parse(
        _td: &TrustDomain,
        _json: &[u8],
    ) -> Result<(Self, Vec<BundleWarning>), BundleError> {
        todo!()
    }
    /// Serializes to the JWKS document (pretty JSON).
    pub fn to_json(&self) -> Vec<u8> {
        todo!()
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
    /// Adds an X.509 authority (DER); duplicates are ignored.
    pub fn add_x509_authority(&mut self, der: CertificateDer<'static>) {
        if !self.x509_authorities.contains(&der) {
            self.x509_authorities.push(der);
        }
    }
    pub fn remove_x509_authority(&mut self, der: &CertificateDer<'_>) {
        self.x509_authorities.retain(|a| a.as_ref() != der.as_ref());
    }
    /// The moment after which no X.509 authority of this bundle is valid any more
    /// (the latest `notAfter`), or `None` for an empty bundle.
    pub fn trust_expires_at(&self) -> Option<SystemTime> {
        todo!()
    }
    /// Same authorities (ignores sequence and refresh hint).
    pub fn same_authorities(&self, other: &Bundle) -> bool {
        self.x509_authorities == other.x509_authorities
            && self.jwt_authorities == other.jwt_authorities
    }
}

impl BundleSet {
    pub fn new() -> Self {
        Self::default()
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
