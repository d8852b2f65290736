//! Writes the generated part of the seed corpus (`corpus/<target>/seed-*`): real ClientHellos
//! from rustls, PROXY v2 headers from fedgate's encoder, bundles from an in-memory CA, and CSRs
//! from rcgen. Run from `fuzz/`: `cargo run --example make_seeds`. The configs and SPIFFE ID
//! seeds are plain files, kept by hand. Keys are fresh on every run, so the bytes change.

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use fedgate::ca::{Ca, InitOptions};
use fedgate_dataplane::proxy_protocol::{ProxyHeader, TLV_AUTHORITY, TLV_ORIGIN_ID, TLV_SPIFFE_ID};
use fedgate_federation::{Bundle, TrustDomain};
use rcgen::{CertificateParams, CustomExtension, KeyPair, SanType};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Seed name, server name, protocol versions, ALPN protocols.
type HelloCase<'a> = (
    &'a str,
    &'a str,
    &'a [&'static rustls::SupportedProtocolVersion],
    &'a [&'a [u8]],
);

fn main() -> Result<()> {
    client_hellos()?;
    proxy_headers()?;
    bundles()?;
    csrs()?;
    Ok(())
}

fn write(target: &str, name: &str, bytes: &[u8]) -> Result<()> {
    let dir = Path::new("corpus").join(target);
    fs::create_dir_all(&dir)?;
    fs::write(dir.join(format!("seed-{name}")), bytes)?;
    Ok(())
}

fn client_hellos() -> Result<()> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cases: [HelloCase; 4] = [
        (
            "tls13-sni-alpn",
            "echo.cluster-b.test",
            &[&rustls::version::TLS13],
            &[b"h2", b"http/1.1"],
        ),
        (
            "tls12-tls13-sni",
            "Svc.Cluster-A.Test",
            rustls::DEFAULT_VERSIONS,
            &[],
        ),
        (
            "tls12-only",
            "api.example.org",
            &[&rustls::version::TLS12],
            &[b"spiffe-bridge"],
        ),
        ("ip-no-sni", "10.0.0.1", rustls::DEFAULT_VERSIONS, &[]),
    ];
    for (name, server, versions, alpn) in cases {
        let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)?
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let server_name = rustls::pki_types::ServerName::try_from(server.to_string())?;
        let mut conn = rustls::ClientConnection::new(Arc::new(config), server_name)?;
        let mut hello = Vec::new();
        while conn.wants_write() {
            conn.write_tls(&mut hello)?;
        }
        write("client_hello", name, &hello)?;

        if name == "tls13-sni-alpn" {
            // The same message in three records, then bytes after it (which the target uses
            // to choose its own split points).
            let message = &hello[5..];
            let mut split = Vec::new();
            for part in [&message[..1], &message[1..40], &message[40..]] {
                split.extend_from_slice(&[0x16, 0x03, 0x01]);
                split.extend_from_slice(&u16::try_from(part.len())?.to_be_bytes());
                split.extend_from_slice(part);
            }
            split.extend_from_slice(&[3, 0, 200, 17]);
            write("client_hello", "tls13-three-records", &split)?;
        }
    }
    Ok(())
}

fn proxy_headers() -> Result<()> {
    let v4 = ProxyHeader::proxy("10.1.2.3:40000".parse()?, "10.9.8.7:443".parse()?)
        .with_tlv(TLV_ORIGIN_ID, "spiffe://cluster-a.test/ns/app/sa/caller")
        .with_tlv(TLV_SPIFFE_ID, "spiffe://bridge.test/gateway/cluster-a")
        .with_tlv(TLV_AUTHORITY, "svc.cluster-b.test:443");
    let v6 = ProxyHeader::proxy("[2001:db8::1]:5000".parse()?, "[2001:db8::2]:8443".parse()?)
        .with_tlv(TLV_SPIFFE_ID, "spiffe://cluster-a.test/x")
        .with_tlv(0x30, vec![0, 255, 1]);
    let mixed = ProxyHeader::proxy("192.0.2.1:1".parse()?, "[::1]:2".parse()?);
    let local = ProxyHeader::local().with_tlv(TLV_AUTHORITY, "svc.cluster-b.test:443");
    // The first byte is the target's knob: bits 0-4 the reader's chunk size - 1, bit 7 a
    // 512-byte limit instead of the format's maximum.
    for (name, knob, header, payload) in [
        ("v4-tlvs", 0x0f_u8, &v4, &b"GET / HTTP/1.1\r\n"[..]),
        ("v4-tlvs-limit512-bytewise", 0x80, &v4, &b""[..]),
        ("v6-opaque-tlv", 0x03, &v6, &b"\x16\x03\x01"[..]),
        ("mixed-families", 0x1f, &mixed, &b""[..]),
        ("local-authority", 0x07, &local, &b"payload"[..]),
    ] {
        let mut bytes = vec![knob];
        bytes.extend_from_slice(&header.encode()?);
        bytes.extend_from_slice(payload);
        write("proxy_v2", name, &bytes)?;
    }
    // LOCAL with a UNIX address block (216 bytes, skipped) and one TLV, built by hand.
    let mut unix = vec![0x01];
    unix.extend_from_slice(b"\r\n\r\n\0\r\nQUIT\n");
    unix.extend_from_slice(&[0x20, 0x31]);
    let body_len = 216 + 3 + 4;
    unix.extend_from_slice(&u16::try_from(body_len)?.to_be_bytes());
    unix.extend_from_slice(&[0u8; 216]);
    unix.extend_from_slice(&[0x04, 0x00, 0x04, 1, 2, 3, 4]);
    write("proxy_v2", "local-unix-block", &unix)?;
    Ok(())
}

