//! The gateway's bridge identity when it comes from `fedgate ca serve` (`[bridge.issuer]`)
//! instead of files: an [`IssuerClient`] obtains and renews the bridge SVID, and this module
//! publishes it, together with the bridge bundle, as the same `watch::Receiver<Arc<Identity>>`
//! that the file-based bridge identity provides, so the bridge listeners rebuild their rustls
//! configs on every renewal exactly as they do on a file change.
//!
//! Invariants:
//! * A published identity's SVID is always the issuer client's latest SVID (for exactly the
//!   configured bridge ID, verified against the bridge bundle) and its bundle the last bridge
//!   bundle file that parsed for the bridge trust domain.
//! * The client authenticates with the gateway's current local SVID (it follows `[identity]`
//!   reloads) and verifies the endpoint with the bridge bundle in force: the federated one when
//!   federation holds the bridge trust domain, else the file.
//! * Startup waits for a first SVID (a saved one from `out_dir`, or a fresh one) at most
//!   `startup_timeout`; without one the gateway does not start its bridge listeners.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use fedgate_federation::{Bundle, BundleError, BundleSet, SpiffeId, TrustDomain, X509Svid};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use fedgate_federation::watch::{FileWatch, WatchError};

use super::client::{IssuerClient, IssuerClientConfig, IssuerClientError};
use crate::config::bridge::IssuerSettings;
use crate::identity::{Identity, IdentitySource, SourceTask};
use fedgate_federation::error_chain;

/// An issued bridge identity started at gateway startup, and the receiver of its identity.
pub type IssuedBridgeIdentity = (IssuedIdentity, watch::Receiver<Arc<Identity>>);

/// Keeps the issued bridge identity current; consume it with [`run`](Self::run).
pub struct IssuedIdentity {
    /// Taken and run by [`run`](Self::run).
    client: Option<IssuerClient>,
    /// The client's SVIDs; each change is republished as an `Identity`.
    svids: watch::Receiver<Option<Arc<X509Svid>>>,
    /// The bridge bundle file (its last version seen, loaded or refused) and the bundle in force.
    bundle_file: FileWatch<Bundle, IssuedIdentityError>,
    bundle: Bundle,
    /// The gateway's local identity; its SVID is forwarded to the client.
    local: watch::Receiver<Arc<Identity>>,
    local_tx: watch::Sender<Arc<X509Svid>>,
    /// Federation snapshots (a `[[federation.peers]]` entry may keep the bridge bundle fresh).
    federated: Option<watch::Receiver<BundleSet>>,
    /// The bridge bundle the client verifies the endpoint and issued SVIDs with.
    bundle_tx: watch::Sender<BundleSet>,
    /// The bridge identity consumed by the bridge runtime.
    tx: watch::Sender<Arc<Identity>>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IssuedIdentityError {
    #[error("cannot read the bridge bundle {path}; check [bridge] bundle")]
    ReadBundle {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot load the bridge bundle {path} for {trust_domain}; check [bridge] bundle")]
    Bundle {
        path: PathBuf,
        trust_domain: TrustDomain,
        #[source]
        source: Box<BundleError>,
    },
    #[error(
        "no bridge SVID from {url} within {}; check [bridge.issuer] and that the CA's policy \
         maps this gateway's local ID to {id}",
        humantime::format_duration(*within)
    )]
    Startup {
        url: String,
        id: SpiffeId,
        within: Duration,
        #[source]
        source: Box<IssuerClientError>,
    },
}

// === impl IssuedIdentity ===

impl IssuedIdentity {
    /// Loads the bridge bundle, obtains the first bridge SVID (bounded by
    /// `settings.startup_timeout`) and returns the task with the bridge identity's receiver.
    pub async fn start(
        settings: &IssuerSettings,
        bridge_td: &TrustDomain,
        bundle_path: PathBuf,
        local: watch::Receiver<Arc<Identity>>,
        federated: Option<watch::Receiver<BundleSet>>,
    ) -> Result<(Self, watch::Receiver<Arc<Identity>>), IssuedIdentityError> {
        let (td, path) = (bridge_td.clone(), bundle_path.clone());
        let mut bundle_file = FileWatch::new([bundle_path], move |contents: &[Vec<u8>]| {
            parse(
                &td,
                &path,
                contents.first().map(Vec::as_slice).unwrap_or_default(),
            )
        });
        let bundle = bundle_file.load().map_err(from_watch)?;
        let (local_tx, local_rx) = watch::channel(Arc::new(local.borrow().svid.clone()));
        let federated_now = federated.as_ref().map(|rx| rx.borrow().clone());
        let (bundle_tx, bundle_rx) = watch::channel(verifying_set(&bundle, federated_now.as_ref()));
        let mut client = IssuerClient::new(IssuerClientConfig {
            url: settings.url.clone(),
            ca_endpoint_id: settings.endpoint_id.clone(),
            bridge_bundle: bundle_rx,
            local_svid: local_rx,
            requested_id: settings.id.clone(),
            ttl: settings.ttl,
            out_dir: settings.out_dir.clone(),
        });
        let svid = client
            .ensure_initial(settings.startup_timeout)
            .await
            .map_err(|source| IssuedIdentityError::Startup {
                url: settings.url.to_string(),
                id: settings.id.clone(),
                within: settings.startup_timeout,
                source: Box::new(source),
            })?;
        let (tx, rx) = watch::channel(Arc::new(Identity::new((*svid).clone(), bundle.clone())));
        let svids = client.subscribe();
        Ok((
            Self {
                client: Some(client),
                svids,
                bundle_file,
                bundle,
                local,
                local_tx,
                federated,
                bundle_tx,
                tx,
            },
            rx,
        ))
    }

