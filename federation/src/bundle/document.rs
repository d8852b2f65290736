//! The SPIFFE bundle JSON document (JWKS, SPIFFE_Trust_Domain_and_Bundle.md §4).
