//! `fedgate svid verify|inspect`.
//!
//! `verify` follows the CLI contract in docs/cli.md: exit 0 and the SPIFFE ID on stdout for a valid SVID, 1
//! with the reason for an invalid one, 2 for an unreadable file or bad arguments. The
//! `BundleSet` is built only from the `--bundle` files, one bundle per trust domain (a
//! repeated trust domain is a usage error, never merged), and the leaf is checked only
//! against its own trust domain's bundle by `fedgate_federation::svid::verify::verify`.
//! Every failure prints exactly one line on stderr.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use fedgate_federation::bundle::{Bundle, BundleSet};
use fedgate_federation::spiffe_id::{SpiffeId, TrustDomain};
use fedgate_federation::svid::verify::verify;
use rustls_pki_types::{CertificateDer, UnixTime};

use crate::ca::describe::{self, CertSummary};
use crate::ca::read_limited;

#[derive(Debug, clap::Subcommand)]
pub enum SvidCommand {
    /// Validate an X509-SVID chain against per-trust-domain bundles (docs/cli.md).
    Verify {
        /// PEM file with the leaf first, then any intermediates.
        #[arg(long, value_name = "PEM")]
        chain: PathBuf,
        /// A trust domain's bundle file, as TD=FILE; repeat for more trust domains.
        #[arg(long = "bundle", value_name = "TD=FILE", required = true, value_parser = parse_bundle_arg)]
        bundles: Vec<(TrustDomain, PathBuf)>,
        /// Time of validation, RFC 3339 (default: now).
        #[arg(long, value_name = "RFC3339", value_parser = parse_at)]
        at: Option<UnixTime>,
    },
    /// Describe an X509-SVID: ID, validity, issuer, serial, fingerprint, key type.
    Inspect {
        /// PEM file with the leaf first (further certificates are counted, not described).
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Print one JSON object instead of a summary.
        #[arg(long)]
        json: bool,
    },
}

/// `svid inspect --json`: the leaf's description plus its ID and the chain length.
#[derive(Debug, serde::Serialize)]
pub struct Inspection {
    /// The SPIFFE ID, when the leaf has exactly one URI SAN and it is a valid SPIFFE ID.
    pub spiffe_id: Option<String>,
    #[serde(flatten)]
    pub leaf: CertSummary,
    pub chain_length: usize,
}

/// A contract failure: the exit code and the one-line reason.
#[derive(Debug, PartialEq, Eq)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

pub async fn run(cmd: SvidCommand) -> anyhow::Result<ExitCode> {
    let result = match cmd {
        SvidCommand::Verify { chain, bundles, at } => {
            let now = at.unwrap_or_else(UnixTime::now);
            run_verify(&chain, &bundles, now).map(|id| format!("{id}\n"))
        }
        SvidCommand::Inspect { file, json } => run_inspect(&file, json),
    };
    Ok(finish(result))
}

/// Prints a command's output (exit 0) or its failure on one stderr line (exit `code`).
pub(crate) fn finish(result: Result<String, Failure>) -> ExitCode {
    match result {
        Ok(text) => {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(text.as_bytes());
            let _ = out.flush();
            ExitCode::SUCCESS
        }
        Err(f) => {
            eprintln!("fedgate: {}", f.message.replace(['\n', '\r'], " "));
            ExitCode::from(f.code)
        }
    }
}

/// Loads the chain and bundles and verifies; returns the verified ID.
pub fn run_verify(
    chain_path: &Path,
    bundle_args: &[(TrustDomain, PathBuf)],
    now: UnixTime,
) -> Result<SpiffeId, Failure> {
    let chain = read_chain(chain_path)?;
    let set = load_bundles(bundle_args)?;
    match verify(&chain, &set, now) {
        Ok(v) => Ok(v.id().clone()),
        Err(e) => Err(Failure {
            code: 1,
            message: format!(
                "{}: invalid X509-SVID: {}",
                chain_path.display(),
                fedgate_federation::error_chain(&e)
            ),
        }),
    }
}

/// Builds a `BundleSet` from `TD=FILE` arguments only; a trust domain given twice is refused.
pub fn load_bundles(bundle_args: &[(TrustDomain, PathBuf)]) -> Result<BundleSet, Failure> {
    let mut seen: BTreeMap<&TrustDomain, &Path> = BTreeMap::new();
    let mut set = BundleSet::new();
    for (td, path) in bundle_args {
        if let Some(first) = seen.insert(td, path) {
            return Err(usage(format!(
                "--bundle {td}= given twice ({} and {}); bundles are never merged, give one per \
                 trust domain",
                first.display(),
                path.display()
            )));
        }
        let bytes = read_limited(path).map_err(|e| usage(fedgate_federation::error_chain(&e)))?;
        let (bundle, _warnings) = Bundle::parse(td, &bytes).map_err(|e| {
            usage(format!(
                "{}: unusable bundle: {}",
                path.display(),
                fedgate_federation::error_chain(&e)
            ))
        })?;
        set = set.with(bundle);
    }
    Ok(set)
}

