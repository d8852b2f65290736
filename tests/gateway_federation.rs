//! `fedgate run` with `[federation]`: gateway A serves its bundle (https_spiffe), gateway B
//! federates with A, becomes ready once it holds A's bundle, reports it in /status and
//! /metrics, keeps it in the last-known-good store and distributes it to workloads.

#[path = "support/gw.rs"]
mod gw_support;

use gw_support::*;

const ENDPOINT_PATH: &str = "/fedgate/bundle-endpoint";

/// Gateway A's config (in `dir`): identity files plus a bundle endpoint on port 0.
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

fn gateway_b(dir: &std::path::Path, peer_url: &str) -> String {
    format!(
        "trust_domain = \"cluster-b.test\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [federation]\nstate_dir = \"{0}/state\"\ndistribute_dir = \"{0}/out\"\n\
         min_refresh = \"1s\"\ndefault_refresh = \"1s\"\nmax_refresh = \"5s\"\n\
         [[federation.peers]]\ntrust_domain = \"cluster-a.test\"\nurl = \"{peer_url}\"\n\
         profile = \"https_spiffe\"\nendpoint_id = \"spiffe://cluster-a.test{ENDPOINT_PATH}\"\n\
         bootstrap_bundle = \"{0}/a-bundle.json\"\n",
        dir.display()
    )
}

/// `value` is an RFC 3339 time between 364 and 366 days from now.
// A test helper: a panic here is the test failure, with a backtrace.
#[allow(clippy::unwrap_used)]
fn assert_about_a_year_ahead(value: &serde_json::Value) {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("not a string: {value}"));
    let at = humantime::parse_rfc3339(text).unwrap();
    let ahead = at.duration_since(std::time::SystemTime::now()).unwrap();
    let day = std::time::Duration::from_secs(86_400);
    assert!(ahead > 364 * day && ahead < 366 * day, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_bundle_fetched_reported_stored_and_distributed() {
    let files = tempfile::tempdir().unwrap();
    let ca = SpiffeCa::new("cluster-a.test");
    let a = TestApp::start(&gateway_a(&ca, files.path())).await;
    let endpoint = a.bundle_endpoint.expect("gateway A serves its bundle");

    let b = TestApp::start(&gateway_b(files.path(), &format!("https://{endpoint}/"))).await;
    b.wait_until(|| async { get(b.admin, "/readyz").await.0 == 200 })
        .await;

    let (_, status) = get(b.admin, "/status").await;
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    let peer = &status["peers"][0];
    assert_eq!(peer["trust_domain"], "cluster-a.test");
    assert_eq!(peer["profile"], "https_spiffe");
    assert_eq!(peer["authorities"], 1);
    assert!(peer["last_success"].is_string(), "{peer}");
    // The anchor expiry of the peer bundle: A's root, valid for a year (spiffe_ca.rs).
    let roots = peer["x509_authorities_not_after"].as_array().unwrap();
    assert_eq!(roots.len(), 1, "{peer}");
    assert_eq!(peer["earliest_authority_expiry"], roots[0], "{peer}");
    assert_about_a_year_ahead(&roots[0]);
    // B has no [identity], so no local bundle.
    assert!(status["local_bundle"].is_null(), "{status}");
    // A reports its own (local) bundle the same way.
    let (_, status_a) = get(a.admin, "/status").await;
    let status_a: serde_json::Value = serde_json::from_str(&status_a).unwrap();
    let local = &status_a["local_bundle"];
    assert_eq!(local["trust_domain"], "cluster-a.test", "{status_a}");
    assert_eq!(local["authorities"], 1, "{local}");
    assert_eq!(
        local["x509_authorities_not_after"],
        peer["x509_authorities_not_after"]
    );
    assert_about_a_year_ahead(&local["earliest_authority_expiry"]);

    let (_, metrics) = get(b.admin, "/metrics").await;
    assert!(
        metrics.contains("fedgate_federation_fetches_total"),
        "{metrics}"
    );
    assert!(metrics.contains("cluster-a.test"), "{metrics}");

    assert!(
        std::fs::read_dir(files.path().join("state"))
            .unwrap()
            .count()
            >= 1
    );
    // The distributor may first write the map it had before the fetch; wait for the peer.
    let map = files.path().join("out/current/bundles.json");
    b.wait_until(|| async {
        std::fs::read_to_string(&map).is_ok_and(|m| m.contains("cluster-a.test"))
    })
    .await;
    // The same generation holds the peer's PKCS#12 truststore (on by default), not all.p12.
    let current = files.path().join("out/current");
    assert!(current.join("cluster-a.test.p12").is_file());
    assert!(!current.join("all.p12").exists());

    b.stop().await;
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_until_a_required_peer_has_a_bundle() {
    // A non-required peer would only hold readiness until its first fetch attempt fails
    // (tests/gateway_readiness.rs); a required one holds it until there is a bundle.
    let files = tempfile::tempdir().unwrap();
    SpiffeCa::new("cluster-a.test").write_bundle(&files.path().join("a-bundle.json"));
    let dead = dead_addr().await;
    let config = format!(
        "{}required = true\n",
        gateway_b(files.path(), &format!("https://{dead}/"))
    );
    let b = TestApp::start(&config).await;
    let (code, body) = get(b.admin, "/readyz").await;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("cluster-a.test"), "{body}");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundle_endpoint_closes_connections_over_max_connections_and_counts_them() {
    use tokio::io::AsyncReadExt;
    let files = tempfile::tempdir().unwrap();
    let ca = SpiffeCa::new("cluster-a.test");
    let cfg = format!("{}max_connections = 1\n", gateway_a(&ca, files.path()));
    let a = TestApp::start(&cfg).await;
    let endpoint = a.bundle_endpoint.expect("gateway A serves its bundle");
    // The first connection (accepted first: the accept queue is FIFO) holds the only slot ...
    let first = tokio::net::TcpStream::connect(endpoint).await.unwrap();
    // ... so the second is closed before any TLS byte, and counted before it is closed.
    let mut second = tokio::net::TcpStream::connect(endpoint).await.unwrap();
    let mut out = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        second.read_to_end(&mut out),
    )
    .await
    .expect("the connection over the limit was not closed");
    assert!(read.is_err() || out.is_empty(), "{out:?}");
    assert_eq!(
        a.metric("fedgate_bundle_endpoint_refusals_total{reason=\"too_many_connections\"}")
            .await,
        1.0
    );
    drop(first);
    a.stop().await;
}
