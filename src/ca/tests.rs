//! Unit tests of the CA: issuance rules (X509-SVID.md), persistence, rotation, CSR signing.

use std::os::unix::fs::MetadataExt;

use x509_parser::prelude::{FromDer, X509Certificate};

use super::*;

fn td(s: &str) -> TrustDomain {
    TrustDomain::new(s).unwrap()
}

fn id(s: &str) -> SpiffeId {
    SpiffeId::parse(s).unwrap()
}

fn opts(intermediate: bool) -> InitOptions {
    InitOptions {
        ttl: Duration::from_secs(3600 * 24 * 30),
        refresh_hint: Some(Duration::from_secs(300)),
        intermediate,
    }
}

fn day() -> Duration {
    Duration::from_secs(86_400)
}

/// Chain validation with webpki alone (independent of the federation crate's verifier):
/// the leaf chains to `root` through `intermediates`, for client and server auth.
fn webpki_chains(
    leaf: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    root: &CertificateDer<'_>,
) -> Result<(), webpki::Error> {
    let anchor = webpki::anchor_from_trusted_cert(root)?;
    let ee = webpki::EndEntityCert::try_from(leaf)?;
    let now = rustls_pki_types::UnixTime::now();
    for usage in [
        webpki::KeyUsage::client_auth(),
        webpki::KeyUsage::server_auth(),
    ] {
        ee.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            std::slice::from_ref(&anchor),
            intermediates,
            now,
            usage,
            None,
            None,
        )?;
    }
    Ok(())
}

#[test]
fn leaf_follows_x509_svid_rules() {
    let ca = Ca::init(&td("a.test"), &opts(false)).unwrap();
    let svid = ca
        .issue(&id("spiffe://a.test/ns/web"), day(), &["web.a.test".into()])
        .unwrap();
    assert_eq!(svid.chain().len(), 1);
    let (_, leaf) = X509Certificate::from_der(&svid.chain()[0]).unwrap();

    // CA:FALSE, present (X509-SVID.md §4.1).
    let bc = leaf.basic_constraints().unwrap().unwrap();
    assert!(!bc.value.ca);
    // keyUsage: critical, digitalSignature only (§4.3).
    let ku = leaf.key_usage().unwrap().unwrap();
    assert!(ku.critical);
    assert!(ku.value.digital_signature());
    assert!(!ku.value.key_cert_sign());
    assert!(!ku.value.crl_sign());
    // EKU serverAuth + clientAuth (§4.4).
    let eku = leaf.extended_key_usage().unwrap().unwrap();
    assert!(eku.value.server_auth && eku.value.client_auth);
    // Exactly one URI SAN = the ID; DNS SANs as asked.
    let s = describe::describe(&svid.chain()[0]).unwrap();
    assert_eq!(s.uri_sans, vec!["spiffe://a.test/ns/web"]);
    assert_eq!(s.dns_sans, vec!["web.a.test"]);
    assert_eq!(s.key_type, "ECDSA P-256");
    // Back-dated by a minute, lives for the ttl.
    let nb = leaf.validity().not_before.timestamp();
    let na = leaf.validity().not_after.timestamp();
    assert_eq!(na - nb, 86_400 + 60);
    let now = OffsetDateTime::now_utc().unix_timestamp();
    assert!(
        nb <= now - 59 && nb >= now - 120,
        "notBefore {nb} vs now {now}"
    );
    // Random positive serial, distinct per issuance.
    let other = ca.issue(&id("spiffe://a.test/ns/web"), day(), &[]).unwrap();
    assert_ne!(
        describe::describe(&other.chain()[0]).unwrap().serial,
        s.serial
    );
    assert!(leaf.tbs_certificate.raw_serial()[0] < 0x80);

    webpki_chains(&svid.chain()[0], &[], ca.root()).unwrap();
    // The key is PKCS#8 and matches the leaf.
    let key = KeyPair::from_pem(svid.key_pem()).unwrap();
    assert_eq!(
        leaf.tbs_certificate.subject_pki.raw,
        key.public_key_der().as_slice()
    );
    // Debug never shows the key.
    assert!(!format!("{svid:?}").contains("PRIVATE"));
}