fn run_inspect(path: &Path, json: bool) -> Result<String, Failure> {
    let chain = read_chain(path)?;
    let Some(leaf) = chain.first() else {
        return Err(usage(format!("{}: no certificate", path.display())));
    };
    let summary = describe::describe(leaf).map_err(|reason| Failure {
        code: 1,
        message: format!("{}: first certificate: {reason}", path.display()),
    })?;
    let id = match summary.uri_sans.as_slice() {
        [one] => SpiffeId::parse(one).map_err(|e| e.to_string()),
        [] => Err("no URI SAN".to_string()),
        many => Err(format!(
            "{} URI SANs; an X509-SVID has exactly one",
            many.len()
        )),
    };
    let inspection = Inspection {
        spiffe_id: id.as_ref().ok().map(|i| i.to_string()),
        leaf: summary,
        chain_length: chain.len(),
    };
    if json {
        let mut s = serde_json::to_string(&inspection).map_err(|e| Failure {
            code: 1,
            message: format!("cannot render JSON: {e}"),
        })?;
        s.push('\n');
        return Ok(s);
    }
    let l = &inspection.leaf;
    let mut s = String::new();
    s += &format!(
        "spiffe id:  {}\n",
        match &id {
            Ok(i) => i.to_string(),
            Err(reason) => format!("(none: {reason})"),
        }
    );
    s += &format!("subject:    {}\n", l.subject);
    s += &format!("issuer:     {}\n", l.issuer);
    s += &format!("serial:     {}\n", l.serial);
    s += &format!("not before: {}\n", l.not_before);
    s += &format!("not after:  {}\n", l.not_after);
    s += &format!("sha256:     {}\n", l.sha256_fingerprint);
    s += &format!("key type:   {}\n", l.key_type);
    if l.is_ca {
        s += "ca:         yes (a CA certificate is not a leaf SVID)\n";
    }
    if !l.dns_sans.is_empty() {
        s += &format!("dns names:  {}\n", l.dns_sans.join(", "));
    }
    s += &format!(
        "chain:      {} certificate(s), leaf first\n",
        inspection.chain_length
    );
    Ok(s)
}

/// Reads a PEM chain. An unreadable file or one without a `CERTIFICATE` block is a usage
/// error (exit 2); certificates that do not parse are left to verification (exit 1).
fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, Failure> {
    let bytes = read_limited(path).map_err(|e| usage(fedgate_federation::error_chain(&e)))?;
    describe::parse_pem_certs(&bytes).map_err(|e| usage(format!("{}: {e}", path.display())))
}

fn usage(message: String) -> Failure {
    Failure { code: 2, message }
}

pub(crate) fn parse_bundle_arg(s: &str) -> Result<(TrustDomain, PathBuf), String> {
    let Some((td, file)) = s.split_once('=') else {
        return Err(format!("expected TD=FILE, got {s:?}"));
    };
    if file.is_empty() {
        return Err(format!("expected TD=FILE, the file is missing in {s:?}"));
    }
    let td = TrustDomain::new(td).map_err(|e| format!("trust domain {td:?}: {e}"))?;
    Ok((td, PathBuf::from(file)))
}

pub(crate) fn parse_at(s: &str) -> Result<UnixTime, String> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("not an RFC 3339 time ({e}); example: 2026-01-02T03:04:05Z"))?;
    let secs = u64::try_from(t.unix_timestamp())
        .map_err(|_| "times before 1970-01-01T00:00:00Z are not supported".to_string())?;
    Ok(UnixTime::since_unix_epoch(Duration::from_secs(secs)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundle_arg_syntax() {
        let (td, p) = parse_bundle_arg("a.test=/x/b.json").unwrap();
        assert_eq!(td.as_str(), "a.test");
        assert_eq!(p, PathBuf::from("/x/b.json"));
        assert!(parse_bundle_arg("a.test").is_err());
        assert!(parse_bundle_arg("a.test=").is_err());
        assert!(parse_bundle_arg("A.test=x").is_err());
        // Only the first `=` splits: file names may contain `=`.
        assert_eq!(
            parse_bundle_arg("a.test=x=y").unwrap().1,
            PathBuf::from("x=y")
        );
    }

    proptest::proptest! {
        #[test]
        fn argument_parsers_never_panic(s in "\\PC{0,64}") {
            let _ = parse_bundle_arg(&s);
            let _ = parse_at(&s);
        }

        #[test]
        fn at_round_trips_whole_seconds(secs in 0i64..253_402_300_799) {
            let t = time::OffsetDateTime::from_unix_timestamp(secs).unwrap();
            let text = crate::ca::describe::rfc3339(t);
            proptest::prop_assert_eq!(parse_at(&text).unwrap().as_secs(), secs as u64);
        }
    }

    #[test]
    fn at_parses_rfc3339_with_offsets() {
        let t = parse_at("1970-01-01T01:00:00+01:00").unwrap();
        assert_eq!(t.as_secs(), 0);
        assert_eq!(
            parse_at("2026-01-02T03:04:05Z").unwrap().as_secs(),
            1_767_323_045
        );
        assert!(parse_at("yesterday").is_err());
        assert!(parse_at("1969-12-31T23:59:59Z").is_err());
    }
}
