//! Identity reload and lifecycle: SVID rotation (new connections get the new cert, live ones
//! survive), broken files refused with the old configs kept, federated bundle map updates,
//! drain on shutdown.
// Helpers outside #[test] fns unwrap too: in a test, a panic is the failure report we want.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/sidecar_certs.rs"]
mod certs;
#[path = "support/sidecar_harness.rs"]
mod harness;

use std::net::SocketAddr;
use std::path::Path;

use certs::{bundle_map_json, bundle_set, write_atomic, IdentityFiles, TestCa};
use fedgate_federation::{BundleSet, X509Svid};
use harness::{echo_app, round_trip, server_name, tls_connector, RunningSidecar, WAIT};
use rustls_pki_types::CertificateDer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CLIENT_A: &str = "spiffe://cluster-a.test/ns/demo/sa/client";
const ECHO_A: &str = "spiffe://cluster-a.test/ns/demo/sa/echo";

fn toml(
    td: &str,
    files: &IdentityFiles,
    federated: Option<&Path>,
    drain: &str,
    listeners: &str,
) -> String {
    let mut s = format!(
        "trust_domain = \"{td}\"\nreload_interval = \"20ms\"\ndrain_timeout = \"{drain}\"\n\
         [identity]\nsvid = {:?}\nkey = {:?}\nbundle = {:?}\n",
        files.svid, files.key, files.bundle
    );
    if let Some(f) = federated {
        s.push_str(&format!("federated_bundles = {f:?}\n"));
    }
    s + listeners
}

fn inbound(forward: SocketAddr, allow: &str) -> String {
    format!(
        "[[inbound]]\nname = \"echo\"\nlisten = \"127.0.0.1:0\"\nforward = \"{forward}\"\n\
         allow = [\"{allow}\"]\n"
    )
}

fn outbound(connect: SocketAddr, allow: &str) -> String {
    format!(
        "[[outbound]]\nname = \"to-echo\"\nlisten = \"127.0.0.1:0\"\n\
         server_name = \"echo.cluster-a.test\"\nconnect = [\"{connect}\"]\nallow = [\"{allow}\"]\n"
    )
}

/// The leaf certificate B presents to a direct mTLS client, after a full echo round trip.
async fn presented_leaf(
    addr: SocketAddr,
    client: &X509Svid,
    trust: BundleSet,
) -> CertificateDer<'static> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut tls = tls_connector(client, trust)
        .connect(server_name("echo.cluster-a.test"), tcp)
        .await
        .unwrap();
    tls.write_all(b"hi").await.unwrap();
    tls.flush().await.unwrap();
    let mut buf = [0; 2];
    tokio::time::timeout(WAIT, tls.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"hi");
    tls.get_ref().1.peer_certificates().unwrap()[0]
        .clone()
        .into_owned()
}

fn leaf_of(files: &IdentityFiles) -> CertificateDer<'static> {
    X509Svid::load(&files.svid, &files.key).unwrap().chain()[0].clone()
}

#[tokio::test]
async fn svid_rotation_serves_new_connections_with_the_new_cert_and_keeps_live_ones() {
    let ca = TestCa::new("cluster-a.test");
    let dir = tempfile::tempdir().unwrap();
    let files_b = ca.write_identity(&dir.path().join("b"), ECHO_A);
    let files_a = ca.write_identity(&dir.path().join("a"), CLIENT_A);
    let (app_addr, _app) = echo_app(false).await;
    let mut b = RunningSidecar::start(
        &dir.path().join("b"),
        &toml(
            "cluster-a.test",
            &files_b,
            None,
            "5s",
            &inbound(app_addr, CLIENT_A),
        ),
    )
    .await;
    let a = RunningSidecar::start(
        &dir.path().join("a"),
        &toml(
            "cluster-a.test",
            &files_a,
            None,
            "5s",
            &outbound(b.addr("echo"), ECHO_A),
        ),
    )
    .await;
    let client = ca.issue(CLIENT_A).x509();
    let trust = bundle_set(&[&ca]);

    // A live connection through both sidecars, opened before the rotation.
    let mut live = TcpStream::connect(a.addr("to-echo")).await.unwrap();
    live.write_all(b"one").await.unwrap();
    let mut buf = [0; 3];
    live.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"one");

    let old = leaf_of(&files_b);
    assert_eq!(
        presented_leaf(b.addr("echo"), &client, trust.clone()).await,
        old
    );

    let new = ca.issue(ECHO_A);
    new.install(&files_b);
    b.wait_generation(1).await;

    assert_eq!(
        presented_leaf(b.addr("echo"), &client, trust).await,
        new.leaf
    );
    assert_ne!(new.leaf, old);
    assert_eq!(round_trip(a.addr("to-echo"), b"after").await, b"after");

    // The live connection still uses the old session and still works.
    live.write_all(b"two").await.unwrap();
    live.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"two");
}

