//! `secretObjects`: the Kubernetes Secrets a class asks to keep in sync with
//! its mounted files. Building the desired Secret is pure; applying it is in
//! [`super::Cluster::sync_secret`].

use std::collections::BTreeMap;

use aws_secrets_csi_core::names::{self, InvalidName, NameKind};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use crate::render::FileSet;
use crate::spc::SecretObject;

/// The label on every Secret this driver manages (as the Secrets Store CSI
/// Driver sets it): a Secret without it is never overwritten.
pub const MANAGED_LABEL: &str = "secrets-store.csi.k8s.io/managed";

// The Secret types and the label and annotation keys a synced Secret may
// have: the same rules as the controller's, in the core.
pub use aws_secrets_csi_core::target_secret::{ALLOWED_TYPES, reserved_key};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyncError {
    #[error("secretObjects entry {index}: {field} is required")]
    Missing { index: usize, field: &'static str },
    #[error("secretObjects {secret}: objectName {object:?} is not a file of this volume")]
    UnknownObject { secret: String, object: String },
    #[error("secretObjects entry {index}: secretName {name:?}: {error}")]
    Name {
        index: usize,
        name: String,
        error: InvalidName,
    },
    #[error(
        "secretObjects {secret}: type {type_:?} is not allowed for a synced Secret (allowed: Opaque, kubernetes.io/tls, kubernetes.io/dockerconfigjson, kubernetes.io/dockercfg, kubernetes.io/basic-auth, kubernetes.io/ssh-auth)"
    )]
    Type { secret: String, type_: String },
    #[error(
        "secretObjects {secret}: {what} {key:?} is reserved for Kubernetes (kubernetes.io and k8s.io prefixes); a synced Secret cannot set it"
    )]
    ReservedKey {
        secret: String,
        what: &'static str,
        key: String,
    },
    #[error(
        "Secret {namespace}/{name} exists and is not managed by this driver (no {MANAGED_LABEL}=true label); refusing to overwrite it"
    )]
    NotOurs { namespace: String, name: String },
    #[error("secretObjects {secret}: file {object:?} for {key}: {cause}")]
    Tls {
        secret: String,
        object: String,
        key: String,
        cause: super::tls::TlsError,
    },
    #[error("cannot sync Secret {namespace}/{name}: {message}")]
    Api {
        namespace: String,
        name: String,
        message: String,
    },
}

const TLS_TYPE: &str = "kubernetes.io/tls";

/// The Secret `object` describes, filled from `files`, owned by `owner`.
pub fn desired_secret(
    index: usize,
    object: &SecretObject,
    files: &FileSet,
    namespace: &str,
    owner: Option<OwnerReference>,
) -> Result<Secret, SyncError> {
    if object.secret_name.is_empty() {
        return Err(SyncError::Missing {
            index,
            field: "secretName",
        });
    }
    // The name goes into the API request path.
    names::check(&object.secret_name, NameKind::Subdomain).map_err(|error| SyncError::Name {
        index,
        name: object.secret_name.clone(),
        error,
    })?;
    if object.type_.is_empty() {
        return Err(SyncError::Missing {
            index,
            field: "type",
        });
    }
    if !ALLOWED_TYPES.contains(&object.type_.as_str()) {
        return Err(SyncError::Type {
            secret: object.secret_name.clone(),
            type_: object.type_.clone(),
        });
    }
    let keys = object
        .labels
        .keys()
        .map(|k| ("label", k))
        .chain(object.annotations.keys().map(|k| ("annotation", k)));
    for (what, key) in keys {
        if reserved_key(key) {
            return Err(SyncError::ReservedKey {
                secret: object.secret_name.clone(),
                what,
                key: key.clone(),
            });
        }
    }
    if object.data.is_empty() {
        return Err(SyncError::Missing {
            index,
            field: "data",
        });
    }
    let mut data = BTreeMap::new();
    for entry in &object.data {
        // Surrounding spaces are dropped, as the upstream driver drops them.
        let (object_name, key) = (entry.object_name.trim(), entry.key.trim());
        let file = files
            .files()
            .iter()
            .find(|f| f.path.as_str() == object_name)
            .ok_or_else(|| SyncError::UnknownObject {
                secret: object.secret_name.clone(),
                object: object_name.to_owned(),
            })?;
        if key.is_empty() {
            return Err(SyncError::Missing {
                index,
                field: "data[].key",
            });
        }
        let bytes = file.bytes.expose();
        let value = if object.type_ == TLS_TYPE {
            // As the upstream driver: tls.crt gets the certificates of the
            // file, tls.key its private key (PEM or PKCS#12).
            super::tls::cert_part(bytes, key).map_err(|cause| SyncError::Tls {
                secret: object.secret_name.clone(),
                object: object_name.to_owned(),
                key: key.to_owned(),
                cause,
            })?
        } else {
            bytes.to_vec()
        };
        data.insert(key.to_owned(), ByteString(value));
    }
    let mut labels = object.labels.clone();
    labels.insert(MANAGED_LABEL.into(), "true".into());
    Ok(Secret {
        metadata: ObjectMeta {
            name: Some(object.secret_name.clone()),
            namespace: Some(namespace.to_owned()),
            labels: Some(labels),
            annotations: (!object.annotations.is_empty()).then(|| object.annotations.clone()),
            owner_references: owner.map(|o| {
                vec![OwnerReference {
                    controller: None,
                    block_owner_deletion: None,
                    ..o
                }]
            }),
            ..Default::default()
        },
        type_: Some(object.type_.clone()),
        data: Some(data),
        ..Default::default()
    })
}

