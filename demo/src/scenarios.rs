//! The seven scenarios of `fedgate demo`, run in order against a started [`Demo`]; each yields a
//! [`ScenarioResult`] that is printed as soon as it is known.
//!
//! Invariants: a scenario never aborts the others (its errors become its `actual`); every
//! denial is paired with a success over the same path in an earlier scenario; every wait is a
//! bounded poll of `/status`, a file or a presented certificate.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use super::configs::Side;
use super::observe::{map_entry, PeerView};
use super::pki::{self, Identities};
use super::plan::Role;
use super::probe::{self, CallOutcome};
use super::report::{secs, ScenarioResult};
use super::{Demo, POLL};

/// Upper bound on the calls of scenario 5's loop.
const MAX_LOOP_CALLS: usize = 2000;
/// Pace of scenario 5's call loop (a call every this often, at most).
const LOOP_PACE: Duration = Duration::from_millis(50);

/// Runs every scenario, printing each line as it completes.
pub async fn run_all(demo: &mut Demo) -> Vec<ScenarioResult> {
    let mut results = Vec::new();
    for n in 1..=7 {
        let r = match n {
            1 => federated(demo).await,
            2 => bridged(demo).await,
            3 => unauthorized(demo).await,
            4 => wrong_trust_domain(demo).await,
            5 => rotation(demo).await,
            6 => endpoint_down(demo).await,
            _ => bridged_mux(demo).await,
        };
        println!("{r}");
        results.push(r);
    }
    results
}

/// Scenario 1: Federated passthrough A→B: B's echo sees A's workload ID.
async fn federated(demo: &mut Demo) -> ScenarioResult {
    let started = Instant::now();
    let expected = format!("peer={} origin=-", demo.topo.ids.app_a.id);
    let out = demo
        .call(
            demo.topo.workload_a.outbound.federated,
            "hello over federated passthrough",
        )
        .await;
    ScenarioResult::compare(
        1,
        "federated passthrough A->B",
        expected,
        out.describe(),
        started.elapsed(),
    )
}

/// Scenario 2: Bridged A→B: B's echo sees ingress B as peer and A's workload as origin.
async fn bridged(demo: &mut Demo) -> ScenarioResult {
    let started = Instant::now();
    let ids = &demo.topo.ids;
    let expected = format!("peer={} origin={}", ids.gateway_b.id, ids.app_a.id);
    let out = demo
        .call(
            demo.topo.workload_a.outbound.bridged,
            "hello over the bridge",
        )
        .await;
    ScenarioResult::compare(
        2,
        "bridged A->B",
        expected,
        out.describe(),
        started.elapsed(),
    )
}

/// Scenario 7: Bridged A→B over the multiplexed transport (`transport = "mux"`): the same
/// assertion as scenario 2, through gateway A's mux egress; run last, so its tunnels are
/// dialed with the TLS settings left by scenario 5's rotations.
async fn bridged_mux(demo: &mut Demo) -> ScenarioResult {
    let started = Instant::now();
    let ids = &demo.topo.ids;
    let expected = format!("peer={} origin={}", ids.gateway_b.id, ids.app_a.id);
    let out = demo
        .call(
            demo.topo.workload_a.outbound.bridged_mux,
            "hello over a bridge tunnel",
        )
        .await;
    ScenarioResult::compare(
        7,
        "bridged A->B over a mux tunnel",
        expected,
        out.describe(),
        started.elapsed(),
    )
}

/// Scenario 3: An unauthorized workload of A is denied in both modes.
async fn unauthorized(demo: &mut Demo) -> ScenarioResult {
    let started = Instant::now();
    let o = demo.topo.intruder_a.clone();
    let denials = vec![
        (
            "federated",
            "by B's sidecar allow-list",
            denied_call(demo, o.federated, "intruder, federated", "sidecar-app-b").await,
        ),
        (
            "bridged",
            "by egress A's route allow-list",
            denied_call(demo, o.bridged, "intruder, bridged", "gateway-a").await,
        ),
    ];
    denial_result(
        3,
        &format!(
            "unauthorized workload {} denied",
            demo.topo.ids.intruder_a.id
        ),
        denials,
        started,
    )
}

