//! SPIFFE federation bundle endpoints (SPIFFE_Federation.md §5): the [`server`] that serves
//! our bundle and the [`client`] that fetches a peer's.
//!
//! Invariants:
//! * A [`Relationship`] is configured explicitly: trust domain, URL and profile (plus, for
//!   `https_spiffe`, the endpoint SPIFFE ID and a bootstrap bundle). None is inferred from
//!   another (§7.2).
//! * Servers never request client certificates (§5.2.1.3, §5.2.2.3).

pub mod client;
pub mod server;

use std::fmt;

use rustls_pki_types::CertificateDer;

use crate::bundle::Bundle;
use crate::spiffe_id::{SpiffeId, TrustDomain};

pub use client::{fetch, FetchError, FetchOptions, FetchOutcome};
pub use server::{
    BundleEndpoint, BundleFileSource, EndpointError, EndpointMetrics, SequenceRefusal, ServerTls,
};

/// One federation relationship: whose bundle, where, and how to authenticate the endpoint.
#[derive(Clone, Debug)]
pub struct Relationship {
    /// The trust domain the fetched bundle is bound to (never taken from the URL).
    pub trust_domain: TrustDomain,
    /// The configured endpoint URL; fetched afresh every time (redirects are never stored).
    pub url: reqwest::Url,
    pub profile: Profile,
}

/// How the endpoint is authenticated (SPIFFE_Federation.md §5.2).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Profile {
    /// Web PKI: the server certificate must chain to `roots` and match the URL host.
    HttpsWeb { roots: WebRoots },
    /// SPIFFE authentication: the server must present an X509-SVID for exactly
    /// `endpoint_id`, validated with the bundle of `endpoint_id`'s trust domain.
    HttpsSpiffe {
        endpoint_id: SpiffeId,
        bootstrap: Bundle,
    },
}

/// Trust anchors for the `https_web` profile.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum WebRoots {
    /// The operating system's root store (rustls-native-certs).
    System,
    /// Only these CA certificates (for private Web PKI, `--ca FILE`).
    Custom(Vec<CertificateDer<'static>>),
}

// === impl Profile ===

impl Profile {
    /// The profile's name as the spec spells it: `https_web` or `https_spiffe`.
    pub fn name(&self) -> &'static str {
        match self {
            Profile::HttpsWeb { .. } => "https_web",
            Profile::HttpsSpiffe { .. } => "https_spiffe",
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
