//! The admin server's `/` page: the `/status` document rendered as one self-refreshing HTML
//! page for a person (federation peers, SVID expiry, listeners and routes, refusals).
//!
//! Invariants: [`render`] is pure (a `/status` value in, a string out; no I/O, no clock: every
//! time and countdown on the page is read from the document), so the page and `/status` can
//! never disagree; every value taken from the document goes through [`escape`] before it is
//! written into the HTML, whatever its type; the page has no external assets and no script
//! (inline CSS, `<meta http-equiv="refresh">`), so it works under `default-src 'none'`;
//! sections whose key is absent or null (a sidecar, `fedgate bundle serve`, a gateway without
//! federation) render as "not configured" rather than failing.

use std::fmt::Write as _;

use serde_json::Value;

/// Seconds between the page's self-refreshes.
pub(crate) const REFRESH_SECONDS: u32 = 5;

/// Below this many seconds a countdown (trust loss, SVID expiry) is shown as a warning.
const WARN_SECONDS: f64 = 3600.0;

/// `s` with `&`, `<`, `>`, `"` and `'` replaced by character references: safe in HTML text
/// and in quoted attribute values.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The text of a JSON value, escaped: strings as they are, numbers and booleans as JSON
/// writes them, null or absent as an em dash, arrays and objects as compact JSON.
fn text(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "—".to_owned(),
        Some(Value::String(s)) => escape(s),
        Some(other) => escape(&other.to_string()),
    }
}

/// A duration in seconds as `2d 3h`, `4h 05m`, `7m 30s` or `12s` (sign dropped).
fn duration(seconds: f64) -> String {
    // Saturating float-to-int conversion; fractions of a second are not shown.
    let s = seconds.abs() as u64;
    let (d, h, m, sec) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60, s % 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m:02}m")
    } else if m > 0 {
        format!("{m}m {sec:02}s")
    } else {
        format!("{sec}s")
    }
}

/// A countdown cell: `in 4h 05m`, a warning below an hour, `expired 3m 10s ago` once passed.
fn countdown(seconds: Option<&Value>) -> String {
    match seconds.and_then(Value::as_f64) {
        None => "<td>—</td>".to_owned(),
        Some(s) if s < 0.0 => format!(
            "<td class=\"bad\">expired {} ago</td>",
            escape(&duration(s))
        ),
        Some(s) if s < WARN_SECONDS => {
            format!("<td class=\"warn\">in {}</td>", escape(&duration(s)))
        }
        Some(s) => format!("<td class=\"ok\">in {}</td>", escape(&duration(s))),
    }
}

/// An age cell (`3m 10s`), or an em dash.
fn age(seconds: Option<&Value>) -> String {
    seconds
        .and_then(Value::as_f64)
        .map_or_else(|| "—".to_owned(), |s| escape(&duration(s)))
}

