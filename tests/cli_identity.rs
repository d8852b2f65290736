//! The identity CLI as operators and conformance suites use it (docs/cli.md): the real
//! binary, run in temporary directories. Covers `id check`, `bundle inspect`, `svid verify`,
//! `svid inspect` and the `ca` commands end to end.

// Test code: a panic is a test failure with a message, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/cli.rs"]
mod cli_support;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use base64::Engine as _;
use cli_support::{arg, fedgate, forge_leaf};
use serde_json::Value;

// === id check ===

#[test]
fn id_check_valid_ids_print_one_line_each() {
    let r = fedgate(&["id", "check", "spiffe://a.test/ns/web", "spiffe://b.test"]);
    assert_eq!(
        r.ok(),
        "spiffe://a.test/ns/web\ttrust_domain=a.test\tpath=/ns/web\n\
         spiffe://b.test\ttrust_domain=b.test\tpath=\n"
    );
    assert_eq!(r.stderr, "");
}

#[test]
fn id_check_invalid_ids_exit_1_with_one_reason_line_each() {
    let bad = [
        "spiffe://a.test/x/../y",
        "http://a.test/x",
        "spiffe://a.test:8080/x",
        "spiffe://u@a.test/x",
        "spiffe://a.test/x?q",
        "spiffe://a.test/x#f",
        "spiffe://a.test/%41",
        "spiffe://A.test/x",
        "spiffe://a.test/x/",
        "spiffe://a.test//x",
        "",
    ];
    for id in bad {
        let r = fedgate(&["id", "check", id]);
        let line = r.fails_with(1);
        assert!(line.starts_with(&format!("{id}: ")), "{id:?}: {line}");
        assert!(line.len() > id.len() + 2, "no reason for {id:?}");
        assert_eq!(r.stdout, "");
    }
    // Mixed: valid ones still on stdout (docs/cli.md), each invalid one on stderr.
    let r = fedgate(&[
        "id",
        "check",
        "spiffe://a.test/ok",
        "spiffe://a.test/../x",
        "nope",
    ]);
    assert_eq!(r.code, 1);
    assert_eq!(
        r.stdout,
        "spiffe://a.test/ok\ttrust_domain=a.test\tpath=/ok\n"
    );
    let lines: Vec<_> = r.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{r:#?}");
    assert!(lines[0].starts_with("spiffe://a.test/../x: "));
    assert!(lines[1].starts_with("nope: "));
    // No ID at all is a usage error.
    assert_eq!(fedgate(&["id", "check"]).code, 2);
}

// === bundle inspect ===

fn b64(der: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(der)
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn ca_cert_der() -> Vec<u8> {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
    p.subject_alt_names = vec![rcgen::SanType::URI("spiffe://a.test".try_into().unwrap())];
    p.self_signed(&key).unwrap().der().to_vec()
}

fn jwt_key() -> Value {
    let key = rcgen::KeyPair::generate().unwrap();
    let raw = key.public_key_raw(); // 0x04 || x || y
    serde_json::json!({
        "kty": "EC", "use": "jwt-svid", "kid": "k1", "crv": "P-256",
        "x": b64url(&raw[1..33]), "y": b64url(&raw[33..65]),
    })
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    arg(&p)
}

#[test]
fn bundle_inspect_json_has_exact_keys_and_full_u64_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let doc = serde_json::json!({
        "spiffe_sequence": 18446744073709551615u64,
        "spiffe_refresh_hint": 300,
        "keys": [
            {"kty": "EC", "use": "x509-svid", "x5c": [b64(&ca_cert_der())]},
            jwt_key(),
            {"kty": "EC", "use": "something-else", "x5c": [b64(&ca_cert_der())]},
            {"kty": "NOPE", "use": "x509-svid", "x5c": [b64(&ca_cert_der())]},
        ],
    });
    let file = write(dir.path(), "b.json", &doc.to_string());
    let r = fedgate(&[
        "bundle",
        "inspect",
        &file,
        "--trust-domain",
        "a.test",
        "--json",
    ]);
    let out = r.ok();
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.contains("\"sequence\":18446744073709551615"), "{out}");
    let v: Value = serde_json::from_str(out).unwrap();
    let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
    let mut want = vec![
        "jwt_authorities",
        "refresh_hint",
        "sequence",
        "trust_domain",
        "x509_authorities",
    ];
    want.sort();
    let mut keys_sorted = keys.clone();
    keys_sorted.sort();
    assert_eq!(keys_sorted, want);
    assert_eq!(v["trust_domain"], "a.test");
    assert_eq!(v["x509_authorities"], 1, "ignored entries are not counted");
    assert_eq!(v["jwt_authorities"], 1);
    assert_eq!(v["refresh_hint"], 300);
    assert_eq!(v["sequence"].as_u64(), Some(u64::MAX));

    // The human summary names the authority's subject, validity and fingerprint.
    let r = fedgate(&["bundle", "inspect", &file, "--trust-domain", "a.test"]);
    let text = r.ok();
    assert!(
        text.contains("subject:") && text.contains("not after:"),
        "{text}"
    );
    assert!(
        text.contains("sha256:") && text.contains("1975-01-01T00:00:00Z"),
        "{text}"
    );
}

