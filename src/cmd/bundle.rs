//! `fedgate bundle inspect|serve|fetch`.

pub mod create;
pub mod fetch;
pub mod inspect;
pub mod serve;

use std::process::ExitCode;

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum BundleCommand {
    /// Parse a bundle file and summarize it (docs/cli.md).
    Inspect(inspect::Args),
    /// Serve a bundle as a SPIFFE federation endpoint.
    Serve(Box<serve::Args>),
    /// Fetch a peer's bundle from its federation endpoint.
    Fetch(Box<fetch::Args>),
    /// Build a bundle from PEM CA certificates.
    Create(create::Args),
}

pub async fn run(cmd: BundleCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        BundleCommand::Inspect(a) => inspect::run(a).await,
        BundleCommand::Serve(a) => serve::run(*a).await,
        BundleCommand::Fetch(a) => fetch::run(*a).await,
        BundleCommand::Create(a) => create::run(a).await,
    }
}
