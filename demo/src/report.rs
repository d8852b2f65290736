//! The demo's report: one line per scenario (number, name, expected vs actual, timing,
//! MATCH/MISMATCH), and progress lines for long setup steps.
//!
//! Invariant: a scenario line ends in ` MATCH` exactly when its `matched` is true, so scripts
//! (and tests/demo_run.rs) can count the lines that end in ` MATCH`.

use std::fmt;
use std::time::{Duration, Instant};

/// The outcome of one scenario.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScenarioResult {
    pub number: usize,
    pub name: String,
    pub expected: String,
    pub actual: String,
    pub elapsed: Duration,
    pub matched: bool,
}

/// Times a step and prints `  <what> ... done (1.2 s)` lines.
#[derive(Debug)]
pub struct Progress {
    started: Instant,
}

// === impl ScenarioResult ===

impl ScenarioResult {
    /// A result whose verdict is whether `actual` equals `expected`.
    pub fn compare(
        number: usize,
        name: &str,
        expected: String,
        actual: String,
        elapsed: Duration,
    ) -> Self {
        let matched = expected == actual;
        Self {
            number,
            name: name.to_owned(),
            expected,
            actual,
            elapsed,
            matched,
        }
    }

    /// A result with an explicit verdict (for checks that are not plain string equality).
    pub fn judged(
        number: usize,
        name: &str,
        expected: String,
        actual: String,
        elapsed: Duration,
        matched: bool,
    ) -> Self {
        Self {
            number,
            name: name.to_owned(),
            expected,
            actual,
            elapsed,
            matched,
        }
    }
}

impl fmt::Display for ScenarioResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "scenario {} {}: expected {}; actual {}; {} {}",
            self.number,
            self.name,
            self.expected,
            self.actual,
            secs(self.elapsed),
            if self.matched { "MATCH" } else { "MISMATCH" }
        )
    }
}

/// `1.23 s`.
pub fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// The summary line after all scenarios.
pub fn summary(results: &[ScenarioResult]) -> String {
    let matched = results.iter().filter(|r| r.matched).count();
    format!("{matched}/{} scenarios matched", results.len())
}

// === impl Progress ===

impl Progress {
    /// Prints `what` and starts timing it.
    pub fn start(what: &str) -> Self {
        println!("  {what} ...");
        Self {
            started: Instant::now(),
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Prints `  <what> done (1.23 s)`.
    pub fn done(self, what: &str) {
        println!("  {what} done ({})", secs(self.started.elapsed()));
    }
}
