//! Unit tests for config conversion: defaults, path resolution, and one test per refusal.

use super::*;
use fedgate_dataplane::upstreams::Endpoint;

const MINIMAL: &str = r#"
trust_domain = "cluster-a.test"

[[listeners]]
name = "egress"
listen = "127.0.0.1:0"
kind = "passthrough"

  [[listeners.routes]]
  sni = "*.cluster-b.test"
  upstreams = ["127.0.0.1:16443", "gw.cluster-b.svc:15443"]
"#;

fn parse(src: &str) -> Result<Config, ConfigError> {
    Config::parse(src, Path::new("/etc/fedgate/gw.toml"))
}

fn error(src: &str) -> String {
    parse(src).unwrap_err().to_string()
}

#[test]
fn minimal_config_gets_defaults() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.trust_domain.as_str(), "cluster-a.test");
    assert_eq!(c.log_format, LogFormat::Human);
    assert_eq!(c.drain_timeout, Duration::from_secs(30));
    assert_eq!(c.workers, None, "one worker per CPU, decided at start");
    assert_eq!(c.admin.listen, "127.0.0.1:9901".parse().unwrap());
    assert!(c.identity.is_none() && c.federation.is_none());
    let l = &c.listeners[0];
    assert_eq!(l.limits, ListenerLimits::DEFAULT);
    assert_eq!(l.routes()[0].name, "*.cluster-b.test");
    assert_eq!(
        l.routes()[0].upstreams[1],
        Endpoint::new("gw.cluster-b.svc", 15443)
    );
}

#[test]
fn full_config_resolves_relative_paths() {
    let src = r#"
trust_domain = "cluster-a.test"
log_format = "json"
drain_timeout = "2s"
[identity]
svid = "certs/gw.pem"
key = "/abs/gw.key"
bundle = "certs/bundle.json"
[admin]
listen = "127.0.0.1:0"
[federation]
state_dir = "state"
min_refresh = "1s"
max_refresh = "10s"
default_refresh = "5s"
[federation.serve]
listen = "127.0.0.1:0"
profile = "https_spiffe"
[[federation.peers]]
trust_domain = "cluster-b.test"
url = "https://127.0.0.1:8444/"
profile = "https_spiffe"
endpoint_id = "spiffe://cluster-b.test/fedgate/bundle-endpoint"
bootstrap_bundle = "b.json"
[[federation.peers]]
trust_domain = "cluster-c.test"
url = "https://c.example/bundle"
profile = "https_web"
"#;
    let c = parse(src).unwrap();
    assert_eq!(c.log_format, LogFormat::Json);
    let id = c.identity.unwrap();
    assert_eq!(id.svid, PathBuf::from("/etc/fedgate/certs/gw.pem"));
    assert_eq!(id.key, PathBuf::from("/abs/gw.key"));
    let f = c.federation.unwrap();
    assert_eq!(f.state_dir, Some(PathBuf::from("/etc/fedgate/state")));
    let serve = f.serve.unwrap();
    assert_eq!(serve.path, "/");
    assert_eq!(
        serve.bundle,
        PathBuf::from("/etc/fedgate/certs/bundle.json")
    );
    assert_eq!(
        serve.profile,
        ServeProfile::HttpsSpiffe {
            svid: PathBuf::from("/etc/fedgate/certs/gw.pem"),
            key: PathBuf::from("/abs/gw.key")
        }
    );
    assert!(
        matches!(&f.peers[0].profile, PeerProfile::HttpsSpiffe { bootstrap_bundle, .. }
        if bootstrap_bundle == Path::new("/etc/fedgate/b.json"))
    );
    assert_eq!(f.peers[1].profile, PeerProfile::HttpsWeb { ca: None });
}

#[test]
fn unknown_key_names_key_and_line() {
    let src = MINIMAL.replace(
        "kind = \"passthrough\"",
        "kind = \"passthrough\"\npeek_timout = \"5s\"",
    );
    let e = error(&src);
    assert!(e.contains("gw.toml:8:1"), "{e}");
    assert!(e.contains("listeners[0].peek_timout"), "{e}");
    assert!(e.contains("unknown field"), "{e}");
}

