//! Bundle endpoint client: fetch a peer's bundle over `https_web` or `https_spiffe`.
//!
//! Invariants:
//! * Every hop (the configured URL and each redirect target) is verified with the same TLS
//!   configuration: for `https_spiffe` the same pinned endpoint SPIFFE ID and the same bundle.
//! * Redirects are followed manually, at most [`FetchOptions::max_redirects`] times, only to
//!   `https` URLs without userinfo, never in a loop, and never remembered (§7.5.1).
//! * The body is read chunk by chunk and refused as soon as it exceeds
//!   [`FetchOptions::max_body`]; a `Content-Length` over the limit is refused before reading.
//! * A fetched bundle is returned only if it parses as a SPIFFE bundle for the relationship's
//!   trust domain and its `spiffe_sequence` is not lower than the current bundle's (nor absent
//!   when the current bundle has one).
//! * No cookies, no proxies from the environment, no HTTP authentication.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderValue, ACCEPT, ETAG, IF_NONE_MATCH, LOCATION};
use reqwest::{StatusCode, Url};
use rustls::client::danger::ServerCertVerifier;
use rustls::ClientConfig;

use super::{Profile, Relationship, WebRoots};
use crate::bundle::{Bundle, BundleError, BundleSet};
use crate::distribute::{parse_bundle_map, BundleMapError};
use crate::spiffe_id::{SpiffeId, TrustDomain};
use crate::tls::{self, Authorizer, SpiffeServerVerifier};

/// Limits and timeouts of one fetch.
#[derive(Clone, Debug)]
pub struct FetchOptions {
    /// Largest accepted body, in bytes (default 1 MiB).
    pub max_body: usize,
    /// Redirects followed before giving up (default 3).
    pub max_redirects: usize,
    /// TCP connect timeout (default 10 s).
    pub connect_timeout: Duration,
    /// Whole-request timeout including TLS and body (default 30 s).
    pub timeout: Duration,
    /// Longest pause between two reads (slow-loris guard, default 10 s).
    pub read_idle_timeout: Duration,
    /// Sent as `If-None-Match`: the `ETag` of the bundle we hold, if the server gave one.
    pub if_none_match: Option<String>,
}

/// What a successful fetch produced.
#[derive(Clone, Debug)]
// Outcomes are short-lived and `Updated` is the common case: boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
#[non_exhaustive]
pub enum FetchOutcome {
    /// A bundle for the relationship's trust domain, already checked against rollback.
    Updated {
        bundle: Bundle,
        etag: Option<String>,
        url: Url,
    },
    /// `304 Not Modified`: the bundle we hold is still current.
    NotModified,
}

/// Why a fetch was refused; the current bundle (if any) stays in force.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    #[error(
        "bundle endpoint {url} for {trust_domain}: endpoint URL must use https without userinfo"
    )]
    InvalidUrl {
        trust_domain: TrustDomain,
        url: String,
    },
    #[error("bundle endpoint {url} for {trust_domain}: cannot build the TLS client")]
    TlsConfig {
        trust_domain: TrustDomain,
        url: String,
        #[source]
        source: rustls::Error,
    },
    #[error("bundle endpoint {url} for {trust_domain}: TLS handshake or certificate refused")]
    Tls {
        trust_domain: TrustDomain,
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("bundle endpoint {url} for {trust_domain}: timed out")]
    Timeout {
        trust_domain: TrustDomain,
        url: String,
        #[source]
        source: Option<reqwest::Error>,
    },
    #[error("bundle endpoint {url} for {trust_domain}: connection failed")]
    Connect {
        trust_domain: TrustDomain,
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("bundle endpoint {url} for {trust_domain}: answered HTTP {status}")]
    HttpStatus {
        trust_domain: TrustDomain,
        url: String,
        status: u16,
    },
    #[error("bundle endpoint {url} for {trust_domain}: body larger than {limit} bytes")]
    BodyTooLarge {
        trust_domain: TrustDomain,
        url: String,
        limit: usize,
    },
    #[error("bundle endpoint {url} for {trust_domain}: more than {limit} redirects")]
    TooManyRedirects {
        trust_domain: TrustDomain,
        url: String,
        limit: usize,
    },
    #[error("bundle endpoint {url} for {trust_domain}: redirect loop back to {target}")]
    RedirectLoop {
        trust_domain: TrustDomain,
        url: String,
        target: String,
    },
    #[error(
        "bundle endpoint {url} for {trust_domain}: refusing redirect to {target:?} \
         (must be an https URL without userinfo)"
    )]
    BadRedirect {
        trust_domain: TrustDomain,
        url: String,
        target: String,
    },
    #[error("bundle endpoint {url} for {trust_domain}: body is not JSON")]
    NotJson {
        trust_domain: TrustDomain,
        url: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("bundle endpoint {url} for {trust_domain}: body is not a SPIFFE bundle")]
    NotBundle {
        trust_domain: TrustDomain,
        url: String,
        #[source]
        source: BundleError,
    },
    #[error(
        "bundle endpoint {url} for {trust_domain}: served bundle belongs to another trust \
         domain ({found}); check the relationship's URL"
    )]
    WrongTrustDomain {
        trust_domain: TrustDomain,
        url: String,
        found: String,
    },
    #[error(
        "bundle endpoint {url} for {trust_domain}: served a bundle map naming {duplicate} \
         twice; refusing it"
    )]
    DuplicateTrustDomain {
        trust_domain: TrustDomain,
        url: String,
        duplicate: TrustDomain,
    },
    #[error(
        "bundle endpoint {url} for {trust_domain}: spiffe_sequence {fetched} is lower than \
         the current {current}; keeping the current bundle"
    )]
    Rollback {
        trust_domain: TrustDomain,
        url: String,
        current: u64,
        fetched: u64,
    },
    #[error(
        "bundle endpoint {url} for {trust_domain}: the fetched bundle has no spiffe_sequence \
         but the current one has sequence {current}; a bundle without a sequence cannot be \
         ordered after it, so it is treated as a rollback; keeping the current bundle"
    )]
    SequenceDropped {
        trust_domain: TrustDomain,
        url: String,
        current: u64,
    },
    #[error("bundle endpoint {url} for {trust_domain}: transfer failed")]
    Transport {
        trust_domain: TrustDomain,
        url: String,
        #[source]
        source: reqwest::Error,
    },
}

