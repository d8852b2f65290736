//! Between the Workload API's protobuf messages and fedgate's types, both ways. Pure.
//!
//! Wire formats (workload.proto): certificate chains and X.509 bundles are concatenated ASN.1
//! DER certificates (leaf first for a chain); keys are unencrypted PKCS#8 DER; bundle maps
//! are keyed by the trust domain's SPIFFE ID (`spiffe://<td>`); JWT bundles are JWKS JSON
//! documents holding only `jwt-svid` keys; JWT-SVIDs are JWS compact strings and the claims
//! `ValidateJWTSVID` returns are a `google.protobuf.Struct` mirroring the token's JSON claims.
//!
//! Invariants: an SVID read from a message has a key that matches its leaf (checked by
//! `X509Svid::from_der`) and the SPIFFE ID the message names; a bundle read from a message
//! has at least one authority; a bundle map yields at most one bundle per trust domain; a
//! JWT-SVID is minted only for the IDs passed in, and validated only against the bundle of its
//! `sub`'s trust domain (`fedgate_federation::jwt::validate`).
//! (The client side that builds an `Identity` from these is `crate::identity::workload_api`.)

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

use fedgate_federation::jwt::{self, JwtError};
use fedgate_federation::{Bundle, SpiffeId, SvidError, TrustDomain, X509Svid};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::proto::{
    JwtBundlesResponse, Jwtsvid, JwtsvidResponse, ValidateJwtsvidResponse, X509BundlesResponse,
    X509svid, X509svidResponse,
};
use super::Snapshot;
use crate::ca::{CaError, JwtSigner};

/// Why a message could not be turned into fedgate's types (or the reverse).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConvertError {
    #[error("the response holds no SVID")]
    NoSvid,
    #[error("{what} is not a sequence of DER certificates: {reason}")]
    BadDer { what: String, reason: String },
    #[error("{what} is empty")]
    Empty { what: String },
    #[error("the SVID for {spiffe_id:?} is not usable")]
    Svid {
        spiffe_id: String,
        #[source]
        source: SvidError,
    },
    #[error("the message names SPIFFE ID {named:?} but the certificate carries {actual}")]
    IdMismatch { named: String, actual: SpiffeId },
    #[error("the SVID {id} is not in the expected trust domain {expected}")]
    WrongTrustDomain { id: SpiffeId, expected: TrustDomain },
    #[error("bundle map key {0:?} is not a trust domain (expected \"spiffe://<trust domain>\")")]
    BadTrustDomain(String),
    #[error("the key of {0} is not PKCS#8, which the Workload API requires")]
    NotPkcs8(SpiffeId),
}

