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

use crate::gateway::sni::{normalize_dns_name, DnsNameError};

/// Exact names beat wildcards; among wildcards the longest suffix wins; then the default.
#[derive(Clone, Debug)]
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
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn table(patterns: &[&str]) -> RouteTable<String> {
        let mut t = RouteTable::new();
        for p in patterns {
            t.insert(p, (*p).to_owned()).unwrap();
        }
        t
    }

    #[test]
    fn precedence_exact_then_longest_wildcard_then_default() {
        let mut t = table(&["a.b.example", "*.b.example", "*.example"]);
        assert_eq!(t.lookup(Some("a.b.example")).unwrap(), "a.b.example");
        assert_eq!(t.lookup(Some("x.b.example")).unwrap(), "*.b.example");
        assert_eq!(t.lookup(Some("y.x.b.example")).unwrap(), "*.b.example");
        assert_eq!(t.lookup(Some("b.example")).unwrap(), "*.example");
        assert_eq!(t.lookup(Some("z.example")).unwrap(), "*.example");
        assert_eq!(t.lookup(Some("example")), None);
        assert_eq!(t.lookup(Some("other.test")), None);
        assert_eq!(t.lookup(None), None);
        t.set_default("default".to_owned());
        assert_eq!(t.lookup(Some("example")).unwrap(), "default");
        assert_eq!(t.lookup(Some("other.test")).unwrap(), "default");
        assert_eq!(t.lookup(None).unwrap(), "default");
        assert_eq!(t.default_route().unwrap(), "default");
    }

    #[test]
    fn wildcard_needs_at_least_one_label() {
        let t = table(&["*.example"]);
        assert!(t.lookup(Some("example")).is_none());
        assert!(t.lookup(Some(".example")).is_none());
        assert!(t.lookup(Some("notexample")).is_none());
        assert!(t.lookup(Some("a.example")).is_some());
        assert!(t.lookup(Some("a.b.c.example")).is_some());
    }

    #[test]
    fn case_and_trailing_dot_insensitive() {
        let t = table(&["Svc.Example.COM", "*.Cluster-B.test."]);
        assert_eq!(
            t.lookup(Some("svc.example.com")).unwrap(),
            "Svc.Example.COM"
        );
        assert_eq!(
            t.lookup(Some("SVC.EXAMPLE.COM.")).unwrap(),
            "Svc.Example.COM"
        );
        assert_eq!(
            t.lookup(Some("x.CLUSTER-b.test")).unwrap(),
            "*.Cluster-B.test."
        );
        let mut patterns: Vec<String> = t.iter().map(|(p, _)| p.to_string()).collect();
        patterns.sort();
        assert_eq!(patterns, ["*.cluster-b.test", "svc.example.com"]);
        assert_eq!(t.len(), 2);
        assert!(!t.is_empty());
    }

    #[test]
    fn invalid_patterns_are_refused() {
        let mut t = RouteTable::new();
        for (pattern, expect) in [
            ("*", "wildcard"),
            ("*.", "empty"),
            ("a.*.example", "wildcard"),
            ("*a.example", "wildcard"),
            ("a*.example", "wildcard"),
            ("*.*.example", "wildcard"),
            ("**.example", "wildcard"),
            ("", "empty"),
            ("a..example", "empty"),
            (".example", "empty"),
            ("*..example", "empty"),
            ("a.example..", "empty"),
            ("10.0.0.1", "invalid"),
            ("*.10.0.0.1", "invalid"),
            ("bad_name.example", "invalid"),
            ("-a.example", "invalid"),
        ] {
            let err = t.insert(pattern, ()).unwrap_err();
            let kind = match &err {
                RouteError::MisplacedWildcard { pattern: p } => {
                    assert_eq!(p, pattern);
                    "wildcard"
                }
                RouteError::EmptyLabel { pattern: p } => {
                    assert_eq!(p, pattern);
                    "empty"
                }
                RouteError::InvalidName { pattern: p, .. } => {
                    assert_eq!(p, pattern);
                    "invalid"
                }
                RouteError::Duplicate { .. } => "duplicate",
            };
            assert_eq!(kind, expect, "{pattern:?}: {err}");
            assert!(err.to_string().contains(&format!("{pattern:?}")), "{err}");
        }
        assert!(t.is_empty());
    }

    #[test]
    fn duplicates_are_refused_case_insensitively() {
        let mut t = table(&["a.example", "*.example"]);
        assert_eq!(
            t.insert("A.Example", "x".into()),
            Err(RouteError::Duplicate {
                pattern: "A.Example".into()
            })
        );
        assert_eq!(
            t.insert("*.EXAMPLE.", "x".into()),
            Err(RouteError::Duplicate {
                pattern: "*.EXAMPLE.".into()
            })
        );
        // An exact name and a wildcard on the same suffix are different patterns.
        t.insert("example", "example".into()).unwrap();
        assert_eq!(t.lookup(Some("example")).unwrap(), "example");
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn ten_thousand_routes() {
        let mut t = RouteTable::new();
        for i in 0..5_000 {
            t.insert(&format!("svc-{i}.ns.cluster.example"), i).unwrap();
            t.insert(&format!("*.tenant-{i}.example"), 100_000 + i)
                .unwrap();
        }
        t.set_default(usize::MAX);
        assert_eq!(t.len(), 10_000);
        for i in (0..5_000).step_by(7) {
            assert_eq!(
                t.lookup(Some(&format!("svc-{i}.ns.cluster.example"))),
                Some(&i)
            );
            let deep = format!("a.b.tenant-{i}.example");
            assert_eq!(t.lookup(Some(&deep)), Some(&(100_000 + i)));
        }
        assert_eq!(
            t.lookup(Some("svc-5000.ns.cluster.example")),
            Some(&usize::MAX)
        );
        assert_eq!(t.lookup(Some("tenant-1.example")), Some(&usize::MAX));
        assert_eq!(t.iter().count(), 10_000);
    }

    /// Reference semantics, written the slow and obvious way.
    fn reference<'a>(routes: &'a [(String, usize)], name: &str) -> Option<&'a usize> {
        if let Some((_, v)) = routes.iter().find(|(p, _)| p == name) {
            return Some(v);
        }
        routes
            .iter()
            .filter_map(|(p, v)| {
                let suffix = p.strip_prefix("*.")?;
                name.ends_with(&format!(".{suffix}"))
                    .then_some((suffix.len(), v))
            })
            .max_by_key(|(len, _)| *len)
            .map(|(_, v)| v)
    }

    fn label() -> impl Strategy<Value = String> {
        prop_oneof![Just("a"), Just("b"), Just("c"), Just("x-1")].prop_map(str::to_owned)
    }

    fn name() -> impl Strategy<Value = String> {
        proptest::collection::vec(label(), 1..5).prop_map(|labels| labels.join("."))
    }

    proptest! {
        #[test]
        fn lookup_matches_reference(
            patterns in proptest::collection::vec((any::<bool>(), name()), 0..20),
            queries in proptest::collection::vec(name(), 1..20),
        ) {
            let mut t = RouteTable::new();
            let mut routes = Vec::new();
            for (i, (wild, n)) in patterns.into_iter().enumerate() {
                let p = if wild { format!("*.{n}") } else { n };
                let inserted = t.insert(&p, i).is_ok();
                let duplicate = routes.iter().any(|(q, _)| *q == p);
                prop_assert_eq!(inserted, !duplicate);
                if inserted {
                    routes.push((p, i));
                }
            }
            prop_assert_eq!(t.len(), routes.len());
            for q in queries {
                prop_assert_eq!(t.lookup(Some(&q)), reference(&routes, &q));
                prop_assert_eq!(t.lookup(Some(&q.to_ascii_uppercase())), reference(&routes, &q));
            }
        }

        #[test]
        fn arbitrary_patterns_and_names_never_panic(pattern in ".{0,80}", query in ".{0,80}") {
            let mut t = RouteTable::new();
            let _ = t.insert(&pattern, ());
            let _ = t.lookup(Some(&query));
        }
    }
}
