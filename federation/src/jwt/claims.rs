//! The claims of a JWT-SVID (JWT-SVID.md §3, RFC 7519 §4.1).
//!
//! Invariants: [`parse`] turns the claims JSON into [`RawClaims`] without judging the values
//! (it runs before the signature is checked, and only `sub` is read from it then); [`sub`],
//! [`audience`] and [`numeric_date`] are the typed checks, pure and panic-free on any input.
//! Claims other than `sub`, `aud`, `exp`, `nbf` and `iat` are allowed and ignored (§3), but
//! none of these five may appear twice.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::JwtError;
use crate::spiffe_id::SpiffeId;

/// The registered claims fedgate reads, still untyped.
#[derive(Debug, Deserialize)]
pub(crate) struct RawClaims {
    pub(crate) sub: Option<Value>,
    pub(crate) aud: Option<Value>,
    pub(crate) exp: Option<Value>,
    pub(crate) nbf: Option<Value>,
    pub(crate) iat: Option<Value>,
    /// Every claim, as received (for callers that need private claims).
    #[serde(skip)]
    pub(crate) all: Map<String, Value>,
}

/// Parses the decoded claims JSON (an object; duplicated registered claims are refused).
pub(crate) fn parse(json: &[u8]) -> Result<RawClaims, JwtError> {
    let value: Value = serde_json::from_slice(json).map_err(|e| JwtError::Claims {
        reason: format!("not valid JSON: {e}"),
    })?;
    let Value::Object(all) = value else {
        return Err(JwtError::Claims {
            reason: "not a JSON object".into(),
        });
    };
    // From the bytes again: a JSON map silently keeps only the last of duplicated claims,
    // the derived deserializer refuses them.
    let mut raw: RawClaims = serde_json::from_slice(json).map_err(|e| JwtError::Claims {
        reason: e.to_string(),
    })?;
    raw.all = all;
    Ok(raw)
}

/// `sub`: required, a string, a valid SPIFFE ID (§3.1).
pub(crate) fn sub(raw: &RawClaims) -> Result<SpiffeId, JwtError> {
    match &raw.sub {
        None => Err(JwtError::MissingSub),
        Some(Value::String(s)) => SpiffeId::parse(s).map_err(|source| JwtError::BadSub {
            sub: s.chars().take(256).collect(),
            source,
        }),
        Some(other) => Err(JwtError::Claims {
            reason: format!("`sub` must be a string, got {}", kind(other)),
        }),
    }
}

/// `aud`: required, a string or a non-empty array of strings (§3.2, RFC 7519 §4.1.3).
pub(crate) fn audience(raw: &RawClaims) -> Result<Vec<String>, JwtError> {
    match &raw.aud {
        None | Some(Value::Null) => Err(JwtError::MissingAud),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(items)) if items.is_empty() => Err(JwtError::MissingAud),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                other => Err(JwtError::Claims {
                    reason: format!("`aud` values must be strings, got {}", kind(other)),
                }),
            })
            .collect(),
        Some(other) => Err(JwtError::Claims {
            reason: format!(
                "`aud` must be a string or an array of strings, got {}",
                kind(other)
            ),
        }),
    }
}

/// A NumericDate claim (`exp`, `nbf`, `iat`): `None` if absent, else whole seconds since the
/// epoch (fractions are dropped, RFC 7519 §2). Negative or non-numeric values are refused.
pub(crate) fn numeric_date(
    value: Option<&Value>,
    claim: &'static str,
) -> Result<Option<u64>, JwtError> {
    let bad = || JwtError::BadNumericDate { claim };
    match value {
        None => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(v) = n.as_u64() {
                return Ok(Some(v));
            }
            match n.as_f64() {
                // Up to year ~292 billion fits; anything beyond is nonsense, not a date.
                Some(f) if (0.0..9.0e15).contains(&f) => Ok(Some(f.floor() as u64)),
                _ => Err(bad()),
            }
        }
        Some(_) => Err(bad()),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
