//! From parsed SMI resources to a [`Policy`]: references resolved, ServiceAccounts mapped to
//! SPIFFE IDs, TrafficTargets grouped by destination.
//!
//! Invariants:
//! * namespaces: a subject without `namespace` is in its TrafficTarget's `metadata.namespace`
//!   (SMI v1alpha3: the namespace of the subject "where the Subject is deployed", defaulting to
//!   the resource's own); with neither, it is an error (fedgate cannot know the namespace
//!   `kubectl apply` would have used). A route without `metadata.namespace` is taken to be in
//!   the namespace of any TrafficTarget that references it; one with a namespace matches only
//!   TrafficTargets of that namespace;
//! * every rule must resolve to exactly one `HTTPRouteGroup`/`TCPRoute` of the inputs, and every
//!   match name it lists must exist in that `HTTPRouteGroup`;
//! * namespaces and names are checked as Kubernetes names (lowercase DNS-1123) before they are
//!   put into an ID template or a comment, so no input text reaches the output unchecked
//!   except through the renderer's escaping.

use std::collections::BTreeMap;

use super::smi::{HttpRouteGroup, Metadata, Origin, Resource, Subject, TcpRoute, TrafficTarget};
use super::template::IdTemplate;
use super::{Destination, ImportError, Policy, Source};

/// Parses every input (`(file name, text)`) and resolves the result with `template`.
pub fn import(inputs: &[(String, String)], template: &IdTemplate) -> Result<Policy, ImportError> {
    let mut resources = Vec::new();
    for (file, text) in inputs {
        resources.extend(super::smi::parse_documents(file, text)?);
    }
    let files: Vec<&str> = inputs.iter().map(|(f, _)| f.as_str()).collect();
    resolve(&resources, template).map_err(|e| match e {
        Unlocated(message) => ImportError {
            file: files.join(", "),
            doc: None,
            item: None,
            message,
        },
        Located(e) => e,
    })
}

/// An error of [`resolve`]: about one document, or about the inputs as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolveError {
    Located(ImportError),
    Unlocated(String),
}
use ResolveError::{Located, Unlocated};

