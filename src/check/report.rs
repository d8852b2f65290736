//! The pure half of `fedgate check`: result types, the human and JSON renderings, the exit
//! status, and the expiry classification. No I/O here, so everything is unit-tested.
//!
//! Invariants:
//! * Every result that is not ok carries a hint (the constructors [`CheckResult::fail`] and
//!   [`CheckResult::warn`] require one); ok results carry none.
//! * The exit status depends only on the statuses: 1 if any check failed, else 2 if any warned,
//!   else 0 (an empty report is all ok).
//! * The JSON rendering is an array of `{name, status, detail, hint}` objects in check order,
//!   `status` one of `"ok"`, `"fail"`, `"warn"`, `hint` a string or `null`.

use std::time::{Duration, SystemTime};

use serde::Serialize;

/// The outcome of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Fail,
    Warn,
}

/// One line of the report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CheckResult {
    pub name: String,
    pub status: Status,
    pub detail: String,
    /// What to do about a failure or a warning; `None` for ok results.
    pub hint: Option<String>,
}

impl CheckResult {
    pub fn ok(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            status: Status::Ok,
            detail: detail.into(),
            hint: None,
        }
    }

    pub fn fail(
        name: impl Into<String>,
        detail: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            status: Status::Fail,
            detail: detail.into(),
            hint: Some(hint.into()),
        }
    }

    pub fn warn(
        name: impl Into<String>,
        detail: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            status: Status::Warn,
            detail: detail.into(),
            hint: Some(hint.into()),
        }
    }

    /// One result from an expiry classification: ok, warn or fail with the given hint.
    pub fn from_expiry(
        name: impl Into<String>,
        what: &str,
        expiry: Expiry,
        hint: impl Into<String>,
    ) -> Self {
        match expiry {
            Expiry::Fine(left) => Self::ok(name, format!("{what} expires in {}", short(left))),
            Expiry::Soon(left) => {
                Self::warn(name, format!("{what} expires in {}", short(left)), hint)
            }
            Expiry::Expired(ago) => {
                Self::fail(name, format!("{what} expired {} ago", short(ago)), hint)
            }
        }
    }
}

/// The mark of a status in the human rendering.
pub fn mark(status: Status) -> &'static str {
    match status {
        Status::Ok => "✓",
        Status::Fail => "✗",
        Status::Warn => "!",
    }
}

/// One result as text: `✓ name: detail`, plus an indented `hint:` line when there is a hint.
pub fn render_line(r: &CheckResult) -> String {
    let mut line = format!("{} {}: {}", mark(r.status), r.name, r.detail);
    if let Some(hint) = &r.hint {
        line.push_str("\n    hint: ");
        line.push_str(hint);
    }
    line
}

/// The whole report as text, one result per line (hints on their own line), then a summary.
pub fn render_text(results: &[CheckResult]) -> String {
    let mut out = String::new();
    for r in results {
        out.push_str(&render_line(r));
        out.push('\n');
    }
    let count = |s| results.iter().filter(|r| r.status == s).count();
    out.push_str(&format!(
        "{} ok, {} failed, {} warnings\n",
        count(Status::Ok),
        count(Status::Fail),
        count(Status::Warn)
    ));
    out
}

/// The whole report as a JSON array.
pub fn render_json(results: &[CheckResult]) -> String {
    // Serializing plain strings and enums into memory cannot fail.
    serde_json::to_string_pretty(results).unwrap_or_else(|_| "[]".to_owned())
}

/// 1 if any check failed, else 2 if any warned, else 0.
pub fn exit_code(results: &[CheckResult]) -> u8 {
    if results.iter().any(|r| r.status == Status::Fail) {
        1
    } else if results.iter().any(|r| r.status == Status::Warn) {
        2
    } else {
        0
    }
}

/// Where a validity end stands relative to now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    /// This much time left, more than the warning threshold.
    Fine(Duration),
    /// This much time left, less than the warning threshold.
    Soon(Duration),
    /// Expired this long ago (zero when it expires exactly now).
    Expired(Duration),
}

/// Classifies `not_after` at `now`: expired at or after it, soon when less than `warn_below`
/// is left.
pub fn classify(not_after: SystemTime, now: SystemTime, warn_below: Duration) -> Expiry {
    match not_after.duration_since(now) {
        Ok(left) if left.is_zero() => Expiry::Expired(Duration::ZERO),
        Ok(left) if left < warn_below => Expiry::Soon(left),
        Ok(left) => Expiry::Fine(left),
        Err(e) => Expiry::Expired(e.duration()),
    }
}

/// An SVID's expiry: soon when less than a third of its lifetime (`not_before..not_after`) is
/// left, i.e. past the point where a rotating source should have renewed it.
pub fn classify_svid(not_before: SystemTime, not_after: SystemTime, now: SystemTime) -> Expiry {
    let lifetime = not_after
        .duration_since(not_before)
        .unwrap_or(Duration::ZERO);
    classify(not_after, now, lifetime / 3)
}

