//! The atomic swap of a whole file set, as kubelet's AtomicWriter does it:
//! files go into a new hidden directory `..<timestamp>`, then one rename of
//! the `..data` symlink switches every file at once. Each visible entry is a
//! symlink through `..data`, so a reader sees the old set or the new set,
//! never a mix.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use super::VolumeError;
use crate::render::{FileEntry, FileSet};
use crate::secret::SecretBytes;
use crate::spc::FilePath;

/// The symlink that points at the current content directory.
pub const DATA_LINK: &str = "..data";
const DATA_LINK_TMP: &str = "..data_tmp";

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    /// The bytes and modes on disk already matched: nothing was touched.
    Unchanged,
    /// A new content directory was swapped in.
    Swapped,
}

/// Writes `set` into `target` atomically. When the current content is equal
/// to `set`, nothing is swapped; the visible links and leftovers of an
/// interrupted earlier write are repaired either way. `target` is a
/// resolved handle's path (see `Target::via`): it is not checked again.
pub(super) fn write_file_set(target: &Path, set: &FileSet) -> Result<WriteOutcome, VolumeError> {
    // Visible names: one symlink per top-level entry, through ..data. Check
    // that none is blocked before anything changes.
    let tops: BTreeSet<&str> = set.files().iter().map(|f| f.path.top()).collect();
    for top in &tops {
        let link = target.join(top);
        match fs::symlink_metadata(&link) {
            Ok(m) if !m.file_type().is_symlink() => {
                return Err(VolumeError::Unsafe {
                    path: link,
                    reason: "an entry that is not our symlink is in the way",
                });
            }
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(VolumeError::io("inspect", &link)(e)),
        }
    }

    let unchanged = read_file_set(target)?.is_some_and(|current| current == *set);
    let outcome = if unchanged {
        WriteOutcome::Unchanged
    } else {
        swap_in(target, set)?;
        WriteOutcome::Swapped
    };
    sync_links(target, &tops)?;
    remove_stale_dirs(target, current_data_dir(target)?.as_deref())?;
    Ok(outcome)
}

/// Repairs a volume after an interrupted write (a driver killed mid-swap):
/// the links match the current content and leftovers are removed.
pub(super) fn tidy(target: &Path) -> Result<(), VolumeError> {
    if let Some(current) = read_file_set(target)? {
        write_file_set(target, &current)?;
    }
    Ok(())
}

/// Writes `set` into a new hidden directory and points `..data` at it.
fn swap_in(target: &Path, set: &FileSet) -> Result<(), VolumeError> {
    let new_name = new_dir_name();
    let new_dir = target.join(&new_name);
    fs::DirBuilder::new()
        .mode(0o755)
        .create(&new_dir)
        .map_err(VolumeError::io("create directory", &new_dir))?;
    if let Err(e) = write_files(&new_dir, set) {
        let _ = fs::remove_dir_all(&new_dir);
        return Err(e);
    }
    // A temporary symlink renamed over ..data is one atomic step.
    let tmp_link = target.join(DATA_LINK_TMP);
    match fs::remove_file(&tmp_link) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(VolumeError::io("remove", &tmp_link)(e)),
    }
    let swap = std::os::unix::fs::symlink(&new_name, &tmp_link)
        .map_err(VolumeError::io("create symlink", &tmp_link))
        .and_then(|()| {
            fs::rename(&tmp_link, target.join(DATA_LINK))
                .map_err(VolumeError::io("rename", &tmp_link))
        });
    if let Err(e) = swap {
        let _ = fs::remove_file(&tmp_link);
        let _ = fs::remove_dir_all(&new_dir);
        return Err(e);
    }
    Ok(())
}

/// One symlink `<top> -> ..data/<top>` per top-level name; our symlinks for
/// names that left the set are removed.
fn sync_links(target: &Path, tops: &BTreeSet<&str>) -> Result<(), VolumeError> {
    for top in tops {
        let link = target.join(top);
        if fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(Path::new(DATA_LINK).join(top), &link)
                .map_err(VolumeError::io("create symlink", &link))?;
        }
    }
    for entry in fs::read_dir(target).map_err(VolumeError::io("list", target))? {
        let entry = entry.map_err(VolumeError::io("list", target))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with("..") || tops.contains(name) {
            continue;
        }
        if entry.file_type().map(|t| t.is_symlink()).unwrap_or(false) {
            let path = entry.path();
            fs::remove_file(&path).map_err(VolumeError::io("remove", &path))?;
        }
    }
    Ok(())
}

