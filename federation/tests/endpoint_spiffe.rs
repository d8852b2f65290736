//! The `https_spiffe` profile: the client pins the endpoint's SPIFFE ID, authenticates it with
//! the bundle of the endpoint's trust domain (bootstrap first, then the latest fetched one for
//! a self-serving endpoint), and applies the same pin after a redirect.
// Test code: a failed unwrap is a test failure with a backtrace, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "fed_support/mod.rs"]
mod fed_support;

use fed_support::*;
use fedgate_federation::endpoint::{fetch, FetchOutcome};
use fedgate_federation::{Bundle, TrustDomain};

fn b() -> TrustDomain {
    TrustDomain::new("b.test").unwrap()
}

async fn fetched(
    rel: &fedgate_federation::endpoint::Relationship,
    current: Option<&Bundle>,
) -> Bundle {
    match fetch(rel, current, &fast_opts()).await.unwrap() {
        FetchOutcome::Updated { bundle, .. } => bundle,
        other => panic!("expected a bundle, got {other:?}"),
    }
}

#[tokio::test]
async fn pinned_endpoint_id_is_required() {
    let ca = TestCa::new("b.test");
    let ep = Endpoint::start(
        ca.svid("/bundle-server").svid_tls(),
        with_seq(ca.bundle(), 1),
        "/",
    )
    .await;
    let ok = spiffe_rel(&b(), &ep.url("/"), &ca.id("/bundle-server"), ca.bundle());
    assert!(fetched(&ok, None).await.same_authorities(&ca.bundle()));

    let wrong_id = spiffe_rel(&b(), &ep.url("/"), &ca.id("/someone-else"), ca.bundle());
    let e = fetch(&wrong_id, None, &fast_opts()).await.unwrap_err();
    assert_eq!(e.reason_label(), "tls", "{e:?}");

    // A bootstrap bundle that does not hold the endpoint's CA.
    let stranger = TestCa::new("b.test");
    let wrong_bundle = spiffe_rel(
        &b(),
        &ep.url("/"),
        &ca.id("/bundle-server"),
        stranger.bundle(),
    );
    let e = fetch(&wrong_bundle, None, &fast_opts()).await.unwrap_err();
    assert_eq!(e.reason_label(), "tls", "{e:?}");
}

#[tokio::test]
async fn self_serving_endpoint_is_authenticated_with_the_latest_bundle() {
    let old = TestCa::new("b.test");
    let new = TestCa::new("b.test");
    let mut rotated = old.bundle();
    rotated.add_x509_authority(new.der());
    // The endpoint already presents an SVID of the new CA, which the bootstrap lacks.
    let ep = Endpoint::start(
        new.svid("/bundle-server").svid_tls(),
        with_seq(rotated.clone(), 2),
        "/",
    )
    .await;
    let rel = spiffe_rel(&b(), &ep.url("/"), &new.id("/bundle-server"), old.bundle());
    let e = fetch(&rel, None, &fast_opts()).await.unwrap_err();
    assert_eq!(e.reason_label(), "tls");
    // Holding the rotated bundle (fetched earlier), the connection is authenticated.
    let got = fetched(&rel, Some(&with_seq(rotated.clone(), 1))).await;
    assert_eq!(got.sequence(), Some(2));
}

#[tokio::test]
async fn non_self_serving_endpoint_uses_the_endpoint_domain_bundle() {
    let host = TestCa::new("c.test");
    let peer = TestCa::new("b.test");
    let ep = Endpoint::start(
        host.svid("/bundle-server").svid_tls(),
        with_seq(peer.bundle(), 4),
        "/",
    )
    .await;
    let rel = spiffe_rel(
        &b(),
        &ep.url("/"),
        &host.id("/bundle-server"),
        host.bundle(),
    );
    // The current b.test bundle must not be used to authenticate a c.test endpoint.
    let got = fetched(&rel, Some(&with_seq(peer.bundle(), 3))).await;
    assert!(got.same_authorities(&peer.bundle()));
}

#[tokio::test]
async fn redirect_to_an_endpoint_with_the_same_id_is_followed() {
    let ca = TestCa::new("b.test");
    let target = Endpoint::start(
        ca.svid("/bundle-server").svid_tls(),
        with_seq(ca.bundle(), 9),
        "/real",
    )
    .await;
    let to = target.url("/real");
    let front = Hostile::start(ca.svid("/bundle-server").svid_tls(), move |_, _| {
        Reply::redirect(&to)
    })
    .await;
    let rel = spiffe_rel(&b(), &front.url("/"), &ca.id("/bundle-server"), ca.bundle());
    match fetch(&rel, None, &fast_opts()).await.unwrap() {
        FetchOutcome::Updated { bundle, url, .. } => {
            assert_eq!(bundle.sequence(), Some(9));
            assert_eq!(url.as_str(), target.url("/real"));
        }
        other => panic!("{other:?}"),
    }
}
