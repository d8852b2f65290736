//! Two bundle endpoint replicas serving the same `bundle.json` (as two pods behind one
//! Service would), one federation client alternating between them, through a full CA
//! rotation (`ca rotate`, then `ca rotate --retire-old`): the replicas serve the same
//! document (body, `spiffe_sequence`, `ETag`) — the sequence written in the file — so the
//! client never sees a rollback, gets `304` from the replica it did not fetch from, and ends
//! up with the new root only. All on 127.0.0.1:0, real TLS.
// Test code: a failed unwrap is a test failure with a backtrace, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../federation/tests/fed_support/mod.rs"]
mod fed_support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use fed_support::{fast_opts, web_rel, TestCa};
use fedgate::ca::{Ca, InitOptions};
use fedgate_federation::endpoint::server::ServerTls;
use fedgate_federation::endpoint::{
    fetch, BundleEndpoint, BundleFileSource, FetchOutcome, Relationship,
};
use fedgate_federation::{Bundle, TrustDomain};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

fn td() -> TrustDomain {
    TrustDomain::new("a.test").unwrap()
}

/// One replica: its own file source (polled by the test, so that "has picked up the file" is
/// a fact, not a timing) and its own endpoint server.
struct Replica {
    source: BundleFileSource,
    url: String,
}

impl Replica {
    async fn start(bundle: &Path, tls: &ServerTls, shutdown: &CancellationToken) -> Self {
        // The poll interval is unused: the test calls `poll_once` itself.
        let (source, rx) = BundleFileSource::new(td(), bundle, Duration::from_secs(3600)).unwrap();
        let (tls_tx, tls_rx) = watch::channel(tls.server_config().unwrap());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "https://127.0.0.1:{}/",
            listener.local_addr().unwrap().port()
        );
        let server = BundleEndpoint::new("/", rx, tls_rx);
        let sd = shutdown.clone();
        tokio::spawn(async move {
            let _tls_tx = tls_tx;
            server.run(listener, sd).await.unwrap();
        });
        Self { source, url }
    }
}