    /// Renews the SVID (see [`IssuerClient::run`]), follows the local SVID, the federated
    /// bundles and the bridge bundle file (polled every `poll`), and republishes the bridge
    /// identity on every change, until `shutdown`.
    pub async fn run(mut self, poll: Duration, shutdown: CancellationToken) {
        let renewing = self
            .client
            .take()
            .map(|client| tokio::spawn(client.run(shutdown.clone())));
        let mut local_open = true;
        let mut federated_open = self.federated.is_some();
        loop {
            let federated_change = async {
                match self.federated.as_mut() {
                    Some(rx) if federated_open => rx.changed().await.is_ok(),
                    _ => std::future::pending().await,
                }
            };
            let local_change = async {
                if local_open {
                    self.local.changed().await.is_ok()
                } else {
                    std::future::pending().await
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => break,
                r = self.svids.changed() => {
                    if r.is_err() {
                        break; // The client stopped (shutdown).
                    }
                    self.publish();
                }
                open = local_change => {
                    local_open = open;
                    if open {
                        let svid = Arc::new(self.local.borrow().svid.clone());
                        self.local_tx.send_replace(svid);
                    }
                }
                open = federated_change => {
                    federated_open = open;
                    if open {
                        self.refresh_verifying_set();
                    }
                }
                () = tokio::time::sleep(poll) => {
                    if self.poll_bundle() {
                        self.refresh_verifying_set();
                        self.publish();
                    }
                }
            }
        }
        if let Some(task) = renewing {
            let _ = task.await;
        }
    }

    /// Publishes the current SVID with the bundle in force.
    fn publish(&self) {
        let Some(svid) = self.svids.borrow().clone() else {
            return;
        };
        tracing::info!(id = %svid.id(), "bridge identity updated from the issuing endpoint");
        self.tx.send_replace(Arc::new(Identity::new(
            (*svid).clone(),
            self.bundle.clone(),
        )));
    }

    fn refresh_verifying_set(&self) {
        let federated = self.federated.as_ref().map(|rx| rx.borrow().clone());
        self.bundle_tx
            .send_replace(verifying_set(&self.bundle, federated.as_ref()));
    }

    /// Re-reads the bundle file; returns whether a new bundle is in force.
    fn poll_bundle(&mut self) -> bool {
        match self.bundle_file.poll_once() {
            None => false,
            Some(Ok(bundle)) => {
                self.bundle = bundle;
                true
            }
            Some(Err(WatchError::Read { path, source })) => {
                tracing::warn!(path = %path.display(), error = %source, "cannot read the bridge bundle; keeping the current one");
                false
            }
            Some(Err(WatchError::Parse(e))) => {
                tracing::warn!(error = %error_chain(&e), "the bridge bundle changed but is invalid; keeping the current one");
                false
            }
        }
    }
}

impl IdentitySource for IssuedIdentity {
    fn subscribe(&self) -> watch::Receiver<Arc<Identity>> {
        self.tx.subscribe()
    }

    fn run(self: Box<Self>, poll: Duration, shutdown: CancellationToken) -> SourceTask {
        Box::pin((*self).run(poll, shutdown))
    }
}

fn from_watch(e: WatchError<IssuedIdentityError>) -> IssuedIdentityError {
    match e {
        WatchError::Read { path, source } => IssuedIdentityError::ReadBundle { path, source },
        WatchError::Parse(e) => e,
    }
}

/// The bundles the client verifies the endpoint with: the bridge trust domain's only, the
/// federated one when federation holds it, else the file's.
fn verifying_set(file: &Bundle, federated: Option<&BundleSet>) -> BundleSet {
    let bundle = federated
        .and_then(|set| set.get(file.trust_domain()))
        .map_or_else(|| file.clone(), |b| (**b).clone());
    BundleSet::new().with(bundle)
}

fn parse(
    td: &TrustDomain,
    path: &std::path::Path,
    content: &[u8],
) -> Result<Bundle, IssuedIdentityError> {
    let (bundle, warnings) =
        Bundle::parse(td, content).map_err(|source| IssuedIdentityError::Bundle {
            path: path.to_path_buf(),
            trust_domain: td.clone(),
            source: Box::new(source),
        })?;
    for w in warnings {
        tracing::warn!(path = %path.display(), warning = %w, "bridge bundle entry ignored");
    }
    Ok(bundle)
}
