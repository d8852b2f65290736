//! Configuration files for the demo's children, generated from a [`Topology`] (pure: text in,
//! text out; the caller writes the files).
//!
//! Invariants: the generated files use only the documented schemas (docs/configuration.md,
//! docs/bridge.md, docs/sidecar.md), so `fedgate config check` and the sidecar's parser accept
//! them; every path in them is absolute; every allow list names exact IDs (default deny
//! everywhere else); gateways hold no workload key (invariant 5): their `[identity]` is the
//! gateway's own SVID, used only by the bridge listeners.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::pki::{Identities, WebHost, TD_A, TD_B, TD_BRIDGE};
use super::plan::toml_str;

/// One of the two clusters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    A,
    B,
}

/// The listeners of one edge (gateway and bundle endpoint).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EdgeAddrs {
    pub admin: SocketAddr,
    /// Passthrough egress: the cluster's sidecars dial it.
    pub egress: SocketAddr,
    /// Passthrough ingress: the other edge dials it.
    pub ingress: SocketAddr,
    pub bridge_egress: SocketAddr,
    /// Bridge egress whose route uses `transport = "mux"` (pooled HTTP/2 tunnels).
    pub bridge_egress_mux: SocketAddr,
    pub bridge_ingress: SocketAddr,
    /// The standalone `fedgate bundle serve` of this cluster's trust domain.
    pub endpoint: SocketAddr,
}

/// The listeners of one sidecar's outbound side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboundAddrs {
    pub federated: SocketAddr,
    pub bridged: SocketAddr,
    /// Bridged through the gateway's `transport = "mux"` egress.
    pub bridged_mux: SocketAddr,
}

/// The listeners of one cluster's workload (echo + sidecar).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkloadAddrs {
    pub echo: SocketAddr,
    /// The sidecar's admin listener (`/metrics`: identity generation).
    pub sidecar_admin: SocketAddr,
    pub inbound: SocketAddr,
    pub outbound: OutboundAddrs,
}

/// Everything the configs refer to: identities, directories and addresses.
#[derive(Clone, Debug)]
pub struct Topology {
    pub root: PathBuf,
    pub ids: Identities,
    pub edge_a: EdgeAddrs,
    pub edge_b: EdgeAddrs,
    pub workload_a: WorkloadAddrs,
    pub workload_b: WorkloadAddrs,
    /// Cluster A's unauthorized workload (scenario 3).
    pub intruder_a: OutboundAddrs,
    /// The cluster-c.demo workload that nobody federates with (scenario 4).
    pub outsider_c: OutboundAddrs,
    /// The impostor of A's workload (another CA, same ID; scenario 4).
    pub impostor_a: OutboundAddrs,
    /// The host name in cluster A's (https_web) endpoint URL.
    pub web_host: WebHost,
    /// The gateways' refresh bounds (the bundles' hint is set by `ca init`).
    pub min_refresh: Duration,
    pub default_refresh: Duration,
    /// The sidecars' identity-file poll interval.
    pub sidecar_reload: Duration,
}

// === impl Side ===

impl Side {
    pub fn td(self) -> &'static str {
        match self {
            Side::A => TD_A,
            Side::B => TD_B,
        }
    }

    pub fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }

    pub fn lower(self) -> &'static str {
        match self {
            Side::A => "a",
            Side::B => "b",
        }
    }

    /// The SNI / destination name of this cluster's echo service.
    pub fn echo_name(self) -> String {
        format!("echo.{}", self.td())
    }
}

// === impl Topology ===

impl Topology {
    pub fn edge(&self, side: Side) -> &EdgeAddrs {
        match side {
            Side::A => &self.edge_a,
            Side::B => &self.edge_b,
        }
    }

    pub fn workload(&self, side: Side) -> &WorkloadAddrs {
        match side {
            Side::A => &self.workload_a,
            Side::B => &self.workload_b,
        }
    }

    pub fn ca_dir(&self, side: Side) -> &Path {
        match side {
            Side::A => &self.ids.ca_a,
            Side::B => &self.ids.ca_b,
        }
    }

    pub fn gateway_dir(&self, side: Side) -> PathBuf {
        self.root.join(format!("gateway-{}", side.lower()))
    }

