//! Authorization of a verified peer SPIFFE ID (exact, path prefix, trust domain, any of).

/// Decides whether a verified peer ID is allowed.
#[derive(Clone, Debug)]
pub enum Authorizer {}
