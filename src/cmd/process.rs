//! What every long-running command (`run`, `sidecar`, `agent`) does first: load its config
//! file and start logging, with `--log-format` / `--log-level` over the file's `log_format`.
//!
//! Invariant: a config that does not load, or a log filter that does not parse, is reported on
//! stderr as `<command>: ...` and becomes exit status 64 (`EX_USAGE`); nothing is logged before
//! logging is initialised.

use std::path::Path;
use std::process::ExitCode;

use fedgate_federation::error_chain;

use crate::cmd::EX_USAGE;
use crate::config::LogFormat;

/// `--log-format`: the command-line spelling of a log format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormatArg {
    Human,
    Json,
}

impl From<LogFormatArg> for LogFormat {
    fn from(f: LogFormatArg) -> Self {
        match f {
            LogFormatArg::Human => LogFormat::Human,
            LogFormatArg::Json => LogFormat::Json,
        }
    }
}

/// The logging flags shared by the long-running commands.
#[derive(Debug, clap::Args)]
pub struct LogArgs {
    /// Log format; overrides `log_format` in the config file (default: human).
    #[arg(long, value_enum)]
    log_format: Option<LogFormatArg>,
    /// Log filter such as `info` or `fedgate=debug`; overrides RUST_LOG.
    #[arg(long)]
    log_level: Option<String>,
}

/// Loads the config at `path` with `load` and initialises logging with the flags over
/// `file_format` (the config's `log_format`). `who` names the command in messages
/// (`fedgate sidecar`). `Err` is the exit status to return at once.
pub(crate) fn load_and_log<C, E: std::error::Error>(
    who: &str,
    path: &Path,
    load: impl FnOnce(&Path) -> Result<C, E>,
    file_format: impl FnOnce(&C) -> Option<LogFormat>,
    log: &LogArgs,
) -> Result<C, ExitCode> {
    let config = load(path).map_err(|e| {
        eprintln!("{who}: config error: {}", error_chain(&e));
        ExitCode::from(EX_USAGE)
    })?;
    let format = log
        .log_format
        .map(Into::into)
        .or_else(|| file_format(&config))
        .unwrap_or_default();
    crate::telemetry::init(format, log.log_level.as_deref()).map_err(|e| {
        eprintln!("{who}: {e}");
        ExitCode::from(EX_USAGE)
    })?;
    Ok(config)
}
