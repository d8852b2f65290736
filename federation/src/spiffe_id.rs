//! SPIFFE IDs and trust domains (SPIFFE-ID.md §2).
//!
//! Invariant: a `TrustDomain` or `SpiffeId` value exists only if its text passed every rule
//! of the spec; there is no unchecked constructor. Parsing is strict: the scheme and the
//! trust domain must already be lowercase (no case folding), so the text of a parsed ID is
//! exactly its `Display` form.

use std::fmt;
use std::str::FromStr;

/// The `spiffe://` prefix every SPIFFE ID starts with.
const SCHEME_PREFIX: &str = "spiffe://";
/// SPIFFE-ID.md §2.3: maximum length of a whole SPIFFE ID, in bytes.
pub const MAX_ID_LEN: usize = 2048;
/// SPIFFE-ID.md §2.3: maximum length of a trust domain name, in bytes.
pub const MAX_TRUST_DOMAIN_LEN: usize = 255;

/// A trust domain name such as `cluster-a.test` (no scheme).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TrustDomain(String);

/// A SPIFFE ID: `spiffe://<trust domain><path>`; the path may be empty.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SpiffeId {
    trust_domain: TrustDomain,
    path: String,
}

/// One variant per broken rule of SPIFFE-ID.md; each message names the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpiffeIdError {
    #[error("empty: a SPIFFE ID or trust domain must not be empty (SPIFFE-ID.md §2)")]
    Empty,
    #[error("wrong scheme: a SPIFFE ID must start with lowercase `spiffe://` (SPIFFE-ID.md §2)")]
    WrongScheme,
    #[error("missing trust domain: the trust domain must not be empty (SPIFFE-ID.md §2.1)")]
    MissingTrustDomain,
    #[error(
        "trust domain must be lowercase: found {0:?}; only [a-z0-9.-_] are allowed \
         (SPIFFE-ID.md §2.1)"
    )]
    UppercaseTrustDomain(char),
    #[error(
        "bad trust domain character {0:?}: only letters a-z, digits, `.`, `-` and `_` are \
         allowed (SPIFFE-ID.md §2.1)"
    )]
    BadTrustDomainChar(char),
    #[error("port not allowed: the trust domain must not carry a port (SPIFFE-ID.md §2.1)")]
    Port,
    #[error("userinfo not allowed: the trust domain must not carry `user@` (SPIFFE-ID.md §2.1)")]
    Userinfo,
    #[error("query not allowed: a SPIFFE ID must not contain `?` (SPIFFE-ID.md §2)")]
    Query,
    #[error("fragment not allowed: a SPIFFE ID must not contain `#` (SPIFFE-ID.md §2)")]
    Fragment,
    #[error("percent-encoding not allowed: `%` is forbidden (SPIFFE-ID.md §2.1, §2.2)")]
    PercentEncoded,
    #[error("empty path segment: `//` is not allowed in the path (SPIFFE-ID.md §2.2)")]
    EmptySegment,
    #[error("dot segment: `.` and `..` path segments are not allowed (SPIFFE-ID.md §2.2)")]
    DotSegment,
    #[error("trailing slash: the path must not end with `/` (SPIFFE-ID.md §2.2)")]
    TrailingSlash,
    #[error(
        "bad path character {0:?}: path segments may only contain [a-zA-Z0-9.-_] \
         (SPIFFE-ID.md §2.2)"
    )]
    BadPathChar(char),
    #[error("path must be empty or start with `/` (SPIFFE-ID.md §2.2)")]
    PathNotAbsolute,
    #[error("too long: a SPIFFE ID is at most {MAX_ID_LEN} bytes, got {0} (SPIFFE-ID.md §2.3)")]
    TooLong(usize),
    #[error(
        "trust domain too long: at most {MAX_TRUST_DOMAIN_LEN} bytes, got {0} \
         (SPIFFE-ID.md §2.3)"
    )]
    TrustDomainTooLong(usize),
    #[error(
        "a trust domain must not have a path: use `spiffe://<td>` or the bare name \
         (SPIFFE-ID.md §2.1)"
    )]
    TrustDomainHasPath,
}

// === impl TrustDomain ===

