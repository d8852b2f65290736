//! Key formats and key types rcgen cannot produce, from the checked-in fixtures in
//! `federation/testdata/` (see `gen.sh` there): PKCS#1 and SEC1 private keys, RSA authorities.
// Helpers outside #[test] fns unwrap too: a panic there is a test failure with a backtrace.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use fedgate_federation::bundle::{Bundle, BundleError, EntryError};
use fedgate_federation::svid::verify::verify;
use fedgate_federation::{SvidError, X509Svid};
use rcgen::KeyPair;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use serde_json::{json, Value};
use support::{now, td, testdata, LeafSpec, TestCa};

const ID: &str = "spiffe://cluster-a.test/ns/x/sa/y";

/// Issues a leaf for the PKCS#8 fixture `pkcs8`, then loads it with the key PEM `key_pem`.
fn load_with(pkcs8: &str, key_pem: &str) -> Result<X509Svid, SvidError> {
    let ca = TestCa::new("cluster-a.test");
    let issued = ca.issue_with_key(
        &LeafSpec::svid(ID),
        KeyPair::from_pem(&testdata(pkcs8)).unwrap(),
    );
    let svid = X509Svid::from_pem(issued.chain_pem().as_bytes(), key_pem.as_bytes())?;
    verify(svid.chain(), &ca.bundle_set(), now()).unwrap();
    Ok(svid)
}

#[test]
fn pkcs1_rsa_key_is_accepted() {
    let svid = load_with("rsa-key.pkcs8.pem", &testdata("rsa-key.pkcs1.pem")).unwrap();
    assert_eq!(svid.id().to_string(), ID);
}

#[test]
fn sec1_ec_key_is_accepted() {
    let svid = load_with("ec-key.pkcs8.pem", &testdata("ec-key.sec1.pem")).unwrap();
    assert_eq!(svid.id().to_string(), ID);
}

#[test]
fn key_of_another_type_is_a_mismatch() {
    let err = load_with("ec-key.pkcs8.pem", &testdata("rsa-key.pkcs1.pem")).unwrap_err();
    assert!(matches!(err, SvidError::KeyMismatch), "{err:?}");
}

fn rsa_ca() -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(testdata("rsa-ca.pem").as_bytes()).unwrap()
}

#[test]
fn rsa_authority_round_trips_with_n_and_e() {
    let td = td("rsa.test");
    let mut b = Bundle::new(td.clone());
    b.add_x509_authority(rsa_ca());
    let json = b.to_json();
    let v: Value = serde_json::from_slice(&json).unwrap();
    let key = &v["keys"][0];
    assert_eq!(key["kty"], "RSA");
    assert_eq!(key["e"], "AQAB");
    assert!(key["n"].as_str().unwrap().len() > 300);
    let (back, warnings) = Bundle::parse(&td, &json).unwrap();
    assert!(warnings.is_empty());
    assert!(back.same_authorities(&b));
    assert_eq!(back.trust_anchors().len(), 1);
    assert!(back.trust_expires_at().is_some());
}

#[test]
fn rsa_authority_with_wrong_modulus_is_refused() {
    let td = td("rsa.test");
    let mut b = Bundle::new(td.clone());
    b.add_x509_authority(rsa_ca());
    let mut v: Value = serde_json::from_slice(&b.to_json()).unwrap();
    v["keys"][0]["n"] = json!("AQAB");
    match Bundle::parse(&td, v.to_string().as_bytes()) {
        Err(BundleError::BadEntry {
            index: 0,
            reason: EntryError::KeyParamMismatch("n"),
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    v["keys"][0]["kty"] = json!("EC");
    match Bundle::parse(&td, v.to_string().as_bytes()) {
        Err(BundleError::BadEntry {
            reason: EntryError::KtyMismatch { .. },
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
}
