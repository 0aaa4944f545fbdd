//! ClusterExternalSecret: one ExternalSecret in each selected namespace, as
//! External Secrets v2.9.0 decides it
//! (`pkg/controllers/clusterexternalsecret`). Pure: which namespaces, what
//! ExternalSecret to write, whether the one there already holds it, which
//! to delete, and the status. The controller (`src/controller/
//! cluster_external.rs`) does the reads and writes.
//!
//! The rules, as ESO has them:
//! - the namespaces are those of `namespaceSelector` (deprecated), of any
//!   `namespaceSelectors[]` entry and of `namespaces[]` (matched through
//!   the `kubernetes.io/metadata.name` label), OR'd; an invalid selector
//!   fails the whole ClusterExternalSecret (failed namespace `unknown`);
//!   a namespace being deleted is neither provisioned nor failed;
//! - the ExternalSecret is named `externalSecretName`, else the
//!   ClusterExternalSecret's name; its spec is `externalSecretSpec`, its
//!   labels and annotations those of `externalSecretMetadata`, and the
//!   `external-secrets.io/force-sync` annotation mirrors the
//!   ClusterExternalSecret's own (present with its value, or absent even
//!   when the metadata names it); it is controlled by the
//!   ClusterExternalSecret (ownerReference, `controller: true`);
//! - an ExternalSecret of that name that another controls (or nothing) is
//!   left alone and its namespace fails ("external secret already exists
//!   in namespace");
//! - after a rename (`status.externalSecretName` differs), the old ones
//!   are deleted first (only its own); after a namespace leaves the
//!   selection, its ExternalSecret is deleted (only its own);
//! - status: `externalSecretName`, `provisionedNamespaces` (sorted),
//!   `failedNamespaces[{namespace, reason}]` (sorted), and the `Ready`
//!   condition: `True`, or `False` with "one or more namespaces failed".
//!
//! Beyond ESO: a ClusterExternalSecret selecting more than
//! [`MAX_NAMESPACES`] namespaces changes nothing and says so (a selector
//! such as `{}` selects every namespace); its refresh is at least the
//! controller's shortest (a `refreshTime` of 100ms would re-read every
//! ExternalSecret ten times a second).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{Map, Value, json};

use super::ExternalError;
use super::api::{self, ClusterExternalSecretSpec, ClusterExternalSecretStatus, NamespaceFailure};
use super::conditions::{self, ConditionError, NAMESPACE_NAME_LABEL};

pub const GROUP: &str = "external-secrets.io";
pub const KIND: &str = "ClusterExternalSecret";
/// The annotation every ExternalSecret of a ClusterExternalSecret mirrors.
pub const FORCE_SYNC_ANNOTATION: &str = "external-secrets.io/force-sync";
/// The most namespaces one ClusterExternalSecret provisions.
pub const MAX_NAMESPACES: usize = 1000;
/// How often the namespaces are looked at again when `refreshTime` is not
/// set (ESO's `--requeue-interval` default).
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(3600);
/// ESO's reason for a namespace whose ExternalSecret is not its own.
pub const ALREADY_EXISTS: &str = "external secret already exists in namespace";
/// ESO's message of `Ready=False`.
pub const NAMESPACES_FAILED: &str = "one or more namespaces failed";
/// The failed "namespace" ESO reports when the namespaces cannot be listed
/// (an invalid selector).
pub const UNKNOWN_NAMESPACE: &str = "unknown";

/// A namespace as the selection sees it.
#[derive(Debug, Clone, Copy)]
pub struct Namespace<'a> {
    pub name: &'a str,
    pub labels: &'a BTreeMap<String, String>,
    /// `metadata.deletionTimestamp` is set.
    pub terminating: bool,
}

/// The ClusterExternalSecret being reconciled.
#[derive(Debug, Clone, Copy)]
pub struct Ces<'a> {
    pub name: &'a str,
    pub uid: &'a str,
    /// As served (`external-secrets.io/v1`, or `v1beta1`).
    pub api_version: &'a str,
    pub annotations: &'a BTreeMap<String, String>,
    /// The whole `spec`, as stored.
    pub spec: &'a Value,
}

