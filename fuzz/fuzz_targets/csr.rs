//! The CSR checks of the bridge CA's issuing endpoint (`ca serve`): `ca::serve::policy::inspect_csr`, which
//! the endpoint runs on every request body (at most `MAX_CSR_BYTES`), followed, for CSRs it
//! accepts, by `Ca::issue_from_csr` as the endpoint does after the policy grants the request.
//!
//! Asserts:
//! * `inspect_csr` never panics, whatever the bytes;
//! * a CSR it accepts names exactly one valid SPIFFE ID, and the CA then signs it: the leaf
//!   carries the CSR's public key, exactly the granted SPIFFE ID (never the names the CSR asked
//!   for) and is not a CA.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use fedgate::ca::serve::policy::{inspect_csr, MAX_CSR_BYTES};
use fedgate::ca::{describe, Ca, InitOptions};
use fedgate_federation::{SpiffeId, TrustDomain};
use libfuzzer_sys::fuzz_target;
use x509_parser::prelude::{FromDer, X509Certificate, X509CertificationRequest};

const GRANTED: &str = "spiffe://bridge.test/gateway/cluster-a";

fuzz_target!(|data: &[u8]| {
    if data.len() > MAX_CSR_BYTES {
        return;
    }
    let Ok(info) = inspect_csr(data) else {
        return;
    };
    assert_eq!(
        SpiffeId::parse(&info.requested.to_string()).as_ref(),
        Ok(&info.requested)
    );

    let granted = SpiffeId::parse(GRANTED).expect("valid ID");
    let chain = ca()
        .issue_from_csr(data, &granted, Duration::from_secs(3600))
        .unwrap_or_else(|e| panic!("inspect_csr accepted a CSR the CA cannot sign: {e}"));
    let leaf = describe::describe(&chain[0]).expect("issued leaf parses");
    assert_eq!(leaf.uri_sans, vec![GRANTED.to_string()]);
    assert!(leaf.dns_sans.is_empty());
    assert!(!leaf.is_ca);

    let (_, csr) = X509CertificationRequest::from_der(data).expect("accepted CSR parses");
    let (_, cert) = X509Certificate::from_der(&chain[0]).expect("issued leaf parses");
    assert_eq!(
        cert.tbs_certificate.subject_pki.raw, csr.certification_request_info.subject_pki.raw,
        "the leaf does not carry the CSR's key"
    );
});

/// One in-memory CA for the whole run (key generation is slow).
fn ca() -> &'static Ca {
    static CA: OnceLock<Ca> = OnceLock::new();
    CA.get_or_init(|| {
        let td = TrustDomain::new("bridge.test").expect("valid trust domain");
        let opts = InitOptions {
            ttl: Duration::from_secs(365 * 24 * 3600),
            refresh_hint: None,
            intermediate: true,
        };
        Ca::init(&td, &opts).expect("CA")
    })
}
