//! Tests for the ClientHello parser: a real rustls hello, every prefix, re-framing, and
//! hand-built hellos for each rejection path.

use std::sync::Arc;

use proptest::prelude::*;

use super::*;

/// Records a real ClientHello from rustls (TLS 1.3 + 1.2, SNI and ALPN).
fn rustls_hello(server_name: &str, alpn: &[&[u8]]) -> Vec<u8> {
    let mut config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let name = rustls_pki_types::ServerName::try_from(server_name.to_owned()).unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).unwrap();
    }
    out
}

/// Extracts the handshake message bytes (header included) from a sequence of records.
fn handshake_bytes(records: &[u8]) -> Vec<u8> {
    let mut rest = records;
    let mut msg = Vec::new();
    while rest.len() >= 5 {
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        msg.extend_from_slice(&rest[5..5 + len]);
        rest = &rest[5 + len..];
    }
    msg
}

/// Frames `msg` into handshake records with fragments of the given sizes (the rest in one).
fn frame(msg: &[u8], sizes: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = msg;
    for &size in sizes {
        if rest.is_empty() {
            break;
        }
        let (head, tail) = rest.split_at(size.min(rest.len()));
        push_record(&mut out, 22, head);
        rest = tail;
    }
    if !rest.is_empty() {
        push_record(&mut out, 22, rest);
    }
    out
}

fn push_record(out: &mut Vec<u8>, content_type: u8, fragment: &[u8]) {
    out.push(content_type);
    out.extend_from_slice(&[3, 1]);
    out.extend_from_slice(&(fragment.len() as u16).to_be_bytes());
    out.extend_from_slice(fragment);
}

fn vec_u16(data: &[u8]) -> Vec<u8> {
    let mut v = (data.len() as u16).to_be_bytes().to_vec();
    v.extend_from_slice(data);
    v
}

fn sni_ext(entries: &[(u8, &[u8])]) -> (u16, Vec<u8>) {
    let mut list = Vec::new();
    for (kind, name) in entries {
        list.push(*kind);
        list.extend_from_slice(&vec_u16(name));
    }
    (0, vec_u16(&list))
}

fn alpn_ext(protocols: &[&[u8]]) -> (u16, Vec<u8>) {
    let mut list = Vec::new();
    for p in protocols {
        list.push(p.len() as u8);
        list.extend_from_slice(p);
    }
    (16, vec_u16(&list))
}

/// A hand-built TLS 1.2-style ClientHello handshake message with the given extensions.
fn hello_msg(extensions: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut body = vec![3, 3];
    body.extend_from_slice(&[7; 32]);
    body.push(0); // session id
    body.extend_from_slice(&vec_u16(&[0x13, 0x01, 0xc0, 0x2f]));
    body.extend_from_slice(&[1, 0]); // compression: null
    let mut exts = Vec::new();
    for (kind, data) in extensions {
        exts.extend_from_slice(&kind.to_be_bytes());
        exts.extend_from_slice(&vec_u16(data));
    }
    body.extend_from_slice(&vec_u16(&exts));
    handshake(1, &body)
}

fn handshake(kind: u8, body: &[u8]) -> Vec<u8> {
    let len = body.len() as u32;
    let mut msg = vec![kind, (len >> 16) as u8, (len >> 8) as u8, len as u8];
    msg.extend_from_slice(body);
    msg
}

fn hello_with_sni(name: &[u8]) -> Vec<u8> {
    frame(&hello_msg(&[sni_ext(&[(0, name)])]), &[])
}

