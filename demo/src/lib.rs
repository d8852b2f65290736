//! `fedgate demo`: two clusters, a bridge CA, federation endpoints, gateways, sidecars and echo
//! workloads, all run as children of this binary with generated configs, then seven scenarios
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
//!
//! Module map: [`plan`] (where roles run, ports) → [`pki`] (CAs and SVIDs via `fedgate ca`)
//! → [`configs`] (gateway and sidecar TOML) → `setup` (children in dependency order, via
//! [`children`]) → [`scenarios`] (using [`probe`] to call and look, [`observe`] to read what
//! it sees) → [`report`]. [`echo`] is the workload behind the sidecars.

pub mod children;
pub mod command;
pub mod configs;
pub mod echo;
pub mod observe;
pub mod pki;
pub mod plan;
pub mod probe;
pub mod report;
pub mod scenarios;
mod setup;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use children::{Children, Launcher};
use configs::{Side, Topology};
use observe::{metric_value, peer_view, refusal_cause, refusal_label, PeerView};
use pki::args;
use plan::{Plan, Role};
use probe::CallOutcome;

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
}

/// Indices of the long-running children in [`Demo::children`].
#[derive(Clone, Debug, Default)]
pub struct Procs {
    pub endpoint_a: usize,
    pub endpoint_b: usize,
    pub gateway_a: usize,
    pub gateway_b: usize,
}

/// Runs `fedgate demo`: exit 0 only if every scenario matched.
pub async fn run(opts: Options) -> anyhow::Result<ExitCode> {
    let dir = opts.dir.clone();
    // Set to the signal's name on the first SIGINT/SIGTERM.
    let (signalled_tx, signalled) = tokio::sync::watch::channel(None);
    tokio::spawn(async move {
        let name = shutdown_signal().await;
        let _ = signalled_tx.send(Some(name));
    });
    // Set by `run_inner` once only the Ctrl-C wait of --keep-running is left.
    let idle = Arc::new(AtomicBool::new(false));
    let work = run_inner(opts, signalled.clone(), Arc::clone(&idle));
    tokio::pin!(work);
    let mut watch = signalled.clone();
    tokio::select! {
        result = &mut work => result.map_err(|e| e.context(format!("demo failed; logs and configs are in {}", dir.display()))),
        _ = watch.wait_for(Option::is_some) => {
            if idle.load(Ordering::SeqCst) {
                // --keep-running after the scenarios: `work` stops the children and reports.
                return work.await;
            }
            let name = signalled.borrow().unwrap_or("signal");
            // Returning drops `work`, and with it the children guard, which stops every child.
            eprintln!("fedgate demo: {name}: stopping every child (logs in {})", dir.display());
            Ok(ExitCode::from(130))
        }
    }
}

async fn run_inner(
    opts: Options,
    mut signalled: tokio::sync::watch::Receiver<Option<&'static str>>,
    idle: Arc<AtomicBool>,
) -> anyhow::Result<ExitCode> {
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
        idle.store(true, Ordering::SeqCst);
        let name = signalled
            .wait_for(Option::is_some)
            .await
            .ok()
            .and_then(|n| *n)
            .unwrap_or("signal");
        println!("{name}: stopping every child");
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
    /// returns its reason label, with the certificate problem when the line names one.
    pub async fn refusal_since(&self, mark: &(String, u64), deadline: Duration) -> Option<String> {
        let path = self.launcher.log_path(&mark.0);
        let started = Instant::now();
        loop {
            if let Ok(bytes) = std::fs::read(&path) {
                let from = usize::try_from(mark.1).unwrap_or(usize::MAX);
                let text = String::from_utf8_lossy(bytes.get(from..).unwrap_or(&[]));
                let found = text.lines().find_map(|l| {
                    let label = refusal_label(l)?;
                    Some(match refusal_cause(l) {
                        Some(cause) => format!("{label}: {cause}"),
                        None => label,
                    })
                });
                if found.is_some() {
                    return found;
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
        println!("\neverything keeps running; try it by hand:");
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
            "    bridged (mux tunnel): {wa}{exe} demo call --connect {}",
            t.workload_a.outbound.bridged_mux
        );
        println!(
            "    unauthorized workload: {wa}{exe} demo call --connect {}",
            t.intruder_a.federated
        );
        println!(
            "    cluster-c.demo client: {wa}{exe} demo call --connect {}",
            t.outsider_c.federated
        );
        println!(
            "    impostor of A's workload (another CA): {wa}{exe} demo call --connect {}",
            t.impostor_a.federated
        );
        let wb = ns(Role::WorkloadB);
        println!("  call A's echo from B:");
        println!(
            "    federated: {wb}{exe} demo call --connect {}",
            t.workload_b.outbound.federated
        );
        println!(
            "    bridged:   {wb}{exe} demo call --connect {}",
            t.workload_b.outbound.bridged
        );
        println!(
            "    bridged (mux tunnel): {wb}{exe} demo call --connect {}",
            t.workload_b.outbound.bridged_mux
        );
        println!(
            "  B's bundle: {exe} bundle inspect {} --trust-domain cluster-b.demo",
            pki::Identities::bundle(&t.ids.ca_b).display()
        );
        println!(
            "  what A's gateway distributes to A's sidecars: {}",
            t.distributed_map(Side::A).display()
        );
        println!(
            "  rotate B's CA: {exe} ca rotate --ca {}  (then watch B's sequence in A's /status)",
            t.ids.ca_b.display()
        );
        println!("  logs: {}", t.root.join("logs").display());
        println!("press Ctrl-C to stop every part of the demo");
    }
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
