use proptest::prelude::*;
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SignatureAlgorithm};
use serde_json::json;

use super::*;

fn td() -> TrustDomain {
    TrustDomain::new("cluster-a.test").unwrap()
}

fn ca_with(alg: &'static SignatureAlgorithm, year: i32) -> CertificateDer<'static> {
    let key = KeyPair::generate_for(alg).unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(year, 1, 1);
    params.self_signed(&key).unwrap().der().clone()
}

fn ca() -> CertificateDer<'static> {
    ca_with(&rcgen::PKCS_ECDSA_P256_SHA256, 2040)
}

fn b64(der: &CertificateDer<'_>) -> String {
    STANDARD.encode(der.as_ref())
}

fn x509_entry(der: &CertificateDer<'_>) -> serde_json::Value {
    json!({"use": "x509-svid", "kty": "EC", "x5c": [b64(der)]})
}

fn parse(doc: serde_json::Value) -> Result<(Bundle, Vec<BundleWarning>), BundleError> {
    Bundle::parse(&td(), doc.to_string().as_bytes())
}

fn bad_entry(doc: serde_json::Value) -> (usize, EntryError) {
    match parse(doc) {
        Err(BundleError::BadEntry { index, reason, .. }) => (index, reason),
        other => panic!("expected BadEntry, got {other:?}"),
    }
}

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

#[test]
fn empty_keys_is_a_valid_bundle_that_trusts_nothing() {
    let (b, w) = parse(json!({"keys": []})).unwrap();
    assert!(b.x509_authorities().is_empty());
    assert!(b.trust_anchors().is_empty());
    assert!(w.is_empty());
    assert_eq!(b.trust_expires_at(), None);
}

#[test]
fn document_shape_errors() {
    assert!(matches!(
        parse(json!({})),
        Err(BundleError::MissingKeys { .. })
    ));
    assert!(matches!(
        parse(json!({"keys": {}})),
        Err(BundleError::KeysNotArray { .. })
    ));
    assert!(matches!(
        parse(json!([])),
        Err(BundleError::NotAnObject { .. })
    ));
    assert!(matches!(
        Bundle::parse(&td(), b"{not json"),
        Err(BundleError::Json { .. })
    ));
    let big = vec![b' '; MAX_BUNDLE_LEN + 1];
    assert!(matches!(
        Bundle::parse(&td(), &big),
        Err(BundleError::TooLarge { .. })
    ));
    let msg = parse(json!({})).unwrap_err().to_string();
    assert!(
        msg.contains("cluster-a.test") && msg.contains("keys"),
        "{msg}"
    );
}

#[test]
fn x509_authority_is_parsed_and_deduplicated() {
    let a = ca();
    let b = ca();
    let doc = json!({"keys": [x509_entry(&a), x509_entry(&b), x509_entry(&a)]});
    let (bundle, warnings) = parse(doc).unwrap();
    assert!(warnings.is_empty());
    assert_eq!(bundle.x509_authorities(), &[a, b]);
    assert_eq!(bundle.trust_anchors().len(), 2);
}

#[test]
fn ignored_entries_produce_warnings() {
    let a = ca();
    let doc = json!({"keys": [
        {"kty": "EC", "x5c": [b64(&a)]},
        {"use": "x509-SVID", "kty": "EC", "x5c": [b64(&a)]},
        {"use": "enc", "kty": "EC"},
        {"use": "enc"},
        {"use": "x509-svid", "kty": "oct", "x5c": [b64(&a)]},
        {"use": "x509-svid", "kty": "EC"},
        {"use": "x509-svid", "kty": "EC", "x5c": []},
        {"use": "jwt-svid", "kty": "FOO", "kid": "k"},
    ]});
    let (bundle, warnings) = parse(doc).unwrap();
    assert!(bundle.x509_authorities().is_empty());
    assert!(bundle.jwt_authorities().is_empty());
    assert_eq!(warnings.len(), 8);
    assert!(warnings[1].0.contains("keys[1]") && warnings[1].0.contains("x509-SVID"));
    assert!(warnings[4].0.contains("oct"));
}

