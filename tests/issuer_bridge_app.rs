//! `fedgate run` with `[bridge.issuer]`: both gateways obtain their bridge SVIDs from one
//! `fedgate ca serve` at startup (authenticating with their local SVIDs), workload A reaches
//! workload B across the bridge, and gateway A's short-lived bridge SVID is renewed while a
//! connection made with the first one stays usable; new connections work after the first SVID
//! has expired, so they use a renewed one.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic fails the test

#[path = "support/bridge_certs.rs"]
mod bridge_certs;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, SystemTime};

use bridge_certs::workloads::{call, round_trip, spawn_destination};
use bridge_certs::TestCa;
use fedgate::app::App;
use fedgate::ca::serve::{Issuer, ServeConfig};
use fedgate::ca::{Ca, InitOptions};
use fedgate::config::Config;
use fedgate_dataplane::proxy_protocol::TLV_ORIGIN_ID;
use fedgate_federation::svid::verify::verify;
use fedgate_federation::{SpiffeId, TrustDomain, X509Svid};
use rustls_pki_types::UnixTime;
use tokio_util::sync::CancellationToken;

const DEST: &str = "echo.cluster-b.test";
const ENDPOINT_ID: &str = "spiffe://bridge.test/ca-endpoint";

async fn start_gateway(dir: &Path, toml: &str, listener: &str) -> (SocketAddr, CancellationToken) {
    let path = dir.join("gateway.toml");
    std::fs::write(&path, toml).unwrap();
    let app = App::build(Config::load(&path).unwrap())
        .await
        .unwrap()
        .with_identity_poll(Duration::from_millis(20));
    let addr = app.listener_addr(listener).unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(app.run(stop.clone()));
    (addr, stop)
}

fn gateway_toml(td: &str, bridge_id: &str, ttl: &str, ca_url: &str, listener: &str) -> String {
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
bundle = "bridge-bundle.json"
[bridge.issuer]
url = "{ca_url}"
endpoint_id = "{ENDPOINT_ID}"
id = "{bridge_id}"
ttl = "{ttl}"
out_dir = "bridge-svid"
startup_timeout = "20s"
{listener}"#
    )
}

