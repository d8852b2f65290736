//! Tests for PROXY v2: round trips, every prefix, each rejection, and the async reader's
//! exact-read, size-limit and deadline behaviour.

use std::time::Duration;

use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

const MAX: usize = 512;

fn v4() -> ProxyHeader {
    ProxyHeader::proxy(
        "10.1.2.3:40000".parse().unwrap(),
        "10.9.8.7:443".parse().unwrap(),
    )
    .with_tlv(TLV_ORIGIN_ID, "spiffe://cluster-a.test/ns/app/sa/caller")
    .with_tlv(TLV_SPIFFE_ID, "spiffe://bridge.test/gateway/cluster-a")
    .with_tlv(TLV_AUTHORITY, "svc.cluster-b.test:443")
}

fn v6() -> ProxyHeader {
    ProxyHeader::proxy(
        "[2001:db8::1]:5000".parse().unwrap(),
        "[2001:db8::2]:8443".parse().unwrap(),
    )
    .with_tlv(TLV_SPIFFE_ID, "spiffe://cluster-a.test/x")
    .with_tlv(0x30, vec![0, 255, 1])
}

fn local() -> ProxyHeader {
    ProxyHeader::local().with_tlv(TLV_AUTHORITY, "svc.cluster-b.test:443")
}

/// A raw header: signature, ver/cmd, family, then `body` with its length.
fn raw(ver_cmd: u8, family: u8, body: &[u8]) -> Vec<u8> {
    let mut out = SIGNATURE.to_vec();
    out.push(ver_cmd);
    out.push(family);
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(body);
    out
}

#[test]
fn round_trips() {
    for header in [v4(), v6(), local(), ProxyHeader::local()] {
        let bytes = header.encode().unwrap();
        let (decoded, used) = ProxyHeader::decode(&bytes, MAX).unwrap().unwrap();
        assert_eq!(decoded, header);
        assert_eq!(used, bytes.len());
    }
}

#[test]
fn encodes_known_bytes() {
    let bytes = ProxyHeader::proxy("1.2.3.4:1".parse().unwrap(), "5.6.7.8:2".parse().unwrap())
        .encode()
        .unwrap();
    let mut expected = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
    expected.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2]);
    assert_eq!(bytes, expected);
    assert_eq!(
        ProxyHeader::local().encode().unwrap(),
        b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00"
    );
}

#[test]
fn accessors() {
    let h = v4();
    assert_eq!(
        h.origin_id(),
        Some("spiffe://cluster-a.test/ns/app/sa/caller")
    );
    assert_eq!(h.authority(), Some("svc.cluster-b.test:443"));
    assert_eq!(h.peer_id(), Some("spiffe://bridge.test/gateway/cluster-a"));
    assert_eq!(h.tlv(0x99), None);
    assert_eq!(v6().tlv(0x30), Some(&[0, 255, 1][..]));
    assert_eq!(v6().authority(), None);
    let not_utf8 = ProxyHeader::local()
        .with_tlv(TLV_SPIFFE_ID, vec![0xff])
        .with_tlv(TLV_ORIGIN_ID, vec![0xff]);
    assert_eq!(not_utf8.origin_id(), None);
    assert_eq!(not_utf8.peer_id(), None);
    // The strict accessor tells absent from invalid.
    assert!(matches!(
        not_utf8.text_tlv(TLV_ORIGIN_ID),
        Err(ProxyError::InvalidUtf8 {
            kind: TLV_ORIGIN_ID
        })
    ));
    assert_eq!(v6().text_tlv(TLV_AUTHORITY).unwrap(), None);
    assert_eq!(
        h.text_tlv(TLV_AUTHORITY).unwrap(),
        Some("svc.cluster-b.test:443")
    );
}

