//! `fedgate agent --config FILE`: serve the SPIFFE Workload API on a Unix socket (see
//! docs/workload-api.md and ADR 0009), as the life of the process: load config, init logging,
//! mint the SVIDs and bind the socket, print the socket path, serve until SIGTERM/SIGINT.
//!
//! Exit codes: 0 after a clean shutdown, 64 when the config file or the CA directory is
//! unusable, 1 for runtime failures (e.g. the socket path is taken).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;

use crate::cmd::process::{load_and_log, LogArgs};
use crate::cmd::EX_USAGE;
use crate::config::agent::Config;
use crate::workload::agent::{Agent, AgentError, AgentSettings};
use crate::workload::mint::MintConfig;
use fedgate_federation::error_chain;

#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    /// The agent config file (TOML; see docs/workload-api.md).
    #[arg(long, short = 'c', value_name = "FILE")]
    config: PathBuf,
    #[command(flatten)]
    log: LogArgs,
}

pub(crate) async fn run(args: AgentArgs) -> anyhow::Result<ExitCode> {
    let config = match load_and_log(
        "fedgate agent",
        &args.config,
        Config::load,
        |c| c.log_format,
        &args.log,
    ) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let (shutdown, _reloads) =
        fedgate_dataplane::shutdown::install().context("cannot install signal handlers")?;
    let settings = AgentSettings {
        socket: config.socket.clone(),
        mint: MintConfig {
            trust_domain: config.trust_domain.clone(),
            ca_dir: config.ca.clone(),
            federated_bundles: config.federated_bundles.clone(),
            svid_ttl: config.svid_ttl,
        },
        entries: Arc::new(config.entries),
        poll_interval: config.poll_interval,
    };
    let agent = match Agent::start(settings) {
        Ok(a) => a,
        Err(e @ AgentError::Mint(_)) => {
            tracing::error!(error = %error_chain(&e), "cannot mint the SVIDs");
            eprintln!("fedgate agent: CA error: {}", error_chain(&e));
            return Ok(ExitCode::from(EX_USAGE));
        }
        Err(e) => anyhow::bail!("cannot start the agent: {}", error_chain(&e)),
    };
    let socket = agent.socket().display().to_string();
    tracing::info!(socket = %socket, "Workload API listening");
    println!("workload-api listening on unix://{socket}");
    agent
        .run(shutdown)
        .await
        .map_err(|e| anyhow::anyhow!("the Workload API server failed: {}", error_chain(&e)))?;
    Ok(ExitCode::SUCCESS)
}
