//! X509-SVID loading and validation (X509-SVID.md) against real rcgen certificates.
// Helpers outside #[test] fns unwrap too: a panic there is a test failure with a backtrace.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use fedgate_federation::bundle::{Bundle, BundleSet};
use fedgate_federation::svid::verify::{spiffe_id_of, verify, verify_for, Usage};
use fedgate_federation::{SvidError, VerifyError, X509Svid};
use rcgen::{ExtendedKeyUsagePurpose, KeyUsagePurpose};
use support::{now, system_time_days, td, LeafSpec, TestCa};

/// A named leaf spec and the predicate its refusal must satisfy.
type Case = (&'static str, LeafSpec, fn(&VerifyError) -> bool);

fn a_id() -> &'static str {
    "spiffe://cluster-a.test/ns/x/sa/y"
}

fn check(ca: &TestCa, spec: &LeafSpec) -> Result<String, VerifyError> {
    verify(&ca.chain(spec), &ca.bundle_set(), now()).map(|v| v.id().to_string())
}

#[test]
fn well_formed_svid_verifies_with_its_own_bundle() {
    let ca = TestCa::new("cluster-a.test");
    let v = verify(&ca.chain(&LeafSpec::svid(a_id())), &ca.bundle_set(), now()).unwrap();
    assert_eq!(v.id().to_string(), a_id());
    assert_eq!(v.not_after(), system_time_days(30));
    for usage in [Usage::Server, Usage::Client, Usage::Any] {
        verify_for(
            &ca.chain(&LeafSpec::svid(a_id())),
            &ca.bundle_set(),
            now(),
            usage,
        )
        .unwrap();
    }
}

#[test]
fn chain_through_an_intermediate_verifies() {
    let root = TestCa::new("cluster-a.test");
    let child = root.child_ca().child_ca();
    let chain = child.chain(&LeafSpec::svid(a_id()));
    assert_eq!(chain.len(), 3);
    assert!(verify(&chain, &root.bundle_set(), now()).is_ok());
    // Without the intermediates the issuer is unknown.
    let err = verify(&chain[..1], &root.bundle_set(), now()).unwrap_err();
    assert!(matches!(err, VerifyError::UnknownIssuer(_)), "{err:?}");
}

/// threat-model invariant 1: with both bundles loaded, a leaf claiming cluster-a but
/// signed by cluster-b's CA is refused. Verifying against a merged set of anchors would
/// accept it.
#[test]
fn trust_domain_confusion_is_refused() {
    let a = TestCa::new("cluster-a.test");
    let b = TestCa::new("cluster-b.test");
    let set = BundleSet::from_bundles([a.bundle(), b.bundle()]).unwrap();
    let forged = b.chain(&LeafSpec::svid(a_id()));
    match verify(&forged, &set, now()) {
        Err(VerifyError::UnknownIssuer(td)) => assert_eq!(td.as_str(), "cluster-a.test"),
        other => panic!("expected UnknownIssuer, got {other:?}"),
    }
    // Control: a merged bundle (cluster-b's root filed under cluster-a) would accept it, so the
    // refusal above is due to per-trust-domain anchors.
    let mut merged = a.bundle();
    merged.add_x509_authority(b.root_der());
    let merged = BundleSet::from_bundles([merged]).unwrap();
    assert!(verify(&forged, &merged, now()).is_ok());
}

#[test]
fn no_bundle_and_empty_bundle_are_distinct_refusals() {
    let a = TestCa::new("cluster-a.test");
    let b = TestCa::new("cluster-b.test");
    let chain = a.chain(&LeafSpec::svid(a_id()));
    match verify(&chain, &b.bundle_set(), now()) {
        Err(VerifyError::NoBundleForTrustDomain(td)) => assert_eq!(td.as_str(), "cluster-a.test"),
        other => panic!("{other:?}"),
    }
    let empty = BundleSet::from_bundles([Bundle::new(td("cluster-a.test"))]).unwrap();
    assert!(matches!(
        verify(&chain, &empty, now()),
        Err(VerifyError::EmptyBundle(_))
    ));
    assert!(matches!(
        verify(&[], &a.bundle_set(), now()),
        Err(VerifyError::EmptyChain)
    ));
}

