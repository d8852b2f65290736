//! Registration entries: which callers get which SPIFFE IDs. Pure logic, no I/O.
//!
//! A [`Selector`] is one fact about a caller, written as SPIRE's unix workload attestor writes
//! it: `unix:uid:<uid>`, `unix:gid:<gid>` or `unix:path:<absolute executable path>`. An
//! [`Entry`] maps a set of selectors to a SPIFFE ID; a caller matches an entry when it has
//! **every** selector of the entry (it may have more). [`Entries::matching`] lists the SPIFFE
//! IDs of all entries a caller matches.
//!
//! Invariants: every entry has at least one selector (an entry without selectors would match
//! every local process); every entry's SPIFFE ID is in the agent's trust domain and has a
//! non-root path (a leaf SVID, X509-SVID.md §2); `matching` returns each SPIFFE ID at most
//! once, in configuration order, and returns nothing for a caller that matches no entry.

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use fedgate_federation::{SpiffeId, TrustDomain};

/// One attested fact about a caller (SPIRE's unix attestor names).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Selector {
    /// `unix:uid:<n>`: the caller's effective user ID.
    Uid(u32),
    /// `unix:gid:<n>`: the caller's effective group ID.
    Gid(u32),
    /// `unix:path:<path>`: the absolute path of the caller's executable.
    Path(String),
}

/// Why a selector string is not one fedgate understands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SelectorError {
    #[error(
        "{0:?} is not a selector fedgate supports: write \"unix:uid:<number>\", \
         \"unix:gid:<number>\" or \"unix:path:<absolute path>\""
    )]
    Unknown(String),
    #[error("{0:?}: the uid or gid must be a decimal number (e.g. \"unix:uid:1000\")")]
    BadNumber(String),
    #[error("{0:?}: the path must be absolute and normalised (e.g. \"unix:path:/usr/bin/app\")")]
    BadPath(String),
}

/// One registration entry: all of `selectors` must match for the caller to get `spiffe_id`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub spiffe_id: SpiffeId,
    pub selectors: BTreeSet<Selector>,
}

/// Why a set of entries is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EntryError {
    #[error("entry {index} ({id}) has no selectors; it would match every local process")]
    NoSelectors { index: usize, id: SpiffeId },
    #[error(
        "entry {index}: {id} is not in the agent's trust domain {trust_domain}; the agent \
         issues only for its own trust domain"
    )]
    WrongTrustDomain {
        index: usize,
        id: SpiffeId,
        trust_domain: TrustDomain,
    },
    #[error("entry {index}: {id} has no path; an SVID needs a path (X509-SVID.md §2)")]
    RootId { index: usize, id: SpiffeId },
}

/// The checked registration entries of one agent.
#[derive(Clone, Debug)]
pub struct Entries {
    trust_domain: TrustDomain,
    entries: Vec<Entry>,
}

// === impl EntryError ===

impl EntryError {
    /// The position of the offending entry in the configuration.
    pub fn index(&self) -> usize {
        match self {
            EntryError::NoSelectors { index, .. }
            | EntryError::WrongTrustDomain { index, .. }
            | EntryError::RootId { index, .. } => *index,
        }
    }
}

// === impl Selector ===

impl FromStr for Selector {
    type Err = SelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Some(rest) = s.strip_prefix("unix:") else {
            return Err(SelectorError::Unknown(s.to_owned()));
        };
        let number = |v: &str| {
            // Digits only: `u32::from_str` would also take a leading `+`.
            if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(SelectorError::BadNumber(s.to_owned()));
            }
            v.parse::<u32>()
                .map_err(|_| SelectorError::BadNumber(s.to_owned()))
        };
        if let Some(v) = rest.strip_prefix("uid:") {
            return number(v).map(Selector::Uid);
        }
        if let Some(v) = rest.strip_prefix("gid:") {
            return number(v).map(Selector::Gid);
        }
        if let Some(v) = rest.strip_prefix("path:") {
            if !is_normal_absolute(v) {
                return Err(SelectorError::BadPath(s.to_owned()));
            }
            return Ok(Selector::Path(v.to_owned()));
        }
        Err(SelectorError::Unknown(s.to_owned()))
    }
}

