//! `[[listeners]]`: each listener kind of the file model converted into a [`ListenerConfig`]
//! with its limits, its routes and the route table built from them.
//!
//! Invariants: the route table is built here, once, while the routes are checked: it maps
//! every route's SNI pattern (and the default route, if any) to the route's index in
//! `routes`, so the runtime only maps indices to its own values and never re-validates; route
//! names are unique in a listener; every route has at least one upstream. A listener's kind is
//! the variant of [`ListenerMode`], which holds that kind's settings and routes typed by kind,
//! so a bridge setting cannot exist on a passthrough listener or route, nor be missing on a
//! bridge one.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use fedgate_dataplane::route::{RouteError, RouteTable};
use fedgate_federation::TrustDomain;

use fedgate_dataplane::upstreams::Endpoint;

use super::bridge::{BridgeConfig, EgressRouteConfig, IngressListenerConfig, IngressRouteConfig};
use super::file::{self, FileListener, FileListenerOf, FileRouteOf};
use super::source::ConfigError;
use super::values::{parse_upstream, Cx};

/// Largest accepted `max_client_hello`: far above any real ClientHello (post-quantum ones are
/// ~1.8 KiB), small enough that one connection's peek buffer stays cheap.
pub const MAX_CLIENT_HELLO_LIMIT: usize = 256 * 1024;
/// Smallest accepted `max_client_hello`: a minimal ClientHello with SNI needs ~100 bytes.
pub const MIN_CLIENT_HELLO_LIMIT: usize = 512;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerConfig {
    pub name: String,
    pub listen: SocketAddr,
    pub limits: ListenerLimits,
    /// Name of the route used when the SNI is missing or matches no route (passthrough only).
    pub default_route: Option<String>,
    /// Every route's pattern (and the default route) → its index in the mode's `routes`.
    pub route_table: RouteTable<usize>,
    /// The listener's kind, with the settings of that kind and its routes.
    pub mode: ListenerMode,
}

/// A listener's kind with what only that kind has: a bridge setting can only exist on a bridge
/// listener, and every route of a bridge listener has the bridge settings of its kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListenerMode {
    Passthrough {
        /// Move bulk data with splice(2) instead of copying it through userspace
        /// (`fedgate_dataplane::pump`).
        splice: bool,
        routes: Vec<RouteConfig>,
    },
    BridgeEgress {
        routes: Vec<RouteConfig<EgressRouteConfig>>,
    },
    BridgeIngress {
        settings: IngressListenerConfig,
        routes: Vec<RouteConfig<IngressRouteConfig>>,
    },
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

/// A route: its name, SNI pattern and upstreams, and the settings `B` of its listener's kind
/// (`()` for passthrough).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteConfig<B = ()> {
    /// For logs and metrics; defaults to the SNI pattern.
    pub name: String,
    /// `name.example` or `*.example`.
    pub sni: String,
    /// Tried round-robin; the next one on connect failure.
    pub upstreams: Vec<Endpoint>,
    pub bridge: B,
}

/// The part of a route every kind has (see [`ListenerConfig::routes`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route<'a> {
    pub name: &'a str,
    pub sni: &'a str,
    pub upstreams: &'a [Endpoint],
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

impl ListenerConfig {
    pub fn kind(&self) -> ListenerKind {
        match self.mode {
            ListenerMode::Passthrough { .. } => ListenerKind::Passthrough,
            ListenerMode::BridgeEgress { .. } => ListenerKind::BridgeEgress,
            ListenerMode::BridgeIngress { .. } => ListenerKind::BridgeIngress,
        }
    }

    /// Name, pattern and upstreams of every route, in file order (the indices of
    /// `route_table`), whatever the kind.
    pub fn routes(&self) -> Vec<Route<'_>> {
        match &self.mode {
            ListenerMode::Passthrough { routes, .. } => {
                routes.iter().map(RouteConfig::route).collect()
            }
            ListenerMode::BridgeEgress { routes } => {
                routes.iter().map(RouteConfig::route).collect()
            }
            ListenerMode::BridgeIngress { routes, .. } => {
                routes.iter().map(RouteConfig::route).collect()
            }
        }
    }
}

