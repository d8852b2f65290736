//! `ca-serve.toml`: the configuration of `fedgate ca serve` (file model → typed [`ServeConfig`]).
//!
//! Invariants: unknown keys are errors (`deny_unknown_fields`); relative paths are resolved
//! against the config file's directory; every error names the file and the key (and, for TOML
//! syntax errors, the line and column) and says what would be valid. A loaded config has at
//! least one member trust domain (each listed once), at least one policy entry, every policy
//! entry's local ID in a member trust domain, no bridge ID mapped from two local IDs, and
//! `0 < default_ttl <= max_ttl`. Checks that need
//! the CA (the bridge trust domain) happen when the server is built ([`super::Policy::new`]).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use fedgate_federation::spiffe_id::{SpiffeId, TrustDomain};
use serde::Deserialize;

use super::rate_limit::RateLimit;

/// Default lifetime of an issued bridge SVID.
pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);
/// Default upper bound of a requested lifetime.
pub const DEFAULT_MAX_TTL: Duration = Duration::from_secs(24 * 3600);
/// Default interval at which the CA directory, member bundles and endpoint SVID are re-read.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(5);
/// Default bound on concurrent connections to the issuing endpoint.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Default bound on the TLS handshake and on reading request headers.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The typed configuration of the issuing endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServeConfig {
    /// A `fedgate ca init` directory for the bridge trust domain.
    pub ca_dir: PathBuf,
    pub listen: SocketAddr,
    /// Optional plain-HTTP listener for `/healthz` and `/metrics` (the main port requires mTLS).
    pub admin_listen: Option<SocketAddr>,
    /// The endpoint's own X509-SVID (bridge trust domain) and its key.
    pub svid: PathBuf,
    pub key: PathBuf,
    pub default_ttl: Duration,
    pub max_ttl: Duration,
    pub poll_interval: Duration,
    pub handshake_timeout: Duration,
    /// Connections beyond this many are closed at once (and counted).
    pub max_connections: usize,
    /// Per-caller token bucket on `POST /v1/issue`.
    pub rate_limit: RateLimit,
    /// Last-known-good store for bundles fetched from member endpoints.
    pub state_dir: Option<PathBuf>,
    /// Member trust domains whose SVIDs may authenticate, each with its bundle source.
    pub members: Vec<Member>,
    /// `(local ID, bridge ID)` pairs, in file order.
    pub policy: Vec<(SpiffeId, SpiffeId)>,
}

/// A member trust domain and where its bundle comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub trust_domain: TrustDomain,
    pub source: MemberSource,
}

/// Where a member's bundle comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MemberSource {
    /// A SPIFFE bundle file, polled for changes.
    File(PathBuf),
    /// The member's federation endpoint, polled by the federation refresher
    /// (SPIFFE_Federation.md: trust domain, URL and profile are all explicit).
    Endpoint { url: String, profile: MemberProfile },
}

