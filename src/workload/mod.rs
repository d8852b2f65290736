//! The SPIFFE Workload API (SPIFFE_Workload_API.md, `proto/workload.proto`), served and
//! consumed.
//!
//! Served (`fedgate agent`, docs/workload-api.md):
//! * [`attest`]: the Unix-socket caller's kernel credentials as selectors (`unix:uid:…`,
//!   `unix:gid:…`, `unix:path:…`);
//! * [`entries`]: registration entries, selectors → SPIFFE ID (pure logic);
//! * [`mint`]: keeps a [`Snapshot`] current: one X509-SVID per entry's SPIFFE ID, minted from a
//!   CA directory and re-minted at half its lifetime or when the CA changes, plus the local
//!   bundle and the federated bundle map the gateway distributes;
//! * [`server`]: the tonic service on a Unix socket, streaming from the snapshot's `watch`;
//! * [`authority`]: an HTTP/2 filter in front of it, so that clients sending the socket path
//!   as `:authority` (gRPC C-core: py-spiffe; grpc-java) are served too;
//! * [`agent`]: the minter and the server together, as `fedgate agent` runs them.
//!
//! Consumed: `crate::identity::workload_api`, an identity source fed by a Workload API's
//! `FetchX509SVID` stream (a SPIRE agent's or fedgate's own); it uses [`proto`] and [`convert`].
//!
//! [`convert`] translates between the protobuf messages ([`proto`]) and fedgate's types in
//! both directions; it is pure and unit-tested.
//!
//! Invariants:
//! * every call without the `workload.spiffe.io: true` metadata is refused with
//!   `InvalidArgument` before anything else happens; a caller that matches no entry gets
//!   `PermissionDenied` from every method (SPIRE's answers, SPIFFE_Workload_Endpoint.md §6);
//! * bundles are served per trust domain, never merged: `federated_bundles` of
//!   `FetchX509SVID` never holds the local trust domain, and every bundle map is keyed by
//!   `spiffe://<trust domain>`;
//! * a stream sends the full current state at once, and again only when what *this caller*
//!   is served changed (a new SVID or a changed bundle); a stream ends at shutdown;
//! * private keys are PKCS#8 DER on the wire, and never in a log line or a `Debug` output.

pub mod agent;
pub mod attest;
pub mod authority;
pub mod convert;
pub mod entries;
pub mod mint;
pub mod proto;
pub mod server;

use std::collections::BTreeMap;
use std::sync::Arc;

use fedgate_federation::{Bundle, BundleSet, SpiffeId, TrustDomain, X509Svid};

/// The gRPC metadata key every Workload API call must carry, with the value `"true"`.
pub const SECURITY_HEADER: &str = "workload.spiffe.io";

/// Everything the server can hand out at one moment: an immutable snapshot, replaced whole
/// on every change and shared with every stream through a `tokio::sync::watch` channel.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// The agent's own trust domain; `bundles` always holds its bundle.
    pub trust_domain: TrustDomain,
    /// The local bundle and the federated ones: one per trust domain.
    pub bundles: BundleSet,
    /// The current SVID of each SPIFFE ID that an entry grants (keys are PKCS#8).
    pub svids: BTreeMap<SpiffeId, X509Svid>,
}

// === impl Snapshot ===

impl Snapshot {
    /// The local trust domain's bundle.
    pub fn local_bundle(&self) -> Option<&Arc<Bundle>> {
        self.bundles.get(&self.trust_domain)
    }
}
