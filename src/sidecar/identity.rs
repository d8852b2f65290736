//! Loads the workload identity: the X509-SVID, the local trust domain's bundle and, optionally,
//! the SPIFFE bundle map of federated (peer) trust domains.
//!
//! Invariants:
//! * the SVID belongs to the configured trust domain;
//! * the resulting `BundleSet` holds exactly one bundle per trust domain and never merges two;
//! * for the local trust domain the local bundle file is authoritative: an entry for it in the
//!   federated map is ignored (the gateway's distribution usually includes it);
//! * the SVID and the local bundle are required; a federated map that does not exist yet means
//!   "no peer domains yet" (a warning), so a workload can start before its gateway has
//!   distributed anything.

use std::path::{Path, PathBuf};

use fedgate_federation::distribute::BundleMapError;
use fedgate_federation::{Bundle, BundleError, BundleSet, SpiffeId, TrustDomain, X509Svid};

use super::config::IdentityPaths;

/// A loaded identity: what every TLS config of the sidecar is built from.
#[derive(Clone, Debug)]
pub struct Identity {
    pub svid: X509Svid,
    /// Local bundle plus federated bundles, one per trust domain.
    pub bundles: BundleSet,
}

/// Why the identity files could not be loaded; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot load the SVID from {chain} and {key}")]
    Svid {
        chain: PathBuf,
        key: PathBuf,
        // Boxed: core's error is large and this travels through every `Result` here.
        #[source]
        source: Box<fedgate_federation::SvidError>,
    },
    #[error(
        "the SVID in {path} is {id}, which is not in the configured trust domain {expected}; \
         fix `trust_domain` or issue an SVID of that domain"
    )]
    WrongTrustDomain {
        path: PathBuf,
        id: SpiffeId,
        expected: TrustDomain,
    },
    #[error("cannot read bundle file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot use bundle file {path} for trust domain {trust_domain}")]
    Bundle {
        path: PathBuf,
        trust_domain: TrustDomain,
        #[source]
        source: Box<BundleError>,
    },
    #[error("federated bundle map {path} is not a valid SPIFFE bundle map")]
    BundleMap {
        path: PathBuf,
        #[source]
        source: Box<BundleMapError>,
    },
}

// === impl Identity ===

impl Identity {
    /// Reads every identity file named in `paths` (blocking file I/O; the files are small).
    pub fn load(paths: &IdentityPaths, trust_domain: &TrustDomain) -> Result<Self, IdentityError> {
        let svid =
            X509Svid::load(&paths.svid, &paths.key).map_err(|source| IdentityError::Svid {
                chain: paths.svid.clone(),
                key: paths.key.clone(),
                source: Box::new(source),
            })?;
        let local = load_bundle(trust_domain, &paths.bundle)?;
        let federated = match &paths.federated_bundles {
            Some(path) => load_bundle_map(path)?,
            None => Vec::new(),
        };
        Self::assemble(svid, local, federated, trust_domain, &paths.svid)
    }

    /// Checks the SVID's trust domain and builds the bundle set (pure).
    pub fn assemble(
        svid: X509Svid,
        local: Bundle,
        federated: Vec<Bundle>,
        trust_domain: &TrustDomain,
        svid_path: &Path,
    ) -> Result<Self, IdentityError> {
        if svid.id().trust_domain() != trust_domain {
            return Err(IdentityError::WrongTrustDomain {
                path: svid_path.to_owned(),
                id: svid.id().clone(),
                expected: trust_domain.clone(),
            });
        }
        let mut bundles = BundleSet::new().with(local);
        for bundle in federated {
            if bundle.trust_domain() == trust_domain {
                tracing::debug!(
                    trust_domain = %trust_domain,
                    "ignoring the local trust domain's entry in the federated bundle map; \
                     the local bundle file is authoritative"
                );
                continue;
            }
            bundles = bundles.with(bundle);
        }
        Ok(Self { svid, bundles })
    }
}

fn load_bundle(td: &TrustDomain, path: &Path) -> Result<Bundle, IdentityError> {
    let (bundle, warnings) = Bundle::load(td, path).map_err(|source| IdentityError::Bundle {
        path: path.to_owned(),
        trust_domain: td.clone(),
        source: Box::new(source),
    })?;
    for w in warnings {
        tracing::warn!(path = %path.display(), trust_domain = %td, "bundle entry ignored: {}", w.0);
    }
    Ok(bundle)
}

/// A map that does not exist (yet) is empty: the gateway may not have distributed one when the
/// workload starts, and the reloader picks it up once it appears. Any other failure is an error.
fn load_bundle_map(path: &Path) -> Result<Vec<Bundle>, IdentityError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::warn!(
                path = %path.display(),
                "federated bundle map does not exist (yet): only the local trust domain is \
                 trusted until it appears"
            );
            return Ok(Vec::new());
        }
        Err(source) => {
            return Err(IdentityError::Read {
                path: path.to_owned(),
                source,
            })
        }
    };
    let set = fedgate_federation::distribute::parse_bundle_map(&bytes).map_err(|source| {
        IdentityError::BundleMap {
            path: path.to_owned(),
            source: Box::new(source),
        }
    })?;
    Ok(set.iter().map(|b| Bundle::clone(b)).collect())
}
