//! The demo plan: where each role runs (an optional network namespace and an address), and
//! the ports of every listener.
//!
//! ```toml
//! [roles.workload-a]            # echo A, sidecars of cluster A, the caller
//! netns = "fgd-wa"              # optional: run inside this network namespace
//! address = "10.231.1.2"
//! [roles.edge-a]                # gateway A and cluster A's bundle endpoint
//! netns = "fgd-ea"
//! address = "10.231.1.1"        # the address cluster A's workloads dial
//! peer_address = "10.231.0.1"   # the address cluster B's edge dials (default: address)
//! [roles.workload-b]
//! ...
//! [roles.edge-b]
//! ...
//! ```
//!
//! Invariants: a parsed [`Plan`] has all four roles; unknown keys are refused; namespace names
//! are plain names (`ip netns` accepts them as file names under /run/netns). Ports: a role
//! outside a namespace gets ports reserved by binding port 0 on its address and holding the
//! socket until the child that will listen there is about to start ([`Ports::release`]), so no
//! fixed port is ever used on a shared host; a role inside a namespace, which the plan's author
//! created for the demo alone, gets fixed ports counted up from [`NETNS_BASE_PORT`].

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;

use anyhow::{bail, Context as _};
use serde::Deserialize;

/// First port handed out inside network namespaces.
pub const NETNS_BASE_PORT: u16 = 20000;

/// The four places the demo runs things.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    WorkloadA,
    EdgeA,
    WorkloadB,
    EdgeB,
}

/// Where one role runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    pub netns: Option<String>,
    /// The address the role's listeners bind and its own cluster dials.
    pub address: IpAddr,
    /// For edges: the address the other cluster's edge dials.
    pub peer_address: IpAddr,
}

/// Where every role runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub workload_a: Placement,
    pub edge_a: Placement,
    pub workload_b: Placement,
    pub edge_b: Placement,
}

