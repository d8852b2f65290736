//! `fedgate ca serve` end to end on 127.0.0.1: issuance for a mapped gateway, and every refusal
//! (policy, CSR, TTL, handshake) with its status, log-worthy reason and metric.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic fails the test

#[path = "support/issuer.rs"]
mod support;

use std::sync::Arc;
use std::time::Duration;

use fedgate_federation::svid::verify::verify;
use rustls_pki_types::UnixTime;
use support::*;

#[tokio::test]
async fn mapped_gateway_gets_its_bridge_svid() {
    let pki = Pki::new();
    let srv = Running::start(&pki.write_config("")).await;
    let gw_a = Pki::svid(&pki.a, GW_A);

    // Through the client: fresh key, CSR for the mapped ID, default ttl (1 h).
    let c = client(client_config(
        &pki,
        &srv.url,
        gw_a.clone(),
        BRIDGE_A,
        None,
        None,
    ));
    let svid = c.fetch_once().await.unwrap();
    assert_eq!(svid.id(), &id(BRIDGE_A));
    let v = verify(svid.chain(), &pki.bridge_bundles(), UnixTime::now()).unwrap();
    let left = v
        .not_after()
        .duration_since(std::time::SystemTime::now())
        .unwrap();
    assert!(
        left > Duration::from_secs(3500) && left <= Duration::from_secs(3600),
        "{left:?}"
    );

    // Raw: the response is a PEM chain; the CSR's key is the one certified.
    let (status, body) = post_raw(
        &pki,
        &srv.url,
        &gw_a,
        "?ttl=90s",
        "application/pkcs10",
        csr(&[BRIDGE_A], vec![]),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("-----BEGIN CERTIFICATE-----"), "{body}");

    // Gateway b gets its own.
    let gw_b = Pki::svid(&pki.b, GW_B);
    let c = client(client_config(
        &pki,
        &srv.url,
        gw_b,
        BRIDGE_B,
        Some(Duration::from_secs(60)),
        None,
    ));
    assert_eq!(c.fetch_once().await.unwrap().id(), &id(BRIDGE_B));
    assert_eq!(srv.metrics.issued_count(), 3);
    srv.stop().await;
}

