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
//!   `deny_unknown_fields`: a misspelt key is an error naming its path, never ignored;
//! * a `kind: List` document (`apiVersion: v1`, what `kubectl get -o yaml` writes) stands for
//!   its `items`, each dispatched and read like a document;
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

/// Where a resource came from: file name, 1-based document number, List item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: String,
    pub doc: usize,
    /// The index in the document's `items` when the document is a `kind: List`.
    pub item: Option<usize>,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} document {}", self.file, self.doc)?;
        match self.item {
            Some(item) => write!(f, " items[{item}]"),
            None => Ok(()),
        }
    }
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

/// What the first pass decided for one document.
enum Plan {
    /// An empty document (`---` alone, or only comments).
    Empty,
    /// One resource of this kind: the second pass reads it from the text.
    One(Kind),
    /// A `kind: List` (`kubectl get -o yaml`), kept as a value: its items are read from it.
    List(serde_norway::Value),
}

/// Parses every document of one YAML text. `file` names it in errors.
///
/// Two passes over the text: the first reads each document (as a YAML value) for its
/// `apiVersion` and `kind`, the second deserializes each document into the type they select,
/// so that errors keep the YAML parser's field path, line and column. The items of a
/// `kind: List` (API version `v1`, as `kubectl get -o yaml` writes) are read from the value of
/// the first pass: their errors have the field path (`items[2].spec.sources[0]`) but no line.
pub fn parse_documents(file: &str, text: &str) -> Result<Vec<Resource>, ImportError> {
    let err = |doc: usize, message: String| ImportError::at(file, doc, message);
    // Pass 1: dispatch.
    let mut plans = Vec::new();
    for (i, de) in serde_norway::Deserializer::from_str(text).enumerate() {
        let doc = i + 1;
        let value = serde_norway::Value::deserialize(de).map_err(|e| {
            err(
                doc,
                format!("YAML syntax error: {e}; fix the YAML at that line"),
            )
        })?;
        let plan = match classify(&value).map_err(|m| err(doc, m))? {
            None => Plan::Empty,
            Some(Class::One(kind)) => Plan::One(kind),
            Some(Class::List) => Plan::List(value),
        };
        plans.push(plan);
    }
    // Pass 2: the typed resources.
    let mut out = Vec::new();
    for (i, de) in serde_norway::Deserializer::from_str(text).enumerate() {
        let doc = i + 1;
        let origin = Origin {
            file: file.to_owned(),
            doc,
            item: None,
        };
        match plans.get(i) {
            None | Some(Plan::Empty) => {}
            Some(Plan::One(kind)) => out.push(typed(*kind, origin, de).map_err(|m| err(doc, m))?),
            Some(Plan::List(list)) => {
                let items = match list.get("items") {
                    None | Some(serde_norway::Value::Null) => continue,
                    Some(serde_norway::Value::Sequence(items)) => items,
                    Some(other) => {
                        return Err(err(
                            doc,
                            format!("List: items: a {}, not a sequence", type_name(other)),
                        ))
                    }
                };
                for (j, item) in items.iter().enumerate() {
                    let at = |m: String| err(doc, format!("items[{j}]: {m}"));
                    let Some(Class::One(kind)) = classify(item).map_err(at)? else {
                        return Err(at(
                            "an empty item or a List inside a List: remove it".to_owned()
                        ));
                    };
                    let origin = Origin {
                        item: Some(j),
                        ..origin.clone()
                    };
                    out.push(typed(kind, origin, item).map_err(at)?);
                }
            }
        }
    }
    Ok(out)
}

/// What a document or List item is, from its `apiVersion` and `kind`.
enum Class {
    One(Kind),
    List,
}

/// Classifies a document (`None`: empty); the error says what is wrong and what to do.
fn classify(value: &serde_norway::Value) -> Result<Option<Class>, String> {
    let header = match value {
        serde_norway::Value::Null => return Ok(None),
        serde_norway::Value::Mapping(m) => Header {
            api_version: m.get("apiVersion").cloned(),
            kind: m.get("kind").cloned(),
        },
        other => {
            return Err(format!(
                "a {} is not a Kubernetes resource: every YAML document must be a mapping with \
                 `apiVersion`, `kind`, `metadata` and `spec`",
                type_name(other)
            ))
        }
    };
    let (kind, api) = (scalar(header.kind), scalar(header.api_version));
    if kind.is_empty() {
        return Err(format!(
            "missing `kind` (apiVersion {api:?}): {SUPPORTED}; add `kind:` or remove the document"
        ));
    }
    if kind == "List" && api == "v1" {
        return Ok(Some(Class::List));
    }
    let Some((k, want)) = expected_api(&kind) else {
        return Err(format!(
            "unknown kind {kind:?} (apiVersion {api:?}): {SUPPORTED}; remove other resources \
             from the input"
        ));
    };
    if api.is_empty() {
        return Err(format!(
            "{kind}: missing `apiVersion`: write `apiVersion: {want}`"
        ));
    }
    if api != want {
        return Err(format!(
            "{kind}: unsupported apiVersion {api:?}: {SUPPORTED}; write `apiVersion: {want}` \
             (convert the resource if its fields differ)"
        ));
    }
    Ok(Some(Class::One(k)))
}

/// A source of one typed resource: a document of the text, or a List item.
trait Reader {
    /// The resource, or the parser's message with the field path in front.
    fn read<T: serde::de::DeserializeOwned>(self) -> Result<T, String>;
}

/// A document of the text: the parser's own message has the path, line and column.
impl<'de> Reader for serde_norway::Deserializer<'de> {
    fn read<T: serde::de::DeserializeOwned>(self) -> Result<T, String> {
        T::deserialize(self).map_err(|e| e.to_string())
    }
}

/// A List item (a value): the path comes from serde_path_to_error; there is no line.
impl Reader for &serde_norway::Value {
    fn read<T: serde::de::DeserializeOwned>(self) -> Result<T, String> {
        serde_path_to_error::deserialize(self.clone()).map_err(|e| {
            let path = e.path().to_string();
            if path == "." {
                e.into_inner().to_string()
            } else {
                format!("{path}: {}", e.into_inner())
            }
        })
    }
}

/// Reads one resource of `kind`.
fn typed(kind: Kind, origin: Origin, r: impl Reader) -> Result<Resource, String> {
    let bad = |kind: &'static str| {
        move |e: String| format!("{kind}: {e}; see the SMI spec for the fields of {kind}")
    };
    Ok(match kind {
        Kind::TrafficTarget => {
            Resource::TrafficTarget(origin, r.read().map_err(bad("TrafficTarget"))?)
        }
        Kind::HttpRouteGroup => {
            Resource::HttpRouteGroup(origin, r.read().map_err(bad("HTTPRouteGroup"))?)
        }
        Kind::TcpRoute => Resource::TcpRoute(origin, r.read().map_err(bad("TCPRoute"))?),
    })
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
