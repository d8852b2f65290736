//! `[[listeners]]`: each listener kind of the file model converted into a [`ListenerConfig`]
//! with its limits, its routes and the route table built from them.
//!
//! Invariants: the route table is built here, once, while the routes are checked: it maps
//! every route's SNI pattern (and the default route, if any) to the route's index in
//! `routes`, so the runtime only maps indices to its own values and never re-validates; route
//! names are unique in a listener; every route has at least one upstream; bridge listeners
//! carry their bridge settings and every route its bridge settings, passthrough ones none.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use fedgate_dataplane::route::{RouteError, RouteTable};
use fedgate_federation::TrustDomain;

use super::bridge::{BridgeConfig, BridgeListenerConfig, BridgeRouteConfig};
use super::file::{self, FileListener, FileListenerOf, FileRouteOf};
use super::source::ConfigError;
use super::values::{Cx, Upstream};

/// Largest accepted `max_client_hello`: far above any real ClientHello (post-quantum ones are
/// ~1.8 KiB), small enough that one connection's peek buffer stays cheap.
pub const MAX_CLIENT_HELLO_LIMIT: usize = 256 * 1024;
/// Smallest accepted `max_client_hello`: a minimal ClientHello with SNI needs ~100 bytes.
pub const MIN_CLIENT_HELLO_LIMIT: usize = 512;

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
    /// Every route's pattern (and the default route) → its index in `routes`.
    pub route_table: RouteTable<usize>,
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

impl ListenerLimits {
    pub const DEFAULT: ListenerLimits = ListenerLimits {
        max_connections: 10_000,
        peek_timeout: Duration::from_secs(5),
        max_client_hello: fedgate_dataplane::sni::MAX_CLIENT_HELLO,
        connect_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(300),
    };
}

impl ListenerKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            ListenerKind::Passthrough => "passthrough",
            ListenerKind::BridgeEgress => "bridge-egress",
            ListenerKind::BridgeIngress => "bridge-ingress",
        }
    }
}

/// The route table of `routes` (route index by pattern), with the route named `default_route`
/// as the default. For building a [`ListenerConfig`] by hand; files go through `Config::parse`.
pub fn route_table(
    routes: &[RouteConfig],
    default_route: Option<&str>,
) -> Result<RouteTable<usize>, RouteError> {
    let mut table = RouteTable::new();
    for (i, r) in routes.iter().enumerate() {
        table.insert(&r.sni, i)?;
        if default_route == Some(r.name.as_str()) {
            table.set_default(i);
        }
    }
    Ok(table)
}

// === conversion ===

