//! Tracing setup (human or JSON lines on stderr) and the gateway's metrics.
//!
//! Invariants: `init` installs the global subscriber at most once per process; later calls
//! (tests spawning several apps) are no-ops rather than panics. Nothing here imports another
//! module of this crate (so every module, the admin server included, can import this one).

pub mod denials;
pub mod metrics;

pub use denials::Denials;
pub use metrics::Metrics;

use tracing_subscriber::EnvFilter;

pub use crate::config::LogFormat;

/// Installs the global tracing subscriber. The filter is `level` if given, else `RUST_LOG`,
/// else `info`. Returns an error only for an unparsable filter.
pub(crate) fn init(style: LogFormat, level: Option<&str>) -> anyhow::Result<()> {
    let filter = match level {
        Some(l) => EnvFilter::try_new(l)
            .map_err(|e| anyhow::anyhow!("--log-level `{l}` is not a valid filter ({e}); use e.g. info, debug or fedgate=debug"))?,
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // `try_init` fails only when a subscriber is already installed, which is fine.
    let _ = match style {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    Ok(())
}

/// Human-readable logs on stderr filtered by `RUST_LOG` (default `info`), for the commands
/// without `--log-format`/`--log-level` flags; a no-op if a subscriber is already installed.
pub(crate) fn init_default() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
