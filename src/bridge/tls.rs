//! rustls configurations of the bridge, built once per SVID/bundle change and swapped atomically.
//!
//! Invariants:
//! * Each config verifies a peer against exactly one trust domain's bundle: the local bundle for
//!   callers and destinations, the bridge bundle between gateways (invariant 1 of docs/threat-model.md).
//! * Configs are immutable `Arc`s held in a `fedgate_dataplane::swap::Swap`; a connection takes one snapshot when it
//!   starts and keeps it, so a swap never disturbs live connections.
//! * Session resumption is off unless asked for: no server session cache, no TLS 1.3 tickets, no
//!   client session store, so every bridged connection pays (and benchmarks) a full handshake.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fedgate_federation::tls::{mtls_client_config, mtls_server_config, Authorizer};
use fedgate_federation::{Bundle, BundleSet, SpiffeId, TrustDomain, X509Svid};
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, ServerConfig};

/// The key material both bridge sides use: the local SVID and bundle (towards workloads) and
/// the bridge SVID and bundle (between gateways).
#[derive(Clone, Debug)]
pub struct Identities {
    local_svid: X509Svid,
    local_bundle: Bundle,
    bridge_svid: X509Svid,
    bridge_bundle: Bundle,
    session_resumption: bool,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BridgeTlsError {
    #[error(
        "the {what} SVID {id} is not in trust domain {expected} (the {what} bundle's domain); \
         issue the {what} SVID from the {what} CA"
    )]
    SvidOutsideDomain {
        what: &'static str,
        id: SpiffeId,
        expected: TrustDomain,
    },
    #[error(
        "the local and bridge trust domains are both {0}; the bridge needs its own trust domain \
         and CA"
    )]
    SameDomain(TrustDomain),
    #[error("building the {what} TLS configuration failed: {source}")]
    Rustls {
        what: &'static str,
        #[source]
        source: rustls::Error,
    },
}

// === impl Identities ===

impl Identities {
    /// Checks that each SVID belongs to the trust domain of its bundle and that the two domains
    /// differ.
    pub fn new(
        local_svid: X509Svid,
        local_bundle: Bundle,
        bridge_svid: X509Svid,
        bridge_bundle: Bundle,
        session_resumption: bool,
    ) -> Result<Self, BridgeTlsError> {
        for (what, svid, bundle) in [
            ("local", &local_svid, &local_bundle),
            ("bridge", &bridge_svid, &bridge_bundle),
        ] {
            if svid.id().trust_domain() != bundle.trust_domain() {
                return Err(BridgeTlsError::SvidOutsideDomain {
                    what,
                    id: svid.id().clone(),
                    expected: bundle.trust_domain().clone(),
                });
            }
        }
        if local_bundle.trust_domain() == bridge_bundle.trust_domain() {
            return Err(BridgeTlsError::SameDomain(
                local_bundle.trust_domain().clone(),
            ));
        }
        Ok(Self {
            local_svid,
            local_bundle,
            bridge_svid,
            bridge_bundle,
            session_resumption,
        })
    }

    pub fn local_svid(&self) -> &X509Svid {
        &self.local_svid
    }

    pub fn bridge_svid(&self) -> &X509Svid {
        &self.bridge_svid
    }

    pub fn local_domain(&self) -> &TrustDomain {
        self.local_bundle.trust_domain()
    }

    pub fn bridge_domain(&self) -> &TrustDomain {
        self.bridge_bundle.trust_domain()
    }

    pub fn session_resumption(&self) -> bool {
        self.session_resumption
    }

    /// Egress, towards callers: the local SVID; clients must be members of the local domain,
    /// verified with the local bundle only.
    pub fn egress_server_config(&self) -> Result<Arc<ServerConfig>, BridgeTlsError> {
        let rule = Authorizer::member_of(self.local_domain().clone());
        let local = (&self.local_svid, &self.local_bundle);
        Ok(Arc::new(self.build(
            "egress server",
            local,
            rule,
            mtls_server_config,
        )?))
    }

    /// Egress, towards a peer ingress: the bridge SVID; the server must be exactly `peer_id`,
    /// verified with the bridge bundle only. `relay`: offer the relay protocol (the route sends
    /// the origin header), see [`fedgate_dataplane::relay`].
    pub fn bridge_client_config(
        &self,
        peer_id: &SpiffeId,
        relay: bool,
    ) -> Result<Arc<ClientConfig>, BridgeTlsError> {
        let rule = Authorizer::exact(peer_id.clone());
        let bridge = (&self.bridge_svid, &self.bridge_bundle);
        let mut config = self.build("bridge client", bridge, rule, mtls_client_config)?;
        config.alpn_protocols = fedgate_dataplane::relay::alpn_offer(relay);
        Ok(Arc::new(config))
    }

