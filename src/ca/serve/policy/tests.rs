//! Tests of the issuing policy and the CSR checks (rcgen-made CSRs, hostile bytes).

use rcgen::{CertificateParams, CustomExtension, KeyPair, SanType};

use super::*;

fn id(s: &str) -> SpiffeId {
    SpiffeId::parse(s).unwrap()
}

fn td(s: &str) -> TrustDomain {
    TrustDomain::new(s).unwrap()
}

const HOUR: Duration = Duration::from_secs(3600);

fn policy() -> Policy {
    Policy::new(
        td("bridge.test"),
        [
            (
                id("spiffe://a.test/ns/fedgate/sa/gateway"),
                id("spiffe://bridge.test/gateway/a"),
            ),
            (
                id("spiffe://b.test/ns/fedgate/sa/gateway"),
                id("spiffe://bridge.test/gateway/b"),
            ),
        ],
        HOUR,
        24 * HOUR,
    )
    .unwrap()
}

fn csr_with(sans: &[&str], extra: Vec<CustomExtension>) -> Vec<u8> {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    for s in sans {
        p.subject_alt_names
            .push(SanType::URI(rcgen::Ia5String::try_from(*s).unwrap()));
    }
    p.custom_extensions = extra;
    p.serialize_request(&key).unwrap().der().to_vec()
}

fn info(requested: &str) -> CsrInfo {
    CsrInfo {
        requested: id(requested),
    }
}

#[test]
fn mapped_caller_gets_its_bridge_id_with_default_or_requested_ttl() {
    let p = policy();
    let caller = id("spiffe://a.test/ns/fedgate/sa/gateway");
    let g = p
        .decide(&caller, &info("spiffe://bridge.test/gateway/a"), None)
        .unwrap();
    assert_eq!(g.bridge_id, id("spiffe://bridge.test/gateway/a"));
    assert_eq!(g.ttl, HOUR);
    let g = p
        .decide(
            &caller,
            &info("spiffe://bridge.test/gateway/a"),
            Some(Duration::from_secs(3)),
        )
        .unwrap();
    assert_eq!(g.ttl, Duration::from_secs(3));
    // Exactly max is allowed.
    assert!(p
        .decide(
            &caller,
            &info("spiffe://bridge.test/gateway/a"),
            Some(24 * HOUR)
        )
        .is_ok());
}

#[test]
fn refusals_carry_their_reason_label() {
    let p = policy();
    let a = id("spiffe://a.test/ns/fedgate/sa/gateway");
    let cases: Vec<(SpiffeId, &str, Option<Duration>, &str)> = vec![
        // Unknown caller: same TD, other workload; and a prefix of a mapped ID.
        (
            id("spiffe://a.test/ns/demo/sa/client"),
            "spiffe://bridge.test/gateway/a",
            None,
            "unknown_identity",
        ),
        (
            id("spiffe://a.test/ns/fedgate"),
            "spiffe://bridge.test/gateway/a",
            None,
            "unknown_identity",
        ),
        // Someone else's bridge ID.
        (
            a.clone(),
            "spiffe://bridge.test/gateway/b",
            None,
            "not_mapped_id",
        ),
        // A sub-path of its own ID is still not its ID.
        (
            a.clone(),
            "spiffe://bridge.test/gateway/a/x",
            None,
            "not_mapped_id",
        ),
        (
            a.clone(),
            "spiffe://bridge.test/gateway/a",
            Some(24 * HOUR + Duration::from_secs(1)),
            "ttl_too_long",
        ),
        (
            a.clone(),
            "spiffe://bridge.test/gateway/a",
            Some(Duration::ZERO),
            "bad_ttl",
        ),
    ];
    for (caller, requested, ttl, label) in cases {
        let r = p.decide(&caller, &info(requested), ttl).unwrap_err();
        assert_eq!(r.label(), label, "{caller} {requested}: {r}");
        assert!(Refusal::LABELS.contains(&r.label()));
    }
    let msg = p
        .decide(&a, &info("spiffe://bridge.test/gateway/b"), None)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("spiffe://bridge.test/gateway/b")
            && msg.contains("spiffe://bridge.test/gateway/a"),
        "{msg}"
    );
}

#[test]
fn policy_construction_errors() {
    let a = id("spiffe://a.test/gw");
    let e = Policy::new(
        td("bridge.test"),
        [(a.clone(), id("spiffe://other.test/gw"))],
        HOUR,
        HOUR,
    )
    .unwrap_err();
    assert!(matches!(e, PolicyError::ForeignBridgeId { .. }), "{e}");
    let e = Policy::new(
        td("bridge.test"),
        [(a.clone(), id("spiffe://bridge.test"))],
        HOUR,
        HOUR,
    )
    .unwrap_err();
    assert!(matches!(e, PolicyError::RootBridgeId { .. }), "{e}");
    let e = Policy::new(
        td("bridge.test"),
        [
            (a.clone(), id("spiffe://bridge.test/x")),
            (a.clone(), id("spiffe://bridge.test/y")),
        ],
        HOUR,
        HOUR,
    )
    .unwrap_err();
    assert!(matches!(e, PolicyError::DuplicateLocal { .. }), "{e}");
    for (d, m) in [(Duration::ZERO, HOUR), (2 * HOUR, HOUR)] {
        let e = Policy::new(td("bridge.test"), [], d, m).unwrap_err();
        assert!(matches!(e, PolicyError::BadTtls { .. }), "{e}");
    }
    // An empty policy is valid and refuses everyone.
    let empty = Policy::new(td("bridge.test"), [], HOUR, HOUR).unwrap();
    assert!(empty.is_empty());
    assert_eq!(empty.mapped(&a).unwrap_err().label(), "unknown_identity");
}

