//! The gateway side of the issuing endpoint: obtain a bridge SVID, publish it on a `watch`
//! channel, and renew it at two thirds of its lifetime.
//!
//! Invariants:
//! * Every SVID gets a fresh ECDSA P-256 key generated here; the key never leaves the process
//!   except into `out_dir/svid.key`, written 0600 and atomically. Keys are never logged.
//! * The client authenticates with the current local SVID and accepts the endpoint only if it
//!   presents an SVID for exactly `ca_endpoint_id` that verifies against the bridge bundle.
//! * A received SVID is published only if it carries exactly `requested_id`, matches the key,
//!   and verifies against the bridge bundle; anything else is an error and the previous SVID
//!   stays published.
//! * A failed renewal never withdraws the SVID already published; it is retried with capped
//!   exponential backoff (never sleeping past the current SVID's expiry in one step).
//! * Renewal time is a pure function ([`renew_at`]) of the validity window. The CA back-dates
//!   `notBefore` for clock skew, so the window is measured from when the request was sent
//!   (clamped into `[notBefore, notAfter]`).

use fedgate_dataplane::backoff::Backoff;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fedgate_federation::bundle::BundleSet;
use fedgate_federation::spiffe_id::SpiffeId;
use fedgate_federation::svid::verify::{verify, VerifiedSvid};
use fedgate_federation::svid::{SvidError, X509Svid};
use fedgate_federation::tls::{self, Authorizer, SpiffeServerVerifier};
use fedgate_federation::VerifyError;
use rcgen::{CertificateParams, KeyPair, SanType};
use rustls_pki_types::UnixTime;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::ca::serve::server::{PEM_CHAIN, PKCS10};
use crate::ca::{self, FileError};
use fedgate_federation::error_chain;

/// Largest response body read from the endpoint (a chain is a few KiB).
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// What the client needs to obtain and renew a bridge SVID.
#[derive(Clone, Debug)]
pub struct IssuerClientConfig {
    /// Base URL of the issuing endpoint (`https://ca.bridge.example:9600/`); requests go to
    /// `<url>/v1/issue`.
    pub url: reqwest::Url,
    /// The SPIFFE ID the endpoint must present (in the bridge trust domain).
    pub ca_endpoint_id: SpiffeId,
    /// Bundles to verify the endpoint and issued SVIDs with (the bridge trust domain's).
    pub bridge_bundle: watch::Receiver<BundleSet>,
    /// The gateway's current local SVID, used as the client certificate.
    pub local_svid: watch::Receiver<Arc<X509Svid>>,
    /// The bridge ID to ask for (the CA refuses any other than the one mapped to us).
    pub requested_id: SpiffeId,
    /// Lifetime to ask for; `None` takes the endpoint's default.
    pub ttl: Option<Duration>,
    /// Where to keep `svid.pem` and `svid.key` so that a restart has an SVID at once.
    pub out_dir: Option<PathBuf>,
}

