//! What the controller holds of each External Secrets object it watches:
//! the object less what no sync reads, within bounds. Tenants write these
//! objects, so one object must not decide the controller's memory or break
//! the watch for every namespace:
//! - an object nested deeper than the JSON parser allows failed the decode
//!   of the whole list, and with it every sync, after the next relist; here
//!   it is skipped without recursion and held as a refusal of its own;
//! - `managedFields` and `kubectl.kubernetes.io/last-applied-configuration`
//!   (a second copy of the object) are dropped, labels or annotations over
//!   [`MAX_METADATA_BYTES`] are held as a digest, and a spec over
//!   [`MAX_SPEC_BYTES`] is held as a refusal, not as the spec.

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::api::{ApiResource, DynamicObject};
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use serde_json::value::RawValue;

/// The largest spec held: far above any store or ExternalSecret written by
/// hand (templates included), far below what the API server lets a tenant
/// store (1.5 MiB an object).
pub const MAX_SPEC_BYTES: usize = 128 * 1024;
/// The most label (or annotation) bytes held of one object.
pub const MAX_METADATA_BYTES: usize = 16 * 1024;
/// Held in place of labels or annotations over the bound: a digest, so a
/// change is still seen.
pub const DIGEST_KEY: &str = "aws-secrets-csi.io/digest";
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Why an object is held without its spec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("spec is {0} bytes, over the controller's limit of {MAX_SPEC_BYTES}")]
    TooLarge(usize),
    #[error("spec cannot be read: {0}")]
    Unreadable(String),
}

/// A watched object as held.
#[derive(Debug, Clone)]
pub struct Held {
    pub object: DynamicObject,
    /// Set when the spec was not held.
    pub refusal: Option<Refusal>,
}

/// The metadata fields a sync reads; everything else of the metadata
/// (`managedFields` first: it mirrors the whole object's shape) is skipped
/// by the parser without recursion.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Meta {
    name: Option<String>,
    namespace: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
    generation: Option<i64>,
    creation_timestamp: Option<Time>,
    deletion_timestamp: Option<Time>,
    labels: Option<BTreeMap<String, String>>,
    annotations: Option<BTreeMap<String, String>>,
    owner_references: Option<Vec<OwnerReference>>,
    finalizers: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Wire<'a> {
    #[serde(default)]
    api_version: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    metadata: Meta,
    #[serde(borrow, default)]
    spec: Option<&'a RawValue>,
    #[serde(borrow, default)]
    status: Option<&'a RawValue>,
}

fn bounded(map: Option<BTreeMap<String, String>>) -> Option<BTreeMap<String, String>> {
    let mut map = map?;
    map.remove(LAST_APPLIED);
    let bytes: usize = map.iter().map(|(k, v)| k.len() + v.len()).sum();
    if bytes <= MAX_METADATA_BYTES {
        return Some(map);
    }
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut h = DefaultHasher::new();
    map.hash(&mut h);
    Some(BTreeMap::from([(
        DIGEST_KEY.to_owned(),
        format!("{:016x}", h.finish()),
    )]))
}

impl Held {
    /// An object from its JSON text. Fails only where the API server's own
    /// metadata rules were broken (the watch could not name the object).
    pub fn from_json(text: &str) -> Result<Held, serde_json::Error> {
        let wire: Wire = serde_json::from_str(text)?;
        let mut refusal = None;
        let mut data = serde_json::Map::new();
        if let Some(spec) = wire.spec {
            let len = spec.get().len();
            if len > MAX_SPEC_BYTES {
                refusal = Some(Refusal::TooLarge(len));
            } else {
                match serde_json::from_str::<Value>(spec.get()) {
                    Ok(v) => {
                        data.insert("spec".into(), v);
                    }
                    Err(e) => refusal = Some(Refusal::Unreadable(e.to_string())),
                }
            }
        }
        // The status is read for the last conditions; an unreadable one is
        // as none (the next status write replaces it).
        if let Some(status) = wire.status
            && status.get().len() <= MAX_SPEC_BYTES
            && let Ok(v) = serde_json::from_str::<Value>(status.get())
        {
            data.insert("status".into(), v);
        }
        let m = wire.metadata;
        Ok(Held {
            object: DynamicObject {
                types: match (wire.api_version, wire.kind) {
                    (Some(api_version), Some(kind)) => {
                        Some(kube::api::TypeMeta { api_version, kind })
                    }
                    _ => None,
                },
                metadata: ObjectMeta {
                    name: m.name,
                    namespace: m.namespace,
                    uid: m.uid,
                    resource_version: m.resource_version,
                    generation: m.generation,
                    creation_timestamp: m.creation_timestamp,
                    deletion_timestamp: m.deletion_timestamp,
                    labels: bounded(m.labels),
                    annotations: bounded(m.annotations),
                    owner_references: m.owner_references,
                    finalizers: m.finalizers,
                    ..Default::default()
                },
                data: Value::Object(data),
            },
            refusal,
        })
    }
}

