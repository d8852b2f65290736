use std::path::Path;

use super::*;

const INGRESS_ID: &str = "spiffe://cluster-b.test/ns/gateway/sa/ingress";
const EGRESS_BRIDGE_ID: &str = "spiffe://bridge.test/gateway/cluster-a";

fn gateway_config(listener: &str) -> Config {
    let src = format!(
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
{listener}
"#
    );
    Config::parse(&src, Path::new("/etc/fedgate/gateway.toml")).unwrap()
}

fn ingress_route(send: bool) -> Config {
    gateway_config(&format!(
        r#"
[[listeners]]
name = "bridge-in"
kind = "bridge-ingress"
listen = "0.0.0.0:8443"
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
    ))
}

fn egress_route(send: bool, upstream: &str) -> Config {
    gateway_config(&format!(
        r#"
[[listeners]]
name = "bridge-out"
kind = "bridge-egress"
listen = "127.0.0.1:7000"
  [[listeners.routes]]
  name = "to-b"
  sni = "echo.cluster-b.test"
  upstreams = ["{upstream}"]
  peer_id = "spiffe://bridge.test/gateway/cluster-b"
  allow = ["spiffe://cluster-a.test/ns/demo/sa/client"]
  send_proxy_header = {send}
"#
    ))
}

fn sidecar(relays: &str, allow: &str) -> SidecarConfig {
    let src = format!(
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
allow = {allow}
trusted_relays = {relays}
"#
    );
    let path = Path::new("/etc/fedgate/sidecar.toml");
    SidecarConfig::parse(&src, Path::new("/etc/fedgate"), path).unwrap()
}

fn id(s: &str) -> Option<SpiffeId> {
    Some(SpiffeId::parse(s).unwrap())
}

