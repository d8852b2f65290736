//! Tests of the whole pure pipeline: YAML text → Policy → TOML, and its errors.
// Tests unwrap: a failed step is a test failure.
#![allow(clippy::unwrap_used)]

use fedgate_federation::TrustDomain;

use super::render::sidecar_fragment;
use super::template::{IdTemplate, DEFAULT_TEMPLATE};
use super::{import, ImportError, Policy};

const SAMPLE: &str = include_str!("../../docs/examples/smi/shop.yaml");

fn template() -> IdTemplate {
    IdTemplate::parse(
        DEFAULT_TEMPLATE,
        &TrustDomain::new("cluster-b.test").unwrap(),
    )
    .unwrap()
}

fn run(files: &[(&str, &str)]) -> Result<Policy, ImportError> {
    let inputs: Vec<(String, String)> = files
        .iter()
        .map(|(f, t)| (f.to_string(), t.to_string()))
        .collect();
    import(&inputs, &template())
}

fn err(text: &str) -> String {
    run(&[("in.yaml", text)]).unwrap_err().to_string()
}

const TT_HEAD: &str = "apiVersion: access.smi-spec.io/v1alpha3\nkind: TrafficTarget\n";

#[test]
fn sample_groups_sources_by_destination() {
    let p = run(&[("shop.yaml", SAMPLE)]).unwrap();
    let dests: Vec<String> = p.destinations.iter().map(|d| d.id.to_string()).collect();
    assert_eq!(
        dests,
        [
            "spiffe://cluster-b.test/ns/shop/sa/api",
            "spiffe://cluster-b.test/ns/shop/sa/postgres"
        ]
    );
    let api = &p.destinations[0];
    let srcs: Vec<String> = api.sources.iter().map(|s| s.id.to_string()).collect();
    assert_eq!(
        srcs,
        [
            "spiffe://cluster-b.test/ns/monitoring/sa/prometheus",
            // no namespace on the subject: the TrafficTarget's
            "spiffe://cluster-b.test/ns/shop/sa/payments",
            "spiffe://cluster-b.test/ns/shop/sa/web",
        ]
    );
    assert_eq!(api.targets, ["shop/api-callers", "shop/api-metrics"]);
    assert_eq!(api.sources[0].via, ["shop/api-metrics"]);
    assert!(api
        .unenforced
        .iter()
        .any(|u| u.contains("HTTPRouteGroup shop/api-routes [metrics: GET /metrics]")));
    assert!(api
        .unenforced
        .iter()
        .any(|u| u.contains("TCPRoute shop/api-port [ports 8080]")));
}

#[test]
fn fragment_is_valid_toml_in_the_sidecar_shape() {
    let p = run(&[("shop.yaml", SAMPLE)]).unwrap();
    let text = sidecar_fragment(&p, &template(), &["shop.yaml".into()]);
    assert!(text.contains("NOT ENFORCED"), "{text}");
    let v: toml::Table = toml::from_str(&text).unwrap();
    let inbound = v["inbound"].as_array().unwrap();
    assert_eq!(inbound.len(), 2);
    assert_eq!(inbound[0]["name"].as_str(), Some("shop.api"));
    assert_eq!(inbound[0]["allow"].as_array().unwrap().len(), 3);
    assert_eq!(v.len(), 1, "only [[inbound]] at the top level: {text}");
    for t in inbound {
        let keys: Vec<&String> = t.as_table().unwrap().keys().collect();
        assert_eq!(keys, ["allow", "name"]);
    }
}

#[test]
fn comments_cannot_be_escaped_by_input() {
    // A match name with a newline (legal YAML) must stay inside its comment.
    let text = SAMPLE
        .replace("- name: metrics", "- name: \"metrics\\n[evil]\\nx = 1\"")
        .replace("    - metrics", "    - \"metrics\\n[evil]\\nx = 1\"");
    let p = run(&[("shop.yaml", &text)]).unwrap();
    let out = sidecar_fragment(&p, &template(), &["a\nb.yaml".into()]);
    let v: toml::Table = toml::from_str(&out).unwrap();
    assert_eq!(v.len(), 1, "{out}");
    assert!(out.contains("metrics\\n[evil]"), "{out}");
}

#[test]
fn same_source_in_two_targets_is_listed_once_with_both() {
    let text = format!(
        "{TT_HEAD}metadata: {{name: a, namespace: n}}\nspec:\n  destination: {{kind: ServiceAccount, name: d}}\n  sources: [{{kind: ServiceAccount, name: s}}]\n---\n\
         {TT_HEAD}metadata: {{name: b, namespace: n}}\nspec:\n  destination: {{kind: ServiceAccount, name: d, namespace: n}}\n  sources: [{{kind: ServiceAccount, name: s, namespace: n}}]\n"
    );
    let p = run(&[("in.yaml", &text)]).unwrap();
    assert_eq!(p.destinations.len(), 1);
    assert_eq!(p.destinations[0].sources.len(), 1);
    assert_eq!(p.destinations[0].sources[0].via, ["n/a", "n/b"]);
}

