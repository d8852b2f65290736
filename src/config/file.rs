//! The TOML file model: exactly what an operator may write, nothing interpreted yet.
//!
//! Invariants: every table denies unknown keys, so a misspelt key is an error rather than a
//! silently ignored setting; a listener is one of three kinds (`kind = "..."` is the tag), and
//! a key that belongs to another kind has the type [`Refused`], which cannot be built: writing
//! it fails deserialization with a message naming the kind it belongs to. Values that need
//! checking beyond their TOML type (addresses, durations, names) stay strings; their key path
//! locates them in the source (`super::source`).

use std::convert::Infallible;
use std::fmt::Debug;
use std::marker::PhantomData;

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};

use super::source::{ConfigError, Source};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileConfig {
    pub trust_domain: String,
    pub log_format: Option<crate::config::LogFormat>,
    pub drain_timeout: Option<String>,
    pub workers: Option<i64>,
    pub accept: Option<crate::config::Accept>,
    pub identity: Option<FileIdentity>,
    pub admin: Option<FileAdmin>,
    pub federation: Option<FileFederation>,
    pub bridge: Option<FileBridge>,
    #[serde(default)]
    pub listeners: Vec<FileListener>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileIdentity {
    #[serde(default)]
    pub source: FileIdentitySource,
    pub svid: Option<String>,
    pub key: Option<String>,
    pub bundle: Option<String>,
    pub socket: Option<String>,
}

/// `[identity] source` (see `super::identity_source`).
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum FileIdentitySource {
    #[default]
    Files,
    WorkloadApi,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileAdmin {
    pub listen: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileFederation {
    pub state_dir: Option<String>,
    pub distribute_dir: Option<String>,
    pub distribute_pkcs12: Option<bool>,
    pub distribute_pkcs12_all: Option<bool>,
    pub pkcs12_password_file: Option<String>,
    pub min_refresh: Option<String>,
    pub max_refresh: Option<String>,
    pub default_refresh: Option<String>,
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
    pub listen: String,
    pub path: Option<String>,
    pub profile: FileProfile,
    pub cert: Option<String>,
    pub key: Option<String>,
    pub bundle: Option<String>,
    pub max_connections: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FilePeer {
    pub trust_domain: String,
    pub url: String,
    pub profile: FileProfile,
    pub endpoint_id: Option<String>,
    pub bootstrap_bundle: Option<String>,
    pub ca: Option<String>,
    /// Readiness waits for this peer's bundle (default: only for its first fetch attempt).
    pub required: Option<bool>,
}

/// `[bridge]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileBridge {
    pub trust_domain: String,
    pub svid: Option<String>,
    pub key: Option<String>,
    pub bundle: String,
    pub session_resumption: Option<bool>,
    /// Instead of `svid`/`key`: obtain the bridge SVID from `fedgate ca serve`.
    pub issuer: Option<FileBridgeIssuer>,
}

/// `[bridge.issuer]` as written (see docs/bridge-ca.md).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileBridgeIssuer {
    pub url: String,
    pub endpoint_id: String,
    pub id: String,
    pub ttl: Option<String>,
    pub out_dir: Option<String>,
    pub startup_timeout: Option<String>,
}

/// `[[listeners.bridge_peers]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileBridgePeer {
    pub id: String,
    pub may_speak_for: Vec<String>,
}

// === listeners ===

/// `[[listeners]]`, one variant per `kind`.
#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub(super) enum FileListener {
    Passthrough(FileListenerOf<Passthrough>),
    BridgeEgress(FileListenerOf<BridgeEgress>),
    BridgeIngress(FileListenerOf<BridgeIngress>),
}

/// The keys of a listener of kind `K`; those of other kinds have type [`Refused`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, bound = "")]
pub(super) struct FileListenerOf<K: Kind> {
    pub name: String,
    pub listen: String,
    pub max_connections: Option<i64>,
    pub peek_timeout: Option<String>,
    pub max_client_hello: Option<i64>,
    pub connect_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub splice: Option<K::Splice>,
    pub default_route: Option<K::DefaultRoute>,
    pub proxy_header_timeout: Option<K::IngressText>,
    pub max_proxy_header: Option<K::IngressInt>,
    pub bridge_peers: Option<K::BridgePeers>,
    #[serde(default)]
    pub routes: Vec<FileRouteOf<K>>,
}

/// `[[listeners.routes]]` of a listener of kind `K`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, bound = "")]
pub(super) struct FileRouteOf<K: Kind> {
    pub name: Option<String>,
    pub sni: String,
    pub upstreams: Vec<String>,
    pub peer_id: Option<K::PeerId>,
    pub allow: Option<K::Allow>,
    pub server_id: Option<K::ServerId>,
    pub send_proxy_header: Option<K::SendProxyHeader>,
    pub transport: Option<K::Transport>,
    pub mux_pool_size: Option<K::MuxInt>,
    pub mux_max_streams: Option<K::MuxInt>,
}

/// A listener kind: its name and the types of its kind-specific keys.
pub(super) trait Kind: Debug + 'static {
    const NAME: &'static str;
    type Splice: DeserializeOwned + Debug;
    type DefaultRoute: DeserializeOwned + Debug;
    type IngressText: DeserializeOwned + Debug;
    type IngressInt: DeserializeOwned + Debug;
    type BridgePeers: DeserializeOwned + Debug;
    type PeerId: DeserializeOwned + Debug;
    type Allow: DeserializeOwned + Debug;
    type ServerId: DeserializeOwned + Debug;
    type SendProxyHeader: DeserializeOwned + Debug;
    /// `transport`, `mux_pool_size`, `mux_max_streams`: bridge-egress routes only.
    type Transport: DeserializeOwned + Debug;
    type MuxInt: DeserializeOwned + Debug;
}