#[test]
fn bundle_inspect_accepts_empty_keys_with_zero_counts() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "b.json", r#"{"keys": []}"#);
    let r = fedgate(&[
        "bundle",
        "inspect",
        &file,
        "--trust-domain",
        "a.test",
        "--json",
    ]);
    let v: Value = serde_json::from_str(r.ok()).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"trust_domain": "a.test", "x509_authorities": 0,
            "jwt_authorities": 0, "refresh_hint": null, "sequence": null})
    );
}

#[test]
fn bundle_inspect_rejections_exit_1_and_bad_input_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in [
        ("nokeys.json", r#"{"spiffe_sequence": 1}"#),
        ("notjson.json", "not json"),
        ("keysnotarray.json", r#"{"keys": {}}"#),
    ] {
        let file = write(dir.path(), name, text);
        let r = fedgate(&[
            "bundle",
            "inspect",
            &file,
            "--trust-domain",
            "a.test",
            "--json",
        ]);
        let line = r.fails_with(1);
        assert!(line.contains(name), "{line}");
        assert_eq!(r.stdout, "");
    }
    let missing = arg(&dir.path().join("missing.json"));
    let r = fedgate(&["bundle", "inspect", &missing, "--trust-domain", "a.test"]);
    assert!(r.fails_with(2).contains("missing.json"));
    let ok = write(dir.path(), "ok.json", r#"{"keys": []}"#);
    let r = fedgate(&["bundle", "inspect", &ok, "--trust-domain", "Not A Domain"]);
    assert_eq!(r.code, 2);
    assert_eq!(fedgate(&["bundle", "inspect", &ok]).code, 2);
}

// === ca + svid verify ===

/// `ca init` for `td` in `dir/name`; returns the CA directory.
fn ca_init(dir: &Path, name: &str, td: &str, extra: &[&str]) -> std::path::PathBuf {
    let ca = dir.join(name);
    let mut args = vec!["ca", "init", "--trust-domain", td, "--out"];
    let ca_arg = arg(&ca);
    args.push(&ca_arg);
    args.extend_from_slice(extra);
    fedgate(&args).ok();
    ca
}

/// `ca issue` of `id` into `dir/name`; returns the output directory.
fn ca_issue(ca: &Path, dir: &Path, name: &str, id: &str) -> std::path::PathBuf {
    let out = dir.join(name);
    fedgate(&[
        "ca",
        "issue",
        "--ca",
        &arg(ca),
        "--id",
        id,
        "--out",
        &arg(&out),
    ])
    .ok();
    out
}

fn verify(chain: &Path, bundles: &[(&str, &Path)], extra: &[&str]) -> cli_support::Run {
    let mut args = vec![
        "svid".to_string(),
        "verify".into(),
        "--chain".into(),
        arg(chain),
    ];
    for (td, file) in bundles {
        args.push("--bundle".into());
        args.push(format!("{td}={}", arg(file)));
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    fedgate(&args)
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().mode() & 0o777
}

#[test]
fn init_issue_verify_prints_the_id_and_keys_are_0600() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca_init(dir.path(), "ca", "a.test", &[]);
    assert_eq!(mode(&ca.join("ca.key")), 0o600);
    assert!(ca.join("ca.pem").exists() && ca.join("bundle.json").exists());
    let out = ca_issue(&ca, dir.path(), "web", "spiffe://a.test/ns/web");
    assert_eq!(mode(&out.join("svid.key")), 0o600);
    let r = verify(
        &out.join("svid.pem"),
        &[("a.test", &out.join("bundle.json"))],
        &[],
    );
    assert_eq!(r.ok(), "spiffe://a.test/ns/web\n");
    assert_eq!(r.stderr, "");

    // The bundle `ca init` wrote is what the contract's inspect expects.
    let r = fedgate(&[
        "bundle",
        "inspect",
        &arg(&ca.join("bundle.json")),
        "--trust-domain",
        "a.test",
        "--json",
    ]);
    let v: Value = serde_json::from_str(r.ok()).unwrap();
    assert_eq!(v["x509_authorities"], 1);
    // `ca init` starts the sequence at the Unix time (docs/federation.md, "Sequence").
    assert!(v["sequence"].as_u64().unwrap() > 1_600_000_000, "{v}");
    assert_eq!(v["refresh_hint"], 300);

    // Time of validation: before issuance and after expiry are both invalid (exit 1).
    let chain = out.join("svid.pem");
    let bundle = out.join("bundle.json");
    verify(
        &chain,
        &[("a.test", &bundle)],
        &["--at", "2000-01-01T00:00:00Z"],
    )
    .fails_with(1);
    verify(
        &chain,
        &[("a.test", &bundle)],
        &["--at", "2999-01-01T00:00:00Z"],
    )
    .fails_with(1);

    // Re-initialising over an existing CA is refused.
    let r = fedgate(&["ca", "init", "--trust-domain", "a.test", "--out", &arg(&ca)]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("already exists"), "{r:#?}");
    // Issuing outside the trust domain is refused with the reason.
    let r = fedgate(&[
        "ca",
        "issue",
        "--ca",
        &arg(&ca),
        "--id",
        "spiffe://b.test/x",
        "--out",
        &arg(&dir.path().join("x")),
    ]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("b.test") && r.stderr.contains("a.test"),
        "{r:#?}"
    );
    // A ttl beyond the CA's own lifetime is refused.
    let r = fedgate(&[
        "ca",
        "issue",
        "--ca",
        &arg(&ca),
        "--id",
        "spiffe://a.test/x",
        "--ttl",
        "20000h",
        "--out",
        &arg(&dir.path().join("x")),
    ]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("notAfter"), "{r:#?}");
}

#[test]
fn leaf_signed_by_another_domains_ca_is_refused_even_with_both_bundles() {
    let dir = tempfile::tempdir().unwrap();
    let ca_a = ca_init(dir.path(), "a", "a.test", &[]);
    let ca_b = ca_init(dir.path(), "b", "b.test", &[]);
    // b's CA signs a leaf claiming a.test.
    let chain = write(
        dir.path(),
        "forged.pem",
        &forge_leaf(&ca_b, "spiffe://a.test/x", |_| {}),
    );
    let bundles = [
        ("a.test", ca_a.join("bundle.json")),
        ("b.test", ca_b.join("bundle.json")),
    ];
    let b: Vec<(&str, &Path)> = bundles.iter().map(|(t, p)| (*t, p.as_path())).collect();
    let r = verify(Path::new(&chain), &b, &[]);
    r.fails_with(1);
    assert_eq!(r.stdout, "");
    // The same leaf for b.test's own ID verifies (control).
    let ok = write(
        dir.path(),
        "ok.pem",
        &forge_leaf(&ca_b, "spiffe://b.test/x", |_| {}),
    );
    assert_eq!(verify(Path::new(&ok), &b, &[]).ok(), "spiffe://b.test/x\n");
}

#[test]
fn invalid_svids_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca_init(dir.path(), "a", "a.test", &[]);
    let bundle = ca.join("bundle.json");
    let forged = |name: &str, uri: &str, tweak: fn(&mut rcgen::CertificateParams)| {
        write(dir.path(), name, &forge_leaf(&ca, uri, tweak))
    };
    let cases = [
        forged("leaf-is-ca.pem", "spiffe://a.test/x", |p| {
            p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained)
        }),
        forged("key-cert-sign.pem", "spiffe://a.test/x", |p| {
            p.key_usages.push(rcgen::KeyUsagePurpose::KeyCertSign)
        }),
        forged("crl-sign.pem", "spiffe://a.test/x", |p| {
            p.key_usages.push(rcgen::KeyUsagePurpose::CrlSign)
        }),
        forged("no-digital-signature.pem", "spiffe://a.test/x", |p| {
            p.key_usages = vec![rcgen::KeyUsagePurpose::KeyAgreement]
        }),
        forged("two-uri-sans.pem", "spiffe://a.test/x", |p| {
            p.subject_alt_names
                .push(rcgen::SanType::URI("spiffe://a.test/y".try_into().unwrap()))
        }),
        forged("no-uri-san.pem", "spiffe://a.test/x", |p| {
            p.subject_alt_names = vec![rcgen::SanType::DnsName("x.test".try_into().unwrap())]
        }),
        forged("bad-id.pem", "spiffe://a.test/x/../y", |_| {}),
        forged("root-path-id.pem", "spiffe://a.test", |_| {}),
        forged("expired.pem", "spiffe://a.test/x", |p| {
            p.not_after = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
            p.not_before = p.not_after - time::Duration::hours(1);
        }),
    ];
    for chain in &cases {
        let r = verify(Path::new(chain), &[("a.test", &bundle)], &[]);
        let line = r.fails_with(1);
        assert!(line.contains(chain.as_str()), "{line}");
    }
    // No bundle for the leaf's trust domain, and an empty bundle.
    let good = forged("good.pem", "spiffe://a.test/x", |_| {});
    verify(Path::new(&good), &[("b.test", &bundle)], &[]).fails_with(1);
    let empty = write(dir.path(), "empty.json", r#"{"keys": []}"#);
    verify(Path::new(&good), &[("a.test", Path::new(&empty))], &[]).fails_with(1);
    assert_eq!(
        verify(Path::new(&good), &[("a.test", &bundle)], &[]).ok(),
        "spiffe://a.test/x\n"
    );
}

#[test]
fn unusable_inputs_exit_2_and_undecodable_certificates_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca_init(dir.path(), "a", "a.test", &[]);
    let bundle = ca.join("bundle.json");
    let svid = ca_issue(&ca, dir.path(), "w", "spiffe://a.test/w");
    let chain = svid.join("svid.pem");
    let cases = [
        write(dir.path(), "empty.pem", ""),
        write(dir.path(), "garbage.pem", "this is not PEM\n"),
        // A key is not a certificate chain (wrong PEM label).
        arg(&svid.join("svid.key")),
        write(
            dir.path(),
            "truncated.pem",
            "-----BEGIN CERTIFICATE-----\nMIIB\n",
        ),
        arg(&dir.path().join("missing.pem")),
    ];
    for c in &cases {
        verify(Path::new(c), &[("a.test", &bundle)], &[]).fails_with(2);
    }
    // Well-formed PEM around bytes that are not a certificate: an invalid SVID.
    let junk = write(
        dir.path(),
        "junk-der.pem",
        "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n",
    );
    verify(Path::new(&junk), &[("a.test", &bundle)], &[]).fails_with(1);

    // Bad arguments.
    let c = arg(&chain);
    let b = format!("a.test={}", arg(&bundle));
    for args in [
        vec!["svid", "verify", "--chain", &c, "--bundle", "a.test"],
        vec!["svid", "verify", "--chain", &c, "--bundle", "NOT_A_TD=x"],
        vec!["svid", "verify", "--chain", &c],
        vec![
            "svid", "verify", "--chain", &c, "--bundle", &b, "--at", "tomorrow",
        ],
        vec![
            "svid", "verify", "--chain", &c, "--bundle", &b, "--bundle", &b,
        ],
    ] {
        assert_eq!(fedgate(&args).code, 2, "{args:?}");
    }
    let missing = format!("a.test={}", arg(&dir.path().join("nope.json")));
    let r = fedgate(&["svid", "verify", "--chain", &c, "--bundle", &missing]);
    assert!(r.fails_with(2).contains("nope.json"));
    let broken = format!("a.test={}", write(dir.path(), "broken.json", "{"));
    fedgate(&["svid", "verify", "--chain", &c, "--bundle", &broken]).fails_with(2);
}

