//! Setting the demo up: the directory, the plan's addresses, the PKI, the configs, and the
//! children in dependency order (endpoints, echo workloads, gateways, sidecars), each waited
//! for by what it reports (a listening line, `/readyz`, the bundle map it writes).
//!
//! Invariants: a port reserved for a child is released only right before that child starts;
//! sidecars start only once their gateway's bundle map holds the peer's bundle.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use super::children::{Children, Launcher, Running};
use super::configs::{EdgeAddrs, OutboundAddrs, Side, Topology, WorkloadAddrs};
use super::observe::map_entry;
use super::pki::{args, Identities, WebHost};
use super::plan::{Placement, Plan, Ports, Role};
use super::report::Progress;
use super::{
    edge_role, workload_role, Demo, Options, Procs, MARKER, POLL, PROBE_DEADLINE, START_DEADLINE,
};

// === impl Demo ===

impl Demo {
    /// Sets everything up: directory, plan, PKI, configs, children, readiness.
    pub async fn start(opts: &Options) -> anyhow::Result<Demo> {
        // The plan first: it may live in the directory that is about to be wiped.
        let plan = match &opts.plan {
            Some(p) => Plan::load(p)?,
            None => Plan::loopback(),
        };
        let root = prepare_dir(&opts.dir)?;
        write(&root.join("plan.toml"), plan.to_toml().as_bytes())?;
        let exe = std::env::current_exe().context("cannot locate the fedgate binary")?;
        let launcher = Launcher::new(exe, root.join("logs"));
        let refresh = if opts.quick {
            Duration::from_secs(1)
        } else {
            Duration::from_secs(2)
        };
        println!("fedgate demo: directory {}", root.display());
        if plan.uses_netns() {
            println!(
                "  plan: network namespaces (see {})",
                root.join("plan.toml").display()
            );
        } else {
            println!("  plan: everything on loopback");
        }

        let mut ports = Ports::new();
        let web_host = if plan.edge_a.peer_address.is_loopback() {
            WebHost::Dns("localhost".into())
        } else {
            WebHost::Ip(plan.edge_a.peer_address)
        };
        let topo = Topology {
            root: root.clone(),
            ids: Identities::new(&root),
            edge_a: edge_addrs(&mut ports, &plan.edge_a)?,
            edge_b: edge_addrs(&mut ports, &plan.edge_b)?,
            workload_a: workload_addrs(&mut ports, &plan.workload_a)?,
            workload_b: workload_addrs(&mut ports, &plan.workload_b)?,
            intruder_a: outbound_addrs(&mut ports, &plan.workload_a)?,
            outsider_c: outbound_addrs(&mut ports, &plan.workload_a)?,
            impostor_a: outbound_addrs(&mut ports, &plan.workload_a)?,
            web_host,
            min_refresh: Duration::from_millis(500),
            default_refresh: refresh,
            sidecar_reload: Duration::from_millis(300),
        };

        let step = Progress::start("creating CAs (cluster-a.demo, cluster-b.demo, bridge.demo, cluster-c.demo, an impostor cluster-a.demo), SVIDs and a Web CA");
        topo.ids.create(&launcher, refresh, &topo.web_host).await?;
        step.done("PKI");

        let step = Progress::start("writing configs");
        write_configs(&topo)?;
        for side in [Side::A, Side::B] {
            launcher
                .run_ok(
                    &format!("gateway-{}", side.lower()),
                    None,
                    &args(&[
                        "config",
                        "check",
                        &topo.gateway_config(side).display().to_string(),
                    ]),
                    PROBE_DEADLINE,
                )
                .await
                .with_context(|| {
                    format!("the generated gateway-{} config was refused", side.lower())
                })?;
        }
        step.done("configs (gateway configs pass `fedgate config check`)");

        let mut demo = Demo {
            launcher,
            plan,
            topo,
            children: Children::new(),
            procs: Procs::default(),
            refresh,
        };
        demo.start_children(&mut ports).await?;
        Ok(demo)
    }