/// What `existing` must become to hold what `desired` says (data, type,
/// labels, annotations) with `desired`'s owner added to those it has, or
/// `None` when it already does. Every pod (or controller) that syncs a
/// Secret stays an owner, so the Secret is collected only when the last of
/// them is gone; none is the controller, since only one owner may be.
pub fn merged(existing: &Secret, desired: &Secret) -> Option<Secret> {
    let mut next = existing.clone();
    let merge = |have: &mut Option<BTreeMap<String, String>>,
                 want: &Option<BTreeMap<String, String>>| {
        for (k, v) in want.iter().flatten() {
            have.get_or_insert_with(BTreeMap::new)
                .insert(k.clone(), v.clone());
        }
    };
    merge(&mut next.metadata.labels, &desired.metadata.labels);
    merge(
        &mut next.metadata.annotations,
        &desired.metadata.annotations,
    );
    for owner in desired.metadata.owner_references.iter().flatten() {
        let owners = next.metadata.owner_references.get_or_insert_with(Vec::new);
        if !owners.iter().any(|o| o.uid == owner.uid) {
            owners.push(owner.clone());
        }
    }
    next.data.clone_from(&desired.data);
    next.type_.clone_from(&desired.type_);
    (next != *existing).then_some(next)
}

/// True when `existing` already holds what `desired` says (data, type,
/// labels, annotations; not the owners): no write is needed.
pub fn up_to_date(existing: &Secret, desired: &Secret) -> bool {
    let subset = |want: &Option<BTreeMap<String, String>>,
                  have: &Option<BTreeMap<String, String>>| {
        want.iter()
            .flatten()
            .all(|(k, v)| have.as_ref().and_then(|h| h.get(k)) == Some(v))
    };
    existing.data == desired.data
        && existing.type_ == desired.type_
        && subset(&desired.metadata.labels, &existing.metadata.labels)
        && subset(
            &desired.metadata.annotations,
            &existing.metadata.annotations,
        )
}

