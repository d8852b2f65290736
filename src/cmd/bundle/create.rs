//! `fedgate bundle create --trust-domain TD --pem FILE... --out FILE`: build a SPIFFE bundle
//! (JWKS) from PEM CA certificates, e.g. to federate with a CA that was not made by `fedgate ca`.
//!
//! Invariants:
//! * Every certificate must be a CA certificate (basicConstraints cA=TRUE); a leaf in a bundle
//!   would let that leaf's key sign SVIDs for the whole trust domain.
//! * The bundle always carries a `spiffe_sequence` (bundle endpoints serve the file's own and
//!   refuse a changed bundle whose sequence did not grow). Without `--sequence`: the sequence
//!   of the bundle already at `--out` when the content is the same, else
//!   [`next_sequence`] of it (at least the Unix time), so re-running `create` after a change
//!   publishes it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context};
use fedgate_federation::bundle::{next_sequence, Bundle};
use fedgate_federation::spiffe_id::TrustDomain;

use crate::ca::{describe, read_limited, write_atomic};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The trust domain the authorities belong to.
    #[arg(long, value_name = "TD")]
    pub trust_domain: TrustDomain,
    /// PEM file(s) holding the trust domain's CA certificates (repeatable).
    #[arg(long = "pem", value_name = "FILE", required = true)]
    pub pems: Vec<PathBuf>,
    /// `spiffe_refresh_hint` to publish.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "5m")]
    pub refresh_hint: Duration,
    /// `spiffe_sequence` to publish. Default: unchanged if `--out` already holds the same
    /// bundle, else higher than its sequence and at least the Unix time.
    #[arg(long, value_name = "N")]
    pub sequence: Option<u64>,
    /// Where to write the bundle (atomically).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut bundle = Bundle::new(args.trust_domain.clone());
    for path in &args.pems {
        let bytes = read_limited(path).with_context(|| format!("reading {}", path.display()))?;
        let certs = describe::parse_pem_certs(&bytes)
            .with_context(|| format!("{}: expected PEM CERTIFICATE blocks", path.display()))?;
        for der in certs {
            let cert = describe::parse_cert(der.as_ref())
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            let is_ca = cert
                .basic_constraints()
                .ok()
                .flatten()
                .is_some_and(|bc| bc.value.ca);
            if !is_ca {
                bail!(
                    "{}: certificate {:?} is not a CA (basicConstraints cA is not TRUE); a bundle \
                     holds only trust-domain signing authorities",
                    path.display(),
                    cert.subject().to_string()
                );
            }
            bundle.add_x509_authority(der);
        }
    }
    bundle.set_refresh_hint(Some(args.refresh_hint));
    let existing = existing_bundle(&args.trust_domain, &args.out);
    let sequence = match (args.sequence, &existing) {
        (Some(s), _) => s,
        (None, Some(old)) if same_content(old, &bundle) && old.sequence().is_some() => {
            old.sequence().unwrap_or_default()
        }
        (None, old) => next_sequence(old.as_ref().and_then(Bundle::sequence), SystemTime::now())
            .context("the bundle at --out has the largest spiffe_sequence; pass --sequence")?,
    };
    bundle.set_sequence(Some(sequence));
    if let Some(old) = &existing {
        if !same_content(old, &bundle) && bundle.sequence() <= old.sequence() {
            eprintln!(
                "warning: {} had spiffe_sequence {} and different content; a bundle endpoint \
                 serving it will refuse this bundle until its --sequence is higher",
                args.out.display(),
                old.sequence()
                    .map_or_else(|| "(none)".into(), |s| s.to_string())
            );
        }
    }
    write_atomic(&args.out, &bundle.to_json())
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!(
        "{}: {} x509 authorities for {}, sequence {sequence}",
        args.out.display(),
        bundle.x509_authorities().len(),
        args.trust_domain
    );
    Ok(ExitCode::SUCCESS)
}

/// The bundle of `td` already at `out`, if there is a readable one.
fn existing_bundle(td: &TrustDomain, out: &Path) -> Option<Bundle> {
    let bytes = read_limited(out).ok()?;
    Bundle::parse(td, &bytes).ok().map(|(b, _warnings)| b)
}

/// What a peer sees change: authorities and refresh hint (not the sequence).
fn same_content(a: &Bundle, b: &Bundle) -> bool {
    a.same_authorities(b) && a.refresh_hint() == b.refresh_hint()
}
