//! `accept = "reuseport"` (dataplane/src/listen.rs): one SO_REUSEPORT socket per worker, the
//! kernel spreading connections over them, and the guard that refuses to share a port with a
//! socket that is not the gateway's own.

#[path = "support/gw.rs"]
mod gw_support;

use std::net::SocketAddr;

use fedgate::app::App;
use fedgate::config::Config;
use gw_support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

#[tokio::test]
async fn every_worker_accepts_from_its_own_socket() {
    let pki = Pki::new();
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = upstream.local_addr().unwrap();
    let cfg = format!(
        "accept = \"reuseport\"\n{HEADER}{}",
        listener("egress", "", &[("*.cluster-b.test", &[up])])
    );
    let app = TestApp::start_with(&cfg, |a| a.with_workers(2)).await;

    // Unknown SNI: each connection is accepted, counted and refused without an upstream.
    let hello = pki.client_hello("nowhere.example.test");
    const CONNECTIONS: usize = 40;
    for _ in 0..CONNECTIONS {
        let mut c = TcpStream::connect(app.addr("egress")).await.unwrap();
        c.write_all(&hello).await.unwrap();
        expect_closed(&mut c).await;
    }
    app.wait_until(|| async {
        app.worker_accepted("egress", 0).await + app.worker_accepted("egress", 1).await
            == CONNECTIONS as f64
    })
    .await;
    let (w0, w1) = (
        app.worker_accepted("egress", 0).await,
        app.worker_accepted("egress", 1).await,
    );
    // The kernel hashes each connection's addresses to one socket of the group: with 40
    // connections from different ports, one worker taking all of them has odds of 2^-39.
    assert!(w0 > 0.0 && w1 > 0.0, "both workers accept: {w0} / {w1}");
    app.stop().await;
}

#[tokio::test]
async fn a_second_gateway_on_the_same_port_is_refused() {
    let upstream = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let up = upstream.local_addr().unwrap();
    let cfg = format!(
        "accept = \"reuseport\"\n{HEADER}{}",
        listener("egress", "", &[("*.cluster-b.test", &[up])])
    );
    let first = TestApp::start_with(&cfg, |a| a.with_workers(2)).await;
    let taken: SocketAddr = first.addr("egress");

    // The same config on the first one's address. SO_REUSEPORT lets the bind succeed (same
    // user), which is exactly the silent sharing the guard must refuse.
    let second_cfg = cfg.replace(
        "listen = \"127.0.0.1:0\"\nkind = \"passthrough\"",
        &format!("listen = \"{taken}\"\nkind = \"passthrough\""),
    );
    assert_ne!(second_cfg, cfg, "the listener address was replaced");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, &second_cfg).unwrap();
    let config = Config::load(&path).unwrap();
    // Refused at bind, before the second gateway's socket listens: it never joins the port's
    // group, so it never takes one of the first gateway's connections.
    let err = match App::build(config).await {
        Ok(_) => panic!("a gateway must not join another one's SO_REUSEPORT group"),
        Err(e) => e,
    };
    let chain = format!("{:#}", anyhow::Error::from(err));
    assert!(chain.contains("another socket listens on port"), "{chain}");
    assert!(chain.contains("accept = \"shared\""), "{chain}");

    // The first gateway still serves its port alone.
    let mut c = TcpStream::connect(taken).await.unwrap();
    c.write_all(b"not tls").await.unwrap();
    expect_closed(&mut c).await;
    first.stop().await;
}
