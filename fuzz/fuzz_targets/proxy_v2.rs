//! The PROXY protocol v2 decoder (`ProxyHeader::decode`) and the async reader
//! (`read_proxy_header`) over an in-memory stream that hands out fuzzer-chosen chunk sizes.
//!
//! Asserts the invariants documented in `src/proxy_protocol.rs`:
//! * neither panics;
//! * a decoded header uses exactly `16 + declared length` bytes, never more than it was given;
//!   every strict prefix of those bytes is `Ok(None)`, and for an error every prefix is
//!   `Ok(None)` or the same error;
//! * the limit is enforced: the same bytes with `max_len` one below the header's size are
//!   refused as `TooLong`;
//! * the interpreted TLVs (0x02, 0xE0, 0xE1) appear at most once and are UTF-8;
//! * `encode` of a decoded header decodes back to the same header;
//! * the async reader agrees with `decode` (same header, same error label, `Eof` for an
//!   incomplete header) and consumes exactly the header, never a payload byte;
//! * the bridge ingress's claim parsing (`parse_claims`) accepts or refuses any decoded header
//!   without panicking.
#![no_main]

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use fedgate::bridge::ingress::parse_claims;
use fedgate_dataplane::proxy_protocol::{
    read_proxy_header, ProxyError, ProxyHeader, MAX_HEADER_LEN, TLV_AUTHORITY, TLV_ORIGIN_ID,
    TLV_SPIFFE_ID,
};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncRead, ReadBuf};

fuzz_target!(|data: &[u8]| {
    // The first byte picks the chunk size of the async reader and the `max_len`; the header
    // starts at the second byte, so the seeds are `chunk byte ++ header ++ payload`.
    let Some((&knob, data)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(knob & 0x1f) + 1;
    let max_len = if knob & 0x80 != 0 {
        512
    } else {
        MAX_HEADER_LEN
    };

    let full = ProxyHeader::decode(data, max_len);
    let outcome = describe(&full);
    match &full {
        Ok(Some((header, used))) => {
            let used = *used;
            assert!(used <= data.len());
            assert_eq!(
                used,
                16 + usize::from(u16::from_be_bytes([data[14], data[15]]))
            );
            for end in 0..used {
                assert!(
                    matches!(ProxyHeader::decode(&data[..end], max_len), Ok(None)),
                    "strict prefix of {end} bytes is not incomplete"
                );
            }
            // Trailing payload is not part of the header.
            let again = ProxyHeader::decode(&data[..used], max_len);
            assert_eq!(describe(&again), outcome);
            assert!(matches!(
                ProxyHeader::decode(data, used - 1),
                Err(ProxyError::TooLong { .. })
            ));

            for kind in [TLV_AUTHORITY, TLV_SPIFFE_ID, TLV_ORIGIN_ID] {
                let mut values = header.tlvs.iter().filter(|t| t.kind == kind);
                if let Some(t) = values.next() {
                    assert!(std::str::from_utf8(&t.value).is_ok());
                }
                assert!(values.next().is_none(), "TLV {kind:#04x} twice");
            }

            let encoded = header.encode().expect("a decoded header re-encodes");
            assert!(encoded.len() <= used);
            let (back, back_used) = ProxyHeader::decode(&encoded, MAX_HEADER_LEN)
                .expect("re-encoded header decodes")
                .expect("re-encoded header is complete");
            assert_eq!(&back, header);
            assert_eq!(back_used, encoded.len());

            let _ = parse_claims(header);
        }
        Ok(None) => {}
        Err(_) => {
            for end in 0..data.len() {
                let p = describe(&ProxyHeader::decode(&data[..end], max_len));
                assert!(
                    p == "incomplete" || p == outcome,
                    "prefix {end}: {p} vs {outcome}"
                );
            }
        }
    }

    // The async reader over the same bytes, handed out `chunk` bytes per read.
    let mut stream = Chunked {
        data,
        pos: 0,
        chunk,
    };
    let read = runtime().block_on(read_proxy_header(
        &mut stream,
        max_len,
        Duration::from_secs(60),
    ));
    match (&full, &read) {
        (Ok(Some((header, used))), Ok(got)) => {
            assert_eq!(got, header);
            assert_eq!(stream.pos, *used, "the reader consumed payload bytes");
        }
        (Ok(None), Err(ProxyError::Eof)) => {}
        (Err(want), Err(got)) => assert_eq!(got.label(), want.label()),
        (want, got) => panic!("decode gave {want:?}, the reader {got:?}"),
    }
});

fn describe(r: &Result<Option<(ProxyHeader, usize)>, ProxyError>) -> String {
    match r {
        Ok(None) => "incomplete".into(),
        Ok(Some((h, used))) => format!("{h:?} in {used}"),
        Err(e) => format!("{e:?}"),
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime")
    })
}

/// An in-memory stream that returns at most `chunk` bytes per read and records how far the
/// reader got.
struct Chunked<'a> {
    data: &'a [u8],
    pos: usize,
    chunk: usize,
}

impl AsyncRead for Chunked<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = self
            .chunk
            .min(buf.remaining())
            .min(self.data.len() - self.pos);
        let start = self.pos;
        buf.put_slice(&self.data[start..start + n]);
        self.pos += n;
        Poll::Ready(Ok(()))
    }
}
