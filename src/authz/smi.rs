//! SMI resources as read from YAML: `TrafficTarget` (`access.smi-spec.io/v1alpha3`),
//! `HTTPRouteGroup` and `TCPRoute` (`specs.smi-spec.io/v1alpha4`), and [`parse_documents`],
//! which turns one multi-document YAML text into them.
//!
//! Invariants:
//! * pure: no I/O; the caller passes the file's name (for messages) and its text;
//! * every document is dispatched on `apiVersion` and `kind` first; an empty document is
//!   skipped, anything else that is not one of the three kinds above at exactly the API version
//!   above is an error naming the file, the document number (1-based) and the kind;
//! * the fields SMI defines (`spec` and everything below it, and the top level) are read with
//!   `deny_unknown_fields`: a misspelt key is an error naming its path, never ignored.
//!   `metadata` is Kubernetes `ObjectMeta` and may carry anything (`labels`, `uid`,
//!   `resourceVersion`, ...): only `name` and `namespace` are read from it;
//! * never panics, whatever the input (property-tested in `tests.rs`).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::ImportError;

/// `apiVersion` of `TrafficTarget`.
pub const ACCESS_API: &str = "access.smi-spec.io/v1alpha3";
/// `apiVersion` of `HTTPRouteGroup` and `TCPRoute`.
pub const SPECS_API: &str = "specs.smi-spec.io/v1alpha4";

/// Where a resource came from: file name and 1-based document number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: String,
    pub doc: usize,
}

/// One resource of the input.
#[derive(Debug, Clone, PartialEq)]
pub enum Resource {
    TrafficTarget(Origin, TrafficTarget),
    HttpRouteGroup(Origin, HttpRouteGroup),
    TcpRoute(Origin, TcpRoute),
}

/// Kubernetes `ObjectMeta`, of which only `name` and `namespace` matter here.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Metadata {
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
}

/// `TrafficTarget` (`access.smi-spec.io/v1alpha3`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TrafficTarget {
    pub api_version: String,
    pub kind: String,
    pub metadata: Metadata,
    pub spec: TrafficTargetSpec,
}

/// `TrafficTarget.spec`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrafficTargetSpec {
    pub destination: Subject,
    #[serde(default)]
    pub sources: Vec<Subject>,
    #[serde(default)]
    pub rules: Vec<Rule>,
}

/// `IdentityBindingSubject`: a ServiceAccount, optionally in a namespace and on a port.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subject {
    pub kind: String,
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
}

/// `TrafficTargetRule`: a reference to an `HTTPRouteGroup` or `TCPRoute`, and for an
/// `HTTPRouteGroup` optionally the names of some of its matches.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub kind: String,
    pub name: String,
    #[serde(default)]
    pub matches: Vec<String>,
}

/// `HTTPRouteGroup` (`specs.smi-spec.io/v1alpha4`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpRouteGroup {
    pub api_version: String,
    pub kind: String,
    pub metadata: Metadata,
    pub spec: HttpRouteGroupSpec,
}

/// `HTTPRouteGroup.spec`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpRouteGroupSpec {
    #[serde(default)]
    pub matches: Vec<HttpMatch>,
}

/// One named HTTP match.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpMatch {
    pub name: String,
    #[serde(default)]
    pub methods: Vec<String>,
    #[serde(default)]
    pub path_regex: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// `TCPRoute` (`specs.smi-spec.io/v1alpha4`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TcpRoute {
    pub api_version: String,
    pub kind: String,
    pub metadata: Metadata,
    pub spec: TcpRouteSpec,
}

/// `TCPRoute.spec`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpRouteSpec {
    #[serde(default)]
    pub matches: TcpMatch,
}

/// `TCPRoute.spec.matches`: the ports; empty means every port of the service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpMatch {
    #[serde(default)]
    pub ports: Vec<u16>,
}

/// What the first pass reads of every document: just enough to dispatch.
#[derive(Debug)]
struct Header {
    api_version: Option<serde_norway::Value>,
    kind: Option<serde_norway::Value>,
}

/// The YAML type of a value that should have been a mapping, for messages.
fn type_name(v: &serde_norway::Value) -> &'static str {
    match v {
        serde_norway::Value::Null => "null",
        serde_norway::Value::Bool(_) => "boolean",
        serde_norway::Value::Number(_) => "number",
        serde_norway::Value::String(_) => "string",
        serde_norway::Value::Sequence(_) => "sequence",
        serde_norway::Value::Mapping(_) => "mapping",
        serde_norway::Value::Tagged(_) => "tagged value",
    }
}

/// The three kinds this module reads.
#[derive(Debug, Clone, Copy)]
enum Kind {
    TrafficTarget,
    HttpRouteGroup,
    TcpRoute,
}

