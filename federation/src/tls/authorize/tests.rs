//! Tests of authorization rules and the pattern syntax (tables, display, proptests).

use super::*;

fn id(s: &str) -> SpiffeId {
    SpiffeId::parse(s).unwrap()
}

fn td(s: &str) -> TrustDomain {
    TrustDomain::new(s).unwrap()
}

#[test]
fn table() {
    let a = id("spiffe://a.test/ns/x/sa/y");
    let a2 = id("spiffe://a.test/ns/xy");
    let b = id("spiffe://b.test/ns/x/sa/y");
    let cases: Vec<(Authorizer, &SpiffeId, bool)> = vec![
        (Authorizer::any(), &a, true),
        (Authorizer::deny_all(), &a, false),
        (Authorizer::exact(a.clone()), &a, true),
        (Authorizer::exact(a.clone()), &b, false),
        (Authorizer::one_of([a.clone(), a2.clone()]), &a2, true),
        (Authorizer::one_of([a.clone()]), &b, false),
        (Authorizer::one_of([]), &a, false),
        (Authorizer::member_of(td("a.test")), &a, true),
        (Authorizer::member_of(td("a.test")), &b, false),
        (
            Authorizer::path_prefix(td("a.test"), "/ns/x").unwrap(),
            &a,
            true,
        ),
        (
            Authorizer::path_prefix(td("a.test"), "/ns/x").unwrap(),
            &a2,
            false,
        ),
        (
            Authorizer::path_prefix(td("a.test"), "/ns/x/sa/y").unwrap(),
            &a,
            true,
        ),
        (
            Authorizer::path_prefix(td("b.test"), "/ns/x").unwrap(),
            &a,
            false,
        ),
        (Authorizer::path_prefix(td("a.test"), "").unwrap(), &a, true),
        (Authorizer::below(td("a.test"), "/ns/x").unwrap(), &a, true),
        (
            Authorizer::below(td("a.test"), "/ns/x").unwrap(),
            &a2,
            false,
        ),
        (
            Authorizer::below(td("a.test"), "/ns/x/sa/y").unwrap(),
            &a,
            false,
        ),
        (Authorizer::below(td("b.test"), "/ns/x").unwrap(), &a, false),
        (Authorizer::any_of([]), &a, false),
        (
            Authorizer::any_of([Authorizer::exact(b.clone()), Authorizer::deny_all()]),
            &a,
            false,
        ),
        (
            Authorizer::any_of([Authorizer::exact(b.clone()), Authorizer::exact(a.clone())]),
            &a,
            true,
        ),
        (
            Authorizer::any_of([Authorizer::any_of([]), Authorizer::member_of(td("b.test"))]),
            &b,
            true,
        ),
    ];
    for (authz, peer, want) in cases {
        assert_eq!(authz.allows(peer), want, "{authz} vs {peer}");
        assert_eq!(authz.authorize(peer).is_ok(), want, "{authz} vs {peer}");
    }
}

#[test]
fn bad_prefix_and_error_message() {
    assert_eq!(
        Authorizer::path_prefix(td("a.test"), "/ns/"),
        Err(SpiffeIdError::TrailingSlash)
    );
    assert_eq!(
        Authorizer::path_prefix(td("a.test"), "ns"),
        Err(SpiffeIdError::PathNotAbsolute)
    );
    assert_eq!(
        Authorizer::below(td("a.test"), "/ns/"),
        Err(SpiffeIdError::TrailingSlash)
    );
    let err = Authorizer::member_of(td("a.test"))
        .authorize(&id("spiffe://b.test/x"))
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("spiffe://b.test/x") && msg.contains("a.test"),
        "{msg}"
    );
}

#[test]
fn refusal_of_a_pattern_list_names_its_rules() {
    let list = Authorizer::from_patterns(&["spiffe://a.test/ns/x", "spiffe://b.test/*"]).unwrap();
    let err = list.authorize(&id("spiffe://c.test/q")).unwrap_err();
    assert_eq!(err.policy, "spiffe://a.test/ns/x, spiffe://b.test/*");
    assert_eq!(
        err.to_string(),
        "peer spiffe://c.test/q is not authorized \
         (allowed: spiffe://a.test/ns/x, spiffe://b.test/*)"
    );
}

