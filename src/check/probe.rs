//! The I/O half of `fedgate check`: each probe looks at the live world once and turns what it
//! saw into [`CheckResult`]s.
//!
//! Invariants:
//! * Every network step is bounded by [`Timeouts`]: a peer that accepts and never answers
//!   costs at most `request` (plus one second of slack), never a hang.
//! * Probes never write: the last-known-good store is only read, and only if `state_dir`
//!   already exists (opening a missing one would create it).
//! * A probe never panics on what it reads (files, peers' answers); every problem is a result.
//! * Peers, and routes with their upstreams, are probed concurrently; results keep the config's
//!   order, so the output is deterministic.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fedgate_federation::endpoint::{fetch, FetchOptions, FetchOutcome, Profile, Relationship};
use fedgate_federation::store::{Store, StoredBundle};
use fedgate_federation::tls::{Authorizer, SpiffeServerVerifier};
use fedgate_federation::{error_chain, Bundle, BundleSet, SpiffeId, X509Svid};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::report::{classify, classify_svid, short, CheckResult};
use crate::config::{BridgeConfig, BridgeIdentity, Config, ListenerMode, PeerConfig};

/// Warn when a peer's trust expires within this.
pub const TRUST_WARN: Duration = Duration::from_secs(7 * 86_400);

/// Bounds of the network steps.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// TCP connect, TLS handshake, and an idle read.
    pub connect: Duration,
    /// A whole request (bundle fetch, Workload API answer, `/readyz`).
    pub request: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(3),
            request: Duration::from_secs(5),
        }
    }
}

/// Check 1: the config file. `Err` is the one failed result that ends the run.
pub fn config(path: &Path) -> Result<(Config, CheckResult), CheckResult> {
    match Config::load(path) {
        Ok(c) => {
            let detail = format!("{} ({})", path.display(), c.summary());
            Ok((c, CheckResult::ok("config", detail)))
        }
        Err(e) => Err(CheckResult::fail(
            "config",
            e.to_string(),
            format!(
                "fix the config; `fedgate config check {}` shows the same error",
                path.display()
            ),
        )),
    }
}

/// Check 2: the local SVID (from `[identity]` files or the Workload API), if there is one.
pub async fn local_svid(config: &Config, t: Timeouts) -> Vec<CheckResult> {
    const NAME: &str = "local SVID";
    if let Some(id) = &config.identity {
        let svid = match X509Svid::load(&id.svid, &id.key) {
            Ok(s) => s,
            Err(e) => {
                return vec![CheckResult::fail(
                    NAME,
                    format!("cannot load {}: {}", id.svid.display(), error_chain(&e)),
                    "check the [identity] svid and key files (PEM chain, leaf first, and its key)",
                )]
            }
        };
        let bundle = match Bundle::load(&config.trust_domain, &id.bundle) {
            Ok((b, _)) => b,
            Err(e) => {
                return vec![CheckResult::fail(
                    NAME,
                    format!("cannot load {}: {}", id.bundle.display(), error_chain(&e)),
                    "check the [identity] bundle file (SPIFFE bundle JSON of the local domain)",
                )]
            }
        };
        return svid_results(&svid, &bundle, "the [identity] files");
    }
    if let Some(socket) = &config.identity_socket {
        let got = tokio::time::timeout(t.request, async {
            let mut stream = crate::identity::workload_api::fetch_x509_stream(socket)
                .await
                .map_err(|e| error_chain(&e))?;
            let first = stream
                .message()
                .await
                .map_err(|s| s.to_string())?
                .ok_or_else(|| "the stream ended without an answer".to_owned())?;
            crate::identity::workload_api::identity_from_response(&first, &config.trust_domain)
                .map_err(|e| error_chain(&e))
        })
        .await;
        return match got {
            Ok(Ok(identity)) => svid_results(
                &identity.svid,
                &identity.bundle,
                "the Workload API bundle",
            ),
            Ok(Err(e)) => vec![CheckResult::fail(
                NAME,
                format!("Workload API {}: {e}", socket.display()),
                "is the SPIFFE agent running, and does it have an entry for this gateway?",
            )],
            Err(_) => vec![CheckResult::fail(
                NAME,
                format!(
                    "Workload API {}: no SVID within {}",
                    socket.display(),
                    short(t.request)
                ),
                "the agent accepted but sent no SVID: check its registration entries for this gateway",
            )],
        };
    }
    Vec::new()
}

