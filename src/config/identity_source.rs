//! `[identity]` of the gateway file: the SVID, key and bundle files (`source = "files"`, the
//! default), or a SPIFFE Workload API socket (`source = "workload_api"`, `socket =
//! "unix:///…"`), whose `FetchX509SVID` stream then supplies the SVID, the local bundle and the
//! federated bundles (`crate::identity::workload_api`).
//!
//! The sidecar's `[identity]` (`super::sidecar`) has the same two sources and the same
//! `source`/`socket` keys; both files check them with [`files_keys`] and [`workload_api_keys`]
//! here, so the two spell and refuse them identically.
//!
//! Invariant: exactly one of the two is configured: file keys with `source = "workload_api"`,
//! or `socket` with files, are errors naming the key.

use std::path::PathBuf;

use super::file::{FileIdentity, FileIdentitySource};
use super::source::Source;
use super::values::Cx;
use super::{ConfigError, IdentityConfig};

/// The message of a missing file key of `[identity]` with `source = "files"` (the default).
pub(super) const MISSING_FILE_KEY: &str = "is missing: [identity] needs svid, key and bundle \
     files, or source = \"workload_api\" and a socket";

/// `[identity]` with `source = "files"` (the default): `socket` must be absent.
pub(super) fn files_keys(src: &Source<'_>, socket: Option<&str>) -> Result<(), ConfigError> {
    match socket {
        Some(_) => Err(src.error(
            "identity.socket",
            "is only used with source = \"workload_api\"",
        )),
        None => Ok(()),
    }
}

/// `[identity]` with `source = "workload_api"`: every one of `file_keys` (a key of the table
/// and whether it is present) must be absent, and `socket` a Workload API address; returns
/// the socket's path.
pub(super) fn workload_api_keys(
    src: &Source<'_>,
    file_keys: &[(&str, bool)],
    socket: Option<&str>,
) -> Result<PathBuf, ConfigError> {
    for (key, present) in file_keys {
        if *present {
            return Err(src.error(
                format!("identity.{key}"),
                "is not used with source = \"workload_api\": the SVID and bundles \
                 come from the Workload API socket",
            ));
        }
    }
    let Some(addr) = socket else {
        return Err(src.error(
            "identity.socket",
            "is missing: write the Workload API address, e.g. \
             \"unix:///run/spire/agent.sock\"",
        ));
    };
    workload_api_socket(addr).ok_or_else(|| {
        src.error(
            "identity.socket",
            format!(
                "{addr:?} is not a Workload API address; write \
                 \"unix:///path/to/agent.sock\""
            ),
        )
    })
}

/// The path of a Workload API address `unix:///path` (or `unix:/path`, as go-spiffe accepts);
/// `None` if it is not one.
pub fn workload_api_socket(addr: &str) -> Option<PathBuf> {
    let path = match addr.strip_prefix("unix://") {
        // `unix://host/path` names a host, which a Unix socket cannot have.
        Some(rest) => rest,
        None => addr.strip_prefix("unix:")?,
    };
    let ok = path.starts_with('/') && path.len() > 1 && !path.contains(['?', '#', '\0']);
    ok.then(|| PathBuf::from(path))
}

