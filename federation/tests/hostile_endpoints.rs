//! Hostile bundle endpoints: each refusal keeps the last-known-good bundle, is counted in the
//! metrics and carries its reason label (threat-model invariants 2, 3 and 7).
// Test code: a failed unwrap is a test failure with a backtrace, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "fed_support/mod.rs"]
mod fed_support;

use std::time::{Duration, SystemTime};

use fed_support::*;
use fedgate_federation::endpoint::{fetch, Relationship};
use fedgate_federation::metrics::{encode_text, FederationMetrics};
use fedgate_federation::refresh::{Peer, RefreshPolicy, Refresher};
use fedgate_federation::store::{Origin, Store};
use fedgate_federation::{Bundle, TrustDomain};
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

/// The peer trust domain's CA, the Web PKI CA of its endpoint, and the last-known-good.
struct World {
    peer: TestCa,
    web: TestCa,
    server: Leaf,
    lkg: Bundle,
}

fn world() -> World {
    let peer = TestCa::new("b.test");
    let web = TestCa::web("Web Test CA");
    let server = web.server(&["bundles.b.test"], true);
    let lkg = with_seq(peer.bundle(), 10);
    World {
        peer,
        web,
        server,
        lkg,
    }
}

fn policy() -> RefreshPolicy {
    RefreshPolicy {
        min: Duration::from_secs(60),
        max: Duration::from_secs(60),
        default: Duration::from_secs(60),
        jitter: 0.0,
        backoff_initial: Duration::from_secs(60),
        backoff_max: Duration::from_secs(60),
    }
}

