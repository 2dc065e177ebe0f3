//! Label and field selectors, as the API server reads them from `labelSelector` and
//! `fieldSelector`.
//!
//! Labels: comma-separated requirements, all of which must hold: `key=value`,
//! `key==value`, `key!=value`, `key`, `!key`, `key in (a,b)`, `key notin (a,b)`. As in
//! Kubernetes, `!=` and `notin` also match objects that lack the label. Fields: only
//! `metadata.name` and `metadata.namespace`, with `=`, `==` and `!=` (the fields every
//! resource supports); anything else is refused like an API server refuses it.
use serde_json::Value;

/// A parsed `labelSelector`; the empty selector matches everything.
#[derive(Debug, Default, Clone)]
pub(super) struct LabelSelector {
    requirements: Vec<Requirement>,
}

#[derive(Debug, Clone)]
struct Requirement {
    key: String,
    op: Op,
}

#[derive(Debug, Clone)]
enum Op {
    Equals(String),
    NotEquals(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    DoesNotExist,
}

impl LabelSelector {
    /// Parse a selector; the error is the message a `400 BadRequest` carries.
    pub(super) fn parse(selector: &str) -> Result<LabelSelector, String> {
        let mut requirements = Vec::new();
        for term in split_top_level(selector) {
            let term = term.trim();
            if term.is_empty() {
                continue;
            }
            requirements.push(Requirement::parse(term)?);
        }
        Ok(LabelSelector { requirements })
    }