/// How a member's federation endpoint is authenticated.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MemberProfile {
    /// The endpoint presents an X509-SVID for exactly `endpoint_id`, verified with the bundle of
    /// its trust domain, starting from `bootstrap_bundle`.
    HttpsSpiffe {
        endpoint_id: SpiffeId,
        bootstrap_bundle: PathBuf,
    },
    /// Web PKI: the system roots, or only the CA certificates in `ca` (PEM).
    HttpsWeb { ca: Option<PathBuf> },
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot read the config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{path}: `{key}`: {reason}")]
    Invalid {
        path: PathBuf,
        key: String,
        reason: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileModel {
    ca_dir: PathBuf,
    listen: String,
    admin_listen: Option<String>,
    svid: PathBuf,
    key: PathBuf,
    #[serde(default, with = "humantime_serde")]
    default_ttl: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    max_ttl: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    poll_interval: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    handshake_timeout: Option<Duration>,
    max_connections: Option<usize>,
    rate_limit: Option<RateLimitModel>,
    state_dir: Option<PathBuf>,
    #[serde(default)]
    members: Vec<MemberModel>,
    #[serde(default)]
    policy: Vec<PolicyModel>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MemberModel {
    trust_domain: String,
    bundle: Option<PathBuf>,
    url: Option<String>,
    profile: Option<String>,
    endpoint_id: Option<String>,
    bootstrap_bundle: Option<PathBuf>,
    ca: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RateLimitModel {
    per_minute: Option<u32>,
    burst: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyModel {
    local: String,
    bridge: String,
}

// === impl ServeConfig ===

impl ServeConfig {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, path, base)
    }

    /// Parses `text` (the content of `path`), resolving relative paths against `base`.
    pub fn parse(text: &str, path: &Path, base: &Path) -> Result<Self, ConfigError> {
        let model: FileModel = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: path.to_path_buf(),
            message: syntax_message(text, &e),
        })?;
        let invalid = |key: String, reason: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            key,
            reason,
        };
        let addr = |key: &str, s: &str| {
            s.parse::<SocketAddr>().map_err(|_| {
                invalid(
                    key.to_string(),
                    format!("{s:?} is not an address; expected IP:PORT such as 0.0.0.0:9600"),
                )
            })
        };
        let listen = addr("listen", &model.listen)?;
        let admin_listen = model
            .admin_listen
            .as_deref()
            .map(|s| addr("admin_listen", s))
            .transpose()?;
        let default_ttl = model.default_ttl.unwrap_or(DEFAULT_TTL);
        let max_ttl = model.max_ttl.unwrap_or(DEFAULT_MAX_TTL);
        if default_ttl.is_zero() {
            return Err(invalid(
                "default_ttl".into(),
                "must be longer than zero".into(),
            ));
        }
        if default_ttl > max_ttl {
            return Err(invalid(
                "default_ttl".into(),
                format!(
                    "{} is longer than max_ttl {}",
                    humantime::format_duration(default_ttl),
                    humantime::format_duration(max_ttl)
                ),
            ));
        }
        let poll_interval = model.poll_interval.unwrap_or(DEFAULT_POLL_INTERVAL);
        let handshake_timeout = model.handshake_timeout.unwrap_or(DEFAULT_HANDSHAKE_TIMEOUT);
        for (key, d) in [
            ("poll_interval", poll_interval),
            ("handshake_timeout", handshake_timeout),
        ] {
            if d.is_zero() {
                return Err(invalid(key.into(), "must be longer than zero".into()));
            }
        }

        let max_connections = model.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
        if max_connections == 0 {
            return Err(invalid(
                "max_connections".into(),
                "must be at least 1".into(),
            ));
        }

        let rate_limit = match &model.rate_limit {
            None => RateLimit::default(),
            Some(r) => {
                let d = RateLimit::default();
                let limit = RateLimit {
                    per_minute: r.per_minute.unwrap_or(d.per_minute),
                    burst: r.burst.unwrap_or(d.burst),
                };
                for (key, v, default) in [
                    ("rate_limit.per_minute", limit.per_minute, d.per_minute),
                    ("rate_limit.burst", limit.burst, d.burst),
                ] {
                    if v == 0 {
                        return Err(invalid(
                            key.into(),
                            format!("must be at least 1 (default {default})"),
                        ));
                    }
                }
                limit
            }
        };

        if model.members.is_empty() {
            return Err(invalid(
                "members".into(),
                "no [[members]]: list each trust domain whose gateways may request bridge SVIDs, \
                 with its bundle file"
                    .into(),
            ));
        }
        let mut members = Vec::with_capacity(model.members.len());
        let mut seen = BTreeSet::new();
        for (i, m) in model.members.into_iter().enumerate() {
            let key = format!("members[{i}].trust_domain");
            let td = TrustDomain::new(&m.trust_domain)
                .map_err(|e| invalid(key.clone(), format!("{:?}: {e}", m.trust_domain)))?;
            if !seen.insert(td.clone()) {
                return Err(invalid(
                    key,
                    format!("trust domain {td} is listed twice; list each member once"),
                ));
            }
            let source = member_source(i, m, base).map_err(|(k, r)| invalid(k, r))?;
            members.push(Member {
                trust_domain: td,
                source,
            });
        }

        if model.policy.is_empty() {
            return Err(invalid(
                "policy".into(),
                "no [[policy]]: add one entry per gateway mapping its local ID to its bridge ID \
                 (without one, every request is refused)"
                    .into(),
            ));
        }
        let mut policy = Vec::with_capacity(model.policy.len());
        let mut locals = BTreeSet::new();
        // Bridge ID -> (index, local ID) of its first mapping: the policy is one-to-one.
        let mut bridges: BTreeMap<SpiffeId, (usize, SpiffeId)> = BTreeMap::new();
        for (i, p) in model.policy.into_iter().enumerate() {
            let parse = |field: &str, s: &str| {
                SpiffeId::parse(s)
                    .map_err(|e| invalid(format!("policy[{i}].{field}"), format!("{s:?}: {e}")))
            };
            let local = parse("local", &p.local)?;
            let bridge = parse("bridge", &p.bridge)?;
            if !seen.contains(local.trust_domain()) {
                return Err(invalid(
                    format!("policy[{i}].local"),
                    format!(
                        "{local} is not in a member trust domain; add a [[members]] entry for {}",
                        local.trust_domain()
                    ),
                ));
            }
            if !locals.insert(local.clone()) {
                return Err(invalid(
                    format!("policy[{i}].local"),
                    format!("{local} is mapped twice; each local ID maps to one bridge ID"),
                ));
            }
            if let Some((j, first)) = bridges.get(&bridge) {
                return Err(invalid(
                    format!("policy[{i}].bridge"),
                    format!(
                        "{bridge} is already the bridge ID of {first} (policy[{j}]); {local} and \
                         {first} would each be able to obtain the other's bridge identity: give \
                         each local ID its own bridge ID"
                    ),
                ));
            }
            bridges.insert(bridge.clone(), (i, local.clone()));
            policy.push((local, bridge));
        }

        Ok(Self {
            ca_dir: base.join(model.ca_dir),
            listen,
            admin_listen,
            svid: base.join(model.svid),
            key: base.join(model.key),
            default_ttl,
            max_ttl,
            poll_interval,
            handshake_timeout,
            max_connections,
            rate_limit,
            state_dir: model.state_dir.map(|d| base.join(d)),
            members,
            policy,
        })
    }

    /// Whether any member's bundle comes from a federation endpoint.
    pub fn has_federated_members(&self) -> bool {
        self.members
            .iter()
            .any(|m| matches!(m.source, MemberSource::Endpoint { .. }))
    }
}