/// Scenario 4: Clients of the wrong trust domain are denied in both modes: one from
/// cluster-c.demo, which nobody federates with, and an impostor whose SVID names A's own
/// authorized workload ID but chains to another CA calling itself cluster-a.demo.
async fn wrong_trust_domain(demo: &mut Demo) -> ScenarioResult {
    let started = Instant::now();
    let c = demo.topo.outsider_c.clone();
    let i = demo.topo.impostor_a.clone();
    let denials = vec![
        (
            "cluster-c federated",
            "by B's sidecar: no cluster-c.demo bundle",
            denied_call(demo, c.federated, "outsider, federated", "sidecar-app-b").await,
        ),
        (
            "cluster-c bridged",
            "by egress A: callers verified with cluster-a.demo's bundle only",
            denied_call(demo, c.bridged, "outsider, bridged", "gateway-a").await,
        ),
        (
            "impostor federated",
            "by B's sidecar: not signed by cluster-a.demo's roots",
            denied_call(demo, i.federated, "impostor, federated", "sidecar-app-b").await,
        ),
        (
            "impostor bridged",
            "by egress A: not signed by cluster-a.demo's roots",
            denied_call(demo, i.bridged, "impostor, bridged", "gateway-a").await,
        ),
    ];
    denial_result(
        4,
        &format!(
            "wrong trust domain denied: {} and an impostor CA's {}",
            demo.topo.ids.app_c.id, demo.topo.ids.impostor_a.id
        ),
        denials,
        started,
    )
}

/// A call expected to be refused by the child `by`: the call's outcome and the reason label
/// `by` logged for it (if any).
struct Denial {
    outcome: CallOutcome,
    by: &'static str,
    logged: Option<String>,
}

async fn denied_call(
    demo: &Demo,
    addr: std::net::SocketAddr,
    message: &str,
    by: &'static str,
) -> Denial {
    let mark = demo.log_marks(&[by]).remove(0);
    let outcome = demo.call(addr, message).await;
    let logged = match outcome {
        CallOutcome::Denied(_) => demo.refusal_since(&mark, Duration::from_secs(3)).await,
        _ => None,
    };
    Denial {
        outcome,
        by,
        logged,
    }
}

impl Denial {
    fn matched(&self) -> bool {
        matches!(self.outcome, CallOutcome::Denied(_)) && self.logged.is_some()
    }

    fn describe(&self) -> String {
        match (&self.outcome, &self.logged) {
            (CallOutcome::Denied(_), Some(label)) => format!("denied by {} ({label})", self.by),
            (CallOutcome::Denied(why), None) => {
                format!("closed ({why}) but {} logged no refusal", self.by)
            }
            (other, _) => other.describe(),
        }
    }
}

/// One line for denials: (mode, expected refuser, outcome) each.
fn denial_result(
    n: usize,
    name: &str,
    denials: Vec<(&str, &str, Denial)>,
    started: Instant,
) -> ScenarioResult {
    let expected = denials
        .iter()
        .map(|(mode, why, _)| format!("{mode}: denied {why}"))
        .collect::<Vec<_>>()
        .join("; ");
    let actual = denials
        .iter()
        .map(|(mode, _, d)| format!("{mode}: {}", d.describe()))
        .collect::<Vec<_>>()
        .join("; ");
    let matched = denials.iter().all(|(_, _, d)| d.matched());
    ScenarioResult::judged(n, name, expected, actual, started.elapsed(), matched)
}

