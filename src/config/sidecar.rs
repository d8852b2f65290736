//! The sidecar's configuration file (`sidecar.toml`): a serde file model that refuses unknown keys,
//! converted into a typed [`Config`] ("parse, don't validate"). It shares the gateway config's
//! source and error machinery (`super::source`): errors read `file:line:col: \`key\`: message`.
//!
//! Invariants:
//! * every path in a [`Config`] is absolute or relative to the process's working directory: paths
//!   in the file are resolved against the file's own directory;
//! * every allow list is an [`Authorizer`] built from config patterns; an empty or missing list
//!   denies everyone;
//! * listener names are unique across `[[outbound]]` and `[[inbound]]`, so they can be metric
//!   labels and lookup keys;
//! * `[identity]` is either files (`svid`, `key`, `bundle`, optional `federated_bundles`; the
//!   default, `source = "files"`) or a Workload API socket (`source = "workload_api"`,
//!   `socket = "unix:///…"`), never a mix: the keys are checked by the gateway's rules
//!   (`super::identity_source`), so a key of the other source is an error naming it.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use fedgate_dataplane::upstreams::Endpoint;
use fedgate_federation::tls::Authorizer;
use fedgate_federation::TrustDomain;
use rustls_pki_types::ServerName;

pub use super::source::ConfigError;
use super::source::{self, DirRelative, Source};
use super::values::Cx;
pub use super::LogFormat;

/// Default poll interval for the identity files.
pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(1);
/// Default bound on draining live connections after SIGTERM.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
const DEFAULT_PROXY_HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Default bound on concurrent connections per listener (as `ca serve`'s `max_connections`).
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
// A PROXY v2 header with two SPIFFE IDs (2 KiB each at most) and an authority fits easily.
const DEFAULT_MAX_PROXY_HEADER: usize = 4096;
// The v2 fixed part is 16 bytes; 65,551 is the most the 16-bit length field can declare.
const MAX_PROXY_HEADER_LIMIT: usize = 16 + u16::MAX as usize;

/// The validated sidecar configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// The workload's own trust domain; the SVID must belong to it.
    pub trust_domain: TrustDomain,
    /// Where the SVID and bundles come from.
    pub identity: WorkloadIdentity,
    /// Admin HTTP listener (`/healthz`, `/metrics`), if any.
    pub admin: Option<SocketAddr>,
    /// The CLI flag `--log-format` overrides it.
    pub log_format: Option<LogFormat>,
    /// How often the identity files are polled (unused with the Workload API, which streams).
    pub reload_interval: Duration,
    pub drain_timeout: Duration,
    pub outbound: Vec<OutboundConfig>,
    pub inbound: Vec<InboundConfig>,
}

/// Where the workload identity and the trust bundles come from (`[identity] source`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WorkloadIdentity {
    /// `source = "files"` (the default): files polled every `reload_interval`.
    Files(IdentityPaths),
    /// `source = "workload_api"`: the `FetchX509SVID` stream of the agent listening on this
    /// Unix socket supplies the SVID, the local bundle and the federated bundles.
    WorkloadApi { socket: PathBuf },
}

impl WorkloadIdentity {
    /// The identity files, with `source = "files"`.
    pub fn files(&self) -> Option<&IdentityPaths> {
        match self {
            Self::Files(paths) => Some(paths),
            Self::WorkloadApi { .. } => None,
        }
    }

    /// The Workload API socket, with `source = "workload_api"`.
    pub fn socket(&self) -> Option<&Path> {
        match self {
            Self::Files(_) => None,
            Self::WorkloadApi { socket } => Some(socket),
        }
    }
}

/// Where the workload identity and the trust bundles live (`source = "files"`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityPaths {
    /// X509-SVID chain, leaf first (PEM).
    pub svid: PathBuf,
    /// The SVID's private key (PEM).
    pub key: PathBuf,
    /// The local trust domain's bundle (SPIFFE bundle JWKS).
    pub bundle: PathBuf,
    /// A SPIFFE bundle map (`{"trust_domains": {"td": JWKS, ...}}`, SPIFFE_Trust_Domain_and_Bundle.md §5) with peer trust domains' bundles.
    pub federated_bundles: Option<PathBuf>,
}