/// The file set currently visible in `target` through `..data`, or None when
/// there is none (yet) that this driver wrote.
pub(super) fn read_file_set(target: &Path) -> Result<Option<FileSet>, VolumeError> {
    let Some(dir_name) = current_data_dir(target)? else {
        return Ok(None);
    };
    let dir = target.join(dir_name);
    let mut files = Vec::new();
    if !collect(&dir, "", &mut files)? {
        // Something we did not write (a symlink, a device): not a set of
        // ours, so it will be replaced whole.
        return Ok(None);
    }
    Ok(Some(FileSet::new(files)))
}

/// Removes the `..data` layout's leftovers: timestamped directories other
/// than `keep` (from a crash between steps) and a stray temporary link.
fn remove_stale_dirs(target: &Path, keep: Option<&str>) -> Result<(), VolumeError> {
    for entry in fs::read_dir(target).map_err(VolumeError::io("list", target))? {
        let entry = entry.map_err(VolumeError::io("list", target))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name == DATA_LINK || Some(name) == keep || !name.starts_with("..") {
            continue;
        }
        let path = entry.path();
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        let removed = if is_dir {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        removed.map_err(VolumeError::io("remove", &path))?;
    }
    Ok(())
}

fn current_data_dir(target: &Path) -> Result<Option<String>, VolumeError> {
    let link = target.join(DATA_LINK);
    match fs::read_link(&link) {
        Ok(dest) => {
            let name = dest.to_str().unwrap_or_default();
            // Only a plain hidden name inside the target is ours.
            if name.starts_with("..") && !name.contains('/') && name != DATA_LINK {
                Ok(Some(name.to_owned()))
            } else {
                Err(VolumeError::Unsafe {
                    path: link,
                    reason: "..data points outside the volume",
                })
            }
        }
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(VolumeError::io("read symlink", &link)(e)),
    }
}

fn new_dir_name() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "..{}.{:09}.{}",
        now.as_secs(),
        now.subsec_nanos(),
        std::process::id()
    )
}

fn write_files(dir: &Path, set: &FileSet) -> Result<(), VolumeError> {
    for file in set.files() {
        let path = dir.join(file.path.as_str());
        if let Some(parent) = path.parent()
            && parent != dir
        {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(parent)
                .map_err(VolumeError::io("create directory", parent))?;
        }
        // O_EXCL|O_NOFOLLOW: only ever a new regular file of our own.
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(file.mode)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&path)
            .map_err(VolumeError::io("create", &path))?;
        f.write_all(file.bytes.expose())
            .map_err(VolumeError::io("write", &path))?;
        // The process umask may have cleared bits of the requested mode.
        f.set_permissions(fs::Permissions::from_mode(file.mode))
            .map_err(VolumeError::io("chmod", &path))?;
    }
    Ok(())
}

