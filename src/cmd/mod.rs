//! The command line: [`Cli`] (clap derive) and one module per command, each owning its
//! arguments; [`dispatch`] runs the parsed command. Nothing below imports this module back.

mod agent;
mod authz;
mod bundle;
mod ca;
mod check;
mod config;
mod id;
mod jwt;
mod process;
mod run;
mod sidecar;
mod svid;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit status for a usage or configuration error: an inconsistent command line or an
/// unusable config file (sysexits.h `EX_USAGE`). Part of the CLI contract.
pub(crate) const EX_USAGE: u8 = 64;

#[derive(Debug, Parser)]
#[command(name = "fedgate", version, about = "SPIFFE trust-federation gateway")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// SPIFFE ID validation.
    #[command(subcommand)]
    Id(id::IdCommand),
    /// X509-SVID validation and inspection.
    #[command(subcommand)]
    Svid(svid::SvidCommand),
    /// Federation endpoint and bundle tooling.
    #[command(subcommand)]
    Bundle(bundle::BundleCommand),
    /// JWT-SVID validation and minting.
    #[command(subcommand)]
    Jwt(jwt::JwtCommand),
    /// A small CA for trust domains and the bridge.
    #[command(subcommand)]
    Ca(ca::CaCommand),
    /// Configuration tooling.
    #[command(subcommand)]
    Config(config::ConfigCommand),
    /// Check a gateway config against the live world: SVID, peers, upstreams, bridge, admin.
    Check(check::CheckArgs),
    /// Authorization policy tooling: import SMI access policy as allow lists.
    #[command(subcommand)]
    Authz(authz::AuthzCommand),
    /// Run the edge gateway.
    Run(run::RunArgs),
    /// Run the workload-side mTLS proxy.
    Sidecar(sidecar::SidecarArgs),
    /// Serve the SPIFFE Workload API on a Unix socket.
    Agent(agent::AgentArgs),
    /// Run both clusters on this machine and report seven scenarios.
    Demo(fedgate_demo::command::DemoArgs),
}

/// Runs a parsed command line. Commands whose exit codes are part of a contract
/// (docs/cli.md) print their own errors and return the code.
pub async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Id(c) => id::run(c).await,
        Command::Svid(c) => svid::run(c).await,
        Command::Bundle(c) => bundle::run(c).await,
        Command::Jwt(c) => jwt::run(c).await,
        Command::Ca(c) => ca::run(c).await,
        Command::Config(c) => config::run(c).await,
        Command::Check(a) => check::run(a).await,
        Command::Authz(c) => authz::run(c).await,
        Command::Run(a) => run::run(a).await,
        Command::Sidecar(a) => sidecar::run(a).await,
        Command::Agent(a) => agent::run(a).await,
        Command::Demo(a) => fedgate_demo::command::run(a).await,
    }
}
