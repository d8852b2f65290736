//! The admin server (`fedgate::admin::Admin`) of each long-running command: the gateway, the
//! sidecar and `fedgate bundle serve` (health, readiness, status and metrics).
// Test code: a failed unwrap is a test failure with a backtrace, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/gw.rs"]
mod gw_support;
#[path = "support/sidecar_harness.rs"]
mod sidecar_harness;

use std::time::Duration;

use gw_support::*;
use tokio::io::AsyncBufReadExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints_report_the_running_gateway() {
    let pki = Pki::new();
    let (up, _u) = tls_echo(&pki, "up").await;
    let cfg = format!(
        "{HEADER}{}",
        listener(
            "egress",
            "max_connections = 7",
            &[("*.cluster-b.test", &[up])]
        )
    );
    let app = TestApp::start(&cfg).await;

    assert_eq!(get(app.admin, "/healthz").await, (200, "ok\n".to_string()));
    let (code, body) = get(app.admin, "/readyz").await;
    assert_eq!(code, 200);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["ready"],
        true
    );
    assert_eq!(get(app.admin, "/nope").await.0, 404);

    let (mut live, _) = connect_tls(&pki, app.addr("egress"), "a.cluster-b.test")
        .await
        .unwrap();
    echo(&mut live, "traffic").await;
    let mut bad = tokio::net::TcpStream::connect(app.addr("egress"))
        .await
        .unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut bad, b"GET / HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    expect_closed(&mut bad).await;
    app.wait_metric(
        "fedgate_rejected_connections_total{listener=\"egress\",reason=\"not_tls\"}",
        1.0,
    )
    .await;

    // The refused connection's task ends on a worker thread just after its socket closes;
    // wait for its gauge decrement before reading the snapshot.
    app.wait_metric("fedgate_active_connections{listener=\"egress\"}", 1.0)
        .await;
    let (code, status) = get(app.admin, "/status").await;
    assert_eq!(code, 200);
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["trust_domain"], "cluster-a.test");
    assert_eq!(status["state"], "running");
    let l = &status["listeners"][0];
    assert_eq!(l["name"], "egress");
    assert_eq!(l["address"], app.addr("egress").to_string());
    assert_eq!(l["kind"], "passthrough");
    assert_eq!(l["active_connections"], 1);
    assert_eq!(l["max_connections"], 7);
    assert_eq!(l["routes"][0]["sni"], "*.cluster-b.test");
    assert_eq!(l["routes"][0]["upstreams"][0], up.to_string());
    assert_eq!(status["peers"], serde_json::json!([]));

    close(live).await;
    app.wait_metric("fedgate_connections_total{listener=\"egress\",route=\"*.cluster-b.test\",outcome=\"closed\"}", 1.0).await;
    app.wait_metric("fedgate_active_connections{listener=\"egress\"}", 0.0)
        .await;
    let (code, metrics) = get(app.admin, "/metrics").await;
    assert_eq!(code, 200);
    for family in [
        "# TYPE fedgate_connections counter",
        "fedgate_bytes_total{listener=\"egress\",route=\"*.cluster-b.test\",direction=\"in\"}",
        "fedgate_bytes_total{listener=\"egress\",route=\"*.cluster-b.test\",direction=\"out\"}",
        "fedgate_active_connections{listener=\"egress\"} 0",
        "# TYPE fedgate_upstream_connect_failures counter",
        "# TYPE fedgate_config_reloads counter",
    ] {
        assert!(metrics.contains(family), "missing {family} in:\n{metrics}");
    }
    assert!(metrics.trim_end().ends_with("# EOF"));
    app.stop().await;
}

