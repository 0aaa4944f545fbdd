//! Step "volume state": what the driver knows about each published volume,
//! in memory and in a state directory, so that a restarted driver recognises
//! its volumes, keeps their refresh schedule and never mounts twice.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::request::Pod;
use crate::rotation::RefreshState;

/// One published volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeRecord {
    pub volume_id: String,
    pub target: PathBuf,
    pub namespace: String,
    pub pod: String,
    pub pod_uid: String,
    pub service_account: String,
    pub class: String,
    pub refresh: RefreshState,
    /// Identifies the class content the files came from (see publish).
    #[serde(default)]
    pub class_fingerprint: u64,
    /// What the files hold, object by object (for the rotation event and
    /// the served version's age).
    #[serde(default)]
    pub versions: Vec<ServedVersion>,
    /// The class's `sync-now` annotation when the volume last fetched: a
    /// new value makes the next republish fetch.
    #[serde(default)]
    pub sync_now: Option<String>,
}

/// The version of one object a volume holds. Never a value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServedVersion {
    pub object: String,
    #[serde(default)]
    pub version: Option<String>,
    /// When AWS made the version (ms since the Unix epoch).
    #[serde(default)]
    pub created_ms: Option<u64>,
}

impl VolumeRecord {
    pub fn new(
        volume_id: &str,
        target: &Path,
        pod: &Pod,
        class: &str,
        refresh: RefreshState,
    ) -> Self {
        VolumeRecord {
            volume_id: volume_id.to_owned(),
            target: target.to_path_buf(),
            namespace: pod.namespace.clone(),
            pod: pod.name.clone(),
            pod_uid: pod.uid.clone(),
            service_account: pod.service_account.clone(),
            class: class.to_owned(),
            refresh,
            class_fingerprint: 0,
            versions: Vec::new(),
            sync_now: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot {action} state {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// All published volumes; persisted one JSON file per volume when a
/// directory is given.
#[derive(Debug)]
pub struct VolumeStore {
    dir: Option<PathBuf>,
    volumes: Mutex<HashMap<String, VolumeRecord>>,
}

impl VolumeStore {
    /// Only in memory (the `mount` command, tests of one process).
    pub fn in_memory() -> Self {
        VolumeStore {
            dir: None,
            volumes: Mutex::default(),
        }
    }

    /// Loads the records in `dir` (created if missing). Unreadable records
    /// are skipped with a warning; the caller decides which records still
    /// stand (see [`VolumeStore::retain`]).
    pub fn open(dir: &Path) -> Result<Self, StateError> {
        let io = |action, path: &Path| {
            let path = path.to_path_buf();
            move |source| StateError::Io {
                action,
                path,
                source,
            }
        };
        fs::create_dir_all(dir).map_err(io("create", dir))?;
        let mut volumes = HashMap::new();
        for entry in fs::read_dir(dir).map_err(io("list", dir))? {
            let path = entry.map_err(io("list", dir))?.path();
            if path.extension().is_none_or(|e| e != "json") {
                // A temporary file from a write that was interrupted.
                let _ = fs::remove_file(&path);
                continue;
            }
            match fs::read(&path).map(|b| serde_json::from_slice::<VolumeRecord>(&b)) {
                Ok(Ok(record)) => {
                    volumes.insert(record.volume_id.clone(), record);
                }
                Ok(Err(e)) => {
                    tracing::warn!(path = %path.display(), error = %e, "ignoring unreadable volume state");
                    let _ = fs::remove_file(&path);
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot read volume state")
                }
            }
        }
        Ok(VolumeStore {
            dir: Some(dir.to_path_buf()),
            volumes: Mutex::new(volumes),
        })
    }

    pub fn get(&self, volume_id: &str) -> Option<VolumeRecord> {
        self.lock().get(volume_id).cloned()
    }

    /// The record of the volume published at `target`, whatever its id.
    pub fn at_target(&self, target: &Path) -> Option<VolumeRecord> {
        self.lock().values().find(|r| r.target == target).cloned()
    }

    pub fn all(&self) -> Vec<VolumeRecord> {
        self.lock().values().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Records (and persists) a volume; the file is replaced atomically.
    pub fn put(&self, record: VolumeRecord) -> Result<(), StateError> {
        if let Some(dir) = &self.dir {
            let path = dir.join(file_name(&record.volume_id));
            let tmp = path.with_extension("tmp");
            let bytes = serde_json::to_vec(&record).unwrap_or_default();
            let write = || -> std::io::Result<()> {
                let mut f = fs::File::create(&tmp)?;
                // No fsync: a record only matters while its tmpfs is
                // mounted, and both go together when the node goes down; a
                // crash of this process alone leaves the page cache whole.
                // (An fsync per publish held an async worker for
                // milliseconds, a wave's mounts behind one another.)
                f.write_all(&bytes)?;
                fs::rename(&tmp, &path)
            };
            write().map_err(|source| StateError::Io {
                action: "write",
                path,
                source,
            })?;
        }
        self.lock().insert(record.volume_id.clone(), record);
        Ok(())
    }

    /// Forgets a volume. Forgetting an unknown volume is fine.
    pub fn remove(&self, volume_id: &str) -> Result<(), StateError> {
        self.lock().remove(volume_id);
        if let Some(dir) = &self.dir {
            let path = dir.join(file_name(volume_id));
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(StateError::Io {
                        action: "remove",
                        path,
                        source,
                    });
                }
            }
        }
        Ok(())
    }

    /// Keeps only the records for which `keep` is true (at start: those whose
    /// target is still mounted).
    pub fn retain(&self, mut keep: impl FnMut(&VolumeRecord) -> bool) -> Vec<VolumeRecord> {
        let dropped: Vec<VolumeRecord> =
            self.lock().values().filter(|r| !keep(r)).cloned().collect();
        for r in &dropped {
            let _ = self.remove(&r.volume_id);
        }
        dropped
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, VolumeRecord>> {
        self.volumes.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Volume ids come from requests: hex-encode them for a safe file name.
fn file_name(volume_id: &str) -> String {
    let hex: String = volume_id.bytes().map(|b| format!("{b:02x}")).collect();
    format!("{hex}.json")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str) -> VolumeRecord {
        let pod = Pod {
            namespace: "ns".into(),
            name: "p".into(),
            uid: "u".into(),
            service_account: "sa".into(),
        };
        VolumeRecord::new(
            id,
            Path::new("/t"),
            &pod,
            "c",
            RefreshState::mounted(5, std::time::Duration::from_secs(60), id),
        )
    }

    #[test]
    fn records_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = VolumeStore::open(dir.path()).unwrap();
        store.put(record("csi-1")).unwrap();
        store.put(record("../../etc/passwd")).unwrap();
        let again = VolumeStore::open(dir.path()).unwrap();
        assert_eq!(again.get("csi-1"), Some(record("csi-1")));
        assert_eq!(again.len(), 2);
        for entry in fs::read_dir(dir.path()).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_hexdigit() || b == b'.' || b.is_ascii_alphabetic()),
                "{name}"
            );
        }
        again.remove("csi-1").unwrap();
        again.remove("csi-1").unwrap();
        assert_eq!(VolumeStore::open(dir.path()).unwrap().len(), 1);
    }

    #[test]
    fn leftovers_and_garbage_are_cleaned_at_open() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("abcd.tmp"), "partial").unwrap();
        fs::write(dir.path().join("abcd.json"), "{not json").unwrap();
        let store = VolumeStore::open(dir.path()).unwrap();
        assert!(store.is_empty());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn retain_drops_and_forgets() {
        let dir = tempfile::tempdir().unwrap();
        let store = VolumeStore::open(dir.path()).unwrap();
        store.put(record("a")).unwrap();
        store.put(record("b")).unwrap();
        let dropped = store.retain(|r| r.volume_id == "a");
        assert_eq!(dropped.len(), 1);
        assert_eq!(VolumeStore::open(dir.path()).unwrap().all().len(), 1);
    }
}
