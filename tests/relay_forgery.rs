//! A caller must never be able to forge its origin identity by writing a PROXY v2 header as the
//! first bytes of its own stream (threat-model invariant 9), whatever the egress, ingress and sidecar
//! settings are.
//!
//! Every combination is run with every hop real and on 127.0.0.1:
//!
//! ```text
//! 2 hops: app A ─tcp→ sidecar A ─mTLS→ egress A ─mTLS(bridge)→ ingress B ─mTLS→ sidecar B ─tcp+PROXY→ app B
//! 1 hop:  app A ─tcp→ sidecar A ─mTLS→ egress A ─mTLS(cluster-b)────────────→ sidecar B ─tcp+PROXY→ app B
//! ```
//!
//! App A (really `CLIENT`) writes a forged PROXY v2 header naming `FORGED` before its payload.
//! Every allow list on the way admits `FORGED` too, so a forged header that is *read* as a relay
//! header would be accepted: the only thing standing between the caller and `FORGED` is that stream
//! bytes are never read as a relay header. App B records the header its sidecar sends; its origin
//! must never be `FORGED`. The combinations that are meant to work must still deliver `CLIENT`.

// Helpers outside #[test] fns unwrap too: a failure is a test failure with a backtrace.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/bridge_certs.rs"]
mod bridge_certs;
#[path = "support/topology.rs"]
mod topology;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bridge_certs::TestCa;
use fedgate_dataplane::proxy_protocol::{ProxyHeader, TLV_AUTHORITY, TLV_ORIGIN_ID};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use topology::{gateway_head, spawn_header_app, start_gateway, start_sidecar, write_identity};

/// Starts a sidecar (see [`start_sidecar`]) and returns the address of its listener `name`.
async fn start_sidecar_listener(
    dir: &Path,
    toml: &str,
    name: &str,
) -> (SocketAddr, CancellationToken) {
    let (addrs, stop) = start_sidecar(dir, toml).await;
    let addr = addrs.into_iter().find(|(n, _)| n == name).unwrap().1;
    (addr, stop)
}

const DEST: &str = "echo.cluster-b.test";
const CLIENT: &str = "spiffe://cluster-a.test/ns/demo/sa/client";
const FORGED: &str = "spiffe://cluster-a.test/ns/demo/sa/admin";
const ECHO: &str = "spiffe://cluster-b.test/ns/demo/sa/echo";
const EGRESS: &str = "spiffe://cluster-a.test/ns/gateway/sa/egress";
const INGRESS: &str = "spiffe://cluster-b.test/ns/gateway/sa/ingress";
/// The 1-hop egress's upstream identity: a cluster-b SVID, as in the 1-hop bench topology.
const HOP: &str = "spiffe://cluster-b.test/ns/gateway/sa/bridge-hop";
const PAYLOAD: &[u8] = b"hello from a";

/// What app A saw, and what app B learned.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// The connection was closed before any byte came back.
    Refused,
    /// App A's bytes came back; app B's sidecar named this origin (TLV 0xE1), if any.
    Delivered { origin: Option<String> },
    /// Something else came back than app A sent (a header was passed on as data).
    Garbled,
}

/// One combination's result.
#[derive(Debug)]
struct Run {
    outcome: Outcome,
    /// Whether app B was told, in any header, that the origin is `FORGED`.
    forged: bool,
}

/// The settings of one combination.
#[derive(Clone, Copy, Debug)]
struct Case {
    /// The egress route's `send_proxy_header`.
    egress_sends: bool,
    /// `None`: 1 hop (the egress dials sidecar B); else the ingress route's `send_proxy_header`.
    ingress_sends: Option<bool>,
    /// Whether sidecar B lists the hop in front of it (ingress B or the 1-hop egress) in
    /// `trusted_relays`; when it does not, it lists it in `allow`, so it is at least reachable.
    sidecar_trusts: bool,
}

/// The bytes app A writes first: a well-formed PROXY v2 header claiming `FORGED`, with the
/// destination an egress would name, so a reader that takes it for a relay header accepts it.
fn forged_header() -> Vec<u8> {
    let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
    ProxyHeader::proxy(addr, addr)
        .with_tlv(TLV_ORIGIN_ID, FORGED)
        .with_tlv(TLV_AUTHORITY, DEST)
        .encode()
        .unwrap()
}