#[test]
fn routes_may_come_from_another_file_and_omit_their_namespace() {
    let routes = "apiVersion: specs.smi-spec.io/v1alpha4\nkind: TCPRoute\nmetadata: {name: r}\nspec: {matches: {ports: []}}\n";
    let tt = format!(
        "{TT_HEAD}metadata: {{name: a, namespace: n}}\nspec:\n  destination: {{kind: ServiceAccount, name: d}}\n  rules: [{{kind: TCPRoute, name: r}}]\n  sources: [{{kind: ServiceAccount, name: s}}]\n"
    );
    let p = run(&[("routes.yaml", routes), ("tt.yaml", &tt)]).unwrap();
    assert!(p.destinations[0].unenforced[0].contains("TCPRoute r [all ports]"));
}

#[test]
fn errors_name_file_document_field_and_fix() {
    let tt = |meta: &str, spec: &str| format!("{TT_HEAD}metadata: {meta}\nspec:\n{spec}");
    let dest = "  destination: {kind: ServiceAccount, name: d}\n";
    let src = "  sources: [{kind: ServiceAccount, name: s}]\n";
    let cases: Vec<(String, &[&str])> = vec![
        (
            "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: x}\n".into(),
            &[
                "in.yaml: document 1: unknown kind \"ServiceAccount\"",
                "remove other resources",
            ],
        ),
        (
            format!(
                "---\n{}",
                tt(
                    "{name: a, namespace: n}",
                    &format!("{dest}{src}  extra: 1\n")
                )
            ),
            &["document 1", "unknown field `extra`", "line 8"],
        ),
        (
            tt(
                "{name: a, namespace: n}",
                &format!("  destination: {{kind: ServiceAccount, name: d, nmespace: x}}\n{src}"),
            ),
            &[
                "spec.destination: unknown field `nmespace`",
                "expected one of",
            ],
        ),
        (
            tt("{name: a}", &format!("{dest}{src}")),
            &[
                "TrafficTarget a: spec.destination.namespace: missing",
                "add `namespace:`",
            ],
        ),
        (
            tt(
                "{name: a}",
                &format!("  destination: {{kind: ServiceAccount, name: d, namespace: n}}\n{src}"),
            ),
            &["spec.sources[0].namespace: missing"],
        ),
        (
            tt(
                "{name: a, namespace: n}",
                &format!("{dest}  rules: [{{kind: HTTPRouteGroup, name: gone}}]\n{src}"),
            ),
            &[
                "spec.rules[0]: HTTPRouteGroup \"gone\" in namespace \"n\" is not in the input",
                "pass the file",
            ],
        ),
        (
            tt(
                "{name: a, namespace: n}",
                &format!("{dest}  rules: [{{kind: UDPRoute, name: u}}]\n{src}"),
            ),
            &["spec.rules[0].kind: \"UDPRoute\" is not supported"],
        ),
        (
            tt("{name: a, namespace: n}", dest),
            &["spec.sources: empty or missing"],
        ),
        (
            tt(
                "{name: a, namespace: n}",
                &format!("  destination: {{kind: Group, name: d}}\n{src}"),
            ),
            &["spec.destination.kind: \"Group\" is not supported"],
        ),
        (
            tt("{name: a, namespace: N}", &format!("{dest}{src}")),
            &["metadata.namespace: \"N\" is not valid"],
        ),
        (
            tt(
                "{name: a, namespace: n}",
                &format!("{dest}  sources: [{{kind: ServiceAccount, name: \"x/../y\"}}]\n"),
            ),
            &["spec.sources[0].name: \"x/../y\" is not valid"],
        ),
        (
            "apiVersion: access.smi-spec.io/v1alpha2\nkind: TrafficTarget\n".into(),
            &[
                "unsupported apiVersion \"access.smi-spec.io/v1alpha2\"",
                "v1alpha3",
            ],
        ),
        (
            format!(
                "{}---\n{}",
                tt("{name: a, namespace: n}", &format!("{dest}{src}")),
                tt("{name: a, namespace: n}", &format!("{dest}{src}"))
            ),
            &["document 2: TrafficTarget n/a is defined twice (first in in.yaml document 1)"],
        ),
        ("key: [\n".into(), &["YAML syntax error"]),
        ("- 1\n".into(), &["a sequence is not a Kubernetes resource"]),
        ("# nothing\n".into(), &["no TrafficTarget"]),
    ];
    for (text, wants) in &cases {
        let e = err(text);
        assert!(e.starts_with("in.yaml: "), "{e}");
        for want in *wants {
            assert!(
                e.contains(want),
                "want {want:?} in: {e}\n--- input:\n{text}"
            );
        }
    }
}

