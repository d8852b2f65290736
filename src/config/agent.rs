//! The Workload API agent's configuration file (`agent.toml`, `fedgate agent`): a serde file
//! model that refuses unknown keys, converted into a typed [`Config`] ("parse, don't
//! validate"). Errors read `file:line:col: \`key\`: message`, as for the other config files.
//! The keys are documented in docs/workload-api.md.
//!
//! Invariants:
//! * every path is absolute or relative to the process's working directory (paths in the
//!   file are resolved against the file's own directory);
//! * the entries are checked `Entries` ([`super::entries`], pure data and logic): at least one
//!   entry, each with at least one valid selector and a SPIFFE ID with a path in
//!   `trust_domain`;
//! * `svid_ttl` is at least [`MIN_SVID_TTL`] and `poll_interval` is above zero.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use fedgate_federation::{SpiffeId, TrustDomain};
use serde::Deserialize;

use super::entries::{Entries, Entry, EntryError, Selector};
pub use super::source::ConfigError;
use super::source::{self, DirRelative, Source};
use super::values::Cx;
pub use super::LogFormat;

/// Default lifetime of a minted SVID (re-minted at half of it).
pub const DEFAULT_SVID_TTL: Duration = Duration::from_secs(3600);
/// The shortest `svid_ttl` accepted: shorter SVIDs would be re-minted more often than the
/// clocks of the workloads using them can be trusted to agree.
pub const MIN_SVID_TTL: Duration = Duration::from_secs(60);
/// Default poll interval for the CA directory and the federated bundle map.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// The validated agent configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub trust_domain: TrustDomain,
    /// Where the Workload API's Unix socket is created.
    pub socket: PathBuf,
    /// The CA directory (`fedgate ca init`) the SVIDs are minted from.
    pub ca: PathBuf,
    pub svid_ttl: Duration,
    /// A SPIFFE bundle map of federated trust domains (as the gateway distributes it).
    pub federated_bundles: Option<PathBuf>,
    pub poll_interval: Duration,
    /// The CLI flag `--log-format` overrides it.
    pub log_format: Option<LogFormat>,
    pub entries: Entries,
}

mod file {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(in crate::config) struct FileConfig {
        pub(super) trust_domain: String,
        pub(super) socket: PathBuf,
        pub(super) ca: PathBuf,
        #[serde(default, with = "humantime_serde")]
        pub(super) svid_ttl: Option<Duration>,
        pub(super) federated_bundles: Option<PathBuf>,
        #[serde(default, with = "humantime_serde")]
        pub(super) poll_interval: Option<Duration>,
        pub(super) log_format: Option<super::LogFormat>,
        #[serde(default)]
        pub(super) entry: Vec<FileEntry>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct FileEntry {
        pub(super) spiffe_id: String,
        #[serde(default)]
        pub(super) selectors: Vec<String>,
    }
}

use file::{FileConfig, FileEntry};

// === impl Config ===

impl Config {
    /// Reads and validates `path`; relative paths inside resolve against its directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        source::load(path)
    }

    /// Parses `text`; `base` is the directory relative paths resolve against and `origin`
    /// names the file in errors.
    pub fn parse(text: &str, base: &Path, origin: &Path) -> Result<Self, ConfigError> {
        source::parse(text, base, origin)
    }
}

impl DirRelative for Config {
    type File = FileConfig;

    fn check(src: &Source<'_>, file: FileConfig, base: &Path) -> Result<Self, ConfigError> {
        Validator { src }.config(file, base)
    }
}

/// Converts the file model into a `Config`, naming the offending key in every error.
struct Validator<'a> {
    src: &'a Source<'a>,
}