#[test]
fn root_follows_signing_certificate_rules() {
    let ca = Ca::init(&td("a.test"), &opts(false)).unwrap();
    let (_, root) = X509Certificate::from_der(ca.root()).unwrap();
    assert!(root.basic_constraints().unwrap().unwrap().value.ca);
    let ku = root.key_usage().unwrap().unwrap();
    assert!(ku.critical && ku.value.key_cert_sign() && ku.value.crl_sign());
    assert!(!ku.value.digital_signature());
    let s = describe::describe(ca.root()).unwrap();
    assert_eq!(s.uri_sans, vec!["spiffe://a.test"]);
    assert_eq!(s.key_type, "ECDSA P-256");
    assert_eq!(root.tbs_certificate.subject, root.tbs_certificate.issuer);
    let b = ca.bundle();
    assert_eq!(b.x509_authorities(), std::slice::from_ref(ca.root()));
    assert_eq!(b.refresh_hint(), Some(Duration::from_secs(300)));
}

#[test]
fn intermediate_issues_leaves_and_chains_to_root() {
    let ca = Ca::init(&td("b.test"), &opts(true)).unwrap();
    let svid = ca.issue(&id("spiffe://b.test/w"), day(), &[]).unwrap();
    assert_eq!(svid.chain().len(), 2);
    assert_eq!(svid.chain()[1], ca.intermediates()[0]);
    // The leaf does not chain to the root without the intermediate.
    assert!(webpki_chains(&svid.chain()[0], &[], ca.root()).is_err());
    webpki_chains(&svid.chain()[0], &svid.chain()[1..], ca.root()).unwrap();
    let (_, inter) = X509Certificate::from_der(&svid.chain()[1]).unwrap();
    let bc = inter.basic_constraints().unwrap().unwrap().value;
    assert!(bc.ca);
    assert_eq!(bc.path_len_constraint, Some(0));
    assert_eq!(
        describe::describe(&svid.chain()[1]).unwrap().uri_sans,
        vec!["spiffe://b.test"]
    );
    // Only the root is published.
    assert_eq!(
        ca.bundle().x509_authorities(),
        std::slice::from_ref(ca.root())
    );
}

#[test]
fn issue_refuses_foreign_trust_domain_root_path_and_long_ttl() {
    let ca = Ca::init(&td("a.test"), &opts(false)).unwrap();
    let e = ca.issue(&id("spiffe://b.test/x"), day(), &[]).unwrap_err();
    assert!(matches!(e, CaError::WrongTrustDomain { .. }), "{e}");
    assert!(e.to_string().contains("b.test") && e.to_string().contains("a.test"));
    let e = ca.issue(&id("spiffe://a.test"), day(), &[]).unwrap_err();
    assert!(matches!(e, CaError::RootPathId { .. }), "{e}");
    let e = ca
        .issue(&id("spiffe://a.test/x"), day() * 365, &[])
        .unwrap_err();
    assert!(matches!(e, CaError::TtlBeyondCa { .. }), "{e}");
    assert!(e.to_string().contains("--ttl"));
    let e = ca
        .issue(&id("spiffe://a.test/x"), Duration::ZERO, &[])
        .unwrap_err();
    assert!(matches!(e, CaError::ZeroTtl), "{e}");
    let e = ca
        .issue(&id("spiffe://a.test/x"), day(), &["a b".into()])
        .unwrap_err();
    assert!(matches!(e, CaError::BadDnsName { .. }), "{e}");
    let e = ca
        .issue(&id("spiffe://a.test/x"), day(), &["é.test".into()])
        .unwrap_err();
    assert!(matches!(e, CaError::BadDnsName { .. }), "{e}");
}

#[test]
fn save_and_load_round_trip_with_private_key_modes() {
    for intermediate in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca");
        let ca = Ca::init(&td("a.test"), &opts(intermediate)).unwrap();
        ca.save(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o700);
        assert_eq!(
            std::fs::metadata(path.join(CA_KEY)).unwrap().mode() & 0o777,
            0o600
        );
        assert_eq!(path.join(ROOT_KEY).exists(), intermediate);
        if intermediate {
            assert_eq!(
                std::fs::metadata(path.join(ROOT_KEY)).unwrap().mode() & 0o777,
                0o600
            );
        }
        let loaded = Ca::load(&path).unwrap();
        assert_eq!(loaded.root(), ca.root());
        assert_eq!(loaded.intermediates(), ca.intermediates());
        assert_eq!(loaded.trust_domain(), ca.trust_domain());
        assert_eq!(loaded.bundle().sequence(), ca.bundle().sequence());
        let svid = loaded.issue(&id("spiffe://a.test/x"), day(), &[]).unwrap();
        webpki_chains(&svid.chain()[0], &svid.chain()[1..], ca.root()).unwrap();
        assert!(Ca::ensure_absent(&path).is_err());
    }
}