#[test]
fn bad_values_name_key_line_and_fix() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "127.0.0.1:0\"",
            "127.0.0.1:0\"\npeek_timeout = \"soon\"",
            "listeners[0].peek_timeout",
        ),
        (
            "listen = \"127.0.0.1:0\"",
            "listen = \"localhost\"",
            "listeners[0].listen",
        ),
        (
            "sni = \"*.cluster-b.test\"",
            "sni = \"a.*.test\"",
            "listeners[0].routes[0].sni",
        ),
        (
            "\"127.0.0.1:16443\", ",
            "\"nope\", ",
            "listeners[0].routes[0].upstreams[0]",
        ),
        (
            "kind = \"passthrough\"",
            "kind = \"bridge\"",
            "listeners[0].kind",
        ),
        ("cluster-a.test", "bad_td!", "trust_domain"),
        (
            "kind = \"passthrough\"",
            "kind = \"passthrough\"\ndefault_route = \"nope\"",
            "listeners[0].default_route",
        ),
        (
            "kind = \"passthrough\"",
            "kind = \"passthrough\"\nmax_connections = 0",
            "listeners[0].max_connections",
        ),
        (
            "kind = \"passthrough\"",
            "kind = \"passthrough\"\nmax_client_hello = 10",
            "listeners[0].max_client_hello",
        ),
        (
            "upstreams = [\"127.0.0.1:16443\", \"gw.cluster-b.svc:15443\"]",
            "upstreams = []",
            "listeners[0].routes[0].upstreams",
        ),
    ];
    for (from, to, key) in cases {
        let src = MINIMAL.replacen(from, to, 1);
        assert_ne!(src, MINIMAL, "{from}");
        let e = error(&src);
        assert!(e.contains(&format!("`{key}`")), "{key}: {e}");
        assert!(e.contains("gw.toml:"), "{e}");
    }
}

#[test]
fn duplicate_listener_and_address() {
    let dup = format!("{MINIMAL}\n[[listeners]]\nname = \"egress\"\nlisten = \"127.0.0.1:0\"\nkind = \"passthrough\"\n");
    assert!(error(&dup).contains("used twice"));
    let src = MINIMAL.replace("127.0.0.1:0", "127.0.0.1:9901");
    assert!(error(&src).contains("already used by `admin.listen`"));
}

#[test]
fn federation_rules() {
    let base = "trust_domain = \"cluster-a.test\"\n[federation]\n";
    let spiffe_without_id = format!(
        "{base}[[federation.peers]]\ntrust_domain = \"b.test\"\nurl = \"https://b/\"\nprofile = \"https_spiffe\"\n"
    );
    assert!(error(&spiffe_without_id).contains("needs `endpoint_id`"));
    let http = format!("{base}[[federation.peers]]\ntrust_domain = \"b.test\"\nurl = \"http://b/\"\nprofile = \"https_web\"\n");
    assert!(error(&http).contains("federation.peers[0].url"));
    let local = format!("{base}[[federation.peers]]\ntrust_domain = \"cluster-a.test\"\nurl = \"https://b/\"\nprofile = \"https_web\"\n");
    assert!(error(&local).contains("local trust domain"));
    let serve =
        format!("{base}[federation.serve]\nlisten = \"127.0.0.1:0\"\nprofile = \"https_spiffe\"\n");
    assert!(error(&serve).contains("add an [identity] table"));
    let web =
        format!("{base}[federation.serve]\nlisten = \"127.0.0.1:0\"\nprofile = \"https_web\"\n");
    assert!(error(&web).contains("needs both `cert` and `key`"));
    let web_with_bundle = format!(
        "{base}[federation.serve]\nlisten = \"127.0.0.1:0\"\nprofile = \"https_web\"\ncert = \"c.pem\"\nkey = \"k.pem\"\nbundle = \"b.json\"\n"
    );
    let serve = parse(&web_with_bundle)
        .unwrap()
        .federation
        .unwrap()
        .serve
        .unwrap();
    assert_eq!(serve.bundle, PathBuf::from("/etc/fedgate/b.json"));
    assert_eq!(serve.max_connections, 1024);
    let limited = format!("{web_with_bundle}max_connections = 3\n");
    let serve = parse(&limited).unwrap().federation.unwrap().serve.unwrap();
    assert_eq!(serve.max_connections, 3);
    let zero = format!("{web_with_bundle}max_connections = 0\n");
    let e = error(&zero);
    assert!(
        e.contains("`federation.serve.max_connections`") && e.contains("positive integer"),
        "{e}"
    );
    let web_without_bundle = web_with_bundle.replace("bundle = \"b.json\"\n", "");
    assert!(error(&web_without_bundle).contains("needs the local bundle to serve"));
    let bounds = format!("{base}min_refresh = \"1m\"\nmax_refresh = \"30s\"\n");
    assert!(error(&bounds).contains("federation.min_refresh"));
}

