//! Workload attestation: a Unix-socket caller's kernel-reported credentials as selectors.
//!
//! The kernel reports the peer's uid, gid and pid (`SO_PEERCRED`, taken by tonic when the
//! connection is accepted); the pid's executable is read from `/proc/<pid>/exe` when a call
//! arrives. Selectors are SPIRE's unix attestor names: `unix:uid:…`, `unix:gid:…`,
//! `unix:path:…`.
//!
//! Invariants: selectors come only from the kernel (never from anything the caller sends); a
//! caller without credentials has no selectors and so matches nothing; when the executable
//! cannot be read (the process exited, or `/proc` is hidden from the agent) the caller simply
//! has no `unix:path` selector, so an entry that requires one does not match.
//!
//! Limit (as for SPIRE's unix attestor): the pid is the one that connected; if that process
//! exits and the pid is reused before the call is attested, the path read is the new
//! process's. Entries that need a strong binding should also select on the uid.

use std::collections::BTreeSet;
use std::path::PathBuf;

use tokio::net::unix::UCred;

use crate::config::entries::Selector;

/// What the kernel told us about a caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<i32>,
    /// The caller's executable, from `/proc/<pid>/exe`, if it could be read.
    pub exe: Option<PathBuf>,
}

// === impl Caller ===

impl Caller {
    /// The caller behind `cred`, with its executable path looked up now.
    pub fn from_cred(cred: &UCred) -> Self {
        let pid = cred.pid();
        let exe = pid.and_then(exe_of);
        Self {
            uid: cred.uid(),
            gid: cred.gid(),
            pid,
            exe,
        }
    }

    /// The caller's selectors (pure: no I/O).
    pub fn selectors(&self) -> BTreeSet<Selector> {
        let mut selectors = BTreeSet::from([Selector::Uid(self.uid), Selector::Gid(self.gid)]);
        if let Some(path) = self.exe.as_ref().and_then(|p| p.to_str()) {
            selectors.insert(Selector::Path(path.to_owned()));
        }
        selectors
    }
}

/// `/proc/<pid>/exe`, if readable. A deleted executable reads as `<path> (deleted)`: that is
/// not a path any entry names, so such a caller gets no path selector.
fn exe_of(pid: i32) -> Option<PathBuf> {
    if pid <= 0 {
        return None;
    }
    match std::fs::read_link(format!("/proc/{pid}/exe")) {
        Ok(path) if path.to_str().is_some_and(|s| s.ends_with(" (deleted)")) => None,
        Ok(path) => Some(path),
        Err(e) => {
            tracing::debug!(pid, error = %e, "cannot read the caller's executable path");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_of_a_caller() {
        let caller = Caller {
            uid: 1000,
            gid: 100,
            pid: Some(42),
            exe: Some(PathBuf::from("/usr/bin/app")),
        };
        let got: Vec<String> = caller.selectors().iter().map(|s| s.to_string()).collect();
        assert_eq!(
            got,
            ["unix:uid:1000", "unix:gid:100", "unix:path:/usr/bin/app"]
        );
        let no_exe = Caller {
            exe: None,
            ..caller
        };
        assert_eq!(no_exe.selectors().len(), 2);
    }

    #[test]
    fn our_own_executable_is_found() {
        let me = std::process::id() as i32;
        let exe = exe_of(me).expect("/proc/self/exe readable in tests");
        assert_eq!(exe, std::env::current_exe().unwrap());
        assert_eq!(exe_of(0), None);
        assert_eq!(exe_of(-1), None);
    }
}