#[test]
fn load_rejects_a_key_from_another_ca_naming_both_files() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    Ca::init(&td("a.test"), &opts(false))
        .unwrap()
        .save(&a)
        .unwrap();
    Ca::init(&td("a.test"), &opts(false))
        .unwrap()
        .save(&b)
        .unwrap();
    std::fs::copy(b.join(CA_KEY), a.join(CA_KEY)).unwrap();
    let e = Ca::load(&a).unwrap_err();
    assert!(matches!(e, CaError::KeyMismatch { .. }), "{e}");
    assert!(e.to_string().contains("ca.key") && e.to_string().contains("ca.pem"));

    std::fs::write(b.join(CA_KEY), b"not a key").unwrap();
    assert!(matches!(Ca::load(&b).unwrap_err(), CaError::BadKey { .. }));
    std::fs::write(b.join(CA_PEM), b"").unwrap();
    let e = Ca::load(&b).unwrap_err();
    assert!(matches!(e, CaError::BadCertificate { .. }), "{e}");
    let missing = Ca::load(&dir.path().join("nope")).unwrap_err();
    assert!(matches!(missing, CaError::NoCa { .. }), "{missing}");
    assert!(missing.to_string().contains("nope"), "{missing}");
}

#[test]
fn rotate_adds_a_root_then_retire_removes_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ca");
    let mut ca = Ca::init(&td("a.test"), &opts(false)).unwrap();
    let old_root = ca.root().clone();
    let old_svid = ca.issue(&id("spiffe://a.test/old"), day(), &[]).unwrap();
    ca.rotate().unwrap();
    assert_ne!(ca.root(), &old_root);
    assert_eq!(
        ca.bundle().x509_authorities(),
        &[old_root.clone(), ca.root().clone()]
    );
    let new_svid = ca.issue(&id("spiffe://a.test/new"), day(), &[]).unwrap();
    webpki_chains(&new_svid.chain()[0], &[], ca.root()).unwrap();
    assert!(webpki_chains(&new_svid.chain()[0], &[], &old_root).is_err());
    webpki_chains(&old_svid.chain()[0], &[], &old_root).unwrap();

    ca.save(&path).unwrap();
    let retired = path
        .join(RETIRED_DIR)
        .join(format!("{}.pem", describe::sha256_hex(&old_root)));
    assert_eq!(
        describe::parse_pem_certs(&std::fs::read(&retired).unwrap()).unwrap(),
        vec![old_root.clone()]
    );
    let mut ca = Ca::load(&path).unwrap();
    assert_eq!(ca.bundle().x509_authorities().len(), 2);

    assert_eq!(
        ca.retire_old().unwrap(),
        Retired {
            roots: 1,
            jwt_keys: 1
        }
    );
    assert_eq!(
        ca.bundle().x509_authorities(),
        std::slice::from_ref(ca.root())
    );
    // Nothing more to retire: no change, no sequence bump.
    let seq = ca.bundle().sequence();
    assert_eq!(ca.retire_old().unwrap(), Retired::default());
    assert_eq!(ca.bundle().sequence(), seq);
}

#[test]
fn rotate_with_intermediate_replaces_both() {
    let mut ca = Ca::init(&td("a.test"), &opts(true)).unwrap();
    let old_inter = ca.intermediates();
    ca.rotate().unwrap();
    assert_ne!(ca.intermediates(), old_inter);
    let svid = ca.issue(&id("spiffe://a.test/x"), day(), &[]).unwrap();
    webpki_chains(&svid.chain()[0], &svid.chain()[1..], ca.root()).unwrap();
}

