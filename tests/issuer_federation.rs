//! A member whose bundle `fedgate ca serve` fetches from the member's federation endpoint
//! (https_spiffe, bootstrap bundle) instead of a file: its gateway is served once the
//! refresher has the bundle.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic fails the test

#[path = "support/issuer.rs"]
mod support;

use std::sync::Arc;
use std::time::Duration;

use fedgate_federation::endpoint::server::ServerTls;
use fedgate_federation::endpoint::BundleEndpoint;
use support::*;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn member_bundle_from_its_federation_endpoint() {
    let pki = Pki::new();
    // Cluster a's federation endpoint, serving a's bundle under https_spiffe.
    let endpoint_svid = Pki::svid(&pki.a, "spiffe://cluster-a.test/fedgate/bundle-endpoint");
    let tls = ServerTls::Spiffe((*endpoint_svid).clone())
        .server_config()
        .unwrap();
    let (_bundle_tx, bundle_rx) = watch::channel(Arc::new(pki.a.bundle().clone()));
    let (_tls_tx, tls_rx) = watch::channel(tls);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fed_addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let fed_task =
        tokio::spawn(BundleEndpoint::new("/", bundle_rx, tls_rx).run(listener, stop.clone()));

    // The issuing endpoint has no file for cluster-a.test, only the relationship.
    std::fs::write(pki.path("a-bootstrap.json"), pki.a.bundle().to_json()).unwrap();
    std::fs::remove_file(pki.path("a-bundle.json")).unwrap();
    let text = pki.config_text("state_dir = \"state\"").replace(
        "bundle = \"a-bundle.json\"",
        &format!(
            "url = \"https://{fed_addr}/\"\nprofile = \"https_spiffe\"\n\
             endpoint_id = \"spiffe://cluster-a.test/fedgate/bundle-endpoint\"\n\
             bootstrap_bundle = \"a-bootstrap.json\""
        ),
    );
    let config = pki.path("ca-serve.toml");
    std::fs::write(&config, text).unwrap();
    let srv = Running::start(&config).await;

    let c = gw_a_client(&pki, &srv.url);
    let mut rx = c.subscribe();
    let task = tokio::spawn(c.run(stop.clone()));
    let got = tokio::time::timeout(Duration::from_secs(15), rx.wait_for(Option::is_some))
        .await
        .expect("no bridge SVID: the member bundle was not fetched")
        .unwrap()
        .clone()
        .unwrap();
    assert_eq!(got.id(), &id(BRIDGE_A));
    // The last-known-good store holds the fetched bundle for restarts.
    assert!(pki.path("state").read_dir().unwrap().count() >= 1);

    stop.cancel();
    task.await.unwrap();
    fed_task.await.unwrap().unwrap();
    srv.stop().await;
}
