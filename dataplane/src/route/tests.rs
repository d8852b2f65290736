//! RouteTable tests: precedence, pattern validation, a 10,000-route table, and a proptest
//! against a slow reference implementation.

use proptest::prelude::*;

use super::*;

fn table(patterns: &[&str]) -> RouteTable<String> {
    let mut t = RouteTable::new();
    for p in patterns {
        t.insert(p, (*p).to_owned()).unwrap();
    }
    t
}

#[test]
fn precedence_exact_then_longest_wildcard_then_default() {
    let mut t = table(&["a.b.example", "*.b.example", "*.example"]);
    assert_eq!(t.lookup(Some("a.b.example")).unwrap(), "a.b.example");
    assert_eq!(t.lookup(Some("x.b.example")).unwrap(), "*.b.example");
    assert_eq!(t.lookup(Some("y.x.b.example")).unwrap(), "*.b.example");
    assert_eq!(t.lookup(Some("b.example")).unwrap(), "*.example");
    assert_eq!(t.lookup(Some("z.example")).unwrap(), "*.example");
    assert_eq!(t.lookup(Some("example")), None);
    assert_eq!(t.lookup(Some("other.test")), None);
    assert_eq!(t.lookup(None), None);
    t.set_default("default".to_owned());
    assert_eq!(t.lookup(Some("example")).unwrap(), "default");
    assert_eq!(t.lookup(Some("other.test")).unwrap(), "default");
    assert_eq!(t.lookup(None).unwrap(), "default");
    assert_eq!(t.default_route().unwrap(), "default");
}

#[test]
fn wildcard_needs_at_least_one_label() {
    let t = table(&["*.example"]);
    assert!(t.lookup(Some("example")).is_none());
    assert!(t.lookup(Some(".example")).is_none());
    assert!(t.lookup(Some("notexample")).is_none());
    assert!(t.lookup(Some("a.example")).is_some());
    assert!(t.lookup(Some("a.b.c.example")).is_some());
}

#[test]
fn case_and_trailing_dot_insensitive() {
    let t = table(&["Svc.Example.COM", "*.Cluster-B.test."]);
    assert_eq!(
        t.lookup(Some("svc.example.com")).unwrap(),
        "Svc.Example.COM"
    );
    assert_eq!(
        t.lookup(Some("SVC.EXAMPLE.COM.")).unwrap(),
        "Svc.Example.COM"
    );
    assert_eq!(
        t.lookup(Some("x.CLUSTER-b.test")).unwrap(),
        "*.Cluster-B.test."
    );
    let mut patterns: Vec<String> = t.iter().map(|(p, _)| p.to_string()).collect();
    patterns.sort();
    assert_eq!(patterns, ["*.cluster-b.test", "svc.example.com"]);
    assert_eq!(t.len(), 2);
    assert!(!t.is_empty());
}

#[test]
fn invalid_patterns_are_refused() {
    let mut t = RouteTable::new();
    for (pattern, expect) in [
        ("*", "wildcard"),
        ("*.", "empty"),
        ("a.*.example", "wildcard"),
        ("*a.example", "wildcard"),
        ("a*.example", "wildcard"),
        ("*.*.example", "wildcard"),
        ("**.example", "wildcard"),
        ("", "empty"),
        ("a..example", "empty"),
        (".example", "empty"),
        ("*..example", "empty"),
        ("a.example..", "empty"),
        ("10.0.0.1", "invalid"),
        ("*.10.0.0.1", "invalid"),
        ("bad_name.example", "invalid"),
        ("-a.example", "invalid"),
    ] {
        let err = t.insert(pattern, ()).unwrap_err();
        let kind = match &err {
            RouteError::MisplacedWildcard { pattern: p } => {
                assert_eq!(p, pattern);
                "wildcard"
            }
            RouteError::EmptyLabel { pattern: p } => {
                assert_eq!(p, pattern);
                "empty"
            }
            RouteError::InvalidName { pattern: p, .. } => {
                assert_eq!(p, pattern);
                "invalid"
            }
            RouteError::Duplicate { .. } => "duplicate",
        };
        assert_eq!(kind, expect, "{pattern:?}: {err}");
        assert!(err.to_string().contains(&format!("{pattern:?}")), "{err}");
    }
    assert!(t.is_empty());
}