/// Obtains and renews a bridge SVID. Build it, [`subscribe`](Self::subscribe), then
/// [`run`](Self::run) it.
pub struct IssuerClient {
    cfg: IssuerClientConfig,
    /// The current bridge SVID (`None` until the first one is obtained or loaded). Receivers
    /// (the bridge listeners) rebuild their TLS configs on each change.
    tx: watch::Sender<Option<Arc<X509Svid>>>,
    /// When the current SVID's renewal window starts (see [`renew_at`]).
    current_window: Option<(SystemTime, SystemTime)>,
    retry_initial: Duration,
    retry_max: Duration,
    request_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IssuerClientError {
    #[error("cannot build the TLS client config for {url}")]
    Tls {
        url: String,
        #[source]
        source: rustls::Error,
    },
    #[error("cannot generate a key or CSR")]
    Csr(#[source] rcgen::Error),
    #[error("request to the issuing endpoint {url} failed")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("the issuing endpoint {url} refused the request ({status}): {message}")]
    Refused {
        url: String,
        status: u16,
        message: String,
    },
    #[error("the issuing endpoint {url} answered with an invalid SVID")]
    BadSvid {
        url: String,
        #[source]
        source: SvidError,
    },
    #[error("the issuing endpoint {url} answered with a body over {MAX_RESPONSE_BYTES} bytes")]
    TooLarge { url: String },
    #[error("the issuing endpoint {url} issued {got}, but {want} was requested")]
    WrongId {
        url: String,
        got: SpiffeId,
        want: SpiffeId,
    },
    #[error("the SVID issued by {url} does not verify against the bridge bundle")]
    Verify {
        url: String,
        #[source]
        source: VerifyError,
    },
    #[error("cannot write the bridge SVID to {dir}")]
    Write {
        dir: PathBuf,
        #[source]
        source: FileError,
    },
}

/// When to renew an SVID valid from `not_before` to `not_after`: two thirds into the window.
/// An empty or inverted window renews at `not_before` (at once).
pub fn renew_at(not_before: SystemTime, not_after: SystemTime) -> SystemTime {
    match not_after.duration_since(not_before) {
        Ok(lifetime) => {
            let two_thirds = lifetime
                .checked_mul(2)
                .map_or_else(|| lifetime / 3 * 2, |d| d / 3);
            not_before + two_thirds
        }
        Err(_) => not_before,
    }
}

// === impl IssuerClient ===

impl IssuerClient {
    /// A client for `cfg`. If `out_dir` holds a bridge SVID for `requested_id` that still
    /// verifies against the bridge bundle, it is published at once (and renewed on schedule).
    pub fn new(cfg: IssuerClientConfig) -> Self {
        let loaded = cfg.out_dir.as_ref().and_then(|dir| load_saved(&cfg, dir));
        let current_window = loaded.as_ref().map(|(_, v)| (v.0, v.1));
        let (tx, _) = watch::channel(loaded.map(|(svid, _)| Arc::new(svid)));
        Self {
            cfg,
            tx,
            current_window,
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
            request_timeout: Duration::from_secs(30),
        }
    }

    /// Sets the backoff of failed requests: `initial`, doubling up to `max`.
    pub fn with_retry(mut self, initial: Duration, max: Duration) -> Self {
        self.retry_initial = initial.max(Duration::from_millis(1));
        self.retry_max = max.max(self.retry_initial);
        self
    }

    /// Bounds each request (connect, handshake, response).
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// A receiver of the current bridge SVID.
    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<X509Svid>>> {
        self.tx.subscribe()
    }

    /// Obtains a new SVID once (fresh key, CSR, request, checks). Does not publish it.
    pub async fn fetch_once(&self) -> Result<X509Svid, IssuerClientError> {
        self.fetch().await.map(|o| o.svid)
    }

    /// Obtains an SVID now if there is none, then renews it at two thirds of its lifetime,
    /// until `shutdown`. Failures are logged and retried; they never withdraw the current SVID.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut backoff = Backoff::new(self.retry_initial, self.retry_max);
        let mut next = match self.current_window {
            Some((start, end)) => renew_at(start, end),
            None => SystemTime::now(),
        };
        loop {
            let wait = next
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO);
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
            match self.fetch().await {
                Ok(obtained) => {
                    backoff.reset();
                    next = self.publish(obtained);
                }
                Err(e) => {
                    let now = SystemTime::now();
                    let mut delay = backoff.next();
                    match self.current_window {
                        Some((_, end)) if end > now => {
                            // Never sleep past the current SVID's expiry in one step.
                            let left = end.duration_since(now).unwrap_or(Duration::ZERO);
                            delay = delay.min((left / 2).max(Duration::from_millis(100)));
                            tracing::warn!(
                                error = %error_chain(&e), retry_in = ?delay,
                                expires_in = ?left,
                                "bridge SVID renewal failed; the current SVID stays in use"
                            );
                        }
                        Some(_) => tracing::error!(
                            error = %error_chain(&e), retry_in = ?delay,
                            "bridge SVID renewal failed and the current SVID has expired"
                        ),
                        None => tracing::warn!(
                            error = %error_chain(&e), retry_in = ?delay,
                            "cannot obtain a bridge SVID yet"
                        ),
                    }
                    next = now + delay;
                }
            }
        }
    }

