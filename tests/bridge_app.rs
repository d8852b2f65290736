//! `fedgate run` serving bridge listeners from config files: gateway A (bridge-egress) and
//! gateway B (bridge-ingress) built by `App::build` exactly as `main` does, with their SVIDs,
//! keys and bundles in files; the bridge SVID is renewed on disk while a connection is live.

// Helpers outside #[test] fns unwrap too: a failure is a test failure with a backtrace.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/bridge_certs.rs"]
mod bridge_certs;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bridge_certs::workloads::{call, drain, round_trip, spawn_destination};
use bridge_certs::TestCa;
use fedgate::app::App;
use fedgate::config::Config;
use fedgate_dataplane::proxy_protocol::TLV_ORIGIN_ID;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

const DEST: &str = "echo.cluster-b.test";

struct Running {
    _dir: tempfile::TempDir,
    admin: SocketAddr,
    listener: SocketAddr,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), fedgate::app::AppError>>,
}

async fn start(dir: tempfile::TempDir, toml: &str, listener: &str) -> Running {
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, toml).unwrap();
    let config = Config::load(&path).unwrap();
    let app = App::build(config)
        .await
        .unwrap()
        .with_identity_poll(Duration::from_millis(20));
    let admin = app.admin_addr();
    let addr = app.listener_addr(listener).unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(app.run(shutdown.clone()));
    Running {
        _dir: dir,
        admin,
        listener: addr,
        shutdown,
        task,
    }
}

impl Running {
    async fn metrics(&self) -> String {
        self.admin_get("/metrics").await
    }

    /// The raw HTTP response to `GET path` on the admin server.
    async fn admin_get(&self, path: &str) -> String {
        let mut tcp = TcpStream::connect(self.admin).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n");
        tcp.write_all(req.as_bytes()).await.unwrap();
        let mut raw = String::new();
        tokio::time::timeout(Duration::from_secs(10), tcp.read_to_string(&mut raw))
            .await
            .unwrap()
            .unwrap();
        raw
    }

