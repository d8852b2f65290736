//! `fedgate authz import FILE... --trust-domain TD [--id-template T] [--output FILE]`: SMI
//! TrafficTargets to sidecar allow lists (docs/authz-import.md).
//!
//! Exit codes (like `config check`): 0 with the TOML fragment on stdout (or in `--output`);
//! 64 (EX_USAGE) with one error line on stderr naming the file, document and field when an
//! input, the trust domain or the template is unusable; 1 when the output cannot be written.
//! Nothing is written to `--output` unless the whole import succeeded.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use fedgate_federation::TrustDomain;

use crate::authz::template::{IdTemplate, DEFAULT_TEMPLATE};
use crate::cmd::EX_USAGE;

#[derive(Debug, clap::Subcommand)]
pub enum AuthzCommand {
    /// Turn SMI TrafficTargets (with their HTTPRouteGroups and TCPRoutes) into `allow` lists
    /// for `fedgate sidecar` inbound listeners; print the TOML fragment.
    Import {
        /// Multi-document YAML files with the SMI resources (`-` reads stdin).
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// The trust domain of the ServiceAccounts' SPIFFE IDs.
        #[arg(long, value_name = "TD")]
        trust_domain: String,
        /// How a ServiceAccount becomes a SPIFFE ID; placeholders {td}, {ns}, {sa}.
        #[arg(long, value_name = "TEMPLATE", default_value = DEFAULT_TEMPLATE)]
        id_template: String,
        /// Write the fragment to this file instead of stdout.
        #[arg(long, short = 'o', value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

pub async fn run(cmd: AuthzCommand) -> anyhow::Result<ExitCode> {
    let AuthzCommand::Import {
        files,
        trust_domain,
        id_template,
        output,
    } = cmd;
    let usage = |msg: String| {
        eprintln!("fedgate authz import: {msg}");
        Ok(ExitCode::from(EX_USAGE))
    };
    let td = match TrustDomain::new(&trust_domain) {
        Ok(td) => td,
        Err(e) => return usage(format!("--trust-domain {trust_domain:?}: {e}")),
    };
    let template = match IdTemplate::parse(&id_template, &td) {
        Ok(t) => t,
        Err(e) => return usage(format!("--id-template: {e}")),
    };
    let mut inputs = Vec::new();
    for path in &files {
        let name = path.display().to_string();
        let mut bytes = Vec::new();
        let read = if name == "-" {
            std::io::stdin().lock().read_to_end(&mut bytes).map(drop)
        } else {
            std::fs::read(path).map(|b| bytes = b)
        };
        if let Err(e) = read {
            return usage(format!("{name}: cannot read: {e}"));
        }
        match String::from_utf8(bytes) {
            Ok(text) => inputs.push((name, text)),
            Err(e) => {
                return usage(format!(
                    "{name}: not UTF-8 text (byte {}): YAML input must be UTF-8",
                    e.utf8_error().valid_up_to()
                ))
            }
        }
    }
    let policy = match crate::authz::import(&inputs, &template) {
        Ok(p) => p,
        Err(e) => return usage(e.to_string()),
    };
    let names: Vec<String> = inputs.into_iter().map(|(name, _)| name).collect();
    let fragment = crate::authz::render::sidecar_fragment(&policy, &template, &names);
    match output {
        Some(path) => std::fs::write(&path, fragment)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(fragment.as_bytes())
                .and_then(|()| out.flush())
                .context("cannot write the fragment to stdout")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