/// The typed spec (unknown fields refused by their path).
pub fn read_spec(spec: &Value) -> Result<ClusterExternalSecretSpec, ExternalError> {
    api::parse(spec, "spec")
}

/// The status as stored; an unreadable one reads as none.
pub fn read_status(status: &Value) -> ClusterExternalSecretStatus {
    api::parse(status, "status").unwrap_or_default()
}

/// The name of the ExternalSecrets: `externalSecretName`, else the
/// ClusterExternalSecret's.
pub fn external_secret_name(ces_name: &str, spec: &ClusterExternalSecretSpec) -> String {
    match spec.external_secret_name.as_deref() {
        Some(n) if !n.is_empty() => n.to_owned(),
        _ => ces_name.to_owned(),
    }
}

/// When to look again: `refreshTime` (a Go duration; default one hour),
/// at least `min`. Zero or negative: only on a change, as ESO (which then
/// does not requeue).
pub fn refresh(
    spec: &ClusterExternalSecretSpec,
    min: Duration,
) -> Result<Option<Duration>, String> {
    let Some(text) = spec.refresh_time.as_deref() else {
        return Ok(Some(DEFAULT_REFRESH.max(min)));
    };
    let nanos = super::refresh::go_parse_duration(text)
        .map_err(|why| format!("spec.refreshTime: {why}"))?;
    if nanos <= 0 {
        return Ok(None);
    }
    Ok(Some(Duration::from_nanos(nanos as u64).max(min)))
}

/// The selected namespaces, by name, sorted and once each (terminating
/// ones included: they are neither provisioned nor pruned). Every selector
/// is checked first, as ESO builds them all before listing.
pub fn selected<'a>(
    spec: &ClusterExternalSecretSpec,
    namespaces: &[Namespace<'a>],
) -> Result<Vec<Namespace<'a>>, ConditionError> {
    // ESO's order: the names (as selectors on the name label), then the
    // deprecated selector, then the list.
    let mut selectors = Vec::new();
    for (i, name) in spec.namespaces.iter().enumerate() {
        selectors.push((
            conditions::LabelSelector {
                match_labels: BTreeMap::from([(NAMESPACE_NAME_LABEL.to_owned(), name.clone())]),
                match_expressions: vec![],
            },
            format!("spec.namespaces[{i}]"),
        ));
    }
    if let Some(s) = &spec.namespace_selector {
        let path = "spec.namespaceSelector".to_owned();
        selectors.push((s.clone(), path));
    }
    for (i, s) in spec.namespace_selectors.iter().enumerate() {
        let path = format!("spec.namespaceSelectors[{i}]");
        selectors.push((s.clone(), path));
    }
    let empty = BTreeMap::new();
    for (sel, path) in &selectors {
        conditions::selector_matches(sel, &empty, path)?;
    }
    let mut out: BTreeMap<&str, Namespace<'a>> = BTreeMap::new();
    for ns in namespaces {
        for (sel, path) in &selectors {
            if conditions::selector_matches(sel, ns.labels, path)? {
                out.insert(ns.name, *ns);
                break;
            }
        }
    }
    Ok(out.into_values().collect())
}

/// `null` members of objects dropped, at any depth (a schemaless CRD
/// keeps them; server-side apply reads a null as no value).
fn without_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

