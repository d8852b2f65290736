//! Unit tests of the bridge keys: both kinds parse, defaults, and one case per refusal.

use std::path::Path;

use super::*;
use crate::config::{Config, ListenerKind, ListenerMode};

const HEAD: &str = r#"
trust_domain = "cluster-a.test"
[identity]
svid = "gw.pem"
key = "gw.key"
bundle = "bundle.json"
[bridge]
trust_domain = "bridge.test"
svid = "bridge/svid.pem"
key = "bridge/svid.key"
bundle = "bridge/bundle.json"
"#;

const EGRESS: &str = r#"
[[listeners]]
name = "bridge-out"
kind = "bridge-egress"
listen = "127.0.0.1:0"
  [[listeners.routes]]
  sni = "echo.cluster-b.test"
  upstreams = ["10.0.0.2:15002"]
  peer_id = "spiffe://bridge.test/gateway/cluster-b"
  allow = ["spiffe://cluster-a.test/ns/demo/sa/client"]
"#;

const INGRESS: &str = r#"
[[listeners]]
name = "bridge-in"
kind = "bridge-ingress"
listen = "127.0.0.1:0"
proxy_header_timeout = "2s"
max_proxy_header = 2048
  [[listeners.bridge_peers]]
  id = "spiffe://bridge.test/gateway/cluster-b"
  may_speak_for = ["cluster-b.test"]
  [[listeners.routes]]
  sni = "echo.cluster-a.test"
  upstreams = ["127.0.0.1:7443"]
  server_id = ["spiffe://cluster-a.test/ns/demo/sa/echo"]
  allow = ["spiffe://cluster-b.test/*"]
  send_proxy_header = true
"#;

fn parse(src: &str) -> Result<Config, ConfigError> {
    Config::parse(src, Path::new("/etc/fedgate/gw.toml"))
}

fn error(src: &str) -> String {
    parse(src).unwrap_err().to_string()
}

#[test]
fn bridge_section_and_both_kinds_parse() {
    let c = parse(&format!("{HEAD}{EGRESS}{INGRESS}")).unwrap();
    let b = c.bridge.unwrap();
    assert_eq!(b.trust_domain.as_str(), "bridge.test");
    assert_eq!(
        b.identity,
        BridgeIdentity::Files {
            svid: "/etc/fedgate/bridge/svid.pem".into(),
            key: "/etc/fedgate/bridge/svid.key".into(),
        }
    );
    assert!(!b.session_resumption);

    let out = &c.listeners[0];
    assert_eq!(out.kind(), ListenerKind::BridgeEgress);
    let ListenerMode::BridgeEgress { routes } = &out.mode else {
        panic!("not an egress: {:?}", out.mode);
    };
    let EgressRouteConfig {
        peer_id,
        allow,
        send_proxy_header,
        transport,
    } = &routes[0].bridge;
    // Per-connection TLS unless told otherwise: today's behaviour.
    assert_eq!(*transport, Transport::Tls);
    assert_eq!(
        peer_id.to_string(),
        "spiffe://bridge.test/gateway/cluster-b"
    );
    assert_eq!(
        *allow,
        Authorizer::from_patterns(&["spiffe://cluster-a.test/ns/demo/sa/client"]).unwrap()
    );
    // Egress routes send the origin header unless told otherwise.
    assert!(send_proxy_header);

    let inn = &c.listeners[1];
    let ListenerMode::BridgeIngress { settings, routes } = &inn.mode else {
        panic!("not an ingress: {:?}", inn.mode);
    };
    assert_eq!(
        settings.peers[0].may_speak_for[0].as_str(),
        "cluster-b.test"
    );
    assert_eq!(settings.proxy_header_timeout, Duration::from_secs(2));
    assert_eq!(settings.max_proxy_header, 2048);
    assert!(routes[0].bridge.send_proxy_header);
}

