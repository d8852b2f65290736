//! Relay settings that cannot work, found by `fedgate config check` (ADR 0007).
//!
//! Pure: takes parsed configs and the identities read from their SVID files, returns findings.
//! Since the relay role is negotiated per connection, no combination of settings can let a
//! caller forge an origin; a mismatch instead refuses *every* connection of a route, which is
//! what these checks catch before deployment:
//!
//! * an egress route with `send_proxy_header = false` (only a plain mTLS upstream accepts it);
//! * given a peer gateway's config: such a route pointed at the peer's bridge-ingress listener;
//! * given a sidecar's config: a route into a sidecar inbound whose `trusted_relays` does not
//!   match what the route sends, or which admits the gateway neither as a relay nor as a client.

use std::net::SocketAddr;

use fedgate_federation::SpiffeId;

use crate::config::sidecar::Config as SidecarConfig;
use fedgate_dataplane::upstreams::Endpoint;

use crate::config::{Config, ListenerKind, ListenerMode, Route};

/// A gateway config and the identities it presents, where they could be read.
#[derive(Debug)]
pub struct Gateway<'a> {
    pub config: &'a Config,
    /// The SPIFFE ID of `[identity]`'s SVID: what the ingress presents to destinations.
    pub local_id: Option<SpiffeId>,
    /// The SPIFFE ID of `[bridge]`'s SVID: what the egress presents upstream.
    pub bridge_id: Option<SpiffeId>,
}

/// A sidecar config and the file it was read from.
#[derive(Debug)]
pub struct Sidecar<'a> {
    pub path: &'a std::path::Path,
    pub config: &'a SidecarConfig,
}

/// One finding: where (config file and key path) and what is wrong, with what to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub location: String,
    pub message: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

/// Every relay finding for `gateway`, checked against the related `sidecars` and `peers`.
pub fn lint(gateway: &Gateway<'_>, sidecars: &[Sidecar<'_>], peers: &[&Config]) -> Vec<Finding> {
    let mut findings = Vec::new();
    let file = gateway.config.source.display().to_string();
    for (li, listener) in gateway.config.listeners.iter().enumerate() {
        // Each bridge route: whether it sends the origin header, and the ID it presents.
        let routes: Vec<(Route<'_>, bool, Option<&SpiffeId>)> = match &listener.mode {
            ListenerMode::Passthrough { .. } => continue,
            ListenerMode::BridgeEgress { routes } => routes
                .iter()
                .map(|r| {
                    let sends = r.bridge.send_proxy_header;
                    (r.route(), sends, gateway.bridge_id.as_ref())
                })
                .collect(),
            ListenerMode::BridgeIngress { routes, .. } => routes
                .iter()
                .map(|r| {
                    let sends = r.bridge.send_proxy_header;
                    (r.route(), sends, gateway.local_id.as_ref())
                })
                .collect(),
        };
        let egress = listener.kind() == ListenerKind::BridgeEgress;
        for (ri, (route, sends, sender)) in routes.into_iter().enumerate() {
            let location = format!(
                "{file}: listeners[{li}].routes[{ri}] (route {:?})",
                route.name
            );
            if egress && !sends {
                findings.push(Finding {
                    location: location.clone(),
                    message: "send_proxy_header = false: the upstream gets the caller's \
                              bytes with no origin header, and a fedgate bridge-ingress \
                              refuses such connections (relay_not_negotiated); keep it \
                              only for a plain mTLS upstream"
                        .into(),
                });
                findings.extend(egress_into_peer_ingress(&location, &route, peers));
            }
            findings.extend(into_sidecars(&location, &route, sends, sender, sidecars));
        }
    }
    findings
}

/// An egress route without the header whose upstream is a peer's bridge-ingress listener.
fn egress_into_peer_ingress(location: &str, route: &Route<'_>, peers: &[&Config]) -> Vec<Finding> {
    let mut findings = Vec::new();
    for peer in peers {
        for listener in &peer.listeners {
            if listener.kind() != ListenerKind::BridgeIngress {
                continue;
            }
            for upstream in route
                .upstreams
                .iter()
                .filter(|u| same_address(u, listener.listen))
            {
                findings.push(Finding {
                    location: location.to_owned(),
                    message: format!(
                        "cannot work: upstream {}:{} is bridge-ingress listener {:?} of {}, which \
                         refuses every connection without the origin header; remove \
                         send_proxy_header = false",
                        upstream.host,
                        upstream.port,
                        listener.name,
                        peer.source.display()
                    ),
                });
            }
        }
    }
    findings
}

/// A bridge route whose upstream is a sidecar inbound listener that will refuse it.
fn into_sidecars(
    location: &str,
    route: &Route<'_>,
    sends: bool,
    sender: Option<&SpiffeId>,
    sidecars: &[Sidecar<'_>],
) -> Vec<Finding> {
    let mut findings = Vec::new();
    for sidecar in sidecars {
        for (ii, inbound) in sidecar.config.inbound.iter().enumerate() {
            let Some(upstream) = route
                .upstreams
                .iter()
                .find(|u| same_address(u, inbound.listen))
            else {
                continue;
            };
            let target = format!(
                "upstream {}:{} is inbound[{ii}] ({:?}) of {}",
                upstream.host,
                upstream.port,
                inbound.name,
                sidecar.path.display()
            );
            let Some(id) = sender else {
                findings.push(Finding {
                    location: location.to_owned(),
                    message: format!(
                        "{target}, but this gateway's SVID could not be read, so whether the \
                         sidecar trusts it as a relay is not checked"
                    ),
                });
                continue;
            };
            let trusted = inbound.trusted_relays.allows(id);
            let message = match (sends, trusted) {
                (true, true) => continue,
                (true, false) => format!(
                    "cannot work: {target}, whose trusted_relays does not include {id}, so it \
                     will not accept the origin header (relay_refused_upstream); add {id} to its \
                     trusted_relays, or set send_proxy_header = false"
                ),
                (false, true) => format!(
                    "cannot work: {target}, which lists {id} in trusted_relays and so refuses \
                     its connections without the origin header (relay_not_negotiated); set \
                     send_proxy_header = true"
                ),
                (false, false) if !inbound.allow.allows(id) => format!(
                    "cannot work: {target}, which admits {id} neither as a trusted relay nor in \
                     allow (client_not_allowed); set send_proxy_header = true and add {id} to its \
                     trusted_relays"
                ),
                (false, false) => continue,
            };
            findings.push(Finding {
                location: location.to_owned(),
                message,
            });
        }
    }
    findings
}

/// Whether `upstream` dials the listener bound at `listen`.
fn same_address(upstream: &Endpoint, listen: SocketAddr) -> bool {
    if upstream.port != listen.port() {
        return false;
    }
    match upstream
        .host
        .trim_matches(['[', ']'])
        .parse::<std::net::IpAddr>()
    {
        Ok(ip) => ip == listen.ip() || listen.ip().is_unspecified(),
        Err(_) => upstream.host == "localhost" && listen.ip().is_loopback(),
    }
}

#[cfg(test)]
mod tests;
