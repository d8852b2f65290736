//! `accept = "handoff"` (dataplane/src/handoff.rs): one thread accepts for all workers and deals
//! the connections to them in turn; stopping the gateway closes the port.

#[path = "support/gw.rs"]
mod gw_support;

use gw_support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

#[tokio::test]
async fn connections_are_dealt_to_the_workers_in_turn_and_served() {
    let pki = Pki::new();
    let (up, _echo) = tls_echo(&pki, "backend-b").await;
    let cfg = format!(
        "accept = \"handoff\"\n{HEADER}{}",
        listener("egress", "", &[("*.cluster-b.test", &[up])])
    );
    let app = TestApp::start_with(&cfg, |a| a.with_workers(2)).await;
    let gw = app.addr("egress");

    // Relayed end to end: the hand-off changes who accepts, not what is served.
    for _ in 0..4 {
        let tag = tag_via(&pki, gw, "api.cluster-b.test").await.unwrap();
        assert_eq!(tag, "backend-b");
    }
    // One connection at a time, so no inbox is ever full: strict alternation.
    let hello = pki.client_hello("nowhere.example.test");
    const REFUSED: usize = 36;
    for _ in 0..REFUSED {
        let mut c = TcpStream::connect(gw).await.unwrap();
        c.write_all(&hello).await.unwrap();
        expect_closed(&mut c).await;
    }
    let total = (4 + REFUSED) as f64;
    app.wait_until(|| async {
        app.worker_accepted("egress", 0).await + app.worker_accepted("egress", 1).await == total
    })
    .await;
    let (w0, w1) = (
        app.worker_accepted("egress", 0).await,
        app.worker_accepted("egress", 1).await,
    );
    assert_eq!((w0, w1), (total / 2.0, total / 2.0), "dealt in turn");

    app.stop().await;
    // The dealer thread owned the socket; stopping it closed the port.
    assert!(
        TcpStream::connect(gw).await.is_err(),
        "the port still accepts after stop"
    );
}
