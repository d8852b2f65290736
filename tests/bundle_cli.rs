//! `fedgate bundle serve` and `fedgate bundle fetch` as real processes: two endpoints (one per
//! profile) and two `fetch --watch` clients follow a root rotation within one refresh interval,
//! and a restarted `fetch --watch` with the endpoint down keeps the last-known-good bundle.
// Test code: a failed unwrap is a test failure with a backtrace, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use fedgate_federation::{Bundle, TrustDomain};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(cn: &str, uri: Option<&str>) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        if let Some(uri) = uri {
            p.subject_alt_names = vec![SanType::URI(uri.try_into().unwrap())];
        }
        Self {
            cert: p.self_signed(&key).unwrap(),
            key,
        }
    }

    /// (chain PEM, key PEM) of a leaf with `san`.
    fn leaf(&self, san: SanType, eku: ExtendedKeyUsagePurpose) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![eku];
        p.subject_alt_names = vec![san];
        let cert = p.signed_by(&key, &self.cert, &self.key).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

fn td() -> TrustDomain {
    TrustDomain::new("b.test").unwrap()
}

fn bundle_of(cas: &[&Ca]) -> Bundle {
    let mut b = Bundle::new(td());
    for ca in cas {
        b.add_x509_authority(ca.cert.der().clone());
    }
    b.set_refresh_hint(Some(Duration::from_secs(1)));
    b
}

/// `b` with `spiffe_sequence` = `seq`: the endpoint serves the file's sequence, and a change
/// is published only with a higher one (as `fedgate ca rotate` writes).
fn seq(mut b: Bundle, seq: u64) -> Bundle {
    b.set_sequence(Some(seq));
    b
}

