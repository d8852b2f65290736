//! `fedgate sidecar` with `[identity] source = "workload_api"`, as processes: a real `fedgate
//! agent` on a Unix socket in a temporary directory mints the sidecar's SVID from a CA
//! directory (created with the library, as `fedgate ca init` does), and the sidecar serves
//! mTLS with it in both directions, follows a CA rotation without a restart, keeps its
//! identity while the agent is gone, and refuses bad socket values with a clear error.
//!
//! Every wait on a change polls `/status` or the served certificate in a loop bounded by
//! [`WAIT`] (the bound only turns a hang into a failure); no test sleeps to let time pass.
// Test code: a failed unwrap is a test failure with a backtrace, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/sidecar_certs.rs"]
mod certs;
#[path = "support/sidecar_harness.rs"]
mod harness;

use std::collections::HashMap;
use std::io::BufRead;
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use certs::{bundle_map_json, TestCa};
use fedgate::ca::{Ca, InitOptions};
use fedgate_federation::tls::{Authorizer, SpiffeClientVerifier};
use fedgate_federation::{BundleSet, TrustDomain, X509Svid};
use harness::{echo_app, round_trip, server_name, tls_connector};
use rustls_pki_types::CertificateDer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Bounds every wait for something that must happen.
const WAIT: Duration = Duration::from_secs(30);
/// How often a bounded wait re-checks its condition.
const POLL: Duration = Duration::from_millis(50);
const APP_ID: &str = "spiffe://cluster-a.test/app";
const CLIENT_ID: &str = "spiffe://cluster-b.test/client";
const ECHO_ID: &str = "spiffe://cluster-b.test/echo";

/// A child process killed (by its handle) if the test ends without stopping it.
struct Proc(Option<Child>);

impl Proc {
    /// SIGTERM, then the exit code.
    async fn stop(mut self) -> Option<i32> {
        let mut child = self.0.take().unwrap();
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        tokio::task::spawn_blocking(move || child.wait().unwrap())
            .await
            .unwrap()
            .code()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The agent's CA directory and federated bundle map, and the peer CAs.
struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    socket: PathBuf,
    ca_dir: PathBuf,
    /// cluster-b.test: the client and the echo server.
    peer_b: TestCa,
    /// cluster-c.test: federated too, and able to sign a cluster-b.test ID (a forgery that
    /// only a merged bundle set would accept).
    peer_c: TestCa,
}

impl Fixture {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let ca_dir = dir.join("ca");
        let opts = InitOptions {
            ttl: Duration::from_secs(24 * 3600),
            refresh_hint: None,
            intermediate: false,
        };
        Ca::init(&TrustDomain::new("cluster-a.test").unwrap(), &opts)
            .unwrap()
            .save(&ca_dir)
            .unwrap();
        let (peer_b, peer_c) = (TestCa::new("cluster-b.test"), TestCa::new("cluster-c.test"));
        std::fs::write(
            dir.join("federated.json"),
            bundle_map_json(&[&peer_b, &peer_c]),
        )
        .unwrap();
        Fixture {
            socket: dir.join("agent.sock"),
            _tmp: tmp,
            dir,
            ca_dir,
            peer_b,
            peer_c,
        }
    }

    /// Starts `fedgate agent` serving this process's uid `APP_ID`; returns once it listens.
    async fn agent(&self) -> Proc {
        let probe = self.dir.join("uid-probe");
        std::fs::write(&probe, b"").unwrap();
        let uid = std::fs::metadata(&probe).unwrap().uid();
        let config = self.dir.join("agent.toml");
        std::fs::write(
            &config,
            format!(
                "trust_domain = \"cluster-a.test\"\nsocket = \"agent.sock\"\nca = \"ca\"\n\
                 federated_bundles = \"federated.json\"\npoll_interval = \"100ms\"\n\
                 [[entry]]\nspiffe_id = \"{APP_ID}\"\nselectors = [\"unix:uid:{uid}\"]\n"
            ),
        )
        .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_fedgate"))
            .args(["agent", "--config", config.to_str().unwrap()])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let proc = Proc(Some(child));
        let line = tokio::task::spawn_blocking(move || {
            std::io::BufReader::new(stdout)
                .lines()
                .next()
                .unwrap()
                .unwrap()
        })
        .await
        .unwrap();
        assert!(line.starts_with("workload-api listening on"), "{line}");
        proc
    }

