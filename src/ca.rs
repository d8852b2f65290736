//! A small CA for trust domains and the bridge (rcgen).