fn run(config: &Config, sidecars: &[&SidecarConfig], peers: &[&Config]) -> Vec<String> {
    let gateway = Gateway {
        config,
        local_id: id(INGRESS_ID),
        bridge_id: id(EGRESS_BRIDGE_ID),
    };
    let sidecars: Vec<_> = sidecars
        .iter()
        .map(|config| Sidecar {
            path: Path::new("/etc/fedgate/sidecar.toml"),
            config,
        })
        .collect();
    lint(&gateway, &sidecars, peers)
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn matching_relay_settings_have_no_findings() {
    let relaying = sidecar(&format!(r#"["{INGRESS_ID}"]"#), "[]");
    assert_eq!(
        run(&ingress_route(true), &[&relaying], &[]),
        Vec::<String>::new()
    );
    // The ingress as an ordinary client of a sidecar that allows it, without a header.
    let plain = sidecar("[]", &format!(r#"["{INGRESS_ID}"]"#));
    assert_eq!(
        run(&ingress_route(false), &[&plain], &[]),
        Vec::<String>::new()
    );
    // Without related configs an ingress route is not judged.
    assert_eq!(run(&ingress_route(false), &[], &[]), Vec::<String>::new());
}

#[test]
fn a_sidecar_expecting_a_header_the_route_does_not_send_cannot_work() {
    let relaying = sidecar(&format!(r#"["{INGRESS_ID}"]"#), "[]");
    let findings = run(&ingress_route(false), &[&relaying], &[]);
    assert_eq!(findings.len(), 1, "{findings:?}");
    let f = &findings[0];
    assert!(
        f.starts_with("/etc/fedgate/gateway.toml: listeners[0].routes[0] (route \"echo\")"),
        "{f}"
    );
    assert!(f.contains("cannot work"), "{f}");
    assert!(
        f.contains("inbound[0] (\"echo\") of /etc/fedgate/sidecar.toml"),
        "{f}"
    );
    assert!(f.contains("set send_proxy_header = true"), "{f}");
}

#[test]
fn a_header_the_sidecar_does_not_trust_cannot_work() {
    let plain = sidecar("[]", &format!(r#"["{INGRESS_ID}"]"#));
    let findings = run(&ingress_route(true), &[&plain], &[]);
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert!(findings[0].contains("does not include spiffe://cluster-b.test/ns/gateway/sa/ingress"));
    assert!(findings[0]
        .contains("add spiffe://cluster-b.test/ns/gateway/sa/ingress to its trusted_relays"));
}

#[test]
fn a_sidecar_admitting_the_gateway_nowhere_cannot_work() {
    let closed = sidecar("[]", r#"["spiffe://cluster-a.test/ns/demo/sa/client"]"#);
    let findings = run(&ingress_route(false), &[&closed], &[]);
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert!(
        findings[0].contains("neither as a trusted relay nor in allow"),
        "{}",
        findings[0]
    );
}

#[test]
fn an_egress_route_without_the_header_is_flagged_and_fatal_towards_a_fedgate_ingress() {
    // Alone: a warning that only a plain mTLS upstream accepts it.
    let egress = egress_route(false, "10.0.0.2:8443");
    let alone = run(&egress, &[], &[]);
    assert_eq!(alone.len(), 1, "{alone:?}");
    assert!(
        alone[0].contains("send_proxy_header = false"),
        "{}",
        alone[0]
    );
    assert!(alone[0].contains("relay_not_negotiated"), "{}", alone[0]);

    // With the peer's config: its bridge-ingress listens on 0.0.0.0:8443, so the route cannot work.
    let peer = ingress_route(true);
    let with_peer = run(&egress, &[], &[&peer]);
    assert_eq!(with_peer.len(), 2, "{with_peer:?}");
    assert!(
        with_peer[1].contains(
            "cannot work: upstream 10.0.0.2:8443 is bridge-ingress listener \"bridge-in\""
        ),
        "{}",
        with_peer[1]
    );

    // With the header, towards the same peer: nothing to report.
    assert_eq!(
        run(&egress_route(true, "10.0.0.2:8443"), &[], &[&peer]),
        Vec::<String>::new()
    );
}

#[test]
fn a_one_hop_egress_into_a_sidecar_is_judged_with_its_bridge_identity() {
    let relaying = sidecar(&format!(r#"["{EGRESS_BRIDGE_ID}"]"#), "[]");
    assert_eq!(
        run(&egress_route(true, "127.0.0.1:9001"), &[&relaying], &[]),
        Vec::<String>::new()
    );
    let findings = run(&egress_route(false, "localhost:9001"), &[&relaying], &[]);
    assert_eq!(findings.len(), 2, "{findings:?}");
    assert!(findings[1].contains("cannot work"), "{}", findings[1]);
}

#[test]
fn an_unreadable_svid_is_reported_not_guessed() {
    let config = ingress_route(true);
    let relaying = sidecar(&format!(r#"["{INGRESS_ID}"]"#), "[]");
    let gateway = Gateway {
        config: &config,
        local_id: None,
        bridge_id: None,
    };
    let sidecars = [Sidecar {
        path: Path::new("/etc/fedgate/sidecar.toml"),
        config: &relaying,
    }];
    let findings = lint(&gateway, &sidecars, &[]);
    assert_eq!(findings.len(), 1);
    assert!(findings[0].message.contains("could not be read"));
}

#[test]
fn addresses_match_by_port_and_host() {
    let up = |s: &str| crate::config::parse_upstream(s).unwrap();
    let at = |s: &str| s.parse::<SocketAddr>().unwrap();
    assert!(same_address(&up("127.0.0.1:9001"), at("127.0.0.1:9001")));
    assert!(same_address(&up("10.1.2.3:9001"), at("0.0.0.0:9001")));
    assert!(same_address(&up("localhost:9001"), at("127.0.0.1:9001")));
    assert!(same_address(&up("[::1]:9001"), at("[::1]:9001")));
    assert!(!same_address(&up("127.0.0.1:9002"), at("127.0.0.1:9001")));
    assert!(!same_address(&up("127.0.0.2:9001"), at("127.0.0.1:9001")));
    assert!(!same_address(&up("echo.svc:9001"), at("127.0.0.1:9001")));
}
