//! Pure ClientHello parsing: SNI and ALPN from the first TLS handshake message.
//!
//! Invariants:
//! * never panics and never reads past the slice it is given;
//! * a ClientHello spread over several TLS records is reassembled (RFC 8446 §5.1 allows a
//!   handshake message to be fragmented across records; at the TCP level the caller simply
//!   calls again with more bytes);
//! * `Ok(None)` means "need more bytes" and is returned for every strict prefix of a valid
//!   ClientHello; errors are final for the connection;
//! * the server name is only ever returned validated (LDH DNS name, not an IP literal) and
//!   lowercased, and a hello with two server names (duplicate extension or two `host_name`
//!   entries) is refused, so routing can never disagree with the backend about the name.
//!
//! The caller bounds how much it buffers (the listener's `max_client_hello`, default
//! [`MAX_CLIENT_HELLO`]) and passes the same bound to [`parse_client_hello_within`], or, when it
//! calls again after every read, to a [`HelloAssembler`], which resumes after the records it
//! has already walked (so a hello dribbled in tiny records costs linear, not quadratic, work).

use std::borrow::Cow;

/// The default bound on a ClientHello handshake message (4-byte header included): the bound of
/// [`parse_client_hello`] and the default of a listener's `max_client_hello`.
///
/// Typical ClientHellos are 200-600 bytes; post-quantum hybrid key shares (X25519MLKEM768) bring
/// them to ~1.8 KiB, and larger post-quantum key shares (several ML-KEM/hybrid shares, or
/// bigger KEMs) bring them past one 16 KiB record, so the hello then spans several records.
/// 64 KiB leaves ample headroom. The parser refuses a handshake whose declared length exceeds
/// its bound ([`SniError::TooLarge`]) as soon as the length is visible; the caller must still
/// cap its buffer (a hello split into tiny records carries a 5-byte record header per
/// fragment) and treat `Ok(None)` with a full buffer as too large.
pub const MAX_CLIENT_HELLO: usize = 64 * 1024;

/// Largest record fragment tolerated: 2^14 plaintext bytes (RFC 8446 §5.1) plus 256 bytes of
/// slack. A passthrough gateway is deliberately a little more tolerant than a TLS stack; the
/// backend makes the final call.
const MAX_RECORD_LEN: usize = (1 << 14) + 256;

const RECORD_HEADER_LEN: usize = 5;
const HANDSHAKE_HEADER_LEN: usize = 4;
const CONTENT_TYPE_HANDSHAKE: u8 = 22;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const EXT_SERVER_NAME: u16 = 0;
const EXT_ALPN: u16 = 16;
const NAME_TYPE_HOST_NAME: u8 = 0;

/// What routing and logs need from a ClientHello.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ClientHelloInfo {
    /// The `host_name` from the server_name extension, lowercased, validated as a DNS name.
    pub server_name: Option<String>,
    /// ALPN protocol names offered, in order.
    pub alpn: Vec<Vec<u8>>,
}

/// Why a byte prefix is not an acceptable ClientHello. Each variant is a metric label.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SniError {
    /// The first record is not a TLS handshake record (plain HTTP, SSLv2, garbage).
    #[error("first bytes are not a TLS handshake record")]
    NotTls,
    /// TLS framing, but the bytes violate the record or ClientHello grammar.
    #[error("malformed ClientHello: {0}")]
    Malformed(&'static str),
    /// A TLS handshake, but its first message is not a ClientHello.
    #[error("first handshake message is not a ClientHello")]
    NotClientHello,
    /// The server_name is not a valid DNS host name (IP literal, bad characters, too long).
    #[error("invalid server name in ClientHello: {0}")]
    InvalidServerName(DnsNameError),
    /// The ClientHello declares a length above the caller's bound (the listener's
    /// `max_client_hello`, default [`MAX_CLIENT_HELLO`]).
    #[error("ClientHello larger than the bound (the listener's max_client_hello)")]
    TooLarge,
}

/// Which DNS host name rule a name breaks (see [`normalize_dns_name`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DnsNameError {
    #[error("empty name")]
    Empty,
    #[error("name longer than 253 bytes")]
    TooLong,
    #[error("empty label")]
    EmptyLabel,
    #[error("label longer than 63 bytes")]
    LabelTooLong,
    #[error("character other than a letter, digit, hyphen or dot")]
    BadCharacter,
    #[error("label starts or ends with a hyphen")]
    EdgeHyphen,
    #[error("IP address literal or all-numeric top-level label")]
    Numeric,
}

// === impl SniError ===

