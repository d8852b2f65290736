//! `[federation]`: the refresh bounds, the bundle endpoint this gateway serves and its peers,
//! converted from the file model into [`FederationConfig`].
//!
//! Invariants: `min_refresh <= default_refresh <= max_refresh`; every peer is another trust
//! domain than the local one, listed once, reached over `https://`, with exactly the keys of
//! its profile; the served bundle is known (`bundle` or the `[identity]` bundle); the PKCS#12
//! keys are only given with `distribute_dir`, and `all.p12` never clashes with a trust domain
//! named `all`.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use fedgate_federation::{SpiffeId, TrustDomain};
use reqwest::Url;

use super::file::{FileFederation, FileProfile};
use super::source::ConfigError;
use super::values::Cx;
use super::IdentityConfig;

/// Default `[federation.serve] max_connections` (as `fedgate ca serve`'s).
pub const DEFAULT_SERVE_MAX_CONNECTIONS: usize =
    fedgate_federation::endpoint::server::DEFAULT_MAX_CONNECTIONS;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FederationConfig {
    /// Where last-known-good peer bundles are kept; `None` keeps them in memory only.
    pub state_dir: Option<PathBuf>,
    /// Where bundles are written for workloads; `None` writes nothing.
    pub distribute_dir: Option<PathBuf>,
    /// The PKCS#12 truststores written to `distribute_dir`.
    pub pkcs12: Pkcs12Config,
    pub min_refresh: Duration,
    pub max_refresh: Duration,
    pub default_refresh: Duration,
    pub serve: Option<ServeConfig>,
    pub peers: Vec<PeerConfig>,
}

/// `distribute_pkcs12`, `distribute_pkcs12_all`, `pkcs12_password_file`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pkcs12Config {
    /// `<td>.p12` per trust domain (default on).
    pub per_trust_domain: bool,
    /// `all.p12` with every trust domain (default off).
    pub all: bool,
    /// The stores' password, read at start; `None` is Java's conventional `changeit`.
    pub password_file: Option<PathBuf>,
}

