//! TLS handshakes with a deadline, the same for every listener that terminates or originates
//! TLS (bridge egress/ingress, sidecar inbound/outbound).
//!
//! Invariants: a handshake never outlives its deadline (a peer that stalls gets
//! [`HandshakeError::Timeout`]); nothing is logged or counted here, callers map the outcome
//! to their own metric labels; the rustls configs are chosen by the caller (for
//! [`accept_lazy`], from the ClientHello, e.g. the relay ALPN offer).

use std::io;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::server::ClientHello;
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::{client, server, LazyConfigAcceptor, TlsAcceptor, TlsConnector};

/// Why a handshake did not complete.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("TLS handshake timed out after {0:?}")]
    Timeout(Duration),
    #[error("TLS handshake failed: {0}")]
    Io(#[source] io::Error),
}

// === impl HandshakeError ===

impl HandshakeError {
    /// The rustls error behind a failed handshake, if any (e.g. a certificate refusal).
    pub fn rustls(&self) -> Option<&rustls::Error> {
        match self {
            HandshakeError::Io(e) => e.get_ref()?.downcast_ref(),
            HandshakeError::Timeout(_) => None,
        }
    }
}

/// Accepts a TLS session on `io` with `acceptor` within `deadline`.
pub async fn accept<IO>(
    acceptor: &TlsAcceptor,
    io: IO,
    deadline: Duration,
) -> Result<server::TlsStream<IO>, HandshakeError>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    match tokio::time::timeout(deadline, acceptor.accept(io)).await {
        Ok(result) => result.map_err(HandshakeError::Io),
        Err(_) => Err(HandshakeError::Timeout(deadline)),
    }
}

/// Accepts a TLS session on `io` within `deadline`, with the config `choose` picks from the
/// ClientHello.
pub async fn accept_lazy<IO>(
    io: IO,
    deadline: Duration,
    choose: impl FnOnce(&ClientHello<'_>) -> Arc<ServerConfig>,
) -> Result<server::TlsStream<IO>, HandshakeError>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let handshake = async {
        let start = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), io).await?;
        let config = choose(&start.client_hello());
        start.into_stream(config).await
    };
    match tokio::time::timeout(deadline, handshake).await {
        Ok(result) => result.map_err(HandshakeError::Io),
        Err(_) => Err(HandshakeError::Timeout(deadline)),
    }
}

/// Originates a TLS session on `io` to `name` with `connector` within `deadline`.
pub async fn connect<IO>(
    connector: &TlsConnector,
    name: ServerName<'static>,
    io: IO,
    deadline: Duration,
) -> Result<client::TlsStream<IO>, HandshakeError>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    match tokio::time::timeout(deadline, connector.connect(name, io)).await {
        Ok(result) => result.map_err(HandshakeError::Io),
        Err(_) => Err(HandshakeError::Timeout(deadline)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_config() -> Arc<ServerConfig> {
        // No certificate is needed: these tests never get past the ClientHello.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(NoCert));
        Arc::new(config)
    }

    #[derive(Debug)]
    struct NoCert;

    impl rustls::server::ResolvesServerCert for NoCert {
        fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<rustls::sign::CertifiedKey>> {
            None
        }
    }

    #[tokio::test]
    async fn a_silent_peer_times_out() {
        let (_client, server) = tokio::io::duplex(1024);
        let err = accept(
            &TlsAcceptor::from(server_config()),
            server,
            Duration::from_millis(50),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, HandshakeError::Timeout(_)));
        let (_client, server) = tokio::io::duplex(1024);
        let err = accept_lazy(server, Duration::from_millis(50), |_| server_config())
            .await
            .unwrap_err();
        assert!(matches!(err, HandshakeError::Timeout(_)));
    }

    #[tokio::test]
    async fn junk_fails_without_waiting_for_the_deadline() {
        use tokio::io::AsyncWriteExt;
        let (mut client, server) = tokio::io::duplex(1024);
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let err = accept_lazy(server, Duration::from_secs(30), |_| server_config())
            .await
            .unwrap_err();
        assert!(matches!(err, HandshakeError::Io(_)), "{err:?}");
    }
}