#[test]
fn federation_peer_required_defaults_to_false() {
    let peer = "trust_domain = \"cluster-a.test\"\n[federation]\n[[federation.peers]]\n\
                trust_domain = \"b.test\"\nurl = \"https://b/\"\nprofile = \"https_web\"\n";
    let required = |src: &str| parse(src).unwrap().federation.unwrap().peers[0].required;
    assert!(!required(peer));
    assert!(!required(&format!("{peer}required = false\n")));
    assert!(required(&format!("{peer}required = true\n")));
    let e = error(&format!("{peer}required = \"yes\"\n"));
    assert!(e.contains("required"), "{e}");
}

#[test]
fn federation_pkcs12_keys() {
    let base = "trust_domain = \"cluster-a.test\"\n[federation]\n";
    let fed = |extra: &str| parse(&format!("{base}{extra}")).map(|c| c.federation.unwrap());
    let f = fed("distribute_dir = \"out\"\n").unwrap();
    assert_eq!(f.pkcs12, Pkcs12Config::default());
    assert!(f.pkcs12.per_trust_domain && !f.pkcs12.all && f.pkcs12.password_file.is_none());
    let f = fed("distribute_dir = \"out\"\ndistribute_pkcs12 = false\ndistribute_pkcs12_all = true\npkcs12_password_file = \"p12.pass\"\n").unwrap();
    assert_eq!(
        f.pkcs12,
        Pkcs12Config {
            per_trust_domain: false,
            all: true,
            password_file: Some(PathBuf::from("/etc/fedgate/p12.pass")),
        }
    );
    let e = fed("distribute_pkcs12_all = true\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("federation.distribute_pkcs12_all") && e.contains("distribute_dir"),
        "{e}"
    );
    let e = fed("distribute_dir = \"out\"\npkcs12_password_file = \" \"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("federation.pkcs12_password_file"), "{e}");
    let clash = "distribute_dir = \"out\"\ndistribute_pkcs12_all = true\n[[federation.peers]]\ntrust_domain = \"all\"\nurl = \"https://b/\"\nprofile = \"https_web\"\n";
    let e = fed(clash).unwrap_err().to_string();
    assert!(e.contains("would clash with all.p12"), "{e}");
    assert!(fed(&clash.replace("distribute_pkcs12_all = true\n", "")).is_ok());
}

#[test]
fn upstream_parsing() {
    assert_eq!(parse_upstream("[::1]:80").unwrap().to_string(), "[::1]:80");
    assert_eq!(
        parse_upstream("GW.example:1").unwrap().to_string(),
        "gw.example:1"
    );
    for bad in [
        "",
        ":80",
        "host",
        "host:0",
        "host:99999",
        "a..b:1",
        "-a:1",
        "a b:1",
    ] {
        assert!(parse_upstream(bad).is_none(), "{bad}");
    }
}

proptest::proptest! {
    #[test]
    fn arbitrary_text_never_panics(src in "\\PC{0,300}") {
        let _ = parse(&src);
    }
}

proptest::proptest! {
    #[test]
    fn upstream_parse_never_panics(s in "\\PC{0,80}") {
        let _ = parse_upstream(&s);
    }

    #[test]
    fn upstream_display_round_trips(host in "[a-z]([a-z0-9-]{0,8}[a-z0-9])?(\\.[a-z][a-z0-9]{0,10}){0,3}", port in 1u16..) {
        let up = parse_upstream(&format!("{host}:{port}")).unwrap();
        proptest::prop_assert_eq!(parse_upstream(&up.to_string()).unwrap(), up);
    }
}

#[test]
fn workers_is_a_positive_bounded_count() {
    let with = |v: &str| {
        MINIMAL.replacen(
            "cluster-a.test\"",
            &format!("cluster-a.test\"\nworkers = {v}"),
            1,
        )
    };
    assert_eq!(parse(&with("4")).unwrap().workers, Some(4));
    for bad in ["0", "-1", "1025", "\"4\""] {
        let e = error(&with(bad));
        assert!(
            e.contains("`workers`") || e.contains("workers"),
            "{bad}: {e}"
        );
        assert!(e.contains("gw.toml:"), "{bad}: {e}");
    }
    let e = error(&with("0"));
    assert!(e.contains("from 1 to 1024"), "{e}");
}

#[test]
fn splice_is_off_unless_asked_for() {
    assert!(!splice(&parse(MINIMAL).unwrap().listeners[0]));
    let on = MINIMAL.replacen(
        "kind = \"passthrough\"",
        "kind = \"passthrough\"\nsplice = true",
        1,
    );
    assert!(splice(&parse(&on).unwrap().listeners[0]));
    let bad = MINIMAL.replacen(
        "kind = \"passthrough\"",
        "kind = \"passthrough\"\nsplice = \"yes\"",
        1,
    );
    let e = error(&bad);
    assert!(
        e.contains("listeners[0].splice") || e.contains("splice"),
        "{e}"
    );
}

#[test]
fn route_table_is_built_with_the_config() {
    let src = MINIMAL.replacen(
        "kind = \"passthrough\"",
        "kind = \"passthrough\"\ndefault_route = \"fallback\"",
        1,
    ) + "  [[listeners.routes]]\n  name = \"fallback\"\n  sni = \"api.cluster-c.test\"\n  upstreams = [\"10.0.0.9:1\"]\n";
    let c = parse(&src).unwrap();
    let l = &c.listeners[0];
    assert_eq!(l.route_table.len(), 2);
    assert_eq!(l.route_table.lookup(Some("x.cluster-b.test")), Some(&0));
    assert_eq!(l.route_table.lookup(Some("API.cluster-c.test")), Some(&1));
    assert_eq!(l.route_table.lookup(None), Some(&1));
    assert_eq!(l.route_table.lookup(Some("nothing.test")), Some(&1));
    assert_eq!(l.default_route.as_deref(), Some("fallback"));
    assert!(parse(MINIMAL).unwrap().listeners[0]
        .route_table
        .default_route()
        .is_none());
}

#[test]
fn errors_inside_a_listener_are_located_exactly() {
    let src = MINIMAL.replacen(
        "kind = \"passthrough\"",
        "kind = \"passthrough\"\nmax_proxy_header = 100",
        1,
    );
    assert_eq!(
        error(&src),
        "/etc/fedgate/gw.toml:8:20: `listeners[0].max_proxy_header`: belongs to kind = \
         \"bridge-ingress\", not kind = \"passthrough\""
    );
    let src = MINIMAL.replacen("127.0.0.1:16443", "nope", 1);
    let e = error(&src);
    assert!(
        e.starts_with("/etc/fedgate/gw.toml:11:16: `listeners[0].routes[0].upstreams[0]`"),
        "{e}"
    );
}

fn splice(l: &ListenerConfig) -> bool {
    match l.mode {
        ListenerMode::Passthrough { splice, .. } => splice,
        _ => panic!("not a passthrough listener: {:?}", l.mode),
    }
}
