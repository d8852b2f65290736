//! The last refused connections, for `/status` and the status page: a bounded ring of the
//! most recent refusals (time, listener, reason) plus a running total per (listener, reason).
//!
//! Invariants: memory is bounded: the ring holds at most [`RECENT`] entries, and totals have
//! one entry per (listener, reason) pair, where listener names come from configuration and
//! reasons from a fixed vocabulary (`&'static str` labels), never from the network. Recording
//! takes one short mutex (a push, at most one pop and one counter increment; the listener
//! name is allocated before the lock is taken); a poisoned lock is recovered, never a panic.
//! Nothing here imports another module of this crate.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

/// How many refusals the ring keeps.
pub const RECENT: usize = 32;

/// Shared handle to the refusal ring and totals; cheap to clone (one `Arc`).
#[derive(Clone, Debug, Default)]
pub struct Denials {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Oldest first.
    recent: VecDeque<Denial>,
    totals: BTreeMap<(String, &'static str), u64>,
}

/// One refused connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denial {
    pub at: SystemTime,
    pub listener: String,
    pub reason: &'static str,
}

// === impl Denials ===

impl Denials {
    /// Records a refusal on `listener` for `reason` now.
    pub fn record(&self, listener: &str, reason: &'static str) {
        self.record_at(SystemTime::now(), listener, reason);
    }

    /// Records a refusal at `at` (tests pass a fixed time).
    pub fn record_at(&self, at: SystemTime, listener: &str, reason: &'static str) {
        let denial = Denial {
            at,
            listener: listener.to_owned(),
            reason,
        };
        let key = (denial.listener.clone(), reason);
        let mut inner = self.lock();
        if inner.recent.len() >= RECENT {
            inner.recent.pop_front();
        }
        inner.recent.push_back(denial);
        *inner.totals.entry(key).or_insert(0) += 1;
    }

    /// The refusals in the ring, newest first.
    pub fn recent(&self) -> Vec<Denial> {
        self.lock().recent.iter().rev().cloned().collect()
    }

    /// Total refusals per (listener, reason), sorted by listener then reason.
    pub fn totals(&self) -> Vec<(String, &'static str, u64)> {
        self.lock()
            .totals
            .iter()
            .map(|((l, r), n)| (l.clone(), *r, *n))
            .collect()
    }

    /// The `/status` `denials` document: `{"totals": [{listener, reason, count}], "recent":
    /// [{at, listener, reason}]}` (`recent` newest first, `at` RFC 3339).
    pub fn status(&self) -> serde_json::Value {
        let totals: Vec<_> = self
            .totals()
            .into_iter()
            .map(|(listener, reason, count)| {
                serde_json::json!({ "listener": listener, "reason": reason, "count": count })
            })
            .collect();
        let recent: Vec<_> = self
            .recent()
            .into_iter()
            .map(|d| {
                serde_json::json!({
                    "at": humantime::format_rfc3339_seconds(d.at).to_string(),
                    "listener": d.listener,
                    "reason": d.reason,
                })
            })
            .collect();
        serde_json::json!({ "totals": totals, "recent": recent })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_ring_is_bounded_newest_first_and_totals_keep_counting() {
        let d = Denials::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        for i in 0..(RECENT as u64 + 5) {
            let reason = if i % 2 == 0 { "no_sni" } else { "not_tls" };
            d.record_at(t0 + Duration::from_secs(i), "egress", reason);
        }
        let recent = d.recent();
        assert_eq!(recent.len(), RECENT);
        assert_eq!(recent[0].at, t0 + Duration::from_secs(RECENT as u64 + 4));
        assert_eq!(recent[RECENT - 1].at, t0 + Duration::from_secs(5));
        assert_eq!(
            d.totals(),
            vec![
                ("egress".to_owned(), "no_sni", 19),
                ("egress".to_owned(), "not_tls", 18)
            ]
        );
        let doc = d.status();
        assert_eq!(doc["recent"].as_array().map(Vec::len), Some(RECENT));
        assert_eq!(doc["recent"][0]["reason"], "no_sni");
        assert_eq!(doc["recent"][0]["at"], "2023-11-14T22:13:56Z");
        assert_eq!(doc["totals"][1]["count"], 18);
    }

    #[test]
    fn clones_share_one_ring() {
        let a = Denials::default();
        let b = a.clone();
        b.record("in", "denied");
        assert_eq!(a.recent().len(), 1);
        assert_eq!(a.status()["totals"][0]["listener"], "in");
    }
}
