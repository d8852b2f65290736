//! PROXY protocol v2 (haproxy proxy-protocol.txt §2.2) with fedgate's TLVs.
//!
//! Invariants:
//! * decoding never reads past the declared length and rejects headers over the caller's size
//!   limit before buffering them;
//! * [`read_proxy_header`] consumes exactly the header from the stream (never payload bytes) and
//!   gives up at a deadline, so a client dribbling bytes cannot hold a connection open;
//! * the TLVs fedgate interprets ([`TLV_SPIFFE_ID`], [`TLV_ORIGIN_ID`], [`TLV_AUTHORITY`])
//!   appear at most once and are valid UTF-8 in every decoded header; other TLVs are kept opaque.
//!
//! Wire format: 12-byte signature, version/command byte (`0x2_`), family/transport byte,
//! big-endian u16 length of the rest, then the address block for the family, then TLVs
//! (type u8, length u16, value).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

/// `PP2_TYPE_AUTHORITY`: the destination name the caller asked for.
pub const TLV_AUTHORITY: u8 = 0x02;
/// fedgate's custom TLV (0xE0..=0xEF is reserved for custom use): the caller's verified SPIFFE ID.
pub const TLV_SPIFFE_ID: u8 = 0xE0;
/// fedgate's custom TLV: the *origin* SPIFFE ID relayed across a bridge (the workload that
/// called the egress gateway), as opposed to the immediate verified peer in `TLV_SPIFFE_ID`.
pub const TLV_ORIGIN_ID: u8 = 0xE1;

/// The 12-byte v2 signature.
pub const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Signature, version/command, family and length.
pub const FIXED_HEADER_LEN: usize = 16;
/// The largest header the format can express.
pub const MAX_HEADER_LEN: usize = FIXED_HEADER_LEN + u16::MAX as usize;

const VERSION_2: u8 = 0x2;
const CMD_LOCAL: u8 = 0x0;
const CMD_PROXY: u8 = 0x1;
const FAM_UNSPEC: u8 = 0x00;
const FAM_TCP4: u8 = 0x11;
const FAM_TCP6: u8 = 0x21;
const ADDR_LEN_INET: usize = 12;
const ADDR_LEN_INET6: usize = 36;
const ADDR_LEN_UNIX: usize = 216;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tlv {
    pub kind: u8,
    pub value: Vec<u8>,
}

/// A PROXY v2 header: `PROXY` command with addresses, or `LOCAL` without.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ProxyHeader {
    /// `(source, destination)` for `PROXY`; `None` encodes as `LOCAL`.
    pub addresses: Option<(SocketAddr, SocketAddr)>,
    pub tlvs: Vec<Tlv>,
}

