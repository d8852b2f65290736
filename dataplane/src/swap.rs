//! The one hot-swap mechanism for listener state: a tokio `watch` channel of `Arc<T>`.
//!
//! Invariants: a connection takes one snapshot (`load`, or `borrow().clone()` on a receiver)
//! when it starts and keeps it to the end, so a swap affects only connections accepted after
//! it; a swap never blocks readers nor waits for live connections; the cell is fixed when its
//! listener is built (readers hold it or a receiver of it), only its value changes.

use std::sync::Arc;

use tokio::sync::watch;

/// A swappable `Arc<T>`: readers take a snapshot, the owner replaces it for later readers.
#[derive(Debug)]
pub struct Swap<T> {
    tx: watch::Sender<Arc<T>>,
}

// === impl Swap ===

impl<T> Swap<T> {
    pub fn new(value: Arc<T>) -> Self {
        Self {
            tx: watch::Sender::new(value),
        }
    }

    /// The snapshot in force now.
    pub fn load(&self) -> Arc<T> {
        Arc::clone(&self.tx.borrow())
    }

    /// Replaces the snapshot for every later `load`; holders of older snapshots keep theirs.
    pub fn store(&self, value: Arc<T>) {
        self.tx.send_replace(value);
    }

    /// A receiver that sees every later `store` (e.g. to rebuild derived state on change).
    pub fn subscribe(&self) -> watch::Receiver<Arc<T>> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn swaps_for_new_readers_only_and_notifies_subscribers() {
        let cell = Swap::new(Arc::new(1));
        let mut rx = cell.subscribe();
        let old = cell.load();
        cell.store(Arc::new(2));
        assert_eq!(*old, 1);
        assert_eq!(*cell.load(), 2);
        rx.changed().await.unwrap();
        assert_eq!(**rx.borrow(), 2);
    }
}
