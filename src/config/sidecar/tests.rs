use super::*;

const FULL: &str = r#"
trust_domain = "cluster-a.test"
reload_interval = "250ms"
drain_timeout = "3s"
log_format = "json"

[identity]
svid = "svid.pem"
key = "svid.key"
bundle = "bundle.json"
federated_bundles = "../gw/bundles-out/current/bundles.json"

[admin]
listen = "127.0.0.1:0"

[[outbound]]
name = "to-echo-b"
listen = "127.0.0.1:7001"
server_name = "echo.cluster-b.test"
connect = ["127.0.0.1:15443", "gateway.fedgate.svc:15443"]
allow = ["spiffe://cluster-b.test/ns/demo/sa/echo"]
connect_timeout = "2s"
idle_timeout = "5m"

[[inbound]]
name = "echo"
listen = "127.0.0.1:7443"
forward = "127.0.0.1:8080"
allow = ["spiffe://cluster-a.test/*"]
proxy_protocol = true
trusted_relays = ["spiffe://cluster-b.test/ns/gateway/sa/ingress"]
"#;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(
        text,
        Path::new("/etc/fedgate"),
        Path::new("/etc/fedgate/sidecar.toml"),
    )
}

fn invalid_key(text: &str) -> String {
    match parse(text) {
        Err(ConfigError::Invalid { key, .. }) => key,
        other => panic!("expected an invalid-value error, got {other:?}"),
    }
}

fn minimal(listeners: &str) -> String {
    format!(
        "trust_domain = \"a.test\"\n[identity]\nsvid = \"s.pem\"\nkey = \"s.key\"\n\
         bundle = \"b.json\"\n{listeners}"
    )
}

const OUT: &str = "[[outbound]]\nname = \"o\"\nlisten = \"127.0.0.1:0\"\n\
                   server_name = \"x.b.test\"\nconnect = [\"127.0.0.1:1\"]\n";
const IN: &str = "[[inbound]]\nname = \"i\"\nlisten = \"127.0.0.1:0\"\nforward = \"127.0.0.1:2\"\n";

#[test]
fn full_example_parses_with_paths_relative_to_the_file() {
    let c = parse(FULL).unwrap();
    assert_eq!(c.trust_domain.to_string(), "cluster-a.test");
    assert_eq!(
        c.identity.files().unwrap().svid,
        PathBuf::from("/etc/fedgate/svid.pem")
    );
    assert_eq!(
        c.identity.files().unwrap().key,
        PathBuf::from("/etc/fedgate/svid.key")
    );
    assert_eq!(
        c.identity.files().unwrap().federated_bundles,
        Some(PathBuf::from(
            "/etc/fedgate/../gw/bundles-out/current/bundles.json"
        ))
    );
    assert_eq!(c.admin, Some("127.0.0.1:0".parse().unwrap()));
    assert_eq!(c.log_format, Some(LogFormat::Json));
    assert_eq!(c.reload_interval, Duration::from_millis(250));
    assert_eq!(c.drain_timeout, Duration::from_secs(3));

    let o = &c.outbound[0];
    assert_eq!(o.name, "to-echo-b");
    assert_eq!(o.server_name.to_str(), "echo.cluster-b.test");
    assert_eq!(o.connect.len(), 2);
    assert_eq!(o.limits.connect_timeout, Duration::from_secs(2));
    assert_eq!(o.limits.idle_timeout, Duration::from_secs(300));
    assert_eq!(o.limits.handshake_timeout, DEFAULT_HANDSHAKE_TIMEOUT);
    let echo =
        fedgate_federation::SpiffeId::parse("spiffe://cluster-b.test/ns/demo/sa/echo").unwrap();
    assert!(o.allow.allows(&echo));

    let i = &c.inbound[0];
    assert!(i.proxy_protocol);
    assert_eq!(i.forward.to_string(), "127.0.0.1:8080");
    assert_eq!(i.max_proxy_header, DEFAULT_MAX_PROXY_HEADER);
    assert_eq!(i.proxy_header_timeout, DEFAULT_PROXY_HEADER_TIMEOUT);
    let relay =
        fedgate_federation::SpiffeId::parse("spiffe://cluster-b.test/ns/gateway/sa/ingress")
            .unwrap();
    assert!(i.trusted_relays.allows(&relay));
    assert!(!i.allow.allows(&relay));
    assert_eq!(
        c.listener_names().collect::<Vec<_>>(),
        ["to-echo-b", "echo"]
    );
}