#[tokio::test]
async fn policy_and_csr_refusals_are_counted_by_reason() {
    let pki = Pki::new();
    let srv = Running::start(&pki.write_config("")).await;
    let mut events = srv.metrics.subscribe();
    let gw_a = Pki::svid(&pki.a, GW_A);
    let workload = Pki::svid(&pki.a, "spiffe://cluster-a.test/ns/demo/sa/client");

    let mut ca_bc =
        rcgen::CustomExtension::from_oid_content(&[2, 5, 29, 19], vec![0x30, 3, 1, 1, 0xff]);
    ca_bc.set_criticality(true);
    let mut tampered = csr(&[BRIDGE_A], vec![]);
    let n = tampered.len();
    tampered[n - 5] ^= 0x01;

    let p10 = "application/pkcs10";
    let cases: Vec<(&_, &str, &str, Vec<u8>, u16, &str)> = vec![
        // A member workload that is not a gateway.
        (
            &workload,
            "",
            p10,
            csr(&[BRIDGE_A], vec![]),
            403,
            "unknown_identity",
        ),
        // Someone else's bridge ID.
        (
            &gw_a,
            "",
            p10,
            csr(&[BRIDGE_B], vec![]),
            403,
            "not_mapped_id",
        ),
        // A CSR asking for a CA certificate.
        (&gw_a, "", p10, csr(&[BRIDGE_A], vec![ca_bc]), 403, "ca_csr"),
        // Bad CSR signature (no proof of possession).
        (&gw_a, "", p10, tampered, 403, "bad_csr_signature"),
        // No requested ID; junk.
        (&gw_a, "", p10, csr(&[], vec![]), 403, "bad_csr"),
        (&gw_a, "", p10, b"junk".to_vec(), 403, "bad_csr"),
        // TTL over max_ttl (24 h), and a zero TTL.
        (
            &gw_a,
            "?ttl=25h",
            p10,
            csr(&[BRIDGE_A], vec![]),
            403,
            "ttl_too_long",
        ),
        (
            &gw_a,
            "?ttl=0s",
            p10,
            csr(&[BRIDGE_A], vec![]),
            403,
            "bad_ttl",
        ),
        // Malformed requests.
        (
            &gw_a,
            "?ttl=soon",
            p10,
            csr(&[BRIDGE_A], vec![]),
            400,
            "bad_request",
        ),
        (
            &gw_a,
            "",
            "application/json",
            csr(&[BRIDGE_A], vec![]),
            400,
            "bad_request",
        ),
        (&gw_a, "", p10, vec![0x30; 64 * 1024], 413, "too_large"),
    ];
    let total = cases.len() as u64;
    for (svid, query, ct, body, want_status, reason) in cases {
        let before = srv.metrics.refusals(reason);
        let (status, text) = post_raw(&pki, &srv.url, svid, query, ct, body)
            .await
            .unwrap();
        assert_eq!(status, want_status, "{reason}: {text}");
        assert!(text.contains(reason), "{reason}: {text}");
        assert_eq!(srv.metrics.refusals(reason), before + 1, "{reason}");
    }
    Running::await_events(&mut events, total).await;
    assert_eq!(srv.metrics.issued_count(), 0);

    // The same counts through the admin listener.
    let text = srv.metrics_text().await;
    for (reason, n) in [
        ("unknown_identity", 1),
        ("not_mapped_id", 1),
        ("ca_csr", 1),
        ("bad_csr_signature", 1),
        ("bad_csr", 2),
        ("ttl_too_long", 1),
        ("bad_request", 2),
        ("too_large", 1),
    ] {
        let line = format!("issuer_refusals_total{{reason=\"{reason}\"}} {n}");
        assert!(text.contains(&line), "missing {line} in\n{text}");
    }
    assert!(http_get(srv.admin, "/healthz").await.contains("ok"));
    srv.stop().await;
}

#[tokio::test]
async fn foreign_clients_fail_the_handshake_and_are_counted() {
    let pki = Pki::new();
    let srv = Running::start(&pki.write_config("")).await;
    let mut events = srv.metrics.subscribe();
    // Saved only now so that cluster-c's CA exists on disk for forging.
    pki.c.save(&pki.path("c-ca")).unwrap();
    let imposter = fedgate::ca::Ca::init(
        &fedgate_federation::TrustDomain::new("cluster-a.test").unwrap(),
        &fedgate::ca::InitOptions {
            ttl: Duration::from_secs(86_400),
            refresh_hint: None,
            intermediate: false,
        },
    )
    .unwrap();

    let cases = [
        // A client of a trust domain that is not a member.
        (
            Pki::svid(&pki.c, "spiffe://cluster-c.test/ns/fedgate/sa/gateway"),
            "non_member",
        ),
        // A gateway ID of member a, from a CA that is not a's.
        (Pki::svid(&imposter, GW_A), "untrusted_issuer"),
        // A gateway ID of member a, signed by member b's CA (must be checked with a's bundle).
        (pki.forge("b-ca", GW_A), "untrusted_issuer"),
    ];
    let mut seen = 0;
    for (svid, reason) in cases {
        let before = srv.metrics.refusals(reason);
        let r = post_raw(
            &pki,
            &srv.url,
            &svid,
            "",
            "application/pkcs10",
            csr(&[BRIDGE_A], vec![]),
        )
        .await;
        assert!(
            r.is_err(),
            "{reason}: expected a failed handshake, got {r:?}"
        );
        seen += 1;
        Running::await_events(&mut events, seen).await;
        assert_eq!(srv.metrics.refusals(reason), before + 1, "{reason}");
    }
    assert_eq!(srv.metrics.issued_count(), 0);
    srv.stop().await;
}

