//! SPIFFE IDs and trust domains (SPIFFE-ID.md).
//!
//! Invariant: a `TrustDomain` or `SpiffeId` value exists only if its text passed every rule
//! of the spec; there is no unchecked constructor.

use std::fmt;
use std::str::FromStr;

/// A trust domain name such as `cluster-a.test` (no scheme).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TrustDomain(String);

/// A SPIFFE ID: `spiffe://<trust domain><path>`; the path may be empty.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SpiffeId {
    trust_domain: TrustDomain,
    path: String,
}

/// One variant per broken rule of SPIFFE-ID.md.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpiffeIdError {
    #[error("TODO")]
    Todo,
}

impl TrustDomain {
    /// Parses a bare trust domain name (`example.org`) or a `spiffe://example.org` ID.
    pub fn new(_name: &str) -> Result<Self, SpiffeIdError> {
        todo!()
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// `spiffe://<td>`, the trust domain's own SPIFFE ID.
    pub fn id_string(&self) -> String {
        format!("spiffe://{}", self.0)
    }
}

impl SpiffeId {
    pub fn parse(_s: &str) -> Result<Self, SpiffeIdError> {
        todo!()
    }
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }
    /// The path, `""` or starting with `/`.
    pub fn path(&self) -> &str {
        &self.path
    }
}

impl fmt::Display for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "spiffe://{}{}", self.trust_domain, self.path)
    }
}

impl FromStr for TrustDomain {
    type Err = SpiffeIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl FromStr for SpiffeId {
    type Err = SpiffeIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}