/// The bundle source of member `i`: exactly one of `bundle` (a file) or `url` (+ `profile`).
/// Errors are `(key, reason)`.
fn member_source(i: usize, m: MemberModel, base: &Path) -> Result<MemberSource, (String, String)> {
    let key = |k: &str| format!("members[{i}].{k}");
    match (m.bundle, m.url) {
        (Some(_), Some(_)) => Err((
            key("url"),
            "give either `bundle` (a file) or `url` (a federation endpoint), not both".into(),
        )),
        (None, None) => Err((
            key("bundle"),
            "missing: give `bundle` (a SPIFFE bundle file) or `url` + `profile` (the member's \
             federation endpoint)"
                .into(),
        )),
        (Some(bundle), None) => {
            for (k, set) in [
                ("profile", m.profile.is_some()),
                ("endpoint_id", m.endpoint_id.is_some()),
                ("bootstrap_bundle", m.bootstrap_bundle.is_some()),
                ("ca", m.ca.is_some()),
            ] {
                if set {
                    return Err((key(k), "applies only to a member with `url`".into()));
                }
            }
            Ok(MemberSource::File(base.join(bundle)))
        }
        (None, Some(url)) => {
            let parsed: reqwest::Url = url
                .parse()
                .map_err(|e| (key("url"), format!("{url:?} is not a URL: {e}")))?;
            if parsed.scheme() != "https"
                || !parsed.username().is_empty()
                || parsed.password().is_some()
            {
                return Err((
                    key("url"),
                    format!(
                        "{url} must be an https URL without userinfo (SPIFFE_Federation.md §5.2)"
                    ),
                ));
            }
            let profile = match m.profile.as_deref() {
                Some("https_spiffe") => {
                    if m.ca.is_some() {
                        return Err((key("ca"), "applies to profile https_web only".into()));
                    }
                    let (Some(id), Some(bootstrap)) = (m.endpoint_id, m.bootstrap_bundle) else {
                        return Err((
                            key("endpoint_id"),
                            "profile https_spiffe needs `endpoint_id` and `bootstrap_bundle` \
                             (neither is inferred from the URL or the trust domain)"
                                .into(),
                        ));
                    };
                    let endpoint_id = SpiffeId::parse(&id)
                        .map_err(|e| (key("endpoint_id"), format!("{id:?}: {e}")))?;
                    MemberProfile::HttpsSpiffe {
                        endpoint_id,
                        bootstrap_bundle: base.join(bootstrap),
                    }
                }
                Some("https_web") => {
                    if m.endpoint_id.is_some() || m.bootstrap_bundle.is_some() {
                        return Err((
                            key("endpoint_id"),
                            "`endpoint_id` and `bootstrap_bundle` apply to profile https_spiffe only"
                                .into(),
                        ));
                    }
                    MemberProfile::HttpsWeb {
                        ca: m.ca.map(|c| base.join(c)),
                    }
                }
                Some(other) => {
                    return Err((
                        key("profile"),
                        format!("{other:?} is not a profile; use https_spiffe or https_web"),
                    ))
                }
                None => {
                    return Err((
                        key("profile"),
                        "missing: a member with `url` needs `profile` = https_spiffe or https_web"
                            .into(),
                    ))
                }
            };
            Ok(MemberSource::Endpoint { url, profile })
        }
    }
}

