//! Authorization of a verified peer SPIFFE ID (exact, one of, path prefix, trust domain, any).
//!
//! Invariants: authorization is separate from chain verification and only ever sees an ID that
//! verification produced; it is pure; `deny_all()` (and an empty `one_of`) allows nothing
//! (DESIGN.md security invariant 6: no rule → deny).

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
    /// Any ID of this trust domain.
    MemberOf(TrustDomain),
}

/// A peer ID the authorizer refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("peer {id} is not authorized (allowed: {policy})")]
pub struct AuthorizeError {
    pub id: SpiffeId,
    pub policy: String,
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

    pub fn member_of(td: TrustDomain) -> Self {
        Self::MemberOf(td)
    }

    /// Allows or refuses `id`.
    pub fn authorize(&self, id: &SpiffeId) -> Result<(), AuthorizeError> {
        let allowed = match self {
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
            Self::MemberOf(td) => id.member_of(td),
        };
        if allowed {
            Ok(())
        } else {
            Err(AuthorizeError {
                id: id.clone(),
                policy: self.to_string(),
            })
        }
    }
}

impl fmt::Display for Authorizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("any verified ID"),
            Self::DenyAll => f.write_str("nothing"),
            Self::Exact(id) => write!(f, "exactly {id}"),
            Self::OneOf(set) if set.is_empty() => f.write_str("nothing (empty list)"),
            Self::OneOf(set) => {
                f.write_str("one of ")?;
                for (i, id) in set.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{id}")?;
                }
                Ok(())
            }
            Self::PathPrefix { td, prefix } => write!(f, "IDs under spiffe://{td}{prefix}"),
            Self::MemberOf(td) => write!(f, "members of trust domain {td}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> SpiffeId {
        SpiffeId::parse(s).unwrap()
    }

    fn td(s: &str) -> TrustDomain {
        TrustDomain::new(s).unwrap()
    }

    #[test]
    fn table() {
        let a = id("spiffe://a.test/ns/x/sa/y");
        let a2 = id("spiffe://a.test/ns/xy");
        let b = id("spiffe://b.test/ns/x/sa/y");
        let cases: Vec<(Authorizer, &SpiffeId, bool)> = vec![
            (Authorizer::any(), &a, true),
            (Authorizer::deny_all(), &a, false),
            (Authorizer::exact(a.clone()), &a, true),
            (Authorizer::exact(a.clone()), &b, false),
            (Authorizer::one_of([a.clone(), a2.clone()]), &a2, true),
            (Authorizer::one_of([a.clone()]), &b, false),
            (Authorizer::one_of([]), &a, false),
            (Authorizer::member_of(td("a.test")), &a, true),
            (Authorizer::member_of(td("a.test")), &b, false),
            (
                Authorizer::path_prefix(td("a.test"), "/ns/x").unwrap(),
                &a,
                true,
            ),
            (
                Authorizer::path_prefix(td("a.test"), "/ns/x").unwrap(),
                &a2,
                false,
            ),
            (
                Authorizer::path_prefix(td("a.test"), "/ns/x/sa/y").unwrap(),
                &a,
                true,
            ),
            (
                Authorizer::path_prefix(td("b.test"), "/ns/x").unwrap(),
                &a,
                false,
            ),
            (Authorizer::path_prefix(td("a.test"), "").unwrap(), &a, true),
        ];
        for (authz, peer, want) in cases {
            assert_eq!(authz.authorize(peer).is_ok(), want, "{authz} vs {peer}");
        }
    }

    #[test]
    fn bad_prefix_and_error_message() {
        assert_eq!(
            Authorizer::path_prefix(td("a.test"), "/ns/"),
            Err(SpiffeIdError::TrailingSlash)
        );
        assert_eq!(
            Authorizer::path_prefix(td("a.test"), "ns"),
            Err(SpiffeIdError::PathNotAbsolute)
        );
        let err = Authorizer::member_of(td("a.test"))
            .authorize(&id("spiffe://b.test/x"))
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("spiffe://b.test/x") && msg.contains("a.test"),
            "{msg}"
        );
    }
}
