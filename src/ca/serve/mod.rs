//! The bridge CA's issuing endpoint (`fedgate ca serve`): the server side of bridge SVID
//! issuance. The gateway's renewal client is [`crate::identity::issuer`]; the CLI glue is
//! `crate::cmd::ca`.
//!
//! ```text
//! gateway ──mTLS (local SVID)──▶ fedgate ca serve ──▶ policy: local ID → bridge ID ──▶ CA signs
//!    ▲                                                                                 │
//!    └──────────────── bridge SVID (PEM chain), renewed at 2/3 of its lifetime ◀───────┘
//! ```
//!
//! * [`config`]: `ca-serve.toml` → [`ServeConfig`].
//! * [`policy`]: the exact local → bridge mapping and the pure CSR/TTL checks ([`Refusal`]).
//! * [`sources`]: the CA directory, member bundles and endpoint SVID, polled and published.
//! * [`server`]: the HTTPS endpoint ([`IssuerServer`]) and its metrics; [`server::PKCS10`]
//!   and [`server::PEM_CHAIN`] are the wire media types the renewal client speaks.
//!
//! Invariants: a bridge SVID is issued only to a caller whose local SVID verified against its
//! own member trust domain's bundle, only for the bridge ID the policy maps that caller to, and
//! only as a leaf; every refusal is logged and counted; no key is ever logged.

pub mod config;
pub mod policy;
pub mod rate_limit;
pub mod server;
pub mod sources;

use std::net::SocketAddr;

use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::{ConfigError, Member, ServeConfig};
pub use policy::{
    inspect_csr, CsrInfo, Grant, IdMismatch, Policy, PolicyError, Refusal, SharedBridgeId,
};
pub use server::{IssuerMetrics, IssuerServer};
pub use sources::{SourceError, Sources};

/// Everything `fedgate ca serve` runs, built and bound but not yet running.
pub struct Issuer {
    server: IssuerServer,
    sources: Sources,
    listener: TcpListener,
    admin: Option<(TcpListener, crate::admin::Admin)>,
    metrics: IssuerMetrics,
}

/// Why the issuing endpoint cannot start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IssuerError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("the issuing policy does not fit the CA's trust domain")]
    Policy(#[from] PolicyError),
    #[error("cannot listen on {addr} ({key})")]
    Bind {
        key: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

// === impl Issuer ===

impl Issuer {
    /// Loads the CA, member bundles and endpoint SVID, builds the policy and binds the
    /// listeners (so that [`Issuer::local_addr`] is known before [`Issuer::run`]).
    pub async fn build(config: &ServeConfig) -> Result<Self, IssuerError> {
        let (sources, ca, tls) = Sources::load(config)?;
        let bridge_td = ca.borrow().trust_domain().clone();
        let policy = Policy::new(
            bridge_td,
            config.policy.iter().cloned(),
            config.default_ttl,
            config.max_ttl,
        )?;
        let mut registry = Registry::default();
        let metrics = IssuerMetrics::register(&mut registry);
        let server = IssuerServer::new(policy, ca, tls, metrics.clone())
            .with_handshake_timeout(config.handshake_timeout)
            .with_max_connections(config.max_connections)
            .with_rate_limit(config.rate_limit);
        let bind = |key, addr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| IssuerError::Bind { key, addr, source })
        };
        let listener = bind("listen", config.listen).await?;
        let admin = match config.admin_listen {
            Some(addr) => Some((
                bind("admin_listen", addr).await?,
                crate::admin::Admin::new(registry),
            )),
            None => None,
        };
        Ok(Self {
            server,
            sources,
            listener,
            admin,
            metrics,
        })
    }

    /// The bound address of the issuing endpoint.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The bound address of the admin listener, if configured.
    pub fn admin_addr(&self) -> Option<std::io::Result<SocketAddr>> {
        self.admin.as_ref().map(|(l, _)| l.local_addr())
    }

    pub fn metrics(&self) -> &IssuerMetrics {
        &self.metrics
    }

    /// Serves until `shutdown` is cancelled, then drains.
    pub async fn run(self, shutdown: CancellationToken) {
        let tasks = tokio_util::task::TaskTracker::new();
        tasks.spawn(self.sources.run(shutdown.clone()));
        if let Some((listener, admin)) = self.admin {
            let what = "issuer admin listener";
            tasks.spawn(admin.serve_logged(listener, shutdown.clone(), what));
        }
        tasks.close();
        self.server.run(self.listener, shutdown.clone()).await;
        shutdown.cancel();
        tasks.wait().await;
    }
}
