//! X509-SVID validation (X509-SVID.md §5) against the bundle of the leaf's own trust domain only.
//!
//! Invariants: the trust anchors used for a chain are exactly those of the bundle of the trust
//! domain named in the leaf's SPIFFE ID (threat-model invariant 1; never a merged set);
//! a `VerifiedSvid` exists only as the result of a successful [`verify`]/[`verify_for`]; time is
//! an input, never read from the clock here.
//!
//! Every certificate of the verified path is checked for what its role requires (X509-SVID.md
//! §4.3, §5): the leaf is no CA, has digitalSignature and neither keyCertSign nor cRLSign;
//! every intermediate webpki used in the path has a key usage extension with keyCertSign; the
//! bundle certificate that anchors the path is within its validity window. The role checks of
//! the path run inside webpki's path building, so a refused candidate path (an extra presented
//! certificate, an expired root beside a valid one during rotation) lets webpki try the others.

use std::cell::RefCell;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls_pki_types::{CertificateDer, UnixTime};
use webpki::{EndEntityCert, KeyUsage, VerifiedPath};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use crate::bundle::{Bundle, BundleSource};
use crate::spiffe_id::{SpiffeId, SpiffeIdError, TrustDomain};

/// Proof that a chain was validated; only [`verify`] and [`verify_for`] build one.
#[derive(Clone, Debug)]
pub struct VerifiedSvid {
    id: SpiffeId,
    not_after: SystemTime,
}

/// The TLS role the SVID is validated for (extended key usage).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Usage {
    /// `id-kp-serverAuth`: the peer is a TLS server.
    Server,
    /// `id-kp-clientAuth`: the peer is a TLS client.
    Client,
    /// Either role is acceptable.
    Any,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    #[error("empty certificate chain: an X509-SVID needs at least the leaf certificate")]
    EmptyChain,
    #[error("certificate is not valid DER X.509: {0}")]
    BadCertificate(String),
    #[error("leaf has no URI SAN; an X509-SVID has exactly one (X509-SVID.md §2)")]
    MissingUriSan,
    #[error("leaf has {0} URI SANs; an X509-SVID has exactly one (X509-SVID.md §2)")]
    MultipleUriSans(usize),
    #[error("leaf URI SAN {uri:?} is not a valid SPIFFE ID")]
    InvalidSpiffeId {
        uri: String,
        #[source]
        source: SpiffeIdError,
    },
    #[error("leaf SPIFFE ID {0} has no path; leaf SVIDs need a non-root path (X509-SVID.md §3.1)")]
    LeafIdWithoutPath(SpiffeId),
    #[error("leaf certificate is a CA (basicConstraints cA=true); leaves must not be (X509-SVID.md §5.2)")]
    LeafIsCa,
    #[error("leaf certificate has keyCertSign key usage; leaves must not (X509-SVID.md §4.3)")]
    LeafHasKeyCertSign,
    #[error("leaf certificate has cRLSign key usage; leaves must not (X509-SVID.md §4.3)")]
    LeafHasCrlSign,
    #[error(
        "leaf certificate lacks digitalSignature key usage; leaves must set it (X509-SVID.md §4.3)"
    )]
    LeafMissingDigitalSignature,
    #[error(
        "intermediate CA certificate {subject:?} has no key usage extension; an X509-SVID \
         signing certificate must set keyCertSign (X509-SVID.md §4.3); reissue the intermediate \
         with keyUsage keyCertSign"
    )]
    IntermediateWithoutKeyUsage { subject: String },
    #[error(
        "intermediate CA certificate {subject:?} lacks keyCertSign key usage, so it may not sign \
         certificates (X509-SVID.md §4.3); reissue the intermediate with keyUsage keyCertSign"
    )]
    IntermediateMissingKeyCertSign { subject: String },
    #[error(
        "the trust anchor {subject:?} in the bundle of trust domain {td} expired at {not_after} \
         (unix seconds), validation time {now}; an expired authority trusts nothing: refresh \
         the bundle or have {td} rotate to a current root"
    )]
    AnchorExpired {
        td: TrustDomain,
        subject: String,
        not_after: i64,
        now: u64,
    },
    #[error(
        "the trust anchor {subject:?} in the bundle of trust domain {td} is not valid before \
         {not_before} (unix seconds), validation time {now}; check the clock or the bundle"
    )]
    AnchorNotYetValid {
        td: TrustDomain,
        subject: String,
        not_before: i64,
        now: u64,
    },
    #[error("no bundle for trust domain {0}; add or federate that trust domain's bundle")]
    NoBundleForTrustDomain(TrustDomain),
    #[error("the bundle for trust domain {0} is empty, so it trusts no SVID")]
    EmptyBundle(TrustDomain),
    #[error(
        "chain does not lead to an authority in the bundle of trust domain {0} (unknown issuer)"
    )]
    UnknownIssuer(TrustDomain),
    #[error("certificate expired at {not_after} (unix seconds), validation time {now}")]
    Expired { not_after: u64, now: u64 },
    #[error("certificate not valid before {not_before} (unix seconds), validation time {now}")]
    NotYetValid { not_before: u64, now: u64 },
    #[error("certificate signature does not verify with its issuer's key")]
    BadSignature,
    #[error("leaf is not valid for {0} authentication (extended key usage)")]
    WrongUsage(&'static str),
    #[error("certificate chain is invalid for trust domain {td}")]
    Chain {
        td: TrustDomain,
        #[source]
        source: webpki::Error,
    },
}

