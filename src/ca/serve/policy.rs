//! The issuing policy and the pure checks that decide whether the bridge CA signs a CSR.
//!
//! Invariants:
//! * Default deny: a caller whose verified local SPIFFE ID is not a key of the policy gets
//!   nothing ([`Refusal::UnknownIdentity`]); there is no wildcard or prefix mapping.
//! * The only bridge ID a caller can obtain is the one its local ID maps to; the ID the CSR
//!   asks for must equal it exactly ([`Refusal::NotMappedId`]), so one gateway can never get
//!   another gateway's bridge identity.
//! * The mapping is one-to-one: two local IDs mapped to the same bridge ID are refused
//!   ([`PolicyError::DuplicateBridge`]), since either could then act as the other.
//! * A CSR must be well formed, self-signed by the key it carries (proof of possession), carry
//!   exactly one URI SAN that is a SPIFFE ID, and must not ask for a CA certificate.
//! * The lifetime is `default_ttl` unless the request asks for one; more than `max_ttl` is
//!   refused, never silently shortened (the client schedules renewal from what it asked).
//! * Everything here is pure: no I/O, no clock. [`Refusal::label`] is the metric label.

use std::collections::BTreeMap;
use std::time::Duration;

use fedgate_federation::spiffe_id::{SpiffeId, TrustDomain};
use rustls_pki_types::CertificateSigningRequestDer;
use x509_parser::prelude::{FromDer, GeneralName, ParsedExtension, X509CertificationRequest};

/// Largest CSR the endpoint reads; a P-256 CSR with one URI SAN is ~350 bytes.
pub const MAX_CSR_BYTES: usize = 16 * 1024;

/// The exact mapping from local SPIFFE IDs to bridge IDs, plus lifetime limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    bridge_td: TrustDomain,
    map: BTreeMap<SpiffeId, SpiffeId>,
    default_ttl: Duration,
    max_ttl: Duration,
}

/// What the CA will sign: the bridge ID and the lifetime.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub bridge_id: SpiffeId,
    pub ttl: Duration,
}

/// The facts of a CSR that the policy looks at, after its signature verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CsrInfo {
    /// The single URI SAN of the CSR: the bridge ID the caller asks for.
    pub requested: SpiffeId,
}

/// Why a request was refused. `label()` is the `reason` label of `issuer_refusals_total`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    #[error("unknown identity: {caller} is not in the issuing policy")]
    UnknownIdentity { caller: SpiffeId },
    #[error(
        "{} asked for {}, but its bridge ID is {} \
         (a CSR may only ask for the caller's own bridge ID)",
        .0.caller, .0.requested, .0.mapped
    )]
    NotMappedId(Box<IdMismatch>),
    #[error(
        "the CSR requests a CA certificate (basicConstraints cA=TRUE); only leaves are issued"
    )]
    CaCsr,
    #[error("the CSR signature does not verify with the key it carries")]
    BadCsrSignature,
    #[error("the CSR is malformed: {reason}")]
    BadCsr { reason: String },
    #[error(
        "the CSR must carry exactly one URI SAN (the requested bridge SPIFFE ID), found {found}"
    )]
    RequestedIdCount { found: usize },
    #[error("the CSR's URI SAN {uri:?} is not a valid SPIFFE ID: {reason}")]
    RequestedIdInvalid { uri: String, reason: String },
    #[error("requested ttl {requested:?} is longer than the maximum {max:?}")]
    TtlTooLong { requested: Duration, max: Duration },
    #[error("requested ttl must be longer than zero")]
    ZeroTtl,
}

/// A CSR asking for a bridge ID other than the caller's (boxed in [`Refusal::NotMappedId`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdMismatch {
    pub caller: SpiffeId,
    pub requested: SpiffeId,
    pub mapped: SpiffeId,
}

/// Two local IDs mapped to one bridge ID (boxed in [`PolicyError::DuplicateBridge`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedBridgeId {
    pub bridge: SpiffeId,
    /// The local ID mapped to `bridge` first (in the order given).
    pub first: SpiffeId,
    pub second: SpiffeId,
}

/// A policy that cannot be built (duplicate or foreign IDs, bad limits).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    #[error("local ID {local} is mapped twice; each local ID maps to exactly one bridge ID")]
    DuplicateLocal { local: SpiffeId },
    #[error(
        "bridge ID {} is mapped from both {} and {}; two local IDs sharing a bridge ID could \
         each obtain the other's bridge identity: give each local ID its own bridge ID",
        .0.bridge, .0.first, .0.second
    )]
    DuplicateBridge(Box<SharedBridgeId>),
    #[error(
        "bridge ID {bridge} (for {local}) is not in the CA's trust domain {bridge_td}; \
         the CA issues only for its own trust domain"
    )]
    ForeignBridgeId {
        local: SpiffeId,
        bridge: SpiffeId,
        bridge_td: TrustDomain,
    },
    #[error("bridge ID {bridge} (for {local}) has no path; bridge SVIDs need a non-root path")]
    RootBridgeId { local: SpiffeId, bridge: SpiffeId },
    #[error("default_ttl {default:?} must be non-zero and at most max_ttl {max:?}")]
    BadTtls { default: Duration, max: Duration },
}

// === impl Policy ===

