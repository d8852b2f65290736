//! Where fedgate's own identities come from: one [`Identity`] type (an X509-SVID with its
//! key, the bundle of its own trust domain and, for workloads, the bundles of federated trust
//! domains) and the sources that keep one current.
//!
//! * [`files`]: SVID, key and bundle files (`[identity]`, `[bridge] svid`/`key`, the sidecar's
//!   identity files), polled with `fedgate_federation::watch::FileWatch`.
//! * [`issuer`]: the gateway's bridge SVID, obtained and renewed from `fedgate ca serve`.
//!
//! Invariants: a published identity's SVID is in the trust domain its source was configured
//! for, and its bundles hold at most one bundle per trust domain; a source never withdraws a
//! published identity (a failed reload or renewal keeps the previous one).

pub mod files;
pub mod issuer;

use fedgate_federation::{Bundle, X509Svid};

/// A loaded SVID and local bundle.
#[derive(Debug)]
pub struct Identity {
    pub svid: X509Svid,
    pub bundle: Bundle,
}