/// What a replica serves right now: status, `ETag`, body.
async fn get(http: &reqwest::Client, url: &str) -> (String, Vec<u8>) {
    let r = http.get(url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let etag = r.headers()["etag"].to_str().unwrap().to_owned();
    (etag, r.bytes().await.unwrap().to_vec())
}

fn written_sequence(path: &Path) -> u64 {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    v["spiffe_sequence"]
        .as_u64()
        .expect("the CA writes spiffe_sequence")
}

/// The federation client's view: the bundle in force and its `ETag`, updated like the
/// refresher does (rollback-checked against the bundle in force, `If-None-Match`).
struct Client {
    rels: [Relationship; 2],
    current: Option<Bundle>,
    etag: Option<String>,
    fetches: usize,
    not_modified: usize,
}

impl Client {
    /// Fetches from the next replica in turn; a refusal of any kind (rollback included)
    /// fails the test.
    async fn fetch_next(&mut self) {
        let rel = &self.rels[self.fetches % 2];
        self.fetches += 1;
        let mut opts = fast_opts();
        opts.if_none_match = self.current.as_ref().and(self.etag.clone());
        match fetch(rel, self.current.as_ref(), &opts).await {
            Ok(FetchOutcome::Updated { bundle, etag, .. }) => {
                self.current = Some(bundle);
                self.etag = etag;
            }
            Ok(FetchOutcome::NotModified) => self.not_modified += 1,
            Ok(other) => panic!("unexpected outcome {other:?}"),
            Err(e) => panic!(
                "fetch #{} from {} refused ({}): {e}",
                self.fetches,
                rel.url,
                e.reason_label()
            ),
        }
    }

    /// Alternates between the replicas until the bundle in force satisfies `done` (bounded).
    async fn until(&mut self, what: &str, done: impl Fn(&Bundle) -> bool) {
        for _ in 0..50 {
            self.fetch_next().await;
            if self.current.as_ref().is_some_and(&done) {
                // And a few more rounds on both replicas: still no rollback, all 304.
                let before = self.not_modified;
                for _ in 0..4 {
                    self.fetch_next().await;
                }
                assert_eq!(
                    self.not_modified,
                    before + 4,
                    "{what}: both replicas answer 304"
                );
                return;
            }
        }
        panic!("{what}: not reached after 50 fetches");
    }
}

/// Both replicas serve byte-identical documents with identical `ETag`s, whose sequence is the
/// one written in the file.
async fn assert_same_document(http: &reqwest::Client, replicas: &[Replica; 2], file: &Path) {
    let (etag_a, body_a) = get(http, &replicas[0].url).await;
    let (etag_b, body_b) = get(http, &replicas[1].url).await;
    assert_eq!(etag_a, etag_b, "same ETag on both replicas");
    assert_eq!(body_a, body_b, "same document on both replicas");
    let (served, _) = Bundle::parse(&td(), &body_a).unwrap();
    assert_eq!(
        served.sequence(),
        Some(written_sequence(file)),
        "the sequence served is the one in the file"
    );
}

#[tokio::test]
async fn two_replicas_one_client_through_a_ca_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let ca_dir: PathBuf = dir.path().join("ca");
    let bundle_json = ca_dir.join(fedgate::ca::BUNDLE_JSON);
    let opts = InitOptions {
        ttl: Duration::from_secs(24 * 3600),
        refresh_hint: Some(Duration::from_secs(300)),
        intermediate: false,
    };
    let ca = Ca::init(&td(), &opts).unwrap();
    ca.save(&ca_dir).unwrap();
    let first_root = ca.root().clone();

    let web = TestCa::web("Web CA");
    let tls = web.server(&[], true).web_tls();
    let shutdown = CancellationToken::new();
    let mut replicas = [
        Replica::start(&bundle_json, &tls, &shutdown).await,
        Replica::start(&bundle_json, &tls, &shutdown).await,
    ];
    let http = reqwest::Client::builder()
        .use_preconfigured_tls(
            fedgate_federation::endpoint::client::client_tls_config(
                &web_rel(&td(), &replicas[0].url, &web),
                None,
            )
            .unwrap(),
        )
        .no_proxy()
        .build()
        .unwrap();
    assert_same_document(&http, &replicas, &bundle_json).await;

    let mut client = Client {
        rels: [
            web_rel(&td(), &replicas[0].url, &web),
            web_rel(&td(), &replicas[1].url, &web),
        ],
        current: None,
        etag: None,
        fetches: 0,
        not_modified: 0,
    };
    client
        .until("initial bundle", |b| {
            b.x509_authorities().contains(&first_root)
        })
        .await;
    let mut last_seq = client.current.as_ref().unwrap().sequence().unwrap();

    // Phase 1: `ca rotate` adds a new root; both replicas pick up the new file.
    let mut ca = Ca::load(&ca_dir).unwrap();
    ca.rotate().unwrap();
    ca.save(&ca_dir).unwrap();
    let new_root = ca.root().clone();
    for r in &mut replicas {
        assert!(r.source.poll_once(), "replica picks up the rotated bundle");
    }
    assert_same_document(&http, &replicas, &bundle_json).await;
    client
        .until("new root arrives", |b| {
            b.x509_authorities().contains(&new_root) && b.x509_authorities().contains(&first_root)
        })
        .await;
    let seq = client.current.as_ref().unwrap().sequence().unwrap();
    assert!(seq > last_seq, "{seq} > {last_seq}");
    last_seq = seq;

    // Phase 2: `ca rotate --retire-old`; again both replicas pick it up.
    let mut ca = Ca::load(&ca_dir).unwrap();
    ca.retire_old().unwrap();
    ca.save(&ca_dir).unwrap();
    for r in &mut replicas {
        assert!(r.source.poll_once(), "replica picks up the retired bundle");
    }
    assert_same_document(&http, &replicas, &bundle_json).await;
    client
        .until("old root retired", |b| {
            b.x509_authorities() == std::slice::from_ref(&new_root)
        })
        .await;
    let seq = client.current.as_ref().unwrap().sequence().unwrap();
    assert!(seq > last_seq, "{seq} > {last_seq}");

    // A hand edit that changes the bundle without a new sequence is refused by both replicas:
    // they keep serving the same last good document.
    let mut edited = client.current.clone().unwrap();
    edited.add_x509_authority(first_root.clone());
    std::fs::write(&bundle_json, edited.to_json()).unwrap();
    for r in &mut replicas {
        assert!(!r.source.poll_once(), "an unbumped change is refused");
    }
    let (etag, body) = get(&http, &replicas[0].url).await;
    assert_eq!(Some(etag), client.etag);
    let (served, _) = Bundle::parse(&td(), &body).unwrap();
    assert_eq!(served.x509_authorities(), std::slice::from_ref(&new_root));
    assert_eq!(get(&http, &replicas[1].url).await.1, body);

    shutdown.cancel();
}
