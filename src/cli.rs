//! The command line (clap derive). Each subcommand's arguments live in its `cmd` module.

use clap::{Parser, Subcommand};

use crate::cmd;

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
    Id(cmd::id::IdCommand),
    /// X509-SVID validation and inspection.
    #[command(subcommand)]
    Svid(cmd::svid::SvidCommand),
    /// Federation endpoint and bundle tooling.
    #[command(subcommand)]
    Bundle(cmd::bundle::BundleCommand),
    /// A small CA for trust domains and the bridge.
    #[command(subcommand)]
    Ca(cmd::ca::CaCommand),
    /// Configuration tooling.
    #[command(subcommand)]
    Config(cmd::config::ConfigCommand),
    /// Run the edge gateway.
    Run(cmd::run::RunArgs),
    /// Run the workload-side mTLS proxy.
    Sidecar(cmd::sidecar::SidecarArgs),
    /// Run both clusters on this machine and report six scenarios.
    Demo(cmd::demo::DemoArgs),
}