impl Cx<'_> {
    /// The files, or the Workload API socket, of `[identity]`.
    pub(super) fn identity_source(
        &self,
        i: &FileIdentity,
    ) -> Result<(Option<IdentityConfig>, Option<PathBuf>), ConfigError> {
        match i.source {
            FileIdentitySource::Files => {
                files_keys(self.src, i.socket.as_deref())?;
                let required = |key: &str, v: &Option<String>| {
                    v.as_deref()
                        .map(|p| self.nonempty_path(key, p))
                        .unwrap_or_else(|| Err(self.err(key, MISSING_FILE_KEY)))
                };
                Ok((
                    Some(IdentityConfig {
                        svid: required("identity.svid", &i.svid)?,
                        key: required("identity.key", &i.key)?,
                        bundle: required("identity.bundle", &i.bundle)?,
                    }),
                    None,
                ))
            }
            FileIdentitySource::WorkloadApi => {
                let file_keys = [
                    ("svid", i.svid.is_some()),
                    ("key", i.key.is_some()),
                    ("bundle", i.bundle.is_some()),
                ];
                let path = workload_api_keys(self.src, &file_keys, i.socket.as_deref())?;
                Ok((None, Some(path)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;

    const HEAD: &str = "trust_domain = \"cluster-a.test\"\n\
        [[listeners]]\nname = \"e\"\nlisten = \"127.0.0.1:0\"\nkind = \"passthrough\"\n\
        [[listeners.routes]]\nsni = \"*.cluster-b.test\"\nupstreams = [\"127.0.0.1:1\"]\n";

    fn parse(identity: &str) -> Result<Config, ConfigError> {
        Config::parse(
            &format!("{HEAD}[identity]\n{identity}"),
            Path::new("/etc/fedgate/gw.toml"),
        )
    }

    #[test]
    fn a_workload_api_identity() {
        let c = parse("source = \"workload_api\"\nsocket = \"unix:///run/spire/agent.sock\"\n")
            .unwrap();
        assert!(c.identity.is_none());
        assert_eq!(
            c.identity_socket,
            Some(PathBuf::from("/run/spire/agent.sock"))
        );
        let files = parse("svid = \"a.pem\"\nkey = \"a.key\"\nbundle = \"b.json\"\n").unwrap();
        assert_eq!(
            files.identity.unwrap().svid,
            PathBuf::from("/etc/fedgate/a.pem")
        );
        assert_eq!(files.identity_socket, None);
    }

    /// A bridge listener terminates and re-originates with the local SVID, whichever source
    /// supplies it (the runtime reads it from the source's channel either way).
    #[test]
    fn bridge_listeners_take_the_workload_api_identity() {
        let src = "trust_domain = \"cluster-a.test\"\n\
            [identity]\nsource = \"workload_api\"\nsocket = \"unix:///run/spire/agent.sock\"\n\
            [bridge]\ntrust_domain = \"bridge.test\"\nsvid = \"b.pem\"\nkey = \"b.key\"\n\
            bundle = \"b.json\"\n\
            [[listeners]]\nname = \"out\"\nlisten = \"127.0.0.1:0\"\nkind = \"bridge-egress\"\n\
            [[listeners.routes]]\nsni = \"echo.cluster-b.test\"\nupstreams = [\"127.0.0.1:1\"]\n\
            peer_id = \"spiffe://bridge.test/gw/b\"\nallow = [\"spiffe://cluster-a.test/app\"]\n";
        let c = Config::parse(src, Path::new("/etc/fedgate/gw.toml")).unwrap();
        assert!(c.identity.is_none() && c.identity_socket.is_some());
        // Without any identity the error names both ways to give one.
        let none = src.replace(
            "[identity]\nsource = \"workload_api\"\nsocket = \"unix:///run/spire/agent.sock\"\n",
            "",
        );
        let e = Config::parse(&none, Path::new("/etc/fedgate/gw.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("listeners[0].kind") && e.contains("workload_api"),
            "{e}"
        );
    }

    #[test]
    fn mixed_or_missing_keys_are_refused() {
        let cases = [
            (
                "source = \"workload_api\"\n",
                "identity.socket",
                "is missing",
            ),
            (
                "source = \"workload_api\"\nsocket = \"/run/a.sock\"\n",
                "identity.socket",
                "not a Workload API address",
            ),
            (
                "source = \"workload_api\"\nsocket = \"unix:///a.sock\"\nsvid = \"a.pem\"\n",
                "identity.svid",
                "not used with source",
            ),
            (
                "svid = \"a.pem\"\nkey = \"a.key\"\nbundle = \"b.json\"\nsocket = \"unix:///a\"\n",
                "identity.socket",
                "only used with",
            ),
            (
                "svid = \"a.pem\"\nkey = \"a.key\"\n",
                "identity.bundle",
                "is missing",
            ),
            ("source = \"spire\"\n", "identity.source", "workload_api"),
        ];
        for (src, key, what) in cases {
            let e = parse(src).unwrap_err().to_string();
            assert!(e.contains(key) && e.contains(what), "{src}: {e}");
        }
    }

    #[test]
    fn socket_addresses() {
        assert_eq!(
            workload_api_socket("unix:///run/a.sock"),
            Some(PathBuf::from("/run/a.sock"))
        );
        assert_eq!(
            workload_api_socket("unix:/run/a.sock"),
            Some(PathBuf::from("/run/a.sock"))
        );
        for bad in [
            "/run/a.sock",
            "unix://host/a",
            "unix:///",
            "unix:a",
            "tcp://1.2.3.4:1",
            "unix:///a?x",
        ] {
            assert_eq!(workload_api_socket(bad), None, "{bad}");
        }
    }
}
