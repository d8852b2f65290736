//! The bundle endpoint server over real TLS on 127.0.0.1:0, and the `https_web` client
//! against it (private CA, hostname check).
// Test code: a failed unwrap is a test failure with a backtrace, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "fed_support/mod.rs"]
mod fed_support;

use std::sync::Arc;
use std::time::Duration;

use fed_support::*;
use fedgate_federation::endpoint::client::client_tls_config;
use fedgate_federation::endpoint::{fetch, BundleFileSource, FetchOutcome};
use fedgate_federation::{Bundle, TrustDomain};

fn a() -> TrustDomain {
    TrustDomain::new("a.test").unwrap()
}

/// A reqwest client trusting `web` only (to speak raw HTTP to the endpoint).
fn http_client(web: &TestCa, url: &str) -> reqwest::Client {
    let rel = web_rel(&a(), url, web);
    let tls = client_tls_config(&rel, None).unwrap();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .no_proxy()
        .build()
        .unwrap()
}

#[tokio::test]
async fn serves_json_with_etag_and_answers_304_405_404() {
    let ca = TestCa::new("a.test");
    let web = TestCa::web("Web CA");
    let bundle = with_seq(ca.bundle(), 3);
    let ep = Endpoint::start(
        web.server(&["localhost"], true).web_tls(),
        bundle.clone(),
        "/bundle",
    )
    .await;
    let url = ep.url("/bundle");
    let c = http_client(&web, &url);

    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let etag = r.headers()["etag"].to_str().unwrap().to_owned();
    assert!(etag.starts_with('"'), "strong etag: {etag}");
    let body = r.bytes().await.unwrap();
    let (parsed, _) = Bundle::parse(&a(), &body).unwrap();
    assert!(parsed.same_authorities(&bundle));

    let r = c
        .get(&url)
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    assert_eq!(r.headers()["etag"].to_str().unwrap(), etag);

    let r = c.head(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["etag"].to_str().unwrap(), etag);

    for m in [
        reqwest::Method::POST,
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
    ] {
        let r = c.request(m, &url).send().await.unwrap();
        assert_eq!(r.status(), 405);
        assert_eq!(r.headers()["allow"], "GET, HEAD");
    }
    assert_eq!(c.get(ep.url("/other")).send().await.unwrap().status(), 404);

    // A new bundle is served without restart, with a new ETag.
    ep.bundle
        .send_replace(Arc::new(with_seq(TestCa::new("a.test").bundle(), 4)));
    let r = c
        .get(&url)
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_ne!(r.headers()["etag"].to_str().unwrap(), etag);
}

#[tokio::test]
async fn https_web_client_fetches_and_uses_etag() {
    let ca = TestCa::new("a.test");
    let web = TestCa::web("Web CA");
    let ep = Endpoint::start(
        web.server(&[], true).web_tls(),
        with_seq(ca.bundle(), 7),
        "/",
    )
    .await;
    let rel = web_rel(&a(), &ep.url("/"), &web);
    let mut opts = fast_opts();
    let FetchOutcome::Updated { bundle, etag, .. } = fetch(&rel, None, &opts).await.unwrap() else {
        panic!("expected a bundle")
    };
    assert_eq!(bundle.sequence(), Some(7));
    assert!(bundle.same_authorities(&ca.bundle()));
    opts.if_none_match = etag;
    assert!(matches!(
        fetch(&rel, Some(&bundle), &opts).await.unwrap(),
        FetchOutcome::NotModified
    ));
}

#[tokio::test]
async fn https_web_refuses_wrong_hostname_and_unknown_ca() {
    let ca = TestCa::new("a.test");
    let web = TestCa::web("Web CA");
    // Certificate for another host only: the 127.0.0.1 URL must not match it.
    let ep = Endpoint::start(
        web.server(&["bundles.other.test"], false).web_tls(),
        ca.bundle(),
        "/",
    )
    .await;
    let err = fetch(&web_rel(&a(), &ep.url("/"), &web), None, &fast_opts())
        .await
        .unwrap_err();
    assert_eq!(err.reason_label(), "tls", "{err:?}");

    // Right host, but a CA we do not trust.
    let ep2 = Endpoint::start(web.server(&[], true).web_tls(), ca.bundle(), "/").await;
    let stranger = TestCa::web("Other CA");
    let err = fetch(&web_rel(&a(), &ep2.url("/"), &stranger), None, &fast_opts())
        .await
        .unwrap_err();
    assert_eq!(err.reason_label(), "tls", "{err:?}");
}