#[test]
fn non_string_use_or_kty_is_an_unknown_use_or_kty_and_ignored() {
    let a = ca();
    let doc = json!({"keys": [
        {"use": 1, "kty": "EC", "x5c": [b64(&a)]},
        {"use": null, "kty": "EC", "x5c": [b64(&a)]},
        {"use": {"x": "x509-svid"}, "kty": "EC"},
        {"use": ["x509-svid"], "kty": "EC"},
        {"use": "x509-svid", "kty": 7, "x5c": [b64(&a)]},
        {"use": "x509-svid", "kty": null, "x5c": [b64(&a)]},
        {"use": "jwt-svid", "kty": {"EC": true}, "kid": "k"},
        {"use": "jwt-svid", "kty": false, "kid": "k"},
        x509_entry(&a),
    ]});
    let (bundle, warnings) = parse(doc).unwrap();
    assert_eq!(bundle.x509_authorities(), &[a]);
    assert!(bundle.jwt_authorities().is_empty());
    assert_eq!(warnings.len(), 8, "{warnings:?}");
    for (i, w) in warnings.iter().enumerate() {
        let what = if i < 4 { "`use`" } else { "`kty`" };
        assert!(
            w.0.contains(&format!("keys[{i}] ignored")) && w.0.contains(what),
            "{w}"
        );
    }
    assert!(warnings[0].0.contains("number 1"), "{}", warnings[0]);
    assert!(warnings[5].0.contains("null"), "{}", warnings[5]);
}

#[test]
fn only_the_first_x5c_value_is_used() {
    let a = ca();
    let doc = json!({"keys": [{"use": "x509-svid", "kty": "EC", "x5c": [b64(&a), "junk"]}]});
    let (bundle, warnings) = parse(doc).unwrap();
    assert_eq!(bundle.x509_authorities(), &[a]);
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].0.contains("after the first"), "{}", warnings[0]);
}

#[test]
fn malformed_x509_entries_name_index_and_reason() {
    let a = ca();
    let ok = x509_entry(&a);
    let (i, r) = bad_entry(json!({"keys": [ok, {"use": "x509-svid", "x5c": [b64(&a)]}]}));
    assert_eq!(i, 1);
    assert!(matches!(r, EntryError::MissingKty));
    let (_, r) = bad_entry(json!({"keys": [{"use": "x509-svid", "kty": "EC", "x5c": ["%%%"]}]}));
    assert!(matches!(r, EntryError::X5cBase64(_)));
    let junk = STANDARD.encode(b"not a certificate");
    let (_, r) = bad_entry(json!({"keys": [{"use": "x509-svid", "kty": "EC", "x5c": [junk]}]}));
    assert!(matches!(r, EntryError::X5cNotCertificate(_)));
    let (_, r) = bad_entry(json!({"keys": [{"use": "x509-svid", "kty": "EC", "x5c": "abc"}]}));
    assert!(matches!(r, EntryError::X5cNotArray));
    let (_, r) = bad_entry(json!({"keys": [{"use": "x509-svid", "kty": "RSA", "x5c": [b64(&a)]}]}));
    assert!(matches!(r, EntryError::KtyMismatch { .. }));
    let (_, r) = bad_entry(json!({"keys": ["string"]}));
    assert!(matches!(r, EntryError::NotAnObject));
    let (_, r) = bad_entry(json!({"keys": [{"use": "jwt-svid", "kty": "EC", "kid": 1}]}));
    assert!(matches!(r, EntryError::NotAString("kid")));
    let msg = parse(json!({"keys": [{"use": "x509-svid", "kty": "EC", "x5c": ["%"]}]}))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("keys[0]") && msg.contains("cluster-a.test"),
        "{msg}"
    );
}

#[test]
fn key_params_must_match_the_certificate() {
    let a = ca();
    let other = ca();
    let mut entry = jwk_params_of(&a);
    entry.insert("use".into(), "x509-svid".into());
    entry.insert("x5c".into(), json!([b64(&a)]));
    assert!(parse(json!({"keys": [entry.clone()]})).is_ok());
    let other_params = jwk_params_of(&other);
    let mut wrong = entry.clone();
    wrong.insert("x".into(), other_params["x"].clone());
    let (_, r) = bad_entry(json!({"keys": [wrong]}));
    assert!(matches!(r, EntryError::KeyParamMismatch("x")));
    let mut wrong_crv = entry;
    wrong_crv.insert("crv".into(), "P-384".into());
    let (_, r) = bad_entry(json!({"keys": [wrong_crv]}));
    assert!(matches!(r, EntryError::KeyParamMismatch("crv")));
}

