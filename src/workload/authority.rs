//! Lets gRPC clients that send the socket path as `:authority` talk to the server.
//!
//! gRPC C-core (py-spiffe, grpcio), grpc-java and others send the Unix socket's path, e.g.
//! `/run/fedgate/agent.sock`, as the HTTP/2 `:authority` of every request. That is not a valid
//! authority (RFC 9113 §8.3.1), and the HTTP/2 server under tonic (h2) answers such a request
//! with `RST_STREAM(PROTOCOL_ERROR)`; grpc-go and go-spiffe send `localhost` and are not
//! affected. SPIRE's server (grpc-go) ignores `:authority`, so every client works with it.
//!
//! [`shim`] puts a small HTTP/2 filter between an accepted connection and the server: frames
//! from the client pass unchanged except header blocks (`HEADERS` and its `CONTINUATION`s),
//! which are HPACK-decoded with the client's compression context, get an invalid
//! `:authority` replaced by `localhost`, and are re-encoded with a context shared with the
//! server; frames to the client pass unchanged.
//!
//! Invariants: every header other than an invalid `:authority` reaches the server with the
//! same name, value and order; a connection whose framing or HPACK cannot be parsed is closed
//! (never passed on half-understood); the peer credentials of the original connection stay
//! attached ([`ShimmedStream`]'s connect info is the original's).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use loona_hpack::{Decoder, Encoder};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};
use tokio::net::UnixStream;
use tonic::transport::server::{Connected, UdsConnectInfo};

/// The HTTP/2 client connection preface (RFC 9113 §3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER_LEN: usize = 9;
const TYPE_HEADERS: u8 = 0x1;
const TYPE_CONTINUATION: u8 = 0x9;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;
/// The server's SETTINGS_MAX_FRAME_SIZE (the HTTP/2 default, which tonic keeps): re-encoded
/// header blocks are split into frames of at most this size.
const MAX_FRAME: usize = 16_384;
/// The largest header block accepted from a client (gRPC's default metadata limit is 8 KiB).
const MAX_HEADER_BLOCK: usize = 256 * 1024;
/// The dynamic table size the server advertises (HTTP/2 default); a client may not exceed it.
const HEADER_TABLE_SIZE: usize = 4096;
/// Buffer between the filter and the server.
const PIPE: usize = 64 * 1024;
/// What replaces an invalid `:authority`.
const LOCALHOST: &[u8] = b"localhost";

/// The server's side of a filtered connection, with the original connection's credentials.
pub struct ShimmedStream {
    io: DuplexStream,
    info: UdsConnectInfo,
}

/// Starts the filter for `stream` (a task for each direction) and returns the server's end.
pub fn shim(stream: UnixStream) -> ShimmedStream {
    let info = stream.connect_info();
    let (server_end, filter_end) = tokio::io::duplex(PIPE);
    let (mut from_client, mut to_client) = stream.into_split();
    let (mut from_server, mut to_server) = tokio::io::split(filter_end);
    tokio::spawn(async move {
        if let Err(e) = filter_client(&mut from_client, &mut to_server).await {
            tracing::debug!(error = %e, "Workload API connection closed by the HTTP/2 filter");
        }
        let _ = to_server.shutdown().await;
    });
    tokio::spawn(async move {
        let _ = tokio::io::copy(&mut from_server, &mut to_client).await;
        let _ = to_client.shutdown().await;
    });
    ShimmedStream {
        io: server_end,
        info,
    }
}

