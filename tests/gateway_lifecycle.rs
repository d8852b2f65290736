//! Gateway lifecycle over real sockets: connection limit, idle timeout at scale, drain on
//! shutdown, hot reload (API and file watch), refused reloads.

#[path = "support/gw.rs"]
mod gw_support;

use std::time::Duration;

use gw_support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limit_refuses_excess_and_recovers() {
    let pki = Pki::new();
    let (up, _u) = tls_echo(&pki, "up").await;
    let cfg = format!(
        "{HEADER}{}",
        listener(
            "egress",
            "max_connections = 2",
            &[("*.cluster-b.test", &[up])]
        )
    );
    let app = TestApp::start(&cfg).await;
    let gw = app.addr("egress");
    let (mut one, _) = connect_tls(&pki, gw, "a.cluster-b.test").await.unwrap();
    let (two, _) = connect_tls(&pki, gw, "b.cluster-b.test").await.unwrap();
    app.wait_metric("fedgate_active_connections{listener=\"egress\"}", 2.0)
        .await;

    let mut third = TcpStream::connect(gw).await.unwrap();
    expect_closed(&mut third).await;
    app.wait_metric(
        "fedgate_rejected_connections_total{listener=\"egress\",reason=\"over_limit\"}",
        1.0,
    )
    .await;

    echo(&mut one, "unaffected").await;
    close(two).await;
    app.wait_metric("fedgate_active_connections{listener=\"egress\"}", 1.0)
        .await;
    let (mut again, _) = connect_tls(&pki, gw, "c.cluster-b.test").await.unwrap();
    echo(&mut again, "room again").await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_idle_connections_close_at_idle_timeout() {
    const N: usize = 1000;
    let pki = Pki::new();
    let (sink, _s) = tcp_sink().await;
    let cfg = format!(
        "{HEADER}{}",
        listener(
            "egress",
            "max_connections = 5000\nidle_timeout = \"1500ms\"",
            &[("*.cluster-b.test", &[sink])]
        )
    );
    let app = TestApp::start(&cfg).await;
    let gw = app.addr("egress");
    // Only the ClientHello matters to the gateway; the sink upstream never answers.
    let hello = pki.client_hello("idle.cluster-b.test");
    let mut clients = Vec::with_capacity(N);
    for _ in 0..N {
        let mut c = TcpStream::connect(gw).await.unwrap();
        c.write_all(&hello).await.unwrap();
        clients.push(c);
    }
    app.wait_metric("fedgate_active_connections{listener=\"egress\"}", N as f64)
        .await;
    app.wait_metric(
        "fedgate_connections_total{listener=\"egress\",route=\"*.cluster-b.test\",outcome=\"idle_timeout\"}",
        N as f64,
    )
    .await;
    app.wait_metric("fedgate_active_connections{listener=\"egress\"}", 0.0)
        .await;
    for c in clients.iter_mut().take(10) {
        expect_closed(c).await;
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_live_connections_and_refuses_new_ones() {
    let pki = Pki::new();
    let (up, _u) = tls_echo(&pki, "up").await;
    let cfg = format!(
        "{HEADER}{}",
        listener("egress", "", &[("*.cluster-b.test", &[up])])
    );
    let app = TestApp::start(&cfg).await;
    let gw = app.addr("egress");
    let (mut live, _) = connect_tls(&pki, gw, "a.cluster-b.test").await.unwrap();

    app.shutdown.cancel();
    // Not ready once draining; by then the listening socket is closed.
    app.wait_until(|| async { get(app.admin, "/readyz").await.0 == 503 })
        .await;
    assert!(
        tag_via(&pki, gw, "b.cluster-b.test").await.is_err(),
        "new connections must be refused while draining"
    );

    echo(&mut live, "finishing my work").await;
    assert!(
        !app.task.is_finished(),
        "run must wait for the live connection"
    );
    close(live).await;
    tokio::time::timeout(Duration::from_secs(10), app.task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_deadline_closes_stragglers() {
    let pki = Pki::new();
    let (up, _u) = tls_echo(&pki, "up").await;
    let cfg = format!(
        "{HEADER}{}",
        listener(
            "egress",
            "peek_timeout = \"60s\"",
            &[("*.cluster-b.test", &[up])]
        )
    )
    .replace("drain_timeout = \"5s\"", "drain_timeout = \"200ms\"");
    let app = TestApp::start(&cfg).await;
    let (mut live, _) = connect_tls(&pki, app.addr("egress"), "a.cluster-b.test")
        .await
        .unwrap();
    // A client stuck in the ClientHello peek (its peek timeout is far away).
    let hello = pki.client_hello("slow.cluster-b.test");
    let mut peeking = TcpStream::connect(app.addr("egress")).await.unwrap();
    peeking.write_all(&hello[..10]).await.unwrap();
    app.wait_metric("fedgate_active_connections{listener=\"egress\"}", 2.0)
        .await;

    app.shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), app.task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    expect_closed(live.get_mut().get_mut().0).await;
    expect_closed(&mut peeking).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_applies_new_routes_and_keeps_live_connections() {
    let pki = Pki::new();
    let (old, _o) = tls_echo(&pki, "old").await;
    let (new, _n) = tls_echo(&pki, "new").await;
    let cfg = format!(
        "{HEADER}{}",
        listener("egress", "", &[("*.cluster-b.test", &[old])])
    );
    let app = TestApp::start(&cfg).await;
    let gw = app.addr("egress");
    let (mut live, tag) = connect_tls(&pki, gw, "a.cluster-b.test").await.unwrap();
    assert_eq!(tag, "old");

    let cfg2 = format!(
        "{HEADER}{}",
        listener(
            "egress",
            "",
            &[("*.cluster-b.test", &[new]), ("*.cluster-c.test", &[old])]
        )
    );
    std::fs::write(&app.config_path, cfg2).unwrap();
    app.reloader.reload().unwrap();
    assert_eq!(
        app.metric("fedgate_config_reloads_total{result=\"ok\"}")
            .await,
        1.0
    );

    assert_eq!(tag_via(&pki, gw, "b.cluster-b.test").await.unwrap(), "new");
    assert_eq!(tag_via(&pki, gw, "c.cluster-c.test").await.unwrap(), "old");
    echo(&mut live, "old connection untouched").await;
    let (_, status) = get(app.admin, "/status").await;
    assert!(status.contains("*.cluster-c.test"), "{status}");
    close(live).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_reloads_are_refused_and_old_config_kept() {
    let pki = Pki::new();
    let (up, _u) = tls_echo(&pki, "up").await;
    let cfg = format!(
        "{HEADER}{}",
        listener("egress", "", &[("*.cluster-b.test", &[up])])
    );
    let app = TestApp::start(&cfg).await;
    let gw = app.addr("egress");

    std::fs::write(&app.config_path, cfg.replace("*.cluster-b.test", "*.*.bad")).unwrap();
    let e = app.reloader.reload().unwrap_err();
    assert!(
        fedgate_federation::error_chain(&e).contains("listeners[0].routes[0].sni"),
        "{e}"
    );

    let renamed = cfg.replace("name = \"egress\"", "name = \"other\"");
    std::fs::write(&app.config_path, renamed).unwrap();
    let e = app.reloader.reload().unwrap_err();
    assert!(e.to_string().contains("needs a restart"), "{e}");

    assert_eq!(
        app.metric("fedgate_config_reloads_total{result=\"failed\"}")
            .await,
        2.0
    );
    assert_eq!(tag_via(&pki, gw, "a.cluster-b.test").await.unwrap(), "up");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_file_change_is_picked_up_by_polling() {
    let pki = Pki::new();
    let (old, _o) = tls_echo(&pki, "old").await;
    let (new, _n) = tls_echo(&pki, "new").await;
    let cfg = format!(
        "{HEADER}{}",
        listener("egress", "", &[("*.cluster-b.test", &[old])])
    );
    let app = TestApp::start_with(&cfg, |a| a.with_config_poll(Duration::from_millis(50))).await;
    let mut events = app.reloader.subscribe();
    std::fs::write(
        &app.config_path,
        cfg.replace(&old.to_string(), &new.to_string()),
    )
    .unwrap();
    tokio::time::timeout(Duration::from_secs(10), events.changed())
        .await
        .unwrap()
        .unwrap();
    assert!(events.borrow().ok);
    assert_eq!(
        tag_via(&pki, app.addr("egress"), "a.cluster-b.test")
            .await
            .unwrap(),
        "new"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_applies_new_limits_to_new_connections() {
    let pki = Pki::new();
    let (up, _u) = tls_echo(&pki, "up").await;
    let cfg = format!(
        "{HEADER}{}",
        listener(
            "egress",
            "max_connections = 1",
            &[("*.cluster-b.test", &[up])]
        )
    );
    let app = TestApp::start(&cfg).await;
    let gw = app.addr("egress");
    let (mut first, _) = connect_tls(&pki, gw, "a.cluster-b.test").await.unwrap();
    assert!(
        tag_via(&pki, gw, "b.cluster-b.test").await.is_err(),
        "limit 1 refuses a second"
    );

    std::fs::write(
        &app.config_path,
        cfg.replace("max_connections = 1", "max_connections = 3"),
    )
    .unwrap();
    app.reloader.reload().unwrap();
    let (mut second, _) = connect_tls(&pki, gw, "b.cluster-b.test").await.unwrap();
    echo(&mut second, "room after reload").await;
    echo(&mut first, "first untouched").await;
    let (_, status) = get(app.admin, "/status").await;
    assert!(status.contains("\"max_connections\":3"), "{status}");
    close(second).await;
    close(first).await;
    app.stop().await;
}
