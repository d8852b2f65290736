//! Process signals and bounded drain.
//!
//! Protocol: SIGTERM or SIGINT cancels the shutdown token once (a second signal is ignored;
//! the drain deadline bounds shutdown instead). For commands that reload ([`install`]: `run`,
//! `sidecar`) SIGHUP sends one reload request, coalesced if a reload is already pending;
//! commands that watch their files instead ([`cancel_on_termination`]: `bundle serve|fetch`,
//! `ca serve`) leave SIGHUP alone. `drain` closes a `TaskTracker` and waits for its tasks up
//! to a deadline, so shutdown time is bounded no matter what connections do.

use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Installs the signal handlers and returns (shutdown token, reload requests).
pub fn install() -> std::io::Result<(CancellationToken, mpsc::Receiver<()>)> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let shutdown = CancellationToken::new();
    let (reload_tx, reload_rx) = mpsc::channel(1);
    let token = shutdown.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = term.recv() => { tracing::info!(signal = "SIGTERM", "shutting down"); token.cancel(); }
                _ = int.recv() => { tracing::info!(signal = "SIGINT", "shutting down"); token.cancel(); }
                _ = hup.recv() => {
                    tracing::info!(signal = "SIGHUP", "reload requested");
                    // Full channel: a reload is already pending and will read the newest file.
                    let _ = reload_tx.try_send(());
                }
            }
        }
    });
    Ok((shutdown, reload_rx))
}

/// Cancels `shutdown` on the first SIGTERM or SIGINT.
pub fn cancel_on_termination(shutdown: CancellationToken) -> std::io::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!(signal = "SIGTERM", "shutting down"),
            _ = int.recv() => tracing::info!(signal = "SIGINT", "shutting down"),
        }
        shutdown.cancel();
    });
    Ok(())
}

/// Closes `tracker` and waits for its tasks for at most `timeout`. Returns `true` if every
/// task finished in time.
pub async fn drain(tracker: &TaskTracker, timeout: Duration) -> bool {
    tracker.close();
    tokio::time::timeout(timeout, tracker.wait()).await.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drain_is_bounded() {
        let tracker = TaskTracker::new();
        let (_keep, never) = tokio::sync::oneshot::channel::<()>();
        tracker.spawn(never);
        assert!(!drain(&tracker, Duration::from_millis(20)).await);
        let done = TaskTracker::new();
        done.spawn(async {});
        assert!(drain(&done, Duration::from_secs(1)).await);
    }
}