/// The ExternalSecret to apply in `namespace` (`es_api_version`: the
/// version the cluster serves).
pub fn desired(
    ces: &Ces<'_>,
    spec: &ClusterExternalSecretSpec,
    namespace: &str,
    es_name: &str,
    es_api_version: &str,
) -> Value {
    let metadata = spec.external_secret_metadata.clone().unwrap_or_default();
    let mut annotations = metadata.annotations;
    match ces.annotations.get(FORCE_SYNC_ANNOTATION) {
        Some(v) => {
            annotations.insert(FORCE_SYNC_ANNOTATION.to_owned(), v.clone());
        }
        None => {
            annotations.remove(FORCE_SYNC_ANNOTATION);
        }
    }
    let mut meta = Map::new();
    meta.insert("name".into(), json!(es_name));
    meta.insert("namespace".into(), json!(namespace));
    if !metadata.labels.is_empty() {
        meta.insert("labels".into(), json!(metadata.labels));
    }
    if !annotations.is_empty() {
        meta.insert("annotations".into(), json!(annotations));
    }
    meta.insert(
        "ownerReferences".into(),
        json!([{
            "apiVersion": ces.api_version,
            "kind": KIND,
            "name": ces.name,
            "uid": ces.uid,
            "controller": true,
            "blockOwnerDeletion": true,
        }]),
    );
    json!({
        "apiVersion": es_api_version,
        "kind": "ExternalSecret",
        "metadata": meta,
        "spec": without_nulls(ces.spec.get("externalSecretSpec").unwrap_or(&Value::Null)),
    })
}

/// Whether `owner_references` (as stored) make `ces_name` the controller:
/// the first reference with `controller: true` is a ClusterExternalSecret
/// (of External Secrets' group, any version) of that name. By name, as
/// ESO: a ClusterExternalSecret deleted and made again adopts them.
pub fn controlled_by(owner_references: &Value, ces_name: &str) -> bool {
    let Some(controller) = owner_references
        .as_array()
        .and_then(|refs| refs.iter().find(|r| r["controller"] == true))
    else {
        return false;
    };
    let group = controller["apiVersion"]
        .as_str()
        .and_then(|v| v.split_once('/'))
        .map(|(g, _)| g);
    group == Some(GROUP) && controller["kind"] == KIND && controller["name"] == ces_name
}

/// Whether `have` holds every value of `want` (objects: each key of
/// `want`; arrays: as many items, each holding its counterpart; an owner
/// reference: some reference of the same uid holding it). Fields the API
/// server defaulted, or other writers added, do not count.
fn contains(have: &Value, want: &Value, key: &str) -> bool {
    match (have, want) {
        (Value::Object(h), Value::Object(w)) => w
            .iter()
            .all(|(k, wv)| h.get(k).is_some_and(|hv| contains(hv, wv, k))),
        (Value::Array(h), Value::Array(w)) if key == "ownerReferences" => w.iter().all(|wv| {
            h.iter()
                .any(|hv| hv["uid"] == wv["uid"] && contains(hv, wv, ""))
        }),
        (Value::Array(h), Value::Array(w)) => {
            h.len() == w.len() && h.iter().zip(w).all(|(hv, wv)| contains(hv, wv, ""))
        }
        (h, w) => h == w,
    }
}

/// The paths of the leaves of `v`: a non-empty object is descended, any
/// other value (arrays too: server-side apply treats them as atomic here)
/// is a leaf.
fn leaves(v: &Value, path: &mut Vec<String>, out: &mut BTreeSet<Vec<String>>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, child) in m {
                path.push(k.clone());
                leaves(child, path, out);
                path.pop();
            }
        }
        _ => {
            out.insert(path.clone());
        }
    }
}

/// The paths of the leaves a manager owns, from its `fieldsV1`: `f:` keys
/// are fields; a node with list keys (`k:`, `v:`, `i:`) or no fields is a
/// leaf.
fn owned_leaves(fields: &Value, path: &mut Vec<String>, out: &mut BTreeSet<Vec<String>>) {
    let Some(m) = fields.as_object() else {
        out.insert(path.clone());
        return;
    };
    let list = m.keys().any(|k| k != "." && !k.starts_with("f:"));
    let fields: Vec<_> = m
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("f:")?, v)))
        .collect();
    if list || fields.is_empty() {
        out.insert(path.clone());
        return;
    }
    for (k, child) in fields {
        path.push(k.to_owned());
        owned_leaves(child, path, out);
        path.pop();
    }
}