#[test]
fn ingress_defaults_and_empty_allow_is_deny() {
    let src = INGRESS
        .replace("proxy_header_timeout = \"2s\"\n", "")
        .replace("max_proxy_header = 2048\n", "")
        .replace("  allow = [\"spiffe://cluster-b.test/*\"]\n", "")
        .replace("  send_proxy_header = true\n", "");
    let c = parse(&format!("{HEAD}{src}")).unwrap();
    let ListenerMode::BridgeIngress { settings, routes } = &c.listeners[0].mode else {
        panic!("not an ingress");
    };
    assert_eq!(settings.proxy_header_timeout, DEFAULT_PROXY_HEADER_TIMEOUT);
    assert_eq!(settings.max_proxy_header, DEFAULT_MAX_PROXY_HEADER);
    assert_eq!(routes[0].bridge.allow, Authorizer::any_of([]));
    assert!(!routes[0].bridge.send_proxy_header);
}

#[test]
fn egress_route_can_turn_the_proxy_header_off() {
    let src = EGRESS.replace("  allow = [", "  send_proxy_header = false\n  allow = [");
    let c = parse(&format!("{HEAD}{src}")).unwrap();
    let ListenerMode::BridgeEgress { routes } = &c.listeners[0].mode else {
        panic!("not an egress");
    };
    assert!(!routes[0].bridge.send_proxy_header);
}

#[test]
fn egress_route_transport_mux_with_defaults_and_limits() {
    let mux = |extra: &str| {
        let src = EGRESS.replace("  allow = [", &format!("{extra}  allow = ["));
        parse(&format!("{HEAD}{src}"))
    };
    let transport = |c: Config| {
        let ListenerMode::BridgeEgress { routes } = &c.listeners[0].mode else {
            panic!("not an egress");
        };
        routes[0].bridge.transport
    };
    assert_eq!(
        transport(mux("  transport = \"mux\"\n").unwrap()),
        Transport::Mux {
            pool_size: DEFAULT_MUX_POOL_SIZE,
            max_streams: DEFAULT_MUX_MAX_STREAMS,
        }
    );
    assert_eq!(
        transport(
            mux("  transport = \"mux\"\n  mux_pool_size = 4\n  mux_max_streams = 10\n").unwrap()
        ),
        Transport::Mux {
            pool_size: 4,
            max_streams: 10,
        }
    );
    assert_eq!(
        transport(mux("  transport = \"tls\"\n").unwrap()),
        Transport::Tls
    );
    let cases = [
        (
            "  transport = \"quic\"\n",
            "routes[0].transport",
            "is not a transport",
        ),
        (
            "  transport = \"mux\"\n  mux_pool_size = 0\n",
            "routes[0].mux_pool_size",
            "between 1 and 64",
        ),
        (
            "  transport = \"mux\"\n  mux_max_streams = -1\n",
            "routes[0].mux_max_streams",
            "between 1 and 10000",
        ),
        (
            "  mux_pool_size = 3\n",
            "routes[0].mux_pool_size",
            "applies only to transport = \"mux\"",
        ),
        (
            "  transport = \"mux\"\n  send_proxy_header = false\n",
            "routes[0].transport",
            "needs the origin",
        ),
    ];
    for (extra, key, want) in cases {
        let e = mux(extra).unwrap_err().to_string();
        assert!(e.contains(key) && e.contains(want), "{extra}: {e}");
    }
    // The mux keys belong to egress routes only.
    let src = INGRESS.replace("  send_proxy_header = true\n", "  transport = \"mux\"\n");
    let e = error(&format!("{HEAD}{src}"));
    assert!(e.contains("is not a key of routes"), "{e}");
}