/// What the reader expects of `kind`: the API version it needs.
fn expected_api(kind: &str) -> Option<(Kind, &'static str)> {
    match kind {
        "TrafficTarget" => Some((Kind::TrafficTarget, ACCESS_API)),
        "HTTPRouteGroup" => Some((Kind::HttpRouteGroup, SPECS_API)),
        "TCPRoute" => Some((Kind::TcpRoute, SPECS_API)),
        _ => None,
    }
}

const SUPPORTED: &str = "fedgate authz import reads TrafficTarget (access.smi-spec.io/v1alpha3), \
                         HTTPRouteGroup and TCPRoute (specs.smi-spec.io/v1alpha4)";

/// Parses every document of one YAML text. `file` names it in errors.
///
/// Two passes over the text: the first reads each document (as a YAML value) for its
/// `apiVersion` and `kind`, the
/// second deserializes each document into the type they select, so that errors keep the YAML
/// parser's field path, line and column.
pub fn parse_documents(file: &str, text: &str) -> Result<Vec<Resource>, ImportError> {
    let err = |doc: usize, message: String| ImportError::at(file, doc, message);
    // Pass 1: dispatch.
    let mut kinds = Vec::new();
    for (i, de) in serde_norway::Deserializer::from_str(text).enumerate() {
        let doc = i + 1;
        let value = serde_norway::Value::deserialize(de).map_err(|e| {
            err(
                doc,
                format!("YAML syntax error: {e}; fix the YAML at that line"),
            )
        })?;
        let header = match value {
            serde_norway::Value::Null => {
                kinds.push(None); // an empty document (`---` alone, or only comments)
                continue;
            }
            serde_norway::Value::Mapping(mut m) => Header {
                api_version: m.remove("apiVersion"),
                kind: m.remove("kind"),
            },
            other => {
                return Err(err(
                    doc,
                    format!(
                        "a {} is not a Kubernetes resource: every YAML document must be a \
                         mapping with `apiVersion`, `kind`, `metadata` and `spec`",
                        type_name(&other)
                    ),
                ))
            }
        };
        let (kind, api) = (scalar(header.kind), scalar(header.api_version));
        if kind.is_empty() {
            return Err(err(
                doc,
                format!(
                    "missing `kind` (apiVersion {api:?}): {SUPPORTED}; add `kind:` or remove \
                     the document"
                ),
            ));
        }
        let Some((k, want)) = expected_api(&kind) else {
            return Err(err(
                doc,
                format!(
                    "unknown kind {kind:?} (apiVersion {api:?}): {SUPPORTED}; remove other \
                     resources from the input"
                ),
            ));
        };
        if api.is_empty() {
            return Err(err(
                doc,
                format!("{kind}: missing `apiVersion`: write `apiVersion: {want}`"),
            ));
        }
        if api != want {
            return Err(err(
                doc,
                format!(
                    "{kind}: unsupported apiVersion {api:?}: {SUPPORTED}; write \
                     `apiVersion: {want}` (convert the resource if its fields differ)"
                ),
            ));
        }
        kinds.push(Some(k));
    }
    // Pass 2: the typed resources.
    let mut out = Vec::new();
    for (i, de) in serde_norway::Deserializer::from_str(text).enumerate() {
        let doc = i + 1;
        let Some(Some(kind)) = kinds.get(i).copied() else {
            continue;
        };
        let origin = Origin {
            file: file.to_owned(),
            doc,
        };
        let bad = |kind: &str, e: serde_norway::Error| {
            err(
                doc,
                format!("{kind}: {e}; see the SMI spec for the fields of {kind}"),
            )
        };
        let resource = match kind {
            Kind::TrafficTarget => Resource::TrafficTarget(
                origin,
                TrafficTarget::deserialize(de).map_err(|e| bad("TrafficTarget", e))?,
            ),
            Kind::HttpRouteGroup => Resource::HttpRouteGroup(
                origin,
                HttpRouteGroup::deserialize(de).map_err(|e| bad("HTTPRouteGroup", e))?,
            ),
            Kind::TcpRoute => Resource::TcpRoute(
                origin,
                TcpRoute::deserialize(de).map_err(|e| bad("TCPRoute", e))?,
            ),
        };
        out.push(resource);
    }
    Ok(out)
}

/// A `kind` or `apiVersion` as text for dispatch and messages (`""` when absent, the YAML
/// rendering of a non-string, which then matches nothing).
fn scalar(v: Option<serde_norway::Value>) -> String {
    match v {
        None => String::new(),
        Some(serde_norway::Value::String(s)) => s,
        Some(other) => serde_norway::to_string(&other)
            .map(|s| s.trim_end().to_owned())
            .unwrap_or_default(),
    }
}
