//! Real gateways, sidecars and a PROXY-reading app on 127.0.0.1:0 for the end-to-end bridge
//! tests: each `start_*` builds from a TOML config written into a directory and runs until its
//! token is cancelled.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use fedgate::app::App;
use fedgate::sidecar::Sidecar;
use fedgate_dataplane::proxy_protocol::{read_proxy_header, ProxyHeader};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::bridge_certs::{IssuedSvid, TestCa};

/// An app behind a sidecar: plain TCP; reads the PROXY v2 header its sidecar sends, reports it,
/// then echoes.
pub async fn spawn_header_app() -> (SocketAddr, mpsc::UnboundedReceiver<ProxyHeader>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let Ok(header) = read_proxy_header(&mut tcp, 4096, Duration::from_secs(5)).await
                else {
                    return;
                };
                let _ = tx.send(header);
                let (mut r, mut w) = tcp.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    (addr, rx)
}

/// Writes an SVID and its CA's bundle into `dir` as `NAME.pem`, `NAME.key`, `NAME-bundle.json`.
pub fn write_identity(dir: &Path, ca: &TestCa, svid: &IssuedSvid, name: &str) {
    svid.write(dir, name);
    ca.write_bundle(dir, &format!("{name}-bundle.json"));
}

/// Runs `fedgate run` in process with `toml` (written as `dir/gateway.toml`); returns the
/// address of `listener`.
pub async fn start_gateway(
    dir: &Path,
    toml: &str,
    listener: &str,
) -> (SocketAddr, CancellationToken) {
    let path = dir.join("gateway.toml");
    std::fs::write(&path, toml).unwrap();
    let app = App::build(fedgate::config::Config::load(&path).unwrap())
        .await
        .unwrap();
    let addr = app.listener_addr(listener).unwrap();
    let shutdown = CancellationToken::new();
    tokio::spawn(app.run(shutdown.clone()));
    (addr, shutdown)
}

/// Runs `fedgate sidecar` in process with `toml` (written as `dir/sidecar.toml`); returns every
/// listener's name and address.
pub async fn start_sidecar(
    dir: &Path,
    toml: &str,
) -> (Vec<(String, SocketAddr)>, CancellationToken) {
    let path = dir.join("sidecar.toml");
    std::fs::write(&path, toml).unwrap();
    let sidecar = Sidecar::build(fedgate::sidecar::config::Config::load(&path).unwrap())
        .await
        .unwrap();
    let addrs = sidecar
        .bound_addrs()
        .into_iter()
        .map(|b| (b.name, b.addr))
        .collect();
    let shutdown = CancellationToken::new();
    tokio::spawn(sidecar.run(shutdown.clone()));
    (addrs, shutdown)
}

/// The head of a bridge gateway config: local identity `local.*`, bridge identity `bridge.*`
/// (as written by [`write_identity`]), admin on an ephemeral port.
pub fn gateway_head(td: &str, bridge_td: &str) -> String {
    format!(
        r#"
trust_domain = "{td}"
[identity]
svid = "local.pem"
key = "local.key"
bundle = "local-bundle.json"
[admin]
listen = "127.0.0.1:0"
[bridge]
trust_domain = "{bridge_td}"
svid = "bridge.pem"
key = "bridge.key"
bundle = "bridge-bundle.json"
"#
    )
}
