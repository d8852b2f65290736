//! Reading what the demo observes: a gateway's `/status` peers, a SPIFFE bundle map, a
//! Prometheus text sample, a refusal log line. Pure functions over text and JSON.
//!
//! Invariant: every reader tolerates shapes it does not know by returning `None`, never by
//! panicking; the scenarios turn `None` into a clear "not seen" outcome.

/// A peer as the gateway's `/status` shows it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PeerView {
    pub sequence: Option<u64>,
    pub last_success: Option<String>,
    pub last_error: Option<String>,
    pub bundle_age: Option<f64>,
    pub time_until_trust_loss: Option<f64>,
    /// X.509 authorities in force.
    pub authorities: Option<u64>,
}

/// Extracts the peer `td` from a gateway `/status` document (`peers` is a list of objects
/// with a `trust_domain` key, or an object keyed by trust domain).
pub fn peer_view(status: &serde_json::Value, td: &str) -> Option<PeerView> {
    let peers = status.get("peers")?;
    let peer = match peers {
        serde_json::Value::Array(list) => list
            .iter()
            .find(|p| p.get("trust_domain").and_then(|t| t.as_str()) == Some(td))?,
        serde_json::Value::Object(map) => map.get(td)?,
        _ => return None,
    };
    let text = |k: &str| peer.get(k).and_then(|v| v.as_str()).map(str::to_owned);
    let num = |k: &str| peer.get(k).and_then(|v| v.as_f64());
    Some(PeerView {
        sequence: peer.get("sequence").and_then(|v| v.as_u64()),
        last_success: text("last_success"),
        last_error: text("last_error"),
        bundle_age: num("bundle_age"),
        time_until_trust_loss: num("time_until_trust_loss"),
        authorities: peer.get("authorities").and_then(|v| v.as_u64()),
    })
}

/// `td`'s bundle in a SPIFFE bundle map (keys may be `td` or `spiffe://td`, at the top level
/// or under `trust_domains`): its `spiffe_sequence` and number of X.509 authorities.
pub fn map_entry(map: &serde_json::Value, td: &str) -> Option<(Option<u64>, usize)> {
    let domains = map.get("trust_domains").unwrap_or(map);
    let bundle = domains
        .get(td)
        .or_else(|| domains.get(format!("spiffe://{td}")))?;
    let keys = bundle.get("keys")?.as_array()?;
    let x509 = keys
        .iter()
        .filter(|k| k.get("use").and_then(|u| u.as_str()) == Some("x509-svid"))
        .count();
    Some((bundle.get("spiffe_sequence").and_then(|s| s.as_u64()), x509))
}

/// The value of the first sample of metric `name` (without labels) in Prometheus text.
pub fn metric_value(text: &str, name: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (metric, value) = l.split_once(' ')?;
        (metric == name).then(|| value.trim().parse().ok())?
    })
}

/// The reason label of a refusal log line (`reason="..."` / `outcome="..."` in human logs,
/// `"reason":"..."` in JSON logs), if the line reports a refused or denied connection.
pub fn refusal_label(line: &str) -> Option<String> {
    let lower = line.to_ascii_lowercase();
    if !(lower.contains("refused") || lower.contains("denied")) {
        return None;
    }
    for key in ["reason", "outcome"] {
        for pat in [format!("{key}=\""), format!("\"{key}\":\"")] {
            if let Some(i) = line.find(&pat) {
                let rest = &line[i + pat.len()..];
                if let Some(end) = rest.find('"') {
                    return Some(rest[..end].to_owned());
                }
            }
        }
    }
    Some("refused".to_owned())
}

/// The certificate problem a refusal log line names, shortened for the report
/// (`UnknownIssuer`, `NoBundleForTrustDomain(cluster-c.demo)`), if it names one.
pub fn refusal_cause(line: &str) -> Option<String> {
    const MARK: &str = "invalid peer certificate: ";
    let rest = &line[line.find(MARK)? + MARK.len()..];
    // A human log line ends the error at the end of the line; a JSON one at a closing quote.
    let end = [rest.find("\","), rest.find("\"}")]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(rest.len());
    let mut cause = rest[..end].trim().replace("\\\"", "\"");
    // `Other(OtherError(X))`: the wrappers rustls and the verifier put around the reason.
    for wrapper in ["Other(", "OtherError("] {
        if let Some(inner) = cause
            .strip_prefix(wrapper)
            .and_then(|c| c.strip_suffix(')'))
        {
            cause = inner.to_owned();
        }
    }
    let cause = cause.replace("TrustDomain(\"", "").replace("\")", "");
    (!cause.is_empty()).then(|| cause.chars().take(80).collect())
}
