//! `fedgate sidecar` as a process: exit 64 on config/identity errors, bound addresses on stdout,
//! clean exit on SIGTERM; and the documented example configs parse.

// Helpers outside #[test] fns unwrap too: in a test, a panic is the failure report we want.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/sidecar_certs.rs"]
mod certs;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use certs::TestCa;
use fedgate::sidecar::Config;

fn fedgate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fedgate"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn sidecar_with(dir: &Path, toml: &str) -> Output {
    let path = dir.join("sidecar.toml");
    std::fs::write(&path, toml).unwrap();
    fedgate(&["sidecar", "--config", path.to_str().unwrap()])
}

const LISTENERS: &str = "[[outbound]]\nname = \"to-echo\"\nlisten = \"127.0.0.1:0\"\n\
    server_name = \"echo.cluster-b.test\"\nconnect = [\"127.0.0.1:9\"]\n\
    allow = [\"spiffe://cluster-b.test/ns/demo/sa/echo\"]\n\
    [[inbound]]\nname = \"echo\"\nlisten = \"127.0.0.1:0\"\nforward = \"127.0.0.1:9\"\n\
    allow = [\"spiffe://cluster-a.test/*\"]\n[admin]\nlisten = \"127.0.0.1:0\"\n";

fn head(td: &str) -> String {
    format!(
        "trust_domain = \"{td}\"\n[identity]\nsvid = \"svid.pem\"\nkey = \"svid.key\"\n\
         bundle = \"bundle.json\"\n"
    )
}

#[test]
fn unreadable_config_exits_64_naming_the_file() {
    let out = fedgate(&["sidecar", "--config", "/nonexistent/sidecar.toml"]);
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/sidecar.toml"), "{err}");
}

#[test]
fn unknown_key_exits_64_naming_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = sidecar_with(
        dir.path(),
        &format!("{}{LISTENERS}bogus = 1\n", head("a.test")),
    );
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bogus"), "{err}");
    assert!(err.contains("line 19"), "{err}");
}

#[test]
fn missing_identity_files_exit_64_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = sidecar_with(
        dir.path(),
        &format!("{}{LISTENERS}", head("cluster-a.test")),
    );
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("svid.pem"), "{err}");
}

#[test]
fn svid_of_another_trust_domain_exits_64() {
    let dir = tempfile::tempdir().unwrap();
    TestCa::new("cluster-b.test").write_identity(dir.path(), "spiffe://cluster-b.test/x");
    let out = sidecar_with(
        dir.path(),
        &format!("{}{LISTENERS}", head("cluster-a.test")),
    );
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not in the configured trust domain cluster-a.test"),
        "{err}"
    );
}

#[test]
fn prints_bound_addresses_and_exits_0_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    TestCa::new("cluster-a.test")
        .write_identity(dir.path(), "spiffe://cluster-a.test/ns/demo/sa/c");
    let path = dir.path().join("sidecar.toml");
    std::fs::write(&path, format!("{}{LISTENERS}", head("cluster-a.test"))).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_fedgate"))
        .args([
            "sidecar",
            "--config",
            path.to_str().unwrap(),
            "--log-format",
            "json",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    // Three listeners: three lines (EOF first means the process died, which fails below).
    for _ in 0..3 {
        seen.push(lines.next().unwrap().unwrap());
    }
    assert!(
        seen[0].starts_with("outbound to-echo listening on 127.0.0.1:"),
        "{seen:?}"
    );
    assert!(
        seen[1].starts_with("inbound echo listening on 127.0.0.1:"),
        "{seen:?}"
    );
    assert!(
        seen[2].starts_with("admin admin listening on 127.0.0.1:"),
        "{seen:?}"
    );
    let addr: std::net::SocketAddr = seen[1].rsplit(' ').next().unwrap().parse().unwrap();
    assert_ne!(addr.port(), 0);
    std::net::TcpStream::connect(addr).unwrap();

    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn documented_examples_parse() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/examples");
    for name in ["sidecar-client.toml", "sidecar-server.toml"] {
        let config = Config::load(&root.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(config.listener_names().count() > 0);
    }
}
