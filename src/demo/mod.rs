//! `fedgate demo`: two clusters, a bridge CA, federation endpoints, gateways, sidecars and echo
//! workloads, all run as children of this binary with generated configs, then six scenarios
//! and a report. Start with [`run`].
//!
//! Invariants:
//! * every part runs as a child process of `std::env::current_exe()`, configured only by files
//!   the demo writes under the demo directory (the report names it);
//! * every child is owned by a [`children::Children`] guard, so it is stopped on every exit
//!   path: normal, error, panic, SIGINT/SIGTERM;
//! * every wait is a poll of something observable (a log line, `/readyz`, `/status`, a file, a
//!   presented certificate) with a deadline and an error naming the log file;
//! * the demo directory is wiped at start only if a previous demo made it (marker file).

pub mod children;
pub mod configs;
pub mod echo;
pub mod pki;
pub mod plan;
pub mod probe;
pub mod report;
pub mod scenarios;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use children::{Children, Launcher, Running};
use configs::{EdgeAddrs, OutboundAddrs, Side, Topology, WorkloadAddrs};
use pki::{args, Identities, WebHost};
use plan::{Placement, Plan, Ports, Role};
use probe::CallOutcome;
use report::Progress;

/// The file that marks a directory as made by `fedgate demo` (and so safe to wipe).
pub const MARKER: &str = ".fedgate-demo";
/// How long a child may take to report that it listens.
const START_DEADLINE: Duration = Duration::from_secs(20);
/// Bound on one probe (call, HTTP GET, certificate peek).
const PROBE_DEADLINE: Duration = Duration::from_secs(10);
/// Pause between two polls of something observable.
const POLL: Duration = Duration::from_millis(100);

/// What `fedgate demo` was asked to do.
#[derive(Clone, Debug)]
pub struct Options {
    pub dir: PathBuf,
    pub plan: Option<PathBuf>,
    pub keep_running: bool,
    pub quick: bool,
}

/// A running demo: the children, where they listen, and how to reach them.
pub struct Demo {
    pub launcher: Launcher,
    pub plan: Plan,
    pub topo: Topology,
    pub children: Children,
    pub procs: Procs,
    /// The bundles' `spiffe_refresh_hint`, which is the gateways' refresh interval.
    pub refresh: Duration,
    pub quick: bool,
}

/// Indices of the long-running children in [`Demo::children`].
#[derive(Clone, Debug, Default)]
pub struct Procs {
    pub endpoint_a: usize,
    pub endpoint_b: usize,
    pub gateway_a: usize,
    pub gateway_b: usize,
}

/// A peer as the gateway's `/status` shows it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PeerView {
    pub sequence: Option<u64>,
    pub last_success: Option<String>,
    pub last_error: Option<String>,
    pub bundle_age: Option<f64>,
    pub time_until_trust_loss: Option<f64>,
    /// X.509 authorities in force.
    pub authorities: Option<u64>,
}

/// Runs `fedgate demo`: exit 0 only if every scenario matched.
pub async fn run(opts: Options) -> anyhow::Result<ExitCode> {
    let dir = opts.dir.clone();
    let work = run_inner(opts);
    tokio::select! {
        result = work => result.map_err(|e| e.context(format!("demo failed; logs and configs are in {}", dir.display()))),
        signal = shutdown_signal() => {
            // Dropping `work` drops the children guard, which stops every child.
            eprintln!("fedgate demo: {signal}: stopping every child (logs in {})", dir.display());
            Ok(ExitCode::from(130))
        }
    }
}

async fn run_inner(opts: Options) -> anyhow::Result<ExitCode> {
    let total = Instant::now();
    let mut demo = Demo::start(&opts).await?;
    println!("\nscenarios:");
    let results = scenarios::run_all(&mut demo).await;
    let all = results.iter().all(|r| r.matched);
    println!(
        "\n{} in {}",
        report::summary(&results),
        report::secs(total.elapsed())
    );
    if let Some(dead) = Some(demo.children.exited()).filter(|d| !d.is_empty()) {
        println!(
            "warning: these children exited on their own: {}",
            dead.join(", ")
        );
    }
    println!(
        "configs, certificates and logs: {}",
        demo.topo.root.display()
    );
    if opts.keep_running {
        demo.print_try_it();
        let signal = shutdown_signal().await;
        println!("{signal}: stopping");
    }
    demo.children.stop_all().await;
    if all {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "fedgate demo: some scenarios did not match; see the logs in {}",
            demo.topo.root.join("logs").display()
        );
        Ok(ExitCode::FAILURE)
    }
}

