//! Pure SNI routing: exact names and `*.suffix` wildcards, cost flat in the number of routes.
//!
//! Invariants:
//! * patterns are validated and stored lowercase, so lookups are case-insensitive;
//! * `*.example` matches any name with ONE OR MORE labels before `.example` (`a.example`,
//!   `a.b.example`) but never `example` itself; this is broader than TLS certificate wildcards
//!   (RFC 6125 §6.4.3, exactly one label), because routing is about delegating a subtree;
//! * precedence: exact name, then the longest matching wildcard suffix, then the default;
//! * a lookup costs at most one hash lookup per label of the name, whatever the table size.

use std::collections::HashMap;
use std::fmt;

use crate::sni::{normalize_dns_name, DnsNameError};

/// Exact names beat wildcards; among wildcards the longest suffix wins; then the default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteTable<T> {
    /// Exact names, lowercase, without trailing dot.
    exact: HashMap<String, T>,
    /// Wildcard suffixes keyed WITH their leading dot (`*.example` → `.example`), so that a
    /// lookup can probe `&name[dot..]` slices without allocating.
    suffix: HashMap<String, T>,
    default: Option<T>,
}

/// Why a route pattern was refused. Every variant names the pattern as written.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error(
        "route pattern {pattern:?}: `*` is only allowed as the whole first label, \
         as in `*.example.com`"
    )]
    MisplacedWildcard { pattern: String },
    #[error("route pattern {pattern:?}: empty label; write names like `svc.example.com`")]
    EmptyLabel { pattern: String },
    #[error("route pattern {pattern:?} is not a valid DNS name: {reason}")]
    InvalidName {
        pattern: String,
        reason: DnsNameError,
    },
    #[error("route pattern {pattern:?} is listed twice (case-insensitively); remove one")]
    Duplicate { pattern: String },
}

/// A stored pattern, as reported by [`RouteTable::iter`]. `Display` gives the pattern back in
/// its canonical form (`svc.example` or `*.example`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RoutePattern<'a> {
    Exact(&'a str),
    /// The suffix after `*.`, e.g. `example` for `*.example`.
    Wildcard(&'a str),
}

// === impl RouteTable ===

impl<T> Default for RouteTable<T> {
    fn default() -> Self {
        Self {
            exact: HashMap::new(),
            suffix: HashMap::new(),
            default: None,
        }
    }
}

impl<T> RouteTable<T> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `pattern` (`name.example` or `*.example`); a duplicate pattern is an error.
    ///
    /// The name part follows [`normalize_dns_name`] (LDH labels, ≤253 bytes, one trailing dot
    /// tolerated, not an IP literal); `*` must be the entire first label and be followed by at
    /// least one label.
    pub fn insert(&mut self, pattern: &str, value: T) -> Result<(), RouteError> {
        let (map, key) = match pattern.strip_prefix("*.") {
            Some(suffix) => {
                let suffix = normalize(pattern, suffix)?;
                (&mut self.suffix, format!(".{suffix}"))
            }
            None => (&mut self.exact, normalize(pattern, pattern)?),
        };
        if map.contains_key(&key) {
            return Err(RouteError::Duplicate {
                pattern: pattern.to_owned(),
            });
        }
        map.insert(key, value);
        Ok(())
    }

    /// The same patterns (and default) with each value replaced by `f(value)`: for turning a
    /// table built and checked once (e.g. of route indices) into one of runtime values.
    pub fn map<U>(&self, mut f: impl FnMut(&T) -> U) -> RouteTable<U> {
        RouteTable {
            exact: self.exact.iter().map(|(k, v)| (k.clone(), f(v))).collect(),
            suffix: self.suffix.iter().map(|(k, v)| (k.clone(), f(v))).collect(),
            default: self.default.as_ref().map(f),
        }
    }

    pub fn set_default(&mut self, value: T) {
        self.default = Some(value);
    }

    /// The value used when no pattern matches or the client sent no SNI.
    pub fn default_route(&self) -> Option<&T> {
        self.default.as_ref()
    }

    /// Finds the route for a server name (as returned by the SNI parser: lowercase, no
    /// trailing dot; other spellings are normalized at the cost of one allocation).
    /// `None` (no SNI) gets the default.
    pub fn lookup(&self, server_name: Option<&str>) -> Option<&T> {
        let Some(name) = server_name else {
            return self.default.as_ref();
        };
        let name = name.strip_suffix('.').unwrap_or(name);
        if name.bytes().any(|b| b.is_ascii_uppercase()) {
            return self.lookup_normalized(&name.to_ascii_lowercase());
        }
        self.lookup_normalized(name)
    }

    /// Number of patterns (exact and wildcard), not counting the default.
    pub fn len(&self) -> usize {
        self.exact.len() + self.suffix.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every pattern with its value, in no particular order (sort for display).
    pub fn iter(&self) -> impl Iterator<Item = (RoutePattern<'_>, &T)> {
        let exact = self.exact.iter().map(|(k, v)| (RoutePattern::Exact(k), v));
        let wildcard = self
            .suffix
            .iter()
            .map(|(k, v)| (RoutePattern::Wildcard(&k[1..]), v));
        exact.chain(wildcard)
    }

    fn lookup_normalized(&self, name: &str) -> Option<&T> {
        if let Some(v) = self.exact.get(name) {
            return Some(v);
        }
        if !self.suffix.is_empty() {
            // Probe `.b.c`, then `.c`: the first hit is the longest suffix. Skipping a dot at
            // index 0 guarantees at least one label before the suffix.
            for (i, _) in name.match_indices('.').filter(|(i, _)| *i > 0) {
                if let Some(v) = self.suffix.get(&name[i..]) {
                    return Some(v);
                }
            }
        }
        self.default.as_ref()
    }
}

fn normalize(pattern: &str, name: &str) -> Result<String, RouteError> {
    let pattern = || pattern.to_owned();
    if name.contains('*') {
        return Err(RouteError::MisplacedWildcard { pattern: pattern() });
    }
    normalize_dns_name(name.as_bytes()).map_err(|reason| match reason {
        DnsNameError::Empty | DnsNameError::EmptyLabel => {
            RouteError::EmptyLabel { pattern: pattern() }
        }
        reason => RouteError::InvalidName {
            pattern: pattern(),
            reason,
        },
    })
}

// === impl RoutePattern ===

impl fmt::Display for RoutePattern<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RoutePattern::Exact(name) => f.write_str(name),
            RoutePattern::Wildcard(suffix) => write!(f, "*.{suffix}"),
        }
    }
}

#[cfg(test)]
mod tests;
