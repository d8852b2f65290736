//! Real rustls mTLS handshakes over 127.0.0.1 (tokio + tokio-rustls) between SVIDs of
//! `cluster-a.test` and `cluster-b.test`, each side holding a federated `BundleSet` with both
//! bundles (issue 3).
// Helpers outside #[test] fns unwrap too: a panic there is a test failure with a backtrace.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;

use fedgate_federation::bundle::{Bundle, BundleSet};
use fedgate_federation::tls::{self, verify_error_of, Authorizer};
use fedgate_federation::tls::{SpiffeClientVerifier, SpiffeServerVerifier};
use fedgate_federation::{SpiffeId, VerifyError, X509Svid};
use rcgen::KeyUsagePurpose;
use rustls::CertificateError;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use support::{td, LeafSpec, TestCa};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Upper bound for one side of a handshake to finish.
const HANG_LIMIT: std::time::Duration = std::time::Duration::from_secs(20);

/// What the server saw: the client's SPIFFE ID, or the handshake error.
type ServerOutcome = Result<SpiffeId, std::io::Error>;

/// Serves one TLS connection on 127.0.0.1:0 with `svid`, authenticating clients against
/// `bundles` and `authz`; echoes one byte back so the client sees a live session.
async fn serve_once(
    svid: &X509Svid,
    bundles: BundleSet,
    authz: Authorizer,
) -> (std::net::SocketAddr, tokio::task::JoinHandle<ServerOutcome>) {
    let verifier = Arc::new(SpiffeClientVerifier::new(bundles, authz));
    let acceptor = TlsAcceptor::from(Arc::new(tls::server_config(svid, verifier).unwrap()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await?;
        let mut stream = acceptor.accept(tcp).await?;
        let peer = tls::peer_id(stream.get_ref().1).unwrap();
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).await?;
        stream.write_all(&byte).await?;
        stream.shutdown().await?;
        Ok(peer)
    });
    (addr, task)
}

