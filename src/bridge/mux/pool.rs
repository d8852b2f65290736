//! The tunnels of each `transport = "mux"` egress route: least-loaded first, a new tunnel only
//! when every usable one is full, refusal beyond `mux_pool_size` tunnels.
//!
//! Each data-plane worker thread has its own pool per route. A tunnel's HTTP/2 connection task
//! runs on the worker that dialed it, so a caller accepted on that worker drives its stream
//! without waking another thread (a shared pool cost a cross-thread wake-up per frame in both
//! directions; docs/benchmarks.md). `mux_pool_size` therefore bounds the tunnels per route and
//! worker.
//!
//! Invariants: a stream slot is reserved under the pool's lock after checking
//! `mux_max_streams`, so a tunnel never carries more streams than that; at most
//! `mux_pool_size` usable tunnels exist per route (one dial at a time per route, so concurrent
//! callers wait for it instead of dialing a burst); closed tunnels, and stale tunnels (draining,
//! expired peer certificate, or dialed with TLS settings older than the newest seen) without
//! streams, are dropped from the pool, which closes them once their last stream ends. The pools
//! outlive state rebuilds ([`MuxPools`] is handed from one `EgressState` to the next). There
//! is one pool per route, peer and thread at most, so the map is bounded by the config times
//! the workers.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::ThreadId;
use std::time::SystemTime;

use fedgate_federation::SpiffeId;

use super::tunnel::{StreamSlot, Tunnel};
use crate::bridge::BridgeReject;

/// The pools of one egress listener, by route name, peer and worker thread.
#[derive(Debug, Default)]
pub struct MuxPools {
    pools: Mutex<HashMap<(String, SpiffeId, ThreadId), Arc<Pool>>>,
}

/// The tunnels of one route.
#[derive(Debug, Default)]
pub struct Pool {
    tunnels: Mutex<Vec<Arc<Tunnel>>>,
    /// Newest TLS settings generation a caller asked with.
    latest: Mutex<u64>,
    /// Held while a tunnel is dialed.
    opening: tokio::sync::Mutex<()>,
}

/// The limits of a route's pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub pool_size: usize,
    pub max_streams: usize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding these locks; recover the data if something did.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

// === impl MuxPools ===

impl MuxPools {
    /// The calling worker thread's pool of route `route` towards `peer` (created empty on
    /// first use).
    pub fn pool(&self, route: &str, peer: &SpiffeId) -> Arc<Pool> {
        let key = (route.to_owned(), peer.clone(), std::thread::current().id());
        let mut pools = lock(&self.pools);
        Arc::clone(pools.entry(key).or_default())
    }
}

// === impl Pool ===

impl Pool {
    /// A stream slot on the least-loaded usable tunnel, dialing one with `open` when all are
    /// full and fewer than `limits.pool_size` are usable.
    pub async fn acquire<F, Fut>(
        &self,
        route: &str,
        generation: u64,
        limits: Limits,
        open: F,
    ) -> Result<StreamSlot, BridgeReject>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Arc<Tunnel>, BridgeReject>>,
    {
        if let Some(slot) = self.pick(generation, limits.max_streams) {
            return Ok(slot);
        }
        let _dialing = self.opening.lock().await;
        // Another caller may have dialed one while this one waited.
        if let Some(slot) = self.pick(generation, limits.max_streams) {
            return Ok(slot);
        }
        let usable = self.usable(generation);
        if usable >= limits.pool_size {
            return Err(BridgeReject::MuxSaturated {
                route: route.to_owned(),
                tunnels: usable,
                max_streams: limits.max_streams,
            });
        }
        let tunnel = open().await?;
        let slot = tunnel.reserve();
        lock(&self.tunnels).push(tunnel);
        Ok(slot)
    }

    /// Reserves a slot on the least-loaded usable tunnel with room, evicting closed and idle
    /// stale tunnels first.
    pub fn pick(&self, generation: u64, max_streams: usize) -> Option<StreamSlot> {
        let latest = {
            let mut latest = lock(&self.latest);
            *latest = (*latest).max(generation);
            *latest
        };
        let now = SystemTime::now();
        let mut tunnels = lock(&self.tunnels);
        // Closed tunnels go; stale ones go once their last stream has ended.
        tunnels.retain(|t| !(t.is_closed() || (t.streams() == 0 && t.is_stale(latest, now))));
        tunnels
            .iter()
            .filter(|t| t.is_usable(generation, now) && t.streams() < max_streams)
            .min_by_key(|t| t.streams())
            .map(Tunnel::reserve)
    }

    /// Usable tunnels for callers at `generation`.
    fn usable(&self, generation: u64) -> usize {
        let now = SystemTime::now();
        lock(&self.tunnels)
            .iter()
            .filter(|t| t.is_usable(generation, now))
            .count()
    }

    /// Tunnels in the pool (usable or still carrying streams).
    pub fn len(&self) -> usize {
        lock(&self.tunnels).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Streams per tunnel, in pool order (for tests and `/status`).
    pub fn loads(&self) -> Vec<usize> {
        lock(&self.tunnels).iter().map(|t| t.streams()).collect()
    }
}
