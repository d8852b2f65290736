//! X509-SVID validation against the bundle of the leaf's own trust domain only.

use rustls_pki_types::{CertificateDer, UnixTime};

use crate::bundle::BundleSource;
use crate::spiffe_id::SpiffeId;

/// Proof that a chain was validated; only [`verify`] builds one.
#[derive(Clone, Debug)]
pub struct VerifiedSvid {
    id: SpiffeId,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    #[error("TODO")]
    Todo,
}

impl VerifiedSvid {
    pub fn id(&self) -> &SpiffeId {
        &self.id
    }
}

/// Validates `chain` (leaf first) at `now` with the bundle of the leaf's trust domain.
pub fn verify(
    _chain: &[CertificateDer<'_>],
    _bundles: &dyn BundleSource,
    _now: UnixTime,
) -> Result<VerifiedSvid, VerifyError> {
    todo!()
}