fn bundles() -> Result<()> {
    let td = TrustDomain::new("cluster-a.test")?;
    let opts = InitOptions {
        ttl: Duration::from_secs(365 * 24 * 3600),
        refresh_hint: Some(Duration::from_secs(300)),
        intermediate: false,
    };
    let ca = Ca::init(&td, &opts)?;
    write("bundle_json", "ca-init-p256", &ca.bundle().to_json())?;

    // Two roots (after a rotation), an Ed25519 root, a JWT key and entries the spec ignores.
    let mut rotated = Ca::init(&td, &opts)?;
    rotated.rotate()?;
    let mut bundle: Bundle = rotated.bundle().clone();
    let ed_key = KeyPair::generate_for(&rcgen::PKCS_ED25519)?;
    let mut ed_params = CertificateParams::new(Vec::<String>::new())?;
    ed_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ed_params
        .subject_alt_names
        .push(SanType::URI("spiffe://cluster-a.test".try_into()?));
    let ed_root = ed_params.self_signed(&ed_key)?;
    bundle.add_x509_authority(ed_root.der().clone());
    let mut doc: serde_json::Value = serde_json::from_slice(&bundle.to_json())?;
    let keys = doc["keys"].as_array_mut().ok_or("keys")?;
    keys.push(serde_json::json!({
        "use": "jwt-svid", "kty": "EC", "kid": "jwt-key-1", "crv": "P-256",
        "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
        "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"
    }));
    keys.push(serde_json::json!({ "use": "x509-svid", "kty": "oct", "k": "AAAA" }));
    keys.push(serde_json::json!({ "kty": "EC", "crv": "P-256" }));
    write(
        "bundle_json",
        "rotated-ed25519-jwt-ignored",
        &serde_json::to_vec(&doc)?,
    )?;
    write(
        "bundle_json",
        "empty-keys",
        br#"{"keys":[],"spiffe_sequence":7}"#,
    )?;
    Ok(())
}

fn csrs() -> Result<()> {
    let uri = |s: &str| -> Result<SanType> { Ok(SanType::URI(s.try_into()?)) };

    let key = KeyPair::generate()?;
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.subject_alt_names
        .push(uri("spiffe://bridge.test/gateway/cluster-a")?);
    write("csr", "p256-one-uri", p.serialize_request(&key)?.der())?;

    let ed = KeyPair::generate_for(&rcgen::PKCS_ED25519)?;
    write("csr", "ed25519-one-uri", p.serialize_request(&ed)?.der())?;

    let p384 = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384)?;
    let mut names = CertificateParams::new(vec!["gw.cluster-a.test".to_string()])?;
    names
        .subject_alt_names
        .push(uri("spiffe://bridge.test/gateway/cluster-b")?);
    write(
        "csr",
        "p384-dns-and-uri",
        names.serialize_request(&p384)?.der(),
    )?;

    let mut two = CertificateParams::new(Vec::<String>::new())?;
    two.subject_alt_names.push(uri("spiffe://bridge.test/a")?);
    two.subject_alt_names.push(uri("spiffe://bridge.test/b")?);
    write("csr", "two-uris", two.serialize_request(&key)?.der())?;

    // basicConstraints cA=TRUE (rcgen does not put `is_ca` into a CSR itself).
    let mut ca = p.clone();
    let mut bc = CustomExtension::from_oid_content(&[2, 5, 29, 19], vec![0x30, 3, 1, 1, 0xff]);
    bc.set_criticality(true);
    ca.custom_extensions.push(bc);
    write("csr", "asks-for-ca", ca.serialize_request(&key)?.der())?;

    let mut not_spiffe = CertificateParams::new(Vec::<String>::new())?;
    not_spiffe
        .subject_alt_names
        .push(uri("https://bridge.test/gateway")?);
    write(
        "csr",
        "https-uri",
        not_spiffe.serialize_request(&key)?.der(),
    )?;
    Ok(())
}
