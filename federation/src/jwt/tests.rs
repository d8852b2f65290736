//! JWT-SVID validation: one test per rule (each fails if its check is removed), the bad inputs
//! of the issue, minting round trips, and a proptest that nothing panics.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use proptest::prelude::*;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair as _, RsaKeyPair, RsaPublicKeyComponents};
use serde_json::{json, Value};

use super::*;
use crate::bundle::{Bundle, BundleSet, JwtAuthority};

const AUD: &str = "spiffe://a.test/reports";

fn td(name: &str) -> TrustDomain {
    TrustDomain::new(name).unwrap()
}

fn id(s: &str) -> SpiffeId {
    SpiffeId::parse(s).unwrap()
}

fn now() -> SystemTime {
    SystemTime::now()
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn bundle_with(name: &str, authorities: &[JwtAuthority]) -> Bundle {
    let mut b = Bundle::new(td(name));
    for a in authorities {
        assert!(b.add_jwt_authority(a.clone()));
    }
    b
}

/// A set with `a.test` (keyed by `a`) and `b.test` (keyed by `b`).
fn two_domains(a: &JwtSigningKey, b: &JwtSigningKey) -> BundleSet {
    BundleSet::from_bundles([
        bundle_with("a.test", &[a.authority()]),
        bundle_with("b.test", &[b.authority()]),
    ])
    .unwrap()
}

fn b64(v: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(v)
}

/// `header.claims.sig` with `sig = sign(header.claims)`.
fn forge(header: &Value, claims: &Value, sign: impl FnOnce(&[u8]) -> Vec<u8>) -> String {
    let signed = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let sig = sign(signed.as_bytes());
    format!("{signed}.{}", b64(&sig))
}

/// An ES256 token signed by `key` with the given claims (header: alg, kid of `key`, typ).
fn es256(key: &JwtSigningKey, claims: &Value) -> String {
    let header = json!({"alg": "ES256", "kid": key.key_id(), "typ": "JWT"});
    forge(&header, claims, |m| key.sign_raw(m).unwrap())
}

fn good_claims() -> Value {
    let t = secs(now());
    json!({"sub": "spiffe://a.test/web", "aud": AUD, "exp": t + 300, "iat": t})
}

fn one_domain(key: &JwtSigningKey) -> BundleSet {
    BundleSet::from_bundles([bundle_with("a.test", &[key.authority()])]).unwrap()
}

// === the happy path ===

#[test]
fn minted_token_validates() {
    let key = JwtSigningKey::generate().unwrap();
    let token = key
        .mint(
            &id("spiffe://a.test/web"),
            &[AUD],
            now(),
            Duration::from_secs(300),
        )
        .unwrap();
    let svid = validate(&token, &one_domain(&key), AUD, now()).unwrap();
    assert_eq!(svid.spiffe_id, id("spiffe://a.test/web"));
    assert_eq!(svid.audience, vec![AUD.to_string()]);
    assert_eq!(svid.header.alg, Alg::ES256);
    assert_eq!(svid.header.kid, key.key_id());
    assert_eq!(svid.header.typ.as_deref(), Some("JWT"));
    let t = secs(now());
    assert!(svid.expiry > t && svid.expiry <= t + 301);
    assert!(svid.issued_at.is_some());
    assert_eq!(svid.claims["sub"], "spiffe://a.test/web");
    assert_eq!(svid.claims.len(), 4);
}

#[test]
fn several_audiences_are_an_array_and_any_one_matches() {
    let key = JwtSigningKey::generate().unwrap();
    let token = key
        .mint(
            &id("spiffe://a.test/web"),
            &["x", "y"],
            now(),
            Duration::from_secs(60),
        )
        .unwrap();
    let claims = token.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap();
    assert_eq!(claims["aud"], json!(["x", "y"]));
    let set = one_domain(&key);
    assert_eq!(
        validate(&token, &set, "y", now()).unwrap().audience,
        ["x", "y"]
    );
    assert!(matches!(
        validate(&token, &set, "z", now()),
        Err(JwtError::WrongAudience { .. })
    ));
}

#[test]
fn authority_round_trips_through_bundle_json() {
    let key = JwtSigningKey::generate().unwrap();
    let bundle = bundle_with("a.test", &[key.authority()]);
    let (parsed, warnings) = Bundle::parse(&td("a.test"), &bundle.to_json()).unwrap();
    assert!(warnings.is_empty());
    assert_eq!(parsed.jwt_authorities(), bundle.jwt_authorities());
    let jwk = &parsed.jwt_authorities()[0].jwk;
    assert_eq!(jwk["kty"], "EC");
    assert_eq!(jwk["crv"], "P-256");
    assert_eq!(jwk["use"], "jwt-svid");
    assert_eq!(jwk["kid"], key.key_id());
    let token = key
        .mint(
            &id("spiffe://a.test/web"),
            &[AUD],
            now(),
            Duration::from_secs(60),
        )
        .unwrap();
    validate(&token, &parsed, AUD, now()).unwrap();
}

#[test]
fn key_pem_round_trips_and_kid_is_the_rfc7638_thumbprint() {
    let key = JwtSigningKey::generate().unwrap();
    let again = JwtSigningKey::from_pem(key.to_pem().as_bytes()).unwrap();
    assert_eq!(again.key_id(), key.key_id());
    // Recompute the thumbprint independently from the published JWK.
    let jwk = key.authority().jwk;
    let canonical = format!(
        r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
        jwk["x"].as_str().unwrap(),
        jwk["y"].as_str().unwrap()
    );
    let digest = ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes());
    assert_eq!(key.key_id(), b64(digest.as_ref()));
    assert_eq!(key.key_id().len(), 43);
    // Debug never shows key material.
    let debug = format!("{key:?}");
    assert!(!debug.contains("PRIVATE") && debug.contains(key.key_id()));
    assert!(matches!(
        JwtSigningKey::from_pem(b"not pem"),
        Err(MintError::NotPem)
    ));
}