    /// The agent's CA as it is now (its bundle, after a rotation both authorities).
    fn ca(&self) -> Ca {
        Ca::load(&self.ca_dir).unwrap()
    }

    /// The sidecar config with `identity` as its `[identity]` table.
    fn sidecar_toml(&self, identity: &str, listeners: &str) -> PathBuf {
        let path = self.dir.join("sidecar.toml");
        std::fs::write(
            &path,
            format!(
                "trust_domain = \"cluster-a.test\"\n[identity]\n{identity}\n\
                 [admin]\nlisten = \"127.0.0.1:0\"\n{listeners}"
            ),
        )
        .unwrap();
        path
    }

    fn workload_api_identity(&self) -> String {
        format!(
            "source = \"workload_api\"\nsocket = \"unix://{}\"\n",
            self.socket.display()
        )
    }
}

/// Starts `fedgate sidecar --config path`; returns the process and its bound addresses by
/// listener name, once it has printed them (it has its identity then).
async fn sidecar(path: &Path) -> (Proc, HashMap<String, SocketAddr>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fedgate"))
        .args(["sidecar", "--config", path.to_str().unwrap()])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let proc = Proc(Some(child));
    let addrs = tokio::time::timeout(
        WAIT,
        tokio::task::spawn_blocking(move || {
            let mut addrs = HashMap::new();
            for line in std::io::BufReader::new(stdout).lines() {
                let line = line.unwrap();
                let (head, addr) = line.split_once(" listening on ").unwrap();
                let name = head.split(' ').nth(1).unwrap().to_owned();
                addrs.insert(name.clone(), addr.parse().unwrap());
                if name == "admin" {
                    return addrs;
                }
            }
            panic!("the sidecar exited before printing its admin address");
        }),
    )
    .await
    .expect("the sidecar starts in time")
    .unwrap();
    (proc, addrs)
}

/// Runs `fedgate sidecar` to its exit (bounded): exit code and stderr.
async fn sidecar_exit(path: &Path) -> (Option<i32>, String) {
    let path = path.to_owned();
    let mut child = Command::new(env!("CARGO_BIN_EXE_fedgate"))
        .args(["sidecar", "--config", path.to_str().unwrap()])
        .env("RUST_LOG", "off")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let proc = Proc(Some(child));
    let out = tokio::time::timeout(
        WAIT,
        tokio::task::spawn_blocking(move || {
            let mut proc = proc;
            let mut err = String::new();
            std::io::Read::read_to_string(&mut stderr, &mut err).unwrap();
            let code = proc.0.take().unwrap().wait().unwrap().code();
            (code, err)
        }),
    )
    .await
    .expect("the sidecar exits in time")
    .unwrap();
    out
}

async fn status(admin: SocketAddr) -> serde_json::Value {
    serde_json::from_str(&harness::http_get(admin, "/status").await).unwrap()
}