#[test]
fn csr_public_key_is_signed_with_the_requested_id_only() {
    let ca = Ca::init(&td("bridge.test"), &opts(true)).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(vec!["evil.example".to_string()]).unwrap();
    p.subject_alt_names
        .push(SanType::URI(ia5("spiffe://other.test/admin").unwrap()));
    let csr = p.serialize_request(&key).unwrap();
    let chain = ca
        .issue_from_csr(csr.der(), &id("spiffe://bridge.test/gateway/a"), day())
        .unwrap();
    assert_eq!(chain.len(), 2);
    let s = describe::describe(&chain[0]).unwrap();
    assert_eq!(s.uri_sans, vec!["spiffe://bridge.test/gateway/a"]);
    assert!(s.dns_sans.is_empty());
    assert!(!s.is_ca);
    let (_, leaf) = X509Certificate::from_der(&chain[0]).unwrap();
    assert_eq!(
        leaf.tbs_certificate.subject_pki.raw,
        key.public_key_der().as_slice()
    );
    webpki_chains(&chain[0], &chain[1..], ca.root()).unwrap();

    // The same trust-domain and ttl rules apply.
    let e = ca
        .issue_from_csr(csr.der(), &id("spiffe://a.test/x"), day())
        .unwrap_err();
    assert!(matches!(e, CaError::WrongTrustDomain { .. }));
}

#[test]
fn csr_asking_for_a_ca_or_tampered_is_refused() {
    let ca = Ca::init(&td("bridge.test"), &opts(false)).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    // basicConstraints (2.5.29.19) = SEQUENCE { cA BOOLEAN TRUE }; rcgen will not put `is_ca`
    // into a CSR itself.
    let mut bc =
        rcgen::CustomExtension::from_oid_content(&[2, 5, 29, 19], vec![0x30, 3, 1, 1, 0xff]);
    bc.set_criticality(true);
    p.custom_extensions.push(bc);
    let csr = p.serialize_request(&key).unwrap();
    let e = ca
        .issue_from_csr(csr.der(), &id("spiffe://bridge.test/x"), day())
        .unwrap_err();
    assert!(matches!(e, CaError::CsrRequestsCa), "{e}");

    let good = CertificateParams::new(Vec::<String>::new())
        .unwrap()
        .serialize_request(&key)
        .unwrap();
    let mut tampered = good.der().to_vec();
    let n = tampered.len();
    tampered[n - 5] ^= 0x01; // inside the signature
    let e = ca
        .issue_from_csr(&tampered, &id("spiffe://bridge.test/x"), day())
        .unwrap_err();
    assert!(matches!(e, CaError::BadCsr { .. }), "{e}");
    let e = ca
        .issue_from_csr(b"junk", &id("spiffe://bridge.test/x"), day())
        .unwrap_err();
    assert!(matches!(e, CaError::BadCsr { .. }), "{e}");
}

#[test]
fn load_rejects_an_intermediate_not_issued_by_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    Ca::init(&td("a.test"), &opts(true))
        .unwrap()
        .save(&a)
        .unwrap();
    Ca::init(&td("a.test"), &opts(true))
        .unwrap()
        .save(&b)
        .unwrap();
    for f in [ROOT_PEM, ROOT_KEY] {
        std::fs::copy(b.join(f), a.join(f)).unwrap();
    }
    let e = Ca::load(&a).unwrap_err();
    assert!(matches!(e, CaError::BadCertificate { .. }), "{e}");
    assert!(
        e.to_string().contains("ca.pem") && e.to_string().contains("root.pem"),
        "{e}"
    );
}