#[test]
fn mint_refuses_nonsense() {
    let key = JwtSigningKey::generate().unwrap();
    let sub = id("spiffe://a.test/web");
    let ttl = Duration::from_secs(60);
    assert!(matches!(
        key.mint(&sub, &[], now(), ttl),
        Err(MintError::NoAudience)
    ));
    assert!(matches!(
        key.mint(&sub, &[""], now(), ttl),
        Err(MintError::EmptyAudience)
    ));
    assert!(matches!(
        key.mint(&sub, &["a"], now(), Duration::ZERO),
        Err(MintError::ZeroTtl)
    ));
    assert!(matches!(
        key.mint(&sub, &["a"], now(), Duration::from_secs(u64::MAX)),
        Err(MintError::TtlTooLarge(_))
    ));
}

// === the bad inputs of the issue ===

#[test]
fn alg_none_is_refused() {
    let key = JwtSigningKey::generate().unwrap();
    let header = json!({"alg": "none", "kid": key.key_id(), "typ": "JWT"});
    let token = forge(&header, &good_claims(), |_| Vec::new());
    let err = validate(&token, &one_domain(&key), AUD, now()).unwrap_err();
    assert!(
        matches!(&err, JwtError::AlgNotAllowed { alg } if alg == "none"),
        "{err}"
    );
    assert!(err.to_string().contains("none"));
}