#[test]
fn duplicates_are_refused_case_insensitively() {
    let mut t = table(&["a.example", "*.example"]);
    assert_eq!(
        t.insert("A.Example", "x".into()),
        Err(RouteError::Duplicate {
            pattern: "A.Example".into()
        })
    );
    assert_eq!(
        t.insert("*.EXAMPLE.", "x".into()),
        Err(RouteError::Duplicate {
            pattern: "*.EXAMPLE.".into()
        })
    );
    // An exact name and a wildcard on the same suffix are different patterns.
    t.insert("example", "example".into()).unwrap();
    assert_eq!(t.lookup(Some("example")).unwrap(), "example");
    assert_eq!(t.len(), 3);
}

#[test]
fn ten_thousand_routes() {
    let mut t = RouteTable::new();
    for i in 0..5_000 {
        t.insert(&format!("svc-{i}.ns.cluster.example"), i).unwrap();
        t.insert(&format!("*.tenant-{i}.example"), 100_000 + i)
            .unwrap();
    }
    t.set_default(usize::MAX);
    assert_eq!(t.len(), 10_000);
    for i in (0..5_000).step_by(7) {
        assert_eq!(
            t.lookup(Some(&format!("svc-{i}.ns.cluster.example"))),
            Some(&i)
        );
        let deep = format!("a.b.tenant-{i}.example");
        assert_eq!(t.lookup(Some(&deep)), Some(&(100_000 + i)));
    }
    assert_eq!(
        t.lookup(Some("svc-5000.ns.cluster.example")),
        Some(&usize::MAX)
    );
    assert_eq!(t.lookup(Some("tenant-1.example")), Some(&usize::MAX));
    assert_eq!(t.iter().count(), 10_000);
}

/// Reference semantics, written the slow and obvious way.
fn reference<'a>(routes: &'a [(String, usize)], name: &str) -> Option<&'a usize> {
    if let Some((_, v)) = routes.iter().find(|(p, _)| p == name) {
        return Some(v);
    }
    routes
        .iter()
        .filter_map(|(p, v)| {
            let suffix = p.strip_prefix("*.")?;
            name.ends_with(&format!(".{suffix}"))
                .then_some((suffix.len(), v))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, v)| v)
}

fn label() -> impl Strategy<Value = String> {
    prop_oneof![Just("a"), Just("b"), Just("c"), Just("x-1")].prop_map(str::to_owned)
}

fn name() -> impl Strategy<Value = String> {
    proptest::collection::vec(label(), 1..5).prop_map(|labels| labels.join("."))
}

proptest! {
    #[test]
    fn lookup_matches_reference(
        patterns in proptest::collection::vec((any::<bool>(), name()), 0..20),
        queries in proptest::collection::vec(name(), 1..20),
    ) {
        let mut t = RouteTable::new();
        let mut routes = Vec::new();
        for (i, (wild, n)) in patterns.into_iter().enumerate() {
            let p = if wild { format!("*.{n}") } else { n };
            let inserted = t.insert(&p, i).is_ok();
            let duplicate = routes.iter().any(|(q, _)| *q == p);
            prop_assert_eq!(inserted, !duplicate);
            if inserted {
                routes.push((p, i));
            }
        }
        prop_assert_eq!(t.len(), routes.len());
        for q in queries {
            prop_assert_eq!(t.lookup(Some(&q)), reference(&routes, &q));
            prop_assert_eq!(t.lookup(Some(&q.to_ascii_uppercase())), reference(&routes, &q));
        }
    }

    #[test]
    fn arbitrary_patterns_and_names_never_panic(pattern in ".{0,80}", query in ".{0,80}") {
        let mut t = RouteTable::new();
        let _ = t.insert(&pattern, ());
        let _ = t.lookup(Some(&query));
    }
}

#[test]
fn map_keeps_every_pattern_and_the_default() {
    let mut t = table(&["a.example", "*.example"]);
    t.set_default("default".to_owned());
    let lengths = t.map(|v| v.len());
    assert_eq!(lengths.len(), t.len());
    assert_eq!(lengths.lookup(Some("a.example")), Some(&9));
    assert_eq!(lengths.lookup(Some("b.example")), Some(&9));
    assert_eq!(lengths.lookup(Some("other.test")), Some(&7));
    assert_eq!(lengths.default_route(), Some(&7));
    let mut patterns: Vec<_> = lengths.iter().map(|(p, _)| p.to_string()).collect();
    patterns.sort();
    assert_eq!(patterns, ["*.example", "a.example"]);
}