/// Connects presenting `chain`/`key` (which need not be a well-formed SVID), verifying the
/// server against `bundles` and `authz`; returns the server's SPIFFE ID after a one-byte
/// round trip.
async fn connect(
    addr: std::net::SocketAddr,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    bundles: BundleSet,
    authz: Authorizer,
) -> std::io::Result<SpiffeId> {
    let verifier = Arc::new(SpiffeServerVerifier::new(bundles, authz));
    let config = rustls::ClientConfig::builder_with_provider(tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(chain, key)
        .unwrap();
    let connector = TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("gateway.cluster-b.test").unwrap();
    let mut stream = connector.connect(name, tcp).await?;
    let peer = tls::peer_id(stream.get_ref().1).unwrap();
    stream.write_all(b"x").await?;
    let mut byte = [0u8; 1];
    // With TLS 1.3 the server checks the client certificate after the client's handshake is
    // done; a refusal surfaces here as an alert.
    stream.read_exact(&mut byte).await?;
    Ok(peer)
}

fn federated(a: &TestCa, b: &TestCa) -> BundleSet {
    BundleSet::from_bundles([a.bundle(), b.bundle()]).unwrap()
}

/// The rustls error inside an I/O error from tokio-rustls.
fn rustls_error(e: &std::io::Error) -> &rustls::Error {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .unwrap_or_else(|| panic!("not a rustls error: {e:?}"))
}

/// Client (chain, key) of some domain against a `cluster-b.test/gateway` server that holds
/// `server_bundles` and allows `server_authz`; the client trusts cluster-b's server.
async fn attempt(
    b: &TestCa,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    server_bundles: BundleSet,
    server_authz: Authorizer,
) -> (std::io::Result<SpiffeId>, ServerOutcome) {
    let server_svid = b.svid("/gateway");
    let (addr, server) = serve_once(&server_svid, server_bundles, server_authz).await;
    let client = connect(addr, chain, key, b.bundle_set(), Authorizer::any());
    // A safety net against a hung handshake, not synchronisation: both sides finish or fail
    // on their own long before this.
    let client = tokio::time::timeout(HANG_LIMIT, client)
        .await
        .expect("client hung");
    let server = tokio::time::timeout(HANG_LIMIT, server)
        .await
        .expect("server hung");
    (client, server.unwrap())
}

/// Asserts the server refused the client's certificate, and returns the rustls error.
fn server_refused(outcome: (std::io::Result<SpiffeId>, ServerOutcome)) -> rustls::Error {
    let (client, server) = outcome;
    assert!(
        client.is_err(),
        "client completed a session the server should refuse"
    );
    let err = server.expect_err("server accepted a client it should refuse");
    rustls_error(&err).clone()
}

fn invalid_cert(e: &rustls::Error) -> &CertificateError {
    match e {
        rustls::Error::InvalidCertificate(c) => c,
        other => panic!("expected InvalidCertificate, got {other:?}"),
    }
}

#[tokio::test]
async fn federated_mtls_succeeds_and_each_side_sees_the_other() {
    let a = TestCa::new("cluster-a.test");
    let b = TestCa::new("cluster-b.test");
    let server_svid = b.svid("/gateway");
    let client_svid = a.svid("/ns/web/sa/frontend");
    let (addr, server) = serve_once(
        &server_svid,
        federated(&a, &b),
        Authorizer::member_of(td("cluster-a.test")),
    )
    .await;
    let seen_by_client = connect(
        addr,
        client_svid.chain().to_vec(),
        client_svid.key(),
        federated(&a, &b),
        Authorizer::exact(server_svid.id().clone()),
    )
    .await
    .unwrap();
    let seen_by_server = server.await.unwrap().unwrap();
    assert_eq!(
        seen_by_client.to_string(),
        "spiffe://cluster-b.test/gateway"
    );
    assert_eq!(
        seen_by_server.to_string(),
        "spiffe://cluster-a.test/ns/web/sa/frontend"
    );
}

#[tokio::test]
async fn client_of_a_third_trust_domain_is_refused() {
    let a = TestCa::new("cluster-a.test");
    let b = TestCa::new("cluster-b.test");
    let c = TestCa::new("cluster-c.test");
    let svid = c.svid("/intruder");
    let e = server_refused(
        attempt(
            &b,
            svid.chain().to_vec(),
            svid.key(),
            federated(&a, &b),
            Authorizer::any(),
        )
        .await,
    );
    let v = verify_error_of(&e).expect("a VerifyError");
    assert!(
        matches!(v, VerifyError::NoBundleForTrustDomain(td) if td.as_str() == "cluster-c.test")
    );
}

/// threat-model invariant 1 over a real socket: a leaf claiming cluster-a but signed by
/// cluster-b's CA is refused although both bundles are loaded.
#[tokio::test]
async fn trust_domain_confusion_is_refused() {
    let a = TestCa::new("cluster-a.test");
    let b = TestCa::new("cluster-b.test");
    let forged = b.issue(&LeafSpec::svid(
        "spiffe://cluster-a.test/ns/web/sa/frontend",
    ));
    let key = forged.key_der();
    let e =
        server_refused(attempt(&b, forged.chain, key, federated(&a, &b), Authorizer::any()).await);
    assert_eq!(invalid_cert(&e), &CertificateError::UnknownIssuer);
}

#[tokio::test]
async fn empty_bundle_refuses_everything() {
    let a = TestCa::new("cluster-a.test");
    let b = TestCa::new("cluster-b.test");
    let empty = BundleSet::from_bundles([
        Bundle::new(td("cluster-a.test")),
        Bundle::new(td("cluster-b.test")),
    ])
    .unwrap();
    let svid = a.svid("/ns/web/sa/frontend");
    let e = server_refused(
        attempt(
            &b,
            svid.chain().to_vec(),
            svid.key(),
            empty.clone(),
            Authorizer::any(),
        )
        .await,
    );
    assert!(
        matches!(verify_error_of(&e), Some(VerifyError::EmptyBundle(_))),
        "{e:?}"
    );

    // And a client holding only an empty bundle refuses the server.
    let server_svid = b.svid("/gateway");
    let (addr, server) = serve_once(&server_svid, federated(&a, &b), Authorizer::any()).await;
    let err = connect(
        addr,
        svid.chain().to_vec(),
        svid.key(),
        empty,
        Authorizer::any(),
    )
    .await
    .unwrap_err();
    assert!(matches!(
        verify_error_of(rustls_error(&err)),
        Some(VerifyError::EmptyBundle(_))
    ));
    assert!(server.await.unwrap().is_err());
}

#[tokio::test]
async fn unauthorized_client_is_refused() {
    let a = TestCa::new("cluster-a.test");
    let b = TestCa::new("cluster-b.test");
    let svid = a.svid("/ns/web/sa/frontend");
    let only =
        Authorizer::exact(SpiffeId::parse("spiffe://cluster-a.test/ns/db/sa/admin").unwrap());
    let e = server_refused(
        attempt(
            &b,
            svid.chain().to_vec(),
            svid.key(),
            federated(&a, &b),
            only,
        )
        .await,
    );
    assert_eq!(
        invalid_cert(&e),
        &CertificateError::ApplicationVerificationFailure
    );
}

#[tokio::test]
async fn malformed_leaves_are_refused() {
    let a = TestCa::new("cluster-a.test");
    let b = TestCa::new("cluster-b.test");
    let base = LeafSpec::svid("spiffe://cluster-a.test/ns/web/sa/frontend");
    type Check = fn(&rustls::Error) -> bool;
    let cases: Vec<(&str, LeafSpec, Check)> = vec![
        (
            "leaf is CA",
            LeafSpec {
                is_ca: true,
                ..base.clone()
            },
            |e| matches!(verify_error_of(e), Some(VerifyError::LeafIsCa)),
        ),
        (
            "keyCertSign",
            LeafSpec {
                key_usages: vec![
                    KeyUsagePurpose::DigitalSignature,
                    KeyUsagePurpose::KeyCertSign,
                ],
                ..base.clone()
            },
            |e| matches!(verify_error_of(e), Some(VerifyError::LeafHasKeyCertSign)),
        ),
        (
            "no digitalSignature",
            LeafSpec {
                key_usages: vec![KeyUsagePurpose::KeyAgreement],
                ..base.clone()
            },
            |e| {
                matches!(
                    verify_error_of(e),
                    Some(VerifyError::LeafMissingDigitalSignature)
                )
            },
        ),
        (
            "two URI SANs",
            LeafSpec {
                uris: vec![base.uris[0].clone(), "spiffe://cluster-a.test/other".into()],
                ..base.clone()
            },
            |e| matches!(verify_error_of(e), Some(VerifyError::MultipleUriSans(2))),
        ),
        (
            "no URI SAN",
            LeafSpec {
                uris: vec![],
                ..base.clone()
            },
            |e| matches!(verify_error_of(e), Some(VerifyError::MissingUriSan)),
        ),
        (
            "expired",
            LeafSpec {
                not_before_days: -30,
                not_after_days: -1,
                ..base.clone()
            },
            |e| {
                matches!(
                    e,
                    rustls::Error::InvalidCertificate(CertificateError::Expired)
                )
            },
        ),
        (
            "not yet valid",
            LeafSpec {
                not_before_days: 1,
                not_after_days: 30,
                ..base.clone()
            },
            |e| {
                matches!(
                    e,
                    rustls::Error::InvalidCertificate(CertificateError::NotValidYet)
                )
            },
        ),
    ];
    for (name, spec, check) in cases {
        let issued = a.issue(&spec);
        let key = issued.key_der();
        let e = server_refused(
            attempt(&b, issued.chain, key, federated(&a, &b), Authorizer::any()).await,
        );
        assert!(check(&e), "{name}: unexpected error {e:?}");
    }
}

/// `tls::peek::peek_leaf` records the leaf a server presents and never completes the
/// handshake, so the server never sees an established session.
#[tokio::test]
async fn peek_leaf_records_the_presented_leaf_and_completes_no_handshake() {
    let a = TestCa::new("cluster-a.test");
    let svid = a.svid("/gateway");
    let acceptor = TlsAcceptor::from(Arc::new(tls::server_config_no_client_auth(&svid).unwrap()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        acceptor.accept(tcp).await.is_ok()
    });
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("gateway.cluster-a.test").unwrap();
    let leaf = tls::peek::peek_leaf(tcp, name, HANG_LIMIT).await;
    assert_eq!(leaf.as_ref(), Some(&svid.chain()[0]));
    assert!(!tokio::time::timeout(HANG_LIMIT, server)
        .await
        .unwrap()
        .unwrap());
}

/// A server that accepts and never answers gives `None` once the deadline passes.
#[tokio::test]
async fn peek_leaf_of_a_silent_server_is_none_at_the_deadline() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let _held = listener.accept().await.unwrap();
    let name = ServerName::try_from("gateway.cluster-a.test").unwrap();
    let leaf = tls::peek::peek_leaf(tcp, name, std::time::Duration::from_millis(100)).await;
    assert!(leaf.is_none());
}