#[test]
fn hs256_signed_with_the_public_key_as_secret_is_refused() {
    let key = JwtSigningKey::generate().unwrap();
    let jwk = Value::Object(key.authority().jwk).to_string();
    let set = one_domain(&key);
    let header = json!({"alg": "HS256", "kid": key.key_id(), "typ": "JWT"});
    // The classic confusion: the verifier's public key (as JWK text, and as the raw point)
    // used as the HMAC secret.
    let x = URL_SAFE_NO_PAD
        .decode(key.authority().jwk["x"].as_str().unwrap())
        .unwrap();
    for secret in [jwk.as_bytes(), x.as_slice()] {
        let token = forge(&header, &good_claims(), |m| {
            let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
            ring::hmac::sign(&k, m).as_ref().to_vec()
        });
        let err = validate(&token, &set, AUD, now()).unwrap_err();
        assert!(
            matches!(&err, JwtError::AlgNotAllowed { alg } if alg == "HS256"),
            "{err}"
        );
    }
    // Case matters: `es256` is not `ES256`.
    let header = json!({"alg": "es256", "kid": key.key_id()});
    let token = forge(&header, &good_claims(), |m| key.sign_raw(m).unwrap());
    assert!(matches!(
        validate(&token, &set, AUD, now()),
        Err(JwtError::AlgNotAllowed { .. })
    ));
}

#[test]
fn wrong_kid_is_refused() {
    let key = JwtSigningKey::generate().unwrap();
    let header = json!({"alg": "ES256", "kid": "not-a-kid", "typ": "JWT"});
    let token = forge(&header, &good_claims(), |m| key.sign_raw(m).unwrap());
    let err = validate(&token, &one_domain(&key), AUD, now()).unwrap_err();
    assert!(
        matches!(&err, JwtError::UnknownKid { kid, td } if kid == "not-a-kid" && td.as_str() == "a.test"),
        "{err}"
    );
}

#[test]
fn a_key_not_in_the_bundle_is_refused() {
    // Right format, a real key, but one the bundle never published.
    let key = JwtSigningKey::generate().unwrap();
    let stranger = JwtSigningKey::generate().unwrap();
    let token = es256(&stranger, &good_claims());
    assert!(matches!(
        validate(&token, &one_domain(&key), AUD, now()),
        Err(JwtError::UnknownKid { .. })
    ));
}

#[test]
fn expired_is_refused_after_the_leeway() {
    let key = JwtSigningKey::generate().unwrap();
    let set = one_domain(&key);
    let t = secs(now());
    let claims = |exp: u64| json!({"sub": "spiffe://a.test/web", "aud": AUD, "exp": exp});
    let long_ago = es256(&key, &claims(t - 3600));
    let err = validate(&long_ago, &set, AUD, now()).unwrap_err();
    assert!(matches!(err, JwtError::Expired { .. }), "{err}");
    // 30 s past: inside the default leeway, outside a zero one.
    let just = es256(&key, &claims(t - 30));
    validate(&just, &set, AUD, now()).unwrap();
    assert!(matches!(
        validate_with_leeway(&just, &set, AUD, now(), Duration::ZERO),
        Err(JwtError::Expired { .. })
    ));
    // exp == now is already expired (RFC 7519 §4.1.4: now must be before exp).
    let at = es256(&key, &claims(t));
    assert!(matches!(
        validate_with_leeway(
            &at,
            &set,
            AUD,
            UNIX_EPOCH + Duration::from_secs(t),
            Duration::ZERO
        ),
        Err(JwtError::Expired { .. })
    ));
}

#[test]
fn minted_token_expires() {
    let key = JwtSigningKey::generate().unwrap();
    let minted_at = now() - Duration::from_secs(3600);
    let token = key
        .mint(
            &id("spiffe://a.test/web"),
            &[AUD],
            minted_at,
            Duration::from_secs(300),
        )
        .unwrap();
    assert!(matches!(
        validate(&token, &one_domain(&key), AUD, now()),
        Err(JwtError::Expired { .. })
    ));
}