    /// Egress, towards a peer ingress over a multiplexed tunnel: exactly the verification and
    /// pinning of [`Identities::bridge_client_config`], offering only the tunnel protocol.
    pub fn bridge_mux_client_config(
        &self,
        peer_id: &SpiffeId,
    ) -> Result<Arc<ClientConfig>, BridgeTlsError> {
        let relay = self.bridge_client_config(peer_id, true)?;
        let mut config = (*relay).clone();
        config.alpn_protocols = vec![fedgate_dataplane::relay::MUX_ALPN.to_vec()];
        Ok(Arc::new(config))
    }

    /// Ingress, towards peer egresses: the bridge SVID; clients must be members of the bridge
    /// domain, verified with the bridge bundle only. Which peers are configured is checked after
    /// the handshake, before any byte is read, so the refusal is counted by peer ID. The only
    /// application protocols are the relay protocol and the tunnel protocol (`bridge::mux`): a
    /// peer that negotiated neither is refused after the handshake, before any byte is read
    /// (see [`fedgate_dataplane::relay`]).
    pub fn ingress_server_config(&self) -> Result<Arc<ServerConfig>, BridgeTlsError> {
        let rule = Authorizer::member_of(self.bridge_domain().clone());
        let bridge = (&self.bridge_svid, &self.bridge_bundle);
        let mut config = self.build("ingress server", bridge, rule, mtls_server_config)?;
        config.alpn_protocols = fedgate_dataplane::relay::alpn_offer(true);
        config
            .alpn_protocols
            .push(fedgate_dataplane::relay::MUX_ALPN.to_vec());
        Ok(Arc::new(config))
    }

    /// Ingress, towards a destination: the local SVID; the server must verify with the local
    /// bundle and its ID must be allowed by `server_id`, checked inside the handshake so a
    /// destination that is not allowed never gets a byte of application data. `relay`: offer the
    /// relay protocol (the route forwards the origin), see [`fedgate_dataplane::relay`].
    pub fn destination_client_config(
        &self,
        server_id: &Authorizer,
        relay: bool,
    ) -> Result<Arc<ClientConfig>, BridgeTlsError> {
        // Membership of the local domain needs no rule of its own: the bundle set holds only the
        // local bundle, so a server of any other domain fails verification (no bundle for it).
        let (rule, local) = (server_id.clone(), (&self.local_svid, &self.local_bundle));
        let mut config = self.build("destination client", local, rule, mtls_client_config)?;
        config.alpn_protocols = fedgate_dataplane::relay::alpn_offer(relay);
        Ok(Arc::new(config))
    }

    /// When the bridge SVID stops being valid (its leaf's notAfter).
    pub fn bridge_svid_not_after(&self) -> Option<SystemTime> {
        self.bridge_svid.chain().first().and_then(leaf_not_after)
    }

    /// A config of `make` (the shared mTLS builders) presenting `svid` and verifying the peer
    /// with `bundle` only, under this side's session resumption setting.
    fn build<C>(
        &self,
        what: &'static str,
        (svid, bundle): (&X509Svid, &Bundle),
        rule: Authorizer,
        make: fn(&X509Svid, BundleSet, Authorizer, bool) -> Result<C, rustls::Error>,
    ) -> Result<C, BridgeTlsError> {
        let bundles = BundleSet::new().with(bundle.clone());
        make(svid, bundles, rule, self.session_resumption)
            .map_err(|source| BridgeTlsError::Rustls { what, source })
    }
}

