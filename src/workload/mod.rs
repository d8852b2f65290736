//! The SPIFFE Workload API (SPIFFE_Workload_API.md, `proto/workload.proto`), served and
//! consumed.
//!
//! Served (`fedgate agent`, docs/workload-api.md):
//! * [`attest`]: the Unix-socket caller's kernel credentials as selectors (`unix:uid:…`,
//!   `unix:gid:…`, `unix:path:…`);
//! * [`entries`]: registration entries, selectors → SPIFFE ID (pure logic);
//! * [`mint`]: keeps a [`Snapshot`] current: one X509-SVID per entry's SPIFFE ID, minted from a
//!   CA directory and re-minted at half its lifetime or when the CA changes, the CA's JWT-SVID
//!   signer (JWT-SVIDs are minted per `FetchJWTSVID` call, for the audience asked for), plus
//!   the local bundle and the federated bundle map the gateway distributes;
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
//! * private keys are PKCS#8 DER on the wire, and never in a log line or a `Debug` output;
//! * a JWT-SVID is minted only for a SPIFFE ID the caller is entitled to, lives
//!   [`Snapshot::jwt_ttl`] (at most [`MAX_JWT_TTL`]), and is validated (`ValidateJWTSVID`) only
//!   against the bundle of its `sub`'s trust domain: keys are never tried across trust domains.

pub mod agent;
pub mod attest;
pub mod authority;
pub mod convert;
pub mod mint;
pub mod proto;
pub mod server;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use fedgate_federation::{Bundle, BundleSet, SpiffeId, TrustDomain, X509Svid};

use crate::ca::{CaError, JwtSigner};

/// The gRPC metadata key every Workload API call must carry, with the value `"true"`.
pub const SECURITY_HEADER: &str = "workload.spiffe.io";

/// The longest lifetime of a JWT-SVID minted by `FetchJWTSVID`: SPIRE's default JWT-SVID TTL.
/// A bearer token cannot be revoked and is re-fetched per use, so it lives
/// `min(svid_ttl, MAX_JWT_TTL)`, not as long as an X509-SVID.
pub const MAX_JWT_TTL: Duration = Duration::from_secs(5 * 60);

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
    /// The CA's JWT-SVID signer, loaded with the CA; or why there is none (a CA directory
    /// created before JWT-SVIDs: [`CaError::NoJwtKey`], whose message says to run `ca rotate`).
    pub jwt_signer: Result<JwtSigner, Arc<CaError>>,
    /// Lifetime of the JWT-SVIDs minted from this snapshot (at most [`MAX_JWT_TTL`]).
    pub jwt_ttl: Duration,
}

// === impl Snapshot ===

impl Snapshot {
    /// The local trust domain's bundle.
    pub fn local_bundle(&self) -> Option<&Arc<Bundle>> {
        self.bundles.get(&self.trust_domain)
    }
}

/// The lifetime of JWT-SVIDs for an agent whose X509-SVIDs live `svid_ttl`: the shorter of
/// the two and [`MAX_JWT_TTL`].
pub fn jwt_ttl(svid_ttl: Duration) -> Duration {
    svid_ttl.min(MAX_JWT_TTL)
}
