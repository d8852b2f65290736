//! The SPIFFE bundle (JWKS) document parser, `Bundle::parse` (`federation/src/bundle/document.rs`).
//!
//! Asserts:
//! * parsing never panics, whatever the bytes;
//! * every accepted X.509 authority is a usable webpki trust anchor (one anchor per authority);
//! * for a document that parses, `to_json` → `parse` round-trips: the reparse succeeds without
//!   warnings, yields the same authorities, sequence and refresh hint, and serializing again
//!   gives the same bytes (the serialized form is a fixed point).
#![no_main]

use fedgate_federation::{Bundle, TrustDomain};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let td = TrustDomain::new("example.org").expect("valid trust domain");
    let Ok((bundle, _warnings)) = Bundle::parse(&td, data) else {
        return;
    };
    assert_eq!(bundle.trust_domain(), &td);
    assert_eq!(
        bundle.trust_anchors().len(),
        bundle.x509_authorities().len(),
        "an accepted authority is not a trust anchor"
    );

    let json = bundle.to_json();
    let (again, warnings) = Bundle::parse(&td, &json).unwrap_or_else(|e| {
        panic!(
            "serialized bundle does not parse: {e}\n{}",
            String::from_utf8_lossy(&json)
        )
    });
    assert!(
        warnings.is_empty(),
        "serialized bundle has warnings: {warnings:?}"
    );
    assert!(again.same_authorities(&bundle));
    assert_eq!(again.x509_authorities(), bundle.x509_authorities());
    assert_eq!(again.jwt_authorities(), bundle.jwt_authorities());
    assert_eq!(again.sequence(), bundle.sequence());
    assert_eq!(again.refresh_hint(), bundle.refresh_hint());
    assert_eq!(again.to_json(), json, "serialization is not a fixed point");
});
