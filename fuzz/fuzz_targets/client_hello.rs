//! The ClientHello parser (`fedgate_dataplane::sni`) on raw bytes, on every prefix, and on the
//! same handshake message re-fragmented into records at fuzzer-chosen points.
//!
//! Asserts the invariants documented in `src/gateway/sni.rs`:
//! * it never panics;
//! * the answer for any prefix of the input is either `Ok(None)` ("read more") or exactly the
//!   answer for the whole input: a strict prefix of a complete hello is always incomplete, and
//!   an error is final (more bytes never turn it into something else);
//! * bytes after the hello are ignored;
//! * a server name is only returned validated and lowercased, ALPN names are never empty;
//! * a hello spread over several records (split where the fuzzer says) parses exactly like
//!   the same hello in one record;
//! * the resumable `HelloAssembler` the passthrough peek loop uses, fed the input in growing
//!   chunks, ends with exactly the answer of a fresh parse of what it was given, and never
//!   answers a prefix with something a fresh parse of that prefix would not.
#![no_main]

use fedgate_dataplane::sni::{
    normalize_dns_name, parse_client_hello, parse_client_hello_within, ClientHelloInfo,
    HelloAssembler, SniError, MAX_CLIENT_HELLO,
};
use libfuzzer_sys::fuzz_target;

type Parsed = Result<Option<ClientHelloInfo>, SniError>;

fuzz_target!(|data: &[u8]| {
    let full = parse_client_hello(data);
    check_prefixes(data, &full);
    check_assembler(data);

    let Ok(Some(info)) = &full else { return };
    if let Some(name) = &info.server_name {
        assert_eq!(
            normalize_dns_name(name.as_bytes()).as_deref(),
            Ok(name.as_str())
        );
        assert!(!name.bytes().any(|b| b.is_ascii_uppercase()));
    }
    assert!(info.alpn.iter().all(|p| !p.is_empty()));

    // Trailing bytes never change a complete answer.
    let mut longer = data.to_vec();
    longer.extend_from_slice(&[0x16, 0x03, 0x01, 0xff, 0xff, 0x00]);
    assert_eq!(parse_client_hello(&longer), full);

    // Re-fragment the handshake message. The bytes after the hello's last record are ignored
    // by the parser, so the fuzzer can mutate them freely to choose the split points.
    let (message, consumed) = first_handshake_message(data).expect("parser said complete");
    let sizes: Vec<usize> = match &data[consumed..] {
        [] => vec![1, 7, 64, 300],
        tail => tail.iter().take(64).map(|&b| usize::from(b) + 1).collect(),
    };
    let one_record = records(&message, &[message.len()]);
    assert_eq!(parse_client_hello(&one_record), full);
    let fragmented = records(&message, &sizes);
    let got = parse_client_hello(&fragmented);
    assert_eq!(got, full, "fragmented with sizes {sizes:?}");
    check_prefixes(&fragmented, &got);
});

/// Every strict prefix answers `Ok(None)` or the same as the whole. Inputs over 4 KiB (only
/// reachable through tiny fragments) are checked at 4096 evenly spread prefixes plus the last
/// 64, to keep each run fast.
fn check_prefixes(data: &[u8], full: &Parsed) {
    let stride = data.len() / 4096 + 1;
    let ends = (0..data.len())
        .step_by(stride)
        .chain(data.len().saturating_sub(64)..data.len());
    for end in ends {
        let p = parse_client_hello(&data[..end]);
        assert!(
            p == Ok(None) || p == *full,
            "prefix of {end} bytes gave {p:?}, the whole {full:?}"
        );
    }
}

/// The first handshake message (header included, cut to its declared length) and the number of
/// input bytes up to the end of the record that completes it. An independent, naive
/// reassembly; only called on inputs the parser accepted.
fn first_handshake_message(data: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut msg = Vec::new();
    let mut at = 0;
    loop {
        let header = data.get(at..at + 5)?;
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        let end = (at + 5 + len).min(data.len());
        msg.extend_from_slice(&data[at + 5..end]);
        at = end;
        if msg.len() >= 4 {
            let total =
                4 + (usize::from(msg[1]) << 16 | usize::from(msg[2]) << 8 | usize::from(msg[3]));
            if msg.len() >= total {
                msg.truncate(total);
                return Some((msg, at));
            }
        }
    }
}

/// `message` as TLS 1.2 handshake records, with fragment lengths cycling through `sizes`.
fn records(message: &[u8], sizes: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = message;
    let mut sizes = sizes.iter().cycle();
    while !rest.is_empty() {
        let n = (*sizes.next().unwrap_or(&1))
            .clamp(1, 1 << 14)
            .min(rest.len());
        let (fragment, tail) = rest.split_at(n);
        out.extend_from_slice(&[0x16, 0x03, 0x03]);
        out.extend_from_slice(&(n as u16).to_be_bytes());
        out.extend_from_slice(fragment);
        rest = tail;
    }
    out
}

/// Feeds `data` to one [`HelloAssembler`] in growing prefixes (chunk sizes taken from the
/// data's own bytes), as the peek loop does, and compares every answer with a fresh parse.
fn check_assembler(data: &[u8]) {
    let mut assembler = HelloAssembler::new(MAX_CLIENT_HELLO);
    let mut end = 0;
    let mut step = 0;
    while end < data.len() {
        let chunk = usize::from(data[step % data.len()]) % 97 + 1;
        step += 1;
        end = (end + chunk).min(data.len());
        let resumed = assembler.parse(&data[..end]);
        let fresh = parse_client_hello_within(&data[..end], MAX_CLIENT_HELLO);
        assert_eq!(
            resumed, fresh,
            "assembler and fresh parse differ at {end} bytes"
        );
        if resumed != Ok(None) {
            // Errors and complete answers are final: the peek loop stops here.
            return;
        }
    }
}
