//! The bridge keys of the config file: the `[bridge]` table, the `bridge-egress` and
//! `bridge-ingress` listener kinds with their `bridge_peers`, and the bridge keys of routes
//! (`peer_id`, `allow`, `server_id`, `send_proxy_header`). Documented in docs/configuration.md.
//! `send_proxy_header` defaults to true on egress routes and to false on ingress routes.
//!
//! Invariants: a bridge listener exists only with a `[bridge]` table and an `[identity]` (the
//! local SVID it terminates and re-originates with); the bridge trust domain differs from the
//! local one; every egress route pins a `peer_id` in the bridge trust domain; every ingress
//! route names its allowed destination IDs; no bridge peer may speak for the local trust
//! domain; bridge listeners have no default route (no route → deny); keys of one kind are refused on another kind instead of being ignored.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use fedgate_federation::tls::Authorizer;
use fedgate_federation::{SpiffeId, TrustDomain};
use serde::Deserialize;
use toml::Spanned;

use super::file::{FileListener, FileRoute, Text};
use super::{ConfigError, Cx, ListenerKind};
use crate::identity::issuer::settings::IssuerSettings;

/// Default `proxy_header_timeout` of a bridge ingress.
pub const DEFAULT_PROXY_HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Default `max_proxy_header` of a bridge ingress: room for two SPIFFE IDs (2 KiB each at most)
/// and a destination name.
pub const DEFAULT_MAX_PROXY_HEADER: usize = 4096;
/// Bounds of `max_proxy_header`: the 16-byte preamble plus IPv6 addresses, up to the format's
/// own 16-bit length limit.
pub const MAX_PROXY_HEADER_RANGE: std::ops::RangeInclusive<usize> = 64..=(16 + 65535);

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

