//! Refresher + store + distribution end to end: rotation followed with no gap, restart with
//! the peer down keeps the last-known-good, and the distributed files work with OpenSSL.
// Test code: a failed unwrap is a test failure with a backtrace, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "fed_support/mod.rs"]
mod fed_support;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use fed_support::*;
use fedgate_federation::distribute::{parse_bundle_map, subject_hash, Distributor};
use fedgate_federation::refresh::{Peer, RefreshPolicy, Refresher};
use fedgate_federation::store::{Origin, Store};
use fedgate_federation::{BundleSet, TrustDomain};
use tokio_util::sync::CancellationToken;

fn openssl() -> bool {
    let ok = Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        println!("SKIPPED: the openssl binary is not installed");
    }
    ok
}

fn openssl_hash(pem: &str, dir: &Path) -> u32 {
    let p = dir.join("in.pem");
    std::fs::write(&p, pem).unwrap();
    let out = Command::new("openssl")
        .args(["x509", "-hash", "-noout", "-in"])
        .arg(&p)
        .output()
        .unwrap();
    assert!(out.status.success());
    u32::from_str_radix(String::from_utf8(out.stdout).unwrap().trim(), 16).unwrap()
}

#[test]
fn subject_hash_matches_openssl() {
    if !openssl() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for ca in [
        TestCa::new("a.test"),
        TestCa::web("  Mixed   CASE  Name "),
        TestCa::web("x"),
    ] {
        assert_eq!(
            subject_hash(ca.cert.der()).unwrap(),
            openssl_hash(&ca.cert.pem(), dir.path())
        );
    }
}