// === impl FetchOptions ===

impl Default for FetchOptions {
    fn default() -> Self {
        Self {
            max_body: 1024 * 1024,
            max_redirects: 3,
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(30),
            read_idle_timeout: Duration::from_secs(10),
            if_none_match: None,
        }
    }
}

// === impl FetchError ===

impl FetchError {
    /// A short, stable label for metrics and logs (`result` label of the fetch counter).
    pub fn reason_label(&self) -> &'static str {
        match self {
            FetchError::InvalidUrl { .. } => "invalid_url",
            FetchError::TlsConfig { .. } => "tls_config",
            FetchError::Tls { .. } => "tls",
            FetchError::Timeout { .. } => "timeout",
            FetchError::Connect { .. } => "connect",
            FetchError::HttpStatus { .. } => "http_status",
            FetchError::BodyTooLarge { .. } => "body_too_large",
            FetchError::TooManyRedirects { .. } => "too_many_redirects",
            FetchError::RedirectLoop { .. } => "redirect_loop",
            FetchError::BadRedirect { .. } => "bad_redirect",
            FetchError::NotJson { .. } => "not_json",
            FetchError::NotBundle { .. } => "not_bundle",
            FetchError::WrongTrustDomain { .. } => "wrong_trust_domain",
            FetchError::DuplicateTrustDomain { .. } => "duplicate_trust_domain",
            FetchError::Rollback { .. } | FetchError::SequenceDropped { .. } => "rollback",
            FetchError::Transport { .. } => "transport",
        }
    }
}

