//! `fedgate bundle fetch`: fetch a peer's bundle from its federation endpoint.
//!
//! Every relationship parameter is explicit (SPIFFE_Federation.md §7.2): trust domain, URL,
//! profile, and for `https_spiffe` the endpoint SPIFFE ID and a bootstrap bundle; none is
//! inferred from another. `--out FILE` is replaced atomically and only by an accepted bundle.
//! With `--watch` the refresher keeps polling (one stdout line per update, one stderr line per
//! refusal) until SIGINT/SIGTERM; with `--state-dir` the last-known-good bundle survives a
//! restart even when the endpoint is down.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use fedgate_federation::endpoint::{
    fetch, FetchOptions, FetchOutcome, Profile, Relationship, WebRoots,
};
use fedgate_federation::fs::replace_public;
use fedgate_federation::refresh::{Peer, RefreshPolicy, Refresher};
use fedgate_federation::store::{Origin, Store};
use fedgate_federation::{error_chain, Bundle, SpiffeId, TrustDomain};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use tokio_util::sync::CancellationToken;

use super::serve::ProfileArg;
use crate::cmd::EX_USAGE;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The trust domain the fetched bundle belongs to (never taken from the URL).
    #[arg(long)]
    pub trust_domain: String,
    /// The bundle endpoint URL (https, no userinfo).
    #[arg(long)]
    pub url: String,
    /// Endpoint profile: `https_web` or `https_spiffe`.
    #[arg(long, value_enum)]
    pub profile: ProfileArg,
    /// https_spiffe: the SPIFFE ID the endpoint must present.
    #[arg(long)]
    pub endpoint_id: Option<String>,
    /// https_spiffe: bundle of the endpoint ID's trust domain, used until a newer one is fetched
    /// (self-serving endpoints) or always (other endpoints).
    #[arg(long)]
    pub bootstrap_bundle: Option<PathBuf>,
    /// https_web: trust only these CA certificates (PEM) instead of the system roots.
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// Where to write the accepted bundle (JWKS JSON), atomically.
    #[arg(long)]
    pub out: PathBuf,
    /// Keep refreshing until SIGINT/SIGTERM.
    #[arg(long)]
    pub watch: bool,
    /// Directory for the last-known-good store (`<td>.json`); seeds the bundle at start.
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Lowest refresh interval, whatever the bundle's refresh hint says.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub min_refresh: Duration,
    /// Highest refresh interval.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub max_refresh: Duration,
    /// Whole-request timeout.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    crate::telemetry::init_default();
    let rel = match relationship(&args) {
        Ok(rel) => rel,
        Err(msg) => {
            eprintln!("fedgate bundle fetch: {msg:#}");
            return Ok(ExitCode::from(EX_USAGE));
        }
    };
    let opts = FetchOptions {
        timeout: args.timeout,
        ..FetchOptions::default()
    };
    let store = match &args.state_dir {
        Some(dir) => Some(Store::open(dir).with_context(|| {
            format!(
                "cannot open the state directory {}; check its permissions",
                dir.display()
            )
        })?),
        None => None,
    };
    if args.watch {
        watch(args, rel, opts, store).await
    } else {
        once(args, rel, opts, store).await
    }
}

