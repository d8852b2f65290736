//! Gateway configuration: the TOML file model (`file`) converted into a typed [`Config`].
//!
//! Invariants: a `Config` value exists only if every key parsed and every cross-key rule held
//! (parse, don't validate); relative paths are already resolved against the config file's
//! directory; every error names the file, the `line:column`, the dotted key and what would be
//! valid. The schema is documented key by key in `docs/configuration.md`.

pub mod bridge;
mod file;
pub mod location;

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use fedgate_federation::{SpiffeId, TrustDomain};
use reqwest::Url;

pub use bridge::{
    BridgeConfig, BridgeIdentity, BridgeListenerConfig, BridgePeerConfig, BridgeRouteConfig,
};
use fedgate_dataplane::route::RouteTable;
use file::{FileConfig, FileListener, FileProfile, Text};

/// The largest `workers` value accepted (a typo guard, far above any useful count).
pub const MAX_WORKERS: usize = 1024;

/// Default `[federation.serve] max_connections` (as `fedgate ca serve`'s).
pub const DEFAULT_SERVE_MAX_CONNECTIONS: usize =
    fedgate_federation::endpoint::server::DEFAULT_MAX_CONNECTIONS;
/// Default `drain_timeout`.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest accepted `max_client_hello`: far above any real ClientHello (post-quantum ones are
/// ~1.8 KiB), small enough that one connection's peek buffer stays cheap.
pub const MAX_CLIENT_HELLO_LIMIT: usize = 256 * 1024;
/// Smallest accepted `max_client_hello`: a minimal ClientHello with SNI needs ~100 bytes.
pub const MIN_CLIENT_HELLO_LIMIT: usize = 512;

/// A complete, checked gateway configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file this configuration was read from (used for reloads and messages).
    pub source: PathBuf,
    pub trust_domain: TrustDomain,
    pub log_format: LogFormat,
    pub drain_timeout: Duration,
    /// Data-plane worker threads (each with its own runtime; see `fedgate_dataplane::workers`). `None`:
    /// one per CPU, decided at start.
    pub workers: Option<usize>,
    /// The gateway's own SVID and its trust domain's bundle. Optional: a pure passthrough
    /// gateway holds no key (DESIGN.md invariant 5).
    pub identity: Option<IdentityConfig>,
    pub admin: AdminConfig,
    pub federation: Option<FederationConfig>,
    /// The bridge identity, required by bridge listeners.
    pub bridge: Option<BridgeConfig>,
    pub listeners: Vec<ListenerConfig>,
}