/// Chain verification and expiry of an SVID against the local bundle.
fn svid_results(svid: &X509Svid, bundle: &Bundle, bundle_what: &str) -> Vec<CheckResult> {
    svid_results_named("local SVID", svid, bundle, bundle_what)
}

/// [`svid_results`] named `name` and `name expiry`.
fn svid_results_named(
    name: &str,
    svid: &X509Svid,
    bundle: &Bundle,
    bundle_what: &str,
) -> Vec<CheckResult> {
    let expiry_name = format!("{name} expiry");
    let now = SystemTime::now();
    let Some(leaf) = svid.chain().first() else {
        return vec![CheckResult::fail(
            name,
            "the SVID chain is empty",
            "check the SVID",
        )];
    };
    let Some((not_before, not_after)) = validity(leaf) else {
        return vec![CheckResult::fail(
            name,
            "the leaf certificate does not parse",
            "check the SVID",
        )];
    };
    let expiry = classify_svid(not_before, not_after, now);
    let expiry_result = CheckResult::from_expiry(
        expiry_name,
        &format!("{}", svid.id()),
        expiry,
        "renew the SVID (the SVID source should rotate it before the last third of its lifetime)",
    );
    // An expired leaf never verifies: report the expiry alone, it says why.
    if expiry_result.status == super::report::Status::Fail {
        return vec![expiry_result];
    }
    let chain = match fedgate_federation::svid::verify::verify(svid.chain(), bundle, UnixTime::now())
    {
        Ok(v) => CheckResult::ok(
            name,
            format!("{} verifies against {bundle_what}", v.id()),
        ),
        Err(e) => CheckResult::fail(
            name,
            format!("{} does not verify against {bundle_what}: {}", svid.id(), error_chain(&e)),
            format!("the SVID must be issued by an authority in {bundle_what}; update the bundle or re-issue the SVID"),
        ),
    };
    vec![chain, expiry_result]
}

/// `notBefore` and `notAfter` of a certificate.
fn validity(der: &CertificateDer<'_>) -> Option<(SystemTime, SystemTime)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let at = |ts: i64| {
        u64::try_from(ts)
            .ok()
            .map(|s| UNIX_EPOCH + Duration::from_secs(s))
    };
    Some((
        at(cert.validity().not_before.timestamp())?,
        at(cert.validity().not_after.timestamp())?,
    ))
}

