//! `fedgate check` on a bridge-egress config: the handshake with the bridge SVID to each route's
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
    // Admin on port 0: the running gateway cannot be found, a warning.
    assert_eq!(find("admin /readyz")["status"], "warn");
}
