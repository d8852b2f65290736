//! JWT-SVIDs end to end with the real binary (docs/cli.md, docs/jwt-svid.md): `ca init` →
//! `jwt mint` → `jwt verify`, rotation with overlap, old CA directories, and the bad inputs.

// Test code: a panic is a test failure with a message, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/cli.rs"]
mod cli_support;

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use cli_support::{arg, fedgate, Run};
use serde_json::Value;

const AUD: &str = "spiffe://a.test/reports";

fn init(dir: &Path, td: &str) {
    fedgate(&["ca", "init", "--trust-domain", td, "--out", &arg(dir)]).ok();
}

fn mint(ca: &Path, id: &str, aud: &str) -> String {
    let r = fedgate(&[
        "jwt",
        "mint",
        "--ca-dir",
        &arg(ca),
        "--spiffe-id",
        id,
        "--audience",
        aud,
    ]);
    let token = r.ok().trim().to_string();
    assert_eq!(token.split('.').count(), 3, "{r:#?}");
    token
}

fn verify(token: &str, aud: &str, bundles: &[(&str, &Path)]) -> Run {
    let mut args = vec![
        "jwt".to_string(),
        "verify".into(),
        "--audience".into(),
        aud.into(),
    ];
    for (td, path) in bundles {
        args.push("--bundle".into());
        args.push(format!("{td}={}", arg(path)));
    }
    args.push(token.into());
    fedgate(&args)
}

/// Runs `fedgate args...` with `input` on stdin.
fn fedgate_stdin(args: &[&str], input: Vec<u8>) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fedgate"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // fedgate may stop reading early (size limit): ignore a broken pipe.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn mint_verify_and_rotation_overlap() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    init(&ca, "a.test");
    let bundle = ca.join("bundle.json");
    let doc: Value = serde_json::from_slice(&std::fs::read(&bundle).unwrap()).unwrap();
    let jwt_keys: Vec<&Value> = doc["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["use"] == "jwt-svid")
        .collect();
    assert_eq!(jwt_keys.len(), 1);
    assert_eq!(jwt_keys[0]["kty"], "EC");
    assert_eq!(jwt_keys[0]["crv"], "P-256");
    assert!(jwt_keys[0]["kid"].as_str().is_some_and(|k| k.len() == 43));

    let old = mint(&ca, "spiffe://a.test/web", AUD);
    let r = verify(&old, AUD, &[("a.test", &bundle)]);
    let out = r.ok();
    assert!(out.starts_with("spiffe id: spiffe://a.test/web\n"), "{out}");
    assert!(out.contains(&format!("audience:  {AUD}\n")), "{out}");
    assert!(out.contains("expires:   "), "{out}");
    assert_eq!(r.stderr, "");

    // --json, and the token on stdin.
    let r = fedgate_stdin(
        &[
            "jwt",
            "verify",
            "--json",
            "--audience",
            AUD,
            "--bundle",
            &format!("a.test={}", arg(&bundle)),
            "-",
        ],
        format!("{old}\n").into_bytes(),
    );
    let v: Value = serde_json::from_str(r.ok()).unwrap();
    assert_eq!(v["spiffe_id"], "spiffe://a.test/web");
    assert_eq!(v["audience"], serde_json::json!([AUD]));
    assert_eq!(v["alg"], "ES256");
    assert_eq!(v["kid"], jwt_keys[0]["kid"]);
    assert!(v["exp"].as_u64().unwrap() > v["iat"].as_u64().unwrap());

    // Wrong audience.
    let r = verify(&old, "spiffe://a.test/billing", &[("a.test", &bundle)]);
    let line = r.fails_with(1);
    assert!(
        line.contains("audience") && line.contains("billing"),
        "{line}"
    );
    assert_eq!(r.stdout, "");

    // Rotation: the bundle keeps the old key, so old tokens still verify; new ones too.
    let before = dir.path().join("before.json");
    std::fs::copy(&bundle, &before).unwrap();
    let r = fedgate(&["ca", "rotate", "--ca", &arg(&ca)]);
    assert!(r.ok().contains("2 JWT key(s)"), "{r:#?}");
    let new = mint(&ca, "spiffe://a.test/web", AUD);
    verify(&old, AUD, &[("a.test", &bundle)]).ok();
    verify(&new, AUD, &[("a.test", &bundle)]).ok();
    // A peer that still has the old bundle does not know the new key yet.
    let line = verify(&new, AUD, &[("a.test", &before)])
        .fails_with(1)
        .to_string();
    assert!(line.contains("kid"), "{line}");

    // Second phase: the old key leaves the bundle and its tokens stop verifying.
    let r = fedgate(&["ca", "rotate", "--ca", &arg(&ca), "--retire-old"]);
    assert!(r.ok().contains("1 old JWT key(s)"), "{r:#?}");
    let line = verify(&old, AUD, &[("a.test", &bundle)])
        .fails_with(1)
        .to_string();
    assert!(line.contains("kid"), "{line}");
    verify(&new, AUD, &[("a.test", &bundle)]).ok();
}