impl Default for Pkcs12Config {
    fn default() -> Self {
        Self {
            per_trust_domain: true,
            all: false,
            password_file: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    /// HTTP path of the bundle, starts with `/`.
    pub path: String,
    pub profile: ServeProfile,
    /// The bundle file to serve: `bundle` if given, else `[identity] bundle`.
    pub bundle: PathBuf,
    /// Connections beyond this many are closed before the TLS handshake and counted.
    pub max_connections: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServeProfile {
    /// Present the gateway's X509-SVID (the `[identity]` svid and key).
    HttpsSpiffe { svid: PathBuf, key: PathBuf },
    /// Present a Web PKI certificate.
    HttpsWeb { cert: PathBuf, key: PathBuf },
}

/// One federation relationship: every parameter explicit, none inferred from another.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerConfig {
    pub trust_domain: TrustDomain,
    pub url: Url,
    pub profile: PeerProfile,
    /// `required = true`: the gateway is not ready until it holds a bundle (fetched or
    /// last-known-good) for this peer. Otherwise (the default) readiness waits only for the
    /// first fetch attempt to finish; a peer that cannot be reached is reported, not blocking.
    pub required: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerProfile {
    HttpsSpiffe {
        endpoint_id: SpiffeId,
        bootstrap_bundle: PathBuf,
    },
    /// `ca`: private Web PKI roots; `None` uses the system roots.
    HttpsWeb { ca: Option<PathBuf> },
}

/// (min, max, default) refresh intervals when the file gives none.
fn refresh_defaults() -> (Duration, Duration, Duration) {
    (
        Duration::from_secs(30),
        Duration::from_secs(3600),
        Duration::from_secs(300),
    )
}

impl Cx<'_> {
    pub(super) fn federation(
        &self,
        f: FileFederation,
        local: &TrustDomain,
        identity: Option<&IdentityConfig>,
    ) -> Result<FederationConfig, ConfigError> {
        let d = refresh_defaults();
        let min_refresh = self.duration("federation.min_refresh", f.min_refresh.as_ref(), d.0)?;
        let max_refresh = self.duration("federation.max_refresh", f.max_refresh.as_ref(), d.1)?;
        let default_refresh = self.duration(
            "federation.default_refresh",
            f.default_refresh.as_ref(),
            d.2,
        )?;
        if min_refresh > max_refresh {
            return Err(self.err(
                "federation.min_refresh",
                "must not be greater than federation.max_refresh",
            ));
        }
        if default_refresh < min_refresh || default_refresh > max_refresh {
            return Err(self.err(
                "federation.default_refresh",
                format!(
                    "must lie between min_refresh ({}) and max_refresh ({})",
                    humantime::format_duration(min_refresh),
                    humantime::format_duration(max_refresh)
                ),
            ));
        }
        let serve = match f.serve {
            None => None,
            Some(s) => {
                let listen = self.socket_addr("federation.serve.listen", &s.listen)?;
                let path = match &s.path {
                    None => "/".to_string(),
                    Some(p) if p.starts_with('/') => p.clone(),
                    Some(_) => {
                        return Err(self.err(
                            "federation.serve.path",
                            "must start with `/`, e.g. \"/\" or \"/bundle\"",
                        ))
                    }
                };
                let profile = match s.profile {
                    FileProfile::HttpsSpiffe => {
                        if s.cert.is_some() || s.key.is_some() {
                            let at = if s.cert.is_some() { "cert" } else { "key" };
                            return Err(self.src.error_at(
                                "federation.serve",
                                &format!("federation.serve.{at}"),
                                "`cert`/`key` belong to profile \"https_web\"; profile \"https_spiffe\" presents the [identity] SVID",
                            ));
                        }
                        let Some(identity) = identity else {
                            return Err(self.err(
                                "federation.serve.profile",
                                "profile \"https_spiffe\" presents the gateway's SVID: add an [identity] table with svid, key and bundle",
                            ));
                        };
                        ServeProfile::HttpsSpiffe {
                            svid: identity.svid.clone(),
                            key: identity.key.clone(),
                        }
                    }
                    FileProfile::HttpsWeb => match (&s.cert, &s.key) {
                        (Some(c), Some(k)) => ServeProfile::HttpsWeb {
                            cert: self.nonempty_path("federation.serve.cert", c)?,
                            key: self.nonempty_path("federation.serve.key", k)?,
                        },
                        _ => {
                            return Err(self.err(
                                "federation.serve",
                                "profile \"https_web\" needs both `cert` and `key` (PEM files of a Web PKI certificate)",
                            ))
                        }
                    },
                };
                let bundle = match (&s.bundle, identity) {
                    (Some(b), _) => self.nonempty_path("federation.serve.bundle", b)?,
                    (None, Some(i)) => i.bundle.clone(),
                    (None, None) => {
                        return Err(self.err(
                            "federation.serve",
                            "needs the local bundle to serve: set `bundle` here or add an [identity] table",
                        ))
                    }
                };
                let max_connections = match &s.max_connections {
                    None => DEFAULT_SERVE_MAX_CONNECTIONS,
                    Some(m) => usize::try_from(*m)
                        .ok()
                        .filter(|&m| m >= 1)
                        .ok_or_else(|| {
                            self.err(
                                "federation.serve.max_connections",
                                format!(
                                    "must be a positive integer (default \
                                     {DEFAULT_SERVE_MAX_CONNECTIONS})"
                                ),
                            )
                        })?,
                };
                Some(ServeConfig {
                    listen,
                    path,
                    profile,
                    bundle,
                    max_connections,
                })
            }
        };
        let mut peers = Vec::with_capacity(f.peers.len());
        let mut seen = HashSet::new();
        for (i, p) in f.peers.into_iter().enumerate() {
            let key = format!("federation.peers[{i}]");
            let trust_domain =
                self.trust_domain(&format!("{key}.trust_domain"), &p.trust_domain)?;
            if &trust_domain == local {
                return Err(self.err(
                    format!("{key}.trust_domain"),
                    format!("`{trust_domain}` is the local trust domain; peers must be other trust domains"),
                ));
            }
            if !seen.insert(trust_domain.clone()) {
                return Err(self.err(
                    format!("{key}.trust_domain"),
                    format!("trust domain `{trust_domain}` has two peer entries; keep one relationship per trust domain"),
                ));
            }
            let url = Url::parse(&p.url)
                .ok()
                .filter(|u| u.scheme() == "https" && u.host().is_some())
                .ok_or_else(|| {
                    self.err(
                        format!("{key}.url"),
                        format!(
                            "`{}` is not an https:// URL; federation endpoints are HTTPS only",
                            p.url
                        ),
                    )
                })?;
            let profile = match p.profile {
                FileProfile::HttpsSpiffe => {
                    if p.ca.is_some() {
                        return Err(
                            self.err(format!("{key}.ca"), "`ca` belongs to profile \"https_web\"")
                        );
                    }
                    let (Some(id), Some(boot)) = (&p.endpoint_id, &p.bootstrap_bundle) else {
                        return Err(self.err(
                            format!("{key}.profile"),
                            "profile \"https_spiffe\" needs `endpoint_id` (the endpoint's SPIFFE ID) and `bootstrap_bundle` (a file with the endpoint trust domain's bundle)",
                        ));
                    };
                    let endpoint_id = SpiffeId::parse(id).map_err(|e| {
                        self.err(
                            format!("{key}.endpoint_id"),
                            format!("`{}` is not a valid SPIFFE ID ({e})", id),
                        )
                    })?;
                    PeerProfile::HttpsSpiffe {
                        endpoint_id,
                        bootstrap_bundle: self
                            .nonempty_path(&format!("{key}.bootstrap_bundle"), boot)?,
                    }
                }
                FileProfile::HttpsWeb => {
                    if p.endpoint_id.is_some() || p.bootstrap_bundle.is_some() {
                        let at = if p.endpoint_id.is_some() {
                            "endpoint_id"
                        } else {
                            "bootstrap_bundle"
                        };
                        return Err(self.src.error_at(
                            format!("{key}.profile"),
                            &format!("{key}.{at}"),
                            "`endpoint_id`/`bootstrap_bundle` belong to profile \"https_spiffe\"; profile \"https_web\" takes only an optional `ca`",
                        ));
                    }
                    let ca = match &p.ca {
                        Some(c) => Some(self.nonempty_path(&format!("{key}.ca"), c)?),
                        None => None,
                    };
                    PeerProfile::HttpsWeb { ca }
                }
            };
            peers.push(PeerConfig {
                trust_domain,
                url,
                profile,
                required: p.required.unwrap_or(false),
            });
        }
        if f.distribute_dir.is_none() {
            for (key, set) in [
                ("distribute_pkcs12", f.distribute_pkcs12.is_some()),
                ("distribute_pkcs12_all", f.distribute_pkcs12_all.is_some()),
                ("pkcs12_password_file", f.pkcs12_password_file.is_some()),
            ] {
                if set {
                    return Err(self.err(
                        format!("federation.{key}"),
                        "configures the distribution directory's truststores; set `distribute_dir` too",
                    ));
                }
            }
        }
        let pkcs12 = Pkcs12Config {
            per_trust_domain: f.distribute_pkcs12.unwrap_or(true),
            all: f.distribute_pkcs12_all.unwrap_or(false),
            password_file: match &f.pkcs12_password_file {
                Some(p) => Some(self.nonempty_path("federation.pkcs12_password_file", p)?),
                None => None,
            },
        };
        if pkcs12.all
            && (local.as_str() == "all" || peers.iter().any(|p| p.trust_domain.as_str() == "all"))
        {
            return Err(self.err(
                "federation.distribute_pkcs12_all",
                "a trust domain named `all` would clash with all.p12; leave `distribute_pkcs12_all` off",
            ));
        }
        Ok(FederationConfig {
            state_dir: f.state_dir.as_ref().map(|t| self.path(t)),
            distribute_dir: f.distribute_dir.as_ref().map(|t| self.path(t)),
            pkcs12,
            min_refresh,
            max_refresh,
            default_refresh,
            serve,
            peers,
        })
    }
}