/// Fetches the bundle of `rel.trust_domain` from `rel.url`.
///
/// `current` is the bundle in force for that trust domain, if any: it is the rollback
/// reference, and for a self-serving `https_spiffe` endpoint it authenticates the server
/// instead of the bootstrap bundle (§5.2.2.4).
pub async fn fetch(
    rel: &Relationship,
    current: Option<&Bundle>,
    opts: &FetchOptions,
) -> Result<FetchOutcome, FetchError> {
    let td = &rel.trust_domain;
    let err_url = |u: &Url| u.as_str().to_owned();
    if !valid_endpoint_url(&rel.url) {
        return Err(FetchError::InvalidUrl {
            trust_domain: td.clone(),
            url: err_url(&rel.url),
        });
    }
    let tls = client_tls_config(rel, current).map_err(|source| FetchError::TlsConfig {
        trust_domain: td.clone(),
        url: err_url(&rel.url),
        source,
    })?;
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .https_only(true)
        .connect_timeout(opts.connect_timeout)
        .timeout(opts.timeout)
        .read_timeout(opts.read_idle_timeout)
        .build()
        .map_err(|source| FetchError::Transport {
            trust_domain: td.clone(),
            url: err_url(&rel.url),
            source,
        })?;

    let mut url = rel.url.clone();
    let mut visited: HashSet<Url> = HashSet::from([url.clone()]);
    let mut redirects = 0usize;
    let response = loop {
        let mut req = client.get(url.clone()).header(ACCEPT, "application/json");
        if let Some(tag) = opts.if_none_match.as_deref() {
            if let Ok(v) = HeaderValue::from_str(tag) {
                req = req.header(IF_NONE_MATCH, v);
            }
        }
        let resp = req.send().await.map_err(|e| classify(td, &url, e))?;
        let status = resp.status();
        if status.is_redirection() && status != StatusCode::NOT_MODIFIED {
            let location = resp
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
                .unwrap_or_default();
            let target = match url.join(&location) {
                Ok(t) if !location.is_empty() && valid_endpoint_url(&t) => t,
                _ => {
                    return Err(FetchError::BadRedirect {
                        trust_domain: td.clone(),
                        url: err_url(&url),
                        target: location,
                    })
                }
            };
            if visited.contains(&target) {
                return Err(FetchError::RedirectLoop {
                    trust_domain: td.clone(),
                    url: err_url(&url),
                    target: target.to_string(),
                });
            }
            redirects += 1;
            if redirects > opts.max_redirects {
                return Err(FetchError::TooManyRedirects {
                    trust_domain: td.clone(),
                    url: err_url(&rel.url),
                    limit: opts.max_redirects,
                });
            }
            tracing::debug!(trust_domain = %td, from = %url, to = %target, "following redirect");
            visited.insert(target.clone());
            url = target;
            continue;
        }
        break resp;
    };

    let status = response.status();
    if status == StatusCode::NOT_MODIFIED && opts.if_none_match.is_some() {
        return Ok(FetchOutcome::NotModified);
    }
    if status != StatusCode::OK {
        return Err(FetchError::HttpStatus {
            trust_domain: td.clone(),
            url: err_url(&url),
            status: status.as_u16(),
        });
    }
    let etag = response
        .headers()
        .get(ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = read_limited(response, opts.max_body, td, &url).await?;
    let bundle = check_body(td, &url, &body, current)?;
    Ok(FetchOutcome::Updated { bundle, etag, url })
}

/// Parses and checks a fetched body: JSON, a SPIFFE bundle, for `td`, no rollback.
pub fn check_body(
    td: &TrustDomain,
    url: &Url,
    body: &[u8],
    current: Option<&Bundle>,
) -> Result<Bundle, FetchError> {
    let url_s = || url.as_str().to_owned();
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|source| FetchError::NotJson {
            trust_domain: td.clone(),
            url: url_s(),
            source,
        })?;
    // A bundle map (§5 of the bundle spec) is not a bundle: it would let one endpoint speak
    // for several trust domains. Name what it claims so the operator can fix the URL.
    if let Some(map) = value.get("trust_domains").and_then(|v| v.as_object()) {
        if value.get("keys").is_none() {
            if let Err(BundleMapError::DuplicateTrustDomain(dup)) = parse_bundle_map(body) {
                return Err(FetchError::DuplicateTrustDomain {
                    trust_domain: td.clone(),
                    url: url_s(),
                    duplicate: dup,
                });
            }
            let found = map.keys().cloned().collect::<Vec<_>>().join(", ");
            return Err(FetchError::WrongTrustDomain {
                trust_domain: td.clone(),
                url: url_s(),
                found: format!("bundle map for [{found}]"),
            });
        }
    }
    let (bundle, warnings) = Bundle::parse(td, body).map_err(|source| FetchError::NotBundle {
        trust_domain: td.clone(),
        url: url_s(),
        source,
    })?;
    for w in warnings {
        tracing::warn!(trust_domain = %td, url = %url, warning = %w.0, "ignored bundle entry");
    }
    // The JWKS carries no trust domain, but signing certificates that are SVIDs carry the
    // SPIFFE ID of their trust domain (X509-SVID.md §3.2). An authority naming another trust
    // domain means the endpoint serves someone else's bundle.
    for der in bundle.x509_authorities() {
        if let Some(other) = authority_trust_domain(der) {
            if &other != td {
                return Err(FetchError::WrongTrustDomain {
                    trust_domain: td.clone(),
                    url: url_s(),
                    found: other.to_string(),
                });
            }
        }
    }
    check_sequence(
        td,
        url,
        current.and_then(Bundle::sequence),
        bundle.sequence(),
    )?;
    Ok(bundle)
}