    async fn start_children(&mut self, ports: &mut Ports) -> anyhow::Result<()> {
        let step = Progress::start("starting federation endpoints (A: https_web, B: https_spiffe)");
        for side in [Side::A, Side::B] {
            let addr = self.topo.edge(side).endpoint;
            ports.release(&[addr]);
            let idx = self.spawn_endpoint(side).await?;
            match side {
                Side::A => self.procs.endpoint_a = idx,
                Side::B => self.procs.endpoint_b = idx,
            }
        }
        step.done("federation endpoints");

        let step = Progress::start("starting echo workloads");
        for side in [Side::A, Side::B] {
            let addr = self.topo.workload(side).echo;
            ports.release(&[addr]);
            let role = workload_role(side);
            let mut child = self.launcher.spawn(
                &format!("echo-{}", side.lower()),
                self.plan.role(role).netns(),
                &args(&["demo", "echo", "--listen", &addr.to_string()]),
            )?;
            child
                .wait_line("its listening address", START_DEADLINE, |l| {
                    l.contains("echo listening on").then_some(())
                })
                .await?;
            self.children.adopt(child);
        }
        step.done("echo workloads");

        let step = Progress::start(
            "starting gateways and waiting for /readyz (both peers' bundles fetched)",
        );
        for side in [Side::A, Side::B] {
            let e = self.topo.edge(side).clone();
            ports.release(&[
                e.admin,
                e.egress,
                e.ingress,
                e.bridge_egress,
                e.bridge_egress_mux,
                e.bridge_ingress,
            ]);
            let name = format!("gateway-{}", side.lower());
            let mut child = self.launcher.spawn(
                &name,
                self.plan.role(edge_role(side)).netns(),
                &args(&[
                    "run",
                    "--config",
                    &self.topo.gateway_config(side).display().to_string(),
                ]),
            )?;
            child
                .wait_line("its admin address", START_DEADLINE, |l| {
                    l.contains("admin listening on").then_some(())
                })
                .await?;
            let idx = self.children.adopt(child);
            match side {
                Side::A => self.procs.gateway_a = idx,
                Side::B => self.procs.gateway_b = idx,
            }
        }
        for side in [Side::A, Side::B] {
            self.wait_ready(side).await?;
        }
        step.done("gateways");

        let step = Progress::start("starting sidecars");
        let sidecars = [
            (
                "sidecar-app-a",
                Role::WorkloadA,
                self.topo.workload_a.sidecar_addrs(),
            ),
            (
                "sidecar-app-b",
                Role::WorkloadB,
                self.topo.workload_b.sidecar_addrs(),
            ),
            (
                "sidecar-intruder-a",
                Role::WorkloadA,
                self.topo.intruder_a.addrs(),
            ),
            (
                "sidecar-outsider-c",
                Role::WorkloadA,
                self.topo.outsider_c.addrs(),
            ),
            (
                "sidecar-impostor-a",
                Role::WorkloadA,
                self.topo.impostor_a.addrs(),
            ),
        ];
        for (name, role, addrs) in sidecars {
            ports.release(&addrs);
            let mut child = self.launcher.spawn(
                name,
                self.plan.role(role).netns(),
                &args(&[
                    "sidecar",
                    "--config",
                    &self.topo.sidecar_config(name).display().to_string(),
                ]),
            )?;
            let want = addrs.len();
            let mut seen = 0;
            child
                .wait_line(
                    &format!("{want} listening addresses"),
                    START_DEADLINE,
                    |l| {
                        if l.contains(" listening on ") {
                            seen += 1;
                        }
                        (seen == want).then_some(())
                    },
                )
                .await?;
            self.children.adopt(child);
        }
        step.done("sidecars");
        Ok(())
    }

    /// Starts (or restarts) `side`'s standalone federation endpoint.
    pub async fn spawn_endpoint(&mut self, side: Side) -> anyhow::Result<usize> {
        let child = self.endpoint_child(side).await?;
        Ok(self.children.adopt(child))
    }

    pub async fn endpoint_child(&self, side: Side) -> anyhow::Result<Running> {
        let ids = &self.topo.ids;
        let addr = self.topo.edge(side).endpoint;
        let ca = self.topo.ca_dir(side);
        let mut a = args(&[
            "bundle",
            "serve",
            "--trust-domain",
            side.td(),
            "--bundle",
            &Identities::bundle(ca).display().to_string(),
            "--listen",
            &addr.to_string(),
        ]);
        match side {
            Side::A => a.extend(args(&[
                "--profile",
                "https_web",
                "--cert",
                &ids.web_cert.display().to_string(),
                "--key",
                &ids.web_key.display().to_string(),
            ])),
            Side::B => a.extend(args(&[
                "--profile",
                "https_spiffe",
                "--svid",
                &ids.endpoint_b.pem().display().to_string(),
                "--svid-key",
                &ids.endpoint_b.key().display().to_string(),
            ])),
        }
        let mut child = self.launcher.spawn(
            &format!("endpoint-{}", side.lower()),
            self.plan.role(edge_role(side)).netns(),
            &a,
        )?;
        child
            .wait_line("its listening address", START_DEADLINE, |l| {
                l.contains("listening on").then_some(())
            })
            .await?;
        Ok(child)
    }

