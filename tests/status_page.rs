//! The admin server's status page (`/`) in a real browser: gateway B federates with gateway A,
//! has its own identity and one passthrough listener with a live connection and a refused
//! one; headless Chromium loads B's `/` and the test reads the rendered DOM and takes a
//! screenshot (`target/tmp/status-page.png`, the one in docs/images).
//!
//! Needs the `chromium` binary (Debian package `chromium`; CI installs it). Without it the
//! test fails, unless `FEDGATE_SKIP_CHROMIUM=1` is set. `FEDGATE_CHROMIUM` overrides the
//! binary's name or path.
// Test code: a failed unwrap is a test failure with a backtrace, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/gw.rs"]
mod gw_support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gw_support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ENDPOINT_PATH: &str = "/fedgate/bundle-endpoint";

/// Upper bound on one Chromium run; it is killed after that.
const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(60);

/// Gateway A: identity files plus a bundle endpoint on port 0.
fn gateway_a(ca: &SpiffeCa, dir: &Path) -> String {
    ca.write_bundle(&dir.join("a-bundle.json"));
    ca.write_svid(ENDPOINT_PATH, &dir.join("a.pem"), &dir.join("a.key"));
    format!(
        "trust_domain = \"cluster-a.test\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [identity]\nsvid = \"{0}/a.pem\"\nkey = \"{0}/a.key\"\nbundle = \"{0}/a-bundle.json\"\n\
         [federation]\n[federation.serve]\nlisten = \"127.0.0.1:0\"\nprofile = \"https_spiffe\"\n",
        dir.display()
    )
}

/// Gateway B: its own identity, peer A, and the listener `egress` routing to `up`.
fn gateway_b(ca: &SpiffeCa, dir: &Path, peer_url: &str, up: SocketAddr) -> String {
    ca.write_bundle(&dir.join("b-bundle.json"));
    ca.write_svid("/gateway", &dir.join("b.pem"), &dir.join("b.key"));
    format!(
        "trust_domain = \"cluster-b.test\"\ndrain_timeout = \"5s\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [identity]\nsvid = \"{0}/b.pem\"\nkey = \"{0}/b.key\"\nbundle = \"{0}/b-bundle.json\"\n\
         [federation]\nstate_dir = \"{0}/state\"\n\
         min_refresh = \"1s\"\ndefault_refresh = \"1s\"\nmax_refresh = \"5s\"\n\
         [[federation.peers]]\ntrust_domain = \"cluster-a.test\"\nurl = \"{peer_url}\"\n\
         profile = \"https_spiffe\"\nendpoint_id = \"spiffe://cluster-a.test{ENDPOINT_PATH}\"\n\
         bootstrap_bundle = \"{0}/a-bundle.json\"\n{1}",
        dir.display(),
        listener(
            "egress",
            "max_connections = 50",
            &[("*.cluster-c.test", &[up])]
        ),
    )
}

/// The Chromium binary, or `None` when the test is to be skipped; panics when it is missing
/// and skipping was not asked for.
fn chromium() -> Option<String> {
    let bin = std::env::var("FEDGATE_CHROMIUM").unwrap_or_else(|_| "chromium".to_owned());
    let found = std::process::Command::new(&bin)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return Some(bin);
    }
    if std::env::var("FEDGATE_SKIP_CHROMIUM").as_deref() == Ok("1") {
        eprintln!("`{bin}` not found; skipped (FEDGATE_SKIP_CHROMIUM=1)");
        return None;
    }
    panic!(
        "`{bin}` (headless Chromium) is not installed: install it with \
         `apt-get install -y chromium` (CI does), or set FEDGATE_SKIP_CHROMIUM=1 to skip this test"
    );
}

