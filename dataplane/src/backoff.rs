//! Capped exponential backoff: the one retry schedule every fedgate loop uses (accept errors,
//! issuer requests, federation refresh failures).
//!
//! Invariants: the first delay is `initial`; each further delay doubles the previous one and
//! never exceeds `max` (a `max` below `initial` caps `initial` too); arithmetic saturates, so
//! no number of failures overflows or wraps back to a short delay; [`Backoff::reset`] restarts
//! the schedule at `initial`. [`Backoff::nth`] is the same schedule as a pure function.

use std::time::Duration;

/// A capped doubling delay sequence: `initial`, `2·initial`, `4·initial`, ... up to `max`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    current: Duration,
}

// === impl Backoff ===

impl Backoff {
    /// A schedule starting at `initial` and doubling up to `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            current: initial.min(max),
        }
    }

    /// The delay to wait now; the following call returns the doubled (capped) delay.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Duration {
        let delay = self.current;
        self.current = self.current.saturating_mul(2).min(self.max);
        delay
    }

    /// The delay the next call to [`next`](Self::next) returns, without advancing.
    pub fn peek(&self) -> Duration {
        self.current
    }

    /// Restarts the schedule at `initial` (after a success).
    pub fn reset(&mut self) {
        self.current = self.initial.min(self.max);
    }

    /// The `n`-th delay of the schedule (0-based): `initial · 2^n`, capped at `max`.
    pub fn nth(initial: Duration, max: Duration, n: u32) -> Duration {
        let mut delay = initial.min(max);
        for _ in 0..n {
            if delay >= max || delay.is_zero() {
                break;
            }
            delay = delay.saturating_mul(2).min(max);
        }
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(MS(5), MS(1000));
        let seen: Vec<_> = (0..10).map(|_| b.next()).collect();
        assert_eq!(seen, [5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000].map(MS));
        assert_eq!(b.peek(), MS(1000));
        b.reset();
        assert_eq!(b.next(), MS(5));
    }

    #[test]
    fn nth_matches_the_iterator_and_saturates() {
        let mut b = Backoff::new(MS(3), MS(700));
        for n in 0..20 {
            assert_eq!(Backoff::nth(MS(3), MS(700), n), b.next(), "n = {n}");
        }
        assert_eq!(Backoff::nth(MS(1), Duration::MAX, u32::MAX), Duration::MAX);
        assert_eq!(
            Backoff::nth(Duration::ZERO, MS(5), u32::MAX),
            Duration::ZERO
        );
        assert_eq!(Backoff::nth(MS(10), MS(4), 0), MS(4), "max caps initial");
    }
}
