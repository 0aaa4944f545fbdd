//! `secretObjects`: the Kubernetes Secrets a class asks to keep in sync with
//! its mounted files. Building the desired Secret is pure; applying it is in
//! [`super::Cluster::sync_secret`].

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use crate::render::FileSet;
use crate::spc::SecretObject;

/// The label on every Secret this driver manages (as the Secrets Store CSI
/// Driver sets it): a Secret without it is never overwritten.
pub const MANAGED_LABEL: &str = "secrets-store.csi.k8s.io/managed";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyncError {
    #[error("secretObjects entry {index}: {field} is required")]
    Missing { index: usize, field: &'static str },
    #[error("secretObjects {secret}: objectName {object:?} is not a file of this volume")]
    UnknownObject { secret: String, object: String },
    #[error(
        "Secret {namespace}/{name} exists and is not managed by this driver (no {MANAGED_LABEL}=true label); refusing to overwrite it"
    )]
    NotOurs { namespace: String, name: String },
    #[error("cannot sync Secret {namespace}/{name}: {message}")]
    Api {
        namespace: String,
        name: String,
        message: String,
    },
}

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
    if object.type_.is_empty() {
        return Err(SyncError::Missing {
            index,
            field: "type",
        });
    }
    if object.data.is_empty() {
        return Err(SyncError::Missing {
            index,
            field: "data",
        });
    }
    let mut data = BTreeMap::new();
    for entry in &object.data {
        let file = files
            .files()
            .iter()
            .find(|f| f.path.as_str() == entry.object_name)
            .ok_or_else(|| SyncError::UnknownObject {
                secret: object.secret_name.clone(),
                object: entry.object_name.clone(),
            })?;
        if entry.key.is_empty() {
            return Err(SyncError::Missing {
                index,
                field: "data[].key",
            });
        }
        data.insert(entry.key.clone(), ByteString(file.bytes.expose().to_vec()));
    }
    let mut labels = object.labels.clone();
    labels.insert(MANAGED_LABEL.into(), "true".into());
    Ok(Secret {
        metadata: ObjectMeta {
            name: Some(object.secret_name.clone()),
            namespace: Some(namespace.to_owned()),
            labels: Some(labels),
            annotations: (!object.annotations.is_empty()).then(|| object.annotations.clone()),
            owner_references: owner.map(|o| vec![o]),
            ..Default::default()
        },
        type_: Some(object.type_.clone()),
        data: Some(data),
        ..Default::default()
    })
}

/// True when `existing` already holds what `desired` says (data, type,
/// labels, annotations): no write is needed.
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
    fn up_to_date_compares_what_we_own() {
        let desired = desired_secret(0, &object(), &files(), "ns", None).unwrap();
        let mut existing = desired.clone();
        existing
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .insert("added-by-someone".into(), "x".into());
        assert!(
            up_to_date(&existing, &desired),
            "extra labels of others do not matter"
        );
        existing
            .data
            .as_mut()
            .unwrap()
            .insert("password".into(), ByteString(b"old".to_vec()));
        assert!(!up_to_date(&existing, &desired));
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