#[test]
fn mixed_families_encode_as_mapped_v6() {
    let h = ProxyHeader::proxy(
        "1.2.3.4:1".parse().unwrap(),
        "[2001:db8::2]:2".parse().unwrap(),
    );
    let (decoded, _) = ProxyHeader::decode(&h.encode().unwrap(), MAX)
        .unwrap()
        .unwrap();
    let (src, dst) = decoded.addresses.unwrap();
    assert_eq!(src, "[::ffff:1.2.3.4]:1".parse().unwrap());
    assert_eq!(dst, "[2001:db8::2]:2".parse().unwrap());
}

#[test]
fn every_strict_prefix_is_incomplete() {
    for header in [v4(), v6(), local()] {
        let bytes = header.encode().unwrap();
        for end in 0..bytes.len() {
            assert!(
                matches!(ProxyHeader::decode(&bytes[..end], MAX), Ok(None)),
                "prefix of {end} bytes"
            );
        }
    }
}

#[test]
fn payload_after_header_is_not_consumed() {
    let mut bytes = v4().encode().unwrap();
    let len = bytes.len();
    bytes.extend_from_slice(b"\x16\x03\x01 payload");
    let (header, used) = ProxyHeader::decode(&bytes, MAX).unwrap().unwrap();
    assert_eq!((header, used), (v4(), len));
}

#[test]
fn junk_is_refused_at_the_first_wrong_byte() {
    for junk in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
        b"\x16",
        b"\r\n\r\n\0\r\nQUIx",
    ] {
        let err = ProxyHeader::decode(junk, MAX).unwrap_err();
        assert!(matches!(err, ProxyError::NotProxyV2), "{junk:?}: {err}");
        assert_eq!(err.label(), "not_proxy_v2");
    }
}

#[test]
fn each_rejection() {
    let ip4 = [0u8; 12];
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (raw(0x11, 0x11, &ip4), "unsupported_version"),
        (raw(0x31, 0x11, &ip4), "unsupported_version"),
        (raw(0x22, 0x11, &ip4), "unknown_command"),
        (raw(0x2f, 0x11, &ip4), "unknown_command"),
        (raw(0x21, 0x12, &ip4), "unsupported_family"), // UDP
        (raw(0x21, 0x31, &[0; 216]), "unsupported_family"), // AF_UNIX
        (raw(0x21, 0x00, &[]), "unsupported_family"),  // PROXY with AF_UNSPEC
        (raw(0x20, 0x41, &[]), "unsupported_family"),
        (raw(0x21, 0x11, &[0; 11]), "address_too_short"),
        (raw(0x21, 0x21, &[0; 35]), "address_too_short"),
        (raw(0x20, 0x11, &[0; 4]), "address_too_short"),
        (
            raw(0x21, 0x11, &[&ip4[..], &[0xe0, 0]].concat()),
            "malformed_tlv",
        ),
        (
            raw(0x21, 0x11, &[&ip4[..], &[0x30, 0, 5, 1]].concat()),
            "malformed_tlv",
        ),
        (raw(0x20, 0x00, &[0xe0, 0, 2, 0xc3, 0x28]), "invalid_utf8"),
        (raw(0x20, 0x00, &[0x02, 0, 1, 0xff]), "invalid_utf8"),
        (raw(0x20, 0x00, &[0xe1, 0, 1, 0xff]), "invalid_utf8"),
        (raw(0x20, 0x00, &[0xe1, 0, 0, 0xe1, 0, 0]), "duplicate_tlv"),
        (
            raw(0x20, 0x00, &[0xe0, 0, 1, b'a', 0xe0, 0, 1, b'b']),
            "duplicate_tlv",
        ),
        (
            raw(0x20, 0x00, &[0x02, 0, 1, b'a', 0x02, 0, 1, b'b']),
            "duplicate_tlv",
        ),
        (raw(0x20, 0x00, &[0; MAX]), "too_long"),
    ];
    for (bytes, label) in cases {
        let err = ProxyHeader::decode(&bytes, MAX).unwrap_err();
        assert_eq!(err.label(), label, "{bytes:?}: {err}");
    }
    // Uninterpreted TLVs may repeat and carry any bytes; LOCAL skips any address block.
    let ok = raw(
        0x20,
        0x11,
        &[&[0u8; 12][..], &[0x30, 0, 1, 0xff, 0x30, 0, 0]].concat(),
    );
    let (h, _) = ProxyHeader::decode(&ok, MAX).unwrap().unwrap();
    assert_eq!(h.addresses, None);
    assert_eq!(h.tlvs.len(), 2);
}

