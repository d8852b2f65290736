//! The bridge bundle kept fresh by federation: the bridge CA rotates to a new root, gateway B
//! already has a bridge SVID from the new root, and gateway A's `[bridge] bundle` file still
//! holds only the old root. A `[[federation.peers]]` entry for `bridge.test` (the bridge CA's
//! bundle endpoint, https_spiffe) brings the new root to gateway A, whose bridge TLS configs
//! are rebuilt, so A → B works; a gateway without that entry keeps refusing B.

// Helpers outside #[test] fns unwrap too: a failure is a test failure with a backtrace.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/bridge_certs.rs"]
mod bridge_certs;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bridge_certs::workloads::{call, drain, round_trip, spawn_destination};
use bridge_certs::{IssuedSvid, TestCa};
use fedgate::app::App;
use fedgate_federation::Bundle;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

const DEST: &str = "echo.cluster-b.test";
const ENDPOINT_ID: &str = "spiffe://bridge.test/fedgate/bundle-endpoint";

struct Running {
    app_admin: SocketAddr,
    addr: Option<SocketAddr>,
    endpoint: Option<SocketAddr>,
    _stop: tokio_util::sync::DropGuard,
}

async fn start(dir: &Path, toml: &str, listener: Option<&str>) -> Running {
    let path = dir.join("gateway.toml");
    std::fs::write(&path, toml).unwrap();
    let app = App::build(fedgate::config::Config::load(&path).unwrap())
        .await
        .unwrap();
    let stop = CancellationToken::new();
    let running = Running {
        app_admin: app.admin_addr(),
        addr: listener.map(|l| app.listener_addr(l).unwrap()),
        endpoint: app.bundle_endpoint_addr(),
        _stop: stop.clone().drop_guard(),
    };
    tokio::spawn(app.run(stop));
    running
}

impl Running {
    async fn get(&self, path: &str) -> String {
        let mut tcp = TcpStream::connect(self.app_admin).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n");
        tcp.write_all(req.as_bytes()).await.unwrap();
        let mut raw = String::new();
        tokio::time::timeout(Duration::from_secs(10), tcp.read_to_string(&mut raw))
            .await
            .unwrap()
            .unwrap();
        raw
    }
}

fn write_bundle(dir: &Path, name: &str, bundle: &Bundle) {
    std::fs::write(dir.join(name), bundle.to_json()).unwrap();
}

fn gateway(
    td: &str,
    bridge_svid: &IssuedSvid,
    local: &IssuedSvid,
    ca: &TestCa,
    dir: &Path,
) -> String {
    local.write(dir, "local");
    ca.write_bundle(dir, "local-bundle.json");
    bridge_svid.write(dir, "bridge");
    format!(
        r#"
trust_domain = "{td}"
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
"#
    )
}