#[derive(Debug)]
pub(super) struct Passthrough;
#[derive(Debug)]
pub(super) struct BridgeEgress;
#[derive(Debug)]
pub(super) struct BridgeIngress;

impl Kind for Passthrough {
    const NAME: &'static str = "passthrough";
    type Splice = bool;
    type DefaultRoute = String;
    type IngressText = Refused<IngressKey<Self>>;
    type IngressInt = Refused<IngressKey<Self>>;
    type BridgePeers = Refused<IngressKey<Self>>;
    type PeerId = Refused<RouteKey<Self>>;
    type Allow = Refused<RouteKey<Self>>;
    type ServerId = Refused<RouteKey<Self>>;
    type SendProxyHeader = Refused<RouteKey<Self>>;
    type Transport = Refused<RouteKey<Self>>;
    type MuxInt = Refused<RouteKey<Self>>;
}

impl Kind for BridgeEgress {
    const NAME: &'static str = "bridge-egress";
    type Splice = Refused<PassthroughKey<Self>>;
    type DefaultRoute = Refused<NoDefaultRoute>;
    type IngressText = Refused<IngressKey<Self>>;
    type IngressInt = Refused<IngressKey<Self>>;
    type BridgePeers = Refused<IngressKey<Self>>;
    type PeerId = String;
    type Allow = Vec<String>;
    type ServerId = Refused<RouteKey<Self>>;
    type SendProxyHeader = bool;
    type Transport = String;
    type MuxInt = i64;
}

impl Kind for BridgeIngress {
    const NAME: &'static str = "bridge-ingress";
    type Splice = Refused<PassthroughKey<Self>>;
    type DefaultRoute = Refused<NoDefaultRoute>;
    type IngressText = String;
    type IngressInt = i64;
    type BridgePeers = Vec<FileBridgePeer>;
    type PeerId = Refused<RouteKey<Self>>;
    type Allow = Vec<String>;
    type ServerId = Vec<String>;
    type SendProxyHeader = bool;
    type Transport = Refused<RouteKey<Self>>;
    type MuxInt = Refused<RouteKey<Self>>;
}

// === Refused ===

/// A key that is not valid where it is written: deserializing it always fails with
/// `R::message()`, so a value of this type never exists.
pub(super) struct Refused<R> {
    never: Infallible,
    reason: PhantomData<R>,
}

/// Why a [`Refused`] key is refused.
pub(super) trait Refusal {
    fn message() -> String;
}

/// A bridge-ingress key on a listener of kind `K`.
pub(super) struct IngressKey<K>(PhantomData<K>);
/// A passthrough key (`splice`) on a listener of kind `K`.
pub(super) struct PassthroughKey<K>(PhantomData<K>);
/// A route key of another kind on a route of kind `K`.
pub(super) struct RouteKey<K>(PhantomData<K>);
/// `default_route` on a bridge listener.
pub(super) struct NoDefaultRoute;

impl<K: Kind> Refusal for IngressKey<K> {
    fn message() -> String {
        format!(
            "belongs to kind = \"bridge-ingress\", not kind = \"{}\"",
            K::NAME
        )
    }
}

impl<K: Kind> Refusal for PassthroughKey<K> {
    fn message() -> String {
        format!(
            "belongs to kind = \"passthrough\" (bridge listeners decrypt, so their bytes pass \
             through userspace anyway), not kind = \"{}\"",
            K::NAME
        )
    }
}

impl<K: Kind> Refusal for RouteKey<K> {
    fn message() -> String {
        format!(
            "is not a key of routes of kind = \"{}\" (see docs/configuration.md)",
            K::NAME
        )
    }
}

impl Refusal for NoDefaultRoute {
    fn message() -> String {
        "bridge listeners have no default route: a destination without a route is refused".into()
    }
}

impl<'de, R: Refusal> Deserialize<'de> for Refused<R> {
    fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(D::Error::custom(R::message()))
    }
}

impl<R> Debug for Refused<R> {
    fn fmt(&self, _: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Refused { never, reason: _ } = self;
        match *never {}
    }
}

// === reading ===

/// Deserializes `src` into the file model. An error inside a listener is located by reading
/// that listener again as its own kind (the `kind` tag buffers a listener's keys, which loses
/// the position of errors inside it).
pub(super) fn read(src: &Source<'_>) -> Result<FileConfig, ConfigError> {
    let e = match src.deserialize::<FileConfig>() {
        Ok(file) => return Ok(file),
        Err(e) => e,
    };
    let Some(listener) = e
        .span()
        .and_then(|s| src.path_at(s.start))
        .filter(|p| p.starts_with("listeners[") && p.ends_with(']') && !p.contains('.'))
    else {
        return Err(src.de_error(&e));
    };
    let again = match src.str_at(&format!("{listener}.kind")) {
        Some(Passthrough::NAME) => again::<Passthrough>(src, &listener),
        Some(BridgeEgress::NAME) => again::<BridgeEgress>(src, &listener),
        Some(BridgeIngress::NAME) => again::<BridgeIngress>(src, &listener),
        _ => None,
    };
    Err(src.de_error(again.as_ref().unwrap_or(&e)))
}

fn again<K: Kind>(src: &Source<'_>, listener: &str) -> Option<toml_edit::de::Error> {
    src.deserialize_table::<FileListenerOf<K>>(listener, &["kind"])?
        .err()
}
