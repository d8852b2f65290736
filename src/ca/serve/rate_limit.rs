//! Per-caller rate limit of the issuing endpoint: one token bucket per authenticated client
//! SPIFFE ID.
//!
//! Invariants:
//! * A caller may make `burst` requests at once and `per_minute` requests per minute on
//!   average; a request that finds no whole token is refused with the number of whole seconds
//!   after which one will be there (at least 1), which the endpoint sends as `Retry-After`.
//! * Memory is bounded: at most `max_callers` buckets are kept. A bucket that has refilled
//!   completely carries no information (a new caller starts full), so such buckets are dropped
//!   first when the map is full; if none is full, the bucket touched longest ago is dropped
//!   (that caller gets a fresh burst: the bound favours memory over exactness).
//! * [`Buckets`] is pure: the caller passes the clock (`now`), so tests need no sleeps.
//!   [`RateLimiter`] wraps it in a mutex with the real monotonic clock.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use fedgate_federation::spiffe_id::SpiffeId;

/// Default sustained rate per caller.
pub const DEFAULT_PER_MINUTE: u32 = 60;
/// Default burst per caller.
pub const DEFAULT_BURST: u32 = 10;
/// Most callers tracked at once (a bucket is a few dozen bytes plus the ID).
pub const MAX_TRACKED_CALLERS: usize = 10_000;

/// The limit applied to every caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Tokens added per minute (the sustained rate); at least 1.
    pub per_minute: u32,
    /// Bucket size (requests allowed at once); at least 1.
    pub burst: u32,
}

/// The outcome of one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    /// Refused; a token will be available after `retry_after` (whole seconds, at least 1 s).
    Limited {
        retry_after: Duration,
    },
}

/// The token buckets of every caller, with an injected clock.
#[derive(Debug)]
pub struct Buckets {
    limit: RateLimit,
    max_callers: usize,
    map: HashMap<SpiffeId, Bucket>,
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    /// Tokens at `updated`, in units of 1/[`UNITS_PER_TOKEN`] token (exact integer arithmetic:
    /// refill is continuous).
    units: u128,
    updated: Instant,
}

/// With 60·10⁹ units per token, a rate of `per_minute` tokens per minute refills exactly
/// `per_minute` units per nanosecond.
const UNITS_PER_TOKEN: u128 = 60_000_000_000;

/// [`Buckets`] behind a mutex, on the monotonic clock; shared by all connections.
#[derive(Debug)]
pub struct RateLimiter {
    buckets: Mutex<Buckets>,
}

// === impl RateLimit ===

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            per_minute: DEFAULT_PER_MINUTE,
            burst: DEFAULT_BURST,
        }
    }
}

impl RateLimit {
    /// Units refilled per nanosecond.
    fn units_per_ns(&self) -> u128 {
        u128::from(self.per_minute.max(1))
    }

    /// Bucket size in units.
    fn capacity(&self) -> u128 {
        u128::from(self.burst.max(1)) * UNITS_PER_TOKEN
    }

    /// Time for an empty bucket to fill up.
    fn fill_time(&self) -> Duration {
        let ns = self.capacity() / self.units_per_ns();
        Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
    }
}

// === impl Buckets ===

impl Buckets {
    pub fn new(limit: RateLimit, max_callers: usize) -> Self {
        Self {
            limit,
            max_callers: max_callers.max(1),
            map: HashMap::new(),
        }
    }