/// Resolves with the name of the first SIGINT/SIGTERM; never resolves if the handlers cannot
/// be installed (the children guard still stops the children when the process unwinds).
async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        },
        _ => std::future::pending().await,
    }
}

// === impl Demo ===

impl Demo {
    /// Sets everything up: directory, plan, PKI, configs, children, readiness.
    pub async fn start(opts: &Options) -> anyhow::Result<Demo> {
        let root = prepare_dir(&opts.dir)?;
        let plan = match &opts.plan {
            Some(p) => Plan::load(p)?,
            None => Plan::loopback(),
        };
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
            web_host,
            min_refresh: Duration::from_millis(500),
            default_refresh: refresh,
            sidecar_reload: Duration::from_millis(300),
        };

        let step = Progress::start("creating CAs for cluster-a.demo, cluster-b.demo, bridge.demo, cluster-c.demo, SVIDs and a Web CA");
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
            quick: opts.quick,
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

    /// A call from a workload of cluster A's network through the outbound listener `addr`.
    pub async fn call(&self, addr: SocketAddr, message: &str) -> CallOutcome {
        match self.plan.workload_a.netns() {
            None => probe::call(addr, message, PROBE_DEADLINE).await,
            Some(ns) => {
                let a = args(&[
                    "demo",
                    "call",
                    "--connect",
                    &addr.to_string(),
                    "--message",
                    message,
                ]);
                match self
                    .launcher
                    .run(
                        "calls",
                        Some(ns),
                        &a,
                        PROBE_DEADLINE + Duration::from_secs(5),
                    )
                    .await
                {
                    Ok(f) => CallOutcome::from_child(f.status.code(), &f.stdout, &f.stderr),
                    Err(e) => CallOutcome::Failed(format!("{e:#}")),
                }
            }
        }
    }

    /// `GET path` on `addr`, from inside `role`'s network namespace.
    pub async fn http_get(
        &self,
        role: Role,
        addr: SocketAddr,
        path: &str,
    ) -> anyhow::Result<(u16, String)> {
        match self.plan.role(role).netns() {
            None => probe::http_get(addr, path, PROBE_DEADLINE).await,
            Some(ns) => {
                let a = args(&[
                    "demo",
                    "http-get",
                    "--connect",
                    &addr.to_string(),
                    "--path",
                    path,
                ]);
                let f = self
                    .launcher
                    .run(
                        "probes",
                        Some(ns),
                        &a,
                        PROBE_DEADLINE + Duration::from_secs(5),
                    )
                    .await?;
                if !f.status.success() {
                    bail!("{}", f.stderr.trim());
                }
                let (code, body) = f.stdout.split_once('\n').unwrap_or((f.stdout.as_str(), ""));
                let code = code
                    .trim()
                    .parse()
                    .with_context(|| format!("`fedgate demo http-get` printed {code:?}"))?;
                Ok((code, body.to_owned()))
            }
        }
    }

    /// The SHA-256 fingerprint of the certificate the TLS server at `addr` presents, peeked
    /// from inside `role`'s network namespace.
    pub async fn peek_fingerprint(
        &self,
        role: Role,
        addr: SocketAddr,
        sni: &str,
    ) -> anyhow::Result<String> {
        match self.plan.role(role).netns() {
            None => Ok(probe::fingerprint(
                &probe::peek_cert(addr, sni, PROBE_DEADLINE).await?,
            )),
            Some(ns) => {
                let a = args(&[
                    "demo",
                    "peek-cert",
                    "--connect",
                    &addr.to_string(),
                    "--server-name",
                    sni,
                ]);
                let f = self
                    .launcher
                    .run_ok(
                        "probes",
                        Some(ns),
                        &a,
                        PROBE_DEADLINE + Duration::from_secs(5),
                    )
                    .await?;
                Ok(f.stdout.trim().to_owned())
            }
        }
    }

