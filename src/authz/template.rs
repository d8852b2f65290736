//! `--id-template`: how a Kubernetes ServiceAccount becomes a SPIFFE ID.
//!
//! Invariants: a template is literal text with the placeholders `{td}`, `{ns}` and `{sa}`
//! only (no escapes: `{` and `}` appear only in placeholders); it must contain `{sa}` (else
//! every ServiceAccount would get the same ID); and it is checked when parsed by rendering a
//! probe ServiceAccount, so a template that cannot give a valid SPIFFE ID in the trust domain is
//! refused before any input is read. Every rendered ID is checked again ([`IdTemplate::render`]):
//! it parses with [`SpiffeId::parse`] and belongs to the trust domain.

use std::fmt;

use fedgate_federation::{SpiffeId, TrustDomain};

/// The default template: the Kubernetes ServiceAccount convention of SPIRE and Istio.
pub const DEFAULT_TEMPLATE: &str = "spiffe://{td}/ns/{ns}/sa/{sa}";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    TrustDomain,
    Namespace,
    ServiceAccount,
}

/// A parsed, checked `--id-template` bound to one trust domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdTemplate {
    text: String,
    trust_domain: TrustDomain,
    parts: Vec<Part>,
}

/// Why a template is unusable, or why it gave no usable ID for one ServiceAccount.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error(
        "ID template {template:?}: unknown placeholder {{{name}}}: use {{td}}, {{ns}} and {{sa}}"
    )]
    UnknownPlaceholder { template: String, name: String },
    #[error("ID template {template:?}: `{{` at byte {at} is not closed by `}}`")]
    Unclosed { template: String, at: usize },
    #[error(
        "ID template {template:?}: `}}` at byte {at} closes nothing (braces appear only in \
         {{td}}, {{ns}} and {{sa}})"
    )]
    Unopened { template: String, at: usize },
    #[error(
        "ID template {template:?} has no {{sa}}: every ServiceAccount would get the same ID; \
         add {{sa}} (the default is {DEFAULT_TEMPLATE:?})"
    )]
    NoServiceAccount { template: String },
    #[error(
        "ID template {template:?} gives {id:?} for namespace {ns:?}, ServiceAccount {sa:?}, \
         which is not a valid SPIFFE ID: {reason}"
    )]
    NotSpiffeId {
        template: String,
        id: String,
        ns: String,
        sa: String,
        reason: String,
    },
    #[error(
        "ID template {template:?} gives {id:?} for namespace {ns:?}, ServiceAccount {sa:?}, \
         outside trust domain {trust_domain:?}: start the template with `spiffe://{{td}}/` or \
         change --trust-domain"
    )]
    OutsideTrustDomain {
        template: String,
        id: String,
        ns: String,
        sa: String,
        trust_domain: String,
    },
}

impl IdTemplate {
    /// Parses and checks `text` for trust domain `trust_domain`.
    pub fn parse(text: &str, trust_domain: &TrustDomain) -> Result<Self, TemplateError> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text.char_indices();
        while let Some((at, c)) = rest.next() {
            match c {
                '{' => {
                    let mut name = String::new();
                    let mut closed = false;
                    for (_, c) in rest.by_ref() {
                        if c == '}' {
                            closed = true;
                            break;
                        }
                        name.push(c);
                    }
                    if !closed || name.contains('{') {
                        return Err(TemplateError::Unclosed {
                            template: text.to_owned(),
                            at,
                        });
                    }
                    let part = match name.as_str() {
                        "td" => Part::TrustDomain,
                        "ns" => Part::Namespace,
                        "sa" => Part::ServiceAccount,
                        _ => {
                            return Err(TemplateError::UnknownPlaceholder {
                                template: text.to_owned(),
                                name,
                            })
                        }
                    };
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(part);
                }
                '}' => {
                    return Err(TemplateError::Unopened {
                        template: text.to_owned(),
                        at,
                    })
                }
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        if !parts.contains(&Part::ServiceAccount) {
            return Err(TemplateError::NoServiceAccount {
                template: text.to_owned(),
            });
        }
        let template = Self {
            text: text.to_owned(),
            trust_domain: trust_domain.clone(),
            parts,
        };
        // The probe: Kubernetes' own names for the default namespace and ServiceAccount.
        template.render("default", "default")?;
        Ok(template)
    }

    /// The template as given.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The trust domain every rendered ID must belong to.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The SPIFFE ID of ServiceAccount `sa` in namespace `ns`.
    pub fn render(&self, ns: &str, sa: &str) -> Result<SpiffeId, TemplateError> {
        let mut id = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(s) => id.push_str(s),
                Part::TrustDomain => id.push_str(self.trust_domain.as_str()),
                Part::Namespace => id.push_str(ns),
                Part::ServiceAccount => id.push_str(sa),
            }
        }
        let parsed = SpiffeId::parse(&id).map_err(|e| TemplateError::NotSpiffeId {
            template: self.text.clone(),
            id: id.clone(),
            ns: ns.to_owned(),
            sa: sa.to_owned(),
            reason: e.to_string(),
        })?;
        if !parsed.member_of(&self.trust_domain) {
            return Err(TemplateError::OutsideTrustDomain {
                template: self.text.clone(),
                id,
                ns: ns.to_owned(),
                sa: sa.to_owned(),
                trust_domain: self.trust_domain.to_string(),
            });
        }
        Ok(parsed)
    }
}

impl fmt::Display for IdTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn td() -> TrustDomain {
        TrustDomain::new("example.org").unwrap()
    }

    #[test]
    fn default_template_renders_the_k8s_convention() {
        let t = IdTemplate::parse(DEFAULT_TEMPLATE, &td()).unwrap();
        assert_eq!(
            t.render("shop", "api").unwrap().to_string(),
            "spiffe://example.org/ns/shop/sa/api"
        );
        let t = IdTemplate::parse("spiffe://example.org/k8s/{sa}.{ns}", &td()).unwrap();
        assert_eq!(
            t.render("shop", "api").unwrap().to_string(),
            "spiffe://example.org/k8s/api.shop"
        );
    }

    #[test]
    fn bad_templates_say_why() {
        let cases = [
            (
                "spiffe://{td}/ns/{namespace}/sa/{sa}",
                "unknown placeholder {namespace}",
            ),
            ("spiffe://{td}/ns/{ns/sa/{sa}", "is not closed"),
            ("spiffe://{td}/ns/}/sa/{sa}", "closes nothing"),
            ("spiffe://{td}/ns/{ns}", "has no {sa}"),
            ("https://{td}/ns/{ns}/sa/{sa}", "not a valid SPIFFE ID"),
            ("spiffe://{td}/ns//{ns}/sa/{sa}", "not a valid SPIFFE ID"),
            (
                "spiffe://other.org/ns/{ns}/sa/{sa}",
                "outside trust domain \"example.org\"",
            ),
            ("spiffe://{ns}.{td}/sa/{sa}", "outside trust domain"),
        ];
        for (template, want) in cases {
            let e = IdTemplate::parse(template, &td()).unwrap_err().to_string();
            assert!(e.contains(want), "{template}: {e}");
            assert!(e.contains(template), "{template}: {e}");
        }
    }

    #[test]
    fn render_checks_each_id() {
        let t = IdTemplate::parse(DEFAULT_TEMPLATE, &td()).unwrap();
        let e = t.render("shop", "a/../b").unwrap_err();
        assert!(matches!(e, TemplateError::NotSpiffeId { .. }), "{e}");
    }
}
