//! The `fedgate ca serve` binary: prints `listening on <addr>` once bound and issues over it;
//! an unusable config exits 64 with one line naming the file and the key.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic fails the test

#[path = "support/issuer.rs"]
mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::*;

#[tokio::test]
async fn serve_prints_its_address_and_issues() {
    let pki = Pki::new();
    let config = pki.write_config("");
    let mut child = Command::new(env!("CARGO_BIN_EXE_fedgate"))
        .args(["ca", "serve", "--config", config.to_str().unwrap()])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    // Read the first line, then keep draining stdout until the process exits.
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next().and_then(Result::ok).unwrap_or_default();
        let _ = tx.send(first);
        for _ in lines {}
    });
    let line = tokio::time::timeout(Duration::from_secs(30), rx)
        .await
        .unwrap()
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    let url: reqwest::Url = format!("https://{addr}/").parse().unwrap();
    let c = gw_a_client(&pki, &url);
    let result = c.fetch_once().await;
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(result.unwrap().id(), &id(BRIDGE_A));
}

#[test]
fn bad_config_exits_64_naming_the_key() {
    let pki = Pki::new();
    let path = pki.path("ca-serve.toml");
    std::fs::write(
        &path,
        pki.config_text("").replace(
            "spiffe://cluster-a.test/ns/fedgate",
            "spiffe://cluster-z.test/ns/fedgate",
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_fedgate"))
        .args(["ca", "serve", "--config", path.to_str().unwrap()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("ca-serve.toml") && err.contains("policy[0].local"),
        "{err}"
    );
    assert!(err.contains("cluster-z.test"), "{err}");

    // A missing CA directory is a startup error (exit 1) that names the directory.
    let path2 = pki.path("ca-serve2.toml");
    std::fs::write(
        &path2,
        pki.config_text("").replace("\"bridge-ca\"", "\"nowhere\""),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_fedgate"))
        .args(["ca", "serve", "--config", path2.to_str().unwrap()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nowhere") && err.contains("fedgate ca init"),
        "{err}"
    );
}