impl SniError {
    /// A short, stable label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            SniError::NotTls => "not_tls",
            SniError::Malformed(_) => "malformed_client_hello",
            SniError::NotClientHello => "not_client_hello",
            SniError::InvalidServerName(_) => "invalid_server_name",
            SniError::TooLarge => "client_hello_too_large",
        }
    }
}

/// Parses the ClientHello at the start of `buf` with the default bound [`MAX_CLIENT_HELLO`].
/// `Ok(None)`: incomplete, read more.
///
/// Bytes after the ClientHello (in its last record or in later records) are ignored.
pub fn parse_client_hello(buf: &[u8]) -> Result<Option<ClientHelloInfo>, SniError> {
    parse_client_hello_within(buf, MAX_CLIENT_HELLO)
}

/// Like [`parse_client_hello`], but refuses ([`SniError::TooLarge`]) a ClientHello whose
/// handshake message (4-byte header included) declares more than `max` bytes, as soon as its
/// length is visible.
pub fn parse_client_hello_within(
    buf: &[u8],
    max: usize,
) -> Result<Option<ClientHelloInfo>, SniError> {
    HelloAssembler::new(max).parse(buf)
}

/// Validates a DNS host name as used in SNI and routes, returning it lowercased.
///
/// Rules: one trailing dot is trimmed (RFC 6066 forbids it, clients send it anyway); then
/// 1..=253 bytes of dot-separated labels, each 1..=63 bytes of letters, digits and hyphens, not
/// starting or ending with a hyphen (RFC 1123 §2.1); the last label is not all-numeric, which
/// rejects IPv4 literals (RFC 3696 §2; IPv6 literals already fail the character rule).
pub fn normalize_dns_name(name: &[u8]) -> Result<String, DnsNameError> {
    let name = name.strip_suffix(b".").unwrap_or(name);
    if name.is_empty() {
        return Err(DnsNameError::Empty);
    }
    if name.len() > 253 {
        return Err(DnsNameError::TooLong);
    }
    let mut last_label_numeric = false;
    for label in name.split(|&b| b == b'.') {
        if label.is_empty() {
            return Err(DnsNameError::EmptyLabel);
        }
        if label.len() > 63 {
            return Err(DnsNameError::LabelTooLong);
        }
        if !label
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        {
            return Err(DnsNameError::BadCharacter);
        }
        if label.starts_with(b"-") || label.ends_with(b"-") {
            return Err(DnsNameError::EdgeHyphen);
        }
        last_label_numeric = label.iter().all(u8::is_ascii_digit);
    }
    if last_label_numeric {
        return Err(DnsNameError::Numeric);
    }
    // Only ASCII was accepted above, so this conversion cannot fail; map it rather than unwrap.
    let s = std::str::from_utf8(name).map_err(|_| DnsNameError::BadCharacter)?;
    Ok(s.to_ascii_lowercase())
}

/// Incremental ClientHello parsing over a buffer that only grows (the peek loop's): the record
/// headers already walked are remembered, so each call costs only the records that arrived
/// since the previous one (plus one copy of the message once it is complete), not a re-walk of
/// the whole buffer. Pure: it never reads past the slice it is given.
#[derive(Clone, Debug)]
pub struct HelloAssembler {
    /// Bound on the handshake message (4-byte header included).
    max: usize,
    /// State after the last *complete* record walked.
    walked: Walked,
}

/// How far [`HelloAssembler`] got: complete records only.
#[derive(Clone, Copy, Debug, Default)]
struct Walked {
    /// Offset of the next record header in the buffer.
    pos: usize,
    /// Records walked.
    records: usize,
    /// The 4-byte handshake header, which may itself be split across records.
    head: [u8; HANDSHAKE_HEADER_LEN],
    head_len: usize,
    /// Message bytes seen so far.
    have: usize,
    /// The message's total length, once its header is complete.
    total: Option<usize>,
}

impl HelloAssembler {
    /// An assembler refusing ([`SniError::TooLarge`]) a handshake message that declares more
    /// than `max` bytes (header included).
    pub fn new(max: usize) -> Self {
        Self {
            max,
            walked: Walked::default(),
        }
    }

    /// Parses the ClientHello at the start of `buf`; `Ok(None)`: incomplete, call again with
    /// more bytes. Each call's `buf` must start with the previous call's (bytes are only
    /// appended); errors are final.
    pub fn parse(&mut self, buf: &[u8]) -> Result<Option<ClientHelloInfo>, SniError> {
        match self.reassemble(buf)? {
            Some(body) => parse_body(&body).map(Some),
            None => Ok(None),
        }
    }

