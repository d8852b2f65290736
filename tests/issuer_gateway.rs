//! The gateway-side adapter (`[bridge.issuer]`): the bridge identity the bridge listeners
//! consume comes from `fedgate ca serve`, is there at startup, and is republished on renewal.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic fails the test

#[path = "support/issuer.rs"]
mod support;

use std::sync::Arc;
use std::time::Duration;

use fedgate::identity::issuer::{IssuedIdentity, IssuerSettings};
use fedgate::identity::Identity;
use fedgate_federation::{TrustDomain, X509Svid};
use support::*;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

fn settings(url: &reqwest::Url, requested: &str, ttl: Option<Duration>) -> IssuerSettings {
    IssuerSettings {
        url: url.clone(),
        endpoint_id: id(ENDPOINT_ID),
        id: id(requested),
        ttl,
        out_dir: None,
        startup_timeout: Duration::from_secs(10),
    }
}

fn local_identity(pki: &Pki) -> watch::Receiver<Arc<Identity>> {
    let svid: X509Svid = (*Pki::svid(&pki.a, GW_A)).clone();
    watch::channel(Arc::new(Identity::new(svid, pki.a.bundle().clone()))).1
}

#[tokio::test]
async fn bridge_identity_is_issued_at_startup_and_republished_on_renewal() {
    let pki = Pki::new();
    let srv = Running::start(&pki.write_config("")).await;
    let bundle_path = pki.path("bridge-bundle.json");
    std::fs::write(&bundle_path, pki.bridge.bundle().to_json()).unwrap();
    let bridge_td = TrustDomain::new("bridge.test").unwrap();

    let (task, mut rx) = IssuedIdentity::start(
        &settings(&srv.url, BRIDGE_A, Some(Duration::from_secs(3))),
        &bridge_td,
        bundle_path,
        local_identity(&pki),
        None,
    )
    .await
    .unwrap();
    let first = rx.borrow_and_update().clone();
    assert_eq!(first.svid.id(), &id(BRIDGE_A));
    assert_eq!(first.bundle.trust_domain(), &bridge_td);

    let stop = CancellationToken::new();
    let running = tokio::spawn(task.run(Duration::from_millis(50), stop.clone()));
    // Renewal (2/3 of 3 s) reaches the bridge identity channel.
    tokio::time::timeout(Duration::from_secs(15), rx.changed())
        .await
        .expect("the renewed SVID was not republished")
        .unwrap();
    let second = rx.borrow().clone();
    assert_eq!(second.svid.id(), &id(BRIDGE_A));
    assert_ne!(second.svid.chain()[0], first.svid.chain()[0]);
    stop.cancel();
    running.await.unwrap();
    srv.stop().await;
}

#[tokio::test]
async fn startup_fails_clearly_when_the_ca_refuses() {
    let pki = Pki::new();
    let srv = Running::start(&pki.write_config("")).await;
    let bundle_path = pki.path("bridge-bundle.json");
    std::fs::write(&bundle_path, pki.bridge.bundle().to_json()).unwrap();
    let mut s = settings(&srv.url, BRIDGE_B, None);
    s.startup_timeout = Duration::from_millis(300);
    let err = IssuedIdentity::start(
        &s,
        &TrustDomain::new("bridge.test").unwrap(),
        bundle_path,
        local_identity(&pki),
        None,
    )
    .await
    .err()
    .unwrap();
    let msg = fedgate_federation::error_chain(&err);
    assert!(
        msg.contains(srv.url.as_str()) && msg.contains(BRIDGE_B) && msg.contains("not_mapped_id"),
        "{msg}"
    );
    srv.stop().await;
}
