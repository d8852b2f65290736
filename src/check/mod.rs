//! `fedgate check`: checks a gateway config against the live world, like
//! `linkerd multicluster check`. One [`CheckResult`] per check, in this order:
//!
//! 1. the config file (a config error is the only result: nothing else runs);
//! 2. the local SVID: its chain verifies against the local bundle, and its expiry (warn in the
//!    last third of its lifetime, fail once expired), from `[identity]` files or one answer of
//!    the Workload API;
//! 3. each federation peer: a pinned fetch of its bundle now (reachable, the endpoint presents
//!    `endpoint_id`), its sequence against the last-known-good store, and the time until trust
//!    is lost (warn under 7 days, fail once expired);
//! 4. each route's upstreams accept a TCP connection;
//! 5. each bridge-egress route: an mTLS handshake with the bridge SVID to its upstreams, which
//!    must present exactly the route's `peer_id`;
//! 6. the running gateway's `/readyz` at `[admin] listen` (not running is a warning).
//!
//! Invariants: the pure part ([`report`]: types, renderings, exit status, expiry
//! classification) does no I/O; the probes ([`probe`]) bound every network step with
//! [`Timeouts`] and never write anything.

pub mod probe;
pub mod report;

use std::path::Path;

pub use probe::Timeouts;
pub use report::{exit_code, render_json, render_text, CheckResult, Status};

/// Runs every check against the config at `path`.
pub async fn run(path: &Path, t: Timeouts) -> Vec<CheckResult> {
    let (config, first) = match probe::config(path) {
        Ok(c) => c,
        Err(failed) => return vec![failed],
    };
    let mut out = vec![first];
    out.extend(probe::local_svid(&config, t).await);
    out.extend(probe::peers(&config, t).await);
    out.extend(probe::upstreams(&config, t).await);
    out.extend(probe::bridges(&config, t).await);
    out.push(probe::admin(&config, t).await);
    out
}