impl<B> RouteConfig<B> {
    pub fn route(&self) -> Route<'_> {
        Route {
            name: &self.name,
            sni: &self.sni,
            upstreams: &self.upstreams,
        }
    }

    /// This route with the settings `bridge` of a bridge kind.
    fn with<C>(self, bridge: C) -> RouteConfig<C> {
        RouteConfig {
            name: self.name,
            sni: self.sni,
            upstreams: self.upstreams,
            bridge,
        }
    }
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
pub fn route_table<B>(
    routes: &[RouteConfig<B>],
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
                let (mut c, routes, ()) = self.listener_of(key, &l, || Ok(()))?;
                if let Some(d) = l.default_route {
                    self.default_route(key, &mut c, &routes, d)?;
                }
                Ok(c.with(ListenerMode::Passthrough {
                    splice: l.splice.unwrap_or(false),
                    routes,
                }))
            }
            FileListener::BridgeEgress(l) => {
                let kind = ListenerKind::BridgeEgress.as_str();
                let (c, routes, b) = self.listener_of(key, &l, || {
                    self.bridge_prereqs(key, kind, bridge, has_identity)
                })?;
                let routes = self.bridge_routes(key, routes, &l, |rkey, r| {
                    self.egress_route(rkey, r, Some(b))
                })?;
                Ok(c.with(ListenerMode::BridgeEgress { routes }))
            }
            FileListener::BridgeIngress(l) => {
                let kind = ListenerKind::BridgeIngress.as_str();
                let (c, routes, settings) = self.listener_of(key, &l, || {
                    let b = self.bridge_prereqs(key, kind, bridge, has_identity)?;
                    self.ingress_settings(key, &l, b, local)
                })?;
                let routes =
                    self.bridge_routes(key, routes, &l, |rkey, r| self.ingress_route(rkey, r))?;
                Ok(c.with(ListenerMode::BridgeIngress { settings, routes }))
            }
        }
    }

    /// The parts every kind shares: name, address, limits and the routes' patterns, names
    /// and upstreams (bridge settings of routes come later, from `bridge_routes`); and the
    /// kind's own listener settings from `settings`, checked after the address and before the
    /// limits (so a file with several mistakes reports them in file order).
    fn listener_of<K: file::Kind, T>(
        &self,
        key: &str,
        l: &FileListenerOf<K>,
        settings: impl FnOnce() -> Result<T, ConfigError>,
    ) -> Result<(Common, Vec<RouteConfig>, T), ConfigError> {
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
        let settings = settings()?;
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
                let up = parse_upstream(u).ok_or_else(|| {
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
                bridge: (),
            });
        }
        let common = Common {
            name,
            listen,
            limits,
            default_route: None,
            route_table,
        };
        Ok((common, routes, settings))
    }

    /// Sets the listener's default route to the route named `d`.
    fn default_route(
        &self,
        key: &str,
        c: &mut Common,
        routes: &[RouteConfig],
        d: String,
    ) -> Result<(), ConfigError> {
        let Some(i) = routes.iter().position(|r| r.name == d) else {
            let known: Vec<_> = routes.iter().map(|r| format!("`{}`", r.name)).collect();
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

    /// Each route with its bridge settings, from `route` applied to the route as written.
    fn bridge_routes<K: file::Kind, B>(
        &self,
        key: &str,
        routes: Vec<RouteConfig>,
        l: &FileListenerOf<K>,
        route: impl Fn(&str, &FileRouteOf<K>) -> Result<B, ConfigError>,
    ) -> Result<Vec<RouteConfig<B>>, ConfigError> {
        routes
            .into_iter()
            .zip(&l.routes)
            .enumerate()
            .map(|(j, (out, r))| Ok(out.with(route(&format!("{key}.routes[{j}]"), r)?)))
            .collect()
    }
}

/// A listener before its mode is known (see [`Cx::listener`]).
struct Common {
    name: String,
    listen: SocketAddr,
    limits: ListenerLimits,
    default_route: Option<String>,
    route_table: RouteTable<usize>,
}

impl Common {
    fn with(self, mode: ListenerMode) -> ListenerConfig {
        ListenerConfig {
            name: self.name,
            listen: self.listen,
            limits: self.limits,
            default_route: self.default_route,
            route_table: self.route_table,
            mode,
        }
    }
}