#[test]
fn defaults_apply_and_missing_allow_denies() {
    let c = parse(&minimal(&format!("{OUT}{IN}"))).unwrap();
    assert_eq!(c.reload_interval, DEFAULT_RELOAD_INTERVAL);
    assert_eq!(c.drain_timeout, DEFAULT_DRAIN_TIMEOUT);
    assert!(c.admin.is_none());
    assert!(c.identity.files().unwrap().federated_bundles.is_none());
    assert_eq!(c.outbound[0].allow, Authorizer::any_of([]));
    assert_eq!(c.inbound[0].allow, Authorizer::any_of([]));
    assert_eq!(c.inbound[0].trusted_relays, Authorizer::any_of([]));
    assert!(!c.inbound[0].proxy_protocol);
    assert_eq!(c.inbound[0].limits.idle_timeout, DEFAULT_IDLE_TIMEOUT);
    assert_eq!(
        c.outbound[0].limits.connect_timeout,
        DEFAULT_CONNECT_TIMEOUT
    );
    assert_eq!(
        c.outbound[0].limits.max_connections,
        DEFAULT_MAX_CONNECTIONS
    );
    assert_eq!(c.inbound[0].limits.max_connections, DEFAULT_MAX_CONNECTIONS);
    let c = parse(&minimal(&format!(
        "{OUT}max_connections = 3
{IN}max_connections = 4
"
    )))
    .unwrap();
    assert_eq!(c.outbound[0].limits.max_connections, 3);
    assert_eq!(c.inbound[0].limits.max_connections, 4);
}

#[test]
fn unknown_keys_are_refused_with_line_number() {
    let text = minimal(&format!("{OUT}alow = [\"*\"]\n"));
    match parse(&text) {
        Err(e @ ConfigError::Invalid { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("alow"), "{msg}");
            // The location is exact now: line 11, column 1 (the unknown key).
            assert!(msg.contains("sidecar.toml:11:1:"), "{msg}");
            assert!(msg.contains("/etc/fedgate/sidecar.toml"), "{msg}");
            assert!(msg.contains("unknown field"), "{msg}");
        }
        other => panic!("expected an unknown-key error, got {other:?}"),
    }
    assert!(matches!(
        parse(&minimal(&format!("{OUT}[extra]\nx = 1\n"))),
        Err(ConfigError::Invalid { message, .. }) if message.contains("unknown field")
    ));
}

#[test]
fn missing_required_keys_are_refused() {
    for text in [
        "[identity]\nsvid = \"s\"\nkey = \"k\"\nbundle = \"b\"\n".to_owned(),
        "trust_domain = \"a.test\"\n".to_owned(),
        minimal("[[outbound]]\nname = \"o\"\nlisten = \"127.0.0.1:0\"\nconnect = []\n"),
        minimal("[[inbound]]\nname = \"i\"\nlisten = \"127.0.0.1:0\"\n"),
    ] {
        assert!(
            matches!(parse(&text), Err(ConfigError::Invalid { message, .. })
                if message.contains("missing field")),
            "{text}"
        );
    }
}

#[test]
fn invalid_values_name_their_key() {
    let cases: &[(String, &str)] = &[
        (minimal(OUT).replace("a.test", "A.test"), "trust_domain"),
        (
            minimal(OUT).replace("127.0.0.1:0", "localhost:0"),
            "outbound[0].listen",
        ),
        (
            minimal(OUT).replace("x.b.test", "bad name!"),
            "outbound[0].server_name",
        ),
        (
            minimal(OUT).replace("[\"127.0.0.1:1\"]", "[]"),
            "outbound[0].connect",
        ),
        (
            minimal(OUT).replace("[\"127.0.0.1:1\"]", "[\"127.0.0.1:1\", \"nohost\"]"),
            "outbound[0].connect[1]",
        ),
        (
            minimal(&format!("{OUT}allow = [\"spiffe://b.test/*/x\"]\n")),
            "outbound[0].allow",
        ),
        (
            minimal(&format!("{OUT}connect_timeout = \"0s\"\n")),
            "outbound[0].connect_timeout",
        ),
        (
            minimal(IN).replace("127.0.0.1:2", "127.0.0.1:notaport"),
            "inbound[0].forward",
        ),
        (
            minimal(&format!("{IN}trusted_relays = [\"not-an-id\"]\n")),
            "inbound[0].trusted_relays",
        ),
        (
            minimal(&format!("{IN}max_proxy_header = 8\n")),
            "inbound[0].max_proxy_header",
        ),
        (
            minimal(&format!("{OUT}max_connections = 0\n")),
            "outbound[0].max_connections",
        ),
        (
            minimal(&format!("{IN}max_connections = 0\n")),
            "inbound[0].max_connections",
        ),
        (
            minimal(&format!(
                "{OUT}{}",
                OUT.replace("127.0.0.1:1", "127.0.0.1:3")
            )),
            "outbound[1].name",
        ),
        (
            minimal(&format!("{OUT}{}", IN.replace("\"i\"", "\"o\""))),
            "inbound[0].name",
        ),
        (
            minimal(&OUT.replace("\"o\"", "\"bad name\"")),
            "outbound[0].name",
        ),
        (minimal(""), "outbound/inbound"),
        (
            minimal(OUT).replace("[identity]", "reload_interval = \"0s\"\n[identity]"),
            "reload_interval",
        ),
        (
            minimal(&format!("[admin]\nlisten = \"nope\"\n{OUT}")),
            "admin.listen",
        ),
    ];
    for (text, key) in cases {
        assert_eq!(invalid_key(text), *key, "{text}");
    }
}

