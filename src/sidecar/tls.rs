//! rustls configurations of the sidecar, built once per identity change.
//!
//! Chain validation and the allow lists both live in core's verifiers
//! (`SpiffeServerVerifier` / `SpiffeClientVerifier` over the `BundleSet`, which picks the bundle
//! of the peer's *own* trust domain and never merges domains), with each listener's allow list
//! as the verifier's [`Authorizer`]. The allow list is therefore checked *during the handshake*:
//! a peer that is not allowed gets a TLS alert and never exchanges an application byte.
//!
//! Invariants:
//! * every config comes from the shared mTLS builders (`fedgate_federation::tls::
//!   mtls_server_config` / `mtls_client_config`, as the bridge's), so with its one provider;
//! * TLS session resumption is off in both directions, so every connection is verified against
//!   the bundles and allow lists in force when it is opened;
//! * an inbound listener has a relay config (ALPN [`fedgate_dataplane::relay::RELAY_ALPN`] only) if and only
//!   if it has `trusted_relays`; it is used for a client that offers the relay protocol, and the
//!   plain config (no ALPN) for every other client, so other clients' ALPN offers keep working;
//! * a [`TlsSnapshot`] is immutable; a reload builds a new one.

use std::sync::Arc;

use fedgate_federation::tls::{mtls_client_config, mtls_server_config, Authorizer};
use fedgate_federation::{SpiffeId, TrustDomain};
use rustls::{ClientConfig, ServerConfig};

use super::config::Config;
use crate::identity::Identity;

/// The TLS configs of every listener, built from one identity. Indexes follow the config's
/// `outbound` and `inbound` lists.
#[derive(Debug)]
pub struct TlsSnapshot {
    /// 0 for the identity loaded at start, +1 per successful reload.
    pub generation: u64,
    /// The workload's own SPIFFE ID.
    pub id: SpiffeId,
    /// The trust domains whose bundles these configs trust (in the bundle set's order).
    pub trust_domains: Vec<TrustDomain>,
    pub outbound: Vec<Arc<ClientConfig>>,
    pub inbound: Vec<InboundTls>,
}

/// The server configs of one inbound listener.
#[derive(Clone, Debug)]
pub struct InboundTls {
    /// For clients that do not offer the relay protocol: no ALPN is selected.
    pub plain: Arc<ServerConfig>,
    /// For clients that offer it, when the listener has `trusted_relays`: selects it.
    pub relay: Option<Arc<ServerConfig>>,
}

// === impl InboundTls ===

impl InboundTls {
    /// The config for a client whose ClientHello does (`true`) or does not offer the relay
    /// protocol. Without `trusted_relays` the plain config answers both, so a relay's offer is
    /// not selected and the relay refuses to send its header.
    pub fn for_client(&self, offers_relay: bool) -> Arc<ServerConfig> {
        match (&self.relay, offers_relay) {
            (Some(relay), true) => Arc::clone(relay),
            _ => Arc::clone(&self.plain),
        }
    }
}

// === impl TlsSnapshot ===

impl TlsSnapshot {
    /// Builds the client config of every outbound and the server config of every inbound.
    pub fn build(
        identity: &Identity,
        config: &Config,
        generation: u64,
    ) -> Result<Self, rustls::Error> {
        let (svid, bundles) = (&identity.svid, &identity.bundles);
        let outbound = config
            .outbound
            .iter()
            .map(|o| {
                mtls_client_config(svid, bundles.clone(), o.allow.clone(), false).map(Arc::new)
            })
            .collect::<Result<Vec<_>, rustls::Error>>()?;
        let inbound = config
            .inbound
            .iter()
            .map(|i| {
                // Relays pass the handshake too; what they relay is checked against `allow`
                // once their PROXY header has been read.
                let rule = Authorizer::any_of([i.allow.clone(), i.trusted_relays.clone()]);
                let plain = mtls_server_config(svid, bundles.clone(), rule, false)?;
                let relay = (!i.trusted_relays.allows_nothing()).then(|| {
                    let mut relay = plain.clone();
                    relay.alpn_protocols = fedgate_dataplane::relay::alpn_offer(true);
                    Arc::new(relay)
                });
                let plain = Arc::new(plain);
                Ok(InboundTls { plain, relay })
            })
            .collect::<Result<Vec<_>, rustls::Error>>()?;
        Ok(Self {
            generation,
            id: identity.svid.id().clone(),
            trust_domains: identity
                .bundles
                .iter()
                .map(|b| b.trust_domain().clone())
                .collect(),
            outbound,
            inbound,
        })
    }
}
