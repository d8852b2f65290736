//! `fedgate ca init|issue|rotate|serve`: a small file-based CA for a trust domain or the bridge.
//!
//! The CA logic is in [`crate::ca`]; this module parses arguments, loads and saves the CA
//! directory, and reports what it wrote. Errors are returned with context (exit 1); argument
//! errors are clap's (exit 2). Keys are never printed.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use fedgate_federation::spiffe_id::{SpiffeId, TrustDomain};

use crate::ca::{self, describe, Ca, InitOptions};

mod serve;

#[derive(Debug, clap::Subcommand)]
pub enum CaCommand {
    /// Create a CA for a trust domain: DIR/ca.pem, DIR/ca.key (0600), DIR/jwt.key (0600),
    /// DIR/bundle.json.
    Init {
        /// The trust domain, e.g. cluster-a.test.
        #[arg(long, value_name = "TD", value_parser = parse_trust_domain)]
        trust_domain: TrustDomain,
        /// Directory to create the CA in (created 0700 if missing; must not hold a CA).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Also create an intermediate CA signed by the root; leaves are then issued by it.
        #[arg(long)]
        intermediate: bool,
        /// Lifetime of the root (and intermediate).
        #[arg(long, value_name = "DURATION", default_value = "8760h", value_parser = humantime::parse_duration)]
        ttl: Duration,
        /// spiffe_refresh_hint of the published bundle, in whole seconds.
        #[arg(long, value_name = "DURATION", default_value = "300s", value_parser = humantime::parse_duration)]
        refresh_hint: Duration,
    },
    /// Issue an X509-SVID: DIR2/svid.pem (leaf, then intermediates), DIR2/svid.key (0600),
    /// DIR2/bundle.json.
    Issue {
        /// The CA directory (from `ca init`).
        #[arg(long = "ca", value_name = "DIR")]
        ca_dir: PathBuf,
        /// The SPIFFE ID to issue, in the CA's trust domain.
        #[arg(long, value_name = "SPIFFE_ID", value_parser = parse_spiffe_id)]
        id: SpiffeId,
        /// Output directory (created 0700 if missing; existing SVID files are replaced).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Lifetime of the SVID; must end before the CA certificate expires.
        #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = humantime::parse_duration)]
        ttl: Duration,
        /// Add a DNS SAN (repeatable).
        #[arg(long = "dns", value_name = "NAME")]
        dns: Vec<String>,
    },
    /// Rotate the root and the JWT key: add new ones to the bundle next to the old ones
    /// (sequence raised to max(previous + 1, Unix time)). With --retire-old, instead remove
    /// every root and JWT key but the current ones (sequence raised the same way).
    Rotate {
        /// The CA directory (from `ca init`).
        #[arg(long = "ca", value_name = "DIR")]
        ca_dir: PathBuf,
        /// Second phase of a rotation: drop the old roots from the bundle; no new key.
        #[arg(long)]
        retire_old: bool,
    },
    /// Run the bridge CA's issuing endpoint: gateways authenticate with their local SVID and
    /// get the bridge SVID the policy maps them to (see docs/bridge-ca.md).
    Serve {
        /// The endpoint's configuration (ca-serve.toml).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
}

pub async fn run(cmd: CaCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        CaCommand::Init {
            trust_domain,
            out,
            intermediate,
            ttl,
            refresh_hint,
        } => {
            if refresh_hint.is_zero() || refresh_hint.subsec_nanos() != 0 {
                anyhow::bail!(
                    "--refresh-hint {}: must be a whole, non-zero number of seconds \
                     (spiffe_refresh_hint is in seconds)",
                    humantime::format_duration(refresh_hint)
                );
            }
            Ca::ensure_absent(&out)?;
            let opts = InitOptions {
                ttl,
                refresh_hint: Some(refresh_hint),
                intermediate,
            };
            let ca = Ca::init(&trust_domain, &opts)
                .with_context(|| format!("cannot create a CA for trust domain {trust_domain}"))?;
            ca.save(&out)
                .with_context(|| format!("cannot write the CA to {}", out.display()))?;
            println!(
                "created CA for trust domain {trust_domain} in {}",
                out.display()
            );
            print_root(&ca, &out);
            if intermediate {
                println!(
                    "  intermediate: {} (signs leaves)",
                    out.join(ca::CA_PEM).display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        CaCommand::Issue {
            ca_dir,
            id,
            out,
            ttl,
            dns,
        } => {
            let ca = load(&ca_dir)?;
            let svid = ca.issue(&id, ttl, &dns).with_context(|| {
                format!("cannot issue {id} from the CA in {}", ca_dir.display())
            })?;
            let [pem, key, json] = svid
                .write(&out, ca.bundle())
                .with_context(|| format!("cannot write the SVID to {}", out.display()))?;
            let leaf = svid
                .chain()
                .first()
                .and_then(|c| describe::describe(c).ok());
            println!("issued {id}");
            if let Some(leaf) = leaf {
                println!("  serial {}, valid until {}", leaf.serial, leaf.not_after);
            }
            println!(
                "  {}\n  {}\n  {}",
                pem.display(),
                key.display(),
                json.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        CaCommand::Rotate { ca_dir, retire_old } => {
            let mut ca = load(&ca_dir)?;
            if retire_old {
                let removed = ca.retire_old()?;
                if removed == ca::Retired::default() {
                    println!(
                        "nothing to retire: the bundle holds only the current root and JWT key"
                    );
                    return Ok(ExitCode::SUCCESS);
                }
                ca.save(&ca_dir)
                    .with_context(|| format!("cannot write {}", ca_dir.display()))?;
                println!(
                    "retired {} old root(s) and {} old JWT key(s) from the bundle",
                    removed.roots, removed.jwt_keys
                );
            } else {
                ca.rotate()?;
                ca.save(&ca_dir)
                    .with_context(|| format!("cannot write {}", ca_dir.display()))?;
                println!(
                    "rotated: new root and JWT key added; the bundle now lists old and new ones"
                );
                println!(
                    "  run `fedgate ca rotate --ca {} --retire-old` once peers have it",
                    ca_dir.display()
                );
            }
            print_root(&ca, &ca_dir);
            Ok(ExitCode::SUCCESS)
        }
        CaCommand::Serve { config } => serve::serve(&config).await,
    }
}

fn load(dir: &std::path::Path) -> anyhow::Result<Ca> {
    Ca::load(dir).with_context(|| format!("cannot load the CA in {}", dir.display()))
}

fn print_root(ca: &Ca, dir: &std::path::Path) {
    if let Ok(root) = describe::describe(ca.root()) {
        println!(
            "  root: sha256 {}, valid until {}",
            root.sha256_fingerprint, root.not_after
        );
    }
    if let Ok(jwt) = ca.jwt_signer(dir) {
        println!("  jwt key: kid {}", jwt.key_id());
    }
    let b = ca.bundle();
    println!(
        "  bundle: {} ({} root(s), {} JWT key(s), sequence {})",
        dir.join(ca::BUNDLE_JSON).display(),
        b.x509_authorities().len(),
        b.jwt_authorities().len(),
        b.sequence()
            .map_or_else(|| "unset".to_string(), |s| s.to_string())
    );
}

fn parse_trust_domain(s: &str) -> Result<TrustDomain, String> {
    TrustDomain::new(s).map_err(|e| e.to_string())
}

fn parse_spiffe_id(s: &str) -> Result<SpiffeId, String> {
    SpiffeId::parse(s).map_err(|e| e.to_string())
}