    /// Returns the current SVID, or obtains one now: retried with the client's backoff until
    /// `within` has passed (then the last error is returned). Used at gateway startup, so that
    /// bridge listeners start with an identity; [`run`](Self::run) then renews it on schedule.
    pub async fn ensure_initial(
        &mut self,
        within: Duration,
    ) -> Result<Arc<X509Svid>, IssuerClientError> {
        if let Some(svid) = self.tx.borrow().clone() {
            return Ok(svid);
        }
        let deadline = tokio::time::Instant::now() + within;
        let mut backoff = Backoff::new(self.retry_initial, self.retry_max);
        loop {
            match self.fetch().await {
                Ok(obtained) => {
                    self.publish(obtained);
                    if let Some(svid) = self.tx.borrow().clone() {
                        return Ok(svid);
                    }
                }
                Err(e) => {
                    let now = tokio::time::Instant::now();
                    let delay = backoff.next();
                    if now + delay >= deadline {
                        return Err(e);
                    }
                    tracing::warn!(error = %error_chain(&e), retry_in = ?delay, "cannot obtain a bridge SVID yet");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// Saves (if configured) and publishes a new SVID; returns when to renew it.
    fn publish(&mut self, obtained: Obtained) -> SystemTime {
        let Obtained {
            svid,
            key_pem,
            window,
        } = obtained;
        let next = renew_at(window.0, window.1);
        tracing::info!(
            id = %svid.id(),
            valid_until = %humantime::format_rfc3339_seconds(window.1),
            renew_at = %humantime::format_rfc3339_seconds(next),
            "bridge SVID obtained"
        );
        if let Some(dir) = &self.cfg.out_dir {
            if let Err(e) = save(&svid, &key_pem, dir) {
                tracing::warn!(error = %error_chain(&e), "cannot save the bridge SVID; a restart will request a new one");
            }
        }
        self.current_window = Some(window);
        self.tx.send_replace(Some(Arc::new(svid)));
        next
    }

    /// One request; returns the SVID, its key and its renewal window.
    async fn fetch(&self) -> Result<Obtained, IssuerClientError> {
        let url = issue_url(&self.cfg.url);
        let url_s = url.to_string();
        let bundles = self.cfg.bridge_bundle.borrow().clone();
        let local = self.cfg.local_svid.borrow().clone();
        let verifier = Arc::new(SpiffeServerVerifier::new(
            bundles.clone(),
            Authorizer::exact(self.cfg.ca_endpoint_id.clone()),
        ));
        let mut tls_config = tls::client_config(Some(&local), verifier).map_err(|source| {
            IssuerClientError::Tls {
                url: url_s.clone(),
                source,
            }
        })?;
        tls_config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let http_err = |source| IssuerClientError::Http {
            url: url_s.clone(),
            source,
        };
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls_config)
            .https_only(true)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(self.request_timeout)
            .timeout(self.request_timeout)
            .build()
            .map_err(http_err)?;

        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(IssuerClientError::Csr)?;
        let csr = csr_for(&self.cfg.requested_id, &key)?;

        let requested_at = SystemTime::now();
        let mut req = client
            .post(url.clone())
            .header(reqwest::header::CONTENT_TYPE, PKCS10)
            .header(reqwest::header::ACCEPT, PEM_CHAIN)
            .body(csr);
        if let Some(ttl) = self.cfg.ttl {
            req = req.query(&[("ttl", humantime::format_duration(ttl).to_string())]);
        }
        let mut resp = req.send().await.map_err(http_err)?;
        let status = resp.status();
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(http_err)? {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(IssuerClientError::TooLarge { url: url_s });
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body);
            let message: String = text
                .lines()
                .next()
                .unwrap_or("")
                .chars()
                .take(300)
                .collect();
            return Err(IssuerClientError::Refused {
                url: url_s,
                status: status.as_u16(),
                message,
            });
        }
        let key_pem = key.serialize_pem();
        let svid = X509Svid::from_pem(&body, key_pem.as_bytes()).map_err(|source| {
            IssuerClientError::BadSvid {
                url: url_s.clone(),
                source,
            }
        })?;
        if svid.id() != &self.cfg.requested_id {
            return Err(IssuerClientError::WrongId {
                url: url_s,
                got: svid.id().clone(),
                want: self.cfg.requested_id.clone(),
            });
        }
        let verified = verify(svid.chain(), &bundles, UnixTime::now()).map_err(|source| {
            IssuerClientError::Verify {
                url: url_s.clone(),
                source,
            }
        })?;
        let window = window_of(&svid, &verified, requested_at);
        Ok(Obtained {
            svid,
            key_pem,
            window,
        })
    }
}

/// `<base>/v1/issue`, whether or not `base` ends with a slash; query and fragment dropped.
fn issue_url(base: &reqwest::Url) -> reqwest::Url {
    let mut url = base.clone();
    url.set_query(None);
    url.set_fragment(None);
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    url.join("v1/issue").unwrap_or(url)
}

/// A freshly obtained SVID with its key (PEM, for `out_dir`; never logged) and renewal window.
struct Obtained {
    svid: X509Svid,
    key_pem: String,
    window: (SystemTime, SystemTime),
}

/// A CSR (DER) for `id` signed by `key`: exactly one URI SAN, no other names or extensions.
fn csr_for(id: &SpiffeId, key: &KeyPair) -> Result<Vec<u8>, IssuerClientError> {
    let mut params =
        CertificateParams::new(Vec::<String>::new()).map_err(IssuerClientError::Csr)?;
    let uri = rcgen::Ia5String::try_from(id.to_string()).map_err(IssuerClientError::Csr)?;
    params.subject_alt_names = vec![SanType::URI(uri)];
    let csr = params
        .serialize_request(key)
        .map_err(IssuerClientError::Csr)?;
    Ok(csr.der().to_vec())
}

/// The renewal window: from when the request was sent (clamped into the validity period,
/// because the CA back-dates `notBefore`) to `notAfter`.
fn window_of(
    svid: &X509Svid,
    verified: &VerifiedSvid,
    requested_at: SystemTime,
) -> (SystemTime, SystemTime) {
    let not_after = verified.not_after();
    let not_before = not_before_of(svid).unwrap_or(requested_at);
    let start = requested_at.max(not_before).min(not_after);
    (start, not_after)
}

fn not_before_of(svid: &X509Svid) -> Option<SystemTime> {
    let leaf = svid.chain().first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    let secs = u64::try_from(cert.validity().not_before.timestamp()).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

/// Writes `svid.key` (0600) then `svid.pem` into `dir` (created 0700 if missing). The key goes
/// first so that a crash never leaves a certificate without its key; a reader that sees the new
/// key with the old certificate detects the mismatch (`X509Svid::load`) and keeps what it had.
fn save(svid: &X509Svid, key_pem: &str, dir: &std::path::Path) -> Result<(), IssuerClientError> {
    let werr = |source| IssuerClientError::Write {
        dir: dir.to_path_buf(),
        source,
    };
    ca::create_private_dir(dir).map_err(werr)?;
    ca::write_private(&dir.join(ca::SVID_KEY), key_pem.as_bytes()).map_err(werr)?;
    ca::write_atomic(
        &dir.join(ca::SVID_PEM),
        ca::describe::encode_pem_certs(svid.chain()).as_bytes(),
    )
    .map_err(werr)?;
    Ok(())
}

/// The SVID saved in `dir`, if it is for the requested ID and verifies now; with its window.
fn load_saved(
    cfg: &IssuerClientConfig,
    dir: &std::path::Path,
) -> Option<(X509Svid, (SystemTime, SystemTime))> {
    let (pem, key) = (dir.join(ca::SVID_PEM), dir.join(ca::SVID_KEY));
    if !pem.exists() {
        return None;
    }
    let svid = match X509Svid::load(&pem, &key) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %error_chain(&e), "ignoring the saved bridge SVID");
            return None;
        }
    };
    if svid.id() != &cfg.requested_id {
        tracing::warn!(found = %svid.id(), want = %cfg.requested_id, dir = %dir.display(), "ignoring the saved bridge SVID: another ID");
        return None;
    }
    let bundles = cfg.bridge_bundle.borrow().clone();
    match verify(svid.chain(), &bundles, UnixTime::now()) {
        Ok(v) => {
            let nb = not_before_of(&svid).unwrap_or_else(SystemTime::now);
            let window = (nb, v.not_after());
            tracing::info!(id = %svid.id(), dir = %dir.display(), "using the saved bridge SVID until it is renewed");
            Some((svid, window))
        }
        Err(e) => {
            tracing::info!(error = %error_chain(&e), dir = %dir.display(), "the saved bridge SVID is not usable; requesting a new one");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn issue_url_forms() {
        for (base, want) in [
            ("https://ca:9600", "https://ca:9600/v1/issue"),
            ("https://ca:9600/", "https://ca:9600/v1/issue"),
            ("https://ca/bridge", "https://ca/bridge/v1/issue"),
            ("https://ca/bridge/", "https://ca/bridge/v1/issue"),
            ("https://ca/?x=1#f", "https://ca/v1/issue"),
        ] {
            let base: reqwest::Url = base.parse().unwrap();
            assert_eq!(issue_url(&base).as_str(), want, "{base}");
        }
    }

    #[test]
    fn renew_at_two_thirds_of_the_window() {
        assert_eq!(renew_at(t(1000), t(1003)), t(1002));
        assert_eq!(renew_at(t(0), t(3600)), t(2400));
        assert_eq!(renew_at(t(100), t(100)), t(100));
        // Inverted window: at once.
        assert_eq!(renew_at(t(200), t(100)), t(200));
        // Sub-second precision is kept.
        assert_eq!(
            renew_at(t(0), t(1)),
            SystemTime::UNIX_EPOCH + Duration::from_nanos(666_666_666)
        );
        // Huge windows do not overflow.
        let far = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::MAX / 4);
        assert!(renew_at(t(0), far) < far);
    }
}
