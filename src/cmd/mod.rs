//! One module per command; `dispatch` runs the parsed command.

pub mod bundle;
pub mod ca;
pub mod config;
pub mod demo;
pub mod id;
pub mod run;
pub mod sidecar;
pub mod svid;

use std::process::ExitCode;

use crate::cli::{Cli, Command};

/// Runs a parsed command line. Commands whose exit codes are part of a contract
/// (CLI-CONTRACT.md) print their own errors and return the code.
pub async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Id(c) => id::run(c).await,
        Command::Svid(c) => svid::run(c).await,
        Command::Bundle(c) => bundle::run(c).await,
        Command::Ca(c) => ca::run(c).await,
        Command::Config(c) => config::run(c).await,
        Command::Run(a) => run::run(a).await,
        Command::Sidecar(a) => sidecar::run(a).await,
        Command::Demo(a) => demo::run(a).await,
    }
}
