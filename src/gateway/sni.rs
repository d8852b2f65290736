//! Pure ClientHello parsing: SNI and ALPN from the first TLS handshake message.
//!
//! Invariant: never panics and never reads past the slice; a ClientHello spread over
//! several TLS records is reassembled; `Ok(None)` means "need more bytes".

/// What routing and logs need from a ClientHello.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ClientHelloInfo {
    /// The `host_name` from the server_name extension, lowercased, validated as a DNS name.
    pub server_name: Option<String>,
    /// ALPN protocol names offered, in order.
    pub alpn: Vec<Vec<u8>>,
}

/// Why a byte prefix is not an acceptable ClientHello. Each variant is a metric label.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SniError {
    #[error("first bytes are not a TLS handshake record")]
    NotTls,
    #[error("malformed ClientHello")]
    Malformed,
}

impl SniError {
    pub fn label(&self) -> &'static str {
        match self {
            SniError::NotTls => "not_tls",
            SniError::Malformed => "malformed_client_hello",
        }
    }
}

/// Parses the ClientHello at the start of `buf`. `Ok(None)`: incomplete, read more.
pub fn parse_client_hello(_buf: &[u8]) -> Result<Option<ClientHelloInfo>, SniError> {
    todo!()
}
