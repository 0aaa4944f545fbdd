//! Which namespaces may use a ClusterSecretStore (`spec.conditions[]`),
//! and whether a store is usable at all (the "flood gate"), as External
//! Secrets v2.9.0 decides (`pkg/controllers/secretstore/client_manager.go`
//! `shouldProcessSecret`, `assertStoreIsUsable`).
//!
//! The rule is an OR over everything: any condition's `namespaceSelector`,
//! any name in any `namespaces` (matched, as ESO does, through the
//! namespace's `kubernetes.io/metadata.name` label, which the API server
//! sets to its name), or any `namespaceRegexes` entry (Go
//! `regexp.MatchString`: UNANCHORED, so `prod` allows `preprod-x`; write
//! `^prod$`). No conditions: every namespace. A condition with nothing in
//! it allows none. Checks run in ESO's order and the first match wins, so
//! an invalid selector or regex after a match is not reported, as in ESO.

use std::collections::BTreeMap;

use super::go_regexp::GoRegex;

/// The label the API server puts on every namespace, holding its name.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

// The selector and condition types are the API's (one definition, with
// its schema).
pub use super::api::{
    Condition as StatusCondition, LabelSelector, LabelSelectorRequirement, SelectorOperator,
    StoreCondition as Condition,
};

/// A namespace as the rule sees it.
#[derive(Debug, Clone, Copy)]
pub struct Namespace<'a> {
    pub name: &'a str,
    pub labels: &'a BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConditionError {
    #[error("{path}: {why}")]
    InvalidSelector { path: String, why: String },
    #[error("{path}: {why}")]
    InvalidRegex { path: String, why: String },
    #[error(
        "using ClusterSecretStore {store:?} is not allowed from namespace {namespace:?}: denied by spec.conditions"
    )]
    Denied { store: String, namespace: String },
    #[error("{kind} {store:?} is not ready")]
    NotReady { kind: &'static str, store: String },
}