/// Check 3: every federation peer.
pub async fn peers(config: &Config, t: Timeouts) -> Vec<CheckResult> {
    let Some(fed) = &config.federation else {
        return Vec::new();
    };
    // Only an existing store is read: opening a missing one would create it.
    let store = fed
        .state_dir
        .as_ref()
        .filter(|d| d.is_dir())
        .and_then(|d| Store::open(d).ok());
    // Peers are probed concurrently; results keep the config's order.
    let probes = fed
        .peers
        .iter()
        .map(|p| peer(p, fed.state_dir.is_some(), store.as_ref(), t));
    futures_util::future::join_all(probes)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// `state_dir`: whether the config has one (`store` is `None` when it does not exist yet).
async fn peer(
    p: &PeerConfig,
    state_dir: bool,
    store: Option<&Store>,
    t: Timeouts,
) -> Vec<CheckResult> {
    let td = &p.trust_domain;
    let name = format!("peer {td}");
    let rel = match crate::app::federation::peer(p) {
        Ok(peer) => peer.relationship,
        Err(e) => {
            return vec![CheckResult::fail(
                name,
                error_chain(&e),
                "fix the peer's bootstrap_bundle or ca file",
            )]
        }
    };
    let mut out = Vec::new();
    let stored: Option<StoredBundle> = match store.map(|s| s.load(td)) {
        Some(Ok(s)) => s,
        Some(Err(e)) => {
            out.push(CheckResult::warn(
                format!("{name} last-known-good"),
                error_chain(&e),
                "the stored bundle is unreadable; the gateway ignores it and fetches afresh",
            ));
            None
        }
        None => None,
    };
    let opts = FetchOptions {
        connect_timeout: t.connect,
        timeout: t.request,
        read_idle_timeout: t.connect,
        ..FetchOptions::default()
    };
    let current = stored.as_ref().map(|s| &s.bundle);
    let fetched = tokio::time::timeout(
        t.request + Duration::from_secs(1),
        fetch(&rel, current, &opts),
    )
    .await;
    let bundle = match fetched {
        Ok(Ok(FetchOutcome::Updated { bundle, .. })) => {
            out.push(CheckResult::ok(
                name.clone(),
                format!(
                    "{} {}: fetched sequence {}, {} X.509 authorities",
                    rel.url,
                    pin_text(&rel),
                    seq_text(bundle.sequence()),
                    bundle.x509_authorities().len()
                ),
            ));
            Some(bundle)
        }
        Ok(Ok(_)) => {
            out.push(CheckResult::ok(
                name.clone(),
                format!("{} {}: not modified", rel.url, pin_text(&rel)),
            ));
            None
        }
        Ok(Err(e)) => {
            let mut detail = format!("{} ({})", error_chain(&e), e.reason_label());
            if e.reason_label() == "tls" {
                if let Some(seen) = presented_id(&rel, t).await {
                    detail = format!("{seen}; {detail}");
                }
            }
            out.push(CheckResult::fail(
                name.clone(),
                detail,
                fetch_hint(&rel, e.reason_label()),
            ));
            None
        }
        Err(_) => {
            out.push(CheckResult::fail(
                name.clone(),
                format!("{}: no answer within {}", rel.url, short(t.request)),
                fetch_hint(&rel, "timeout"),
            ));
            None
        }
    };
    if let (Some(b), true) = (&bundle, state_dir) {
        out.push(sequence_result(&name, b, stored.as_ref()));
    }
    let (trust_bundle, source) = match (&bundle, &stored) {
        (Some(b), _) => (Some(b), "fetched bundle"),
        (None, Some(s)) => (Some(&s.bundle), "last-known-good bundle"),
        (None, None) => (None, ""),
    };
    if let Some(b) = trust_bundle {
        out.push(trust_result(&name, b, source, SystemTime::now()));
    }
    out
}

/// For an https_spiffe endpoint whose certificate was refused: which SPIFFE ID it presents,
/// and whether that is the pinned one (then its chain is what failed). `None` when the
/// endpoint cannot be reached again or presents no certificate.
async fn presented_id(rel: &Relationship, t: Timeouts) -> Option<String> {
    let Profile::HttpsSpiffe { endpoint_id, .. } = &rel.profile else {
        return None;
    };
    let host = rel
        .url
        .host_str()?
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = rel.url.port_or_known_default()?;
    let name = ServerName::try_from(host.to_owned()).ok()?;
    let tcp = connect(host, port, t.connect).await.ok()?;
    let leaf = fedgate_federation::tls::peek::peek_leaf(tcp, name, t.connect).await?;
    Some(
        match fedgate_federation::svid::verify::spiffe_id_of(&leaf) {
            Ok(id) if &id == endpoint_id => format!(
            "the endpoint presents {id} (the pinned endpoint_id), but its chain does not verify \
             against the bootstrap bundle"
        ),
            Ok(id) => {
                format!("the endpoint presents {id}, not the pinned endpoint_id {endpoint_id}")
            }
            Err(e) => format!("the endpoint presents no SPIFFE ID ({e})"),
        },
    )
}

fn pin_text(rel: &Relationship) -> String {
    match &rel.profile {
        Profile::HttpsSpiffe { endpoint_id, .. } => format!("presents {endpoint_id}"),
        _ => format!("({})", rel.profile.name()),
    }
}

fn seq_text(s: Option<u64>) -> String {
    s.map_or_else(|| "none".to_owned(), |s| s.to_string())
}

fn fetch_hint(rel: &Relationship, reason: &str) -> String {
    let url = &rel.url;
    match (reason, &rel.profile) {
        ("timeout", _) => format!(
            "{url} accepted but did not answer in time; check that it is the peer's bundle \
             endpoint and that the peer is healthy"
        ),
        ("connect", _) => format!(
            "cannot connect to {url}; check the URL, DNS and firewalls, and that the peer's \
             bundle endpoint is up"
        ),
        ("tls", Profile::HttpsSpiffe { endpoint_id, .. }) => format!(
            "the endpoint must present an X509-SVID for exactly {endpoint_id}, issued by an \
             authority of its bootstrap_bundle; compare endpoint_id and bootstrap_bundle with \
             the peer's [federation.serve]"
        ),
        ("tls", _) => {
            "the endpoint's certificate must chain to the peer's `ca` (or the system roots) \
             and match the URL host"
                .to_owned()
        }
        ("rollback", _) => {
            "the endpoint serves an older bundle than the last-known-good in state_dir; ask \
             the peer whether it rolled back, or remove the stored file if it was rebuilt"
                .to_owned()
        }
        _ => format!(
            "`fedgate bundle fetch --trust-domain {} --url {url} ...` reproduces this fetch",
            rel.trust_domain
        ),
    }
}

/// The fetched bundle's sequence against the last-known-good store.
fn sequence_result(name: &str, fetched: &Bundle, stored: Option<&StoredBundle>) -> CheckResult {
    let name = format!("{name} sequence");
    let f = fetched.sequence();
    match stored {
        None => CheckResult::ok(
            name,
            format!(
                "no last-known-good stored yet; the gateway will store sequence {}",
                seq_text(f)
            ),
        ),
        Some(s) => {
            let s_seq = s.bundle.sequence();
            match (f, s_seq) {
                (Some(f), Some(s)) if f < s => CheckResult::fail(
                    name,
                    format!("fetched sequence {f} is older than the last-known-good {s}"),
                    "the gateway refuses rolled-back bundles; ask the peer whether it rolled back",
                ),
                (Some(f), Some(s)) if f > s => CheckResult::ok(
                    name,
                    format!("fetched sequence {f} is newer than the last-known-good {s}; the gateway takes it on its next refresh"),
                ),
                _ if fetched.same_authorities(&s.bundle) => CheckResult::ok(
                    name,
                    format!("same as the last-known-good (sequence {})", seq_text(s_seq)),
                ),
                _ => CheckResult::ok(
                    name,
                    format!(
                        "fetched sequence {}, last-known-good {}; authorities differ",
                        seq_text(f),
                        seq_text(s_seq)
                    ),
                ),
            }
        }
    }
}

/// Time until the peer's trust is lost: when the last X.509 authority expires.
pub fn trust_result(name: &str, bundle: &Bundle, source: &str, now: SystemTime) -> CheckResult {
    let name = format!("{name} trust");
    match bundle.trust_expires_at() {
        None => CheckResult::warn(
            name,
            format!("the {source} has no X.509 authority"),
            "no SVID of this peer can be verified; ask the peer to publish its X.509 authorities",
        ),
        Some(at) => CheckResult::from_expiry(
            name,
            &format!("the {source}'s last authority"),
            classify(at, now, TRUST_WARN),
            "the peer must publish rotated authorities before then, or its SVIDs are refused",
        ),
    }
}

/// Check 4: every route's upstreams accept a TCP connection.
pub async fn upstreams(config: &Config, t: Timeouts) -> Vec<CheckResult> {
    let mut probes = Vec::new();
    for l in &config.listeners {
        for route in l.routes() {
            probes.push(route_upstreams(
                format!("route {}/{}", l.name, route.name),
                route.upstreams,
                t,
            ));
        }
    }
    // Routes and their upstreams are probed concurrently; results keep the config's order.
    futures_util::future::join_all(probes).await
}

async fn route_upstreams(
    name: String,
    upstreams: &[fedgate_dataplane::upstreams::Endpoint],
    t: Timeouts,
) -> CheckResult {
    let tries = upstreams.iter().map(|ep| async move {
        connect(&ep.host, ep.port, t.connect)
            .await
            .err()
            .map(|e| format!("{}:{} ({e})", ep.host, ep.port))
    });
    let down: Vec<String> = futures_util::future::join_all(tries)
        .await
        .into_iter()
        .flatten()
        .collect();
    if down.is_empty() {
        CheckResult::ok(name, format!("{} upstream(s) reachable", upstreams.len()))
    } else {
        CheckResult::fail(
            name,
            format!("unreachable: {}", down.join(", ")),
            "check that the upstream runs and listens there, and firewalls between",
        )
    }
}

async fn connect(host: &str, port: u16, timeout: Duration) -> Result<TcpStream, String> {
    match tokio::time::timeout(timeout, TcpStream::connect((host, port))).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no connection within {}", short(timeout))),
    }
}