/// Polls `/status` until `cond` holds (bounded by [`WAIT`]); returns the status that did.
async fn wait_status(
    admin: SocketAddr,
    what: &str,
    cond: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let s = status(admin).await;
        if cond(&s) {
            return s;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: {s:#}");
        tokio::time::sleep(POLL).await;
    }
}

/// One mTLS connection to the sidecar's inbound listener at `addr` as `client`, trusting
/// `trust`: the server's leaf certificate and the echo of a message through it.
async fn inbound(
    addr: SocketAddr,
    client: &X509Svid,
    trust: &BundleSet,
) -> (CertificateDer<'static>, Vec<u8>) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut tls = tls_connector(client, trust.clone())
        .connect(server_name("app.cluster-a.test"), tcp)
        .await
        .unwrap();
    let leaf = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    tls.write_all(b"ping").await.unwrap();
    let mut echo = [0u8; 4];
    tokio::time::timeout(WAIT, tls.read_exact(&mut echo))
        .await
        .unwrap()
        .unwrap();
    (leaf, echo.to_vec())
}

/// An mTLS echo server presenting `svid`, accepting clients that chain to `trust`.
async fn tls_echo(svid: &X509Svid, trust: BundleSet) -> SocketAddr {
    let verifier = Arc::new(SpiffeClientVerifier::new(trust, Authorizer::any()));
    let config = fedgate_federation::tls::server_config(svid, verifier).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let (mut r, mut w) = tokio::io::split(tls);
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}

fn issuer_is(leaf: &CertificateDer<'_>, root: &CertificateDer<'_>) -> bool {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).unwrap();
    let (_, root) = x509_parser::parse_x509_certificate(root.as_ref()).unwrap();
    cert.issuer() == root.subject()
}

fn uri_san(leaf: &CertificateDer<'_>) -> String {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).unwrap();
    let san = cert.subject_alternative_name().unwrap().unwrap();
    san.value
        .general_names
        .iter()
        .find_map(|n| match n {
            x509_parser::extensions::GeneralName::URI(u) => Some((*u).to_owned()),
            _ => None,
        })
        .unwrap()
}

