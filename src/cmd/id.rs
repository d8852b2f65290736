//! `fedgate id check <ID>...` (docs/cli.md).
//!
//! Invariants: every argument is checked (no early exit); a valid ID prints
//! `<id>\ttrust_domain=<td>\tpath=<path>` on stdout, an invalid one `<id>: <reason>` on stderr;
//! the exit status is 0 only if every ID is valid, else 1. Valid IDs are still printed when
//! others are invalid (docs/cli.md).

use std::io::Write;
use std::process::ExitCode;

use fedgate_federation::spiffe_id::SpiffeId;

#[derive(Debug, clap::Subcommand)]
pub enum IdCommand {
    /// Check SPIFFE IDs against SPIFFE-ID.md; exit 1 if any is invalid.
    Check {
        /// SPIFFE IDs such as spiffe://example.org/ns/default/sa/web.
        #[arg(required = true, value_name = "ID")]
        ids: Vec<String>,
    },
}

/// One line of output for one argument.
#[derive(Debug, PartialEq, Eq)]
pub enum Checked {
    /// The stdout line.
    Valid(String),
    /// The stderr line.
    Invalid(String),
}

pub async fn run(cmd: IdCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        IdCommand::Check { ids } => {
            let results: Vec<Checked> = ids.iter().map(|id| check(id)).collect();
            let mut out = std::io::stdout().lock();
            let mut err = std::io::stderr().lock();
            let mut ok = true;
            for r in &results {
                // A closed pipe must not turn into a panic; the exit code still tells the story.
                match r {
                    Checked::Valid(line) => {
                        let _ = writeln!(out, "{line}");
                    }
                    Checked::Invalid(line) => {
                        ok = false;
                        let _ = writeln!(err, "{line}");
                    }
                }
            }
            let _ = out.flush();
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

/// Checks one argument and renders its line.
pub fn check(arg: &str) -> Checked {
    match SpiffeId::parse(arg) {
        Ok(id) => Checked::Valid(format!(
            "{id}\ttrust_domain={}\tpath={}",
            id.trust_domain(),
            id.path()
        )),
        Err(e) => Checked::Invalid(format!("{}: {e}", printable(arg))),
    }
}

/// Keeps a hostile argument on one line: control characters are escaped.
fn printable(s: &str) -> String {
    if s.chars().any(char::is_control) {
        s.escape_default().to_string()
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_line_format() {
        assert_eq!(
            check("spiffe://example.org/ns/a"),
            Checked::Valid(
                "spiffe://example.org/ns/a\ttrust_domain=example.org\tpath=/ns/a".into()
            )
        );
        assert_eq!(
            check("spiffe://example.org"),
            Checked::Valid("spiffe://example.org\ttrust_domain=example.org\tpath=".into())
        );
    }

    #[test]
    fn invalid_line_names_the_id_and_stays_on_one_line() {
        let Checked::Invalid(line) = check("spiffe://a.test/x/../y") else {
            panic!("accepted")
        };
        assert!(line.starts_with("spiffe://a.test/x/../y: "), "{line}");
        let Checked::Invalid(line) = check("spiffe://a.test/\nx") else {
            panic!("accepted")
        };
        assert!(!line.contains('\n'), "{line}");
    }
}