#[tokio::test]
async fn file_source_serves_the_files_sequence_and_refuses_unbumped_changes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bundle.json");
    let ca1 = TestCa::new("a.test");
    std::fs::write(&path, with_seq(ca1.bundle(), 1).to_json()).unwrap();
    let (mut source, rx) = BundleFileSource::new(a(), &path, Duration::from_secs(1)).unwrap();
    // The file's own sequence, not one made up from the clock.
    assert_eq!(rx.borrow().sequence(), Some(1));

    // Unchanged content: nothing published.
    assert!(!source.poll_once());
    // Rotation without a new sequence: refused, the previous bundle stays.
    let ca2 = TestCa::new("a.test");
    let mut rotated = ca1.bundle();
    rotated.add_x509_authority(ca2.der());
    std::fs::write(&path, with_seq(rotated.clone(), 1).to_json()).unwrap();
    assert!(!source.poll_once());
    assert_eq!(rx.borrow().sequence(), Some(1));
    assert!(rx.borrow().same_authorities(&ca1.bundle()));
    // The same rotation with a higher sequence: served as the file has it.
    std::fs::write(&path, with_seq(rotated.clone(), 2).to_json()).unwrap();
    assert!(source.poll_once());
    assert_eq!(rx.borrow().sequence(), Some(2));
    assert!(rx.borrow().same_authorities(&rotated));
    // Invalid content: keep serving the previous bundle.
    std::fs::write(&path, b"{ broken").unwrap();
    assert!(!source.poll_once());
    assert_eq!(rx.borrow().sequence(), Some(2));
    // An older file (lower sequence) is refused too.
    std::fs::write(&path, with_seq(ca1.bundle(), 1).to_json()).unwrap();
    assert!(!source.poll_once());
    assert!(rx.borrow().same_authorities(&rotated));
    // Old root retired, sequence bumped.
    std::fs::write(&path, with_seq(ca2.bundle(), 3).to_json()).unwrap();
    assert!(source.poll_once());
    assert_eq!(rx.borrow().sequence(), Some(3));
    assert!(rx.borrow().same_authorities(&ca2.bundle()));
}

#[tokio::test]
async fn file_without_a_sequence_is_served_as_is_and_frozen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bundle.json");
    let ca1 = TestCa::new("a.test");
    std::fs::write(&path, ca1.bundle().to_json()).unwrap();
    let (mut source, rx) = BundleFileSource::new(a(), &path, Duration::from_secs(1)).unwrap();
    assert_eq!(rx.borrow().sequence(), None);
    // A second replica of the same file serves the same document.
    let (_source2, rx2) = BundleFileSource::new(a(), &path, Duration::from_secs(1)).unwrap();
    assert_eq!(rx.borrow().to_json(), rx2.borrow().to_json());
    // A change without a sequence cannot be ordered by peers: refused.
    std::fs::write(&path, TestCa::new("a.test").bundle().to_json()).unwrap();
    assert!(!source.poll_once());
    assert!(rx.borrow().same_authorities(&ca1.bundle()));
    // Giving it a sequence publishes it.
    let ca3 = TestCa::new("a.test");
    std::fs::write(&path, with_seq(ca3.bundle(), 1).to_json()).unwrap();
    assert!(source.poll_once());
    assert_eq!(rx.borrow().sequence(), Some(1));
    assert!(rx.borrow().same_authorities(&ca3.bundle()));
}

