//! JWT-SVIDs (JWT-SVID.md): validation against per-trust-domain bundles, and minting.
//!
//! Validation ([`validate`]) takes the token, the bundles, the audience the caller identifies
//! with and the time, and either returns a [`JwtSvid`] or a [`JwtError`] saying what was wrong.
//! Invariants:
//! * A token over [`MAX_TOKEN_LEN`] bytes is refused before anything is decoded.
//! * Only JWS compact serialization (three base64url parts, §5.1) is read; the header may hold
//!   only `alg`, `kid` and `typ` (§2); `alg` must be one of the nine of §2.1 and is checked
//!   before anything else is processed (§4): `none` and `HS*` are never accepted.
//! * The bundle is chosen by the trust domain of `sub` and only that bundle is searched for
//!   the `kid`: keys are never merged or tried across trust domains (the `BundleSource`
//!   contract). The key must be a `jwt-svid` authority of that bundle, of the type and curve
//!   the `alg` needs.
//! * The signature is verified before any claim other than `sub` is trusted; then `exp` is
//!   required and must not be past (with [`DEFAULT_LEEWAY`] or the caller's leeway), `nbf`
//!   and `iat` (optional) must not be in the future beyond the leeway, and `aud` is required
//!   and must contain the expected audience (§3.2, §3.3, Appendix A).
//! * Nothing here panics, allocates unboundedly or does I/O; a proptest feeds it arbitrary
//!   input.
//!
//! Differences from the letter of the spec, all stricter: `kid` is required (§2.2 makes it
//! optional, but the bundle's keys are looked up by it; go-spiffe requires it too) and
//! `ES512` is refused with [`JwtError::AlgUnsupported`] because ring has no P-521.
//!
//! Minting: [`JwtSigningKey`] (ES256, P-256, `kid` = RFC 7638 thumbprint).

mod claims;
mod header;
mod key;
mod sign;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use crate::bundle::BundleSource;
use crate::spiffe_id::{SpiffeId, SpiffeIdError, TrustDomain};

pub use header::{Alg, Header};
pub use sign::{JwtSigningKey, MintError};

/// Largest token accepted (bytes). Real JWT-SVIDs are well under 2 KiB.
pub const MAX_TOKEN_LEN: usize = 64 * 1024;

/// Clock skew tolerated on `exp`, `nbf` and `iat` (the same minute go-jose, and so
/// go-spiffe, allows).
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);

/// A validated JWT-SVID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JwtSvid {
    /// `sub`.
    pub spiffe_id: SpiffeId,
    /// `aud`, in token order (contains the expected audience).
    pub audience: Vec<String>,
    /// `exp`, seconds since the epoch.
    pub expiry: u64,
    /// `iat`, when present.
    pub issued_at: Option<u64>,
    /// The header (`alg`, `kid`, `typ`).
    pub header: Header,
    /// Every claim of the token, registered and private, as signed (the Workload API's
    /// ValidateJWTSVID returns them).
    pub claims: serde_json::Map<String, serde_json::Value>,
}

/// Why a token is not a valid JWT-SVID. Every message says what was wrong; token contents
/// quoted in messages are truncated.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JwtError {
    #[error("token is {len} bytes, over the {MAX_TOKEN_LEN}-byte limit; JWT-SVIDs are small, this is not one")]
    TooLarge { len: usize },
    #[error("token is empty")]
    Empty,
    #[error(
        "not a compact JWS: expected three base64url parts separated by `.`, found {parts} \
         (JWT-SVID.md §5.1: JSON serialization and JWE are not allowed)"
    )]
    NotCompact { parts: usize },
    #[error("the {part} is not unpadded base64url (RFC 7515 §3.1)")]
    Base64 {
        part: &'static str,
        #[source]
        source: base64::DecodeError,
    },
    #[error("bad JOSE header: {reason}")]
    Header { reason: String },
    #[error("the header has no `alg` (JWT-SVID.md §2.1: it must be set)")]
    MissingAlg,
    #[error(
        "`alg` {alg} is not allowed: a JWT-SVID is signed with RS256, RS384, RS512, ES256, \
         ES384, ES512, PS256, PS384 or PS512 (JWT-SVID.md §2.1); unsigned (`none`) and \
         HMAC (`HS*`) tokens are always refused"
    )]
    AlgNotAllowed { alg: String },
    #[error("`alg` {alg} is allowed by JWT-SVID.md but not supported by fedgate (no P-521 in ring); mint with ES256, ES384, RS* or PS*")]
    AlgUnsupported { alg: Alg },
    #[error(
        "`typ` {typ} is not allowed: it must be \"JWT\" or \"JOSE\" when set (JWT-SVID.md §2.3)"
    )]
    BadTyp { typ: String },
    #[error("the header has no `kid` (or it is not a non-empty string); fedgate looks up the signing key in the bundle by `kid`")]
    MissingKid,
    #[error("bad claims: {reason}")]
    Claims { reason: String },
    #[error(
        "the token has no `sub` claim (JWT-SVID.md §3.1: it must be the workload's SPIFFE ID)"
    )]
    MissingSub,
    #[error("`sub` {sub:?} is not a valid SPIFFE ID")]
    BadSub {
        sub: String,
        #[source]
        source: SpiffeIdError,
    },
    #[error("no bundle for trust domain {td} (the trust domain of `sub`); add its bundle to validate its tokens")]
    NoBundle { td: TrustDomain },
    #[error("the bundle of {td} has no jwt-svid keys: that trust domain does not issue JWT-SVIDs (JWT-SVID.md §6.2)")]
    NoJwtAuthorities { td: TrustDomain },
    #[error(
        "`kid` {kid:?} is not a jwt-svid key of the bundle of {td} (the trust domain of `sub`); \
         the token was signed by another key or another trust domain, or the bundle is out of date"
    )]
    UnknownKid { kid: String, td: TrustDomain },
    #[error("key {kid:?} cannot verify `alg` {alg}: it is {key}")]
    KeyAlgMismatch { kid: String, alg: Alg, key: String },
    #[error("key {kid:?} in the bundle is unusable: {reason}")]
    BadKey { kid: String, reason: String },
    #[error("the signature does not verify with key {kid:?}; the token was altered or not signed by that key")]
    BadSignature { kid: String },
    #[error("the token has no `exp` claim (JWT-SVID.md §3.3: validators must reject it)")]
    MissingExp,
    #[error("`{claim}` is not a NumericDate (a non-negative number of seconds since 1970)")]
    BadNumericDate { claim: &'static str },
    #[error("the token expired at {exp} (unix seconds), it is now {now} (leeway {leeway}s); fetch a new one")]
    Expired { exp: u64, now: u64, leeway: u64 },
    #[error(
        "the token is not valid before {nbf} (unix seconds), it is now {now}; check the clocks"
    )]
    NotYetValid { nbf: u64, now: u64 },
    #[error(
        "the token was issued at {iat} (unix seconds), in the future (now {now}); check the clocks"
    )]
    IssuedInFuture { iat: u64, now: u64 },
    #[error("the token has no `aud` claim, or it is empty (JWT-SVID.md §3.2: validators must reject it)")]
    MissingAud,
    #[error("audience {expected:?} is not among the token's audiences {got:?} (JWT-SVID.md §3.2); it was minted for another service")]
    WrongAudience { expected: String, got: Vec<String> },
}