    pub fn gateway_config(&self, side: Side) -> PathBuf {
        self.gateway_dir(side).join("gateway.toml")
    }

    /// The bootstrap copy of the peer's bundle that `side`'s gateway starts from.
    pub fn bootstrap_bundle(&self, side: Side) -> PathBuf {
        self.gateway_dir(side)
            .join("bootstrap")
            .join(format!("{}.json", side.other().td()))
    }

    /// The bundle map `side`'s gateway distributes to its cluster's sidecars.
    pub fn distributed_map(&self, side: Side) -> PathBuf {
        self.gateway_dir(side)
            .join("bundles-out")
            .join("current")
            .join("bundles.json")
    }

    pub fn sidecar_config(&self, name: &str) -> PathBuf {
        self.root.join(name).join("sidecar.toml")
    }

    /// The URL of `side`'s federation endpoint as its peer dials it.
    pub fn endpoint_url(&self, side: Side) -> String {
        let ep = self.edge(side).endpoint;
        match side {
            // https_web: the certificate is checked against the URL's host.
            Side::A => format!("https://{}:{}/", self.web_host.url_host(), ep.port()),
            Side::B => format!("https://{ep}/"),
        }
    }

    fn gateway_svid(&self, side: Side) -> &super::pki::Svid {
        match side {
            Side::A => &self.ids.gateway_a,
            Side::B => &self.ids.gateway_b,
        }
    }

    fn bridge_svid(&self, side: Side) -> &super::pki::Svid {
        match side {
            Side::A => &self.ids.bridge_a,
            Side::B => &self.ids.bridge_b,
        }
    }

    fn app(&self, side: Side) -> &super::pki::Svid {
        match side {
            Side::A => &self.ids.app_a,
            Side::B => &self.ids.app_b,
        }
    }

