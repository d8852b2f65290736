//! The seam between the gateway and the federation refresher/endpoint (crate
//! `fedgate_federation`): build it from `[federation]`, ask it whether every peer has a
//! bundle, describe peers for `/status`, run it.
//!
//! Invariant: the data plane never reaches into federation except through the snapshot
//! receiver this component exposes (DESIGN.md "data flows one way").

use std::net::SocketAddr;
use std::sync::Arc;

use fedgate_federation::TrustDomain;
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::app::identity::Identity;
use crate::config::FederationConfig;

/// The federation component of a running gateway.
pub struct Federation {
    _private: (),
}

/// Read-only view of federation state for the admin server.
pub trait FederationView: Send + Sync + 'static {
    /// `Ok` when every peer has a bundle (fetched or last-known-good).
    fn readiness(&self) -> Result<(), String>;
    /// Per-peer status for `/status`.
    fn peers(&self) -> serde_json::Value;
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FederationSetupError {
    #[error("[federation] is configured, but this build of `fedgate run` does not run federation yet; remove [federation] or use `fedgate bundle serve` / `fedgate bundle fetch --watch` beside the gateway")]
    NotAvailable,
}

// === impl Federation ===

impl Federation {
    /// Builds the component (binding the bundle endpoint's listener, if any) and registers
    /// its metrics in `registry`.
    pub async fn build(
        _config: &FederationConfig,
        _local: &TrustDomain,
        _identity: Option<watch::Receiver<Arc<Identity>>>,
        _registry: &mut Registry,
    ) -> Result<Federation, FederationSetupError> {
        Err(FederationSetupError::NotAvailable)
    }

    pub fn view(&self) -> Arc<dyn FederationView> {
        Arc::new(NoPeers)
    }

    /// The bundle endpoint's bound address, when `[federation.serve]` is configured.
    pub fn serve_addr(&self) -> Option<SocketAddr> {
        None
    }

    pub async fn run(self, _shutdown: CancellationToken) {}
}

struct NoPeers;

impl FederationView for NoPeers {
    fn readiness(&self) -> Result<(), String> {
        Ok(())
    }
    fn peers(&self) -> serde_json::Value {
        serde_json::json!([])
    }
}
