//! rustls configuration from SVIDs, bundle snapshots and authorizers.

pub mod authorize;
pub mod verifier;

pub use authorize::Authorizer;
pub use verifier::{SpiffeClientVerifier, SpiffeServerVerifier};

use std::sync::Arc;

use rustls::crypto::CryptoProvider;

/// The one crypto provider fedgate uses (ring).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}
