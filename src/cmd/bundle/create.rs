//! `fedgate bundle create --trust-domain TD --pem FILE... --out FILE`: build a SPIFFE bundle
//! (JWKS) from PEM CA certificates, e.g. to federate with a CA that was not made by `fedgate ca`.
//!
//! Invariant: every certificate must be a CA certificate (basicConstraints cA=TRUE); a leaf in
//! a bundle would let that leaf's key sign SVIDs for the whole trust domain.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use fedgate_federation::bundle::Bundle;
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
    /// `spiffe_sequence` to publish.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub sequence: u64,
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
    bundle.set_sequence(Some(args.sequence));
    write_atomic(&args.out, &bundle.to_json())
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!(
        "{}: {} x509 authorities for {}",
        args.out.display(),
        bundle.x509_authorities().len(),
        args.trust_domain
    );
    Ok(ExitCode::SUCCESS)
}