    /// The identity generation `side`'s app sidecar reports on its `/metrics` (it grows each
    /// time the sidecar rebuilds its TLS configs from changed SVID or bundle files).
    pub async fn sidecar_generation(&self, side: Side) -> anyhow::Result<u64> {
        let admin = self.topo.workload(side).sidecar_admin;
        let (code, body) = self
            .http_get(workload_role(side), admin, "/metrics")
            .await?;
        if code != 200 {
            bail!("GET http://{admin}/metrics: HTTP {code}");
        }
        let v = metric_value(&body, "fedgate_sidecar_identity_generation").with_context(|| {
            format!("GET http://{admin}/metrics: no fedgate_sidecar_identity_generation")
        })?;
        Ok(v as u64)
    }

    /// How `side`'s gateway's `/status` shows its peer (the other cluster).
    pub async fn peer_status(&self, side: Side) -> anyhow::Result<PeerView> {
        let admin = self.topo.edge(side).admin;
        let (code, body) = self.http_get(edge_role(side), admin, "/status").await?;
        if code != 200 {
            bail!("GET http://{admin}/status: HTTP {code}");
        }
        let json: serde_json::Value = serde_json::from_str(&body)
            .with_context(|| format!("GET http://{admin}/status: not JSON"))?;
        peer_view(&json, side.other().td())
            .with_context(|| format!("GET http://{admin}/status: no peer {}", side.other().td()))
    }

    /// The current length of each child's log, to find what it logs next.
    pub fn log_marks(&self, names: &[&str]) -> Vec<(String, u64)> {
        names
            .iter()
            .map(|n| {
                let len = std::fs::metadata(self.launcher.log_path(n)).map_or(0, |m| m.len());
                ((*n).to_owned(), len)
            })
            .collect()
    }