#[test]
fn parses_rustls_hello() {
    let hello = rustls_hello("backend.example.com", &[b"h2", b"http/1.1"]);
    let info = parse_client_hello(&hello).unwrap().unwrap();
    assert_eq!(info.server_name.as_deref(), Some("backend.example.com"));
    assert_eq!(info.alpn, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
}

#[test]
fn every_strict_prefix_is_incomplete() {
    let hello = rustls_hello("backend.example.com", &[b"h2"]);
    for end in 0..hello.len() {
        assert_eq!(
            parse_client_hello(&hello[..end]),
            Ok(None),
            "prefix of {end} bytes"
        );
    }
    assert!(parse_client_hello(&hello).unwrap().is_some());
}

#[test]
fn hello_split_over_three_records_parses() {
    let hello = rustls_hello("backend.example.com", &[b"h2"]);
    let expected = parse_client_hello(&hello).unwrap().unwrap();
    let msg = handshake_bytes(&hello);
    let third = msg.len() / 3;
    let reframed = frame(&msg, &[third, third]);
    assert_eq!(reframed.len(), hello.len() + 10, "three records");
    assert_eq!(parse_client_hello(&reframed).unwrap(), Some(expected));
    for end in 0..reframed.len() {
        assert_eq!(
            parse_client_hello(&reframed[..end]),
            Ok(None),
            "prefix of {end} bytes"
        );
    }
}

#[test]
fn header_split_across_records_parses() {
    let msg = hello_msg(&[sni_ext(&[(0, b"a.example")])]);
    // One byte of handshake header in the first record, the rest later.
    for first in 1..6 {
        let info = parse_client_hello(&frame(&msg, &[first])).unwrap().unwrap();
        assert_eq!(info.server_name.as_deref(), Some("a.example"));
    }
}

#[test]
fn trailing_bytes_after_hello_are_ignored() {
    let mut hello = rustls_hello("backend.example.com", &[]);
    hello.extend_from_slice(b"\x17\x03\x03\x00\x05hello");
    let info = parse_client_hello(&hello).unwrap().unwrap();
    assert_eq!(info.server_name.as_deref(), Some("backend.example.com"));
}

#[test]
fn plaintext_and_garbage_are_not_tls() {
    for junk in [
        &b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n"[..],
        b"\x80\x2e\x01\x03\x01", // SSLv2-compatible hello
        b"\x16\x02\x00\x00\x05", // record major version 2
        b"SSH-2.0-OpenSSH_9.6\r\n",
        b"\x00",
    ] {
        assert_eq!(parse_client_hello(junk), Err(SniError::NotTls), "{junk:?}");
    }
}

#[test]
fn missing_sni_is_ok_without_name() {
    let info = parse_client_hello(&frame(&hello_msg(&[alpn_ext(&[b"h2"])]), &[]))
        .unwrap()
        .unwrap();
    assert_eq!(info.server_name, None);
    assert_eq!(info.alpn, vec![b"h2".to_vec()]);
    // No extensions block at all (TLS 1.0-1.2 allow it).
    let mut body = vec![3, 1];
    body.extend_from_slice(&[0; 32]);
    body.extend_from_slice(&[0, 0, 2, 0, 0x2f, 1, 0]);
    let info = parse_client_hello(&frame(&handshake(1, &body), &[]))
        .unwrap()
        .unwrap();
    assert_eq!(info, ClientHelloInfo::default());
}

#[test]
fn server_name_is_normalized() {
    let info = parse_client_hello(&hello_with_sni(b"Backend.EXAMPLE.com."))
        .unwrap()
        .unwrap();
    assert_eq!(info.server_name.as_deref(), Some("backend.example.com"));
}

#[test]
fn invalid_server_names_are_refused() {
    for name in [
        &b"bad_name.example"[..],
        b"10.0.0.1",
        b"::1",
        b"[::1]",
        b"a..example",
        b".example",
        b"example..",
        b".",
        b"",
        b"-a.example",
        b"a-.example",
        b"caf\xc3\xa9.example",
        b"a.example\0.evil",
        b"a example",
        &[b'a'; 64],
    ] {
        let err = parse_client_hello(&hello_with_sni(name)).unwrap_err();
        assert!(
            matches!(err, SniError::InvalidServerName(_)),
            "{name:?}: {err:?}"
        );
        assert_eq!(err.label(), "invalid_server_name");
    }
    let long = [
        &[b'a'; 63][..],
        b".",
        &[b'b'; 63],
        b".",
        &[b'c'; 63],
        b".",
        &[b'd'; 62],
    ]
    .concat();
    assert_eq!(long.len(), 254);
    assert!(matches!(
        parse_client_hello(&hello_with_sni(&long)),
        Err(SniError::InvalidServerName(_))
    ));
    let ok = &long[1..];
    assert!(parse_client_hello(&hello_with_sni(ok)).unwrap().is_some());
}

#[test]
fn two_names_are_refused() {
    let two_entries = hello_msg(&[sni_ext(&[(0, b"a.example"), (0, b"b.example")])]);
    assert_eq!(
        parse_client_hello(&frame(&two_entries, &[])),
        Err(SniError::Malformed("more than one host_name"))
    );
    let two_exts = hello_msg(&[sni_ext(&[(0, b"a.example")]), sni_ext(&[(0, b"b.example")])]);
    assert_eq!(
        parse_client_hello(&frame(&two_exts, &[])),
        Err(SniError::Malformed("duplicate server_name extension"))
    );
    // An unknown name type is skipped, as RFC 6066 allows future types.
    let other_type = hello_msg(&[sni_ext(&[(7, b"whatever"), (0, b"a.example")])]);
    let info = parse_client_hello(&frame(&other_type, &[]))
        .unwrap()
        .unwrap();
    assert_eq!(info.server_name.as_deref(), Some("a.example"));
}

#[test]
fn malformed_hellos_are_refused() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty sni list", frame(&hello_msg(&[(0, vec![0, 0])]), &[])),
        (
            "empty alpn list",
            frame(&hello_msg(&[(16, vec![0, 0])]), &[]),
        ),
        (
            "empty alpn name",
            frame(&hello_msg(&[(16, vec![0, 1, 0])]), &[]),
        ),
        (
            "sni list overruns",
            frame(&hello_msg(&[(0, vec![0, 9, 0, 0, 1, b'a'])]), &[]),
        ),
        (
            "duplicate alpn",
            frame(&hello_msg(&[alpn_ext(&[b"h2"]), alpn_ext(&[b"h2"])]), &[]),
        ),
        ("server hello", frame(&handshake(2, &[3, 3]), &[])),
        ("empty record", vec![22, 3, 1, 0, 0]),
        ("record too long", vec![22, 3, 1, 0x41, 0x01]),
        ("record minor version", vec![22, 3, 9, 0, 4]),
        ("truncated body", frame(&handshake(1, &[3, 3, 0]), &[])),
    ];
    for (what, bytes) in cases {
        let err = parse_client_hello(&bytes).unwrap_err();
        assert!(
            matches!(err, SniError::Malformed(_) | SniError::NotClientHello),
            "{what}: {err:?}"
        );
    }
    let server_hello = frame(&handshake(2, &[3, 3]), &[]);
    assert_eq!(
        parse_client_hello(&server_hello[..6]),
        Err(SniError::NotClientHello)
    );
}

