//! rustls verifiers that validate X509-SVIDs with a `BundleSet` and an `Authorizer`.

#[derive(Debug)]
pub struct SpiffeServerVerifier {}

#[derive(Debug)]
pub struct SpiffeClientVerifier {}
