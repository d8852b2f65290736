//! The TOML configuration parsers, from a string: the gateway (`fedgate::config::Config`, incl.
//! bridge listeners), the sidecar (`fedgate::sidecar::Config`) and the bridge CA's issuing
//! endpoint (`ca serve`, `fedgate::ca::serve::ServeConfig`).
//!
//! Asserts: none of them panics on any text (errors are fine), and rendering the error (which
//! maps byte offsets to line:column and key paths) or the summary of an accepted config does not
//! panic either. The parsers are pure: relative paths are only joined, never opened.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // TOML is UTF-8; invalid bytes become U+FFFD so that every input reaches the parsers.
    let text = String::from_utf8_lossy(data);

    match fedgate::config::Config::parse(&text, Path::new("/etc/fedgate/fedgate.toml")) {
        Ok(config) => {
            let _ = config.summary();
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }

    match fedgate::sidecar::Config::parse(
        &text,
        Path::new("/etc/fedgate"),
        Path::new("/etc/fedgate/sidecar.toml"),
    ) {
        Ok(config) => {
            let _ = config.listener_names().count();
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }

    match fedgate::ca::serve::ServeConfig::parse(
        &text,
        Path::new("/etc/fedgate/ca-serve.toml"),
        Path::new("/etc/fedgate"),
    ) {
        Ok(config) => {
            let _ = config.has_federated_members();
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