/// Rollback protection: a fetched bundle must not go back in `spiffe_sequence` from the bundle
/// in force. A bundle without a sequence cannot be ordered after one that has a sequence, so
/// dropping the sequence counts as a rollback too (an attacker replaying an old, unsequenced
/// bundle must not win). Without a current sequence anything goes.
fn check_sequence(
    td: &TrustDomain,
    url: &Url,
    current: Option<u64>,
    fetched: Option<u64>,
) -> Result<(), FetchError> {
    match (current, fetched) {
        (Some(current), Some(fetched)) if fetched < current => Err(FetchError::Rollback {
            trust_domain: td.clone(),
            url: url.as_str().to_owned(),
            current,
            fetched,
        }),
        (Some(current), None) => Err(FetchError::SequenceDropped {
            trust_domain: td.clone(),
            url: url.as_str().to_owned(),
            current,
        }),
        _ => Ok(()),
    }
}

/// The TLS client configuration of one relationship, given the bundle currently in force.
pub fn client_tls_config(
    rel: &Relationship,
    current: Option<&Bundle>,
) -> Result<ClientConfig, rustls::Error> {
    let mut config = match &rel.profile {
        Profile::HttpsWeb { roots } => {
            let mut store = rustls::RootCertStore::empty();
            match roots {
                WebRoots::System => {
                    let loaded = rustls_native_certs::load_native_certs();
                    for e in &loaded.errors {
                        tracing::warn!(error = %e, "cannot load a system root certificate");
                    }
                    store.add_parsable_certificates(loaded.certs);
                }
                WebRoots::Custom(certs) => {
                    for c in certs {
                        store.add(c.clone())?;
                    }
                }
            }
            ClientConfig::builder_with_provider(tls::provider())
                .with_safe_default_protocol_versions()?
                .with_root_certificates(store)
                .with_no_client_auth()
        }
        Profile::HttpsSpiffe {
            endpoint_id,
            bootstrap,
        } => {
            let bundle = endpoint_bundle(&rel.trust_domain, endpoint_id, bootstrap, current);
            let verifier: Arc<dyn ServerCertVerifier> = Arc::new(SpiffeServerVerifier::new(
                BundleSet::new().with(bundle),
                Authorizer::exact(endpoint_id.clone()),
            ));
            tls::client_config(None, verifier)?
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The bundle that authenticates an `https_spiffe` endpoint: for a self-serving endpoint
/// (endpoint ID in the relationship's trust domain) the current bundle if we hold one, else
/// the bootstrap bundle; for any other endpoint, the configured bundle of the endpoint's
/// trust domain (`bootstrap`), never the fetched one.
pub fn endpoint_bundle(
    td: &TrustDomain,
    endpoint_id: &SpiffeId,
    bootstrap: &Bundle,
    current: Option<&Bundle>,
) -> Bundle {
    match current {
        Some(cur) if endpoint_id.trust_domain() == td && cur.trust_domain() == td => cur.clone(),
        _ => bootstrap.clone(),
    }
}

/// `https` with a host and without userinfo (§5.2.1.1, §5.2.2.1).
fn valid_endpoint_url(url: &Url) -> bool {
    url.scheme() == "https"
        && url.host().is_some()
        && url.username().is_empty()
        && url.password().is_none()
}

/// The trust domain named by a CA certificate's SPIFFE URI SAN, if it has one.
fn authority_trust_domain(der: &[u8]) -> Option<TrustDomain> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let san = cert.subject_alternative_name().ok().flatten()?;
    san.value.general_names.iter().find_map(|n| match n {
        x509_parser::extensions::GeneralName::URI(u) if u.starts_with("spiffe://") => {
            SpiffeId::parse(u).ok().map(|id| id.trust_domain().clone())
        }
        _ => None,
    })
}

async fn read_limited(
    mut response: reqwest::Response,
    limit: usize,
    td: &TrustDomain,
    url: &Url,
) -> Result<Vec<u8>, FetchError> {
    let too_large = || FetchError::BodyTooLarge {
        trust_domain: td.clone(),
        url: url.as_str().to_owned(),
        limit,
    };
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| classify(td, url, e))? {
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Maps a reqwest error onto the refusal reasons.
fn classify(td: &TrustDomain, url: &Url, e: reqwest::Error) -> FetchError {
    let trust_domain = td.clone();
    let url = url.as_str().to_owned();
    if has_source::<rustls::Error>(&e) {
        FetchError::Tls {
            trust_domain,
            url,
            source: e,
        }
    } else if e.is_timeout() || has_timeout_source(&e) {
        FetchError::Timeout {
            trust_domain,
            url,
            source: Some(e),
        }
    } else if e.is_connect() {
        FetchError::Connect {
            trust_domain,
            url,
            source: e,
        }
    } else {
        FetchError::Transport {
            trust_domain,
            url,
            source: e,
        }
    }
}

fn has_source<T: std::error::Error + 'static>(e: &(dyn std::error::Error + 'static)) -> bool {
    causes(e).any(|err| err.is::<T>())
}

fn has_timeout_source(e: &(dyn std::error::Error + 'static)) -> bool {
    causes(e).any(|err| {
        err.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
            || err.to_string().contains("timed out")
    })
}

/// Walks an error's causes, looking inside `io::Error` wrappers (whose `source()` skips the
/// wrapped error itself).
fn causes<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(e), |err| match err.downcast_ref::<std::io::Error>() {
        Some(io) => match io.get_ref() {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => None,
        },
        None => err.source(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn check_body_never_panics(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let td = TrustDomain::new("b.test").unwrap();
            let url = Url::parse("https://b.test/").unwrap();
            let _ = check_body(&td, &url, &body, None);
        }

        #[test]
        fn check_body_never_panics_on_json_shapes(s in "\\{\"(keys|trust_domains|spiffe_sequence)\": ?(\\[\\]|\\{\\}|-?[0-9]{1,25}|null|\"x\")\\}") {
            let td = TrustDomain::new("b.test").unwrap();
            let url = Url::parse("https://b.test/").unwrap();
            let _ = check_body(&td, &url, s.as_bytes(), None);
        }

        #[test]
        fn authority_trust_domain_never_panics(der in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = authority_trust_domain(&der);
        }
    }

    #[test]
    fn endpoint_urls_must_be_https_without_userinfo() {
        let ok = |s: &str| valid_endpoint_url(&Url::parse(s).unwrap());
        assert!(ok("https://example.com/bundle"));
        assert!(ok("https://127.0.0.1:8443/"));
        assert!(!ok("http://example.com/bundle"));
        assert!(!ok("https://user@example.com/"));
        assert!(!ok("https://user:pw@example.com/"));
    }

    #[test]
    fn sequence_may_not_go_back_or_disappear() {
        let td = TrustDomain::new("b.test").unwrap();
        let url = Url::parse("https://b.test/").unwrap();
        let body = |seq: Option<u64>| match seq {
            Some(s) => format!(r#"{{"keys": [], "spiffe_sequence": {s}}}"#),
            None => r#"{"keys": []}"#.to_owned(),
        };
        let bundle = |seq: Option<u64>| {
            let mut b = Bundle::new(td.clone());
            b.set_sequence(seq);
            b
        };
        // (current, fetched) -> refused?
        let table = [
            (None, None, false),
            (None, Some(3), false),
            (Some(5), Some(5), false),
            (Some(5), Some(6), false),
            (Some(5), Some(4), true),
            (Some(5), None, true),
            (Some(0), None, true),
        ];
        for (current, fetched, refused) in table {
            let got = check_body(&td, &url, body(fetched).as_bytes(), Some(&bundle(current)));
            match got {
                Ok(b) => {
                    assert!(!refused, "{current:?} -> {fetched:?} accepted");
                    assert_eq!(b.sequence(), fetched);
                }
                Err(e) => {
                    assert!(refused, "{current:?} -> {fetched:?} refused: {e}");
                    assert_eq!(e.reason_label(), "rollback", "{e}");
                    assert!(e.to_string().contains("b.test"), "{e}");
                }
            }
        }
        let e = check_body(&td, &url, body(None).as_bytes(), Some(&bundle(Some(7)))).unwrap_err();
        assert!(
            e.to_string().contains("no spiffe_sequence") && e.to_string().contains('7'),
            "{e}"
        );
    }

    #[test]
    fn non_json_and_bundle_map_are_refused_with_reasons() {
        let td = TrustDomain::new("b.test").unwrap();
        let url = Url::parse("https://b.test/").unwrap();
        let e = check_body(&td, &url, b"<html>", None).unwrap_err();
        assert_eq!(e.reason_label(), "not_json");
        let map = br#"{"trust_domains": {"evil.test": {"keys": []}}}"#;
        let e = check_body(&td, &url, map, None).unwrap_err();
        assert_eq!(e.reason_label(), "wrong_trust_domain");
        assert!(e.to_string().contains("evil.test"), "{e}");
    }
}