    /// Collects the first handshake message's body from consecutive handshake records.
    ///
    /// Walks record headers without copying, resuming after the last complete record, until the
    /// message's declared length is covered; then borrows the body from `buf` when it lies in
    /// one record (the common case) or copies the fragments when it is spread over several.
    fn reassemble<'b>(&mut self, buf: &'b [u8]) -> Result<Option<Cow<'b, [u8]>>, SniError> {
        loop {
            // Work on a copy; commit it only once this record is complete.
            let mut w = self.walked;
            let first = w.records == 0;
            let rest = buf.get(w.pos..).unwrap_or_default();
            // Check the record header byte by byte so that junk is refused at the earliest
            // byte.
            let Some(&content_type) = rest.first() else {
                return Ok(None);
            };
            if content_type != CONTENT_TYPE_HANDSHAKE {
                return Err(if first {
                    SniError::NotTls
                } else {
                    SniError::Malformed("non-handshake record inside the ClientHello")
                });
            }
            let Some(&major) = rest.get(1) else {
                return Ok(None);
            };
            if major != 3 {
                return Err(if first {
                    SniError::NotTls
                } else {
                    SniError::Malformed("record version")
                });
            }
            let Some(&minor) = rest.get(2) else {
                return Ok(None);
            };
            if !(1..=4).contains(&minor) {
                return Err(SniError::Malformed("record version"));
            }
            let Some(len_bytes) = rest.get(3..RECORD_HEADER_LEN) else {
                return Ok(None);
            };
            let len = usize::from(u16::from_be_bytes([len_bytes[0], len_bytes[1]]));
            if len == 0 {
                return Err(SniError::Malformed("empty handshake record"));
            }
            if len > MAX_RECORD_LEN {
                return Err(SniError::Malformed("record longer than 2^14 + 256 bytes"));
            }
            let fragment = rest
                .get(RECORD_HEADER_LEN..(RECORD_HEADER_LEN + len).min(rest.len()))
                .unwrap_or_default();
            w.records += 1;
            for &b in fragment.iter().take(HANDSHAKE_HEADER_LEN - w.head_len) {
                w.head[w.head_len] = b;
                w.head_len += 1;
            }
            if w.head_len >= 1 && w.head[0] != HANDSHAKE_CLIENT_HELLO {
                return Err(SniError::NotClientHello);
            }
            if w.head_len == HANDSHAKE_HEADER_LEN && w.total.is_none() {
                let body_len = usize::from(w.head[1]) << 16
                    | usize::from(w.head[2]) << 8
                    | usize::from(w.head[3]);
                if body_len + HANDSHAKE_HEADER_LEN > self.max {
                    return Err(SniError::TooLarge);
                }
                w.total = Some(HANDSHAKE_HEADER_LEN + body_len);
            }
            w.have += fragment.len();
            if let Some(total) = w.total {
                if w.have >= total {
                    return Ok(Some(collect_body(buf, w.records, total)));
                }
            }
            if fragment.len() < len {
                return Ok(None);
            }
            w.pos += RECORD_HEADER_LEN + len;
            self.walked = w;
        }
    }
}

/// The body of the handshake message of `total` bytes (header included) held by the first
/// `records` records of `buf`, which [`HelloAssembler`] has validated.
fn collect_body(buf: &[u8], records: usize, total: usize) -> Cow<'_, [u8]> {
    let fragments = RecordFragments { rest: buf }.take(records);
    if records == 1 {
        let fragment = RecordFragments { rest: buf }.next().unwrap_or_default();
        return Cow::Borrowed(
            fragment
                .get(HANDSHAKE_HEADER_LEN..total)
                .unwrap_or_default(),
        );
    }
    let mut msg = Vec::with_capacity(total);
    for fragment in fragments {
        let want = total - msg.len();
        msg.extend_from_slice(&fragment[..want.min(fragment.len())]);
    }
    msg.drain(..HANDSHAKE_HEADER_LEN.min(msg.len()));
    Cow::Owned(msg)
}

/// The fragments of consecutive records (the last one possibly truncated by the buffer end).
struct RecordFragments<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for RecordFragments<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let len_bytes = self.rest.get(3..RECORD_HEADER_LEN)?;
        let len = usize::from(u16::from_be_bytes([len_bytes[0], len_bytes[1]]));
        let end = (RECORD_HEADER_LEN + len).min(self.rest.len());
        let fragment = self.rest.get(RECORD_HEADER_LEN..end)?;
        self.rest = self.rest.get(end..).unwrap_or_default();
        Some(fragment)
    }
}

