//! TODO.

use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum IdCommand {
    /// TODO
    Todo,
}

pub async fn run(_cmd: IdCommand) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