/// Whether the ExternalSecret `current` (as read, with its managedFields)
/// already holds `desired` as this controller's field manager `manager`
/// would apply it: every desired value is there, and no label, annotation
/// or spec field the manager applied before is one it no longer applies.
/// Then nothing is written.
pub fn holds(current: &Value, desired: &Value, manager: &str) -> bool {
    let mut want_meta = desired["metadata"].clone();
    if let Some(m) = want_meta.as_object_mut() {
        m.remove("name");
        m.remove("namespace");
    }
    if !contains(&current["metadata"], &want_meta, "metadata")
        || !contains(&current["spec"], &desired["spec"], "spec")
    {
        return false;
    }
    let applied = current["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|f| f["manager"] == manager && f["operation"] == "Apply")
        .map(|f| &f["fieldsV1"]);
    let Some(applied) = applied else {
        // Never applied by this manager (made by ESO, or by hand): apply
        // once, so that what it sets is its own and can be taken back.
        return false;
    };
    let mut owned = BTreeSet::new();
    owned_leaves(applied, &mut vec![], &mut owned);
    let mut want = BTreeSet::new();
    leaves(desired, &mut vec![], &mut want);
    owned.iter().all(|p| {
        let relevant = matches!(
            p.iter().map(String::as_str).collect::<Vec<_>>().as_slice(),
            ["spec", ..] | ["metadata", "labels", _, ..] | ["metadata", "annotations", _, ..]
        );
        !relevant || want.contains(p)
    })
}

/// What one reconcile does, in ESO's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub es_name: String,
    /// After a rename: the old name, deleted (when its own) in each
    /// namespace of `status.provisionedNamespaces` first.
    pub renamed_from: Option<String>,
    /// Namespaces of `status.provisionedNamespaces` no longer selected:
    /// their ExternalSecret (new name) is deleted when its own.
    pub removed: Vec<String>,
    /// The namespaces to provision (selected, not terminating), sorted.
    pub provision: Vec<String>,
    /// Every selected namespace, terminating ones too.
    pub selected: BTreeSet<String>,
}

