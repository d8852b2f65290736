//! The agent: a [`Minter`] publishing snapshots and the [`server`](super::server) serving
//! them on a Unix socket, started together and stopped by one shutdown token.
//!
//! Invariant: once [`Agent::start`] returns, the socket is bound and the first snapshot (every
//! entry's SVID) is published, so a client connecting at once is served; `start` fails, with
//! nothing left behind, if either cannot be done.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UnixListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::mint::{MintConfig, MintError, Minter};
use super::server::{self, BindError, WorkloadApi};
use super::Snapshot;
use crate::config::entries::Entries;

/// What an agent needs (built by `fedgate agent` from its config file).
#[derive(Clone, Debug)]
pub struct AgentSettings {
    pub socket: PathBuf,
    pub mint: MintConfig,
    pub entries: Arc<Entries>,
    /// How often the CA directory and the federated bundle map are checked for changes.
    pub poll_interval: Duration,
}

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    #[error(transparent)]
    Mint(#[from] MintError),
    #[error(transparent)]
    Bind(#[from] BindError),
}

/// A started agent: minted, bound, not yet serving.
pub struct Agent {
    settings: AgentSettings,
    minter: Minter,
    snapshots: watch::Receiver<Arc<Snapshot>>,
    listener: UnixListener,
}

// === impl Agent ===

impl Agent {
    /// Mints the first snapshot, then binds the socket. Must run inside a tokio runtime.
    pub fn start(settings: AgentSettings) -> Result<Agent, AgentError> {
        let (minter, snapshots) = Minter::start(settings.mint.clone(), settings.entries.clone())?;
        let listener = server::bind(&settings.socket)?;
        Ok(Agent {
            settings,
            minter,
            snapshots,
            listener,
        })
    }

    pub fn socket(&self) -> &Path {
        &self.settings.socket
    }

    /// A receiver of the snapshots the agent serves.
    pub fn snapshots(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.snapshots.clone()
    }

    /// Serves until `shutdown`; then ends every stream, waits for connections to close and
    /// removes the socket.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), tonic::transport::Error> {
        // A child token: an early server error stops the minter without touching the caller's.
        let stop = shutdown.child_token();
        let minter = tokio::spawn(self.minter.run(self.settings.poll_interval, stop.clone()));
        let api = WorkloadApi::new(self.settings.entries.clone(), self.snapshots, stop.clone());
        let result = server::serve(self.listener, &self.settings.socket, api, stop.clone()).await;
        stop.cancel();
        if let Err(e) = minter.await {
            tracing::error!(error = %e, "the SVID minter task failed");
        }
        result
    }
}