/// Replaces `path` atomically (as a ConfigMap update or `mv` would).
fn put(path: &Path, content: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A child process whose output lines arrive on channels; SIGKILLed on drop if still running.
struct Proc {
    child: Child,
    out: mpsc::Receiver<String>,
    err: mpsc::Receiver<String>,
}

impl Proc {
    fn spawn(args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fedgate"))
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = lines(child.stdout.take().unwrap());
        let err = lines(child.stderr.take().unwrap());
        Self { child, out, err }
    }

    /// Waits for a stdout line matching `pred`, failing after `within`.
    fn expect_out(&self, within: Duration, pred: impl Fn(&str) -> bool) -> String {
        expect(&self.out, within, pred, "stdout")
    }

    fn expect_err(&self, within: Duration, pred: impl Fn(&str) -> bool) -> String {
        expect(&self.err, within, pred, "stderr")
    }

    /// SIGTERM, then the exit status.
    fn terminate(mut self) -> std::process::ExitStatus {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        self.child.wait().unwrap()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn lines(r: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

fn expect(
    rx: &mpsc::Receiver<String>,
    within: Duration,
    pred: impl Fn(&str) -> bool,
    what: &str,
) -> String {
    let deadline = Instant::now() + within;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if pred(&line) => return line,
            Ok(line) => seen.push(line),
            Err(_) => panic!("no matching {what} line within {within:?}; saw {seen:#?}"),
        }
    }
}

/// `updated b.test sequence N authorities M` → (N, M).
fn parse_update(line: &str) -> (u64, usize) {
    let w: Vec<&str> = line.split_whitespace().collect();
    (w[3].parse().unwrap(), w[5].parse().unwrap())
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn serve(dir: &Path, profile_args: &[&str]) -> (Proc, String) {
    let mut args = vec![
        "bundle",
        "serve",
        "--trust-domain",
        "b.test",
        "--listen",
        "127.0.0.1:0",
        "--poll-interval",
        "100ms",
    ];
    let bundle = dir.join("bundle.json");
    args.extend(["--bundle", s(&bundle)]);
    args.extend(profile_args);
    let p = Proc::spawn(&args);
    let line = p.expect_out(Duration::from_secs(30), |l| l.starts_with("listening on "));
    let addr = line.trim_start_matches("listening on ").to_owned();
    (p, format!("https://{addr}/"))
}

#[test]
fn serve_and_watch_follow_rotation_and_restart_keeps_last_known_good() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let path = |n: &str| -> PathBuf { d.join(n) };
    let ca1 = Ca::new("b.test CA 1", Some("spiffe://b.test"));
    let ca2 = Ca::new("b.test CA 2", Some("spiffe://b.test"));
    let web = Ca::new("Web CA", None);
    let (web_cert, web_key) = web.leaf(
        SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()),
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let svid_san = || SanType::URI("spiffe://b.test/bundle-server".try_into().unwrap());
    let (svid1, svid1_key) = ca1.leaf(svid_san(), ExtendedKeyUsagePurpose::ServerAuth);
    put(&path("web.pem"), web_cert.as_bytes());
    put(&path("web.key"), web_key.as_bytes());
    put(&path("webca.pem"), web.cert.pem().as_bytes());
    put(&path("svid.pem"), svid1.as_bytes());
    put(&path("svid.key"), svid1_key.as_bytes());
    put(&path("bundle.json"), &seq(bundle_of(&[&ca1]), 1).to_json());
    put(&path("bootstrap.json"), &bundle_of(&[&ca1]).to_json());

    let (web_srv, web_url) = serve(
        d,
        &[
            "--profile",
            "https_web",
            "--cert",
            s(&path("web.pem")),
            "--key",
            s(&path("web.key")),
        ],
    );
    let (spiffe_srv, spiffe_url) = serve(
        d,
        &[
            "--profile",
            "https_spiffe",
            "--svid",
            s(&path("svid.pem")),
            "--svid-key",
            s(&path("svid.key")),
        ],
    );

    let watch_web = |state: &str| {
        Proc::spawn(&[
            "bundle",
            "fetch",
            "--trust-domain",
            "b.test",
            "--url",
            &web_url,
            "--profile",
            "https_web",
            "--ca",
            s(&path("webca.pem")),
            "--out",
            s(&path("out-web.json")),
            "--watch",
            "--state-dir",
            s(&path(state)),
            "--min-refresh",
            "1s",
            "--max-refresh",
            "1s",
            "--timeout",
            "5s",
        ])
    };
    let fetch_web = watch_web("state-web");
    let fetch_spiffe = Proc::spawn(&[
        "bundle",
        "fetch",
        "--trust-domain",
        "b.test",
        "--url",
        &spiffe_url,
        "--profile",
        "https_spiffe",
        "--endpoint-id",
        "spiffe://b.test/bundle-server",
        "--bootstrap-bundle",
        s(&path("bootstrap.json")),
        "--out",
        s(&path("out-spiffe.json")),
        "--watch",
        "--state-dir",
        s(&path("state-spiffe")),
        "--min-refresh",
        "1s",
        "--max-refresh",
        "1s",
        "--timeout",
        "5s",
    ]);
    let is_update = |l: &str| l.starts_with("updated b.test sequence ");
    let (seq_w, n) = parse_update(&fetch_web.expect_out(Duration::from_secs(30), is_update));
    assert_eq!(n, 1);
    let (seq_s, n) = parse_update(&fetch_spiffe.expect_out(Duration::from_secs(30), is_update));
    assert_eq!(n, 1);
    assert_eq!(
        (seq_w, seq_s),
        (1, 1),
        "both endpoints serve the file's sequence"
    );

    // Rotation, step 1: the new root is published beside the old one. Both watchers must
    // follow within one refresh interval (1 s, ±10 % jitter) plus the server's 100 ms file
    // poll; the bound below adds scheduling slack for a loaded 2-core machine.
    let bound = Duration::from_millis(1100 + 100 + 1800);
    let start = Instant::now();
    put(
        &path("bundle.json"),
        &seq(bundle_of(&[&ca1, &ca2]), 2).to_json(),
    );
    let (s2, n) = parse_update(&fetch_web.expect_out(bound, is_update));
    assert_eq!((s2, n), (seq_w + 1, 2));
    let (s2s, n) = parse_update(&fetch_spiffe.expect_out(
        bound.saturating_sub(start.elapsed()) + Duration::from_millis(100),
        is_update,
    ));
    assert_eq!((s2s, n), (seq_w + 1, 2));

    // Step 2: the endpoint's SVID is reissued by the new root and the old root retired. The
    // https_spiffe client authenticates with the latest bundle it fetched (both roots), so it
    // follows with no gap.
    let (svid2, svid2_key) = ca2.leaf(svid_san(), ExtendedKeyUsagePurpose::ServerAuth);
    put(&path("svid.key"), svid2_key.as_bytes());
    put(&path("svid.pem"), svid2.as_bytes());
    let start = Instant::now();
    put(&path("bundle.json"), &seq(bundle_of(&[&ca2]), 3).to_json());
    let (s3, n) = parse_update(&fetch_web.expect_out(bound, is_update));
    assert_eq!((s3, n), (seq_w + 2, 1));
    let (s3s, n) = parse_update(&fetch_spiffe.expect_out(
        bound.saturating_sub(start.elapsed()) + Duration::from_millis(100),
        is_update,
    ));
    assert_eq!((s3s, n), (seq_w + 2, 1));
    for out in ["out-web.json", "out-spiffe.json"] {
        let (b, _) = Bundle::load(&td(), &path(out)).unwrap();
        assert!(b.same_authorities(&bundle_of(&[&ca2])), "{out}");
        assert_eq!(b.sequence(), Some(seq_w + 2));
    }

    assert!(fetch_web.terminate().success());
    assert!(fetch_spiffe.terminate().success());
    assert!(web_srv.terminate().success());
    assert!(spiffe_srv.terminate().success());

    // Restart with the endpoint down: the stored bundle stays in force and on disk.
    let before = std::fs::read(path("out-web.json")).unwrap();
    let again = watch_web("state-web");
    let line = again.expect_out(Duration::from_secs(30), |l| {
        l.starts_with("using last-known-good")
    });
    assert_eq!(
        line,
        format!(
            "using last-known-good b.test sequence {} authorities 1",
            seq_w + 2
        )
    );
    let refused = again.expect_err(Duration::from_secs(30), |l| l.starts_with("refused b.test"));
    assert!(refused.contains("connect"), "{refused}");
    assert_eq!(std::fs::read(path("out-web.json")).unwrap(), before);
    assert!(again.terminate().success());
}

#[test]
fn fetch_requires_explicit_spiffe_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.json");
    let o = Command::new(env!("CARGO_BIN_EXE_fedgate"))
        .args([
            "bundle",
            "fetch",
            "--trust-domain",
            "b.test",
            "--url",
            "https://127.0.0.1:1/",
        ])
        .args(["--profile", "https_spiffe", "--out", s(&out)])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(64));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--endpoint-id") && err.contains("--bootstrap-bundle"),
        "{err}"
    );

    let o = Command::new(env!("CARGO_BIN_EXE_fedgate"))
        .args([
            "bundle",
            "fetch",
            "--trust-domain",
            "b.test",
            "--url",
            "http://127.0.0.1:1/",
        ])
        .args(["--profile", "https_web", "--out", s(&out)])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&o.stderr).contains("https"));
}

