//! Config generation of `fedgate demo` (src/demo/configs.rs): the generated gateway configs
//! pass `fedgate config check`, and every generated file wires the topology as the scenarios
//! expect (routes, allow lists, relationships, no workload key in a gateway).

// Helpers outside #[test] fns unwrap too: a panic there is a test failure with a backtrace.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use fedgate_demo::children::Launcher;
use fedgate_demo::configs::{EdgeAddrs, OutboundAddrs, Side, Topology, WorkloadAddrs};
use fedgate_demo::pki::{Identities, WebHost};

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn topology(root: &Path) -> Topology {
    let edge = |base: u16| EdgeAddrs {
        admin: addr(base),
        egress: addr(base + 1),
        ingress: addr(base + 2),
        bridge_egress: addr(base + 3),
        bridge_ingress: addr(base + 4),
        endpoint: addr(base + 5),
        bridge_egress_mux: addr(base + 6),
    };
    let out = |base: u16| OutboundAddrs {
        federated: addr(base),
        bridged: addr(base + 1),
        bridged_mux: addr(base + 2),
    };
    let workload = |base: u16| WorkloadAddrs {
        echo: addr(base),
        sidecar_admin: addr(base + 5),
        inbound: addr(base + 1),
        outbound: out(base + 2),
    };
    Topology {
        root: root.to_owned(),
        ids: Identities::new(root),
        edge_a: edge(1100),
        edge_b: edge(1200),
        workload_a: workload(2100),
        workload_b: workload(2200),
        intruder_a: out(3100),
        outsider_c: out(3200),
        impostor_a: out(3300),
        web_host: WebHost::Dns("localhost".into()),
        min_refresh: Duration::from_millis(500),
        default_refresh: Duration::from_secs(2),
        sidecar_reload: Duration::from_millis(300),
    }
}

fn parse(text: &str) -> toml::Table {
    text.parse::<toml::Table>()
        .unwrap_or_else(|e| panic!("generated TOML does not parse: {e}\n{text}"))
}

fn listener<'a>(gw: &'a toml::Table, name: &str) -> &'a toml::Table {
    gw["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_table().unwrap())
        .find(|l| l["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no listener {name}"))
}