/// What a bridge listener adds to a listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BridgeListenerConfig {
    Egress,
    Ingress {
        peers: Vec<BridgePeerConfig>,
        proxy_header_timeout: Duration,
        max_proxy_header: usize,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BridgePeerConfig {
    pub id: SpiffeId,
    pub may_speak_for: Vec<TrustDomain>,
}

/// What a bridge route adds to a route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BridgeRouteConfig {
    Egress {
        /// The peer ingress gateway's bridge ID, pinned at handshake time.
        peer_id: SpiffeId,
        /// Caller IDs allowed; empty denies everyone.
        allow: Authorizer,
        /// Send the PROXY v2 origin header upstream (default true: a fedgate ingress needs it;
        /// false for an upstream that is a plain mTLS server).
        send_proxy_header: bool,
    },
    Ingress {
        /// Destination IDs accepted when re-originating.
        server_id: Authorizer,
        /// Origin IDs allowed; empty denies everyone.
        allow: Authorizer,
        send_proxy_header: bool,
    },
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
                b.trust_domain.span(),
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
            (_, _, Some(issuer)) => {
                return Err(self.err(
                    "bridge.issuer",
                    issuer.url.span(),
                    "give either `svid` + `key` (files) or [bridge.issuer] (obtained from \
                     `fedgate ca serve`), not both",
                ))
            }
            _ => {
                return Err(self.err(
                    "bridge.svid",
                    b.trust_domain.span(),
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
        let url: reqwest::Url = i.url.get_ref().parse().map_err(|e| {
            self.err(
                "bridge.issuer.url",
                i.url.span(),
                format!("`{}` is not a URL ({e})", i.url.get_ref()),
            )
        })?;
        if url.scheme() != "https" || !url.username().is_empty() || url.password().is_some() {
            return Err(self.err(
                "bridge.issuer.url",
                i.url.span(),
                "must be an https URL without userinfo, e.g. \"https://bridge-ca.example:9600/\"",
            ));
        }
        let bridge_id = |key: &str, t: &Text| {
            let id = SpiffeId::parse(t.get_ref()).map_err(|e| {
                self.err(
                    key,
                    t.span(),
                    format!("`{}` is not a SPIFFE ID ({e})", t.get_ref()),
                )
            })?;
            if id.trust_domain() != bridge_td || id.path().is_empty() {
                return Err(self.err(
                    key,
                    t.span(),
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
                crate::identity::issuer::settings::DEFAULT_STARTUP_TIMEOUT,
            )?,
        })
    }

    /// The listener-level bridge settings of `l` (of kind `kind`), after checking that keys of
    /// other kinds are absent and that bridge listeners have what they need.
    pub(super) fn bridge_listener(
        &self,
        key: &str,
        kind: ListenerKind,
        l: &FileListener,
        bridge: Option<&BridgeConfig>,
        has_identity: bool,
        local: &TrustDomain,
    ) -> Result<Option<BridgeListenerConfig>, ConfigError> {
        let kind_name = kind.as_str();
        let ingress_only = [
            (
                "proxy_header_timeout",
                l.proxy_header_timeout.as_ref().map(|t| t.span()),
            ),
            (
                "max_proxy_header",
                l.max_proxy_header.as_ref().map(|t| t.span()),
            ),
            ("bridge_peers", l.bridge_peers.first().map(|p| p.id.span())),
        ];
        if kind != ListenerKind::BridgeIngress {
            if let Some((k, Some(span))) = ingress_only.iter().find(|(_, s)| s.is_some()) {
                return Err(self.err(
                    format!("{key}.{k}"),
                    span.clone(),
                    format!("belongs to kind = \"bridge-ingress\", not kind = \"{kind_name}\""),
                ));
            }
        }
        if kind == ListenerKind::Passthrough {
            return Ok(None);
        }
        let kind_span = l.kind.span();
        let Some(bridge) = bridge else {
            return Err(self.err(
                format!("{key}.kind"),
                kind_span,
                format!(
                    "kind = \"{kind_name}\" needs a [bridge] table (trust_domain, svid, key, \
                     bundle: the gateway's bridge identity)"
                ),
            ));
        };
        if !has_identity {
            return Err(self.err(
                format!("{key}.kind"),
                kind_span,
                format!(
                    "kind = \"{kind_name}\" terminates and re-originates mTLS with the local SVID: \
                     add an [identity] table with svid, key and bundle"
                ),
            ));
        }
        if let Some(d) = &l.default_route {
            return Err(self.err(
                format!("{key}.default_route"),
                d.span(),
                "bridge listeners have no default route: a destination without a route is refused",
            ));
        }
        if kind == ListenerKind::BridgeEgress {
            return Ok(Some(BridgeListenerConfig::Egress));
        }
        let proxy_header_timeout = self.duration(
            &format!("{key}.proxy_header_timeout"),
            l.proxy_header_timeout.as_ref(),
            DEFAULT_PROXY_HEADER_TIMEOUT,
        )?;
        let max_proxy_header = match &l.max_proxy_header {
            None => DEFAULT_MAX_PROXY_HEADER,
            Some(m) => usize::try_from(*m.get_ref())
                .ok()
                .filter(|m| MAX_PROXY_HEADER_RANGE.contains(m))
                .ok_or_else(|| {
                    self.err(
                        format!("{key}.max_proxy_header"),
                        m.span(),
                        format!(
                            "must be between {} and {} bytes (default {DEFAULT_MAX_PROXY_HEADER})",
                            MAX_PROXY_HEADER_RANGE.start(),
                            MAX_PROXY_HEADER_RANGE.end()
                        ),
                    )
                })?,
        };
        if l.bridge_peers.is_empty() {
            return Err(self.err(
                format!("{key}.kind"),
                kind_span,
                "a bridge-ingress needs at least one [[listeners.bridge_peers]] entry \
                 (id = the peer gateway's bridge SPIFFE ID, may_speak_for = its trust domains)",
            ));
        }
        let mut peers = Vec::with_capacity(l.bridge_peers.len());
        let mut seen = HashSet::new();
        for (i, p) in l.bridge_peers.iter().enumerate() {
            let pkey = format!("{key}.bridge_peers[{i}]");
            let id = self.spiffe_id(&format!("{pkey}.id"), &p.id)?;
            if id.trust_domain() != &bridge.trust_domain {
                return Err(self.err(
                    format!("{pkey}.id"),
                    p.id.span(),
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
                    p.id.span(),
                    format!("bridge peer `{id}` is listed twice; keep one entry per peer"),
                ));
            }
            let mut may_speak_for = Vec::with_capacity(p.may_speak_for.get_ref().len());
            for (j, t) in p.may_speak_for.get_ref().iter().enumerate() {
                let tkey = format!("{pkey}.may_speak_for[{j}]");
                let td = self.trust_domain(&tkey, t)?;
                if td == bridge.trust_domain {
                    return Err(self.err(
                        tkey,
                        t.span(),
                        "the bridge trust domain is not a workload domain; list the trust \
                         domains whose workloads this peer relays (e.g. \"cluster-a.test\")",
                    ));
                }
                if &td == local {
                    return Err(self.err(
                        tkey,
                        t.span(),
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
        Ok(Some(BridgeListenerConfig::Ingress {
            peers,
            proxy_header_timeout,
            max_proxy_header,
        }))
    }

    /// The bridge keys of route `r` of a listener of kind `kind`.
    pub(super) fn bridge_route(
        &self,
        rkey: &str,
        kind: ListenerKind,
        r: &FileRoute,
        bridge: Option<&BridgeConfig>,
    ) -> Result<Option<BridgeRouteConfig>, ConfigError> {
        let egress_only = [("peer_id", r.peer_id.as_ref().map(|t| t.span()))];
        let ingress_only = [("server_id", r.server_id.as_ref().map(|t| t.span()))];
        let bridge_only = [
            ("allow", r.allow.as_ref().map(|t| t.span())),
            (
                "send_proxy_header",
                r.send_proxy_header.as_ref().map(|t| t.span()),
            ),
        ];
        let refuse = |keys: &[(&str, Option<std::ops::Range<usize>>)]| match keys
            .iter()
            .find(|(_, s)| s.is_some())
        {
            Some((k, Some(span))) => Err(self.err(
                format!("{rkey}.{k}"),
                span.clone(),
                format!(
                    "is not a key of routes of kind = \"{}\" (see docs/configuration.md)",
                    kind.as_str()
                ),
            )),
            _ => Ok(()),
        };
        match kind {
            ListenerKind::Passthrough => {
                refuse(&egress_only)?;
                refuse(&ingress_only)?;
                refuse(&bridge_only)?;
                Ok(None)
            }
            ListenerKind::BridgeEgress => {
                refuse(&ingress_only)?;
                let Some(p) = &r.peer_id else {
                    return Err(self.err(
                        format!("{rkey}.sni"),
                        r.sni.span(),
                        "a bridge-egress route needs `peer_id`: the bridge SPIFFE ID of the peer \
                         ingress gateway (e.g. \"spiffe://bridge.example/gateway/cluster-b\")",
                    ));
                };
                let peer_id = self.spiffe_id(&format!("{rkey}.peer_id"), p)?;
                if let Some(b) = bridge {
                    if peer_id.trust_domain() != &b.trust_domain {
                        return Err(self.err(
                            format!("{rkey}.peer_id"),
                            p.span(),
                            format!(
                                "`{peer_id}` is not in the bridge trust domain `{}`",
                                b.trust_domain
                            ),
                        ));
                    }
                }
                Ok(Some(BridgeRouteConfig::Egress {
                    peer_id,
                    allow: self.allow_list(&format!("{rkey}.allow"), r.allow.as_ref())?,
                    // On by default: the usual upstream is a fedgate ingress, which refuses a
                    // connection without the header.
                    send_proxy_header: r.send_proxy_header.as_ref().is_none_or(|b| *b.get_ref()),
                }))
            }
            ListenerKind::BridgeIngress => {
                refuse(&egress_only)?;
                let server_id =
                    self.allow_list(&format!("{rkey}.server_id"), r.server_id.as_ref())?;
                if server_id.allows_nothing() {
                    let span = r.server_id.as_ref().map_or(r.sni.span(), |s| s.span());
                    return Err(self.err(
                        format!("{rkey}.server_id"),
                        span,
                        "a bridge-ingress route needs `server_id`: the destination's allowed \
                         SPIFFE IDs (e.g. [\"spiffe://cluster-b.test/ns/demo/sa/echo\"])",
                    ));
                }
                Ok(Some(BridgeRouteConfig::Ingress {
                    server_id,
                    allow: self.allow_list(&format!("{rkey}.allow"), r.allow.as_ref())?,
                    send_proxy_header: r.send_proxy_header.as_ref().is_some_and(|b| *b.get_ref()),
                }))
            }
        }
    }

    fn spiffe_id(&self, key: &str, t: &Text) -> Result<SpiffeId, ConfigError> {
        SpiffeId::parse(t.get_ref()).map_err(|e| {
            self.err(
                key,
                t.span(),
                format!("`{}` is not a valid SPIFFE ID ({e})", t.get_ref()),
            )
        })
    }

    fn allow_list(
        &self,
        key: &str,
        list: Option<&Spanned<Vec<Text>>>,
    ) -> Result<Authorizer, ConfigError> {
        let Some(list) = list else {
            return Ok(Authorizer::any_of([]));
        };
        let mut patterns = Vec::with_capacity(list.get_ref().len());
        for (i, t) in list.get_ref().iter().enumerate() {
            let p = Authorizer::from_pattern(t.get_ref()).map_err(|e| {
                self.err(
                    format!("{key}[{i}]"),
                    t.span(),
                    format!(
                        "{e}; write \"spiffe://td/exact/id\", \"spiffe://td/prefix/*\", \
                         \"spiffe://td/*\" or \"*\""
                    ),
                )
            })?;
            patterns.push(p);
        }
        Ok(Authorizer::any_of(patterns))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::Config;
    use super::*;

    const HEAD: &str = r#"
trust_domain = "cluster-a.test"
[identity]
svid = "gw.pem"
key = "gw.key"
bundle = "bundle.json"
[bridge]
trust_domain = "bridge.test"
svid = "bridge/svid.pem"
key = "bridge/svid.key"
bundle = "bridge/bundle.json"
"#;

    const EGRESS: &str = r#"
[[listeners]]
name = "bridge-out"
kind = "bridge-egress"
listen = "127.0.0.1:0"
  [[listeners.routes]]
  sni = "echo.cluster-b.test"
  upstreams = ["10.0.0.2:15002"]
  peer_id = "spiffe://bridge.test/gateway/cluster-b"
  allow = ["spiffe://cluster-a.test/ns/demo/sa/client"]
"#;

    const INGRESS: &str = r#"
[[listeners]]
name = "bridge-in"
kind = "bridge-ingress"
listen = "127.0.0.1:0"
proxy_header_timeout = "2s"
max_proxy_header = 2048
  [[listeners.bridge_peers]]
  id = "spiffe://bridge.test/gateway/cluster-b"
  may_speak_for = ["cluster-b.test"]
  [[listeners.routes]]
  sni = "echo.cluster-a.test"
  upstreams = ["127.0.0.1:7443"]
  server_id = ["spiffe://cluster-a.test/ns/demo/sa/echo"]
  allow = ["spiffe://cluster-b.test/*"]
  send_proxy_header = true
"#;

    fn parse(src: &str) -> Result<Config, ConfigError> {
        Config::parse(src, Path::new("/etc/fedgate/gw.toml"))
    }

    fn error(src: &str) -> String {
        parse(src).unwrap_err().to_string()
    }

    #[test]
    fn bridge_section_and_both_kinds_parse() {
        let c = parse(&format!("{HEAD}{EGRESS}{INGRESS}")).unwrap();
        let b = c.bridge.unwrap();
        assert_eq!(b.trust_domain.as_str(), "bridge.test");
        assert_eq!(
            b.identity,
            BridgeIdentity::Files {
                svid: "/etc/fedgate/bridge/svid.pem".into(),
                key: "/etc/fedgate/bridge/svid.key".into(),
            }
        );
        assert!(!b.session_resumption);

        let out = &c.listeners[0];
        assert_eq!(out.kind, ListenerKind::BridgeEgress);
        assert_eq!(out.bridge, Some(BridgeListenerConfig::Egress));
        match &out.routes[0].bridge {
            Some(BridgeRouteConfig::Egress {
                peer_id,
                allow,
                send_proxy_header,
            }) => {
                assert_eq!(
                    peer_id.to_string(),
                    "spiffe://bridge.test/gateway/cluster-b"
                );
                assert_eq!(
                    *allow,
                    Authorizer::from_patterns(&["spiffe://cluster-a.test/ns/demo/sa/client"])
                        .unwrap()
                );
                // Egress routes send the origin header unless told otherwise.
                assert!(send_proxy_header);
            }
            other => panic!("{other:?}"),
        }

        let inn = &c.listeners[1];
        match &inn.bridge {
            Some(BridgeListenerConfig::Ingress {
                peers,
                proxy_header_timeout,
                max_proxy_header,
            }) => {
                assert_eq!(peers[0].may_speak_for[0].as_str(), "cluster-b.test");
                assert_eq!(*proxy_header_timeout, Duration::from_secs(2));
                assert_eq!(*max_proxy_header, 2048);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            &inn.routes[0].bridge,
            Some(BridgeRouteConfig::Ingress {
                send_proxy_header: true,
                ..
            })
        ));
    }

    #[test]
    fn ingress_defaults_and_empty_allow_is_deny() {
        let src = INGRESS
            .replace("proxy_header_timeout = \"2s\"\n", "")
            .replace("max_proxy_header = 2048\n", "")
            .replace("  allow = [\"spiffe://cluster-b.test/*\"]\n", "")
            .replace("  send_proxy_header = true\n", "");
        let c = parse(&format!("{HEAD}{src}")).unwrap();
        let Some(BridgeListenerConfig::Ingress {
            proxy_header_timeout,
            max_proxy_header,
            ..
        }) = &c.listeners[0].bridge
        else {
            panic!("not an ingress");
        };
        assert_eq!(*proxy_header_timeout, DEFAULT_PROXY_HEADER_TIMEOUT);
        assert_eq!(*max_proxy_header, DEFAULT_MAX_PROXY_HEADER);
        let Some(BridgeRouteConfig::Ingress {
            allow,
            send_proxy_header,
            ..
        }) = &c.listeners[0].routes[0].bridge
        else {
            panic!("not an ingress route");
        };
        assert_eq!(*allow, Authorizer::any_of([]));
        assert!(!send_proxy_header);
    }

    #[test]
    fn egress_route_can_turn_the_proxy_header_off() {
        let src = EGRESS.replace("  allow = [", "  send_proxy_header = false\n  allow = [");
        let c = parse(&format!("{HEAD}{src}")).unwrap();
        assert!(matches!(
            &c.listeners[0].routes[0].bridge,
            Some(BridgeRouteConfig::Egress {
                send_proxy_header: false,
                ..
            })
        ));
    }

    #[test]
    fn refusals_name_the_key_and_what_to_do() {
        let no_bridge = HEAD.split("[bridge]").next().unwrap().to_owned();
        let cases: Vec<(String, &str, &str)> = vec![
            (format!("{no_bridge}{EGRESS}"), "listeners[0].kind", "needs a [bridge] table"),
            (
                format!("{}{EGRESS}", HEAD.replace("[identity]\nsvid = \"gw.pem\"\nkey = \"gw.key\"\nbundle = \"bundle.json\"\n", "")),
                "listeners[0].kind",
                "add an [identity] table",
            ),
            (
                HEAD.replace("trust_domain = \"bridge.test\"", "trust_domain = \"cluster-a.test\""),
                "bridge.trust_domain",
                "the local trust domain",
            ),
            (
                format!("{HEAD}{}", EGRESS.replace("  peer_id = \"spiffe://bridge.test/gateway/cluster-b\"\n", "")),
                "listeners[0].routes[0].sni",
                "needs `peer_id`",
            ),
            (
                format!("{HEAD}{}", EGRESS.replace("spiffe://bridge.test/gateway/cluster-b", "spiffe://cluster-b.test/gw")),
                "listeners[0].routes[0].peer_id",
                "not in the bridge trust domain",
            ),
            (
                format!("{HEAD}{}", EGRESS.replace("spiffe://cluster-a.test/ns/demo/sa/client", "spiffe://cluster-a.test/*/x")),
                "listeners[0].routes[0].allow[0]",
                "`*` may only be",
            ),
            (
                format!("{HEAD}{}", EGRESS.replace("  allow =", "  server_id =")),
                "listeners[0].routes[0].server_id",
                "is not a key of routes of kind = \"bridge-egress\"",
            ),
            (
                format!("{HEAD}{}", EGRESS.replace("listen = \"127.0.0.1:0\"", "listen = \"127.0.0.1:0\"\ndefault_route = \"echo.cluster-b.test\"")),
                "listeners[0].default_route",
                "no default route",
            ),
            (
                format!("{HEAD}{}", EGRESS.replace("listen = \"127.0.0.1:0\"", "listen = \"127.0.0.1:0\"\nmax_proxy_header = 100")),
                "listeners[0].max_proxy_header",
                "belongs to kind = \"bridge-ingress\"",
            ),
            (
                format!("{HEAD}{}", EGRESS.replace("listen = \"127.0.0.1:0\"", "listen = \"127.0.0.1:0\"\nsplice = true")),
                "listeners[0].splice",
                "belongs to kind = \"passthrough\"",
            ),
            (
                format!("{HEAD}{}", EGRESS.replace("bridge-egress", "passthrough")),
                "listeners[0].routes[0].peer_id",
                "is not a key of routes of kind = \"passthrough\"",
            ),
            (
                format!("{HEAD}{}", EGRESS.replace("bridge-egress", "passthrough").replace("  peer_id = \"spiffe://bridge.test/gateway/cluster-b\"\n  allow = [\"spiffe://cluster-a.test/ns/demo/sa/client\"]\n", "  send_proxy_header = false\n")),
                "listeners[0].routes[0].send_proxy_header",
                "is not a key of routes of kind = \"passthrough\"",
            ),
            (
                format!("{HEAD}{}", INGRESS.replace("  server_id = [\"spiffe://cluster-a.test/ns/demo/sa/echo\"]\n", "")),
                "listeners[0].routes[0].server_id",
                "needs `server_id`",
            ),
            (
                format!("{HEAD}{}", INGRESS.replace("may_speak_for = [\"cluster-b.test\"]", "may_speak_for = [\"bridge.test\"]")),
                "listeners[0].bridge_peers[0].may_speak_for[0]",
                "not a workload domain",
            ),
            (
                format!("{HEAD}{}", INGRESS.replace("may_speak_for = [\"cluster-b.test\"]", "may_speak_for = [\"cluster-b.test\", \"cluster-a.test\"]")),
                "listeners[0].bridge_peers[0].may_speak_for[1]",
                "`cluster-a.test` is this gateway's own trust domain",
            ),
            (
                format!("{HEAD}{}", INGRESS.replace("id = \"spiffe://bridge.test/gateway/cluster-b\"", "id = \"spiffe://cluster-b.test/gw\"")),
                "listeners[0].bridge_peers[0].id",
                "not in the bridge trust domain",
            ),
            (
                format!("{HEAD}{}", INGRESS.replace("max_proxy_header = 2048", "max_proxy_header = 10")),
                "listeners[0].max_proxy_header",
                "must be between",
            ),
            (
                format!("{HEAD}{}", INGRESS.replace("  [[listeners.bridge_peers]]\n  id = \"spiffe://bridge.test/gateway/cluster-b\"\n  may_speak_for = [\"cluster-b.test\"]\n", "")),
                "listeners[0].kind",
                "at least one [[listeners.bridge_peers]]",
            ),
            (
                format!("{HEAD}{}", INGRESS.replace("  send_proxy_header = true\n", "  peer_id = \"spiffe://bridge.test/x\"\n")),
                "listeners[0].routes[0].peer_id",
                "is not a key of routes of kind = \"bridge-ingress\"",
            ),
        ];
        for (src, key, needle) in cases {
            let e = error(&src);
            assert!(e.contains(&format!("`{key}`")), "want key {key}, got: {e}");
            assert!(e.contains(needle), "want {needle:?}, got: {e}");
            assert!(e.starts_with("/etc/fedgate/gw.toml:"), "no location: {e}");
        }
    }

    #[test]
    fn duplicate_bridge_peer_is_refused() {
        let src = INGRESS.replace(
            "  [[listeners.routes]]",
            "  [[listeners.bridge_peers]]\n  id = \"spiffe://bridge.test/gateway/cluster-b\"\n  may_speak_for = []\n  [[listeners.routes]]",
        );
        let e = error(&format!("{HEAD}{src}"));
        assert!(e.contains("listed twice"), "{e}");
    }

    #[test]
    fn bridge_issuer_replaces_svid_files() {
        let files = "svid = \"bridge/svid.pem\"\nkey = \"bridge/svid.key\"\n";
        let issuer = "[bridge.issuer]\nurl = \"https://ca.bridge.test:9600/\"\n\
                      endpoint_id = \"spiffe://bridge.test/ca-endpoint\"\n\
                      id = \"spiffe://bridge.test/gateway/cluster-a\"\n";
        let head = HEAD.replace(files, "");
        let c = parse(&format!(
            "{head}{issuer}ttl = \"10m\"\nout_dir = \"bridge-svid\"\n{EGRESS}"
        ))
        .unwrap();
        let BridgeIdentity::Issuer(s) = c.bridge.unwrap().identity else {
            panic!("expected [bridge.issuer]");
        };
        assert_eq!(s.url.as_str(), "https://ca.bridge.test:9600/");
        assert_eq!(s.id.to_string(), "spiffe://bridge.test/gateway/cluster-a");
        assert_eq!(s.ttl, Some(Duration::from_secs(600)));
        assert_eq!(s.out_dir, Some(PathBuf::from("/etc/fedgate/bridge-svid")));
        assert_eq!(
            s.startup_timeout,
            crate::identity::issuer::settings::DEFAULT_STARTUP_TIMEOUT
        );

        let cases = [
            (format!("{HEAD}{issuer}"), "bridge.issuer", "not both"),
            (head.clone(), "bridge.svid", "[bridge.issuer]"),
            (
                format!("{head}{}", issuer.replace("https://", "http://")),
                "bridge.issuer.url",
                "https URL",
            ),
            (
                format!(
                    "{head}{}",
                    issuer.replace("bridge.test/gateway", "cluster-a.test/gateway")
                ),
                "bridge.issuer.id",
                "bridge trust domain",
            ),
            (
                format!(
                    "{head}{}",
                    issuer.replace("bridge.test/ca-endpoint", "bridge.test")
                ),
                "bridge.issuer.endpoint_id",
                "with a path",
            ),
            (
                format!("{head}{issuer}ttl = \"soon\"\n"),
                "bridge.issuer.ttl",
                "not a duration",
            ),
        ];
        for (src, key, hint) in cases {
            let e = error(&format!("{src}{EGRESS}"));
            assert!(e.contains(key) && e.contains(hint), "{key}/{hint}: {e}");
        }
    }
}