#[test]
fn empty_list_denies_everyone() {
    let list = Authorizer::any_of([]);
    assert!(!list.allows(&id("spiffe://a.test/x")));
    assert_eq!(list, Authorizer::from_patterns::<&str>(&[]).unwrap());
}

#[test]
fn exact_matches_only_that_id() {
    let list = Authorizer::from_patterns(&["spiffe://a.test/ns/x"]).unwrap();
    assert!(list.allows(&id("spiffe://a.test/ns/x")));
    assert!(!list.allows(&id("spiffe://a.test/ns/x/y")));
    assert!(!list.allows(&id("spiffe://b.test/ns/x")));
}

#[test]
fn prefix_matches_whole_segments_in_its_domain() {
    let list = Authorizer::from_patterns(&["spiffe://a.test/ns/*"]).unwrap();
    assert!(list.allows(&id("spiffe://a.test/ns/x")));
    assert!(!list.allows(&id("spiffe://a.test/nsx/y")));
    assert!(!list.allows(&id("spiffe://a.test/ns")));
    assert!(!list.allows(&id("spiffe://b.test/ns/x")));
}

#[test]
fn member_of_matches_any_id_of_the_domain() {
    let list = Authorizer::from_patterns(&["spiffe://a.test/*"]).unwrap();
    assert!(list.allows(&id("spiffe://a.test/anything/here")));
    assert!(!list.allows(&id("spiffe://b.test/anything")));
}

#[test]
fn star_allows_anyone() {
    assert!(Authorizer::from_patterns(&["*"])
        .unwrap()
        .allows(&id("spiffe://z.test/q")));
}

#[test]
fn misplaced_wildcards_and_bad_ids_are_refused() {
    for bad in [
        "spiffe://a.test/*/x",
        "spiffe://*.test/x",
        "spiffe://a.test/x*",
        "a.test/*",
        "",
    ] {
        assert!(
            Authorizer::from_pattern(bad).is_err(),
            "{bad} should be refused"
        );
    }
    assert_eq!(
        Authorizer::from_patterns(&["spiffe://a.test/ok", "spiffe://a.test/*/x"]),
        Err(PatternError::MisplacedWildcard(
            "spiffe://a.test/*/x".into()
        ))
    );
    assert!(matches!(
        Authorizer::from_pattern("a.test/*"),
        Err(PatternError::Id { pattern, .. }) if pattern == "a.test/*"
    ));
}

#[test]
fn display_round_trips() {
    for p in [
        "*",
        "spiffe://a.test/ns/x",
        "spiffe://a.test/ns/*",
        "spiffe://a.test/*",
    ] {
        assert_eq!(Authorizer::from_pattern(p).unwrap().to_string(), p);
        assert_eq!(Authorizer::from_patterns(&[p]).unwrap().to_string(), p);
    }
    let list = ["spiffe://a.test/ns/x", "spiffe://a.test/ns/*", "*"];
    let shown = Authorizer::from_patterns(&list).unwrap().to_string();
    assert_eq!(shown, list.join(", "));
}

#[test]
fn display_of_other_rules_is_pattern_syntax_or_says_nothing() {
    let a = id("spiffe://a.test/ns/x");
    let shown = |authz: Authorizer| authz.to_string();
    assert_eq!(shown(Authorizer::exact(a.clone())), "spiffe://a.test/ns/x");
    assert_eq!(
        shown(Authorizer::one_of([a.clone(), id("spiffe://a.test/b")])),
        "spiffe://a.test/b, spiffe://a.test/ns/x"
    );
    assert_eq!(
        shown(Authorizer::path_prefix(td("a.test"), "/ns").unwrap()),
        "spiffe://a.test/ns, spiffe://a.test/ns/*"
    );
    assert_eq!(
        shown(Authorizer::path_prefix(td("a.test"), "").unwrap()),
        "spiffe://a.test/*"
    );
    assert_eq!(shown(Authorizer::deny_all()), "nothing");
    assert_eq!(shown(Authorizer::one_of([])), "nothing (empty list)");
    assert_eq!(shown(Authorizer::any_of([])), "nothing (empty list)");
    assert_eq!(
        shown(Authorizer::any_of([Authorizer::deny_all()])),
        "nothing"
    );
    assert_eq!(
        shown(Authorizer::any_of([
            Authorizer::any_of([]),
            Authorizer::exact(a),
            Authorizer::one_of([]),
        ])),
        "spiffe://a.test/ns/x"
    );
}

