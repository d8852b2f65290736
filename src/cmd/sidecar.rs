//! `fedgate sidecar --config FILE`: the workload-side mTLS proxy, as the life of the process:
//! load config, init logging, build (load identity, bind everything), print addresses, serve
//! until SIGTERM/SIGINT, drain. SIGHUP re-reads the identity files at once (with
//! `[identity] source = "workload_api"` the identity is streamed and SIGHUP has nothing to do).
//!
//! Exit codes: 0 after a clean drain, 64 when the config or the identity is unusable (identity
//! files, or a Workload API socket that is not a socket or gives no usable SVID within 30 s),
//! 1 for runtime failures (e.g. a port already in use).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::cmd::process::{load_and_log, LogArgs};
use crate::cmd::EX_USAGE;
use crate::sidecar::{BuildError, Config, Sidecar};
use fedgate_federation::error_chain;

#[derive(Debug, clap::Args)]
pub struct SidecarArgs {
    /// The sidecar config file (TOML; see docs/sidecar.md).
    #[arg(long, short = 'c', value_name = "FILE")]
    config: PathBuf,
    #[command(flatten)]
    log: LogArgs,
}

pub(crate) async fn run(args: SidecarArgs) -> anyhow::Result<ExitCode> {
    let config = match load_and_log(
        "fedgate sidecar",
        &args.config,
        Config::load,
        |c| c.log_format,
        &args.log,
    ) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    // Handlers go in before the addresses are printed: whoever reads them may signal at once.
    let (shutdown, reloads) =
        fedgate_dataplane::shutdown::install().context("cannot install signal handlers")?;
    let sidecar = match Sidecar::build(config).await {
        Ok(s) => s.with_reload_requests(reloads),
        Err(e @ BuildError::Identity(_)) => {
            tracing::error!(error = %error_chain(&e), "cannot load the workload identity");
            eprintln!("fedgate sidecar: identity error: {}", error_chain(&e));
            return Ok(ExitCode::from(EX_USAGE));
        }
        Err(e) => anyhow::bail!("cannot start the sidecar: {}", error_chain(&e)),
    };
    for b in sidecar.bound_addrs() {
        tracing::info!(kind = b.kind, name = %b.name, addr = %b.addr, "listening");
        println!("{} {} listening on {}", b.kind, b.name, b.addr);
    }
    sidecar.run(shutdown).await;
    Ok(ExitCode::SUCCESS)
}