impl Cx<'_> {
    pub(super) fn listener(
        &self,
        key: &str,
        l: FileListener,
        bridge: Option<&BridgeConfig>,
        has_identity: bool,
        local: &TrustDomain,
    ) -> Result<ListenerConfig, ConfigError> {
        match l {
            FileListener::Passthrough(l) => {
                let mut c = self.listener_of(key, &l, ListenerKind::Passthrough, || Ok(None))?;
                c.splice = l.splice.unwrap_or(false);
                if let Some(d) = l.default_route {
                    self.default_route(key, &mut c, d)?;
                }
                Ok(c)
            }
            FileListener::BridgeEgress(l) => {
                let kind = ListenerKind::BridgeEgress;
                let mut b = None;
                let c = self.listener_of(key, &l, kind, || {
                    b = Some(self.bridge_prereqs(key, kind.as_str(), bridge, has_identity)?);
                    Ok(Some(BridgeListenerConfig::Egress))
                })?;
                self.bridge_routes(key, c, &l, |rkey, r| self.egress_route(rkey, r, b))
            }
            FileListener::BridgeIngress(l) => {
                let kind = ListenerKind::BridgeIngress;
                let c = self.listener_of(key, &l, kind, || {
                    let b = self.bridge_prereqs(key, kind.as_str(), bridge, has_identity)?;
                    Ok(Some(self.ingress_settings(key, &l, b, local)?))
                })?;
                self.bridge_routes(key, c, &l, |rkey, r| self.ingress_route(rkey, r))
            }
        }
    }

    /// The parts every kind shares: name, address, limits and the routes' patterns, names
    /// and upstreams (bridge settings of routes come later, from `bridge_routes`).
    fn listener_of<K: file::Kind>(
        &self,
        key: &str,
        l: &FileListenerOf<K>,
        kind: ListenerKind,
        bridge: impl FnOnce() -> Result<Option<BridgeListenerConfig>, ConfigError>,
    ) -> Result<ListenerConfig, ConfigError> {
        let name = l.name.clone();
        let valid_name = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid_name {
            return Err(self.err(
                format!("{key}.name"),
                format!(
                    "`{name}` is not a valid listener name; use 1-64 letters, digits, `-` or `_`"
                ),
            ));
        }
        let listen = self.socket_addr(&format!("{key}.listen"), &l.listen)?;
        let bridge = bridge()?;
        let d = ListenerLimits::DEFAULT;
        let limits = ListenerLimits {
            max_connections: self.count(
                &format!("{key}.max_connections"),
                l.max_connections,
                1..=usize::MAX,
                d.max_connections,
                || "must be a positive integer, e.g. 10000".into(),
            )?,
            peek_timeout: self.duration(
                &format!("{key}.peek_timeout"),
                l.peek_timeout.as_ref(),
                d.peek_timeout,
            )?,
            max_client_hello: self.count(
                &format!("{key}.max_client_hello"),
                l.max_client_hello,
                MIN_CLIENT_HELLO_LIMIT..=MAX_CLIENT_HELLO_LIMIT,
                d.max_client_hello,
                || {
                    format!(
                        "must be between {MIN_CLIENT_HELLO_LIMIT} and {MAX_CLIENT_HELLO_LIMIT} \
                         bytes (default {})",
                        d.max_client_hello
                    )
                },
            )?,
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
        let mut route_table = RouteTable::new();
        let mut route_names = HashSet::new();
        for (j, r) in l.routes.iter().enumerate() {
            let rkey = format!("{key}.routes[{j}]");
            route_table.insert(&r.sni, j).map_err(|e| {
                self.err(
                    format!("{rkey}.sni"),
                    format!(
                        "{e}; write an exact name (\"api.cluster-b.test\") or a wildcard \
                         (\"*.cluster-b.test\")"
                    ),
                )
            })?;
            let name = match &r.name {
                Some(n) if n.trim().is_empty() => {
                    return Err(self.err(
                        format!("{rkey}.name"),
                        "must not be empty (omit it to use the sni pattern)",
                    ))
                }
                Some(n) => n.clone(),
                None => r.sni.to_ascii_lowercase(),
            };
            if !route_names.insert(name.clone()) {
                let at = if r.name.is_some() { "name" } else { "sni" };
                return Err(self.src.error_at(
                    format!("{rkey}.name"),
                    &format!("{rkey}.{at}"),
                    format!("route name `{name}` is used twice in this listener"),
                ));
            }
            if r.upstreams.is_empty() {
                return Err(self.err(
                    format!("{rkey}.upstreams"),
                    "needs at least one \"host:port\" upstream, e.g. [\"10.0.0.7:15443\"]",
                ));
            }
            let mut upstreams = Vec::with_capacity(r.upstreams.len());
            for (k, u) in r.upstreams.iter().enumerate() {
                let up = Upstream::parse(u).ok_or_else(|| {
                    self.err(
                        format!("{rkey}.upstreams[{k}]"),
                        format!(
                            "`{u}` is not a host:port address; write e.g. \"10.0.0.7:15443\" or \
                             \"gw.cluster-b.svc:15443\""
                        ),
                    )
                })?;
                upstreams.push(up);
            }
            routes.push(RouteConfig {
                name,
                sni: r.sni.to_ascii_lowercase(),
                upstreams,
                bridge: None,
            });
        }
        Ok(ListenerConfig {
            name,
            listen,
            kind,
            limits,
            default_route: None,
            splice: false,
            routes,
            route_table,
            bridge,
        })
    }

    /// Sets the listener's default route to the route named `d`.
    fn default_route(
        &self,
        key: &str,
        c: &mut ListenerConfig,
        d: String,
    ) -> Result<(), ConfigError> {
        let Some(i) = c.routes.iter().position(|r| r.name == d) else {
            let known: Vec<_> = c.routes.iter().map(|r| format!("`{}`", r.name)).collect();
            return Err(self.err(
                format!("{key}.default_route"),
                format!(
                    "no route named `{d}` in this listener (routes: {})",
                    if known.is_empty() {
                        "none".into()
                    } else {
                        known.join(", ")
                    }
                ),
            ));
        };
        c.route_table.set_default(i);
        c.default_route = Some(d);
        Ok(())
    }

    /// Adds each route's bridge settings, from `route` applied to the route as written.
    fn bridge_routes<K: file::Kind>(
        &self,
        key: &str,
        mut c: ListenerConfig,
        l: &FileListenerOf<K>,
        route: impl Fn(&str, &FileRouteOf<K>) -> Result<BridgeRouteConfig, ConfigError>,
    ) -> Result<ListenerConfig, ConfigError> {
        for (j, (r, out)) in l.routes.iter().zip(&mut c.routes).enumerate() {
            out.bridge = Some(route(&format!("{key}.routes[{j}]"), r)?);
        }
        Ok(c)
    }
}
