//! X509-SVIDs: loading from PEM, and validation (X509-SVID.md) in [`verify`].

pub mod verify;

use std::path::Path;

use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::spiffe_id::SpiffeId;

/// An SVID with its private key: the leaf first, then any intermediates.
#[derive(Debug)]
pub struct X509Svid {
    id: SpiffeId,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SvidError {
    #[error("TODO")]
    Todo,
}

impl X509Svid {
    /// Loads the chain (`CERTIFICATE` blocks, leaf first) and the key (PKCS#8, SEC1 or PKCS#1).
    pub fn load(_chain_path: &Path, _key_path: &Path) -> Result<Self, SvidError> {
        todo!()
    }
    pub fn from_pem(_chain_pem: &[u8], _key_pem: &[u8]) -> Result<Self, SvidError> {
        todo!()
    }
    pub fn id(&self) -> &SpiffeId {
        &self.id
    }
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }
    pub fn key(&self) -> PrivateKeyDer<'static> {
        self.key.clone_key()
    }
}

impl Clone for X509Svid {
    fn clone(&self) -> Self {
        Self {
            id: self.id.clone(),
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}
