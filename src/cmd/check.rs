//! `fedgate check --config FILE [--json]`: check a gateway config against the live world
//! (peers, upstreams, bridge peers, the running gateway); see [`crate::check`].
//!
//! Exit codes (part of the CLI contract): 0 when every check is ok, 1 when any failed, 2 when
//! some only warned.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::check::{self, Timeouts};

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The gateway's TOML config file.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Print the results as a JSON array of {name, status, detail, hint}.
    #[arg(long)]
    pub json: bool,
    /// Bound on each connect, TLS handshake and idle read.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub connect_timeout: Duration,
    /// Bound on each whole request (bundle fetch, Workload API answer, /readyz).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

pub async fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let t = Timeouts {
        connect: args.connect_timeout,
        request: args.timeout.max(args.connect_timeout),
    };
    let results = check::run(&args.config, t).await;
    if args.json {
        println!("{}", check::render_json(&results));
    } else {
        print!("{}", check::render_text(&results));
    }
    Ok(ExitCode::from(check::exit_code(&results)))
}
