//! Done-when test of issue 5 (federated mode), all in-process on 127.0.0.1:
//!
//! ```text
//! app-a → sidecar A ─mTLS(cluster-a ⇄ cluster-b, end to end)→ gateway A (egress, SNI
//! passthrough) → gateway B (ingress, SNI passthrough) → sidecar B ─TCP + PROXY v2→ app-b
//! ```
//!
//! Each gateway serves its trust domain's bundle (`https_spiffe`) and has a peer relationship to
//! the other, fetched over the real federation endpoints; each sidecar's peer bundles come from
//! its gateway's distribution directory. App B learns A's SPIFFE ID; a workload B does not allow
//! is refused; no gateway config names a workload key.

// Helpers outside #[test] fns unwrap too: in a test, a panic is the failure report we want.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/sidecar_certs.rs"]
mod certs;
#[path = "support/sidecar_harness.rs"]
mod harness;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use certs::{write_atomic, IdentityFiles, TestCa};
use fedgate::app::App;
use fedgate_dataplane::proxy_protocol::{TLV_ORIGIN_ID, TLV_SPIFFE_ID};
use harness::{echo_app, round_trip, RunningSidecar, WAIT};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const CLIENT_A: &str = "spiffe://cluster-a.test/ns/demo/sa/client";
const INTRUDER_A: &str = "spiffe://cluster-a.test/ns/demo/sa/intruder";
const ECHO_B: &str = "spiffe://cluster-b.test/ns/demo/sa/echo";
const ENDPOINT_PATH: &str = "/fedgate/bundle-endpoint";

/// A gateway (`fedgate run`) running in this process.
struct Gateway {
    config: String,
    listener: SocketAddr,
    bundle_endpoint: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), fedgate::app::AppError>>,
}

