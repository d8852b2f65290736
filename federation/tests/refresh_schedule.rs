//! The refresher's schedule under `tokio::time::pause()`: capped exponential backoff after
//! failures, never longer than the normal interval, and `refresh_now` polls at once.

// Test code: a failed unwrap is a test failure with a backtrace, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use fedgate_federation::endpoint::{FetchOptions, Profile, Relationship, WebRoots};
use fedgate_federation::metrics::FederationMetrics;
use fedgate_federation::refresh::{Peer, RefreshPolicy, Refresher};
use fedgate_federation::{Bundle, TrustDomain};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

#[tokio::test(start_paused = true)]
async fn failures_back_off_up_to_the_interval_and_refresh_now_wakes() {
    let td = TrustDomain::new("b.test").unwrap();
    // Userinfo makes every fetch fail at once, without any I/O, so only timers move time.
    let rel = Relationship {
        trust_domain: td.clone(),
        url: "https://user@127.0.0.1/".parse().unwrap(),
        profile: Profile::HttpsWeb {
            roots: WebRoots::Custom(vec![]),
        },
    };
    let policy = RefreshPolicy {
        min: Duration::from_secs(1),
        max: Duration::from_secs(60),
        default: Duration::from_secs(4),
        jitter: 0.0,
        backoff_initial: Duration::from_secs(1),
        backoff_max: Duration::from_secs(5),
    };
    let metrics = FederationMetrics::new();
    let local = Bundle::new(TrustDomain::new("a.test").unwrap());
    let (refresher, handle) = Refresher::new(
        vec![local],
        vec![Peer {
            relationship: rel,
            fetch: FetchOptions::default(),
        }],
        policy,
        None,
        None,
        Some(metrics.clone()),
    );
    let mut events = handle.events();
    let shutdown = CancellationToken::new();
    let start = Instant::now();
    let task = tokio::spawn(refresher.run(shutdown.clone()));

    let mut at = Vec::new();
    for _ in 0..5 {
        let ev = events.recv().await.unwrap();
        assert_eq!(ev.result, "invalid_url");
        assert!(!ev.changed);
        at.push(start.elapsed().as_secs());
    }
    // Delays 1, 2, then capped at the 4 s interval (backoff_max 5 s is higher).
    assert_eq!(at, vec![0, 1, 3, 7, 11]);
    let status = handle.status();
    assert_eq!(status[0].next_poll, Some(4.0));
    let json = serde_json::to_value(&status[0]).unwrap();
    for key in [
        "trust_domain",
        "url",
        "profile",
        "last_success",
        "last_error",
        "sequence",
        "bundle_age",
        "next_poll",
        "time_until_trust_loss",
        "authorities",
    ] {
        assert!(json.get(key).is_some(), "status JSON lacks {key}: {json}");
    }
    assert_eq!(json["profile"], "https_web");
    assert!(status[0]
        .last_error
        .as_deref()
        .unwrap()
        .starts_with("invalid_url"));
    // Trust was never extended: no bundle for the peer appeared.
    assert!(handle.bundles().get(&td).is_none());

    assert!(handle.refresh_now(&td));
    events.recv().await.unwrap();
    assert_eq!(
        start.elapsed().as_secs(),
        11,
        "refresh_now polls without waiting"
    );
    assert!(
        !handle.refresh_now(&TrustDomain::new("a.test").unwrap()),
        "local is not a peer"
    );
    assert_eq!(metrics.fetch_count(&td, "invalid_url"), 6);

    shutdown.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn peers_clashing_with_local_or_each_other_are_refused() {
    let a = TrustDomain::new("a.test").unwrap();
    let rel = |td: &TrustDomain| Peer {
        relationship: Relationship {
            trust_domain: td.clone(),
            url: "https://127.0.0.1:1/".parse().unwrap(),
            profile: Profile::HttpsWeb {
                roots: WebRoots::Custom(vec![]),
            },
        },
        fetch: FetchOptions::default(),
    };
    let b = TrustDomain::new("b.test").unwrap();
    let (_r, handle) = Refresher::new(
        vec![Bundle::new(a.clone())],
        vec![rel(&a), rel(&b), rel(&b)],
        RefreshPolicy::default(),
        None,
        None,
        None,
    );
    let status = handle.status();
    assert_eq!(status.len(), 1);
    assert_eq!(status[0].trust_domain, "b.test");
    // A local bundle may not be set for a peer's trust domain.
    assert!(!handle.set_local(Bundle::new(b)));
    assert!(handle.set_local(Bundle::new(a.clone())));
    assert!(handle.bundles().get(&a).is_some());
}