/// Whether `ns` may use a ClusterSecretStore with these conditions.
pub fn namespace_allowed(
    conditions: &[Condition],
    ns: Namespace<'_>,
) -> Result<bool, ConditionError> {
    if conditions.is_empty() {
        return Ok(true);
    }
    for (i, c) in conditions.iter().enumerate() {
        let at = format!("spec.conditions[{i}]");
        if let Some(sel) = &c.namespace_selector
            && selector_matches(sel, ns.labels, &format!("{at}.namespaceSelector"))?
        {
            return Ok(true);
        }
        for (j, name) in c.namespaces.iter().enumerate() {
            let path = format!("{at}.namespaces[{j}]");
            validate_label_value(name).map_err(|why| ConditionError::InvalidSelector {
                path: path.clone(),
                why,
            })?;
            if ns.labels.get(NAMESPACE_NAME_LABEL) == Some(name) {
                return Ok(true);
            }
        }
        for (j, pattern) in c.namespace_regexes.iter().enumerate() {
            let re = GoRegex::new(pattern).map_err(|why| ConditionError::InvalidRegex {
                path: format!("{at}.namespaceRegexes[{j}]"),
                why,
            })?;
            if re.is_match(ns.name) {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// [`namespace_allowed`], with ESO's refusal as the error.
pub fn check_namespace(
    store: &str,
    conditions: &[Condition],
    ns: Namespace<'_>,
) -> Result<(), ConditionError> {
    if namespace_allowed(conditions, ns)? {
        Ok(())
    } else {
        Err(ConditionError::Denied {
            store: store.to_owned(),
            namespace: ns.name.to_owned(),
        })
    }
}

/// `metav1.LabelSelectorAsSelector(sel).Matches(labels)`, including its
/// validation (an empty selector matches everything).
pub fn selector_matches(
    sel: &LabelSelector,
    labels: &BTreeMap<String, String>,
    path: &str,
) -> Result<bool, ConditionError> {
    let invalid = |p: String, why: String| ConditionError::InvalidSelector { path: p, why };
    // Validate everything first: Kubernetes builds the whole selector
    // before matching, so an invalid part fails even when another does
    // not match.
    for (k, v) in &sel.match_labels {
        let p = format!("{path}.matchLabels[{k:?}]");
        validate_label_key(k).map_err(|why| invalid(p.clone(), why))?;
        validate_label_value(v).map_err(|why| invalid(p.clone(), why))?;
    }
    for (i, r) in sel.match_expressions.iter().enumerate() {
        let p = format!("{path}.matchExpressions[{i}]");
        validate_label_key(&r.key).map_err(|why| invalid(format!("{p}.key"), why))?;
        match r.operator {
            SelectorOperator::In | SelectorOperator::NotIn if r.values.is_empty() => {
                return Err(invalid(
                    format!("{p}.values"),
                    "must be non-empty for In and NotIn".to_owned(),
                ));
            }
            SelectorOperator::Exists | SelectorOperator::DoesNotExist if !r.values.is_empty() => {
                return Err(invalid(
                    format!("{p}.values"),
                    "must be empty for Exists and DoesNotExist".to_owned(),
                ));
            }
            _ => {}
        }
        for (j, v) in r.values.iter().enumerate() {
            validate_label_value(v).map_err(|why| invalid(format!("{p}.values[{j}]"), why))?;
        }
    }
    let labels_ok = sel
        .match_labels
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v));
    let exprs_ok = sel.match_expressions.iter().all(|r| {
        let have = labels.get(&r.key);
        match r.operator {
            SelectorOperator::In => have.is_some_and(|v| r.values.contains(v)),
            SelectorOperator::NotIn => have.is_none_or(|v| !r.values.contains(v)),
            SelectorOperator::Exists => have.is_some(),
            SelectorOperator::DoesNotExist => have.is_none(),
        }
    });
    Ok(labels_ok && exprs_ok)
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`, at most `max` bytes.
fn qualified_part(s: &str, max: usize) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= max
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// A DNS-1123 subdomain (the optional prefix of a label key).
fn dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|part| {
            let b = part.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_lowercase() | b[0].is_ascii_digit()
                && (b[b.len() - 1].is_ascii_lowercase() || b[b.len() - 1].is_ascii_digit())
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        })
}

fn validate_label_key(k: &str) -> Result<(), String> {
    let (prefix, name) = match k.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    if prefix.is_some_and(|p| !dns_subdomain(p)) || !qualified_part(name, 63) {
        return Err(format!("{k:?} is not a valid label key"));
    }
    Ok(())
}

fn validate_label_value(v: &str) -> Result<(), String> {
    if v.is_empty() || qualified_part(v, 63) {
        Ok(())
    } else {
        Err(format!("{v:?} is not a valid label value"))
    }
}

/// The flood gate (`--enable-flood-gate`, on by default): a store is used
/// only while its `Ready` condition is `True`. `kind` is `SecretStore` or
/// `ClusterSecretStore`. ESO takes the first `Ready` condition.
pub fn store_usable(
    kind: &'static str,
    store: &str,
    conditions: &[StatusCondition],
) -> Result<(), ConditionError> {
    match conditions.iter().find(|c| c.type_ == "Ready") {
        Some(c) if c.status == "True" => Ok(()),
        _ => Err(ConditionError::NotReady {
            kind,
            store: store.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn or_over_everything_and_unanchored() {
        let l = labels(&[(NAMESPACE_NAME_LABEL, "preprod-x"), ("team", "a")]);
        let ns = Namespace {
            name: "preprod-x",
            labels: &l,
        };
        let regex = |r: &str| Condition {
            namespace_regexes: vec![r.to_owned()],
            ..Condition::default()
        };
        assert!(namespace_allowed(&[regex("prod")], ns).expect("ok"));
        assert!(!namespace_allowed(&[regex("^prod$")], ns).expect("ok"));
        assert!(namespace_allowed(&[], ns).expect("ok"));
        assert!(!namespace_allowed(&[Condition::default()], ns).expect("ok"));
        let expr = |op, values: &[&str]| Condition {
            namespace_selector: Some(LabelSelector {
                match_labels: BTreeMap::new(),
                match_expressions: vec![LabelSelectorRequirement {
                    key: "team".into(),
                    operator: op,
                    values: values.iter().map(|s| (*s).to_owned()).collect(),
                }],
            }),
            ..Condition::default()
        };
        assert!(namespace_allowed(&[expr(SelectorOperator::In, &["a", "b"])], ns).expect("ok"));
        assert!(!namespace_allowed(&[expr(SelectorOperator::NotIn, &["a"])], ns).expect("ok"));
        assert!(namespace_allowed(&[expr(SelectorOperator::Exists, &[])], ns).expect("ok"));
        assert!(!namespace_allowed(&[expr(SelectorOperator::DoesNotExist, &[])], ns).expect("ok"));
        let err = namespace_allowed(&[regex("nope"), expr(SelectorOperator::In, &[])], ns)
            .expect_err("empty In");
        assert_eq!(
            err.to_string(),
            "spec.conditions[1].namespaceSelector.matchExpressions[0].values: must be non-empty for In and NotIn"
        );
        // First match wins: a later invalid regex is not reached.
        assert!(namespace_allowed(&[regex("x"), regex("(")], ns).expect("matched first"));
        let err = namespace_allowed(&[regex("("), regex("x")], ns).expect_err("invalid first");
        assert!(
            err.to_string()
                .starts_with("spec.conditions[0].namespaceRegexes[0]:")
        );
    }

    #[test]
    fn flood_gate() {
        let c = |t: &str, s: &str| StatusCondition {
            type_: t.into(),
            status: s.into(),
            ..StatusCondition::default()
        };
        assert!(store_usable("SecretStore", "s", &[c("Ready", "True")]).is_ok());
        assert!(store_usable("SecretStore", "s", &[c("Ready", "False")]).is_err());
        let err = store_usable("ClusterSecretStore", "s", &[]).expect_err("no condition");
        assert_eq!(err.to_string(), "ClusterSecretStore \"s\" is not ready");
    }

    #[test]
    fn label_syntax() {
        assert!(validate_label_key("example.com/a_b").is_ok());
        assert!(validate_label_key("Example.com/a").is_err());
        assert!(validate_label_key("-a").is_err());
        assert!(validate_label_value("").is_ok());
        assert!(validate_label_value(&"a".repeat(64)).is_err());
    }
}