/// Collects regular files below `dir`; false when anything else is found.
fn collect(dir: &Path, prefix: &str, out: &mut Vec<FileEntry>) -> Result<bool, VolumeError> {
    let mut entries: BTreeMap<String, fs::DirEntry> = BTreeMap::new();
    for entry in fs::read_dir(dir).map_err(VolumeError::io("list", dir))? {
        let entry = entry.map_err(VolumeError::io("list", dir))?;
        let Ok(name) = entry.file_name().into_string() else {
            return Ok(false);
        };
        entries.insert(name, entry);
    }
    for (name, entry) in entries {
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let kind = entry
            .file_type()
            .map_err(VolumeError::io("inspect", entry.path()))?;
        if kind.is_dir() {
            if !collect(&entry.path(), &rel, out)? {
                return Ok(false);
            }
        } else if kind.is_file() {
            let Ok(path) = FilePath::parse(&rel) else {
                return Ok(false);
            };
            let meta = entry
                .metadata()
                .map_err(VolumeError::io("inspect", entry.path()))?;
            let bytes = fs::read(entry.path()).map_err(VolumeError::io("read", entry.path()))?;
            out.push(FileEntry {
                path,
                mode: meta.permissions().mode() & 0o7777,
                bytes: SecretBytes::new(bytes),
            });
        } else {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(files: &[(&str, u32, &str)]) -> FileSet {
        FileSet::new(
            files
                .iter()
                .map(|(p, m, b)| FileEntry {
                    path: FilePath::parse(p).unwrap(),
                    mode: *m,
                    bytes: SecretBytes::from(*b),
                })
                .collect(),
        )
    }

    fn hidden_dirs(target: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(target)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with("..") && n != DATA_LINK)
            .collect();
        v.sort();
        v
    }

    #[test]
    fn first_write_creates_the_kubelet_layout() {
        let dir = tempfile::tempdir().unwrap();
        let s = set(&[("a", 0o644, "1"), ("sub/b", 0o400, "2")]);
        assert_eq!(
            write_file_set(dir.path(), &s).unwrap(),
            WriteOutcome::Swapped
        );
        assert_eq!(fs::read_to_string(dir.path().join("a")).unwrap(), "1");
        assert_eq!(fs::read_to_string(dir.path().join("sub/b")).unwrap(), "2");
        assert_eq!(
            fs::read_link(dir.path().join("a")).unwrap(),
            Path::new("..data/a")
        );
        assert_eq!(
            fs::read_link(dir.path().join("sub")).unwrap(),
            Path::new("..data/sub")
        );
        let meta = fs::metadata(dir.path().join("sub/b")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, 0o400);
        assert_eq!(hidden_dirs(dir.path()).len(), 1);
        assert_eq!(read_file_set(dir.path()).unwrap().unwrap(), s);
    }

    #[test]
    fn equal_content_is_not_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let s = set(&[("a", 0o644, "1")]);
        write_file_set(dir.path(), &s).unwrap();
        let before = hidden_dirs(dir.path());
        assert_eq!(
            write_file_set(dir.path(), &s).unwrap(),
            WriteOutcome::Unchanged
        );
        assert_eq!(hidden_dirs(dir.path()), before);
    }

    #[test]
    fn a_mode_change_alone_swaps() {
        let dir = tempfile::tempdir().unwrap();
        write_file_set(dir.path(), &set(&[("a", 0o644, "1")])).unwrap();
        assert_eq!(
            write_file_set(dir.path(), &set(&[("a", 0o600, "1")])).unwrap(),
            WriteOutcome::Swapped
        );
    }

    #[test]
    fn a_new_set_replaces_the_old_and_drops_removed_names() {
        let dir = tempfile::tempdir().unwrap();
        write_file_set(dir.path(), &set(&[("a", 0o644, "1"), ("gone", 0o644, "x")])).unwrap();
        let first = hidden_dirs(dir.path());
        write_file_set(dir.path(), &set(&[("a", 0o644, "2"), ("new", 0o644, "3")])).unwrap();
        assert_eq!(fs::read_to_string(dir.path().join("a")).unwrap(), "2");
        assert_eq!(fs::read_to_string(dir.path().join("new")).unwrap(), "3");
        assert!(fs::symlink_metadata(dir.path().join("gone")).is_err());
        let second = hidden_dirs(dir.path());
        assert_eq!(second.len(), 1);
        assert_ne!(first, second);
    }

    #[test]
    fn leftovers_of_an_interrupted_write_are_cleaned() {
        let dir = tempfile::tempdir().unwrap();
        let s = set(&[("a", 0o644, "1")]);
        write_file_set(dir.path(), &s).unwrap();
        fs::create_dir(dir.path().join("..1.000000001.1")).unwrap();
        std::os::unix::fs::symlink("..nowhere", dir.path().join(DATA_LINK_TMP)).unwrap();
        assert_eq!(
            write_file_set(dir.path(), &s).unwrap(),
            WriteOutcome::Unchanged
        );
        assert_eq!(hidden_dirs(dir.path()).len(), 1);
    }

    #[test]
    fn a_write_interrupted_after_the_swap_is_repaired() {
        let dir = tempfile::tempdir().unwrap();
        write_file_set(dir.path(), &set(&[("a", 0o644, "1")])).unwrap();
        let new = set(&[("a", 0o644, "2"), ("b", 0o644, "3")]);
        // Killed right after the swap: no link for "b", the old dir remains.
        let old = current_data_dir(dir.path()).unwrap().unwrap();
        swap_in(dir.path(), &new).unwrap();
        assert!(fs::symlink_metadata(dir.path().join("b")).is_err());
        assert!(dir.path().join(&old).exists());
        tidy(dir.path()).unwrap();
        assert_eq!(fs::read_to_string(dir.path().join("b")).unwrap(), "3");
        assert!(!dir.path().join(&old).exists());
        assert_eq!(hidden_dirs(dir.path()).len(), 1);
        assert_eq!(
            write_file_set(dir.path(), &new).unwrap(),
            WriteOutcome::Unchanged
        );
    }

    #[test]
    fn a_data_link_pointing_outside_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/etc", dir.path().join(DATA_LINK)).unwrap();
        let e = write_file_set(dir.path(), &set(&[("a", 0o644, "1")])).unwrap_err();
        assert!(matches!(e, VolumeError::Unsafe { .. }), "{e}");
    }

    #[test]
    fn a_foreign_entry_in_the_way_is_refused_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("a"), "theirs").unwrap();
        let e = write_file_set(dir.path(), &set(&[("a", 0o644, "1")])).unwrap_err();
        assert!(matches!(e, VolumeError::Unsafe { .. }), "{e}");
        assert_eq!(fs::read_to_string(dir.path().join("a")).unwrap(), "theirs");
        // Refused before anything was swapped in.
        assert!(fs::symlink_metadata(dir.path().join(DATA_LINK)).is_err());
        assert!(hidden_dirs(dir.path()).is_empty());
    }
}