/// Copies the client's frames to the server, rewriting header blocks; `Ok` at a clean EOF.
async fn filter_client<R, W>(from: &mut R, to: &mut W) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut preface = [0u8; 24];
    from.read_exact(&mut preface).await?;
    if &preface != PREFACE {
        return Err(invalid("not an HTTP/2 connection preface"));
    }
    to.write_all(&preface).await?;
    let mut rewriter = Rewriter::new();
    // A header block in progress: stream ID, END_STREAM, the fragments so far.
    let mut pending: Option<(u32, bool, Vec<u8>)> = None;
    loop {
        let mut header = [0u8; FRAME_HEADER_LEN];
        match from.read_exact(&mut header).await {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        let len =
            usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
        let (ty, flags) = (header[3], header[4]);
        let stream_id =
            u32::from_be_bytes([header[5], header[6], header[7], header[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; len];
        from.read_exact(&mut payload).await?;
        match (ty, pending.take()) {
            (TYPE_HEADERS, None) => {
                let fragment = headers_fragment(&payload, flags)?;
                let block = (stream_id, flags & FLAG_END_STREAM != 0, fragment.to_vec());
                if flags & FLAG_END_HEADERS != 0 {
                    to.write_all(&rewriter.rewrite(block)?).await?;
                } else {
                    pending = Some(block);
                }
            }
            (TYPE_CONTINUATION, Some((id, end_stream, mut block))) if id == stream_id => {
                block.extend_from_slice(&payload);
                if block.len() > MAX_HEADER_BLOCK {
                    return Err(invalid("header block too large"));
                }
                if flags & FLAG_END_HEADERS != 0 {
                    to.write_all(&rewriter.rewrite((id, end_stream, block))?)
                        .await?;
                } else {
                    pending = Some((id, end_stream, block));
                }
            }
            (_, Some(_)) | (TYPE_CONTINUATION, None) => {
                // RFC 9113 §6.10: nothing may interleave a header block.
                return Err(invalid("frame interleaved with a header block"));
            }
            (_, None) => {
                to.write_all(&header).await?;
                to.write_all(&payload).await?;
            }
        }
    }
}

/// The header block fragment of a HEADERS payload, without padding and priority fields.
fn headers_fragment(payload: &[u8], flags: u8) -> io::Result<&[u8]> {
    let mut p = payload;
    let mut pad = 0usize;
    if flags & FLAG_PADDED != 0 {
        let (&n, rest) = p
            .split_first()
            .ok_or_else(|| invalid("empty padded HEADERS"))?;
        pad = usize::from(n);
        p = rest;
    }
    if flags & FLAG_PRIORITY != 0 {
        p = p
            .get(5..)
            .ok_or_else(|| invalid("short HEADERS priority"))?;
    }
    let end = p
        .len()
        .checked_sub(pad)
        .ok_or_else(|| invalid("HEADERS padding too long"))?;
    Ok(&p[..end])
}

/// The two HPACK contexts of one connection: the client's encoder is mirrored by `decoder`;
/// `encoder` is mirrored by the server's decoder.
struct Rewriter {
    decoder: Decoder<'static>,
    encoder: Encoder<'static>,
}

impl Rewriter {
    fn new() -> Self {
        let mut decoder = Decoder::new();
        decoder.set_max_allowed_table_size(HEADER_TABLE_SIZE);
        Self {
            decoder,
            encoder: Encoder::new(),
        }
    }

    /// One complete header block, re-encoded as HEADERS (+ CONTINUATION) frames.
    fn rewrite(
        &mut self,
        (stream_id, end_stream, block): (u32, bool, Vec<u8>),
    ) -> io::Result<Vec<u8>> {
        let mut headers = self
            .decoder
            .decode(&block)
            .map_err(|e| invalid(&format!("HPACK: {e:?}")))?;
        for (name, value) in &mut headers {
            if name.as_slice() == b":authority" && !valid_authority(value) {
                *value = LOCALHOST.to_vec();
            }
        }
        let mut encoded = Vec::with_capacity(block.len());
        self.encoder.encode_into(
            headers.iter().map(|(n, v)| (n.as_slice(), v.as_slice())),
            &mut encoded,
        )?;
        Ok(frames(stream_id, end_stream, &encoded))
    }
}

/// HEADERS then CONTINUATION frames carrying `block`, END_HEADERS on the last.
fn frames(stream_id: u32, end_stream: bool, block: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(block.len() + FRAME_HEADER_LEN * 2);
    let chunks: Vec<&[u8]> = if block.is_empty() {
        vec![&[]]
    } else {
        block.chunks(MAX_FRAME).collect()
    };
    let last = chunks.len() - 1;
    for (i, chunk) in chunks.into_iter().enumerate() {
        let (ty, mut flags) = if i == 0 {
            (TYPE_HEADERS, if end_stream { FLAG_END_STREAM } else { 0 })
        } else {
            (TYPE_CONTINUATION, 0)
        };
        if i == last {
            flags |= FLAG_END_HEADERS;
        }
        // A chunk is at most MAX_FRAME (16 KiB) long, so its length fits in 24 bits.
        let len = chunk.len() as u32;
        out.extend_from_slice(&len.to_be_bytes()[1..]);
        out.push(ty);
        out.push(flags);
        out.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
        out.extend_from_slice(chunk);
    }
    out
}

/// Whether the HTTP/2 server accepts `value` as an authority.
fn valid_authority(value: &[u8]) -> bool {
    tonic::codegen::http::uri::Authority::try_from(value).is_ok()
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

// === impl ShimmedStream ===

impl Connected for ShimmedStream {
    type ConnectInfo = UdsConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.info.clone()
    }
}

impl AsyncRead for ShimmedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for ShimmedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers_frame(encoder: &mut Encoder<'_>, headers: &[(&[u8], &[u8])], flags: u8) -> Vec<u8> {
        let block = encoder.encode(headers.iter().copied());
        let mut f = frames(1, false, &block);
        f[4] |= flags;
        f
    }

    async fn run_filter(input: Vec<u8>) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        filter_client(&mut input.as_slice(), &mut out).await?;
        Ok(out)
    }

    /// Decodes every HEADERS block of `out` (after the preface) with one decoder.
    fn decode_all(out: &[u8]) -> Vec<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut decoder = Decoder::new();
        let mut rest = &out[24..];
        let mut blocks = Vec::new();
        while !rest.is_empty() {
            let len = usize::from(rest[0]) << 16 | usize::from(rest[1]) << 8 | usize::from(rest[2]);
            let (ty, payload) = (rest[3], &rest[9..9 + len]);
            if ty == TYPE_HEADERS {
                blocks.push(decoder.decode(payload).unwrap());
            }
            rest = &rest[9 + len..];
        }
        blocks
    }

    #[tokio::test]
    async fn a_socket_path_authority_becomes_localhost_and_the_rest_is_kept() {
        let mut client = Encoder::new();
        let request: Vec<(&[u8], &[u8])> = vec![
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":path", b"/SpiffeWorkloadAPI/FetchX509SVID"),
            (b":authority", b"/run/fedgate/agent.sock"),
            (b"workload.spiffe.io", b"true"),
        ];
        let mut input = PREFACE.to_vec();
        // Twice: the second block refers to the client's dynamic table entries.
        input.extend(headers_frame(&mut client, &request, 0));
        input.extend([0, 0, 0, 0, 0, 0, 0, 0, 3]); // an empty DATA frame on stream 3, passed on
        input.extend(headers_frame(&mut client, &request, 0));
        let out = run_filter(input).await.unwrap();
        let blocks = decode_all(&out);
        assert_eq!(blocks.len(), 2);
        for block in blocks {
            let names: Vec<&[u8]> = block.iter().map(|(n, _)| n.as_slice()).collect();
            assert_eq!(names, request.iter().map(|(n, _)| *n).collect::<Vec<_>>());
            let authority = &block.iter().find(|(n, _)| n == b":authority").unwrap().1;
            assert_eq!(authority, b"localhost");
            assert_eq!(block[2].1, b"/SpiffeWorkloadAPI/FetchX509SVID");
            assert_eq!(block[4].1, b"true");
        }
    }

    #[tokio::test]
    async fn a_valid_authority_is_kept_and_continuations_are_joined() {
        let mut client = Encoder::new();
        let long = vec![b'v'; 40_000];
        let block = client.encode([
            (b":authority".as_slice(), b"localhost:1234".as_slice()),
            (b"x-long".as_slice(), long.as_slice()),
        ]);
        let mut input = PREFACE.to_vec();
        input.extend(frames(5, true, &block));
        let out = run_filter(input).await.unwrap();
        // Three frames again (16 KiB each at most), the first with END_STREAM.
        assert_eq!(out[24 + 3], TYPE_HEADERS);
        assert_eq!(out[24 + 4], FLAG_END_STREAM);
        let mut decoder = Decoder::new();
        let mut joined = Vec::new();
        let mut rest = &out[24..];
        while !rest.is_empty() {
            let len = usize::from(rest[0]) << 16 | usize::from(rest[1]) << 8 | usize::from(rest[2]);
            joined.extend_from_slice(&rest[9..9 + len]);
            rest = &rest[9 + len..];
        }
        let headers = decoder.decode(&joined).unwrap();
        assert_eq!(headers[0].1, b"localhost:1234");
        assert_eq!(headers[1].1, long);
    }

    proptest::proptest! {
        /// Arbitrary bytes after the preface, or an arbitrary header block: an error or a
        /// pass, never a panic.
        #[test]
        fn never_panics(
            frames_bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512),
            block in proptest::collection::vec(proptest::num::u8::ANY, 0..256),
            flags in proptest::num::u8::ANY,
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let mut input = PREFACE.to_vec();
            input.extend(&frames_bytes);
            let _ = rt.block_on(run_filter(input));
            let mut input = PREFACE.to_vec();
            let len = block.len() as u32;
            input.extend_from_slice(&len.to_be_bytes()[1..]);
            input.extend([TYPE_HEADERS, flags, 0, 0, 0, 1]);
            input.extend(&block);
            let _ = rt.block_on(run_filter(input));
        }
    }

    #[tokio::test]
    async fn garbage_is_refused() {
        assert!(run_filter(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec())
            .await
            .is_err());
        let mut bad_hpack = PREFACE.to_vec();
        bad_hpack.extend([0, 0, 1, TYPE_HEADERS, FLAG_END_HEADERS, 0, 0, 0, 1, 0xff]);
        assert!(run_filter(bad_hpack).await.is_err());
        let mut interleaved = PREFACE.to_vec();
        interleaved.extend([0, 0, 0, TYPE_HEADERS, 0, 0, 0, 0, 1]);
        interleaved.extend([0, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert!(run_filter(interleaved).await.is_err());
        assert!(
            run_filter(PREFACE.to_vec()).await.unwrap().len() == 24,
            "clean EOF"
        );
    }
}
