//! Gateway configuration: the TOML file (`source`, `file`) converted into a typed [`Config`] of
//! plain data: values (`values`), listeners with their built route tables (`listener`), the
//! bridge (`bridge`) and federation (`federation`) keys; and the sidecar's file (`sidecar`).
//!
//! Invariants: a `Config` value exists only if every key parsed and every cross-key rule held
//! (parse, don't validate); relative paths are already resolved against the config file's
//! directory; every error names the file, the `line:column`, the dotted key and what would be
//! valid. Nothing here depends on the runtime: config is a leaf. The schema is documented key
//! by key in `docs/configuration.md`.

pub mod agent;
pub mod bridge;
pub mod entries;
pub mod federation;
mod file;
mod identity_source;
pub mod listener;
pub mod sidecar;
pub mod source;
mod values;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use fedgate_federation::TrustDomain;

pub use bridge::{
    BridgeConfig, BridgeIdentity, BridgePeerConfig, EgressRouteConfig, IngressListenerConfig,
    IngressRouteConfig, IssuerSettings, Transport,
};
pub use federation::{
    FederationConfig, PeerConfig, PeerProfile, Pkcs12Config, ServeConfig, ServeProfile,
    DEFAULT_SERVE_MAX_CONNECTIONS,
};
pub use identity_source::workload_api_socket;
pub use listener::{
    ListenerConfig, ListenerKind, ListenerLimits, ListenerMode, Route, RouteConfig,
    MAX_CLIENT_HELLO_LIMIT, MIN_CLIENT_HELLO_LIMIT,
};
pub use source::ConfigError;
pub use values::parse_upstream;

use file::FileConfig;
use source::Source;
use values::Cx;

/// The largest `workers` value accepted (a typo guard, far above any useful count).
pub const MAX_WORKERS: usize = 1024;
/// Default `drain_timeout`.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

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
    /// How each listener's connections are spread across the workers.
    pub accept: Accept,
    /// The gateway's own SVID and its trust domain's bundle. Optional: a pure passthrough
    /// gateway holds no key.
    pub identity: Option<IdentityConfig>,
    /// `[identity] source = "workload_api"`: the Workload API socket the identity comes from
    /// instead (then `identity` is `None`).
    pub identity_socket: Option<PathBuf>,
    pub admin: AdminConfig,
    pub federation: Option<FederationConfig>,
    /// The bridge identity, required by bridge listeners.
    pub bridge: Option<BridgeConfig>,
    pub listeners: Vec<ListenerConfig>,
}

/// How log lines are written: `log_format` in the gateway and sidecar files (the
/// `--log-format` flag overrides it); the one log-format type of the crate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Human,
    /// One JSON object per line, fields flattened.
    Json,
}

/// `accept`: how each listener's connections are spread across the data-plane workers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accept {
    /// One listening socket per listener that every worker polls; the first to accept a new
    /// connection takes it.
    #[default]
    Shared,
    /// One `SO_REUSEPORT` socket per worker and listener: the kernel spreads new connections
    /// over them, so a connection wakes one worker. Refused at start if any other socket
    /// listens on the same port.
    Reuseport,
    /// One listening socket per listener, accepted from by one thread that deals the
    /// connections to the workers in turn.
    Handoff,
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

// === impl Config ===

impl Config {
    /// Reads and checks the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = Source::read(path)?;
        Config::parse(&text, path)
    }

    /// Checks `text` as if read from `path`; relative paths resolve against `path`'s directory.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let src = Source::parse(text, path)?;
        let raw = file::read(&src)?;
        Cx { src: &src }.config(raw)
    }

    /// `listeners: 2, routes: 3, peers: 1` — for `config check` and startup logs.
    pub fn summary(&self) -> String {
        let routes: usize = self.listeners.iter().map(|l| l.routes().len()).sum();
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

// === conversion ===

impl Cx<'_> {
    fn config(&self, raw: FileConfig) -> Result<Config, ConfigError> {
        let trust_domain = self.trust_domain("trust_domain", &raw.trust_domain)?;
        let log_format = raw.log_format.unwrap_or_default();
        let drain_timeout = self.duration(
            "drain_timeout",
            raw.drain_timeout.as_ref(),
            DEFAULT_DRAIN_TIMEOUT,
        )?;
        let workers = match raw.workers {
            None => None,
            Some(w) => Some(self.count("workers", Some(w), 1..=MAX_WORKERS, 0, || {
                format!(
                    "{w} is not a worker count; write a number from 1 to {MAX_WORKERS}, or leave \
                     `workers` out to run one worker per CPU"
                )
            })?),
        };
        let (identity, identity_socket) = match &raw.identity {
            None => (None, None),
            Some(i) => self.identity_source(i)?,
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
            let listener = self.listener(
                &key,
                l,
                bridge.as_ref(),
                identity.is_some() || identity_socket.is_some(),
                &trust_domain,
            )?;
            if !names.insert(listener.name.clone()) {
                return Err(self.err(
                    format!("{key}.name"),
                    format!(
                        "listener name `{}` is used twice; listener names must be unique",
                        listener.name
                    ),
                ));
            }
            if listener.listen.port() != 0 {
                if let Some((_, other)) = addrs.iter().find(|(a, _)| *a == listener.listen) {
                    return Err(self.err(
                        format!("{key}.listen"),
                        format!("address {} is already used by `{other}`; give each listener its own port", listener.listen),
                    ));
                }
            }
            addrs.push((listener.listen, format!("{key}.listen")));
            listeners.push(listener);
        }
        Ok(Config {
            source: self.src.file().to_path_buf(),
            trust_domain,
            log_format,
            drain_timeout,
            workers,
            accept: raw.accept.unwrap_or_default(),
            identity,
            identity_socket,
            admin,
            federation,
            bridge,
            listeners,
        })
    }
}

fn default_admin_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9901))
}

#[cfg(test)]
mod tests;
