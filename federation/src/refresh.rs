//! The refresher: polls every peer's bundle endpoint on its own schedule and publishes
//! `BundleSet` snapshots (local bundles + peers' bundles, one per trust domain).
//!
//! Invariants (threat model, docs/threat-model.md, 2 and 3):
//! * A peer's bundle is replaced only by a bundle fetched from that peer's configured
//!   relationship (same trust domain, same profile); a lower `spiffe_sequence`, or none where
//!   the bundle in force has one, is refused as a rollback, counted and logged.
//! * The last-known-good store seeds a peer at start only if the stored record was fetched
//!   from the same endpoint URL with the same profile (and, for `https_spiffe`, the same
//!   endpoint SPIFFE ID) as configured now; otherwise it is ignored with a warning.
//! * A failed fetch changes nothing but the status and the counters: the last-known-good
//!   bundle stays in force, and its own expiry (not the failure) bounds trust.
//! * Bundles are never merged: each snapshot maps a trust domain to exactly one bundle.
//! * The schedule is a pure function ([`RefreshPolicy::next_delay`]): hint clamped to
//!   `[min, max]`, ±jitter, capped exponential backoff after failures that never waits longer
//!   than the normal interval (§6.2: retry at the next interval, not aggressively).

use fedgate_dataplane::backoff::Backoff;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use rand::{Rng, SeedableRng};
use tokio::sync::{broadcast, watch, Notify};
use tokio_util::sync::CancellationToken;

use crate::bundle::{Bundle, BundleSet};
use crate::distribute::Distributor;
use crate::endpoint::{self, FetchOptions, FetchOutcome, Relationship};
use crate::metrics::FederationMetrics;
use crate::spiffe_id::TrustDomain;
use crate::store::{Origin, Store};

/// When to poll next (pure).
#[derive(Clone, Debug, PartialEq)]
pub struct RefreshPolicy {
    /// Lowest interval, whatever the hint says (default 30 s).
    pub min: Duration,
    /// Highest interval, whatever the hint says (default 1 h).
    pub max: Duration,
    /// Interval when the bundle has no `spiffe_refresh_hint` (default 5 min, §4.1).
    pub default: Duration,
    /// Relative jitter, `0.10` = ±10 % (default).
    pub jitter: f64,
    /// First retry delay after a failure (default 1 s).
    pub backoff_initial: Duration,
    /// Highest retry delay (default 5 min); never above the normal interval either.
    pub backoff_max: Duration,
}

/// The outcome of the last poll, as the policy sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
}

/// One peer to poll.
#[derive(Clone, Debug)]
pub struct Peer {
    pub relationship: Relationship,
    pub fetch: FetchOptions,
}

/// What `/status` reports about one peer (all durations in seconds).
#[derive(Clone, Debug, serde::Serialize, PartialEq)]
pub struct PeerStatus {
    pub trust_domain: String,
    pub url: String,
    pub profile: &'static str,
    /// RFC 3339 time of the last successful fetch (or of the stored bundle's fetch).
    pub last_success: Option<String>,
    /// The last refusal, with its reason label first (`"timeout: ..."`); cleared on success.
    pub last_error: Option<String>,
    pub sequence: Option<u64>,
    /// Seconds since the bundle in force was fetched.
    pub bundle_age: Option<f64>,
    /// Seconds until the next poll.
    pub next_poll: Option<f64>,
    /// Seconds until the last authority of the bundle in force expires (negative: expired).
    pub time_until_trust_loss: Option<f64>,
    /// Number of X.509 authorities in force.
    pub authorities: usize,
    /// When the X.509 authorities in force expire (chains anchored at an expired authority
    /// are refused).
    #[serde(flatten)]
    pub expiry: AuthorityExpiry,
}

/// The expiry of a bundle's X.509 authorities, for `/status`.
#[derive(Clone, Debug, Default, serde::Serialize, PartialEq)]
pub struct AuthorityExpiry {
    /// RFC 3339 `notAfter` of each X.509 authority, in bundle order.
    pub x509_authorities_not_after: Vec<String>,
    /// The earliest of them: from then on, chains anchored at that authority are refused.
    pub earliest_authority_expiry: Option<String>,
}

