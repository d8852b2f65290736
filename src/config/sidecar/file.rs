//! The sidecar file model: exactly the keys `sidecar.toml` may hold, nothing interpreted yet.
//!
//! Invariant: every table denies unknown keys, so a misspelt key is an error, not a silently
//! ignored setting; durations are parsed by `humantime_serde`, everything else is checked by
//! the conversion in `super`.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::config) struct FileConfig {
    pub(super) trust_domain: String,
    pub(super) identity: FileIdentity,
    pub(super) admin: Option<FileAdmin>,
    pub(super) log_format: Option<crate::config::LogFormat>,
    #[serde(default, with = "humantime_serde")]
    pub(super) reload_interval: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub(super) drain_timeout: Option<Duration>,
    #[serde(default)]
    pub(super) outbound: Vec<FileOutbound>,
    #[serde(default)]
    pub(super) inbound: Vec<FileInbound>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileIdentity {
    /// `files` (the default) or `workload_api`, as the gateway's `[identity] source`.
    #[serde(default)]
    pub(super) source: crate::config::file::FileIdentitySource,
    pub(super) svid: Option<PathBuf>,
    pub(super) key: Option<PathBuf>,
    pub(super) bundle: Option<PathBuf>,
    pub(super) federated_bundles: Option<PathBuf>,
    /// The Workload API address (`unix:///…`), with `source = "workload_api"` only.
    pub(super) socket: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileAdmin {
    pub(super) listen: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileOutbound {
    pub(super) name: String,
    pub(super) listen: String,
    pub(super) server_name: String,
    pub(super) connect: Vec<String>,
    #[serde(default)]
    pub(super) allow: Vec<String>,
    #[serde(default, with = "humantime_serde")]
    pub(super) connect_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub(super) handshake_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub(super) idle_timeout: Option<Duration>,
    pub(super) max_connections: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileInbound {
    pub(super) name: String,
    pub(super) listen: String,
    pub(super) forward: String,
    #[serde(default)]
    pub(super) allow: Vec<String>,
    #[serde(default)]
    pub(super) proxy_protocol: bool,
    #[serde(default)]
    pub(super) trusted_relays: Vec<String>,
    #[serde(default, with = "humantime_serde")]
    pub(super) proxy_header_timeout: Option<Duration>,
    pub(super) max_proxy_header: Option<usize>,
    #[serde(default, with = "humantime_serde")]
    pub(super) connect_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub(super) handshake_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub(super) idle_timeout: Option<Duration>,
    pub(super) max_connections: Option<usize>,
}

/// The keys every listener has (`[[outbound]]` and `[[inbound]]`), for one conversion of both.
/// The file structs repeat them instead of flattening this struct in: serde's `flatten` would
/// lose `deny_unknown_fields` positions (an unknown key would be reported at its table, not
/// at its line).
pub(super) struct FileLimits {
    pub(super) connect_timeout: Option<Duration>,
    pub(super) handshake_timeout: Option<Duration>,
    pub(super) idle_timeout: Option<Duration>,
    pub(super) max_connections: Option<usize>,
}

macro_rules! limits_of {
    ($($file:ty),*) => {$(
        impl $file {
            pub(super) fn limits(&self) -> FileLimits {
                FileLimits {
                    connect_timeout: self.connect_timeout,
                    handshake_timeout: self.handshake_timeout,
                    idle_timeout: self.idle_timeout,
                    max_connections: self.max_connections,
                }
            }
        }
    )*};
}

limits_of!(FileOutbound, FileInbound);
