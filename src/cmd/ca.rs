//! TODO.

use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum CaCommand {
    /// TODO
    Todo,
}

pub async fn run(_cmd: CaCommand) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