#[test]
fn allows_nothing_only_for_rules_without_any_allowing_part() {
    let a = id("spiffe://a.test/ns/x");
    for nothing in [
        Authorizer::deny_all(),
        Authorizer::one_of([]),
        Authorizer::any_of([]),
        Authorizer::any_of([Authorizer::deny_all(), Authorizer::any_of([])]),
    ] {
        assert!(nothing.allows_nothing(), "{nothing}");
    }
    for something in [
        Authorizer::any(),
        Authorizer::exact(a.clone()),
        Authorizer::one_of([a.clone()]),
        Authorizer::path_prefix(td("a.test"), "/ns").unwrap(),
        Authorizer::below(td("a.test"), "/ns").unwrap(),
        Authorizer::member_of(td("a.test")),
        Authorizer::any_of([Authorizer::deny_all(), Authorizer::exact(a)]),
    ] {
        assert!(!something.allows_nothing(), "{something}");
    }
}

mod props {
    use proptest::prelude::*;

    use super::*;

    fn td_name() -> impl Strategy<Value = String> {
        prop::sample::select(vec!["a.test", "b.test", "a.tes"]).prop_map(String::from)
    }

    fn path() -> impl Strategy<Value = String> {
        prop::collection::vec(prop::sample::select(vec!["ns", "n", "nsx", "x"]), 0..4)
            .prop_map(|segs| segs.iter().map(|s| format!("/{s}")).collect())
    }

    /// A valid pattern: `*`, an exact ID, `td/*` or `td/path/*`.
    fn pattern() -> impl Strategy<Value = String> {
        (0..3u8, td_name(), path()).prop_map(|(kind, td, path)| match kind {
            0 => "*".to_owned(),
            1 => format!("spiffe://{td}{path}"),
            _ => format!("spiffe://{td}{path}/*"),
        })
    }

    /// What a pattern means, decided on the text of the ID.
    fn reference(pattern: &str, id: &SpiffeId) -> bool {
        let text = id.to_string();
        match pattern.strip_suffix("/*") {
            _ if pattern == "*" => true,
            Some(base) => match base.strip_prefix("spiffe://") {
                Some(td) if !td.contains('/') => id.trust_domain().as_str() == td,
                _ => text.starts_with(&format!("{base}/")),
            },
            None => text == pattern,
        }
    }

    proptest! {
        /// Every valid pattern parses, prints back to itself, and a list allows exactly
        /// the IDs one of its patterns allows.
        #[test]
        fn patterns_parse_print_and_match_as_written(
            patterns in prop::collection::vec(pattern(), 0..4),
            td in td_name(),
            path in path(),
        ) {
            let peer = id(&format!("spiffe://{td}{path}"));
            for p in &patterns {
                let rule = Authorizer::from_pattern(p).unwrap();
                prop_assert_eq!(&rule.to_string(), p);
                prop_assert_eq!(rule.allows(&peer), reference(p, &peer), "{} vs {}", p, peer);
            }
            let list = Authorizer::from_patterns(&patterns).unwrap();
            let want = patterns.iter().any(|p| reference(p, &peer));
            prop_assert_eq!(list.allows(&peer), want);
            prop_assert_eq!(list.allows_nothing(), patterns.is_empty());
        }

        /// Any text either is refused or is a pattern that prints back to exactly that text.
        #[test]
        fn any_text_is_refused_or_round_trips(
            s in "(\\*|spiffe://[a-z.*]{0,6}(/[a-z*]{0,3}){0,3}(/\\*)?|.{0,20})",
        ) {
            if let Ok(rule) = Authorizer::from_pattern(&s) {
                prop_assert_eq!(rule.to_string(), s);
            }
        }
    }
}