#[test]
fn one_shot_fetch_refusal_leaves_out_file_alone() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.json");
    std::fs::write(&out, b"previous").unwrap();
    let ca = Ca::new("Web CA", None);
    std::fs::write(dir.path().join("ca.pem"), ca.cert.pem()).unwrap();
    // Nothing listens on port 1 of 127.0.0.1.
    let o = Command::new(env!("CARGO_BIN_EXE_fedgate"))
        .args([
            "bundle",
            "fetch",
            "--trust-domain",
            "b.test",
            "--url",
            "https://127.0.0.1:1/",
        ])
        .args([
            "--profile",
            "https_web",
            "--ca",
            s(&dir.path().join("ca.pem")),
            "--out",
            s(&out),
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("refused (connect)"));
    assert_eq!(std::fs::read(&out).unwrap(), b"previous");
}

/// A plain-HTTP GET of `path` on `addr` (the admin listener); returns the body.
fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn serve_closes_connections_over_max_connections_and_counts_them() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = Ca::new("b.test CA", Some("spiffe://b.test"));
    let web = Ca::new("Web CA", None);
    let (cert, key) = web.leaf(
        SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()),
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    put(&d.join("web.pem"), cert.as_bytes());
    put(&d.join("web.key"), key.as_bytes());
    put(&d.join("bundle.json"), &bundle_of(&[&ca]).to_json());
    let p = Proc::spawn(&[
        "bundle",
        "serve",
        "--trust-domain",
        "b.test",
        "--listen",
        "127.0.0.1:0",
        "--bundle",
        s(&d.join("bundle.json")),
        "--profile",
        "https_web",
        "--cert",
        s(&d.join("web.pem")),
        "--key",
        s(&d.join("web.key")),
        "--max-connections",
        "1",
        "--admin-listen",
        "127.0.0.1:0",
    ]);
    let addr = p.expect_out(Duration::from_secs(30), |l| l.starts_with("listening on "));
    let addr = addr.trim_start_matches("listening on ").to_owned();
    let admin = p.expect_out(Duration::from_secs(30), |l| {
        l.starts_with("admin listening on ")
    });
    let admin = admin.trim_start_matches("admin listening on ").to_owned();

    // The first connection (accepted first: the accept queue is FIFO) holds the only slot ...
    let first = std::net::TcpStream::connect(&addr).unwrap();
    // ... so the second is closed before any TLS byte, and counted before it is closed.
    let mut second = std::net::TcpStream::connect(&addr).unwrap();
    second
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = Vec::new();
    let read = second.read_to_end(&mut buf);
    // EOF or a reset; a read timeout would mean it was not closed.
    let closed = match &read {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    };
    assert!(closed && buf.is_empty(), "{read:?} {buf:?}");
    let metrics = http_get(&admin, "/metrics");
    assert!(
        metrics
            .contains("fedgate_bundle_endpoint_refusals_total{reason=\"too_many_connections\"} 1"),
        "{metrics}"
    );
    drop(first);
    assert!(p.terminate().success());
}
