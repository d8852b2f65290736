//! `fedgate demo [--dir DIR] [--keep-running] [--plan PLAN.toml] [--quick]`: the whole system
//! on this machine with a report (see [`crate::demo`]), and the hidden child commands the demo
//! runs inside network namespaces (`echo`, `call`, `http-get`, `peek-cert`).
//!
//! Exit codes: `demo` 0 when every scenario matched, 1 otherwise or on a setup error, 130
//! after SIGINT/SIGTERM; `demo call` 0 answered, 3 denied, 1 failed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use crate::{echo, probe, Options};

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct DemoArgs {
    /// Directory for generated configs, certificates and logs (wiped at start if a previous
    /// demo made it).
    #[arg(long, value_name = "DIR", default_value = "fedgate-demo")]
    pub dir: PathBuf,
    /// Leave everything running after the scenarios, print commands to try, wait for Ctrl-C.
    #[arg(long)]
    pub keep_running: bool,
    /// Where each role runs (network namespaces and addresses); default: all on 127.0.0.1.
    #[arg(long, value_name = "PLAN.toml")]
    pub plan: Option<PathBuf>,
    /// A 1 s refresh interval instead of 2 s: faster rotation and outage scenarios.
    #[arg(long)]
    pub quick: bool,
    #[command(subcommand)]
    pub child: Option<DemoChild>,
}

/// Parts of the demo that run as its children (hidden from `--help`; `--keep-running` prints
/// the `call` commands to try by hand).
#[derive(Debug, clap::Subcommand)]
pub enum DemoChild {
    /// Echo workload: reads the sidecar's PROXY v2 header, answers `peer=.. origin=..`, echoes.
    #[command(hide = true)]
    Echo {
        #[arg(long, value_name = "ADDR")]
        listen: SocketAddr,
    },
    /// Calls an echo through a sidecar outbound listener; prints the greeting.
    #[command(hide = true)]
    Call {
        #[arg(long, value_name = "ADDR")]
        connect: SocketAddr,
        #[arg(long, default_value = "hello from fedgate demo")]
        message: String,
    },
    /// Plain HTTP GET; prints the status code on the first line, then the body.
    #[command(hide = true)]
    HttpGet {
        #[arg(long, value_name = "ADDR")]
        connect: SocketAddr,
        #[arg(long, default_value = "/status")]
        path: String,
    },
    /// Prints the SHA-256 fingerprint of the certificate a TLS server presents.
    #[command(hide = true)]
    PeekCert {
        #[arg(long, value_name = "ADDR")]
        connect: SocketAddr,
        #[arg(long, value_name = "NAME")]
        server_name: String,
    },
}

const CHILD_DEADLINE: Duration = Duration::from_secs(10);

pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    match args.child {
        None => {
            crate::run(Options {
                dir: args.dir,
                plan: args.plan,
                keep_running: args.keep_running,
                quick: args.quick,
            })
            .await
        }
        Some(DemoChild::Echo { listen }) => {
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("echo: cannot listen on {listen}"))?;
            let addr = listener
                .local_addr()
                .context("echo: cannot read the bound address")?;
            println!("echo listening on {addr}");
            let shutdown = CancellationToken::new();
            let stop = shutdown.clone();
            tokio::spawn(async move {
                let _ = tokio::signal::ctrl_c().await;
                stop.cancel();
            });
            let term = shutdown.clone();
            tokio::spawn(async move {
                if let Ok(mut s) =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                {
                    s.recv().await;
                    term.cancel();
                }
            });
            echo::serve(listener, shutdown).await;
            Ok(ExitCode::SUCCESS)
        }
        Some(DemoChild::Call { connect, message }) => {
            let out = probe::call(connect, &message, CHILD_DEADLINE).await;
            match &out {
                probe::CallOutcome::Answered(g) => println!("{}", g.line()),
                other => eprintln!("{}", other.describe()),
            }
            Ok(ExitCode::from(out.exit_code()))
        }
        Some(DemoChild::HttpGet { connect, path }) => {
            let (code, body) = probe::http_get(connect, &path, CHILD_DEADLINE).await?;
            println!("{code}\n{body}");
            Ok(ExitCode::SUCCESS)
        }
        Some(DemoChild::PeekCert {
            connect,
            server_name,
        }) => {
            let der = probe::peek_cert(connect, &server_name, CHILD_DEADLINE).await?;
            println!("{}", probe::fingerprint(&der));
            Ok(ExitCode::SUCCESS)
        }
    }
}