/// Check 5: for every bridge-egress route, an mTLS handshake with the bridge SVID to each
/// upstream, which must present exactly the route's `peer_id`.
pub async fn bridges(config: &Config, t: Timeouts) -> Vec<CheckResult> {
    let mut out = Vec::new();
    // The bridge SVID itself: its chain against the bridge bundle, and its expiry.
    if let Some(bridge) = &config.bridge {
        if let Ok((svid, bundle)) = bridge_material(bridge) {
            out.extend(svid_results_named(
                "bridge SVID",
                &svid,
                &bundle,
                "the [bridge] bundle",
            ));
        }
    }
    for l in &config.listeners {
        let ListenerMode::BridgeEgress { routes } = &l.mode else {
            continue;
        };
        let Some(bridge) = &config.bridge else {
            continue;
        };
        let material = bridge_material(bridge);
        for route in routes {
            let name = format!("bridge {}/{}", l.name, route.name);
            let (svid, bundle) = match &material {
                Ok(m) => m,
                Err(r) => {
                    let mut r = r.clone();
                    r.name = name;
                    out.push(r);
                    continue;
                }
            };
            let peer_id = &route.bridge.peer_id;
            let sni = route.sni.replace('*', "fedgate-check");
            let mut bad = Vec::new();
            for ep in &route.upstreams {
                let addr = format!("{}:{}", ep.host, ep.port);
                if let Err(e) = handshake(
                    svid,
                    bundle,
                    peer_id,
                    route.bridge.send_proxy_header,
                    &sni,
                    ep,
                    t,
                )
                .await
                {
                    bad.push(format!("{addr}: {e}"));
                }
            }
            out.push(if bad.is_empty() {
                CheckResult::ok(
                    name,
                    format!(
                        "mTLS with {} upstream(s) presenting {peer_id}",
                        route.upstreams.len()
                    ),
                )
            } else {
                CheckResult::fail(
                    name,
                    bad.join("; "),
                    format!(
                        "the peer's bridge-ingress must present an SVID for exactly {peer_id} \
                         from the bridge CA, and accept this gateway's bridge SVID; compare \
                         peer_id and [bridge] bundle with the peer's bridge identity"
                    ),
                )
            });
        }
    }
    out
}

