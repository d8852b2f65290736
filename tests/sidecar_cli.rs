//! `fedgate sidecar` as a process: exit 64 on config/identity errors, bound addresses on stdout,
//! clean exit on SIGTERM; and the documented example configs parse.

// Helpers outside #[test] fns unwrap too: in a test, a panic is the failure report we want.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/sidecar_certs.rs"]
mod certs;
#[path = "support/sidecar_harness.rs"]
mod harness;

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
    // `file:line:col`, the same form as the gateway config's errors.
    assert!(err.contains("sidecar.toml:19:1:"), "{err}");
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
    // spire/sidecar-spire-a.toml: docs/spire.md's sidecar, identity from a SPIRE agent.
    for name in [
        "sidecar-client.toml",
        "sidecar-server.toml",
        "spire/sidecar-spire-a.toml",
    ] {
        let config = Config::load(&root.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(config.listener_names().count() > 0);
    }
}

#[test]
fn deployment_sidecar_configs_parse() {
    let overlays = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes/overlays");
    let mut checked = 0;
    for cluster in std::fs::read_dir(&overlays).into_iter().flatten().flatten() {
        for file in std::fs::read_dir(cluster.path()).unwrap().flatten() {
            let path = file.path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if name == "ca-serve.toml" {
                // The bridge issuer's config (`fedgate ca serve`), not a sidecar's.
                fedgate::ca::serve::config::ServeConfig::load(&path)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                continue;
            }
            let is_sidecar =
                path.extension().is_some_and(|e| e == "toml") && name != "gateway.toml";
            if is_sidecar {
                Config::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                checked += 1;
            }
        }
    }
    // The deployment may not be in every checkout; when it is, its sidecar configs must parse.
    if overlays.exists() {
        assert!(
            checked > 0,
            "no sidecar config under {}",
            overlays.display()
        );
    }
}

#[tokio::test]
async fn sighup_reloads_the_identity_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("cluster-a.test");
    let files = ca.write_identity(dir.path(), "spiffe://cluster-a.test/ns/demo/sa/echo");
    let path = dir.path().join("sidecar.toml");
    // Polling every hour: only SIGHUP can make the new SVID visible within the test.
    let toml = format!(
        "reload_interval = \"1h\"\n{}{LISTENERS}",
        head("cluster-a.test")
    );
    std::fs::write(&path, toml).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_fedgate"))
        .args([
            "sidecar",
            "--config",
            path.to_str().unwrap(),
            "--log-format",
            "json",
        ])
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let _outbound = stdout.next().unwrap().unwrap();
    let inbound = stdout.next().unwrap().unwrap();
    let addr: std::net::SocketAddr = inbound.rsplit(' ').next().unwrap().parse().unwrap();

    let new = ca.issue("spiffe://cluster-a.test/ns/demo/sa/echo");
    new.install(&files);
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    // The reload logs one line. Lines are read on a thread so the wait is bounded.
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut seen = Vec::new();
    while let Ok(line) = rx.recv_timeout(std::time::Duration::from_secs(10)) {
        let done = line.contains("new TLS configs in force");
        seen.push(line);
        if done {
            break;
        }
    }
    assert!(
        seen.last()
            .is_some_and(|l| l.contains("new TLS configs in force")),
        "{seen:#?}"
    );

    // A cluster-a client (allowed by `spiffe://cluster-a.test/*`) now sees the new certificate.
    let client = ca.issue("spiffe://cluster-a.test/ns/demo/sa/client").x509();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = harness::tls_connector(&client, certs::bundle_set(&[&ca]))
        .connect(harness::server_name("echo.cluster-a.test"), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.peer_certificates().unwrap()[0], new.leaf);
    drop(tls);

    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));
}