/// Scenario 5: B rotates its CA and re-issues its SVIDs; A follows within the refresh interval,
/// and calls keep succeeding throughout.
async fn rotation(demo: &mut Demo) -> ScenarioResult {
    let started = Instant::now();
    let interval = demo.refresh;
    // B's endpoint notices the file change within its poll (~1 s); jitter is ±10%.
    let bound = interval.mul_f64(1.1) + Duration::from_secs(3);
    let expected = format!(
        "roots 1 -> 2 -> 1; A's gateway follows each change within the refresh interval \
         ({} + endpoint poll + slack = {}); B's SVIDs re-issued from the new root; every call \
         during the rotation ok",
        secs(interval),
        secs(bound)
    );
    // Shared by the two halves below, which run concurrently on this task.
    let stop = AtomicBool::new(false);
    let ok = AtomicUsize::new(0);
    let total = AtomicUsize::new(0);
    let failures = std::sync::Mutex::new(Vec::new());
    let (steps, ()) = tokio::join!(
        rotation_steps(demo, bound, &stop, &total),
        call_loop(demo, &stop, &ok, &total, &failures)
    );
    let (ok, total) = (ok.into_inner(), total.into_inner());
    let failures = failures.into_inner().unwrap_or_default();
    let calls = format!("{ok}/{total} calls ok");
    match steps {
        Ok(s) => {
            let matched = s.gateway_pickup <= bound
                && s.retire_pickup <= bound
                && s.roots == [1, 2, 1]
                && ok == total
                && total > 0;
            let [q0, q1, q2] = s.sequences;
            let [r0, r1, r2] = s.roots;
            let mut actual = format!(
                "roots {r0} -> {r1} -> {r2} (sequence {q0} -> {q1} -> {q2}); A's gateway had the \
                 new root after {}, its sidecars' bundle map after {}; B's sidecar, gateway and \
                 endpoint presented new-root SVIDs after {}; A followed the retirement after {}; \
                 {calls}",
                secs(s.gateway_pickup),
                secs(s.distributed),
                secs(s.new_svids),
                secs(s.retire_pickup),
            );
            if let Some(f) = failures.first() {
                actual.push_str(&format!(" (first failure: {f})"));
            }
            ScenarioResult::judged(
                5,
                "B rotates its CA",
                expected,
                actual,
                started.elapsed(),
                matched,
            )
        }
        Err(e) => ScenarioResult::judged(
            5,
            "B rotates its CA",
            expected,
            format!("{e:#}; {calls}"),
            started.elapsed(),
            false,
        ),
    }
}

struct RotationTimes {
    /// B's sequence in A's view: before, after the new root, after the retirement.
    sequences: [u64; 3],
    /// B's root count in A's view at the same three points.
    roots: [u64; 3],
    gateway_pickup: Duration,
    distributed: Duration,
    new_svids: Duration,
    retire_pickup: Duration,
}

/// Alternates federated and bridged calls from A's workload until `stop` (bounded by
/// [`MAX_LOOP_CALLS`]), counting successes.
async fn call_loop(
    demo: &Demo,
    stop: &AtomicBool,
    ok: &AtomicUsize,
    total: &AtomicUsize,
    failures: &std::sync::Mutex<Vec<String>>,
) {
    let o = &demo.topo.workload_a.outbound;
    let mut pace = tokio::time::interval(LOOP_PACE);
    for i in 0..MAX_LOOP_CALLS {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        pace.tick().await;
        let (addr, mode) = if i % 2 == 0 {
            (o.federated, "federated")
        } else {
            (o.bridged, "bridged")
        };
        let out = demo.call(addr, &format!("rotation call {i}")).await;
        total.fetch_add(1, Ordering::SeqCst);
        match out {
            CallOutcome::Answered(_) => {
                ok.fetch_add(1, Ordering::SeqCst);
            }
            other => {
                if let Ok(mut f) = failures.lock() {
                    f.push(format!("call {i} ({mode}): {}", other.describe()));
                }
            }
        }
    }
}

async fn rotation_steps(
    demo: &Demo,
    bound: Duration,
    stop: &AtomicBool,
    total: &AtomicUsize,
) -> anyhow::Result<RotationTimes> {
    let result = rotation_steps_inner(demo, bound, total).await;
    stop.store(true, Ordering::SeqCst);
    result
}

