//! `[bridge.issuer]` as plain data: where and how the gateway obtains its bridge SVID from
//! `fedgate ca serve`. No behaviour here; the config loader fills it, [`super::gateway`] uses it.

use std::path::PathBuf;
use std::time::Duration;

use fedgate_federation::SpiffeId;

/// Default bound on obtaining the first bridge SVID at startup.
pub const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// `[bridge.issuer]`: where and how the gateway obtains its bridge SVID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuerSettings {
    /// Base URL of the issuing endpoint.
    pub url: reqwest::Url,
    /// The SPIFFE ID the endpoint must present (bridge trust domain).
    pub endpoint_id: SpiffeId,
    /// The bridge ID to request (the CA's policy must map our local ID to it).
    pub id: SpiffeId,
    /// Lifetime to request; `None` takes the endpoint's default.
    pub ttl: Option<Duration>,
    /// Where the current bridge SVID is kept for restarts.
    pub out_dir: Option<PathBuf>,
    /// Bound on obtaining the first SVID at startup.
    pub startup_timeout: Duration,
}
