//! The Workload API's protobuf messages and gRPC service, generated at build time from
//! `proto/workload.proto` (see `build.rs`). The service has no protobuf package, so the
//! generated file is `_.rs` and the method paths are `/SpiffeWorkloadAPI/<Method>`.
//!
//! Invariant: no `Debug` output of a message holding a private key (`X509SVID`, `WITSVID` and
//! the responses carrying them) contains the key: those impls are written here and redact it.

#![allow(
    clippy::all,
    clippy::pedantic,
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    unreachable_pub
)]

use std::fmt;

include!(concat!(env!("OUT_DIR"), "/_.rs"));

impl fmt::Debug for X509svid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("X509SVID")
            .field("spiffe_id", &self.spiffe_id)
            .field("x509_svid_len", &self.x509_svid.len())
            .field("x509_svid_key", &"<redacted>")
            .field("bundle_len", &self.bundle.len())
            .field("hint", &self.hint)
            .finish()
    }
}

impl fmt::Debug for X509svidResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("X509SVIDResponse")
            .field("svids", &self.svids)
            .field("crl_count", &self.crl.len())
            .field(
                "federated_bundles",
                &self.federated_bundles.keys().collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl fmt::Debug for Witsvid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WITSVID")
            .field("spiffe_id", &self.spiffe_id)
            .field("wit_svid_key", &"<redacted>")
            .field("hint", &self.hint)
            .finish()
    }
}

impl fmt::Debug for WitsvidResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WITSVIDResponse")
            .field("svids", &self.svids)
            .finish()
    }
}