/// (1) mTLS both ways with the agent-issued SVID, per-trust-domain verification outbound;
/// (2) a CA rotation at the agent reaches the sidecar without a restart; (3) the agent going
/// away keeps the identity in force and shows in `/status`, and its return is followed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sidecar_takes_its_identity_from_the_workload_api() {
    let fx = Fixture::new();
    let agent = fx.agent().await;
    let ca = fx.ca();
    let local = BundleSet::new().with(ca.bundle().clone());

    let (app, _conns) = echo_app(false).await;
    let echo = tls_echo(&fx.peer_b.issue(ECHO_ID).x509(), local.clone()).await;
    // A cluster-b.test ID signed by cluster-c.test's CA: its chain is valid only against a
    // bundle set that merges trust domains.
    let forged = tls_echo(&fx.peer_c.issue(ECHO_ID).x509(), local.clone()).await;
    let listeners = format!(
        "[[inbound]]\nname = \"in\"\nlisten = \"127.0.0.1:0\"\nforward = \"{app}\"\n\
         allow = [\"{CLIENT_ID}\"]\n\
         [[outbound]]\nname = \"out\"\nlisten = \"127.0.0.1:0\"\n\
         server_name = \"echo.cluster-b.test\"\nconnect = [\"{echo}\"]\nallow = [\"{ECHO_ID}\"]\n\
         [[outbound]]\nname = \"forged\"\nlisten = \"127.0.0.1:0\"\n\
         server_name = \"echo.cluster-b.test\"\nconnect = [\"{forged}\"]\n\
         allow = [\"{ECHO_ID}\"]\n"
    );
    let config = fx.sidecar_toml(&fx.workload_api_identity(), &listeners);
    let (sidecar, addrs) = sidecar(&config).await;
    let admin = addrs["admin"];

    // /status: the source and the identity it gave.
    let s = status(admin).await;
    assert_eq!(s["identity"]["spiffe_id"], APP_ID, "{s:#}");
    assert_eq!(s["identity"]["generation"], 0, "{s:#}");
    let mut tds: Vec<_> = s["identity"]["trust_domains"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect();
    tds.sort();
    assert_eq!(tds, ["cluster-a.test", "cluster-b.test", "cluster-c.test"]);
    let src = &s["identity_source"];
    assert_eq!(src["source"], "workload_api", "{s:#}");
    assert_eq!(src["socket"], fx.socket.display().to_string(), "{s:#}");
    assert_eq!(src["updates"], 1, "{s:#}");
    assert_eq!(src["rejected"], 0, "{s:#}");
    assert!(src["last_error"].is_null(), "{s:#}");

    // (1) Inbound: a cluster-b.test client reaches the app; the sidecar presents the SVID
    // the agent minted from the CA directory.
    let client = fx.peer_b.issue(CLIENT_ID).x509();
    let (leaf, echoed) = inbound(addrs["in"], &client, &local).await;
    assert_eq!(echoed, b"ping");
    assert_eq!(uri_san(&leaf), APP_ID);
    assert!(issuer_is(&leaf, ca.root()));
    // Outbound: the agent's SVID is the client certificate, the server is verified against
    // cluster-b.test's bundle only.
    assert_eq!(round_trip(addrs["out"], b"hello").await, b"hello");
    assert_eq!(
        round_trip(addrs["forged"], b"hello").await,
        b"",
        "a cluster-b.test server signed by cluster-c.test's CA is refused"
    );

    // (2) The agent's CA rotates: the agent re-mints, the stream carries the new SVID and
    // bundle, and the sidecar serves them without a restart.
    let mut rotated = fx.ca();
    rotated.rotate().unwrap();
    rotated.save(&fx.ca_dir).unwrap();
    let both = BundleSet::new().with(rotated.bundle().clone());
    let deadline = tokio::time::Instant::now() + WAIT;
    let leaf = loop {
        let (leaf, echoed) = inbound(addrs["in"], &client, &both).await;
        assert_eq!(echoed, b"ping");
        if issuer_is(&leaf, rotated.root()) {
            break leaf;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the sidecar never served an SVID of the rotated CA"
        );
        tokio::time::sleep(POLL).await;
    };
    assert_eq!(uri_san(&leaf), APP_ID);
    let s = wait_status(admin, "the rotated bundle in force", |s| {
        s["identity"]["generation"].as_u64() >= Some(1)
            && s["identity_source"]["updates"].as_u64() >= Some(2)
    })
    .await;
    assert_eq!(s["identity_source"]["rejected"], 0, "{s:#}");
    assert_eq!(s["reloads"]["failed"], 0, "{s:#}");

    // (3) The agent goes away: the stream ends, the sidecar keeps the identity in force,
    // retries with backoff and says so in /status.
    assert_eq!(agent.stop().await, Some(0));
    let s = wait_status(admin, "the lost stream in /status", |s| {
        s["identity_source"]["reconnects"].as_u64() >= Some(1)
            && !s["identity_source"]["last_error"].is_null()
    })
    .await;
    let generation = s["identity"]["generation"].clone();
    let updates = s["identity_source"]["updates"].as_u64().unwrap();
    let (leaf_during, echoed) = inbound(addrs["in"], &client, &both).await;
    assert_eq!(echoed, b"ping", "still served while the agent is gone");
    assert!(issuer_is(&leaf_during, rotated.root()));
    assert_eq!(status(admin).await["identity"]["generation"], generation);

    // The agent comes back on the same socket: the sidecar reconnects and follows it.
    let agent = fx.agent().await;
    let s = wait_status(admin, "reconnected to the agent", |s| {
        s["identity_source"]["updates"].as_u64() > Some(updates)
            && s["identity_source"]["last_error"].is_null()
    })
    .await;
    assert_eq!(s["identity"]["spiffe_id"], APP_ID);
    let (_, echoed) = inbound(addrs["in"], &client, &both).await;
    assert_eq!(echoed, b"ping");

    assert_eq!(sidecar.stop().await, Some(0));
    assert_eq!(agent.stop().await, Some(0));
}

