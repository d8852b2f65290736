//! Done-when test of issue 7: `fedgate demo --dir <tempdir> --quick` runs the whole system
//! (CAs, federation endpoints, gateways, sidecars, echo workloads) on 127.0.0.1 as children of
//! the real binary, exits 0 and reports seven matching scenarios, and leaves no child behind.

// Helpers outside #[test] fns unwrap too: a panic there is a test failure with a backtrace.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn demo_runs_seven_matching_scenarios_and_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let demo_dir = dir.path().join("demo");
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_fedgate"))
        .arg("demo")
        .arg("--quick")
        .arg("--dir")
        .arg(&demo_dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report = format!("stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        out.status.success(),
        "demo failed ({}):\n{report}",
        out.status
    );

    let scenario_lines: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("scenario "))
        .collect();
    assert_eq!(scenario_lines.len(), 7, "{report}");
    for (i, line) in scenario_lines.iter().enumerate() {
        assert!(line.starts_with(&format!("scenario {} ", i + 1)), "{line}");
        assert!(line.ends_with(" MATCH"), "{line}");
    }
    assert!(stdout.contains("7/7 scenarios matched"), "{report}");
    assert!(
        stdout.contains(&demo_dir.canonicalize().unwrap().display().to_string()),
        "{report}"
    );
    eprintln!("demo took {:.1} s", started.elapsed().as_secs_f64());

    // The kept directory holds every config and log the report refers to.
    for f in [
        "plan.toml",
        "gateway-a/gateway.toml",
        "gateway-b/gateway.toml",
        "sidecar-app-a/sidecar.toml",
        "logs/gateway-a.log",
        "logs/sidecar-app-b.log",
        "logs/echo-b.log",
    ] {
        assert!(demo_dir.join(f).is_file(), "missing {f}");
    }

    // Every child has exited: nothing still holds the gateway's admin port.
    assert_gone(gateway_a_admin(&demo_dir));
}

#[test]
fn demo_refuses_to_wipe_a_directory_it_did_not_make() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("precious.txt"), "keep me").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_fedgate"))
        .arg("demo")
        .arg("--dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("was not made by `fedgate demo`"),
        "{stderr}"
    );
    assert!(dir.path().join("precious.txt").is_file());
}

#[test]
fn demo_reports_a_bad_plan_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("plan.toml");
    std::fs::write(&plan, "[roles.workload-a]\naddress = \"127.0.0.1\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_fedgate"))
        .arg("demo")
        .arg("--plan")
        .arg(&plan)
        .arg("--dir")
        .arg(dir.path().join("demo"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&plan.display().to_string()), "{stderr}");
    assert!(stderr.contains("edge-a"), "{stderr}");
}

/// A `fedgate demo` process that is stopped (SIGTERM, so that it stops its own children, then
/// SIGKILL) if a failing assertion drops it while it still runs.
struct DemoProcess(std::process::Child);

impl Drop for DemoProcess {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            sigterm(&self.0);
            let deadline = Instant::now() + Duration::from_secs(15);
            while matches!(self.0.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Spawns `fedgate demo` with `extra` args; stdout lines arrive on the returned channel.
fn spawn_demo(
    dir: &std::path::Path,
    extra: &[&str],
) -> (DemoProcess, std::sync::mpsc::Receiver<String>) {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_fedgate"))
        .arg("demo")
        .arg("--quick")
        .arg("--dir")
        .arg(dir)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (DemoProcess(child), rx)
}

/// Waits (bounded) for a stdout line containing `needle`; returns every line seen so far.
fn wait_for_line(rx: &std::sync::mpsc::Receiver<String>, needle: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let hit = line.contains(needle);
                seen.push(line);
                if hit {
                    return seen;
                }
            }
            Err(e) => panic!("no line with {needle:?} ({e}); saw:\n{}", seen.join("\n")),
        }
    }
}

fn sigterm(child: &std::process::Child) {
    // The demo may have exited already; then there is nobody to signal.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .ok();
}

/// Waits (bounded) for the demo to exit after a signal.
fn wait_exit(child: &mut std::process::Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "the demo did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The admin address of gateway A, from its generated config.
fn gateway_a_admin(dir: &std::path::Path) -> std::net::SocketAddr {
    let config = std::fs::read_to_string(dir.join("gateway-a/gateway.toml")).unwrap();
    config
        .lines()
        .skip_while(|l| l.trim() != "[admin]")
        .find_map(|l| l.strip_prefix("listen = "))
        .unwrap()
        .trim_matches('"')
        .parse()
        .unwrap()
}

fn answers(addr: std::net::SocketAddr) -> bool {
    std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
}

/// Polls (bounded) until nothing accepts connections on `addr` any more.
fn assert_gone(addr: std::net::SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while answers(addr) {
        assert!(
            Instant::now() < deadline,
            "{addr} still answers after the demo exited"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn keep_running_leaves_everything_up_until_sigterm_then_stops_every_child() {
    let dir = tempfile::tempdir().unwrap();
    let demo_dir = dir.path().join("demo");
    let (mut child, rx) = spawn_demo(&demo_dir, &["--keep-running"]);
    let seen = wait_for_line(&rx, "press Ctrl-C");
    assert!(
        seen.iter().any(|l| l.contains("7/7 scenarios matched")),
        "{seen:#?}"
    );
    assert!(
        seen.iter().any(|l| l.contains("/status")),
        "admin URLs are printed: {seen:#?}"
    );
    assert!(
        seen.iter().any(|l| l.contains("demo call --connect")),
        "{seen:#?}"
    );
    let admin = gateway_a_admin(&demo_dir);
    assert!(answers(admin), "gateway A must still run in --keep-running");
    sigterm(&child.0);
    let status = wait_exit(&mut child.0);
    assert!(status.success(), "{status}");
    assert_gone(admin);
}

#[test]
fn sigterm_during_setup_stops_every_child_started_so_far() {
    let dir = tempfile::tempdir().unwrap();
    let demo_dir = dir.path().join("demo");
    let (mut child, rx) = spawn_demo(&demo_dir, &[]);
    wait_for_line(&rx, "starting sidecars");
    let admin = gateway_a_admin(&demo_dir);
    sigterm(&child.0);
    let status = wait_exit(&mut child.0);
    assert_eq!(status.code(), Some(130), "{status}");
    assert_gone(admin);
}
