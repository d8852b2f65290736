//! What `fedgate ca serve` re-reads while running: a rotated CA directory signs the next SVIDs,
//! a replaced endpoint SVID is presented to the next clients, a member bundle that stops
//! parsing keeps the last good one; and a client that never completes the handshake is cut at
//! the handshake timeout and counted.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic fails the test

#[path = "support/issuer.rs"]
mod support;

use std::sync::Arc;
use std::time::Duration;

use fedgate_federation::svid::verify::verify;
use fedgate_federation::tls::{self, Authorizer, SpiffeServerVerifier};
use fedgate_federation::{Bundle, BundleSet};
use rustls_pki_types::{ServerName, UnixTime};
use support::*;

/// Retries `f` every 20 ms for at most 10 s until it returns `Some` (the endpoint polls its
/// files every 50 ms in these tests).
async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    mut f: impl FnMut() -> F,
) -> T {
    for _ in 0..500 {
        if let Some(v) = f().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what} did not happen within 10 s");
}

/// The leaf the endpoint presents to a fresh connection.
async fn endpoint_leaf(pki: &Pki, url: &reqwest::Url) -> Vec<u8> {
    let verifier = Arc::new(SpiffeServerVerifier::new(
        pki.bridge_bundles(),
        Authorizer::exact(id(ENDPOINT_ID)),
    ));
    let gw = Pki::svid(&pki.a, GW_A);
    let config = tls::client_config(Some(&gw), verifier).unwrap();
    let tcp = tokio::net::TcpStream::connect(url.socket_addrs(|| None).unwrap()[0])
        .await
        .unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("ca").unwrap(), tcp)
        .await
        .unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

#[tokio::test]
async fn rotated_ca_and_replaced_endpoint_svid_are_picked_up() {
    let mut pki = Pki::new();
    let srv = Running::start(&pki.write_config("")).await;
    let c = gw_a_client(&pki, &srv.url);
    let old_root = pki.bridge.root().clone();
    let first = c.fetch_once().await.unwrap();
    let bridge_td = pki.bridge.trust_domain().clone();
    let only = |root: &rustls_pki_types::CertificateDer<'static>| {
        let mut b = Bundle::new(bridge_td.clone());
        b.add_x509_authority(root.clone());
        BundleSet::new().with(b)
    };
    assert!(verify(first.chain(), &only(&old_root), UnixTime::now()).is_ok());

    // Rotate the bridge root on disk (`fedgate ca rotate`): the next SVIDs chain to the new one.
    pki.bridge.rotate().unwrap();
    pki.bridge.save(&pki.path("bridge-ca")).unwrap();
    let new_root = pki.bridge.root().clone();
    // The gateways' bridge bundle now lists both roots.
    let c = gw_a_client(&pki, &srv.url);
    eventually("issuing from the rotated CA", || async {
        let svid = c.fetch_once().await.unwrap();
        verify(svid.chain(), &only(&new_root), UnixTime::now())
            .ok()
            .map(|_| ())
    })
    .await;

    // Replace the endpoint's own SVID: new connections see the new one.
    let before = endpoint_leaf(&pki, &srv.url).await;
    let replacement = pki
        .bridge
        .issue(&id(ENDPOINT_ID), Duration::from_secs(86_400), &[])
        .unwrap();
    replacement
        .write(&pki.path("endpoint"), pki.bridge.bundle())
        .unwrap();
    let want = replacement.chain()[0].to_vec();
    assert_ne!(before, want);
    eventually("the new endpoint SVID", || async {
        (endpoint_leaf(&pki, &srv.url).await == want).then_some(())
    })
    .await;
    srv.stop().await;
}

#[tokio::test]
async fn a_broken_member_bundle_keeps_the_last_good_one() {
    let pki = Pki::new();
    let srv = Running::start(&pki.write_config("")).await;
    std::fs::write(pki.path("a-bundle.json"), b"{ not json").unwrap();
    // Then give member b another CA: once gateway b is refused, the endpoint has polled both
    // files (one poll reads every member).
    let other_b = fedgate::ca::Ca::init(
        pki.b.trust_domain(),
        &fedgate::ca::InitOptions {
            ttl: Duration::from_secs(86_400),
            refresh_hint: None,
            intermediate: false,
        },
    )
    .unwrap();
    std::fs::write(pki.path("b-bundle.json"), other_b.bundle().to_json()).unwrap();
    let gw_b = client(client_config(
        &pki,
        &srv.url,
        Pki::svid(&pki.b, GW_B),
        BRIDGE_B,
        None,
        None,
    ));
    eventually("member b's new bundle in force", || async {
        gw_b.fetch_once().await.is_err().then_some(())
    })
    .await;
    assert!(srv.metrics.refusals("untrusted_issuer") >= 1);
    // Member a's last good bundle is still in force.
    let c = gw_a_client(&pki, &srv.url);
    assert_eq!(c.fetch_once().await.unwrap().id(), &id(BRIDGE_A));
    srv.stop().await;
}

#[tokio::test]
async fn a_silent_client_is_cut_at_the_handshake_timeout() {
    let pki = Pki::new();
    let path = pki.path("ca-serve.toml");
    std::fs::write(
        &path,
        pki.config_text("").replace(
            "handshake_timeout = \"5s\"",
            "handshake_timeout = \"200ms\"",
        ),
    )
    .unwrap();
    let srv = Running::start(&path).await;
    let mut events = srv.metrics.subscribe();
    let _silent = tokio::net::TcpStream::connect(srv.url.socket_addrs(|| None).unwrap()[0])
        .await
        .unwrap();
    Running::await_events(&mut events, 1).await;
    assert_eq!(srv.metrics.refusals("handshake_timeout"), 1);
    // Still serving.
    let c = gw_a_client(&pki, &srv.url);
    assert!(c.fetch_once().await.is_ok());
    srv.stop().await;
}

#[tokio::test]
async fn connections_over_the_limit_are_closed_and_counted() {
    let pki = Pki::new();
    let srv = Running::start(&pki.write_config("max_connections = 1")).await;
    let mut events = srv.metrics.subscribe();
    let addr = srv.url.socket_addrs(|| None).unwrap()[0];
    // The first connection holds the only permit (it never starts its handshake) ...
    let silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    // ... so the second is closed at once.
    let mut second = tokio::net::TcpStream::connect(addr).await.unwrap();
    Running::await_events(&mut events, 1).await;
    assert_eq!(srv.metrics.refusals("too_many_connections"), 1);
    let mut buf = [0u8; 1];
    let n = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::io::AsyncReadExt::read(&mut second, &mut buf),
    )
    .await
    .unwrap()
    .unwrap_or(0);
    assert_eq!(n, 0, "the connection over the limit is closed");
    // Once the first goes away, its permit is free again.
    drop(silent);
    Running::await_events(&mut events, 2).await;
    let c = gw_a_client(&pki, &srv.url);
    assert!(c.fetch_once().await.is_ok());
    srv.stop().await;
}