async fn rotation_steps_inner(
    demo: &Demo,
    bound: Duration,
    total: &AtomicUsize,
) -> anyhow::Result<RotationTimes> {
    let old = demo.peer_status(Side::A).await?;
    let old_sequence = old
        .sequence
        .context("A's /status shows no sequence for B")?;
    // Let the call loop show the steady state first.
    wait_calls(total, 4, Duration::from_secs(20)).await?;

    // Phase 1: a new root next to the old one, in force everywhere before anything is
    // signed with it.
    let gen_a = demo.sidecar_generation(Side::A).await?;
    let gen_b = demo.sidecar_generation(Side::B).await?;
    let t0 = Instant::now();
    pki::rotate(&demo.launcher, &demo.topo.ids.ca_b, false).await?;
    let roots = bundle_roots(&Identities::bundle(&demo.topo.ids.ca_b))?;
    if roots < 2 {
        bail!("after `ca rotate`, B's bundle lists {roots} root(s); expected old and new");
    }
    let new_sequence = wait_bundle(demo, bound, old_sequence, |n| n >= roots).await?;
    let gateway_pickup = t0.elapsed();
    wait_distributed(demo, |n| n >= roots).await?;
    let distributed = t0.elapsed();
    // Each sidecar rebuilds its TLS configs once it has read the changed file: A's from the
    // bundle map its gateway wrote, B's from B's bundle file.
    for (side, before) in [(Side::A, gen_a), (Side::B, gen_b)] {
        poll(
            &format!(
                "{}'s sidecar to load B's new bundle",
                side.lower().to_uppercase()
            ),
            Duration::from_secs(15),
            || async { Ok((demo.sidecar_generation(side).await? > before).then_some(())) },
        )
        .await?;
    }

    // Phase 2: every SVID of B re-issued from the new root, and presented by its holder.
    // Gateway B first: it reloads its SVID and B's bundle together, so once it presents the
    // new SVID it also trusts the new root (it verifies B's sidecar when re-originating).
    let ids = &demo.topo.ids;
    let holders = [
        (
            "B's gateway",
            Role::EdgeB,
            demo.topo.edge_b.bridge_egress,
            &ids.gateway_b,
        ),
        (
            "B's sidecar",
            Role::WorkloadB,
            demo.topo.workload_b.inbound,
            &ids.app_b,
        ),
        (
            "B's federation endpoint",
            Role::EdgeB,
            demo.topo.edge_b.endpoint,
            &ids.endpoint_b,
        ),
    ];
    for (who, role, addr, svid) in holders {
        pki::issue(&demo.launcher, &demo.topo.ids.ca_b, svid).await?;
        let fp = leaf_fingerprint(&svid.pem())?;
        let sni = Side::B.echo_name();
        poll(
            &format!("{who} to present its new-root SVID"),
            Duration::from_secs(15),
            || async {
                let seen = demo.peek_fingerprint(role, addr, &sni).await?;
                Ok((seen == fp).then_some(()))
            },
        )
        .await?;
    }
    let new_svids = t0.elapsed();
    // Calls after the switch prove A's sidecar accepts the new-root SVIDs.
    let before = total.load(Ordering::SeqCst);
    wait_calls(total, before + 4, Duration::from_secs(30)).await?;

    // Phase 3: the old root leaves the bundle; A follows.
    let t1 = Instant::now();
    pki::rotate(&demo.launcher, &demo.topo.ids.ca_b, true).await?;
    let final_roots = bundle_roots(&Identities::bundle(&demo.topo.ids.ca_b))?;
    let final_sequence = wait_bundle(demo, bound, new_sequence, |n| n == final_roots).await?;
    let retire_pickup = t1.elapsed();
    wait_distributed(demo, |n| n == final_roots).await?;
    let before = total.load(Ordering::SeqCst);
    wait_calls(total, before + 4, Duration::from_secs(30)).await?;
    Ok(RotationTimes {
        sequences: [old_sequence, new_sequence, final_sequence],
        roots: [
            old.authorities.unwrap_or(0),
            roots as u64,
            final_roots as u64,
        ],
        gateway_pickup,
        distributed,
        new_svids,
        retire_pickup,
    })
}