#[test]
fn non_handshake_record_inside_hello_is_refused() {
    let msg = hello_msg(&[sni_ext(&[(0, b"a.example")])]);
    let mut bytes = frame(&msg[..10], &[]);
    push_record(&mut bytes, 21, &[2, 40]); // an alert between fragments
    bytes.extend_from_slice(&frame(&msg[10..], &[]));
    assert_eq!(
        parse_client_hello(&bytes),
        Err(SniError::Malformed(
            "non-handshake record inside the ClientHello"
        ))
    );
}

#[test]
fn oversized_hello_is_refused_without_reading_beyond() {
    // A 60 KiB hello against a 16 KiB bound: an unknown extension padded out, framed into full
    // records.
    let bound = 16 * 1024;
    let msg = hello_msg(&[sni_ext(&[(0, b"a.example")]), (0xfe00, vec![0; 60 * 1024])]);
    assert!(msg.len() > 60 * 1024);
    let records = frame(&msg, &[16 * 1024, 16 * 1024, 16 * 1024]);
    // Any prefix: either still incomplete (header not yet visible) or refused as too large.
    for end in [0, 1, 5, 6, 8, 9, 100, bound, records.len()] {
        match parse_client_hello_within(&records[..end], bound) {
            Ok(None) => assert!(end < 9, "{end}"),
            Err(e) => assert_eq!(e, SniError::TooLarge),
            Ok(Some(_)) => panic!("oversized hello accepted"),
        }
    }
    // Past the default bound (64 KiB) too.
    let msg = hello_msg(&[(0xfe00, vec![0; 40_000]), (0xfe01, vec![0; 30_000])]);
    assert!(msg.len() > MAX_CLIENT_HELLO);
    let records = frame(&msg, &[16 * 1024; 5]);
    assert_eq!(parse_client_hello(&records[..9]), Err(SniError::TooLarge));
    assert_eq!(SniError::TooLarge.label(), "client_hello_too_large");
}