#[test]
fn over_limit_is_refused_from_the_fixed_header_alone() {
    let bytes = raw(0x20, 0x00, &[&[0x30, 0, 97][..], &[0; 97]].concat());
    let err = ProxyHeader::decode(&bytes[..16], 100).unwrap_err();
    assert!(
        matches!(err, ProxyError::TooLong { len: 116, max: 100 }),
        "{err}"
    );
    assert!(ProxyHeader::decode(&bytes, 116).unwrap().is_some());
}

#[test]
fn encode_refuses_what_the_format_cannot_express() {
    let big_tlv = ProxyHeader::local().with_tlv(0x30, vec![0; 65_536]);
    assert!(matches!(
        big_tlv.encode(),
        Err(ProxyError::EncodeTooLong { len: 65_536 })
    ));
    let many = (0..2).fold(ProxyHeader::local(), |h, _| {
        h.with_tlv(0x30, vec![0; 40_000])
    });
    let err = many.encode().unwrap_err();
    assert_eq!(err.label(), "encode_too_long");
}

#[tokio::test]
async fn reader_takes_exactly_the_header() {
    let header = v4();
    let mut wire = header.encode().unwrap();
    wire.extend_from_slice(b"payload");
    let (mut client, mut server) = tokio::io::duplex(1024);
    client.write_all(&wire).await.unwrap();
    let got = read_proxy_header(&mut server, MAX, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(got, header);
    let mut rest = [0u8; 7];
    server.read_exact(&mut rest).await.unwrap();
    assert_eq!(&rest, b"payload");
}

#[tokio::test]
async fn reader_handles_one_byte_writes() {
    let wire = v6().encode().unwrap();
    // A duplex of capacity 1 delivers the header one byte per read.
    let (mut client, mut server) = tokio::io::duplex(1);
    let writer = tokio::spawn(async move {
        client.write_all(&wire).await.unwrap();
        client
    });
    let got = read_proxy_header(&mut server, MAX, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(got, v6());
    drop(writer.await.unwrap());
}

#[tokio::test]
async fn reader_refuses_junk_without_waiting_for_more() {
    let (mut client, mut server) = tokio::io::duplex(64);
    client.write_all(b"GET").await.unwrap();
    // The writer stays open: only early rejection can end this read before the deadline.
    let err = read_proxy_header(&mut server, MAX, Duration::from_secs(30))
        .await
        .unwrap_err();
    assert_eq!(err.label(), "not_proxy_v2");
    drop(client);
}

#[tokio::test]
async fn reader_refuses_oversized_length_before_reading_it() {
    let (mut client, mut server) = tokio::io::duplex(64);
    let wire = raw(0x20, 0x00, &[0; 1000]);
    // Only the fixed header is sent; the reader must not wait for the 1000 declared bytes.
    client.write_all(&wire[..16]).await.unwrap();
    let err = read_proxy_header(&mut server, MAX, Duration::from_secs(30))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ProxyError::TooLong {
                len: 1016,
                max: MAX
            }
        ),
        "{err}"
    );
    drop(client);
}