#[test]
fn leaf_constraints_are_enforced() {
    let ca = TestCa::new("cluster-a.test");
    let base = LeafSpec::svid(a_id());
    let cases: Vec<Case> = vec![
        (
            "leaf is CA",
            LeafSpec {
                is_ca: true,
                ..base.clone()
            },
            |e| matches!(e, VerifyError::LeafIsCa),
        ),
        (
            "keyCertSign",
            LeafSpec {
                key_usages: vec![
                    KeyUsagePurpose::DigitalSignature,
                    KeyUsagePurpose::KeyCertSign,
                ],
                ..base.clone()
            },
            |e| matches!(e, VerifyError::LeafHasKeyCertSign),
        ),
        (
            "cRLSign",
            LeafSpec {
                key_usages: vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::CrlSign],
                ..base.clone()
            },
            |e| matches!(e, VerifyError::LeafHasCrlSign),
        ),
        (
            "no digitalSignature",
            LeafSpec {
                key_usages: vec![KeyUsagePurpose::KeyEncipherment],
                ..base.clone()
            },
            |e| matches!(e, VerifyError::LeafMissingDigitalSignature),
        ),
        (
            "no key usage at all",
            LeafSpec {
                key_usages: vec![],
                ..base.clone()
            },
            |e| matches!(e, VerifyError::LeafMissingDigitalSignature),
        ),
        (
            "two URI SANs",
            LeafSpec {
                uris: vec![a_id().into(), "spiffe://cluster-a.test/other".into()],
                ..base.clone()
            },
            |e| matches!(e, VerifyError::MultipleUriSans(2)),
        ),
        (
            "no URI SAN",
            LeafSpec {
                uris: vec![],
                ..base.clone()
            },
            |e| matches!(e, VerifyError::MissingUriSan),
        ),
        (
            "not a SPIFFE ID",
            LeafSpec {
                uris: vec!["https://cluster-a.test/x".into()],
                ..base.clone()
            },
            |e| matches!(e, VerifyError::InvalidSpiffeId { .. }),
        ),
        (
            "root path",
            LeafSpec {
                uris: vec!["spiffe://cluster-a.test".into()],
                ..base.clone()
            },
            |e| matches!(e, VerifyError::LeafIdWithoutPath(_)),
        ),
        (
            "expired",
            LeafSpec {
                not_before_days: -30,
                not_after_days: -1,
                ..base.clone()
            },
            |e| matches!(e, VerifyError::Expired { .. }),
        ),
        (
            "not yet valid",
            LeafSpec {
                not_before_days: 1,
                not_after_days: 30,
                ..base.clone()
            },
            |e| matches!(e, VerifyError::NotYetValid { .. }),
        ),
    ];
    for (name, spec, want) in cases {
        match check(&ca, &spec) {
            Err(e) => assert!(want(&e), "{name}: wrong error {e:?}"),
            Ok(id) => panic!("{name}: accepted {id}"),
        }
    }
}

#[test]
fn extended_key_usage_is_checked_per_role() {
    let ca = TestCa::new("cluster-a.test");
    let server_only = LeafSpec {
        ekus: vec![ExtendedKeyUsagePurpose::ServerAuth],
        ..LeafSpec::svid(a_id())
    };
    let chain = ca.chain(&server_only);
    let set = ca.bundle_set();
    assert!(verify_for(&chain, &set, now(), Usage::Server).is_ok());
    assert!(verify(&chain, &set, now()).is_ok());
    assert!(matches!(
        verify_for(&chain, &set, now(), Usage::Client),
        Err(VerifyError::WrongUsage("client"))
    ));
}