#[test]
fn intermediate_chain_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca_init(dir.path(), "ca", "b.test", &["--intermediate"]);
    for f in ["root.key", "ca.key"] {
        assert_eq!(mode(&ca.join(f)), 0o600, "{f}");
    }
    let out = ca_issue(&ca, dir.path(), "w", "spiffe://b.test/w");
    let chain = std::fs::read_to_string(out.join("svid.pem")).unwrap();
    assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2);
    let r = verify(
        &out.join("svid.pem"),
        &[("b.test", &out.join("bundle.json"))],
        &[],
    );
    assert_eq!(r.ok(), "spiffe://b.test/w\n");
    // The leaf alone does not chain to the published root.
    let leaf_only = chain
        .split_inclusive("-----END CERTIFICATE-----\n")
        .next()
        .unwrap();
    let leaf = write(dir.path(), "leaf.pem", leaf_only);
    verify(
        Path::new(&leaf),
        &[("b.test", &out.join("bundle.json"))],
        &[],
    )
    .fails_with(1);
}

#[test]
fn rotate_then_retire_old() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca_init(dir.path(), "ca", "a.test", &[]);
    let bundle = ca.join("bundle.json");
    let old = ca_issue(&ca, dir.path(), "old", "spiffe://a.test/old");
    let seq = |v: &Value| v["sequence"].as_u64().expect("ca writes spiffe_sequence");
    let inspect = |p: &Path| -> Value {
        let r = fedgate(&[
            "bundle",
            "inspect",
            &arg(p),
            "--trust-domain",
            "a.test",
            "--json",
        ]);
        serde_json::from_str(r.ok()).unwrap()
    };

    let seq0 = seq(&inspect(&bundle));
    fedgate(&["ca", "rotate", "--ca", &arg(&ca)]).ok();
    let v = inspect(&bundle);
    assert_eq!(v["x509_authorities"].as_u64(), Some(2));
    let seq1 = seq(&v);
    assert!(seq1 > seq0, "rotate raises the sequence: {seq1} <= {seq0}");
    assert_eq!(std::fs::read_dir(ca.join("retired")).unwrap().count(), 1);
    assert_eq!(mode(&ca.join("ca.key")), 0o600);
    let new = ca_issue(&ca, dir.path(), "new", "spiffe://a.test/new");
    let old_chain = old.join("svid.pem");
    let new_chain = new.join("svid.pem");
    assert_eq!(
        verify(&old_chain, &[("a.test", &bundle)], &[]).ok(),
        "spiffe://a.test/old\n"
    );
    assert_eq!(
        verify(&new_chain, &[("a.test", &bundle)], &[]).ok(),
        "spiffe://a.test/new\n"
    );
    // The new SVID is signed by the new root only: the pre-rotation bundle refuses it.
    verify(&new_chain, &[("a.test", &old.join("bundle.json"))], &[]).fails_with(1);

    fedgate(&["ca", "rotate", "--ca", &arg(&ca), "--retire-old"]).ok();
    let v = inspect(&bundle);
    assert_eq!(v["x509_authorities"].as_u64(), Some(1));
    let seq2 = seq(&v);
    assert!(
        seq2 > seq1,
        "--retire-old raises the sequence: {seq2} <= {seq1}"
    );
    verify(&old_chain, &[("a.test", &bundle)], &[]).fails_with(1);
    assert_eq!(
        verify(&new_chain, &[("a.test", &bundle)], &[]).ok(),
        "spiffe://a.test/new\n"
    );
    // Retiring again changes nothing.
    fedgate(&["ca", "rotate", "--ca", &arg(&ca), "--retire-old"]).ok();
    assert_eq!(seq(&inspect(&bundle)), seq2);
}

