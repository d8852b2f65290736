//! TODO.

use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum SvidCommand {
    /// TODO
    Todo,
}

pub async fn run(_cmd: SvidCommand) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
