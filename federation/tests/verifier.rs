//! SPIFFE rustls verifiers, driven by in-memory rustls handshakes (no sockets): one test per
//! accept/reject path, in both directions (server verifies client, client verifies server).
// Helpers outside #[test] fns unwrap too: a panic there is a test failure with a backtrace.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;

use fedgate_federation::bundle::{Bundle, BundleSet};
use fedgate_federation::tls::{
    self, verify_error_of, Authorizer, SpiffeClientVerifier, SpiffeServerVerifier,
};
use fedgate_federation::{SpiffeId, VerifyError, X509Svid};
use rcgen::{ExtendedKeyUsagePurpose, KeyUsagePurpose};
use rustls::{CertificateError, ClientConnection, ServerConnection};
use rustls_pki_types::ServerName;
use support::{td, LeafSpec, TestCa};

#[derive(Debug, PartialEq)]
enum Side {
    Client,
    Server,
}

/// Runs a handshake between `client` and `server` to completion or to the first error.
fn handshake(
    client: &mut ClientConnection,
    server: &mut ServerConnection,
) -> Result<(), (Side, rustls::Error)> {
    // A full TLS 1.3 handshake with client auth takes 3 flights; 10 rounds is ample.
    for _ in 0..10 {
        let mut buf = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut buf).unwrap();
        }
        if !buf.is_empty() {
            server.read_tls(&mut buf.as_slice()).unwrap();
            server
                .process_new_packets()
                .map_err(|e| (Side::Server, e))?;
        }
        let mut buf = Vec::new();
        while server.wants_write() {
            server.write_tls(&mut buf).unwrap();
        }
        if !buf.is_empty() {
            client.read_tls(&mut buf.as_slice()).unwrap();
            client
                .process_new_packets()
                .map_err(|e| (Side::Client, e))?;
        }
        if !client.is_handshaking() && !server.is_handshaking() && !client.wants_write() {
            return Ok(());
        }
    }
    panic!("handshake did not finish in 10 rounds");
}

/// A client presenting `client_svid` (verifying the server with `server_authz` over
/// `client_bundles`) against a server presenting `server_svid` (verifying clients with
/// `client_authz` over `server_bundles`).
struct Setup {
    client_svid: Option<X509Svid>,
    client_bundles: BundleSet,
    server_authz: Authorizer,
    server_svid: X509Svid,
    server_bundles: BundleSet,
    client_authz: Authorizer,
}

impl Setup {
    fn run(self) -> Result<(ClientConnection, ServerConnection), (Side, rustls::Error)> {
        let sv = Arc::new(SpiffeServerVerifier::new(
            self.client_bundles,
            self.server_authz,
        ));
        let cv = Arc::new(SpiffeClientVerifier::new(
            self.server_bundles,
            self.client_authz,
        ));
        let ccfg = tls::client_config(self.client_svid.as_ref(), sv).unwrap();
        let scfg = tls::server_config(&self.server_svid, cv).unwrap();
        // The name is ignored by the SPIFFE verifier: a mismatching one must not matter.
        let name = ServerName::try_from("unrelated.invalid").unwrap();
        let mut client = ClientConnection::new(Arc::new(ccfg), name).unwrap();
        let mut server = ServerConnection::new(Arc::new(scfg)).unwrap();
        handshake(&mut client, &mut server)?;
        Ok((client, server))
    }
}

struct World {
    a: TestCa,
    b: TestCa,
    both: BundleSet,
}

fn world() -> World {
    let a = TestCa::new("cluster-a.test");
    let b = TestCa::new("cluster-b.test");
    let both = BundleSet::from_bundles([a.bundle(), b.bundle()]).unwrap();
    World { a, b, both }
}

/// A valid baseline: client `cluster-a.test/client`, server `cluster-b.test/server`.
fn baseline(w: &World) -> Setup {
    Setup {
        client_svid: Some(w.a.svid("/client")),
        client_bundles: w.both.clone(),
        server_authz: Authorizer::exact(id("spiffe://cluster-b.test/server")),
        server_svid: w.b.svid("/server"),
        server_bundles: w.both.clone(),
        client_authz: Authorizer::member_of(td("cluster-a.test")),
    }
}

