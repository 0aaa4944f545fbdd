//! What the driver keeps of the objects it watches: only what a publish
//! reads. Tenants create classes and ServiceAccounts at will, with
//! annotations of up to 256 KB and, through the status field the upstream
//! CRD leaves open, nesting of any depth; none of that may grow the
//! driver's memory or stop the watch for everyone.
//!
//! A class is decoded without its managedFields (their `fieldsV1` mirrors
//! every nested field: 200 levels of it were past serde_json's recursion
//! limit and failed the whole list), its spec is taken as raw text first,
//! and a spec too large or unreadable becomes a stub that says why, so one
//! bad object fails only its own pods' publishes.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::PartialObjectMeta;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::ROLE_ANNOTATION;
use crate::spc::{SecretProviderClass, SecretProviderClassSpec};

/// The most a class's spec may take, as JSON. Far above real classes (a
/// class of 2,048 files, the most a volume holds, is about 200 KB of
/// YAML); a larger one is held as a stub.
pub const MAX_CLASS_BYTES: usize = 256 * 1024;

/// A SecretProviderClass as the driver holds it: its content, or why it
/// cannot be used.
#[derive(Clone, Debug)]
pub struct WatchedClass {
    metadata: ObjectMeta,
    pub content: Result<Arc<SecretProviderClass>, String>,
    /// The class's `aws-secrets-csi.io/sync-now` annotation: a new value
    /// makes the next republish of its volumes fetch (our addition).
    pub sync_now: Option<String>,
}

/// The annotation that asks for a fetch at the next republish.
pub const SYNC_NOW: &str = "aws-secrets-csi.io/sync-now";
/// The longest value of it kept (longer ones are cut: any change of the
/// first 256 bytes still counts).
const MAX_SYNC_NOW: usize = 256;

/// A sync-now value cut to [`MAX_SYNC_NOW`] bytes, on a character boundary.
pub fn bounded_sync_now(mut value: String) -> String {
    let mut end = value.len().min(MAX_SYNC_NOW);
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    value.truncate(end);
    value
}

/// Only the metadata a lookup needs; everything else (managedFields,
/// labels, every other annotation) is skipped unread.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct WireMeta {
    name: Option<String>,
    namespace: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
    #[serde(default)]
    annotations: SyncNowOnly,
}

/// The annotations map, read for [`SYNC_NOW`] alone.
#[derive(Default)]
struct SyncNowOnly(Option<String>);

impl<'de> Deserialize<'de> for SyncNowOnly {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = SyncNowOnly;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map of annotations")
            }
            fn visit_unit<E>(self) -> Result<SyncNowOnly, E> {
                Ok(SyncNowOnly(None))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<SyncNowOnly, A::Error> {
                let mut found = None;
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    if key == SYNC_NOW {
                        found = Some(bounded_sync_now(map.next_value()?));
                    } else {
                        map.next_value::<serde::de::IgnoredAny>()?;
                    }
                }
                Ok(SyncNowOnly(found))
            }
        }
        d.deserialize_any(Visit)
    }
}

#[derive(Deserialize)]
struct Wire {
    #[serde(default)]
    metadata: WireMeta,
    spec: Option<Box<RawValue>>,
}

impl<'de> Deserialize<'de> for WatchedClass {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let wire = Wire::deserialize(d)?;
        let metadata = ObjectMeta {
            name: wire.metadata.name,
            namespace: wire.metadata.namespace,
            uid: wire.metadata.uid,
            resource_version: wire.metadata.resource_version,
            ..Default::default()
        };
        let spec = wire.spec.as_deref().map_or("{}", RawValue::get);
        let content = if spec.len() > MAX_CLASS_BYTES {
            Err(format!(
                "its spec is {} bytes, more than the {MAX_CLASS_BYTES} bytes a class may hold on this driver",
                spec.len()
            ))
        } else {
            serde_json::from_str::<SecretProviderClassSpec>(spec)
                .map(|spec| {
                    Arc::new(SecretProviderClass {
                        metadata: metadata.clone(),
                        spec,
                    })
                })
                .map_err(|e| format!("its spec cannot be read: {e}"))
        };
        Ok(WatchedClass {
            metadata,
            content,
            sync_now: wire.metadata.annotations.0,
        })
    }
}

