//! The JOSE header of a JWT-SVID (JWT-SVID.md §2).
//!
//! Invariants: a [`Header`] exists only if the header JSON is an object holding nothing but
//! `alg`, `kid` and `typ` (each at most once), `alg` is on the spec's list (§2.1), `kid` is a
//! non-empty string, and `typ`, when present, is `JWT` or `JOSE` (§2.3). Parsing is pure and
//! never panics.

use serde::Deserialize;
use serde_json::Value;

use super::JwtError;

/// The signature algorithms JWT-SVID.md §2.1 allows (RFC 7518 §3.3–3.5). Nothing else,
/// in particular no `none` and no HMAC (`HS*`), is representable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alg {
    RS256,
    RS384,
    RS512,
    ES256,
    ES384,
    ES512,
    PS256,
    PS384,
    PS512,
}

/// The validated header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub alg: Alg,
    pub kid: String,
    pub typ: Option<String>,
}

/// Every member the spec permits; serde refuses any other member and any duplicate.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeader {
    alg: Option<Value>,
    kid: Option<Value>,
    typ: Option<Value>,
}

impl Alg {
    /// All allowed algorithms, in the spec's order.
    pub const ALL: [Alg; 9] = [
        Alg::RS256,
        Alg::RS384,
        Alg::RS512,
        Alg::ES256,
        Alg::ES384,
        Alg::ES512,
        Alg::PS256,
        Alg::PS384,
        Alg::PS512,
    ];

    /// The `alg` header value, or `None` if the spec does not allow it (case-sensitive).
    pub fn from_name(name: &str) -> Option<Alg> {
        Alg::ALL.into_iter().find(|a| a.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Alg::RS256 => "RS256",
            Alg::RS384 => "RS384",
            Alg::RS512 => "RS512",
            Alg::ES256 => "ES256",
            Alg::ES384 => "ES384",
            Alg::ES512 => "ES512",
            Alg::PS256 => "PS256",
            Alg::PS384 => "PS384",
            Alg::PS512 => "PS512",
        }
    }
}

impl std::fmt::Display for Alg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Parses and checks the decoded header JSON.
pub(crate) fn parse(json: &[u8]) -> Result<Header, JwtError> {
    let value: Value = serde_json::from_slice(json).map_err(|e| JwtError::Header {
        reason: format!("not valid JSON: {e}"),
    })?;
    if !value.is_object() {
        return Err(JwtError::Header {
            reason: "not a JSON object".into(),
        });
    }
    // From the bytes again, not from `value`: a JSON map keeps only the last of duplicated
    // members, while the derived deserializer refuses duplicates.
    let raw: RawHeader = serde_json::from_slice(json).map_err(|e| JwtError::Header {
        reason: format!(
            "{e} (JWT-SVID.md §2: only `alg`, `kid` and `typ` are permitted, once each)"
        ),
    })?;
    // §4: `alg` is checked before anything else is processed.
    let alg = match raw.alg {
        None => return Err(JwtError::MissingAlg),
        Some(Value::String(name)) => match Alg::from_name(&name) {
            Some(alg) => alg,
            None => return Err(JwtError::AlgNotAllowed { alg: name }),
        },
        Some(other) => {
            return Err(JwtError::AlgNotAllowed {
                alg: other.to_string(),
            })
        }
    };
    let typ = match raw.typ {
        None => None,
        Some(Value::String(t)) if t == "JWT" || t == "JOSE" => Some(t),
        Some(other) => {
            return Err(JwtError::BadTyp {
                typ: other.to_string(),
            })
        }
    };
    let kid = match raw.kid {
        None => return Err(JwtError::MissingKid),
        Some(Value::String(k)) if !k.is_empty() => k,
        Some(_) => return Err(JwtError::MissingKid),
    };
    Ok(Header { alg, kid, typ })
}