/// The array at `key`, or an empty slice.
fn list<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5em;color:#1b1f24;background:#fff}\
h1{font-size:1.4em;margin:0 0 .2em}h3{font-size:.95em;margin:1em 0 .3em}h2{font-size:1.1em;margin:1.6em 0 .4em;border-bottom:1px solid #d0d7de}\
table{border-collapse:collapse;margin:.3em 0}th,td{padding:.25em .7em;border:1px solid #d0d7de;text-align:left;vertical-align:top}\
th{background:#f6f8fa}td.n{text-align:right;font-variant-numeric:tabular-nums}\
.ok{color:#116329}.warn{color:#9a6700;font-weight:bold}.bad{color:#cf222e;font-weight:bold}\
.muted{color:#656d76}code{font-size:.95em}p.meta{margin:.2em 0;color:#656d76}";

/// The page for the `/status` document `status`.
pub(crate) fn render(status: &Value) -> String {
    let mut html = String::with_capacity(8 * 1024);
    let td = text(status.get("trust_domain"));
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <title>fedgate status: {td}</title><style>{STYLE}</style></head><body>\n\
         <h1>fedgate: {td}</h1>\n<p class=\"meta\">state <b id=\"state\">{}</b> · \
         workers {} · refreshes every {REFRESH_SECONDS} s · same data as \
         <a href=\"/status\">/status</a> and <a href=\"/metrics\">/metrics</a></p>\n",
        text(status.get("state")),
        text(status.get("workers")),
    );
    peers(&mut html, status);
    identity(&mut html, status);
    listeners(&mut html, status);
    denials(&mut html, status);
    html.push_str("</body></html>\n");
    html
}

fn peers(html: &mut String, status: &Value) {
    html.push_str("<h2 id=\"peers\">Federation peers</h2>\n");
    let peers = list(status, "peers");
    if peers.is_empty() {
        html.push_str("<p class=\"muted\">No federation peers.</p>\n");
        return;
    }
    html.push_str(
        "<table><tr><th>Trust domain</th><th>Profile</th><th>Sequence</th><th>Bundle age</th>\
         <th>Last success</th><th>Next poll</th><th>Trust lost</th><th>Last error</th></tr>\n",
    );
    for p in peers {
        let error = match p.get("last_error") {
            None | Some(Value::Null) => "<td class=\"ok\">none</td>".to_owned(),
            e => format!("<td class=\"bad\">{}</td>", text(e)),
        };
        let _ = writeln!(
            html,
            "<tr><td title=\"{}\">{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td>{}</td><td class=\"n\">{}</td>{}{error}</tr>",
            text(p.get("url")),
            text(p.get("trust_domain")),
            text(p.get("profile")),
            text(p.get("sequence")),
            age(p.get("bundle_age")),
            text(p.get("last_success")),
            age(p.get("next_poll")),
            countdown(p.get("time_until_trust_loss")),
        );
    }
    html.push_str("</table>\n");
}

fn identity(html: &mut String, status: &Value) {
    html.push_str(
        "<h2 id=\"identity\">Identity</h2>\n<table><tr><th></th><th>SPIFFE ID</th>\
         <th>Not after</th><th>Expires</th></tr>\n",
    );
    for (label, key) in [("Local SVID", "local_svid"), ("Bridge SVID", "bridge_svid")] {
        match status.get(key) {
            Some(svid @ Value::Object(_)) => {
                let _ = writeln!(
                    html,
                    "<tr><th>{label}</th><td><code>{}</code></td><td>{}</td>{}</tr>",
                    text(svid.get("spiffe_id")),
                    text(svid.get("not_after")),
                    countdown(svid.get("seconds_left")),
                );
            }
            _ => {
                let _ = writeln!(
                    html,
                    "<tr><th>{label}</th><td colspan=\"3\" class=\"muted\">not configured</td></tr>"
                );
            }
        }
    }
    html.push_str("</table>\n");
    if let Some(b @ Value::Object(_)) = status.get("local_bundle") {
        let _ = writeln!(
            html,
            "<p>Local bundle <b>{}</b>: sequence {}, X.509 authorities {}, earliest authority \
             expiry {}.</p>",
            text(b.get("trust_domain")),
            text(b.get("sequence")),
            text(b.get("authorities")),
            text(b.get("earliest_authority_expiry")),
        );
    }
}

fn listeners(html: &mut String, status: &Value) {
    html.push_str("<h2 id=\"listeners\">Listeners and routes</h2>\n");
    let listeners = list(status, "listeners");
    if listeners.is_empty() {
        html.push_str("<p class=\"muted\">No listeners.</p>\n");
        return;
    }
    html.push_str(
        "<table><tr><th>Listener</th><th>Kind</th><th>Address</th><th>Live connections</th>\
         <th>Route</th><th>SNI</th><th>Upstreams</th><th>Live on route</th></tr>\n",
    );
    for l in listeners {
        let routes = list(l, "routes");
        let span = routes.len().max(1);
        let max = match l.get("max_connections") {
            None | Some(Value::Null) => String::new(),
            m => format!(" / {}", text(m)),
        };
        let _ = write!(
            html,
            "<tr><td rowspan=\"{span}\"><b>{}</b></td><td rowspan=\"{span}\">{}</td>\
             <td rowspan=\"{span}\"><code>{}</code></td>\
             <td rowspan=\"{span}\" class=\"n\"><span class=\"active\">{}</span>{max}</td>",
            text(l.get("name")),
            text(l.get("kind")),
            text(l.get("address")),
            text(l.get("active_connections")),
        );
        if routes.is_empty() {
            html.push_str("<td colspan=\"4\" class=\"muted\">no routes</td></tr>\n");
        }
        for (i, r) in routes.iter().enumerate() {
            if i > 0 {
                html.push_str("<tr>");
            }
            let upstreams: Vec<String> =
                list(r, "upstreams").iter().map(|u| text(Some(u))).collect();
            let _ = writeln!(
                html,
                "<td>{}</td><td><code>{}</code></td><td><code>{}</code></td>\
                 <td class=\"n route-active\">{}</td></tr>",
                text(r.get("name")),
                text(r.get("sni")),
                upstreams.join(", "),
                text(r.get("active_connections")),
            );
        }
    }
    html.push_str("</table>\n");
}

fn denials(html: &mut String, status: &Value) {
    html.push_str("<h2 id=\"denials\">Refused connections</h2>\n");
    let Some(d @ Value::Object(_)) = status.get("denials") else {
        html.push_str("<p class=\"muted\">Not tracked by this process.</p>\n");
        return;
    };
    let totals = list(d, "totals");
    if totals.is_empty() {
        html.push_str("<p class=\"ok\">No connection refused since start.</p>\n");
        return;
    }
    html.push_str(
        "<h3>By reason (since start)</h3>\n<table><tr><th>Listener</th><th>Reason</th>\
         <th>Count</th></tr>\n",
    );
    for t in totals {
        let _ = writeln!(
            html,
            "<tr><td>{}</td><td><code>{}</code></td><td class=\"n\">{}</td></tr>",
            text(t.get("listener")),
            text(t.get("reason")),
            text(t.get("count")),
        );
    }
    html.push_str("</table>\n<h3>Most recent</h3>\n<table><tr><th>Time</th><th>Listener</th><th>Reason</th></tr>\n");
    for r in list(d, "recent") {
        let _ = writeln!(
            html,
            "<tr><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            text(r.get("at")),
            text(r.get("listener")),
            text(r.get("reason")),
        );
    }
    html.push_str("</table>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_neutralizes_markup_and_quotes() {
        assert_eq!(escape("plain"), "plain");
        assert_eq!(
            escape("<script>alert('x')</script>"),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"
        );
        assert_eq!(
            escape("\"><img src=x onerror=alert(1)>"),
            "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"
        );
        // Already-escaped text is escaped again, not passed through.
        assert_eq!(escape("&lt;&amp;"), "&amp;lt;&amp;amp;");
        assert_eq!(escape("é ☃ \u{0}"), "é ☃ \u{0}");
        for hostile in [
            "<",
            ">",
            "\"",
            "'",
            "<!--",
            "]]>",
            "</style>",
            "javascript:",
        ] {
            let e = escape(hostile);
            assert!(!e.contains(['<', '>', '"', '\'']), "{hostile} -> {e}");
        }
    }

    #[test]
    fn durations_and_countdowns_read_like_a_person_writes_them() {
        assert_eq!(duration(0.4), "0s");
        assert_eq!(duration(90.0), "1m 30s");
        assert_eq!(duration(3.0 * 3600.0 + 5.0 * 60.0), "3h 05m");
        assert_eq!(duration(2.0 * 86_400.0 + 7200.0), "2d 2h");
        assert_eq!(duration(-42.0), "42s");
        let v = serde_json::json!(-190.0);
        assert_eq!(
            countdown(Some(&v)),
            "<td class=\"bad\">expired 3m 10s ago</td>"
        );
        let v = serde_json::json!(600);
        assert_eq!(countdown(Some(&v)), "<td class=\"warn\">in 10m 00s</td>");
        let v = serde_json::json!(86_400 * 30);
        assert_eq!(countdown(Some(&v)), "<td class=\"ok\">in 30d 0h</td>");
        assert_eq!(countdown(None), "<td>—</td>");
    }

    fn sample() -> Value {
        serde_json::json!({
            "trust_domain": "cluster-a.test",
            "state": "running",
            "workers": 2,
            "listeners": [{
                "name": "egress",
                "address": "127.0.0.1:8443",
                "kind": "passthrough",
                "active_connections": 3,
                "max_connections": 100,
                "default_route": null,
                "routes": [
                    {"name": "b", "sni": "*.cluster-b.test", "upstreams": ["10.0.0.1:443", "10.0.0.2:443"], "active_connections": 2},
                    {"name": "c", "sni": "*.cluster-c.test", "upstreams": ["10.0.0.3:443"]}
                ]
            }, {
                "name": "bridge-in",
                "address": "127.0.0.1:9443",
                "kind": "bridge_ingress",
                "active_connections": 0,
                "max_connections": null,
                "routes": []
            }],
            "local_bundle": {"trust_domain": "cluster-a.test", "sequence": 4, "authorities": 1,
                             "earliest_authority_expiry": "2027-01-01T00:00:00Z"},
            "identity_source": null,
            "local_svid": {"spiffe_id": "spiffe://cluster-a.test/gw", "not_after": "2026-12-05T13:00:00Z", "seconds_left": 1200.0},
            "bridge_svid": null,
            "peers": [{
                "trust_domain": "cluster-b.test",
                "url": "https://b.example/bundle",
                "profile": "https_spiffe",
                "last_success": "2026-12-05T12:40:00Z",
                "last_error": "timeout: <no answer>",
                "sequence": 17,
                "bundle_age": 75.0,
                "next_poll": 30.0,
                "time_until_trust_loss": 172_800.0,
                "authorities": 1
            }],
            "denials": {
                "totals": [{"listener": "egress", "reason": "no_sni", "count": 5}],
                "recent": [{"at": "2026-12-05T12:41:00Z", "listener": "egress", "reason": "no_sni"}]
            }
        })
    }

    #[test]
    fn renders_every_section_of_a_gateway_status() {
        let html = render(&sample());
        for expected in [
            "<!DOCTYPE html>",
            "<meta http-equiv=\"refresh\" content=\"5\">",
            "<title>fedgate status: cluster-a.test</title>",
            "<b id=\"state\">running</b>",
            // Peer: sequence, bundle age, countdown, escaped last error.
            "<td title=\"https://b.example/bundle\">cluster-b.test</td>",
            "<td class=\"n\">17</td><td class=\"n\">1m 15s</td>",
            "<td class=\"ok\">in 2d 0h</td>",
            "<td class=\"bad\">timeout: &lt;no answer&gt;</td>",
            // SVIDs.
            "<code>spiffe://cluster-a.test/gw</code></td><td>2026-12-05T13:00:00Z</td><td class=\"warn\">in 20m 00s</td>",
            "<th>Bridge SVID</th><td colspan=\"3\" class=\"muted\">not configured</td>",
            "Local bundle <b>cluster-a.test</b>: sequence 4",
            // Listeners, routes and live counts.
            "<b>egress</b>",
            "<span class=\"active\">3</span> / 100",
            "<code>10.0.0.1:443, 10.0.0.2:443</code>",
            "<code>*.cluster-c.test</code>",
            "<b>bridge-in</b>",
            "<td colspan=\"4\" class=\"muted\">no routes</td>",
            "<code>10.0.0.1:443, 10.0.0.2:443</code></td><td class=\"n route-active\">2</td>",
            // Refusals.
            "<td>egress</td><td><code>no_sni</code></td><td class=\"n\">5</td>",
            "<td>2026-12-05T12:41:00Z</td>",
        ] {
            assert!(html.contains(expected), "missing {expected:?} in\n{html}");
        }
        assert!(!html.contains("<script"), "{html}");
    }

    #[test]
    fn hostile_values_are_escaped_everywhere() {
        let evil = "<script>alert(\"x\")</script>'&";
        let mut status = sample();
        status["trust_domain"] = evil.into();
        status["state"] = evil.into();
        status["listeners"][0]["name"] = evil.into();
        status["listeners"][0]["routes"][0]["sni"] = evil.into();
        status["listeners"][0]["routes"][0]["upstreams"][0] = evil.into();
        status["peers"][0]["trust_domain"] = evil.into();
        status["peers"][0]["url"] = evil.into();
        status["peers"][0]["last_error"] = evil.into();
        status["local_svid"]["spiffe_id"] = evil.into();
        status["denials"]["recent"][0]["reason"] = evil.into();
        status["denials"]["totals"][0]["listener"] = evil.into();
        let html = render(&status);
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("alert(\""), "{html}");
        assert!(html.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&#39;&amp;"));
    }

    #[test]
    fn a_status_without_gateway_sections_still_renders() {
        for status in [
            serde_json::json!({}),
            serde_json::json!(null),
            serde_json::json!([1, 2]),
        ] {
            let html = render(&status);
            assert!(html.contains("No federation peers."), "{html}");
            assert!(html.contains("No listeners."), "{html}");
            assert!(html.contains("Not tracked by this process."), "{html}");
            assert!(html.ends_with("</body></html>\n"));
        }
    }
}
