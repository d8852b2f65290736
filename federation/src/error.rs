//! One-line rendering of an error and its `source()` chain, for log fields and stderr.
//!
//! Invariants: the result never contains a line break (CR/LF inside messages become spaces);
//! causes are joined with `: `, outermost first; a cause whose text the message so far already
//! ends with (errors that print their source themselves) is not repeated.

/// `err` and its `source()` chain on one line: `outer: cause: root cause`.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut s = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let msg = e.to_string();
        // Some errors repeat their source's text; do not print it twice.
        if !s.ends_with(&msg) {
            s.push_str(": ");
            s.push_str(&msg);
        }
        cur = e.source();
    }
    s.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::error_chain;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read: {0}")]
    struct Repeats(#[source] std::io::Error);

    #[test]
    fn joins_sources_on_one_line() {
        let e = Outer(std::io::Error::other("inner\nline"));
        assert_eq!(error_chain(&e), "outer: inner line");
        assert_eq!(error_chain(&std::io::Error::other("alone")), "alone");
    }

    #[test]
    fn does_not_repeat_a_cause_the_message_already_prints() {
        let e = Repeats(std::io::Error::other("gone"));
        assert_eq!(error_chain(&e), "cannot read: gone");
    }
}
