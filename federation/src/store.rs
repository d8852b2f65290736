//! Last-known-good store: one file per peer trust domain, `<dir>/<td>.json`.
//!
//! Invariants:
//! * A file is replaced atomically: written to a temporary file in the same directory,
//!   fsynced, renamed over the old one, and the directory fsynced. A crash leaves either the
//!   old or the new bundle, never a torn one.
//! * A file only ever holds the bundle of the trust domain its name and its
//!   `trust_domain` field say; a mismatch or a corrupt file is reported and ignored at load,
//!   never fatal and never used.
//! * A record says which relationship it was fetched over ([`Origin`]: URL, profile and, for
//!   `https_spiffe`, the endpoint SPIFFE ID). [`Origin::mismatch`] tells a caller whether a
//!   stored bundle belongs to the relationship configured now; a record written before the
//!   profile was recorded never matches (it is not trusted for seeding).
//!
//! File format (JSON): `{"trust_domain": "b.test", "url": "https://...",
//! "profile": "https_web" | "https_spiffe", "endpoint_spiffe_id": "spiffe://..." (https_spiffe
//! only), "fetched_at": <unix seconds>, "bundle": <the SPIFFE bundle JWKS>}`. `profile` and
//! `endpoint_spiffe_id` were added later; older files load without them.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::bundle::{Bundle, BundleError};
use crate::endpoint::{Profile, Relationship};
use crate::fs::replace_public;
use crate::spiffe_id::TrustDomain;

/// A directory of last-known-good peer bundles.
#[derive(Clone, Debug)]
pub struct Store {
    dir: PathBuf,
}

/// One stored bundle with where and when it was fetched.
#[derive(Clone, Debug)]
pub struct StoredBundle {
    pub bundle: Bundle,
    pub origin: Origin,
    pub fetched_at: SystemTime,
}

/// The relationship a stored bundle was fetched over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// The configured endpoint URL.
    pub url: String,
    /// `https_web` or `https_spiffe`; `None` in records written before it was recorded.
    pub profile: Option<String>,
    /// The pinned endpoint SPIFFE ID (`https_spiffe` only).
    pub endpoint_id: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("cannot create the state directory {path}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the state directory {path}")]
    ReadDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("stored bundle {path} is corrupt (not the expected JSON record); ignoring it")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("stored bundle {path} is not a valid bundle for {trust_domain}; ignoring it")]
    InvalidBundle {
        path: PathBuf,
        trust_domain: TrustDomain,
        #[source]
        source: BundleError,
    },
    #[error("stored bundle {path} names trust domain {found:?}, not the one in its file name; ignoring it")]
    TrustDomainMismatch { path: PathBuf, found: String },
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Record {
    trust_domain: String,
    url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    profile: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    endpoint_spiffe_id: Option<String>,
    fetched_at: u64,
    bundle: serde_json::Value,
}

// === impl Origin ===

impl Origin {
    /// The origin of bundles fetched over `rel`.
    pub fn of(rel: &Relationship) -> Self {
        Self {
            url: rel.url.to_string(),
            profile: Some(rel.profile.name().to_owned()),
            endpoint_id: match &rel.profile {
                Profile::HttpsSpiffe { endpoint_id, .. } => Some(endpoint_id.to_string()),
                _ => None,
            },
        }
    }

    /// `None` if a bundle stored with this origin belongs to `configured`; otherwise what
    /// differs, for the operator (pure).
    pub fn mismatch(&self, configured: &Origin) -> Option<String> {
        let mut diffs = Vec::new();
        if self.url != configured.url {
            diffs.push(format!(
                "endpoint URL {} (configured: {})",
                self.url, configured.url
            ));
        }
        match (&self.profile, &configured.profile) {
            (None, _) => diffs.push(
                "no recorded profile (written by an older fedgate; it will be replaced by the \
                 next successful fetch)"
                    .to_owned(),
            ),
            (Some(stored), Some(now)) if stored != now => {
                diffs.push(format!("profile {stored} (configured: {now})"))
            }
            (Some(_), None) => diffs.push("profile (configured: none)".to_owned()),
            _ => {}
        }
        if self.profile.is_some() && self.endpoint_id != configured.endpoint_id {
            let show = |id: &Option<String>| id.clone().unwrap_or_else(|| "none".to_owned());
            diffs.push(format!(
                "endpoint SPIFFE ID {} (configured: {})",
                show(&self.endpoint_id),
                show(&configured.endpoint_id)
            ));
        }
        (!diffs.is_empty()).then(|| diffs.join("; "))
    }
}

