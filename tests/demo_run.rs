//! Done-when test of issue 7: `fedgate demo --dir <tempdir> --quick` runs the whole system
//! (CAs, federation endpoints, gateways, sidecars, echo workloads) on 127.0.0.1 as children of
//! the real binary, exits 0 and reports six matching scenarios, and leaves no child behind.

// Helpers outside #[test] fns unwrap too: a panic there is a test failure with a backtrace.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn demo_runs_six_matching_scenarios_and_cleans_up() {
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
    assert_eq!(scenario_lines.len(), 6, "{report}");
    for (i, line) in scenario_lines.iter().enumerate() {
        assert!(line.starts_with(&format!("scenario {} ", i + 1)), "{line}");
        assert!(line.ends_with(" MATCH"), "{line}");
    }
    assert!(stdout.contains("6/6 scenarios matched"), "{report}");
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
    let config = std::fs::read_to_string(demo_dir.join("gateway-a/gateway.toml")).unwrap();
    let admin = config
        .lines()
        .skip_while(|l| l.trim() != "[admin]")
        .find_map(|l| l.strip_prefix("listen = "))
        .unwrap()
        .trim_matches('"')
        .to_owned();
    let gone = Instant::now();
    while std::net::TcpStream::connect_timeout(&admin.parse().unwrap(), Duration::from_secs(1))
        .is_ok()
    {
        assert!(
            gone.elapsed() < Duration::from_secs(5),
            "gateway-a still answers on {admin} after the demo exited"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
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
