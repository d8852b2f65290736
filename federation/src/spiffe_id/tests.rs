use proptest::prelude::*;

use super::*;

use SpiffeIdError as E;

/// Expected outcome of a parse: `(trust domain, path)` or the rule broken.
type Want<'a> = Result<(&'a str, &'a str), E>;

#[test]
fn parse_table() {
    let long_td = "a".repeat(MAX_TRUST_DOMAIN_LEN + 1);
    let max_td = "a".repeat(MAX_TRUST_DOMAIN_LEN);
    // `spiffe://` + 255-byte TD + path up to exactly 2048 bytes.
    let max_path = format!("/{}", "p".repeat(MAX_ID_LEN - 9 - MAX_TRUST_DOMAIN_LEN - 1));
    let max_id = format!("spiffe://{max_td}{max_path}");
    assert_eq!(max_id.len(), MAX_ID_LEN);
    let too_long = format!("{max_id}x");
    let cases: Vec<(String, Want)> = vec![
        ("spiffe://example.org".into(), Ok(("example.org", ""))),
        (
            "spiffe://example.org/workload".into(),
            Ok(("example.org", "/workload")),
        ),
        (
            "spiffe://ex-am_ple.0rg/ns/Default/sa/A.b-c_d".into(),
            Ok(("ex-am_ple.0rg", "/ns/Default/sa/A.b-c_d")),
        ),
        ("spiffe://1.2.3.4/x".into(), Ok(("1.2.3.4", "/x"))),
        ("spiffe://td/.a/..b/...".into(), Ok(("td", "/.a/..b/..."))),
        (max_id.clone(), Ok((max_td.as_str(), max_path.as_str()))),
        ("".into(), Err(E::Empty)),
        ("example.org/x".into(), Err(E::WrongScheme)),
        ("SPIFFE://example.org/x".into(), Err(E::WrongScheme)),
        ("Spiffe://example.org".into(), Err(E::WrongScheme)),
        ("https://example.org/x".into(), Err(E::WrongScheme)),
        ("spiffe:/example.org".into(), Err(E::WrongScheme)),
        ("spiffe://".into(), Err(E::MissingTrustDomain)),
        ("spiffe:///path".into(), Err(E::MissingTrustDomain)),
        (
            "spiffe://Example.org/x".into(),
            Err(E::UppercaseTrustDomain('E')),
        ),
        (
            "spiffe://exa mple.org".into(),
            Err(E::BadTrustDomainChar(' ')),
        ),
        (
            "spiffe://exa+mple.org".into(),
            Err(E::BadTrustDomainChar('+')),
        ),
        ("spiffe://[::1]/x".into(), Err(E::Port)),
        (
            "spiffe://exämple.org".into(),
            Err(E::BadTrustDomainChar('ä')),
        ),
        ("spiffe://example.org:8080/x".into(), Err(E::Port)),
        ("spiffe://user@example.org/x".into(), Err(E::Userinfo)),
        ("spiffe://user:pw@example.org/x".into(), Err(E::Userinfo)),
        ("spiffe://example.org/x?a=b".into(), Err(E::Query)),
        ("spiffe://example.org?a".into(), Err(E::Query)),
        ("spiffe://example.org/x#frag".into(), Err(E::Fragment)),
        ("spiffe://example.org#frag".into(), Err(E::Fragment)),
        ("spiffe://exa%41mple.org/x".into(), Err(E::PercentEncoded)),
        ("spiffe://example.org/a%2Fb".into(), Err(E::PercentEncoded)),
        ("spiffe://example.org//x".into(), Err(E::EmptySegment)),
        ("spiffe://example.org/a//b".into(), Err(E::EmptySegment)),
        ("spiffe://example.org/.".into(), Err(E::DotSegment)),
        ("spiffe://example.org/..".into(), Err(E::DotSegment)),
        ("spiffe://example.org/a/./b".into(), Err(E::DotSegment)),
        ("spiffe://example.org/a/../b".into(), Err(E::DotSegment)),
        ("spiffe://example.org/".into(), Err(E::TrailingSlash)),
        ("spiffe://example.org/a/".into(), Err(E::TrailingSlash)),
        ("spiffe://example.org/a b".into(), Err(E::BadPathChar(' '))),
        ("spiffe://example.org/a*b".into(), Err(E::BadPathChar('*'))),
        ("spiffe://example.org/a:b".into(), Err(E::BadPathChar(':'))),
        ("spiffe://example.org/ä".into(), Err(E::BadPathChar('ä'))),
        (
            format!("spiffe://{long_td}/x"),
            Err(E::TrustDomainTooLong(MAX_TRUST_DOMAIN_LEN + 1)),
        ),
        (too_long.clone(), Err(E::TooLong(MAX_ID_LEN + 1))),
    ];
    for (input, want) in cases {
        let got = SpiffeId::parse(&input);
        match (got, want) {
            (Ok(id), Ok((td, path))) => {
                assert_eq!(id.trust_domain().as_str(), td, "{input}");
                assert_eq!(id.path(), path, "{input}");
                assert_eq!(id.to_string(), input);
            }
            (Err(e), Err(w)) => assert_eq!(e, w, "{input}"),
            (got, want) => panic!("{input}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn trust_domain_table() {
    let cases: Vec<(&str, Result<&str, E>)> = vec![
        ("example.org", Ok("example.org")),
        ("spiffe://example.org", Ok("example.org")),
        ("cluster-a.test", Ok("cluster-a.test")),
        ("", Err(E::Empty)),
        ("spiffe://", Err(E::MissingTrustDomain)),
        ("spiffe://example.org/x", Err(E::TrustDomainHasPath)),
        ("spiffe://example.org/", Err(E::TrailingSlash)),
        ("Example.org", Err(E::UppercaseTrustDomain('E'))),
        ("example.org:443", Err(E::Port)),
        ("me@example.org", Err(E::Userinfo)),
        ("exa%41mple", Err(E::PercentEncoded)),
        ("example.org/x", Err(E::BadTrustDomainChar('/'))),
        ("https://example.org", Err(E::WrongScheme)),
    ];
    for (input, want) in cases {
        match (TrustDomain::new(input), want) {
            (Ok(td), Ok(w)) => {
                assert_eq!(td.as_str(), w, "{input}");
                assert_eq!(td.id_string(), format!("spiffe://{w}"));
                assert_eq!(td.id().to_string(), format!("spiffe://{w}"));
            }
            (Err(e), Err(w)) => assert_eq!(e, w, "{input}"),
            (got, want) => panic!("{input}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn from_parts_and_member_of() {
    let td = TrustDomain::new("cluster-a.test").unwrap();
    let other = TrustDomain::new("cluster-b.test").unwrap();
    let id = SpiffeId::from_parts(&td, "/ns/x/sa/y").unwrap();
    assert_eq!(id.to_string(), "spiffe://cluster-a.test/ns/x/sa/y");
    assert!(id.member_of(&td));
    assert!(!id.member_of(&other));
    assert_eq!(SpiffeId::from_parts(&td, "").unwrap(), td.id());
    assert_eq!(SpiffeId::from_parts(&td, "ns"), Err(E::PathNotAbsolute));
    assert_eq!(SpiffeId::from_parts(&td, "/a/"), Err(E::TrailingSlash));
    assert_eq!(SpiffeId::from_parts(&td, "/a?b"), Err(E::Query));
    assert_eq!(SpiffeId::from_parts(&td, "/a#b"), Err(E::Fragment));
    assert_eq!(SpiffeId::from_parts(&td, "/.."), Err(E::DotSegment));
    let long = format!("/{}", "a".repeat(MAX_ID_LEN));
    assert!(matches!(
        SpiffeId::from_parts(&td, &long),
        Err(E::TooLong(_))
    ));
}

#[test]
fn messages_name_the_rule() {
    for e in [
        E::TrailingSlash,
        E::DotSegment,
        E::EmptySegment,
        E::Port,
        E::Query,
    ] {
        let msg = e.to_string();
        assert!(msg.contains("SPIFFE-ID.md"), "{msg}");
        assert!(
            msg.chars().next().is_some_and(|c| c.is_lowercase()),
            "{msg}"
        );
    }
}

#[test]
fn serde_as_checked_strings() {
    let id: SpiffeId = serde_json::from_str(r#""spiffe://a.test/x""#).unwrap();
    assert_eq!(
        serde_json::to_string(&id).unwrap(),
        r#""spiffe://a.test/x""#
    );
    let td: TrustDomain = serde_json::from_str(r#""a.test""#).unwrap();
    assert_eq!(serde_json::to_string(&td).unwrap(), r#""a.test""#);
    let err = serde_json::from_str::<SpiffeId>(r#""spiffe://a.test/x/""#).unwrap_err();
    assert!(err.to_string().contains("trailing slash"), "{err}");
    assert!(serde_json::from_str::<TrustDomain>(r#""A.test""#).is_err());
}

fn td_strategy() -> impl Strategy<Value = String> {
    "[a-z0-9._-]{1,40}"
}

fn path_strategy() -> impl Strategy<Value = String> {
    prop::collection::vec("[a-zA-Z0-9._-]{1,12}", 0..6).prop_map(|segs| {
        segs.into_iter()
            .filter(|s| s != "." && s != "..")
            .map(|s| format!("/{s}"))
            .collect::<String>()
    })
}

proptest! {
    #[test]
    fn arbitrary_strings_never_panic(s in ".{0,300}") {
        let _ = SpiffeId::parse(&s);
        let _ = TrustDomain::new(&s);
    }

    #[test]
    fn arbitrary_spiffe_prefixed_never_panic(s in "[a-zA-Z0-9./:%?#@_ -]{0,80}") {
        let _ = SpiffeId::parse(&format!("spiffe://{s}"));
        let _ = TrustDomain::new(&format!("spiffe://{s}"));
    }

    #[test]
    fn valid_ids_round_trip(td in td_strategy(), path in path_strategy()) {
        let text = format!("spiffe://{td}{path}");
        let id = SpiffeId::parse(&text).unwrap();
        prop_assert_eq!(id.to_string(), text.clone());
        prop_assert_eq!(id.trust_domain().as_str(), td.as_str());
        prop_assert_eq!(id.path(), path.as_str());
        prop_assert_eq!(SpiffeId::parse(&id.to_string()).unwrap(), id.clone());
        let td2 = TrustDomain::new(&td).unwrap();
        prop_assert_eq!(SpiffeId::from_parts(&td2, &path).unwrap(), id);
    }
}
