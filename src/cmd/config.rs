//! `fedgate config check FILE [--sidecar FILE]... [--peer FILE]...`: parse and check a gateway
//! config without running it, and find relay settings that cannot work (`relay_lint`).
//!
//! Exit codes: 0 with a one-line summary on stdout (findings, if any, as `warning:` lines on
//! stderr: the config is valid, but some of its routes will refuse every connection); 64
//! (EX_USAGE) with the precise error (file:line:column, key, what would be valid) on stderr.

mod relay_lint;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use fedgate_federation::{SpiffeId, X509Svid};

use crate::config::sidecar::Config as SidecarConfig;
use crate::config::{BridgeIdentity, Config};
use relay_lint::{Gateway, Sidecar};

#[derive(Debug, clap::Subcommand)]
pub enum ConfigCommand {
    /// Check a gateway config file; print a summary or the precise error, and warn about relay
    /// settings that cannot work with the sidecars and peer gateways given.
    Check {
        /// The TOML config file.
        file: PathBuf,
        /// A sidecar config whose inbound listeners this gateway's routes may dial (repeatable).
        #[arg(long = "sidecar", value_name = "FILE")]
        sidecars: Vec<PathBuf>,
        /// A peer gateway config whose bridge-ingress listeners this gateway's egress routes may
        /// dial (repeatable).
        #[arg(long = "peer", value_name = "FILE")]
        peers: Vec<PathBuf>,
    },
}

pub async fn run(cmd: ConfigCommand) -> anyhow::Result<ExitCode> {
    let ConfigCommand::Check {
        file,
        sidecars,
        peers,
    } = cmd;
    let config = match Config::load(&file) {
        Ok(config) => config,
        Err(e) => return Ok(config_error(&e)),
    };
    let mut sidecar_configs = Vec::new();
    for path in &sidecars {
        match SidecarConfig::load(path) {
            Ok(c) => sidecar_configs.push((path, c)),
            Err(e) => return Ok(config_error(&e)),
        }
    }
    let mut peer_configs = Vec::new();
    for path in &peers {
        match Config::load(path) {
            Ok(c) => peer_configs.push(c),
            Err(e) => return Ok(config_error(&e)),
        }
    }

    let gateway = Gateway {
        config: &config,
        local_id: config
            .identity
            .as_ref()
            .and_then(|i| svid_id(&i.svid, &i.key)),
        bridge_id: config.bridge.as_ref().and_then(|b| match &b.identity {
            BridgeIdentity::Files { svid, key } => svid_id(svid, key),
            BridgeIdentity::Issuer(settings) => Some(settings.id.clone()),
        }),
    };
    let sidecars: Vec<_> = sidecar_configs
        .iter()
        .map(|(path, config)| Sidecar {
            path: path.as_path(),
            config,
        })
        .collect();
    let peers: Vec<_> = peer_configs.iter().collect();
    for finding in relay_lint::lint(&gateway, &sidecars, &peers) {
        eprintln!("warning: {finding}");
    }
    println!("ok: {}: {}", file.display(), config.summary());
    Ok(ExitCode::SUCCESS)
}

fn config_error(e: &dyn std::error::Error) -> ExitCode {
    eprintln!(
        "fedgate: config error: {}",
        fedgate_federation::error_chain(e)
    );
    ExitCode::from(crate::cmd::EX_USAGE)
}

/// The SPIFFE ID of the SVID in `svid`/`key`, if it can be loaded (a missing file is reported by
/// the findings that need the ID, not here: the gateway reports it at start).
fn svid_id(svid: &Path, key: &Path) -> Option<SpiffeId> {
    X509Svid::load(svid, key).ok().map(|s| s.id().clone())
}
