//! `fedgate check` on SVIDs: the local SVID's chain and expiry, and on a bridge-egress config the
//! handshake with the bridge SVID to each route's
//! upstream (a bridge-ingress stand-in on 127.0.0.1) must meet the route's pinned `peer_id`.
// Helpers outside #[test] fns unwrap too: a failed step is a test failure.
#![allow(clippy::unwrap_used)]

#[path = "support/bridge_certs.rs"]
mod bridge_certs;

use std::path::Path;

use bridge_certs::{workloads::spawn_destination, TestCa};

/// `fedgate check --config PATH --json`: exit code and stdout.
async fn check_json(config: &Path) -> (i32, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_fedgate"))
        .args([
            "check",
            "--json",
            "--connect-timeout",
            "2s",
            "--timeout",
            "3s",
            "--config",
        ])
        .arg(config)
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Bridge peers: a handshake with the bridge SVID to the route's upstream succeeds when the
/// upstream presents the pinned `peer_id`, and fails clearly when it presents another ID.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_peer_must_present_the_pinned_id() {
    let files = tempfile::tempdir().unwrap();
    let dir = files.path();
    let local = TestCa::new("cluster-a.test");
    let bridge = TestCa::new("bridge.test");
    local.write_bundle(dir, "local-bundle.json");
    local.issue("/gateway").write(dir, "local");
    bridge.write_bundle(dir, "bridge-bundle.json");
    bridge.issue("/gateway/cluster-a").write(dir, "bridge");
    // The peer gateway's bridge-ingress stand-in: mTLS with its bridge SVID.
    let ingress = spawn_destination(&bridge, &bridge.issue("/gateway/cluster-b")).await;
    let toml = format!(
        r#"
trust_domain = "cluster-a.test"
[identity]
svid = "local.pem"
key = "local.key"
bundle = "local-bundle.json"
[admin]
listen = "127.0.0.1:0"
[bridge]
trust_domain = "bridge.test"
svid = "bridge.pem"
key = "bridge.key"
bundle = "bridge-bundle.json"

[[listeners]]
name = "bridge-out"
kind = "bridge-egress"
listen = "127.0.0.1:0"
  [[listeners.routes]]
  name = "good"
  sni = "api.cluster-b.test"
  upstreams = ["{0}"]
  peer_id = "spiffe://bridge.test/gateway/cluster-b"
  allow = ["spiffe://cluster-a.test/ns/demo/sa/client"]
  [[listeners.routes]]
  name = "wrong"
  sni = "*.cluster-c.test"
  upstreams = ["{0}"]
  peer_id = "spiffe://bridge.test/gateway/cluster-c"
  allow = ["spiffe://cluster-a.test/ns/demo/sa/client"]
"#,
        ingress.addr
    );
    let path = dir.join("gateway.toml");
    std::fs::write(&path, toml).unwrap();
    let (code, stdout) = check_json(&path).await;
    assert_eq!(code, 1, "{stdout}");
    let results: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let find = |name: &str| {
        results
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {results}"))
            .clone()
    };
    let good = find("bridge bridge-out/good");
    assert_eq!(good["status"], "ok", "{good}");
    assert!(
        good["detail"]
            .as_str()
            .unwrap()
            .contains("spiffe://bridge.test/gateway/cluster-b"),
        "{good}"
    );
    let wrong = find("bridge bridge-out/wrong");
    assert_eq!(wrong["status"], "fail", "{wrong}");
    assert!(
        wrong["detail"]
            .as_str()
            .unwrap()
            .contains(&ingress.addr.to_string()),
        "{wrong}"
    );
    assert!(
        wrong["hint"]
            .as_str()
            .unwrap()
            .contains("spiffe://bridge.test/gateway/cluster-c"),
        "{wrong}"
    );
    // The bridge SVID itself: its chain against the bridge bundle, and its expiry.
    assert_eq!(find("bridge SVID")["status"], "ok");
    assert_eq!(find("bridge SVID expiry")["status"], "ok");
    // Admin on port 0: the running gateway cannot be found, a warning.
    assert_eq!(find("admin /readyz")["status"], "warn");
}

/// A config with only `[identity]` (and admin on port 0: a warning).
fn identity_only(dir: &Path, bundle: &str) -> std::path::PathBuf {
    let path = dir.join(format!("gateway-{bundle}.toml"));
    let toml = format!(
        "trust_domain = \"cluster-a.test\"\n[identity]\nsvid = \"local.pem\"\nkey = \"local.key\"\n\
         bundle = \"{bundle}\"\n[admin]\nlisten = \"127.0.0.1:0\"\n"
    );
    std::fs::write(&path, toml).unwrap();
    path
}

fn status_of(stdout: &str, name: &str) -> (String, String) {
    let results: serde_json::Value = serde_json::from_str(stdout).unwrap();
    let r = results
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {stdout}"));
    (
        r["status"].as_str().unwrap().to_owned(),
        r["detail"].as_str().unwrap().to_owned(),
    )
}

/// The local SVID: fine, in the last third of its lifetime (warn), expired (fail), or issued
/// by a CA that is not in the local bundle (fail).
#[tokio::test]
async fn local_svid_chain_and_expiry() {
    let files = tempfile::tempdir().unwrap();
    let dir = files.path();
    let local = TestCa::new("cluster-a.test");
    local.write_bundle(dir, "local-bundle.json");
    TestCa::new("cluster-a.test").write_bundle(dir, "other-bundle.json");
    let path = identity_only(dir, "local-bundle.json");
    let foreign = identity_only(dir, "other-bundle.json");

    local.issue("/gateway").write(dir, "local");
    let (code, stdout) = check_json(&path).await;
    assert_eq!(code, 2, "{stdout}"); // only the admin warning
    assert_eq!(status_of(&stdout, "local SVID").0, "ok", "{stdout}");
    assert_eq!(status_of(&stdout, "local SVID expiry").0, "ok", "{stdout}");

    let (code, stdout) = check_json(&foreign).await;
    assert_eq!(code, 1, "{stdout}");
    let (status, detail) = status_of(&stdout, "local SVID");
    assert_eq!(status, "fail", "{stdout}");
    assert!(detail.contains("does not verify"), "{detail}");

    let now = time::OffsetDateTime::now_utc();
    local
        .issue_valid(
            "/gateway",
            now - time::Duration::hours(23),
            now + time::Duration::hours(1),
        )
        .write(dir, "local");
    let (code, stdout) = check_json(&path).await;
    assert_eq!(code, 2, "{stdout}");
    assert_eq!(
        status_of(&stdout, "local SVID expiry").0,
        "warn",
        "{stdout}"
    );

    local.issue_expired("/gateway").write(dir, "local");
    let (code, stdout) = check_json(&path).await;
    assert_eq!(code, 1, "{stdout}");
    let (status, detail) = status_of(&stdout, "local SVID expiry");
    assert_eq!(status, "fail", "{stdout}");
    assert!(detail.contains("expired 1h 0m ago"), "{detail}");
}
