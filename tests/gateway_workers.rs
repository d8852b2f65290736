//! The data plane runs on its own worker threads (src/workers.rs, ADR 0006): connections are
//! served even while the runtime that called `App::run` is blocked, the configured number of
//! workers runs, and none of them outlives `App::run`.
//!
//! One test per file on purpose: it counts this process's threads by name.

#[path = "support/gw.rs"]
mod gw_support;

use std::io::{Read, Write};
use std::time::Duration;

use gw_support::*;

/// Names of this process's threads that are data-plane workers (`comm` keeps 15 bytes).
fn worker_threads() -> usize {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("fedgate-worker"))
        .count()
}

// A single-threaded test runtime: while the test thread blocks below, nothing else on this
// runtime can run, so only the gateway's own worker threads can move the bytes.
#[tokio::test(flavor = "current_thread")]
async fn workers_serve_while_the_control_runtime_is_blocked_and_stop_with_the_app() {
    let pki = Pki::new();
    let upstream = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let up = upstream.local_addr().unwrap();
    let cfg = format!(
        "workers = 2\n{HEADER}{}",
        listener("egress", "", &[("*.cluster-b.test", &[up])])
    );
    // `with_workers` (the `--workers` flag) overrides the file's `workers = 2`.
    let app = TestApp::start_with(&cfg, |a| a.with_workers(3)).await;
    assert_eq!(worker_threads(), 3, "one thread per configured worker");
    let (_, status) = get(app.admin, "/status").await;
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["workers"], 3, "{status}");

    // Blocking I/O on the test thread: the ClientHello must reach the upstream through the
    // gateway (peek, route, connect, replay) and the reply must come back.
    let hello = pki.client_hello("api.cluster-b.test");
    let mut client = std::net::TcpStream::connect(app.addr("egress")).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    client.write_all(&hello).unwrap();
    // SO_RCVTIMEO bounds accept(2) too: a gateway that moved nothing fails the test, not hangs it.
    socket2::SockRef::from(&upstream)
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let (mut proxied, _) = upstream
        .accept()
        .expect("the gateway's workers forward while the test's runtime is blocked");
    proxied
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut got = vec![0u8; hello.len()];
    proxied.read_exact(&mut got).unwrap();
    assert_eq!(got, hello, "the peeked ClientHello is replayed unchanged");
    proxied.write_all(b"reply").unwrap();
    let mut reply = [0u8; 5];
    client.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"reply");
    drop((client, proxied));

    app.stop().await;
    assert_eq!(
        worker_threads(),
        0,
        "App::run joins its workers before returning"
    );
}
