//! The CA's JWT-SVID signer: the library API the Workload API server and `fedgate jwt mint`
//! call.
//!
//! ```no_run
//! # fn main() -> Result<(), fedgate::ca::CaError> {
//! use std::time::Duration;
//! use fedgate::ca::JwtSigner;
//! use fedgate_federation::spiffe_id::SpiffeId;
//!
//! let signer = JwtSigner::load(std::path::Path::new("/etc/fedgate/ca"))?;
//! let id = SpiffeId::parse("spiffe://cluster-a.test/web").expect("a valid ID");
//! let token: String = signer.mint(&id, &["spiffe://cluster-a.test/reports"], Duration::from_secs(300))?;
//! # let _ = token; Ok(()) }
//! ```
//!
//! Invariants: a [`JwtSigner`] exists only for a CA directory that loaded completely
//! ([`Ca::load`]: certificates, keys, and a bundle that lists this JWT key as a `jwt-svid`
//! JWK), so every token it mints validates against that directory's `bundle.json`
//! (`fedgate_federation::jwt::validate`) until it expires. It mints only for SPIFFE IDs with a
//! path in the CA's own trust domain. Tokens are ES256 with `kid` = the RFC 7638 thumbprint of
//! the key, `typ` JWT, and claims `sub`, `aud`, `exp`, `iat`. The key is never printed.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fedgate_federation::bundle::{Bundle, JwtAuthority};
use fedgate_federation::jwt::JwtSigningKey;
use fedgate_federation::spiffe_id::{SpiffeId, TrustDomain};

use super::{read_limited, Ca, CaError, JWT_KEY};

/// Mints JWT-SVIDs with the CA's current JWT signing key. Cheap to clone.
#[derive(Clone, Debug)]
pub struct JwtSigner {
    trust_domain: TrustDomain,
    key: Arc<JwtSigningKey>,
}

impl JwtSigner {
    pub(super) fn new(trust_domain: TrustDomain, key: Arc<JwtSigningKey>) -> Self {
        Self { trust_domain, key }
    }

    /// Loads the current JWT signer of the CA in `ca_dir`. A directory created before
    /// JWT-SVIDs gives [`CaError::NoJwtKey`], whose message says to run `ca rotate`.
    pub fn load(ca_dir: &Path) -> Result<Self, CaError> {
        Ca::load(ca_dir)?.jwt_signer(ca_dir)
    }

    /// Mints a JWT-SVID for `id` (in the CA's trust domain, with a path) for `audience`
    /// (one or more, none empty), valid from now for `ttl` (whole seconds, at least one).
    pub fn mint(&self, id: &SpiffeId, audience: &[&str], ttl: Duration) -> Result<String, CaError> {
        self.mint_at(id, audience, SystemTime::now(), ttl)
    }

    /// [`Self::mint`] with an explicit issue time (for tests and replays of a clock).
    pub fn mint_at(
        &self,
        id: &SpiffeId,
        audience: &[&str],
        now: SystemTime,
        ttl: Duration,
    ) -> Result<String, CaError> {
        super::check_workload_id(&self.trust_domain, id)?;
        self.key
            .mint(id, audience, now, ttl)
            .map_err(|source| CaError::Mint {
                id: id.clone(),
                source,
            })
    }

    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The `kid` of the tokens this signer mints.
    pub fn key_id(&self) -> &str {
        self.key.key_id()
    }

    /// The public key as the bundle's `jwt-svid` JWK.
    pub fn authority(&self) -> JwtAuthority {
        self.key.authority()
    }
}

/// Loads `dir/jwt.key` if present and checks that `bundle` lists it.
pub(super) fn load_key(dir: &Path, bundle: &Bundle) -> Result<Option<Arc<JwtSigningKey>>, CaError> {
    let path = dir.join(JWT_KEY);
    if !path.exists() {
        return Ok(None);
    }
    let pem = read_limited(&path)?;
    let key = JwtSigningKey::from_pem(&pem).map_err(|source| CaError::BadJwtKey {
        path: path.clone(),
        source,
    })?;
    let listed = bundle
        .jwt_authorities()
        .iter()
        .any(|a| a.key_id == key.key_id() && a.jwk.get("x") == key.authority().jwk.get("x"));
    if !listed {
        return Err(CaError::JwtKeyNotInBundle { path });
    }
    Ok(Some(Arc::new(key)))
}