/// The federation crate's verifier (the one the gateway uses) accepts what the CA issues,
/// checked against a set holding only the CA's own bundle.
fn federation_verify(
    chain: &[CertificateDer<'static>],
    bundle: &Bundle,
) -> Result<SpiffeId, fedgate_federation::VerifyError> {
    let set = fedgate_federation::BundleSet::new().with(bundle.clone());
    fedgate_federation::svid::verify::verify(chain, &set, rustls_pki_types::UnixTime::now())
        .map(|v| v.id().clone())
}

#[test]
fn issued_svids_pass_the_federation_verifier() {
    for intermediate in [false, true] {
        let ca = Ca::init(&td("a.test"), &opts(intermediate)).unwrap();
        let svid = ca.issue(&id("spiffe://a.test/ns/web"), day(), &[]).unwrap();
        assert_eq!(
            federation_verify(svid.chain(), ca.bundle()).unwrap(),
            id("spiffe://a.test/ns/web")
        );
        let key = KeyPair::generate().unwrap();
        let csr = CertificateParams::new(Vec::<String>::new())
            .unwrap()
            .serialize_request(&key)
            .unwrap();
        let chain = ca
            .issue_from_csr(csr.der(), &id("spiffe://a.test/gw"), day())
            .unwrap();
        assert_eq!(
            federation_verify(&chain, ca.bundle()).unwrap(),
            id("spiffe://a.test/gw")
        );
    }
}

#[test]
fn federation_verifier_follows_rotation_phases() {
    let mut ca = Ca::init(&td("a.test"), &opts(true)).unwrap();
    let old = ca.issue(&id("spiffe://a.test/old"), day(), &[]).unwrap();
    ca.rotate().unwrap();
    let new = ca.issue(&id("spiffe://a.test/new"), day(), &[]).unwrap();
    federation_verify(old.chain(), ca.bundle()).unwrap();
    federation_verify(new.chain(), ca.bundle()).unwrap();
    ca.retire_old().unwrap();
    assert!(federation_verify(old.chain(), ca.bundle()).is_err());
    federation_verify(new.chain(), ca.bundle()).unwrap();
}

#[test]
fn another_domains_ca_cannot_vouch_for_this_domain() {
    let a = Ca::init(&td("a.test"), &opts(false)).unwrap();
    let b = Ca::init(&td("b.test"), &opts(false)).unwrap();
    let from_b = b.issue(&id("spiffe://b.test/x"), day(), &[]).unwrap();
    // b's SVID checked against a set that has a.test's bundle only: no bundle for b.test.
    assert!(federation_verify(from_b.chain(), a.bundle()).is_err());
}

mod prop {
    use proptest::prelude::*;

    use super::*;

    fn shared_ca() -> &'static Ca {
        static CA: std::sync::OnceLock<Ca> = std::sync::OnceLock::new();
        CA.get_or_init(|| Ca::init(&td("p.test"), &opts(false)).unwrap())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn hostile_csr_bytes_are_refused_without_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..600)
        ) {
            let r = shared_ca().issue_from_csr(&bytes, &id("spiffe://p.test/x"), day());
            prop_assert!(r.is_err());
        }

        #[test]
        fn dns_names_are_issued_or_refused_without_panic(name in "\\PC{0,40}") {
            match shared_ca().issue(&id("spiffe://p.test/x"), day(), std::slice::from_ref(&name)) {
                Ok(svid) => {
                    let s = describe::describe(&svid.chain()[0]).unwrap();
                    prop_assert_eq!(s.dns_sans, vec![name]);
                }
                Err(e) => prop_assert!(matches!(e, CaError::BadDnsName { .. }), "{}", e),
            }
        }
    }
}

#[test]
fn issued_files_load_as_an_x509_svid() {
    for intermediate in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::init(&td("a.test"), &opts(intermediate)).unwrap();
        let svid = ca.issue(&id("spiffe://a.test/gw"), day(), &[]).unwrap();
        let [pem, key, json] = svid.write(dir.path(), ca.bundle()).unwrap();
        assert_eq!(std::fs::metadata(&key).unwrap().mode() & 0o777, 0o600);
        let loaded = fedgate_federation::X509Svid::load(&pem, &key).unwrap();
        assert_eq!(loaded.id(), &id("spiffe://a.test/gw"));
        assert_eq!(loaded.chain(), svid.chain());
        let (bundle, _) = Bundle::parse(&td("a.test"), &std::fs::read(json).unwrap()).unwrap();
        assert!(bundle.same_authorities(ca.bundle()));
    }
}

// === JWT-SVIDs ===

mod jwt_svid {
    use std::time::SystemTime;

    use fedgate_federation::jwt::{validate, JwtError};

    use super::*;

    const AUD: &str = "spiffe://a.test/reports";

    fn mint(signer: &JwtSigner) -> String {
        signer
            .mint(&id("spiffe://a.test/web"), &[AUD], Duration::from_secs(300))
            .unwrap()
    }

