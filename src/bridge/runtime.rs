//! Wiring of the bridge into `fedgate run`: builds each bridge listener's state from its
//! `ListenerConfig`, the local identity (`[identity]`) and the bridge identity (`[bridge]`), and
//! rebuilds it whenever one of them changes (config reload, SVID renewal, bundle update).
//!
//! Invariants: rustls configs are built once per change, never per connection; a change that
//! fails to build is logged and counted and the previous state stays in force; live
//! connections keep the state they started with; the bridge SVID expiry gauge always describes
//! the bridge SVID in force.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use fedgate_federation::{Bundle, BundleSet};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::egress::{self, EgressRoutes, EgressState};
use super::ingress::{self, HeaderLimits, IngressRoutes, IngressState, IngressStateError};
use super::policy::{BridgePeer, BridgePeers, EgressRoute, IngressRoute};
use super::tls::{BridgeTlsError, Identities};
use super::{BridgeMetrics, Swap, Timeouts};
use crate::config::{BridgeIdentity, Config, ListenerConfig, ListenerKind, ListenerMode, Route};
use crate::gateway::{ListenerState, Terminating};
use crate::identity::files::{FileSource, IdentityError, IdentityFiles};
use crate::identity::issuer::IssuedBridgeIdentity;
use crate::identity::{Identity, IdentitySource};
use fedgate_dataplane::upstreams::Upstreams;
use fedgate_federation::error_chain;

/// Serves connections of one bridge listener with its current state; cheap to clone.
#[derive(Clone, Debug)]
pub enum BridgeHandler {
    Egress(Arc<Swap<EgressState>>),
    Ingress(Arc<Swap<IngressState>>),
}

