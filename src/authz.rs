//! Allow-lists of SPIFFE IDs, as written in config files.
//!
//! Pattern syntax (one string each):
//! * `spiffe://td/exact/path`  — exactly that ID;
//! * `spiffe://td/prefix/*`    — any ID in `td` whose path starts with `/prefix/`;
//! * `spiffe://td/*`           — any ID in trust domain `td` (its members);
//! * `*`                       — anyone the TLS layer verified (use with care).
//!
//! Invariant: an empty list allows nobody (default deny, DESIGN.md invariant 6).

use std::fmt;

use fedgate_federation::{SpiffeId, SpiffeIdError, TrustDomain};

/// One allow rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdPattern {
    Any,
    Exact(SpiffeId),
    /// Path prefix that ends with `/` (so `/ns/a/` does not match `/ns/ab`).
    PathPrefix {
        trust_domain: TrustDomain,
        prefix: String,
    },
    MemberOf(TrustDomain),
}

/// An ordered list of allow rules; the first match wins.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowList {
    patterns: Vec<IdPattern>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("allow pattern {pattern:?}: {source}")]
    Id {
        pattern: String,
        #[source]
        source: SpiffeIdError,
    },
    #[error(
        "allow pattern {0:?}: `*` may only be the whole pattern or the last path segment \
         (e.g. \"spiffe://td/ns/*\")"
    )]
    MisplacedWildcard(String),
}

// === impl IdPattern ===

impl IdPattern {
    pub fn parse(s: &str) -> Result<Self, PatternError> {
        if s == "*" {
            return Ok(Self::Any);
        }
        if let Some(base) = s.strip_suffix("/*") {
            if base.contains('*') {
                return Err(PatternError::MisplacedWildcard(s.to_owned()));
            }
            let id = SpiffeId::parse(base).map_err(|source| PatternError::Id {
                pattern: s.to_owned(),
                source,
            })?;
            return Ok(if id.path().is_empty() {
                Self::MemberOf(id.trust_domain().clone())
            } else {
                Self::PathPrefix {
                    trust_domain: id.trust_domain().clone(),
                    prefix: format!("{}/", id.path()),
                }
            });
        }
        if s.contains('*') {
            return Err(PatternError::MisplacedWildcard(s.to_owned()));
        }
        SpiffeId::parse(s)
            .map(Self::Exact)
            .map_err(|source| PatternError::Id {
                pattern: s.to_owned(),
                source,
            })
    }

    pub fn matches(&self, id: &SpiffeId) -> bool {
        match self {
            Self::Any => true,
            Self::Exact(want) => want == id,
            Self::PathPrefix {
                trust_domain,
                prefix,
            } => id.trust_domain() == trust_domain && id.path().starts_with(prefix.as_str()),
            Self::MemberOf(td) => id.trust_domain() == td,
        }
    }
}

impl fmt::Display for IdPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("*"),
            Self::Exact(id) => write!(f, "{id}"),
            Self::PathPrefix {
                trust_domain,
                prefix,
            } => write!(f, "spiffe://{trust_domain}{prefix}*"),
            Self::MemberOf(td) => write!(f, "spiffe://{td}/*"),
        }
    }
}

// === impl AllowList ===

impl AllowList {
    pub fn parse<S: AsRef<str>>(patterns: &[S]) -> Result<Self, PatternError> {
        let patterns = patterns
            .iter()
            .map(|p| IdPattern::parse(p.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { patterns })
    }

    pub fn new(patterns: Vec<IdPattern>) -> Self {
        Self { patterns }
    }

    /// The first rule that allows `id`, or `None` (deny).
    pub fn find(&self, id: &SpiffeId) -> Option<&IdPattern> {
        self.patterns.iter().find(|p| p.matches(id))
    }

    pub fn allows(&self, id: &SpiffeId) -> bool {
        self.find(id).is_some()
    }

    pub fn patterns(&self) -> &[IdPattern] {
        &self.patterns
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> SpiffeId {
        SpiffeId::parse(s).unwrap()
    }

    #[test]
    fn empty_list_denies_everyone() {
        let list = AllowList::default();
        assert!(!list.allows(&id("spiffe://a.test/x")));
    }

    #[test]
    fn exact_matches_only_that_id() {
        let list = AllowList::parse(&["spiffe://a.test/ns/x"]).unwrap();
        assert!(list.allows(&id("spiffe://a.test/ns/x")));
        assert!(!list.allows(&id("spiffe://a.test/ns/x/y")));
        assert!(!list.allows(&id("spiffe://b.test/ns/x")));
    }

    #[test]
    fn prefix_matches_whole_segments_in_its_domain() {
        let list = AllowList::parse(&["spiffe://a.test/ns/*"]).unwrap();
        assert!(list.allows(&id("spiffe://a.test/ns/x")));
        assert!(!list.allows(&id("spiffe://a.test/nsx/y")));
        assert!(!list.allows(&id("spiffe://a.test/ns")));
        assert!(!list.allows(&id("spiffe://b.test/ns/x")));
    }

    #[test]
    fn member_of_matches_any_id_of_the_domain() {
        let list = AllowList::parse(&["spiffe://a.test/*"]).unwrap();
        assert!(list.allows(&id("spiffe://a.test/anything/here")));
        assert!(!list.allows(&id("spiffe://b.test/anything")));
    }

    #[test]
    fn star_allows_anyone() {
        assert!(AllowList::parse(&["*"])
            .unwrap()
            .allows(&id("spiffe://z.test/q")));
    }

    #[test]
    fn misplaced_wildcards_and_bad_ids_are_refused() {
        for bad in [
            "spiffe://a.test/*/x",
            "spiffe://*.test/x",
            "spiffe://a.test/x*",
            "a.test/*",
            "",
        ] {
            assert!(IdPattern::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn display_round_trips() {
        for p in [
            "*",
            "spiffe://a.test/ns/x",
            "spiffe://a.test/ns/*",
            "spiffe://a.test/*",
        ] {
            assert_eq!(IdPattern::parse(p).unwrap().to_string(), p);
        }
    }
}
