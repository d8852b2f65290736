//! fedgate: a multi-cluster SPIFFE trust-federation gateway.
//!
//! Data flows one way: config → federation (`BundleSet` snapshots) → verifiers → data plane.
//! Start reading at `main.rs`, then [`cli`], then the `cmd` module of the command you care about.

pub mod authz;
pub mod ca;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod demo;
pub mod gateway;
pub mod proxy_protocol;
pub mod telemetry;
