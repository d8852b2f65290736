//! rustls configurations of the sidecar, built once per identity change.
//!
//! Chain validation is core's (`SpiffeServerVerifier` / `SpiffeClientVerifier` over the
//! `BundleSet`, which picks the bundle of the peer's *own* trust domain and never merges
//! domains). Config allow lists are [`AllowList`]s, which core's `Authorizer` does not model, so
//! the verifiers here wrap core's (with `Authorizer::any()`) and check the `AllowList` on the
//! validated leaf *during the handshake*: a peer that is not allowed gets a TLS alert and never
//! exchanges an application byte.
//!
//! Invariants:
//! * every config is built with `fedgate_federation::tls::provider()`;
//! * TLS session resumption is off in both directions, so every connection is verified against
//!   the bundles and allow lists in force when it is opened;
//! * a [`TlsSnapshot`] is immutable; a reload builds a new one.

use std::sync::Arc;

use fedgate_federation::svid::verify::spiffe_id_of;
use fedgate_federation::tls::{
    self as fedtls, Authorizer, SpiffeClientVerifier, SpiffeServerVerifier,
};
use fedgate_federation::{SpiffeId, TrustDomain};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::NoServerSessionStorage;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, ServerConfig,
    SignatureScheme,
};

use super::config::Config;
use super::identity::Identity;
use crate::authz::AllowList;

/// The TLS configs of every listener, built from one identity. Indexes follow the config's
/// `outbound` and `inbound` lists.
#[derive(Debug)]
pub struct TlsSnapshot {
    /// 0 for the identity loaded at start, +1 per successful reload.
    pub generation: u64,
    /// The workload's own SPIFFE ID.
    pub id: SpiffeId,
    /// The trust domains whose bundles these configs trust (in the bundle set's order).
    pub trust_domains: Vec<TrustDomain>,
    pub outbound: Vec<Arc<ClientConfig>>,
    pub inbound: Vec<Arc<ServerConfig>>,
}

/// Client-side verifier: core's chain validation, then the listener's allow list.
#[derive(Debug)]
pub struct AllowedServerVerifier {
    inner: Arc<dyn ServerCertVerifier>,
    allow: AllowList,
}

/// Server-side verifier: core's chain validation (client auth mandatory), then the allow list.
#[derive(Debug)]
pub struct AllowedClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    allow: AllowList,
}

// === impl TlsSnapshot ===

impl TlsSnapshot {
    /// Builds the client config of every outbound and the server config of every inbound.
    pub fn build(
        identity: &Identity,
        config: &Config,
        generation: u64,
    ) -> Result<Self, rustls::Error> {
        let outbound = config
            .outbound
            .iter()
            .map(|o| {
                let inner = Arc::new(SpiffeServerVerifier::new(
                    identity.bundles.clone(),
                    Authorizer::any(),
                ));
                let verifier = Arc::new(AllowedServerVerifier {
                    inner,
                    allow: o.allow.clone(),
                });
                let mut cfg = fedtls::client_config(Some(&identity.svid), verifier)?;
                cfg.resumption = Resumption::disabled();
                Ok(Arc::new(cfg))
            })
            .collect::<Result<Vec<_>, rustls::Error>>()?;
        let inbound = config
            .inbound
            .iter()
            .map(|i| {
                let inner = Arc::new(SpiffeClientVerifier::new(
                    identity.bundles.clone(),
                    Authorizer::any(),
                ));
                // Relays pass the handshake too; what they relay is checked against `allow`
                // once their PROXY header has been read.
                let mut patterns = i.allow.patterns().to_vec();
                patterns.extend(i.trusted_relays.patterns().iter().cloned());
                let verifier = Arc::new(AllowedClientVerifier {
                    inner,
                    allow: AllowList::new(patterns),
                });
                let mut cfg = fedtls::server_config(&identity.svid, verifier)?;
                cfg.session_storage = Arc::new(NoServerSessionStorage {});
                cfg.send_tls13_tickets = 0;
                Ok(Arc::new(cfg))
            })
            .collect::<Result<Vec<_>, rustls::Error>>()?;
        Ok(Self {
            generation,
            id: identity.svid.id().clone(),
            trust_domains: identity
                .bundles
                .iter()
                .map(|b| b.trust_domain().clone())
                .collect(),
            outbound,
            inbound,
        })
    }
}

/// Whether a handshake error is the allow-list refusal of [`AllowedServerVerifier`] or
/// [`AllowedClientVerifier`] (as opposed to a chain that does not validate).
pub fn is_not_allowed(err: &rustls::Error) -> bool {
    matches!(
        err,
        rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure)
    )
}

/// The rustls error inside an I/O error returned by a tokio-rustls handshake, if any.
pub fn rustls_error(err: &std::io::Error) -> Option<&rustls::Error> {
    err.get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
}

fn check_allowed(
    allow: &AllowList,
    end_entity: &CertificateDer<'_>,
    side: &'static str,
) -> Result<(), rustls::Error> {
    let id = spiffe_id_of(end_entity)
        .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
    if allow.allows(&id) {
        Ok(())
    } else {
        tracing::debug!(peer_id = %id, side, "peer SPIFFE ID is not in the allow list");
        Err(rustls::Error::InvalidCertificate(
            CertificateError::ApplicationVerificationFailure,
        ))
    }
}

// === impl AllowedServerVerifier ===

impl ServerCertVerifier for AllowedServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        check_allowed(&self.allow, end_entity, "server")?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

// === impl AllowedClientVerifier ===

impl ClientCertVerifier for AllowedClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        check_allowed(&self.allow, end_entity, "client")?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