#[tokio::test]
async fn sidecar_admin_reports_listeners_identity_and_reloads() {
    const ID: &str = "spiffe://cluster-a.test/ns/demo/sa/echo";
    let ca = SpiffeCa::new("cluster-a.test");
    let dir = tempfile::tempdir().unwrap();
    let (svid, key, bundle) = (
        dir.path().join("svid.pem"),
        dir.path().join("svid.key"),
        dir.path().join("bundle.json"),
    );
    ca.write_svid("/ns/demo/sa/echo", &svid, &key);
    ca.write_bundle(&bundle);
    let toml = format!(
        "trust_domain = \"cluster-a.test\"\n\
         [identity]\nsvid = {:?}\nkey = {:?}\nbundle = {:?}\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n\
         [[inbound]]\nname = \"echo\"\nlisten = \"127.0.0.1:0\"\nforward = \"127.0.0.1:9\"\n\
         allow = [\"spiffe://cluster-a.test/ns/demo/sa/client\"]\n",
        svid, key, bundle
    );
    let sc = sidecar_harness::RunningSidecar::start(dir.path(), &toml).await;
    let admin = sc.addr("admin");

    assert_eq!(sidecar_harness::http_get(admin, "/healthz").await, "ok\n");
    assert_eq!(sidecar_harness::http_get(admin, "/readyz").await, "ok\n");
    let (code, status) = get(admin, "/status").await;
    assert_eq!(code, 200);
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["state"], "running");
    assert_eq!(status["identity"]["spiffe_id"], ID);
    assert_eq!(status["identity"]["generation"], 0);
    assert_eq!(
        status["identity"]["trust_domains"],
        serde_json::json!(["cluster-a.test"])
    );
    assert_eq!(status["reloads"]["failed"], 0);
    let listeners = status["listeners"].as_array().unwrap();
    assert_eq!(listeners.len(), 2, "{status}");
    assert_eq!(listeners[0]["kind"], "inbound");
    assert_eq!(listeners[0]["name"], "echo");
    assert_eq!(listeners[0]["address"], sc.addr("echo").to_string());
    assert_eq!(listeners[1]["kind"], "admin");
    assert_eq!(listeners[1]["address"], admin.to_string());
    let (code, metrics) = get(admin, "/metrics").await;
    assert_eq!(code, 200);
    assert!(metrics.trim_end().ends_with("# EOF"), "{metrics}");
    sc.stop().await;
}

#[tokio::test]
async fn bundle_serve_admin_reports_the_served_bundle() {
    let ca = SpiffeCa::new("cluster-b.test");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ca.write_svid("/bundle-endpoint", &d.join("svid.pem"), &d.join("svid.key"));
    // The endpoint serves the file's own sequence.
    let mut bundle = ca.bundle();
    bundle.set_sequence(Some(42));
    std::fs::write(d.join("bundle.json"), bundle.to_json()).unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_fedgate"))
        .args(["bundle", "serve", "--trust-domain", "cluster-b.test"])
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .args(["--profile", "https_spiffe"])
        .arg("--bundle")
        .arg(d.join("bundle.json"))
        .arg("--svid")
        .arg(d.join("svid.pem"))
        .arg("--svid-key")
        .arg(d.join("svid.key"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = next_line(&mut lines).await;
    let addr = addr.strip_prefix("listening on ").expect(&addr).to_owned();
    let admin = next_line(&mut lines).await;
    let admin: std::net::SocketAddr = admin
        .strip_prefix("admin listening on ")
        .expect(&admin)
        .parse()
        .unwrap();

    assert_eq!(get(admin, "/healthz").await, (200, "ok\n".to_string()));
    assert_eq!(get(admin, "/readyz").await, (200, "ok\n".to_string()));
    let (code, status) = get(admin, "/status").await;
    assert_eq!(code, 200);
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["state"], "running");
    assert_eq!(status["address"], addr);
    assert_eq!(status["path"], "/");
    let td = &status["trust_domains"][0];
    assert_eq!(td["trust_domain"], "cluster-b.test");
    assert_eq!(td["x509_authorities"], 1);
    assert_eq!(td["sequence"], 42, "{status}");
    let (code, metrics) = get(admin, "/metrics").await;
    assert_eq!(code, 200);
    assert!(
        metrics.contains("# TYPE fedgate_bundle_endpoint_refusals counter"),
        "{metrics}"
    );
    child.kill().await.unwrap();
}

/// The next stdout line of a child process (bounded wait).
async fn next_line(
    lines: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
) -> String {
    tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("no output in time")
        .unwrap()
        .expect("the process exited")
}