/// One line: `line L, column C: <toml's message>` (the message names the offending key).
fn syntax_message(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim_end().replace('\n', " ");
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("line {line}, column {column}: {message}")
        }
        None => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
ca_dir = "bridge-ca"
listen = "127.0.0.1:9600"
svid = "ca-endpoint/svid.pem"
key = "ca-endpoint/svid.key"
default_ttl = "1h"
max_ttl = "24h"
[[members]]
trust_domain = "cluster-a.demo"
bundle = "cluster-a-bundle.json"
[[members]]
trust_domain = "cluster-b.demo"
bundle = "/abs/cluster-b-bundle.json"
[[policy]]
local = "spiffe://cluster-a.demo/ns/fedgate/sa/gateway"
bridge = "spiffe://bridge.demo/gateway/cluster-a"
"#;

    fn parse(text: &str) -> Result<ServeConfig, ConfigError> {
        ServeConfig::parse(
            text,
            Path::new("/etc/fg/ca-serve.toml"),
            Path::new("/etc/fg"),
        )
    }

    #[test]
    fn brief_example_parses_with_resolved_paths_and_defaults() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.ca_dir, Path::new("/etc/fg/bridge-ca"));
        assert_eq!(c.svid, Path::new("/etc/fg/ca-endpoint/svid.pem"));
        assert_eq!(
            c.members[0].source,
            MemberSource::File("/etc/fg/cluster-a-bundle.json".into())
        );
        assert_eq!(
            c.members[1].source,
            MemberSource::File("/abs/cluster-b-bundle.json".into())
        );
        assert!(!c.has_federated_members());
        assert_eq!(c.default_ttl, DEFAULT_TTL);
        assert_eq!(c.max_ttl, DEFAULT_MAX_TTL);
        assert_eq!(c.poll_interval, DEFAULT_POLL_INTERVAL);
        assert_eq!(c.admin_listen, None);
        assert_eq!(c.policy.len(), 1);
    }

    #[test]
    fn errors_name_the_key_and_the_fix() {
        let cases: Vec<(String, &str, &str)> = vec![
            (
                GOOD.replace("listen =", "lisen ="),
                "lisen",
                "unknown field",
            ),
            (
                GOOD.replace("127.0.0.1:9600", "localhost"),
                "`listen`",
                "IP:PORT",
            ),
            (
                GOOD.replace("default_ttl = \"1h\"", "default_ttl = \"48h\""),
                "`default_ttl`",
                "max_ttl",
            ),
            (
                GOOD.replace("default_ttl = \"1h\"", "default_ttl = \"0s\""),
                "`default_ttl`",
                "zero",
            ),
            (
                GOOD.replace("default_ttl = \"1h\"", "default_ttl = \"soon\""),
                "line 6, column 15",
                "soon",
            ),
            (
                GOOD.replace("cluster-b.demo", "cluster-a.demo"),
                "`members[1].trust_domain`",
                "twice",
            ),
            (
                GOOD.replace("\"cluster-a.demo\"", "\"Cluster-A\""),
                "`members[0].trust_domain`",
                "Cluster-A",
            ),
            (
                GOOD.replace("spiffe://cluster-a.demo/ns", "spiffe://cluster-c.demo/ns"),
                "`policy[0].local`",
                "add a [[members]] entry for cluster-c.demo",
            ),
            (
                GOOD.replace(
                    "spiffe://bridge.demo/gateway",
                    "spiffe://bridge.demo/gateway/",
                ),
                "`policy[0].bridge`",
                "empty path segment",
            ),
            (
                GOOD.split("[[policy]]").next().unwrap().to_string(),
                "`policy`",
                "no [[policy]]",
            ),
            (
                GOOD.split("[[members]]").next().unwrap().to_string(),
                "`members`",
                "no [[members]]",
            ),
            (
                format!(
                    "{GOOD}[[policy]]\nlocal = \"spiffe://cluster-a.demo/ns/fedgate/sa/gateway\"\n\
                     bridge = \"spiffe://bridge.demo/gateway/x\"\n"
                ),
                "`policy[1].local`",
                "mapped twice",
            ),
            (
                format!(
                    "{GOOD}[[policy]]\nlocal = \"spiffe://cluster-b.demo/ns/fedgate/sa/gateway\"\n\
                     bridge = \"spiffe://bridge.demo/gateway/cluster-a\"\n"
                ),
                "`policy[1].bridge`",
                "spiffe://bridge.demo/gateway/cluster-a is already the bridge ID of \
                 spiffe://cluster-a.demo/ns/fedgate/sa/gateway (policy[0]); \
                 spiffe://cluster-b.demo/ns/fedgate/sa/gateway",
            ),
        ];
        for (text, key, hint) in cases {
            let msg = parse(&text).unwrap_err().to_string();
            assert!(msg.starts_with("/etc/fg/ca-serve.toml"), "{msg}");
            assert!(msg.contains(key), "want key {key}: {msg}");
            assert!(msg.contains(hint), "want hint {hint}: {msg}");
        }
    }

    #[test]
    fn optional_keys() {
        assert_eq!(parse(GOOD).unwrap().rate_limit, RateLimit::default());
        let text = format!(
            "admin_listen = \"127.0.0.1:0\"\npoll_interval = \"250ms\"\n\
             handshake_timeout = \"2s\"\nmax_connections = 8\n\
             rate_limit = {{ per_minute = 6, burst = 2 }}\n{GOOD}"
        );
        let c = parse(&text).unwrap();
        assert_eq!(
            c.rate_limit,
            RateLimit {
                per_minute: 6,
                burst: 2
            }
        );
        let burst_only = parse(&format!("rate_limit = {{ burst = 3 }}\n{GOOD}")).unwrap();
        assert_eq!(burst_only.rate_limit.per_minute, 60);
        assert_eq!(burst_only.rate_limit.burst, 3);
        for (bad, key) in [
            ("rate_limit = { per_minute = 0 }", "`rate_limit.per_minute`"),
            ("rate_limit = { burst = 0 }", "`rate_limit.burst`"),
            ("rate_limit = { per_second = 1 }", "per_second"),
        ] {
            let msg = parse(&format!("{bad}\n{GOOD}")).unwrap_err().to_string();
            assert!(msg.contains(key), "{bad}: {msg}");
        }
        assert_eq!(c.admin_listen, Some("127.0.0.1:0".parse().unwrap()));
        assert_eq!(c.poll_interval, Duration::from_millis(250));
        assert_eq!(c.handshake_timeout, Duration::from_secs(2));
        assert_eq!(c.max_connections, 8);
    }

    #[test]
    fn federated_members() {
        let fed = GOOD.replace(
            "bundle = \"/abs/cluster-b-bundle.json\"",
            "url = \"https://b.example:8443/\"\nprofile = \"https_spiffe\"\n\
             endpoint_id = \"spiffe://cluster-b.demo/bundle-endpoint\"\n\
             bootstrap_bundle = \"b-bootstrap.json\"",
        );
        let c = parse(&format!("state_dir = \"state\"\n{fed}")).unwrap();
        assert!(c.has_federated_members());
        assert_eq!(c.state_dir, Some(PathBuf::from("/etc/fg/state")));
        assert_eq!(
            c.members[1].source,
            MemberSource::Endpoint {
                url: "https://b.example:8443/".into(),
                profile: MemberProfile::HttpsSpiffe {
                    endpoint_id: SpiffeId::parse("spiffe://cluster-b.demo/bundle-endpoint")
                        .unwrap(),
                    bootstrap_bundle: "/etc/fg/b-bootstrap.json".into(),
                },
            }
        );
        let web = GOOD.replace(
            "bundle = \"/abs/cluster-b-bundle.json\"",
            "url = \"https://b.example/\"\nprofile = \"https_web\"\nca = \"roots.pem\"",
        );
        assert_eq!(
            parse(&web).unwrap().members[1].source,
            MemberSource::Endpoint {
                url: "https://b.example/".into(),
                profile: MemberProfile::HttpsWeb {
                    ca: Some("/etc/fg/roots.pem".into())
                },
            }
        );

        let b_line = "bundle = \"/abs/cluster-b-bundle.json\"";
        let cases = [
            (
                format!("{b_line}\nurl = \"https://b.example/\""),
                "members[1].url",
                "not both",
            ),
            (String::new(), "members[1].bundle", "missing"),
            (
                format!("{b_line}\nprofile = \"https_web\""),
                "members[1].profile",
                "only to a member with `url`",
            ),
            (
                "url = \"http://b.example/\"\nprofile = \"https_web\"".into(),
                "members[1].url",
                "https URL",
            ),
            (
                "url = \"https://b.example/\"".into(),
                "members[1].profile",
                "missing",
            ),
            (
                "url = \"https://b.example/\"\nprofile = \"spiffe\"".into(),
                "members[1].profile",
                "https_spiffe or https_web",
            ),
            (
                "url = \"https://b.example/\"\nprofile = \"https_spiffe\"".into(),
                "members[1].endpoint_id",
                "bootstrap_bundle",
            ),
            (
                "url = \"https://b.example/\"\nprofile = \"https_web\"\n\
                 endpoint_id = \"spiffe://cluster-b.demo/e\""
                    .into(),
                "members[1].endpoint_id",
                "https_spiffe only",
            ),
        ];
        for (member, key, hint) in cases {
            let text = GOOD.replace(b_line, &member);
            let msg = parse(&text).unwrap_err().to_string();
            assert!(
                msg.contains(key) && msg.contains(hint),
                "{key}/{hint}: {msg}"
            );
        }
    }

    mod props {
        use proptest::prelude::*;

        use super::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(128))]

            /// Arbitrary text never panics the parser.
            #[test]
            fn arbitrary_text_never_panics(text in "\\PC{0,300}") {
                let _ = parse(&text);
            }

            /// Any single-character corruption of a valid file parses or fails with the file
            /// named, never panics.
            #[test]
            fn corrupted_good_file(pos in any::<proptest::sample::Index>(), c in any::<char>()) {
                let mut chars: Vec<char> = GOOD.chars().collect();
                let i = pos.index(chars.len());
                chars[i] = c;
                let text: String = chars.into_iter().collect();
                if let Err(e) = parse(&text) {
                    prop_assert!(e.to_string().starts_with("/etc/fg/ca-serve.toml"));
                }
            }
        }
    }
}
