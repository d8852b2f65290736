//! The gateway identity (`[identity]`): loaded and checked at build, re-published when the
//! files change, and a broken rotation keeps the previous identity.

#[path = "support/gw.rs"]
mod gw_support;

use std::time::Duration;

use fedgate::app::App;
use fedgate::config::Config;
use gw_support::*;

fn config(dir: &std::path::Path) -> String {
    format!(
        "{HEADER}[identity]\nsvid = \"{0}/gw.pem\"\nkey = \"{0}/gw.key\"\nbundle = \"{0}/bundle.json\"\n",
        dir.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_is_reloaded_when_files_change() {
    let files = tempfile::tempdir().unwrap();
    let ca = SpiffeCa::new("cluster-a.test");
    ca.write_bundle(&files.path().join("bundle.json"));
    ca.write_svid(
        "/gw/one",
        &files.path().join("gw.pem"),
        &files.path().join("gw.key"),
    );
    let cfg_path = files.path().join("gw.toml");
    std::fs::write(&cfg_path, config(files.path())).unwrap();

    let app = App::build(Config::load(&cfg_path).unwrap())
        .await
        .unwrap()
        .with_identity_poll(Duration::from_millis(20));
    let mut identity = app.identity().unwrap();
    assert_eq!(
        identity.borrow_and_update().svid.id().to_string(),
        "spiffe://cluster-a.test/gw/one"
    );
    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(app.run(shutdown.clone()));

    ca.write_svid(
        "/gw/two",
        &files.path().join("gw.pem"),
        &files.path().join("gw.key"),
    );
    tokio::time::timeout(Duration::from_secs(10), identity.changed())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        identity.borrow().svid.id().to_string(),
        "spiffe://cluster-a.test/gw/two"
    );

    shutdown.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn identity_from_another_trust_domain_fails_startup() {
    let files = tempfile::tempdir().unwrap();
    let ca = SpiffeCa::new("cluster-b.test");
    ca.write_bundle(&files.path().join("bundle.json"));
    ca.write_svid(
        "/gw",
        &files.path().join("gw.pem"),
        &files.path().join("gw.key"),
    );
    let cfg_path = files.path().join("gw.toml");
    std::fs::write(&cfg_path, config(files.path())).unwrap();
    let err = App::build(Config::load(&cfg_path).unwrap())
        .await
        .err()
        .unwrap();
    let msg = fedgate_federation::error_chain(&err);
    assert!(
        msg.contains("spiffe://cluster-b.test/gw") && msg.contains("cluster-a.test"),
        "{msg}"
    );
}
