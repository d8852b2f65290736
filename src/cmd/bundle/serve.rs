//! `fedgate bundle serve`: serve a local bundle file as a SPIFFE federation endpoint.
//!
//! The bundle file (and the certificate/SVID files) are polled, so that a new bundle is
//! served without a restart. The bundle is served as the file has it, `spiffe_sequence`
//! included, so replicas serving the same file agree; a changed file without a higher
//! sequence is refused and the previous bundle stays (see `BundleFileSource`). The bound address is printed as `listening on <addr>` on stdout (and, with
//! `--admin-listen`, `admin listening on <addr>`; that listener serves `/healthz`, `/readyz`,
//! `/metrics` and `/status`, the trust domain, address and bundle sequence being served). At most `--max-connections` connections are
//! open at once; more are closed before the TLS handshake and counted in
//! `fedgate_bundle_endpoint_refusals_total{reason="too_many_connections"}` (on the admin
//! listener's `/metrics`).

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use fedgate_federation::endpoint::server::{ServerTlsFiles, ServerTlsSource};
use fedgate_federation::endpoint::{BundleEndpoint, BundleFileSource, EndpointMetrics};
use fedgate_federation::{Bundle, TrustDomain};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::admin::{Admin, AdminSource};
use crate::cmd::EX_USAGE;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The trust domain whose bundle is served (e.g. `cluster-a.test`).
    #[arg(long)]
    trust_domain: String,
    /// The SPIFFE bundle (JWKS JSON) file to serve; polled for changes.
    #[arg(long)]
    bundle: PathBuf,
    /// Address to listen on, e.g. `0.0.0.0:8443` or `127.0.0.1:0`.
    #[arg(long)]
    listen: SocketAddr,
    /// The URL path the bundle is served at.
    #[arg(long, default_value = "/")]
    path: String,
    /// Endpoint profile: `https_web` (needs --cert/--key) or `https_spiffe` (needs
    /// --svid/--svid-key).
    #[arg(long, value_enum)]
    profile: ProfileArg,
    /// Web PKI certificate chain (PEM, leaf first), for https_web.
    #[arg(long)]
    cert: Option<PathBuf>,
    /// Private key of --cert (PEM), for https_web.
    #[arg(long)]
    key: Option<PathBuf>,
    /// X509-SVID chain of the endpoint (PEM, leaf first), for https_spiffe.
    #[arg(long)]
    svid: Option<PathBuf>,
    /// Private key of --svid (PEM), for https_spiffe.
    #[arg(long)]
    svid_key: Option<PathBuf>,
    /// How often the bundle and credential files are checked for changes.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    poll_interval: Duration,
    /// Open connections beyond this many are closed before the TLS handshake and counted
    /// (the same default as `fedgate ca serve`'s `max_connections`).
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,
    /// Plain-HTTP listener for `/healthz`, `/readyz`, `/metrics` (Prometheus text) and
    /// `/status`, e.g. 127.0.0.1:9902.
    #[arg(long)]
    admin_listen: Option<SocketAddr>,
}