    /// Whether an object with these `metadata.labels` is selected.
    pub(super) fn matches(&self, labels: Option<&Value>) -> bool {
        let label = |key: &str| labels.and_then(|l| l.get(key)).and_then(Value::as_str);
        self.requirements.iter().all(|r| match &r.op {
            Op::Equals(v) => label(&r.key) == Some(v.as_str()),
            Op::NotEquals(v) => label(&r.key) != Some(v.as_str()),
            Op::In(vs) => label(&r.key).is_some_and(|l| vs.iter().any(|v| v == l)),
            Op::NotIn(vs) => label(&r.key).is_none_or(|l| vs.iter().all(|v| v != l)),
            Op::Exists => label(&r.key).is_some(),
            Op::DoesNotExist => label(&r.key).is_none(),
        })
    }
}

impl Requirement {
    fn parse(term: &str) -> Result<Requirement, String> {
        let bad = |why: &str| format!("unable to parse requirement: {why} in {term:?}");
        if let Some(key) = term.strip_prefix('!') {
            return Ok(Requirement {
                key: key_of(key.trim()).map_err(|e| bad(&e))?,
                op: Op::DoesNotExist,
            });
        }
        if let Some(open) = term.find('(') {
            let close = term
                .strip_suffix(')')
                .ok_or_else(|| bad("missing ')'"))?
                .len();
            let values: Vec<String> = term[open + 1..close]
                .split(',')
                .map(|v| v.trim().to_owned())
                .collect();
            let mut head = term[..open].split_whitespace();
            let key = key_of(head.next().unwrap_or_default()).map_err(|e| bad(&e))?;
            let op = match (head.next(), head.next()) {
                (Some("in"), None) => Op::In(values),
                (Some("notin"), None) => Op::NotIn(values),
                _ => return Err(bad("expected 'in' or 'notin' before '('")),
            };
            return Ok(Requirement { key, op });
        }
        let (key, op) = if let Some((k, v)) = term.split_once("!=") {
            (k, Op::NotEquals(v.trim().to_owned()))
        } else if let Some((k, v)) = term.split_once("==") {
            (k, Op::Equals(v.trim().to_owned()))
        } else if let Some((k, v)) = term.split_once('=') {
            (k, Op::Equals(v.trim().to_owned()))
        } else {
            (term, Op::Exists)
        };
        Ok(Requirement {
            key: key_of(key.trim()).map_err(|e| bad(&e))?,
            op,
        })
    }
}

fn key_of(key: &str) -> Result<String, String> {
    if key.is_empty() || key.contains(char::is_whitespace) || key.contains(['=', '!', '(', ')']) {
        return Err(format!("invalid label key {key:?}"));
    }
    Ok(key.to_owned())
}

/// Split on commas that are not inside `( … )`.
fn split_top_level(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0u32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

/// A parsed `fieldSelector` over `metadata.name` and `metadata.namespace`.
#[derive(Debug, Default, Clone)]
pub(super) struct FieldSelector {
    terms: Vec<(Field, bool, String)>,
}

#[derive(Debug, Clone, Copy)]
enum Field {
    Name,
    Namespace,
}

impl FieldSelector {
    /// Parse a selector; the error is the message a `400 BadRequest` carries.
    pub(super) fn parse(selector: &str) -> Result<FieldSelector, String> {
        let mut terms = Vec::new();
        for term in selector.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (field, equal, value) = if let Some((f, v)) = term.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = term.split_once("==") {
                (f, true, v)
            } else if let Some((f, v)) = term.split_once('=') {
                (f, true, v)
            } else {
                return Err(format!(
                    "invalid selector: '{selector}'; can't understand '{term}'"
                ));
            };
            let field = match field.trim() {
                "metadata.name" => Field::Name,
                "metadata.namespace" => Field::Namespace,
                other => return Err(format!("field label not supported: {other}")),
            };
            terms.push((field, equal, value.trim().to_owned()));
        }
        Ok(FieldSelector { terms })
    }

    /// Whether `object` is selected.
    pub(super) fn matches(&self, object: &Value) -> bool {
        self.terms.iter().all(|(field, equal, value)| {
            let pointer = match field {
                Field::Name => "/metadata/name",
                Field::Namespace => "/metadata/namespace",
            };
            let actual = object
                .pointer(pointer)
                .and_then(Value::as_str)
                .unwrap_or("");
            (actual == value) == *equal
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn selects(selector: &str, labels: Value) -> bool {
        LabelSelector::parse(selector)
            .unwrap_or_else(|e| panic!("{selector}: {e}"))
            .matches(Some(&labels))
    }

    #[test]
    fn label_requirements_combine_with_and() {
        let web = json!({"kubernetes.io/service-name": "web", "tier": "front"});
        assert!(selects("", web.clone()));
        assert!(selects("kubernetes.io/service-name=web", web.clone()));
        assert!(selects("kubernetes.io/service-name==web", web.clone()));
        assert!(selects("kubernetes.io/service-name", web.clone()));
        assert!(selects(
            "kubernetes.io/service-name in (api, web)",
            web.clone()
        ));
        assert!(selects(
            "tier=front,kubernetes.io/service-name",
            web.clone()
        ));
        assert!(selects("tier notin (back),!absent", web.clone()));
        assert!(selects("absent!=x", web.clone()));
        assert!(!selects("kubernetes.io/service-name=api", web.clone()));
        assert!(!selects(
            "kubernetes.io/service-name in (api,db)",
            web.clone()
        ));
        assert!(!selects(
            "tier=front,kubernetes.io/service-name=api",
            web.clone()
        ));
        assert!(!selects("!tier", web.clone()));
        assert!(!selects("absent", web));
    }

    #[test]
    fn bad_label_selectors_are_refused() {
        for bad in ["a in b)", "a (x)", "=x", "a b"] {
            assert!(LabelSelector::parse(bad).is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn field_selectors_cover_name_and_namespace() {
        let object = json!({"metadata": {"name": "web-1", "namespace": "prod"}});
        let selects = |s: &str| FieldSelector::parse(s).unwrap().matches(&object);
        assert!(selects("metadata.name=web-1"));
        assert!(selects("metadata.namespace==prod,metadata.name!=web-2"));
        assert!(!selects("metadata.name=web-2"));
        assert_eq!(
            FieldSelector::parse("spec.nodeName=a").unwrap_err(),
            "field label not supported: spec.nodeName"
        );
    }
}
