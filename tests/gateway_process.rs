//! `fedgate run` as a real process: prints bound addresses, reloads on SIGHUP, drains and
//! exits 0 on SIGTERM, exits 64 on a bad config.

#[path = "support/gw.rs"]
mod gw_support;

use std::process::Stdio;
use std::time::Duration;

use gw_support::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

fn fedgate() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fedgate"));
    c.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_serves_reloads_on_sighup_and_drains_on_sigterm() {
    let pki = Pki::new();
    let (old, _o) = tls_echo(&pki, "old").await;
    let (new, _n) = tls_echo(&pki, "new").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.toml");
    let cfg = format!(
        "{HEADER}{}",
        listener("egress", "", &[("*.cluster-b.test", &[old])])
    );
    std::fs::write(&path, &cfg).unwrap();

    let mut child = fedgate()
        .arg("run")
        .arg("--config")
        .arg(&path)
        .spawn()
        .unwrap();
    let pid = Pid::from_raw(child.id().unwrap() as i32);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut gw, mut admin) = (None, None);
    while gw.is_none() || admin.is_none() {
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .expect("fedgate run exited before printing its addresses");
        let addr = line
            .rsplit(' ')
            .next()
            .unwrap()
            .parse::<std::net::SocketAddr>()
            .ok();
        if line.starts_with("listener egress listening on ") {
            gw = addr;
        } else if line.starts_with("admin listening on ") {
            admin = addr;
        }
    }
    let (gw, admin) = (gw.unwrap(), admin.unwrap());
    let ready = || async { get(admin, "/readyz").await.0 == 200 };
    for _ in 0..1000 {
        if ready().await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(tag_via(&pki, gw, "a.cluster-b.test").await.unwrap(), "old");

    std::fs::write(&path, cfg.replace(&old.to_string(), &new.to_string())).unwrap();
    kill(pid, Signal::SIGHUP).unwrap();
    let mut switched = false;
    for _ in 0..1000 {
        if tag_via(&pki, gw, "a.cluster-b.test").await.unwrap() == "new" {
            switched = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(switched, "SIGHUP did not apply the new route");

    let (mut live, _) = connect_tls(&pki, gw, "b.cluster-b.test").await.unwrap();
    kill(pid, Signal::SIGTERM).unwrap();
    echo(&mut live, "draining but alive").await;
    close(live).await;
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn run_exits_64_on_a_bad_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.toml");
    std::fs::write(&path, "trust_domain = \"a.test\"\nlisten = \"x\"\n").unwrap();
    let out = fedgate()
        .arg("run")
        .arg("--config")
        .arg(&path)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("gw.toml:2:1") && stderr.contains("unknown field `listen`"),
        "{stderr}"
    );
}