/// App → plain TCP → sidecar → mTLS → (gateway) → peer.
#[derive(Clone, Debug)]
pub struct OutboundConfig {
    pub name: String,
    pub listen: SocketAddr,
    /// SNI sent to the server (the gateways route on it).
    pub server_name: ServerName<'static>,
    /// `host:port` endpoints dialled round-robin, next on failure.
    pub connect: Vec<Endpoint>,
    /// Server SPIFFE IDs this listener may talk to.
    pub allow: Authorizer,
    pub limits: ConnectionLimits,
}

/// Peer → mTLS → sidecar → plain TCP → app.
#[derive(Clone, Debug)]
pub struct InboundConfig {
    pub name: String,
    pub listen: SocketAddr,
    /// `host:port` of the local app.
    pub forward: Endpoint,
    /// Client SPIFFE IDs allowed to reach the app (for relayed connections: the origin ID).
    pub allow: Authorizer,
    /// Send a PROXY v2 header with the verified IDs to the app.
    pub proxy_protocol: bool,
    /// Clients that must start with their own PROXY v2 header naming the origin they relay for.
    pub trusted_relays: Authorizer,
    pub proxy_header_timeout: Duration,
    pub max_proxy_header: usize,
    pub limits: ConnectionLimits,
}

/// The timeouts and connection limit every sidecar listener has (the same keys in
/// `[[outbound]]` and `[[inbound]]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub connect_timeout: Duration,
    pub handshake_timeout: Duration,
    pub idle_timeout: Duration,
    /// Connections beyond this many are closed at once, before any TLS, and counted.
    pub max_connections: usize,
}

mod file;

use super::file::FileIdentitySource;
use file::{FileConfig, FileIdentity, FileInbound, FileLimits, FileOutbound};

// === impl Config ===

impl Config {
    /// Reads and validates `path`; relative paths inside resolve against its directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        source::load(path)
    }

    /// Parses `text`; `base` is the directory relative paths resolve against and `origin`
    /// names the file in errors.
    pub fn parse(text: &str, base: &Path, origin: &Path) -> Result<Self, ConfigError> {
        source::parse(text, base, origin)
    }

    /// The names of every listener, outbound first.
    pub fn listener_names(&self) -> impl Iterator<Item = &str> {
        self.outbound
            .iter()
            .map(|o| o.name.as_str())
            .chain(self.inbound.iter().map(|i| i.name.as_str()))
    }
}

impl DirRelative for Config {
    type File = FileConfig;

    fn check(src: &Source<'_>, file: FileConfig, base: &Path) -> Result<Self, ConfigError> {
        Validator { src }.config(file, base)
    }
}

// === impl Validator ===

/// Converts the file model into a `Config`, naming the offending key in every error.
struct Validator<'a> {
    src: &'a Source<'a>,
}

