//! SPIFFE ID and trust domain parsing (`federation/src/spiffe_id.rs`).
//!
//! Asserts:
//! * parsing never panics;
//! * an accepted ID's `Display` is exactly the input (parsing is strict: no case folding, no
//!   normalisation), and parsing that text again gives an equal ID;
//! * its parts are consistent: the path is empty or starts with `/`, `from_parts` rebuilds the
//!   same ID, the trust domain parses on its own and as `spiffe://<td>`, and the ID is a member
//!   of its trust domain;
//! * `TrustDomain::new` on the input agrees with `SpiffeId::parse` for inputs with a scheme, and
//!   an accepted trust domain's `id_string()` parses to its own `id()`;
//! * the documented length limits hold for everything accepted.
#![no_main]

use fedgate_federation::spiffe_id::{MAX_ID_LEN, MAX_TRUST_DOMAIN_LEN};
use fedgate_federation::{SpiffeId, TrustDomain};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };

    if let Ok(id) = SpiffeId::parse(text) {
        assert_eq!(id.to_string(), text);
        assert!(text.len() <= MAX_ID_LEN);
        let again = SpiffeId::parse(&id.to_string()).expect("Display output parses");
        assert_eq!(again, id);
        assert_eq!(text.parse::<SpiffeId>().ok().as_ref(), Some(&id));

        let td = id.trust_domain();
        assert!(!td.as_str().is_empty() && td.as_str().len() <= MAX_TRUST_DOMAIN_LEN);
        assert!(id.path().is_empty() || id.path().starts_with('/'));
        assert!(id.member_of(td));
        assert_eq!(TrustDomain::new(td.as_str()).as_ref(), Ok(td));
        assert_eq!(TrustDomain::new(&td.id_string()).as_ref(), Ok(td));
        assert_eq!(SpiffeId::from_parts(td, id.path()).as_ref(), Ok(&id));

        // A trust domain is an ID without a path.
        let as_td = TrustDomain::new(text);
        if id.path().is_empty() {
            assert_eq!(as_td.as_ref(), Ok(td));
        } else {
            assert!(as_td.is_err());
        }
    }

    if let Ok(td) = TrustDomain::new(text) {
        assert!(!td.as_str().is_empty() && td.as_str().len() <= MAX_TRUST_DOMAIN_LEN);
        let id = SpiffeId::parse(&td.id_string()).expect("a trust domain's ID parses");
        assert_eq!(id, td.id());
        assert_eq!(id.path(), "");
        assert_eq!(&td.to_string(), td.as_str());
        if text.contains("://") {
            assert_eq!(td.id_string(), text);
        } else {
            assert_eq!(td.as_str(), text);
        }
    }

    // `from_parts` with a fixed trust domain and the input as the path.
    let td = TrustDomain::new("example.org").expect("valid trust domain");
    if let Ok(id) = SpiffeId::from_parts(&td, text) {
        assert_eq!(id.path(), text);
        assert_eq!(SpiffeId::parse(&id.to_string()).as_ref(), Ok(&id));
    }
});