#[test]
fn largest_accepted_hello_parses() {
    for bound in [16 * 1024, MAX_CLIENT_HELLO] {
        let padding = bound - hello_msg(&[(0xfe00, vec![])]).len();
        let msg = hello_msg(&[(0xfe00, vec![0; padding])]);
        assert_eq!(msg.len(), bound);
        let records = frame(&msg, &[1000; 70]);
        assert!(parse_client_hello_within(&records, bound)
            .unwrap()
            .is_some());
        let msg = hello_msg(&[(0xfe00, vec![0; padding + 1])]);
        assert_eq!(
            parse_client_hello_within(&frame(&msg, &[1000; 70]), bound),
            Err(SniError::TooLarge)
        );
    }
}

/// A ~20 KiB ClientHello, as post-quantum key shares make them: SNI, ALPN and a large
/// key_share-sized extension.
fn big_hello_msg(size: usize) -> Vec<u8> {
    let base = hello_msg(&[
        sni_ext(&[(0, b"pq.cluster-b.example")]),
        alpn_ext(&[b"h2"]),
        (0xfe00, vec![]),
    ]);
    let pad = size - base.len();
    let key_share: Vec<u8> = (0..pad).map(|i| (i % 251) as u8).collect();
    hello_msg(&[
        sni_ext(&[(0, b"pq.cluster-b.example")]),
        alpn_ext(&[b"h2"]),
        (0xfe00, key_share),
    ])
}

#[test]
fn hello_of_20_kib_over_two_records_parses() {
    let msg = big_hello_msg(20 * 1024);
    assert_eq!(msg.len(), 20 * 1024);
    // A full 16 KiB record and the rest: what a TLS stack sends.
    let records = frame(&msg, &[16 * 1024]);
    assert_eq!(records.len(), msg.len() + 10, "two records");
    let info = parse_client_hello(&records).unwrap().unwrap();
    assert_eq!(info.server_name.as_deref(), Some("pq.cluster-b.example"));
    assert_eq!(info.alpn, vec![b"h2".to_vec()]);
    // Every prefix is incomplete; no prefix is refused.
    for end in (0..records.len())
        .step_by(97)
        .chain([16 * 1024 + 4, 16 * 1024 + 5])
    {
        assert_eq!(parse_client_hello(&records[..end]), Ok(None), "{end}");
    }
}

#[test]
fn assembler_resumes_and_still_refuses_junk_and_oversize() {
    let msg = big_hello_msg(20 * 1024);
    let bytes = frame(&msg, &vec![10; msg.len() / 10 + 1]);
    let mut a = HelloAssembler::new(MAX_CLIENT_HELLO);
    // Byte by byte: every prefix but the whole is incomplete.
    for end in 0..bytes.len() {
        assert_eq!(a.parse(&bytes[..end]), Ok(None), "{end}");
    }
    let info = a.parse(&bytes).unwrap().unwrap();
    assert_eq!(info.server_name.as_deref(), Some("pq.cluster-b.example"));
    // A non-handshake record after some complete ones is still refused.
    let mut a = HelloAssembler::new(MAX_CLIENT_HELLO);
    let mut junk = bytes[..15].to_vec();
    assert_eq!(a.parse(&junk), Ok(None));
    junk.extend_from_slice(&[21, 3, 1, 0, 2, 2, 40]);
    assert_eq!(
        a.parse(&junk),
        Err(SniError::Malformed(
            "non-handshake record inside the ClientHello"
        ))
    );
    // The bound: a hello declaring more than it is refused once the length is visible.
    let mut a = HelloAssembler::new(16 * 1024);
    assert_eq!(a.parse(&bytes[..5]), Ok(None));
    assert_eq!(a.parse(&bytes[..30]), Err(SniError::TooLarge));
}

#[test]
fn hello_of_20_kib_over_many_small_records_parses() {
    let msg = big_hello_msg(20 * 1024);
    for size in [1, 7, 100, 1000, 4096] {
        let records = frame(&msg, &vec![size; msg.len() / size + 1]);
        let info = parse_client_hello(&records).unwrap().unwrap();
        assert_eq!(
            info.server_name.as_deref(),
            Some("pq.cluster-b.example"),
            "{size}"
        );
        assert_eq!(parse_client_hello(&records[..records.len() - 1]), Ok(None));
    }
}