/// Asserts that fetching over `rel` is refused with `label` directly and through the
/// refresher, which keeps the last-known-good bundle in force and in the store.
async fn assert_refused(w: &World, rel: Relationship, label: &str) {
    let td = rel.trust_domain.clone();
    let err = fetch(&rel, Some(&w.lkg), &fast_opts()).await.unwrap_err();
    assert_eq!(err.reason_label(), label, "{err:?}");

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .save(&w.lkg, &Origin::of(&rel), SystemTime::now())
        .unwrap();
    let metrics = FederationMetrics::new();
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let peer = Peer {
        relationship: rel,
        fetch: fast_opts(),
    };
    let (refresher, handle) = Refresher::new(
        vec![],
        vec![peer],
        policy(),
        Some(store.clone()),
        None,
        Some(metrics),
    );
    let mut events = handle.events();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(refresher.run(shutdown.clone()));

    let ev = tokio::time::timeout(Duration::from_secs(20), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ev.result, label);
    assert!(!ev.changed);
    assert_eq!(ev.sequence, Some(10));
    let in_force = handle.bundles().get(&td).cloned().unwrap();
    assert!(in_force.same_authorities(&w.lkg));
    assert_eq!(in_force.sequence(), Some(10));
    let text = encode_text(&registry);
    let sample =
        format!(r#"fedgate_federation_fetches_total{{trust_domain="{td}",result="{label}"}} 1"#);
    assert!(text.contains(&sample), "missing {sample} in\n{text}");
    assert!(
        text.contains(r#"fedgate_federation_bundle_sequence{trust_domain="b.test"} 10"#),
        "{text}"
    );
    let status = handle.status();
    assert!(
        status[0].last_error.as_deref().unwrap().starts_with(label),
        "{status:?}"
    );
    assert_eq!(
        store.load(&td).unwrap().unwrap().bundle.sequence(),
        Some(10)
    );

    shutdown.cancel();
    task.await.unwrap();
}

fn td() -> TrustDomain {
    TrustDomain::new("b.test").unwrap()
}

#[tokio::test]
async fn body_that_never_ends_is_cut_at_the_limit() {
    let w = world();
    let srv = Hostile::start(w.server.web_tls(), |_, _| Reply::Endless).await;
    assert_refused(&w, web_rel(&td(), &srv.url("/"), &w.web), "body_too_large").await;
}

#[tokio::test]
async fn body_larger_than_the_limit_is_refused() {
    let w = world();
    let big = vec![b' '; 200 * 1024];
    let srv = Hostile::start(w.server.web_tls(), move |_, _| Reply::json(&big)).await;
    assert_refused(&w, web_rel(&td(), &srv.url("/"), &w.web), "body_too_large").await;
}

#[tokio::test]
async fn stall_after_headers_times_out() {
    let w = world();
    let srv = Hostile::start(w.server.web_tls(), |_, _| Reply::StallAfterHeaders).await;
    assert_refused(&w, web_rel(&td(), &srv.url("/"), &w.web), "timeout").await;
}

#[tokio::test]
async fn redirect_loop_is_detected() {
    let w = world();
    let srv = Hostile::start(w.server.web_tls(), |_, path| {
        Reply::redirect(if path == "/a" { "/b" } else { "/a" })
    })
    .await;
    assert_refused(&w, web_rel(&td(), &srv.url("/a"), &w.web), "redirect_loop").await;
}

#[tokio::test]
async fn too_many_redirects_are_refused() {
    let w = world();
    let srv = Hostile::start(w.server.web_tls(), |n, _| {
        Reply::redirect(&format!("/hop{n}"))
    })
    .await;
    assert_refused(
        &w,
        web_rel(&td(), &srv.url("/"), &w.web),
        "too_many_redirects",
    )
    .await;
}

#[tokio::test]
async fn redirect_to_plain_http_is_refused() {
    let w = world();
    let srv = Hostile::start(w.server.web_tls(), |_, _| {
        Reply::redirect("http://127.0.0.1:1/")
    })
    .await;
    assert_refused(&w, web_rel(&td(), &srv.url("/"), &w.web), "bad_redirect").await;
}

#[tokio::test]
async fn invalid_json_is_refused() {
    let w = world();
    let srv = Hostile::start(w.server.web_tls(), |_, _| Reply::json(b"{\"keys\": [")).await;
    assert_refused(&w, web_rel(&td(), &srv.url("/"), &w.web), "not_json").await;
}

#[tokio::test]
async fn json_that_is_not_a_bundle_is_refused() {
    let w = world();
    let srv = Hostile::start(w.server.web_tls(), |_, _| Reply::json(b"{\"hello\": 1}")).await;
    assert_refused(&w, web_rel(&td(), &srv.url("/"), &w.web), "not_bundle").await;
}

#[tokio::test]
async fn bundle_of_another_trust_domain_is_refused() {
    let w = world();
    let evil = with_seq(TestCa::new("evil.test").bundle(), 11);
    let body = evil.to_json();
    let srv = Hostile::start(w.server.web_tls(), move |_, _| Reply::json(&body)).await;
    assert_refused(
        &w,
        web_rel(&td(), &srv.url("/"), &w.web),
        "wrong_trust_domain",
    )
    .await;
}

#[tokio::test]
async fn bundle_map_with_duplicate_trust_domains_is_refused() {
    let w = world();
    let one = String::from_utf8(w.peer.bundle().to_json()).unwrap();
    let body = format!(r#"{{"trust_domains": {{"b.test": {one}, "b.test": {{"keys": []}}}}}}"#);
    let srv = Hostile::start(w.server.web_tls(), move |_, _| Reply::json(body.as_bytes())).await;
    assert_refused(
        &w,
        web_rel(&td(), &srv.url("/"), &w.web),
        "duplicate_trust_domain",
    )
    .await;
}

#[tokio::test]
async fn sequence_rollback_is_refused() {
    let w = world();
    let mut older = w.peer.bundle();
    older.add_x509_authority(TestCa::new("b.test").der());
    let body = with_seq(older, 5).to_json();
    let srv = Hostile::start(w.server.web_tls(), move |_, _| Reply::json(&body)).await;
    assert_refused(&w, web_rel(&td(), &srv.url("/"), &w.web), "rollback").await;
}

/// A bundle without `spiffe_sequence` cannot be ordered after the sequenced one in force:
/// refused as a rollback, like a lower sequence.
#[tokio::test]
async fn dropping_the_sequence_is_refused_as_a_rollback() {
    let w = world();
    let mut other = w.peer.bundle();
    other.add_x509_authority(TestCa::new("b.test").der());
    other.set_sequence(None);
    let body = other.to_json();
    assert!(!String::from_utf8_lossy(&body).contains("spiffe_sequence"));
    let srv = Hostile::start(w.server.web_tls(), move |_, _| Reply::json(&body)).await;
    assert_refused(&w, web_rel(&td(), &srv.url("/"), &w.web), "rollback").await;
}

#[tokio::test]
async fn http_500_keeps_last_known_good_then_recovers() {
    let w = world();
    let mut rotated = w.peer.bundle();
    let next_ca = TestCa::new("b.test");
    rotated.add_x509_authority(next_ca.der());
    let body = with_seq(rotated.clone(), 11).to_json();
    let srv = Hostile::start(w.server.web_tls(), move |n, _| {
        if n < 2 {
            Reply::status(500)
        } else {
            Reply::json(&body)
        }
    })
    .await;
    let rel = web_rel(&td(), &srv.url("/"), &w.web);
    assert_refused(&w, rel.clone(), "http_status").await;

    // Recovery: a refresher holding the last-known-good picks up the rotated bundle.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .save(&w.lkg, &Origin::of(&rel), SystemTime::now())
        .unwrap();
    let metrics = FederationMetrics::new();
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let (refresher, handle) = Refresher::new(
        vec![],
        vec![Peer {
            relationship: rel,
            fetch: fast_opts(),
        }],
        policy(),
        Some(store.clone()),
        None,
        Some(metrics),
    );
    let mut events = handle.events();
    let mut bundles = handle.subscribe();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(refresher.run(shutdown.clone()));
    let ev = tokio::time::timeout(Duration::from_secs(20), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((ev.result, ev.changed), ("ok", true));
    bundles.changed().await.unwrap();
    let now = bundles.borrow().get(&td()).cloned().unwrap();
    assert!(now.same_authorities(&rotated));
    assert_eq!(now.sequence(), Some(11));
    assert_eq!(
        store.load(&td()).unwrap().unwrap().bundle.sequence(),
        Some(11)
    );
    assert!(encode_text(&registry).contains(r#"result="ok"} 1"#));
    shutdown.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn redirect_to_endpoint_with_a_different_spiffe_id_is_refused() {
    let w = world();
    let pinned = w.peer.id("/bundle-server");
    let other = Hostile::start(w.peer.svid("/not-the-bundle-server").svid_tls(), {
        let body = with_seq(w.peer.bundle(), 11).to_json();
        move |_, _| Reply::json(&body)
    })
    .await;
    let target = other.url("/");
    let srv = Hostile::start(w.peer.svid("/bundle-server").svid_tls(), move |_, _| {
        Reply::redirect(&target)
    })
    .await;
    let rel = spiffe_rel(&td(), &srv.url("/"), &pinned, w.peer.bundle());
    assert_refused(&w, rel, "tls").await;
    assert_eq!(
        other.requests.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "no request reached the impostor"
    );
}