#[tokio::test]
async fn server_survives_junk_and_slow_clients() {
    use tokio::io::AsyncWriteExt;
    let ca = TestCa::new("a.test");
    let web = TestCa::web("Web CA");
    let ep = Endpoint::start(web.server(&[], true).web_tls(), ca.bundle(), "/").await;
    // Plain-text junk instead of a ClientHello.
    let mut junk = tokio::net::TcpStream::connect(ep.addr).await.unwrap();
    junk.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    // A client that connects and says nothing (held open while we fetch).
    let _silent = tokio::net::TcpStream::connect(ep.addr).await.unwrap();
    let rel = web_rel(&a(), &ep.url("/"), &web);
    assert!(matches!(
        fetch(&rel, None, &fast_opts()).await.unwrap(),
        FetchOutcome::Updated { .. }
    ));
}

#[tokio::test]
async fn silent_clients_are_disconnected_after_the_handshake_timeout() {
    use tokio::io::AsyncReadExt;
    let ca = TestCa::new("a.test");
    let web = TestCa::web("Web CA");
    let ep = Endpoint::start_with_timeout(
        web.server(&[], true).web_tls(),
        ca.bundle(),
        "/",
        Duration::from_millis(200),
    )
    .await;
    let mut silent = tokio::net::TcpStream::connect(ep.addr).await.unwrap();
    let mut buf = [0u8; 16];
    // The server closes the connection (EOF) instead of holding it forever.
    let n = tokio::time::timeout(Duration::from_secs(10), silent.read(&mut buf))
        .await
        .expect("server kept a silent client open")
        .unwrap_or(0);
    assert_eq!(n, 0);
    // And keeps serving others.
    let rel = web_rel(&a(), &ep.url("/"), &web);
    assert!(matches!(
        fetch(&rel, None, &fast_opts()).await.unwrap(),
        FetchOutcome::Updated { .. }
    ));
}

/// Waits (bounded) until `cond` holds, re-checking after every metrics event.
async fn until(events: &mut tokio::sync::watch::Receiver<u64>, mut cond: impl FnMut() -> bool) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while !cond() {
            events.changed().await.unwrap();
        }
    })
    .await
    .expect("condition not reached in time");
}

#[tokio::test]
async fn connections_over_the_limit_are_closed_before_the_handshake_and_counted() {
    use fedgate_federation::endpoint::{BundleEndpoint, EndpointMetrics};
    use tokio::io::AsyncReadExt;

    let ca = TestCa::new("a.test");
    let web = TestCa::web("Web CA");
    let tls = web.server(&["localhost"], true).web_tls();
    let metrics = EndpointMetrics::new();
    let mut registry = prometheus_client::registry::Registry::default();
    metrics.register(&mut registry);
    let mut events = metrics.subscribe();
    let (_tls_tx, tls_rx) = tokio::sync::watch::channel(tls.server_config().unwrap());
    let (_bundle_tx, bundle_rx) = tokio::sync::watch::channel(Arc::new(ca.bundle()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = BundleEndpoint::new("/", bundle_rx, tls_rx)
        .with_max_connections(2)
        .with_metrics(metrics.clone());
    let task = tokio::spawn(server.run(listener, shutdown.clone()));
    let url = format!("https://127.0.0.1:{}/", addr.port());

    // Two connections with a completed handshake: each was accepted and holds a slot.
    let connector = tokio_rustls::TlsConnector::from(Arc::new(
        client_tls_config(&web_rel(&a(), &url, &web), None).unwrap(),
    ));
    let mut held = Vec::new();
    for _ in 0..2 {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
        held.push(connector.connect(name, tcp).await.unwrap());
    }
    assert_eq!(metrics.open_connections(), 2);

    // The third is closed before any TLS byte.
    let mut third = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), third.read_to_end(&mut out))
        .await
        .expect("the connection over the limit was not closed");
    assert!(read.is_err() || out.is_empty(), "{out:?}");
    until(&mut events, || {
        metrics.refusals("too_many_connections") == 1
    })
    .await;
    let text = fedgate_federation::metrics::encode_text(&registry);
    assert!(
        text.contains("fedgate_bundle_endpoint_refusals_total{reason=\"too_many_connections\"} 1"),
        "{text}"
    );

    // One closes; once its slot is free, a new client is served.
    held.pop();
    until(&mut events, || metrics.open_connections() == 1).await;
    let r = http_client(&web, &url).get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(metrics.refusals("too_many_connections"), 1);
    shutdown.cancel();
    task.await.unwrap().unwrap();
}
