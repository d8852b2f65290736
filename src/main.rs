//! The `fedgate` binary: parse the command line, run the command, map the outcome to an exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = fedgate::cmd::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fedgate: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(fedgate::cmd::dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("fedgate: {e:#}");
            ExitCode::FAILURE
        }
    }
}