impl AuthorityExpiry {
    /// The expiry of `bundle`'s X.509 authorities (`bundle` absent: none).
    pub fn of(bundle: Option<&Bundle>) -> Self {
        let Some(bundle) = bundle else {
            return Self::default();
        };
        let rfc3339 = |t: SystemTime| humantime::format_rfc3339_seconds(t).to_string();
        Self {
            x509_authorities_not_after: bundle
                .x509_authorities_not_after()
                .into_iter()
                .map(rfc3339)
                .collect(),
            earliest_authority_expiry: bundle.earliest_authority_expiry().map(rfc3339),
        }
    }
}

/// One finished poll, as sent to [`RefresherHandle::events`] subscribers.
#[derive(Clone, Debug, PartialEq)]
pub struct PollEvent {
    pub trust_domain: TrustDomain,
    /// `ok`, `not_modified` or the refusal's reason label.
    pub result: &'static str,
    /// Whether the bundle in force changed.
    pub changed: bool,
    /// Sequence of the bundle in force after the poll.
    pub sequence: Option<u64>,
}

/// Polls all peers; consume it with [`run`](Self::run).
#[derive(Debug)]
pub struct Refresher {
    shared: Arc<Shared>,
    peers: Vec<Peer>,
    policy: RefreshPolicy,
    store: Option<Store>,
    sink: Option<Distributor>,
    metrics: Option<FederationMetrics>,
}

/// Read side of the refresher, cheap to clone.
#[derive(Clone, Debug)]
pub struct RefresherHandle {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Every change of a bundle in force publishes a new snapshot here.
    tx: watch::Sender<BundleSet>,
    /// One per peer; `refresh_now` wakes that peer's task before its timer.
    wake: BTreeMap<TrustDomain, Arc<Notify>>,
    /// Wakes the distribution task after each publish.
    distribute: Notify,
    /// One event per finished poll; lagging receivers lose old events, never block polls.
    events: broadcast::Sender<PollEvent>,
    /// The snapshot last written by the distributor (after the write completed).
    distributed: watch::Sender<Option<BundleSet>>,
}

#[derive(Debug, Default)]
struct State {
    local: BTreeMap<TrustDomain, Arc<Bundle>>,
    peers: BTreeMap<TrustDomain, PeerState>,
}

#[derive(Debug)]
struct PeerState {
    url: String,
    profile: &'static str,
    current: Option<Arc<Bundle>>,
    etag: Option<String>,
    last_success: Option<SystemTime>,
    fetched_at: Option<SystemTime>,
    last_error: Option<String>,
    next_poll: Option<tokio::time::Instant>,
}

// === impl RefreshPolicy ===

impl Default for RefreshPolicy {
    fn default() -> Self {
        Self {
            min: Duration::from_secs(30),
            max: Duration::from_secs(3600),
            default: Duration::from_secs(300),
            jitter: 0.10,
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
        }
    }
}

impl RefreshPolicy {
    /// The normal interval: the hint clamped to `[min, max]`, or the default.
    pub fn interval(&self, hint: Option<Duration>) -> Duration {
        let max = self.max.max(self.min);
        hint.unwrap_or(self.default).clamp(self.min, max)
    }

    /// The delay before the next poll.
    ///
    /// Success: the interval ±jitter. Failure number `n` (1-based): `backoff_initial · 2^(n-1)`
    /// ±jitter, capped at `backoff_max` and at the normal interval.
    pub fn next_delay(
        &self,
        hint: Option<Duration>,
        outcome: Outcome,
        consecutive_failures: u32,
        rng: &mut impl Rng,
    ) -> Duration {
        let interval = self.interval(hint);
        let jitter = self.jitter.clamp(0.0, 1.0);
        let factor = if jitter > 0.0 {
            rng.gen_range(1.0 - jitter..=1.0 + jitter)
        } else {
            1.0
        };
        match outcome {
            Outcome::Success => interval.mul_f64(factor),
            Outcome::Failure => {
                // The doubling stops at 2^31 however long the failure streak.
                let exp = consecutive_failures.saturating_sub(1).min(31);
                let cap = self.backoff_max.min(interval);
                Backoff::nth(self.backoff_initial, cap, exp)
                    .mul_f64(factor)
                    .min(cap)
            }
        }
    }
}

// === impl Refresher ===

