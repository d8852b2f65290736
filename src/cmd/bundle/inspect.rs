//! `fedgate bundle inspect <FILE> --trust-domain <TD> [--json]` (docs/cli.md).
//!
//! Invariants: exit 0 for a bundle SPIFFE_Trust_Domain_and_Bundle.md accepts (including an
//! empty `keys`), 1 for one it rejects, 2 for an unreadable file or bad arguments. Counts
//! cover only used entries (ignored `use`/`kty` entries are not counted). `sequence` is
//! serialized as a JSON u64, never through f64. Failures print one line on stderr.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use fedgate_federation::bundle::Bundle;
use fedgate_federation::spiffe_id::TrustDomain;

use crate::ca::{describe, read_limited};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The bundle file: a SPIFFE bundle (JWKS JSON document).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// The trust domain the bundle belongs to.
    #[arg(long, value_name = "TD", value_parser = parse_trust_domain)]
    pub trust_domain: TrustDomain,
    /// Print exactly one JSON object (the contract's schema) instead of a summary.
    #[arg(long)]
    pub json: bool,
}

/// The `--json` object of the CLI contract (docs/cli.md); field order is the contract's.
#[derive(Debug, serde::Serialize, PartialEq, Eq)]
pub struct Summary {
    pub trust_domain: String,
    pub x509_authorities: usize,
    pub jwt_authorities: usize,
    pub refresh_hint: Option<u64>,
    pub sequence: Option<u64>,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let bytes = match read_limited(&args.file) {
        Ok(b) => b,
        Err(e) => return Ok(fail(2, &fedgate_federation::error_chain(&e))),
    };
    let (bundle, warnings) = match Bundle::parse(&args.trust_domain, &bytes) {
        Ok(parsed) => parsed,
        Err(e) => {
            return Ok(fail(
                1,
                &format!(
                    "{}: rejected: {}",
                    args.file.display(),
                    fedgate_federation::error_chain(&e)
                ),
            ))
        }
    };
    let text = if args.json {
        let mut s = serde_json::to_string(&summary(&bundle))?;
        s.push('\n');
        s
    } else {
        human(
            &bundle,
            &warnings.iter().map(|w| w.0.clone()).collect::<Vec<_>>(),
        )
    };
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
    Ok(ExitCode::SUCCESS)
}

/// The contract's JSON object for `bundle`.
pub fn summary(bundle: &Bundle) -> Summary {
    Summary {
        trust_domain: bundle.trust_domain().to_string(),
        x509_authorities: bundle.x509_authorities().len(),
        jwt_authorities: bundle.jwt_authorities().len(),
        refresh_hint: bundle.refresh_hint().map(|d| d.as_secs()),
        sequence: bundle.sequence(),
    }
}

/// The human-readable summary: each authority with subject, validity and fingerprint.
pub fn human(bundle: &Bundle, warnings: &[String]) -> String {
    let mut s = String::new();
    let opt =
        |v: Option<u64>, unit: &str| v.map_or("(not set)".to_string(), |v| format!("{v}{unit}"));
    s += &format!("trust domain: {}\n", bundle.trust_domain());
    s += &format!("sequence: {}\n", opt(bundle.sequence(), ""));
    s += &format!(
        "refresh hint: {}\n",
        opt(bundle.refresh_hint().map(|d| d.as_secs()), "s")
    );
    s += &format!("x509 authorities: {}\n", bundle.x509_authorities().len());
    for der in bundle.x509_authorities() {
        match describe::describe(der) {
            Ok(c) => {
                s += &format!("  - subject: {}\n", c.subject);
                s += &format!("    not before: {}\n", c.not_before);
                s += &format!("    not after: {}\n", c.not_after);
                s += &format!("    sha256: {}\n", c.sha256_fingerprint);
            }
            Err(reason) => {
                s += &format!("  - (cannot describe: {reason})\n");
                s += &format!("    sha256: {}\n", describe::sha256_hex(der));
            }
        }
    }
    s += &format!("jwt authorities: {}\n", bundle.jwt_authorities().len());
    for jwt in bundle.jwt_authorities() {
        let kty = jwt.jwk.get("kty").and_then(|v| v.as_str()).unwrap_or("?");
        s += &format!("  - kid: {} (kty {kty})\n", jwt.key_id);
    }
    if bundle.x509_authorities().is_empty() && bundle.jwt_authorities().is_empty() {
        s += "note: no usable keys; every SVID of this trust domain is untrusted\n";
    }
    for w in warnings {
        s += &format!("ignored: {w}\n");
    }
    s
}

fn parse_trust_domain(s: &str) -> Result<TrustDomain, String> {
    TrustDomain::new(s).map_err(|e| e.to_string())
}

/// Prints `fedgate: <message>` as one line on stderr and returns `code`.
fn fail(code: u8, message: &str) -> ExitCode {
    eprintln!("fedgate: {}", message.replace(['\n', '\r'], " "));
    ExitCode::from(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_keeps_full_u64_sequence_and_contract_key_order() {
        let mut b = Bundle::new(TrustDomain::new("a.test").unwrap());
        b.set_sequence(Some(u64::MAX));
        b.set_refresh_hint(Some(std::time::Duration::from_secs(300)));
        let json = serde_json::to_string(&summary(&b)).unwrap();
        assert_eq!(
            json,
            r#"{"trust_domain":"a.test","x509_authorities":0,"jwt_authorities":0,"refresh_hint":300,"sequence":18446744073709551615}"#
        );
    }

    #[test]
    fn human_summary_of_empty_bundle_says_it_trusts_nothing() {
        let b = Bundle::new(TrustDomain::new("a.test").unwrap());
        let text = human(&b, &[]);
        assert!(text.contains("x509 authorities: 0"));
        assert!(text.contains("untrusted"));
    }
}