#[tokio::test]
async fn gateways_get_bridge_svids_from_ca_serve_and_renewal_keeps_connections() {
    let a = TestCa::new("cluster-a.test");
    let b = TestCa::new("cluster-b.test");
    let client = a.issue("/ns/demo/sa/client");
    let echo = b.issue("/ns/demo/sa/echo");
    let egress_local = a.issue("/ns/gateway/sa/egress");
    let ingress_local = b.issue("/ns/gateway/sa/ingress");
    let mut dest = spawn_destination(&b, &echo).await;

    // The bridge CA and its issuing endpoint.
    let ca_dir = tempfile::tempdir().unwrap();
    let bridge_ca = Ca::init(
        &TrustDomain::new("bridge.test").unwrap(),
        &InitOptions {
            ttl: Duration::from_secs(30 * 86_400),
            refresh_hint: None,
            intermediate: false,
        },
    )
    .unwrap();
    bridge_ca.save(&ca_dir.path().join("bridge-ca")).unwrap();
    bridge_ca
        .issue(
            &SpiffeId::parse(ENDPOINT_ID).unwrap(),
            Duration::from_secs(86_400),
            &[],
        )
        .unwrap()
        .write(&ca_dir.path().join("endpoint"), bridge_ca.bundle())
        .unwrap();
    a.write_bundle(ca_dir.path(), "a-bundle.json");
    b.write_bundle(ca_dir.path(), "b-bundle.json");
    let serve_toml = format!(
        r#"ca_dir = "bridge-ca"
listen = "127.0.0.1:0"
svid = "endpoint/svid.pem"
key = "endpoint/svid.key"
max_ttl = "1h"
[[members]]
trust_domain = "cluster-a.test"
bundle = "a-bundle.json"
[[members]]
trust_domain = "cluster-b.test"
bundle = "b-bundle.json"
[[policy]]
local = "{}"
bridge = "spiffe://bridge.test/gateway/cluster-a"
[[policy]]
local = "{}"
bridge = "spiffe://bridge.test/gateway/cluster-b"
"#,
        egress_local.id, ingress_local.id
    );
    let serve_path = ca_dir.path().join("ca-serve.toml");
    std::fs::write(&serve_path, serve_toml).unwrap();
    let issuer = Issuer::build(&ServeConfig::load(&serve_path).unwrap())
        .await
        .unwrap();
    let ca_url = format!("https://{}/", issuer.local_addr().unwrap());
    let issuer_metrics = issuer.metrics().clone();
    let mut issued = issuer_metrics.subscribe();
    let stop_ca = CancellationToken::new();
    tokio::spawn(issuer.run(stop_ca.clone()));

    // Gateway B (ingress): local identity of cluster-b, bridge SVID from the CA (1 h).
    let dir_b = tempfile::tempdir().unwrap();
    ingress_local.write(dir_b.path(), "local");
    b.write_bundle(dir_b.path(), "local-bundle.json");
    std::fs::write(
        dir_b.path().join("bridge-bundle.json"),
        bridge_ca.bundle().to_json(),
    )
    .unwrap();
    let ingress = format!(
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
    );
    let toml_b = gateway_toml(
        "cluster-b.test",
        "spiffe://bridge.test/gateway/cluster-b",
        "1h",
        &ca_url,
        &ingress,
    );
    let (ingress_addr, stop_b) = start_gateway(dir_b.path(), &toml_b, "bridge-in").await;
    // The SVID was obtained before App::build returned, and saved for restarts.
    assert!(dir_b.path().join("bridge-svid/svid.pem").exists());

    // Gateway A (egress): bridge SVID of 3 s, renewed about every 2 s.
    let dir_a = tempfile::tempdir().unwrap();
    egress_local.write(dir_a.path(), "local");
    a.write_bundle(dir_a.path(), "local-bundle.json");
    std::fs::write(
        dir_a.path().join("bridge-bundle.json"),
        bridge_ca.bundle().to_json(),
    )
    .unwrap();
    let egress = format!(
        r#"
[[listeners]]
name = "bridge-out"
kind = "bridge-egress"
listen = "127.0.0.1:0"
  [[listeners.routes]]
  sni = "{DEST}"
  upstreams = ["{ingress_addr}"]
  peer_id = "spiffe://bridge.test/gateway/cluster-b"
  allow = ["spiffe://cluster-a.test/ns/demo/sa/client"]
"#
    );
    let toml_a = gateway_toml(
        "cluster-a.test",
        "spiffe://bridge.test/gateway/cluster-a",
        "3s",
        &ca_url,
        &egress,
    );
    let (egress_addr, stop_a) = start_gateway(dir_a.path(), &toml_a, "bridge-out").await;
    assert_eq!(issuer_metrics.issued_count(), 2);
    let saved = dir_a.path().join("bridge-svid");
    let first = X509Svid::load(&saved.join("svid.pem"), &saved.join("svid.key")).unwrap();
    let first_expiry = verify(first.chain(), &bridge_ca.bundle().clone(), UnixTime::now())
        .unwrap()
        .not_after();

    // Workload A → egress A → ingress B → workload B, with A's first bridge SVID.
    let mut live = call(&a, &client, &egress_local.id, egress_addr, DEST)
        .await
        .unwrap();
    assert_eq!(round_trip(&mut live, b"hello").await, b"hello");
    let seen = dest.seen.recv().await.unwrap();
    assert_eq!(
        seen.header.tlv(TLV_ORIGIN_ID),
        Some(client.id.to_string().as_bytes())
    );

    // Renewals of A's SVID (each one an issuer event) until the first one (3 s) has expired.
    tokio::time::timeout(
        Duration::from_secs(20),
        issued.wait_for(|_| issuer_metrics.issued_count() >= 4 && SystemTime::now() > first_expiry),
    )
    .await
    .expect("gateway A did not keep renewing its bridge SVID")
    .unwrap();
    assert_eq!(issuer_metrics.refusals("not_mapped_id"), 0);

    // The connection made with the first (now expired) bridge SVID is still usable ...
    assert_eq!(round_trip(&mut live, b"still here").await, b"still here");
    // ... and a new connection succeeds, so it was made with a renewed SVID.
    let mut fresh = call(&a, &client, &egress_local.id, egress_addr, DEST)
        .await
        .unwrap();
    assert_eq!(round_trip(&mut fresh, b"fresh").await, b"fresh");
    dest.seen.recv().await.unwrap();

    drop(live);
    drop(fresh);
    stop_a.cancel();
    stop_b.cancel();
    stop_ca.cancel();
}