    /// Takes one token from `caller`'s bucket at time `now`, or says when one will be there.
    pub fn check(&mut self, caller: &SpiffeId, now: Instant) -> Decision {
        let (rate, capacity) = (self.limit.units_per_ns(), self.limit.capacity());
        if !self.map.contains_key(caller) && self.map.len() >= self.max_callers {
            self.make_room(now);
        }
        let bucket = self.map.entry(caller.clone()).or_insert(Bucket {
            units: capacity,
            updated: now,
        });
        // `now` is earlier than `updated` only if the caller passes a clock that went
        // backwards; then nothing is refilled.
        let elapsed = now.saturating_duration_since(bucket.updated).as_nanos();
        bucket.units = bucket
            .units
            .saturating_add(elapsed.saturating_mul(rate))
            .min(capacity);
        bucket.updated = now.max(bucket.updated);
        if bucket.units >= UNITS_PER_TOKEN {
            bucket.units -= UNITS_PER_TOKEN;
            return Decision::Allowed;
        }
        let missing_ns = (UNITS_PER_TOKEN - bucket.units).div_ceil(rate);
        let secs = missing_ns.div_ceil(1_000_000_000).max(1);
        Decision::Limited {
            // At most 60 s (per_minute >= 1).
            retry_after: Duration::from_secs(u64::try_from(secs).unwrap_or(u64::MAX)),
        }
    }

    /// Number of callers tracked.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Drops every bucket that is full again at `now`; if none is, the least recently touched.
    fn make_room(&mut self, now: Instant) {
        let capacity = self.limit.capacity();
        let full_after = self.limit.fill_time();
        let before = self.map.len();
        self.map.retain(|_, b| {
            b.units < capacity && now.saturating_duration_since(b.updated) < full_after
        });
        if self.map.len() < before {
            return;
        }
        let oldest = self
            .map
            .iter()
            .min_by_key(|(_, b)| b.updated)
            .map(|(id, _)| id.clone());
        if let Some(id) = oldest {
            self.map.remove(&id);
        }
    }
}

// === impl RateLimiter ===

impl RateLimiter {
    pub fn new(limit: RateLimit) -> Self {
        Self {
            buckets: Mutex::new(Buckets::new(limit, MAX_TRACKED_CALLERS)),
        }
    }