impl Policy {
    /// Builds the policy for a CA of `bridge_td` from `(local, bridge)` pairs.
    pub fn new(
        bridge_td: TrustDomain,
        mappings: impl IntoIterator<Item = (SpiffeId, SpiffeId)>,
        default_ttl: Duration,
        max_ttl: Duration,
    ) -> Result<Self, PolicyError> {
        if default_ttl.is_zero() || default_ttl > max_ttl {
            return Err(PolicyError::BadTtls {
                default: default_ttl,
                max: max_ttl,
            });
        }
        let mut map = BTreeMap::new();
        // Bridge ID -> the local ID it was first mapped from (the map must be injective).
        let mut owners: BTreeMap<SpiffeId, SpiffeId> = BTreeMap::new();
        for (local, bridge) in mappings {
            if bridge.trust_domain() != &bridge_td {
                return Err(PolicyError::ForeignBridgeId {
                    local,
                    bridge,
                    bridge_td,
                });
            }
            if bridge.path().is_empty() {
                return Err(PolicyError::RootBridgeId { local, bridge });
            }
            if map.contains_key(&local) {
                return Err(PolicyError::DuplicateLocal { local });
            }
            if let Some(first) = owners.get(&bridge) {
                return Err(PolicyError::DuplicateBridge(Box::new(SharedBridgeId {
                    first: first.clone(),
                    bridge,
                    second: local,
                })));
            }
            owners.insert(bridge.clone(), local.clone());
            map.insert(local, bridge);
        }
        Ok(Self {
            bridge_td,
            map,
            default_ttl,
            max_ttl,
        })
    }

    pub fn bridge_trust_domain(&self) -> &TrustDomain {
        &self.bridge_td
    }

    /// Number of mappings.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The bridge ID `caller` may obtain, or [`Refusal::UnknownIdentity`].
    pub fn mapped(&self, caller: &SpiffeId) -> Result<&SpiffeId, Refusal> {
        self.map
            .get(caller)
            .ok_or_else(|| Refusal::UnknownIdentity {
                caller: caller.clone(),
            })
    }

    /// Decides a request from `caller` (its verified local ID) for the CSR described by `csr`,
    /// with an optional requested lifetime.
    pub fn decide(
        &self,
        caller: &SpiffeId,
        csr: &CsrInfo,
        ttl: Option<Duration>,
    ) -> Result<Grant, Refusal> {
        let mapped = self.mapped(caller)?;
        if &csr.requested != mapped {
            return Err(Refusal::NotMappedId(Box::new(IdMismatch {
                caller: caller.clone(),
                requested: csr.requested.clone(),
                mapped: mapped.clone(),
            })));
        }
        let ttl = ttl.unwrap_or(self.default_ttl);
        if ttl.is_zero() {
            return Err(Refusal::ZeroTtl);
        }
        if ttl > self.max_ttl {
            return Err(Refusal::TtlTooLong {
                requested: ttl,
                max: self.max_ttl,
            });
        }
        Ok(Grant {
            bridge_id: mapped.clone(),
            ttl,
        })
    }
}

// === impl Refusal ===

impl Refusal {
    /// Every label [`Refusal::label`] can return (metric documentation and tests).
    pub const LABELS: [&'static str; 7] = [
        "unknown_identity",
        "not_mapped_id",
        "ca_csr",
        "bad_csr_signature",
        "bad_csr",
        "ttl_too_long",
        "bad_ttl",
    ];

    /// The `reason` label of `issuer_refusals_total`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::UnknownIdentity { .. } => "unknown_identity",
            Self::NotMappedId(_) => "not_mapped_id",
            Self::CaCsr => "ca_csr",
            Self::BadCsrSignature => "bad_csr_signature",
            Self::BadCsr { .. }
            | Self::RequestedIdCount { .. }
            | Self::RequestedIdInvalid { .. } => "bad_csr",
            Self::TtlTooLong { .. } => "ttl_too_long",
            Self::ZeroTtl => "bad_ttl",
        }
    }
}

/// Parses a PKCS#10 CSR (DER), checks its self-signature and that it does not ask for a CA
/// certificate, and returns the SPIFFE ID it requests (its single URI SAN).
pub fn inspect_csr(der: &[u8]) -> Result<CsrInfo, Refusal> {
    let bad = |reason: String| Refusal::BadCsr { reason };
    let (rest, csr) = X509CertificationRequest::from_der(der)
        .map_err(|e| bad(format!("not DER PKCS#10: {e}")))?;
    if !rest.is_empty() {
        return Err(bad(format!("{} trailing bytes after the CSR", rest.len())));
    }
    let mut uris = Vec::new();
    if let Some(exts) = csr.requested_extensions() {
        for ext in exts {
            match ext {
                ParsedExtension::BasicConstraints(bc) if bc.ca => return Err(Refusal::CaCsr),
                ParsedExtension::SubjectAlternativeName(san) => {
                    uris.extend(san.general_names.iter().filter_map(|n| match n {
                        GeneralName::URI(u) => Some(*u),
                        _ => None,
                    }));
                }
                // Other extensions are irrelevant: the CA signs the key only.
                _ => {}
            }
        }
    }
    // rcgen checks the self-signature (proof of possession) and that the key type is one it
    // can sign for; a failed signature check is the only `RingUnspecified` it returns here.
    match rcgen::CertificateSigningRequestParams::from_der(&CertificateSigningRequestDer::from(der))
    {
        Ok(_) => {}
        Err(rcgen::Error::RingUnspecified) => return Err(Refusal::BadCsrSignature),
        Err(e) => return Err(bad(e.to_string())),
    }
    let [uri] = uris.as_slice() else {
        return Err(Refusal::RequestedIdCount { found: uris.len() });
    };
    let requested = SpiffeId::parse(uri).map_err(|e| Refusal::RequestedIdInvalid {
        uri: uri.chars().take(200).collect(),
        reason: e.to_string(),
    })?;
    Ok(CsrInfo { requested })
}

#[cfg(test)]
mod tests;