fn strings(v: &toml::Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn gateway_a_routes_both_modes_to_b_and_federates_over_https_spiffe() {
    let t = topology(Path::new("/demo"));
    let gw = parse(&t.gateway_toml(Side::A));
    assert_eq!(gw["trust_domain"].as_str(), Some("cluster-a.demo"));

    let egress = listener(&gw, "egress");
    assert_eq!(egress["kind"].as_str(), Some("passthrough"));
    let route = egress["routes"][0].as_table().unwrap();
    assert_eq!(route["sni"].as_str(), Some("*.cluster-b.demo"));
    assert_eq!(strings(&route["upstreams"]), [t.edge_b.ingress.to_string()]);

    let ingress = listener(&gw, "ingress");
    assert_eq!(
        strings(&ingress["routes"][0]["upstreams"]),
        [t.workload_a.inbound.to_string()]
    );

    let be = listener(&gw, "bridge-egress");
    assert_eq!(be["kind"].as_str(), Some("bridge-egress"));
    let r = be["routes"][0].as_table().unwrap();
    assert_eq!(r["sni"].as_str(), Some("echo.cluster-b.demo"));
    assert_eq!(
        strings(&r["upstreams"]),
        [t.edge_b.bridge_ingress.to_string()]
    );
    assert_eq!(r["peer_id"].as_str(), Some(t.ids.bridge_b.id.as_str()));
    assert_eq!(strings(&r["allow"]), std::slice::from_ref(&t.ids.app_a.id));

    let bi = listener(&gw, "bridge-ingress");
    let peer = bi["bridge_peers"][0].as_table().unwrap();
    assert_eq!(peer["id"].as_str(), Some(t.ids.bridge_b.id.as_str()));
    assert_eq!(strings(&peer["may_speak_for"]), ["cluster-b.demo"]);
    let r = bi["routes"][0].as_table().unwrap();
    assert_eq!(
        strings(&r["server_id"]),
        std::slice::from_ref(&t.ids.app_a.id)
    );
    assert_eq!(strings(&r["allow"]), std::slice::from_ref(&t.ids.app_b.id));
    assert_eq!(r["send_proxy_header"].as_bool(), Some(true));

    let peer = gw["federation"]["peers"][0].as_table().unwrap();
    assert_eq!(peer["trust_domain"].as_str(), Some("cluster-b.demo"));
    assert_eq!(peer["profile"].as_str(), Some("https_spiffe"));
    assert_eq!(
        peer["endpoint_id"].as_str(),
        Some(t.ids.endpoint_b.id.as_str())
    );
    assert_eq!(
        peer["url"].as_str().unwrap(),
        format!("https://{}/", t.edge_b.endpoint)
    );
    // The bootstrap is a copy, not the live CA file that rotation changes.
    let bootstrap = PathBuf::from(peer["bootstrap_bundle"].as_str().unwrap());
    assert_eq!(bootstrap, t.bootstrap_bundle(Side::A));
    assert_ne!(bootstrap, Identities::bundle(&t.ids.ca_b));
    assert_eq!(
        gw["bridge"]["bundle"].as_str().unwrap(),
        Identities::bundle(&t.ids.ca_bridge).display().to_string()
    );
}

#[test]
fn gateway_b_federates_with_a_over_https_web_with_the_private_web_ca() {
    let t = topology(Path::new("/demo"));
    let gw = parse(&t.gateway_toml(Side::B));
    let peer = gw["federation"]["peers"][0].as_table().unwrap();
    assert_eq!(peer["trust_domain"].as_str(), Some("cluster-a.demo"));
    assert_eq!(peer["profile"].as_str(), Some("https_web"));
    assert_eq!(
        peer["url"].as_str().unwrap(),
        format!("https://localhost:{}/", t.edge_a.endpoint.port())
    );
    assert_eq!(
        peer["ca"].as_str().unwrap(),
        t.ids.web_ca.display().to_string()
    );
    assert!(!peer.contains_key("endpoint_id"));
}

#[test]
fn gateways_hold_no_workload_key() {
    let t = topology(Path::new("/demo"));
    for side in [Side::A, Side::B] {
        let text = t.gateway_toml(side);
        for svid in [
            &t.ids.app_a,
            &t.ids.app_b,
            &t.ids.intruder_a,
            &t.ids.app_c,
            &t.ids.impostor_a,
        ] {
            let key = svid.key().display().to_string();
            assert!(
                !text.contains(&key),
                "gateway config names workload key {key}"
            );
        }
    }
}

#[test]
fn sidecars_allow_exact_ids_and_read_the_distributed_bundles() {
    let t = topology(Path::new("/demo"));
    let b = parse(&t.app_sidecar_toml(Side::B));
    assert_eq!(
        b["identity"]["federated_bundles"].as_str().unwrap(),
        t.distributed_map(Side::B).display().to_string()
    );
    let inbound = b["inbound"][0].as_table().unwrap();
    assert_eq!(
        strings(&inbound["allow"]),
        std::slice::from_ref(&t.ids.app_a.id)
    );
    assert_eq!(
        strings(&inbound["trusted_relays"]),
        std::slice::from_ref(&t.ids.gateway_b.id)
    );
    assert_eq!(inbound["proxy_protocol"].as_bool(), Some(true));
    assert_eq!(
        inbound["forward"].as_str().unwrap(),
        t.workload_b.echo.to_string()
    );

    let a = parse(&t.app_sidecar_toml(Side::A));
    let outs = a["outbound"].as_array().unwrap();
    let fed = outs[0].as_table().unwrap();
    assert_eq!(fed["server_name"].as_str(), Some("echo.cluster-b.demo"));
    assert_eq!(strings(&fed["connect"]), [t.edge_a.egress.to_string()]);
    assert_eq!(
        strings(&fed["allow"]),
        std::slice::from_ref(&t.ids.app_b.id)
    );
    let bri = outs[1].as_table().unwrap();
    assert_eq!(
        strings(&bri["connect"]),
        [t.edge_a.bridge_egress.to_string()]
    );
    assert_eq!(
        strings(&bri["allow"]),
        std::slice::from_ref(&t.ids.gateway_a.id)
    );

    let intruder = parse(&t.intruder_sidecar_toml());
    assert_eq!(intruder["trust_domain"].as_str(), Some("cluster-a.demo"));
    assert!(!intruder.contains_key("inbound"));
    let outsider = parse(&t.outsider_sidecar_toml());
    assert_eq!(outsider["trust_domain"].as_str(), Some("cluster-c.demo"));
    // It trusts A and B through A's bundle map, so it gets as far as presenting its SVID.
    assert_eq!(
        outsider["identity"]["federated_bundles"].as_str().unwrap(),
        t.distributed_map(Side::A).display().to_string()
    );
}

#[test]
fn the_impostor_claims_a_s_workload_id_with_another_ca_and_trusts_the_real_bundle() {
    let t = topology(Path::new("/demo"));
    assert_eq!(t.ids.impostor_a.id, t.ids.app_a.id);
    assert_ne!(t.ids.ca_impostor, t.ids.ca_a);
    let imp = parse(&t.impostor_sidecar_toml());
    assert_eq!(imp["trust_domain"].as_str(), Some("cluster-a.demo"));
    assert_eq!(
        imp["identity"]["svid"].as_str().unwrap(),
        t.ids.impostor_a.pem().display().to_string()
    );
    assert_eq!(
        imp["identity"]["bundle"].as_str().unwrap(),
        Identities::bundle(&t.ids.ca_a).display().to_string()
    );
    let outs = imp["outbound"].as_array().unwrap();
    assert_eq!(
        outs[0]["listen"].as_str().unwrap(),
        t.impostor_a.federated.to_string()
    );
}

#[test]
fn paths_with_quotes_stay_valid_toml() {
    let t = topology(Path::new("/tmp/we\"ird dir\\x"));
    for text in [
        t.gateway_toml(Side::A),
        t.gateway_toml(Side::B),
        t.app_sidecar_toml(Side::A),
        t.intruder_sidecar_toml(),
        t.outsider_sidecar_toml(),
        t.impostor_sidecar_toml(),
    ] {
        let table = parse(&text);
        let svid = table["identity"]["svid"].as_str().unwrap();
        assert!(svid.starts_with("/tmp/we\"ird dir\\x/"), "{svid}");
    }
}

#[test]
fn https_web_urls_use_the_host_the_certificate_names() {
    let mut t = topology(Path::new("/demo"));
    t.web_host = WebHost::Ip("10.231.0.1".parse().unwrap());
    assert_eq!(
        t.endpoint_url(Side::A),
        format!("https://10.231.0.1:{}/", t.edge_a.endpoint.port())
    );
    t.web_host = WebHost::Ip("fd00::1".parse().unwrap());
    assert!(t.endpoint_url(Side::A).starts_with("https://[fd00::1]:"));
}

/// The real PKI (`fedgate ca` children) plus the generated configs: gateways checked by the
/// real `fedgate config check`, sidecars by the sidecar's config parser.
#[tokio::test]
async fn generated_configs_pass_config_check_and_the_sidecar_parser() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    std::fs::create_dir_all(root.join("logs")).unwrap();
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_fedgate"));
    let launcher = Launcher::new(exe.clone(), root.join("logs"));
    let t = topology(&root);
    t.ids
        .create(&launcher, Duration::from_secs(2), &t.web_host)
        .await
        .unwrap();
    for side in [Side::A, Side::B] {
        std::fs::create_dir_all(t.gateway_config(side).parent().unwrap().join("bootstrap"))
            .unwrap();
        std::fs::write(t.gateway_config(side), t.gateway_toml(side)).unwrap();
    }
    std::fs::copy(Identities::bundle(&t.ids.ca_b), t.bootstrap_bundle(Side::A)).unwrap();
    // The sidecar configs parse with the sidecar's own parser (every key, allow list and path).
    for (name, text) in [
        ("sidecar-app-a", t.app_sidecar_toml(Side::A)),
        ("sidecar-app-b", t.app_sidecar_toml(Side::B)),
        ("sidecar-intruder-a", t.intruder_sidecar_toml()),
        ("sidecar-outsider-c", t.outsider_sidecar_toml()),
        ("sidecar-impostor-a", t.impostor_sidecar_toml()),
    ] {
        let path = t.sidecar_config(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &text).unwrap();
        let config = fedgate::config::sidecar::Config::load(&path)
            .unwrap_or_else(|e| panic!("the sidecar parser refused {name}: {e}\n{text}"));
        assert!(
            config.outbound.iter().all(|o| !o.allow.allows_nothing()),
            "{name}"
        );
    }
    for side in [Side::A, Side::B] {
        let out = std::process::Command::new(&exe)
            .arg("config")
            .arg("check")
            .arg(t.gateway_config(side))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "config check refused gateway-{}: {}\n{}",
            side.lower(),
            String::from_utf8_lossy(&out.stderr),
            t.gateway_toml(side)
        );
    }
}