/// Waits until A's `/status` shows B's bundle with a sequence above `above` and a root count
/// for which `roots` holds; returns that sequence.
async fn wait_bundle(
    demo: &Demo,
    bound: Duration,
    above: u64,
    roots: impl Fn(usize) -> bool,
) -> anyhow::Result<u64> {
    let found = std::sync::Mutex::new(None);
    poll(
        "A's gateway to show B's new bundle in /status",
        bound + Duration::from_secs(10),
        || async {
            let s = demo.peer_status(Side::A).await?;
            let n = usize::try_from(s.authorities.unwrap_or(0)).unwrap_or(0);
            let hit = s.sequence.filter(|seq| *seq > above && roots(n));
            if let (Some(seq), Ok(mut f)) = (hit, found.lock()) {
                *f = Some(seq);
            }
            Ok(hit)
        },
    )
    .await?;
    let seq = found.lock().ok().and_then(|f| *f);
    seq.context("A's /status lost B's sequence")
}

/// Waits until A's distributed bundle map holds a B bundle whose root count satisfies `roots`.
async fn wait_distributed(demo: &Demo, roots: impl Fn(usize) -> bool) -> anyhow::Result<()> {
    let map = demo.topo.distributed_map(Side::A);
    poll(
        "A's distributed bundle map to hold B's new bundle",
        Duration::from_secs(10),
        || async {
            let Ok(text) = std::fs::read(&map) else {
                return Ok(None);
            };
            let Ok(json) = serde_json::from_slice::<serde_json::Value>(&text) else {
                return Ok(None);
            };
            Ok(map_entry(&json, Side::B.td()).filter(|(_, n)| roots(*n)))
        },
    )
    .await
    .map(|_| ())
}

/// Scenario 6: B's federation endpoint goes down: A keeps its last-known-good bundle,
/// calls succeed, `/status` shows the error, a growing age and the time until trust loss;
/// restart → recovery.
async fn endpoint_down(demo: &mut Demo) -> ScenarioResult {
    let started = Instant::now();
    let expected =
        "calls ok while B's endpoint is down; A's /status shows the last error, a growing \
                    bundle age and the time until trust loss; after a restart a new success"
            .to_owned();
    match endpoint_down_steps(demo).await {
        Ok((actual, matched)) => ScenarioResult::judged(
            6,
            "B's federation endpoint down, then back",
            expected,
            actual,
            started.elapsed(),
            matched,
        ),
        Err(e) => ScenarioResult::judged(
            6,
            "B's federation endpoint down, then back",
            expected,
            format!("{e:#}"),
            started.elapsed(),
            false,
        ),
    }
}