#[test]
fn two_local_ids_for_one_bridge_id_are_refused() {
    let a = id("spiffe://a.test/ns/fedgate/sa/gateway");
    let b = id("spiffe://b.test/ns/fedgate/sa/gateway");
    let c = id("spiffe://c.test/ns/fedgate/sa/gateway");
    let shared = id("spiffe://bridge.test/gateway/shared");
    let e = Policy::new(
        td("bridge.test"),
        [
            (a.clone(), shared.clone()),
            (c, id("spiffe://bridge.test/gateway/c")),
            (b.clone(), shared.clone()),
        ],
        HOUR,
        HOUR,
    )
    .unwrap_err();
    assert_eq!(
        e,
        PolicyError::DuplicateBridge(Box::new(SharedBridgeId {
            bridge: shared.clone(),
            first: a.clone(),
            second: b.clone(),
        }))
    );
    let msg = e.to_string();
    for part in [a.to_string(), b.to_string(), shared.to_string()] {
        assert!(msg.contains(&part), "{part}: {msg}");
    }
}

#[test]
fn csr_with_one_spiffe_uri_is_accepted() {
    let der = csr_with(&["spiffe://bridge.test/gateway/a"], vec![]);
    assert_eq!(
        inspect_csr(&der).unwrap(),
        info("spiffe://bridge.test/gateway/a")
    );
}

#[test]
fn csr_defects_are_refused() {
    // basicConstraints cA=TRUE (rcgen does not put is_ca into a CSR itself).
    let mut bc = CustomExtension::from_oid_content(&[2, 5, 29, 19], vec![0x30, 3, 1, 1, 0xff]);
    bc.set_criticality(true);
    let ca = csr_with(&["spiffe://bridge.test/gateway/a"], vec![bc]);
    assert_eq!(inspect_csr(&ca).unwrap_err(), Refusal::CaCsr);

    // Other requested extensions (even basicConstraints cA=FALSE) are refused by the CA's CSR
    // parser (rcgen); the client sends only the URI SAN.
    let bc_false = CustomExtension::from_oid_content(&[2, 5, 29, 19], vec![0x30, 0x00]);
    assert_eq!(
        inspect_csr(&csr_with(
            &["spiffe://bridge.test/gateway/a"],
            vec![bc_false]
        ))
        .unwrap_err()
        .label(),
        "bad_csr"
    );

    let mut tampered = csr_with(&["spiffe://bridge.test/gateway/a"], vec![]);
    let n = tampered.len();
    tampered[n - 5] ^= 0x01; // inside the signature
    assert_eq!(
        inspect_csr(&tampered).unwrap_err(),
        Refusal::BadCsrSignature
    );

    assert_eq!(
        inspect_csr(&csr_with(&[], vec![])).unwrap_err(),
        Refusal::RequestedIdCount { found: 0 }
    );
    assert_eq!(
        inspect_csr(&csr_with(
            &[
                "spiffe://bridge.test/gateway/a",
                "spiffe://bridge.test/gateway/b"
            ],
            vec![]
        ))
        .unwrap_err(),
        Refusal::RequestedIdCount { found: 2 }
    );
    let e = inspect_csr(&csr_with(&["https://bridge.test/gateway/a"], vec![])).unwrap_err();
    assert_eq!(e.label(), "bad_csr");
    assert!(matches!(e, Refusal::RequestedIdInvalid { .. }), "{e}");

    let mut trailing = csr_with(&["spiffe://bridge.test/gateway/a"], vec![]);
    trailing.push(0);
    assert_eq!(inspect_csr(&trailing).unwrap_err().label(), "bad_csr");
    assert_eq!(inspect_csr(b"").unwrap_err().label(), "bad_csr");
    assert_eq!(inspect_csr(b"junk").unwrap_err().label(), "bad_csr");
}

mod props {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Arbitrary bytes never panic and never pass.
        #[test]
        fn hostile_bytes_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..700)) {
            prop_assert!(inspect_csr(&bytes).is_err());
        }

        /// Flipping any single byte of a valid CSR never panics, and never yields a CSR that
        /// passes while asking for another ID (the signature covers the requested ID).
        #[test]
        fn mutated_csr_never_panics(pos in any::<proptest::sample::Index>(), flip in 1u8..=255) {
            let mut der = csr_with(&["spiffe://bridge.test/gateway/a"], vec![]);
            let i = pos.index(der.len());
            der[i] ^= flip;
            if let Ok(info) = inspect_csr(&der) {
                prop_assert_eq!(info.requested, id("spiffe://bridge.test/gateway/a"));
            }
        }
    }
}