/// Ours when it carries the managed label.
pub fn is_ours(existing: &Secret) -> bool {
    existing
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(MANAGED_LABEL))
        .is_some_and(|v| v == "true")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::FileEntry;
    use crate::secret::SecretBytes;
    use crate::spc::{FilePath, SecretObjectData};

    fn files() -> FileSet {
        FileSet::new(vec![
            FileEntry {
                path: FilePath::parse("db-user").unwrap(),
                mode: 0o644,
                bytes: SecretBytes::from("admin"),
            },
            FileEntry {
                path: FilePath::parse("db-pass").unwrap(),
                mode: 0o400,
                bytes: SecretBytes::from("pw"),
            },
        ])
    }

    fn object() -> SecretObject {
        SecretObject {
            secret_name: "db".into(),
            type_: "Opaque".into(),
            labels: [("team".to_string(), "shop".to_string())].into(),
            annotations: [("note".to_string(), "x".to_string())].into(),
            data: vec![
                SecretObjectData {
                    object_name: "db-user".into(),
                    key: "username".into(),
                },
                SecretObjectData {
                    object_name: "db-pass".into(),
                    key: "password".into(),
                },
            ],
        }
    }

    #[test]
    fn builds_the_secret_with_the_managed_label() {
        let s = desired_secret(0, &object(), &files(), "shop", None).unwrap();
        assert_eq!(s.metadata.name.as_deref(), Some("db"));
        assert_eq!(s.type_.as_deref(), Some("Opaque"));
        let data = s.data.as_ref().unwrap();
        assert_eq!(data["username"].0, b"admin");
        assert_eq!(data["password"].0, b"pw");
        let labels = s.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[MANAGED_LABEL], "true");
        assert_eq!(labels["team"], "shop");
        assert!(is_ours(&s));
    }

    #[test]
    fn refuses_incomplete_entries_and_unknown_files() {
        let mut o = object();
        o.type_.clear();
        assert_eq!(
            desired_secret(2, &o, &files(), "ns", None).unwrap_err(),
            SyncError::Missing {
                index: 2,
                field: "type"
            }
        );
        let mut o = object();
        o.data[0].object_name = "nope".into();
        assert_eq!(
            desired_secret(0, &o, &files(), "ns", None)
                .unwrap_err()
                .to_string(),
            "secretObjects db: objectName \"nope\" is not a file of this volume"
        );
    }

    #[test]
    fn only_secret_types_a_volume_stands_for_are_synced() {
        for allowed in ALLOWED_TYPES {
            let mut o = object();
            o.type_ = allowed.into();
            let result = desired_secret(0, &o, &files(), "ns", None);
            if allowed == TLS_TYPE {
                // Allowed, and its keys must be tls.crt and tls.key.
                assert!(
                    matches!(&result, Err(SyncError::Tls { cause: super::super::tls::TlsError::Key(k), .. }) if k == "username"),
                    "{result:?}"
                );
            } else {
                assert!(result.is_ok(), "{allowed}");
            }
        }
        for refused in [
            "kubernetes.io/service-account-token",
            "bootstrap.kubernetes.io/token",
            "helm.sh/release.v1",
            "opaque",
        ] {
            let mut o = object();
            o.type_ = refused.into();
            let e = desired_secret(0, &o, &files(), "ns", None).unwrap_err();
            assert!(matches!(e, SyncError::Type { .. }), "{refused}: {e}");
            assert!(e.to_string().contains("is not allowed"), "{e}");
        }
    }

    #[test]
    fn kubernetes_labels_and_annotations_are_refused() {
        for (label, key) in [
            (false, "kubernetes.io/service-account.name"),
            (false, "kubectl.kubernetes.io/last-applied-configuration"),
            (true, "secrets-store.csi.k8s.io/managed"),
            (true, "node-role.kubernetes.io/control-plane"),
        ] {
            let mut o = object();
            if label {
                o.labels.insert(key.into(), "x".into());
            } else {
                o.annotations.insert(key.into(), "x".into());
            }
            let e = desired_secret(0, &o, &files(), "ns", None).unwrap_err();
            assert!(matches!(e, SyncError::ReservedKey { .. }), "{key}: {e}");
        }
        let mut o = object();
        o.annotations
            .insert("example.com/owner".into(), "team".into());
        o.labels.insert("app.kubernetes.iox/x".into(), "y".into());
        assert!(desired_secret(0, &o, &files(), "ns", None).is_ok());
    }

    #[test]
    fn secret_names_bound_for_api_paths_are_checked() {
        for bad in ["../../kube-system/secrets/x", "x?watch=1", "UPPER", "a/b"] {
            let mut o = object();
            o.secret_name = bad.into();
            let e = desired_secret(3, &o, &files(), "ns", None).unwrap_err();
            assert!(
                matches!(&e, SyncError::Name { index: 3, name, .. } if name == bad),
                "{bad}: {e}"
            );
        }
    }

    fn owner(uid: &str) -> OwnerReference {
        OwnerReference {
            api_version: "v1".into(),
            kind: "Pod".into(),
            name: format!("pod-{uid}"),
            uid: uid.into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }

    #[test]
    fn merging_keeps_what_others_added_and_every_owner() {
        let desired = desired_secret(0, &object(), &files(), "ns", Some(owner("a"))).unwrap();
        let owners = desired.metadata.owner_references.as_ref().unwrap();
        assert_eq!(owners[0].controller, None, "many owners: none controls");
        assert_eq!(owners[0].block_owner_deletion, None);
        let mut existing = desired.clone();
        existing.metadata.resource_version = Some("7".into());
        existing
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .insert("added-by-someone".into(), "x".into());
        assert_eq!(
            merged(&existing, &desired),
            None,
            "extra labels of others do not matter"
        );
        // Another pod syncs the same Secret: it is added, the first stays.
        let second = desired_secret(0, &object(), &files(), "ns", Some(owner("b"))).unwrap();
        let next = merged(&existing, &second).unwrap();
        let uids: Vec<_> = next
            .metadata
            .owner_references
            .iter()
            .flatten()
            .map(|o| o.uid.as_str())
            .collect();
        assert_eq!(uids, ["a", "b"]);
        assert_eq!(
            next.metadata.resource_version.as_deref(),
            Some("7"),
            "optimistic lock"
        );
        assert_eq!(
            next.metadata.labels.as_ref().unwrap()["added-by-someone"],
            "x"
        );
        assert_eq!(merged(&next, &second), None, "known owner, same data");
        assert!(up_to_date(&next, &desired));
        // New data is written; the owners and others' labels are kept.
        existing
            .data
            .as_mut()
            .unwrap()
            .insert("password".into(), ByteString(b"old".to_vec()));
        assert!(!up_to_date(&existing, &desired));
        let next = merged(&existing, &desired).unwrap();
        assert_eq!(next.data, desired.data);
        assert_eq!(next.metadata.owner_references.as_ref().unwrap().len(), 1);
        let mut foreign = desired.clone();
        foreign.metadata.labels = None;
        assert!(!is_ours(&foreign));
    }

    #[test]
    fn errors_never_carry_values() {
        let mut o = object();
        o.data[1].object_name = "missing".into();
        let e = desired_secret(0, &o, &files(), "ns", None).unwrap_err();
        assert!(!format!("{e} {e:?}").contains("admin"));
    }
}