#[test]
fn invalid_value_messages_say_what_to_write() {
    let err = parse(&minimal(OUT).replace("127.0.0.1:0", "localhost:0")).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("/etc/fedgate/sidecar.toml"), "{msg}");
    assert!(msg.contains("`outbound[0].listen`"), "{msg}");
    assert!(msg.contains("e.g."), "{msg}");
}

#[test]
fn host_port_forms() {
    let src = Source::parse("", Path::new("x")).unwrap();
    let v = Validator { src: &src };
    for ok in [
        "127.0.0.1:80",
        "[::1]:8080",
        "gateway.fedgate.svc:15443",
        "h:1",
    ] {
        assert!(v.host_port("k", ok).is_ok(), "{ok}");
    }
    for bad in [
        "",
        "host",
        ":80",
        "host:0",
        "host:99999",
        "::1:80",
        "host:port",
    ] {
        assert!(v.host_port("k", bad).is_err(), "{bad}");
    }
}

#[test]
fn load_reports_unreadable_file() {
    let err = Config::load(Path::new("/nonexistent/fedgate/sidecar.toml")).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }));
    assert!(err
        .to_string()
        .contains("/nonexistent/fedgate/sidecar.toml"));
}

proptest::proptest! {
    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
        let _ = parse(&text);
    }

    #[test]
    fn arbitrary_listener_values_never_panic(
        name in "\\PC{0,20}",
        listen in "\\PC{0,30}",
        connect in "\\PC{0,30}",
        allow in "\\PC{0,40}",
    ) {
        let text = minimal(&format!(
            "[[outbound]]\nname = {name:?}\nlisten = {listen:?}\nserver_name = \"x.test\"\n\
             connect = [{connect:?}]\nallow = [{allow:?}]\n"
        ));
        let _ = parse(&text);
    }
}

fn with_identity(identity: &str) -> String {
    format!("trust_domain = \"a.test\"\n[identity]\n{identity}{OUT}")
}

#[test]
fn a_workload_api_identity_parses() {
    let c = parse(&with_identity(
        "source = \"workload_api\"\nsocket = \"unix:///run/spire/agent.sock\"\n",
    ))
    .unwrap();
    assert_eq!(
        c.identity,
        WorkloadIdentity::WorkloadApi {
            socket: PathBuf::from("/run/spire/agent.sock")
        }
    );
    assert_eq!(
        c.identity.socket(),
        Some(Path::new("/run/spire/agent.sock"))
    );
    assert!(c.identity.files().is_none());
    // go-spiffe's `unix:/path` form too.
    let c = parse(&with_identity(
        "source = \"workload_api\"\nsocket = \"unix:/tmp/a.sock\"\n",
    ))
    .unwrap();
    assert_eq!(c.identity.socket(), Some(Path::new("/tmp/a.sock")));
    // `source = "files"` spelled out is the default.
    let c = parse(&with_identity(
        "source = \"files\"\nsvid = \"s.pem\"\nkey = \"s.key\"\nbundle = \"b.json\"\n",
    ))
    .unwrap();
    assert_eq!(
        c.identity.files().unwrap().svid,
        PathBuf::from("/etc/fedgate/s.pem")
    );
    assert!(c.identity.socket().is_none());
}

#[test]
fn workload_api_identity_errors_name_the_key() {
    let cases = [
        (
            "source = \"workload_api\"\n",
            "identity.socket",
            "is missing",
        ),
        (
            "source = \"workload_api\"\nsocket = \"/run/a.sock\"\n",
            "identity.socket",
            "not a Workload API address",
        ),
        (
            "source = \"workload_api\"\nsocket = \"tcp://127.0.0.1:1\"\n",
            "identity.socket",
            "not a Workload API address",
        ),
        (
            "source = \"workload_api\"\nsocket = \"unix://host/a.sock\"\n",
            "identity.socket",
            "not a Workload API address",
        ),
        (
            "source = \"workload_api\"\nsocket = \"\"\n",
            "identity.socket",
            "not a Workload API address",
        ),
        (
            "source = \"workload_api\"\nsocket = \"unix:///a.sock\"\nsvid = \"a.pem\"\n",
            "identity.svid",
            "not used with source",
        ),
        (
            "source = \"workload_api\"\nsocket = \"unix:///a.sock\"\n\
             federated_bundles = \"m.json\"\n",
            "identity.federated_bundles",
            "not used with source",
        ),
        (
            "svid = \"a.pem\"\nkey = \"a.key\"\nbundle = \"b.json\"\nsocket = \"unix:///a\"\n",
            "identity.socket",
            "only used with",
        ),
        (
            "svid = \"a.pem\"\nkey = \"a.key\"\n",
            "identity.bundle",
            "is missing",
        ),
        ("source = \"spire\"\n", "identity.source", "workload_api"),
    ];
    for (identity, key, what) in cases {
        let e = parse(&with_identity(identity)).unwrap_err().to_string();
        assert!(e.contains(key) && e.contains(what), "{identity}: {e}");
        assert!(e.contains("sidecar.toml"), "errors name the file: {e}");
    }
}
