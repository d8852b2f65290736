//! The gateway's bridge identity obtained from `fedgate ca serve` (`[bridge.issuer]`): an
//! [`IdentitySource`](crate::identity::IdentitySource) whose SVID is requested and renewed over
//! mTLS instead of read from files.
//!
//! * [`client`]: [`IssuerClient`], which obtains and renews one bridge SVID (fresh key per
//!   request, CSR, checks of what came back, optional `out_dir` persistence).
//! * [`gateway`]: [`IssuedIdentity`], which drives the client with the gateway's current local
//!   SVID and publishes each renewal, with the bridge bundle, as an [`Identity`](crate::identity::Identity).
//! * The `[bridge.issuer]` settings are plain config data ([`crate::config::IssuerSettings`]).
//!
//! Invariant: nothing here knows the `ca serve` server beyond its wire media types
//! ([`crate::ca::serve::server::PKCS10`], [`crate::ca::serve::server::PEM_CHAIN`]).

pub mod client;
pub mod gateway;

pub use crate::config::bridge::{IssuerSettings, DEFAULT_STARTUP_TIMEOUT};
pub use client::{renew_at, IssuerClient, IssuerClientConfig, IssuerClientError};
pub use gateway::{IssuedBridgeIdentity, IssuedIdentity, IssuedIdentityError};
