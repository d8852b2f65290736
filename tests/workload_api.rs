//! The SPIFFE Workload API end to end on a Unix socket in a temporary directory: `fedgate
//! agent`'s server (`fedgate::workload`) and the Workload API identity source
//! (`fedgate::identity::workload_api`) as its client.
//!
//! Every wait on a change is a wait on the stream (or the identity's `watch`), bounded by a
//! generous timeout that only turns a hang into a failure; no test sleeps to let time pass.
// Test code: a failed unwrap is a test failure with a backtrace, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use fedgate::ca::{Ca, InitOptions};
use fedgate::config::entries::{Entries, Entry, Selector};
use fedgate::identity::workload_api::{self, ClientError, WorkloadApiSource};
use fedgate::workload::agent::{Agent, AgentError, AgentSettings};
use fedgate::workload::convert::{split_der, trust_domain_of_key};
use fedgate::workload::mint::MintConfig;
use fedgate::workload::proto::spiffe_workload_api_client::SpiffeWorkloadApiClient;
use fedgate::workload::proto::*;
use fedgate::workload::server::BindError;
use fedgate_dataplane::backoff::Backoff;
use fedgate_federation::distribute::bundle_map_json;
use fedgate_federation::{Bundle, BundleSet, SpiffeId, TrustDomain};
use tokio_util::sync::CancellationToken;
use tonic::{Code, Streaming};

/// Bounds every wait for something that must happen (a hang becomes a failure, not a sleep).
const WAIT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(50);
const APP_ID: &str = "spiffe://cluster-a.test/app";

fn td(name: &str) -> TrustDomain {
    TrustDomain::new(name).unwrap()
}

fn new_ca(name: &str) -> Ca {
    let opts = InitOptions {
        ttl: Duration::from_secs(24 * 3600),
        refresh_hint: None,
        intermediate: false,
    };
    Ca::init(&td(name), &opts).unwrap()
}

/// This process's uid and gid, read from a file it just created (no libc needed).
fn my_uid_gid(dir: &Path) -> (u32, u32) {
    let probe = dir.join("uid-probe");
    std::fs::write(&probe, b"").unwrap();
    let meta = std::fs::metadata(&probe).unwrap();
    (meta.uid(), meta.gid())
}

/// A CA directory for cluster-a.test, a federated bundle map with cluster-b.test, and an
/// agent whose one entry needs `selectors`.
struct Fixture {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    socket: PathBuf,
    ca_dir: PathBuf,
    map: PathBuf,
    peer: Ca,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Fixture {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let ca_dir = dir.join("ca");
        new_ca("cluster-a.test").save(&ca_dir).unwrap();
        let peer = new_ca("cluster-b.test");
        let map = dir.join("federated.json");
        write_map(&map, &[peer.bundle().clone()]);
        Fixture {
            socket: dir.join("agent.sock"),
            _dir: tmp,
            dir,
            ca_dir,
            map,
            peer,
            shutdown: CancellationToken::new(),
            task: None,
        }
    }

    fn settings(&self, selectors: &[Selector]) -> AgentSettings {
        let entries = Entries::new(
            td("cluster-a.test"),
            vec![Entry {
                spiffe_id: SpiffeId::parse(APP_ID).unwrap(),
                selectors: selectors.iter().cloned().collect(),
            }],
        )
        .unwrap();
        AgentSettings {
            socket: self.socket.clone(),
            mint: MintConfig {
                trust_domain: td("cluster-a.test"),
                ca_dir: self.ca_dir.clone(),
                federated_bundles: Some(self.map.clone()),
                svid_ttl: Duration::from_secs(3600),
            },
            entries: Arc::new(entries),
            poll_interval: POLL,
        }
    }

    /// Starts an agent whose entry matches this process (its uid and gid).
    fn start_matching(&mut self) {
        let (uid, gid) = my_uid_gid(&self.dir);
        self.start(&[Selector::Uid(uid), Selector::Gid(gid)]);
    }

