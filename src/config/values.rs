//! Small validated values of the config file: durations, addresses, trust domains, SPIFFE IDs,
//! allow lists, paths and counts, each parsed from the string or integer the file holds.
//!
//! Invariants: every parser either returns a checked value or an error naming the key it was
//! given (located by `super::source`) and saying what would be valid; relative paths resolve
//! against the config file's directory; durations are never zero.

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use fedgate_dataplane::upstreams::Endpoint;
use fedgate_federation::tls::Authorizer;
use fedgate_federation::{SpiffeId, TrustDomain};

use super::source::{ConfigError, Source};

/// The conversion context: the source being converted, for error positions and paths.
pub(super) struct Cx<'a> {
    pub src: &'a Source<'a>,
}

impl Cx<'_> {
    /// An error about `key`, located in the file.
    pub fn err(&self, key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        self.src.error(key, message)
    }

    /// `t` as a path, resolved against the config file's directory.
    pub fn path(&self, t: &str) -> PathBuf {
        let p = Path::new(t);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.src.file().parent().unwrap_or(Path::new("")).join(p)
        }
    }

    pub fn nonempty_path(&self, key: &str, t: &str) -> Result<PathBuf, ConfigError> {
        if t.trim().is_empty() {
            return Err(self.err(key, "must be a file path, not empty"));
        }
        Ok(self.path(t))
    }

    /// A duration such as `5s`; `default` when the key is absent.
    pub fn duration(
        &self,
        key: &str,
        t: Option<&String>,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        let Some(t) = t else { return Ok(default) };
        let d = humantime::parse_duration(t).map_err(|e| {
            self.err(
                key,
                format!("`{t}` is not a duration ({e}); write e.g. \"5s\", \"250ms\" or \"5m\""),
            )
        })?;
        if d.is_zero() {
            return Err(self.err(key, "must be greater than zero"));
        }
        Ok(d)
    }

    /// An integer within `range`, else an error with `message`; `default` when absent.
    pub fn count(
        &self,
        key: &str,
        n: Option<i64>,
        range: RangeInclusive<usize>,
        default: usize,
        message: impl FnOnce() -> String,
    ) -> Result<usize, ConfigError> {
        match n {
            None => Ok(default),
            Some(n) => usize::try_from(n)
                .ok()
                .filter(|n| range.contains(n))
                .ok_or_else(|| self.err(key, message())),
        }
    }

    pub fn socket_addr(&self, key: &str, t: &str) -> Result<SocketAddr, ConfigError> {
        t.parse().map_err(|_| {
            self.err(
                key,
                format!(
                    "`{t}` is not an IP:port address; write e.g. \"0.0.0.0:15443\" or \
                     \"[::]:15443\""
                ),
            )
        })
    }

    pub fn trust_domain(&self, key: &str, t: &str) -> Result<TrustDomain, ConfigError> {
        TrustDomain::new(t).map_err(|e| {
            self.err(
                key,
                format!("`{t}` is not a valid trust domain ({e}); write e.g. \"cluster-a.test\""),
            )
        })
    }

    pub fn spiffe_id(&self, key: &str, t: &str) -> Result<SpiffeId, ConfigError> {
        SpiffeId::parse(t)
            .map_err(|e| self.err(key, format!("`{t}` is not a valid SPIFFE ID ({e})")))
    }

    /// An allow list of SPIFFE ID patterns; absent or empty denies everyone.
    pub fn allow_list(
        &self,
        key: &str,
        list: Option<&[String]>,
    ) -> Result<Authorizer, ConfigError> {
        let mut patterns = Vec::new();
        for (i, t) in list.unwrap_or_default().iter().enumerate() {
            let p = Authorizer::from_pattern(t).map_err(|e| {
                self.err(
                    format!("{key}[{i}]"),
                    format!(
                        "{e}; write \"spiffe://td/exact/id\", \"spiffe://td/prefix/*\", \
                         \"spiffe://td/*\" or \"*\""
                    ),
                )
            })?;
            patterns.push(p);
        }
        Ok(Authorizer::any_of(patterns))
    }
}

/// Parses an upstream address as the config file writes it: `host:port` or `[v6]:port`, with
/// a DNS host name (lowercased) or an IP address and a non-zero port. Stricter than
/// [`Endpoint::parse`], which takes any non-empty host.
pub fn parse_upstream(s: &str) -> Option<Endpoint> {
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Some(Endpoint::from(addr));
    }
    let (host, port) = s.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let valid_host = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        });
    (valid_host && port != 0).then(|| Endpoint::new(host.to_ascii_lowercase(), port))
}
