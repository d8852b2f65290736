//! rustls configuration from SVIDs, bundle snapshots and authorizers.
//!
//! Invariants: every config is built with the one ring [`provider`] passed explicitly (never a
//! process-default provider), with rustls's safe default protocol versions; peer identities
//! come only from verifiers in [`verifier`].

pub mod authorize;
pub mod peek;
pub mod verifier;

pub use authorize::{AuthorizeError, Authorizer, PatternError};
pub use verifier::{verify_error_of, SpiffeClientVerifier, SpiffeServerVerifier};

use std::sync::Arc;

use rustls::client::danger::ServerCertVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::{ClientConfig, CommonState, ServerConfig};

use crate::spiffe_id::SpiffeId;
use crate::svid::verify::spiffe_id_of;
use crate::svid::X509Svid;

pub use crate::crypto::provider;

/// A server config presenting `svid` and authenticating clients with `client_verifier`.
pub fn server_config(
    svid: &X509Svid,
    client_verifier: Arc<dyn ClientCertVerifier>,
) -> Result<ServerConfig, rustls::Error> {
    ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(client_verifier)
        .with_single_cert(svid.chain().to_vec(), svid.key())
}

/// A server config presenting `svid` without asking clients for certificates.
pub fn server_config_no_client_auth(svid: &X509Svid) -> Result<ServerConfig, rustls::Error> {
    ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(svid.chain().to_vec(), svid.key())
}

/// A client config verifying servers with `verifier`, presenting `svid` when given.
pub fn client_config(
    svid: Option<&X509Svid>,
    verifier: Arc<dyn ServerCertVerifier>,
) -> Result<ClientConfig, rustls::Error> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    match svid {
        Some(svid) => builder.with_client_auth_cert(svid.chain().to_vec(), svid.key()),
        None => Ok(builder.with_no_client_auth()),
    }
}

/// The SPIFFE ID of the peer's leaf certificate, once the handshake has verified it.
pub fn peer_id(conn: &CommonState) -> Option<SpiffeId> {
    let leaf = conn.peer_certificates()?.first()?;
    spiffe_id_of(leaf).ok()
}
