//! `fedgate config check FILE`: parse and check a gateway config without running it.
//!
//! Exit codes: 0 with a one-line summary on stdout; 64 (EX_USAGE) with the precise error
//! (file:line:column, key, what would be valid) on stderr.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::Config;

/// Exit status for an unusable configuration (sysexits.h `EX_USAGE`).
pub const EXIT_CONFIG: u8 = 64;

#[derive(Debug, clap::Subcommand)]
pub enum ConfigCommand {
    /// Check a gateway config file; print a summary or the precise error.
    Check {
        /// The TOML config file.
        file: PathBuf,
    },
}

pub async fn run(cmd: ConfigCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ConfigCommand::Check { file } => match Config::load(&file) {
            Ok(config) => {
                println!("ok: {}: {}", file.display(), config.summary());
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!(
                    "fedgate: config error: {}",
                    crate::telemetry::display_chain(&e)
                );
                Ok(ExitCode::from(EXIT_CONFIG))
            }
        },
    }
}