impl Refresher {
    /// Builds a refresher. Peers are seeded from `store` (last-known-good); a peer whose
    /// trust domain is also a local one, or is listed twice, is refused with an error log
    /// (bundles are never merged).
    pub fn new(
        local: Vec<Bundle>,
        peers: Vec<Peer>,
        policy: RefreshPolicy,
        store: Option<Store>,
        sink: Option<Distributor>,
        metrics: Option<FederationMetrics>,
    ) -> (Refresher, RefresherHandle) {
        let mut state = State::default();
        for b in local {
            if let Some(m) = &metrics {
                m.record_bundle(&b, SystemTime::now());
            }
            state.local.insert(b.trust_domain().clone(), Arc::new(b));
        }
        let mut accepted = Vec::new();
        let mut wake = BTreeMap::new();
        for peer in peers {
            let td = peer.relationship.trust_domain.clone();
            if state.local.contains_key(&td) || state.peers.contains_key(&td) {
                tracing::error!(trust_domain = %td, "peer trust domain configured twice or also local; ignoring this peer");
                continue;
            }
            let mut ps = PeerState {
                url: peer.relationship.url.to_string(),
                profile: peer.relationship.profile.name(),
                current: None,
                etag: None,
                last_success: None,
                fetched_at: None,
                last_error: None,
                next_poll: None,
            };
            if let Some(store) = &store {
                match store.load(&td) {
                    Ok(Some(stored)) => match seed_refusal(&stored.origin, &peer.relationship) {
                        Some(differs) => tracing::warn!(
                            trust_domain = %td,
                            path = %store.path_for(&td).display(),
                            %differs,
                            "not seeding this peer from the last-known-good store: the stored \
                             bundle was fetched over another relationship than the one \
                             configured; waiting for the first fetch"
                        ),
                        None => {
                            tracing::info!(trust_domain = %td, sequence = ?stored.bundle.sequence(), "seeded peer bundle from the last-known-good store");
                            if let Some(m) = &metrics {
                                m.record_bundle(&stored.bundle, stored.fetched_at);
                            }
                            ps.last_success = Some(stored.fetched_at);
                            ps.fetched_at = Some(stored.fetched_at);
                            ps.current = Some(Arc::new(stored.bundle));
                        }
                    },
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(trust_domain = %td, error = %crate::error_chain(&e), "ignoring stored bundle")
                    }
                }
            }
            state.peers.insert(td.clone(), ps);
            wake.insert(td, Arc::new(Notify::new()));
            accepted.push(peer);
        }
        let (tx, _rx) = watch::channel(snapshot(&state));
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            tx,
            wake,
            distribute: Notify::new(),
            events: broadcast::channel(256).0,
            distributed: watch::channel(None).0,
        });
        let handle = RefresherHandle {
            shared: shared.clone(),
        };
        (
            Refresher {
                shared,
                peers: accepted,
                policy,
                store,
                sink,
                metrics,
            },
            handle,
        )
    }

    /// Polls every peer until `shutdown`; the first poll of each peer happens at once.
    pub async fn run(self, shutdown: CancellationToken) {
        let tracker = tokio_util::task::TaskTracker::new();
        if let Some(sink) = self.sink.clone() {
            let shared = self.shared.clone();
            let shutdown = shutdown.clone();
            tracker.spawn(distribute_loop(shared, sink, shutdown));
        }
        for peer in self.peers {
            let td = peer.relationship.trust_domain.clone();
            let Some(wake) = self.shared.wake.get(&td).cloned() else {
                continue;
            };
            let task = PeerTask {
                shared: self.shared.clone(),
                peer,
                policy: self.policy.clone(),
                store: self.store.clone(),
                metrics: self.metrics.clone(),
                wake,
            };
            tracker.spawn(task.run(shutdown.clone()));
        }
        tracker.close();
        tracker.wait().await;
    }
}