    /// Waits (bounded) for a refusal line logged since `mark` by the child `mark` names;
    /// returns its reason label.
    pub async fn refusal_since(&self, mark: &(String, u64), deadline: Duration) -> Option<String> {
        let path = self.launcher.log_path(&mark.0);
        let started = Instant::now();
        loop {
            if let Ok(bytes) = std::fs::read(&path) {
                let new = bytes
                    .get(usize::try_from(mark.1).unwrap_or(usize::MAX)..)
                    .unwrap_or(&[]);
                let text = String::from_utf8_lossy(new);
                if let Some(label) = text.lines().find_map(refusal_label) {
                    return Some(label);
                }
            }
            if started.elapsed() > deadline {
                return None;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Prints admin URLs and commands to try by hand (`--keep-running`).
    fn print_try_it(&self) {
        let t = &self.topo;
        let ns = |role: Role| {
            self.plan
                .role(role)
                .netns()
                .map(|n| format!("sudo ip netns exec {n} "))
                .unwrap_or_default()
        };
        let exe = self.launcher.exe().display();
        println!("\neverything keeps running; press Ctrl-C to stop.");
        for side in [Side::A, Side::B] {
            let e = t.edge(side);
            println!(
                "  gateway-{} admin: {}curl http://{}/status  (also /readyz /metrics)",
                side.lower(),
                ns(edge_role(side)),
                e.admin
            );
        }
        let wa = ns(Role::WorkloadA);
        println!("  call B's echo from A:");
        println!(
            "    federated: {wa}{exe} demo call --connect {}",
            t.workload_a.outbound.federated
        );
        println!(
            "    bridged:   {wa}{exe} demo call --connect {}",
            t.workload_a.outbound.bridged
        );
        println!(
            "    unauthorized workload: {wa}{exe} demo call --connect {}",
            t.intruder_a.federated
        );
        println!(
            "    cluster-c.demo client: {wa}{exe} demo call --connect {}",
            t.outsider_c.federated
        );
        let wb = ns(Role::WorkloadB);
        println!(
            "  call A's echo from B (federated): {wb}{exe} demo call --connect {}",
            t.workload_b.outbound.federated
        );
        println!(
            "  rotate B's CA: {exe} ca rotate --ca {}",
            t.ids.ca_b.display()
        );
        println!(
            "  inspect A's view of B's bundle: {exe} bundle inspect {} --trust-domain cluster-b.demo",
            t.gateway_dir(Side::A).join("bundles-out/current/cluster-b.demo.pem").display()
        );
        println!("  logs: {}", t.root.join("logs").display());
    }
}

/// Extracts the peer `td` from a gateway `/status` document (`peers` is a list of objects
/// with a `trust_domain` key, or an object keyed by trust domain).
pub fn peer_view(status: &serde_json::Value, td: &str) -> Option<PeerView> {
    let peers = status.get("peers")?;
    let peer = match peers {
        serde_json::Value::Array(list) => list
            .iter()
            .find(|p| p.get("trust_domain").and_then(|t| t.as_str()) == Some(td))?,
        serde_json::Value::Object(map) => map.get(td)?,
        _ => return None,
    };
    let text = |k: &str| peer.get(k).and_then(|v| v.as_str()).map(str::to_owned);
    let num = |k: &str| peer.get(k).and_then(|v| v.as_f64());
    Some(PeerView {
        sequence: peer.get("sequence").and_then(|v| v.as_u64()),
        last_success: text("last_success"),
        last_error: text("last_error"),
        bundle_age: num("bundle_age"),
        time_until_trust_loss: num("time_until_trust_loss"),
        authorities: peer.get("authorities").and_then(|v| v.as_u64()),
    })
}

/// `td`'s bundle in a SPIFFE bundle map (keys may be `td` or `spiffe://td`, at the top level
/// or under `trust_domains`): its `spiffe_sequence` and number of X.509 authorities.
pub fn map_entry(map: &serde_json::Value, td: &str) -> Option<(Option<u64>, usize)> {
    let domains = map.get("trust_domains").unwrap_or(map);
    let bundle = domains
        .get(td)
        .or_else(|| domains.get(format!("spiffe://{td}")))?;
    let keys = bundle.get("keys")?.as_array()?;
    let x509 = keys
        .iter()
        .filter(|k| k.get("use").and_then(|u| u.as_str()) == Some("x509-svid"))
        .count();
    Some((bundle.get("spiffe_sequence").and_then(|s| s.as_u64()), x509))
}

/// The value of the first sample of metric `name` (without labels) in Prometheus text.
pub fn metric_value(text: &str, name: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (metric, value) = l.split_once(' ')?;
        (metric == name).then(|| value.trim().parse().ok())?
    })
}

/// The reason label of a refusal log line (`reason="..."` / `outcome="..."` in human logs,
/// `"reason":"..."` in JSON logs), if the line reports a refused or denied connection.
pub fn refusal_label(line: &str) -> Option<String> {
    let lower = line.to_ascii_lowercase();
    if !(lower.contains("refused") || lower.contains("denied")) {
        return None;
    }
    for key in ["reason", "outcome"] {
        for pat in [format!("{key}=\""), format!("\"{key}\":\"")] {
            if let Some(i) = line.find(&pat) {
                let rest = &line[i + pat.len()..];
                if let Some(end) = rest.find('"') {
                    return Some(rest[..end].to_owned());
                }
            }
        }
    }
    Some("refused".to_owned())
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
    crate::ca::write_atomic(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

fn edge_addrs(ports: &mut Ports, p: &Placement) -> anyhow::Result<EdgeAddrs> {
    Ok(EdgeAddrs {
        admin: ports.take(p, p.address)?,
        egress: ports.take(p, p.address)?,
        ingress: ports.take(p, p.peer_address)?,
        bridge_egress: ports.take(p, p.address)?,
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
    })
}

pub fn edge_role(side: Side) -> Role {
    match side {
        Side::A => Role::EdgeA,
        Side::B => Role::EdgeB,
    }
}

pub fn workload_role(side: Side) -> Role {
    match side {
        Side::A => Role::WorkloadA,
        Side::B => Role::WorkloadB,
    }
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
        vec![self.federated, self.bridged]
    }
}