// === impl Store ===

impl Store {
    /// Opens (creating if needed, mode 0700) the state directory.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let dir = dir.into();
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(&dir)
            .map_err(|source| StoreError::CreateDir {
                path: dir.clone(),
                source,
            })?;
        Ok(Self { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file holding the bundle of `td`.
    pub fn path_for(&self, td: &TrustDomain) -> PathBuf {
        self.dir.join(format!("{}.json", td.as_str()))
    }

    /// Atomically replaces the stored bundle of `bundle`'s trust domain, fetched over
    /// `origin`.
    pub fn save(
        &self,
        bundle: &Bundle,
        origin: &Origin,
        fetched_at: SystemTime,
    ) -> Result<(), StoreError> {
        let path = self.path_for(bundle.trust_domain());
        let record = Record {
            trust_domain: bundle.trust_domain().to_string(),
            url: origin.url.clone(),
            profile: origin.profile.clone(),
            endpoint_spiffe_id: origin.endpoint_id.clone(),
            fetched_at: fetched_at
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            bundle: serde_json::from_slice(&bundle.to_json()).unwrap_or(serde_json::Value::Null),
        };
        // Serializing a Value-holding struct into memory cannot fail.
        let bytes = serde_json::to_vec_pretty(&record).unwrap_or_default();
        replace_public(&path, &bytes).map_err(|source| StoreError::Write { path, source })
    }

    /// Loads one trust domain's stored bundle, if there is a file for it.
    pub fn load(&self, td: &TrustDomain) -> Result<Option<StoredBundle>, StoreError> {
        let path = self.path_for(td);
        match std::fs::read(&path) {
            Ok(bytes) => parse_record(&path, td, &bytes).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StoreError::Read { path, source }),
        }
    }

    /// Loads every stored bundle. Unreadable or corrupt files are returned as errors (and
    /// logged) beside the good ones; they never stop the load.
    pub fn load_all(&self) -> (Vec<StoredBundle>, Vec<StoreError>) {
        let mut good = Vec::new();
        let mut bad = Vec::new();
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(source) => {
                bad.push(StoreError::ReadDir {
                    path: self.dir.clone(),
                    source,
                });
                return (good, bad);
            }
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        paths.sort();
        for path in paths {
            let stem = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_owned();
            let result = match TrustDomain::new(&stem) {
                Err(_) => Err(StoreError::TrustDomainMismatch {
                    path: path.clone(),
                    found: stem,
                }),
                Ok(td) => std::fs::read(&path)
                    .map_err(|source| StoreError::Read {
                        path: path.clone(),
                        source,
                    })
                    .and_then(|bytes| parse_record(&path, &td, &bytes)),
            };
            match result {
                Ok(s) => good.push(s),
                Err(e) => {
                    tracing::warn!(error = %crate::error_chain(&e), "ignoring stored bundle");
                    bad.push(e);
                }
            }
        }
        (good, bad)
    }
}

fn parse_record(path: &Path, td: &TrustDomain, bytes: &[u8]) -> Result<StoredBundle, StoreError> {
    let record: Record = serde_json::from_slice(bytes).map_err(|source| StoreError::Corrupt {
        path: path.to_owned(),
        source,
    })?;
    if record.trust_domain != td.as_str() {
        return Err(StoreError::TrustDomainMismatch {
            path: path.to_owned(),
            found: record.trust_domain,
        });
    }
    let json = serde_json::to_vec(&record.bundle).unwrap_or_default();
    let (bundle, _) = Bundle::parse(td, &json).map_err(|source| StoreError::InvalidBundle {
        path: path.to_owned(),
        trust_domain: td.clone(),
        source,
    })?;
    Ok(StoredBundle {
        bundle,
        origin: Origin {
            url: record.url,
            profile: record.profile,
            endpoint_id: record.endpoint_spiffe_id,
        },
        fetched_at: UNIX_EPOCH + Duration::from_secs(record.fetched_at),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrupt_and_misnamed_files_are_reported_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("state")).unwrap();
        std::fs::write(store.dir().join("a.test.json"), b"{not json").unwrap();
        std::fs::write(
            store.dir().join("b.test.json"),
            br#"{"trust_domain":"c.test","url":"u","fetched_at":0,"bundle":{"keys":[]}}"#,
        )
        .unwrap();
        std::fs::write(store.dir().join("README"), b"ignored").unwrap();
        let (good, bad) = store.load_all();
        assert!(good.is_empty());
        assert_eq!(bad.len(), 2);
        assert!(matches!(bad[0], StoreError::Corrupt { .. }), "{:?}", bad[0]);
        assert!(
            matches!(bad[1], StoreError::TrustDomainMismatch { .. }),
            "{:?}",
            bad[1]
        );
    }

    fn origin(url: &str, profile: Option<&str>, id: Option<&str>) -> Origin {
        Origin {
            url: url.to_owned(),
            profile: profile.map(str::to_owned),
            endpoint_id: id.map(str::to_owned),
        }
    }

    #[test]
    fn origin_mismatch_names_what_differs() {
        let web = origin("https://b.test/bundle", Some("https_web"), None);
        let spiffe = origin(
            "https://b.test/bundle",
            Some("https_spiffe"),
            Some("spiffe://b.test/bundle-endpoint"),
        );
        assert_eq!(web.mismatch(&web), None);
        assert_eq!(spiffe.mismatch(&spiffe), None);
        let cases = [
            (
                origin("https://evil.test/bundle", Some("https_web"), None),
                &web,
                "endpoint URL https://evil.test/bundle",
            ),
            (
                spiffe.clone(),
                &web,
                "profile https_spiffe (configured: https_web)",
            ),
            (
                web.clone(),
                &spiffe,
                "profile https_web (configured: https_spiffe)",
            ),
            (
                origin(
                    "https://b.test/bundle",
                    Some("https_spiffe"),
                    Some("spiffe://b.test/other"),
                ),
                &spiffe,
                "endpoint SPIFFE ID spiffe://b.test/other",
            ),
            (
                origin("https://b.test/bundle", None, None),
                &web,
                "no recorded profile",
            ),
        ];
        for (stored, configured, want) in cases {
            let got = stored.mismatch(configured);
            assert!(
                got.as_deref().is_some_and(|g| g.contains(want)),
                "{stored:?} vs {configured:?}: {got:?}"
            );
        }
    }

    #[test]
    fn origin_round_trips_and_old_records_load_without_profile() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let td = TrustDomain::new("b.test").unwrap();
        let o = origin(
            "https://b.test/x",
            Some("https_spiffe"),
            Some("spiffe://b.test/ep"),
        );
        store
            .save(&Bundle::new(td.clone()), &o, UNIX_EPOCH)
            .unwrap();
        assert_eq!(store.load(&td).unwrap().unwrap().origin, o);
        std::fs::write(
            store.path_for(&td),
            br#"{"trust_domain":"b.test","url":"https://b.test/x","fetched_at":5,"bundle":{"keys":[]}}"#,
        )
        .unwrap();
        let old = store.load(&td).unwrap().unwrap();
        assert_eq!(old.origin, origin("https://b.test/x", None, None));
        assert!(old.origin.mismatch(&o).is_some());
    }

    #[test]
    fn missing_file_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert!(store
            .load(&TrustDomain::new("a.test").unwrap())
            .unwrap()
            .is_none());
    }
}