/// Why a PROXY header was refused. Each variant has a metric [`label`](ProxyError::label).
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("connection does not start with a PROXY protocol v2 signature")]
    NotProxyV2,
    #[error("PROXY protocol version {0} is not supported (only 2)")]
    UnsupportedVersion(u8),
    #[error("PROXY protocol command {0:#x} is unknown (expected LOCAL or PROXY)")]
    UnknownCommand(u8),
    #[error("PROXY protocol family/transport {0:#04x} is not supported (TCP over IPv4/IPv6 only)")]
    UnsupportedFamily(u8),
    #[error("PROXY header of {len} bytes exceeds the limit of {max} bytes")]
    TooLong { len: usize, max: usize },
    #[error("PROXY address block of {len} bytes is shorter than family {family:#04x} needs")]
    AddressTooShort { family: u8, len: usize },
    #[error("malformed PROXY TLV: {0}")]
    MalformedTlv(&'static str),
    #[error("PROXY TLV {kind:#04x} is not valid UTF-8")]
    InvalidUtf8 { kind: u8 },
    #[error("PROXY TLV {kind:#04x} appears more than once")]
    DuplicateTlv { kind: u8 },
    #[error("PROXY TLV or header of {len} bytes exceeds the format's 65535-byte limit")]
    EncodeTooLong { len: usize },
    #[error("connection closed before the PROXY header was complete")]
    Eof,
    #[error("PROXY header not received within {0:?}")]
    Timeout(Duration),
    #[error("reading the PROXY header")]
    Io(#[source] io::Error),
}

// === impl ProxyHeader ===

impl ProxyHeader {
    /// A `LOCAL` header (no addresses): the connection's own endpoints are to be used.
    pub fn local() -> Self {
        Self::default()
    }

    /// A `PROXY` header for a TCP connection from `source` to `destination`.
    pub fn proxy(source: SocketAddr, destination: SocketAddr) -> Self {
        Self {
            addresses: Some((source, destination)),
            tlvs: Vec::new(),
        }
    }

    /// Adds a TLV (builder style).
    pub fn with_tlv(mut self, kind: u8, value: impl Into<Vec<u8>>) -> Self {
        self.tlvs.push(Tlv {
            kind,
            value: value.into(),
        });
        self
    }

    /// The value of the first TLV of `kind`.
    pub fn tlv(&self, kind: u8) -> Option<&[u8]> {
        self.tlvs
            .iter()
            .find(|t| t.kind == kind)
            .map(|t| t.value.as_slice())
    }

    /// The origin workload's SPIFFE ID relayed across a bridge ([`TLV_ORIGIN_ID`]), as asserted
    /// by the sender: not yet parsed or authorized. `None` if absent or not UTF-8; see
    /// [`text_tlv`](Self::text_tlv) to tell the two apart.
    pub fn origin_id(&self) -> Option<&str> {
        self.text_tlv(TLV_ORIGIN_ID).ok().flatten()
    }

    /// The SPIFFE ID of the sender's verified peer ([`TLV_SPIFFE_ID`]), as asserted by the
    /// sender. `None` if absent or not UTF-8 (see [`text_tlv`](Self::text_tlv)).
    pub fn peer_id(&self) -> Option<&str> {
        self.text_tlv(TLV_SPIFFE_ID).ok().flatten()
    }

    /// The requested destination ([`TLV_AUTHORITY`]), e.g. `svc.cluster-b.test:443`. `None` if
    /// absent or not UTF-8 (see [`text_tlv`](Self::text_tlv)).
    pub fn authority(&self) -> Option<&str> {
        self.text_tlv(TLV_AUTHORITY).ok().flatten()
    }

    /// The one accessor of fedgate's text TLVs: `Ok(None)` if absent, the value if present,
    /// [`ProxyError::InvalidUtf8`] if it is not UTF-8 (only possible for a header built in
    /// memory: [`decode`](Self::decode) refuses such a header).
    pub fn text_tlv(&self, kind: u8) -> Result<Option<&str>, ProxyError> {
        self.tlv(kind)
            .map(|v| std::str::from_utf8(v).map_err(|_| ProxyError::InvalidUtf8 { kind }))
            .transpose()
    }

    /// Encodes the header. A mixed IPv4/IPv6 address pair is sent as IPv6 with the IPv4
    /// address mapped (`::ffff:a.b.c.d`). Fails only if a TLV or the whole header exceeds the
    /// format's 16-bit lengths.
    pub fn encode(&self) -> Result<Vec<u8>, ProxyError> {
        let mut out = Vec::with_capacity(FIXED_HEADER_LEN + ADDR_LEN_INET6 + self.tlv_len());
        out.extend_from_slice(&SIGNATURE);
        match self.addresses {
            None => {
                out.push(VERSION_2 << 4 | CMD_LOCAL);
                out.push(FAM_UNSPEC);
                out.extend_from_slice(&[0, 0]);
            }
            Some((src, dst)) => {
                out.push(VERSION_2 << 4 | CMD_PROXY);
                match (src.ip(), dst.ip()) {
                    (IpAddr::V4(s), IpAddr::V4(d)) => {
                        out.push(FAM_TCP4);
                        out.extend_from_slice(&[0, 0]);
                        out.extend_from_slice(&s.octets());
                        out.extend_from_slice(&d.octets());
                    }
                    (s, d) => {
                        out.push(FAM_TCP6);
                        out.extend_from_slice(&[0, 0]);
                        out.extend_from_slice(&to_v6(s).octets());
                        out.extend_from_slice(&to_v6(d).octets());
                    }
                }
                out.extend_from_slice(&src.port().to_be_bytes());
                out.extend_from_slice(&dst.port().to_be_bytes());
            }
        }
        for tlv in &self.tlvs {
            let len = u16::try_from(tlv.value.len()).map_err(|_| ProxyError::EncodeTooLong {
                len: tlv.value.len(),
            })?;
            out.push(tlv.kind);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&tlv.value);
        }
        let total = out.len();
        let body_len = u16::try_from(total - FIXED_HEADER_LEN)
            .map_err(|_| ProxyError::EncodeTooLong { len: total })?;
        out[14..16].copy_from_slice(&body_len.to_be_bytes());
        Ok(out)
    }

    /// Decodes a header at the start of `buf`: `Ok(None)` if incomplete, else the header
    /// and the number of bytes it used. Headers longer than `max_len` are refused.
    ///
    /// Each check runs as soon as its bytes are present: junk is refused at the first byte
    /// that differs from the signature, and an over-limit length as soon as the 16-byte fixed
    /// header is in.
    pub fn decode(buf: &[u8], max_len: usize) -> Result<Option<(Self, usize)>, ProxyError> {
        let sig_seen = buf.len().min(SIGNATURE.len());
        if buf[..sig_seen] != SIGNATURE[..sig_seen] {
            return Err(ProxyError::NotProxyV2);
        }
        let Some(&ver_cmd) = buf.get(12) else {
            return Ok(None);
        };
        if ver_cmd >> 4 != VERSION_2 {
            return Err(ProxyError::UnsupportedVersion(ver_cmd >> 4));
        }
        let command = ver_cmd & 0x0f;
        if command != CMD_LOCAL && command != CMD_PROXY {
            return Err(ProxyError::UnknownCommand(command));
        }
        let Some(&family) = buf.get(13) else {
            return Ok(None);
        };
        // LOCAL ignores the family (spec §2.2) but we still need the address block's size to
        // find the TLVs; PROXY accepts TCP over IPv4 and IPv6 only.
        let addr_len = match (command, family) {
            (CMD_PROXY, FAM_TCP4) => ADDR_LEN_INET,
            (CMD_PROXY, FAM_TCP6) => ADDR_LEN_INET6,
            (CMD_PROXY, _) => return Err(ProxyError::UnsupportedFamily(family)),
            (_, f) => match f >> 4 {
                0x0 => 0,
                0x1 => ADDR_LEN_INET,
                0x2 => ADDR_LEN_INET6,
                0x3 => ADDR_LEN_UNIX,
                _ => return Err(ProxyError::UnsupportedFamily(family)),
            },
        };
        let Some(len) = buf.get(14..FIXED_HEADER_LEN) else {
            return Ok(None);
        };
        let total = FIXED_HEADER_LEN + usize::from(u16::from_be_bytes([len[0], len[1]]));
        if total > max_len {
            return Err(ProxyError::TooLong {
                len: total,
                max: max_len,
            });
        }
        let Some(body) = buf.get(FIXED_HEADER_LEN..total) else {
            return Ok(None);
        };
        if body.len() < addr_len {
            return Err(ProxyError::AddressTooShort {
                family,
                len: body.len(),
            });
        }
        let (addr, tlv_bytes) = body.split_at(addr_len);
        let addresses = if command == CMD_PROXY {
            Some(parse_addresses(family, addr))
        } else {
            None
        };
        let tlvs = parse_tlvs(tlv_bytes)?;
        Ok(Some((Self { addresses, tlvs }, total)))
    }

    fn tlv_len(&self) -> usize {
        self.tlvs.iter().map(|t| 3 + t.value.len()).sum()
    }
}

