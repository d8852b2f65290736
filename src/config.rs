//! Gateway configuration (TOML).