fn jwk_params_of(der: &CertificateDer<'_>) -> serde_json::Map<String, serde_json::Value> {
    document::jwk_params(der.as_ref()).unwrap()
}

#[test]
fn jwk_params_cover_ec_curves_and_ed25519() {
    let p256 = jwk_params_of(&ca_with(&rcgen::PKCS_ECDSA_P256_SHA256, 2040));
    assert_eq!(p256["kty"], "EC");
    assert_eq!(p256["crv"], "P-256");
    assert_eq!(STANDARD.decode(b64_to_std(&p256["x"])).unwrap().len(), 32);
    let p384 = jwk_params_of(&ca_with(&rcgen::PKCS_ECDSA_P384_SHA384, 2040));
    assert_eq!(p384["crv"], "P-384");
    let ed = jwk_params_of(&ca_with(&rcgen::PKCS_ED25519, 2040));
    assert_eq!(ed["kty"], "OKP");
    assert_eq!(ed["crv"], "Ed25519");
}

fn b64_to_std(v: &serde_json::Value) -> String {
    let s = v.as_str().unwrap().replace('-', "+").replace('_', "/");
    let pad = (4 - s.len() % 4) % 4;
    format!("{s}{}", "=".repeat(pad))
}

#[test]
fn jwt_authorities() {
    let key =
        json!({"use": "jwt-svid", "kty": "EC", "kid": "k1", "crv": "P-256", "x": "AA", "y": "AA"});
    let (b, _) = parse(json!({"keys": [key.clone(), key.clone()]})).unwrap();
    assert_eq!(b.jwt_authorities().len(), 1);
    assert_eq!(b.jwt_authorities()[0].key_id, "k1");
    let (_, r) = bad_entry(
        json!({"keys": [{"use": "jwt-svid", "kty": "EC", "crv": "P-256", "x": "A", "y": "A"}]}),
    );
    assert!(matches!(r, EntryError::MissingKid));
    let (_, r) =
        bad_entry(json!({"keys": [{"use": "jwt-svid", "kty": "RSA", "kid": "k", "n": "AQAB"}]}));
    assert!(matches!(r, EntryError::MissingKeyParam("e")));
    let mut other = key.clone();
    other["x"] = "AB".into();
    let (i, r) = bad_entry(json!({"keys": [key, other]}));
    assert_eq!(i, 1);
    assert!(matches!(r, EntryError::DuplicateKid(_)));
}

