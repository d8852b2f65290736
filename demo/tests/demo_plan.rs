//! `fedgate demo --plan`: plan parsing and port reservation (src/demo/plan.rs).

// Helpers outside #[test] fns unwrap too: a panic there is a test failure with a backtrace.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;

use fedgate_demo::plan::{Placement, Plan, Ports, NETNS_BASE_PORT};

const NETNS_PLAN: &str = r#"
    [roles.workload-a]
    netns = "fgd-1-wa"
    address = "10.231.1.2"
    [roles.edge-a]
    netns = "fgd-1-ea"
    address = "10.231.1.1"
    peer_address = "10.231.0.1"
    [roles.workload-b]
    netns = "fgd-1-wb"
    address = "10.231.2.2"
    [roles.edge-b]
    netns = "fgd-1-eb"
    address = "10.231.2.1"
    peer_address = "10.231.0.2"
"#;

#[test]
fn parses_a_netns_plan() {
    let p = Plan::parse(NETNS_PLAN).unwrap();
    assert_eq!(p.edge_a.netns(), Some("fgd-1-ea"));
    assert_eq!(p.edge_a.address.to_string(), "10.231.1.1");
    assert_eq!(p.edge_a.peer_address.to_string(), "10.231.0.1");
    assert_eq!(p.workload_b.peer_address, p.workload_b.address);
    assert!(p.uses_netns());
    assert!(!Plan::loopback().uses_netns());
}

#[test]
fn round_trips_through_to_toml() {
    let p = Plan::parse(NETNS_PLAN).unwrap();
    assert_eq!(Plan::parse(&p.to_toml()).unwrap(), p);
    let lo = Plan::loopback();
    assert_eq!(Plan::parse(&lo.to_toml()).unwrap(), lo);
}

#[test]
fn peer_address_defaults_to_address() {
    let text = NETNS_PLAN.replace("peer_address = \"10.231.0.2\"", "");
    let p = Plan::parse(&text).unwrap();
    assert_eq!(p.edge_b.peer_address, p.edge_b.address);
}

#[test]
fn refuses_missing_roles_unknown_keys_and_bad_values() {
    let missing = NETNS_PLAN.replace("[roles.edge-b]", "[roles.edge-c]");
    let e = Plan::parse(&missing).unwrap_err().to_string();
    assert!(e.contains("edge"), "{e}");
    let unknown = NETNS_PLAN.replace(
        "address = \"10.231.2.2\"",
        "address = \"10.231.2.2\"\nport = 1",
    );
    assert!(Plan::parse(&unknown)
        .unwrap_err()
        .to_string()
        .contains("port"));
    let peer_on_workload = NETNS_PLAN.replace(
        "address = \"10.231.1.2\"",
        "address = \"10.231.1.2\"\npeer_address = \"10.0.0.1\"",
    );
    assert!(Plan::parse(&peer_on_workload).is_err());
    let bad_ip = NETNS_PLAN.replace("10.231.1.2", "10.231.1.300");
    assert!(Plan::parse(&bad_ip).is_err());
    let bad_ns = NETNS_PLAN.replace("fgd-1-wa", "../etc");
    let e = Plan::parse(&bad_ns).unwrap_err().to_string();
    assert!(e.contains("roles.workload-a.netns"), "{e}");
}

#[test]
fn loopback_ports_are_reserved_until_released() {
    let mut ports = Ports::new();
    let p = Placement::loopback();
    let a = ports.take(&p, p.address).unwrap();
    let b = ports.take(&p, p.address).unwrap();
    assert_ne!(a, b);
    assert!(
        TcpListener::bind(a).is_err(),
        "reserved port must stay taken"
    );
    ports.release(&[a]);
    TcpListener::bind(a).unwrap();
}

#[test]
fn netns_ports_are_fixed_and_distinct() {
    let plan = Plan::parse(NETNS_PLAN).unwrap();
    let mut ports = Ports::new();
    let a = ports.take(&plan.edge_a, plan.edge_a.address).unwrap();
    let b = ports.take(&plan.edge_b, plan.edge_b.peer_address).unwrap();
    assert_eq!(a.port(), NETNS_BASE_PORT);
    assert_eq!(b.port(), NETNS_BASE_PORT + 1);
    assert_eq!(b.ip(), plan.edge_b.peer_address);
}

mod props {
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(s in ".{0,400}") {
            let _ = super::Plan::parse(&s);
        }

        #[test]
        fn any_valid_plan_round_trips(
            octets in proptest::array::uniform4(0u8..=255),
            ns in "[a-z][a-z0-9_-]{0,14}",
            with_ns in any::<bool>(),
        ) {
            let ip = std::net::Ipv4Addr::from(octets);
            let netns = if with_ns { format!("netns = \"{ns}\"\n") } else { String::new() };
            let text = format!(
                "[roles.workload-a]\n{netns}address = \"{ip}\"\n\
                 [roles.edge-a]\naddress = \"{ip}\"\npeer_address = \"::1\"\n\
                 [roles.workload-b]\naddress = \"{ip}\"\n\
                 [roles.edge-b]\n{netns}address = \"{ip}\"\n"
            );
            let plan = super::Plan::parse(&text).unwrap();
            prop_assert_eq!(plan.uses_netns(), with_ns);
            prop_assert_eq!(super::Plan::parse(&plan.to_toml()).unwrap(), plan);
        }
    }
}