#[test]
fn distributed_generation_verifies_with_openssl_and_round_trips() {
    let a = TestCa::new("a.test");
    let b = TestCa::new("b.test");
    let b2 = TestCa::new("b.test"); // same subject as b: hash collision → .0 and .1
    let mut bb = b.bundle();
    bb.add_x509_authority(b2.der());
    let set = BundleSet::new()
        .with(with_seq(a.bundle(), 1))
        .with(with_seq(bb, 2));
    let dir = tempfile::tempdir().unwrap();
    let d = Distributor::new(dir.path().join("out"));
    d.write(&set).unwrap();
    let gen2 = d.write(&set).unwrap();
    d.write(&set).unwrap();
    // Only the two newest generations are kept; `current` points at the newest.
    assert!(gen2.exists());
    assert!(!dir.path().join("out/gen-1").exists());
    let current = d.current();
    assert_eq!(std::fs::read_link(&current).unwrap(), Path::new("gen-3"));

    let map = parse_bundle_map(&std::fs::read(current.join("bundles.json")).unwrap()).unwrap();
    assert_eq!(map.len(), 2);
    let tdb = TrustDomain::new("b.test").unwrap();
    assert_eq!(map.get(&tdb).unwrap().x509_authorities().len(), 2);
    assert!(
        std::fs::read_to_string(current.join("b.test.pem"))
            .unwrap()
            .matches("BEGIN CERTIFICATE")
            .count()
            == 2
    );
    let h = subject_hash(b.cert.der()).unwrap();
    assert!(current.join(format!("certs/{h:08x}.0")).exists());
    assert!(current.join(format!("certs/{h:08x}.1")).exists());

    if !openssl() {
        return;
    }
    // b is `.0`; b2 shares its subject and, like all rcgen CAs here, has no key identifier
    // for OpenSSL to tell them apart, so verify a leaf of the first one.
    let leaf = b.svid("/ns/x/sa/y");
    let leaf_path = dir.path().join("leaf.pem");
    std::fs::write(&leaf_path, &leaf.chain_pem).unwrap();
    let out = Command::new("openssl")
        .args(["verify", "-CApath"])
        .arg(current.join("certs"))
        .arg(&leaf_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A leaf of an unknown CA is refused by the same directory.
    let stranger = TestCa::new("c.test").svid("/x");
    std::fs::write(&leaf_path, &stranger.chain_pem).unwrap();
    let out = Command::new("openssl")
        .args(["verify", "-CApath"])
        .arg(current.join("certs"))
        .arg(&leaf_path)
        .output()
        .unwrap();
    assert!(!out.status.success());
}

fn fast_policy() -> RefreshPolicy {
    RefreshPolicy {
        min: Duration::from_secs(1),
        max: Duration::from_secs(2),
        default: Duration::from_secs(1),
        jitter: 0.1,
        backoff_initial: Duration::from_millis(100),
        backoff_max: Duration::from_secs(1),
    }
}

#[tokio::test]
async fn rotation_is_followed_with_no_gap_and_restart_keeps_last_known_good() {
    let b1 = TestCa::new("b.test");
    let web = TestCa::web("Web CA");
    let tdb = TrustDomain::new("b.test").unwrap();
    let mut served = with_seq(b1.bundle(), 1);
    served.set_refresh_hint(Some(Duration::from_secs(1)));
    let ep = Endpoint::start(web.server(&[], true).web_tls(), served.clone(), "/").await;
    let rel = web_rel(&tdb, &ep.url("/"), &web);
    let state = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let local = TestCa::new("a.test").bundle();

    let (refresher, handle) = Refresher::new(
        vec![local.clone()],
        vec![Peer {
            relationship: rel.clone(),
            fetch: fast_opts(),
        }],
        fast_policy(),
        Some(Store::open(state.path()).unwrap()),
        Some(Distributor::new(out.path())),
        None,
    );
    let mut rx = handle.subscribe();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(refresher.run(shutdown.clone()));
    let wait_for = |rx: &mut tokio::sync::watch::Receiver<BundleSet>, seq: u64| {
        let mut rx = rx.clone();
        let td = tdb.clone();
        async move {
            tokio::time::timeout(
                Duration::from_secs(10),
                rx.wait_for(|s| s.get(&td).and_then(|b| b.sequence()) == Some(seq)),
            )
            .await
            .unwrap()
            .unwrap()
            .clone()
        }
    };
    let s1 = wait_for(&mut rx, 1).await;
    assert!(s1.get(&tdb).unwrap().same_authorities(&b1.bundle()));
    assert!(
        s1.get(local.trust_domain()).is_some(),
        "local bundle kept beside the peer's"
    );

    // Rotation step 1: new root added. Step 2: old root retired. Each step keeps an overlap.
    let b2 = TestCa::new("b.test");
    let mut both = served.clone();
    both.add_x509_authority(b2.der());
    ep.bundle.send_replace(Arc::new(with_seq(both.clone(), 2)));
    let s2 = wait_for(&mut rx, 2).await;
    assert!(s2.get(&tdb).unwrap().same_authorities(&both));
    let mut only_new = with_seq(b2.bundle(), 3);
    only_new.set_refresh_hint(Some(Duration::from_secs(1)));
    ep.bundle.send_replace(Arc::new(only_new.clone()));
    let s3 = wait_for(&mut rx, 3).await;
    assert!(s3.get(&tdb).unwrap().same_authorities(&only_new));
    // Distribution follows (the writer runs after each publish).
    let mut written = handle.distributed();
    tokio::time::timeout(
        Duration::from_secs(10),
        written.wait_for(|s| {
            s.as_ref()
                .and_then(|s| s.get(&tdb))
                .is_some_and(|b| b.sequence() == Some(3))
        }),
    )
    .await
    .unwrap()
    .unwrap();
    let pem_path = out.path().join("current/b.test.pem");
    let want = fedgate_federation::distribute::pem_of(&only_new);
    assert_eq!(std::fs::read_to_string(&pem_path).unwrap(), want);
    shutdown.cancel();
    task.await.unwrap();

    // Restart with the peer down: the stored bundle is in force at once and stays.
    drop(ep);
    let (refresher, handle) = Refresher::new(
        vec![local],
        vec![Peer {
            relationship: rel,
            fetch: fast_opts(),
        }],
        fast_policy(),
        Some(Store::open(state.path()).unwrap()),
        None,
        None,
    );
    assert!(handle
        .bundles()
        .get(&tdb)
        .unwrap()
        .same_authorities(&only_new));
    let mut events = handle.events();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(refresher.run(shutdown.clone()));
    let ev = tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ev.result, "connect");
    assert_eq!(ev.sequence, Some(3));
    assert!(handle
        .bundles()
        .get(&tdb)
        .unwrap()
        .same_authorities(&only_new));
    let status = handle.status();
    assert_eq!(status[0].sequence, Some(3));
    assert!(status[0].time_until_trust_loss.unwrap() > 0.0);
    shutdown.cancel();
    task.await.unwrap();
}

