//! fedgate: a multi-cluster SPIFFE trust-federation gateway.
//!
//! Data flows one way: config → federation (`BundleSet` snapshots) → verifiers → data plane.
//! Start reading at `main.rs`, then [`cmd`] and the module of the command you care about.
//! For `fedgate run`: [`config`] → [`app`] → [`gateway`] (accept, peek, route, splice), with
//! [`admin`], [`telemetry`] and `fedgate_dataplane::shutdown` around it.

pub mod admin;
pub mod app;
pub mod authz;
pub mod bridge;
pub mod ca;
pub mod check;
pub mod cmd;
pub mod config;
pub mod gateway;
pub mod identity;
pub mod sidecar;
pub mod telemetry;
pub mod workload;