impl Gateway {
    async fn start(dir: &Path, config: String, listener: &str) -> Self {
        let path = dir.join("gateway.toml");
        std::fs::write(&path, &config).unwrap();
        let app = App::build(fedgate::config::Config::load(&path).unwrap())
            .await
            .unwrap();
        let listener = app.listener_addr(listener).unwrap();
        let bundle_endpoint = app.bundle_endpoint_addr().unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(app.run(shutdown.clone()));
        Self {
            config,
            listener,
            bundle_endpoint,
            shutdown,
            task,
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(WAIT, self.task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}

/// A gateway config: own identity (the bundle endpoint's SVID, not a workload's), a bundle
/// endpoint, one peer, and one passthrough listener with one route.
#[allow(clippy::too_many_arguments)] // a config template: each argument is one setting
fn gateway_toml(
    td: &str,
    dir: &Path,
    ids: &IdentityFiles,
    peer_td: &str,
    peer_url: &str,
    listener: &str,
    sni: &str,
    upstream: SocketAddr,
) -> String {
    format!(
        "trust_domain = \"{td}\"\ndrain_timeout = \"2s\"\n\
         [identity]\nsvid = {svid:?}\nkey = {key:?}\nbundle = {bundle:?}\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n\
         [federation]\nstate_dir = {state:?}\ndistribute_dir = {out:?}\n\
         min_refresh = \"1s\"\ndefault_refresh = \"1s\"\nmax_refresh = \"5s\"\n\
         [federation.serve]\nlisten = \"127.0.0.1:0\"\nprofile = \"https_spiffe\"\n\
         [[federation.peers]]\ntrust_domain = \"{peer_td}\"\nurl = \"{peer_url}\"\n\
         profile = \"https_spiffe\"\nendpoint_id = \"spiffe://{peer_td}{ENDPOINT_PATH}\"\n\
         bootstrap_bundle = {bootstrap:?}\n\
         [[listeners]]\nname = \"{listener}\"\nlisten = \"127.0.0.1:0\"\nkind = \"passthrough\"\n\
         [[listeners.routes]]\nsni = \"{sni}\"\nupstreams = [\"{upstream}\"]\n",
        svid = ids.svid,
        key = ids.key,
        bundle = ids.bundle,
        state = dir.join("state"),
        out = dir.join("out"),
        bootstrap = dir.join("peer-bootstrap.json"),
    )
}

fn sidecar_toml(td: &str, ids: &IdentityFiles, federated: &Path, listeners: &str) -> String {
    format!(
        "trust_domain = \"{td}\"\nreload_interval = \"50ms\"\ndrain_timeout = \"2s\"\n\
         [identity]\nsvid = {:?}\nkey = {:?}\nbundle = {:?}\nfederated_bundles = {federated:?}\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n{listeners}",
        ids.svid, ids.key, ids.bundle
    )
}

fn outbound_toml(egress: SocketAddr) -> String {
    format!(
        "[[outbound]]\nname = \"to-echo-b\"\nlisten = \"127.0.0.1:0\"\n\
         server_name = \"echo.cluster-b.test\"\nconnect = [\"{egress}\"]\nallow = [\"{ECHO_B}\"]\n"
    )
}

/// A TCP relay bound before its target exists, like a Service address in front of a pod that
/// is not up yet. The two gateways each need the other's (port 0) bundle endpoint address; one
/// of them reaches its peer through this relay. Bytes pass through untouched (TLS end to end).
async fn late_bound_relay() -> (SocketAddr, watch::Sender<Option<SocketAddr>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = watch::channel(None);
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let mut rx = rx.clone();
            tokio::spawn(async move {
                let waited = tokio::time::timeout(WAIT, rx.wait_for(Option::is_some)).await;
                let Ok(Ok(Some(target))) = waited.map(|r| r.map(|t| *t)) else {
                    return;
                };
                if let Ok(mut outbound) = TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    (addr, tx)
}

/// Waits (bounded) until the bundle map at `path` names `td`: a readiness check on the
/// gateway's distribution, which happens after its first successful fetch.
async fn wait_for_distribution(path: &Path, td: &str) {
    let needle = format!("\"{td}\"");
    for _ in 0..1000 {
        if std::fs::read_to_string(path).is_ok_and(|m| m.contains(&needle)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{} never named {td}", path.display());
}

fn key_path(ids: &IdentityFiles) -> String {
    ids.key.to_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workload_a_calls_workload_b_across_two_passthrough_gateways() {
    let dir = tempfile::tempdir().unwrap();
    let d = |p: &str| -> PathBuf { dir.path().join(p) };
    let (ca_a, ca_b) = (TestCa::new("cluster-a.test"), TestCa::new("cluster-b.test"));

    // Identities: each gateway has only its own bundle-endpoint SVID.
    let gw_a_ids = ca_a.write_identity(
        &d("gw-a"),
        &format!("spiffe://cluster-a.test{ENDPOINT_PATH}"),
    );
    let gw_b_ids = ca_b.write_identity(
        &d("gw-b"),
        &format!("spiffe://cluster-b.test{ENDPOINT_PATH}"),
    );
    let client_ids = ca_a.write_identity(&d("sidecar-a"), CLIENT_A);
    let intruder_ids = ca_a.write_identity(&d("sidecar-x"), INTRUDER_A);
    let echo_ids = ca_b.write_identity(&d("sidecar-b"), ECHO_B);
    // Bootstrap bundles exchanged out of band (what `e2e/kind.sh` copies between clusters).
    write_atomic(&d("gw-a/peer-bootstrap.json"), &ca_b.bundle_json());
    write_atomic(&d("gw-b/peer-bootstrap.json"), &ca_a.bundle_json());
    let map_a = d("gw-a/out/current/bundles.json");
    let map_b = d("gw-b/out/current/bundles.json");

    // Cluster B: app, its sidecar (its gateway has not distributed anything yet), gateway B.
    let (app_addr, mut app) = echo_app(true).await;
    let mut sidecar_b = RunningSidecar::start(
        &d("sidecar-b"),
        &sidecar_toml(
            "cluster-b.test",
            &echo_ids,
            &map_b,
            &format!(
                "[[inbound]]\nname = \"echo\"\nlisten = \"127.0.0.1:0\"\nforward = \"{app_addr}\"\n\
                 allow = [\"{CLIENT_A}\"]\nproxy_protocol = true\n"
            ),
        ),
    )
    .await;
    let (endpoint_a, set_endpoint_a) = late_bound_relay().await;
    let gw_b = Gateway::start(
        &d("gw-b"),
        gateway_toml(
            "cluster-b.test",
            &d("gw-b"),
            &gw_b_ids,
            "cluster-a.test",
            &format!("https://{endpoint_a}/"),
            "ingress",
            "echo.cluster-b.test",
            sidecar_b.addr("echo"),
        ),
        "ingress",
    )
    .await;

    // Cluster A: gateway A (egress to gateway B's ingress), then its bundle endpoint goes live.
    let gw_a = Gateway::start(
        &d("gw-a"),
        gateway_toml(
            "cluster-a.test",
            &d("gw-a"),
            &gw_a_ids,
            "cluster-b.test",
            &format!("https://{}/", gw_b.bundle_endpoint),
            "egress",
            "*.cluster-b.test",
            gw_b.listener,
        ),
        "egress",
    )
    .await;
    set_endpoint_a.send(Some(gw_a.bundle_endpoint)).unwrap();

    // Each gateway fetched the other's bundle over https_spiffe and distributed it.
    wait_for_distribution(&map_a, "cluster-b.test").await;
    wait_for_distribution(&map_b, "cluster-a.test").await;
    tokio::time::timeout(
        WAIT,
        sidecar_b
            .tls
            .wait_for(|s| s.trust_domains.contains(&ca_a.td)),
    )
    .await
    .expect("sidecar B never trusted cluster-a")
    .unwrap();

    let mut sidecar_a = RunningSidecar::start(
        &d("sidecar-a"),
        &sidecar_toml(
            "cluster-a.test",
            &client_ids,
            &map_a,
            &outbound_toml(gw_a.listener),
        ),
    )
    .await;
    assert!(sidecar_a.tls.borrow().trust_domains.contains(&ca_b.td));

    // The call: end-to-end mTLS between the two workload identities, through both gateways.
    let payload: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
    assert_eq!(
        round_trip(sidecar_a.addr("to-echo-b"), &payload).await,
        payload
    );
    let header = app.recv().await.unwrap().header.unwrap();
    assert_eq!(header.tlv(TLV_SPIFFE_ID), Some(CLIENT_A.as_bytes()));
    assert_eq!(header.tlv(TLV_ORIGIN_ID), None);
    let ev = sidecar_a.next_event().await;
    assert_eq!(ev.outcome, "ok");
    assert_eq!(ev.peer_id.unwrap().to_string(), ECHO_B);
    let ev = sidecar_b.next_event().await;
    assert_eq!(ev.outcome, "ok");
    assert_eq!(ev.peer_id.unwrap().to_string(), CLIENT_A);

    // A cluster-a workload that B does not allow: refused by sidecar B, app never reached.
    let mut intruder = RunningSidecar::start(
        &d("sidecar-x"),
        &sidecar_toml(
            "cluster-a.test",
            &intruder_ids,
            &map_a,
            &outbound_toml(gw_a.listener),
        ),
    )
    .await;
    assert_eq!(
        round_trip(intruder.addr("to-echo-b"), b"let me in").await,
        b""
    );
    assert_eq!(sidecar_b.next_event().await.outcome, "client_not_allowed");
    assert_ne!(intruder.next_event().await.outcome, "ok");
    assert!(app.try_recv().is_err());

    // Passthrough holds no workload key (threat-model invariant 5): the gateway configs name no
    // workload key file, and the only key each loads is its own bundle endpoint's.
    for gw in [&gw_a, &gw_b] {
        for workload in [&client_ids, &intruder_ids, &echo_ids] {
            assert!(!gw.config.contains(&key_path(workload)), "{}", gw.config);
        }
    }
    assert!(gw_a.config.contains(&key_path(&gw_a_ids)));
    assert!(gw_b.config.contains(&key_path(&gw_b_ids)));
    assert_eq!(gw_a.config.matches("key =").count(), 1, "{}", gw_a.config);
    assert_eq!(gw_b.config.matches("key =").count(), 1, "{}", gw_b.config);

    for s in [sidecar_a, sidecar_b, intruder] {
        s.stop().await;
    }
    gw_a.stop().await;
    gw_b.stop().await;
}