/// The bridge part of a gateway: per-listener state cells and what keeps them current.
pub struct BridgeRuntime {
    handlers: HashMap<String, BridgeHandler>,
    /// Keeps the bridge identity current: polls the `[bridge]` SVID, key and bundle files, or
    /// renews the SVID from `[bridge.issuer]` (`crate::identity::issuer`).
    watcher: Box<dyn IdentitySource>,
    inputs: Inputs,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BridgeSetupError {
    #[error("bridge listeners need [identity] (the local SVID) and [bridge] (the bridge SVID)")]
    MissingIdentity,
    #[error("cannot load the bridge identity; check [bridge] svid, key and bundle")]
    Identity(#[source] Box<IdentityError>),
    #[error("bridge listener `{listener}`: {source}")]
    Build {
        listener: String,
        #[source]
        source: BuildError,
    },
}

/// Why a bridge listener's state could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    #[error("TLS configuration")]
    Tls(#[from] BridgeTlsError),
    #[error("bridge peer {0} is listed twice")]
    DuplicatePeer(fedgate_federation::SpiffeId),
    #[error(transparent)]
    Ingress(IngressStateError),
    #[error("not a bridge listener")]
    NotBridge,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RebuildLabels {
    listener: String,
    result: &'static str,
}

/// Everything a rebuild reads.
struct Inputs {
    session_resumption: bool,
    local: watch::Receiver<Arc<Identity>>,
    bridge: watch::Receiver<Arc<Identity>>,
    /// Federation's bundle snapshots, when `[federation]` is configured.
    federated: Option<watch::Receiver<BundleSet>>,
    listeners: Vec<(String, watch::Receiver<Arc<ListenerState>>)>,
    metrics: BridgeMetrics,
    /// State rebuilds after a change, by listener and result (`ok` / `failed`).
    rebuilds: Family<RebuildLabels, Counter>,
    /// Cancelled when `run` returns (shutdown): ingress tunnels drain with GOAWAY.
    drain: CancellationToken,
}

// === impl BridgeHandler ===

impl BridgeHandler {
    /// Serves one accepted connection with the state in force now (logs and counts refusals).
    pub async fn serve(&self, tcp: TcpStream) {
        match self {
            BridgeHandler::Egress(cell) => egress::serve_connection(cell.load(), tcp).await,
            BridgeHandler::Ingress(cell) => ingress::serve_connection(cell.load(), tcp).await,
        }
    }
}

impl Terminating for BridgeHandler {
    fn serve_connection(&self, tcp: TcpStream) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(self.serve(tcp))
    }
}

// === impl BridgeRuntime ===

impl BridgeRuntime {
    /// Builds the state of every bridge listener of `config`, or `None` if there is none.
    /// `listeners` holds the state channel of each listener (by name), so route and limit
    /// reloads reach the bridge too; `local` is the `[identity]` channel; `federated` the
    /// federation's bundle snapshots (see [`bridge_bundle`]).
    ///
    /// With `[bridge.issuer]`, `issued` is the bridge identity already started by
    /// `crate::app`. Refusals are also recorded in `denials` (the process's ring).
    pub fn build(
        config: &Config,
        local: Option<watch::Receiver<Arc<Identity>>>,
        federated: Option<watch::Receiver<BundleSet>>,
        issued: Option<IssuedBridgeIdentity>,
        listeners: &HashMap<String, watch::Receiver<Arc<ListenerState>>>,
        registry: &mut Registry,
        denials: crate::telemetry::Denials,
    ) -> Result<Option<BridgeRuntime>, BridgeSetupError> {
        let bridge_listeners: Vec<&ListenerConfig> = config
            .listeners
            .iter()
            .filter(|l| l.kind() != ListenerKind::Passthrough)
            .collect();
        if bridge_listeners.is_empty() {
            return Ok(None);
        }
        let (Some(local), Some(bridge)) = (local, config.bridge.as_ref()) else {
            return Err(BridgeSetupError::MissingIdentity);
        };
        let (watcher, bridge_rx) = match (&bridge.identity, issued) {
            (BridgeIdentity::Files { svid, key }, _) => {
                let files = IdentityFiles::new(svid.clone(), key.clone(), bridge.bundle.clone());
                let (watcher, rx) = FileSource::start(&files, &bridge.trust_domain)
                    .map_err(|e| BridgeSetupError::Identity(Box::new(e)))?;
                (Box::new(watcher) as Box<dyn IdentitySource>, rx)
            }
            (BridgeIdentity::Issuer(_), Some((task, rx))) => {
                (Box::new(task) as Box<dyn IdentitySource>, rx)
            }
            (BridgeIdentity::Issuer(_), None) => return Err(BridgeSetupError::MissingIdentity),
        };

        let metrics = BridgeMetrics::new().with_denials(denials);
        metrics.register(registry);
        let rebuilds = Family::<RebuildLabels, Counter>::default();
        registry.register(
            "fedgate_bridge_rebuilds",
            "Bridge listener state rebuilds after an identity, bundle or config change, by \
             result (a failed rebuild keeps the previous state)",
            rebuilds.clone(),
        );
        let inputs = Inputs {
            session_resumption: bridge.session_resumption,
            local,
            bridge: bridge_rx,
            federated,
            listeners: bridge_listeners
                .iter()
                .filter_map(|l| {
                    listeners
                        .get(&l.name)
                        .map(|rx| (l.name.clone(), rx.clone()))
                })
                .collect(),
            metrics,
            rebuilds,
            drain: CancellationToken::new(),
        };
        let mut handlers = HashMap::new();
        let ids = inputs
            .identities()
            .map_err(|source| BridgeSetupError::Build {
                listener: bridge_listeners[0].name.clone(),
                source: source.into(),
            })?;
        inputs.record_expiry(&ids);
        for l in &bridge_listeners {
            let handler =
                build_handler(l, &ids, &inputs.metrics, None, &inputs.drain).map_err(|source| {
                    BridgeSetupError::Build {
                        listener: l.name.clone(),
                        source,
                    }
                })?;
            handlers.insert(l.name.clone(), handler);
        }
        Ok(Some(BridgeRuntime {
            handlers,
            watcher,
            inputs,
        }))
    }

    /// The bridge identity in force as it is renewed or reloaded (for `/status`).
    pub fn bridge_identity(&self) -> watch::Receiver<Arc<Identity>> {
        self.inputs.bridge.clone()
    }

    /// The handler of bridge listener `name`.
    pub fn handler(&self, name: &str) -> Option<BridgeHandler> {
        self.handlers.get(name).cloned()
    }

    /// Polls the bridge identity files every `poll` and rebuilds every bridge listener's state
    /// when the local identity, the bridge identity or a listener's config changes; returns on
    /// `shutdown`.
    pub async fn run(self, poll: Duration, shutdown: CancellationToken) {
        let BridgeRuntime {
            handlers,
            watcher,
            mut inputs,
        } = self;
        let watching = tokio::spawn(watcher.run(poll, shutdown.clone()));
        loop {
            if !inputs.changed(&shutdown).await {
                break;
            }
            inputs.rebuild(&handlers);
        }
        inputs.drain.cancel();
        let _ = watching.await;
    }
}

// === impl Inputs ===

impl Inputs {
    fn identities(&self) -> Result<Identities, BridgeTlsError> {
        let local = self.local.borrow().clone();
        let bridge = self.bridge.borrow().clone();
        let federated = self.federated.as_ref().map(|rx| rx.borrow().clone());
        Identities::new(
            local.svid.clone(),
            local.bundle.clone(),
            bridge.svid.clone(),
            bridge_bundle(&bridge.bundle, federated.as_ref()),
            self.session_resumption,
        )
    }

    fn record_expiry(&self, ids: &Identities) {
        self.metrics.svid_expiry.set(
            ids.bridge_svid_not_after()
                .map(|t| (ids.bridge_svid().id().to_string(), t)),
        );
    }

    /// Waits for any input to change; `false` on shutdown (or when every sender is gone).
    async fn changed(&mut self, shutdown: &CancellationToken) -> bool {
        let listeners = async {
            if self.listeners.is_empty() {
                // `select_all` needs at least one future.
                return std::future::pending().await;
            }
            let changes = self
                .listeners
                .iter_mut()
                .map(|(_, rx)| Box::pin(rx.changed()));
            futures_util::future::select_all(changes).await.0
        };
        let federated = async {
            match &mut self.federated {
                Some(rx) => rx.changed().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => false,
            r = self.local.changed() => r.is_ok(),
            r = federated => r.is_ok(),
            r = self.bridge.changed() => r.is_ok(),
            r = listeners => r.is_ok(),
        }
    }

    fn rebuild(&self, handlers: &HashMap<String, BridgeHandler>) {
        let ids = match self.identities() {
            Ok(ids) => ids,
            Err(e) => {
                for (name, _) in &self.listeners {
                    self.rebuilt(name, false);
                }
                tracing::error!(
                    error = %error_chain(&e),
                    "bridge identities do not fit together; keeping the previous bridge state"
                );
                return;
            }
        };
        self.record_expiry(&ids);
        for (name, rx) in &self.listeners {
            let Some(handler) = handlers.get(name) else {
                continue;
            };
            let config = rx.borrow().config.clone();
            let rebuilt = build_handler(&config, &ids, &self.metrics, Some(handler), &self.drain);
            let ok = match (rebuilt, handler) {
                (Ok(BridgeHandler::Egress(new)), BridgeHandler::Egress(cell)) => {
                    cell.store(new.load());
                    true
                }
                (Ok(BridgeHandler::Ingress(new)), BridgeHandler::Ingress(cell)) => {
                    let old = cell.load();
                    cell.store(new.load());
                    // Its tunnels send GOAWAY: new streams move to tunnels of the new state.
                    old.retire();
                    true
                }
                (Ok(_), _) => {
                    // The kind of a listener never changes on reload (the reloader refuses it).
                    tracing::error!(listener = %name, "bridge listener changed kind; keeping its state");
                    false
                }
                (Err(e), _) => {
                    tracing::error!(
                        listener = %name, error = %error_chain(&e),
                        "bridge listener state does not build; keeping the previous one"
                    );
                    false
                }
            };
            self.rebuilt(name, ok);
        }
        tracing::info!(bridge_id = %ids.bridge_svid().id(), "bridge TLS configurations rebuilt");
    }

    fn rebuilt(&self, listener: &str, ok: bool) {
        self.rebuilds
            .get_or_create(&RebuildLabels {
                listener: listener.to_owned(),
                result: if ok { "ok" } else { "failed" },
            })
            .inc();
    }
}

/// The bridge bundle in force: the federated one when federation has a bundle for the bridge
/// trust domain (a `[[federation.peers]]` entry keeps it fresh), else the `[bridge] bundle` file.
/// Only a bundle of the bridge trust domain is ever taken (never another domain's).
pub fn bridge_bundle(file: &Bundle, federated: Option<&BundleSet>) -> Bundle {
    federated
        .and_then(|set| set.get(file.trust_domain()))
        .map(|b| (**b).clone())
        .unwrap_or_else(|| file.clone())
}

/// Builds the state of one bridge listener.
/// `previous`: the listener's handler before a rebuild (its tunnel pools are kept); `drain`:
/// cancelled on shutdown (ingress tunnels send GOAWAY).
fn build_handler(
    l: &ListenerConfig,
    ids: &Identities,
    metrics: &BridgeMetrics,
    previous: Option<&BridgeHandler>,
    drain: &CancellationToken,
) -> Result<BridgeHandler, BuildError> {
    let timeouts = Timeouts {
        // Bridge listeners terminate TLS: the ClientHello peek budget bounds the handshake.
        handshake: l.limits.peek_timeout,
        connect: l.limits.connect_timeout,
        idle: l.limits.idle_timeout,
    };
    let upstreams = |r: &Route<'_>| Upstreams::new(r.upstreams.to_vec());
    let handler = match &l.mode {
        ListenerMode::BridgeEgress { routes } => {
            let routes = routes
                .iter()
                .map(|r| EgressRoute {
                    name: r.name.clone(),
                    upstreams: upstreams(&r.route()),
                    peer_id: r.bridge.peer_id.clone(),
                    allow: r.bridge.allow.clone(),
                    send_proxy_header: r.bridge.send_proxy_header,
                    transport: r.bridge.transport,
                })
                .collect();
            let mut state = EgressState::new(
                l.name.clone(),
                Arc::new(EgressRoutes::from_table(&l.route_table, routes)),
                ids,
                timeouts,
                metrics.clone(),
            )?;
            // Live tunnels survive the rebuild; stale ones are replaced for new streams.
            if let Some(BridgeHandler::Egress(cell)) = previous {
                state = state.with_pools(Arc::clone(cell.load().pools()));
            }
            BridgeHandler::Egress(Arc::new(Swap::new(Arc::new(state))))
        }
        ListenerMode::BridgeIngress { settings, routes } => {
            let peers = BridgePeers::new(settings.peers.iter().map(|p| BridgePeer {
                id: p.id.clone(),
                may_speak_for: p.may_speak_for.clone(),
            }))
            .map_err(BuildError::DuplicatePeer)?;
            let routes = routes
                .iter()
                .map(|r| IngressRoute {
                    name: r.name.clone(),
                    upstreams: upstreams(&r.route()),
                    server_id: r.bridge.server_id.clone(),
                    allow: r.bridge.allow.clone(),
                    send_proxy_header: r.bridge.send_proxy_header,
                })
                .collect();
            let state = IngressState::new(
                l.name.clone(),
                Arc::new(peers),
                Arc::new(IngressRoutes::from_table(&l.route_table, routes)),
                ids,
                HeaderLimits {
                    timeout: settings.proxy_header_timeout,
                    max_len: settings.max_proxy_header,
                },
                timeouts,
                metrics.clone(),
            )
            .map_err(|e| match e {
                IngressStateError::Tls(t) => BuildError::Tls(t),
                other => BuildError::Ingress(other),
            })?
            .with_drain(drain.clone());
            BridgeHandler::Ingress(Arc::new(Swap::new(Arc::new(state))))
        }
        ListenerMode::Passthrough { .. } => return Err(BuildError::NotBridge),
    };
    Ok(handler)
}

#[cfg(test)]
mod tests {
    use fedgate_federation::TrustDomain;

    use super::*;

    fn bundle(td: &str, seq: u64) -> Bundle {
        let mut b = Bundle::new(TrustDomain::new(td).unwrap());
        b.set_sequence(Some(seq));
        b
    }

    #[test]
    fn federated_bridge_bundle_wins_over_the_file() {
        let file = bundle("bridge.test", 1);
        let set = BundleSet::new().with(bundle("bridge.test", 7));
        assert_eq!(bridge_bundle(&file, Some(&set)).sequence(), Some(7));
    }

    #[test]
    fn file_bundle_is_used_without_a_federated_one() {
        let file = bundle("bridge.test", 1);
        assert_eq!(bridge_bundle(&file, None).sequence(), Some(1));
        // Another domain's bundle is never taken for the bridge domain.
        let other = BundleSet::new().with(bundle("cluster-b.test", 9));
        let chosen = bridge_bundle(&file, Some(&other));
        assert_eq!(chosen.sequence(), Some(1));
        assert_eq!(chosen.trust_domain().as_str(), "bridge.test");
    }
}