// === impl VerifiedSvid ===

impl VerifiedSvid {
    pub fn id(&self) -> &SpiffeId {
        &self.id
    }

    /// The leaf's `notAfter`.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }
}

/// Validates `chain` (leaf first) at `now` with the bundle of the leaf's trust domain, for
/// either TLS role.
pub fn verify(
    chain: &[CertificateDer<'_>],
    bundles: &dyn BundleSource,
    now: UnixTime,
) -> Result<VerifiedSvid, VerifyError> {
    verify_for(chain, bundles, now, Usage::Any)
}

/// Validates `chain` (leaf first) at `now` with the bundle of the leaf's trust domain, for the
/// TLS role `usage`.
pub fn verify_for(
    chain: &[CertificateDer<'_>],
    bundles: &dyn BundleSource,
    now: UnixTime,
    usage: Usage,
) -> Result<VerifiedSvid, VerifyError> {
    let (leaf_der, intermediates) = chain.split_first().ok_or(VerifyError::EmptyChain)?;
    let (id, not_after) = {
        let leaf = parse_cert(leaf_der)?;
        let id = id_of(&leaf)?;
        if id.path().is_empty() {
            return Err(VerifyError::LeafIdWithoutPath(id));
        }
        check_leaf_constraints(&leaf)?;
        (id, unix_to_system(leaf.validity().not_after.timestamp()))
    };
    let td = id.trust_domain();
    // Security invariant 1: only the bundle of the leaf's own trust domain.
    let bundle = bundles
        .bundle_for(td)
        .ok_or_else(|| VerifyError::NoBundleForTrustDomain(td.clone()))?;
    let anchors = bundle.trust_anchors();
    if anchors.is_empty() {
        return Err(VerifyError::EmptyBundle(td.clone()));
    }
    let ee = EndEntityCert::try_from(leaf_der).map_err(|e| map_webpki(td, e))?;
    let check = |ku: KeyUsage| {
        // The last role refusal of a candidate path; webpki only sees a stand-in error and
        // goes on with the other candidates.
        let refused: RefCell<Option<VerifyError>> = RefCell::new(None);
        let check_path = |path: &VerifiedPath<'_>| {
            check_path_roles(&bundle, path, now).map_err(|e| {
                *refused.borrow_mut() = Some(e);
                webpki::Error::UnknownIssuer
            })
        };
        let result = ee
            .verify_for_usage(
                webpki::ALL_VERIFICATION_ALGS,
                anchors,
                intermediates,
                now,
                ku,
                None,
                Some(&check_path),
            )
            .map(|_| ());
        match (result, refused.into_inner()) {
            (Ok(()), _) => Ok(Ok(())),
            // A path reached the bundle and failed only its role checks: say why.
            (Err(_), Some(role)) => Ok(Err(role)),
            (Err(e), None) => Err(e),
        }
    };
    let result = match usage {
        Usage::Server => check(KeyUsage::server_auth()),
        Usage::Client => check(KeyUsage::client_auth()),
        Usage::Any => match check(KeyUsage::server_auth()) {
            Err(e) if is_eku_error(&e) => check(KeyUsage::client_auth()),
            other => other,
        },
    };
    result.map_err(|e| match e {
        e if is_eku_error(&e) => VerifyError::WrongUsage(match usage {
            Usage::Server => "server",
            Usage::Client => "client",
            Usage::Any => "server or client",
        }),
        e => map_webpki(td, e),
    })??;
    Ok(VerifiedSvid { id, not_after })
}

/// The SPIFFE ID of a certificate (exactly one URI SAN holding a valid SPIFFE ID), without
/// validating anything else; for peers whose chain a verifier already validated.
pub fn spiffe_id_of(cert: &CertificateDer<'_>) -> Result<SpiffeId, VerifyError> {
    id_of(&parse_cert(cert)?)
}

// === private ===

fn parse_cert<'a>(der: &'a CertificateDer<'_>) -> Result<X509Certificate<'a>, VerifyError> {
    let (rest, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| VerifyError::BadCertificate(e.to_string()))?;
    if !rest.is_empty() {
        return Err(VerifyError::BadCertificate(format!(
            "{} trailing bytes after the certificate",
            rest.len()
        )));
    }
    Ok(cert)
}

/// X509-SVID.md §2: exactly one URI SAN, and it is a SPIFFE ID.
pub(crate) fn id_of(cert: &X509Certificate<'_>) -> Result<SpiffeId, VerifyError> {
    let san = cert
        .subject_alternative_name()
        .map_err(|e| VerifyError::BadCertificate(format!("subjectAltName: {e}")))?;
    let uris: Vec<&str> = san
        .map(|ext| {
            ext.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::URI(u) => Some(*u),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    match uris.as_slice() {
        [] => Err(VerifyError::MissingUriSan),
        [uri] => SpiffeId::parse(uri).map_err(|source| VerifyError::InvalidSpiffeId {
            uri: (*uri).to_owned(),
            source,
        }),
        many => Err(VerifyError::MultipleUriSans(many.len())),
    }
}

/// X509-SVID.md §4.1, §4.3, §5.2: a leaf is not a CA, signs nothing but data.
fn check_leaf_constraints(cert: &X509Certificate<'_>) -> Result<(), VerifyError> {
    let bc = cert
        .basic_constraints()
        .map_err(|e| VerifyError::BadCertificate(format!("basicConstraints: {e}")))?;
    if bc.is_some_and(|bc| bc.value.ca) {
        return Err(VerifyError::LeafIsCa);
    }
    let ku = cert
        .key_usage()
        .map_err(|e| VerifyError::BadCertificate(format!("keyUsage: {e}")))?;
    let Some(ku) = ku else {
        return Err(VerifyError::LeafMissingDigitalSignature);
    };
    if ku.value.key_cert_sign() {
        return Err(VerifyError::LeafHasKeyCertSign);
    }
    if ku.value.crl_sign() {
        return Err(VerifyError::LeafHasCrlSign);
    }
    if !ku.value.digital_signature() {
        return Err(VerifyError::LeafMissingDigitalSignature);
    }
    Ok(())
}

/// The role checks webpki does not make, on one candidate path it built: every intermediate
/// carries keyCertSign, and the anchor's certificate in `bundle` is valid at `now`.
fn check_path_roles(
    bundle: &Bundle,
    path: &VerifiedPath<'_>,
    now: UnixTime,
) -> Result<(), VerifyError> {
    for intermediate in path.intermediate_certificates() {
        let der = intermediate.der();
        check_intermediate_constraints(&parse_cert(&der)?)?;
    }
    let now = now.as_secs();
    let now_i = i64::try_from(now).unwrap_or(i64::MAX);
    // Every anchor of the bundle has its info (they are built together); a missing one
    // means a path anchored outside this bundle, which must not verify.
    let Some(info) = bundle.anchor_info(path.anchor()) else {
        return Err(VerifyError::UnknownIssuer(bundle.trust_domain().clone()));
    };
    if now_i > info.not_after {
        return Err(VerifyError::AnchorExpired {
            td: bundle.trust_domain().clone(),
            subject: info.subject.clone(),
            not_after: info.not_after,
            now,
        });
    }
    if now_i < info.not_before {
        return Err(VerifyError::AnchorNotYetValid {
            td: bundle.trust_domain().clone(),
            subject: info.subject.clone(),
            not_before: info.not_before,
            now,
        });
    }
    Ok(())
}

/// X509-SVID.md §4.3: a signing certificate sets keyCertSign (webpki already checks that an
/// intermediate is a CA, its validity and path length, but not its key usage).
fn check_intermediate_constraints(cert: &X509Certificate<'_>) -> Result<(), VerifyError> {
    let ku = cert
        .key_usage()
        .map_err(|e| VerifyError::BadCertificate(format!("intermediate keyUsage: {e}")))?;
    match ku {
        None => Err(VerifyError::IntermediateWithoutKeyUsage {
            subject: cert.subject().to_string(),
        }),
        Some(ku) if !ku.value.key_cert_sign() => Err(VerifyError::IntermediateMissingKeyCertSign {
            subject: cert.subject().to_string(),
        }),
        Some(_) => Ok(()),
    }
}

#[allow(deprecated)] // `RequiredEkuNotFound` is deprecated but may still be returned.
fn is_eku_error(e: &webpki::Error) -> bool {
    matches!(
        e,
        webpki::Error::RequiredEkuNotFound | webpki::Error::RequiredEkuNotFoundContext(_)
    )
}

fn map_webpki(td: &TrustDomain, e: webpki::Error) -> VerifyError {
    match e {
        webpki::Error::UnknownIssuer => VerifyError::UnknownIssuer(td.clone()),
        webpki::Error::CertExpired { time, not_after } => VerifyError::Expired {
            not_after: not_after.as_secs(),
            now: time.as_secs(),
        },
        webpki::Error::CertNotValidYet { time, not_before } => VerifyError::NotYetValid {
            not_before: not_before.as_secs(),
            now: time.as_secs(),
        },
        webpki::Error::InvalidSignatureForPublicKey => VerifyError::BadSignature,
        webpki::Error::CaUsedAsEndEntity => VerifyError::LeafIsCa,
        source => VerifyError::Chain {
            td: td.clone(),
            source,
        },
    }
}

fn unix_to_system(secs: i64) -> SystemTime {
    u64::try_from(secs)
        .ok()
        .and_then(|s| UNIX_EPOCH.checked_add(Duration::from_secs(s)))
        .unwrap_or(UNIX_EPOCH)
}