    #[test]
    fn init_publishes_the_jwt_key_and_save_keeps_it_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca");
        let ca = Ca::init(&td("a.test"), &opts(false)).unwrap();
        let signer = ca.jwt_signer(&path).unwrap();
        let jwt = ca.bundle().jwt_authorities();
        assert_eq!(jwt.len(), 1);
        assert_eq!(jwt[0].key_id, signer.key_id());
        ca.save(&path).unwrap();
        let meta = std::fs::metadata(path.join(JWT_KEY)).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o600);
        // Loaded from disk, the signer mints tokens the written bundle validates.
        let loaded = JwtSigner::load(&path).unwrap();
        assert_eq!(loaded.key_id(), signer.key_id());
        let token = mint(&loaded);
        let (bundle, _) = Bundle::parse(
            &td("a.test"),
            &std::fs::read(path.join(BUNDLE_JSON)).unwrap(),
        )
        .unwrap();
        let svid = validate(&token, &bundle, AUD, SystemTime::now()).unwrap();
        assert_eq!(svid.spiffe_id, id("spiffe://a.test/web"));
        // The key never shows in Debug output.
        let pem = std::fs::read_to_string(path.join(JWT_KEY)).unwrap();
        let body = pem.lines().nth(1).unwrap();
        assert!(!format!("{loaded:?} {ca:?}").contains(body));
    }

    #[test]
    fn rotate_keeps_the_old_jwt_key_until_retired() {
        let mut ca = Ca::init(&td("a.test"), &opts(false)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let old = ca.jwt_signer(dir.path()).unwrap();
        let old_token = mint(&old);
        ca.rotate().unwrap();
        let new = ca.jwt_signer(dir.path()).unwrap();
        assert_ne!(new.key_id(), old.key_id());
        let kids: Vec<_> = ca
            .bundle()
            .jwt_authorities()
            .iter()
            .map(|a| a.key_id.as_str())
            .collect();
        assert_eq!(kids, [old.key_id(), new.key_id()]);
        let now = SystemTime::now();
        validate(&old_token, ca.bundle(), AUD, now).unwrap();
        validate(&mint(&new), ca.bundle(), AUD, now).unwrap();
        ca.retire_old().unwrap();
        assert!(matches!(
            validate(&old_token, ca.bundle(), AUD, now),
            Err(JwtError::UnknownKid { .. })
        ));
        validate(&mint(&new), ca.bundle(), AUD, now).unwrap();
    }

    #[test]
    fn a_directory_without_jwt_key_loads_and_rotate_adds_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca");
        let mut ca = Ca::init(&td("a.test"), &opts(true)).unwrap();
        // Make it look like a directory written before JWT-SVIDs.
        let kid = ca.jwt_signer(&path).unwrap().key_id().to_owned();
        ca.bundle.remove_jwt_authority(&kid);
        ca.jwt = None;
        ca.save(&path).unwrap();
        assert!(!path.join(JWT_KEY).exists());

        let mut ca = Ca::load(&path).unwrap();
        ca.issue(&id("spiffe://a.test/x"), day(), &[]).unwrap();
        let e = JwtSigner::load(&path).unwrap_err();
        assert!(matches!(e, CaError::NoJwtKey { .. }), "{e}");
        assert!(e.to_string().contains("fedgate ca rotate"), "{e}");
        // retire_old leaves a CA without JWT key alone.
        assert_eq!(ca.retire_old().unwrap(), Retired::default());

        ca.rotate().unwrap();
        ca.save(&path).unwrap();
        let signer = JwtSigner::load(&path).unwrap();
        validate(
            &mint(&signer),
            Ca::load(&path).unwrap().bundle(),
            AUD,
            SystemTime::now(),
        )
        .unwrap();
    }

    #[test]
    fn a_jwt_key_missing_from_the_bundle_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca");
        let mut ca = Ca::init(&td("a.test"), &opts(false)).unwrap();
        let kid = ca.jwt_signer(&path).unwrap().key_id().to_owned();
        ca.bundle.remove_jwt_authority(&kid);
        ca.save(&path).unwrap();
        let e = Ca::load(&path).unwrap_err();
        assert!(matches!(e, CaError::JwtKeyNotInBundle { .. }), "{e}");
        std::fs::write(path.join(JWT_KEY), "garbage").unwrap();
        let e = Ca::load(&path).unwrap_err();
        assert!(matches!(e, CaError::BadJwtKey { .. }), "{e}");
    }

    #[test]
    fn mints_only_in_its_own_trust_domain_and_for_workloads() {
        let ca = Ca::init(&td("a.test"), &opts(false)).unwrap();
        let signer = ca.jwt_signer(Path::new("x")).unwrap();
        let ttl = Duration::from_secs(60);
        let e = signer
            .mint(&id("spiffe://b.test/web"), &[AUD], ttl)
            .unwrap_err();
        assert!(matches!(e, CaError::WrongTrustDomain { .. }), "{e}");
        let e = signer
            .mint(&id("spiffe://a.test"), &[AUD], ttl)
            .unwrap_err();
        assert!(matches!(e, CaError::RootPathId { .. }), "{e}");
        let e = signer
            .mint(&id("spiffe://a.test/web"), &[], ttl)
            .unwrap_err();
        assert!(matches!(e, CaError::Mint { .. }), "{e}");
    }

    #[test]
    fn ensure_absent_refuses_a_leftover_jwt_key() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(JWT_KEY), "x").unwrap();
        assert!(matches!(
            Ca::ensure_absent(dir.path()),
            Err(CaError::AlreadyExists { .. })
        ));
    }
}