/// Concatenated DER of `certs`.
pub fn concat_der(certs: &[CertificateDer<'_>]) -> Vec<u8> {
    certs
        .iter()
        .flat_map(|c| c.as_ref().iter().copied())
        .collect()
}

/// Splits concatenated DER certificates; `what` names the field in errors.
pub fn split_der(bytes: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, ConvertError> {
    let mut rest = bytes;
    let mut certs = Vec::new();
    while !rest.is_empty() {
        let (after, _) =
            x509_parser::parse_x509_certificate(rest).map_err(|e| ConvertError::BadDer {
                what: what.to_owned(),
                reason: e.to_string(),
            })?;
        let len = rest.len() - after.len();
        certs.push(CertificateDer::from(rest[..len].to_vec()));
        rest = after;
    }
    Ok(certs)
}

/// The trust domain a bundle-map key names: `spiffe://td` (as the spec writes it) or a bare
/// `td` (go-spiffe accepts both).
pub fn trust_domain_of_key(key: &str) -> Result<TrustDomain, ConvertError> {
    let bad = || ConvertError::BadTrustDomain(key.to_owned());
    if key.starts_with("spiffe://") {
        let id = SpiffeId::parse(key).map_err(|_| bad())?;
        if !id.path().is_empty() {
            return Err(bad());
        }
        Ok(id.trust_domain().clone())
    } else {
        TrustDomain::new(key).map_err(|_| bad())
    }
}

// === server side: Snapshot → messages ===

/// `FetchX509SVID`'s answer for a caller entitled to `ids` (IDs with no SVID yet are left
/// out). Federated bundles exclude the local trust domain, whose bundle is in each SVID.
pub fn x509_svid_response(
    snapshot: &Snapshot,
    ids: &[SpiffeId],
) -> Result<X509svidResponse, ConvertError> {
    let local = snapshot
        .local_bundle()
        .map(|b| concat_der(b.x509_authorities()))
        .unwrap_or_default();
    let mut svids = Vec::with_capacity(ids.len());
    for id in ids {
        let Some(svid) = snapshot.svids.get(id) else {
            continue;
        };
        let PrivateKeyDer::Pkcs8(key) = svid.key() else {
            return Err(ConvertError::NotPkcs8(id.clone()));
        };
        svids.push(X509svid {
            spiffe_id: id.to_string(),
            x509_svid: concat_der(svid.chain()),
            x509_svid_key: key.secret_pkcs8_der().to_vec(),
            bundle: local.clone(),
            hint: String::new(),
        });
    }
    let federated_bundles = snapshot
        .bundles
        .iter()
        .filter(|b| b.trust_domain() != &snapshot.trust_domain)
        .map(|b| {
            (
                b.trust_domain().id_string(),
                concat_der(b.x509_authorities()),
            )
        })
        .collect();
    Ok(X509svidResponse {
        svids,
        crl: Vec::new(),
        federated_bundles,
    })
}

/// `FetchX509Bundles`'s answer: every trust domain's X.509 authorities, local included.
pub fn x509_bundles_response(snapshot: &Snapshot) -> X509BundlesResponse {
    X509BundlesResponse {
        crl: Vec::new(),
        bundles: snapshot
            .bundles
            .iter()
            .map(|b| {
                (
                    b.trust_domain().id_string(),
                    concat_der(b.x509_authorities()),
                )
            })
            .collect(),
    }
}

/// `FetchJWTBundles`'s answer: per trust domain, a JWKS document of its `jwt-svid` keys
/// (`{"keys": []}` for a domain that has none).
pub fn jwt_bundles_response(snapshot: &Snapshot) -> JwtBundlesResponse {
    JwtBundlesResponse {
        bundles: snapshot
            .bundles
            .iter()
            .map(|b| (b.trust_domain().id_string(), jwks_of(b)))
            .collect(),
    }
}

/// `FetchJWTSVID`'s answer: one JWT-SVID per ID in `ids`, in order, each for every audience
/// of `audience`, issued at `now` for `ttl`.
pub fn jwt_svid_response(
    signer: &JwtSigner,
    ids: &[SpiffeId],
    audience: &[&str],
    now: SystemTime,
    ttl: Duration,
) -> Result<JwtsvidResponse, CaError> {
    let svids = ids
        .iter()
        .map(|id| {
            Ok(Jwtsvid {
                spiffe_id: id.to_string(),
                svid: signer.mint_at(id, audience, now, ttl)?,
                hint: String::new(),
            })
        })
        .collect::<Result<_, CaError>>()?;
    Ok(JwtsvidResponse { svids })
}

/// `ValidateJWTSVID`'s answer: `token` validated for `audience` at `now` against the bundle
/// of its `sub`'s trust domain in `snapshot` (local or federated); the claims as signed.
pub fn validate_jwt_svid(
    snapshot: &Snapshot,
    token: &str,
    audience: &str,
    now: SystemTime,
) -> Result<ValidateJwtsvidResponse, JwtError> {
    let svid = jwt::validate(token, &snapshot.bundles, audience, now)?;
    Ok(ValidateJwtsvidResponse {
        spiffe_id: svid.spiffe_id.to_string(),
        claims: Some(struct_of(svid.claims)),
    })
}

/// A JSON object as a `google.protobuf.Struct` (numbers become doubles, as in protobuf's own
/// JSON mapping).
pub fn struct_of(map: serde_json::Map<String, serde_json::Value>) -> prost_types::Struct {
    prost_types::Struct {
        fields: map
            .into_iter()
            .map(|(k, v)| (k, value_of(v)))
            .collect::<BTreeMap<_, _>>(),
    }
}

fn value_of(v: serde_json::Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match v {
        serde_json::Value::Null => Kind::NullValue(prost_types::NullValue::NullValue.into()),
        serde_json::Value::Bool(b) => Kind::BoolValue(b),
        serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(f64::NAN)),
        serde_json::Value::String(s) => Kind::StringValue(s),
        serde_json::Value::Array(a) => Kind::ListValue(prost_types::ListValue {
            values: a.into_iter().map(value_of).collect(),
        }),
        serde_json::Value::Object(o) => Kind::StructValue(struct_of(o)),
    };
    prost_types::Value { kind: Some(kind) }
}

/// The JWKS JSON of a bundle's JWT authorities, each with its `kid` and `use`.
pub fn jwks_of(bundle: &Bundle) -> Vec<u8> {
    let keys: Vec<serde_json::Value> = bundle
        .jwt_authorities()
        .iter()
        .map(|a| {
            let mut jwk = a.jwk.clone();
            jwk.insert("use".into(), "jwt-svid".into());
            jwk.insert("kid".into(), a.key_id.clone().into());
            serde_json::Value::Object(jwk)
        })
        .collect();
    serde_json::json!({ "keys": keys }).to_string().into_bytes()
}

// === client side: messages → fedgate types ===

/// One `X509SVID` message as an [`X509Svid`]: the chain, the PKCS#8 key (which must match the
/// leaf) and the SPIFFE ID (which must be the leaf's).
pub fn svid_from_message(m: &X509svid) -> Result<X509Svid, ConvertError> {
    let what = format!("the certificate chain of {:?}", m.spiffe_id);
    let chain = split_der(&m.x509_svid, &what)?;
    if chain.is_empty() {
        return Err(ConvertError::Empty { what });
    }
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(m.x509_svid_key.clone()));
    let svid = X509Svid::from_der(chain, key).map_err(|source| ConvertError::Svid {
        spiffe_id: m.spiffe_id.clone(),
        source,
    })?;
    if svid.id().to_string() != m.spiffe_id {
        return Err(ConvertError::IdMismatch {
            named: m.spiffe_id.clone(),
            actual: svid.id().clone(),
        });
    }
    Ok(svid)
}

