//! The bridged-mode done-when test, with every hop real and on 127.0.0.1:
//!
//! ```text
//! app A ─tcp→ sidecar A ─mTLS(cluster-a)→ egress A ─mTLS(bridge.test)+PROXY→ ingress B
//!       ─mTLS(cluster-b)+PROXY→ sidecar B ─tcp+PROXY→ app B
//! ```
//!
//! Side A (sidecar and gateway) holds only cluster-a's bundle, plus the bridge bundle for the
//! gateway; side B only cluster-b's (+ bridge). App B learns app A's SPIFFE ID from the PROXY v2
//! header its sidecar sends; an unauthorized workload in cluster-a is refused at the egress.

// Helpers outside #[test] fns unwrap too: a failure is a test failure with a backtrace.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/bridge_certs.rs"]
mod bridge_certs;
#[path = "support/topology.rs"]
mod topology;

use std::net::SocketAddr;
use std::time::Duration;

use bridge_certs::{IssuedSvid, TestCa};
use fedgate_dataplane::proxy_protocol::{TLV_ORIGIN_ID, TLV_SPIFFE_ID};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use topology::{gateway_head, spawn_header_app, start_gateway, start_sidecar, write_identity};

const DEST: &str = "echo.cluster-b.test";
const CLIENT: &str = "spiffe://cluster-a.test/ns/demo/sa/client";
const ECHO: &str = "spiffe://cluster-b.test/ns/demo/sa/echo";
const EGRESS: &str = "spiffe://cluster-a.test/ns/gateway/sa/egress";
const INGRESS: &str = "spiffe://cluster-b.test/ns/gateway/sa/ingress";

/// Sidecar A for `svid`, whose outbound dials egress A for `echo.cluster-b.test`.
async fn sidecar_a(
    a: &TestCa,
    svid: &IssuedSvid,
    egress: SocketAddr,
) -> (tempfile::TempDir, SocketAddr, CancellationToken) {
    let dir = tempfile::tempdir().unwrap();
    write_identity(dir.path(), a, svid, "svid");
    let toml = format!(
        r#"
trust_domain = "cluster-a.test"
[identity]
svid = "svid.pem"
key = "svid.key"
bundle = "svid-bundle.json"
[[outbound]]
name = "to-echo-b"
listen = "127.0.0.1:0"
server_name = "{DEST}"
connect = ["{egress}"]
# Bridged mode: the server this sidecar sees is its own egress gateway.
allow = ["{EGRESS}"]
"#
    );
    let (addrs, stop) = start_sidecar(dir.path(), &toml).await;
    let out = addrs.iter().find(|(n, _)| n == "to-echo-b").unwrap().1;
    (dir, out, stop)
}

