//! JWT-SVID signature verification with ring: a bundle's `jwt-svid` JWK becomes a public key
//! for exactly the algorithms that fit it.
//!
//! Invariants: a key is used only with an algorithm of its own type and curve (an EC P-256
//! key verifies ES256 only, P-384 ES384 only, RSA keys RS*/PS* only); a JWK that names an
//! `alg` is used only with that `alg`; the signature is checked over the exact bytes
//! `header.payload` as received. Pure, never panics.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde_json::{Map, Value};

use super::header::Alg;
use super::JwtError;

/// A public key taken from a JWK.
enum PublicKey {
    /// Uncompressed SEC1 point `04 || x || y` on `crv`.
    Ec {
        crv: &'static str,
        point: Vec<u8>,
    },
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
}

/// Verifies `signature` over `signed` with the JWK `jwk` (id `kid`) for `alg`.
pub(crate) fn verify(
    jwk: &Map<String, Value>,
    kid: &str,
    alg: Alg,
    signed: &[u8],
    signature: &[u8],
) -> Result<(), JwtError> {
    let bad_key = |reason: String| JwtError::BadKey {
        kid: kid.to_owned(),
        reason,
    };
    if let Some(key_alg) = jwk.get("alg") {
        if key_alg.as_str() != Some(alg.name()) {
            return Err(JwtError::KeyAlgMismatch {
                kid: kid.to_owned(),
                alg,
                key: format!("a key restricted to `alg` {key_alg}"),
            });
        }
    }
    let key = public_key(jwk).map_err(bad_key)?;
    let mismatch = |key: String| JwtError::KeyAlgMismatch {
        kid: kid.to_owned(),
        alg,
        key,
    };
    let ok = match (&key, alg) {
        (
            PublicKey::Ec {
                crv: "P-256",
                point,
            },
            Alg::ES256,
        ) => UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
            .verify(signed, signature),
        (
            PublicKey::Ec {
                crv: "P-384",
                point,
            },
            Alg::ES384,
        ) => UnparsedPublicKey::new(&signature::ECDSA_P384_SHA384_FIXED, point)
            .verify(signed, signature),
        (
            PublicKey::Rsa { n, e },
            Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 | Alg::PS384 | Alg::PS512,
        ) => {
            let params: &signature::RsaParameters = match alg {
                Alg::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
                Alg::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
                Alg::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
                Alg::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
                Alg::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
                _ => &signature::RSA_PSS_2048_8192_SHA512,
            };
            RsaPublicKeyComponents { n, e }.verify(params, signed, signature)
        }
        (_, Alg::ES512) => return Err(JwtError::AlgUnsupported { alg }),
        (PublicKey::Ec { crv, .. }, _) => return Err(mismatch(format!("an EC {crv} key"))),
        (PublicKey::Rsa { .. }, _) => return Err(mismatch("an RSA key".into())),
    };
    ok.map_err(|_| JwtError::BadSignature {
        kid: kid.to_owned(),
    })
}

/// The public key of a JWK (`kty` EC with `crv` P-256/P-384, or RSA).
fn public_key(jwk: &Map<String, Value>) -> Result<PublicKey, String> {
    let param = |name: &str| -> Result<Vec<u8>, String> {
        let text = jwk
            .get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("key parameter `{name}` is missing or not a string"))?;
        URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|e| format!("key parameter `{name}` is not base64url: {e}"))
    };
    match jwk.get("kty").and_then(Value::as_str) {
        Some("EC") => {
            let (crv, len) = match jwk.get("crv").and_then(Value::as_str) {
                Some("P-256") => ("P-256", 32),
                Some("P-384") => ("P-384", 48),
                Some("P-521") => {
                    return Err("EC curve P-521 (ES512) is not supported by fedgate".into())
                }
                other => return Err(format!("unsupported EC curve {other:?}")),
            };
            let (x, y) = (param("x")?, param("y")?);
            if x.len() != len || y.len() != len {
                return Err(format!(
                    "`x` and `y` of a {crv} key must be {len} bytes each"
                ));
            }
            let mut point = Vec::with_capacity(1 + 2 * len);
            point.push(4);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            Ok(PublicKey::Ec { crv, point })
        }
        Some("RSA") => Ok(PublicKey::Rsa {
            n: strip_zeros(param("n")?),
            e: strip_zeros(param("e")?),
        }),
        Some(other) => Err(format!("key type {other:?} cannot verify a JWT-SVID")),
        None => Err("`kty` is missing".into()),
    }
}

/// base64urlUInt values have no leading zero bytes (RFC 7518 §2); tolerate them anyway.
fn strip_zeros(mut bytes: Vec<u8>) -> Vec<u8> {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    bytes.drain(..start);
    bytes
}