#[test]
fn missing_aud_is_refused() {
    let key = JwtSigningKey::generate().unwrap();
    let set = one_domain(&key);
    let t = secs(now());
    for claims in [
        json!({"sub": "spiffe://a.test/web", "exp": t + 60}),
        json!({"sub": "spiffe://a.test/web", "exp": t + 60, "aud": []}),
        json!({"sub": "spiffe://a.test/web", "exp": t + 60, "aud": null}),
    ] {
        let err = validate(&es256(&key, &claims), &set, AUD, now()).unwrap_err();
        assert!(matches!(err, JwtError::MissingAud), "{claims}: {err}");
    }
    let claims = json!({"sub": "spiffe://a.test/web", "exp": t + 60, "aud": 7});
    assert!(matches!(
        validate(&es256(&key, &claims), &set, AUD, now()),
        Err(JwtError::Claims { .. })
    ));
}

#[test]
fn wrong_aud_is_refused() {
    let key = JwtSigningKey::generate().unwrap();
    let t = secs(now());
    let claims = json!({"sub": "spiffe://a.test/web", "exp": t + 60, "aud": ["billing", "spiffe://a.test/report"]});
    let err = validate(&es256(&key, &claims), &one_domain(&key), AUD, now()).unwrap_err();
    assert!(
        matches!(&err, JwtError::WrongAudience { expected, got } if expected == AUD && got.len() == 2),
        "{err}"
    );
}

#[test]
fn missing_exp_is_refused() {
    let key = JwtSigningKey::generate().unwrap();
    let claims = json!({"sub": "spiffe://a.test/web", "aud": AUD, "iat": secs(now())});
    let err = validate(&es256(&key, &claims), &one_domain(&key), AUD, now()).unwrap_err();
    assert!(matches!(err, JwtError::MissingExp), "{err}");
    let claims = json!({"sub": "spiffe://a.test/web", "aud": AUD, "exp": "tomorrow"});
    assert!(matches!(
        validate(&es256(&key, &claims), &one_domain(&key), AUD, now()),
        Err(JwtError::BadNumericDate { claim: "exp" })
    ));
}

#[test]
fn sub_in_a_trust_domain_without_bundle_is_refused() {
    let key = JwtSigningKey::generate().unwrap();
    let t = secs(now());
    let claims = json!({"sub": "spiffe://c.test/web", "aud": AUD, "exp": t + 60});
    let err = validate(&es256(&key, &claims), &one_domain(&key), AUD, now()).unwrap_err();
    assert!(
        matches!(&err, JwtError::NoBundle { td } if td.as_str() == "c.test"),
        "{err}"
    );
}

#[test]
fn a_key_of_another_trust_domain_is_refused() {
    // b.test's key signs a token claiming a.test: both bundles are known, but only a.test's
    // keys may vouch for an a.test ID.
    let a = JwtSigningKey::generate().unwrap();
    let b = JwtSigningKey::generate().unwrap();
    let set = two_domains(&a, &b);
    let forged = es256(&b, &good_claims());
    let err = validate(&forged, &set, AUD, now()).unwrap_err();
    assert!(
        matches!(&err, JwtError::UnknownKid { kid, td } if kid == b.key_id() && td.as_str() == "a.test"),
        "{err}"
    );
    // The same key is fine for its own domain.
    let t = secs(now());
    let own = es256(
        &b,
        &json!({"sub": "spiffe://b.test/x", "aud": AUD, "exp": t + 60}),
    );
    validate(&own, &set, AUD, now()).unwrap();
    // And a single bundle answers only for its own trust domain.
    let only_b = bundle_with("b.test", &[b.authority()]);
    assert!(matches!(
        validate(&forged, &only_b, AUD, now()),
        Err(JwtError::NoBundle { .. })
    ));
}

#[test]
fn a_one_mib_token_is_refused_before_decoding() {
    let key = JwtSigningKey::generate().unwrap();
    let token = "a".repeat(1024 * 1024);
    let err = validate(&token, &one_domain(&key), AUD, now()).unwrap_err();
    assert!(
        matches!(err, JwtError::TooLarge { len } if len == 1024 * 1024),
        "{err}"
    );
    assert!(err.to_string().contains("limit"));
    // A well-formed token padded past the limit with a huge claim is refused the same way.
    let t = secs(now());
    let big = json!({"sub": "spiffe://a.test/web", "aud": AUD, "exp": t + 60, "pad": "x".repeat(MAX_TOKEN_LEN)});
    assert!(matches!(
        validate(&es256(&key, &big), &one_domain(&key), AUD, now()),
        Err(JwtError::TooLarge { .. })
    ));
}