/// A bundle of `td` from concatenated DER authorities; an empty one is refused (it would
/// trust nothing and break every handshake).
pub fn bundle_from_der(td: &TrustDomain, der: &[u8], what: &str) -> Result<Bundle, ConvertError> {
    let certs = split_der(der, what)?;
    if certs.is_empty() {
        return Err(ConvertError::Empty {
            what: what.to_owned(),
        });
    }
    let mut bundle = Bundle::new(td.clone());
    for c in certs {
        bundle.add_x509_authority(c);
    }
    Ok(bundle)
}

/// A bundle map (`federated_bundles` or `bundles`) as bundles, one per trust domain.
pub fn federated_from_map(map: &HashMap<String, Vec<u8>>) -> Result<Vec<Bundle>, ConvertError> {
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    let mut bundles: Vec<Bundle> = Vec::with_capacity(map.len());
    for key in keys {
        let td = trust_domain_of_key(key)?;
        if bundles.iter().any(|b| b.trust_domain() == &td) {
            // `spiffe://td` and `td` both present: the first (sorted) wins, as one per domain.
            continue;
        }
        let der = map.get(key).map(Vec::as_slice).unwrap_or_default();
        bundles.push(bundle_from_der(&td, der, &format!("the bundle of {td}"))?);
    }
    Ok(bundles)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;
    use std::sync::Arc;
    use std::time::Duration;

    use fedgate_federation::BundleSet;

    use super::*;
    use crate::ca::{Ca, InitOptions};
    use crate::identity::workload_api::identity_from_response;

    fn ca(td: &str) -> Ca {
        let opts = InitOptions {
            ttl: Duration::from_secs(3600),
            refresh_hint: None,
            intermediate: false,
        };
        Ca::init(&TrustDomain::new(td).unwrap(), &opts).unwrap()
    }

    fn svid(ca: &Ca, id: &str) -> X509Svid {
        let issued = ca
            .issue(&SpiffeId::parse(id).unwrap(), Duration::from_secs(600), &[])
            .unwrap();
        X509Svid::from_pem(issued.chain_pem().as_bytes(), issued.key_pem().as_bytes()).unwrap()
    }

    fn snapshot_of(a: &Ca, b: &Ca) -> (Snapshot, SpiffeId) {
        let id = SpiffeId::parse("spiffe://cluster-a.test/app").unwrap();
        let snapshot = Snapshot {
            trust_domain: a.trust_domain().clone(),
            bundles: BundleSet::from_bundles([a.bundle().clone(), b.bundle().clone()]).unwrap(),
            svids: BTreeMap::from([(id.clone(), svid(a, "spiffe://cluster-a.test/app"))]),
            jwt_signer: a.jwt_signer(Path::new("ca")).map_err(Arc::new),
            jwt_ttl: crate::workload::MAX_JWT_TTL,
        };
        (snapshot, id)
    }

    fn snapshot() -> (Snapshot, SpiffeId) {
        snapshot_of(&ca("cluster-a.test"), &ca("cluster-b.test"))
    }

    #[test]
    fn x509_response_round_trips_into_an_identity() {
        let (snapshot, id) = snapshot();
        let resp = x509_svid_response(&snapshot, std::slice::from_ref(&id)).unwrap();
        assert_eq!(resp.svids.len(), 1);
        assert_eq!(resp.svids[0].spiffe_id, "spiffe://cluster-a.test/app");
        let keys: Vec<&String> = resp.federated_bundles.keys().collect();
        assert_eq!(keys, ["spiffe://cluster-b.test"], "never the local domain");

        let identity = identity_from_response(&resp, &snapshot.trust_domain).unwrap();
        assert_eq!(identity.svid.id(), &id);
        assert_eq!(identity.svid.chain(), snapshot.svids[&id].chain());
        assert_eq!(
            identity.bundle.x509_authorities(),
            snapshot.local_bundle().unwrap().x509_authorities()
        );
        assert_eq!(identity.bundles.len(), 2);
        let b = TrustDomain::new("cluster-b.test").unwrap();
        assert_eq!(
            identity.bundles.get(&b).unwrap().x509_authorities(),
            snapshot.bundles.get(&b).unwrap().x509_authorities()
        );
    }

    #[test]
    fn a_key_that_does_not_match_the_certificate_is_refused() {
        let (snapshot, id) = snapshot();
        let mut resp = x509_svid_response(&snapshot, std::slice::from_ref(&id)).unwrap();
        let other = svid(&ca("cluster-a.test"), "spiffe://cluster-a.test/other");
        let PrivateKeyDer::Pkcs8(k) = other.key() else {
            panic!("minted keys are PKCS#8")
        };
        resp.svids[0].x509_svid_key = k.secret_pkcs8_der().to_vec();
        let err = identity_from_response(&resp, &snapshot.trust_domain).unwrap_err();
        assert!(
            matches!(
                err,
                ConvertError::Svid {
                    source: SvidError::KeyMismatch,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn malformed_responses_are_refused() {
        let (snapshot, id) = snapshot();
        let td = snapshot.trust_domain.clone();
        let good = x509_svid_response(&snapshot, std::slice::from_ref(&id)).unwrap();

        let empty = X509svidResponse::default();
        assert!(matches!(
            identity_from_response(&empty, &td),
            Err(ConvertError::NoSvid)
        ));

        let mut named_wrong = good.clone();
        named_wrong.svids[0].spiffe_id = "spiffe://cluster-a.test/not-me".into();
        assert!(matches!(
            identity_from_response(&named_wrong, &td),
            Err(ConvertError::IdMismatch { .. })
        ));

        let mut truncated = good.clone();
        truncated.svids[0].x509_svid.truncate(20);
        assert!(matches!(
            identity_from_response(&truncated, &td),
            Err(ConvertError::BadDer { .. })
        ));

        let mut no_bundle = good.clone();
        no_bundle.svids[0].bundle.clear();
        assert!(matches!(
            identity_from_response(&no_bundle, &td),
            Err(ConvertError::Empty { .. })
        ));

        let mut bad_key = good.clone();
        bad_key
            .federated_bundles
            .insert("spiffe://cluster-c.test/path".into(), Vec::new());
        assert!(matches!(
            identity_from_response(&bad_key, &td),
            Err(ConvertError::BadTrustDomain(_))
        ));

        let other_td = TrustDomain::new("cluster-z.test").unwrap();
        assert!(matches!(
            identity_from_response(&good, &other_td),
            Err(ConvertError::WrongTrustDomain { .. })
        ));
    }

    #[test]
    fn bundles_are_keyed_per_trust_domain() {
        let (snapshot, _) = snapshot();
        let x509 = x509_bundles_response(&snapshot);
        let mut keys: Vec<&String> = x509.bundles.keys().collect();
        keys.sort();
        assert_eq!(keys, ["spiffe://cluster-a.test", "spiffe://cluster-b.test"]);
        for (key, der) in &x509.bundles {
            let td = trust_domain_of_key(key).unwrap();
            assert_eq!(
                split_der(der, "bundle").unwrap(),
                snapshot.bundles.get(&td).unwrap().x509_authorities()
            );
        }
        let jwt = jwt_bundles_response(&snapshot);
        assert_eq!(jwt.bundles.len(), 2);
        for (key, doc) in &jwt.bundles {
            // Each trust domain's own jwt-svid keys (a CA has one since `ca init` mints one).
            let bundle = snapshot
                .bundles
                .get(&trust_domain_of_key(key).unwrap())
                .unwrap();
            let v: serde_json::Value = serde_json::from_slice(doc).unwrap();
            let kids: Vec<&str> = v["keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k["kid"].as_str().unwrap())
                .collect();
            let expected: Vec<&str> = bundle
                .jwt_authorities()
                .iter()
                .map(|a| a.key_id.as_str())
                .collect();
            assert_eq!(kids, expected, "{key}");
            assert_eq!(kids.len(), 1);
        }
    }

    #[test]
    fn minted_jwt_svids_validate_against_the_snapshot_with_their_claims() {
        let (snapshot, id) = snapshot();
        let other = SpiffeId::parse("spiffe://cluster-a.test/other").unwrap();
        let signer = snapshot.jwt_signer.as_ref().unwrap();
        let now = SystemTime::now();
        let resp = jwt_svid_response(
            signer,
            &[id.clone(), other.clone()],
            &["svc-1", "svc-2"],
            now,
            Duration::from_secs(300),
        )
        .unwrap();
        let ids: Vec<&str> = resp.svids.iter().map(|s| s.spiffe_id.as_str()).collect();
        assert_eq!(ids, [id.to_string(), other.to_string()]);
        assert!(resp.svids.iter().all(|s| s.hint.is_empty()));

        let v = validate_jwt_svid(&snapshot, &resp.svids[0].svid, "svc-2", now).unwrap();
        assert_eq!(v.spiffe_id, id.to_string());
        let claims = v.claims.unwrap().fields;
        use prost_types::value::Kind;
        assert_eq!(claims["sub"].kind, Some(Kind::StringValue(id.to_string())));
        let Some(Kind::ListValue(aud)) = &claims["aud"].kind else {
            panic!("two audiences are a list: {claims:?}")
        };
        assert_eq!(aud.values.len(), 2);
        let secs = |k: &str| match claims[k].kind {
            Some(Kind::NumberValue(n)) => n,
            ref other => panic!("{k} is {other:?}"),
        };
        assert_eq!(secs("exp") - secs("iat"), 300.0);

        let err = validate_jwt_svid(&snapshot, &resp.svids[1].svid, "svc-3", now).unwrap_err();
        assert!(matches!(err, JwtError::WrongAudience { .. }), "{err}");
    }

    #[test]
    fn a_jwt_svid_is_validated_only_against_its_own_trust_domain() {
        let a = ca("cluster-a.test");
        let b = ca("cluster-b.test");
        let (snapshot, _) = snapshot_of(&a, &b);
        let now = SystemTime::now();
        let ttl = Duration::from_secs(60);
        // A federated trust domain's token validates with its bundle.
        let b_id = SpiffeId::parse("spiffe://cluster-b.test/peer").unwrap();
        let b_token = b
            .jwt_signer(Path::new("b"))
            .unwrap()
            .mint_at(&b_id, &["svc"], now, ttl)
            .unwrap();
        let v = validate_jwt_svid(&snapshot, &b_token, "svc", now).unwrap();
        assert_eq!(v.spiffe_id, b_id.to_string());

        // A token of a trust domain with no bundle is refused, as is one signed by a key
        // that is not in its `sub`'s bundle.
        let c = ca("cluster-c.test");
        let c_id = SpiffeId::parse("spiffe://cluster-c.test/x").unwrap();
        let c_token = c
            .jwt_signer(Path::new("c"))
            .unwrap()
            .mint_at(&c_id, &["svc"], now, ttl)
            .unwrap();
        let err = validate_jwt_svid(&snapshot, &c_token, "svc", now).unwrap_err();
        assert!(matches!(err, JwtError::NoBundle { .. }), "{err}");
        let rogue = ca("cluster-a.test");
        let a_id = SpiffeId::parse("spiffe://cluster-a.test/app").unwrap();
        let forged = rogue
            .jwt_signer(Path::new("rogue"))
            .unwrap()
            .mint_at(&a_id, &["svc"], now, ttl)
            .unwrap();
        let err = validate_jwt_svid(&snapshot, &forged, "svc", now).unwrap_err();
        assert!(matches!(err, JwtError::UnknownKid { .. }), "{err}");
    }

    #[test]
    fn claims_become_a_protobuf_struct() {
        let serde_json::Value::Object(map) = serde_json::json!({
            "s": "x", "n": 1.5, "b": true, "z": null, "l": [1, "two"], "o": {"k": "v"}
        }) else {
            unreachable!()
        };
        use prost_types::value::Kind;
        let st = struct_of(map);
        assert_eq!(st.fields["s"].kind, Some(Kind::StringValue("x".into())));
        assert_eq!(st.fields["n"].kind, Some(Kind::NumberValue(1.5)));
        assert_eq!(st.fields["b"].kind, Some(Kind::BoolValue(true)));
        assert_eq!(st.fields["z"].kind, Some(Kind::NullValue(0)));
        let Some(Kind::ListValue(l)) = &st.fields["l"].kind else {
            panic!("a list")
        };
        assert_eq!(l.values.len(), 2);
        let Some(Kind::StructValue(o)) = &st.fields["o"].kind else {
            panic!("an object")
        };
        assert_eq!(o.fields["k"].kind, Some(Kind::StringValue("v".into())));
    }

    #[test]
    fn jwks_holds_the_jwt_authorities() {
        let td = TrustDomain::new("cluster-a.test").unwrap();
        let json = br#"{"keys":[{"use":"jwt-svid","kty":"EC","kid":"k1","crv":"P-256",
            "x":"WKn-ZIGevcwGIyyrzFoZNBdaq9_TsqzGl96oc0CWuis",
            "y":"y77t-RvAHRKTsSGdIYUfweuOvwrvDD-Q3Hv5J0fSKbE"}]}"#;
        let (bundle, _) = Bundle::parse(&td, json).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&jwks_of(&bundle)).unwrap();
        assert_eq!(v["keys"][0]["kid"], "k1");
        assert_eq!(v["keys"][0]["use"], "jwt-svid");
        assert_eq!(v["keys"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn trust_domain_keys() {
        assert_eq!(
            trust_domain_of_key("spiffe://cluster-b.test")
                .unwrap()
                .as_str(),
            "cluster-b.test"
        );
        assert_eq!(
            trust_domain_of_key("cluster-b.test").unwrap().as_str(),
            "cluster-b.test"
        );
        for bad in ["spiffe://cluster-b.test/x", "", "spiffe://", "UPPER.test"] {
            assert!(trust_domain_of_key(bad).is_err(), "{bad}");
        }
    }
}