#[test]
fn error_messages_name_the_problem() {
    let a = TestCa::new("cluster-a.test");
    let err = verify(&a.chain(&LeafSpec::svid(a_id())), &BundleSet::new(), now()).unwrap_err();
    assert!(err.to_string().contains("cluster-a.test"), "{err}");
    let err = check(
        &a,
        &LeafSpec {
            is_ca: true,
            ..LeafSpec::svid(a_id())
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("X509-SVID.md"), "{err}");
}

#[test]
fn spiffe_id_of_reads_the_uri_san() {
    let ca = TestCa::new("cluster-a.test");
    let chain = ca.chain(&LeafSpec::svid(a_id()));
    assert_eq!(spiffe_id_of(&chain[0]).unwrap().to_string(), a_id());
    assert!(spiffe_id_of(&ca.root_der()).unwrap().path().is_empty());
}

#[test]
fn svid_from_pem_and_load() {
    let ca = TestCa::new("cluster-a.test");
    let issued = ca.child_ca().issue(&LeafSpec::svid(a_id()));
    let chain_pem = issued.chain_pem();
    let key_pem = issued.key.serialize_pem();
    let svid = X509Svid::from_pem(chain_pem.as_bytes(), key_pem.as_bytes()).unwrap();
    assert_eq!(svid.id().to_string(), a_id());
    assert_eq!(svid.chain().len(), 2);
    assert!(!format!("{svid:?}").contains(&key_pem[30..60]));

    let dir = tempfile::tempdir().unwrap();
    let (c, k) = (dir.path().join("svid.pem"), dir.path().join("svid.key"));
    std::fs::write(&c, &chain_pem).unwrap();
    std::fs::write(&k, &key_pem).unwrap();
    assert_eq!(X509Svid::load(&c, &k).unwrap().id().to_string(), a_id());

    // Errors name the file.
    std::fs::write(&k, "").unwrap();
    let err = X509Svid::load(&c, &k).unwrap_err();
    assert!(matches!(&err, SvidError::InFiles { .. }));
    assert!(err.to_string().contains("svid.key"), "{err}");
    let err = X509Svid::load(&dir.path().join("missing.pem"), &k).unwrap_err();
    assert!(matches!(&err, SvidError::Read { .. }) && err.to_string().contains("missing.pem"));
}

#[test]
fn svid_pem_errors() {
    let ca = TestCa::new("cluster-a.test");
    let issued = ca.issue(&LeafSpec::svid(a_id()));
    let other = ca.issue(&LeafSpec::svid(a_id()));
    let chain_pem = issued.chain_pem();
    let key_pem = issued.key.serialize_pem();

    let err = X509Svid::from_pem(b"", key_pem.as_bytes()).unwrap_err();
    assert!(matches!(err, SvidError::Empty("certificate chain")));
    let err = X509Svid::from_pem(chain_pem.as_bytes(), b"\n").unwrap_err();
    assert!(matches!(err, SvidError::Empty("private key")));

    // Key and chain swapped: the labels found and expected are both named.
    let err = X509Svid::from_pem(key_pem.as_bytes(), chain_pem.as_bytes()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("PRIVATE KEY") && msg.contains("expected CERTIFICATE"),
        "{msg}"
    );

    let err =
        X509Svid::from_pem(chain_pem.as_bytes(), other.key.serialize_pem().as_bytes()).unwrap_err();
    assert!(matches!(err, SvidError::KeyMismatch), "{err:?}");

    let two_keys = format!("{key_pem}{}", other.key.serialize_pem());
    let err = X509Svid::from_pem(chain_pem.as_bytes(), two_keys.as_bytes()).unwrap_err();
    assert!(matches!(err, SvidError::MultipleKeys(2)));

    let no_uri = ca.issue(&LeafSpec {
        uris: vec![],
        ..LeafSpec::svid(a_id())
    });
    let err = X509Svid::from_pem(
        no_uri.chain_pem().as_bytes(),
        no_uri.key.serialize_pem().as_bytes(),
    )
    .unwrap_err();
    assert!(
        matches!(err, SvidError::Leaf(VerifyError::MissingUriSan)),
        "{err:?}"
    );

    let truncated = &chain_pem[..chain_pem.len() - 30];
    let err = X509Svid::from_pem(truncated.as_bytes(), key_pem.as_bytes()).unwrap_err();
    assert!(matches!(err, SvidError::Pem { .. }), "{err:?}");
}

#[test]
fn pkcs8_body_under_sec1_label_is_refused_as_unusable() {
    // `EC PRIVATE KEY` is an accepted label, so this reaches the key parser, which refuses a
    // PKCS#8 body where SEC1 is announced.
    let ca = TestCa::new("cluster-a.test");
    let issued = ca.issue(&LeafSpec::svid(a_id()));
    let pkcs8 = issued.key.serialize_pem();
    let relabelled = pkcs8.replace("PRIVATE KEY", "EC PRIVATE KEY");
    let err = X509Svid::from_pem(issued.chain_pem().as_bytes(), relabelled.as_bytes()).unwrap_err();
    // A PKCS#8 body under a SEC1 label is not a valid SEC1 key: refused as unusable.
    assert!(matches!(err, SvidError::UnsupportedKey(_)), "{err:?}");
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config::with_cases(128))]

    /// Corrupting any byte of a valid leaf never panics the parser or the validator.
    #[test]
    fn corrupted_leaf_never_panics(pos in 0usize..4096, byte in proptest::prelude::any::<u8>()) {
        use std::sync::OnceLock;
        static FIXTURE: OnceLock<(Vec<u8>, BundleSet)> = OnceLock::new();
        let (leaf, set) = FIXTURE.get_or_init(|| {
            let ca = TestCa::new("cluster-a.test");
            (ca.chain(&LeafSpec::svid(a_id()))[0].to_vec(), ca.bundle_set())
        });
        let mut der = leaf.clone();
        let i = pos % der.len();
        der[i] = byte;
        let der = rustls_pki_types::CertificateDer::from(der);
        let _ = spiffe_id_of(&der);
        let _ = verify(std::slice::from_ref(&der), set, now());
    }
}