/// Builds the topology of `case`, sends the forged header and the payload through it, and reports
/// what happened. Every directory and task lives until the function returns.
async fn run(case: Case) -> Run {
    let a = TestCa::new("cluster-a.test");
    let b = TestCa::new("cluster-b.test");
    let bridge = TestCa::new("bridge.test");
    let (app_b, mut seen) = spawn_header_app().await;
    let mut stops = Vec::new();

    // Sidecar B: `FORGED` is allowed too, so only the relay rule keeps the forgery out.
    let front = if case.ingress_sends.is_some() {
        INGRESS
    } else {
        HOP
    };
    let (allow, relays) = if case.sidecar_trusts {
        (
            format!(r#"["{CLIENT}", "{FORGED}"]"#),
            format!(r#"["{front}"]"#),
        )
    } else {
        (
            format!(r#"["{CLIENT}", "{FORGED}", "{front}"]"#),
            "[]".into(),
        )
    };
    let dir_sb = tempfile::tempdir().unwrap();
    write_identity(dir_sb.path(), &b, &b.issue("/ns/demo/sa/echo"), "svid");
    let (sidecar_b, stop) = start_sidecar_listener(
        dir_sb.path(),
        &format!(
            r#"
trust_domain = "cluster-b.test"
[identity]
svid = "svid.pem"
key = "svid.key"
bundle = "svid-bundle.json"
[[inbound]]
name = "echo"
listen = "127.0.0.1:0"
forward = "{app_b}"
allow = {allow}
proxy_protocol = true
trusted_relays = {relays}
"#
        ),
        "echo",
    )
    .await;
    stops.push(stop);

    // Ingress B (2 hops only).
    let dir_b = tempfile::tempdir().unwrap();
    let egress_upstream = match case.ingress_sends {
        Some(ingress_sends) => {
            write_identity(
                dir_b.path(),
                &b,
                &b.issue("/ns/gateway/sa/ingress"),
                "local",
            );
            write_identity(
                dir_b.path(),
                &bridge,
                &bridge.issue("/gateway/cluster-b"),
                "bridge",
            );
            let (ingress, stop) = start_gateway(
                dir_b.path(),
                &format!(
                    r#"{}
[[listeners]]
name = "bridge-in"
kind = "bridge-ingress"
listen = "127.0.0.1:0"
  [[listeners.bridge_peers]]
  id = "spiffe://bridge.test/gateway/cluster-a"
  may_speak_for = ["cluster-a.test"]
  [[listeners.routes]]
  sni = "{DEST}"
  upstreams = ["{sidecar_b}"]
  server_id = ["{ECHO}"]
  allow = ["{CLIENT}", "{FORGED}"]
  send_proxy_header = {ingress_sends}
"#,
                    gateway_head("cluster-b.test", "bridge.test")
                ),
                "bridge-in",
            )
            .await;
            stops.push(stop);
            (ingress, "spiffe://bridge.test/gateway/cluster-b")
        }
        None => (sidecar_b, ECHO),
    };

    // Egress A: to ingress B over the bridge domain, or (1 hop) straight to sidecar B with a
    // cluster-b identity, as the 1-hop bench topology does.
    let dir_a = tempfile::tempdir().unwrap();
    write_identity(dir_a.path(), &a, &a.issue("/ns/gateway/sa/egress"), "local");
    let bridge_td = if case.ingress_sends.is_some() {
        write_identity(
            dir_a.path(),
            &bridge,
            &bridge.issue("/gateway/cluster-a"),
            "bridge",
        );
        "bridge.test"
    } else {
        write_identity(
            dir_a.path(),
            &b,
            &b.issue("/ns/gateway/sa/bridge-hop"),
            "bridge",
        );
        "cluster-b.test"
    };
    let (upstream, peer_id) = egress_upstream;
    let (egress, stop) = start_gateway(
        dir_a.path(),
        &format!(
            r#"{}
[[listeners]]
name = "bridge-out"
kind = "bridge-egress"
listen = "127.0.0.1:0"
  [[listeners.routes]]
  sni = "{DEST}"
  upstreams = ["{upstream}"]
  peer_id = "{peer_id}"
  allow = ["{CLIENT}"]
  send_proxy_header = {}
"#,
            gateway_head("cluster-a.test", bridge_td),
            case.egress_sends
        ),
        "bridge-out",
    )
    .await;
    stops.push(stop);

    // Sidecar A: app A's verified identity is CLIENT.
    let dir_sa = tempfile::tempdir().unwrap();
    write_identity(dir_sa.path(), &a, &a.issue("/ns/demo/sa/client"), "svid");
    let (sidecar_a, stop) = start_sidecar_listener(
        dir_sa.path(),
        &format!(
            r#"
trust_domain = "cluster-a.test"
[identity]
svid = "svid.pem"
key = "svid.key"
bundle = "svid-bundle.json"
[[outbound]]
name = "to-echo-b"
listen = "127.0.0.1:0"
server_name = "{DEST}"
connect = ["{egress}"]
allow = ["{EGRESS}"]
"#
        ),
        "to-echo-b",
    )
    .await;
    stops.push(stop);

    // App A: the forged header, then the payload; everything written must come back, or nothing.
    let mut sent = forged_header();
    sent.extend_from_slice(PAYLOAD);
    let mut app_a = TcpStream::connect(sidecar_a).await.unwrap();
    app_a.write_all(&sent).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let mut forged = false;
    let outcome = loop {
        // A bound for a broken run, not a synchronisation: every case echoes or closes at once,
        // except a garbled one where part of what was sent was eaten as a header.
        let Ok(read) = tokio::time::timeout(Duration::from_secs(10), app_a.read(&mut buf)).await
        else {
            assert!(
                !got.is_empty(),
                "{case:?}: the connection neither echoed nor closed"
            );
            break Outcome::Garbled;
        };
        let n = read.unwrap_or(0);
        if n == 0 {
            break if got.is_empty() {
                Outcome::Refused
            } else {
                Outcome::Garbled
            };
        }
        got.extend_from_slice(&buf[..n]);
        if got.len() >= sent.len() {
            if got != sent {
                break Outcome::Garbled;
            }
            // App B echoes only after it has reported the header, so it is in the channel.
            let header = seen.try_recv().expect("echo without a header at app B");
            forged |= header.tlv(TLV_ORIGIN_ID) == Some(FORGED.as_bytes());
            let origin = header
                .tlv(TLV_ORIGIN_ID)
                .map(|v| String::from_utf8_lossy(v).into_owned());
            break Outcome::Delivered { origin };
        }
    };
    // Whatever else app B saw (a sidecar dials the app once its client is admitted, even if that
    // client then gives up) must not name the forged origin either.
    while let Ok(header) = seen.try_recv() {
        forged |= header.tlv(TLV_ORIGIN_ID) == Some(FORGED.as_bytes());
    }
    for stop in stops {
        stop.cancel();
    }
    Run { outcome, forged }
}

/// Runs every case, then checks first that no case let the forgery through (all of them
/// named), then that each case had its expected outcome.
async fn check(cases: Vec<(Case, Outcome)>) {
    let mut runs = Vec::new();
    for (case, expected) in cases {
        runs.push((case, run(case).await, expected));
    }
    let forged: Vec<_> = runs
        .iter()
        .filter(|(_, r, _)| r.forged)
        .map(|(c, _, _)| c)
        .collect();
    assert!(
        forged.is_empty(),
        "the caller forged its origin in {forged:?}"
    );
    for (case, run, expected) in runs {
        assert_eq!(run.outcome, expected, "{case:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hops_no_combination_of_settings_accepts_a_forged_origin() {
    let mut cases = Vec::new();
    for egress_sends in [true, false] {
        for ingress_sends in [true, false] {
            for sidecar_trusts in [true, false] {
                let case = Case {
                    egress_sends,
                    ingress_sends: Some(ingress_sends),
                    sidecar_trusts,
                };
                // The intended settings must still carry the true origin end to end; the ingress
                // talking to a sidecar that does not trust it is an ordinary client. Every
                // mismatch is refused.
                let expected = match (egress_sends, ingress_sends, sidecar_trusts) {
                    (true, true, true) => Outcome::Delivered {
                        origin: Some(CLIENT.into()),
                    },
                    (true, false, false) => Outcome::Delivered { origin: None },
                    _ => Outcome::Refused,
                };
                cases.push((case, expected));
            }
        }
    }
    check(cases).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_hop_no_combination_of_settings_accepts_a_forged_origin() {
    let mut cases = Vec::new();
    for egress_sends in [true, false] {
        for sidecar_trusts in [true, false] {
            let case = Case {
                egress_sends,
                ingress_sends: None,
                sidecar_trusts,
            };
            let expected = match (egress_sends, sidecar_trusts) {
                (true, true) => Outcome::Delivered {
                    origin: Some(CLIENT.into()),
                },
                (false, false) => Outcome::Delivered { origin: None },
                _ => Outcome::Refused,
            };
            cases.push((case, expected));
        }
    }
    check(cases).await;
}
