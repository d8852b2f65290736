//! `fedgate sidecar --config FILE`: run the workload-side mTLS proxy until SIGTERM/SIGINT.
//!
//! Exit codes: 0 after a clean drain, 64 when the config or the identity files are unusable,
//! 1 for runtime failures (e.g. a port already in use).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::sidecar::config::LogFormat;
use crate::sidecar::{error_chain, BuildError, Config, Sidecar};

/// Exit status for a bad config (`EX_USAGE`).
const EXIT_CONFIG: u8 = 64;

#[derive(Debug, clap::Args)]
pub struct SidecarArgs {
    /// The sidecar config file (TOML); see docs/sidecar.md.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Log format; overrides `log_format` in the file (default: human).
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
}

pub async fn run(args: SidecarArgs) -> anyhow::Result<ExitCode> {
    let config = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("fedgate sidecar: {}", error_chain(&e));
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
    };
    let format = args
        .log_format
        .or(config.log_format)
        .unwrap_or(LogFormat::Human);
    init_tracing(format);

    let sidecar = match Sidecar::build(config).await {
        Ok(s) => s,
        Err(e @ BuildError::Identity(_)) => {
            tracing::error!(error = %error_chain(&e), "cannot load the workload identity");
            eprintln!("fedgate sidecar: {}", error_chain(&e));
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
        Err(e) => return Err(e).context("cannot start the sidecar"),
    };
    // Handlers go in before the addresses are printed: whoever reads them may signal at once.
    let shutdown = CancellationToken::new();
    let signals = Signals::install().context("cannot install SIGTERM/SIGINT handlers")?;
    tokio::spawn(signals.cancel_on_first(shutdown.clone()));
    for b in sidecar.bound_addrs() {
        tracing::info!(kind = b.kind, name = %b.name, addr = %b.addr, "listening");
        println!("{} {} listening on {}", b.kind, b.name, b.addr);
    }
    sidecar.run(shutdown).await;
    Ok(ExitCode::SUCCESS)
}

/// SIGTERM and SIGINT streams, registered with the runtime.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Cancels `shutdown` on the first SIGTERM or SIGINT.
    async fn cancel_on_first(mut self, shutdown: CancellationToken) {
        tokio::select! {
            _ = self.term.recv() => tracing::info!("SIGTERM: draining"),
            _ = self.int.recv() => tracing::info!("SIGINT: draining"),
        }
        shutdown.cancel();
    }
}

fn init_tracing(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