// === further rules ===

#[test]
fn tampered_claims_fail_the_signature() {
    let key = JwtSigningKey::generate().unwrap();
    let token = key
        .mint(
            &id("spiffe://a.test/web"),
            &[AUD],
            now(),
            Duration::from_secs(60),
        )
        .unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    let t = secs(now());
    let evil = json!({"sub": "spiffe://a.test/admin", "aud": AUD, "exp": t + 60});
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64(evil.to_string().as_bytes()),
        parts[2]
    );
    let err = validate(&tampered, &one_domain(&key), AUD, now()).unwrap_err();
    assert!(matches!(err, JwtError::BadSignature { .. }), "{err}");
}

#[test]
fn header_rules() {
    let key = JwtSigningKey::generate().unwrap();
    let set = one_domain(&key);
    let kid = key.key_id();
    let run = |header: Value| {
        validate(
            &forge(&header, &good_claims(), |m| key.sign_raw(m).unwrap()),
            &set,
            AUD,
            now(),
        )
    };
    run(json!({"alg": "ES256", "kid": kid, "typ": "JOSE"})).unwrap();
    run(json!({"alg": "ES256", "kid": kid})).unwrap();
    assert!(matches!(
        run(json!({"alg": "ES256", "kid": kid, "typ": "at+jwt"})),
        Err(JwtError::BadTyp { .. })
    ));
    assert!(matches!(
        run(json!({"alg": "ES256"})),
        Err(JwtError::MissingKid)
    ));
    assert!(matches!(
        run(json!({"alg": "ES256", "kid": ""})),
        Err(JwtError::MissingKid)
    ));
    assert!(matches!(
        run(json!({"kid": kid})),
        Err(JwtError::MissingAlg)
    ));
    assert!(matches!(
        run(json!({"alg": 1, "kid": kid})),
        Err(JwtError::AlgNotAllowed { .. })
    ));
    // §2: no other header, registered (crit, jku, x5u...) or private.
    for extra in ["crit", "jku", "jwk", "x5u", "cty", "private"] {
        let mut h = json!({"alg": "ES256", "kid": kid});
        h[extra] = json!("x");
        assert!(matches!(run(h), Err(JwtError::Header { .. })), "{extra}");
    }
    assert!(matches!(run(json!(["alg"])), Err(JwtError::Header { .. })));
    // A duplicated `alg` is refused, not resolved either way.
    let raw = format!(r#"{{"alg":"none","alg":"ES256","kid":"{kid}"}}"#);
    let signed = format!(
        "{}.{}",
        b64(raw.as_bytes()),
        b64(good_claims().to_string().as_bytes())
    );
    let token = format!(
        "{signed}.{}",
        b64(&key.sign_raw(signed.as_bytes()).unwrap())
    );
    assert!(matches!(
        validate(&token, &set, AUD, now()),
        Err(JwtError::Header { .. })
    ));
}

#[test]
fn only_compact_serialization() {
    let key = JwtSigningKey::generate().unwrap();
    let set = one_domain(&key);
    let token = es256(&key, &good_claims());
    for bad in [
        format!("{token}.x.y"),                      // five parts: JWE compact
        token.rsplit_once('.').unwrap().0.into(),    // two parts
        r#"{"payload":"x","signatures":[]}"#.into(), // JSON serialization
    ] {
        assert!(
            matches!(
                validate(&bad, &set, AUD, now()),
                Err(JwtError::NotCompact { .. })
            ),
            "{bad}"
        );
    }
    assert!(matches!(
        validate("", &set, AUD, now()),
        Err(JwtError::Empty)
    ));
    // Padding and the standard alphabet are not base64url.
    let padded = format!("{}=", token);
    assert!(matches!(
        validate(&padded, &set, AUD, now()),
        Err(JwtError::Base64 {
            part: "signature",
            ..
        })
    ));
    let plus = token.replacen(|c: char| c.is_ascii_alphanumeric(), "+", 1);
    assert!(matches!(
        validate(&plus, &set, AUD, now()),
        Err(JwtError::Base64 { part: "header", .. })
    ));
}

#[test]
fn sub_must_be_a_spiffe_id() {
    let key = JwtSigningKey::generate().unwrap();
    let t = secs(now());
    for (sub, want) in [
        (json!("https://a.test/web"), "BadSub"),
        (json!("spiffe://A.test/web"), "BadSub"),
        (json!(3), "Claims"),
        (Value::Null, "MissingSub"),
    ] {
        let mut claims = json!({"aud": AUD, "exp": t + 60});
        if !sub.is_null() {
            claims["sub"] = sub.clone();
        }
        let err = validate(&es256(&key, &claims), &one_domain(&key), AUD, now()).unwrap_err();
        let got = match err {
            JwtError::BadSub { .. } => "BadSub",
            JwtError::Claims { .. } => "Claims",
            JwtError::MissingSub => "MissingSub",
            other => panic!("{sub}: {other}"),
        };
        assert_eq!(got, want, "{sub}");
    }
}

#[test]
fn a_duplicated_claim_is_refused() {
    let key = JwtSigningKey::generate().unwrap();
    let t = secs(now());
    let raw = format!(
        r#"{{"sub":"spiffe://a.test/web","sub":"spiffe://a.test/admin","aud":"{AUD}","exp":{}}}"#,
        t + 60
    );
    let header = json!({"alg": "ES256", "kid": key.key_id()});
    let signed = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(raw.as_bytes())
    );
    let token = format!(
        "{signed}.{}",
        b64(&key.sign_raw(signed.as_bytes()).unwrap())
    );
    let err = validate(&token, &one_domain(&key), AUD, now()).unwrap_err();
    assert!(matches!(err, JwtError::Claims { .. }), "{err}");
}