// === roles along the verified path (X509-SVID.md §4.3, threat model: bundle expiry) ===

#[test]
fn intermediate_without_key_cert_sign_is_refused() {
    let root = TestCa::new("cluster-a.test");
    let cases: Vec<(&str, Option<Vec<KeyUsagePurpose>>)> = vec![
        (
            "digitalSignature only",
            Some(vec![KeyUsagePurpose::DigitalSignature]),
        ),
        ("cRLSign only", Some(vec![KeyUsagePurpose::CrlSign])),
        ("no key usage extension", None),
    ];
    for (name, kus) in cases {
        let bad = root.child_ca_with(kus.clone());
        let chain = bad.chain(&LeafSpec::svid(a_id()));
        match verify(&chain, &root.bundle_set(), now()) {
            Err(e @ VerifyError::IntermediateMissingKeyCertSign { .. }) if kus.is_some() => {
                assert!(e.to_string().contains("keyCertSign"), "{e}");
                assert!(e.to_string().contains("intermediate 1"), "{name}: {e}");
            }
            Err(VerifyError::IntermediateWithoutKeyUsage { subject }) if kus.is_none() => {
                assert!(subject.contains("intermediate 1"), "{subject}")
            }
            other => panic!("{name}: expected a keyCertSign refusal, got {other:?}"),
        }
        // Deeper in the path too: a good intermediate below the bad one.
        let chain = bad.child_ca().chain(&LeafSpec::svid(a_id()));
        assert_eq!(chain.len(), 3);
        let err = verify(&chain, &root.bundle_set(), now()).unwrap_err();
        assert!(
            matches!(
                err,
                VerifyError::IntermediateMissingKeyCertSign { .. }
                    | VerifyError::IntermediateWithoutKeyUsage { .. }
            ),
            "{name}: {err:?}"
        );
        for usage in [Usage::Server, Usage::Client] {
            assert!(verify_for(&chain, &root.bundle_set(), now(), usage).is_err());
        }
    }
}