    /// `fedgate run` config of `side`'s gateway: passthrough and bridge listeners in both
    /// directions, federation with the other cluster's endpoint, distribution to sidecars.
    pub fn gateway_toml(&self, side: Side) -> String {
        let me = side;
        let peer = side.other();
        let dir = self.gateway_dir(me);
        let e = self.edge(me);
        let pe = self.edge(peer);
        let w = self.workload(me);
        let gw = self.gateway_svid(me);
        let br = self.bridge_svid(me);
        let mut s = format!(
            "# gateway of {td}, generated by `fedgate demo`\n\
             trust_domain = {td_q}\n\
             log_format = \"human\"\n\
             drain_timeout = \"1s\"\n\n\
             [identity]   # the gateway's own SVID: bridge termination/re-origination only\n\
             svid = {svid}\nkey = {key}\nbundle = {bundle}\n\n\
             [admin]\nlisten = \"{admin}\"\n\n\
             [federation]\n\
             state_dir = {state}\n\
             distribute_dir = {dist}\n\
             min_refresh = \"{min}\"\n\
             max_refresh = \"30s\"\n\
             default_refresh = \"{def}\"\n\n\
             [[federation.peers]]\n\
             trust_domain = {ptd}\n\
             url = {url}\n",
            td = me.td(),
            td_q = toml_str(me.td()),
            svid = path(&gw.pem()),
            key = path(&gw.key()),
            bundle = path(&Identities::bundle(self.ca_dir(me))),
            admin = e.admin,
            state = path(&dir.join("state")),
            dist = path(&dir.join("bundles-out")),
            min = humantime::format_duration(self.min_refresh),
            def = humantime::format_duration(self.default_refresh),
            ptd = toml_str(peer.td()),
            url = toml_str(&self.endpoint_url(peer)),
        );
        match peer {
            Side::A => s.push_str(&format!(
                "profile = \"https_web\"\nca = {}\n\n",
                path(&self.ids.web_ca)
            )),
            Side::B => s.push_str(&format!(
                "profile = \"https_spiffe\"\nendpoint_id = {}\nbootstrap_bundle = {}\n\n",
                toml_str(&self.ids.endpoint_b.id),
                path(&self.bootstrap_bundle(me)),
            )),
        }
        s.push_str(&format!(
            "[bridge]\n\
             trust_domain = {btd}\n\
             svid = {bsvid}\nkey = {bkey}\n\
             bundle = {bbundle}   # the bridge bundle reaches gateways as a file\n\n",
            btd = toml_str(TD_BRIDGE),
            bsvid = path(&br.pem()),
            bkey = path(&br.key()),
            bbundle = path(&Identities::bundle(&self.ids.ca_bridge)),
        ));
        // Federated (SNI passthrough) mode.
        s.push_str(&format!(
            "[[listeners]]   # federated: our sidecars -> the peer's ingress, never decrypted\n\
             name = \"egress\"\nkind = \"passthrough\"\nlisten = \"{eg}\"\n\
             \x20 [[listeners.routes]]\n\
             \x20 sni = {sni}\n\
             \x20 upstreams = [\"{up}\"]\n\n\
             [[listeners]]   # federated: the peer's workloads -> our sidecars\n\
             name = \"ingress\"\nkind = \"passthrough\"\nlisten = \"{ing}\"\n\
             \x20 [[listeners.routes]]\n\
             \x20 sni = {my_sni}\n\
             \x20 upstreams = [\"{inb}\"]\n\n",
            eg = e.egress,
            sni = toml_str(&format!("*.{}", peer.td())),
            up = pe.ingress,
            ing = e.ingress,
            my_sni = toml_str(&format!("*.{}", me.td())),
            inb = w.inbound,
        ));
        // Bridged (re-originated) mode.
        s.push_str(&format!(
            "[[listeners]]   # bridged: terminate our workload's mTLS, re-originate over the bridge\n\
             name = \"bridge-egress\"\nkind = \"bridge-egress\"\nlisten = \"{beg}\"\n\
             \x20 [[listeners.routes]]\n\
             \x20 sni = {psni}\n\
             \x20 upstreams = [\"{pbi}\"]\n\
             \x20 peer_id = {ppeer}\n\
             \x20 allow = [{me_app}]\n\n\
             [[listeners]]   # bridged over multiplexed tunnels: one HTTP/2 stream per connection\n\
             name = \"bridge-egress-mux\"\nkind = \"bridge-egress\"\nlisten = \"{begm}\"\n\
             \x20 [[listeners.routes]]\n\
             \x20 sni = {psni}\n\
             \x20 upstreams = [\"{pbi}\"]\n\
             \x20 peer_id = {ppeer}\n\
             \x20 allow = [{me_app}]\n\
             \x20 transport = \"mux\"\n\n\
             [[listeners]]   # bridged: the peer gateway -> our workloads\n\
             name = \"bridge-ingress\"\nkind = \"bridge-ingress\"\nlisten = \"{bin}\"\n\
             \x20 [[listeners.bridge_peers]]\n\
             \x20 id = {ppeer}\n\
             \x20 may_speak_for = [{ptd}]\n\
             \x20 [[listeners.routes]]\n\
             \x20 sni = {msni}\n\
             \x20 upstreams = [\"{inb}\"]\n\
             \x20 server_id = [{my_app}]\n\
             \x20 allow = [{peer_app}]\n\
             \x20 send_proxy_header = true\n",
            beg = e.bridge_egress,
            begm = e.bridge_egress_mux,
            psni = toml_str(&peer.echo_name()),
            pbi = pe.bridge_ingress,
            ppeer = toml_str(&self.bridge_svid(peer).id),
            me_app = toml_str(&self.app(me).id),
            bin = e.bridge_ingress,
            ptd = toml_str(peer.td()),
            msni = toml_str(&me.echo_name()),
            inb = w.inbound,
            my_app = toml_str(&self.app(me).id),
            peer_app = toml_str(&self.app(peer).id),
        ));
        s
    }

    /// `fedgate sidecar` config of `side`'s workload: inbound to its echo (PROXY v2 with the
    /// caller's ID, its gateway as trusted relay), outbound to the other cluster's echo in
    /// both modes.
    pub fn app_sidecar_toml(&self, side: Side) -> String {
        let w = self.workload(side);
        let mut s = self.sidecar_head(
            side.td(),
            self.app(side),
            &Identities::bundle(self.ca_dir(side)),
            side,
        );
        s.push_str(&format!("\n[admin]\nlisten = \"{}\"\n", w.sidecar_admin));
        s.push_str(&self.outbounds(side, &w.outbound));
        s.push_str(&format!(
            "\n[[inbound]]\n\
             name = \"echo\"\n\
             listen = \"{listen}\"\n\
             forward = \"{echo}\"\n\
             allow = [{peer_app}]\n\
             proxy_protocol = true\n\
             trusted_relays = [{gw}]\n",
            listen = w.inbound,
            echo = w.echo,
            peer_app = toml_str(&self.app(side.other()).id),
            gw = toml_str(&self.gateway_svid(side).id),
        ));
        s
    }

