//! The bridge keys of the config file: the `[bridge]` table, the `bridge-egress` and
//! `bridge-ingress` listener kinds with their `bridge_peers`, and the bridge keys of routes
//! (`peer_id`, `allow`, `server_id`, `send_proxy_header`). Documented in docs/configuration.md.
//! `send_proxy_header` defaults to true on egress routes and to false on ingress routes.
//!
//! Invariants: a bridge listener exists only with a `[bridge]` table and an `[identity]` (the
//! local SVID it terminates and re-originates with); the bridge trust domain differs from the
//! local one; every egress route pins a `peer_id` in the bridge trust domain; every ingress
//! route names its allowed destination IDs; no bridge peer may speak for the local trust
//! domain; bridge listeners have no default route (no route → deny); keys of one
//! kind are refused on another kind instead of being ignored (`super::file::Refused`).

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use fedgate_federation::tls::Authorizer;
use fedgate_federation::{SpiffeId, TrustDomain};

use super::file::{
    BridgeEgress, BridgeIngress, FileBridge, FileBridgeIssuer, FileListenerOf, FileRouteOf,
};
use super::source::ConfigError;
use super::values::Cx;

/// Default `proxy_header_timeout` of a bridge ingress.
pub const DEFAULT_PROXY_HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Default `max_proxy_header` of a bridge ingress: room for two SPIFFE IDs (2 KiB each at most)
/// and a destination name.
pub const DEFAULT_MAX_PROXY_HEADER: usize = 4096;
/// Bounds of `max_proxy_header`: the 16-byte preamble plus IPv6 addresses, up to the format's
/// own 16-bit length limit.
pub const MAX_PROXY_HEADER_RANGE: std::ops::RangeInclusive<usize> = 64..=(16 + 65535);

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

/// The gateway's bridge identity: its bridge SVID and the bridge trust domain's bundle, both
/// watched and reloaded like `[identity]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BridgeConfig {
    pub trust_domain: TrustDomain,
    /// Where the bridge SVID comes from.
    pub identity: BridgeIdentity,
    pub bundle: PathBuf,
    /// TLS session resumption on the bridge listeners' hops (off by default).
    pub session_resumption: bool,
}

/// Where the gateway's bridge SVID comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BridgeIdentity {
    /// `svid` and `key` files, watched and reloaded.
    Files { svid: PathBuf, key: PathBuf },
    /// `[bridge.issuer]`: obtained and renewed from the bridge CA's issuing endpoint.
    Issuer(IssuerSettings),
}

/// What a bridge-ingress listener adds to a listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IngressListenerConfig {
    pub peers: Vec<BridgePeerConfig>,
    pub proxy_header_timeout: Duration,
    pub max_proxy_header: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BridgePeerConfig {
    pub id: SpiffeId,
    pub may_speak_for: Vec<TrustDomain>,
}

/// Default `mux_pool_size` of a `transport = "mux"` egress route: two tunnels, so one
/// tunnel's loss (or drain) never leaves the route without a live tunnel for long.
pub const DEFAULT_MUX_POOL_SIZE: usize = 2;
/// Bounds of `mux_pool_size`.
pub const MUX_POOL_SIZE_RANGE: std::ops::RangeInclusive<usize> = 1..=64;
/// Default `mux_max_streams`: concurrent streams per tunnel before another tunnel is opened.
pub const DEFAULT_MUX_MAX_STREAMS: usize = 256;
/// Bounds of `mux_max_streams` (HTTP/2 stream IDs are 31 bits; far fewer are sensible).
pub const MUX_MAX_STREAMS_RANGE: std::ops::RangeInclusive<usize> = 1..=10_000;

/// How an egress route reaches its peer ingress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// One bridge mTLS connection per caller connection, origin in a PROXY v2 header (default).
    Tls,
    /// Streams over a pool of long-lived bridge mTLS tunnels speaking HTTP/2 (docs/bridge.md
    /// "Multiplexed transport").
    Mux {
        /// Tunnels per route at most.
        pool_size: usize,
        /// Concurrent streams per tunnel at most.
        max_streams: usize,
    },
}

/// What a bridge-egress route adds to a route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EgressRouteConfig {
    /// The peer ingress gateway's bridge ID, pinned at handshake time.
    pub peer_id: SpiffeId,
    /// Caller IDs allowed; empty denies everyone.
    pub allow: Authorizer,
    /// Send the PROXY v2 origin header upstream (default true: a fedgate ingress needs it;
    /// false for an upstream that is a plain mTLS server).
    pub send_proxy_header: bool,
    /// Per-connection TLS (default) or multiplexed tunnels.
    pub transport: Transport,
}