// === impl ProxyError ===

impl ProxyError {
    /// A short, stable label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            ProxyError::NotProxyV2 => "not_proxy_v2",
            ProxyError::UnsupportedVersion(_) => "unsupported_version",
            ProxyError::UnknownCommand(_) => "unknown_command",
            ProxyError::UnsupportedFamily(_) => "unsupported_family",
            ProxyError::TooLong { .. } => "too_long",
            ProxyError::AddressTooShort { .. } => "address_too_short",
            ProxyError::MalformedTlv(_) => "malformed_tlv",
            ProxyError::InvalidUtf8 { .. } => "invalid_utf8",
            ProxyError::DuplicateTlv { .. } => "duplicate_tlv",
            ProxyError::EncodeTooLong { .. } => "encode_too_long",
            ProxyError::Eof => "eof",
            ProxyError::Timeout(_) => "timeout",
            ProxyError::Io(_) => "io",
        }
    }
}

/// Reads exactly one PROXY v2 header from `r`: first the 16 fixed bytes (refusing junk at the
/// first wrong byte), then the declared length, which is refused before reading if the whole
/// header would exceed `max_len`. Never reads payload bytes. The whole header must arrive
/// within `deadline` ([`ProxyError::Timeout`]), however it is dribbled.
pub async fn read_proxy_header<R: AsyncRead + Unpin>(
    r: &mut R,
    max_len: usize,
    deadline: Duration,
) -> Result<ProxyHeader, ProxyError> {
    match tokio::time::timeout(deadline, read_header(r, max_len)).await {
        Ok(result) => result,
        Err(_elapsed) => Err(ProxyError::Timeout(deadline)),
    }
}