/// The bridge SVID and bundle, or the result explaining why they are not usable.
fn bridge_material(bridge: &BridgeConfig) -> Result<(X509Svid, Bundle), CheckResult> {
    let svid = match &bridge.identity {
        BridgeIdentity::Files { svid, key } => X509Svid::load(svid, key).map_err(|e| {
            CheckResult::fail(
                "bridge",
                format!(
                    "cannot load the bridge SVID {}: {}",
                    svid.display(),
                    error_chain(&e)
                ),
                "check the [bridge] svid and key files",
            )
        })?,
        // The issuer's client keeps its current SVID in `out_dir` (if set): use that one.
        BridgeIdentity::Issuer(settings) => {
            let saved = settings.out_dir.as_ref().and_then(|dir| {
                let (pem, key) = (dir.join(crate::ca::SVID_PEM), dir.join(crate::ca::SVID_KEY));
                X509Svid::load(&pem, &key).ok()
            });
            match saved {
                Some(svid) => svid,
                None => {
                    return Err(CheckResult::warn(
                        "bridge",
                        "skipped: the bridge SVID comes from [bridge.issuer] and no saved one is \
                         in out_dir; only the running gateway holds it",
                        "see the bridge SVID in the running gateway's /status, or set \
                         [bridge.issuer] out_dir",
                    ));
                }
            }
        }
    };
    let (bundle, _) = Bundle::load(&bridge.trust_domain, &bridge.bundle).map_err(|e| {
        CheckResult::fail(
            "bridge",
            format!(
                "cannot load the bridge bundle {}: {}",
                bridge.bundle.display(),
                error_chain(&e)
            ),
            "check the [bridge] bundle file",
        )
    })?;
    Ok((svid, bundle))
}

async fn handshake(
    svid: &X509Svid,
    bundle: &Bundle,
    peer_id: &SpiffeId,
    relay: bool,
    sni: &str,
    ep: &fedgate_dataplane::upstreams::Endpoint,
    t: Timeouts,
) -> Result<(), String> {
    // The same verifier as the bridge's own client config (crate::bridge::tls).
    let verifier = SpiffeServerVerifier::new(
        BundleSet::new().with(bundle.clone()),
        Authorizer::exact(peer_id.clone()),
    );
    let mut config = fedgate_federation::tls::client_config(Some(svid), Arc::new(verifier))
        .map_err(|e| format!("cannot build the TLS client: {e}"))?;
    config.alpn_protocols = fedgate_dataplane::relay::alpn_offer(relay);
    let name = ServerName::try_from(sni.to_owned())
        .map_err(|_| format!("{sni:?} is not a TLS server name"))?;
    let tcp = connect(&ep.host, ep.port, t.connect).await?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    match tokio::time::timeout(t.connect, connector.connect(name, tcp)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("handshake refused: {e}")),
        Err(_) => Err(format!("no handshake within {}", short(t.connect))),
    }
}