/// With no agent at start the sidecar waits for one (as `fedgate run` does), and starts as
/// soon as the agent serves an SVID.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sidecar_waits_for_an_agent_that_is_not_there_yet() {
    let fx = Fixture::new();
    let (app, _conns) = echo_app(false).await;
    let config = fx.sidecar_toml(
        &fx.workload_api_identity(),
        &format!(
            "[[inbound]]\nname = \"in\"\nlisten = \"127.0.0.1:0\"\nforward = \"{app}\"\n\
             allow = [\"{CLIENT_ID}\"]\n"
        ),
    );
    let path = config.clone();
    let starting = tokio::spawn(async move { sidecar(&path).await });
    // The sidecar is now retrying (the socket does not exist); the agent starts.
    let agent = fx.agent().await;
    let (sidecar, addrs) = starting.await.unwrap();
    let s = status(addrs["admin"]).await;
    assert_eq!(s["identity"]["spiffe_id"], APP_ID, "{s:#}");
    let local = BundleSet::new().with(fx.ca().bundle().clone());
    let (_, echoed) = inbound(addrs["in"], &fx.peer_b.issue(CLIENT_ID).x509(), &local).await;
    assert_eq!(echoed, b"ping");
    assert_eq!(sidecar.stop().await, Some(0));
    assert_eq!(agent.stop().await, Some(0));
}

/// Bad socket values: a clear error naming the key or the path, exit 64, never a panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_socket_values_are_clear_errors() {
    let fx = Fixture::new();
    let inbound =
        "[[inbound]]\nname = \"in\"\nlisten = \"127.0.0.1:0\"\nforward = \"127.0.0.1:1\"\n";
    let cases = [
        (
            "source = \"workload_api\"\nsocket = \"/run/spire/agent.sock\"\n".to_owned(),
            "`identity.socket`: \"/run/spire/agent.sock\" is not a Workload API address",
        ),
        (
            "source = \"workload_api\"\nsocket = \"tcp://127.0.0.1:8081\"\n".to_owned(),
            "is not a Workload API address; write \"unix:///path/to/agent.sock\"",
        ),
        (
            "source = \"workload_api\"\n".to_owned(),
            "`identity.socket`: is missing",
        ),
        (
            format!(
                "source = \"workload_api\"\nsocket = \"unix://{}\"\nsvid = \"svid.pem\"\n",
                fx.socket.display()
            ),
            "`identity.svid`: is not used with source = \"workload_api\"",
        ),
        (
            "svid = \"s.pem\"\nkey = \"s.key\"\nbundle = \"b.json\"\nsocket = \"unix:///a.sock\"\n"
                .to_owned(),
            "`identity.socket`: is only used with source = \"workload_api\"",
        ),
    ];
    for (identity, expected) in cases {
        let config = fx.sidecar_toml(&identity, inbound);
        let (code, stderr) = sidecar_exit(&config).await;
        assert_eq!(code, Some(64), "{identity}: {stderr}");
        assert!(stderr.contains("config error"), "{identity}: {stderr}");
        assert!(stderr.contains(expected), "{identity}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }

    // A path that exists but is not a socket: refused at once (no agent can ever listen
    // there), not after the startup wait, and the file is left alone.
    std::fs::write(&fx.socket, b"not a socket").unwrap();
    let config = fx.sidecar_toml(&fx.workload_api_identity(), inbound);
    let started = std::time::Instant::now();
    let (code, stderr) = sidecar_exit(&config).await;
    assert_eq!(code, Some(64), "{stderr}");
    assert!(stderr.contains("identity error"), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{} exists but is not a Unix socket",
            fx.socket.display()
        )),
        "{stderr}"
    );
    assert!(
        started.elapsed() < fedgate::identity::workload_api::DEFAULT_STARTUP_TIMEOUT,
        "refused without waiting"
    );
    assert_eq!(std::fs::read(&fx.socket).unwrap(), b"not a socket");
}