#[tokio::test]
async fn broken_identity_files_are_refused_and_the_old_configs_stay() {
    let ca = TestCa::new("cluster-a.test");
    let dir = tempfile::tempdir().unwrap();
    let files_b = ca.write_identity(&dir.path().join("b"), ECHO_A);
    let (app_addr, _app) = echo_app(false).await;
    let mut b = RunningSidecar::start(
        &dir.path().join("b"),
        &toml(
            "cluster-a.test",
            &files_b,
            None,
            "5s",
            &inbound(app_addr, CLIENT_A),
        ),
    )
    .await;
    let client = ca.issue(CLIENT_A).x509();
    let trust = bundle_set(&[&ca]);
    let old = leaf_of(&files_b);

    // A chain that is not PEM.
    let good_chain = std::fs::read(&files_b.svid).unwrap();
    write_atomic(&files_b.svid, b"-----BEGIN GARBAGE-----\n");
    b.wait_failed_reloads(1).await;
    assert!(b
        .reloads
        .borrow()
        .last_error
        .as_deref()
        .unwrap()
        .contains("svid.pem"));
    assert_eq!(
        presented_leaf(b.addr("echo"), &client, trust.clone()).await,
        old
    );

    // A key that does not match the (restored) chain. The key goes first: the original
    // key with the restored chain would be a valid pair.
    write_atomic(&files_b.key, ca.issue(ECHO_A).key_pem.as_bytes());
    write_atomic(&files_b.svid, &good_chain);
    b.wait_failed_reloads(2).await;
    assert_eq!(
        presented_leaf(b.addr("echo"), &client, trust.clone()).await,
        old
    );

    // An SVID of another trust domain.
    let other = TestCa::new("cluster-b.test").issue("spiffe://cluster-b.test/ns/demo/sa/echo");
    other.install(&files_b);
    b.wait_failed_reloads(3).await;

    // A broken bundle.
    let fixed = ca.issue(ECHO_A);
    write_atomic(&files_b.bundle, b"{\"not\": \"a bundle\"}");
    fixed.install(&files_b);
    b.wait_failed_reloads(4).await;
    assert_eq!(
        presented_leaf(b.addr("echo"), &client, trust.clone()).await,
        old
    );
    assert_eq!(b.tls.borrow().generation, 0);

    // Fixing the files is picked up.
    write_atomic(&files_b.bundle, &ca.bundle_json());
    b.wait_generation(1).await;
    assert_eq!(
        presented_leaf(b.addr("echo"), &client, trust).await,
        fixed.leaf
    );
}

#[tokio::test]
async fn an_updated_federated_bundle_map_admits_the_new_peer_domain() {
    let (ca_a, ca_b, ca_c) = (
        TestCa::new("cluster-a.test"),
        TestCa::new("cluster-b.test"),
        TestCa::new("cluster-c.test"),
    );
    let dir = tempfile::tempdir().unwrap();
    let files_b = ca_b.write_identity(
        &dir.path().join("b"),
        "spiffe://cluster-b.test/ns/demo/sa/echo",
    );
    let files_a = ca_a.write_identity(&dir.path().join("a"), CLIENT_A);
    let (map_a, map_b) = (
        dir.path().join("a/peers.json"),
        dir.path().join("b/peers.json"),
    );
    write_atomic(&map_a, &bundle_map_json(&[&ca_b]));
    write_atomic(&map_b, &bundle_map_json(&[&ca_c]));
    let (app_addr, _app) = echo_app(false).await;
    let mut b = RunningSidecar::start(
        &dir.path().join("b"),
        &toml(
            "cluster-b.test",
            &files_b,
            Some(&map_b),
            "5s",
            &inbound(app_addr, CLIENT_A),
        ),
    )
    .await;
    let a = RunningSidecar::start(
        &dir.path().join("a"),
        &toml(
            "cluster-a.test",
            &files_a,
            Some(&map_a),
            "5s",
            &outbound(b.addr("echo"), "spiffe://cluster-b.test/ns/demo/sa/echo"),
        ),
    )
    .await;

    // B has no bundle for cluster-a yet.
    assert_eq!(round_trip(a.addr("to-echo"), b"x").await, b"");
    assert_eq!(b.next_event().await.outcome, "handshake_failed");

    write_atomic(&map_b, &bundle_map_json(&[&ca_a, &ca_c]));
    b.wait_generation(1).await;
    assert_eq!(round_trip(a.addr("to-echo"), b"x").await, b"x");
    assert_eq!(b.next_event().await.outcome, "ok");
}

