//! `fedgate authz import` as a process: the documented SMI sample becomes a fragment that, with
//! `listen` and `forward` added, is a sidecar config `fedgate config check --sidecar` accepts
//! and whose allow lists are the TrafficTargets' sources; bad inputs exit 64 with one line.
// Helpers outside #[test] fns unwrap too: a failed step is a test failure.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use fedgate::sidecar::Config as SidecarConfig;
use fedgate_federation::SpiffeId;

fn fedgate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fedgate"))
        .args(args)
        .output()
        .unwrap()
}

fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/examples/smi/shop.yaml")
}

/// What an operator does with the fragment: add `listen` and `forward` to each `[[inbound]]`
/// and put it under the sidecar's own settings.
fn merge_into_sidecar(fragment: &str) -> String {
    let mut out = String::from(
        "trust_domain = \"cluster-b.test\"\n[identity]\nsvid = \"svid.pem\"\nkey = \"svid.key\"\n\
         bundle = \"bundle.json\"\n\n",
    );
    let mut port = 17000;
    for line in fragment.lines() {
        out.push_str(line);
        out.push('\n');
        if line == "[[inbound]]" {
            port += 1;
            out.push_str(&format!(
                "listen = \"127.0.0.1:{port}\"\nforward = \"127.0.0.1:{}\"\n",
                port + 1000
            ));
        }
    }
    out
}

#[test]
fn sample_fragment_merged_into_a_sidecar_config_passes_config_check() {
    let dir = tempfile::tempdir().unwrap();
    let fragment_path = dir.path().join("allow.toml");
    let out = fedgate(&[
        "authz",
        "import",
        sample().to_str().unwrap(),
        "--trust-domain",
        "cluster-b.test",
        "-o",
        fragment_path.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(out.stdout.is_empty() && stderr.is_empty(), "{stderr}");
    let fragment = std::fs::read_to_string(&fragment_path).unwrap();
    assert!(fragment.contains("NOT ENFORCED"), "{fragment}");

    let sidecar = dir.path().join("sidecar.toml");
    std::fs::write(&sidecar, merge_into_sidecar(&fragment)).unwrap();
    let gateway = dir.path().join("gateway.toml");
    std::fs::write(&gateway, "trust_domain = \"cluster-b.test\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_fedgate"))
        .args(["config", "check"])
        .arg(&gateway)
        .arg("--sidecar")
        .arg(&sidecar)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ok: "));

    // And the sidecar reads the allow lists the TrafficTargets mean.
    let config = SidecarConfig::load(&sidecar).unwrap();
    let names: Vec<&str> = config.inbound.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["shop.api", "shop.postgres"]);
    let id = |s: &str| SpiffeId::parse(s).unwrap();
    let api = &config.inbound[0].allow;
    for allowed in ["web", "payments"] {
        assert!(api.allows(&id(&format!(
            "spiffe://cluster-b.test/ns/shop/sa/{allowed}"
        ))));
    }
    assert!(api.allows(&id("spiffe://cluster-b.test/ns/monitoring/sa/prometheus")));
    assert!(!api.allows(&id("spiffe://cluster-b.test/ns/shop/sa/postgres")));
    let db = &config.inbound[1].allow;
    assert!(db.allows(&id("spiffe://cluster-b.test/ns/shop/sa/payments")));
    assert!(!db.allows(&id("spiffe://cluster-b.test/ns/shop/sa/web")));
}

#[test]
fn stdin_and_a_custom_template() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fedgate"))
        .args([
            "authz",
            "import",
            "-",
            "--trust-domain",
            "cluster-b.test",
            "--id-template",
            "spiffe://{td}/k8s/{ns}/{sa}",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&std::fs::read(sample()).unwrap())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout
            .contains("\"spiffe://cluster-b.test/k8s/shop/web\", # TrafficTarget shop/api-callers"),
        "{stdout}"
    );
}

#[test]
fn bad_inputs_exit_64_with_one_line_naming_what_and_where() {
    let dir = tempfile::tempdir().unwrap();
    let tt = |meta: &str, spec: &str| {
        format!(
            "apiVersion: access.smi-spec.io/v1alpha3\nkind: TrafficTarget\nmetadata: {meta}\n\
             spec:\n{spec}"
        )
    };
    let dest = "  destination: {kind: ServiceAccount, name: d}\n";
    let src = "  sources: [{kind: ServiceAccount, name: s}]\n";
    let cases = [
        (
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n".to_owned(),
            vec!["document 1: unknown kind \"Deployment\""],
        ),
        (
            tt(
                "{name: a, namespace: n}",
                &format!("{dest}{src}  colour: red\n"),
            ),
            vec!["document 1: TrafficTarget: spec: unknown field `colour`"],
        ),
        (
            tt("{name: a}", &format!("{dest}{src}")),
            vec!["spec.destination.namespace: missing"],
        ),
        (
            tt(
                "{name: a, namespace: n}",
                &format!("{dest}  rules: [{{kind: TCPRoute, name: db-port}}]\n{src}"),
            ),
            vec!["spec.rules[0]: TCPRoute \"db-port\" in namespace \"n\" is not in the input"],
        ),
    ];
    for (i, (text, wants)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("in{i}.yaml"));
        std::fs::write(&path, text).unwrap();
        let output = dir.path().join(format!("out{i}.toml"));
        let out = fedgate(&[
            "authz",
            "import",
            path.to_str().unwrap(),
            "--trust-domain",
            "t.test",
            "--output",
            output.to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{stderr}");
        assert!(out.stdout.is_empty());
        assert!(!output.exists(), "nothing is written on error");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(&format!("in{i}.yaml: ")), "{stderr}");
        for want in wants {
            assert!(stderr.contains(want), "want {want:?} in {stderr}");
        }
    }

    let sample = sample();
    let sample = sample.to_str().unwrap();
    for (args, want) in [
        (
            vec![
                "--trust-domain",
                "t.test",
                "--id-template",
                "spiffe://{td}/{ns}/{name}",
            ],
            "unknown placeholder {name}",
        ),
        (
            vec![
                "--trust-domain",
                "t.test",
                "--id-template",
                "spiffe://other.test/{ns}/{sa}",
            ],
            "outside trust domain \"t.test\"",
        ),
        (
            vec!["--trust-domain", "T.test"],
            "--trust-domain \"T.test\"",
        ),
    ] {
        let mut all = vec!["authz", "import", sample];
        all.extend(args);
        let out = fedgate(&all);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{stderr}");
        assert!(stderr.contains(want), "want {want:?} in {stderr}");
    }
    let out = fedgate(&[
        "authz",
        "import",
        "/nonexistent/x.yaml",
        "--trust-domain",
        "t.test",
    ]);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/x.yaml: cannot read"));
}