/// No agent within the startup timeout (30 s in `fedgate sidecar`, 1 s here): building the
/// sidecar fails with an identity error naming the socket and the last error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_agent_within_the_startup_timeout_is_an_identity_error() {
    let fx = Fixture::new();
    let config = fx.sidecar_toml(
        &fx.workload_api_identity(),
        "[[inbound]]\nname = \"in\"\nlisten = \"127.0.0.1:0\"\nforward = \"127.0.0.1:1\"\n",
    );
    let config = fedgate::sidecar::Config::load(&config).unwrap();
    let started = std::time::Instant::now();
    let err = fedgate::sidecar::Sidecar::build_with_startup_timeout(config, Duration::from_secs(1))
        .await
        .err()
        .expect("no identity, no sidecar");
    assert!(
        matches!(err, fedgate::sidecar::BuildError::Identity(_)),
        "{err}"
    );
    let chain = fedgate_federation::error_chain(&err);
    assert!(chain.contains("Workload API"), "{chain}");
    assert!(chain.contains("no usable identity"), "{chain}");
    assert!(chain.contains(&fx.socket.display().to_string()), "{chain}");
    assert!(started.elapsed() < WAIT, "gave up after the timeout");
}

// === a scripted Workload API server, for what `fedgate agent` never sends ===

#[path = "support/scripted_workload_api.rs"]
mod scripted;

/// A Workload API that sends an SVID of another trust domain, then drops the stream: the
/// sidecar refuses the update, keeps serving the identity in force, reconnects, and `/status`
/// shows all of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_update_and_a_dropped_stream_keep_the_identity_in_force() {
    let fx = Fixture::new();
    let ca = fx.ca();
    let other = Ca::init(
        &TrustDomain::new("cluster-z.test").unwrap(),
        &InitOptions {
            ttl: Duration::from_secs(24 * 3600),
            refresh_hint: None,
            intermediate: false,
        },
    )
    .unwrap();
    let federated = [fx.peer_b.bundle()];
    let good = scripted::response(&ca, APP_ID, &federated);
    let foreign = scripted::response(&other, "spiffe://cluster-z.test/app", &federated);
    let server = scripted::Scripted::default();
    // One stream: the good SVID, the foreign one; then it ends. The next stream is silent.
    server
        .scripts
        .lock()
        .unwrap()
        .push_back(vec![good, foreign]);
    let stop = scripted::serve(&fx.socket, server);

    let (app, _conns) = echo_app(false).await;
    let toml = format!(
        "trust_domain = \"cluster-a.test\"\n[identity]\n{}\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n\
         [[inbound]]\nname = \"in\"\nlisten = \"127.0.0.1:0\"\nforward = \"{app}\"\n\
         allow = [\"{CLIENT_ID}\"]\n",
        fx.workload_api_identity()
    );
    let sidecar = harness::RunningSidecar::start(&fx.dir, &toml).await;
    let admin = sidecar.addr("admin");
    let s = wait_status(admin, "the refused update and the lost stream", |s| {
        s["identity_source"]["rejected"] == 1
            && s["identity_source"]["reconnects"].as_u64() >= Some(1)
    })
    .await;
    let src = &s["identity_source"];
    assert_eq!(src["updates"], 1, "{s:#}");
    assert!(!src["last_error"].is_null(), "{s:#}");
    assert_eq!(s["identity"]["spiffe_id"], APP_ID, "{s:#}");
    assert_eq!(s["identity"]["generation"], 0, "{s:#}");

    let local = BundleSet::new().with(ca.bundle().clone());
    let (leaf, echoed) = inbound(
        sidecar.addr("in"),
        &fx.peer_b.issue(CLIENT_ID).x509(),
        &local,
    )
    .await;
    assert_eq!(echoed, b"ping");
    assert_eq!(uri_san(&leaf), APP_ID);
    assert!(issuer_is(&leaf, ca.root()));

    sidecar.stop().await;
    stop.cancel();
}
