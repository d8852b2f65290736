//! The SPIFFE bundle JSON document (JWKS, SPIFFE_Trust_Domain_and_Bundle.md §4, X509-SVID.md §6).
//!
//! Invariants: parsing is pure (bytes in, typed parts or a `BundleError` out) and never panics
//! on any input; every `x509-svid` authority it returns is a DER certificate that x509-parser and
//! webpki (as a trust anchor) accept, whose public key matches the JWK key parameters when present;
//! entries the spec says to ignore (missing/unknown `use`, unknown `kty` — a non-string `use` or
//! `kty` counts as unknown —, `x509-svid` without `x5c`) come back as `BundleWarning`s, never silently dropped.

use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use rustls_pki_types::CertificateDer;
use serde_json::{Map, Value};
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_NIST_EC_P521,
    OID_PKCS1_RSAENCRYPTION, OID_SIG_ED25519,
};
use x509_parser::public_key::PublicKey;

use super::{Bundle, BundleError, BundleWarning, JwtAuthority};
use crate::spiffe_id::TrustDomain;

/// Largest bundle document accepted (bytes); real bundles are a few KiB.
pub const MAX_BUNDLE_LEN: usize = 4 * 1024 * 1024;

/// The JWK `use` of X.509 authorities.
pub const USE_X509_SVID: &str = "x509-svid";
/// The JWK `use` of JWT authorities.
pub const USE_JWT_SVID: &str = "jwt-svid";

/// Key types this implementation understands; any other `kty` is ignored (§4.2.1).
const KNOWN_KTY: [&str; 3] = ["EC", "RSA", "OKP"];