/// The notAfter of a certificate.
pub fn leaf_not_after(der: &CertificateDer<'_>) -> Option<SystemTime> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let secs = cert.validity().not_after.timestamp();
    let secs = u64::try_from(secs).ok()?;
    SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use rcgen::{
        BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        KeyUsagePurpose, SanType,
    };
    use rustls::pki_types::ServerName;
    use rustls::{ClientConnection, HandshakeKind, ServerConnection};

    use super::*;

    /// A CA for `td` and a function issuing SVIDs from it.
    struct Ca {
        bundle: Bundle,
        cert: rcgen::Certificate,
        key: KeyPair,
    }

    impl Ca {
        fn new(td: &str) -> Ca {
            let mut p = CertificateParams::default();
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            let key = KeyPair::generate().unwrap();
            let cert = p.self_signed(&key).unwrap();
            let mut bundle = Bundle::new(TrustDomain::new(td).unwrap());
            bundle.add_x509_authority(cert.der().clone());
            Ca { bundle, cert, key }
        }

        fn svid(&self, path: &str) -> X509Svid {
            let id = format!("spiffe://{}{path}", self.bundle.trust_domain());
            let mut p = CertificateParams::default();
            p.subject_alt_names = vec![SanType::URI(id.try_into().unwrap())];
            p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            p.extended_key_usages = vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ];
            let key = KeyPair::generate().unwrap();
            let cert = p.signed_by(&key, &self.cert, &self.key).unwrap();
            X509Svid::from_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes()).unwrap()
        }
    }

    /// Runs an in-memory handshake (plus the post-handshake tickets) and returns its kind.
    fn handshake(client: Arc<ClientConfig>, server: Arc<ServerConfig>) -> HandshakeKind {
        let name = ServerName::try_from("echo.cluster-b.test").unwrap();
        let mut c = ClientConnection::new(client, name).unwrap();
        let mut s = ServerConnection::new(server).unwrap();
        // Bounded: a TLS 1.3 handshake with client auth and tickets takes a few flights.
        for _ in 0..10 {
            let mut buf = Vec::new();
            while c.wants_write() {
                c.write_tls(&mut buf).unwrap();
            }
            let mut rd = &buf[..];
            while !rd.is_empty() {
                s.read_tls(&mut rd).unwrap();
            }
            s.process_new_packets().unwrap();
            let mut buf = Vec::new();
            while s.wants_write() {
                s.write_tls(&mut buf).unwrap();
            }
            let mut rd = &buf[..];
            while !rd.is_empty() {
                c.read_tls(&mut rd).unwrap();
            }
            c.process_new_packets().unwrap();
        }
        assert!(!c.is_handshaking() && !s.is_handshaking());
        c.handshake_kind().unwrap()
    }

    fn identities(resumption: bool) -> (Identities, Identities, SpiffeId) {
        let local = Ca::new("cluster-a.test");
        let bridge = Ca::new("bridge.test");
        let egress = Identities::new(
            local.svid("/gw"),
            local.bundle.clone(),
            bridge.svid("/gateway/a"),
            bridge.bundle.clone(),
            resumption,
        )
        .unwrap();
        let ingress = Identities::new(
            local.svid("/gw-in"),
            local.bundle.clone(),
            bridge.svid("/gateway/b"),
            bridge.bundle.clone(),
            resumption,
        )
        .unwrap();
        let peer = SpiffeId::parse("spiffe://bridge.test/gateway/b").unwrap();
        (egress, ingress, peer)
    }

    #[test]
    fn bridge_hops_do_full_handshakes_unless_resumption_is_enabled() {
        for (resumption, second) in [(false, HandshakeKind::Full), (true, HandshakeKind::Resumed)] {
            let (egress, ingress, peer) = identities(resumption);
            // One client config and one server config, reused, as on a running gateway.
            let client = egress.bridge_client_config(&peer, true).unwrap();
            let server = ingress.ingress_server_config().unwrap();
            assert_eq!(
                handshake(client.clone(), server.clone()),
                HandshakeKind::Full
            );
            assert_eq!(
                handshake(client, server),
                second,
                "resumption = {resumption}"
            );
        }
    }

    #[test]
    fn bridge_client_pins_the_peer_id() {
        let (egress, ingress, _) = identities(false);
        let other = SpiffeId::parse("spiffe://bridge.test/gateway/c").unwrap();
        let client = egress.bridge_client_config(&other, true).unwrap();
        let server = ingress.ingress_server_config().unwrap();
        let name = ServerName::try_from("x.test").unwrap();
        let mut c = ClientConnection::new(client, name).unwrap();
        let mut s = ServerConnection::new(server).unwrap();
        let mut buf = Vec::new();
        c.write_tls(&mut buf).unwrap();
        s.read_tls(&mut &buf[..]).unwrap();
        s.process_new_packets().unwrap();
        let mut buf = Vec::new();
        while s.wants_write() {
            s.write_tls(&mut buf).unwrap();
        }
        c.read_tls(&mut &buf[..]).unwrap();
        assert!(c.process_new_packets().is_err(), "wrong peer ID accepted");
    }

    #[test]
    fn svids_must_match_their_bundles_and_domains_must_differ() {
        let local = Ca::new("cluster-a.test");
        let bridge = Ca::new("bridge.test");
        let swapped = Identities::new(
            bridge.svid("/gw"),
            local.bundle.clone(),
            local.svid("/gw"),
            bridge.bundle.clone(),
            false,
        );
        assert!(matches!(
            swapped,
            Err(BridgeTlsError::SvidOutsideDomain { what: "local", .. })
        ));
        let same = Identities::new(
            local.svid("/a"),
            local.bundle.clone(),
            local.svid("/b"),
            local.bundle.clone(),
            false,
        );
        assert!(matches!(same, Err(BridgeTlsError::SameDomain(_))));
    }

    #[test]
    fn leaf_helpers_refuse_garbage() {
        let junk = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00]);
        assert!(fedgate_federation::svid::verify::spiffe_id_of(&junk).is_err());
        assert!(leaf_not_after(&junk).is_none());
    }
}