fn id(s: &str) -> SpiffeId {
    SpiffeId::parse(s).unwrap()
}

fn cert_error(
    side: Side,
    result: Result<(ClientConnection, ServerConnection), (Side, rustls::Error)>,
) -> rustls::Error {
    match result {
        Ok(_) => panic!("handshake succeeded; expected a refusal by the {side:?}"),
        Err((got, e)) => {
            assert_eq!(got, side, "refused by the wrong side: {e}");
            e
        }
    }
}

fn assert_cert_error(e: &rustls::Error, want: CertificateError) {
    match e {
        rustls::Error::InvalidCertificate(got) => assert_eq!(got, &want, "{e}"),
        other => panic!("expected InvalidCertificate({want:?}), got {other:?}"),
    }
}

fn assert_verify_error(e: &rustls::Error, pred: impl Fn(&VerifyError) -> bool) {
    match verify_error_of(e) {
        Some(v) => assert!(pred(v), "unexpected VerifyError {v:?}"),
        None => panic!("expected a VerifyError inside {e:?}"),
    }
}

fn expired(ca: &TestCa, id: &str) -> X509Svid {
    ca.issue(&LeafSpec {
        not_before_days: -30,
        not_after_days: -1,
        ..LeafSpec::svid(id)
    })
    .into_svid()
}

// === accept ===

#[test]
fn mutual_auth_succeeds_and_both_sides_see_the_peer_id() {
    let w = world();
    let (client, server) = baseline(&w).run().unwrap();
    assert_eq!(
        tls::peer_id(&client).unwrap().to_string(),
        "spiffe://cluster-b.test/server"
    );
    assert_eq!(
        tls::peer_id(&server).unwrap().to_string(),
        "spiffe://cluster-a.test/client"
    );
}

#[test]
fn intermediate_chain_is_accepted_both_ways() {
    let w = world();
    let mut s = baseline(&w);
    s.client_svid = Some(w.a.child_ca().svid("/client"));
    s.server_svid = w.b.child_ca().child_ca().svid("/server");
    assert!(s.run().is_ok());
}

// === server verifies client ===

#[test]
fn server_refuses_client_without_certificate() {
    let w = world();
    let mut s = baseline(&w);
    s.client_svid = None;
    let e = cert_error(Side::Server, s.run());
    assert!(matches!(e, rustls::Error::NoCertificatesPresented), "{e:?}");
}

#[test]
fn server_refuses_client_of_unknown_trust_domain() {
    let w = world();
    let c = TestCa::new("cluster-c.test");
    let mut s = baseline(&w);
    s.client_svid = Some(c.svid("/client"));
    s.client_authz = Authorizer::any();
    let e = cert_error(Side::Server, s.run());
    assert_verify_error(&e, |v| matches!(v, VerifyError::NoBundleForTrustDomain(_)));
}

#[test]
fn server_refuses_trust_domain_confusion() {
    let w = world();
    let mut s = baseline(&w);
    // Claims cluster-a, signed by cluster-b's CA; both bundles are loaded.
    s.client_svid = Some(
        w.b.issue(&LeafSpec::svid("spiffe://cluster-a.test/client"))
            .into_svid(),
    );
    let e = cert_error(Side::Server, s.run());
    assert_cert_error(&e, CertificateError::UnknownIssuer);
}

#[test]
fn server_refuses_unauthorized_client() {
    let w = world();
    let mut s = baseline(&w);
    s.client_authz = Authorizer::exact(id("spiffe://cluster-a.test/someone-else"));
    let e = cert_error(Side::Server, s.run());
    assert_cert_error(&e, CertificateError::ApplicationVerificationFailure);
}