/// Unix time now, in seconds.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The sequence of the bundle in `dir/bundle.json` as written (not as held in memory).
fn written_sequence(dir: &Path) -> u64 {
    let json = std::fs::read(dir.join(BUNDLE_JSON)).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    v["spiffe_sequence"]
        .as_u64()
        .expect("bundle.json has spiffe_sequence")
}

/// The bundle endpoint serves `bundle.json`'s own sequence, so the CA must write one that
/// starts above anything a peer may hold (the Unix time, not 1) and strictly grows with every
/// phase of a rotation, even several within one second.
#[test]
fn init_writes_a_sequence_and_every_rotation_phase_raises_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ca");
    let before = unix_now();
    let ca = Ca::init(&td("a.test"), &opts(false)).unwrap();
    ca.save(&path).unwrap();
    let init = written_sequence(&path);
    assert!(
        init >= before,
        "init starts at the Unix time: {init} < {before}"
    );
    assert_eq!(ca.bundle().sequence(), Some(init));

    let mut seen = vec![init];
    for _ in 0..2 {
        // Phase 1: add a root (and a JWT key).
        let mut ca = Ca::load(&path).unwrap();
        ca.rotate().unwrap();
        ca.save(&path).unwrap();
        seen.push(written_sequence(&path));
        // Phase 2: retire the old ones.
        let mut ca = Ca::load(&path).unwrap();
        assert_ne!(ca.retire_old().unwrap(), Retired::default());
        ca.save(&path).unwrap();
        seen.push(written_sequence(&path));
    }
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "strictly growing: {seen:?}"
    );
    // Nothing to retire: the file is not rewritten with a new sequence.
    let mut ca = Ca::load(&path).unwrap();
    assert_eq!(ca.retire_old().unwrap(), Retired::default());
    assert_eq!(ca.bundle().sequence(), seen.last().copied());
}

/// A CA directory written before sequences came from the clock (sequence 1, 2, ...) or a
/// hand-edited bundle without one: the next change still gets a sequence above the clock.
#[test]
fn rotate_lifts_a_small_or_missing_sequence_to_the_clock() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ca");
    let ca = Ca::init(&td("a.test"), &opts(false)).unwrap();
    ca.save(&path).unwrap();
    for old in [Some(2), None] {
        let mut v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(path.join(BUNDLE_JSON)).unwrap()).unwrap();
        match old {
            Some(s) => v["spiffe_sequence"] = s.into(),
            None => {
                v.as_object_mut().unwrap().remove("spiffe_sequence");
            }
        }
        std::fs::write(path.join(BUNDLE_JSON), v.to_string()).unwrap();
        let before = unix_now();
        let mut ca = Ca::load(&path).unwrap();
        assert_eq!(ca.bundle().sequence(), old);
        ca.rotate().unwrap();
        ca.save(&path).unwrap();
        assert!(written_sequence(&path) >= before);
    }
}