fn egress_listener(ingress: SocketAddr) -> String {
    format!(
        r#"
[[listeners]]
name = "bridge-out"
kind = "bridge-egress"
listen = "127.0.0.1:0"
  [[listeners.routes]]
  sni = "{DEST}"
  upstreams = ["{ingress}"]
  peer_id = "spiffe://bridge.test/gateway/cluster-b"
  allow = ["spiffe://cluster-a.test/ns/demo/sa/client"]
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn federated_bridge_bundle_replaces_a_stale_bundle_file() {
    let a = TestCa::new("cluster-a.test");
    let b = TestCa::new("cluster-b.test");
    let old = TestCa::new("bridge.test");
    let new = TestCa::new("bridge.test");
    let mut both = old.bundle();
    both.add_x509_authority(new.bundle().x509_authorities()[0].clone());
    let client = a.issue("/ns/demo/sa/client");
    let egress_local = a.issue("/ns/gateway/sa/egress");
    let mut dest = spawn_destination(&b, &b.issue("/ns/demo/sa/echo")).await;

    // The bridge CA's bundle endpoint serves both roots (its own SVID is from the old root).
    let dir_ca = tempfile::tempdir().unwrap();
    old.issue("/fedgate/bundle-endpoint")
        .write(dir_ca.path(), "endpoint");
    write_bundle(dir_ca.path(), "bridge-bundle.json", &both);
    let bridge_ca = start(
        dir_ca.path(),
        r#"
trust_domain = "bridge.test"
[identity]
svid = "endpoint.pem"
key = "endpoint.key"
bundle = "bridge-bundle.json"
[admin]
listen = "127.0.0.1:0"
[federation]
[federation.serve]
listen = "127.0.0.1:0"
profile = "https_spiffe"
"#,
        None,
    )
    .await;
    let endpoint = bridge_ca.endpoint.unwrap();

    // Gateway B: bridge SVID from the new root; trusts both roots.
    let dir_b = tempfile::tempdir().unwrap();
    let mut toml_b = gateway(
        "cluster-b.test",
        &new.issue("/gateway/cluster-b"),
        &b.issue("/ns/gateway/sa/ingress"),
        &b,
        dir_b.path(),
    );
    write_bundle(dir_b.path(), "bridge-bundle.json", &both);
    toml_b.push_str(&format!(
        r#"
[[listeners]]
name = "bridge-in"
kind = "bridge-ingress"
listen = "127.0.0.1:0"
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
    ));
    let gw_b = start(dir_b.path(), &toml_b, Some("bridge-in")).await;
    let ingress = gw_b.addr.unwrap();

    // Control: gateway A0 with only the stale bundle file cannot verify B.
    let dir_a0 = tempfile::tempdir().unwrap();
    let mut toml_a0 = gateway(
        "cluster-a.test",
        &old.issue("/gateway/cluster-a"),
        &egress_local,
        &a,
        dir_a0.path(),
    );
    old.write_bundle(dir_a0.path(), "bridge-bundle.json");
    toml_a0.push_str(&egress_listener(ingress));
    let gw_a0 = start(dir_a0.path(), &toml_a0, Some("bridge-out")).await;
    let mut refused = call(&a, &client, &egress_local.id, gw_a0.addr.unwrap(), DEST)
        .await
        .unwrap();
    let _ = refused.write_all(b"hi").await;
    let _ = refused.flush().await;
    assert!(drain(&mut refused).await.is_empty());

    // Gateway A: the same stale file, plus federation with the bridge CA's endpoint.
    let dir_a = tempfile::tempdir().unwrap();
    let mut toml_a = gateway(
        "cluster-a.test",
        &old.issue("/gateway/cluster-a"),
        &egress_local,
        &a,
        dir_a.path(),
    );
    old.write_bundle(dir_a.path(), "bridge-bundle.json");
    old.write_bundle(dir_a.path(), "bridge-bootstrap.json");
    toml_a.push_str(&format!(
        r#"
[federation]
min_refresh = "1s"
default_refresh = "1s"
max_refresh = "5s"
[[federation.peers]]
trust_domain = "bridge.test"
url = "https://{endpoint}/"
profile = "https_spiffe"
endpoint_id = "{ENDPOINT_ID}"
bootstrap_bundle = "bridge-bootstrap.json"
"#
    ));
    toml_a.push_str(&egress_listener(ingress));
    let gw_a = start(dir_a.path(), &toml_a, Some("bridge-out")).await;

    // Readiness: the peer's bundle has been fetched (polled, bounded at 10 s).
    let mut fetched = false;
    for _ in 0..1000 {
        let status = gw_a.get("/status").await;
        if status.contains("\"last_success\":\"") {
            fetched = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(fetched, "gateway A never fetched the bridge bundle");

    // The rebuild follows the published snapshot; retry the first call briefly (bounded).
    let mut through = None;
    for _ in 0..100 {
        let mut conn = call(&a, &client, &egress_local.id, gw_a.addr.unwrap(), DEST)
            .await
            .unwrap();
        let _ = conn.write_all(b"ping").await;
        let _ = conn.flush().await;
        let mut got = [0u8; 4];
        match tokio::time::timeout(Duration::from_secs(5), conn.read_exact(&mut got)).await {
            Ok(Ok(_)) if &got == b"ping" => {
                through = Some(conn);
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    let mut conn = through.expect("gateway A never trusted the rotated bridge root");
    assert_eq!(round_trip(&mut conn, b"rotated").await, b"rotated");
    dest.seen.recv().await.unwrap();
}
