//! Authorization of a verified peer SPIFFE ID: exact, one of, path prefix, below a path, trust
//! domain, any, and any of several rules — plus the config pattern syntax that builds them.
//!
//! Pattern syntax ([`Authorizer::from_pattern`], one string per rule; a list is
//! [`Authorizer::from_patterns`], allowing an ID if any of its rules does):
//! * `spiffe://td/exact/path` — exactly that ID;
//! * `spiffe://td/prefix/*`   — any ID of `td` whose path starts with `/prefix/` (not `/prefix`
//!   itself, and not `/prefixx`);
//! * `spiffe://td/*`          — any ID of trust domain `td` (its members);
//! * `*`                      — anyone chain verification accepted (use with care).
//!
//! Invariants: authorization is separate from chain verification and only ever sees an ID that
//! verification produced; it is pure; `deny_all()`, an empty `one_of` and an empty `any_of` (so
//! an empty pattern list) allow nothing (threat-model invariant 6: no rule → deny).
//! `Display` writes the pattern syntax (a rule list joined by `", "`), so logs and status show
//! rules as operators write them; only rules that allow nothing print as words.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use crate::spiffe_id::{SpiffeId, SpiffeIdError, TrustDomain};

/// Decides whether a verified peer ID is allowed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Authorizer {
    /// Any ID that passed verification.
    Any,
    /// Nothing.
    DenyAll,
    /// Exactly this ID.
    Exact(SpiffeId),
    /// Any ID in the set.
    OneOf(Arc<BTreeSet<SpiffeId>>),
    /// IDs of `td` whose path is `prefix` or lies below it (segment-wise, so `/ns/a` does not
    /// cover `/ns/ab`).
    PathPrefix { td: TrustDomain, prefix: String },
    /// IDs of `td` strictly below `parent` (their path starts with `parent` + `/`); the pattern
    /// `spiffe://td/parent/*`.
    Below { td: TrustDomain, parent: String },
    /// Any ID of this trust domain.
    MemberOf(TrustDomain),
    /// Any ID one of these rules allows; an empty list allows nothing.
    AnyOf(Arc<[Authorizer]>),
}

/// A peer ID the authorizer refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("peer {id} is not authorized (allowed: {policy})")]
pub struct AuthorizeError {
    pub id: SpiffeId,
    /// The refusing rule, in pattern syntax.
    pub policy: String,
}

/// A config pattern that is not one of the forms in the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
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

// === impl Authorizer ===

impl Authorizer {
    pub fn any() -> Self {
        Self::Any
    }

    pub fn deny_all() -> Self {
        Self::DenyAll
    }

    pub fn exact(id: SpiffeId) -> Self {
        Self::Exact(id)
    }

    /// Any of `ids`; an empty list allows nothing.
    pub fn one_of(ids: impl IntoIterator<Item = SpiffeId>) -> Self {
        Self::OneOf(Arc::new(ids.into_iter().collect()))
    }

    /// IDs of `td` at or below `prefix` (`""` or an absolute SPIFFE ID path such as `/ns/a`).
    pub fn path_prefix(td: TrustDomain, prefix: &str) -> Result<Self, SpiffeIdError> {
        let id = SpiffeId::from_parts(&td, prefix)?;
        Ok(Self::PathPrefix {
            td,
            prefix: id.path().to_owned(),
        })
    }

    /// IDs of `td` strictly below `parent` (`""` or an absolute SPIFFE ID path such as `/ns/a`):
    /// `/ns/a/x` but neither `/ns/a` nor `/ns/ab`.
    pub fn below(td: TrustDomain, parent: &str) -> Result<Self, SpiffeIdError> {
        let id = SpiffeId::from_parts(&td, parent)?;
        Ok(Self::Below {
            td,
            parent: id.path().to_owned(),
        })
    }

    pub fn member_of(td: TrustDomain) -> Self {
        Self::MemberOf(td)
    }

    /// Any ID one of `rules` allows; an empty list allows nothing.
    pub fn any_of(rules: impl IntoIterator<Item = Authorizer>) -> Self {
        Self::AnyOf(rules.into_iter().collect())
    }

