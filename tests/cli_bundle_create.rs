//! `fedgate bundle create`: a bundle built from PEM CA certificates verifies SVIDs of that CA,
//! and a leaf certificate is refused as an authority.

#[path = "support/cli.rs"]
mod cli_support;

use cli_support::{arg, fedgate};

#[test]
fn bundle_from_ca_pem_verifies_the_cas_svids() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    let leaf = dir.path().join("leaf");
    let bundle = dir.path().join("imported.json");
    fedgate(&["ca", "init", "--trust-domain", "a.test", "--out", &arg(&ca)]).ok();
    fedgate(&[
        "ca",
        "issue",
        "--ca",
        &arg(&ca),
        "--id",
        "spiffe://a.test/w",
        "--out",
        &arg(&leaf),
    ])
    .ok();

    let pem = arg(&ca.join("ca.pem"));
    fedgate(&[
        "bundle",
        "create",
        "--trust-domain",
        "a.test",
        "--pem",
        &pem,
        "--sequence",
        "7",
        "--out",
        &arg(&bundle),
    ])
    .ok();

    let inspect = fedgate(&[
        "bundle",
        "inspect",
        &arg(&bundle),
        "--trust-domain",
        "a.test",
        "--json",
    ]);
    let summary: serde_json::Value = serde_json::from_str(inspect.ok()).unwrap();
    assert_eq!(summary["x509_authorities"], 1);
    assert_eq!(summary["sequence"], 7);

    let verify = fedgate(&[
        "svid",
        "verify",
        "--chain",
        &arg(&leaf.join("svid.pem")),
        "--bundle",
        &format!("a.test={}", arg(&bundle)),
    ]);
    assert_eq!(verify.ok().trim(), "spiffe://a.test/w");
}

#[test]
fn a_leaf_is_refused_as_an_authority() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    let leaf = dir.path().join("leaf");
    fedgate(&["ca", "init", "--trust-domain", "a.test", "--out", &arg(&ca)]).ok();
    fedgate(&[
        "ca",
        "issue",
        "--ca",
        &arg(&ca),
        "--id",
        "spiffe://a.test/w",
        "--out",
        &arg(&leaf),
    ])
    .ok();
    let out = dir.path().join("bad.json");
    let run = fedgate(&[
        "bundle",
        "create",
        "--trust-domain",
        "a.test",
        "--pem",
        &arg(&leaf.join("svid.pem")),
        "--out",
        &arg(&out),
    ]);
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("not a CA"), "{run:#?}");
    assert!(!out.exists());
}

/// Without `--sequence` the bundle still gets one (bundle endpoints serve the file's own):
/// at least the Unix time at first, unchanged when re-created with the same content, higher
/// when the content changed.
#[test]
fn default_sequence_is_written_and_grows_only_with_the_content() {
    let dir = tempfile::tempdir().unwrap();
    let (ca1, ca2) = (dir.path().join("ca1"), dir.path().join("ca2"));
    let out = dir.path().join("imported.json");
    for ca in [&ca1, &ca2] {
        fedgate(&["ca", "init", "--trust-domain", "a.test", "--out", &arg(ca)]).ok();
    }
    let create = |pems: &[&std::path::Path]| {
        let mut args = vec![
            "bundle".to_string(),
            "create".into(),
            "--trust-domain".into(),
            "a.test".into(),
            "--out".into(),
            arg(&out),
        ];
        for p in pems {
            args.push("--pem".into());
            args.push(arg(&p.join("ca.pem")));
        }
        fedgate(&args).ok();
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
        v["spiffe_sequence"]
            .as_u64()
            .expect("spiffe_sequence written")
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let first = create(&[&ca1]);
    assert!(first >= now, "{first} < {now}");
    assert_eq!(create(&[&ca1]), first, "same content, same sequence");
    let second = create(&[&ca1, &ca2]);
    assert!(second > first, "changed content: {second} <= {first}");
    let third = create(&[&ca2]);
    assert!(third > second, "changed content: {third} <= {second}");
}