#[test]
fn nbf_and_iat_in_the_future_are_refused() {
    let key = JwtSigningKey::generate().unwrap();
    let set = one_domain(&key);
    let t = secs(now());
    let nbf = json!({"sub": "spiffe://a.test/web", "aud": AUD, "exp": t + 7200, "nbf": t + 3600});
    assert!(matches!(
        validate(&es256(&key, &nbf), &set, AUD, now()),
        Err(JwtError::NotYetValid { .. })
    ));
    let iat = json!({"sub": "spiffe://a.test/web", "aud": AUD, "exp": t + 7200, "iat": t + 3600});
    assert!(matches!(
        validate(&es256(&key, &iat), &set, AUD, now()),
        Err(JwtError::IssuedInFuture { .. })
    ));
    // Fractional NumericDates are fine.
    let frac = json!({"sub": "spiffe://a.test/web", "aud": AUD, "exp": (t + 60) as f64 + 0.5, "iat": t as f64 - 0.25});
    assert_eq!(
        validate(&es256(&key, &frac), &set, AUD, now())
            .unwrap()
            .expiry,
        t + 60
    );
    let neg = json!({"sub": "spiffe://a.test/web", "aud": AUD, "exp": -1});
    assert!(matches!(
        validate(&es256(&key, &neg), &set, AUD, now()),
        Err(JwtError::BadNumericDate { .. })
    ));
}

#[test]
fn bundle_without_jwt_keys_is_refused() {
    let key = JwtSigningKey::generate().unwrap();
    let set = BundleSet::from_bundles([Bundle::new(td("a.test"))]).unwrap();
    let err = validate(&es256(&key, &good_claims()), &set, AUD, now()).unwrap_err();
    assert!(matches!(err, JwtError::NoJwtAuthorities { .. }), "{err}");
}