/// Port reservations (see the module invariants).
#[derive(Debug, Default)]
pub struct Ports {
    /// Sockets held so nobody else takes the port before the child binds it.
    held: HashMap<SocketAddr, TcpListener>,
    next_fixed: u16,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePlan {
    roles: FileRoles,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRoles {
    #[serde(rename = "workload-a")]
    workload_a: FileWorkload,
    #[serde(rename = "edge-a")]
    edge_a: FileEdge,
    #[serde(rename = "workload-b")]
    workload_b: FileWorkload,
    #[serde(rename = "edge-b")]
    edge_b: FileEdge,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileWorkload {
    netns: Option<String>,
    address: IpAddr,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEdge {
    netns: Option<String>,
    address: IpAddr,
    peer_address: Option<IpAddr>,
}

// === impl Role ===

impl Role {
    pub const ALL: [Role; 4] = [Role::WorkloadA, Role::EdgeA, Role::WorkloadB, Role::EdgeB];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::WorkloadA => "workload-a",
            Role::EdgeA => "edge-a",
            Role::WorkloadB => "workload-b",
            Role::EdgeB => "edge-b",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// === impl Placement ===

impl Placement {
    /// 127.0.0.1 in the current network namespace.
    pub fn loopback() -> Self {
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        Self {
            netns: None,
            address: lo,
            peer_address: lo,
        }
    }

    pub fn netns(&self) -> Option<&str> {
        self.netns.as_deref()
    }
}

// === impl Plan ===

impl Plan {
    /// Everything on 127.0.0.1 in the current network namespace.
    pub fn loopback() -> Self {
        Self {
            workload_a: Placement::loopback(),
            edge_a: Placement::loopback(),
            workload_b: Placement::loopback(),
            edge_b: Placement::loopback(),
        }
    }

    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read plan file {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("plan file {}", path.display()))
    }

    /// Parses a plan (see the module docs for the format).
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let file: FilePlan = toml::from_str(text).map_err(|e| {
            anyhow::anyhow!(
                "{}; expected [roles.workload-a], [roles.edge-a], [roles.workload-b] and \
                 [roles.edge-b], each with `address` and optional `netns` (edges also \
                 `peer_address`)",
                e.to_string().trim_end()
            )
        })?;
        let r = file.roles;
        let plan = Self {
            workload_a: workload(Role::WorkloadA, r.workload_a)?,
            edge_a: edge(Role::EdgeA, r.edge_a)?,
            workload_b: workload(Role::WorkloadB, r.workload_b)?,
            edge_b: edge(Role::EdgeB, r.edge_b)?,
        };
        Ok(plan)
    }

    pub fn role(&self, role: Role) -> &Placement {
        match role {
            Role::WorkloadA => &self.workload_a,
            Role::EdgeA => &self.edge_a,
            Role::WorkloadB => &self.workload_b,
            Role::EdgeB => &self.edge_b,
        }
    }

    /// Whether any role runs inside a network namespace.
    pub fn uses_netns(&self) -> bool {
        Role::ALL.iter().any(|r| self.role(*r).netns.is_some())
    }

    /// The plan as TOML, as written to `DIR/plan.toml` for the record.
    pub fn to_toml(&self) -> String {
        let mut s = String::from("# the plan this demo ran with\n");
        for role in Role::ALL {
            let p = self.role(role);
            s.push_str(&format!("[roles.{role}]\n"));
            if let Some(ns) = &p.netns {
                s.push_str(&format!("netns = {}\n", toml_str(ns)));
            }
            s.push_str(&format!("address = \"{}\"\n", p.address));
            if matches!(role, Role::EdgeA | Role::EdgeB) {
                s.push_str(&format!("peer_address = \"{}\"\n", p.peer_address));
            }
        }
        s
    }
}

fn workload(role: Role, w: FileWorkload) -> anyhow::Result<Placement> {
    check_netns(role, w.netns.as_deref())?;
    Ok(Placement {
        netns: w.netns,
        address: w.address,
        peer_address: w.address,
    })
}

fn edge(role: Role, e: FileEdge) -> anyhow::Result<Placement> {
    check_netns(role, e.netns.as_deref())?;
    Ok(Placement {
        netns: e.netns,
        address: e.address,
        peer_address: e.peer_address.unwrap_or(e.address),
    })
}

fn check_netns(role: Role, ns: Option<&str>) -> anyhow::Result<()> {
    let Some(ns) = ns else { return Ok(()) };
    let ok = !ns.is_empty()
        && ns.len() <= 64
        && !ns.starts_with('.')
        && ns
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !ok {
        bail!(
            "roles.{role}.netns {ns:?}: a namespace name is 1-64 characters of A-Z a-z 0-9 - _ . \
             and does not start with a dot"
        );
    }
    Ok(())
}

/// A TOML basic string with every special character escaped.
pub fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

// === impl Ports ===

impl Ports {
    pub fn new() -> Self {
        Self {
            held: HashMap::new(),
            next_fixed: NETNS_BASE_PORT,
        }
    }

    /// A port for a listener of a role placed at `p`, bound on `ip`.
    pub fn take(&mut self, p: &Placement, ip: IpAddr) -> anyhow::Result<SocketAddr> {
        if p.netns.is_some() {
            let port = self.next_fixed;
            self.next_fixed = self
                .next_fixed
                .checked_add(1)
                .context("ran out of ports for the namespaces")?;
            return Ok(SocketAddr::new(ip, port));
        }
        let l = TcpListener::bind(SocketAddr::new(ip, 0))
            .with_context(|| format!("cannot reserve a port on {ip}"))?;
        let addr = l
            .local_addr()
            .with_context(|| format!("cannot read the reserved port on {ip}"))?;
        self.held.insert(addr, l);
        Ok(addr)
    }

    /// Releases the reservations of `addrs`, right before the child that binds them starts.
    pub fn release(&mut self, addrs: &[SocketAddr]) {
        for a in addrs {
            self.held.remove(a);
        }
    }
}
