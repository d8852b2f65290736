//! The admin server of a running gateway: health, readiness, status and metrics.

#[path = "support/gw.rs"]
mod gw_support;

use gw_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints_report_the_running_gateway() {
    let pki = Pki::new();
    let (up, _u) = tls_echo(&pki, "up").await;
    let cfg = format!(
        "{HEADER}{}",
        listener(
            "egress",
            "max_connections = 7",
            &[("*.cluster-b.test", &[up])]
        )
    );
    let app = TestApp::start(&cfg).await;

    assert_eq!(get(app.admin, "/healthz").await, (200, "ok\n".to_string()));
    let (code, body) = get(app.admin, "/readyz").await;
    assert_eq!(code, 200);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["ready"],
        true
    );
    assert_eq!(get(app.admin, "/nope").await.0, 404);

    let (mut live, _) = connect_tls(&pki, app.addr("egress"), "a.cluster-b.test")
        .await
        .unwrap();
    echo(&mut live, "traffic").await;
    let mut bad = tokio::net::TcpStream::connect(app.addr("egress"))
        .await
        .unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut bad, b"GET / HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    expect_closed(&mut bad).await;
    app.wait_metric(
        "fedgate_rejected_connections_total{listener=\"egress\",reason=\"not_tls\"}",
        1.0,
    )
    .await;

    // The refused connection's task ends on a worker thread just after its socket closes;
    // wait for its gauge decrement before reading the snapshot.
    app.wait_metric("fedgate_active_connections{listener=\"egress\"}", 1.0)
        .await;
    let (code, status) = get(app.admin, "/status").await;
    assert_eq!(code, 200);
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["trust_domain"], "cluster-a.test");
    assert_eq!(status["state"], "running");
    let l = &status["listeners"][0];
    assert_eq!(l["name"], "egress");
    assert_eq!(l["address"], app.addr("egress").to_string());
    assert_eq!(l["kind"], "passthrough");
    assert_eq!(l["active_connections"], 1);
    assert_eq!(l["max_connections"], 7);
    assert_eq!(l["routes"][0]["sni"], "*.cluster-b.test");
    assert_eq!(l["routes"][0]["upstreams"][0], up.to_string());
    assert_eq!(status["peers"], serde_json::json!([]));

    close(live).await;
    app.wait_metric("fedgate_connections_total{listener=\"egress\",route=\"*.cluster-b.test\",outcome=\"closed\"}", 1.0).await;
    app.wait_metric("fedgate_active_connections{listener=\"egress\"}", 0.0)
        .await;
    let (code, metrics) = get(app.admin, "/metrics").await;
    assert_eq!(code, 200);
    for family in [
        "# TYPE fedgate_connections counter",
        "fedgate_bytes_total{listener=\"egress\",route=\"*.cluster-b.test\",direction=\"in\"}",
        "fedgate_bytes_total{listener=\"egress\",route=\"*.cluster-b.test\",direction=\"out\"}",
        "fedgate_active_connections{listener=\"egress\"} 0",
        "# TYPE fedgate_upstream_connect_failures counter",
        "# TYPE fedgate_config_reloads counter",
    ] {
        assert!(metrics.contains(family), "missing {family} in:\n{metrics}");
    }
    assert!(metrics.trim_end().ends_with("# EOF"));
    app.stop().await;
}