/// The last-known-good store seeds a peer at start only if the stored bundle was fetched over
/// the relationship configured now: same URL, same profile, same pinned endpoint ID. A record
/// from an older fedgate (no profile) does not seed either.
#[test]
fn stored_bundle_seeds_only_the_relationship_it_was_fetched_over() {
    let peer = TestCa::new("b.test");
    let web = TestCa::web("Web Test CA");
    let tdb = peer.td.clone();
    let stored = with_seq(peer.bundle(), 7);
    let url = "https://bundles.b.test/bundle";
    let web_configured = web_rel(&tdb, url, &web);
    let spiffe_configured = spiffe_rel(&tdb, url, &peer.id("/endpoint"), peer.bundle());

    // (name, relationship stored with, relationship configured, seeded?)
    let cases = [
        (
            "same web relationship",
            web_configured.clone(),
            web_configured.clone(),
            true,
        ),
        (
            "same spiffe relationship",
            spiffe_configured.clone(),
            spiffe_configured.clone(),
            true,
        ),
        (
            "other URL",
            web_rel(&tdb, "https://elsewhere.test/bundle", &web),
            web_configured.clone(),
            false,
        ),
        (
            "other profile",
            web_configured.clone(),
            spiffe_configured.clone(),
            false,
        ),
        (
            "other endpoint ID",
            spiffe_rel(&tdb, url, &peer.id("/other"), peer.bundle()),
            spiffe_configured.clone(),
            false,
        ),
    ];
    let seeded = |configured: fedgate_federation::endpoint::Relationship, state: &Path| {
        let (_refresher, handle) = Refresher::new(
            vec![],
            vec![Peer {
                relationship: configured,
                fetch: fast_opts(),
            }],
            fast_policy(),
            Some(Store::open(state).unwrap()),
            None,
            None,
        );
        let in_force = handle.bundles().get(&tdb).cloned();
        let status = handle.status();
        assert_eq!(status.len(), 1);
        match in_force {
            Some(b) => {
                assert!(b.same_authorities(&stored));
                assert_eq!(status[0].sequence, Some(7));
                true
            }
            None => {
                assert_eq!(status[0].sequence, None);
                assert_eq!(status[0].last_success, None);
                false
            }
        }
    };
    for (name, stored_with, configured, want) in cases {
        let state = tempfile::tempdir().unwrap();
        Store::open(state.path())
            .unwrap()
            .save(
                &stored,
                &Origin::of(&stored_with),
                std::time::SystemTime::now(),
            )
            .unwrap();
        assert_eq!(seeded(configured, state.path()), want, "{name}");
    }

    // A record written before the profile was recorded: not seeded.
    let state = tempfile::tempdir().unwrap();
    let store = Store::open(state.path()).unwrap();
    let record = serde_json::json!({
        "trust_domain": "b.test",
        "url": url,
        "fetched_at": 1_700_000_000u64,
        "bundle": serde_json::from_slice::<serde_json::Value>(&stored.to_json()).unwrap(),
    });
    std::fs::write(store.path_for(&tdb), record.to_string()).unwrap();
    assert!(!seeded(web_configured, state.path()), "old record");
}