/// Resolves parsed resources into allow lists.
pub fn resolve(resources: &[Resource], template: &IdTemplate) -> Result<Policy, ResolveError> {
    let mut http: Vec<(&Origin, &HttpRouteGroup)> = Vec::new();
    let mut tcp: Vec<(&Origin, &TcpRoute)> = Vec::new();
    let mut targets: Vec<(&Origin, &TrafficTarget)> = Vec::new();
    for r in resources {
        match r {
            Resource::HttpRouteGroup(o, g) => {
                check_meta(o, &g.metadata)?;
                http.push((o, g));
            }
            Resource::TcpRoute(o, t) => {
                check_meta(o, &t.metadata)?;
                tcp.push((o, t));
            }
            Resource::TrafficTarget(o, t) => {
                check_meta(o, &t.metadata)?;
                targets.push((o, t));
            }
        }
    }
    check_unique(
        "HTTPRouteGroup",
        http.iter().map(|(o, g)| (*o, &g.metadata)),
    )?;
    check_unique("TCPRoute", tcp.iter().map(|(o, t)| (*o, &t.metadata)))?;
    check_unique(
        "TrafficTarget",
        targets.iter().map(|(o, t)| (*o, &t.metadata)),
    )?;
    if targets.is_empty() {
        return Err(Unlocated(
            "no TrafficTarget (access.smi-spec.io/v1alpha3) in the input: nothing to import; \
             pass the files that define them"
                .into(),
        ));
    }

    let mut by_dest: BTreeMap<String, Destination> = BTreeMap::new();
    let mut sources: BTreeMap<String, BTreeMap<String, Source>> = BTreeMap::new();
    for (origin, tt) in targets {
        let err = |message: String| Located(ImportError::at_origin(origin, message));
        let label = label(&tt.metadata);
        let ctx = format!("TrafficTarget {label}");
        let tt_ns = tt.metadata.namespace.as_deref();

        let (dest_ns, dest_sa) = subject(&tt.spec.destination, tt_ns, "spec.destination")
            .map_err(|m| err(format!("{ctx}: {m}")))?;
        let dest_id = template
            .render(&dest_ns, &dest_sa)
            .map_err(|e| err(format!("{ctx}: spec.destination: {e}")))?;

        if tt.spec.sources.is_empty() {
            return Err(err(format!(
                "{ctx}: spec.sources: empty or missing: SMI requires at least one source, and a \
                 TrafficTarget without sources allows nobody; add sources or remove it"
            )));
        }
        let mut ids = Vec::new();
        for (i, s) in tt.spec.sources.iter().enumerate() {
            let path = format!("spec.sources[{i}]");
            let (ns, sa) = subject(s, tt_ns, &path).map_err(|m| err(format!("{ctx}: {m}")))?;
            let id = template
                .render(&ns, &sa)
                .map_err(|e| err(format!("{ctx}: {path}: {e}")))?;
            if s.port.is_some() {
                return Err(err(format!(
                    "{ctx}: {path}.port: a port on a source means nothing (SMI applies ports to \
                     the destination); remove it"
                )));
            }
            ids.push(id);
        }

        let mut unenforced = Vec::new();
        if let Some(port) = tt.spec.destination.port {
            unenforced.push(format!("{ctx}: destination port {port}"));
        }
        for (j, rule) in tt.spec.rules.iter().enumerate() {
            let path = format!("spec.rules[{j}]");
            let line = match rule.kind.as_str() {
                "HTTPRouteGroup" => {
                    let (_, g) = find(&http, &rule.name, tt_ns, |g| &g.metadata)
                        .map_err(|m| err(format!("{ctx}: {path}: HTTPRouteGroup {m}")))?;
                    http_rule(g, &rule.matches)
                        .map_err(|(k, m)| err(format!("{ctx}: {path}.matches[{k}]: {m}")))?
                }
                "TCPRoute" => {
                    let (_, t) = find(&tcp, &rule.name, tt_ns, |t| &t.metadata)
                        .map_err(|m| err(format!("{ctx}: {path}: TCPRoute {m}")))?;
                    if !rule.matches.is_empty() {
                        return Err(err(format!(
                            "{ctx}: {path}.matches: a TCPRoute has no named matches (its ports \
                             are in its spec.matches.ports); remove `matches` from the rule"
                        )));
                    }
                    tcp_rule(t)
                }
                other => {
                    return Err(err(format!(
                        "{ctx}: {path}.kind: {other:?} is not supported: use HTTPRouteGroup or \
                         TCPRoute (specs.smi-spec.io/v1alpha4)"
                    )))
                }
            };
            unenforced.push(format!("{ctx}: {line}"));
        }

        let key = dest_id.to_string();
        let dest = by_dest.entry(key.clone()).or_insert_with(|| Destination {
            id: dest_id.clone(),
            namespace: dest_ns.clone(),
            service_account: dest_sa.clone(),
            sources: Vec::new(),
            targets: Vec::new(),
            unenforced: Vec::new(),
        });
        dest.targets.push(label.clone());
        dest.unenforced.extend(unenforced);
        let srcs = sources.entry(key).or_default();
        for id in ids {
            let via = &mut srcs
                .entry(id.to_string())
                .or_insert_with(|| Source {
                    id: id.clone(),
                    via: Vec::new(),
                })
                .via;
            if !via.contains(&label) {
                via.push(label.clone());
            }
        }
    }
    let destinations = by_dest
        .into_iter()
        .map(|(key, mut d)| {
            d.sources = sources
                .remove(&key)
                .unwrap_or_default()
                .into_values()
                .collect();
            d
        })
        .collect();
    Ok(Policy { destinations })
}

/// `ns/name`, or `name` without a namespace.
fn label(m: &Metadata) -> String {
    match &m.namespace {
        Some(ns) => format!("{ns}/{}", m.name),
        None => m.name.clone(),
    }
}

fn check_meta(o: &Origin, m: &Metadata) -> Result<(), ResolveError> {
    let err = |message: String| Located(ImportError::at_origin(o, message));
    k8s_name(&m.name, false).map_err(|why| err(format!("metadata.name: {why}")))?;
    if let Some(ns) = &m.namespace {
        k8s_name(ns, true).map_err(|why| err(format!("metadata.namespace: {why}")))?;
    }
    Ok(())
}

/// Two resources of one kind with the same namespace and name: the later would silently win.
fn check_unique<'a>(
    kind: &str,
    items: impl Iterator<Item = (&'a Origin, &'a Metadata)>,
) -> Result<(), ResolveError> {
    let mut seen: BTreeMap<(Option<&str>, &str), &Origin> = BTreeMap::new();
    for (o, m) in items {
        if let Some(first) = seen.insert((m.namespace.as_deref(), m.name.as_str()), o) {
            return Err(Located(ImportError::at_origin(
                o,
                format!(
                    "{kind} {} is defined twice (first in {first}); remove one",
                    label(m),
                ),
            )));
        }
    }
    Ok(())
}

