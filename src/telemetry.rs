//! Tracing and metrics setup.
