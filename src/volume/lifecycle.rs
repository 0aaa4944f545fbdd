//! A volume's whole life on disk: create and fill it in one step that leaves
//! nothing behind on failure, refresh it, and tear it down. Every function
//! resolves the target once below `root` (kubelet's directory) without
//! following links, acts only on a tmpfs this driver mounted, and works
//! through the handle.

use std::path::Path;

use super::target::{Mounted, Target};
use super::{TmpfsOptions, VolumeError, WriteOutcome, mount_tmpfs, unmount, writer};
use crate::render::FileSet;

/// What is mounted at `target` (nothing when it does not exist).
pub fn mounted(root: &Path, target: &Path) -> Result<Mounted, VolumeError> {
    match Target::open(root, target)? {
        Some(t) => t.mounted(),
        None => Ok(Mounted::No),
    }
}

/// Creates `target` (kubelet creates only its parent), mounts a tmpfs there
/// unless `tmpfs` is None, and writes `set`. On any failure, undoes what it
/// did: unmounts, and removes the directory if it created it.
pub fn populate(
    root: &Path,
    target: &Path,
    set: &FileSet,
    tmpfs: Option<&TmpfsOptions>,
) -> Result<(), VolumeError> {
    let (dir, created) = Target::create(root, target)?;
    if dir.mounted()? != Mounted::No {
        return Err(VolumeError::Unsafe {
            path: target.to_path_buf(),
            reason: "something is already mounted at the target",
        });
    }
    // Neither kubelet nor this driver leaves files in an unmounted target:
    // whatever is there belongs to someone else, and stays untouched.
    if !created && !dir.is_empty()? {
        return Err(VolumeError::Unsafe {
            path: target.to_path_buf(),
            reason: "the target directory is not empty and not a mount (files of someone else are not mounted over)",
        });
    }
    let mut mounted = None;
    let result = (|| {
        let into = match tmpfs {
            Some(options) => mounted.insert(mount_tmpfs(&dir, options)?).via(),
            None => dir.via(),
        };
        writer::write_file_set(&into, set)
            .map(|_| ())
            .map_err(|e| e.named(&into, target))
    })();
    if let Err(e) = result {
        if let Some(m) = &mounted
            && let Err(u) = unmount(m)
        {
            tracing::error!(target = %target.display(), error = %u, "cannot undo the mount of a failed publish");
        }
        if created {
            drop(dir);
            if tmpfs.is_none() {
                // Without a tmpfs the files were written into the directory.
                let _ = std::fs::remove_dir_all(target);
            }
            let _ = Target::remove_empty(root, target);
        }
        return Err(e);
    }
    Ok(())
}

/// The target, which must be a tmpfs this driver mounted (or, for
/// `Layout::Directory`, a plain directory).
fn open_volume(root: &Path, target: &Path, layout: Layout) -> Result<Target, VolumeError> {
    let t = Target::open(root, target)?.ok_or_else(|| VolumeError::Unsafe {
        path: target.to_path_buf(),
        reason: "the target does not exist",
    })?;
    match (t.mounted()?, layout) {
        (Mounted::Ours, Layout::Tmpfs) | (Mounted::No, Layout::Directory) => Ok(t),
        (Mounted::Foreign { fs_type, source }, _) => Err(VolumeError::Foreign {
            path: target.to_path_buf(),
            fs_type,
            mounted_from: source,
        }),
        (_, Layout::Tmpfs) => Err(VolumeError::Unsafe {
            path: target.to_path_buf(),
            reason: "the target is not a tmpfs this driver mounted",
        }),
        (_, Layout::Directory) => Err(VolumeError::Unsafe {
            path: target.to_path_buf(),
            reason: "the target is a mount, not a plain directory",
        }),
    }
}

/// Where a volume's files live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// In a tmpfs this driver mounted at the target (the node server).
    Tmpfs,
    /// In the target directory itself (`mount --no-tmpfs`).
    Directory,
}

/// Swaps `set` into a published volume (see [`writer::write_file_set`]).
pub fn write(
    root: &Path,
    target: &Path,
    layout: Layout,
    set: &FileSet,
) -> Result<WriteOutcome, VolumeError> {
    let t = open_volume(root, target, layout)?;
    writer::write_file_set(&t.via(), set).map_err(|e| e.named(&t.via(), target))
}

/// The file set a published volume shows now, if this driver wrote one.
pub fn read(root: &Path, target: &Path, layout: Layout) -> Result<Option<FileSet>, VolumeError> {
    let t = open_volume(root, target, layout)?;
    writer::read_file_set(&t.via()).map_err(|e| e.named(&t.via(), target))
}