#[test]
fn svid_inspect_json_describes_the_leaf() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca_init(dir.path(), "ca", "a.test", &["--intermediate"]);
    let out = dir.path().join("w");
    fedgate(&[
        "ca",
        "issue",
        "--ca",
        &arg(&ca),
        "--id",
        "spiffe://a.test/w",
        "--dns",
        "w.a.test",
        "--out",
        &arg(&out),
    ])
    .ok();
    let r = fedgate(&["svid", "inspect", &arg(&out.join("svid.pem")), "--json"]);
    let v: Value = serde_json::from_str(r.ok()).unwrap();
    assert_eq!(v["spiffe_id"], "spiffe://a.test/w");
    assert_eq!(v["key_type"], "ECDSA P-256");
    assert_eq!(v["chain_length"], 2);
    assert_eq!(v["is_ca"], false);
    assert_eq!(v["dns_sans"], serde_json::json!(["w.a.test"]));
    assert_eq!(v["sha256_fingerprint"].as_str().unwrap().len(), 64);
    for k in ["issuer", "serial", "not_before", "not_after", "subject"] {
        assert!(v[k].is_string(), "{k}: {v}");
    }
    assert!(
        v["issuer"]
            .as_str()
            .unwrap()
            .contains("a.test intermediate"),
        "{v}"
    );
    let text = fedgate(&["svid", "inspect", &arg(&out.join("svid.pem"))]);
    assert!(
        text.ok().contains("spiffe id:  spiffe://a.test/w"),
        "{text:#?}"
    );
    fedgate(&["svid", "inspect", &write(dir.path(), "e.pem", "")]).fails_with(2);
}

