//! `fedgate ca serve --config FILE`: load the config, bind, print `listening on <addr>`, serve
//! until SIGTERM/SIGINT, drain.
//!
//! Exit codes: 64 when the config file is unusable (the message names the file and key), 1 for
//! any other startup or runtime failure.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use crate::ca::serve::{Issuer, ServeConfig};
use crate::cmd::EX_USAGE;
use fedgate_federation::error_chain;

/// Runs the issuing endpoint described by the config file at `path`.
pub async fn serve(path: &Path) -> anyhow::Result<ExitCode> {
    crate::telemetry::init_default();
    let config = match ServeConfig::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("fedgate ca serve: {}", error_chain(&e));
            return Ok(ExitCode::from(EX_USAGE));
        }
    };
    let issuer = Issuer::build(&config).await.with_context(|| {
        format!(
            "cannot start the issuing endpoint configured in {}",
            path.display()
        )
    })?;
    let addr = issuer
        .local_addr()
        .context("cannot read the bound address")?;
    let mut banner = format!("listening on {addr}\n");
    if let Some(admin) = issuer.admin_addr() {
        let admin = admin.context("cannot read the admin address")?;
        banner.push_str(&format!("admin listening on {admin}\n"));
    }
    // A closed stdout (the reader went away) must not stop the endpoint.
    let mut stdout = std::io::stdout();
    if let Err(e) = stdout
        .write_all(banner.as_bytes())
        .and_then(|()| stdout.flush())
    {
        tracing::warn!(error = %e, "cannot write the listening address to stdout");
    }
    tracing::info!(%addr, members = config.members.len(), policy = config.policy.len(), "bridge CA issuing endpoint listening");

    let shutdown = CancellationToken::new();
    fedgate_dataplane::shutdown::cancel_on_termination(shutdown.clone())
        .context("cannot install the SIGTERM/SIGINT handlers")?;
    issuer.run(shutdown).await;
    tracing::info!("bridge CA issuing endpoint stopped");
    Ok(ExitCode::SUCCESS)
}
