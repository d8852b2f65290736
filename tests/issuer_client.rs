//! The gateway's `IssuerClient` against a real `fedgate ca serve` on 127.0.0.1: renewal at two
//! thirds of a short lifetime without dropping a live TLS connection made with the old SVID,
//! persistence for restarts, and retries until the endpoint accepts.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic fails the test

#[path = "support/issuer.rs"]
mod support;

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fedgate::identity::issuer::renew_at;
use fedgate_federation::svid::verify::verify;
use fedgate_federation::tls::{self, Authorizer, SpiffeServerVerifier};
use fedgate_federation::X509Svid;
use rustls_pki_types::{ServerName, UnixTime};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Waits (bounded) for an SVID on `rx` that satisfies `f`.
async fn next_svid(
    rx: &mut watch::Receiver<Option<Arc<X509Svid>>>,
    f: impl FnMut(&Option<Arc<X509Svid>>) -> bool,
) -> Arc<X509Svid> {
    let got = tokio::time::timeout(Duration::from_secs(15), rx.wait_for(f))
        .await
        .expect("no bridge SVID in time")
        .unwrap();
    got.clone().unwrap()
}

/// A TLS echo server standing in for a bridge listener: each new connection is served with
/// the SVID current at accept time; live connections keep theirs.
async fn echo_server(
    svids: watch::Receiver<Option<Arc<X509Svid>>>,
    stop: CancellationToken,
) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = tokio::select! {
                () = stop.cancelled() => return,
                r = listener.accept() => r.unwrap(),
            };
            let svid = svids.borrow().clone().unwrap();
            let config = tls::server_config_no_client_auth(&svid).unwrap();
            let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
            tokio::spawn(async move {
                let mut s = acceptor.accept(tcp).await.unwrap();
                let mut buf = [0u8; 64];
                loop {
                    let n = s.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    s.write_all(&buf[..n]).await.unwrap();
                    s.flush().await.unwrap();
                }
            });
        }
    });
    addr
}

/// Connects to the echo server as a bridge peer would: the server must be exactly `BRIDGE_A`.
async fn connect(
    pki: &Pki,
    addr: std::net::SocketAddr,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let verifier = Arc::new(SpiffeServerVerifier::new(
        pki.bridge_bundles(),
        Authorizer::exact(id(BRIDGE_A)),
    ));
    let config = tls::client_config(None, verifier).unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("bridge").unwrap(), tcp)
        .await
        .unwrap()
}

async fn echo(s: &mut tokio_rustls::client::TlsStream<TcpStream>, msg: &[u8]) {
    s.write_all(msg).await.unwrap();
    s.flush().await.unwrap();
    let mut buf = vec![0u8; msg.len()];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(buf, msg);
}