#[test]
fn refusals_name_the_key_and_what_to_do() {
    let no_bridge = HEAD.split("[bridge]").next().unwrap().to_owned();
    let cases: Vec<(String, &str, &str)> = vec![
        (format!("{no_bridge}{EGRESS}"), "listeners[0].kind", "needs a [bridge] table"),
        (
            format!("{}{EGRESS}", HEAD.replace("[identity]\nsvid = \"gw.pem\"\nkey = \"gw.key\"\nbundle = \"bundle.json\"\n", "")),
            "listeners[0].kind",
            "add an [identity] table",
        ),
        (
            HEAD.replace("trust_domain = \"bridge.test\"", "trust_domain = \"cluster-a.test\""),
            "bridge.trust_domain",
            "the local trust domain",
        ),
        (
            format!("{HEAD}{}", EGRESS.replace("  peer_id = \"spiffe://bridge.test/gateway/cluster-b\"\n", "")),
            "listeners[0].routes[0].sni",
            "needs `peer_id`",
        ),
        (
            format!("{HEAD}{}", EGRESS.replace("spiffe://bridge.test/gateway/cluster-b", "spiffe://cluster-b.test/gw")),
            "listeners[0].routes[0].peer_id",
            "not in the bridge trust domain",
        ),
        (
            format!("{HEAD}{}", EGRESS.replace("spiffe://cluster-a.test/ns/demo/sa/client", "spiffe://cluster-a.test/*/x")),
            "listeners[0].routes[0].allow[0]",
            "`*` may only be",
        ),
        (
            format!("{HEAD}{}", EGRESS.replace("  allow =", "  server_id =")),
            "listeners[0].routes[0].server_id",
            "is not a key of routes of kind = \"bridge-egress\"",
        ),
        (
            format!("{HEAD}{}", EGRESS.replace("listen = \"127.0.0.1:0\"", "listen = \"127.0.0.1:0\"\ndefault_route = \"echo.cluster-b.test\"")),
            "listeners[0].default_route",
            "no default route",
        ),
        (
            format!("{HEAD}{}", EGRESS.replace("listen = \"127.0.0.1:0\"", "listen = \"127.0.0.1:0\"\nmax_proxy_header = 100")),
            "listeners[0].max_proxy_header",
            "belongs to kind = \"bridge-ingress\"",
        ),
        (
            format!("{HEAD}{}", EGRESS.replace("listen = \"127.0.0.1:0\"", "listen = \"127.0.0.1:0\"\nsplice = true")),
            "listeners[0].splice",
            "belongs to kind = \"passthrough\"",
        ),
        (
            format!("{HEAD}{}", EGRESS.replace("bridge-egress", "passthrough")),
            "listeners[0].routes[0].peer_id",
            "is not a key of routes of kind = \"passthrough\"",
        ),
        (
            format!("{HEAD}{}", EGRESS.replace("bridge-egress", "passthrough").replace("  peer_id = \"spiffe://bridge.test/gateway/cluster-b\"\n  allow = [\"spiffe://cluster-a.test/ns/demo/sa/client\"]\n", "  send_proxy_header = false\n")),
            "listeners[0].routes[0].send_proxy_header",
            "is not a key of routes of kind = \"passthrough\"",
        ),
        (
            format!("{HEAD}{}", INGRESS.replace("  server_id = [\"spiffe://cluster-a.test/ns/demo/sa/echo\"]\n", "")),
            "listeners[0].routes[0].server_id",
            "needs `server_id`",
        ),
        (
            format!("{HEAD}{}", INGRESS.replace("may_speak_for = [\"cluster-b.test\"]", "may_speak_for = [\"bridge.test\"]")),
            "listeners[0].bridge_peers[0].may_speak_for[0]",
            "not a workload domain",
        ),
        (
            format!("{HEAD}{}", INGRESS.replace("may_speak_for = [\"cluster-b.test\"]", "may_speak_for = [\"cluster-b.test\", \"cluster-a.test\"]")),
            "listeners[0].bridge_peers[0].may_speak_for[1]",
            "`cluster-a.test` is this gateway's own trust domain",
        ),
        (
            format!("{HEAD}{}", INGRESS.replace("id = \"spiffe://bridge.test/gateway/cluster-b\"", "id = \"spiffe://cluster-b.test/gw\"")),
            "listeners[0].bridge_peers[0].id",
            "not in the bridge trust domain",
        ),
        (
            format!("{HEAD}{}", INGRESS.replace("max_proxy_header = 2048", "max_proxy_header = 10")),
            "listeners[0].max_proxy_header",
            "must be between",
        ),
        (
            format!("{HEAD}{}", INGRESS.replace("  [[listeners.bridge_peers]]\n  id = \"spiffe://bridge.test/gateway/cluster-b\"\n  may_speak_for = [\"cluster-b.test\"]\n", "")),
            "listeners[0].kind",
            "at least one [[listeners.bridge_peers]]",
        ),
        (
            format!("{HEAD}{}", INGRESS.replace("  send_proxy_header = true\n", "  peer_id = \"spiffe://bridge.test/x\"\n")),
            "listeners[0].routes[0].peer_id",
            "is not a key of routes of kind = \"bridge-ingress\"",
        ),
    ];
    for (src, key, needle) in cases {
        let e = error(&src);
        assert!(e.contains(&format!("`{key}`")), "want key {key}, got: {e}");
        assert!(e.contains(needle), "want {needle:?}, got: {e}");
        assert!(e.starts_with("/etc/fedgate/gw.toml:"), "no location: {e}");
    }
}

