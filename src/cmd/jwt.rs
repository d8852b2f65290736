//! `fedgate jwt verify|mint`: JWT-SVIDs from the command line (docs/cli.md, docs/jwt-svid.md).
//!
//! `verify` follows the contract of `svid verify`: exit 0 and the validated identity on stdout,
//! 1 with the reason for a token that was read and is invalid, 2 for an unreadable bundle
//! file, stdin failure or bad arguments; every failure prints exactly one line on stderr. The
//! `BundleSet` is built only from the `--bundle` files, one bundle per trust domain (a repeated
//! trust domain is a usage error, never merged), and the token is checked only against the
//! bundle of its `sub`'s trust domain by `fedgate_federation::jwt::validate`.
//!
//! `mint` is for operators and tests: it loads the CA's JWT signer ([`crate::ca::JwtSigner`])
//! and prints one token. Its errors are the `ca` commands' (exit 1, with context).

use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use fedgate_federation::jwt::{self, JwtSvid, MAX_TOKEN_LEN};
use fedgate_federation::spiffe_id::{SpiffeId, TrustDomain};
use rustls_pki_types::UnixTime;

use super::svid::{finish, load_bundles, parse_at, parse_bundle_arg, Failure};
use crate::ca::{describe, JwtSigner};

#[derive(Debug, clap::Subcommand)]
pub enum JwtCommand {
    /// Validate a JWT-SVID against per-trust-domain bundles (docs/cli.md).
    Verify {
        /// The audience this validator identifies with; the token's `aud` must contain it.
        #[arg(long, value_name = "AUDIENCE")]
        audience: String,
        /// A trust domain's bundle file, as TD=FILE; repeat for more trust domains.
        #[arg(long = "bundle", value_name = "TD=FILE", required = true, value_parser = parse_bundle_arg)]
        bundles: Vec<(TrustDomain, PathBuf)>,
        /// Time of validation, RFC 3339 (default: now).
        #[arg(long, value_name = "RFC3339", value_parser = parse_at)]
        at: Option<UnixTime>,
        /// Print one JSON object instead of a summary.
        #[arg(long)]
        json: bool,
        /// The token, or `-` to read it from stdin (keeps it out of the process list).
        #[arg(value_name = "TOKEN")]
        token: String,
    },
    /// Mint a JWT-SVID with a CA's JWT signing key and print it.
    Mint {
        /// The CA directory (from `ca init`).
        #[arg(long = "ca-dir", visible_alias = "ca", value_name = "DIR")]
        ca_dir: PathBuf,
        /// The SPIFFE ID (`sub`), in the CA's trust domain.
        #[arg(long = "spiffe-id", visible_alias = "id", value_name = "SPIFFE_ID", value_parser = parse_spiffe_id)]
        spiffe_id: SpiffeId,
        /// An audience (`aud`); repeat for several (one is strongly recommended).
        #[arg(long = "audience", value_name = "AUDIENCE", required = true)]
        audience: Vec<String>,
        /// Lifetime of the token.
        #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = humantime::parse_duration)]
        ttl: Duration,
    },
}

/// `jwt verify --json`: the validated token.
#[derive(Debug, serde::Serialize)]
pub struct Verified {
    pub spiffe_id: String,
    pub audience: Vec<String>,
    /// `exp` as RFC 3339, UTC.
    pub expires_at: String,
    /// `exp`, unix seconds.
    pub exp: u64,
    /// `iat`, unix seconds, when present.
    pub iat: Option<u64>,
    pub alg: &'static str,
    pub kid: String,
}

