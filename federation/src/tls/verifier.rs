//! rustls verifiers that validate X509-SVIDs with a `BundleSet` and an `Authorizer`.
//!
//! Invariants: a peer is accepted only if its chain verifies against the bundle of its own
//! trust domain (see [`crate::svid::verify`]) *and* the authorizer allows its SPIFFE ID; DNS
//! names and SNI are never consulted; handshake signatures are checked by the ring provider.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::authorize::Authorizer;
use super::provider;
use crate::bundle::BundleSet;
use crate::svid::verify::{verify_for, Usage, VerifyError};

/// Verifies a TLS server's SVID (used by clients); ignores the server name.
#[derive(Debug)]
pub struct SpiffeServerVerifier {
    inner: Inner,
}

/// Verifies a TLS client's SVID (used by servers); client authentication is mandatory.
#[derive(Debug)]
pub struct SpiffeClientVerifier {
    inner: Inner,
}

/// Shared state and logic of both verifiers.
#[derive(Debug)]
struct Inner {
    bundles: BundleSet,
    authorizer: Authorizer,
    provider: Arc<CryptoProvider>,
}

// === impl SpiffeServerVerifier ===

impl SpiffeServerVerifier {
    pub fn new(bundles: BundleSet, authorizer: Authorizer) -> Self {
        Self {
            inner: Inner::new(bundles, authorizer),
        }
    }
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .check(end_entity, intermediates, now, Usage::Server)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.schemes()
    }
}

// === impl SpiffeClientVerifier ===

impl SpiffeClientVerifier {
    pub fn new(bundles: BundleSet, authorizer: Authorizer) -> Self {
        Self {
            inner: Inner::new(bundles, authorizer),
        }
    }
}

impl ClientCertVerifier for SpiffeClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.inner
            .check(end_entity, intermediates, now, Usage::Client)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.schemes()
    }
}

/// The `VerifyError` carried by a rustls error from these verifiers, if any (for logs).
pub fn verify_error_of(err: &rustls::Error) -> Option<&VerifyError> {
    match err {
        rustls::Error::InvalidCertificate(CertificateError::Other(other)) => {
            other.0.downcast_ref::<VerifyError>()
        }
        _ => None,
    }
}

/// Whether a handshake error is these verifiers' refusal of a valid SVID whose ID the
/// [`Authorizer`] does not allow (as opposed to a chain that does not validate).
pub fn is_not_authorized(err: &rustls::Error) -> bool {
    matches!(
        err,
        rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure)
    )
}

// === impl Inner ===

impl Inner {
    fn new(bundles: BundleSet, authorizer: Authorizer) -> Self {
        Self {
            bundles,
            authorizer,
            provider: provider(),
        }
    }

    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        usage: Usage,
    ) -> Result<(), rustls::Error> {
        let mut chain = Vec::with_capacity(1 + intermediates.len());
        chain.push(CertificateDer::from(end_entity.as_ref()));
        chain.extend(
            intermediates
                .iter()
                .map(|c| CertificateDer::from(c.as_ref())),
        );
        let verified = verify_for(&chain, &self.bundles, now, usage).map_err(|e| {
            tracing::debug!(error = %e, "peer SVID refused");
            rustls::Error::InvalidCertificate(certificate_error(e))
        })?;
        self.authorizer.authorize(verified.id()).map_err(|e| {
            tracing::debug!(error = %e, "peer SPIFFE ID not authorized");
            rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure)
        })
    }

    fn tls12(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Maps a validation failure onto rustls's vocabulary so alerts stay meaningful.
fn certificate_error(e: VerifyError) -> CertificateError {
    match e {
        VerifyError::UnknownIssuer(_) => CertificateError::UnknownIssuer,
        VerifyError::Expired { .. } => CertificateError::Expired,
        VerifyError::NotYetValid { .. } => CertificateError::NotValidYet,
        VerifyError::BadSignature => CertificateError::BadSignature,
        other => CertificateError::Other(OtherError(Arc::new(other))),
    }
}