/// The plan, or the status that says why there is none (nothing is
/// written or deleted then).
pub fn plan(
    ces_name: &str,
    spec: &ClusterExternalSecretSpec,
    status: &ClusterExternalSecretStatus,
    namespaces: &[Namespace<'_>],
) -> Result<Plan, ClusterExternalSecretStatus> {
    let es_name = external_secret_name(ces_name, spec);
    let renamed_from = status
        .external_secret_name
        .clone()
        .filter(|prev| !prev.is_empty() && *prev != es_name);
    let chosen = match selected(spec, namespaces) {
        Ok(c) => c,
        Err(e) => {
            // ESO: the name is taken on (after a rename's deletions), the
            // provisioned namespaces stay as they were.
            let mut failed = BTreeMap::new();
            failed.insert(UNKNOWN_NAMESPACE.to_owned(), e.to_string());
            return Err(ClusterExternalSecretStatus {
                external_secret_name: Some(renamed_from.map_or(es_name, |p| p)),
                failed_namespaces: failures(&failed),
                provisioned_namespaces: status.provisioned_namespaces.clone(),
                conditions: ready(status, Some(NAMESPACES_FAILED.to_owned())),
            });
        }
    };
    let provision: Vec<String> = chosen
        .iter()
        .filter(|n| !n.terminating)
        .map(|n| n.name.to_owned())
        .collect();
    if provision.len() > MAX_NAMESPACES {
        return Err(refused(
            status,
            format!(
                "selects {} namespaces, more than the {MAX_NAMESPACES} one ClusterExternalSecret may provision: nothing was changed",
                provision.len()
            ),
        ));
    }
    let selected: BTreeSet<String> = chosen.iter().map(|n| n.name.to_owned()).collect();
    let removed = status
        .provisioned_namespaces
        .iter()
        .filter(|n| !selected.contains(*n))
        .cloned()
        .collect();
    Ok(Plan {
        es_name,
        renamed_from,
        removed,
        provision,
        selected,
    })
}

/// The status when nothing could be done: what it was, `Ready=False` with
/// `message`.
pub fn refused(
    status: &ClusterExternalSecretStatus,
    message: String,
) -> ClusterExternalSecretStatus {
    ClusterExternalSecretStatus {
        conditions: ready(status, Some(message)),
        ..status.clone()
    }
}

/// The status after a rename's deletions failed in `failed` (namespace ->
/// reason): the old name stays (so the next reconcile deletes again).
pub fn rename_failed(
    status: &ClusterExternalSecretStatus,
    failed: &BTreeMap<String, String>,
) -> ClusterExternalSecretStatus {
    ClusterExternalSecretStatus {
        failed_namespaces: failures(failed),
        conditions: ready(status, Some(NAMESPACES_FAILED.to_owned())),
        ..status.clone()
    }
}

/// The status after a reconcile: `provisioned` (any order) and `failed`
/// (namespace -> reason).
pub fn status_after(
    old: &ClusterExternalSecretStatus,
    es_name: &str,
    provisioned: &[String],
    failed: &BTreeMap<String, String>,
) -> ClusterExternalSecretStatus {
    let mut provisioned = provisioned.to_vec();
    provisioned.sort();
    provisioned.dedup();
    ClusterExternalSecretStatus {
        external_secret_name: Some(es_name.to_owned()),
        failed_namespaces: failures(failed),
        provisioned_namespaces: provisioned,
        conditions: ready(
            old,
            (!failed.is_empty()).then(|| NAMESPACES_FAILED.to_owned()),
        ),
    }
}

fn failures(failed: &BTreeMap<String, String>) -> Vec<NamespaceFailure> {
    failed
        .iter()
        .map(|(namespace, reason)| NamespaceFailure {
            namespace: namespace.clone(),
            reason: Some(reason.clone()),
        })
        .collect()
}

/// The conditions: the old ones less `Ready`, then `Ready` (`True`
/// without a message, or `False` with `failure`), as ESO sets them.
fn ready(old: &ClusterExternalSecretStatus, failure: Option<String>) -> Vec<api::Condition> {
    let mut out: Vec<api::Condition> = old
        .conditions
        .iter()
        .filter(|c| c.type_ != "Ready")
        .cloned()
        .collect();
    out.push(api::Condition {
        type_: "Ready".into(),
        status: if failure.is_some() { "False" } else { "True" }.into(),
        reason: None,
        message: failure,
        last_transition_time: None,
    });
    out
}

/// The status as written by server-side apply: the fields of `new`, and an
/// empty list where `old` had items and `new` has none (the apply would
/// otherwise leave a list another writer, such as ESO, put there).
pub fn status_patch(old: &ClusterExternalSecretStatus, new: &ClusterExternalSecretStatus) -> Value {
    let mut v = serde_json::to_value(new).unwrap_or_else(|_| json!({}));
    if let Some(m) = v.as_object_mut() {
        if new.failed_namespaces.is_empty() && !old.failed_namespaces.is_empty() {
            m.insert("failedNamespaces".into(), json!([]));
        }
        if new.provisioned_namespaces.is_empty() && !old.provisioned_namespaces.is_empty() {
            m.insert("provisionedNamespaces".into(), json!([]));
        }
    }
    v
}

/// ExternalSecrets (namespace, name) this ClusterExternalSecret controls
/// that it no longer wants: in a namespace not selected, or under another
/// name than `es_name`. `owned` comes from the watch (ESO looks only in
/// `status.provisionedNamespaces`; a status write lost after an apply
/// would leave one behind).
pub fn strays(
    owned: &[(String, String)],
    es_name: &str,
    selected: &BTreeSet<String>,
) -> Vec<(String, String)> {
    let mut out: Vec<_> = owned
        .iter()
        .filter(|(ns, name)| !selected.contains(ns) || name != es_name)
        .cloned()
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests;