async fn distribute_loop(shared: Arc<Shared>, sink: Distributor, shutdown: CancellationToken) {
    loop {
        // Write the newest snapshot; changes that arrive meanwhile trigger one more write.
        let set = shared.tx.borrow().clone();
        let (s, written) = (sink.clone(), set.clone());
        match tokio::task::spawn_blocking(move || s.write(&written)).await {
            Ok(Ok(dir)) => {
                tracing::debug!(dir = %dir.display(), "bundles distributed");
                shared.distributed.send_replace(Some(set));
            }
            Ok(Err(e)) => {
                tracing::error!(error = %crate::error_chain(&e), "cannot distribute bundles")
            }
            Err(e) => tracing::error!(error = %e, "distribution task failed"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = shared.distribute.notified() => {}
        }
    }
}

struct PeerTask {
    shared: Arc<Shared>,
    peer: Peer,
    policy: RefreshPolicy,
    store: Option<Store>,
    metrics: Option<FederationMetrics>,
    wake: Arc<Notify>,
}

impl PeerTask {
    async fn run(self, shutdown: CancellationToken) {
        let td = self.peer.relationship.trust_domain.clone();
        let mut failures = 0u32;
        let mut rng = rand::rngs::StdRng::from_entropy();
        loop {
            let (current, etag) = {
                let st = self.shared.lock();
                let ps = st.peers.get(&td);
                (
                    ps.and_then(|p| p.current.clone()),
                    ps.and_then(|p| p.etag.clone()),
                )
            };
            let mut opts = self.peer.fetch.clone();
            // Only ask for 304 when we hold the bundle that ETag describes.
            opts.if_none_match = if current.is_some() { etag } else { None };
            let result = tokio::select! {
                () = shutdown.cancelled() => return,
                r = endpoint::fetch(&self.peer.relationship, current.as_deref(), &opts) => r,
            };
            let label = match &result {
                Ok(FetchOutcome::Updated { .. }) => "ok",
                Ok(FetchOutcome::NotModified) => "not_modified",
                Err(e) => e.reason_label(),
            };
            let outcome = self.apply(&td, current.as_deref(), result);
            let (changed, sequence) = {
                let st = self.shared.lock();
                let now = st.peers.get(&td).and_then(|p| p.current.clone());
                let changed = match (&current, &now) {
                    (Some(a), Some(b)) => !Arc::ptr_eq(a, b),
                    (None, None) => false,
                    _ => true,
                };
                (changed, now.and_then(|b| b.sequence()))
            };
            let _ = self.shared.events.send(PollEvent {
                trust_domain: td.clone(),
                result: label,
                changed,
                sequence,
            });
            failures = match outcome {
                Outcome::Success => 0,
                Outcome::Failure => failures.saturating_add(1),
            };
            let hint = self
                .shared
                .lock()
                .peers
                .get(&td)
                .and_then(|p| p.current.as_ref())
                .and_then(|b| b.refresh_hint());
            let delay = self.policy.next_delay(hint, outcome, failures, &mut rng);
            if let Some(ps) = self.shared.lock().peers.get_mut(&td) {
                ps.next_poll = Some(tokio::time::Instant::now() + delay);
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(delay) => {}
                () = self.wake.notified() => {}
            }
        }
    }

    fn apply(
        &self,
        td: &TrustDomain,
        current: Option<&Bundle>,
        result: Result<FetchOutcome, endpoint::FetchError>,
    ) -> Outcome {
        let url = self.peer.relationship.url.as_str();
        let now = SystemTime::now();
        let label = match &result {
            Ok(FetchOutcome::Updated { .. }) => "ok",
            Ok(FetchOutcome::NotModified) => "not_modified",
            Err(e) => e.reason_label(),
        };
        if let Some(m) = &self.metrics {
            m.record_fetch(td, label);
        }
        match result {
            Ok(FetchOutcome::Updated {
                bundle,
                etag,
                url: final_url,
            }) => {
                let changed = current.is_none_or(|c| {
                    !c.same_authorities(&bundle)
                        || c.sequence() != bundle.sequence()
                        || c.refresh_hint() != bundle.refresh_hint()
                });
                tracing::info!(
                    trust_domain = %td, %url, served_by = %final_url, outcome = "ok", changed,
                    sequence = ?bundle.sequence(), authorities = bundle.x509_authorities().len(),
                    "bundle fetched"
                );
                if let Some(store) = &self.store {
                    let origin = Origin::of(&self.peer.relationship);
                    if let Err(e) = store.save(&bundle, &origin, now) {
                        tracing::error!(trust_domain = %td, error = %crate::error_chain(&e), "cannot persist the fetched bundle");
                    }
                }
                if let Some(m) = &self.metrics {
                    if changed {
                        m.record_bundle(&bundle, now);
                    }
                }
                {
                    let mut st = self.shared.lock();
                    if let Some(ps) = st.peers.get_mut(td) {
                        ps.last_success = Some(now);
                        ps.last_error = None;
                        ps.etag = etag;
                        ps.fetched_at = Some(now);
                        if changed {
                            ps.current = Some(Arc::new(bundle));
                        }
                    }
                    if changed {
                        self.shared.tx.send_replace(snapshot(&st));
                    }
                }
                if changed {
                    self.shared.distribute.notify_one();
                }
                if !changed {
                    if let (Some(m), Some(c)) = (&self.metrics, current) {
                        m.record_bundle(c, now);
                    }
                }
                Outcome::Success
            }
            Ok(FetchOutcome::NotModified) => {
                tracing::debug!(trust_domain = %td, %url, outcome = "not_modified", "bundle unchanged");
                let mut st = self.shared.lock();
                if let Some(ps) = st.peers.get_mut(td) {
                    ps.last_success = Some(now);
                    ps.fetched_at = Some(now);
                    ps.last_error = None;
                }
                if let (Some(m), Some(c)) = (&self.metrics, current) {
                    m.record_bundle(c, now);
                }
                Outcome::Success
            }
            Err(e) => {
                let reason = e.reason_label();
                let chain = crate::error_chain(&e);
                tracing::warn!(
                    trust_domain = %td, %url, outcome = "refused", reason, error = %chain,
                    "bundle fetch refused; keeping the last-known-good bundle"
                );
                if let Some(ps) = self.shared.lock().peers.get_mut(td) {
                    ps.last_error = Some(format!("{reason}: {chain}"));
                }
                Outcome::Failure
            }
        }
    }
}

// === impl RefresherHandle ===

impl RefresherHandle {
    /// Snapshots of all bundles in force; a new one is sent on every change.
    pub fn subscribe(&self) -> watch::Receiver<BundleSet> {
        self.shared.tx.subscribe()
    }

    /// One event per finished poll of any peer.
    pub fn events(&self) -> broadcast::Receiver<PollEvent> {
        self.shared.events.subscribe()
    }

    /// The snapshot last written to the distribution directory (`None` before the first).
    pub fn distributed(&self) -> watch::Receiver<Option<BundleSet>> {
        self.shared.distributed.subscribe()
    }

    /// The current snapshot.
    pub fn bundles(&self) -> BundleSet {
        self.shared.tx.borrow().clone()
    }

    /// Replaces a local trust domain's bundle (e.g. the gateway's own bundle file changed).
    /// Refused (with an error log, returning `false`) for a trust domain that is a peer.
    pub fn set_local(&self, bundle: Bundle) -> bool {
        let td = bundle.trust_domain().clone();
        {
            let mut st = self.shared.lock();
            if st.peers.contains_key(&td) {
                tracing::error!(trust_domain = %td, "refusing a local bundle for a peer trust domain");
                return false;
            }
            st.local.insert(td, Arc::new(bundle));
            self.shared.tx.send_replace(snapshot(&st));
        }
        self.shared.distribute.notify_one();
        true
    }

    /// Wakes the poller of `td` now; `false` if `td` is not a peer.
    pub fn refresh_now(&self, td: &TrustDomain) -> bool {
        match self.shared.wake.get(td) {
            Some(n) => {
                n.notify_one();
                true
            }
            None => false,
        }
    }

    /// The status of every peer, sorted by trust domain.
    pub fn status(&self) -> Vec<PeerStatus> {
        let now = SystemTime::now();
        let now_i = tokio::time::Instant::now();
        let secs = |from: SystemTime, to: SystemTime| match to.duration_since(from) {
            Ok(d) => d.as_secs_f64(),
            Err(e) => -e.duration().as_secs_f64(),
        };
        let st = self.shared.lock();
        st.peers
            .iter()
            .map(|(td, p)| PeerStatus {
                trust_domain: td.to_string(),
                url: p.url.clone(),
                profile: p.profile,
                last_success: p
                    .last_success
                    .map(|t| humantime::format_rfc3339_seconds(t).to_string()),
                last_error: p.last_error.clone(),
                sequence: p.current.as_ref().and_then(|b| b.sequence()),
                bundle_age: p.fetched_at.map(|t| secs(t, now)),
                next_poll: p
                    .next_poll
                    .map(|t| t.saturating_duration_since(now_i).as_secs_f64()),
                time_until_trust_loss: p
                    .current
                    .as_ref()
                    .and_then(|b| b.trust_expires_at())
                    .map(|t| secs(now, t)),
                authorities: p.current.as_ref().map_or(0, |b| b.x509_authorities().len()),
                expiry: AuthorityExpiry::of(p.current.as_deref()),
            })
            .collect()
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Why a stored bundle must not seed the peer configured as `rel` (what differs), or `None`
/// if it was fetched over that very relationship (pure).
fn seed_refusal(stored: &Origin, rel: &Relationship) -> Option<String> {
    stored.mismatch(&Origin::of(rel))
}

fn snapshot(state: &State) -> BundleSet {
    let mut set = BundleSet::new();
    for b in state.local.values() {
        set = set.with((**b).clone());
    }
    for b in state.peers.values().filter_map(|p| p.current.as_ref()) {
        set = set.with((**b).clone());
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    fn no_jitter() -> RefreshPolicy {
        RefreshPolicy {
            jitter: 0.0,
            ..RefreshPolicy::default()
        }
    }

    #[test]
    fn next_delay_table() {
        let p = no_jitter();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        // (hint, outcome, failures) -> delay
        let table: &[(Option<Duration>, Outcome, u32, Duration)] = &[
            (None, Outcome::Success, 0, S(300)),
            (Some(S(60)), Outcome::Success, 0, S(60)),
            (Some(S(1)), Outcome::Success, 0, S(30)),
            (Some(S(86400)), Outcome::Success, 0, S(3600)),
            (None, Outcome::Failure, 1, S(1)),
            (None, Outcome::Failure, 2, S(2)),
            (None, Outcome::Failure, 5, S(16)),
            (None, Outcome::Failure, 9, S(256)),
            (None, Outcome::Failure, 10, S(300)),
            (None, Outcome::Failure, 1000, S(300)),
            // Backoff never exceeds the normal interval.
            (Some(S(45)), Outcome::Failure, 7, S(45)),
            (Some(S(86400)), Outcome::Failure, 30, S(300)),
        ];
        for (hint, outcome, failures, want) in table {
            assert_eq!(
                p.next_delay(*hint, *outcome, *failures, &mut rng),
                *want,
                "hint {hint:?} {outcome:?} failures {failures}"
            );
        }
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        let p = RefreshPolicy::default();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut seen_low = false;
        let mut seen_high = false;
        for _ in 0..1000 {
            let d = p.next_delay(Some(S(100)), Outcome::Success, 0, &mut rng);
            assert!(d >= S(90) && d <= S(110), "{d:?}");
            seen_low |= d < S(98);
            seen_high |= d > S(102);
            let f = p.next_delay(Some(S(100)), Outcome::Failure, 20, &mut rng);
            assert!(f <= S(100), "backoff above interval: {f:?}");
        }
        assert!(seen_low && seen_high, "jitter is not spread");
    }

    #[test]
    fn authority_expiry_lists_every_root_and_the_earliest() {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let root = |year: i32| {
            let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.not_before = rcgen::date_time_ymd(2020, 1, 1);
            p.not_after = rcgen::date_time_ymd(year, 6, 1);
            p.self_signed(&KeyPair::generate().unwrap())
                .unwrap()
                .der()
                .clone()
        };
        let mut b = Bundle::new(TrustDomain::new("b.test").unwrap());
        assert_eq!(AuthorityExpiry::of(Some(&b)), AuthorityExpiry::default());
        assert_eq!(AuthorityExpiry::of(None), AuthorityExpiry::default());
        b.add_x509_authority(root(2040));
        b.add_x509_authority(root(2031));
        let e = AuthorityExpiry::of(Some(&b));
        assert_eq!(
            e.x509_authorities_not_after,
            ["2040-06-01T00:00:00Z", "2031-06-01T00:00:00Z"]
        );
        assert_eq!(
            e.earliest_authority_expiry.as_deref(),
            Some("2031-06-01T00:00:00Z")
        );
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["earliest_authority_expiry"], "2031-06-01T00:00:00Z");
    }

    #[test]
    fn min_above_max_is_tolerated() {
        let p = RefreshPolicy {
            min: S(10),
            max: S(5),
            ..no_jitter()
        };
        assert_eq!(p.interval(None), S(10));
    }
}