/// What a published volume's files take in its tmpfs now (its used pages,
/// as the kernel counts and charges them).
pub fn held_bytes(root: &Path, target: &Path) -> Result<u64, VolumeError> {
    let t = open_volume(root, target, Layout::Tmpfs)?;
    let stat =
        rustix::fs::fstatvfs(t.fd()).map_err(|e| VolumeError::io("measure", target)(e.into()))?;
    Ok(stat.f_blocks.saturating_sub(stat.f_bfree) * stat.f_frsize)
}

/// Repairs a published volume after an interrupted write.
pub fn tidy(root: &Path, target: &Path) -> Result<(), VolumeError> {
    let t = open_volume(root, target, Layout::Tmpfs)?;
    writer::tidy(&t.via()).map_err(|e| e.named(&t.via(), target))
}

/// Unmounts this driver's tmpfs at `target` (every one stacked there) and
/// removes the directory. Succeeds when it is already gone. A file system
/// someone else mounted there is neither unmounted nor removed: an error
/// says so. Files left below an unmounted target are not ours (ours live in
/// the tmpfs): they are kept, with a warning; a symlink planted as the
/// target is removed, never followed.
pub fn teardown(root: &Path, target: &Path) -> Result<(), VolumeError> {
    // A bounded loop: a mount stacked by an earlier publish is removed too.
    for _ in 0..8 {
        let t = match Target::open(root, target) {
            Ok(Some(t)) => t,
            Ok(None) => return Ok(()),
            Err(VolumeError::Unsafe { reason, .. })
                if reason.starts_with("the target is a symlink") =>
            {
                return Target::remove_link(root, target);
            }
            Err(e) => return Err(e),
        };
        match t.mounted()? {
            Mounted::Ours => unmount(&t)?,
            Mounted::Foreign { fs_type, source } => {
                return Err(VolumeError::Foreign {
                    path: target.to_path_buf(),
                    fs_type,
                    mounted_from: source,
                });
            }
            Mounted::No => break,
        }
    }
    if !Target::remove_empty(root, target)? {
        tracing::warn!(target = %target.display(), "unmounted; the directory holds files this driver did not write, so it is left in place");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    #[test]
    fn a_symlink_in_the_path_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = dir.path().join("elsewhere");
        fs::create_dir(&elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, dir.path().join("link")).unwrap();
        let target = dir.path().join("link/mount");
        let e = populate(dir.path(), &target, &FileSet::default(), None).unwrap_err();
        assert!(matches!(e, VolumeError::Unsafe { .. }), "{e}");
        assert!(!elsewhere.join("mount").exists());
        fs::create_dir(elsewhere.join("mount")).unwrap();
        assert!(matches!(
            teardown(dir.path(), &target),
            Err(VolumeError::Unsafe { .. })
        ));
        assert!(
            elsewhere.join("mount").exists(),
            "nothing removed through the link"
        );
    }

    #[test]
    fn a_prefilled_target_is_refused_and_its_files_kept() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("mount");
        fs::create_dir(&target).unwrap();
        fs::write(target.join("theirs"), "keep me").unwrap();
        let e = populate(dir.path(), &target, &FileSet::default(), None).unwrap_err();
        assert!(e.to_string().contains("not empty"), "{e}");
        assert_eq!(
            fs::read_to_string(target.join("theirs")).unwrap(),
            "keep me"
        );
        // An unpublish of it unmounts nothing and removes nothing foreign.
        teardown(dir.path(), &target).unwrap();
        assert_eq!(
            fs::read_to_string(target.join("theirs")).unwrap(),
            "keep me"
        );
        // An empty target (kubelet may create it) is fine.
        let empty = dir.path().join("empty");
        fs::create_dir(&empty).unwrap();
        populate(dir.path(), &empty, &FileSet::default(), None).unwrap();
        assert!(empty.join("..data").exists());
        assert!(
            read(dir.path(), &empty, Layout::Directory)
                .unwrap()
                .is_some()
        );
        assert!(
            read(dir.path(), &empty, Layout::Tmpfs).is_err(),
            "not our mount"
        );
    }

    #[test]
    fn teardown_of_a_missing_target_is_fine() {
        let dir = tempfile::tempdir().unwrap();
        assert!(teardown(dir.path(), &dir.path().join("gone/mount")).is_ok());
        assert!(teardown(dir.path(), &dir.path().join("mount")).is_ok());
    }

    #[test]
    fn a_symlink_as_target_is_removed_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = dir.path().join("elsewhere");
        fs::create_dir(&elsewhere).unwrap();
        let target = dir.path().join("mount");
        std::os::unix::fs::symlink(&elsewhere, &target).unwrap();
        teardown(dir.path(), &target).unwrap();
        assert!(fs::symlink_metadata(&target).is_err());
        assert!(elsewhere.is_dir());
    }
}
