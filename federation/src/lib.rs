//! SPIFFE identity core and bundle federation for fedgate.
//!
//! Layers, inside out:
//! * [`spiffe_id`]: `TrustDomain` and `SpiffeId`, parsed strictly by SPIFFE-ID.md.
//! * [`bundle`]: the SPIFFE bundle (JWKS) document and `BundleSet`, an immutable map
//!   from trust domain to bundle that never merges domains.
//! * [`svid`]: loading X509-SVIDs from PEM, and validating them against the bundle of
//!   the leaf's own trust domain only.
//! * [`jwt`]: JWT-SVID validation against the bundle of `sub`'s trust domain, and minting.
//! * [`tls`]: rustls verifiers built on that validation, plus SPIFFE-ID authorizers.
//! * [`endpoint`], [`refresh`], [`store`], [`distribute`]: federation I/O (tokio).
//! * [`watch`]: `FileWatch`, the polling file-set reloader every watcher in fedgate uses.
//! * [`https`]: the serving path of the bundle endpoint and `ca serve` (accept under a limit,
//!   TLS with a deadline, HTTP/1.1 through an axum router, drain).
//!
//! Nothing here knows about the data plane's handlers; what is shared with it is the accept
//! loop and TLS deadline of the data-plane toolkit (`fedgate_dataplane::serve`, `accept`,
//! `tls`, so every server admits, backs off and times out alike) and the retry schedule
//! (`fedgate_dataplane::backoff`).

pub mod bundle;
pub mod crypto;
pub mod distribute;
pub mod endpoint;
pub mod error;
pub mod fs;
pub mod https;
pub mod jwt;
pub mod metrics;
pub mod refresh;
pub mod spiffe_id;
pub mod store;
pub mod svid;
pub mod tls;
pub mod watch;

pub use bundle::{Bundle, BundleError, BundleSet, BundleSource, JwtAuthority};
pub use error::error_chain;
pub use spiffe_id::{SpiffeId, SpiffeIdError, TrustDomain};
pub use svid::{verify::VerifiedSvid, verify::VerifyError, SvidError, X509Svid};