#[test]
fn sequence_and_refresh_hint() {
    let doc = format!(
        r#"{{"keys": [], "spiffe_sequence": {}, "spiffe_refresh_hint": 300}}"#,
        u64::MAX
    );
    let (b, _) = Bundle::parse(&td(), doc.as_bytes()).unwrap();
    assert_eq!(b.sequence(), Some(u64::MAX));
    assert_eq!(b.refresh_hint(), Some(Duration::from_secs(300)));
    let (b, _) = parse(json!({"keys": [], "spiffe_sequence": null})).unwrap();
    assert_eq!(b.sequence(), None);
    for bad in ["-1", "1.5", "18446744073709551616", "\"7\"", "true", "1e3"] {
        let doc = format!(r#"{{"keys": [], "spiffe_sequence": {bad}}}"#);
        match Bundle::parse(&td(), doc.as_bytes()) {
            Err(BundleError::BadInteger {
                field: "spiffe_sequence",
                ..
            }) => {}
            other => panic!("{bad}: {other:?}"),
        }
        let doc = format!(r#"{{"keys": [], "spiffe_refresh_hint": {bad}}}"#);
        match Bundle::parse(&td(), doc.as_bytes()) {
            Err(BundleError::BadInteger {
                field: "spiffe_refresh_hint",
                ..
            }) => {}
            other => panic!("{bad}: {other:?}"),
        }
    }
}

#[test]
fn to_json_round_trips_and_writes_key_params() {
    let mut b = Bundle::new(td());
    b.add_x509_authority(ca());
    b.add_x509_authority(ca_with(&rcgen::PKCS_ED25519, 2041));
    b.set_sequence(Some(u64::MAX));
    b.set_refresh_hint(Some(Duration::from_secs(60)));
    let json = b.to_json();
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(v["keys"][0]["kty"], "EC");
    assert_eq!(v["keys"][0]["crv"], "P-256");
    assert!(v["keys"][0]["x"].is_string() && v["keys"][0]["y"].is_string());
    assert_eq!(v["keys"][0]["use"], "x509-svid");
    assert!(v["keys"][0].get("kid").is_none());
    assert!(String::from_utf8(json.clone())
        .unwrap()
        .contains(&u64::MAX.to_string()));
    let (back, warnings) = Bundle::parse(&td(), &json).unwrap();
    assert!(warnings.is_empty());
    assert!(back.same_authorities(&b));
    assert_eq!(back.sequence(), b.sequence());
    assert_eq!(back.refresh_hint(), b.refresh_hint());
}

#[test]
fn trust_expires_at_is_the_latest_not_after() {
    let mut b = Bundle::new(td());
    b.add_x509_authority(ca_with(&rcgen::PKCS_ECDSA_P256_SHA256, 2031));
    b.add_x509_authority(ca_with(&rcgen::PKCS_ECDSA_P256_SHA256, 2035));
    b.add_x509_authority(ca_with(&rcgen::PKCS_ECDSA_P256_SHA256, 2033));
    let want = rcgen::date_time_ymd(2035, 1, 1).unix_timestamp() as u64;
    assert_eq!(
        b.trust_expires_at(),
        Some(UNIX_EPOCH + Duration::from_secs(want))
    );
}

#[test]
fn remove_authority_updates_anchors() {
    let (a, c) = (ca(), ca());
    let mut b = Bundle::new(td());
    b.add_x509_authority(a.clone());
    b.add_x509_authority(c.clone());
    b.remove_x509_authority(&a);
    assert_eq!(b.x509_authorities(), &[c]);
    assert_eq!(b.trust_anchors().len(), 1);
}

#[test]
fn each_trust_anchor_keeps_its_certificate_validity() {
    let (early, late) = (
        ca_with(&rcgen::PKCS_ECDSA_P256_SHA256, 2031),
        ca_with(&rcgen::PKCS_ED25519, 2045),
    );
    let mut b = Bundle::new(td());
    b.add_x509_authority(early.clone());
    b.add_x509_authority(late.clone());
    let secs = |y: i32| rcgen::date_time_ymd(y, 1, 1).unix_timestamp();
    let not_afters = |b: &Bundle| {
        b.trust_anchors()
            .iter()
            .map(|a| b.anchor_info(a).unwrap().not_after)
            .collect::<Vec<_>>()
    };
    assert_eq!(not_afters(&b), [secs(2031), secs(2045)]);
    assert_eq!(
        b.anchor_info(&b.trust_anchors()[0]).unwrap().not_before,
        secs(2020)
    );
    // Found by value too (a copy of the anchor, not the bundle's own).
    let copy = webpki::anchor_from_trusted_cert(&late).unwrap().to_owned();
    assert_eq!(b.anchor_info(&copy).unwrap().not_after, secs(2045));
    // Removing an authority keeps anchors and their validity aligned.
    b.remove_x509_authority(&early);
    assert_eq!(not_afters(&b), [secs(2045)]);
    assert!(b
        .anchor_info(&webpki::anchor_from_trusted_cert(&early).unwrap())
        .is_none());
    assert_eq!(
        b.earliest_authority_expiry(),
        Some(std::time::UNIX_EPOCH + Duration::from_secs(secs(2045) as u64))
    );
}

#[test]
fn bundle_set_refuses_duplicate_trust_domains_and_never_falls_back() {
    let other = TrustDomain::new("cluster-b.test").unwrap();
    let set = BundleSet::from_bundles([Bundle::new(td()), Bundle::new(other.clone())]).unwrap();
    assert_eq!(set.len(), 2);
    assert!(set
        .bundle_for(&TrustDomain::new("cluster-c.test").unwrap())
        .is_none());
    assert_eq!(set.bundle_for(&other).unwrap().trust_domain(), &other);
    match BundleSet::from_bundles([Bundle::new(td()), Bundle::new(td())]) {
        Err(BundleError::DuplicateTrustDomain(d)) => assert_eq!(d, td()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn load_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bundle.json");
    std::fs::write(&path, b"{}").unwrap();
    let err = Bundle::load(&td(), &path).unwrap_err();
    assert!(err.to_string().contains("bundle.json"), "{err}");
    assert!(matches!(err, BundleError::InFile { .. }));
    let missing = dir.path().join("missing.json");
    let err = Bundle::load(&td(), &missing).unwrap_err();
    assert!(matches!(err, BundleError::Io { .. }) && err.to_string().contains("missing.json"));
    std::fs::write(&path, b"{\"keys\": []}").unwrap();
    assert!(Bundle::load(&td(), &path).is_ok());
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(Into::into),
        any::<i64>().prop_map(Into::into),
        any::<u64>().prop_map(Into::into),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Into::into),
        prop_oneof![
            Just("x509-svid".to_string()),
            Just("jwt-svid".to_string()),
            Just("EC".to_string()),
            Just("RSA".to_string()),
            ".{0,12}",
        ]
        .prop_map(Into::into),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        let key = prop_oneof![
            Just("keys".to_string()),
            Just("use".to_string()),
            Just("kty".to_string()),
            Just("x5c".to_string()),
            Just("kid".to_string()),
            Just("spiffe_sequence".to_string()),
            Just("spiffe_refresh_hint".to_string()),
            "[a-z]{1,4}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Into::into),
            prop::collection::btree_map(key, inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = Bundle::parse(&td(), &bytes);
    }

    #[test]
    fn arbitrary_json_never_panics(v in json_value()) {
        let _ = Bundle::parse(&td(), v.to_string().as_bytes());
        let _ = Bundle::parse(&td(), json!({"keys": [v]}).to_string().as_bytes());
    }

    /// Any non-string `use` or `kty` makes its entry ignored with a warning naming it, and
    /// the other entries of the bundle still count.
    #[test]
    fn non_string_use_or_kty_is_ignored(v in json_value().prop_filter("not a string", |v| !v.is_string()),
                                        member in prop_oneof![Just("use"), Just("kty")]) {
        let a = ca();
        let mut entry = x509_entry(&a);
        entry[member] = v;
        let doc = json!({"keys": [x509_entry(&a), entry]});
        let (bundle, warnings) = parse(doc).unwrap();
        prop_assert_eq!(bundle.x509_authorities(), &[a][..]);
        prop_assert_eq!(warnings.len(), 1);
        prop_assert!(warnings[0].0.contains("keys[1] ignored"), "{}", warnings[0]);
        prop_assert!(warnings[0].0.contains(&format!("`{member}`")), "{}", warnings[0]);
    }

    #[test]
    fn round_trip(seq in proptest::option::of(any::<u64>()),
                  hint in proptest::option::of(any::<u64>()),
                  n in 0usize..3) {
        let mut b = Bundle::new(td());
        for _ in 0..n {
            b.add_x509_authority(ca());
        }
        b.set_sequence(seq);
        b.set_refresh_hint(hint.map(Duration::from_secs));
        let (back, _) = Bundle::parse(&td(), &b.to_json()).unwrap();
        prop_assert!(back.same_authorities(&b));
        prop_assert_eq!(back.sequence(), seq);
        prop_assert_eq!(back.refresh_hint(), b.refresh_hint());
    }
}

/// The document a SPIRE v1.13.3 server's bundle endpoint served in `e2e/spire.sh`
/// (`refresh_hint = "5s"`): an `x509-svid` key with the key parameters and one `x5c`, an EC
/// `jwt-svid` key with a `kid`, `spiffe_sequence` and `spiffe_refresh_hint`.
const SPIRE_V1_13_ENDPOINT_BUNDLE: &str = r#"{
    "keys": [
        {
            "use": "x509-svid",
            "kty": "EC",
            "crv": "P-256",
            "x": "bZFUtXVOAneSl1efkU1eE71Hqg_22uirI9AOnKV9vNU",
            "y": "xsZwHw2nOvOhf8QaCJJq1j528QmLF7P__40nv-NqZXU",
            "x5c": [
                "MIICBDCCAamgAwIBAgIRALph33bIt4UR5GKcWAHC1YswCgYIKoZIzj0EAwIwUDELMAkGA1UEBhMCVVMxDzANBgNVBAoTBlNQSUZGRTEwMC4GA1UEBRMnMjQ3NzQ0NTkyMzk5NjU1ODg1NDM5ODI0MTk3MzIxMjcwNDE2Nzc5MB4XDTI2MTIwNTA5MTA1NVoXDTI2MTIwNjA5MTEwNVowUDELMAkGA1UEBhMCVVMxDzANBgNVBAoTBlNQSUZGRTEwMC4GA1UEBRMnMjQ3NzQ0NTkyMzk5NjU1ODg1NDM5ODI0MTk3MzIxMjcwNDE2Nzc5MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEbZFUtXVOAneSl1efkU1eE71Hqg/22uirI9AOnKV9vNXGxnAfDac686F/xBoIkmrWPnbxCYsXs///jSe/42pldaNkMGIwDgYDVR0PAQH/BAQDAgEGMA8GA1UdEwEB/wQFMAMBAf8wHQYDVR0OBBYEFGNIdVGnOsCkyAphegNPdHjSfNlWMCAGA1UdEQQZMBeGFXNwaWZmZTovL3NwaXJlLWEudGVzdDAKBggqhkjOPQQDAgNJADBGAiEAmiatlT5BfHQ9Nl6aOmTqnkEfRmupgNulDi8iwKpZtwgCIQCH92joPS6JhZTVW5Gesn+PMwIZqSvt1nqRo95prKYoGA=="
            ]
        },
        {
            "use": "jwt-svid",
            "kty": "EC",
            "kid": "PVacjm9LKz1FQGhZNbHhA3b78VsxjuRc",
            "crv": "P-256",
            "x": "JOR0sd_g_0BIJXzNfI--UFT1CmKBaT6P4NJaSCbLuAk",
            "y": "lHc-yy6AniVcUE2AWVDqjZn_UVwuS83KXqL8qyYLj8E"
        }
    ],
    "spiffe_sequence": 1,
    "spiffe_refresh_hint": 5
}"#;

#[test]
fn spire_bundle_endpoint_document_parses_without_warnings() {
    let spire = TrustDomain::new("spire-a.test").unwrap();
    let (b, warnings) = Bundle::parse(&spire, SPIRE_V1_13_ENDPOINT_BUNDLE.as_bytes()).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(b.x509_authorities().len(), 1);
    assert_eq!(b.trust_anchors().len(), 1);
    assert_eq!(b.jwt_authorities().len(), 1);
    assert_eq!(
        b.jwt_authorities()[0].key_id,
        "PVacjm9LKz1FQGhZNbHhA3b78VsxjuRc"
    );
    assert_eq!(b.sequence(), Some(1));
    assert_eq!(b.refresh_hint(), Some(Duration::from_secs(5)));
}

/// What fedgate serves must also pass SPIRE's federated-bundle parser, which is stricter than
/// the spec: it refuses the whole bundle for a key with an unknown or missing `use`, an
/// `x509-svid` key without exactly one `x5c`, or a `jwt-svid` key without `kid`.
#[test]
fn to_json_stays_within_what_spire_accepts() {
    let spire = TrustDomain::new("spire-a.test").unwrap();
    let (mut b, _) = Bundle::parse(&spire, SPIRE_V1_13_ENDPOINT_BUNDLE.as_bytes()).unwrap();
    b.add_x509_authority(ca());
    let v: serde_json::Value = serde_json::from_slice(&b.to_json()).unwrap();
    let keys = v["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 3);
    for key in keys {
        match key["use"].as_str() {
            Some("x509-svid") => assert_eq!(key["x5c"].as_array().map(Vec::len), Some(1)),
            Some("jwt-svid") => assert!(key["kid"].as_str().is_some_and(|k| !k.is_empty())),
            other => panic!("SPIRE refuses a bundle with `use` {other:?}"),
        }
    }
    assert_eq!(v["spiffe_sequence"], 1);
    assert_eq!(v["spiffe_refresh_hint"], 5);
}

#[test]
fn next_sequence_grows_and_starts_from_the_clock() {
    use std::time::{Duration, UNIX_EPOCH};
    let at = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
    let now = at(1_700_000_000);
    // A new bundle starts at the Unix time (never 0).
    assert_eq!(next_sequence(None, now), Some(1_700_000_000));
    assert_eq!(next_sequence(None, UNIX_EPOCH), Some(1));
    // Behind the clock: jumps to the clock; ahead of it (or a clock gone back): + 1.
    assert_eq!(next_sequence(Some(5), now), Some(1_700_000_000));
    assert_eq!(next_sequence(Some(1_700_000_000), now), Some(1_700_000_001));
    assert_eq!(next_sequence(Some(u64::MAX - 1), now), Some(u64::MAX));
    assert_eq!(next_sequence(Some(u64::MAX), now), None);
}