/// `log_format` in the file (the `--log-format` flag overrides it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityConfig {
    /// PEM chain, leaf first.
    pub svid: PathBuf,
    pub key: PathBuf,
    /// The local trust domain's bundle (SPIFFE bundle JSON).
    pub bundle: PathBuf,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminConfig {
    pub listen: SocketAddr,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FederationConfig {
    /// Where last-known-good peer bundles are kept; `None` keeps them in memory only.
    pub state_dir: Option<PathBuf>,
    /// Where bundles are written for workloads; `None` writes nothing.
    pub distribute_dir: Option<PathBuf>,
    pub min_refresh: Duration,
    pub max_refresh: Duration,
    pub default_refresh: Duration,
    pub serve: Option<ServeConfig>,
    pub peers: Vec<PeerConfig>,
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

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerConfig {
    pub name: String,
    pub listen: SocketAddr,
    pub kind: ListenerKind,
    pub limits: ListenerLimits,
    /// Name of the route used when the SNI is missing or matches no route.
    pub default_route: Option<String>,
    /// Passthrough only: move bulk data with splice(2) instead of copying it through
    /// userspace (`fedgate_dataplane::pump`).
    pub splice: bool,
    pub routes: Vec<RouteConfig>,
    /// Set for the bridge kinds only.
    pub bridge: Option<BridgeListenerConfig>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ListenerKind {
    /// Route on the ClientHello's SNI and relay bytes; never terminates TLS.
    Passthrough,
    /// Terminate local mTLS, authorize, re-originate over the bridge (`crate::bridge::egress`).
    BridgeEgress,
    /// Terminate bridge mTLS, check the origin, re-originate locally (`crate::bridge::ingress`).
    BridgeIngress,
}

/// Per-listener limits; all hot-reloadable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenerLimits {
    pub max_connections: usize,
    /// Time allowed to receive a complete ClientHello.
    pub peek_timeout: Duration,
    /// Largest ClientHello (in bytes, records included) the gateway buffers.
    pub max_client_hello: usize,
    pub connect_timeout: Duration,
    /// A connection with no bytes in either direction for this long is closed.
    pub idle_timeout: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteConfig {
    /// For logs and metrics; defaults to the SNI pattern.
    pub name: String,
    /// `name.example` or `*.example`.
    pub sni: String,
    /// Tried round-robin; the next one on connect failure.
    pub upstreams: Vec<Upstream>,
    /// Set for routes of the bridge kinds only.
    pub bridge: Option<BridgeRouteConfig>,
}

/// `host:port`; the host is resolved at connect time, so DNS names follow service changes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Upstream {
    pub host: String,
    pub port: u16,
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot read config file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `location` is `file:line:column` (or just `file` when TOML gives no position).
    #[error("{location}: `{key}`: {message}")]
    Invalid {
        location: String,
        key: String,
        message: String,
    },
}

impl ListenerLimits {
    pub const DEFAULT: ListenerLimits = ListenerLimits {
        max_connections: 10_000,
        peek_timeout: Duration::from_secs(5),
        max_client_hello: fedgate_dataplane::sni::MAX_CLIENT_HELLO,
        connect_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(300),
    };
}

// === impl Config ===

impl Config {
    /// Reads and checks the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let src = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&src, path)
    }

    /// Checks `src` as if read from `path`; relative paths resolve against `path`'s directory.
    pub fn parse(src: &str, path: &Path) -> Result<Config, ConfigError> {
        let cx = Cx { src, file: path };
        let raw: FileConfig = toml::from_str(src).map_err(|e| cx.toml_error(&e))?;
        cx.convert(raw)
    }

    /// `listeners: 2, routes: 3, peers: 1` — for `config check` and startup logs.
    pub fn summary(&self) -> String {
        let routes: usize = self.listeners.iter().map(|l| l.routes.len()).sum();
        let peers = self.federation.as_ref().map_or(0, |f| f.peers.len());
        let serve = self
            .federation
            .as_ref()
            .and_then(|f| f.serve.as_ref())
            .is_some();
        format!(
            "trust domain {}, {} listener(s), {} route(s), {} federation peer(s), bundle endpoint {}",
            self.trust_domain,
            self.listeners.len(),
            routes,
            peers,
            if serve { "on" } else { "off" }
        )
    }

    pub fn listener(&self, name: &str) -> Option<&ListenerConfig> {
        self.listeners.iter().find(|l| l.name == name)
    }
}

// === impl Upstream ===

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl Upstream {
    /// Parses `host:port` or `[v6]:port`.
    pub fn parse(s: &str) -> Option<Upstream> {
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return Some(Upstream {
                host: addr.ip().to_string(),
                port: addr.port(),
            });
        }
        let (host, port) = s.rsplit_once(':')?;
        let port: u16 = port.parse().ok()?;
        let valid_host = !host.is_empty()
            && host.len() <= 253
            && host.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            });
        (valid_host && port != 0).then(|| Upstream {
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

// === impl ListenerKind ===

impl ListenerKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            ListenerKind::Passthrough => "passthrough",
            ListenerKind::BridgeEgress => "bridge-egress",
            ListenerKind::BridgeIngress => "bridge-ingress",
        }
    }
}

// === conversion ===

/// The source being converted, for error positions.
struct Cx<'a> {
    src: &'a str,
    file: &'a Path,
}