#[test]
fn key_must_fit_the_alg() {
    let key = JwtSigningKey::generate().unwrap();
    let set = one_domain(&key);
    for alg in ["ES384", "RS256", "PS256"] {
        let header = json!({"alg": alg, "kid": key.key_id()});
        let token = forge(&header, &good_claims(), |m| key.sign_raw(m).unwrap());
        let err = validate(&token, &set, AUD, now()).unwrap_err();
        assert!(
            matches!(err, JwtError::KeyAlgMismatch { .. }),
            "{alg}: {err}"
        );
    }
    let header = json!({"alg": "ES512", "kid": key.key_id()});
    let token = forge(&header, &good_claims(), |m| key.sign_raw(m).unwrap());
    assert!(matches!(
        validate(&token, &set, AUD, now()),
        Err(JwtError::AlgUnsupported { alg: Alg::ES512 })
    ));
    // A JWK that names its `alg` is used with that `alg` only.
    let mut restricted = key.authority();
    restricted.jwk.insert("alg".into(), "ES384".into());
    let set = BundleSet::from_bundles([bundle_with("a.test", &[restricted])]).unwrap();
    assert!(matches!(
        validate(&es256(&key, &good_claims()), &set, AUD, now()),
        Err(JwtError::KeyAlgMismatch { .. })
    ));
}

#[test]
fn es384_validates() {
    let rng = SystemRandom::new();
    let pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P384_SHA384_FIXED_SIGNING, &rng).unwrap();
    let kp = EcdsaKeyPair::from_pkcs8(
        &signature::ECDSA_P384_SHA384_FIXED_SIGNING,
        pkcs8.as_ref(),
        &rng,
    )
    .unwrap();
    let point = kp.public_key().as_ref();
    let jwk = json!({"kty": "EC", "crv": "P-384", "x": b64(&point[1..49]), "y": b64(&point[49..]), "use": "jwt-svid", "kid": "p384"});
    let authority = JwtAuthority {
        key_id: "p384".into(),
        jwk: jwk.as_object().unwrap().clone(),
    };
    let set = BundleSet::from_bundles([bundle_with("a.test", &[authority])]).unwrap();
    let header = json!({"alg": "ES384", "kid": "p384", "typ": "JWT"});
    let token = forge(&header, &good_claims(), |m| {
        kp.sign(&rng, m).unwrap().as_ref().to_vec()
    });
    validate(&token, &set, AUD, now()).unwrap();
}