/// Validates `token` for `audience` at `now` with [`DEFAULT_LEEWAY`].
pub fn validate(
    token: &str,
    bundles: &dyn BundleSource,
    audience: &str,
    now: SystemTime,
) -> Result<JwtSvid, JwtError> {
    validate_with_leeway(token, bundles, audience, now, DEFAULT_LEEWAY)
}

/// [`validate`] with an explicit clock-skew `leeway` on `exp`, `nbf` and `iat`.
pub fn validate_with_leeway(
    token: &str,
    bundles: &dyn BundleSource,
    audience: &str,
    now: SystemTime,
    leeway: Duration,
) -> Result<JwtSvid, JwtError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(JwtError::TooLarge { len: token.len() });
    }
    if token.is_empty() {
        return Err(JwtError::Empty);
    }
    let parts: Vec<&str> = token.split('.').collect();
    let [header_b64, claims_b64, sig_b64] = parts.as_slice() else {
        return Err(JwtError::NotCompact { parts: parts.len() });
    };
    let decode = |part: &'static str, text: &str| {
        URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|source| JwtError::Base64 { part, source })
    };
    let header = header::parse(&decode("header", header_b64)?)?;
    if header.alg == Alg::ES512 {
        return Err(JwtError::AlgUnsupported { alg: header.alg });
    }
    let raw = claims::parse(&decode("payload", claims_b64)?)?;
    let signature = decode("signature", sig_b64)?;

    // The trust domain of `sub` picks the one bundle whose keys may have signed the token.
    let spiffe_id = claims::sub(&raw)?;
    let td = spiffe_id.trust_domain();
    let bundle = bundles
        .bundle_for(td)
        .ok_or_else(|| JwtError::NoBundle { td: td.clone() })?;
    if bundle.jwt_authorities().is_empty() {
        return Err(JwtError::NoJwtAuthorities { td: td.clone() });
    }
    let authority = bundle
        .jwt_authorities()
        .iter()
        .find(|a| a.key_id == header.kid)
        .ok_or_else(|| JwtError::UnknownKid {
            kid: truncate(&header.kid),
            td: td.clone(),
        })?;
    let signed_len = header_b64.len() + 1 + claims_b64.len();
    let signed = token.as_bytes().get(..signed_len).unwrap_or_default();
    key::verify(&authority.jwk, &header.kid, header.alg, signed, &signature)?;

    // Signed: the remaining claims can now be judged.
    let now = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let leeway = leeway.as_secs();
    let expiry = claims::numeric_date(raw.exp.as_ref(), "exp")?.ok_or(JwtError::MissingExp)?;
    if expiry.saturating_add(leeway) <= now {
        return Err(JwtError::Expired {
            exp: expiry,
            now,
            leeway,
        });
    }
    if let Some(nbf) = claims::numeric_date(raw.nbf.as_ref(), "nbf")? {
        if nbf > now.saturating_add(leeway) {
            return Err(JwtError::NotYetValid { nbf, now });
        }
    }
    let issued_at = claims::numeric_date(raw.iat.as_ref(), "iat")?;
    if let Some(iat) = issued_at {
        if iat > now.saturating_add(leeway) {
            return Err(JwtError::IssuedInFuture { iat, now });
        }
    }
    let aud = claims::audience(&raw)?;
    if !aud.iter().any(|a| a == audience) {
        return Err(JwtError::WrongAudience {
            expected: truncate(audience),
            got: aud.iter().take(8).map(|a| truncate(a)).collect(),
        });
    }
    Ok(JwtSvid {
        spiffe_id,
        audience: aud,
        expiry,
        issued_at,
        header,
        claims: raw.all,
    })
}

/// At most 128 characters of untrusted text, for error messages.
fn truncate(s: &str) -> String {
    s.chars().take(128).collect()
}

#[cfg(test)]
mod tests;
