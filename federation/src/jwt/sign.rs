//! Minting JWT-SVIDs with an ECDSA P-256 key (ES256).
//!
//! Invariants: a [`JwtSigningKey`] holds a P-256 key ring accepted; its key ID is the RFC 7638
//! JWK thumbprint of its public key (base64url, no padding, of SHA-256 over
//! `{"crv":"P-256","kty":"EC","x":…,"y":…}`), so the same key always has the same `kid`
//! and two keys never share one. Every token it mints has the header
//! `{"alg":"ES256","kid":…,"typ":"JWT"}` and the claims `sub`, `aud` (a string for one
//! audience, an array for several), `exp` and `iat`, and validates with
//! [`super::validate`] against a bundle holding [`JwtSigningKey::authority`] until `exp`.
//! `Debug` never shows key material.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::PrivatePkcs8KeyDer;
use serde_json::{json, Map, Value};

use crate::bundle::document::USE_JWT_SVID;
use crate::bundle::JwtAuthority;
use crate::spiffe_id::SpiffeId;

/// An ES256 signing key for JWT-SVIDs.
pub struct JwtSigningKey {
    key: EcdsaKeyPair,
    /// PKCS#8 DER of `key`, for saving. Never logged.
    pkcs8: Vec<u8>,
    kid: String,
}

/// Why a key could not be made or loaded, or a token not minted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MintError {
    #[error("cannot generate an ECDSA P-256 key (the system random source failed)")]
    Generate,
    #[error("not a PKCS#8 PEM `PRIVATE KEY` block")]
    NotPem,
    #[error("not an ECDSA P-256 PKCS#8 key: {0}")]
    BadKey(String),
    #[error("a JWT-SVID needs at least one audience (JWT-SVID.md §3.2)")]
    NoAudience,
    #[error("an empty string is not a usable audience")]
    EmptyAudience,
    #[error("ttl must be longer than zero")]
    ZeroTtl,
    #[error("ttl {0:?} is too large")]
    TtlTooLarge(Duration),
    #[error("the system clock is before 1970")]
    ClockBeforeEpoch,
    #[error("signing failed")]
    Sign,
}

impl JwtSigningKey {
    /// A fresh random P-256 key.
    pub fn generate() -> Result<Self, MintError> {
        let rng = SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| MintError::Generate)?;
        Self::from_pkcs8_der(doc.as_ref())
    }

    /// Loads a PKCS#8 DER P-256 key.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, MintError> {
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng)
            .map_err(|e| MintError::BadKey(e.to_string()))?;
        let kid = thumbprint(key.public_key().as_ref());
        Ok(Self {
            key,
            pkcs8: der.to_vec(),
            kid,
        })
    }

    /// Loads a PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`) P-256 key.
    pub fn from_pem(pem: &[u8]) -> Result<Self, MintError> {
        let der = PrivatePkcs8KeyDer::from_pem_slice(pem).map_err(|_| MintError::NotPem)?;
        Self::from_pkcs8_der(der.secret_pkcs8_der())
    }

    /// The key as PKCS#8 PEM. Write it only with `crate::fs::write_private`; never log it.
    pub fn to_pem(&self) -> String {
        let b64 = STANDARD.encode(&self.pkcs8);
        let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
        for chunk in b64.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(chunk));
            pem.push('\n');
        }
        pem.push_str("-----END PRIVATE KEY-----\n");
        pem
    }

    /// The `kid`: the RFC 7638 thumbprint of the public key.
    pub fn key_id(&self) -> &str {
        &self.kid
    }

    /// The public key as a bundle entry: `{"kty":"EC","crv":"P-256","x","y","use":"jwt-svid","kid"}`.
    pub fn authority(&self) -> JwtAuthority {
        let (x, y) = coordinates(self.key.public_key().as_ref());
        let mut jwk = Map::new();
        jwk.insert("kty".into(), "EC".into());
        jwk.insert("crv".into(), "P-256".into());
        jwk.insert("x".into(), URL_SAFE_NO_PAD.encode(x).into());
        jwk.insert("y".into(), URL_SAFE_NO_PAD.encode(y).into());
        jwk.insert("use".into(), USE_JWT_SVID.into());
        jwk.insert("kid".into(), self.kid.clone().into());
        JwtAuthority {
            key_id: self.kid.clone(),
            jwk,
        }
    }

    /// Mints a JWT-SVID for `sub` valid from `now` for `ttl` (`iat` = `now`, `exp` = `now + ttl`,
    /// whole seconds). Returns the compact serialization.
    pub fn mint(
        &self,
        sub: &SpiffeId,
        audience: &[&str],
        now: SystemTime,
        ttl: Duration,
    ) -> Result<String, MintError> {
        if audience.is_empty() {
            return Err(MintError::NoAudience);
        }
        if audience.iter().any(|a| a.is_empty()) {
            return Err(MintError::EmptyAudience);
        }
        if ttl.is_zero() {
            return Err(MintError::ZeroTtl);
        }
        let iat = now
            .duration_since(UNIX_EPOCH)
            .map_err(|_| MintError::ClockBeforeEpoch)?
            .as_secs();
        // Whole seconds, at least one: a sub-second ttl still yields exp > iat.
        let ttl_secs = ttl.as_secs().max(1);
        let exp = iat
            .checked_add(ttl_secs)
            .filter(|e| *e < (1 << 53))
            .ok_or(MintError::TtlTooLarge(ttl))?;
        let aud: Value = match audience {
            [one] => (*one).into(),
            many => many.iter().map(|a| Value::from(*a)).collect(),
        };
        let header = json!({"alg": "ES256", "kid": self.kid, "typ": "JWT"});
        let claims = json!({"sub": sub.to_string(), "aud": aud, "exp": exp, "iat": iat});
        let mut token = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig = self.sign_raw(token.as_bytes())?;
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(sig));
        Ok(token)
    }

    /// The raw ES256 signature (`r || s`, 64 bytes) of `message`.
    pub(crate) fn sign_raw(&self, message: &[u8]) -> Result<Vec<u8>, MintError> {
        let sig = self
            .key
            .sign(&SystemRandom::new(), message)
            .map_err(|_| MintError::Sign)?;
        Ok(sig.as_ref().to_vec())
    }
}

impl fmt::Debug for JwtSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtSigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// `x` and `y` of an uncompressed P-256 point (`04 || x || y`, 65 bytes, as ring gives it).
fn coordinates(point: &[u8]) -> (&[u8], &[u8]) {
    let xy = point.get(1..).unwrap_or_default();
    xy.split_at(xy.len() / 2)
}

/// RFC 7638 thumbprint of a P-256 public key: the required members in lexicographic order,
/// no whitespace, SHA-256, base64url.
fn thumbprint(point: &[u8]) -> String {
    let (x, y) = coordinates(point);
    let canonical = format!(
        r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
        URL_SAFE_NO_PAD.encode(x),
        URL_SAFE_NO_PAD.encode(y)
    );
    URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        canonical.as_bytes(),
    ))
}
