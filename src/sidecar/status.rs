//! What the sidecar's admin server reports: `/healthz` and `/readyz` are `ok` whenever it
//! answers (the identity is loaded and every listener bound before the admin server starts);
//! `/status` shows the bound listeners, the identity in force and the reload counts.
//!
//! Invariant: only process-local, non-secret state (SPIFFE IDs and trust domain names, no key
//! material, nothing a peer sent).

use std::sync::Arc;

use tokio::sync::watch;

use super::reload::ReloadStatus;
use super::tls::TlsSnapshot;
use super::BoundAddr;
use crate::admin::AdminSource;

/// The sidecar's [`AdminSource`]: fixed listeners plus the live identity and reload state.
pub(crate) struct SidecarStatus {
    pub(crate) listeners: Vec<BoundAddr>,
    pub(crate) tls: watch::Receiver<Arc<TlsSnapshot>>,
    pub(crate) reloads: watch::Receiver<ReloadStatus>,
}

impl AdminSource for SidecarStatus {
    fn status(&self) -> serde_json::Value {
        let tls = self.tls.borrow().clone();
        let reloads = self.reloads.borrow().clone();
        let listeners: Vec<_> = self
            .listeners
            .iter()
            .map(|b| {
                serde_json::json!({
                    "kind": b.kind,
                    "name": b.name,
                    "address": b.addr.to_string(),
                })
            })
            .collect();
        serde_json::json!({
            "state": "running",
            "listeners": listeners,
            "identity": {
                "spiffe_id": tls.id.to_string(),
                "generation": tls.generation,
                "trust_domains": tls.trust_domains.iter().map(|td| td.to_string()).collect::<Vec<_>>(),
            },
            "reloads": {
                "succeeded": reloads.succeeded,
                "failed": reloads.failed,
                "last_error": reloads.last_error,
            },
        })
    }
}