#[test]
fn bundles_are_chosen_by_the_trust_domain_of_sub() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    init(&a, "a.test");
    init(&b, "b.test");
    let (ab, bb) = (a.join("bundle.json"), b.join("bundle.json"));
    let token_b = mint(&b, "spiffe://b.test/api", AUD);
    verify(&token_b, AUD, &[("a.test", &ab), ("b.test", &bb)]).ok();
    // Only a.test's bundle: no bundle for the token's trust domain.
    let line = verify(&token_b, AUD, &[("a.test", &ab)])
        .fails_with(1)
        .to_string();
    assert!(line.contains("no bundle for trust domain b.test"), "{line}");
    // b.test's bundle file given as a.test's: b's key is not an a.test key, and the token
    // still names b.test.
    verify(&token_b, AUD, &[("a.test", &bb)]).fails_with(1);
    // A CA mints only for its own trust domain.
    let r = fedgate(&[
        "jwt",
        "mint",
        "--ca-dir",
        &arg(&b),
        "--spiffe-id",
        "spiffe://a.test/web",
        "--audience",
        AUD,
    ]);
    assert!(
        r.fails_with(1).contains("outside the CA's trust domain"),
        "{r:#?}"
    );
}

#[test]
fn bad_tokens_exit_1_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    init(&ca, "a.test");
    let bundle = ca.join("bundle.json");
    let b64 = |s: &str| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    };
    let none = format!(
        "{}.{}.",
        b64(r#"{"alg":"none","typ":"JWT"}"#),
        b64(r#"{"sub":"spiffe://a.test/web","aud":"x","exp":99999999999}"#)
    );
    for (token, want) in [
        (none.as_str(), "`alg` none is not allowed"),
        ("not-a-token", "not a compact JWS"),
        ("a.b.c.d.e", "not a compact JWS"),
    ] {
        let line = verify(token, "x", &[("a.test", &bundle)])
            .fails_with(1)
            .to_string();
        assert!(line.contains(want), "{token}: {line}");
    }
    // Expired: validate far in the future.
    let token = mint(&ca, "spiffe://a.test/web", AUD);
    let r = fedgate(&[
        "jwt",
        "verify",
        "--audience",
        AUD,
        "--bundle",
        &format!("a.test={}", arg(&bundle)),
        "--at",
        "2100-01-01T00:00:00Z",
        &token,
    ]);
    assert!(r.fails_with(1).contains("expired"), "{r:#?}");
    // 1 MiB on stdin: refused early, with the limit in the message.
    let huge = vec![b'a'; 1024 * 1024];
    let r = fedgate_stdin(
        &[
            "jwt",
            "verify",
            "--audience",
            AUD,
            "--bundle",
            &format!("a.test={}", arg(&bundle)),
            "-",
        ],
        huge,
    );
    assert!(r.fails_with(1).contains("65536-byte limit"), "{r:#?}");
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    init(&ca, "a.test");
    let bundle = ca.join("bundle.json");
    let token = mint(&ca, "spiffe://a.test/web", AUD);
    let missing = dir.path().join("missing.json");
    verify(&token, AUD, &[("a.test", &missing)]).fails_with(2);
    verify(&token, AUD, &[("a.test", &bundle), ("a.test", &bundle)]).fails_with(2);
    verify(&token, "", &[("a.test", &bundle)]).fails_with(2);
    assert_eq!(
        fedgate(&[
            "jwt",
            "verify",
            "--bundle",
            &format!("a.test={}", arg(&bundle)),
            &token
        ])
        .code,
        2
    );
}

#[test]
fn an_old_ca_directory_without_jwt_key_keeps_working() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    init(&ca, "a.test");
    // Turn it into a directory written before JWT-SVIDs: no jwt.key, no jwt-svid entry.
    std::fs::remove_file(ca.join("jwt.key")).unwrap();
    let bundle = ca.join("bundle.json");
    let mut doc: Value = serde_json::from_slice(&std::fs::read(&bundle).unwrap()).unwrap();
    doc["keys"]
        .as_array_mut()
        .unwrap()
        .retain(|k| k["use"] != "jwt-svid");
    std::fs::write(&bundle, serde_json::to_vec(&doc).unwrap()).unwrap();

    let out = dir.path().join("svid");
    fedgate(&[
        "ca",
        "issue",
        "--ca",
        &arg(&ca),
        "--id",
        "spiffe://a.test/x",
        "--out",
        &arg(&out),
    ])
    .ok();
    let r = fedgate(&[
        "jwt",
        "mint",
        "--ca-dir",
        &arg(&ca),
        "--spiffe-id",
        "spiffe://a.test/web",
        "--audience",
        AUD,
    ]);
    let line = r.fails_with(1);
    assert!(line.contains("fedgate ca rotate"), "{line}");

    fedgate(&["ca", "rotate", "--ca", &arg(&ca)]).ok();
    let token = mint(&ca, "spiffe://a.test/web", AUD);
    verify(&token, AUD, &[("a.test", &bundle)]).ok();
}