    /// Polls `side`'s `/readyz` until 200, then waits for its distributed bundle map.
    async fn wait_ready(&mut self, side: Side) -> anyhow::Result<()> {
        let name = format!("gateway-{}", side.lower());
        let admin = self.topo.edge(side).admin;
        let started = Instant::now();
        let mut last;
        loop {
            match self.http_get(edge_role(side), admin, "/readyz").await {
                Ok((200, _)) => break,
                Ok((code, body)) => last = format!("HTTP {code}: {}", body.trim()),
                Err(e) => last = format!("{e:#}"),
            }
            let idx = match side {
                Side::A => self.procs.gateway_a,
                Side::B => self.procs.gateway_b,
            };
            if self.children.get(idx).has_exited() {
                bail!(
                    "{name} exited; see {}",
                    self.launcher.log_path(&name).display()
                );
            }
            if started.elapsed() > START_DEADLINE {
                bail!(
                    "{name} did not become ready within {} ({last}); see {}",
                    humantime::format_duration(START_DEADLINE),
                    self.launcher.log_path(&name).display()
                );
            }
            tokio::time::sleep(POLL).await;
        }
        // The sidecars start from this map: wait until it holds the peer's bundle (an early
        // generation may hold only the local one).
        let map = self.topo.distributed_map(side);
        let peer = side.other().td();
        let started = Instant::now();
        loop {
            let entry = std::fs::read(&map)
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .and_then(|j| map_entry(&j, peer));
            if entry.is_some_and(|(_, roots)| roots > 0) {
                break;
            }
            if started.elapsed() > START_DEADLINE {
                bail!(
                    "{name} is ready but its bundle map {} holds no {peer} bundle after {}; see {}",
                    map.display(),
                    humantime::format_duration(START_DEADLINE),
                    self.launcher.log_path(&name).display()
                );
            }
            tokio::time::sleep(POLL).await;
        }
        Ok(())
    }
}

/// Makes `dir` (wiping a previous demo's), returns its absolute path.
fn prepare_dir(dir: &Path) -> anyhow::Result<PathBuf> {
    if dir.exists() {
        let marker = dir.join(MARKER);
        let empty = std::fs::read_dir(dir)
            .with_context(|| format!("cannot read {}", dir.display()))?
            .next()
            .is_none();
        if !marker.exists() && !empty {
            bail!(
                "{} exists and was not made by `fedgate demo`; remove it or pass another --dir",
                dir.display()
            );
        }
        std::fs::remove_dir_all(dir)
            .with_context(|| format!("cannot wipe the previous demo in {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir.join("logs"))
        .with_context(|| format!("cannot create {}", dir.display()))?;
    write(
        &dir.join(MARKER),
        b"made by `fedgate demo`; wiped by the next run\n",
    )?;
    let root = dir
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", dir.display()))?;
    Ok(root)
}

fn write_configs(t: &Topology) -> anyhow::Result<()> {
    for side in [Side::A, Side::B] {
        let dir = t.gateway_dir(side);
        std::fs::create_dir_all(dir.join("bootstrap"))
            .with_context(|| format!("cannot create {}", dir.display()))?;
        write(&t.gateway_config(side), t.gateway_toml(side).as_bytes())?;
    }
    // The https_spiffe relationship starts from a copy of B's bundle taken now; later
    // rotations reach A only through B's federation endpoint.
    let bootstrap = t.bootstrap_bundle(Side::A);
    std::fs::copy(Identities::bundle(&t.ids.ca_b), &bootstrap)
        .with_context(|| format!("cannot write {}", bootstrap.display()))?;
    for (name, text) in [
        ("sidecar-app-a", t.app_sidecar_toml(Side::A)),
        ("sidecar-app-b", t.app_sidecar_toml(Side::B)),
        ("sidecar-intruder-a", t.intruder_sidecar_toml()),
        ("sidecar-outsider-c", t.outsider_sidecar_toml()),
        ("sidecar-impostor-a", t.impostor_sidecar_toml()),
    ] {
        let path = t.sidecar_config(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        write(&path, text.as_bytes())?;
    }
    Ok(())
}

fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    fedgate_federation::fs::write_atomic(path, bytes)
        .with_context(|| format!("cannot write {}", path.display()))
}

fn edge_addrs(ports: &mut Ports, p: &Placement) -> anyhow::Result<EdgeAddrs> {
    Ok(EdgeAddrs {
        admin: ports.take(p, p.address)?,
        egress: ports.take(p, p.address)?,
        ingress: ports.take(p, p.peer_address)?,
        bridge_egress: ports.take(p, p.address)?,
        bridge_egress_mux: ports.take(p, p.address)?,
        bridge_ingress: ports.take(p, p.peer_address)?,
        endpoint: ports.take(p, p.peer_address)?,
    })
}

fn workload_addrs(ports: &mut Ports, p: &Placement) -> anyhow::Result<WorkloadAddrs> {
    Ok(WorkloadAddrs {
        echo: ports.take(p, p.address)?,
        sidecar_admin: ports.take(p, p.address)?,
        inbound: ports.take(p, p.address)?,
        outbound: outbound_addrs(ports, p)?,
    })
}

fn outbound_addrs(ports: &mut Ports, p: &Placement) -> anyhow::Result<OutboundAddrs> {
    Ok(OutboundAddrs {
        federated: ports.take(p, p.address)?,
        bridged: ports.take(p, p.address)?,
        bridged_mux: ports.take(p, p.address)?,
    })
}

impl WorkloadAddrs {
    /// The sidecar's listeners (inbound, admin, then outbound).
    fn sidecar_addrs(&self) -> Vec<SocketAddr> {
        let mut v = vec![self.inbound, self.sidecar_admin];
        v.extend(self.outbound.addrs());
        v
    }
}

impl OutboundAddrs {
    fn addrs(&self) -> Vec<SocketAddr> {
        vec![self.federated, self.bridged, self.bridged_mux]
    }
}
