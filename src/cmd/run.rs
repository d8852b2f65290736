//! `fedgate run --config FILE`: the edge gateway, as the life of the process: load config,
//! init logging, build (bind everything), log addresses, serve until SIGTERM/SIGINT, drain.
//!
//! Exit codes: 0 after a clean drain, 64 for an unusable config, 1 for runtime failures
//! (a bind error, unloadable identity files).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::app::App;
use crate::cmd::process::{load_and_log, LogArgs};
use crate::config::Config;
use fedgate_federation::error_chain;

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The gateway config file (TOML; see docs/configuration.md).
    #[arg(long, short = 'c')]
    config: PathBuf,
    #[command(flatten)]
    log: LogArgs,
    /// Data-plane worker threads; overrides `workers` in the config file (default: one per CPU).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=crate::config::MAX_WORKERS as i64))]
    workers: Option<u16>,
}

pub(crate) async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let config = match load_and_log(
        "fedgate",
        &args.config,
        Config::load,
        |c| Some(c.log_format),
        &args.log,
    ) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    tracing::info!(config = %args.config.display(), summary = %config.summary(), "starting");
    let (shutdown, reloads) =
        fedgate_dataplane::shutdown::install().context("cannot install signal handlers")?;
    let mut app = App::build(config)
        .await
        .map_err(|e| anyhow::anyhow!(error_chain(&e)))?;
    if let Some(n) = args.workers {
        app = app.with_workers(usize::from(n));
    }
    for (name, addr) in app.listener_addrs() {
        println!("listener {name} listening on {addr}");
    }
    println!("admin listening on {}", app.admin_addr());
    if let Some(addr) = app.bundle_endpoint_addr() {
        println!("bundle endpoint listening on {addr}");
    }
    app.with_reload_requests(reloads)
        .run(shutdown)
        .await
        .map_err(|e| anyhow::anyhow!(error_chain(&e)))?;
    Ok(ExitCode::SUCCESS)
}