#[tokio::test]
async fn shutdown_drains_live_connections_then_stops() {
    let ca = TestCa::new("cluster-a.test");
    let dir = tempfile::tempdir().unwrap();
    let files_b = ca.write_identity(&dir.path().join("b"), ECHO_A);
    let files_a = ca.write_identity(&dir.path().join("a"), CLIENT_A);
    let (app_addr, _app) = echo_app(false).await;
    let b = RunningSidecar::start(
        &dir.path().join("b"),
        &toml(
            "cluster-a.test",
            &files_b,
            None,
            "10s",
            &inbound(app_addr, CLIENT_A),
        ),
    )
    .await;
    let mut a = RunningSidecar::start(
        &dir.path().join("a"),
        &toml(
            "cluster-a.test",
            &files_a,
            None,
            "10s",
            &outbound(b.addr("echo"), ECHO_A),
        ),
    )
    .await;

    let mut live = TcpStream::connect(a.addr("to-echo")).await.unwrap();
    live.write_all(b"one").await.unwrap();
    let mut buf = [0; 3];
    live.read_exact(&mut buf).await.unwrap();

    a.shutdown.cancel();
    // Still served while draining.
    live.write_all(b"two").await.unwrap();
    live.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"two");
    assert!(!a.task.is_finished());
    // Closing it lets the drain finish well before the 10 s deadline.
    live.shutdown().await.unwrap();
    let mut rest = Vec::new();
    live.read_to_end(&mut rest).await.unwrap();
    assert_eq!(a.next_event().await.outcome, "ok");
    tokio::time::timeout(WAIT, &mut a.task)
        .await
        .unwrap()
        .unwrap();
    b.stop().await;
}

#[tokio::test]
async fn drain_timeout_closes_the_remaining_connections() {
    let ca = TestCa::new("cluster-a.test");
    let dir = tempfile::tempdir().unwrap();
    let files_b = ca.write_identity(&dir.path().join("b"), ECHO_A);
    let files_a = ca.write_identity(&dir.path().join("a"), CLIENT_A);
    let (app_addr, _app) = echo_app(false).await;
    let b = RunningSidecar::start(
        &dir.path().join("b"),
        &toml(
            "cluster-a.test",
            &files_b,
            None,
            "10s",
            &inbound(app_addr, CLIENT_A),
        ),
    )
    .await;
    let mut a = RunningSidecar::start(
        &dir.path().join("a"),
        &toml(
            "cluster-a.test",
            &files_a,
            None,
            "200ms",
            &outbound(b.addr("echo"), ECHO_A),
        ),
    )
    .await;
    let mut live = TcpStream::connect(a.addr("to-echo")).await.unwrap();
    live.write_all(b"one").await.unwrap();
    let mut buf = [0; 3];
    live.read_exact(&mut buf).await.unwrap();

    a.shutdown.cancel();
    tokio::time::timeout(WAIT, &mut a.task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a.next_event().await.outcome, "drain_timeout");
    let mut rest = Vec::new();
    let n = tokio::time::timeout(WAIT, live.read_to_end(&mut rest))
        .await
        .unwrap();
    assert!(n.map_or(true, |n| n == 0));
    b.stop().await;
}

#[tokio::test]
async fn a_federated_map_that_appears_after_start_is_picked_up() {
    let (ca_a, ca_b) = (TestCa::new("cluster-a.test"), TestCa::new("cluster-b.test"));
    let dir = tempfile::tempdir().unwrap();
    let files_b = ca_b.write_identity(
        &dir.path().join("b"),
        "spiffe://cluster-b.test/ns/demo/sa/echo",
    );
    let map_b = dir.path().join("b/not-yet/bundles.json");
    let (app_addr, _app) = echo_app(false).await;
    let mut b = RunningSidecar::start(
        &dir.path().join("b"),
        &toml(
            "cluster-b.test",
            &files_b,
            Some(&map_b),
            "5s",
            &inbound(app_addr, CLIENT_A),
        ),
    )
    .await;
    assert_eq!(b.tls.borrow().trust_domains, std::slice::from_ref(&ca_b.td));

    std::fs::create_dir_all(map_b.parent().unwrap()).unwrap();
    write_atomic(&map_b, &bundle_map_json(&[&ca_a, &ca_b]));
    b.wait_generation(1).await;
    let mut tds = b.tls.borrow().trust_domains.clone();
    tds.sort();
    assert_eq!(tds, [ca_a.td.clone(), ca_b.td.clone()]);

    let client = ca_a.issue(CLIENT_A).x509();
    let trust = bundle_set(&[&ca_a, &ca_b]);
    let tcp = TcpStream::connect(b.addr("echo")).await.unwrap();
    let mut tls = tls_connector(&client, trust)
        .connect(server_name("echo.cluster-b.test"), tcp)
        .await
        .unwrap();
    tls.write_all(b"hi").await.unwrap();
    tls.shutdown().await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, tls.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out, b"hi");
}
