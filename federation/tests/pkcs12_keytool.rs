//! The distributed PKCS#12 truststores as Java sees them: `keytool -list` must show exactly the
//! bundle's X.509 authorities, each a `trustedCertEntry`, with the same SHA-256 fingerprints.
//! Skipped with a printed message when `keytool` is not on PATH.
// Test code: a failed unwrap is a test failure with a backtrace, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "fed_support/mod.rs"]
mod fed_support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use fed_support::*;
use fedgate_federation::distribute::{Distributor, Pkcs12Options, ALL_PKCS12};
use fedgate_federation::BundleSet;

fn keytool() -> bool {
    let ok = Command::new("keytool")
        .arg("-help")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        println!("SKIPPED: keytool is not on PATH (install a JDK to run this test)");
    }
    ok
}

/// `keytool -list` of a store: (number of trustedCertEntry lines, SHA-256 fingerprints).
fn keytool_list(store: &Path, password: &str) -> (usize, BTreeSet<String>) {
    let out = Command::new("keytool")
        .args(["-list", "-keystore"])
        .arg(store)
        .args(["-storetype", "PKCS12", "-storepass", password])
        .env("LC_ALL", "C")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "keytool failed on {}: {stdout}{}",
        store.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let trusted = stdout
        .lines()
        .filter(|l| l.contains("trustedCertEntry"))
        .count();
    let other = stdout
        .lines()
        .filter(|l| l.contains("PrivateKeyEntry") || l.contains("SecretKeyEntry"))
        .count();
    assert_eq!(
        other, 0,
        "only trusted certificate entries expected:\n{stdout}"
    );
    let fingerprints = stdout
        .lines()
        .filter_map(|l| l.split_once("(SHA-256): "))
        .map(|(_, fp)| fp.trim().to_owned())
        .collect();
    (trusted, fingerprints)
}

/// Prints the SHA-256 fingerprint of every root the JVM's default trust manager accepts.
const JAVA_ROOTS: &str = r#"
import java.security.KeyStore;
import java.security.MessageDigest;
import java.security.cert.X509Certificate;
import javax.net.ssl.TrustManagerFactory;
import javax.net.ssl.X509TrustManager;

public class Roots {
    public static void main(String[] args) throws Exception {
        TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        tmf.init((KeyStore) null);
        X509TrustManager tm = (X509TrustManager) tmf.getTrustManagers()[0];
        for (X509Certificate c : tm.getAcceptedIssuers()) {
            byte[] d = MessageDigest.getInstance("SHA-256").digest(c.getEncoded());
            StringBuilder sb = new StringBuilder();
            for (int i = 0; i < d.length; i++) {
                if (i > 0) sb.append(':');
                sb.append(String.format("%02X", d[i]));
            }
            System.out.println(sb);
        }
    }
}
"#;

fn fingerprint(der: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, der);
    d.as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[test]
fn keytool_lists_the_bundle_roots_as_trusted_cert_entries() {
    if !keytool() {
        return;
    }
    let a = TestCa::new("a.test");
    let b = TestCa::new("b.test");
    let b2 = TestCa::web("b.test second root");
    let mut bb = b.bundle();
    bb.add_x509_authority(b2.der());
    let set = BundleSet::new().with(a.bundle()).with(bb);
    let dir = tempfile::tempdir().unwrap();
    let d = Distributor::new(dir.path())
        .with_pkcs12(Pkcs12Options {
            per_trust_domain: true,
            all: true,
            password: "changeit".into(),
        })
        .unwrap();
    d.write(&set).unwrap();
    let current = d.current();

    let expect = |ders: &[&[u8]]| -> (usize, BTreeSet<String>) {
        (ders.len(), ders.iter().map(|d| fingerprint(d)).collect())
    };
    assert_eq!(
        keytool_list(&current.join("a.test.p12"), "changeit"),
        expect(&[a.cert.der()])
    );
    assert_eq!(
        keytool_list(&current.join("b.test.p12"), "changeit"),
        expect(&[b.cert.der(), b2.cert.der()])
    );
    assert_eq!(
        keytool_list(&current.join(ALL_PKCS12), "changeit"),
        expect(&[a.cert.der(), b.cert.der(), b2.cert.der()])
    );

    // Java's default trust manager, configured only by the documented system properties,
    // trusts exactly the store's roots (docs/operations.md).
    let java = dir.path().join("Roots.java");
    std::fs::write(&java, JAVA_ROOTS).unwrap();
    let out = Command::new("java")
        .arg(format!(
            "-Djavax.net.ssl.trustStore={}",
            current.join("b.test.p12").display()
        ))
        .args([
            "-Djavax.net.ssl.trustStoreType=PKCS12",
            "-Djavax.net.ssl.trustStorePassword=changeit",
        ])
        .arg(&java)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "java failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fps: BTreeSet<String> = stdout.lines().map(str::to_owned).collect();
    assert_eq!(fps, expect(&[b.cert.der(), b2.cert.der()]).1);

    // The wrong password is refused (the MAC is keyed with the password).
    let out = Command::new("keytool")
        .args(["-list", "-keystore"])
        .arg(current.join("a.test.p12"))
        .args(["-storetype", "PKCS12", "-storepass", "wrong-password"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "keytool accepted a wrong password");
}