/// Runs headless Chromium with `args` then `url`, in a fresh profile directory, killed after
/// [`CHROMIUM_TIMEOUT`]; returns its stdout.
async fn run_chromium(bin: &str, args: &[String], url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let child = tokio::process::Command::new(bin)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let out = tokio::time::timeout(CHROMIUM_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("chromium did not finish within {CHROMIUM_TIMEOUT:?}"))
        .unwrap();
    assert!(
        out.status.success(),
        "chromium failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Sends `request` (raw bytes) to the admin server: (status code, whole response).
async fn raw(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request).await.unwrap();
    let mut raw = Vec::new();
    // The server closes after an error or because of `Connection: close`.
    let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut raw))
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let code = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (code, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_in_headless_chromium() {
    let Some(bin) = chromium() else { return };
    let files = tempfile::tempdir().unwrap();
    let a = TestApp::start(&gateway_a(&SpiffeCa::new("cluster-a.test"), files.path())).await;
    let endpoint = a.bundle_endpoint.expect("gateway A serves its bundle");
    let pki = Pki::new();
    let (up, _u) = tls_echo(&pki, "up").await;
    let b = TestApp::start(&gateway_b(
        &SpiffeCa::new("cluster-b.test"),
        files.path(),
        &format!("https://{endpoint}/"),
        up,
    ))
    .await;
    b.wait_until(|| async { get(b.admin, "/readyz").await.0 == 200 })
        .await;

    // One live connection and one refused (not TLS).
    let (mut live, _) = connect_tls(&pki, b.addr("egress"), "api.cluster-c.test")
        .await
        .unwrap();
    echo(&mut live, "hello").await;
    let mut bad = tokio::net::TcpStream::connect(b.addr("egress"))
        .await
        .unwrap();
    bad.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
    expect_closed(&mut bad).await;
    b.wait_metric(
        "fedgate_rejected_connections_total{listener=\"egress\",reason=\"not_tls\"}",
        1.0,
    )
    .await;
    b.wait_metric("fedgate_active_connections{listener=\"egress\"}", 1.0)
        .await;

    // `/status` carries what the page shows.
    let (_, status) = get(b.admin, "/status").await;
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(
        status["local_svid"]["spiffe_id"], "spiffe://cluster-b.test/gateway",
        "{status}"
    );
    assert!(status["local_svid"]["seconds_left"].as_f64().unwrap() > 0.0);
    assert!(status["bridge_svid"].is_null(), "{status}");
    assert_eq!(status["listeners"][0]["routes"][0]["active_connections"], 1);
    assert_eq!(status["denials"]["totals"][0]["reason"], "not_tls");
    assert_eq!(status["denials"]["recent"][0]["listener"], "egress");

    let url = format!("http://{}/", b.admin);
    let dom = run_chromium(&bin, &["--dump-dom".to_owned()], &url).await;
    for expected in [
        "fedgate: cluster-b.test",
        "cluster-a.test",
        "https_spiffe",
        "spiffe://cluster-b.test/gateway",
        "<b>egress</b>",
        "<span class=\"active\">1</span> / 50",
        "*.cluster-c.test",
        "<td class=\"n route-active\">1</td>",
        "not_tls",
    ] {
        assert!(
            dom.contains(expected),
            "missing {expected:?} in the DOM:\n{dom}"
        );
    }
    assert!(!dom.contains("<script"), "{dom}");

    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    run_chromium(
        &bin,
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1280,900".to_owned(),
            "--hide-scrollbars".to_owned(),
        ],
        &url,
    )
    .await;
    let png = std::fs::read(&shot).unwrap_or_else(|e| panic!("{}: {e}", shot.display()));
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(png.len() > 10_000, "{} bytes only", png.len());
    eprintln!("status page screenshot: {}", shot.display());

    // Odd requests over the wire: no reflection, no 5xx.
    let (code, resp) = raw(
        b.admin,
        b"POST / HTTP/1.1\r\nHost: a\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    assert_eq!(code, 405, "{resp}");
    let (code, resp) = raw(
        b.admin,
        b"HEAD / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(code, 200, "{resp}");
    assert!(resp.ends_with("\r\n\r\n"), "HEAD has no body: {resp}");
    let (code, resp) = raw(
        b.admin,
        b"GET /..%2f HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(code, 404, "{resp}");
    let (code, resp) = raw(
        b.admin,
        b"GET /../../etc/passwd HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(code, 404, "{resp}");
    let (code, resp) = raw(
        b.admin,
        b"GET /?x=<script>alert(1)</script> HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(code == 200 || code == 400, "{resp}");
    assert!(
        !resp.contains("<script>") && !resp.contains("alert(1)"),
        "{resp}"
    );
    let long = format!(
        "GET /{} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        "a".repeat(256 * 1024)
    );
    let (code, resp) = raw(b.admin, long.as_bytes()).await;
    assert!(
        (400..500).contains(&code),
        "{code}: {}",
        &resp[..resp.len().min(300)]
    );
    assert!(!resp.contains("aaaaaaaa"), "the path is not echoed");
    // Still serving after all that.
    assert_eq!(get(b.admin, "/healthz").await.0, 200);

    close(live).await;
    b.stop().await;
    a.stop().await;
}
