//! JWT-SVID validation and minting (`federation/src/jwt/`).
//!
//! The first input byte is a knob. Bit 0 clear: the rest (UTF-8, lossy) is a token, validated
//! for audience `svc` against a set holding `a.test` (one fresh ES256 key, made once per
//! process) and `b.test` (no JWT keys). Bit 0 set: the rest is split at the first NUL into an
//! audience and a path, and a token is minted with that key and validated back.
//!
//! Asserts:
//! * validation never panics, whatever the text;
//! * a token it accepts is at most `MAX_TOKEN_LEN` bytes, names `a.test` (the only trust domain
//!   with a key), the key's `kid`, `ES256`, the audience `svc`, and is not expired: nothing
//!   verifies without the key;
//! * a minted token (when the ID and audience are usable) validates to exactly the ID and
//!   audience it was minted with, and fails for another audience.
#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fedgate_federation::jwt::{self, Alg, JwtError, JwtSigningKey, MAX_TOKEN_LEN};
use fedgate_federation::{Bundle, BundleSet, SpiffeId, TrustDomain};
use libfuzzer_sys::fuzz_target;

struct Fixture {
    key: JwtSigningKey,
    set: BundleSet,
    td: TrustDomain,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let key = JwtSigningKey::generate().expect("generate a P-256 key");
        let td = TrustDomain::new("a.test").expect("valid trust domain");
        let mut a = Bundle::new(td.clone());
        assert!(a.add_jwt_authority(key.authority()));
        let b = Bundle::new(TrustDomain::new("b.test").expect("valid trust domain"));
        let set = BundleSet::from_bundles([a, b]).expect("two trust domains");
        Fixture { key, set, td }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&knob, rest)) = data.split_first() else {
        return;
    };
    let f = fixture();
    let now = SystemTime::now();
    if knob & 1 == 0 {
        let token = String::from_utf8_lossy(rest);
        if let Ok(svid) = jwt::validate(&token, &f.set, "svc", now) {
            assert!(token.len() <= MAX_TOKEN_LEN);
            assert_eq!(svid.spiffe_id.trust_domain(), &f.td);
            assert_eq!(svid.header.kid, f.key.key_id());
            assert_eq!(svid.header.alg, Alg::ES256);
            assert!(svid.audience.iter().any(|a| a == "svc"));
            let now_secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
            assert!(svid.expiry + jwt::DEFAULT_LEEWAY.as_secs() > now_secs);
        }
        return;
    }
    let text = String::from_utf8_lossy(rest);
    let (audience, path) = text.split_once('\0').unwrap_or((&text, "/w"));
    let Ok(id) = SpiffeId::from_parts(&f.td, path) else {
        return;
    };
    let Ok(token) = f.key.mint(&id, &[audience], now, Duration::from_secs(60)) else {
        assert!(audience.is_empty(), "mint refused a non-empty audience");
        return;
    };
    match jwt::validate(&token, &f.set, audience, now) {
        Ok(svid) => {
            assert_eq!(svid.spiffe_id, id);
            assert_eq!(svid.audience, [audience]);
        }
        // A long audience or ID can push the token over the size limit; nothing else may fail.
        Err(JwtError::TooLarge { .. }) => assert!(token.len() > MAX_TOKEN_LEN),
        Err(e) => panic!("a freshly minted token does not validate: {e}"),
    }
    let other = format!("{audience}x");
    assert!(matches!(
        jwt::validate(&token, &f.set, &other, now),
        Err(JwtError::WrongAudience { .. } | JwtError::TooLarge { .. })
    ));
});