    /// Cluster A's unauthorized workload: same outbound listeners as A's app, another ID.
    pub fn intruder_sidecar_toml(&self) -> String {
        let mut s = self.sidecar_head(
            TD_A,
            &self.ids.intruder_a,
            &Identities::bundle(&self.ids.ca_a),
            Side::A,
        );
        s.push_str(&self.outbounds(Side::A, &self.intruder_a));
        s
    }

    /// A cluster-c.demo workload placed in cluster A's network, dialling A's gateway. It
    /// trusts A and B (so that it gets as far as presenting its SVID); nobody trusts it.
    pub fn outsider_sidecar_toml(&self) -> String {
        let mut s = self.sidecar_head(
            super::pki::TD_C,
            &self.ids.app_c,
            &Identities::bundle(&self.ids.ca_c),
            Side::A,
        );
        s.push_str(&self.outbounds(Side::A, &self.outsider_c));
        s
    }

    /// A workload in cluster A's network whose SVID names A's own workload ID but chains to
    /// an impostor CA. It trusts the real cluster-a.demo bundle (public), so it gets as far as
    /// presenting its SVID; everyone verifies that against the real bundle and refuses it.
    pub fn impostor_sidecar_toml(&self) -> String {
        let mut s = self.sidecar_head(
            TD_A,
            &self.ids.impostor_a,
            &Identities::bundle(&self.ids.ca_a),
            Side::A,
        );
        s.push_str(&self.outbounds(Side::A, &self.impostor_a));
        s
    }

    fn sidecar_head(&self, td: &str, svid: &super::pki::Svid, bundle: &Path, net: Side) -> String {
        format!(
            "# sidecar of {id}, generated by `fedgate demo`\n\
             trust_domain = {td}\n\
             reload_interval = \"{reload}\"\n\
             drain_timeout = \"1s\"\n\n\
             [identity]\n\
             svid = {svid}\nkey = {key}\nbundle = {bundle}\n\
             federated_bundles = {fed}   # written by the gateway\n",
            id = svid.id,
            td = toml_str(td),
            reload = humantime::format_duration(self.sidecar_reload),
            svid = path(&svid.pem()),
            key = path(&svid.key()),
            bundle = path(bundle),
            fed = path(&self.distributed_map(net)),
        )
    }

    /// Outbound listeners of a workload in `side`'s network towards the other cluster's echo.
    fn outbounds(&self, side: Side, o: &OutboundAddrs) -> String {
        let peer = side.other();
        let e = self.edge(side);
        format!(
            "\n[[outbound]]   # federated: end-to-end mTLS with the peer's workload\n\
             name = \"federated\"\n\
             listen = \"{fl}\"\n\
             server_name = {sni}\n\
             connect = [\"{eg}\"]\n\
             allow = [{peer_app}]\n\n\
             [[outbound]]   # bridged: mTLS with our own gateway only\n\
             name = \"bridged\"\n\
             listen = \"{bl}\"\n\
             server_name = {sni}\n\
             connect = [\"{beg}\"]\n\
             allow = [{gw}]\n\n\
             [[outbound]]   # bridged over the gateway's multiplexed tunnels\n\
             name = \"bridged-mux\"\n\
             listen = \"{bml}\"\n\
             server_name = {sni}\n\
             connect = [\"{begm}\"]\n\
             allow = [{gw}]\n",
            fl = o.federated,
            sni = toml_str(&peer.echo_name()),
            eg = e.egress,
            peer_app = toml_str(&self.app(peer).id),
            bl = o.bridged,
            beg = e.bridge_egress,
            bml = o.bridged_mux,
            begm = e.bridge_egress_mux,
            gw = toml_str(&self.gateway_svid(side).id),
        )
    }
}

fn path(p: &Path) -> String {
    toml_str(&p.display().to_string())
}
