//! `fedgate check` as a process against real servers on 127.0.0.1: gateway A serves its bundle
//! (https_spiffe), the checked config federates with it; an all-ok run exits 0, a hanging
//! peer, a wrong endpoint ID and an unreachable upstream fail (in bounded time) and exit 1, a
//! gateway that is not running only warns (exit 2), and `--json` has the documented shape.
// Helpers outside #[test] fns unwrap too: a failed step is a test failure.
#![allow(clippy::unwrap_used)]

#[path = "support/gw.rs"]
mod gw_support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use gw_support::*;

const ENDPOINT_PATH: &str = "/fedgate/bundle-endpoint";

/// Gateway A (in `dir`): identity files plus a bundle endpoint on port 0.
fn gateway_a(ca: &SpiffeCa, dir: &Path) -> String {
    ca.write_bundle(&dir.join("a-bundle.json"));
    ca.write_svid(ENDPOINT_PATH, &dir.join("a.pem"), &dir.join("a.key"));
    format!(
        "trust_domain = \"cluster-a.test\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [identity]\nsvid = \"{0}/a.pem\"\nkey = \"{0}/a.key\"\nbundle = \"{0}/a-bundle.json\"\n\
         [federation]\n[federation.serve]\nlisten = \"127.0.0.1:0\"\nprofile = \"https_spiffe\"\n",
        dir.display()
    )
}

/// A `[[federation.peers]]` entry for `td`, https_spiffe with `endpoint_id`.
fn peer(dir: &Path, td: &str, url: &str, endpoint_id: &str, bootstrap: &str) -> String {
    format!(
        "[[federation.peers]]\ntrust_domain = \"{td}\"\nurl = \"{url}\"\n\
         profile = \"https_spiffe\"\nendpoint_id = \"{endpoint_id}\"\n\
         bootstrap_bundle = \"{}/{bootstrap}\"\n",
        dir.display()
    )
}

/// The checked gateway B: its own identity, the given peers, admin at `admin`, one
/// passthrough route to `upstreams`.
fn gateway_b(dir: &Path, admin: SocketAddr, peers: &str, upstreams: &[SocketAddr]) -> String {
    let ca = SpiffeCa::new("cluster-b.test");
    ca.write_bundle(&dir.join("b-bundle.json"));
    ca.write_svid("/gateway", &dir.join("b.pem"), &dir.join("b.key"));
    format!(
        "trust_domain = \"cluster-b.test\"\n[admin]\nlisten = \"{admin}\"\n\
         [identity]\nsvid = \"{0}/b.pem\"\nkey = \"{0}/b.key\"\nbundle = \"{0}/b-bundle.json\"\n\
         [federation]\nstate_dir = \"{0}/state\"\n{peers}\n{1}",
        dir.display(),
        listener("edge", "", &[("api.cluster-b.test", upstreams)])
    )
}

struct Out {
    code: i32,
    stdout: String,
    elapsed: Duration,
}

