//! What the sidecar's admin server reports: `/healthz` and `/readyz` are `ok` whenever it
//! answers (the identity is loaded and every listener bound before the admin server starts);
//! `/status` shows the bound listeners, the identity in force, the reload counts and, with
//! `[identity] source = "workload_api"`, the source's state in `identity_source` (socket,
//! updates, rejected, reconnects, last error: the same object as `fedgate run`'s; `null` with
//! identity files).
//!
//! Invariant: only process-local, non-secret state (SPIFFE IDs and trust domain names, no key
//! material, nothing a peer sent).

use std::sync::Arc;

use tokio::sync::watch;

use super::reload::ReloadStatus;
use super::tls::TlsSnapshot;
use super::BoundAddr;
use crate::admin::AdminSource;
use crate::identity::workload_api::SourceStatus;

/// The sidecar's [`AdminSource`]: fixed listeners plus the live identity and reload state.
pub(crate) struct SidecarStatus {
    pub(crate) listeners: Vec<BoundAddr>,
    pub(crate) tls: watch::Receiver<Arc<TlsSnapshot>>,
    pub(crate) reloads: watch::Receiver<ReloadStatus>,
    /// The Workload API source's counters (`None` with identity files).
    pub(crate) identity_source: Option<SourceStatus>,
}

impl AdminSource for SidecarStatus {
    fn status(&self) -> serde_json::Value {
        let tls = self.tls.borrow().clone();
        serde_json::json!({
            "state": "running",
            "listeners": self.listeners,
            "identity": {
                "spiffe_id": tls.id.to_string(),
                "generation": tls.generation,
                "trust_domains": tls.trust_domains.iter().map(|td| td.to_string()).collect::<Vec<_>>(),
            },
            "reloads": *self.reloads.borrow(),
            "identity_source": self.identity_source.as_ref().map(SourceStatus::status),
        })
    }
}
