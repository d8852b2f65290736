//! Generates the SPIFFE Workload API types and gRPC service from `proto/workload.proto`
//! (included by `src/workload/proto.rs`). The .proto is compiled by protox, a pure-Rust
//! protobuf compiler, so building fedgate needs no `protoc` on the machine.

use std::error::Error;

const PROTO: &str = "proto/workload.proto";

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed={PROTO}");
    let fds = protox::compile([PROTO], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .build_transport(false)
        // Messages carrying private keys get a hand-written `Debug` that redacts them
        // (src/workload/proto.rs): key material never reaches a log line.
        .skip_debug([
            ".X509SVID",
            ".X509SVIDResponse",
            ".WITSVID",
            ".WITSVIDResponse",
        ])
        .compile_fds(fds)?;
    Ok(())
}