async fn check(config: &Path, json: bool) -> Out {
    let start = Instant::now();
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_fedgate"));
    cmd.args(["check", "--config"]).arg(config).args([
        "--connect-timeout",
        "2s",
        "--timeout",
        "3s",
    ]);
    if json {
        cmd.arg("--json");
    }
    let out = cmd.output().await.unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        elapsed: start.elapsed(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_ok_then_failures_then_warnings() {
    let files = tempfile::tempdir().unwrap();
    let dir = files.path();
    let ca_a = SpiffeCa::new("cluster-a.test");
    let a = TestApp::start(&gateway_a(&ca_a, dir)).await;
    let endpoint = a.bundle_endpoint.expect("gateway A serves its bundle");
    let url = format!("https://{endpoint}/");
    let (upstream, _sink) = tcp_sink().await;
    let good_peer = peer(
        dir,
        "cluster-a.test",
        &url,
        &format!("spiffe://cluster-a.test{ENDPOINT_PATH}"),
        "a-bundle.json",
    );

    // All ok: the peer answers with the pinned ID, the upstream accepts, and A's admin stands
    // in for the running gateway (it is ready).
    let path = dir.join("ok.toml");
    std::fs::write(&path, gateway_b(dir, a.admin, &good_peer, &[upstream])).unwrap();
    let out = check(&path, false).await;
    assert_eq!(out.code, 0, "{}", out.stdout);
    for line in out.stdout.lines().filter(|l| !l.ends_with("warnings")) {
        assert!(line.starts_with('✓'), "{}", out.stdout);
    }
    for name in [
        "config",
        "local SVID",
        "local SVID expiry",
        "peer cluster-a.test:",
        "peer cluster-a.test sequence: no last-known-good stored yet",
        "peer cluster-a.test trust",
        "route edge/api.cluster-b.test",
        "admin /readyz",
    ] {
        assert!(out.stdout.contains(name), "{name}: {}", out.stdout);
    }

    // Failures: a peer that accepts and never answers, a peer presenting another ID than its
    // endpoint_id, an unreachable upstream; the gateway is not running.
    let hanging = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hanging_addr = hanging.local_addr().unwrap();
    let _hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = hanging.accept().await {
            held.push(s);
        }
    });
    SpiffeCa::new("cluster-c.test").write_bundle(&dir.join("c-bundle.json"));
    let peers = format!(
        "{}{}",
        peer(
            dir,
            "cluster-a.test",
            &url,
            "spiffe://cluster-a.test/someone-else",
            "a-bundle.json"
        ),
        peer(
            dir,
            "cluster-c.test",
            &format!("https://{hanging_addr}/"),
            "spiffe://cluster-c.test/endpoint",
            "c-bundle.json"
        ),
    );
    let dead = dead_addr().await;
    let dead_admin = dead_addr().await;
    let path = dir.join("bad.toml");
    std::fs::write(&path, gateway_b(dir, dead_admin, &peers, &[upstream, dead])).unwrap();
    let text = check(&path, false).await;
    assert_eq!(text.code, 1, "{}", text.stdout);
    assert!(
        text.stdout.contains("✗ peer cluster-c.test: "),
        "{}",
        text.stdout
    );
    assert!(text.stdout.contains("! admin /readyz: "), "{}", text.stdout);
    let out = check(&path, true).await;
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.elapsed < Duration::from_secs(20),
        "took {:?}",
        out.elapsed
    );
    let results: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let results = results.as_array().unwrap();
    for r in results {
        let keys: Vec<&String> = r.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["detail", "hint", "name", "status"], "{r}");
        let status = r["status"].as_str().unwrap();
        assert!(["ok", "fail", "warn"].contains(&status), "{r}");
        assert_eq!(r["hint"].is_string(), status != "ok", "{r}");
    }
    let find = |name: &str| {
        results
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {results:?}"))
    };
    let wrong_id = find("peer cluster-a.test");
    assert_eq!(wrong_id["status"], "fail", "{wrong_id}");
    assert!(
        wrong_id["detail"].as_str().unwrap().contains(
            "presents spiffe://cluster-a.test/fedgate/bundle-endpoint, not the pinned endpoint_id"
        ),
        "{wrong_id}"
    );
    assert!(
        wrong_id["hint"]
            .as_str()
            .unwrap()
            .contains("spiffe://cluster-a.test/someone-else"),
        "{wrong_id}"
    );
    let hang = find("peer cluster-c.test");
    assert_eq!(hang["status"], "fail", "{hang}");
    let route = find("route edge/api.cluster-b.test");
    assert_eq!(route["status"], "fail", "{route}");
    assert!(
        route["detail"]
            .as_str()
            .unwrap()
            .contains(&dead.to_string()),
        "{route}"
    );
    assert!(
        !route["detail"]
            .as_str()
            .unwrap()
            .contains(&upstream.to_string()),
        "{route}"
    );
    let admin = find("admin /readyz");
    assert_eq!(admin["status"], "warn", "{admin}");
    assert!(
        admin["hint"].as_str().unwrap().contains("fedgate run"),
        "{admin}"
    );

    // Warnings only: everything fine but the gateway is not running.
    let path = dir.join("warn.toml");
    std::fs::write(&path, gateway_b(dir, dead_admin, &good_peer, &[upstream])).unwrap();
    let out = check(&path, false).await;
    assert_eq!(out.code, 2, "{}", out.stdout);
    assert!(out.stdout.contains("! admin /readyz"), "{}", out.stdout);
    assert!(
        out.stdout.contains("hint: is `fedgate run` running?"),
        "{}",
        out.stdout
    );

    a.stop().await;
}

#[tokio::test]
async fn a_config_error_is_the_only_result() {
    let files = tempfile::tempdir().unwrap();
    let path = files.path().join("broken.toml");
    std::fs::write(&path, "trust_domain = \"a.test\"\n[admin]\nport = 3\n").unwrap();
    let out = check(&path, false).await;
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(out.stdout.starts_with("✗ config: "), "{}", out.stdout);
    assert!(out.stdout.contains("hint: "), "{}", out.stdout);
    assert!(
        out.stdout.ends_with("0 ok, 1 failed, 0 warnings\n"),
        "{}",
        out.stdout
    );
}

/// The last-known-good store: a stored bundle with a sequence the endpoint no longer serves is
/// a rollback (failed), and the trust check falls back to the stored bundle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_peer_fails_against_the_last_known_good() {
    let files = tempfile::tempdir().unwrap();
    let dir = files.path();
    let ca_a = SpiffeCa::new("cluster-a.test");
    let a = TestApp::start(&gateway_a(&ca_a, dir)).await;
    let endpoint = a.bundle_endpoint.expect("gateway A serves its bundle");
    let url = format!("https://{endpoint}/");
    let mut stored = ca_a.bundle();
    stored.set_sequence(Some(5));
    let store = fedgate_federation::store::Store::open(dir.join("state")).unwrap();
    let origin = fedgate_federation::store::Origin {
        url: url.clone(),
        profile: Some("https_spiffe".to_owned()),
        endpoint_id: Some(format!("spiffe://cluster-a.test{ENDPOINT_PATH}")),
    };
    store
        .save(&stored, &origin, std::time::SystemTime::now())
        .unwrap();
    let (upstream, _sink) = tcp_sink().await;
    let peers = peer(
        dir,
        "cluster-a.test",
        &url,
        &format!("spiffe://cluster-a.test{ENDPOINT_PATH}"),
        "a-bundle.json",
    );
    let path = dir.join("rollback.toml");
    std::fs::write(&path, gateway_b(dir, a.admin, &peers, &[upstream])).unwrap();
    let out = check(&path, false).await;
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.stdout.contains("✗ peer cluster-a.test: ") && out.stdout.contains("(rollback)"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("✓ peer cluster-a.test trust: the last-known-good bundle's last authority"),
        "{}",
        out.stdout
    );
    a.stop().await;
}