/// A short human duration: `3d 4h`, `5h 12m`, `7m 3s`, `42s`.
pub fn short(d: Duration) -> String {
    let s = d.as_secs();
    let (days, hours, mins, secs) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60, s % 60);
    if days > 0 {
        format!("{days}d {hours}h")
    } else if hours > 0 {
        format!("{hours}h {mins}m")
    } else if mins > 0 {
        format!("{mins}m {secs}s")
    } else {
        format!("{secs}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn exit_code_follows_the_worst_status() {
        assert_eq!(exit_code(&[]), 0);
        let ok = CheckResult::ok("a", "fine");
        let warn = CheckResult::warn("b", "meh", "do x");
        let fail = CheckResult::fail("c", "broken", "do y");
        assert_eq!(exit_code(std::slice::from_ref(&ok)), 0);
        assert_eq!(exit_code(&[ok.clone(), warn.clone()]), 2);
        assert_eq!(exit_code(&[warn.clone(), fail.clone(), ok]), 1);
        assert_eq!(exit_code(&[fail]), 1);
    }

    #[test]
    fn lines_carry_marks_and_hints() {
        assert_eq!(
            render_line(&CheckResult::ok("config", "gateway.toml")),
            "✓ config: gateway.toml"
        );
        assert_eq!(
            render_line(&CheckResult::fail("peer b.test", "timed out", "check url")),
            "✗ peer b.test: timed out\n    hint: check url"
        );
        assert_eq!(
            render_line(&CheckResult::warn("admin", "down", "run it")),
            "! admin: down\n    hint: run it"
        );
        let text = render_text(&[CheckResult::ok("a", "x"), CheckResult::warn("b", "y", "z")]);
        assert!(text.ends_with("1 ok, 0 failed, 1 warnings\n"), "{text}");
    }

    #[test]
    fn json_is_an_array_of_name_status_detail_hint() {
        let json = render_json(&[
            CheckResult::ok("a", "x"),
            CheckResult::fail("b", "y", "z"),
            CheckResult::warn("c", "u", "v"),
        ]);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        let arr = v.as_array().unwrap();
        assert_eq!(arr.len(), 3);
        assert_eq!(
            arr[0],
            serde_json::json!({"name": "a", "status": "ok", "detail": "x", "hint": null})
        );
        assert_eq!(arr[1]["status"], "fail");
        assert_eq!(arr[1]["hint"], "z");
        assert_eq!(arr[2]["status"], "warn");
        assert_eq!(render_json(&[]), "[]");
    }

    #[test]
    fn expiry_classification() {
        let now = SystemTime::UNIX_EPOCH + 1000 * DAY;
        assert_eq!(classify(now + 8 * DAY, now, 7 * DAY), Expiry::Fine(8 * DAY));
        assert_eq!(classify(now + 6 * DAY, now, 7 * DAY), Expiry::Soon(6 * DAY));
        assert_eq!(classify(now, now, 7 * DAY), Expiry::Expired(Duration::ZERO));
        assert_eq!(classify(now - DAY, now, 7 * DAY), Expiry::Expired(DAY));
        // SVID: warn in the last third of the lifetime.
        let nb = now - 20 * DAY;
        assert_eq!(
            classify_svid(nb, now + 11 * DAY, now),
            Expiry::Fine(11 * DAY)
        );
        assert_eq!(classify_svid(nb, now + 9 * DAY, now), Expiry::Soon(9 * DAY));
        assert_eq!(classify_svid(nb, now - DAY, now), Expiry::Expired(DAY));
        // A nonsensical validity (not_after before not_before) never counts as fine.
        assert!(matches!(
            classify_svid(now + DAY, now, now),
            Expiry::Expired(_)
        ));
    }

    #[test]
    fn expiry_results() {
        let r = CheckResult::from_expiry("svid", "the SVID", Expiry::Soon(DAY), "renew");
        assert_eq!(r.status, Status::Warn);
        assert_eq!(r.detail, "the SVID expires in 1d 0h");
        let r = CheckResult::from_expiry("svid", "the SVID", Expiry::Fine(DAY), "renew");
        assert_eq!((r.status, r.hint), (Status::Ok, None));
        let r = CheckResult::from_expiry("svid", "the SVID", Expiry::Expired(DAY), "renew");
        assert_eq!(r.status, Status::Fail);
        assert_eq!(r.detail, "the SVID expired 1d 0h ago");
    }

    #[test]
    fn short_durations() {
        assert_eq!(short(Duration::from_secs(42)), "42s");
        assert_eq!(short(Duration::from_secs(7 * 60 + 3)), "7m 3s");
        assert_eq!(short(Duration::from_secs(5 * 3600 + 12 * 60)), "5h 12m");
        assert_eq!(short(3 * DAY + Duration::from_secs(4 * 3600)), "3d 4h");
    }
}
