//! `fedgate config check` as a process: exit codes and messages; the documented examples pass.
// Helpers outside #[test] fns unwrap too: a failed step is a test failure.
#![allow(clippy::unwrap_used)]

#[path = "support/bridge_certs.rs"]
mod bridge_certs;

use std::path::Path;
use std::process::Command;

fn check(file: &Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_fedgate"))
        .args(["config", "check"])
        .arg(file)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn documented_examples_are_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/examples");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let is_sidecar = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("sidecar-"));
        // Sidecar examples are checked by tests/sidecar_cli.rs against the sidecar schema.
        if path.extension().is_some_and(|e| e == "toml") && !is_sidecar {
            let (code, stdout, stderr) = check(&path);
            assert_eq!(code, 0, "{}: {stderr}", path.display());
            assert!(
                stdout.starts_with("ok: ") && stdout.lines().count() == 1,
                "{stdout}"
            );
            n += 1;
        }
    }
    assert!(n >= 2, "expected the example configs in {}", dir.display());
}

#[test]
fn errors_name_file_line_key_and_exit_64() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("trust_domain = \"a.test\"\n[[listeners]]\nname = \"e\"\nlisten = \"127.0.0.1:0\"\nkind = \"passthrough\"\nidle_timeout = \"forever\"\n",
         ":6:16: `listeners[0].idle_timeout`", "not a duration"),
        ("trust_domain = \"a.test\"\n[admin]\nlisten = \"127.0.0.1:0\"\nport = 3\n", ":4:1: `admin.port`", "unknown field"),
        ("trust_domain = \"a.test\"\n[[listeners]]\nname = \"e\"\nlisten = \"127.0.0.1:0\"\nkind = \"passthrough\"\n[[listeners.routes]]\nsni = \"x.test\"\nupstreams = [\"10.0.0.1\"]\n",
         ":8:14: `listeners[0].routes[0].upstreams[0]`", "host:port"),
    ];
    for (i, (src, located, what)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("c{i}.toml"));
        std::fs::write(&path, src).unwrap();
        let (code, stdout, stderr) = check(&path);
        assert_eq!(code, 64, "{stderr}");
        assert!(stdout.is_empty());
        assert!(stderr.contains(&format!("c{i}.toml{located}")), "{stderr}");
        assert!(stderr.contains(what), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
    let (code, _, stderr) = check(&dir.path().join("missing.toml"));
    assert_eq!(code, 64);
    assert!(
        stderr.contains("cannot read config file") && stderr.contains("missing.toml"),
        "{stderr}"
    );
}

/// `--sidecar`: an ingress route that sends no header, into a sidecar that lists the gateway in
/// `trusted_relays`, is reported (the gateway's ID is read from its SVID file); the matching
/// setting is not. Warnings go to stderr and leave the exit status at 0.
#[test]
fn relay_mismatch_with_a_sidecar_is_a_warning_naming_route_and_fix() {
    let dir = tempfile::tempdir().unwrap();
    let b = bridge_certs::TestCa::new("cluster-b.test");
    let bridge = bridge_certs::TestCa::new("bridge.test");
    b.issue("/ns/gateway/sa/ingress").write(dir.path(), "local");
    b.write_bundle(dir.path(), "local.json");
    bridge
        .issue("/gateway/cluster-b")
        .write(dir.path(), "bridge");
    bridge.write_bundle(dir.path(), "bridge.json");
    let gateway = |send: bool| {
        format!(
            r#"
trust_domain = "cluster-b.test"
[identity]
svid = "local.pem"
key = "local.key"
bundle = "local.json"
[bridge]
trust_domain = "bridge.test"
svid = "bridge.pem"
key = "bridge.key"
bundle = "bridge.json"
[[listeners]]
name = "bridge-in"
kind = "bridge-ingress"
listen = "127.0.0.1:0"
  [[listeners.bridge_peers]]
  id = "spiffe://bridge.test/gateway/cluster-a"
  may_speak_for = ["cluster-a.test"]
  [[listeners.routes]]
  name = "echo"
  sni = "echo.cluster-b.test"
  upstreams = ["127.0.0.1:9001"]
  server_id = ["spiffe://cluster-b.test/ns/demo/sa/echo"]
  allow = ["spiffe://cluster-a.test/ns/demo/sa/client"]
  send_proxy_header = {send}
"#
        )
    };
    std::fs::write(
        dir.path().join("sidecar.toml"),
        r#"
trust_domain = "cluster-b.test"
[identity]
svid = "svid.pem"
key = "svid.key"
bundle = "bundle.json"
[[inbound]]
name = "echo"
listen = "127.0.0.1:9001"
forward = "127.0.0.1:8080"
allow = ["spiffe://cluster-a.test/ns/demo/sa/client"]
trusted_relays = ["spiffe://cluster-b.test/ns/gateway/sa/ingress"]
"#,
    )
    .unwrap();
    for (send, warned) in [(false, true), (true, false)] {
        let path = dir.path().join(format!("gateway-{send}.toml"));
        std::fs::write(&path, gateway(send)).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_fedgate"))
            .args(["config", "check"])
            .arg(&path)
            .arg("--sidecar")
            .arg(dir.path().join("sidecar.toml"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        assert!(String::from_utf8_lossy(&out.stdout).starts_with("ok: "));
        if warned {
            assert!(
                stderr.starts_with(&format!(
                    "warning: {}: listeners[0].routes[0] (route \"echo\"): cannot work:",
                    path.display()
                )),
                "{stderr}"
            );
            assert!(stderr.contains("set send_proxy_header = true"), "{stderr}");
            assert_eq!(stderr.lines().count(), 1, "{stderr}");
        } else {
            assert!(stderr.is_empty(), "{stderr}");
        }
    }
}

/// The gateways of the "Use with SPIRE" guide (docs/spire.md): one takes its identity from a
/// SPIRE agent's Workload API, the other federates with SPIRE's bundle endpoint.
#[test]
fn spire_guide_gateway_examples_are_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/examples/spire");
    for name in ["gateway-spire-a.toml", "gateway-cluster-b.toml"] {
        let path = dir.join(name);
        let (code, stdout, stderr) = check(&path);
        assert_eq!(code, 0, "{}: {stderr}", path.display());
        assert!(stdout.starts_with("ok: "), "{name}: {stdout}");
    }
}
