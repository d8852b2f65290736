//! The TOML file model: exactly what an operator may write, nothing interpreted yet.
//!
//! Invariants: every table denies unknown keys, so a misspelt key is an error rather than a
//! silently ignored setting; values that need checking beyond their TOML type (addresses,
//! durations, names) are kept as `Spanned<String>` so the typed conversion in `super` can
//! point at their line and column.

use serde::Deserialize;
use toml::Spanned;

/// Raw text with its byte range in the source file.
pub(super) type Text = Spanned<String>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileConfig {
    pub trust_domain: Text,
    pub log_format: Option<Spanned<FileLogFormat>>,
    pub drain_timeout: Option<Text>,
    pub workers: Option<Spanned<i64>>,
    pub identity: Option<FileIdentity>,
    pub admin: Option<FileAdmin>,
    pub federation: Option<FileFederation>,
    pub bridge: Option<FileBridge>,
    #[serde(default)]
    pub listeners: Vec<FileListener>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum FileLogFormat {
    Human,
    Json,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileIdentity {
    pub svid: Text,
    pub key: Text,
    pub bundle: Text,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileAdmin {
    pub listen: Text,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileFederation {
    pub state_dir: Option<Text>,
    pub distribute_dir: Option<Text>,
    pub min_refresh: Option<Text>,
    pub max_refresh: Option<Text>,
    pub default_refresh: Option<Text>,
    pub serve: Option<FileServe>,
    #[serde(default)]
    pub peers: Vec<FilePeer>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum FileProfile {
    HttpsSpiffe,
    HttpsWeb,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileServe {
    pub listen: Text,
    pub path: Option<Text>,
    pub profile: Spanned<FileProfile>,
    pub cert: Option<Text>,
    pub key: Option<Text>,
    pub bundle: Option<Text>,
    pub max_connections: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FilePeer {
    pub trust_domain: Text,
    pub url: Text,
    pub profile: Spanned<FileProfile>,
    pub endpoint_id: Option<Text>,
    pub bootstrap_bundle: Option<Text>,
    pub ca: Option<Text>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(super) enum FileListenerKind {
    Passthrough,
    BridgeEgress,
    BridgeIngress,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileListener {
    pub name: Text,
    pub listen: Text,
    pub kind: Spanned<FileListenerKind>,
    pub max_connections: Option<Spanned<i64>>,
    pub peek_timeout: Option<Text>,
    pub max_client_hello: Option<Spanned<i64>>,
    pub connect_timeout: Option<Text>,
    pub idle_timeout: Option<Text>,
    pub splice: Option<Spanned<bool>>,
    pub default_route: Option<Text>,
    /// bridge-ingress only (see `super::bridge`).
    pub proxy_header_timeout: Option<Text>,
    pub max_proxy_header: Option<Spanned<i64>>,
    #[serde(default)]
    pub bridge_peers: Vec<FileBridgePeer>,
    #[serde(default)]
    pub routes: Vec<FileRoute>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileRoute {
    pub name: Option<Text>,
    pub sni: Text,
    pub upstreams: Spanned<Vec<Text>>,
    /// Bridge route keys (see `super::bridge`).
    pub peer_id: Option<Text>,
    pub allow: Option<Spanned<Vec<Text>>>,
    pub server_id: Option<Spanned<Vec<Text>>>,
    pub send_proxy_header: Option<Spanned<bool>>,
}

/// `[bridge]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileBridge {
    pub trust_domain: Text,
    pub svid: Option<Text>,
    pub key: Option<Text>,
    pub bundle: Text,
    pub session_resumption: Option<bool>,
    /// Instead of `svid`/`key`: obtain the bridge SVID from `fedgate ca serve`.
    pub issuer: Option<FileBridgeIssuer>,
}

/// `[bridge.issuer]` as written (see docs/bridge-ca.md).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileBridgeIssuer {
    pub url: Text,
    pub endpoint_id: Text,
    pub id: Text,
    pub ttl: Option<Text>,
    pub out_dir: Option<Text>,
    pub startup_timeout: Option<Text>,
}

/// `[[listeners.bridge_peers]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileBridgePeer {
    pub id: Text,
    pub may_speak_for: Spanned<Vec<Text>>,
}