#[test]
fn server_refuses_expired_client() {
    let w = world();
    let mut s = baseline(&w);
    s.client_svid = Some(expired(&w.a, "spiffe://cluster-a.test/client"));
    let e = cert_error(Side::Server, s.run());
    assert_cert_error(&e, CertificateError::Expired);
}

#[test]
fn server_refuses_client_with_server_only_eku() {
    let w = world();
    let mut s = baseline(&w);
    let spec = LeafSpec {
        ekus: vec![ExtendedKeyUsagePurpose::ServerAuth],
        ..LeafSpec::svid("spiffe://cluster-a.test/client")
    };
    s.client_svid = Some(w.a.issue(&spec).into_svid());
    let e = cert_error(Side::Server, s.run());
    assert_verify_error(&e, |v| matches!(v, VerifyError::WrongUsage("client")));
}

#[test]
fn server_with_empty_bundle_refuses_everything() {
    let w = world();
    let mut s = baseline(&w);
    s.server_bundles = BundleSet::from_bundles([Bundle::new(td("cluster-a.test"))]).unwrap();
    s.client_authz = Authorizer::any();
    let e = cert_error(Side::Server, s.run());
    assert_verify_error(&e, |v| matches!(v, VerifyError::EmptyBundle(_)));
}

#[test]
fn server_with_deny_all_refuses_valid_client() {
    let w = world();
    let mut s = baseline(&w);
    s.client_authz = Authorizer::deny_all();
    let e = cert_error(Side::Server, s.run());
    assert_cert_error(&e, CertificateError::ApplicationVerificationFailure);
}

// === client verifies server ===

#[test]
fn client_refuses_server_of_unknown_trust_domain() {
    let w = world();
    let mut s = baseline(&w);
    s.client_bundles = w.a.bundle_set();
    let e = cert_error(Side::Client, s.run());
    assert_verify_error(&e, |v| matches!(v, VerifyError::NoBundleForTrustDomain(_)));
}

#[test]
fn client_refuses_trust_domain_confusion() {
    let w = world();
    let mut s = baseline(&w);
    s.server_svid =
        w.a.issue(&LeafSpec::svid("spiffe://cluster-b.test/server"))
            .into_svid();
    let e = cert_error(Side::Client, s.run());
    assert_cert_error(&e, CertificateError::UnknownIssuer);
}

#[test]
fn client_refuses_unauthorized_server() {
    let w = world();
    let mut s = baseline(&w);
    s.server_authz = Authorizer::member_of(td("cluster-a.test"));
    let e = cert_error(Side::Client, s.run());
    assert_cert_error(&e, CertificateError::ApplicationVerificationFailure);
}

#[test]
fn client_refuses_expired_server() {
    let w = world();
    let mut s = baseline(&w);
    s.server_svid = expired(&w.b, "spiffe://cluster-b.test/server");
    let e = cert_error(Side::Client, s.run());
    assert_cert_error(&e, CertificateError::Expired);
}

#[test]
fn client_refuses_not_yet_valid_server() {
    let w = world();
    let mut s = baseline(&w);
    let spec = LeafSpec {
        not_before_days: 1,
        not_after_days: 30,
        ..LeafSpec::svid("spiffe://cluster-b.test/server")
    };
    s.server_svid = w.b.issue(&spec).into_svid();
    let e = cert_error(Side::Client, s.run());
    assert_cert_error(&e, CertificateError::NotValidYet);
}

#[test]
fn client_refuses_server_with_client_only_eku() {
    let w = world();
    let mut s = baseline(&w);
    let spec = LeafSpec {
        ekus: vec![ExtendedKeyUsagePurpose::ClientAuth],
        ..LeafSpec::svid("spiffe://cluster-b.test/server")
    };
    s.server_svid = w.b.issue(&spec).into_svid();
    let e = cert_error(Side::Client, s.run());
    assert_verify_error(&e, |v| matches!(v, VerifyError::WrongUsage("server")));
}