#[test]
fn http_rule_match_names_must_exist() {
    let text = SAMPLE.replace("    - metrics\n", "    - metricz\n");
    let e = run(&[("shop.yaml", &text)]).unwrap_err().to_string();
    assert!(
        e.contains("document 4: TrafficTarget shop/api-metrics: spec.rules[0].matches[0]: HTTPRouteGroup shop/api-routes has no match named \"metricz\" (it has: api, metrics)"),
        "{e}"
    );
}

#[test]
fn template_outside_the_trust_domain_is_refused_per_id() {
    // Passes the probe ("default") but not namespace "shop".
    let td = TrustDomain::new("default.test").unwrap();
    let t = IdTemplate::parse("spiffe://{ns}.test/sa/{sa}", &td).unwrap();
    let e = import(&[("shop.yaml".into(), SAMPLE.into())], &t)
        .unwrap_err()
        .to_string();
    assert!(e.contains("outside trust domain \"default.test\""), "{e}");
    assert!(e.contains("spec.destination"), "{e}");
}

proptest::proptest! {
    #[test]
    fn arbitrary_text_never_panics(src in "\\PC{0,400}") {
        let _ = run(&[("p.yaml", &src)]);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
        let _ = run(&[("p.yaml", &String::from_utf8_lossy(&bytes))]);
    }

    /// YAML-shaped noise: the sample with one line replaced by arbitrary text.
    #[test]
    fn mutated_sample_never_panics(line in 0usize..90, junk in "[ a-zA-Z0-9:{}\\[\\],\"'&*!|>#-]{0,40}") {
        let mut lines: Vec<&str> = SAMPLE.lines().collect();
        if line < lines.len() {
            lines[line] = &junk;
        }
        let text = lines.join("\n");
        if let Ok(p) = run(&[("p.yaml", &text)]) {
            let out = sidecar_fragment(&p, &template(), &["p.yaml".into()]);
            proptest::prop_assert!(toml::from_str::<toml::Table>(&out).is_ok(), "{}", out);
        }
    }
}

/// docs/examples/smi/shop-allow.toml is what docs/authz-import.md shows: keep it generated.
#[test]
fn documented_output_is_current() {
    let p = run(&[("shop.yaml", SAMPLE)]).unwrap();
    let out = sidecar_fragment(&p, &template(), &["docs/examples/smi/shop.yaml".into()]);
    let documented = include_str!("../../docs/examples/smi/shop-allow.toml");
    assert_eq!(
        out, documented,
        "regenerate: fedgate authz import docs/examples/smi/shop.yaml --trust-domain \
         cluster-b.test -o docs/examples/smi/shop-allow.toml"
    );
}

/// `kubectl get traffictargets,tcproutes -A -o yaml` writes one `kind: List`, with server-side
/// metadata on every item.
#[test]
fn kubectl_list_output_is_read_item_by_item() {
    let list = "apiVersion: v1\nkind: List\nmetadata: {resourceVersion: \"\"}\nitems:\n\
        - apiVersion: specs.smi-spec.io/v1alpha4\n  kind: TCPRoute\n  metadata: {name: r, namespace: n, uid: u1, resourceVersion: \"7\"}\n  spec: {matches: {ports: [5432]}}\n\
        - apiVersion: access.smi-spec.io/v1alpha3\n  kind: TrafficTarget\n  metadata:\n    name: t\n    namespace: n\n    annotations: {a: b}\n  spec:\n    destination: {kind: ServiceAccount, name: db}\n    rules: [{kind: TCPRoute, name: r}]\n    sources: [{kind: ServiceAccount, name: app}]\n";
    let p = run(&[("list.yaml", list)]).unwrap();
    assert_eq!(
        p.destinations[0].sources[0].id.to_string(),
        "spiffe://cluster-b.test/ns/n/sa/app"
    );

    let e = err(&list.replace("name: app}", "name: app, colour: red}"));
    assert!(
        e.starts_with("in.yaml: document 1: items[1]: TrafficTarget: spec.sources[0].colour: unknown field `colour`"),
        "{e}"
    );
    let e = err(&list.replace("kind: TCPRoute\n", "kind: UDPRoute\n"));
    assert!(
        e.contains("document 1: items[0]: unknown kind \"UDPRoute\""),
        "{e}"
    );
    let e = err(&list.replace("name: db}", "name: db, namespace: \"\"}"));
    assert!(
        e.contains("document 1: items[1]: TrafficTarget n/t: spec.destination.namespace: \"\" is not valid"),
        "{e}"
    );
    let e = err("apiVersion: v1\nkind: List\nitems: 3\n");
    assert!(e.contains("items: a number, not a sequence"), "{e}");
}