/// Writes a CA directory (`ca.pem`, `ca.key`, `root.pem`) whose signing CA is an intermediate
/// of the root in `root_dir` with `key_usages`, so that `forge_leaf` chains through it.
fn forge_intermediate(
    root_dir: &Path,
    dir: &Path,
    name: &str,
    key_usages: Vec<rcgen::KeyUsagePurpose>,
) -> std::path::PathBuf {
    let root_pem = std::fs::read_to_string(root_dir.join("ca.pem")).unwrap();
    let root_key =
        rcgen::KeyPair::from_pem(&std::fs::read_to_string(root_dir.join("ca.key")).unwrap())
            .unwrap();
    let root = rcgen::CertificateParams::from_ca_cert_pem(&root_pem)
        .unwrap()
        .self_signed(&root_key)
        .unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name
        .push(rcgen::DnType::CommonName, format!("{name} intermediate"));
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.key_usages = key_usages;
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::hours(1);
    p.not_after = now + time::Duration::days(1);
    let cert = p.signed_by(&key, &root, &root_key).unwrap();
    let out = dir.join(name);
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("ca.pem"), cert.pem()).unwrap();
    std::fs::write(out.join("ca.key"), key.serialize_pem()).unwrap();
    std::fs::write(out.join("root.pem"), root_pem).unwrap();
    out
}