#[tokio::test]
async fn reader_reports_eof() {
    let wire = v4().encode().unwrap();
    for cut in [0, 5, 16, wire.len() - 1] {
        let (mut client, mut server) = tokio::io::duplex(1024);
        client.write_all(&wire[..cut]).await.unwrap();
        drop(client);
        let err = read_proxy_header(&mut server, MAX, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(err.label(), "eof", "cut at {cut}: {err}");
    }
}

#[tokio::test]
async fn reader_times_out_on_a_stalled_header() {
    let wire = v4().encode().unwrap();
    let (mut client, mut server) = tokio::io::duplex(1024);
    client.write_all(&wire[..20]).await.unwrap();
    let err = read_proxy_header(&mut server, MAX, Duration::from_millis(30))
        .await
        .unwrap_err();
    assert!(matches!(err, ProxyError::Timeout(_)), "{err}");
    assert_eq!(err.label(), "timeout");
    drop(client);
}

#[tokio::test]
async fn reader_times_out_on_a_dribbled_header() {
    // One byte every 10 ms needs ≥ 590 ms for this header; the deadline is 60 ms overall, so
    // steady progress must not extend it. (The sleeps simulate a slow client; nothing waits on
    // them for synchronisation.)
    let wire = v4().encode().unwrap();
    assert!(wire.len() > 59);
    let (mut client, mut server) = tokio::io::duplex(1024);
    let dribbler = tokio::spawn(async move {
        for byte in wire {
            if client.write_all(&[byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    let started = std::time::Instant::now();
    let err = read_proxy_header(&mut server, MAX, Duration::from_millis(60))
        .await
        .unwrap_err();
    assert!(matches!(err, ProxyError::Timeout(_)), "{err}");
    assert!(started.elapsed() < Duration::from_millis(500));
    drop(server);
    dribbler.await.unwrap();
}

fn socket_addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::from((ip, port))),
        (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::from((ip, port))),
    ]
}

fn header() -> impl Strategy<Value = ProxyHeader> {
    let tlv = (0u8..=0xff, proptest::collection::vec(any::<u8>(), 0..40))
        .prop_filter("interpreted kinds are added below", |(k, _)| {
            !matches!(*k, TLV_SPIFFE_ID | TLV_ORIGIN_ID | TLV_AUTHORITY)
        })
        .prop_map(|(kind, value)| Tlv { kind, value });
    let addresses = proptest::option::of(
        (socket_addr(), socket_addr())
            .prop_filter("same family (mixed pairs are mapped to v6)", |(a, b)| {
                a.is_ipv4() == b.is_ipv4()
            }),
    );
    (
        addresses,
        proptest::collection::vec(tlv, 0..5),
        proptest::option::of(".{0,60}"),
        proptest::option::of("[a-z.:0-9]{0,40}"),
    )
        .prop_map(|(addresses, tlvs, id, authority)| {
            let mut h = ProxyHeader { addresses, tlvs };
            if let Some(id) = id {
                h = h.with_tlv(TLV_ORIGIN_ID, id);
            }
            if let Some(a) = authority {
                h = h.with_tlv(TLV_AUTHORITY, a);
            }
            h
        })
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300), max in 0usize..400) {
        let _ = ProxyHeader::decode(&bytes, max);
    }

    #[test]
    fn arbitrary_bodies_after_a_valid_prefix_never_panic(
        ver_cmd in prop_oneof![Just(0x20u8), Just(0x21u8), any::<u8>()],
        family in prop_oneof![Just(0x00u8), Just(0x11u8), Just(0x21u8), any::<u8>()],
        body in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let bytes = raw(ver_cmd, family, &body);
        if let Ok(Some((_, used))) = ProxyHeader::decode(&bytes, MAX) {
            prop_assert_eq!(used, bytes.len());
        }
    }

    #[test]
    fn encode_decode_round_trip(h in header(), payload in proptest::collection::vec(any::<u8>(), 0..20)) {
        let mut bytes = h.encode().unwrap();
        let len = bytes.len();
        bytes.extend_from_slice(&payload);
        let (decoded, used) = ProxyHeader::decode(&bytes, MAX_HEADER_LEN).unwrap().unwrap();
        prop_assert_eq!(used, len);
        prop_assert_eq!(&decoded, &h);
        prop_assert_eq!(decoded.origin_id(), h.origin_id());
    }
}