/// The two endpoint profiles of SPIFFE_Federation.md §5.2.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ProfileArg {
    #[value(name = "https_web")]
    HttpsWeb,
    #[value(name = "https_spiffe")]
    HttpsSpiffe,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<ExitCode> {
    crate::telemetry::init_default();
    let files = match tls_files(&args) {
        Ok(f) => f,
        Err(msg) => {
            eprintln!("fedgate bundle serve: {msg}");
            return Ok(ExitCode::from(EX_USAGE));
        }
    };
    let td = TrustDomain::new(&args.trust_domain).with_context(|| {
        format!(
            "--trust-domain {:?} is not a valid trust domain name",
            args.trust_domain
        )
    })?;
    let (source, bundle_rx) = BundleFileSource::new(td.clone(), &args.bundle, args.poll_interval)
        .with_context(|| {
        format!(
            "cannot serve {}: fix the bundle file",
            args.bundle.display()
        )
    })?;
    let (tls_source, tls_rx) = ServerTlsSource::new(files, args.poll_interval)
        .context("cannot load the endpoint's certificate and key")?;
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener
        .local_addr()
        .context("cannot read the bound address")?;
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = EndpointMetrics::new();
    metrics.register(&mut registry);
    let admin = match args.admin_listen {
        Some(admin_addr) => {
            let l = TcpListener::bind(admin_addr).await.with_context(|| {
                format!("cannot listen on {admin_addr} (--admin-listen); is the port in use?")
            })?;
            let bound = l
                .local_addr()
                .context("cannot read the admin listener's bound address")?;
            Some((l, bound))
        }
        None => None,
    };
    println!("listening on {addr}");
    if let Some((_, bound)) = &admin {
        println!("admin listening on {bound}");
    }
    std::io::stdout()
        .flush()
        .context("cannot write to stdout")?;
    tracing::info!(%addr, trust_domain = %td, path = %args.path, "bundle endpoint listening");

    let shutdown = CancellationToken::new();
    fedgate_dataplane::shutdown::cancel_on_termination(shutdown.clone())
        .context("cannot install the SIGTERM/SIGINT handlers")?;
    let tasks = tokio_util::task::TaskTracker::new();
    tasks.spawn(source.run(shutdown.clone()));
    tasks.spawn(tls_source.run(shutdown.clone()));
    if let Some((listener, _)) = admin {
        let status = ServeStatus {
            trust_domain: td.clone(),
            address: addr,
            path: args.path.clone(),
            bundle: bundle_rx.clone(),
        };
        let admin = Admin::new(registry).with_source(Arc::new(status));
        let what = "bundle endpoint admin listener";
        tasks.spawn(admin.serve_logged(listener, shutdown.clone(), what));
    }
    tasks.close();
    let endpoint = BundleEndpoint::new(args.path, bundle_rx, tls_rx)
        .with_max_connections(usize::try_from(args.max_connections).unwrap_or(usize::MAX))
        .with_metrics(metrics);
    endpoint
        .run(listener, shutdown.clone())
        .await
        .context("bundle endpoint failed")?;
    shutdown.cancel();
    tasks.wait().await;
    Ok(ExitCode::SUCCESS)
}

/// What `/status` shows: the endpoint and the bundle it serves right now.
struct ServeStatus {
    trust_domain: TrustDomain,
    address: SocketAddr,
    path: String,
    bundle: watch::Receiver<Arc<Bundle>>,
}

impl AdminSource for ServeStatus {
    fn status(&self) -> serde_json::Value {
        let bundle = self.bundle.borrow().clone();
        serde_json::json!({
            "state": "running",
            "address": self.address.to_string(),
            "path": self.path,
            "trust_domains": [{
                "trust_domain": self.trust_domain.as_str(),
                "sequence": bundle.sequence(),
                "x509_authorities": bundle.x509_authorities().len(),
            }],
        })
    }
}

fn tls_files(args: &Args) -> Result<ServerTlsFiles, String> {
    match args.profile {
        ProfileArg::HttpsWeb => {
            if args.svid.is_some() || args.svid_key.is_some() {
                return Err("--svid/--svid-key apply to --profile https_spiffe only; \
                            https_web uses --cert and --key"
                    .into());
            }
            match (&args.cert, &args.key) {
                (Some(cert), Some(key)) => Ok(ServerTlsFiles::Web {
                    cert: cert.clone(),
                    key: key.clone(),
                }),
                _ => Err("--profile https_web needs --cert FILE and --key FILE".into()),
            }
        }
        ProfileArg::HttpsSpiffe => {
            if args.cert.is_some() || args.key.is_some() {
                return Err("--cert/--key apply to --profile https_web only; \
                            https_spiffe uses --svid and --svid-key"
                    .into());
            }
            match (&args.svid, &args.svid_key) {
                (Some(svid), Some(key)) => Ok(ServerTlsFiles::Spiffe {
                    svid: svid.clone(),
                    key: key.clone(),
                }),
                _ => Err("--profile https_spiffe needs --svid FILE and --svid-key FILE".into()),
            }
        }
    }
}