impl<'de> Deserialize<'de> for Held {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Captured as text first: serde_json skips over it without
        // recursing, however deep it is nested.
        let raw = Box::<RawValue>::deserialize(d)?;
        Held::from_json(raw.get()).map_err(serde::de::Error::custom)
    }
}

impl kube::Resource for Held {
    type DynamicType = ApiResource;
    type Scope = kube::core::DynamicResourceScope;

    fn kind(dt: &ApiResource) -> Cow<'_, str> {
        DynamicObject::kind(dt)
    }
    fn group(dt: &ApiResource) -> Cow<'_, str> {
        DynamicObject::group(dt)
    }
    fn version(dt: &ApiResource) -> Cow<'_, str> {
        DynamicObject::version(dt)
    }
    fn api_version(dt: &ApiResource) -> Cow<'_, str> {
        DynamicObject::api_version(dt)
    }
    fn plural(dt: &ApiResource) -> Cow<'_, str> {
        DynamicObject::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        &self.object.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.object.metadata
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(depth: usize) -> String {
        format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth))
    }

    #[test]
    fn an_object_nested_too_deep_is_held_as_a_refusal_and_its_list_still_decodes() {
        let deep = format!(
            r#"{{"apiVersion":"external-secrets.io/v1","kind":"ExternalSecret","metadata":{{"name":"deep","namespace":"t","managedFields":[{{"fieldsV1":{}}}]}},"spec":{{"x":{}}}}}"#,
            nested(300),
            nested(300)
        );
        let fine = r#"{"apiVersion":"external-secrets.io/v1","kind":"ExternalSecret","metadata":{"name":"ok","namespace":"u"},"spec":{"secretStoreRef":{"name":"s"}}}"#;
        // A list as the API server sends it, decoded as kube decodes it.
        let list =
            format!(r#"{{"kind":"ExternalSecretList","metadata":{{}},"items":[{deep},{fine}]}}"#);
        assert!(
            serde_json::from_str::<kube::core::ObjectList<DynamicObject>>(&list).is_err(),
            "the list as DynamicObjects fails (the watch broke for everyone)"
        );
        let items = serde_json::from_str::<kube::core::ObjectList<Held>>(&list)
            .unwrap()
            .items;
        assert_eq!(items.len(), 2);
        assert!(matches!(items[0].refusal, Some(Refusal::Unreadable(_))));
        assert_eq!(items[0].object.metadata.name.as_deref(), Some("deep"));
        assert_eq!(items[1].refusal, None);
        assert_eq!(items[1].object.data["spec"]["secretStoreRef"]["name"], "s");
        // A watch event too.
        let event = format!(r#"{{"type":"ADDED","object":{deep}}}"#);
        match serde_json::from_str::<kube::core::WatchEvent<Held>>(&event).unwrap() {
            kube::core::WatchEvent::Added(h) => assert!(h.refusal.is_some()),
            _ => panic!("not an ADDED event"),
        }
    }

    #[test]
    fn what_no_sync_reads_is_not_held() {
        let big = "x".repeat(MAX_METADATA_BYTES + 1);
        let text = serde_json::json!({
            "apiVersion": "external-secrets.io/v1",
            "kind": "ExternalSecret",
            "metadata": {
                "name": "n", "namespace": "t", "uid": "u", "generation": 3,
                "labels": {"team": "a"},
                "annotations": {"big": big, LAST_APPLIED: "{}"},
                "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
            },
            "spec": {"template": "y".repeat(MAX_SPEC_BYTES)},
            "status": {"refreshTime": "t"},
        })
        .to_string();
        let held = Held::from_json(&text).unwrap();
        let m = &held.object.metadata;
        assert_eq!(m.managed_fields, None);
        assert_eq!(m.generation, Some(3));
        assert_eq!(m.labels.as_ref().unwrap()["team"], "a");
        let annotations = m.annotations.as_ref().unwrap();
        assert_eq!(annotations.len(), 1, "a digest in place of a large map");
        assert!(annotations.contains_key(DIGEST_KEY));
        assert!(matches!(held.refusal, Some(Refusal::TooLarge(n)) if n > MAX_SPEC_BYTES));
        assert!(held.object.data.get("spec").is_none());
        assert_eq!(held.object.data["status"]["refreshTime"], "t");
        // The last-applied copy alone is dropped, small annotations kept.
        let small = serde_json::json!({"metadata": {"name": "n",
            "annotations": {LAST_APPLIED: big, "force-sync": "1"}}})
        .to_string();
        let held = Held::from_json(&small).unwrap();
        assert_eq!(
            held.object.metadata.annotations,
            Some(BTreeMap::from([("force-sync".into(), "1".into())]))
        );
    }
}