pub async fn run(cmd: JwtCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        JwtCommand::Verify {
            audience,
            bundles,
            at,
            json,
            token,
        } => {
            let now = at.map_or_else(SystemTime::now, |t| {
                UNIX_EPOCH + Duration::from_secs(t.as_secs())
            });
            let result = read_token(&token)
                .and_then(|token| run_verify(&token, &audience, &bundles, now))
                .and_then(|svid| render(&svid, json));
            Ok(finish(result))
        }
        JwtCommand::Mint {
            ca_dir,
            spiffe_id,
            audience,
            ttl,
        } => {
            let signer = JwtSigner::load(&ca_dir)
                .with_context(|| format!("cannot load the CA in {}", ca_dir.display()))?;
            let audience: Vec<&str> = audience.iter().map(String::as_str).collect();
            let token = signer.mint(&spiffe_id, &audience, ttl).with_context(|| {
                format!("cannot mint a JWT-SVID from the CA in {}", ca_dir.display())
            })?;
            println!("{token}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Loads the bundles and validates `token`.
pub fn run_verify(
    token: &str,
    audience: &str,
    bundle_args: &[(TrustDomain, PathBuf)],
    now: SystemTime,
) -> Result<JwtSvid, Failure> {
    if audience.is_empty() {
        return Err(usage("--audience must not be empty".into()));
    }
    let set = load_bundles(bundle_args)?;
    jwt::validate(token, &set, audience, now).map_err(|e| Failure {
        code: 1,
        message: format!("invalid JWT-SVID: {}", fedgate_federation::error_chain(&e)),
    })
}

/// The token from the argument, or from stdin for `-`; surrounding whitespace is dropped.
fn read_token(arg: &str) -> Result<String, Failure> {
    if arg != "-" {
        return Ok(arg.trim().to_owned());
    }
    let mut buf = Vec::new();
    std::io::stdin()
        .lock()
        .take(MAX_TOKEN_LEN as u64 + 1024)
        .read_to_end(&mut buf)
        .map_err(|e| usage(format!("cannot read the token from stdin: {e}")))?;
    let text = std::str::from_utf8(&buf).map_err(|_| Failure {
        code: 1,
        message: "invalid JWT-SVID: the token on stdin is not UTF-8 text".into(),
    })?;
    let token = text.trim();
    if token.len() > MAX_TOKEN_LEN {
        return Err(Failure {
            code: 1,
            message: format!(
                "invalid JWT-SVID: the token on stdin is longer than the {MAX_TOKEN_LEN}-byte \
                 limit; JWT-SVIDs are small, this is not one"
            ),
        });
    }
    Ok(token.to_owned())
}

fn render(svid: &JwtSvid, json: bool) -> Result<String, Failure> {
    let expires_at = i64::try_from(svid.expiry)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .map_or_else(
            || format!("{} (unix seconds)", svid.expiry),
            describe::rfc3339,
        );
    if json {
        let v = Verified {
            spiffe_id: svid.spiffe_id.to_string(),
            audience: svid.audience.clone(),
            expires_at,
            exp: svid.expiry,
            iat: svid.issued_at,
            alg: svid.header.alg.name(),
            kid: svid.header.kid.clone(),
        };
        let mut s = serde_json::to_string(&v).map_err(|e| Failure {
            code: 1,
            message: format!("cannot render JSON: {e}"),
        })?;
        s.push('\n');
        return Ok(s);
    }
    let mut s = String::new();
    s += &format!("spiffe id: {}\n", svid.spiffe_id);
    for aud in &svid.audience {
        s += &format!("audience:  {}\n", escape(aud));
    }
    s += &format!("expires:   {expires_at}\n");
    s += &format!("alg:       {}\n", svid.header.alg);
    s += &format!("kid:       {}\n", escape(&svid.header.kid));
    Ok(s)
}

/// Control characters of signed but untrusted text, escaped so each value stays on one line.
fn escape(s: &str) -> String {
    if s.chars().any(char::is_control) {
        s.escape_debug().to_string()
    } else {
        s.to_owned()
    }
}

fn usage(message: String) -> Failure {
    Failure { code: 2, message }
}

fn parse_spiffe_id(s: &str) -> Result<SpiffeId, String> {
    SpiffeId::parse(s).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_keeps_lines_whole() {
        assert_eq!(escape("a\nb"), "a\\nb");
        assert_eq!(escape("plain"), "plain");
    }
}