async fn read_header<R: AsyncRead + Unpin>(
    r: &mut R,
    max_len: usize,
) -> Result<ProxyHeader, ProxyError> {
    let mut buf = vec![0u8; FIXED_HEADER_LEN];
    let mut filled = 0;
    // Read the fixed part with plain reads bounded by what is still missing, validating each
    // chunk so that junk is refused without waiting for 16 bytes.
    while filled < FIXED_HEADER_LEN {
        let n = r.read(&mut buf[filled..]).await.map_err(ProxyError::Io)?;
        if n == 0 {
            return Err(ProxyError::Eof);
        }
        filled += n;
        if let Some((header, _)) = ProxyHeader::decode(&buf[..filled], max_len)? {
            return Ok(header);
        }
    }
    // `decode` has checked the declared length against `max_len`.
    let total = FIXED_HEADER_LEN + usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    buf.resize(total, 0);
    r.read_exact(&mut buf[FIXED_HEADER_LEN..])
        .await
        .map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => ProxyError::Eof,
            _ => ProxyError::Io(e),
        })?;
    match ProxyHeader::decode(&buf, max_len)? {
        Some((header, _)) => Ok(header),
        // Unreachable: `buf` holds exactly the declared length. Report it rather than panic.
        None => Err(ProxyError::Eof),
    }
}

fn parse_addresses(family: u8, addr: &[u8]) -> (SocketAddr, SocketAddr) {
    // `addr` has exactly the family's length (checked by the caller).
    let port = |at: usize| u16::from_be_bytes([addr[at], addr[at + 1]]);
    if family == FAM_TCP4 {
        let ip = |at: usize| Ipv4Addr::new(addr[at], addr[at + 1], addr[at + 2], addr[at + 3]);
        (
            SocketAddr::new(ip(0).into(), port(8)),
            SocketAddr::new(ip(4).into(), port(10)),
        )
    } else {
        let ip = |at: usize| {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&addr[at..at + 16]);
            Ipv6Addr::from(octets)
        };
        (
            SocketAddr::new(ip(0).into(), port(32)),
            SocketAddr::new(ip(16).into(), port(34)),
        )
    }
}

fn parse_tlvs(mut rest: &[u8]) -> Result<Vec<Tlv>, ProxyError> {
    let mut tlvs: Vec<Tlv> = Vec::new();
    while !rest.is_empty() {
        let Some(&[kind, hi, lo]) = rest.get(..3) else {
            return Err(ProxyError::MalformedTlv("truncated TLV header"));
        };
        let len = usize::from(u16::from_be_bytes([hi, lo]));
        let Some(value) = rest.get(3..3 + len) else {
            return Err(ProxyError::MalformedTlv("TLV longer than the header"));
        };
        if matches!(kind, TLV_SPIFFE_ID | TLV_ORIGIN_ID | TLV_AUTHORITY) {
            if tlvs.iter().any(|t| t.kind == kind) {
                return Err(ProxyError::DuplicateTlv { kind });
            }
            if std::str::from_utf8(value).is_err() {
                return Err(ProxyError::InvalidUtf8 { kind });
            }
        }
        tlvs.push(Tlv {
            kind,
            value: value.to_vec(),
        });
        rest = &rest[3 + len..];
    }
    Ok(tlvs)
}

fn to_v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

#[cfg(test)]
mod tests;
