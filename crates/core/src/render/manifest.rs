//! The rotation manifest (`rotationManifest`, our addition): one small JSON
//! file in the volume naming each object, the version served, its version
//! stages, when AWS made that version and when this volume first got it.
//! Never a value. It is swapped with the files, so an application or a
//! sidecar watches one file to learn that a secret rotated. Pure.
//!
//! The file changes only when a version changes: a time kept from the
//! previous manifest for an unchanged version keeps the bytes equal, and
//! equal content is not rewritten (no swap, no event).

use serde::{Deserialize, Serialize};

use super::FileEntry;
use crate::secret::SecretBytes;
use crate::spc::{FileSpec, MountPlan};

/// What was fetched for one planned object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Served {
    /// The version id (Secrets Manager) or number (Parameter Store).
    pub version: Option<String>,
    /// Secrets Manager's stages of that version (`AWSCURRENT`, ...); a
    /// parameter's label when one was asked for.
    pub stages: Vec<String>,
    /// When AWS made the version (milliseconds since the Unix epoch).
    pub created_ms: Option<u64>,
}

/// The manifest's JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub objects: Vec<ManifestObject>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestObject {
    pub object_name: String,
    pub object_type: String,
    /// The file holding the whole value (absent when objectFiles is false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub version_stages: Vec<String>,
    /// When AWS made the version (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// When this volume first served the version (RFC 3339).
    pub fetched: String,
}

/// The manifest file for `plan` and what was served for each object (in
/// plan order), keeping the `fetched` time of every version the previous
/// manifest (`previous`, read back from the volume) already had. None when
/// the class asks for no manifest.
pub fn render(
    plan: &MountPlan,
    served: &[Served],
    previous: Option<&[u8]>,
    now_ms: u64,
) -> Option<FileEntry> {
    let spec: &FileSpec = plan.manifest.as_ref()?;
    // A manifest that does not parse (or is not ours) is not trusted for
    // anything: every version counts as new.
    let previous: Vec<ManifestObject> = previous
        .and_then(|b| serde_json::from_slice::<Manifest>(b).ok())
        .map(|m| m.objects)
        .unwrap_or_default();
    let objects = plan
        .objects
        .iter()
        .zip(served)
        .map(|(o, s)| {
            let file = plan.object_files.then(|| o.file.path.to_string());
            let earlier = previous.iter().find(|p| {
                p.object_name == o.name()
                    && p.object_type == o.object_type.as_str()
                    && p.version_id == s.version
                    && p.file == file
            });
            ManifestObject {
                object_name: o.name().to_owned(),
                object_type: o.object_type.as_str().to_owned(),
                file,
                version_id: s.version.clone(),
                version_stages: s.stages.clone(),
                created: s.created_ms.map(rfc3339),
                fetched: earlier.map_or_else(|| rfc3339(now_ms), |p| p.fetched.clone()),
            }
        })
        .collect();
    let mut bytes = serde_json::to_vec_pretty(&Manifest { objects }).unwrap_or_default();
    bytes.push(b'\n');
    Some(FileEntry {
        path: spec.path.clone(),
        mode: spec.mode,
        bytes: SecretBytes::new(bytes),
    })
}

fn rfc3339(ms: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::spc::plan;

    fn plan_with(manifest: &str, object_files: &str) -> MountPlan {
        let params: BTreeMap<String, String> = [
            ("region", "r"),
            (
                "objects",
                "- {objectName: prod/db, objectType: secretsmanager}\n- {objectName: /app/key, objectType: ssmparameter, objectAlias: key}",
            ),
            ("rotationManifest", manifest),
            ("objectFiles", object_files),
            ("templates", "- {path: t, template: x}"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        plan(&params, None).unwrap()
    }

    fn served(v1: &str, v2: &str) -> Vec<Served> {
        vec![
            Served {
                version: Some(v1.into()),
                stages: vec!["AWSCURRENT".into()],
                created_ms: Some(1_700_000_000_000),
            },
            Served {
                version: Some(v2.into()),
                stages: vec![],
                created_ms: None,
            },
        ]
    }

    fn parse(e: &FileEntry) -> Manifest {
        serde_json::from_slice(e.bytes.expose()).unwrap()
    }

    #[test]
    fn none_unless_asked_for() {
        let p = plan_with("", "");
        assert!(render(&p, &served("a", "1"), None, 0).is_none());
    }

    #[test]
    fn names_every_object_its_version_and_times() {
        let p = plan_with(".rotation.json", "");
        let m = render(&p, &served("a", "1"), None, 1_800_000_000_000).unwrap();
        assert_eq!(m.path.as_str(), ".rotation.json");
        let parsed = parse(&m);
        assert_eq!(parsed.objects.len(), 2);
        let db = &parsed.objects[0];
        assert_eq!(db.object_name, "prod/db");
        assert_eq!(db.object_type, "secretsmanager");
        assert_eq!(db.file.as_deref(), Some("prod_db"));
        assert_eq!(db.version_id.as_deref(), Some("a"));
        assert_eq!(db.version_stages, vec!["AWSCURRENT".to_string()]);
        assert_eq!(db.created.as_deref(), Some("2023-11-14T22:13:20Z"));
        assert_eq!(db.fetched, "2027-01-15T08:00:00Z");
        assert_eq!(parsed.objects[1].file.as_deref(), Some("key"));
        assert_eq!(parsed.objects[1].created, None);
        // Without object files, no file is named.
        let p = plan_with(".rotation.json", "false");
        let parsed = parse(&render(&p, &served("a", "1"), None, 0).unwrap());
        assert!(parsed.objects.iter().all(|o| o.file.is_none()));
    }

    #[test]
    fn unchanged_versions_keep_their_bytes_and_a_new_one_its_own_time() {
        let p = plan_with("m.json", "");
        let first = render(&p, &served("a", "1"), None, 1_000_000).unwrap();
        let again = render(&p, &served("a", "1"), Some(first.bytes.expose()), 9_000_000).unwrap();
        assert_eq!(first.bytes.expose(), again.bytes.expose());
        let rotated = render(&p, &served("b", "1"), Some(again.bytes.expose()), 9_000_000).unwrap();
        let m = parse(&rotated);
        assert_eq!(m.objects[0].version_id.as_deref(), Some("b"));
        assert_eq!(m.objects[0].fetched, rfc3339(9_000_000));
        assert_eq!(m.objects[1].fetched, rfc3339(1_000_000));
    }

    #[test]
    fn a_previous_file_that_is_not_a_manifest_counts_for_nothing() {
        let p = plan_with("m.json", "");
        for junk in [&b"not json"[..], b"{}", b"{\"objects\": 3}", &[0xff; 10]] {
            let m = parse(&render(&p, &served("a", "1"), Some(junk), 5_000).unwrap());
            assert!(m.objects.iter().all(|o| o.fetched == rfc3339(5_000)));
        }
    }

    #[test]
    fn never_holds_a_value() {
        let p = plan_with("m.json", "");
        let m = render(&p, &served("a", "1"), None, 0).unwrap();
        let text = String::from_utf8(m.bytes.expose().to_vec()).unwrap();
        for key in ["value", "secretString", "bytes"] {
            assert!(!text.contains(key), "{text}");
        }
    }
}
