//! Pure authorization decisions of the bridge: which caller may reach which destination, which
//! bridge peer may assert which origin IDs, and which origin may reach which destination.
//!
//! Invariants: default deny — no route, an empty allow list, an unknown peer or a peer without a
//! `may_speak_for` entry for the origin's trust domain all deny (invariants 4 and 6 of docs/threat-model.md).
//! Nothing here does I/O; the handlers in `egress`/`ingress` call these with verified IDs only.

use std::borrow::Borrow;
use std::collections::HashMap;

use fedgate_federation::tls::Authorizer;
use fedgate_federation::{SpiffeId, TrustDomain};

pub use crate::config::Transport;
use fedgate_dataplane::route::{RouteError, RouteTable};
use fedgate_dataplane::upstreams::Upstreams;

/// An egress route: callers in `allow` may reach the destination (the SNI they sent) through the
/// peer ingress gateway(s) in `upstreams`, whose bridge identity must be exactly `peer_id`.
#[derive(Debug)]
pub struct EgressRoute {
    /// For logs and metrics (the SNI pattern unless configured).
    pub name: String,
    pub upstreams: Upstreams,
    /// The ingress gateway's bridge SPIFFE ID, pinned at handshake time.
    pub peer_id: SpiffeId,
    /// Caller IDs allowed; empty denies everyone.
    pub allow: Authorizer,
    /// Send the PROXY v2 origin header first inside the upstream TLS session (true for a fedgate
    /// bridge ingress, which requires it; false for an upstream that is a plain mTLS server).
    pub send_proxy_header: bool,
    /// One bridge connection per caller connection, or streams over pooled tunnels.
    pub transport: Transport,
}

/// An ingress route: origins in `allow` may reach the destination `upstreams`, whose local SVID
/// must match `server_id`.
#[derive(Debug)]
pub struct IngressRoute {
    pub name: String,
    pub upstreams: Upstreams,
    /// Destination IDs accepted when re-originating mTLS; empty accepts none.
    pub server_id: Authorizer,
    /// Origin IDs allowed; empty denies everyone.
    pub allow: Authorizer,
    /// Send PROXY v2 (origin ID + bridge peer ID) inside TLS to the destination.
    pub send_proxy_header: bool,
}

/// A gateway on the other side of the bridge and the trust domains whose IDs it may relay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BridgePeer {
    pub id: SpiffeId,
    pub may_speak_for: Vec<TrustDomain>,
}

/// The configured bridge peers of an ingress listener, by bridge SPIFFE ID.
#[derive(Clone, Debug, Default)]
pub struct BridgePeers {
    peers: HashMap<SpiffeId, BridgePeer>,
}

/// An authorization refusal; the variant name is the metric's `rule` label.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Denial {
    #[error("no bridge route for destination {destination:?}")]
    NoRoute { destination: String },
    #[error("caller {caller} is not allowed to reach {destination:?} (route {route:?})")]
    CallerDenied {
        caller: SpiffeId,
        destination: String,
        route: String,
    },
    #[error("bridge peer {peer} may not speak for trust domain {origin_td} (origin {origin})")]
    OriginNotAllowedForPeer {
        peer: SpiffeId,
        origin: SpiffeId,
        origin_td: TrustDomain,
    },
    #[error("origin {origin} is not allowed to reach {destination:?} (route {route:?})")]
    OriginDenied {
        origin: SpiffeId,
        destination: String,
        route: String,
    },
    #[error("{peer} is not a configured bridge peer of this listener")]
    UnknownPeer { peer: SpiffeId },
}

/// `(SNI pattern, route)` pairs as a route table of indices into the routes, the shape the
/// listener config builds (for building route sets by hand, e.g. in tests); a bad or duplicate
/// pattern is refused.
pub fn indexed<R>(
    routes: impl IntoIterator<Item = (String, R)>,
) -> Result<(RouteTable<usize>, Vec<R>), RouteError> {
    let mut table = RouteTable::new();
    let mut list = Vec::new();
    for (i, (pattern, route)) in routes.into_iter().enumerate() {
        table.insert(&pattern, i)?;
        list.push(route);
    }
    Ok((table, list))
}

/// Egress decision: the route for `destination` if `caller` is on its allow list. The table
/// may hold any value that borrows as an [`EgressRoute`] (e.g. an `Arc` of one).
pub fn authorize_egress<'a, T: Borrow<EgressRoute>>(
    routes: &'a RouteTable<T>,
    destination: &str,
    caller: &SpiffeId,
) -> Result<&'a T, Denial> {
    authorize_route(routes, destination, caller, |r: &EgressRoute| {
        (&r.allow, &r.name, Denial::caller_denied)
    })
}

