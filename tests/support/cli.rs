//! Helpers for tests that run the real `fedgate` binary: run it, capture its output, and
//! craft certificates the CA itself refuses to make (for negative cases).

#![allow(dead_code)] // each test file uses a different subset
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic fails the test

use std::path::Path;
use std::process::Command;

/// The outcome of one run of the binary.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Asserts a failure with `code` and exactly one line on stderr; returns that line.
    pub fn fails_with(&self, code: i32) -> &str {
        assert_eq!(self.code, code, "expected exit {code}: {self:#?}");
        assert_eq!(
            self.stderr.lines().count(),
            1,
            "expected one stderr line: {self:#?}"
        );
        self.stderr.trim_end()
    }

    /// Asserts success; returns stdout.
    pub fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "expected success: {self:#?}");
        &self.stdout
    }
}

/// Runs `fedgate args...` and waits for it (no stdin).
pub fn fedgate<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_fedgate"))
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run fedgate");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `p` as an argument string.
pub fn arg(p: &Path) -> String {
    p.to_str().expect("utf-8 temp path").to_string()
}

/// Signs a leaf for `uri` (any URI, any trust domain) with the signing CA in `ca_dir`,
/// bypassing `ca issue`'s rules. `tweak` may break the leaf further. Returns the PEM chain.
pub fn forge_leaf(
    ca_dir: &Path,
    uri: &str,
    tweak: impl FnOnce(&mut rcgen::CertificateParams),
) -> String {
    let ca_pem = std::fs::read_to_string(ca_dir.join("ca.pem")).unwrap();
    let ca_key =
        rcgen::KeyPair::from_pem(&std::fs::read_to_string(ca_dir.join("ca.key")).unwrap()).unwrap();
    let issuer = rcgen::CertificateParams::from_ca_cert_pem(&ca_pem)
        .unwrap()
        .self_signed(&ca_key)
        .unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.subject_alt_names = vec![rcgen::SanType::URI(uri.try_into().unwrap())];
    p.is_ca = rcgen::IsCa::ExplicitNoCa;
    p.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::minutes(1);
    p.not_after = now + time::Duration::hours(1);
    p.use_authority_key_identifier_extension = true;
    tweak(&mut p);
    let leaf = p.signed_by(&key, &issuer, &ca_key).unwrap();
    let mut pem = leaf.pem();
    // With an intermediate CA, ca.pem is the intermediate: include it in the chain.
    if ca_dir.join("root.pem").exists() {
        pem.push_str(&ca_pem);
    }
    pem
}