/// `/a/b`: absolute, no empty, `.` or `..` component, no trailing slash, no NUL. A path
/// selector is compared byte for byte with `/proc/<pid>/exe`, which is always this shape.
fn is_normal_absolute(p: &str) -> bool {
    p.len() > 1
        && p.starts_with('/')
        && !p.contains('\0')
        && p[1..]
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
        && Path::new(p).is_absolute()
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::Uid(uid) => write!(f, "unix:uid:{uid}"),
            Selector::Gid(gid) => write!(f, "unix:gid:{gid}"),
            Selector::Path(path) => write!(f, "unix:path:{path}"),
        }
    }
}

// === impl Entries ===

impl Entries {
    /// Checks `entries` against the invariants of this module.
    pub fn new(trust_domain: TrustDomain, entries: Vec<Entry>) -> Result<Self, EntryError> {
        for (index, e) in entries.iter().enumerate() {
            if e.selectors.is_empty() {
                return Err(EntryError::NoSelectors {
                    index,
                    id: e.spiffe_id.clone(),
                });
            }
            if !e.spiffe_id.member_of(&trust_domain) {
                return Err(EntryError::WrongTrustDomain {
                    index,
                    id: e.spiffe_id.clone(),
                    trust_domain,
                });
            }
            if e.spiffe_id.path().is_empty() {
                return Err(EntryError::RootId {
                    index,
                    id: e.spiffe_id.clone(),
                });
            }
        }
        Ok(Self {
            trust_domain,
            entries,
        })
    }

    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    pub fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter()
    }

    /// Every SPIFFE ID some entry grants (each once): the SVIDs the agent keeps minted.
    pub fn ids(&self) -> BTreeSet<SpiffeId> {
        self.entries.iter().map(|e| e.spiffe_id.clone()).collect()
    }

    /// The SPIFFE IDs of every entry whose selectors are all in `caller`; each ID once, in
    /// configuration order. Empty: the caller is entitled to nothing (PermissionDenied).
    pub fn matching(&self, caller: &BTreeSet<Selector>) -> Vec<SpiffeId> {
        let mut ids: Vec<SpiffeId> = Vec::new();
        for e in &self.entries {
            if e.selectors.is_subset(caller) && !ids.contains(&e.spiffe_id) {
                ids.push(e.spiffe_id.clone());
            }
        }
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(s: &str) -> Selector {
        s.parse().unwrap()
    }

    fn set(items: &[&str]) -> BTreeSet<Selector> {
        items.iter().map(|s| sel(s)).collect()
    }

    fn id(s: &str) -> SpiffeId {
        SpiffeId::parse(s).unwrap()
    }

    fn td() -> TrustDomain {
        TrustDomain::new("cluster-a.test").unwrap()
    }

    fn entry(spiffe_id: &str, selectors: &[&str]) -> Entry {
        Entry {
            spiffe_id: id(spiffe_id),
            selectors: set(selectors),
        }
    }

    #[test]
    fn selectors_parse_and_print_as_spire_writes_them() {
        for s in [
            "unix:uid:0",
            "unix:uid:1000",
            "unix:gid:4294967295",
            "unix:path:/usr/bin/x",
        ] {
            assert_eq!(sel(s).to_string(), s);
        }
        assert_eq!(sel("unix:uid:1000"), Selector::Uid(1000));
        assert_eq!(
            sel("unix:path:/opt/app/bin/server"),
            Selector::Path("/opt/app/bin/server".into())
        );
    }

    #[test]
    fn bad_selectors_are_refused_with_the_reason() {
        for s in ["k8s:ns:default", "uid:1000", "unix:user:root", "unix:", ""] {
            assert!(
                matches!(s.parse::<Selector>(), Err(SelectorError::Unknown(_))),
                "{s}"
            );
        }
        for s in [
            "unix:uid:",
            "unix:uid:-1",
            "unix:uid:+1",
            "unix:gid:4294967296",
            "unix:uid:1e3",
        ] {
            assert!(
                matches!(s.parse::<Selector>(), Err(SelectorError::BadNumber(_))),
                "{s}"
            );
        }
        for s in [
            "unix:path:",
            "unix:path:/",
            "unix:path:bin/x",
            "unix:path:/usr/../bin/x",
            "unix:path:/usr//bin",
            "unix:path:/usr/bin/",
            "unix:path:/./x",
        ] {
            assert!(
                matches!(s.parse::<Selector>(), Err(SelectorError::BadPath(_))),
                "{s}"
            );
        }
    }

    #[test]
    fn an_entry_matches_only_when_all_its_selectors_match() {
        let entries = Entries::new(
            td(),
            vec![
                entry(
                    "spiffe://cluster-a.test/web",
                    &["unix:uid:1000", "unix:path:/usr/bin/web"],
                ),
                entry("spiffe://cluster-a.test/any-1000", &["unix:uid:1000"]),
                entry("spiffe://cluster-a.test/ops", &["unix:gid:50"]),
            ],
        )
        .unwrap();
        let web = set(&["unix:uid:1000", "unix:gid:1000", "unix:path:/usr/bin/web"]);
        assert_eq!(
            entries.matching(&web),
            [
                id("spiffe://cluster-a.test/web"),
                id("spiffe://cluster-a.test/any-1000")
            ]
        );
        let other_binary = set(&["unix:uid:1000", "unix:gid:1000", "unix:path:/usr/bin/curl"]);
        assert_eq!(
            entries.matching(&other_binary),
            [id("spiffe://cluster-a.test/any-1000")]
        );
        let ops = set(&["unix:uid:7", "unix:gid:50"]);
        assert_eq!(entries.matching(&ops), [id("spiffe://cluster-a.test/ops")]);
        assert!(entries
            .matching(&set(&["unix:uid:7", "unix:gid:7"]))
            .is_empty());
        assert!(entries.matching(&BTreeSet::new()).is_empty());
    }

    #[test]
    fn an_id_granted_twice_is_listed_once() {
        let entries = Entries::new(
            td(),
            vec![
                entry("spiffe://cluster-a.test/app", &["unix:uid:1"]),
                entry("spiffe://cluster-a.test/app", &["unix:gid:2"]),
            ],
        )
        .unwrap();
        assert_eq!(
            entries.matching(&set(&["unix:uid:1", "unix:gid:2"])),
            [id("spiffe://cluster-a.test/app")]
        );
        assert_eq!(entries.ids().len(), 1);
    }

    #[test]
    fn invalid_entries_are_refused() {
        let none = Entries::new(td(), vec![entry("spiffe://cluster-a.test/app", &[])]);
        assert!(matches!(
            none,
            Err(EntryError::NoSelectors { index: 0, .. })
        ));
        let foreign = Entries::new(
            td(),
            vec![
                entry("spiffe://cluster-a.test/ok", &["unix:uid:1"]),
                entry("spiffe://cluster-b.test/app", &["unix:uid:1"]),
            ],
        );
        assert!(matches!(
            foreign,
            Err(EntryError::WrongTrustDomain { index: 1, .. })
        ));
        let root = Entries::new(
            td(),
            vec![entry("spiffe://cluster-a.test", &["unix:uid:1"])],
        );
        assert!(matches!(root, Err(EntryError::RootId { index: 0, .. })));
    }

    proptest::proptest! {
        /// Matching is exactly "the entry's selectors are a subset of the caller's".
        #[test]
        fn matching_is_subset(
            entry_sel in proptest::collection::btree_set(0u32..6, 1..4),
            caller_sel in proptest::collection::btree_set(0u32..6, 0..6),
        ) {
            let to_set = |s: &BTreeSet<u32>| s.iter().map(|n| Selector::Uid(*n)).collect::<BTreeSet<_>>();
            let entries = Entries::new(td(), vec![Entry {
                spiffe_id: id("spiffe://cluster-a.test/p"),
                selectors: to_set(&entry_sel),
            }]).unwrap();
            let matched = !entries.matching(&to_set(&caller_sel)).is_empty();
            proptest::prop_assert_eq!(matched, entry_sel.is_subset(&caller_sel));
        }
    }
}
