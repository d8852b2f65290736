//! The one rustls crypto provider fedgate uses (ring), shared by certificate checks and
//! every TLS config. Invariant: no other provider is ever installed or built.

use std::sync::{Arc, OnceLock};

use rustls::crypto::CryptoProvider;

/// The process-wide provider (ring), built once.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}
