//! `fedgate check` with `[identity] source = "workload_api"`: one answer of a scripted Workload
//! API server is checked like the SVID files; a server that never answers is a failure within
//! the timeout, not a hang.
// Helpers outside #[test] fns unwrap too: a failed step is a test failure.
#![allow(clippy::unwrap_used)]

#[path = "support/scripted_workload_api.rs"]
mod scripted;

use std::path::Path;
use std::time::{Duration, Instant};

use fedgate::ca::{Ca, InitOptions};
use fedgate_federation::TrustDomain;

const APP_ID: &str = "spiffe://cluster-a.test/gateway";

async fn check_json(config: &Path) -> (i32, serde_json::Value) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_fedgate"))
        .args([
            "check",
            "--json",
            "--connect-timeout",
            "2s",
            "--timeout",
            "2s",
            "--config",
        ])
        .arg(config)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    (
        out.status.code().unwrap_or(-1),
        serde_json::from_str(&stdout).unwrap(),
    )
}

fn find<'a>(results: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    results
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {results}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_answer_is_checked_and_silence_fails_in_time() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let ca = Ca::init(
        &TrustDomain::new("cluster-a.test").unwrap(),
        &InitOptions {
            ttl: Duration::from_secs(24 * 3600),
            refresh_hint: None,
            intermediate: false,
        },
    )
    .unwrap();
    let socket = dir.join("agent.sock");
    let server = scripted::Scripted::default();
    // The first stream answers; every later one stays open and silent.
    server
        .scripts
        .lock()
        .unwrap()
        .push_back(vec![scripted::response(&ca, APP_ID, &[])]);
    let stop = scripted::serve(&socket, server);
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "trust_domain = \"cluster-a.test\"\n[identity]\nsource = \"workload_api\"\n\
             socket = \"unix://{}\"\n[admin]\nlisten = \"127.0.0.1:0\"\n",
            socket.display()
        ),
    )
    .unwrap();

    let (code, results) = check_json(&config).await;
    assert_eq!(code, 2, "{results}"); // only the admin warning (port 0)
    let svid = find(&results, "local SVID");
    assert_eq!(svid["status"], "ok", "{svid}");
    assert!(svid["detail"].as_str().unwrap().contains(APP_ID), "{svid}");
    assert_eq!(find(&results, "local SVID expiry")["status"], "ok");

    let start = Instant::now();
    let (code, results) = check_json(&config).await;
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(code, 1, "{results}");
    let svid = find(&results, "local SVID");
    assert_eq!(svid["status"], "fail", "{svid}");
    assert!(
        svid["detail"].as_str().unwrap().contains("no SVID within"),
        "{svid}"
    );
    assert!(svid["hint"].is_string(), "{svid}");
    stop.cancel();
}