impl Validator<'_> {
    fn invalid(&self, key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        self.src.error(key, message)
    }

    fn config(&self, file: FileConfig, base: &Path) -> Result<Config, ConfigError> {
        let trust_domain = Cx { src: self.src }.trust_domain("trust_domain", &file.trust_domain)?;
        if file.socket.as_os_str().is_empty() {
            return Err(self.invalid(
                "socket",
                "is empty: write the socket's path, e.g. \"/run/fedgate/agent.sock\"",
            ));
        }
        let svid_ttl = file.svid_ttl.unwrap_or(DEFAULT_SVID_TTL);
        if svid_ttl < MIN_SVID_TTL {
            return Err(self.invalid(
                "svid_ttl",
                format!(
                    "{} is too short: the minimum is {} (e.g. \"1h\")",
                    humantime::format_duration(svid_ttl),
                    humantime::format_duration(MIN_SVID_TTL)
                ),
            ));
        }
        let poll_interval = file.poll_interval.unwrap_or(DEFAULT_POLL_INTERVAL);
        if poll_interval.is_zero() {
            return Err(self.invalid("poll_interval", "must be greater than zero (e.g. \"1s\")"));
        }
        if file.entry.is_empty() {
            return Err(self.invalid(
                "entry",
                "no entry: add at least one [[entry]] with a spiffe_id and selectors",
            ));
        }
        let entries = file
            .entry
            .into_iter()
            .enumerate()
            .map(|(i, e)| self.entry(i, e, &trust_domain))
            .collect::<Result<Vec<_>, _>>()?;
        let entries = Entries::new(trust_domain.clone(), entries).map_err(|e: EntryError| {
            self.invalid(format!("entry[{}]", e.index()), e.to_string())
        })?;
        Ok(Config {
            trust_domain,
            socket: base.join(file.socket),
            ca: base.join(file.ca),
            svid_ttl,
            federated_bundles: file.federated_bundles.map(|p| base.join(p)),
            poll_interval,
            log_format: file.log_format,
            entries,
        })
    }

    fn entry(&self, i: usize, e: FileEntry, td: &TrustDomain) -> Result<Entry, ConfigError> {
        let key = |k: &str| format!("entry[{i}].{k}");
        let spiffe_id = SpiffeId::parse(&e.spiffe_id).map_err(|err| {
            self.invalid(
                key("spiffe_id"),
                format!(
                    "{:?} is not a valid SPIFFE ID: {err} (write e.g. \"spiffe://{td}/web\")",
                    e.spiffe_id
                ),
            )
        })?;
        if !spiffe_id.member_of(td) {
            return Err(self.invalid(
                key("spiffe_id"),
                format!("{spiffe_id} is not in the agent's trust domain {td}"),
            ));
        }
        if spiffe_id.path().is_empty() {
            return Err(self.invalid(
                key("spiffe_id"),
                format!("{spiffe_id} has no path; an SVID needs one (e.g. \"spiffe://{td}/web\")"),
            ));
        }
        if e.selectors.is_empty() {
            return Err(self.invalid(
                key("selectors"),
                "is empty: list at least one selector, e.g. [\"unix:uid:1000\"] (an entry \
                 without selectors would match every local process)",
            ));
        }
        let mut selectors = BTreeSet::new();
        for (j, s) in e.selectors.iter().enumerate() {
            let selector: Selector = s.parse().map_err(|err| {
                self.invalid(format!("{}[{j}]", key("selectors")), format!("{err}"))
            })?;
            selectors.insert(selector);
        }
        Ok(Entry {
            spiffe_id,
            selectors,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
trust_domain = "cluster-a.test"
socket = "run/agent.sock"
ca = "ca"
svid_ttl = "30m"
federated_bundles = "bundles/federated.json"
log_format = "json"

[[entry]]
spiffe_id = "spiffe://cluster-a.test/web"
selectors = ["unix:uid:1000", "unix:path:/usr/bin/web"]

[[entry]]
spiffe_id = "spiffe://cluster-a.test/ops"
selectors = ["unix:gid:50"]
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(
            text,
            Path::new("/etc/fedgate"),
            Path::new("/etc/fedgate/agent.toml"),
        )
    }

    #[test]
    fn a_complete_file() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.trust_domain.as_str(), "cluster-a.test");
        assert_eq!(c.socket, PathBuf::from("/etc/fedgate/run/agent.sock"));
        assert_eq!(c.ca, PathBuf::from("/etc/fedgate/ca"));
        assert_eq!(c.svid_ttl, Duration::from_secs(1800));
        assert_eq!(
            c.federated_bundles,
            Some(PathBuf::from("/etc/fedgate/bundles/federated.json"))
        );
        assert_eq!(c.poll_interval, DEFAULT_POLL_INTERVAL);
        assert_eq!(c.log_format, Some(LogFormat::Json));
        let entries: Vec<_> = c.entries.iter().collect();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].spiffe_id.path(), "/web");
        assert!(entries[0].selectors.contains(&Selector::Uid(1000)));
    }

    #[test]
    fn defaults() {
        let c = parse(
            "trust_domain = \"a.test\"\nsocket = \"/s\"\nca = \"/ca\"\n\
             [[entry]]\nspiffe_id = \"spiffe://a.test/x\"\nselectors = [\"unix:uid:0\"]\n",
        )
        .unwrap();
        assert_eq!(c.svid_ttl, DEFAULT_SVID_TTL);
        assert_eq!(c.federated_bundles, None);
        assert_eq!(c.log_format, None);
        assert_eq!(c.socket, PathBuf::from("/s"));
    }

    fn error_of(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_the_key_and_the_line() {
        let bad_selector = GOOD.replace("unix:gid:50", "k8s:ns:default");
        let e = error_of(&bad_selector);
        assert!(e.contains("entry[1].selectors[0]"), "{e}");
        assert!(e.contains("unix:uid:<number>"), "{e}");
        assert!(e.contains("agent.toml:"), "{e}");

        let foreign = GOOD.replace("spiffe://cluster-a.test/ops", "spiffe://cluster-b.test/ops");
        let e = error_of(&foreign);
        assert!(e.contains("entry[1].spiffe_id"), "{e}");
        assert!(e.contains("not in the agent's trust domain"), "{e}");

        let no_selectors = GOOD.replace("selectors = [\"unix:gid:50\"]", "selectors = []");
        assert!(error_of(&no_selectors).contains("entry[1].selectors"));

        let short = GOOD.replace("30m", "10s");
        assert!(error_of(&short).contains("svid_ttl"));

        let typo = GOOD.replace("log_format", "logformat");
        assert!(error_of(&typo).contains("logformat"));

        let no_entries: String = GOOD.split("[[entry]]").next().unwrap().to_owned();
        assert!(error_of(&no_entries).contains("no entry"));

        let root = GOOD.replace("spiffe://cluster-a.test/ops", "spiffe://cluster-a.test");
        assert!(error_of(&root).contains("has no path"));
    }
}