#[test]
fn rsa_pkcs1_and_pss_validate() {
    // A fixed 2048-bit test key (PKCS#1 RSAPrivateKey DER); ring cannot generate RSA keys.
    let kp = RsaKeyPair::from_der(include_bytes!("testdata/rsa2048.der")).unwrap();
    let public = RsaPublicKeyComponents::<Vec<u8>>::from(kp.public());
    let jwk = json!({"kty": "RSA", "n": b64(&public.n), "e": b64(&public.e), "use": "jwt-svid", "kid": "rsa"});
    let authority = JwtAuthority {
        key_id: "rsa".into(),
        jwk: jwk.as_object().unwrap().clone(),
    };
    let set = BundleSet::from_bundles([bundle_with("a.test", &[authority])]).unwrap();
    let rng = SystemRandom::new();
    let cases: [(&str, &'static dyn signature::RsaEncoding); 6] = [
        ("RS256", &signature::RSA_PKCS1_SHA256),
        ("RS384", &signature::RSA_PKCS1_SHA384),
        ("RS512", &signature::RSA_PKCS1_SHA512),
        ("PS256", &signature::RSA_PSS_SHA256),
        ("PS384", &signature::RSA_PSS_SHA384),
        ("PS512", &signature::RSA_PSS_SHA512),
    ];
    for (alg, encoding) in cases {
        let header = json!({"alg": alg, "kid": "rsa"});
        let token = forge(&header, &good_claims(), |m| {
            let mut sig = vec![0; kp.public().modulus_len()];
            kp.sign(encoding, &rng, m, &mut sig).unwrap();
            sig
        });
        assert_eq!(
            validate(&token, &set, AUD, now())
                .unwrap()
                .header
                .alg
                .name(),
            alg
        );
        // PKCS#1 v1.5 and PSS are not interchangeable: the same header signed with the other
        // padding does not verify.
        let other: &'static dyn signature::RsaEncoding = if alg.starts_with("RS") {
            &signature::RSA_PSS_SHA256
        } else {
            &signature::RSA_PKCS1_SHA256
        };
        let header = json!({"alg": alg, "kid": "rsa"});
        let wrong = forge(&header, &good_claims(), |m| {
            let mut sig = vec![0; kp.public().modulus_len()];
            kp.sign(other, &rng, m, &mut sig).unwrap();
            sig
        });
        assert!(
            matches!(
                validate(&wrong, &set, AUD, now()),
                Err(JwtError::BadSignature { .. })
            ),
            "{alg}"
        );
    }
    // An EC token against the RSA key.
    let ec = JwtSigningKey::generate().unwrap();
    let header = json!({"alg": "ES256", "kid": "rsa"});
    let token = forge(&header, &good_claims(), |m| ec.sign_raw(m).unwrap());
    assert!(matches!(
        validate(&token, &set, AUD, now()),
        Err(JwtError::KeyAlgMismatch { .. })
    ));
}

// === no panics ===

fn set_for_fuzz() -> (JwtSigningKey, BundleSet) {
    let key = JwtSigningKey::generate().unwrap();
    let set = one_domain(&key);
    (key, set)
}

proptest! {
    #[test]
    fn arbitrary_strings_never_panic(s in "\\PC{0,300}") {
        let (_, set) = set_for_fuzz();
        prop_assert!(validate(&s, &set, AUD, now()).is_err());
    }

    #[test]
    fn arbitrary_segments_never_panic(
        h in proptest::collection::vec(any::<u8>(), 0..200),
        c in proptest::collection::vec(any::<u8>(), 0..200),
        s in proptest::collection::vec(any::<u8>(), 0..100),
        dots in 0usize..4,
    ) {
        let (_, set) = set_for_fuzz();
        let mut token = [b64(&h), b64(&c), b64(&s)].join(".");
        token.push_str(&".".repeat(dots));
        let _ = validate(&token, &set, AUD, now());
    }

    #[test]
    fn arbitrary_json_parts_never_panic(
        alg in prop_oneof![Just("ES256".to_string()), Just("RS256".to_string()), Just("none".to_string()), "\\PC{0,8}"],
        kid_is_real in any::<bool>(),
        sub in prop_oneof![Just("spiffe://a.test/web".to_string()), Just("spiffe://b.test/x".to_string()), "\\PC{0,40}"],
        aud in proptest::collection::vec("\\PC{0,10}", 0..3),
        exp in prop_oneof![Just(json!(null)), any::<i64>().prop_map(|v| json!(v)), any::<f64>().prop_map(|v| json!(v)), "\\PC{0,5}".prop_map(|v| json!(v))],
        extra in proptest::option::of("[a-z]{1,5}"),
    ) {
        let (key, set) = set_for_fuzz();
        let kid = if kid_is_real { key.key_id().to_string() } else { "k".into() };
        let mut header = json!({"alg": alg, "kid": kid});
        if let Some(extra) = &extra {
            header[extra.as_str()] = json!(1);
        }
        let claims = json!({"sub": sub, "aud": aud, "exp": exp});
        let token = forge(&header, &claims, |m| key.sign_raw(m).unwrap());
        let _ = validate(&token, &set, AUD, now());
    }
}