/// What a bridge-ingress route adds to a route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IngressRouteConfig {
    /// Destination IDs accepted when re-originating.
    pub server_id: Authorizer,
    /// Origin IDs allowed; empty denies everyone.
    pub allow: Authorizer,
    pub send_proxy_header: bool,
}

// === conversion ===

impl Cx<'_> {
    pub(super) fn bridge(
        &self,
        b: &FileBridge,
        local: &TrustDomain,
    ) -> Result<BridgeConfig, ConfigError> {
        let trust_domain = self.trust_domain("bridge.trust_domain", &b.trust_domain)?;
        if &trust_domain == local {
            return Err(self.err(
                "bridge.trust_domain",
                format!(
                    "`{trust_domain}` is the local trust domain; the bridge needs its own trust \
                     domain and CA (e.g. \"bridge.example\")"
                ),
            ));
        }
        let identity = match (&b.svid, &b.key, &b.issuer) {
            (Some(svid), Some(key), None) => BridgeIdentity::Files {
                svid: self.nonempty_path("bridge.svid", svid)?,
                key: self.nonempty_path("bridge.key", key)?,
            },
            (None, None, Some(issuer)) => {
                BridgeIdentity::Issuer(self.bridge_issuer(issuer, &trust_domain)?)
            }
            (_, _, Some(_)) => {
                return Err(self.err(
                    "bridge.issuer",
                    "give either `svid` + `key` (files) or [bridge.issuer] (obtained from \
                     `fedgate ca serve`), not both",
                ))
            }
            _ => {
                return Err(self.err(
                    "bridge.svid",
                    "[bridge] needs `svid` and `key` (the bridge SVID files), or a \
                     [bridge.issuer] table to obtain it from `fedgate ca serve`",
                ))
            }
        };
        Ok(BridgeConfig {
            trust_domain,
            identity,
            bundle: self.nonempty_path("bridge.bundle", &b.bundle)?,
            session_resumption: b.session_resumption.unwrap_or(false),
        })
    }

    /// `[bridge.issuer]`: the endpoint URL (https, no userinfo), its ID and the requested ID,
    /// both in the bridge trust domain.
    fn bridge_issuer(
        &self,
        i: &FileBridgeIssuer,
        bridge_td: &TrustDomain,
    ) -> Result<IssuerSettings, ConfigError> {
        let url: reqwest::Url = i.url.parse().map_err(|e| {
            self.err(
                "bridge.issuer.url",
                format!("`{}` is not a URL ({e})", i.url),
            )
        })?;
        if url.scheme() != "https" || !url.username().is_empty() || url.password().is_some() {
            return Err(self.err(
                "bridge.issuer.url",
                "must be an https URL without userinfo, e.g. \"https://bridge-ca.example:9600/\"",
            ));
        }
        let bridge_id = |key: &str, t: &String| {
            let id = SpiffeId::parse(t)
                .map_err(|e| self.err(key, format!("`{}` is not a SPIFFE ID ({e})", t)))?;
            if id.trust_domain() != bridge_td || id.path().is_empty() {
                return Err(self.err(
                    key,
                    format!(
                        "`{id}` must be an ID with a path in the bridge trust domain {bridge_td}"
                    ),
                ));
            }
            Ok(id)
        };
        let endpoint_id = bridge_id("bridge.issuer.endpoint_id", &i.endpoint_id)?;
        let id = bridge_id("bridge.issuer.id", &i.id)?;
        let ttl = match &i.ttl {
            Some(t) => Some(self.duration("bridge.issuer.ttl", Some(t), Duration::ZERO)?),
            None => None,
        };
        Ok(IssuerSettings {
            url,
            endpoint_id,
            id,
            ttl,
            out_dir: i
                .out_dir
                .as_ref()
                .map(|t| self.nonempty_path("bridge.issuer.out_dir", t))
                .transpose()?,
            startup_timeout: self.duration(
                "bridge.issuer.startup_timeout",
                i.startup_timeout.as_ref(),
                DEFAULT_STARTUP_TIMEOUT,
            )?,
        })
    }

    /// What every bridge listener needs: the `[bridge]` table and an `[identity]`.
    pub(super) fn bridge_prereqs<'b>(
        &self,
        key: &str,
        kind_name: &str,
        bridge: Option<&'b BridgeConfig>,
        has_identity: bool,
    ) -> Result<&'b BridgeConfig, ConfigError> {
        let Some(bridge) = bridge else {
            return Err(self.err(
                format!("{key}.kind"),
                format!(
                    "kind = \"{kind_name}\" needs a [bridge] table (trust_domain, svid, key, \
                     bundle: the gateway's bridge identity)"
                ),
            ));
        };
        if !has_identity {
            return Err(self.err(
                format!("{key}.kind"),
                format!(
                    "kind = \"{kind_name}\" terminates and re-originates mTLS with the local SVID: \
                     add an [identity] table with svid, key and bundle (or source = \
                     \"workload_api\" and a socket)"
                ),
            ));
        }
        Ok(bridge)
    }

    /// The listener-level settings of a bridge ingress: PROXY header limits and its peers.
    pub(super) fn ingress_settings(
        &self,
        key: &str,
        l: &FileListenerOf<BridgeIngress>,
        bridge: &BridgeConfig,
        local: &TrustDomain,
    ) -> Result<IngressListenerConfig, ConfigError> {
        let proxy_header_timeout = self.duration(
            &format!("{key}.proxy_header_timeout"),
            l.proxy_header_timeout.as_ref(),
            DEFAULT_PROXY_HEADER_TIMEOUT,
        )?;
        let max_proxy_header = self.count(
            &format!("{key}.max_proxy_header"),
            l.max_proxy_header,
            MAX_PROXY_HEADER_RANGE,
            DEFAULT_MAX_PROXY_HEADER,
            || {
                format!(
                    "must be between {} and {} bytes (default {DEFAULT_MAX_PROXY_HEADER})",
                    MAX_PROXY_HEADER_RANGE.start(),
                    MAX_PROXY_HEADER_RANGE.end()
                )
            },
        )?;
        let bridge_peers = l.bridge_peers.as_deref().unwrap_or_default();
        if bridge_peers.is_empty() {
            return Err(self.err(
                format!("{key}.kind"),
                "a bridge-ingress needs at least one [[listeners.bridge_peers]] entry \
                 (id = the peer gateway's bridge SPIFFE ID, may_speak_for = its trust domains)",
            ));
        }
        let mut peers = Vec::with_capacity(bridge_peers.len());
        let mut seen = HashSet::new();
        for (i, p) in bridge_peers.iter().enumerate() {
            let pkey = format!("{key}.bridge_peers[{i}]");
            let id = self.spiffe_id(&format!("{pkey}.id"), &p.id)?;
            if id.trust_domain() != &bridge.trust_domain {
                return Err(self.err(
                    format!("{pkey}.id"),
                    format!(
                        "`{id}` is not in the bridge trust domain `{}`; bridge peers are \
                         identified by their bridge SVIDs",
                        bridge.trust_domain
                    ),
                ));
            }
            if !seen.insert(id.clone()) {
                return Err(self.err(
                    format!("{pkey}.id"),
                    format!("bridge peer `{id}` is listed twice; keep one entry per peer"),
                ));
            }
            let mut may_speak_for = Vec::with_capacity(p.may_speak_for.len());
            for (j, t) in p.may_speak_for.iter().enumerate() {
                let tkey = format!("{pkey}.may_speak_for[{j}]");
                let td = self.trust_domain(&tkey, t)?;
                if td == bridge.trust_domain {
                    return Err(self.err(
                        tkey,
                        "the bridge trust domain is not a workload domain; list the trust \
                         domains whose workloads this peer relays (e.g. \"cluster-a.test\")",
                    ));
                }
                if &td == local {
                    return Err(self.err(
                        tkey,
                        format!(
                            "`{td}` is this gateway's own trust domain (`trust_domain`); a bridge \
                             peer must never speak for our own workloads: remove it and list only \
                             the peer's trust domains"
                        ),
                    ));
                }
                may_speak_for.push(td);
            }
            peers.push(BridgePeerConfig { id, may_speak_for });
        }
        Ok(IngressListenerConfig {
            peers,
            proxy_header_timeout,
            max_proxy_header,
        })
    }

    /// The bridge keys of an egress route: the pinned peer (in the bridge trust domain when
    /// there is a `[bridge]`), the callers allowed and the PROXY header switch.
    pub(super) fn egress_route(
        &self,
        rkey: &str,
        r: &FileRouteOf<BridgeEgress>,
        bridge: Option<&BridgeConfig>,
    ) -> Result<EgressRouteConfig, ConfigError> {
        let Some(p) = &r.peer_id else {
            return Err(self.err(
                format!("{rkey}.sni"),
                "a bridge-egress route needs `peer_id`: the bridge SPIFFE ID of the peer \
                 ingress gateway (e.g. \"spiffe://bridge.example/gateway/cluster-b\")",
            ));
        };
        let peer_id = self.spiffe_id(&format!("{rkey}.peer_id"), p)?;
        if let Some(b) = bridge {
            if peer_id.trust_domain() != &b.trust_domain {
                return Err(self.err(
                    format!("{rkey}.peer_id"),
                    format!(
                        "`{peer_id}` is not in the bridge trust domain `{}`",
                        b.trust_domain
                    ),
                ));
            }
        }
        // On by default: the usual upstream is a fedgate ingress, which refuses a
        // connection without the header.
        let send_proxy_header = r.send_proxy_header.unwrap_or(true);
        Ok(EgressRouteConfig {
            peer_id,
            allow: self.allow_list(&format!("{rkey}.allow"), r.allow.as_deref())?,
            send_proxy_header,
            transport: self.transport(rkey, r, send_proxy_header)?,
        })
    }

    /// `transport`, `mux_pool_size` and `mux_max_streams` of an egress route. The mux keys
    /// are refused without `transport = "mux"`, and mux needs the origin to be sent
    /// (`send_proxy_header` not false): a tunnel always carries it.
    fn transport(
        &self,
        rkey: &str,
        r: &FileRouteOf<BridgeEgress>,
        send_proxy_header: bool,
    ) -> Result<Transport, ConfigError> {
        match r.transport.as_deref() {
            None | Some("tls") => {
                for (key, set) in [
                    ("mux_pool_size", r.mux_pool_size.is_some()),
                    ("mux_max_streams", r.mux_max_streams.is_some()),
                ] {
                    if set {
                        return Err(self.err(
                            format!("{rkey}.{key}"),
                            "applies only to transport = \"mux\"; set transport = \"mux\" \
                             or remove it",
                        ));
                    }
                }
                Ok(Transport::Tls)
            }
            Some("mux") => {
                if !send_proxy_header {
                    return Err(self.err(
                        format!("{rkey}.transport"),
                        "transport = \"mux\" tunnels to a fedgate bridge ingress, which needs \
                         the origin; remove send_proxy_header = false",
                    ));
                }
                let pool_size = self.count(
                    &format!("{rkey}.mux_pool_size"),
                    r.mux_pool_size,
                    MUX_POOL_SIZE_RANGE,
                    DEFAULT_MUX_POOL_SIZE,
                    || {
                        format!(
                            "must be between {} and {} tunnels (default \
                             {DEFAULT_MUX_POOL_SIZE})",
                            MUX_POOL_SIZE_RANGE.start(),
                            MUX_POOL_SIZE_RANGE.end()
                        )
                    },
                )?;
                let max_streams = self.count(
                    &format!("{rkey}.mux_max_streams"),
                    r.mux_max_streams,
                    MUX_MAX_STREAMS_RANGE,
                    DEFAULT_MUX_MAX_STREAMS,
                    || {
                        format!(
                            "must be between {} and {} streams per tunnel (default \
                             {DEFAULT_MUX_MAX_STREAMS})",
                            MUX_MAX_STREAMS_RANGE.start(),
                            MUX_MAX_STREAMS_RANGE.end()
                        )
                    },
                )?;
                Ok(Transport::Mux {
                    pool_size,
                    max_streams,
                })
            }
            Some(other) => Err(self.err(
                format!("{rkey}.transport"),
                format!("`{other}` is not a transport; use \"tls\" (the default) or \"mux\""),
            )),
        }
    }

    /// The bridge keys of an ingress route: the destination IDs (required), the origins
    /// allowed and the PROXY header switch (off by default).
    pub(super) fn ingress_route(
        &self,
        rkey: &str,
        r: &FileRouteOf<BridgeIngress>,
    ) -> Result<IngressRouteConfig, ConfigError> {
        let server_id = self.allow_list(&format!("{rkey}.server_id"), r.server_id.as_deref())?;
        if server_id.allows_nothing() {
            return Err(self.src.error_at(
                format!("{rkey}.server_id"),
                &format!(
                    "{rkey}.{}",
                    if r.server_id.is_some() {
                        "server_id"
                    } else {
                        "sni"
                    }
                ),
                "a bridge-ingress route needs `server_id`: the destination's allowed \
                 SPIFFE IDs (e.g. [\"spiffe://cluster-b.test/ns/demo/sa/echo\"])",
            ));
        }
        Ok(IngressRouteConfig {
            server_id,
            allow: self.allow_list(&format!("{rkey}.allow"), r.allow.as_deref())?,
            send_proxy_header: r.send_proxy_header.unwrap_or(false),
        })
    }
}

#[cfg(test)]
mod tests;