#[test]
fn intermediate_without_key_cert_sign_is_refused() {
    use rcgen::KeyUsagePurpose::{CrlSign, DigitalSignature, KeyCertSign};
    let dir = tempfile::tempdir().unwrap();
    let root = ca_init(dir.path(), "a", "a.test", &[]);
    let bundle = root.join("bundle.json");
    for (name, kus) in [("ds", vec![DigitalSignature]), ("none", vec![])] {
        let bad = forge_intermediate(&root, dir.path(), name, kus);
        let chain = write(
            dir.path(),
            &format!("{name}.pem"),
            &forge_leaf(&bad, "spiffe://a.test/x", |_| {}),
        );
        let r = verify(Path::new(&chain), &[("a.test", &bundle)], &[]);
        let line = r.fails_with(1);
        assert!(
            line.contains("keyCertSign") && line.contains(&chain),
            "{line}"
        );
        assert_eq!(r.stdout, "");
    }
    // Control: the same chain shape with keyCertSign verifies.
    let good = forge_intermediate(&root, dir.path(), "good", vec![KeyCertSign, CrlSign]);
    let chain = write(
        dir.path(),
        "good.pem",
        &forge_leaf(&good, "spiffe://a.test/x", |_| {}),
    );
    assert_eq!(
        verify(Path::new(&chain), &[("a.test", &bundle)], &[]).ok(),
        "spiffe://a.test/x\n"
    );
}

#[test]
fn chain_to_an_expired_root_is_refused_at_the_validation_time() {
    let dir = tempfile::tempdir().unwrap();
    let root = ca_init(dir.path(), "a", "a.test", &["--ttl", "48h"]);
    let bundle = root.join("bundle.json");
    // A leaf outliving its root: valid for ten days.
    let chain = write(
        dir.path(),
        "long.pem",
        &forge_leaf(&root, "spiffe://a.test/x", |p| {
            p.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(10)
        }),
    );
    assert_eq!(
        verify(Path::new(&chain), &[("a.test", &bundle)], &[]).ok(),
        "spiffe://a.test/x\n"
    );
    let later = (time::OffsetDateTime::now_utc() + time::Duration::days(5))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let r = verify(Path::new(&chain), &[("a.test", &bundle)], &["--at", &later]);
    let line = r.fails_with(1);
    assert!(
        line.contains("trust anchor") && line.contains("expired") && line.contains("a.test"),
        "{line}"
    );
}