/// Only certificates of the verified path count: a presented intermediate that webpki
/// tries first and that lacks keyCertSign does not hide a valid path through its twin.
#[test]
fn unusable_extra_intermediate_does_not_refuse_a_valid_path() {
    let root = TestCa::new("cluster-a.test");
    let good = root.child_ca();
    let bad_twin = good.reissued_by(&root, Some(vec![KeyUsagePurpose::DigitalSignature]));
    let mut chain = good.chain(&LeafSpec::svid(a_id()));
    // Bad twin first, so webpki builds (and our check refuses) the path through it first.
    chain.insert(1, bad_twin.clone());
    assert_eq!(chain.len(), 3);
    assert!(verify(&chain, &root.bundle_set(), now()).is_ok());
    // Control: with only the twin, the same leaf is refused.
    let only_bad = vec![chain[0].clone(), bad_twin];
    assert!(matches!(
        verify(&only_bad, &root.bundle_set(), now()),
        Err(VerifyError::IntermediateMissingKeyCertSign { .. })
    ));
}

#[test]
fn chain_to_an_expired_or_not_yet_valid_anchor_is_refused() {
    let expired = TestCa::with_validity("cluster-a.test", -365, -1);
    let err = verify(
        &expired.chain(&LeafSpec::svid(a_id())),
        &expired.bundle_set(),
        now(),
    )
    .unwrap_err();
    match &err {
        VerifyError::AnchorExpired { td, not_after, .. } => {
            assert_eq!(td.as_str(), "cluster-a.test");
            assert!(*not_after < support::now_secs() as i64);
        }
        other => panic!("expected AnchorExpired, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("cluster-a.test") && msg.contains("expired"),
        "{msg}"
    );
    // Through an intermediate as well.
    let chain = expired.child_ca().chain(&LeafSpec::svid(a_id()));
    assert!(matches!(
        verify(&chain, &expired.bundle_set(), now()),
        Err(VerifyError::AnchorExpired { .. })
    ));

    let future = TestCa::with_validity("cluster-a.test", 1, 365);
    assert!(matches!(
        verify(
            &future.chain(&LeafSpec::svid(a_id())),
            &future.bundle_set(),
            now()
        ),
        Err(VerifyError::AnchorNotYetValid { .. })
    ));
}

/// During rotation a bundle holds several roots: only the anchor of the verified path counts.
#[test]
fn expired_root_beside_a_valid_root_only_refuses_its_own_chains() {
    let old = TestCa::with_validity("cluster-a.test", -365, -1);
    let new = TestCa::new("cluster-a.test");
    for order in [[&old, &new], [&new, &old]] {
        let mut bundle = Bundle::new(td("cluster-a.test"));
        for ca in order {
            bundle.add_x509_authority(ca.root_der());
        }
        let set = BundleSet::from_bundles([bundle]).unwrap();
        assert!(verify(&new.chain(&LeafSpec::svid(a_id())), &set, now()).is_ok());
        assert!(verify(&new.child_ca().chain(&LeafSpec::svid(a_id())), &set, now()).is_ok());
        assert!(matches!(
            verify(&old.chain(&LeafSpec::svid(a_id())), &set, now()),
            Err(VerifyError::AnchorExpired { .. })
        ));
    }
}

#[test]
fn anchor_validity_is_judged_at_the_validation_time() {
    // Valid now, expired in 400 days: the same chain verifies now and is refused then.
    let ca = TestCa::with_validity("cluster-a.test", -1, 400);
    let chain = ca.chain(&LeafSpec {
        not_after_days: 1000,
        ..LeafSpec::svid(a_id())
    });
    assert!(verify(&chain, &ca.bundle_set(), now()).is_ok());
    let later = rustls_pki_types::UnixTime::since_unix_epoch(std::time::Duration::from_secs(
        support::now_secs() + 401 * 86_400,
    ));
    assert!(matches!(
        verify(&chain, &ca.bundle_set(), later),
        Err(VerifyError::AnchorExpired { .. })
    ));
}