/// Why one `keys[i]` entry is malformed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EntryError {
    #[error("entry is not a JSON object")]
    NotAnObject,
    #[error("`kty` is missing (SPIFFE_Trust_Domain_and_Bundle.md §4.2.1: it must be set)")]
    MissingKty,
    #[error("`{0}` must be a string")]
    NotAString(&'static str),
    #[error("`x5c` must be an array of base64 strings")]
    X5cNotArray,
    #[error("`x5c[0]` is not valid standard base64")]
    X5cBase64(#[source] base64::DecodeError),
    #[error("`x5c[0]` is not a DER X.509 certificate: {0}")]
    X5cNotCertificate(String),
    #[error("`kty` is {kty:?} but the certificate's public key is {cert_key}")]
    KtyMismatch { kty: String, cert_key: &'static str },
    #[error("key parameter `{0}` does not match the certificate's public key")]
    KeyParamMismatch(&'static str),
    #[error("`x5c[0]` cannot serve as a trust anchor: {0}")]
    NotATrustAnchor(String),
    #[error("`kid` is required for jwt-svid keys (JWT-SVID.md §6)")]
    MissingKid,
    #[error("key parameter `{0}` is missing")]
    MissingKeyParam(&'static str),
    #[error("duplicate `kid` {0:?} with a different key")]
    DuplicateKid(String),
}

/// The parts of a parsed bundle document.
#[derive(Debug, Default)]
pub(crate) struct Parsed {
    pub(crate) x509: Vec<CertificateDer<'static>>,
    pub(crate) jwt: Vec<JwtAuthority>,
    pub(crate) refresh_hint: Option<Duration>,
    pub(crate) sequence: Option<u64>,
    pub(crate) warnings: Vec<BundleWarning>,
}

/// Parses the JWKS document of `td`.
pub(crate) fn parse(td: &TrustDomain, json: &[u8]) -> Result<Parsed, BundleError> {
    if json.len() > MAX_BUNDLE_LEN {
        return Err(BundleError::TooLarge {
            td: td.clone(),
            len: json.len(),
        });
    }
    let value: Value = serde_json::from_slice(json).map_err(|source| BundleError::Json {
        td: td.clone(),
        source,
    })?;
    let Value::Object(doc) = value else {
        return Err(BundleError::NotAnObject { td: td.clone() });
    };
    let mut out = Parsed {
        sequence: parse_u64(td, &doc, "spiffe_sequence")?,
        refresh_hint: parse_u64(td, &doc, "spiffe_refresh_hint")?.map(Duration::from_secs),
        ..Parsed::default()
    };
    let keys = match doc.get("keys") {
        None => return Err(BundleError::MissingKeys { td: td.clone() }),
        Some(Value::Array(keys)) => keys,
        Some(_) => return Err(BundleError::KeysNotArray { td: td.clone() }),
    };
    for (index, entry) in keys.iter().enumerate() {
        let bad = |reason| BundleError::BadEntry {
            td: td.clone(),
            index,
            reason,
        };
        match parse_entry(entry).map_err(bad)? {
            Entry::X509(der, extra) => {
                if extra > 0 {
                    let warning = format!(
                        "bundle for {td}: keys[{index}]: {extra} `x5c` value(s) after the first \
                         ignored (X509-SVID.md §6.2)"
                    );
                    tracing::warn!(trust_domain = %td, index, "{warning}");
                    out.warnings.push(BundleWarning(warning));
                }
                if !out.x509.contains(&der) {
                    out.x509.push(der);
                }
            }
            Entry::Jwt(jwt) => match out.jwt.iter().find(|j| j.key_id == jwt.key_id) {
                Some(existing) if existing.jwk == jwt.jwk => {}
                Some(_) => return Err(bad(EntryError::DuplicateKid(jwt.key_id))),
                None => out.jwt.push(jwt),
            },
            Entry::Ignored(why) => {
                let warning = format!("bundle for {td}: keys[{index}] ignored: {why}");
                tracing::warn!(trust_domain = %td, index, "{warning}");
                out.warnings.push(BundleWarning(warning));
            }
        }
    }
    Ok(out)
}

/// Serializes `bundle` to a pretty-printed JWKS document.
pub(crate) fn to_json(bundle: &Bundle) -> Vec<u8> {
    let mut keys = Vec::new();
    for der in bundle.x509_authorities() {
        // A stored authority that x509-parser cannot read still round-trips as x5c only.
        let mut jwk = jwk_params(der.as_ref()).unwrap_or_default();
        jwk.insert("use".into(), USE_X509_SVID.into());
        jwk.insert(
            "x5c".into(),
            Value::Array(vec![STANDARD.encode(der.as_ref()).into()]),
        );
        keys.push(Value::Object(jwk));
    }
    for jwt in bundle.jwt_authorities() {
        let mut jwk = jwt.jwk.clone();
        jwk.insert("use".into(), USE_JWT_SVID.into());
        jwk.insert("kid".into(), jwt.key_id.clone().into());
        keys.push(Value::Object(jwk));
    }
    let mut doc = Map::new();
    doc.insert("keys".into(), Value::Array(keys));
    if let Some(seq) = bundle.sequence() {
        doc.insert("spiffe_sequence".into(), seq.into());
    }
    if let Some(hint) = bundle.refresh_hint() {
        doc.insert("spiffe_refresh_hint".into(), hint.as_secs().into());
    }
    let mut out = serde_json::to_vec_pretty(&Value::Object(doc))
        // Serializing a `Value` built from strings and integers cannot fail.
        .unwrap_or_default();
    out.push(b'\n');
    out
}

/// The JWK key parameters (`kty` plus `crv`/`x`/`y`, `n`/`e`) of a DER certificate's key.
pub fn jwk_params(cert_der: &[u8]) -> Result<Map<String, Value>, EntryError> {
    let (rest, cert) = x509_parser::parse_x509_certificate(cert_der)
        .map_err(|e| EntryError::X5cNotCertificate(e.to_string()))?;
    if !rest.is_empty() {
        return Err(EntryError::X5cNotCertificate(format!(
            "{} trailing bytes after the certificate",
            rest.len()
        )));
    }
    let spki = cert.public_key();
    let mut jwk = Map::new();
    let alg = &spki.algorithm.algorithm;
    if *alg == OID_KEY_TYPE_EC_PUBLIC_KEY {
        jwk.insert("kty".into(), "EC".into());
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok());
        let crv = match curve {
            Some(oid) if oid == OID_EC_P256 => Some("P-256"),
            Some(oid) if oid == OID_NIST_EC_P384 => Some("P-384"),
            Some(oid) if oid == OID_NIST_EC_P521 => Some("P-521"),
            _ => None,
        };
        if let Some(crv) = crv {
            jwk.insert("crv".into(), crv.into());
        }
        let point: &[u8] = &spki.subject_public_key.data;
        // Uncompressed point: 0x04 || X || Y with equal-length coordinates.
        if point.len() > 1 && point[0] == 4 && (point.len() - 1) % 2 == 0 {
            let (x, y) = point[1..].split_at((point.len() - 1) / 2);
            jwk.insert("x".into(), URL_SAFE_NO_PAD.encode(x).into());
            jwk.insert("y".into(), URL_SAFE_NO_PAD.encode(y).into());
        }
    } else if *alg == OID_PKCS1_RSAENCRYPTION {
        jwk.insert("kty".into(), "RSA".into());
        if let Ok(PublicKey::RSA(rsa)) = spki.parsed() {
            jwk.insert(
                "n".into(),
                URL_SAFE_NO_PAD.encode(strip_zeros(rsa.modulus)).into(),
            );
            jwk.insert(
                "e".into(),
                URL_SAFE_NO_PAD.encode(strip_zeros(rsa.exponent)).into(),
            );
        }
    } else if *alg == OID_SIG_ED25519 {
        jwk.insert("kty".into(), "OKP".into());
        jwk.insert("crv".into(), "Ed25519".into());
        let x: &[u8] = &spki.subject_public_key.data;
        jwk.insert("x".into(), URL_SAFE_NO_PAD.encode(x).into());
    }
    Ok(jwk)
}

// === private ===

enum Entry {
    /// An authority, and how many further `x5c` values were ignored.
    X509(CertificateDer<'static>, usize),
    Jwt(JwtAuthority),
    Ignored(String),
}

fn parse_entry(entry: &Value) -> Result<Entry, EntryError> {
    let Value::Object(jwk) = entry else {
        return Err(EntryError::NotAnObject);
    };
    // §4.2.2: a missing or unknown `use` means the whole entry is ignored; a `use` that is not
    // a string (number, object, null, ...) names no use this implementation knows, so it is an
    // unknown use too.
    let usage = match jwk.get("use") {
        None => return Ok(Entry::Ignored("no `use` parameter".into())),
        Some(Value::String(u)) => u.as_str(),
        Some(other) => {
            return Ok(Entry::Ignored(format!(
                "unknown `use` {} (not a string)",
                json_kind(other)
            )))
        }
    };
    if usage != USE_X509_SVID && usage != USE_JWT_SVID {
        return Ok(Entry::Ignored(format!("unknown `use` {usage:?}")));
    }
    let kty = match jwk.get("kty") {
        None => return Err(EntryError::MissingKty),
        Some(Value::String(k)) => k.as_str(),
        // §4.2.1: an unknown key type is ignored; a non-string `kty` is an unknown key type.
        Some(other) => {
            return Ok(Entry::Ignored(format!(
                "unknown `kty` {} (not a string)",
                json_kind(other)
            )))
        }
    };
    if !KNOWN_KTY.contains(&kty) {
        return Ok(Entry::Ignored(format!("unknown `kty` {kty:?}")));
    }
    if usage == USE_X509_SVID {
        parse_x509_entry(jwk, kty)
    } else {
        parse_jwt_entry(jwk, kty)
    }
}

/// A short description of a JSON value's type and (for scalars) value, for warnings.
fn json_kind(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) => format!("string {s:?}"),
        Value::Array(_) => "array".into(),
        Value::Object(_) => "object".into(),
    }
}

fn parse_x509_entry(jwk: &Map<String, Value>, kty: &str) -> Result<Entry, EntryError> {
    // X509-SVID.md §6.2: a missing or empty `x5c` means the entry is ignored, and values
    // after the first are ignored.
    let (first, extra) = match jwk.get("x5c") {
        None => return Ok(Entry::Ignored("x509-svid entry without `x5c`".into())),
        Some(Value::Array(items)) => match items.first() {
            None => return Ok(Entry::Ignored("x509-svid entry with an empty `x5c`".into())),
            Some(Value::String(s)) => (s, items.len() - 1),
            Some(_) => return Err(EntryError::X5cNotArray),
        },
        Some(_) => return Err(EntryError::X5cNotArray),
    };
    let der = STANDARD.decode(first).map_err(EntryError::X5cBase64)?;
    let derived = jwk_params(&der)?;
    let cert_kty = derived.get("kty").and_then(Value::as_str);
    if cert_kty != Some(kty) {
        return Err(EntryError::KtyMismatch {
            kty: kty.to_owned(),
            cert_key: match cert_kty {
                Some("EC") => "EC",
                Some("RSA") => "RSA",
                Some("OKP") => "OKP",
                _ => "an unsupported key type",
            },
        });
    }
    for param in ["crv", "x", "y", "n", "e"] {
        let Some(given) = jwk.get(param) else {
            continue;
        };
        let Value::String(given) = given else {
            return Err(EntryError::NotAString(param));
        };
        let want = derived.get(param).and_then(Value::as_str);
        if !param_matches(param, given, want) {
            return Err(EntryError::KeyParamMismatch(param));
        }
    }
    let der = CertificateDer::from(der);
    if let Err(e) = webpki::anchor_from_trusted_cert(&der) {
        return Err(EntryError::NotATrustAnchor(e.to_string()));
    }
    Ok(Entry::X509(der, extra))
}

fn parse_jwt_entry(jwk: &Map<String, Value>, kty: &str) -> Result<Entry, EntryError> {
    let key_id = match jwk.get("kid") {
        None => return Err(EntryError::MissingKid),
        Some(Value::String(k)) if !k.is_empty() => k.clone(),
        Some(Value::String(_)) => return Err(EntryError::MissingKid),
        Some(_) => return Err(EntryError::NotAString("kid")),
    };
    let required: &[&'static str] = match kty {
        "EC" => &["crv", "x", "y"],
        "RSA" => &["n", "e"],
        _ => &["crv", "x"],
    };
    for param in required {
        match jwk.get(*param) {
            None => return Err(EntryError::MissingKeyParam(param)),
            Some(Value::String(_)) => {}
            Some(_) => return Err(EntryError::NotAString(param)),
        }
    }
    Ok(Entry::Jwt(JwtAuthority {
        key_id,
        jwk: jwk.clone(),
    }))
}

/// Compares a JWK parameter given in a document with the one derived from the certificate.
fn param_matches(param: &str, given: &str, want: Option<&str>) -> bool {
    let Some(want) = want else { return false };
    if param == "crv" {
        return given == want;
    }
    // base64urlUInt values: compare the decoded integers so padding/leading zeros don't matter.
    let decode = |s: &str| {
        let s = s.trim_end_matches('=');
        URL_SAFE_NO_PAD.decode(s).ok()
    };
    match (decode(given), decode(want)) {
        (Some(g), Some(w)) if param == "n" || param == "e" => strip_zeros(&g) == strip_zeros(&w),
        (Some(g), Some(w)) => g == w,
        _ => false,
    }
}

fn strip_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

/// Reads an optional non-negative integer member (`spiffe_sequence`, `spiffe_refresh_hint`).
fn parse_u64(
    td: &TrustDomain,
    doc: &Map<String, Value>,
    field: &'static str,
) -> Result<Option<u64>, BundleError> {
    match doc.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(v) => Ok(Some(v)),
            None => Err(BundleError::BadInteger {
                td: td.clone(),
                field,
                value: n.to_string(),
            }),
        },
        Some(other) => Err(BundleError::BadInteger {
            td: td.clone(),
            field,
            value: other.to_string(),
        }),
    }
}