#[tokio::test]
async fn the_client_pins_the_endpoint_id() {
    let pki = Pki::new();
    let srv = Running::start(&pki.write_config("")).await;
    let mut cfg = client_config(
        &pki,
        &srv.url,
        Pki::svid(&pki.a, GW_A),
        BRIDGE_A,
        None,
        None,
    );
    cfg.ca_endpoint_id = id("spiffe://bridge.test/someone-else");
    let err = client(cfg).fetch_once().await.unwrap_err();
    assert!(err.to_string().contains(srv.url.as_str()), "{err}");
    assert_eq!(srv.metrics.issued_count(), 0);
    srv.stop().await;
}

#[tokio::test]
async fn a_dribbled_body_is_cut_at_the_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let pki = Pki::new();
    let path = pki.path("ca-serve.toml");
    std::fs::write(
        &path,
        pki.config_text("").replace(
            "handshake_timeout = \"5s\"",
            "handshake_timeout = \"300ms\"",
        ),
    )
    .unwrap();
    let srv = Running::start(&path).await;
    let gw_a = Pki::svid(&pki.a, GW_A);
    let verifier = std::sync::Arc::new(fedgate_federation::tls::SpiffeServerVerifier::new(
        pki.bridge_bundles(),
        fedgate_federation::tls::Authorizer::exact(id(ENDPOINT_ID)),
    ));
    let config = fedgate_federation::tls::client_config(Some(&gw_a), verifier).unwrap();
    let tcp = tokio::net::TcpStream::connect(srv.url.socket_addrs(|| None).unwrap()[0])
        .await
        .unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(rustls_pki_types::ServerName::try_from("ca").unwrap(), tcp)
        .await
        .unwrap();
    tls.write_all(
        b"POST /v1/issue HTTP/1.1\r\nHost: ca\r\nContent-Type: application/pkcs10\r\n\
          Content-Length: 400\r\n\r\n0123456789",
    )
    .await
    .unwrap();
    tls.flush().await.unwrap();
    // The rest never comes: the server answers 408 at its timeout.
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut response))
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("slow_body"), "{text}");
    assert_eq!(srv.metrics.refusals("slow_body"), 1);
    srv.stop().await;
}

#[tokio::test]
async fn a_burst_over_the_rate_limit_gets_429_with_retry_after() {
    let pki = Pki::new();
    let srv = Running::start(&pki.write_config("rate_limit = { per_minute = 1, burst = 2 }")).await;
    let gw_a = Pki::svid(&pki.a, GW_A);
    let post = |svid: Arc<fedgate_federation::X509Svid>, san: &'static str| {
        let (pki, url) = (&pki, srv.url.clone());
        async move {
            post_raw_with_headers(
                pki,
                &url,
                &svid,
                "",
                "application/pkcs10",
                csr(&[san], vec![]),
            )
            .await
            .unwrap()
        }
    };
    // The burst passes ...
    for _ in 0..2 {
        let (status, _, body) = post(gw_a.clone(), BRIDGE_A).await;
        assert_eq!(status, 200, "{body}");
    }
    // ... the next is refused with Retry-After (one token per minute: up to 60 s).
    let (status, headers, body) = post(gw_a.clone(), BRIDGE_A).await;
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("rate_limited"), "{body}");
    let after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&after), "{after}");
    assert_eq!(srv.metrics.refusals("rate_limited"), 1);
    assert_eq!(srv.metrics.issued_count(), 2);
    // Another caller has its own bucket.
    let (status, _, body) = post(Pki::svid(&pki.b, GW_B), BRIDGE_B).await;
    assert_eq!(status, 200, "{body}");
    let text = srv.metrics_text().await;
    assert!(
        text.contains("issuer_refusals_total{reason=\"rate_limited\"} 1"),
        "{text}"
    );
    srv.stop().await;
}
