//! `fedgate authz import`: SMI access policy (`TrafficTarget` with the `HTTPRouteGroup` and
//! `TCPRoute` it references) turned into fedgate allow lists (docs/authz-import.md).
//!
//! Pipeline, all pure (the command in `cmd::authz` does the I/O):
//! [`smi::parse_documents`] (YAML text → typed resources) → [`resolve::resolve`] (references
//! resolved, ServiceAccounts mapped to SPIFFE IDs with a [`template::IdTemplate`], grouped by
//! destination into a [`Policy`]) → [`render::sidecar_fragment`] (TOML text).
//!
//! Invariants:
//! * every error is an [`ImportError`] naming the file, the document (1-based) and, where
//!   there is one, the field path, and saying what to do;
//! * the mapping is **L4**: a destination ServiceAccount is a workload, its sources are the
//!   `allow` list of the sidecar `[[inbound]]` in front of it. SMI rules (HTTP paths, methods,
//!   headers; TCP ports) cannot be enforced by fedgate: they are resolved (a dangling
//!   reference is an error) and reported in comments, never silently dropped;
//! * the output is deterministic: destinations sorted by SPIFFE ID, sources by SPIFFE ID.

pub mod render;
pub mod resolve;
pub mod smi;
pub mod template;

#[cfg(test)]
mod tests;

use std::fmt;

use fedgate_federation::SpiffeId;

pub use resolve::{import, resolve};

/// An input error: where (file, document, field path when known) and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportError {
    /// The input file (`-` for stdin).
    pub file: String,
    /// 1-based document number within the file, when the error is about one document.
    pub doc: Option<usize>,
    /// The index in the document's `items` when it is a `kind: List`.
    pub item: Option<usize>,
    /// What is wrong and what to do; starts with the field path when there is one.
    pub message: String,
}

impl ImportError {
    pub(crate) fn at(file: &str, doc: usize, message: String) -> Self {
        Self {
            file: file.to_owned(),
            doc: Some(doc),
            item: None,
            message,
        }
    }

    pub(crate) fn at_origin(origin: &smi::Origin, message: String) -> Self {
        Self {
            file: origin.file.clone(),
            doc: Some(origin.doc),
            item: origin.item,
            message,
        }
    }
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.doc, self.item) {
            (Some(doc), Some(item)) => write!(
                f,
                "{}: document {doc}: items[{item}]: {}",
                self.file, self.message
            ),
            (Some(doc), None) => write!(f, "{}: document {doc}: {}", self.file, self.message),
            (None, _) => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

impl std::error::Error for ImportError {}

/// The allow lists of every destination, ready to render.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Sorted by `id`, one per destination ServiceAccount.
    pub destinations: Vec<Destination>,
}

/// One destination workload (a ServiceAccount) and who may call it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub id: SpiffeId,
    pub namespace: String,
    pub service_account: String,
    /// Sorted by `id`; never empty.
    pub sources: Vec<Source>,
    /// The TrafficTargets (`ns/name`) naming this destination, in input order.
    pub targets: Vec<String>,
    /// One line per rule or port restriction that fedgate does not enforce, in input order,
    /// each naming its TrafficTarget.
    pub unenforced: Vec<String>,
}

/// One allowed caller of a destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub id: SpiffeId,
    /// The TrafficTargets (`ns/name`) that allow it, in input order.
    pub via: Vec<String>,
}