#[tokio::test]
async fn workload_a_reaches_workload_b_through_sidecars_and_both_bridge_gateways() {
    let a = TestCa::new("cluster-a.test");
    let b = TestCa::new("cluster-b.test");
    let bridge = TestCa::new("bridge.test");
    let (app_b, mut seen) = spawn_header_app().await;

    // Side B: sidecar B (echo) and ingress B; only cluster-b's bundle (+ bridge for the gateway).
    let dir_sb = tempfile::tempdir().unwrap();
    write_identity(dir_sb.path(), &b, &b.issue("/ns/demo/sa/echo"), "svid");
    let (sb_addrs, _sb) = start_sidecar(
        dir_sb.path(),
        &format!(
            r#"
trust_domain = "cluster-b.test"
[identity]
svid = "svid.pem"
key = "svid.key"
bundle = "svid-bundle.json"
[[inbound]]
name = "echo"
listen = "127.0.0.1:0"
forward = "{app_b}"
allow = ["{CLIENT}"]
proxy_protocol = true
trusted_relays = ["{INGRESS}"]
"#
        ),
    )
    .await;
    let sidecar_b = sb_addrs.iter().find(|(n, _)| n == "echo").unwrap().1;

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
    let (ingress, _gb) = start_gateway(
        dir_b.path(),
        &format!(
            r#"{}
[[listeners]]
name = "bridge-in"
kind = "bridge-ingress"
listen = "127.0.0.1:0"
  [[listeners.bridge_peers]]
  id = "spiffe://bridge.test/gateway/cluster-a"
  may_speak_for = ["cluster-a.test"]
  [[listeners.routes]]
  sni = "{DEST}"
  upstreams = ["{sidecar_b}"]
  server_id = ["{ECHO}"]
  allow = ["{CLIENT}"]
  send_proxy_header = true
"#,
            gateway_head("cluster-b.test", "bridge.test")
        ),
        "bridge-in",
    )
    .await;

    // Side A: egress A and sidecar A; only cluster-a's bundle (+ bridge for the gateway).
    let dir_a = tempfile::tempdir().unwrap();
    write_identity(dir_a.path(), &a, &a.issue("/ns/gateway/sa/egress"), "local");
    write_identity(
        dir_a.path(),
        &bridge,
        &bridge.issue("/gateway/cluster-a"),
        "bridge",
    );
    let (egress, _ga) = start_gateway(
        dir_a.path(),
        &format!(
            r#"{}
[[listeners]]
name = "bridge-out"
kind = "bridge-egress"
listen = "127.0.0.1:0"
  [[listeners.routes]]
  sni = "{DEST}"
  upstreams = ["{ingress}"]
  peer_id = "spiffe://bridge.test/gateway/cluster-b"
  allow = ["{CLIENT}"]
"#,
            gateway_head("cluster-a.test", "bridge.test")
        ),
        "bridge-out",
    )
    .await;
    let (dir_sa, sidecar_a_out, _sa) = sidecar_a(&a, &a.issue("/ns/demo/sa/client"), egress).await;

    // No trust in the other cluster anywhere on either side: its CA certificate appears in no
    // file of side A, and cluster-a's in no file of side B.
    let ca_b64 = |ca: &TestCa| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(ca.bundle().x509_authorities()[0].as_ref())
    };
    for (dir, foreign) in [
        (dir_a.path(), &b),
        (dir_b.path(), &a),
        (dir_sb.path(), &a),
        (dir_sa.path(), &b),
    ] {
        let needle = ca_b64(foreign);
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(
                !text.contains(&needle),
                "{} trusts {}",
                path.display(),
                foreign.td
            );
        }
    }

    // (The check can see a CA: each side's own bundle file holds its own CA.)
    let own = std::fs::read_to_string(dir_a.path().join("local-bundle.json")).unwrap();
    assert!(own.contains(&ca_b64(&a)));

    // App A → … → app B and back.
    let mut app_a = TcpStream::connect(sidecar_a_out).await.unwrap();
    app_a.write_all(b"hello from a").await.unwrap();
    let mut got = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(10), app_a.read_exact(&mut got))
        .await
        .expect("no echo through the bridge")
        .unwrap();
    assert_eq!(&got, b"hello from a");

    // App B learned who called: the origin (A's workload) and the relay (ingress B).
    let header = tokio::time::timeout(Duration::from_secs(10), seen.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(header.tlv(TLV_ORIGIN_ID), Some(CLIENT.as_bytes()));
    assert_eq!(header.tlv(TLV_SPIFFE_ID), Some(INGRESS.as_bytes()));
    drop(app_a);

    // An unauthorized cluster-a workload is refused at egress A: nothing reaches app B.
    let (_dir_x, stranger_out, _sx) = sidecar_a(&a, &a.issue("/ns/demo/sa/stranger"), egress).await;
    let mut stranger = TcpStream::connect(stranger_out).await.unwrap();
    let _ = stranger.write_all(b"let me in").await;
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stranger.read_to_end(&mut rest))
        .await
        .expect("refused connection was not closed");
    assert!(rest.is_empty());
    assert!(seen.try_recv().is_err());
}
