//! Test certificate factory for the sidecar tests: the shared [`TestCa`] (`spiffe_ca.rs`) issuing
//! by full SPIFFE ID, bundles and bundle maps, identity files written atomically.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};

use fedgate_federation::{BundleSet, X509Svid};

#[path = "spiffe_ca.rs"]
mod spiffe_ca;
pub use spiffe_ca::{SignedSvid as TestSvid, TestCa};

/// The identity files of one workload in a directory.
#[derive(Clone, Debug)]
pub struct IdentityFiles {
    pub dir: PathBuf,
    pub svid: PathBuf,
    pub key: PathBuf,
    pub bundle: PathBuf,
}

impl TestCa {
    /// Issues an SVID for the full ID `id`, valid from a minute ago for a day.
    pub fn issue(&self, id: &str) -> TestSvid {
        self.sign_svid_now(id)
    }

    /// Issues an SVID and writes it with this CA's bundle into `dir`.
    pub fn write_identity(&self, dir: &Path, id: &str) -> IdentityFiles {
        std::fs::create_dir_all(dir).unwrap();
        let files = IdentityFiles {
            dir: dir.to_owned(),
            svid: dir.join("svid.pem"),
            key: dir.join("svid.key"),
            bundle: dir.join("bundle.json"),
        };
        let svid = self.issue(id);
        write_atomic(&files.svid, svid.chain_pem.as_bytes());
        write_atomic(&files.key, svid.key_pem.as_bytes());
        write_atomic(&files.bundle, &self.bundle_json());
        files
    }
}

impl TestSvid {
    pub fn x509(&self) -> X509Svid {
        X509Svid::from_pem(self.chain_pem.as_bytes(), self.key_pem.as_bytes()).unwrap()
    }

    /// Replaces the SVID files of `files` (key first, then chain, each atomically).
    pub fn install(&self, files: &IdentityFiles) {
        write_atomic(&files.key, self.key_pem.as_bytes());
        write_atomic(&files.svid, self.chain_pem.as_bytes());
    }
}

/// A SPIFFE bundle map (`{"trust_domains": {"td": JWKS}}`) of the given CAs' bundles.
pub fn bundle_map_json(cas: &[&TestCa]) -> Vec<u8> {
    let set = BundleSet::from_bundles(cas.iter().map(|ca| ca.bundle())).unwrap();
    fedgate_federation::distribute::bundle_map_json(&set)
}

pub fn bundle_set(cas: &[&TestCa]) -> BundleSet {
    BundleSet::from_bundles(cas.iter().map(|ca| ca.bundle())).unwrap()
}

/// Writes `bytes` to a temporary sibling and renames it over `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp-write");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}