/// Parses a complete ClientHello body (RFC 8446 §4.1.2; RFC 5246 §7.4.1.2 for TLS 1.2).
fn parse_body(body: &[u8]) -> Result<ClientHelloInfo, SniError> {
    let mut r = Reader::new(body);
    let legacy_version = r
        .u16()
        .ok_or(SniError::Malformed("truncated client_version"))?;
    if legacy_version >> 8 != 3 {
        return Err(SniError::Malformed("client_version is not TLS"));
    }
    r.take(32).ok_or(SniError::Malformed("truncated random"))?;
    let session_id = r
        .vec_u8()
        .ok_or(SniError::Malformed("truncated session id"))?;
    if session_id.len() > 32 {
        return Err(SniError::Malformed("session id longer than 32 bytes"));
    }
    let suites = r
        .vec_u16()
        .ok_or(SniError::Malformed("truncated cipher suites"))?;
    if suites.is_empty() || suites.len() % 2 != 0 {
        return Err(SniError::Malformed("cipher suite list length"));
    }
    let compression = r
        .vec_u8()
        .ok_or(SniError::Malformed("truncated compression methods"))?;
    if compression.is_empty() {
        return Err(SniError::Malformed("empty compression method list"));
    }

    let mut info = ClientHelloInfo::default();
    if r.is_empty() {
        // Extensions are optional in TLS 1.2 and earlier.
        return Ok(info);
    }
    let extensions = r
        .vec_u16()
        .ok_or(SniError::Malformed("truncated extensions"))?;
    if !r.is_empty() {
        return Err(SniError::Malformed("bytes after extensions"));
    }
    let mut ext = Reader::new(extensions);
    let (mut seen_sni, mut seen_alpn) = (false, false);
    while !ext.is_empty() {
        let kind = ext
            .u16()
            .ok_or(SniError::Malformed("truncated extension header"))?;
        let data = ext
            .vec_u16()
            .ok_or(SniError::Malformed("truncated extension"))?;
        match kind {
            EXT_SERVER_NAME => {
                if std::mem::replace(&mut seen_sni, true) {
                    return Err(SniError::Malformed("duplicate server_name extension"));
                }
                info.server_name = parse_server_name(data)?;
            }
            EXT_ALPN => {
                if std::mem::replace(&mut seen_alpn, true) {
                    return Err(SniError::Malformed("duplicate ALPN extension"));
                }
                info.alpn = parse_alpn(data)?;
            }
            _ => {}
        }
    }
    Ok(info)
}

/// RFC 6066 §3: `ServerName server_name_list<1..2^16-1>`, at most one `host_name`.
fn parse_server_name(data: &[u8]) -> Result<Option<String>, SniError> {
    let mut r = Reader::new(data);
    let list = r
        .vec_u16()
        .ok_or(SniError::Malformed("truncated server name list"))?;
    if !r.is_empty() {
        return Err(SniError::Malformed("bytes after server name list"));
    }
    if list.is_empty() {
        return Err(SniError::Malformed("empty server name list"));
    }
    let mut list = Reader::new(list);
    let mut host_name = None;
    while !list.is_empty() {
        let name_type = list
            .u8()
            .ok_or(SniError::Malformed("truncated server name"))?;
        let name = list
            .vec_u16()
            .ok_or(SniError::Malformed("truncated server name"))?;
        if name_type != NAME_TYPE_HOST_NAME {
            continue;
        }
        if host_name.is_some() {
            return Err(SniError::Malformed("more than one host_name"));
        }
        host_name = Some(normalize_dns_name(name).map_err(SniError::InvalidServerName)?);
    }
    Ok(host_name)
}

/// RFC 7301 §3.1: `ProtocolName protocol_name_list<2..2^16-1>`, names `<1..2^8-1>`.
fn parse_alpn(data: &[u8]) -> Result<Vec<Vec<u8>>, SniError> {
    let mut r = Reader::new(data);
    let list = r
        .vec_u16()
        .ok_or(SniError::Malformed("truncated ALPN list"))?;
    if !r.is_empty() {
        return Err(SniError::Malformed("bytes after ALPN list"));
    }
    if list.is_empty() {
        return Err(SniError::Malformed("empty ALPN list"));
    }
    let mut list = Reader::new(list);
    let mut protocols = Vec::new();
    while !list.is_empty() {
        let name = list
            .vec_u8()
            .ok_or(SniError::Malformed("truncated ALPN name"))?;
        if name.is_empty() {
            return Err(SniError::Malformed("empty ALPN name"));
        }
        protocols.push(name.to_vec());
    }
    Ok(protocols)
}

/// A bounds-checked cursor: every accessor returns `None` instead of reading past the end.
struct Reader<'a> {
    rest: &'a [u8],
}

// === impl Reader ===

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { rest: buf }
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.rest.len() {
            return None;
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    /// A vector with a one-byte length prefix.
    fn vec_u8(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()?;
        self.take(usize::from(n))
    }

    /// A vector with a two-byte length prefix.
    fn vec_u16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }
}

#[cfg(test)]
mod tests;