async fn once(
    args: Args,
    rel: Relationship,
    opts: FetchOptions,
    store: Option<Store>,
) -> anyhow::Result<ExitCode> {
    let td = rel.trust_domain.clone();
    // The rollback reference: the stored last-known-good, else the existing output file.
    let current = match &store {
        Some(s) => s.load(&td).ok().flatten().map(|s| s.bundle),
        None => None,
    }
    .or_else(|| Bundle::load(&td, &args.out).ok().map(|(b, _)| b));
    match fetch(&rel, current.as_ref(), &opts).await {
        Ok(FetchOutcome::Updated { bundle, .. }) => {
            write_out(&args.out, &bundle)?;
            if let Some(s) = &store {
                s.save(&bundle, &Origin::of(&rel), SystemTime::now())
                    .context("cannot persist the fetched bundle")?;
            }
            println!("{}", update_line(&bundle));
            Ok(ExitCode::SUCCESS)
        }
        Ok(_) => {
            println!("unchanged {td}");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!(
                "fedgate bundle fetch: refused ({}): {}",
                e.reason_label(),
                error_chain(&e)
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

async fn watch(
    args: Args,
    rel: Relationship,
    opts: FetchOptions,
    store: Option<Store>,
) -> anyhow::Result<ExitCode> {
    let td = rel.trust_domain.clone();
    let policy = RefreshPolicy {
        min: args.min_refresh,
        max: args.max_refresh.max(args.min_refresh),
        backoff_initial: args.min_refresh.min(Duration::from_secs(1)),
        ..RefreshPolicy::default()
    };
    let peer = Peer {
        relationship: rel,
        fetch: opts,
    };
    let (refresher, handle) = Refresher::new(vec![], vec![peer], policy, store, None, None);
    let mut bundles = handle.subscribe();
    let mut events = handle.events();
    let mut last_written: Option<Bundle> = None;
    if let Some(lkg) = handle.bundles().get(&td) {
        println!(
            "using last-known-good {td} sequence {} authorities {}",
            seq_text(lkg),
            lkg.x509_authorities().len()
        );
        write_out(&args.out, lkg)?;
        last_written = Some((**lkg).clone());
    }
    let shutdown = CancellationToken::new();
    fedgate_dataplane::shutdown::cancel_on_termination(shutdown.clone())
        .context("cannot install the SIGTERM/SIGINT handlers")?;
    let task = tokio::spawn(refresher.run(shutdown.clone()));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            changed = bundles.changed() => {
                if changed.is_err() {
                    break;
                }
                let current = bundles.borrow_and_update().get(&td).cloned();
                if let Some(b) = current {
                    let same = last_written.as_ref().is_some_and(|w| {
                        w.same_authorities(&b) && w.sequence() == b.sequence()
                    });
                    if !same {
                        write_out(&args.out, &b)?;
                        println!("{}", update_line(&b));
                        last_written = Some((*b).clone());
                    }
                }
            }
            ev = events.recv() => {
                if let Ok(ev) = ev {
                    if ev.result != "ok" && ev.result != "not_modified" {
                        let detail = handle
                            .status()
                            .into_iter()
                            .find_map(|s| s.last_error)
                            .unwrap_or_default();
                        eprintln!("refused {td}: {detail}");
                    }
                }
            }
        }
    }
    shutdown.cancel();
    task.await.context("refresher task failed")?;
    Ok(ExitCode::SUCCESS)
}

fn relationship(args: &Args) -> anyhow::Result<Relationship> {
    let trust_domain = TrustDomain::new(&args.trust_domain).with_context(|| {
        format!(
            "--trust-domain {:?} is not a valid trust domain name",
            args.trust_domain
        )
    })?;
    let url: reqwest::Url = args
        .url
        .parse()
        .with_context(|| format!("--url {:?} is not a valid URL", args.url))?;
    if url.scheme() != "https" || !url.username().is_empty() || url.password().is_some() {
        anyhow::bail!(
            "--url {} must be an https URL without userinfo (SPIFFE_Federation.md §5.2)",
            url
        );
    }
    let profile = match args.profile {
        ProfileArg::HttpsWeb => {
            if args.endpoint_id.is_some() || args.bootstrap_bundle.is_some() {
                anyhow::bail!(
                    "--endpoint-id and --bootstrap-bundle apply to --profile https_spiffe only"
                );
            }
            let roots = match &args.ca {
                Some(path) => WebRoots::Custom(load_cas(path)?),
                None => WebRoots::System,
            };
            Profile::HttpsWeb { roots }
        }
        ProfileArg::HttpsSpiffe => {
            if args.ca.is_some() {
                anyhow::bail!("--ca applies to --profile https_web only; https_spiffe authenticates the endpoint with --bootstrap-bundle");
            }
            let (Some(id), Some(path)) = (&args.endpoint_id, &args.bootstrap_bundle) else {
                anyhow::bail!(
                    "--profile https_spiffe needs --endpoint-id ID and --bootstrap-bundle FILE \
                     (neither is inferred from the URL or the trust domain)"
                );
            };
            let endpoint_id = SpiffeId::parse(id)
                .with_context(|| format!("--endpoint-id {id:?} is not a valid SPIFFE ID"))?;
            let (bootstrap, _) =
                Bundle::load(endpoint_id.trust_domain(), path).with_context(|| {
                    format!(
                        "--bootstrap-bundle {} is not a valid bundle for {}",
                        path.display(),
                        endpoint_id.trust_domain()
                    )
                })?;
            Profile::HttpsSpiffe {
                endpoint_id,
                bootstrap,
            }
        }
    };
    Ok(Relationship {
        trust_domain,
        url,
        profile,
    })
}

fn load_cas(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let pem =
        std::fs::read(path).with_context(|| format!("cannot read --ca {}", path.display()))?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        anyhow::bail!("--ca {} holds no PEM CERTIFICATE block", path.display());
    }
    Ok(certs)
}

fn write_out(path: &Path, bundle: &Bundle) -> anyhow::Result<()> {
    replace_public(path, &bundle.to_json())
        .with_context(|| format!("cannot write --out {}", path.display()))
}

fn seq_text(b: &Bundle) -> String {
    b.sequence()
        .map_or_else(|| "none".to_owned(), |s| s.to_string())
}

fn update_line(b: &Bundle) -> String {
    format!(
        "updated {} sequence {} authorities {}",
        b.trust_domain(),
        seq_text(b),
        b.x509_authorities().len()
    )
}