fn peer_leaf(s: &tokio_rustls::client::TlsStream<TcpStream>) -> Vec<u8> {
    s.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

#[tokio::test]
async fn short_ttl_renews_at_two_thirds_and_live_connections_survive() {
    let pki = Pki::new();
    let srv = Running::start(&pki.write_config("")).await;
    let out = pki.path("gw-a-bridge");
    let cfg = client_config(
        &pki,
        &srv.url,
        Pki::svid(&pki.a, GW_A),
        BRIDGE_A,
        Some(Duration::from_secs(3)),
        Some(out.clone()),
    );
    let c = client(cfg.clone());
    let mut rx = c.subscribe();
    assert!(rx.borrow().is_none());
    let stop = CancellationToken::new();
    let started = SystemTime::now();
    let task = tokio::spawn(c.run(stop.clone()));

    let first = next_svid(&mut rx, Option::is_some).await;
    assert_eq!(first.id(), &id(BRIDGE_A));
    let first_not_after = verify(first.chain(), &pki.bridge_bundles(), UnixTime::now())
        .unwrap()
        .not_after();
    // The request was sent after `started`, so renewal is due no earlier than this.
    let earliest_renewal = renew_at(started, first_not_after);
    assert!(
        earliest_renewal > started + Duration::from_secs(1),
        "a 3 s SVID (whole-second notAfter) renews 2/3 in: {:?}",
        earliest_renewal.duration_since(started)
    );

    // A connection made with the first SVID.
    let echo_addr = echo_server(rx.clone(), stop.clone()).await;
    let mut old_conn = connect(&pki, echo_addr).await;
    assert_eq!(peer_leaf(&old_conn), first.chain()[0].to_vec());
    echo(&mut old_conn, b"before renewal").await;

    // Renewal: a new SVID (new key) about 2 s after the first request, not before.
    let second = next_svid(&mut rx, |s| {
        s.as_ref().is_some_and(|s| s.chain()[0] != first.chain()[0])
    })
    .await;
    let renewed = SystemTime::now();
    assert!(
        renewed >= earliest_renewal,
        "renewed {:?} before 2/3 of the lifetime",
        earliest_renewal.duration_since(renewed).unwrap_or_default()
    );
    assert_eq!(second.id(), &id(BRIDGE_A));
    assert_ne!(
        fedgate::ca::describe::describe(&second.chain()[0])
            .unwrap()
            .sha256_fingerprint,
        fedgate::ca::describe::describe(&first.chain()[0])
            .unwrap()
            .sha256_fingerprint
    );

    // The live connection keeps working; a new one gets the new SVID.
    echo(&mut old_conn, b"after renewal").await;
    let mut new_conn = connect(&pki, echo_addr).await;
    assert_eq!(peer_leaf(&new_conn), second.chain()[0].to_vec());
    echo(&mut new_conn, b"new").await;

    // Saved for restarts: key 0600, and a new client publishes it at once.
    let mode = std::fs::metadata(out.join("svid.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let saved = X509Svid::load(&out.join("svid.pem"), &out.join("svid.key")).unwrap();
    assert_eq!(saved.chain(), second.chain());
    stop.cancel();
    task.await.unwrap();
    let restarted = client(cfg);
    let now = restarted.subscribe().borrow().clone().unwrap();
    assert_eq!(now.chain(), second.chain());

    assert_eq!(srv.metrics.issued_count(), 2);
    srv.stop().await;
}

#[tokio::test]
async fn retries_until_the_endpoint_trusts_the_gateway() {
    let pki = Pki::new();
    // The endpoint starts with a wrong bundle for cluster-a.test: gateway a is refused.
    let wrong = fedgate::ca::Ca::init(
        &fedgate_federation::TrustDomain::new("cluster-a.test").unwrap(),
        &fedgate::ca::InitOptions {
            ttl: Duration::from_secs(86_400),
            refresh_hint: None,
            intermediate: false,
        },
    )
    .unwrap();
    std::fs::write(pki.path("a-bundle.json"), wrong.bundle().to_json()).unwrap();
    let srv = Running::start(&pki.write_config("")).await;
    let mut events = srv.metrics.subscribe();

    let c = gw_a_client(&pki, &srv.url);
    let mut rx = c.subscribe();
    let stop = CancellationToken::new();
    let task = tokio::spawn(c.run(stop.clone()));

    // At least two refused attempts: the client retries.
    Running::await_events(&mut events, 2).await;
    assert!(srv.metrics.refusals("untrusted_issuer") >= 2);
    assert!(rx.borrow().is_none());

    // Fix the member bundle (atomically, as a ConfigMap update would); the endpoint reloads it
    // and the next retry succeeds.
    let tmp = pki.path("a-bundle.json.tmp");
    std::fs::write(&tmp, pki.a.bundle().to_json()).unwrap();
    std::fs::rename(&tmp, pki.path("a-bundle.json")).unwrap();
    let svid = next_svid(&mut rx, Option::is_some).await;
    assert_eq!(svid.id(), &id(BRIDGE_A));

    stop.cancel();
    task.await.unwrap();
    srv.stop().await;
}

#[tokio::test]
async fn ensure_initial_obtains_reuses_or_gives_up() {
    let pki = Pki::new();
    let srv = Running::start(&pki.write_config("")).await;
    let out = pki.path("gw-a-bridge");
    let cfg = client_config(
        &pki,
        &srv.url,
        Pki::svid(&pki.a, GW_A),
        BRIDGE_A,
        None,
        Some(out.clone()),
    );

    // Nothing saved: obtained now, published and saved.
    let mut c = client(cfg.clone());
    let first = c.ensure_initial(Duration::from_secs(10)).await.unwrap();
    assert_eq!(first.id(), &id(BRIDGE_A));
    assert_eq!(
        c.subscribe().borrow().as_ref().unwrap().chain(),
        first.chain()
    );
    assert_eq!(srv.metrics.issued_count(), 1);

    // A restarted gateway reuses the saved one without asking the CA.
    let mut again = client(cfg.clone());
    let reused = again.ensure_initial(Duration::from_secs(10)).await.unwrap();
    assert_eq!(reused.chain(), first.chain());
    assert_eq!(srv.metrics.issued_count(), 1);

    // Refused every time (someone else's bridge ID): the last error after `within`.
    let mut refused = client(client_config(
        &pki,
        &srv.url,
        Pki::svid(&pki.a, GW_A),
        BRIDGE_B,
        None,
        None,
    ));
    let err = refused
        .ensure_initial(Duration::from_millis(300))
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("403") && msg.contains("not_mapped_id"),
        "{msg}"
    );
    assert!(srv.metrics.refusals("not_mapped_id") >= 2, "retried");
    srv.stop().await;
}