    fn start(&mut self, selectors: &[Selector]) {
        let agent = Agent::start(self.settings(selectors)).unwrap();
        let shutdown = self.shutdown.clone();
        self.task = Some(tokio::spawn(async move {
            agent.run(shutdown).await.unwrap();
        }));
    }

    async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(WAIT, task)
                .await
                .expect("the agent stops at shutdown, streams included")
                .unwrap();
        }
        assert!(!self.socket.exists(), "the socket is removed at shutdown");
    }
}

fn write_map(path: &Path, bundles: &[Bundle]) {
    let set = BundleSet::from_bundles(bundles.iter().cloned()).unwrap();
    // Through a rename, as the gateway distributes it: the watch never sees half a file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bundle_map_json(&set)).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

async fn next<T>(stream: &mut Streaming<T>) -> T {
    tokio::time::timeout(WAIT, stream.message())
        .await
        .expect("a stream message in time")
        .expect("no stream error")
        .expect("the stream stays open")
}

fn keys<V>(map: &std::collections::HashMap<String, V>) -> Vec<String> {
    let mut keys: Vec<String> = map.keys().cloned().collect();
    keys.sort();
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetches_the_svid_and_bundles_per_trust_domain() {
    let mut fx = Fixture::new();
    fx.start_matching();
    let mut client = workload_api::connect(&fx.socket).await.unwrap();

    let mut svids = client
        .fetch_x509svid(X509svidRequest {})
        .await
        .unwrap()
        .into_inner();
    let first = next(&mut svids).await;
    assert_eq!(first.svids.len(), 1);
    let svid = &first.svids[0];
    assert_eq!(svid.spiffe_id, APP_ID);
    let ca = Ca::load(&fx.ca_dir).unwrap();
    assert_eq!(
        split_der(&svid.bundle, "bundle").unwrap(),
        ca.bundle().x509_authorities()
    );
    assert_eq!(keys(&first.federated_bundles), ["spiffe://cluster-b.test"]);
    assert_eq!(
        split_der(&first.federated_bundles["spiffe://cluster-b.test"], "b").unwrap(),
        fx.peer.bundle().x509_authorities()
    );
    // The SVID validates against the served bundle of its own trust domain only.
    let identity = workload_api::identity_from_response(&first, &td("cluster-a.test")).unwrap();
    fedgate_federation::svid::verify::verify(
        identity.svid.chain(),
        &identity.bundles,
        rustls_pki_types::UnixTime::now(),
    )
    .unwrap();

    // basicConstraints is critical and DER: cA FALSE is a DEFAULT, so it is left out (strict
    // parsers such as py-spiffe's reject an explicit FALSE).
    let (_, leaf) = x509_parser::parse_x509_certificate(identity.svid.chain()[0].as_ref()).unwrap();
    let bc = leaf
        .extensions()
        .iter()
        .find(|e| e.oid == x509_parser::oid_registry::OID_X509_EXT_BASIC_CONSTRAINTS)
        .expect("basicConstraints present");
    assert!(bc.critical);
    assert_eq!(bc.value, [0x30, 0x00]);

    let mut bundles = client
        .fetch_x509_bundles(X509BundlesRequest {})
        .await
        .unwrap()
        .into_inner();
    let b = next(&mut bundles).await;
    assert_eq!(
        keys(&b.bundles),
        ["spiffe://cluster-a.test", "spiffe://cluster-b.test"]
    );
    for (key, der) in &b.bundles {
        let expected = if trust_domain_of_key(key).unwrap() == td("cluster-a.test") {
            ca.bundle().x509_authorities().to_vec()
        } else {
            fx.peer.bundle().x509_authorities().to_vec()
        };
        assert_eq!(
            split_der(der, key).unwrap(),
            expected,
            "{key}: never merged"
        );
    }

    let mut jwt = client
        .fetch_jwt_bundles(JwtBundlesRequest {})
        .await
        .unwrap()
        .into_inner();
    let j = next(&mut jwt).await;
    assert_eq!(
        keys(&j.bundles),
        ["spiffe://cluster-a.test", "spiffe://cluster-b.test"]
    );
    for doc in j.bundles.values() {
        let v: serde_json::Value = serde_json::from_slice(doc).unwrap();
        assert!(v["keys"].is_array(), "a JWKS document: {v}");
    }

    drop((svids, bundles, jwt, client));
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_send_again_when_a_bundle_or_the_ca_changes() {
    let mut fx = Fixture::new();
    fx.start_matching();
    let mut client = workload_api::connect(&fx.socket).await.unwrap();
    let mut svids = client
        .fetch_x509svid(X509svidRequest {})
        .await
        .unwrap()
        .into_inner();
    let mut bundles = client
        .fetch_x509_bundles(X509BundlesRequest {})
        .await
        .unwrap()
        .into_inner();
    let first = next(&mut svids).await;
    let first_bundles = next(&mut bundles).await;

    // The peer trust domain rotates its CA; the gateway distributes the new map.
    let mut peer = fx.peer.clone_for_test();
    peer.rotate().unwrap();
    write_map(&fx.map, &[peer.bundle().clone()]);
    let second = next(&mut svids).await;
    assert_eq!(
        split_der(&second.federated_bundles["spiffe://cluster-b.test"], "b").unwrap(),
        peer.bundle().x509_authorities(),
        "the new peer bundle is streamed"
    );
    assert_eq!(
        second.svids[0].x509_svid, first.svids[0].x509_svid,
        "same SVID"
    );
    let second_bundles = next(&mut bundles).await;
    assert_ne!(second_bundles, first_bundles);

    // The local CA rotates: the SVID is re-minted from the new CA and the bundle follows.
    let mut ca = Ca::load(&fx.ca_dir).unwrap();
    ca.rotate().unwrap();
    ca.save(&fx.ca_dir).unwrap();
    let third = loop {
        // A CA directory is several files: a poll may see a version between two writes (it
        // is refused and the next stable version is taken). Wait for the rotated bundle.
        let m = next(&mut svids).await;
        if split_der(&m.svids[0].bundle, "bundle").unwrap() == ca.bundle().x509_authorities() {
            break m;
        }
    };
    assert_ne!(
        third.svids[0].x509_svid, first.svids[0].x509_svid,
        "re-minted"
    );
    let identity = workload_api::identity_from_response(&third, &td("cluster-a.test")).unwrap();
    let leaf = &identity.svid.chain()[0];
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).unwrap();
    let (_, root) = x509_parser::parse_x509_certificate(ca.root().as_ref()).unwrap();
    assert_eq!(cert.issuer(), root.subject(), "minted by the rotated CA");

    drop((svids, bundles, client));
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_identity_source_follows_the_stream() {
    let mut fx = Fixture::new();
    fx.start_matching();
    let (source, mut rx) = WorkloadApiSource::start(&fx.socket, &td("cluster-a.test"), WAIT)
        .await
        .unwrap();
    let stats = source.stats();
    {
        let identity = rx.borrow_and_update();
        assert_eq!(identity.svid.id().to_string(), APP_ID);
        assert_eq!(identity.bundles.len(), 2);
    }
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(source.run(shutdown.clone()));

    let mut peer = fx.peer.clone_for_test();
    peer.rotate().unwrap();
    write_map(&fx.map, &[peer.bundle().clone()]);
    tokio::time::timeout(WAIT, rx.changed())
        .await
        .unwrap()
        .unwrap();
    let b = td("cluster-b.test");
    assert_eq!(
        rx.borrow().bundles.get(&b).unwrap().x509_authorities(),
        peer.bundle().x509_authorities()
    );
    assert_eq!(stats.updates.load(Ordering::Relaxed), 2);
    assert_eq!(stats.rejected.load(Ordering::Relaxed), 0);

    shutdown.cancel();
    tokio::time::timeout(WAIT, task).await.unwrap().unwrap();
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_without_the_security_header_is_invalid_argument() {
    let mut fx = Fixture::new();
    fx.start_matching();
    let channel = workload_api::channel(&fx.socket).await.unwrap();
    let mut bare = SpiffeWorkloadApiClient::new(channel);
    let err = bare.fetch_x509svid(X509svidRequest {}).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("security header"), "{err:?}");
    for code in [
        bare.fetch_x509_bundles(X509BundlesRequest {})
            .await
            .unwrap_err()
            .code(),
        bare.fetch_jwt_bundles(JwtBundlesRequest {})
            .await
            .unwrap_err()
            .code(),
        bare.validate_jwtsvid(ValidateJwtsvidRequest::default())
            .await
            .unwrap_err()
            .code(),
    ] {
        assert_eq!(code, Code::InvalidArgument);
    }
    drop(bare);
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_matches_no_entry_is_permission_denied() {
    let mut fx = Fixture::new();
    let (uid, _) = my_uid_gid(&fx.dir);
    // Only a uid that is not ours; and our uid with an executable we are not.
    fx.start(&[Selector::Uid(uid.wrapping_add(1))]);
    let mut client = workload_api::connect(&fx.socket).await.unwrap();
    let err = client.fetch_x509svid(X509svidRequest {}).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    for code in [
        client
            .fetch_x509_bundles(X509BundlesRequest {})
            .await
            .unwrap_err()
            .code(),
        client
            .fetch_jwt_bundles(JwtBundlesRequest {})
            .await
            .unwrap_err()
            .code(),
    ] {
        assert_eq!(code, Code::PermissionDenied);
    }
    let err = WorkloadApiSource::start_with_backoff(
        &fx.socket,
        &td("cluster-a.test"),
        Duration::from_millis(300),
        Backoff::new(Duration::from_millis(20), Duration::from_millis(50)),
    )
    .await
    .err()
    .expect("no identity for a caller without an entry");
    assert!(matches!(err, ClientError::Timeout { .. }), "{err}");
    assert!(err.to_string().contains("PermissionDenied"), "{err}");
    drop(client);
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_executable_path_is_a_selector() {
    let mut fx = Fixture::new();
    let (uid, _) = my_uid_gid(&fx.dir);
    let me = std::env::current_exe().unwrap();
    fx.start(&[
        Selector::Uid(uid),
        Selector::Path(me.to_str().unwrap().to_owned()),
    ]);
    let mut client = workload_api::connect(&fx.socket).await.unwrap();
    let mut svids = client
        .fetch_x509svid(X509svidRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next(&mut svids).await.svids[0].spiffe_id, APP_ID);
    drop((svids, client));
    fx.stop().await;

    let mut fx = Fixture::new();
    fx.start(&[
        Selector::Uid(uid),
        Selector::Path("/usr/bin/not-this-test".into()),
    ]);
    let mut client = workload_api::connect(&fx.socket).await.unwrap();
    let err = client.fetch_x509svid(X509svidRequest {}).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    drop(client);
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_path_that_is_not_a_socket_is_refused() {
    let fx = Fixture::new();
    std::fs::write(&fx.socket, b"important data").unwrap();
    let err = Agent::start(fx.settings(&[Selector::Uid(0)]))
        .err()
        .expect("refused");
    assert!(
        matches!(err, AgentError::Bind(BindError::NotASocket { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("is not a socket"), "{err}");
    assert_eq!(std::fs::read(&fx.socket).unwrap(), b"important data");

    // A stale socket from a previous run is replaced.
    std::fs::remove_file(&fx.socket).unwrap();
    drop(std::os::unix::net::UnixListener::bind(&fx.socket).unwrap());
    let mut fx = fx;
    fx.start_matching();
    let mut client = workload_api::connect(&fx.socket).await.unwrap();
    let mut svids = client
        .fetch_x509svid(X509svidRequest {})
        .await
        .unwrap()
        .into_inner();
    next(&mut svids).await;
    drop((svids, client));
    fx.stop().await;
}

// === JWT-SVIDs ===

fn jwt_request(audience: &[&str], spiffe_id: &str) -> JwtsvidRequest {
    JwtsvidRequest {
        audience: audience.iter().map(|a| a.to_string()).collect(),
        spiffe_id: spiffe_id.into(),
    }
}

fn validate_request(svid: &str, audience: &str) -> ValidateJwtsvidRequest {
    ValidateJwtsvidRequest {
        audience: audience.into(),
        svid: svid.into(),
    }
}

fn b64(json: &serde_json::Value) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json.to_string())
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn number(claims: &prost_types::Struct, key: &str) -> f64 {
    match claims.fields[key].kind {
        Some(prost_types::value::Kind::NumberValue(n)) => n,
        ref other => panic!("claim {key} is {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_jwtsvid_mints_tokens_the_ca_bundle_validates() {
    let mut fx = Fixture::new();
    fx.start_matching();
    let mut client = workload_api::connect(&fx.socket).await.unwrap();

    let resp = client
        .fetch_jwtsvid(jwt_request(&["svc-a", "svc-b"], ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.svids.len(), 1, "one per entitled SPIFFE ID");
    let svid = &resp.svids[0];
    assert_eq!(svid.spiffe_id, APP_ID);
    assert_eq!(svid.hint, "");
    let ca = Ca::load(&fx.ca_dir).unwrap();
    let now = std::time::SystemTime::now();
    let valid = fedgate_federation::jwt::validate(&svid.svid, ca.bundle(), "svc-b", now).unwrap();
    assert_eq!(valid.spiffe_id.to_string(), APP_ID);
    assert_eq!(valid.audience, ["svc-a", "svc-b"]);
    let lifetime = valid.expiry - valid.issued_at.unwrap();
    assert_eq!(
        Duration::from_secs(lifetime),
        fedgate::workload::MAX_JWT_TTL,
        "min(svid_ttl = 1h, 5 min)"
    );

    // The requested SPIFFE ID only, when the caller is entitled to it.
    let resp = client
        .fetch_jwtsvid(jwt_request(&["svc-a"], APP_ID))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.svids.len(), 1);
    assert_eq!(resp.svids[0].spiffe_id, APP_ID);
    let one =
        fedgate_federation::jwt::validate(&resp.svids[0].svid, ca.bundle(), "svc-a", now).unwrap();
    assert_eq!(one.audience, ["svc-a"]);

    // The agent validates its own token and returns the claims.
    let v = client
        .validate_jwtsvid(validate_request(&svid.svid, "svc-a"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v.spiffe_id, APP_ID);
    let claims = v.claims.unwrap();
    assert_eq!(
        claims.fields["sub"].kind,
        Some(prost_types::value::Kind::StringValue(APP_ID.into()))
    );
    assert_eq!(number(&claims, "exp") as u64, valid.expiry);
    assert_eq!(number(&claims, "iat") as u64, valid.issued_at.unwrap());
    assert!(claims.fields.contains_key("aud"));

    // Request checks.
    for audience in [&[][..], &[""][..]] {
        let err = client
            .fetch_jwtsvid(jwt_request(audience, ""))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains("audience"), "{err:?}");
    }
    let err = client
        .fetch_jwtsvid(jwt_request(&["svc", ""], ""))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let err = client
        .fetch_jwtsvid(jwt_request(&["svc"], "spiffe://cluster-a.test/not-mine"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("not-mine"), "{err:?}");
    for req in [
        validate_request("", "svc"),
        validate_request(&svid.svid, ""),
    ] {
        let err = client.validate_jwtsvid(req).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains("must be specified"), "{err:?}");
    }

    drop(client);
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_jwtsvid_refuses_bad_tokens_with_the_reason() {
    let mut fx = Fixture::new();
    fx.start_matching();
    let mut client = workload_api::connect(&fx.socket).await.unwrap();
    let good = client
        .fetch_jwtsvid(jwt_request(&["svc"], ""))
        .await
        .unwrap()
        .into_inner()
        .svids
        .remove(0)
        .svid;
    let signer = Ca::load(&fx.ca_dir)
        .unwrap()
        .jwt_signer(&fx.ca_dir)
        .unwrap();
    let app = SpiffeId::parse(APP_ID).unwrap();
    let hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    let expired = signer
        .mint_at(&app, &["svc"], hour_ago, Duration::from_secs(300))
        .unwrap();
    let unsigned = format!(
        "{}.{}.",
        b64(&serde_json::json!({"alg": "none", "typ": "JWT"})),
        b64(&serde_json::json!({"sub": APP_ID, "aud": "svc", "exp": unix_now() + 300}))
    );
    let nobody = new_ca("cluster-z.test");
    let stranger = nobody
        .jwt_signer(Path::new("z"))
        .unwrap()
        .mint(
            &SpiffeId::parse("spiffe://cluster-z.test/x").unwrap(),
            &["svc"],
            Duration::from_secs(300),
        )
        .unwrap();
    let huge = "a".repeat(1 << 20);

    let cases: [(&str, &str, &str, &str); 6] = [
        ("wrong audience", &good, "other-svc", "audience"),
        ("expired", &expired, "svc", "expired"),
        ("alg none", &unsigned, "svc", "`alg` none is not allowed"),
        (
            "no bundle for the sub's trust domain",
            &stranger,
            "svc",
            "no bundle for trust domain cluster-z.test",
        ),
        ("garbage", "not a token at all", "svc", "not a compact JWS"),
        ("1 MiB", &huge, "svc", "over the"),
    ];
    for (what, token, audience, reason) in cases {
        let err = client
            .validate_jwtsvid(validate_request(token, audience))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{what}: {err:?}");
        assert!(
            err.message().contains("not valid") && err.message().contains(reason),
            "{what}: {:?}",
            err.message()
        );
    }
    // Still serving after all of that.
    client
        .validate_jwtsvid(validate_request(&good, "svc"))
        .await
        .unwrap();

    drop(client);
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_federated_jwtsvid_validates_with_the_served_bundle() {
    let mut fx = Fixture::new();
    fx.start_matching();
    let mut client = workload_api::connect(&fx.socket).await.unwrap();
    let peer_id = SpiffeId::parse("spiffe://cluster-b.test/reports").unwrap();
    let token = fx
        .peer
        .jwt_signer(Path::new("peer"))
        .unwrap()
        .mint(&peer_id, &["svc"], Duration::from_secs(300))
        .unwrap();
    let v = client
        .validate_jwtsvid(validate_request(&token, "svc"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v.spiffe_id, peer_id.to_string());

    // The peer rotates its JWT key: a token of the new key validates once the gateway has
    // distributed the new bundle map (seen on the JWT bundles stream), not before.
    let mut bundles = client
        .fetch_jwt_bundles(JwtBundlesRequest {})
        .await
        .unwrap()
        .into_inner();
    next(&mut bundles).await;
    let mut peer = fx.peer.clone_for_test();
    peer.rotate().unwrap();
    let rotated = peer
        .jwt_signer(Path::new("peer"))
        .unwrap()
        .mint(&peer_id, &["svc"], Duration::from_secs(300))
        .unwrap();
    let err = client
        .validate_jwtsvid(validate_request(&rotated, "svc"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("is not a jwt-svid key"), "{err:?}");
    write_map(&fx.map, &[peer.bundle().clone()]);
    next(&mut bundles).await;
    client
        .validate_jwtsvid(validate_request(&rotated, "svc"))
        .await
        .unwrap();

    drop((bundles, client));
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_without_a_jwt_key_is_unavailable_until_rotated() {
    let mut fx = Fixture::new();
    std::fs::remove_file(fx.ca_dir.join(fedgate::ca::JWT_KEY)).unwrap();
    fx.start_matching();
    let mut client = workload_api::connect(&fx.socket).await.unwrap();
    let err = client
        .fetch_jwtsvid(jwt_request(&["svc"], ""))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(err.message().contains("fedgate ca rotate"), "{err:?}");

    // `ca rotate` adds a JWT key; the agent picks it up with the rotated CA.
    let mut svids = client
        .fetch_x509svid(X509svidRequest {})
        .await
        .unwrap()
        .into_inner();
    next(&mut svids).await;
    let mut ca = Ca::load(&fx.ca_dir).unwrap();
    ca.rotate().unwrap();
    ca.save(&fx.ca_dir).unwrap();
    let token = loop {
        // Each CA version the agent loads re-mints the X509-SVID, so the stream says when to
        // ask again (a version read between two file writes may lack the new key).
        let m = next(&mut svids).await;
        if split_der(&m.svids[0].bundle, "bundle").unwrap() != ca.bundle().x509_authorities() {
            continue;
        }
        match client.fetch_jwtsvid(jwt_request(&["svc"], "")).await {
            Ok(resp) => break resp.into_inner().svids.remove(0).svid,
            Err(e) if e.code() == Code::Unavailable => continue,
            Err(e) => panic!("{e:?}"),
        }
    };
    fedgate_federation::jwt::validate(&token, ca.bundle(), "svc", std::time::SystemTime::now())
        .unwrap();

    drop((svids, client));
    fx.stop().await;
}

// === a scripted Workload API server, for what fedgate's own server never sends ===

#[path = "support/scripted_workload_api.rs"]
mod scripted;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mismatched_key_or_a_dropped_stream_keeps_the_last_good_identity() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("spire-agent.sock");
    let ca = new_ca("cluster-a.test");
    let peer = new_ca("cluster-b.test");
    let good1 = scripted::response(&ca, "spiffe://cluster-a.test/one", &[peer.bundle().clone()]);
    let mut mismatched =
        scripted::response(&ca, "spiffe://cluster-a.test/two", &[peer.bundle().clone()]);
    mismatched.svids[0].x509_svid_key = good1.svids[0].x509_svid_key.clone();
    let foreign = scripted::response(&peer, "spiffe://cluster-b.test/x", &[ca.bundle().clone()]);
    let good3 = scripted::response(
        &ca,
        "spiffe://cluster-a.test/three",
        &[peer.bundle().clone()],
    );
    let good4 = scripted::response(
        &ca,
        "spiffe://cluster-a.test/four",
        &[peer.bundle().clone()],
    );

    let scripted = scripted::Scripted::default();
    scripted.scripts.lock().unwrap().extend([
        // First stream: a good SVID, a key that does not match, one of another trust domain,
        // a good one again; then the server ends the stream.
        vec![good1, mismatched, foreign, good3],
        // After the reconnect: one more good SVID, then silence.
        vec![good4],
    ]);
    let server = scripted::serve(&socket, scripted);

    let backoff = Backoff::new(Duration::from_millis(10), Duration::from_millis(50));
    let (source, mut rx) =
        WorkloadApiSource::start_with_backoff(&socket, &td("cluster-a.test"), WAIT, backoff)
            .await
            .unwrap();
    assert_eq!(rx.borrow_and_update().svid.id().path(), "/one");
    let stats = source.stats();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(source.run(shutdown.clone()));

    let mut seen = Vec::new();
    while seen.last().map(String::as_str) != Some("/four") {
        tokio::time::timeout(WAIT, rx.changed())
            .await
            .unwrap()
            .unwrap();
        seen.push(rx.borrow_and_update().svid.id().path().to_owned());
    }
    assert_eq!(
        seen,
        ["/three", "/four"],
        "the refused updates were never published"
    );
    assert_eq!(stats.rejected.load(Ordering::Relaxed), 2);
    assert!(stats.reconnects.load(Ordering::Relaxed) >= 1);
    assert_eq!(stats.updates.load(Ordering::Relaxed), 3);

    shutdown.cancel();
    tokio::time::timeout(WAIT, task).await.unwrap().unwrap();
    server.cancel();
}

/// `Ca` is not `Clone` (it holds keys): a test copy through its own directory format.
trait CloneForTest {
    fn clone_for_test(&self) -> Ca;
}

impl CloneForTest for Ca {
    fn clone_for_test(&self) -> Ca {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca");
        self.save(&path).unwrap();
        Ca::load(&path).unwrap()
    }
}

// === the `fedgate agent` command ===

#[test]
fn the_documented_example_parses() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/examples/agent/agent.toml");
    let config = fedgate::config::agent::Config::load(&path).unwrap();
    assert_eq!(config.entries.iter().count(), 2);
    assert_eq!(config.socket, PathBuf::from("/run/fedgate/agent.sock"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_command_serves_until_sigterm() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};

    let fx = Fixture::new();
    let (uid, _) = my_uid_gid(&fx.dir);
    let config = fx.dir.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "trust_domain = \"cluster-a.test\"\nsocket = \"agent.sock\"\nca = \"ca\"\n\
             federated_bundles = \"federated.json\"\n\
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
    let line = tokio::task::spawn_blocking(move || {
        std::io::BufReader::new(stdout)
            .lines()
            .next()
            .unwrap()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(
        line,
        format!("workload-api listening on unix://{}", fx.socket.display())
    );
    let mut client = workload_api::connect(&fx.socket).await.unwrap();
    let mut svids = client
        .fetch_x509svid(X509svidRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next(&mut svids).await.svids[0].spiffe_id, APP_ID);

    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    // The open stream ends at shutdown; the process exits cleanly and removes its socket.
    let end = tokio::time::timeout(WAIT, svids.message()).await.unwrap();
    assert!(!matches!(end, Ok(Some(_))), "{end:?}");
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(!fx.socket.exists());

    // A config error exits 64 and names the key.
    std::fs::write(
        &config,
        "trust_domain = \"cluster-a.test\"\nsocket = \"s\"\nca = \"ca\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_fedgate"))
        .args(["agent", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("`entry`"),
        "{out:?}"
    );
}

/// `fedgate run` with `[identity] source = "workload_api"`: the gateway takes its SVID and its
/// bundle from the agent and follows a CA rotation there without a restart (seen in `/status`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_takes_its_identity_from_the_workload_api() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let mut fx = Fixture::new();
    fx.start_matching();
    let config = fx.dir.join("gw.toml");
    std::fs::write(
        &config,
        format!(
            "trust_domain = \"cluster-a.test\"\n\
             [identity]\nsource = \"workload_api\"\nsocket = \"unix://{}\"\n\
             [admin]\nlisten = \"127.0.0.1:0\"\n\
             [[listeners]]\nname = \"e\"\nlisten = \"127.0.0.1:0\"\nkind = \"passthrough\"\n\
             [[listeners.routes]]\nsni = \"*.cluster-b.test\"\nupstreams = [\"127.0.0.1:1\"]\n",
            fx.socket.display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_fedgate"))
        .args(["run", "--config", config.to_str().unwrap()])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let admin = tokio::task::spawn_blocking(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if let Some(addr) = line.strip_prefix("admin listening on ") {
                return addr.parse::<std::net::SocketAddr>().unwrap();
            }
        }
        panic!("the gateway exited before printing its admin address");
    })
    .await
    .unwrap();
    let status = || async move {
        let mut tcp = tokio::net::TcpStream::connect(admin).await.unwrap();
        tcp.write_all(b"GET /status HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut raw = String::new();
        tcp.read_to_string(&mut raw).await.unwrap();
        let body = raw.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
        serde_json::from_str::<serde_json::Value>(&body).unwrap()
    };
    let local = status().await["local_bundle"].clone();
    assert_eq!(local["trust_domain"], "cluster-a.test", "{local}");
    assert_eq!(local["authorities"], 1, "{local}");
    let source = status().await["identity_source"].clone();
    assert_eq!(source["source"], "workload_api", "{source}");
    assert_eq!(source["updates"], 1, "{source}");
    assert_eq!(source["rejected"], 0, "{source}");
    assert!(source["last_error"].is_null(), "{source}");

    // A CA rotation at the agent reaches the gateway over the stream. /status is polled (it
    // has no change feed); the deadline only bounds a failure.
    let mut ca = Ca::load(&fx.ca_dir).unwrap();
    ca.rotate().unwrap();
    ca.save(&fx.ca_dir).unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if status().await["local_bundle"]["authorities"] == 2 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the rotation never reached the gateway"
        );
        tokio::time::sleep(POLL).await;
    }

    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let code = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(code.code(), Some(0));
    fx.stop().await;
}