#[test]
fn client_refuses_server_leaf_that_is_a_ca() {
    let w = world();
    let mut s = baseline(&w);
    let spec = LeafSpec {
        is_ca: true,
        ..LeafSpec::svid("spiffe://cluster-b.test/server")
    };
    s.server_svid = w.b.issue(&spec).into_svid();
    let e = cert_error(Side::Client, s.run());
    assert_verify_error(&e, |v| matches!(v, VerifyError::LeafIsCa));
}

#[test]
fn client_with_empty_bundle_refuses_everything() {
    let w = world();
    let mut s = baseline(&w);
    s.client_bundles = BundleSet::from_bundles([Bundle::new(td("cluster-b.test"))]).unwrap();
    s.server_authz = Authorizer::any();
    let e = cert_error(Side::Client, s.run());
    assert_verify_error(&e, |v| matches!(v, VerifyError::EmptyBundle(_)));
}

#[test]
fn server_without_client_auth_and_anonymous_client() {
    let w = world();
    let server_svid = w.b.svid("/bundle-endpoint");
    let scfg = tls::server_config_no_client_auth(&server_svid).unwrap();
    let authz = Authorizer::exact(server_svid.id().clone());
    let sv = Arc::new(SpiffeServerVerifier::new(w.b.bundle_set(), authz));
    let ccfg = tls::client_config(None, sv).unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let mut client = ClientConnection::new(Arc::new(ccfg), name).unwrap();
    let mut server = ServerConnection::new(Arc::new(scfg)).unwrap();
    handshake(&mut client, &mut server).unwrap();
    assert_eq!(tls::peer_id(&client).as_ref(), Some(server_svid.id()));
    assert_eq!(tls::peer_id(&server), None);
}

#[test]
fn a_single_bundle_answers_only_for_its_own_trust_domain() {
    use fedgate_federation::bundle::BundleSource;
    let w = world();
    let bundle = w.a.bundle();
    assert!(bundle.bundle_for(&td("cluster-a.test")).is_some());
    assert!(bundle.bundle_for(&td("cluster-b.test")).is_none());
}

// === roles along the verified path ===

fn no_key_cert_sign() -> Option<Vec<KeyUsagePurpose>> {
    Some(vec![KeyUsagePurpose::DigitalSignature])
}

#[test]
fn server_refuses_client_whose_intermediate_lacks_key_cert_sign() {
    let w = world();
    let mut s = baseline(&w);
    s.client_svid = Some(w.a.child_ca_with(no_key_cert_sign()).svid("/client"));
    let e = cert_error(Side::Server, s.run());
    assert_verify_error(&e, |v| {
        matches!(v, VerifyError::IntermediateMissingKeyCertSign { .. })
    });
}

#[test]
fn client_refuses_server_whose_intermediate_lacks_key_cert_sign() {
    let w = world();
    let mut s = baseline(&w);
    s.server_svid = w.b.child_ca_with(None).svid("/server");
    let e = cert_error(Side::Client, s.run());
    assert_verify_error(&e, |v| {
        matches!(v, VerifyError::IntermediateWithoutKeyUsage { .. })
    });
}

#[test]
fn both_sides_refuse_peers_anchored_at_an_expired_root() {
    let a = TestCa::with_validity("cluster-a.test", -365, -1);
    let b = TestCa::with_validity("cluster-b.test", -365, -1);
    let both = BundleSet::from_bundles([a.bundle(), b.bundle()]).unwrap();
    let w = World { a, b, both };
    let e = cert_error(Side::Client, baseline(&w).run());
    assert_verify_error(&e, |v| matches!(v, VerifyError::AnchorExpired { .. }));

    // The server side, with a valid server identity and an expired client root.
    let valid_b = TestCa::new("cluster-b.test");
    let mut s = baseline(&w);
    s.server_svid = valid_b.svid("/server");
    s.client_bundles = BundleSet::from_bundles([w.a.bundle(), valid_b.bundle()]).unwrap();
    let e = cert_error(Side::Server, s.run());
    assert_verify_error(&e, |v| matches!(v, VerifyError::AnchorExpired { .. }));
}