/// Check 6: the running gateway's `/readyz` at `[admin] listen`.
pub async fn admin(config: &Config, t: Timeouts) -> CheckResult {
    const NAME: &str = "admin /readyz";
    let mut addr = config.admin.listen;
    if addr.port() == 0 {
        return CheckResult::warn(
            NAME,
            "[admin] listen has port 0: the running gateway's admin port is unknown",
            "set a fixed port in [admin] listen to let `fedgate check` reach it",
        );
    }
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    match tokio::time::timeout(t.request, get(addr, "/readyz", t.connect)).await {
        Ok(Ok((200, _))) => CheckResult::ok(NAME, format!("http://{addr}/readyz: ready")),
        Ok(Ok((code, body))) => CheckResult::fail(
            NAME,
            format!("http://{addr}/readyz: HTTP {code}: {}", body.trim()),
            "the gateway runs but is not ready; see /status on the admin listener",
        ),
        Ok(Err(e)) => CheckResult::warn(
            NAME,
            format!("http://{addr}/readyz: {e}"),
            "is `fedgate run` running?",
        ),
        Err(_) => CheckResult::warn(
            NAME,
            format!(
                "http://{addr}/readyz: no answer within {}",
                short(t.request)
            ),
            "is `fedgate run` running? something accepts on that address but does not answer",
        ),
    }
}

/// A minimal HTTP/1.1 GET: status code and body (at most 64 KiB read).
async fn get(
    addr: SocketAddr,
    path: &str,
    connect_timeout: Duration,
) -> Result<(u16, String), String> {
    let mut s = connect(&addr.ip().to_string(), addr.port(), connect_timeout).await?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    (&mut s)
        .take(64 * 1024)
        .read_to_end(&mut buf)
        .await
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&buf);
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| "not an HTTP answer".to_owned())?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Ok((code, body.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Status;
    use fedgate_federation::TrustDomain;

    const DAY: Duration = Duration::from_secs(86_400);

    fn td() -> TrustDomain {
        TrustDomain::new("peer.test").unwrap()
    }

    /// A bundle with one self-signed authority valid until `not_after`, and `seq`.
    fn bundle(not_after: SystemTime, seq: Option<u64>) -> Bundle {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(30);
        params.not_after = time::OffsetDateTime::from(not_after);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let mut b = Bundle::new(td());
        b.add_x509_authority(cert.der().clone());
        b.set_sequence(seq);
        b
    }

    fn stored(b: Bundle) -> StoredBundle {
        StoredBundle {
            bundle: b,
            origin: fedgate_federation::store::Origin {
                url: "https://peer.test/".to_owned(),
                profile: None,
                endpoint_id: None,
            },
            fetched_at: SystemTime::now(),
        }
    }

    #[test]
    fn trust_expiry_warns_within_a_week_and_fails_once_expired() {
        let now = SystemTime::now();
        let r = trust_result(
            "peer peer.test",
            &bundle(now + 30 * DAY, None),
            "fetched bundle",
            now,
        );
        assert_eq!(
            (r.name.as_str(), r.status),
            ("peer peer.test trust", Status::Ok)
        );
        let r = trust_result("p", &bundle(now + 3 * DAY, None), "fetched bundle", now);
        assert_eq!(r.status, Status::Warn, "{r:?}");
        assert!(r.detail.contains("expires in 2d 23h"), "{r:?}");
        let r = trust_result("p", &bundle(now - DAY, None), "fetched bundle", now);
        assert_eq!(r.status, Status::Fail, "{r:?}");
        let r = trust_result("p", &Bundle::new(td()), "fetched bundle", now);
        assert_eq!(r.status, Status::Warn, "{r:?}");
        assert!(r.hint.is_some());
    }

    #[test]
    fn sequence_against_the_last_known_good() {
        let later = SystemTime::now() + 30 * DAY;
        let fetched = bundle(later, Some(5));
        let r = sequence_result("p", &fetched, None);
        assert_eq!(r.status, Status::Ok);
        assert!(r.detail.contains("no last-known-good"), "{r:?}");
        let r = sequence_result("p", &fetched, Some(&stored(bundle(later, Some(7)))));
        assert_eq!(r.status, Status::Fail, "{r:?}");
        let r = sequence_result("p", &fetched, Some(&stored(bundle(later, Some(3)))));
        assert_eq!(r.status, Status::Ok, "{r:?}");
        assert!(r.detail.contains("newer"), "{r:?}");
        let r = sequence_result("p", &fetched, Some(&stored(fetched.clone())));
        assert_eq!(r.status, Status::Ok, "{r:?}");
        assert!(r.detail.contains("same as the last-known-good"), "{r:?}");
    }
}