    /// The value of the first sample line starting with `prefix`.
    async fn metric(&self, prefix: &str) -> Option<f64> {
        self.metrics()
            .await
            .lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    /// Polls the admin endpoint (every 10 ms, at most 10 s) until `cond` holds for `prefix`.
    async fn wait_metric(&self, prefix: &str, cond: impl Fn(f64) -> bool) -> f64 {
        for _ in 0..1000 {
            if let Some(v) = self.metric(prefix).await {
                if cond(v) {
                    return v;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "metric {prefix} never reached the condition:\n{}",
            self.metrics().await
        );
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}

fn write_identity(dir: &Path, ca: &TestCa, svid: &bridge_certs::IssuedSvid, name: &str) {
    svid.write(dir, name);
    ca.write_bundle(dir, &format!("{name}-bundle.json"));
}

#[tokio::test]
async fn fedgate_run_bridges_workload_a_to_workload_b_and_reloads_the_bridge_svid() {
    let a = TestCa::new("cluster-a.test");
    let b = TestCa::new("cluster-b.test");
    let bridge = TestCa::new("bridge.test");
    let client = a.issue("/ns/demo/sa/client");
    let echo = b.issue("/ns/demo/sa/echo");
    let egress_local = a.issue("/ns/gateway/sa/egress");
    let mut dest = spawn_destination(&b, &echo).await;

    // Gateway B: only cluster-b's bundle locally, plus the bridge bundle.
    let dir_b = tempfile::tempdir().unwrap();
    write_identity(
        dir_b.path(),
        &b,
        &b.issue("/ns/gateway/sa/ingress"),
        "local",
    );
    write_identity(
        dir_b.path(),
        &bridge,
        &bridge.issue("/gateway/cluster-b"),
        "bridge",
    );
    let toml_b = format!(
        r#"
trust_domain = "cluster-b.test"
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
name = "bridge-in"
kind = "bridge-ingress"
listen = "127.0.0.1:0"
proxy_header_timeout = "5s"
max_proxy_header = 4096
  [[listeners.bridge_peers]]
  id = "spiffe://bridge.test/gateway/cluster-a"
  may_speak_for = ["cluster-a.test"]
  [[listeners.routes]]
  sni = "{DEST}"
  upstreams = ["{}"]
  server_id = ["spiffe://cluster-b.test/ns/demo/sa/echo"]
  allow = ["spiffe://cluster-a.test/ns/demo/sa/client"]
  send_proxy_header = true
"#,
        dest.addr
    );
    let gw_b = start(dir_b, &toml_b, "bridge-in").await;

    // Gateway A: only cluster-a's bundle locally, plus the bridge bundle.
    let dir_a = tempfile::tempdir().unwrap();
    write_identity(dir_a.path(), &a, &egress_local, "local");
    write_identity(
        dir_a.path(),
        &bridge,
        &bridge.issue_for("/gateway/cluster-a", Duration::from_secs(24 * 3600)),
        "bridge",
    );
    let toml_a = format!(
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
  sni = "{DEST}"
  upstreams = ["{}"]
  peer_id = "spiffe://bridge.test/gateway/cluster-b"
  allow = ["spiffe://cluster-a.test/ns/demo/sa/client"]
"#,
        gw_b.listener
    );
    let dir_a_path = dir_a.path().to_path_buf();
    let gw_a = start(dir_a, &toml_a, "bridge-out").await;

    // Workload A → egress A → ingress B → workload B; B learns A's ID.
    let mut live = call(&a, &client, &egress_local.id, gw_a.listener, DEST)
        .await
        .unwrap();
    assert_eq!(round_trip(&mut live, b"hello").await, b"hello");
    let seen = dest.seen.recv().await.unwrap();
    assert_eq!(
        seen.header.tlv(TLV_ORIGIN_ID),
        Some(client.id.to_string().as_bytes())
    );
    gw_a.wait_metric(
        "fedgate_bridge_forwarded_total{listener=\"bridge-out\"",
        |v| v == 1.0,
    )
    .await;
    gw_b.wait_metric(
        "fedgate_bridge_forwarded_total{listener=\"bridge-in\"",
        |v| v == 1.0,
    )
    .await;
    let before = gw_a
        .wait_metric("fedgate_bridge_svid_expiry_seconds", |v| v > 0.0)
        .await;
    assert!(before <= 24.0 * 3600.0, "{before}");

    // Renew A's bridge SVID on disk (a longer lifetime makes the swap visible in the gauge).
    let renewed = bridge.issue_for("/gateway/cluster-a", Duration::from_secs(48 * 3600));
    renewed.write(&dir_a_path, "bridge");
    gw_a.wait_metric("fedgate_bridge_svid_expiry_seconds", |v| {
        v > 24.0 * 3600.0 + 60.0
    })
    .await;

    // The live connection survives; a new one works with the renewed SVID.
    assert_eq!(round_trip(&mut live, b"still here").await, b"still here");
    let mut fresh = call(&a, &client, &egress_local.id, gw_a.listener, DEST)
        .await
        .unwrap();
    assert_eq!(round_trip(&mut fresh, b"fresh").await, b"fresh");
    dest.seen.recv().await.unwrap();

    // An unauthorized workload is refused by the running gateway, with a metric.
    let stranger = a.issue("/ns/demo/sa/stranger");
    let mut refused = call(&a, &stranger, &egress_local.id, gw_a.listener, DEST)
        .await
        .unwrap();
    let _ = refused.write_all(b"hi").await;
    let _ = refused.flush().await;
    assert!(drain(&mut refused).await.is_empty());
    gw_a.wait_metric(
        "fedgate_bridge_authorization_denials_total{listener=\"bridge-out\",rule=\"caller_denied\"}",
        |v| v == 1.0,
    )
    .await;

    // `/status` and the status page report the renewed bridge SVID and the refusal.
    let raw = gw_a.admin_get("/status").await;
    let (_, body) = raw.split_once("\r\n\r\n").unwrap();
    let status: serde_json::Value = serde_json::from_str(body).unwrap();
    let svid = &status["bridge_svid"];
    assert_eq!(
        svid["spiffe_id"], "spiffe://bridge.test/gateway/cluster-a",
        "{status}"
    );
    assert!(
        svid["seconds_left"].as_f64().unwrap() > 24.0 * 3600.0 + 60.0,
        "{svid}"
    );
    assert!(status["local_svid"]["spiffe_id"].is_string(), "{status}");
    let recent = &status["denials"]["recent"][0];
    assert_eq!(recent["listener"], "bridge-out", "{status}");
    let page = gw_a.admin_get("/").await;
    assert!(
        page.contains("spiffe://bridge.test/gateway/cluster-a"),
        "{page}"
    );
    assert!(page.contains(recent["reason"].as_str().unwrap()), "{page}");

    drop(live);
    drop(fresh);
    gw_a.stop().await;
    gw_b.stop().await;
}