impl kube::Resource for WatchedClass {
    type DynamicType = ();
    type Scope = k8s_openapi::NamespaceResourceScope;

    fn kind(dt: &()) -> std::borrow::Cow<'_, str> {
        SecretProviderClass::kind(dt)
    }
    fn group(dt: &()) -> std::borrow::Cow<'_, str> {
        SecretProviderClass::group(dt)
    }
    fn version(dt: &()) -> std::borrow::Cow<'_, str> {
        SecretProviderClass::version(dt)
    }
    fn plural(dt: &()) -> std::borrow::Cow<'_, str> {
        SecretProviderClass::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// Keeps of a ServiceAccount's metadata only its identity and the role
/// annotation (the watch decodes the rest, then it goes before the store).
pub fn strip_account(account: &mut PartialObjectMeta<ServiceAccount>) {
    let m = &mut account.metadata;
    let role = m
        .annotations
        .take()
        .and_then(|mut a| a.remove_entry(ROLE_ANNOTATION));
    *m = ObjectMeta {
        name: m.name.take(),
        namespace: m.namespace.take(),
        uid: m.uid.take(),
        resource_version: m.resource_version.take(),
        annotations: role.map(|(k, v)| BTreeMap::from([(k, v)])),
        ..Default::default()
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class_json(spec: serde_json::Value, status: serde_json::Value) -> String {
        serde_json::json!({
            "apiVersion": "secrets-store.csi.x-k8s.io/v1",
            "kind": "SecretProviderClass",
            "metadata": {
                "name": "c", "namespace": "ns", "uid": "u1", "resourceVersion": "7",
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "x".repeat(10_000)},
                "labels": {"a": "b"},
                "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
            },
            "spec": spec,
            "status": status,
        })
        .to_string()
    }

    /// `{"f:a": {"f:a": ...}}` nested `depth` deep, as text (serde_json's
    /// own `json!` would stop at its recursion limit).
    fn nested(depth: usize) -> String {
        format!("{}1{}", "{\"f:a\":".repeat(depth), "}".repeat(depth))
    }

    #[test]
    fn of_the_annotations_only_sync_now_is_kept_and_bounded() {
        let with = |annotations: serde_json::Value| -> WatchedClass {
            let text = serde_json::json!({
                "metadata": {"name": "c", "namespace": "ns", "annotations": annotations},
                "spec": {"provider": "aws"},
            })
            .to_string();
            serde_json::from_str(&text).unwrap()
        };
        let class = with(serde_json::json!({
            "big": "x".repeat(300_000),
            SYNC_NOW: "2026-12-07T20:00:00Z",
            "other": {"not": "a string"},
        }));
        assert_eq!(class.sync_now.as_deref(), Some("2026-12-07T20:00:00Z"));
        assert!(class.metadata.annotations.is_none());
        assert_eq!(with(serde_json::json!({"a": "b"})).sync_now, None);
        assert_eq!(with(serde_json::Value::Null).sync_now, None);
        let long = with(serde_json::json!({SYNC_NOW: "é".repeat(200)}));
        let kept = long.sync_now.unwrap();
        assert!(kept.len() <= MAX_SYNC_NOW && kept.chars().all(|c| c == 'é'));
    }

    #[test]
    fn a_class_keeps_only_what_a_publish_reads() {
        let text = class_json(
            serde_json::json!({"provider": "aws", "parameters": {"objects": "- {objectName: a}"}, "extra": [1]}),
            serde_json::json!({}),
        );
        let class: WatchedClass = serde_json::from_str(&text).unwrap();
        let meta = &class.metadata;
        assert_eq!(
            (
                meta.name.as_deref(),
                meta.namespace.as_deref(),
                meta.uid.as_deref()
            ),
            (Some("c"), Some("ns"), Some("u1"))
        );
        assert_eq!(meta.resource_version.as_deref(), Some("7"));
        assert!(
            meta.annotations.is_none() && meta.labels.is_none() && meta.managed_fields.is_none()
        );
        let content = class.content.unwrap();
        assert_eq!(content.spec.provider, "aws");
        assert_eq!(content.spec.parameters["objects"], "- {objectName: a}");
        assert_eq!(content.metadata.name.as_deref(), Some("c"));
    }

    #[test]
    fn nesting_past_the_recursion_limit_does_not_fail_the_list() {
        // Where a tenant can nest: status (open in the CRD), unknown spec
        // fields (pruned by our CRD, not by every other), and managedFields.
        let deep = nested(500);
        let text = format!(
            r#"{{"items": [
                {{"metadata": {{"name": "deep", "namespace": "ns", "managedFields": [{{"fieldsV1": {deep}}}]}},
                  "spec": {{"provider": "aws", "other": {deep}}}, "status": {deep}}},
                {{"metadata": {{"name": "fine", "namespace": "ns"}}, "spec": {{"provider": "aws"}}}}
            ]}}"#
        );
        #[derive(Deserialize)]
        struct List {
            items: Vec<WatchedClass>,
        }
        // The class type itself, as the watch decoded it before: the
        // whole list fails.
        #[derive(Deserialize)]
        struct Before {
            #[allow(dead_code)]
            items: Vec<SecretProviderClass>,
        }
        let before = serde_json::from_str::<Before>(&text).err().unwrap();
        assert!(before.to_string().contains("recursion limit"), "{before}");
        let list: List = serde_json::from_str(&text).unwrap();
        assert_eq!(list.items.len(), 2);
        assert!(list.items.iter().all(|c| c.content.is_ok()));
    }

    #[test]
    fn a_large_or_unreadable_spec_is_a_stub_that_says_why() {
        let big = "x".repeat(MAX_CLASS_BYTES);
        let text = class_json(
            serde_json::json!({"provider": "aws", "parameters": {"objects": big}}),
            serde_json::json!({}),
        );
        let class: WatchedClass = serde_json::from_str(&text).unwrap();
        let why = class.content.unwrap_err();
        assert!(
            why.starts_with("its spec is 262")
                && why
                    .ends_with("bytes, more than the 262144 bytes a class may hold on this driver"),
            "{why}"
        );
        assert_eq!(class.metadata.name.as_deref(), Some("c"));

        let text = class_json(
            serde_json::json!({"provider": "aws", "parameters": {"objects": 5}}),
            serde_json::json!({}),
        );
        let class: WatchedClass = serde_json::from_str(&text).unwrap();
        assert!(
            class
                .content
                .unwrap_err()
                .starts_with("its spec cannot be read: invalid type: integer")
        );
    }

    #[test]
    fn an_account_keeps_its_uid_and_role_only() {
        let mut account: PartialObjectMeta<ServiceAccount> = serde_json::from_value(serde_json::json!({
            "apiVersion": "meta.k8s.io/v1",
            "kind": "PartialObjectMetadata",
            "metadata": {
                "name": "app", "namespace": "ns", "uid": "u2", "resourceVersion": "9",
                "annotations": {ROLE_ANNOTATION: "arn:aws:iam::1:role/r", "big": "x".repeat(200_000)},
                "labels": {"a": "b"},
                "managedFields": [{"manager": "kubectl"}],
            }
        }))
        .unwrap();
        strip_account(&mut account);
        let m = &account.metadata;
        assert_eq!(
            (
                m.name.as_deref(),
                m.namespace.as_deref(),
                m.uid.as_deref(),
                m.resource_version.as_deref()
            ),
            (Some("app"), Some("ns"), Some("u2"), Some("9"))
        );
        assert_eq!(
            m.annotations,
            Some(BTreeMap::from([(
                ROLE_ANNOTATION.to_owned(),
                "arn:aws:iam::1:role/r".to_owned()
            )]))
        );
        assert!(m.labels.is_none() && m.managed_fields.is_none());
    }
}
