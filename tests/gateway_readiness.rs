//! The readiness rule for federation peers (docs/configuration.md, `[[federation.peers]]`
//! `required`): a gateway with one reachable peer and one unreachable *new* peer becomes ready
//! once the new peer's first fetch attempt has failed, and reports that peer in `/readyz` and
//! `/status`; the same peer marked `required = true` keeps the gateway unready.
//!
//! Real servers on 127.0.0.1 port 0: gateway A serves its bundle, gateway B federates with A
//! (reachable) and with cluster-c.test at an address where nothing listens.

#[path = "support/gw.rs"]
mod gw_support;

use gw_support::*;

const ENDPOINT_PATH: &str = "/fedgate/bundle-endpoint";

/// Gateway A (in `dir`): identity files plus a bundle endpoint on port 0.
fn gateway_a(ca: &SpiffeCa, dir: &std::path::Path) -> String {
    ca.write_bundle(&dir.join("a-bundle.json"));
    ca.write_svid(ENDPOINT_PATH, &dir.join("a.pem"), &dir.join("a.key"));
    format!(
        "trust_domain = \"cluster-a.test\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [identity]\nsvid = \"{0}/a.pem\"\nkey = \"{0}/a.key\"\nbundle = \"{0}/a-bundle.json\"\n\
         [federation]\n[federation.serve]\nlisten = \"127.0.0.1:0\"\nprofile = \"https_spiffe\"\n",
        dir.display()
    )
}

/// Gateway B: peers cluster-a.test at `a_url` and cluster-c.test at `c_url`; `c_required` is
/// written as cluster-c.test's `required` (None: the key is left out, i.e. the default).
fn gateway_b(dir: &std::path::Path, a_url: &str, c_url: &str, c_required: Option<bool>) -> String {
    let required = c_required.map_or(String::new(), |r| format!("required = {r}\n"));
    format!(
        "trust_domain = \"cluster-b.test\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [federation]\nstate_dir = \"{0}/state\"\n\
         min_refresh = \"1s\"\ndefault_refresh = \"1s\"\nmax_refresh = \"5s\"\n\
         [[federation.peers]]\ntrust_domain = \"cluster-a.test\"\nurl = \"{a_url}\"\n\
         profile = \"https_spiffe\"\nendpoint_id = \"spiffe://cluster-a.test{ENDPOINT_PATH}\"\n\
         bootstrap_bundle = \"{0}/a-bundle.json\"\n\
         [[federation.peers]]\ntrust_domain = \"cluster-c.test\"\nurl = \"{c_url}\"\n\
         profile = \"https_spiffe\"\nendpoint_id = \"spiffe://cluster-c.test{ENDPOINT_PATH}\"\n\
         bootstrap_bundle = \"{0}/c-bundle.json\"\n{required}",
        dir.display()
    )
}

/// The `/status` entry of peer `td`.
// A test helper: a panic here is the test failure, with a backtrace.
#[allow(clippy::unwrap_used)]
async fn peer_status(app: &TestApp, td: &str) -> serde_json::Value {
    let (code, body) = get(app.admin, "/status").await;
    assert_eq!(code, 200, "{body}");
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    status["peers"]
        .as_array()
        .unwrap_or_else(|| panic!("no peers array in {status}"))
        .iter()
        .find(|p| p["trust_domain"] == td)
        .cloned()
        .unwrap_or_else(|| panic!("no peer {td} in {status}"))
}

struct Setup {
    files: tempfile::TempDir,
    a: TestApp,
    a_url: String,
    c_url: String,
}

// A test helper: a panic here is the test failure, with a backtrace.
#[allow(clippy::unwrap_used, clippy::expect_used)]
async fn setup() -> Setup {
    let files = tempfile::tempdir().unwrap();
    let ca_a = SpiffeCa::new("cluster-a.test");
    SpiffeCa::new("cluster-c.test").write_bundle(&files.path().join("c-bundle.json"));
    let a = TestApp::start(&gateway_a(&ca_a, files.path())).await;
    let endpoint = a.bundle_endpoint.expect("gateway A serves its bundle");
    let dead = dead_addr().await;
    Setup {
        files,
        a,
        a_url: format!("https://{endpoint}/"),
        c_url: format!("https://{dead}/"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_new_peer_is_reported_but_does_not_block_readiness() {
    for c_required in [None, Some(false)] {
        let s = setup().await;
        let b = TestApp::start(&gateway_b(s.files.path(), &s.a_url, &s.c_url, c_required)).await;
        b.wait_until(|| async { get(b.admin, "/readyz").await.0 == 200 })
            .await;

        let (code, body) = get(b.admin, "/readyz").await;
        assert_eq!(code, 200, "{body}");
        let readyz: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(readyz["ready"], true, "{readyz}");
        let warning = readyz["warning"]
            .as_str()
            .unwrap_or_else(|| panic!("the unreachable peer is not reported: {readyz}"));
        assert!(warning.contains("cluster-c.test"), "{warning}");
        assert!(!warning.contains("cluster-a.test"), "{warning}");

        let a = peer_status(&b, "cluster-a.test").await;
        assert!(a["last_success"].is_string(), "{a}");
        assert_eq!(a["required"], false, "{a}");
        let c = peer_status(&b, "cluster-c.test").await;
        assert!(c["last_error"].is_string(), "{c}");
        assert!(c["last_success"].is_null(), "{c}");
        assert_eq!(c["authorities"], 0, "{c}");
        assert_eq!(c["required"], false, "{c}");

        b.stop().await;
        s.a.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_required_peer_keeps_the_gateway_unready() {
    let s = setup().await;
    let b = TestApp::start(&gateway_b(s.files.path(), &s.a_url, &s.c_url, Some(true))).await;
    // Both peers have been tried: A fetched, C failed. Readiness is decided from then on.
    b.wait_until(|| async {
        peer_status(&b, "cluster-a.test").await["last_success"].is_string()
            && peer_status(&b, "cluster-c.test").await["last_error"].is_string()
    })
    .await;

    let (code, body) = get(b.admin, "/readyz").await;
    assert_eq!(code, 503, "{body}");
    let readyz: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(readyz["ready"], false, "{readyz}");
    let reason = readyz["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("required"), "{reason}");
    assert!(reason.contains("cluster-c.test"), "{reason}");
    assert!(!reason.contains("cluster-a.test"), "{reason}");
    assert_eq!(peer_status(&b, "cluster-c.test").await["required"], true);

    b.stop().await;
    s.a.stop().await;
}