impl Cx<'_> {
    fn location(&self, span: Option<Range<usize>>) -> String {
        match span {
            Some(span) => {
                let (line, col) = location::line_col(self.src, span.start);
                format!("{}:{line}:{col}", self.file.display())
            }
            None => self.file.display().to_string(),
        }
    }

    fn err(
        &self,
        key: impl Into<String>,
        span: Range<usize>,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            location: self.location(Some(span)),
            key: key.into(),
            message: message.into(),
        }
    }

    fn toml_error(&self, e: &toml::de::Error) -> ConfigError {
        let span = e.span();
        let key = match &span {
            Some(s) => location::key_path_at(self.src, s.start),
            None => String::new(),
        };
        let key = if key.is_empty() {
            "(top level)".to_string()
        } else {
            key
        };
        ConfigError::Invalid {
            location: self.location(span),
            key,
            message: e.message().trim().to_string(),
        }
    }

    fn path(&self, t: &Text) -> PathBuf {
        let p = Path::new(t.get_ref());
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.file.parent().unwrap_or(Path::new("")).join(p)
        }
    }

    fn nonempty_path(&self, key: &str, t: &Text) -> Result<PathBuf, ConfigError> {
        if t.get_ref().trim().is_empty() {
            return Err(self.err(key, t.span(), "must be a file path, not empty"));
        }
        Ok(self.path(t))
    }

    fn duration(
        &self,
        key: &str,
        t: Option<&Text>,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        let Some(t) = t else { return Ok(default) };
        let d = humantime::parse_duration(t.get_ref()).map_err(|e| {
            self.err(
                key,
                t.span(),
                format!(
                    "`{}` is not a duration ({e}); write e.g. \"5s\", \"250ms\" or \"5m\"",
                    t.get_ref()
                ),
            )
        })?;
        if d.is_zero() {
            return Err(self.err(key, t.span(), "must be greater than zero"));
        }
        Ok(d)
    }

    fn workers(&self, w: &toml::Spanned<i64>) -> Result<usize, ConfigError> {
        match usize::try_from(*w.get_ref()) {
            Ok(n) if (1..=MAX_WORKERS).contains(&n) => Ok(n),
            _ => Err(self.err(
                "workers",
                w.span(),
                format!(
                    "{} is not a worker count; write a number from 1 to {MAX_WORKERS}, or leave \
                     `workers` out to run one worker per CPU",
                    w.get_ref()
                ),
            )),
        }
    }

    fn socket_addr(&self, key: &str, t: &Text) -> Result<SocketAddr, ConfigError> {
        t.get_ref().parse().map_err(|_| {
            self.err(key, t.span(), format!("`{}` is not an IP:port address; write e.g. \"0.0.0.0:15443\" or \"[::]:15443\"", t.get_ref()))
        })
    }

    fn trust_domain(&self, key: &str, t: &Text) -> Result<TrustDomain, ConfigError> {
        TrustDomain::new(t.get_ref()).map_err(|e| {
            self.err(
                key,
                t.span(),
                format!(
                    "`{}` is not a valid trust domain ({e}); write e.g. \"cluster-a.test\"",
                    t.get_ref()
                ),
            )
        })
    }

    fn convert(&self, raw: FileConfig) -> Result<Config, ConfigError> {
        let trust_domain = self.trust_domain("trust_domain", &raw.trust_domain)?;
        let log_format = match raw.log_format.map(|f| *f.get_ref()) {
            Some(file::FileLogFormat::Json) => LogFormat::Json,
            Some(file::FileLogFormat::Human) | None => LogFormat::Human,
        };
        let drain_timeout = self.duration(
            "drain_timeout",
            raw.drain_timeout.as_ref(),
            DEFAULT_DRAIN_TIMEOUT,
        )?;
        let workers = match &raw.workers {
            None => None,
            Some(w) => Some(self.workers(w)?),
        };
        let identity = match &raw.identity {
            None => None,
            Some(i) => Some(IdentityConfig {
                svid: self.nonempty_path("identity.svid", &i.svid)?,
                key: self.nonempty_path("identity.key", &i.key)?,
                bundle: self.nonempty_path("identity.bundle", &i.bundle)?,
            }),
        };
        let admin = match &raw.admin {
            None => AdminConfig {
                listen: default_admin_listen(),
            },
            Some(a) => AdminConfig {
                listen: self.socket_addr("admin.listen", &a.listen)?,
            },
        };
        let federation = match raw.federation {
            None => None,
            Some(f) => Some(self.federation(f, &trust_domain, identity.as_ref())?),
        };
        let bridge = match &raw.bridge {
            Some(b) => Some(self.bridge(b, &trust_domain)?),
            None => None,
        };
        let mut listeners = Vec::with_capacity(raw.listeners.len());
        let mut names = HashSet::new();
        let mut addrs: Vec<(SocketAddr, String)> = vec![(admin.listen, "admin.listen".into())];
        if let Some(s) = federation.as_ref().and_then(|f| f.serve.as_ref()) {
            addrs.push((s.listen, "federation.serve.listen".into()));
        }
        for (i, l) in raw.listeners.into_iter().enumerate() {
            let key = format!("listeners[{i}]");
            if !names.insert(l.name.get_ref().clone()) {
                return Err(self.err(
                    format!("{key}.name"),
                    l.name.span(),
                    format!(
                        "listener name `{}` is used twice; listener names must be unique",
                        l.name.get_ref()
                    ),
                ));
            }
            let span = l.listen.span();
            let listener =
                self.listener(&key, l, bridge.as_ref(), identity.is_some(), &trust_domain)?;
            if listener.listen.port() != 0 {
                if let Some((_, other)) = addrs.iter().find(|(a, _)| *a == listener.listen) {
                    return Err(self.err(
                        format!("{key}.listen"),
                        span,
                        format!("address {} is already used by `{other}`; give each listener its own port", listener.listen),
                    ));
                }
            }
            addrs.push((listener.listen, format!("{key}.listen")));
            listeners.push(listener);
        }
        Ok(Config {
            source: self.file.to_path_buf(),
            trust_domain,
            log_format,
            drain_timeout,
            workers,
            identity,
            admin,
            federation,
            bridge,
            listeners,
        })
    }

    fn federation(
        &self,
        f: file::FileFederation,
        local: &TrustDomain,
        identity: Option<&IdentityConfig>,
    ) -> Result<FederationConfig, ConfigError> {
        let d = fedgate_refresh_defaults();
        let min_refresh = self.duration("federation.min_refresh", f.min_refresh.as_ref(), d.0)?;
        let max_refresh = self.duration("federation.max_refresh", f.max_refresh.as_ref(), d.1)?;
        let default_refresh = self.duration(
            "federation.default_refresh",
            f.default_refresh.as_ref(),
            d.2,
        )?;
        if min_refresh > max_refresh {
            let span = f
                .min_refresh
                .as_ref()
                .or(f.max_refresh.as_ref())
                .map_or(0..0, |t| t.span());
            return Err(self.err(
                "federation.min_refresh",
                span,
                "must not be greater than federation.max_refresh",
            ));
        }
        if default_refresh < min_refresh || default_refresh > max_refresh {
            let span = f.default_refresh.as_ref().map_or(0..0, |t| t.span());
            return Err(self.err(
                "federation.default_refresh",
                span,
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
                    Some(p) if p.get_ref().starts_with('/') => p.get_ref().clone(),
                    Some(p) => {
                        return Err(self.err(
                            "federation.serve.path",
                            p.span(),
                            "must start with `/`, e.g. \"/\" or \"/bundle\"",
                        ))
                    }
                };
                let profile = match *s.profile.get_ref() {
                    FileProfile::HttpsSpiffe => {
                        if let Some(t) = s.cert.as_ref().or(s.key.as_ref()) {
                            return Err(self.err(
                                "federation.serve",
                                t.span(),
                                "`cert`/`key` belong to profile \"https_web\"; profile \"https_spiffe\" presents the [identity] SVID",
                            ));
                        }
                        let Some(identity) = identity else {
                            return Err(self.err(
                                "federation.serve.profile",
                                s.profile.span(),
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
                                s.profile.span(),
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
                            s.listen.span(),
                            "needs the local bundle to serve: set `bundle` here or add an [identity] table",
                        ))
                    }
                };
                let max_connections = match &s.max_connections {
                    None => DEFAULT_SERVE_MAX_CONNECTIONS,
                    Some(m) => usize::try_from(*m.get_ref())
                        .ok()
                        .filter(|&m| m >= 1)
                        .ok_or_else(|| {
                            self.err(
                                "federation.serve.max_connections",
                                m.span(),
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
                    p.trust_domain.span(),
                    format!("`{trust_domain}` is the local trust domain; peers must be other trust domains"),
                ));
            }
            if !seen.insert(trust_domain.clone()) {
                return Err(self.err(
                    format!("{key}.trust_domain"),
                    p.trust_domain.span(),
                    format!("trust domain `{trust_domain}` has two peer entries; keep one relationship per trust domain"),
                ));
            }
            let url = Url::parse(p.url.get_ref())
                .ok()
                .filter(|u| u.scheme() == "https" && u.host().is_some())
                .ok_or_else(|| {
                    self.err(
                        format!("{key}.url"),
                        p.url.span(),
                        format!(
                            "`{}` is not an https:// URL; federation endpoints are HTTPS only",
                            p.url.get_ref()
                        ),
                    )
                })?;
            let profile = match *p.profile.get_ref() {
                FileProfile::HttpsSpiffe => {
                    if let Some(ca) = &p.ca {
                        return Err(self.err(
                            format!("{key}.ca"),
                            ca.span(),
                            "`ca` belongs to profile \"https_web\"",
                        ));
                    }
                    let (Some(id), Some(boot)) = (&p.endpoint_id, &p.bootstrap_bundle) else {
                        return Err(self.err(
                            format!("{key}.profile"),
                            p.profile.span(),
                            "profile \"https_spiffe\" needs `endpoint_id` (the endpoint's SPIFFE ID) and `bootstrap_bundle` (a file with the endpoint trust domain's bundle)",
                        ));
                    };
                    let endpoint_id = SpiffeId::parse(id.get_ref()).map_err(|e| {
                        self.err(
                            format!("{key}.endpoint_id"),
                            id.span(),
                            format!("`{}` is not a valid SPIFFE ID ({e})", id.get_ref()),
                        )
                    })?;
                    PeerProfile::HttpsSpiffe {
                        endpoint_id,
                        bootstrap_bundle: self
                            .nonempty_path(&format!("{key}.bootstrap_bundle"), boot)?,
                    }
                }
                FileProfile::HttpsWeb => {
                    if let Some(t) = p.endpoint_id.as_ref().or(p.bootstrap_bundle.as_ref()) {
                        return Err(self.err(
                            format!("{key}.profile"),
                            t.span(),
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
            });
        }
        Ok(FederationConfig {
            state_dir: f.state_dir.as_ref().map(|t| self.path(t)),
            distribute_dir: f.distribute_dir.as_ref().map(|t| self.path(t)),
            min_refresh,
            max_refresh,
            default_refresh,
            serve,
            peers,
        })
    }

    fn listener(
        &self,
        key: &str,
        l: FileListener,
        bridge: Option<&BridgeConfig>,
        has_identity: bool,
        local: &TrustDomain,
    ) -> Result<ListenerConfig, ConfigError> {
        let name = l.name.get_ref().clone();
        let valid_name = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid_name {
            return Err(self.err(
                format!("{key}.name"),
                l.name.span(),
                format!(
                    "`{name}` is not a valid listener name; use 1-64 letters, digits, `-` or `_`"
                ),
            ));
        }
        let listen = self.socket_addr(&format!("{key}.listen"), &l.listen)?;
        let kind = match l.kind.get_ref() {
            file::FileListenerKind::Passthrough => ListenerKind::Passthrough,
            file::FileListenerKind::BridgeEgress => ListenerKind::BridgeEgress,
            file::FileListenerKind::BridgeIngress => ListenerKind::BridgeIngress,
        };
        let bridge_listener = self.bridge_listener(key, kind, &l, bridge, has_identity, local)?;
        let d = ListenerLimits::DEFAULT;
        let max_connections = match &l.max_connections {
            None => d.max_connections,
            Some(m) => usize::try_from(*m.get_ref())
                .ok()
                .filter(|&m| m >= 1)
                .ok_or_else(|| {
                    self.err(
                        format!("{key}.max_connections"),
                        m.span(),
                        "must be a positive integer, e.g. 10000",
                    )
                })?,
        };
        let max_client_hello = match &l.max_client_hello {
            None => d.max_client_hello,
            Some(m) => usize::try_from(*m.get_ref())
                .ok()
                .filter(|m| (MIN_CLIENT_HELLO_LIMIT..=MAX_CLIENT_HELLO_LIMIT).contains(m))
                .ok_or_else(|| {
                    self.err(
                        format!("{key}.max_client_hello"),
                        m.span(),
                        format!("must be between {MIN_CLIENT_HELLO_LIMIT} and {MAX_CLIENT_HELLO_LIMIT} bytes (default {})", ListenerLimits::DEFAULT.max_client_hello),
                    )
                })?,
        };
        let limits = ListenerLimits {
            max_connections,
            peek_timeout: self.duration(
                &format!("{key}.peek_timeout"),
                l.peek_timeout.as_ref(),
                d.peek_timeout,
            )?,
            max_client_hello,
            connect_timeout: self.duration(
                &format!("{key}.connect_timeout"),
                l.connect_timeout.as_ref(),
                d.connect_timeout,
            )?,
            idle_timeout: self.duration(
                &format!("{key}.idle_timeout"),
                l.idle_timeout.as_ref(),
                d.idle_timeout,
            )?,
        };

        let mut routes = Vec::with_capacity(l.routes.len());
        let mut table = RouteTable::new();
        let mut route_names = HashSet::new();
        for (j, r) in l.routes.into_iter().enumerate() {
            let rkey = format!("{key}.routes[{j}]");
            table.insert(r.sni.get_ref(), ()).map_err(|e| {
                self.err(format!("{rkey}.sni"), r.sni.span(), format!("{e}; write an exact name (\"api.cluster-b.test\") or a wildcard (\"*.cluster-b.test\")"))
            })?;
            let name = match &r.name {
                Some(n) if n.get_ref().trim().is_empty() => {
                    return Err(self.err(
                        format!("{rkey}.name"),
                        n.span(),
                        "must not be empty (omit it to use the sni pattern)",
                    ))
                }
                Some(n) => n.get_ref().clone(),
                None => r.sni.get_ref().to_ascii_lowercase(),
            };
            if !route_names.insert(name.clone()) {
                let span = r.name.as_ref().map_or(r.sni.span(), |n| n.span());
                return Err(self.err(
                    format!("{rkey}.name"),
                    span,
                    format!("route name `{name}` is used twice in this listener"),
                ));
            }
            if r.upstreams.get_ref().is_empty() {
                return Err(self.err(
                    format!("{rkey}.upstreams"),
                    r.upstreams.span(),
                    "needs at least one \"host:port\" upstream, e.g. [\"10.0.0.7:15443\"]",
                ));
            }
            let mut upstreams = Vec::with_capacity(r.upstreams.get_ref().len());
            for (k, u) in r.upstreams.get_ref().iter().enumerate() {
                let up = Upstream::parse(u.get_ref()).ok_or_else(|| {
                    self.err(
                        format!("{rkey}.upstreams[{k}]"),
                        u.span(),
                        format!("`{}` is not a host:port address; write e.g. \"10.0.0.7:15443\" or \"gw.cluster-b.svc:15443\"", u.get_ref()),
                    )
                })?;
                upstreams.push(up);
            }
            let bridge_route = self.bridge_route(&rkey, kind, &r, bridge)?;
            routes.push(RouteConfig {
                name,
                sni: r.sni.get_ref().to_ascii_lowercase(),
                upstreams,
                bridge: bridge_route,
            });
        }
        if let Some(d) = &l.default_route {
            if !routes.iter().any(|r| &r.name == d.get_ref()) {
                let known: Vec<_> = routes.iter().map(|r| format!("`{}`", r.name)).collect();
                return Err(self.err(
                    format!("{key}.default_route"),
                    d.span(),
                    format!(
                        "no route named `{}` in this listener (routes: {})",
                        d.get_ref(),
                        if known.is_empty() {
                            "none".into()
                        } else {
                            known.join(", ")
                        }
                    ),
                ));
            }
        }
        let splice = match &l.splice {
            Some(s) if kind != ListenerKind::Passthrough => {
                return Err(self.err(
                    format!("{key}.splice"),
                    s.span(),
                    format!(
                        "belongs to kind = \"passthrough\" (bridge listeners decrypt, so their \
                         bytes pass through userspace anyway), not kind = \"{}\"",
                        kind.as_str()
                    ),
                ))
            }
            Some(s) => *s.get_ref(),
            None => false,
        };
        Ok(ListenerConfig {
            name,
            listen,
            kind,
            limits,
            default_route: l.default_route.map(|d| d.into_inner()),
            splice,
            routes,
            bridge: bridge_listener,
        })
    }
}

fn default_admin_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9901))
}

/// (min, max, default) refresh intervals when the file gives none.
fn fedgate_refresh_defaults() -> (Duration, Duration, Duration) {
    (
        Duration::from_secs(30),
        Duration::from_secs(3600),
        Duration::from_secs(300),
    )
}

#[cfg(test)]
mod tests;
