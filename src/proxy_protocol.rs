//! PROXY protocol v2 (haproxy proxy-protocol.txt §2.2) with fedgate's TLVs.
//!
//! Invariant: decoding never reads past the declared length and rejects headers over the
//! caller's size limit before buffering them.

use std::net::SocketAddr;

/// `PP2_TYPE_AUTHORITY`: the destination name the caller asked for.
pub const TLV_AUTHORITY: u8 = 0x02;
/// fedgate's custom TLV (0xE0..=0xEF is reserved for custom use): the caller's verified SPIFFE ID.
pub const TLV_SPIFFE_ID: u8 = 0xE0;
/// fedgate's custom TLV: the *origin* SPIFFE ID relayed across a bridge (the workload that
/// called the egress gateway), as opposed to the immediate verified peer in `TLV_SPIFFE_ID`.
pub const TLV_ORIGIN_ID: u8 = 0xE1;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tlv {
    pub kind: u8,
    pub value: Vec<u8>,
}

/// A PROXY v2 header: `PROXY` command with addresses, or `LOCAL` without.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ProxyHeader {
    pub addresses: Option<(SocketAddr, SocketAddr)>,
    pub tlvs: Vec<Tlv>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("TODO")]
    Todo,
}

impl ProxyHeader {
    pub fn encode(&self) -> Vec<u8> {
        todo!()
    }
    /// Decodes a header at the start of `buf`: `Ok(None)` if incomplete, else the header
    /// and the number of bytes it used. Headers longer than `max_len` are refused.
    pub fn decode(_buf: &[u8], _max_len: usize) -> Result<Option<(Self, usize)>, ProxyError> {
        todo!()
    }
}