#[test]
fn duplicate_bridge_peer_is_refused() {
    let src = INGRESS.replace(
        "  [[listeners.routes]]",
        "  [[listeners.bridge_peers]]\n  id = \"spiffe://bridge.test/gateway/cluster-b\"\n  may_speak_for = []\n  [[listeners.routes]]",
    );
    let e = error(&format!("{HEAD}{src}"));
    assert!(e.contains("listed twice"), "{e}");
}

#[test]
fn bridge_issuer_replaces_svid_files() {
    let files = "svid = \"bridge/svid.pem\"\nkey = \"bridge/svid.key\"\n";
    let issuer = "[bridge.issuer]\nurl = \"https://ca.bridge.test:9600/\"\n\
                  endpoint_id = \"spiffe://bridge.test/ca-endpoint\"\n\
                  id = \"spiffe://bridge.test/gateway/cluster-a\"\n";
    let head = HEAD.replace(files, "");
    let c = parse(&format!(
        "{head}{issuer}ttl = \"10m\"\nout_dir = \"bridge-svid\"\n{EGRESS}"
    ))
    .unwrap();
    let BridgeIdentity::Issuer(s) = c.bridge.unwrap().identity else {
        panic!("expected [bridge.issuer]");
    };
    assert_eq!(s.url.as_str(), "https://ca.bridge.test:9600/");
    assert_eq!(s.id.to_string(), "spiffe://bridge.test/gateway/cluster-a");
    assert_eq!(s.ttl, Some(Duration::from_secs(600)));
    assert_eq!(s.out_dir, Some(PathBuf::from("/etc/fedgate/bridge-svid")));
    assert_eq!(s.startup_timeout, DEFAULT_STARTUP_TIMEOUT);

    let cases = [
        (format!("{HEAD}{issuer}"), "bridge.issuer", "not both"),
        (head.clone(), "bridge.svid", "[bridge.issuer]"),
        (
            format!("{head}{}", issuer.replace("https://", "http://")),
            "bridge.issuer.url",
            "https URL",
        ),
        (
            format!(
                "{head}{}",
                issuer.replace("bridge.test/gateway", "cluster-a.test/gateway")
            ),
            "bridge.issuer.id",
            "bridge trust domain",
        ),
        (
            format!(
                "{head}{}",
                issuer.replace("bridge.test/ca-endpoint", "bridge.test")
            ),
            "bridge.issuer.endpoint_id",
            "with a path",
        ),
        (
            format!("{head}{issuer}ttl = \"soon\"\n"),
            "bridge.issuer.ttl",
            "not a duration",
        ),
    ];
    for (src, key, hint) in cases {
        let e = error(&format!("{src}{EGRESS}"));
        assert!(e.contains(key) && e.contains(hint), "{key}/{hint}: {e}");
    }
}