impl Validator<'_> {
    fn invalid(&self, key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        self.src.error(key, message)
    }

    fn config(&self, file: FileConfig, base: &Path) -> Result<Config, ConfigError> {
        let trust_domain = Cx { src: self.src }.trust_domain("trust_domain", &file.trust_domain)?;
        let identity = self.identity(file.identity, base)?;
        let admin = file
            .admin
            .map(|a| self.socket_addr("admin.listen", &a.listen))
            .transpose()?;
        let reload_interval = file.reload_interval.unwrap_or(DEFAULT_RELOAD_INTERVAL);
        if reload_interval.is_zero() {
            return Err(self.invalid("reload_interval", "must be greater than zero (e.g. \"1s\")"));
        }
        let outbound = file
            .outbound
            .into_iter()
            .enumerate()
            .map(|(i, o)| self.outbound(i, o))
            .collect::<Result<Vec<_>, _>>()?;
        let inbound = file
            .inbound
            .into_iter()
            .enumerate()
            .map(|(i, o)| self.inbound(i, o))
            .collect::<Result<Vec<_>, _>>()?;
        if outbound.is_empty() && inbound.is_empty() {
            return Err(self.invalid(
                "outbound/inbound",
                "no listener: add at least one [[outbound]] or [[inbound]] table",
            ));
        }
        let mut names = HashSet::new();
        let keyed = outbound
            .iter()
            .enumerate()
            .map(|(i, o)| (format!("outbound[{i}].name"), &o.name))
            .chain(
                inbound
                    .iter()
                    .enumerate()
                    .map(|(i, o)| (format!("inbound[{i}].name"), &o.name)),
            );
        for (key, name) in keyed {
            if !names.insert(name.as_str()) {
                return Err(self.invalid(
                    key,
                    format!("listener name {name:?} is used twice; names must be unique"),
                ));
            }
        }
        Ok(Config {
            trust_domain,
            identity,
            admin,
            log_format: file.log_format,
            reload_interval,
            drain_timeout: file.drain_timeout.unwrap_or(DEFAULT_DRAIN_TIMEOUT),
            outbound,
            inbound,
        })
    }

    /// `[identity]`: the files (relative to `base`) or the Workload API socket.
    fn identity(&self, i: FileIdentity, base: &Path) -> Result<WorkloadIdentity, ConfigError> {
        match i.source {
            FileIdentitySource::Files => {
                super::identity_source::files_keys(self.src, i.socket.as_deref())?;
                let required = |key: &str, p: Option<PathBuf>| {
                    p.map(|p| base.join(p)).ok_or_else(|| {
                        self.invalid(
                            format!("identity.{key}"),
                            super::identity_source::MISSING_FILE_KEY,
                        )
                    })
                };
                Ok(WorkloadIdentity::Files(IdentityPaths {
                    svid: required("svid", i.svid)?,
                    key: required("key", i.key)?,
                    bundle: required("bundle", i.bundle)?,
                    federated_bundles: i.federated_bundles.map(|p| base.join(p)),
                }))
            }
            FileIdentitySource::WorkloadApi => {
                let file_keys = [
                    ("svid", i.svid.is_some()),
                    ("key", i.key.is_some()),
                    ("bundle", i.bundle.is_some()),
                    ("federated_bundles", i.federated_bundles.is_some()),
                ];
                let socket = super::identity_source::workload_api_keys(
                    self.src,
                    &file_keys,
                    i.socket.as_deref(),
                )?;
                Ok(WorkloadIdentity::WorkloadApi { socket })
            }
        }
    }

    fn outbound(&self, i: usize, o: FileOutbound) -> Result<OutboundConfig, ConfigError> {
        let key = |k: &str| format!("outbound[{i}].{k}");
        let limits = o.limits();
        let name = self.name(&key("name"), o.name)?;
        let listen = self.socket_addr(&key("listen"), &o.listen)?;
        let server_name = ServerName::try_from(o.server_name.clone()).map_err(|_| {
            self.invalid(
                key("server_name"),
                format!(
                    "{:?} is not a valid server name (write a DNS name such as \
                     \"echo.cluster-b.test\")",
                    o.server_name
                ),
            )
        })?;
        if o.connect.is_empty() {
            return Err(self.invalid(
                key("connect"),
                "is empty: list at least one \"host:port\" to dial",
            ));
        }
        let connect = o
            .connect
            .iter()
            .enumerate()
            .map(|(j, c)| self.host_port(&format!("{}[{j}]", key("connect")), c))
            .collect::<Result<_, _>>()?;
        let allow = self.allow_list(&key("allow"), &o.allow)?;
        Ok(OutboundConfig {
            name,
            listen,
            server_name,
            connect,
            allow,
            limits: self.limits(&key, &limits)?,
        })
    }

    fn inbound(&self, i: usize, o: FileInbound) -> Result<InboundConfig, ConfigError> {
        let key = |k: &str| format!("inbound[{i}].{k}");
        let limits = o.limits();
        let name = self.name(&key("name"), o.name)?;
        let listen = self.socket_addr(&key("listen"), &o.listen)?;
        let forward = self.host_port(&key("forward"), &o.forward)?;
        let allow = self.allow_list(&key("allow"), &o.allow)?;
        let trusted_relays = self.allow_list(&key("trusted_relays"), &o.trusted_relays)?;
        let max_proxy_header = o.max_proxy_header.unwrap_or(DEFAULT_MAX_PROXY_HEADER);
        if !(16..=MAX_PROXY_HEADER_LIMIT).contains(&max_proxy_header) {
            return Err(self.invalid(
                key("max_proxy_header"),
                format!(
                    "{max_proxy_header} is out of range: a PROXY v2 header is 16 to \
                     {MAX_PROXY_HEADER_LIMIT} bytes"
                ),
            ));
        }
        Ok(InboundConfig {
            name,
            listen,
            forward,
            allow,
            proxy_protocol: o.proxy_protocol,
            trusted_relays,
            proxy_header_timeout: self.timeout(
                &key("proxy_header_timeout"),
                o.proxy_header_timeout,
                DEFAULT_PROXY_HEADER_TIMEOUT,
            )?,
            max_proxy_header,
            limits: self.limits(&key, &limits)?,
        })
    }

    /// The limits of one listener; `key` gives the dotted path of one of its keys.
    fn limits(
        &self,
        key: &dyn Fn(&str) -> String,
        l: &FileLimits,
    ) -> Result<ConnectionLimits, ConfigError> {
        Ok(ConnectionLimits {
            connect_timeout: self.timeout(
                &key("connect_timeout"),
                l.connect_timeout,
                DEFAULT_CONNECT_TIMEOUT,
            )?,
            handshake_timeout: self.timeout(
                &key("handshake_timeout"),
                l.handshake_timeout,
                DEFAULT_HANDSHAKE_TIMEOUT,
            )?,
            idle_timeout: self.timeout(
                &key("idle_timeout"),
                l.idle_timeout,
                DEFAULT_IDLE_TIMEOUT,
            )?,
            max_connections: self.max_connections(&key("max_connections"), l.max_connections)?,
        })
    }

    fn name(&self, key: &str, name: String) -> Result<String, ConfigError> {
        let ok = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if ok {
            Ok(name)
        } else {
            Err(self.invalid(
                key,
                format!("{name:?} is not a valid name: use letters, digits, '-', '_' or '.'"),
            ))
        }
    }

    fn socket_addr(&self, key: &str, s: &str) -> Result<SocketAddr, ConfigError> {
        s.parse().map_err(|_| {
            self.invalid(
                key,
                format!("{s:?} is not an IP socket address (write e.g. \"127.0.0.1:7001\")"),
            )
        })
    }

    fn host_port(&self, key: &str, s: &str) -> Result<Endpoint, ConfigError> {
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return Ok(Endpoint::from(addr));
        }
        let parsed = s.rsplit_once(':').and_then(|(host, port)| {
            let port = port.parse::<u16>().ok().filter(|p| *p > 0)?;
            (!host.is_empty() && !host.contains(':')).then(|| Endpoint::new(host, port))
        });
        if let Some(endpoint) = parsed {
            Ok(endpoint)
        } else {
            Err(self.invalid(
                key,
                format!(
                    "{s:?} is not \"host:port\" (write e.g. \"127.0.0.1:8080\" or \"[::1]:8080\")"
                ),
            ))
        }
    }

    fn allow_list(&self, key: &str, patterns: &[String]) -> Result<Authorizer, ConfigError> {
        Authorizer::from_patterns(patterns).map_err(|e| self.invalid(key, e.to_string()))
    }

    fn max_connections(&self, key: &str, value: Option<usize>) -> Result<usize, ConfigError> {
        match value {
            Some(0) => Err(self.invalid(
                key,
                format!("must be at least 1 (default {DEFAULT_MAX_CONNECTIONS})"),
            )),
            Some(n) => Ok(n),
            None => Ok(DEFAULT_MAX_CONNECTIONS),
        }
    }

    fn timeout(
        &self,
        key: &str,
        value: Option<Duration>,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        match value {
            Some(d) if d.is_zero() => {
                Err(self.invalid(key, "must be greater than zero (e.g. \"5s\")"))
            }
            Some(d) => Ok(d),
            None => Ok(default),
        }
    }
}

#[cfg(test)]
mod tests;