/// The route for `destination` if `who` is on its allow list; `parts` gives a route's allow
/// list, its name and the denial to answer with.
fn authorize_route<'a, T, R: 'a>(
    routes: &'a RouteTable<T>,
    destination: &str,
    who: &SpiffeId,
    parts: impl Fn(&R) -> (&Authorizer, &String, fn(SpiffeId, String, String) -> Denial),
) -> Result<&'a T, Denial>
where
    T: Borrow<R>,
{
    let entry = routes
        .lookup(Some(destination))
        .ok_or_else(|| Denial::NoRoute {
            destination: destination.to_owned(),
        })?;
    let (allow, name, denied) = parts(entry.borrow());
    if allow.allows(who) {
        Ok(entry)
    } else {
        Err(denied(who.clone(), destination.to_owned(), name.clone()))
    }
}

/// Ingress decision about who is talking: `peer` must be a configured bridge peer.
pub fn authorize_peer<'a>(
    peers: &'a BridgePeers,
    peer: &SpiffeId,
) -> Result<&'a BridgePeer, Denial> {
    peers
        .get(peer)
        .ok_or_else(|| Denial::UnknownPeer { peer: peer.clone() })
}

/// Ingress decision about what the peer claims (invariant 4 of docs/threat-model.md): `origin` is accepted
/// only if `peer` is a configured bridge peer allowed to speak for the origin's trust domain.
pub fn authorize_origin(
    peers: &BridgePeers,
    peer: &SpiffeId,
    origin: &SpiffeId,
) -> Result<(), Denial> {
    let entry = authorize_peer(peers, peer)?;
    if entry
        .may_speak_for
        .iter()
        .any(|td| td == origin.trust_domain())
    {
        Ok(())
    } else {
        Err(Denial::OriginNotAllowedForPeer {
            peer: peer.clone(),
            origin: origin.clone(),
            origin_td: origin.trust_domain().clone(),
        })
    }
}

/// Ingress decision about where the origin goes: the route for `destination` if `origin` is on
/// its allow list. Call only after [`authorize_origin`] accepted the origin. The table may hold
/// any value that borrows as an [`IngressRoute`] (e.g. a route with its TLS config slot).
pub fn authorize_ingress<'a, T: Borrow<IngressRoute>>(
    routes: &'a RouteTable<T>,
    destination: &str,
    origin: &SpiffeId,
) -> Result<&'a T, Denial> {
    authorize_route(routes, destination, origin, |r: &IngressRoute| {
        (&r.allow, &r.name, Denial::origin_denied)
    })
}

// === impl Denial ===

impl Denial {
    fn caller_denied(caller: SpiffeId, destination: String, route: String) -> Denial {
        Denial::CallerDenied {
            caller,
            destination,
            route,
        }
    }

    fn origin_denied(origin: SpiffeId, destination: String, route: String) -> Denial {
        Denial::OriginDenied {
            origin,
            destination,
            route,
        }
    }

    /// The `rule` label of the authorization-denials metric.
    pub fn label(&self) -> &'static str {
        match self {
            Denial::NoRoute { .. } => "no_route",
            Denial::CallerDenied { .. } => "caller_denied",
            Denial::OriginNotAllowedForPeer { .. } => "origin_not_allowed_for_peer",
            Denial::OriginDenied { .. } => "origin_denied",
            Denial::UnknownPeer { .. } => "unknown_peer",
        }
    }

    /// Whether this denial refuses an origin ID (counted in "origin IDs refused" too).
    pub fn refuses_origin(&self) -> bool {
        matches!(self, Denial::OriginNotAllowedForPeer { .. })
    }
}

// === impl BridgePeers ===

impl BridgePeers {
    /// Builds the peer map; a peer ID listed twice is refused (the caller names the listener).
    pub fn new(peers: impl IntoIterator<Item = BridgePeer>) -> Result<Self, SpiffeId> {
        let mut map = HashMap::new();
        for peer in peers {
            if map.contains_key(&peer.id) {
                return Err(peer.id);
            }
            map.insert(peer.id.clone(), peer);
        }
        Ok(Self { peers: map })
    }

    pub fn get(&self, id: &SpiffeId) -> Option<&BridgePeer> {
        self.peers.get(id)
    }

    /// A peer allowed to speak for `td`, if any (the lowest ID, so the answer is stable).
    pub fn speaking_for(&self, td: &TrustDomain) -> Option<&BridgePeer> {
        self.peers
            .values()
            .filter(|p| p.may_speak_for.contains(td))
            .min_by(|a, b| a.id.cmp(&b.id))
    }