/// Namespace and name of a ServiceAccount subject, checked; `path` names it in messages.
fn subject(s: &Subject, tt_ns: Option<&str>, path: &str) -> Result<(String, String), String> {
    if s.kind != "ServiceAccount" {
        return Err(format!(
            "{path}.kind: {:?} is not supported: SMI v1alpha3 subjects are ServiceAccounts; \
             write `kind: ServiceAccount`",
            s.kind
        ));
    }
    k8s_name(&s.name, false).map_err(|why| format!("{path}.name: {why}"))?;
    let ns = match (&s.namespace, tt_ns) {
        (Some(ns), _) => {
            k8s_name(ns, true).map_err(|why| format!("{path}.namespace: {why}"))?;
            ns.clone()
        }
        (None, Some(ns)) => ns.to_owned(),
        (None, None) => {
            return Err(format!(
                "{path}.namespace: missing, and the TrafficTarget has no metadata.namespace to \
                 default to; add `namespace:` to the subject or to the TrafficTarget's metadata"
            ))
        }
    };
    Ok((ns, s.name.clone()))
}

/// Kubernetes names: a DNS-1123 subdomain (1-253 of `[a-z0-9.-]`, alphanumeric at both ends),
/// or for a namespace a DNS-1123 label (1-63 of `[a-z0-9-]`).
fn k8s_name(s: &str, label: bool) -> Result<(), String> {
    let max = if label { 63 } else { 253 };
    let ok_char =
        |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || (!label && c == '.');
    let ends_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if s.is_empty()
        || s.len() > max
        || !s.chars().all(ok_char)
        || !ends_ok(s.chars().next())
        || !ends_ok(s.chars().last())
    {
        let what = if label {
            "a namespace is a DNS-1123 label: 1-63 of a-z, 0-9 and '-', starting and ending \
             with a letter or digit"
        } else {
            "a Kubernetes name is a DNS-1123 subdomain: 1-253 of a-z, 0-9, '-' and '.', \
             starting and ending with a letter or digit"
        };
        return Err(format!(
            "{:?} is not valid: {what}",
            s.escape_default().to_string()
        ));
    }
    Ok(())
}

/// The route of that name for a TrafficTarget in namespace `ns`: exactly one must match.
fn find<'a, T>(
    routes: &[(&'a Origin, &'a T)],
    name: &str,
    ns: Option<&str>,
    meta: impl Fn(&T) -> &Metadata,
) -> Result<(&'a Origin, &'a T), String> {
    let hits: Vec<_> = routes
        .iter()
        .filter(|(_, r)| {
            let m = meta(r);
            m.name == name && (m.namespace.is_none() || m.namespace.as_deref() == ns)
        })
        .copied()
        .collect();
    let where_ = match ns {
        Some(ns) => format!("in namespace {ns:?}"),
        None => "without a namespace".to_owned(),
    };
    match hits.as_slice() {
        [one] => Ok(*one),
        [] => Err(format!(
            "{name:?} {where_} is not in the input: pass the file that defines it, or fix \
             the rule's name"
        )),
        _ => Err(format!(
            "{name:?} {where_} is ambiguous: defined with and without metadata.namespace; \
             give each one a namespace"
        )),
    }
}

/// The comment line for an HTTPRouteGroup rule; an unknown match name is `(index, message)`.
fn http_rule(g: &HttpRouteGroup, wanted: &[String]) -> Result<String, (usize, String)> {
    let mut shown = Vec::new();
    for (k, name) in wanted.iter().enumerate() {
        if !g.spec.matches.iter().any(|m| &m.name == name) {
            let known: Vec<&str> = g.spec.matches.iter().map(|m| m.name.as_str()).collect();
            return Err((
                k,
                format!(
                    "HTTPRouteGroup {} has no match named {name:?} (it has: {}); fix the name",
                    label(&g.metadata),
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                ),
            ));
        }
    }
    for m in &g.spec.matches {
        if !wanted.is_empty() && !wanted.contains(&m.name) {
            continue;
        }
        let methods = if m.methods.is_empty() {
            "*".to_owned()
        } else {
            m.methods.join(",")
        };
        let path = m.path_regex.as_deref().unwrap_or(".*");
        let headers = if m.headers.is_empty() {
            String::new()
        } else {
            format!(" +{} header filter(s)", m.headers.len())
        };
        shown.push(format!("{}: {methods} {path}{headers}", m.name));
    }
    Ok(format!(
        "HTTPRouteGroup {} [{}]",
        label(&g.metadata),
        if shown.is_empty() {
            "no matches".to_owned()
        } else {
            shown.join("; ")
        }
    ))
}

/// The comment line for a TCPRoute rule.
fn tcp_rule(t: &TcpRoute) -> String {
    let ports = &t.spec.matches.ports;
    let ports = if ports.is_empty() {
        "all ports".to_owned()
    } else {
        let p: Vec<String> = ports.iter().map(u16::to_string).collect();
        format!("ports {}", p.join(", "))
    };
    format!("TCPRoute {} [{ports}]", label(&t.metadata))
}
