//! Diagnostics: the leaf certificate a TLS server presents, without trusting it.
//!
//! Invariants: [`peek_leaf`] never completes a handshake: its verifier records the leaf and
//! refuses it, so no application data is ever exchanged and nothing the server sends is
//! trusted. It is for tools that explain a failure (`fedgate check`, the demo), never for a
//! data path.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};

/// The leaf certificate the server on `io` presents for `server_name`, or `None` when none
/// arrived within `deadline` (no TLS server, a hang, or a handshake failure before it).
pub async fn peek_leaf<IO>(
    io: IO,
    server_name: ServerName<'static>,
    deadline: Duration,
) -> Option<CertificateDer<'static>>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let recorder = Arc::new(LeafRecorder::default());
    let config = super::client_config(None, recorder.clone()).ok()?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    // The recorder refuses every certificate: this handshake always fails.
    let _ = tokio::time::timeout(deadline, connector.connect(server_name, io)).await;
    let leaf = recorder.0.lock().ok()?.take();
    leaf
}

/// A server certificate verifier that records the leaf and refuses it.
#[derive(Debug, Default)]
struct LeafRecorder(Mutex<Option<CertificateDer<'static>>>);

impl ServerCertVerifier for LeafRecorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(end_entity.clone().into_owned());
        }
        Err(rustls::Error::General(
            "certificate recorded; handshake aborted on purpose".into(),
        ))
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("diagnostics only".into()))
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("diagnostics only".into()))
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        super::provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}
