//! The `fedgate` binary: parse the command line, run the command, map the outcome to an exit code.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of the system allocator. With glibc's malloc, the data plane's
/// frame-sized buffers (64 KiB DATA frames of the mux tunnel, TLS record buffers) were returned
/// to the kernel as soon as they were freed and faulted back in on the next connection or
/// frame: page faults and zeroing took about 12 % of a mux gateway's CPU in bulk transfers
/// (docs/benchmarks.md, "Allocator"). mimalloc keeps freed pages per thread for reuse, which
/// suits thread-per-core workers.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