    /// Takes one token from `caller`'s bucket now.
    pub fn check(&self, caller: &SpiffeId) -> Decision {
        let now = Instant::now();
        self.buckets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .check(caller, now)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn id(n: usize) -> SpiffeId {
        SpiffeId::parse(&format!("spiffe://a.test/gw/{n}")).unwrap()
    }

    const SEC: Duration = Duration::from_secs(1);

    fn limited(d: Decision) -> Duration {
        match d {
            Decision::Limited { retry_after } => retry_after,
            Decision::Allowed => panic!("expected a refusal"),
        }
    }

    #[test]
    fn burst_then_sustained_rate_with_retry_after() {
        let limit = RateLimit {
            per_minute: 60,
            burst: 3,
        };
        let mut b = Buckets::new(limit, 100);
        let t0 = Instant::now();
        let a = id(1);
        for _ in 0..3 {
            assert_eq!(b.check(&a, t0), Decision::Allowed);
        }
        assert_eq!(limited(b.check(&a, t0)), SEC);
        // Half a token later: still refused, one more second rounded up.
        assert_eq!(limited(b.check(&a, t0 + SEC / 2)), SEC);
        // One token per second.
        assert_eq!(b.check(&a, t0 + SEC), Decision::Allowed);
        assert_eq!(limited(b.check(&a, t0 + SEC)), SEC);
        // Long idle: back to the burst, never more.
        let later = t0 + 3600 * SEC;
        for _ in 0..3 {
            assert_eq!(b.check(&a, later), Decision::Allowed);
        }
        assert!(matches!(b.check(&a, later), Decision::Limited { .. }));
    }

    #[test]
    fn slow_rates_give_long_retry_after_and_callers_are_independent() {
        let mut b = Buckets::new(
            RateLimit {
                per_minute: 2,
                burst: 1,
            },
            100,
        );
        let t0 = Instant::now();
        assert_eq!(b.check(&id(1), t0), Decision::Allowed);
        assert_eq!(limited(b.check(&id(1), t0)), 30 * SEC);
        assert_eq!(limited(b.check(&id(1), t0 + 10 * SEC)), 20 * SEC);
        // Another caller has its own bucket.
        assert_eq!(b.check(&id(2), t0), Decision::Allowed);
        assert_eq!(b.check(&id(1), t0 + 30 * SEC), Decision::Allowed);
    }

    #[test]
    fn a_clock_going_backwards_refills_nothing() {
        let mut b = Buckets::new(
            RateLimit {
                per_minute: 60,
                burst: 1,
            },
            10,
        );
        let t0 = Instant::now() + 100 * SEC;
        assert_eq!(b.check(&id(1), t0), Decision::Allowed);
        assert!(matches!(
            b.check(&id(1), t0 - 50 * SEC),
            Decision::Limited { .. }
        ));
        assert_eq!(b.check(&id(1), t0 + SEC), Decision::Allowed);
    }

    #[test]
    fn memory_is_bounded_and_full_buckets_go_first() {
        let limit = RateLimit {
            per_minute: 60,
            burst: 2,
        };
        let mut b = Buckets::new(limit, 3);
        let t0 = Instant::now();
        // Caller 0 drains its bucket; callers 1 and 2 use one token each.
        b.check(&id(0), t0);
        b.check(&id(0), t0);
        b.check(&id(1), t0 + SEC / 10);
        b.check(&id(2), t0 + SEC / 5);
        assert_eq!(b.len(), 3);
        // A fourth caller: nobody is full yet, so the least recently touched (0) goes.
        assert_eq!(b.check(&id(3), t0 + SEC / 4), Decision::Allowed);
        assert_eq!(b.len(), 3);
        // Caller 0 starts afresh (the bound favours memory over exactness).
        assert_eq!(b.check(&id(0), t0 + SEC / 4), Decision::Allowed);
        assert_eq!(b.len(), 3);
        // Much later everyone is full again: all are dropped to make room.
        assert_eq!(b.check(&id(9), t0 + 60 * SEC), Decision::Allowed);
        assert_eq!(b.len(), 1);
    }

    proptest! {
        /// Over any request pattern, a caller never gets more than `burst + elapsed * rate`
        /// requests through, the map never exceeds its bound, and `Retry-After` is honest: one
        /// request exactly that much later is allowed (for a single caller).
        #[test]
        fn never_more_than_the_bucket_allows(
            per_minute in 1u32..600,
            burst in 1u32..20,
            steps in proptest::collection::vec((0u64..5_000, 0usize..4), 1..200),
        ) {
            let limit = RateLimit { per_minute, burst };
            let mut b = Buckets::new(limit, 4);
            let t0 = Instant::now();
            let mut now = t0;
            let mut allowed = [0u64; 4];
            for (gap_ms, who) in steps {
                now += Duration::from_millis(gap_ms);
                if b.check(&id(who), now) == Decision::Allowed {
                    allowed[who] += 1;
                }
                prop_assert!(b.len() <= 4);
            }
            let elapsed = now.duration_since(t0).as_secs_f64();
            let most = f64::from(burst) + elapsed * f64::from(per_minute) / 60.0;
            for n in allowed {
                prop_assert!(n as f64 <= most + 1e-9, "{} > {}", n, most);
            }
        }

        #[test]
        fn retry_after_is_enough(
            per_minute in 1u32..600,
            burst in 1u32..5,
            gap_ms in 0u64..2_000,
        ) {
            let mut b = Buckets::new(RateLimit { per_minute, burst }, 4);
            let t0 = Instant::now();
            let caller = id(0);
            let mut now = t0;
            loop {
                match b.check(&caller, now) {
                    Decision::Allowed => now += Duration::from_millis(gap_ms),
                    Decision::Limited { retry_after } => {
                        prop_assert!(retry_after >= SEC);
                        prop_assert_eq!(b.check(&caller, now + retry_after), Decision::Allowed);
                        break;
                    }
                }
                if now.duration_since(t0) > Duration::from_secs(3600) {
                    break;
                }
            }
        }
    }
}