    pub fn len(&self) -> usize {
        self.peers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> SpiffeId {
        SpiffeId::parse(s).unwrap()
    }

    fn td(s: &str) -> TrustDomain {
        TrustDomain::new(s).unwrap()
    }

    fn egress_routes() -> RouteTable<EgressRoute> {
        let mut t = RouteTable::new();
        t.insert(
            "echo.cluster-b.test",
            EgressRoute {
                name: "echo".into(),
                upstreams: Upstreams::from_socket_addrs(["127.0.0.1:1".parse().unwrap()]),
                peer_id: id("spiffe://bridge.test/gateway/cluster-b"),
                allow: Authorizer::from_patterns(&["spiffe://cluster-a.test/ns/demo/sa/client"])
                    .unwrap(),
                send_proxy_header: true,
                transport: Transport::Tls,
            },
        )
        .unwrap();
        t.insert(
            "closed.cluster-b.test",
            EgressRoute {
                name: "closed".into(),
                upstreams: Upstreams::from_socket_addrs(["127.0.0.1:1".parse().unwrap()]),
                peer_id: id("spiffe://bridge.test/gateway/cluster-b"),
                allow: Authorizer::any_of([]),
                send_proxy_header: true,
                transport: Transport::Tls,
            },
        )
        .unwrap();
        t
    }

    fn ingress_routes() -> RouteTable<IngressRoute> {
        let mut t = RouteTable::new();
        t.insert(
            "echo.cluster-b.test",
            IngressRoute {
                name: "echo".into(),
                upstreams: Upstreams::from_socket_addrs(["127.0.0.1:1".parse().unwrap()]),
                server_id: Authorizer::from_patterns(&["spiffe://cluster-b.test/ns/demo/sa/echo"])
                    .unwrap(),
                allow: Authorizer::from_patterns(&["spiffe://cluster-a.test/ns/demo/*"]).unwrap(),
                send_proxy_header: true,
            },
        )
        .unwrap();
        t
    }

    fn peers() -> BridgePeers {
        BridgePeers::new([BridgePeer {
            id: id("spiffe://bridge.test/gateway/cluster-a"),
            may_speak_for: vec![td("cluster-a.test")],
        }])
        .unwrap()
    }

    #[test]
    fn egress_allows_listed_caller() {
        let routes = egress_routes();
        let r = authorize_egress(
            &routes,
            "echo.cluster-b.test",
            &id("spiffe://cluster-a.test/ns/demo/sa/client"),
        )
        .unwrap();
        assert_eq!(r.name, "echo");
    }

    #[test]
    fn egress_denies_unlisted_caller() {
        let routes = egress_routes();
        let err = authorize_egress(
            &routes,
            "echo.cluster-b.test",
            &id("spiffe://cluster-a.test/ns/demo/sa/other"),
        )
        .unwrap_err();
        assert_eq!(err.label(), "caller_denied");
    }

    #[test]
    fn egress_empty_allow_list_denies() {
        let routes = egress_routes();
        let err = authorize_egress(
            &routes,
            "closed.cluster-b.test",
            &id("spiffe://cluster-a.test/ns/demo/sa/client"),
        )
        .unwrap_err();
        assert_eq!(err.label(), "caller_denied");
    }

    #[test]
    fn egress_without_route_denies() {
        let routes = egress_routes();
        let err = authorize_egress(
            &routes,
            "other.cluster-b.test",
            &id("spiffe://cluster-a.test/ns/demo/sa/client"),
        )
        .unwrap_err();
        assert_eq!(
            err,
            Denial::NoRoute {
                destination: "other.cluster-b.test".into()
            }
        );
        assert_eq!(err.label(), "no_route");
    }

    #[test]
    fn origin_accepted_only_in_domains_the_peer_speaks_for() {
        let peers = peers();
        let peer = id("spiffe://bridge.test/gateway/cluster-a");
        authorize_origin(
            &peers,
            &peer,
            &id("spiffe://cluster-a.test/ns/demo/sa/client"),
        )
        .unwrap();
        let err = authorize_origin(
            &peers,
            &peer,
            &id("spiffe://cluster-c.test/ns/demo/sa/client"),
        )
        .unwrap_err();
        assert_eq!(err.label(), "origin_not_allowed_for_peer");
        assert!(err.refuses_origin());
        // The bridge domain itself is not spoken for either.
        let err = authorize_origin(&peers, &peer, &id("spiffe://bridge.test/gateway/cluster-a"))
            .unwrap_err();
        assert_eq!(err.label(), "origin_not_allowed_for_peer");
    }

    #[test]
    fn unknown_peer_is_denied_whatever_it_claims() {
        let peers = peers();
        let err = authorize_origin(
            &peers,
            &id("spiffe://bridge.test/gateway/cluster-z"),
            &id("spiffe://cluster-a.test/ns/demo/sa/client"),
        )
        .unwrap_err();
        assert_eq!(err.label(), "unknown_peer");
        assert!(authorize_peer(&peers, &id("spiffe://bridge.test/gateway/cluster-z")).is_err());
    }

    #[test]
    fn speaking_for_finds_the_peers_of_a_domain() {
        let peers = BridgePeers::new([
            BridgePeer {
                id: id("spiffe://bridge.test/gateway/z"),
                may_speak_for: vec![td("cluster-a.test"), td("cluster-c.test")],
            },
            BridgePeer {
                id: id("spiffe://bridge.test/gateway/b"),
                may_speak_for: vec![td("cluster-c.test")],
            },
        ])
        .unwrap();
        let found = |d: &str| peers.speaking_for(&td(d)).map(|p| p.id.to_string());
        assert_eq!(
            found("cluster-a.test").as_deref(),
            Some("spiffe://bridge.test/gateway/z")
        );
        assert_eq!(
            found("cluster-c.test").as_deref(),
            Some("spiffe://bridge.test/gateway/b")
        );
        assert_eq!(found("cluster-b.test"), None);
    }

    #[test]
    fn duplicate_peer_is_refused() {
        let p = BridgePeer {
            id: id("spiffe://bridge.test/gateway/cluster-a"),
            may_speak_for: vec![],
        };
        assert_eq!(BridgePeers::new([p.clone(), p.clone()]).unwrap_err(), p.id);
    }

    #[test]
    fn peer_with_no_domains_speaks_for_nobody() {
        let peers = BridgePeers::new([BridgePeer {
            id: id("spiffe://bridge.test/gateway/mute"),
            may_speak_for: vec![],
        }])
        .unwrap();
        let err = authorize_origin(
            &peers,
            &id("spiffe://bridge.test/gateway/mute"),
            &id("spiffe://cluster-a.test/x"),
        )
        .unwrap_err();
        assert_eq!(err.label(), "origin_not_allowed_for_peer");
    }

    #[test]
    fn ingress_checks_route_and_origin() {
        let routes = ingress_routes();
        let ok = authorize_ingress(
            &routes,
            "echo.cluster-b.test",
            &id("spiffe://cluster-a.test/ns/demo/sa/client"),
        )
        .unwrap();
        assert!(ok.send_proxy_header);
        let denied = authorize_ingress(
            &routes,
            "echo.cluster-b.test",
            &id("spiffe://cluster-a.test/ns/prod/sa/client"),
        )
        .unwrap_err();
        assert_eq!(denied.label(), "origin_denied");
        let none = authorize_ingress(
            &routes,
            "nope.cluster-b.test",
            &id("spiffe://cluster-a.test/ns/demo/sa/client"),
        )
        .unwrap_err();
        assert_eq!(none.label(), "no_route");
    }

    mod props {
        use proptest::prelude::*;

        use super::*;

        fn label() -> impl Strategy<Value = String> {
            "[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?"
        }

        fn domain() -> impl Strategy<Value = String> {
            prop::collection::vec(label(), 1..4).prop_map(|l| l.join("."))
        }

        proptest! {
            /// Invariant 4 for any domains: an origin is accepted exactly when its trust domain
            /// is one the (known) peer may speak for; unknown peers are always refused.
            #[test]
            fn origin_accepted_iff_domain_is_spoken_for(
                spoken in prop::collection::vec(domain(), 0..4),
                origin_td in domain(),
                path in "(/[a-z0-9]{1,6}){0,3}",
            ) {
                let peer = id("spiffe://bridge.test/gateway/p");
                let peers = BridgePeers::new([BridgePeer {
                    id: peer.clone(),
                    may_speak_for: spoken.iter().map(|d| td(d)).collect(),
                }])
                .unwrap();
                let origin = id(&format!("spiffe://{origin_td}{path}"));
                let accepted = authorize_origin(&peers, &peer, &origin).is_ok();
                prop_assert_eq!(accepted, spoken.contains(&origin_td));
                let stranger = id("spiffe://bridge.test/gateway/stranger");
                prop_assert!(authorize_origin(&peers, &stranger, &origin).is_err());
            }
        }
    }
}