#[test]
fn dns_name_rules() {
    assert_eq!(normalize_dns_name(b"A.Example").unwrap(), "a.example");
    assert_eq!(normalize_dns_name(b"localhost").unwrap(), "localhost");
    assert_eq!(
        normalize_dns_name(b"xn--caf-dma.example").unwrap(),
        "xn--caf-dma.example"
    );
    assert_eq!(
        normalize_dns_name(b"1.2.3.example").unwrap(),
        "1.2.3.example"
    );
    assert_eq!(normalize_dns_name(b"a1.b2.c3").unwrap(), "a1.b2.c3");
    for bad in [
        &b"1.2.3.4"[..],
        b"123",
        b"a.b..",
        b"a b",
        b"*.example",
        b"a/b",
        b"a.-",
    ] {
        assert!(normalize_dns_name(bad).is_err(), "{bad:?}");
    }
}

fn sample_hello() -> Vec<u8> {
    rustls_hello("svc.cluster-b.example", &[b"h2", b"http/1.1"])
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = parse_client_hello(&bytes);
    }

    #[test]
    fn arbitrary_bytes_after_handshake_header_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..1024),
        splits in proptest::collection::vec(1usize..64, 0..8),
    ) {
        // Exercise the body parser, not just the record layer.
        let _ = parse_client_hello(&frame(&handshake(1, &bytes), &splits));
    }

    #[test]
    fn mutated_hello_never_panics(index in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut hello = sample_hello();
        let i = index.index(hello.len());
        hello[i] = byte;
        let _ = parse_client_hello(&hello);
    }

    #[test]
    fn any_prefix_of_valid_hello_is_incomplete(index in any::<prop::sample::Index>()) {
        let hello = sample_hello();
        let end = index.index(hello.len());
        prop_assert_eq!(parse_client_hello(&hello[..end]), Ok(None));
    }

    #[test]
    fn big_hello_random_record_splits_parse_the_same(
        size in 17usize * 1024..24 * 1024,
        splits in proptest::collection::vec(1usize..=16 * 1024, 0..40),
        cut in any::<prop::sample::Index>(),
    ) {
        let msg = big_hello_msg(size);
        let expected = parse_client_hello(&frame(&msg, &[16 * 1024])).unwrap();
        prop_assert!(expected.is_some());
        // Full records after the random ones, so that no record exceeds 2^14 bytes.
        let mut splits = splits;
        splits.extend([16 * 1024; 2]);
        let reframed = frame(&msg, &splits);
        prop_assert_eq!(parse_client_hello(&reframed), Ok(expected));
        let end = cut.index(reframed.len());
        prop_assert_eq!(parse_client_hello(&reframed[..end]), Ok(None));
    }

    /// One assembler fed a growing buffer (as the peek loop does) agrees with a fresh parse of
    /// every prefix: incomplete until the end, then the same answer.
    #[test]
    fn assembler_over_growing_prefixes_matches_fresh_parses(
        size in 300usize..24 * 1024,
        record in 1usize..=16 * 1024,
        reads in proptest::collection::vec(1usize..3000, 1..64),
    ) {
        let msg = big_hello_msg(size);
        let bytes = frame(&msg, &vec![record; size / record + 1]);
        let expected = parse_client_hello(&bytes).unwrap();
        prop_assert!(expected.is_some());
        let mut assembler = HelloAssembler::new(MAX_CLIENT_HELLO);
        let mut end = 0;
        let mut reads = reads.into_iter().cycle();
        loop {
            end = (end + reads.next().unwrap_or(1)).min(bytes.len());
            let got = assembler.parse(&bytes[..end]);
            prop_assert_eq!(&got, &parse_client_hello(&bytes[..end]));
            if end == bytes.len() {
                prop_assert_eq!(got, Ok(expected));
                break;
            }
            prop_assert_eq!(got, Ok(None));
        }
    }

    #[test]
    fn random_record_splits_parse_the_same(
        splits in proptest::collection::vec(1usize..400, 0..12),
    ) {
        let hello = sample_hello();
        let expected = parse_client_hello(&hello).unwrap();
        let reframed = frame(&handshake_bytes(&hello), &splits);
        prop_assert_eq!(parse_client_hello(&reframed), Ok(expected));
    }
}