    /// One rule in the pattern syntax of the [module docs](self).
    pub fn from_pattern(pattern: &str) -> Result<Self, PatternError> {
        if pattern == "*" {
            return Ok(Self::Any);
        }
        let id_error = |source| PatternError::Id {
            pattern: pattern.to_owned(),
            source,
        };
        if let Some(base) = pattern.strip_suffix("/*") {
            if base.contains('*') {
                return Err(PatternError::MisplacedWildcard(pattern.to_owned()));
            }
            let id = SpiffeId::parse(base).map_err(id_error)?;
            let td = id.trust_domain().clone();
            return Ok(if id.path().is_empty() {
                Self::MemberOf(td)
            } else {
                Self::Below {
                    td,
                    parent: id.path().to_owned(),
                }
            });
        }
        if pattern.contains('*') {
            return Err(PatternError::MisplacedWildcard(pattern.to_owned()));
        }
        SpiffeId::parse(pattern).map(Self::Exact).map_err(id_error)
    }

    /// A pattern list: allows an ID if any of its patterns does; an empty list allows nothing.
    /// The first bad pattern is the error.
    pub fn from_patterns<S: AsRef<str>>(patterns: &[S]) -> Result<Self, PatternError> {
        let rules = patterns
            .iter()
            .map(|p| Self::from_pattern(p.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::any_of(rules))
    }

    /// Whether `id` is allowed.
    pub fn allows(&self, id: &SpiffeId) -> bool {
        match self {
            Self::Any => true,
            Self::DenyAll => false,
            Self::Exact(want) => want == id,
            Self::OneOf(set) => set.contains(id),
            Self::PathPrefix { td, prefix } => {
                id.member_of(td)
                    && id
                        .path()
                        .strip_prefix(prefix.as_str())
                        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            }
            Self::Below { td, parent } => {
                id.member_of(td)
                    && id
                        .path()
                        .strip_prefix(parent.as_str())
                        .is_some_and(|rest| rest.starts_with('/'))
            }
            Self::MemberOf(td) => id.member_of(td),
            Self::AnyOf(rules) => rules.iter().any(|r| r.allows(id)),
        }
    }

    /// Allows or refuses `id`; the refusal names the rule.
    pub fn authorize(&self, id: &SpiffeId) -> Result<(), AuthorizeError> {
        if self.allows(id) {
            Ok(())
        } else {
            Err(AuthorizeError {
                id: id.clone(),
                policy: self.to_string(),
            })
        }
    }

    /// Whether this rule allows no ID at all (deny all, or only empty lists), e.g. to refuse a
    /// config that would make a route unusable.
    pub fn allows_nothing(&self) -> bool {
        match self {
            Self::DenyAll => true,
            Self::OneOf(set) => set.is_empty(),
            Self::AnyOf(rules) => rules.iter().all(Self::allows_nothing),
            Self::Any
            | Self::Exact(_)
            | Self::PathPrefix { .. }
            | Self::Below { .. }
            | Self::MemberOf(_) => false,
        }
    }
}

impl fmt::Display for Authorizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("*"),
            Self::DenyAll => f.write_str("nothing"),
            Self::Exact(id) => write!(f, "{id}"),
            Self::OneOf(set) if set.is_empty() => f.write_str("nothing (empty list)"),
            Self::OneOf(set) => write_list(f, set.iter()),
            // `prefix` itself and everything below it.
            Self::PathPrefix { td, prefix } if prefix.is_empty() => write!(f, "spiffe://{td}/*"),
            Self::PathPrefix { td, prefix } => {
                write!(f, "spiffe://{td}{prefix}, spiffe://{td}{prefix}/*")
            }
            Self::Below { td, parent } => write!(f, "spiffe://{td}{parent}/*"),
            Self::MemberOf(td) => write!(f, "spiffe://{td}/*"),
            Self::AnyOf(rules) if rules.is_empty() => f.write_str("nothing (empty list)"),
            Self::AnyOf(_) if self.allows_nothing() => f.write_str("nothing"),
            // Rules that allow nothing add nothing to the list.
            Self::AnyOf(rules) => write_list(f, rules.iter().filter(|r| !r.allows_nothing())),
        }
    }
}

/// Writes `items` joined by `", "`.
fn write_list<T: fmt::Display>(
    f: &mut fmt::Formatter<'_>,
    items: impl Iterator<Item = T>,
) -> fmt::Result {
    for (i, item) in items.enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{item}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