impl TrustDomain {
    /// Parses a bare trust domain name (`example.org`) or a `spiffe://example.org` ID
    /// (which must have no path).
    pub fn new(name: &str) -> Result<Self, SpiffeIdError> {
        if name.contains("://") {
            let id = SpiffeId::parse(name)?;
            if !id.path.is_empty() {
                return Err(SpiffeIdError::TrustDomainHasPath);
            }
            return Ok(id.trust_domain);
        }
        if name.is_empty() {
            return Err(SpiffeIdError::Empty);
        }
        check_trust_domain(name)?;
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `spiffe://<td>`, the trust domain's own SPIFFE ID.
    pub fn id_string(&self) -> String {
        format!("spiffe://{}", self.0)
    }

    /// The trust domain's own SPIFFE ID (empty path).
    pub fn id(&self) -> SpiffeId {
        SpiffeId {
            trust_domain: self.clone(),
            path: String::new(),
        }
    }
}

// === impl SpiffeId ===

impl SpiffeId {
    /// Parses `spiffe://<td><path>` by every rule of SPIFFE-ID.md.
    pub fn parse(s: &str) -> Result<Self, SpiffeIdError> {
        if s.is_empty() {
            return Err(SpiffeIdError::Empty);
        }
        if s.len() > MAX_ID_LEN {
            return Err(SpiffeIdError::TooLong(s.len()));
        }
        let rest = s
            .strip_prefix(SCHEME_PREFIX)
            .ok_or(SpiffeIdError::WrongScheme)?;
        // A query or fragment anywhere makes the URI something other than a SPIFFE ID;
        // report them before the characters of the part they would end.
        if rest.contains('?') {
            return Err(SpiffeIdError::Query);
        }
        if rest.contains('#') {
            return Err(SpiffeIdError::Fragment);
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if authority.is_empty() {
            return Err(SpiffeIdError::MissingTrustDomain);
        }
        check_trust_domain(authority)?;
        check_path(path)?;
        Ok(Self {
            trust_domain: TrustDomain(authority.to_owned()),
            path: path.to_owned(),
        })
    }

    /// Builds `spiffe://<td><path>`; `path` must be `""` or start with `/` and follow §2.2.
    pub fn from_parts(td: &TrustDomain, path: &str) -> Result<Self, SpiffeIdError> {
        if !path.is_empty() && !path.starts_with('/') {
            return Err(SpiffeIdError::PathNotAbsolute);
        }
        if path.contains('?') {
            return Err(SpiffeIdError::Query);
        }
        if path.contains('#') {
            return Err(SpiffeIdError::Fragment);
        }
        check_path(path)?;
        let len = SCHEME_PREFIX.len() + td.0.len() + path.len();
        if len > MAX_ID_LEN {
            return Err(SpiffeIdError::TooLong(len));
        }
        Ok(Self {
            trust_domain: td.clone(),
            path: path.to_owned(),
        })
    }

    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The path, `""` or starting with `/`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Whether this ID belongs to trust domain `td`.
    pub fn member_of(&self, td: &TrustDomain) -> bool {
        &self.trust_domain == td
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

// Serde as strings, parsed by the same rules, so config files and status documents carry
// checked values.
impl serde::Serialize for TrustDomain {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for TrustDomain {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::new(&text).map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for SpiffeId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for SpiffeId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

// === rules ===

/// SPIFFE-ID.md §2.1 on a non-empty authority/host.
fn check_trust_domain(host: &str) -> Result<(), SpiffeIdError> {
    if host.contains('@') {
        return Err(SpiffeIdError::Userinfo);
    }
    if host.contains(':') {
        return Err(SpiffeIdError::Port);
    }
    if host.contains('%') {
        return Err(SpiffeIdError::PercentEncoded);
    }
    if host.len() > MAX_TRUST_DOMAIN_LEN {
        return Err(SpiffeIdError::TrustDomainTooLong(host.len()));
    }
    for c in host.chars() {
        match c {
            'a'..='z' | '0'..='9' | '.' | '-' | '_' => {}
            'A'..='Z' => return Err(SpiffeIdError::UppercaseTrustDomain(c)),
            _ => return Err(SpiffeIdError::BadTrustDomainChar(c)),
        }
    }
    Ok(())
}

/// SPIFFE-ID.md §2.2 on a path that is `""` or starts with `/`.
fn check_path(path: &str) -> Result<(), SpiffeIdError> {
    if path.is_empty() {
        return Ok(());
    }
    if path.contains('%') {
        return Err(SpiffeIdError::PercentEncoded);
    }
    // Skip the leading `/`; every following segment must be non-empty and not a dot segment.
    let mut segments = path[1..].split('/').peekable();
    while let Some(segment) = segments.next() {
        match segment {
            "" if segments.peek().is_none() => return Err(SpiffeIdError::TrailingSlash),
            "" => return Err(SpiffeIdError::EmptySegment),
            "." | ".." => return Err(SpiffeIdError::DotSegment),
            _ => {}
        }
        if let Some(c) = segment.chars().find(|c| !is_path_char(*c)) {
            return Err(SpiffeIdError::BadPathChar(c));
        }
    }
    Ok(())
}

fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')
}

#[cfg(test)]
mod tests;
