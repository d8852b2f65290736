//! rustls configuration from SVIDs, bundle snapshots and authorizers.
//!
//! Invariants: every config is built with the one ring [`provider`] passed explicitly (never a
//! process-default provider), with rustls's safe default protocol versions; peer identities
//! come only from verifiers in [`verifier`].

pub mod authorize;
pub mod peek;
pub mod verifier;

pub use authorize::{AuthorizeError, Authorizer, PatternError};
pub use verifier::{
    is_not_authorized, verify_error_of, SpiffeClientVerifier, SpiffeServerVerifier,
};

use std::sync::Arc;

use rustls::client::danger::ServerCertVerifier;
use rustls::client::Resumption;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::NoServerSessionStorage;
use rustls::{ClientConfig, CommonState, ServerConfig};

use crate::bundle::BundleSet;
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

/// The mTLS server config of a SPIFFE workload or gateway: presents `svid`; a client must
/// validate with the bundle of its *own* trust domain in `bundles` and pass `authorizer`, both
/// during the handshake. Without `resumption` there is no session cache and no TLS 1.3
/// ticket, so every connection is verified against the bundles and rules in force.
pub fn mtls_server_config(
    svid: &X509Svid,
    bundles: BundleSet,
    authorizer: Authorizer,
    resumption: bool,
) -> Result<ServerConfig, rustls::Error> {
    let verifier = SpiffeClientVerifier::new(bundles, authorizer);
    let mut config = server_config(svid, Arc::new(verifier))?;
    if !resumption {
        config.session_storage = Arc::new(NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
    }
    Ok(config)
}

/// The mTLS client config matching [`mtls_server_config`]: presents `svid`; the server must
/// validate with its own trust domain's bundle in `bundles` and pass `authorizer`. Without
/// `resumption` no session is stored.
pub fn mtls_client_config(
    svid: &X509Svid,
    bundles: BundleSet,
    authorizer: Authorizer,
    resumption: bool,
) -> Result<ClientConfig, rustls::Error> {
    let verifier = SpiffeServerVerifier::new(bundles, authorizer);
    let mut config = client_config(Some(svid), Arc::new(verifier))?;
    if !resumption {
        config.resumption = Resumption::disabled();
    }
    Ok(config)
}

/// The SPIFFE ID of the peer's leaf certificate, once the handshake has verified it.
pub fn peer_id(conn: &CommonState) -> Option<SpiffeId> {
    let leaf = conn.peer_certificates()?.first()?;
    spiffe_id_of(leaf).ok()
}
