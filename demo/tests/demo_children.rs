//! The demo's child-process guard (src/demo/children.rs): readiness lines, bounded waits with
//! errors naming the log, and stopping every child when the guard is dropped.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use fedgate_demo::children::{Children, Launcher};

/// A launcher whose "binary" is /bin/sh, so tests can script what a child prints.
fn sh(logs: &std::path::Path) -> Launcher {
    Launcher::new(PathBuf::from("/bin/sh"), logs.to_owned())
}

fn args(script: &str) -> Vec<String> {
    vec!["-c".to_owned(), script.to_owned()]
}

fn alive(pid: u32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok()
}

#[tokio::test]
async fn wait_line_returns_what_the_child_reports_and_logs_it() {
    let dir = tempfile::tempdir().unwrap();
    let launcher = sh(dir.path());
    let mut child = launcher
        .spawn(
            "talker",
            None,
            &args("echo starting; echo 'listening on 127.0.0.1:5'; exec sleep 30"),
        )
        .unwrap();
    let addr = child
        .wait_line("its address", Duration::from_secs(10), |l| {
            l.strip_prefix("listening on ").map(str::to_owned)
        })
        .await
        .unwrap();
    assert_eq!(addr, "127.0.0.1:5");
    let mut children = Children::new();
    children.adopt(child);
    children.stop_all().await;
    let log = std::fs::read_to_string(dir.path().join("talker.log")).unwrap();
    assert!(log.contains("listening on 127.0.0.1:5"), "{log}");
}

#[tokio::test]
async fn wait_line_fails_fast_when_the_child_exits_and_names_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = sh(dir.path())
        .spawn("quitter", None, &args("echo 'bad config' >&2; exit 64"))
        .unwrap();
    let started = Instant::now();
    let err = child
        .wait_line("its address", Duration::from_secs(20), |_| None::<()>)
        .await
        .unwrap_err()
        .to_string();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(err.contains("quitter exited before its address"), "{err}");
    assert!(err.contains("quitter.log"), "{err}");
    let log = std::fs::read_to_string(dir.path().join("quitter.log")).unwrap();
    assert!(log.contains("bad config"), "stderr goes to the log: {log}");
}

#[tokio::test]
async fn wait_line_is_bounded_by_its_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = sh(dir.path())
        .spawn("silent", None, &args("exec sleep 30"))
        .unwrap();
    let err = child
        .wait_line("its address", Duration::from_millis(300), |_| None::<()>)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("silent did not report its address within 300ms"),
        "{err}"
    );
    let mut children = Children::new();
    children.adopt(child);
}

#[tokio::test]
async fn dropping_the_guard_stops_every_child_even_one_ignoring_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let launcher = sh(dir.path());
    let mut children = Children::new();
    let polite = launcher
        .spawn("polite", None, &args("exec sleep 30"))
        .unwrap();
    // Ignores SIGTERM: the guard must fall back to SIGKILL after its grace period.
    let stubborn = launcher
        .spawn(
            "stubborn",
            None,
            &args("trap '' TERM; echo ready; while :; do sleep 1; done"),
        )
        .unwrap();
    let pids = [polite.pid().unwrap(), stubborn.pid().unwrap()];
    children.adopt(polite);
    let i = children.adopt(stubborn);
    children
        .get(i)
        .wait_line("ready", Duration::from_secs(10), |l| {
            (l == "ready").then_some(())
        })
        .await
        .unwrap();
    assert!(pids.iter().all(|p| alive(*p)));
    drop(children);
    for pid in pids {
        assert!(!alive(pid), "child {pid} survived the guard");
    }
}

#[tokio::test]
async fn short_children_are_bounded_and_report_their_output() {
    let dir = tempfile::tempdir().unwrap();
    let launcher = sh(dir.path());
    let done = launcher
        .run(
            "short",
            None,
            &args("echo out; echo err >&2; exit 3"),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(done.status.code(), Some(3));
    assert_eq!(done.stdout, "out\n");
    assert_eq!(done.stderr, "err\n");
    let err = launcher
        .run_ok(
            "short",
            None,
            &args("echo nope >&2; exit 1"),
            Duration::from_secs(10),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("nope"), "{err}");
    let err = launcher
        .run(
            "slow",
            None,
            &args("exec sleep 30"),
            Duration::from_millis(300),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("did not finish within 300ms"), "{err}");
}