async fn endpoint_down_steps(demo: &mut Demo) -> anyhow::Result<(String, bool)> {
    let idx = demo.procs.endpoint_b;
    demo.children.get(idx).stop().await;
    let t0 = Instant::now();
    let deadline = demo.refresh * 4 + Duration::from_secs(10);
    let mut err_view = PeerView::default();
    let error_after = poll(
        "A's /status to show a fetch error for B",
        deadline,
        || async {
            let s = demo.peer_status(Side::A).await?;
            Ok(s.last_error.is_some().then_some(s))
        },
    )
    .await;
    let error_after = match error_after {
        Ok(d) => d,
        Err(e) => return Err(e),
    };
    let view = demo.peer_status(Side::A).await?;
    if view.last_error.is_some() {
        err_view = view;
    }
    let o = demo.topo.workload_a.outbound.clone();
    let mut calls = Vec::new();
    for (i, addr) in [o.federated, o.bridged, o.federated, o.bridged]
        .into_iter()
        .enumerate()
    {
        calls.push(demo.call(addr, &format!("endpoint down, call {i}")).await);
    }
    let calls_ok = calls
        .iter()
        .filter(|c| matches!(c, CallOutcome::Answered(_)))
        .count();
    let age1 = err_view
        .bundle_age
        .context("A's /status shows no bundle age for B")?;
    let grown = poll(
        "B's bundle age in A's /status to grow",
        Duration::from_secs(10),
        || async {
            let s = demo.peer_status(Side::A).await?;
            Ok(s.bundle_age.filter(|a| *a > age1))
        },
    )
    .await;
    let age2 = match grown {
        Ok(_) => demo.peer_status(Side::A).await?.bundle_age.unwrap_or(age1),
        Err(_) => age1,
    };
    let trust_loss = err_view.time_until_trust_loss;
    let last_success = err_view.last_success.clone();

    let down_for = t0.elapsed();
    let child = demo.endpoint_child(Side::B).await?;
    demo.children.replace(idx, child).await;
    let recovered = poll(
        "A's /status to show a new success for B",
        deadline,
        || async {
            let s = demo.peer_status(Side::A).await?;
            Ok((s.last_error.is_none()
                && s.last_success.is_some()
                && s.last_success != last_success)
                .then_some(()))
        },
    )
    .await;

    let error_text = err_view
        .last_error
        .as_deref()
        .map(|e| truncate(e, 80))
        .unwrap_or_else(|| "-".into());
    let trust = trust_loss.map_or_else(|| "unknown".into(), |t| format!("{:.1} h", t / 3600.0));
    let mut actual = format!(
        "{calls_ok}/{} calls ok while down; error after {}: {error_text:?}; bundle age {:.1} s -> {:.1} s; \
         trust loss in {trust}; down for {}",
        calls.len(),
        secs(error_after),
        age1,
        age2,
        secs(down_for),
    );
    let recovered_ok = match &recovered {
        Ok(d) => {
            actual.push_str(&format!("; recovered {} after the restart", secs(*d)));
            true
        }
        Err(e) => {
            actual.push_str(&format!("; no recovery: {e:#}"));
            false
        }
    };
    let matched = calls_ok == calls.len()
        && age2 > age1
        && trust_loss.is_some_and(|t| t > 0.0)
        && recovered_ok;
    Ok((actual, matched))
}

/// Polls `check` every [`POLL`] until it yields `Some`, for at most `deadline`; returns the
/// time it took. Errors from `check` are retried and the last one is reported on timeout.
async fn poll<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> anyhow::Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let started = Instant::now();
    let mut last = String::new();
    loop {
        match check().await {
            Ok(Some(_)) => return Ok(started.elapsed()),
            Ok(None) => {}
            Err(e) => last = format!(" (last error: {e:#})"),
        }
        if started.elapsed() > deadline {
            bail!(
                "timed out after {} waiting for {what}{last}",
                secs(deadline)
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until the call loop has made at least `n` calls.
async fn wait_calls(total: &AtomicUsize, n: usize, deadline: Duration) -> anyhow::Result<()> {
    poll(&format!("{n} calls of the call loop"), deadline, || async {
        Ok((total.load(Ordering::SeqCst) >= n).then_some(()))
    })
    .await
    .map(|_| ())
}

/// Number of X.509 authorities in a bundle file.
fn bundle_roots(path: &std::path::Path) -> anyhow::Result<usize> {
    let text = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let json: serde_json::Value =
        serde_json::from_slice(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let keys = json
        .get("keys")
        .and_then(|k| k.as_array())
        .with_context(|| format!("{} has no keys", path.display()))?;
    Ok(keys
        .iter()
        .filter(|k| k.get("use").and_then(|u| u.as_str()) == Some("x509-svid"))
        .count())
}

/// SHA-256 fingerprint of the first certificate of a PEM file.
fn leaf_fingerprint(path: &std::path::Path) -> anyhow::Result<String> {
    let text = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(&text)
        .map_err(|e| anyhow::anyhow!("{}: no PEM certificate: {e}", path.display()))?;
    Ok(probe::fingerprint(&pem.contents))
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        format!("{}...", s.chars().take(max).collect::<String>())
    }
}
