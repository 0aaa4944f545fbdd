//! A volume's whole life on disk: create and fill it in one step that leaves
//! nothing behind on failure, and tear it down.

use std::fs;
use std::io::ErrorKind;
use std::path::Path;

use super::{TmpfsOptions, VolumeError, is_mount_point, mount_tmpfs, unmount, write_file_set};
use crate::render::FileSet;

/// Creates `target` (kubelet creates only its parent), mounts a tmpfs there
/// unless `tmpfs` is None, and writes `set`. On any failure, undoes what it
/// did: unmounts, and removes the directory if it created it.
pub fn populate(
    target: &Path,
    set: &FileSet,
    tmpfs: Option<&TmpfsOptions>,
) -> Result<(), VolumeError> {
    no_symlinks_above(target)?;
    let created = match fs::DirBuilder::new().create(target) {
        Ok(()) => true,
        Err(e) if e.kind() == ErrorKind::AlreadyExists => false,
        Err(e) => return Err(VolumeError::io("create directory", target)(e)),
    };
    let meta = fs::symlink_metadata(target).map_err(VolumeError::io("inspect", target))?;
    if !meta.is_dir() {
        return Err(VolumeError::Unsafe {
            path: target.to_path_buf(),
            reason: "the target is not a directory (a symlink or a file is refused)",
        });
    }
    // Neither kubelet nor this driver leaves files in an unmounted target:
    // whatever is there belongs to someone else, and stays untouched.
    if !created
        && fs::read_dir(target)
            .map_err(VolumeError::io("read", target))?
            .next()
            .is_some()
    {
        return Err(VolumeError::Unsafe {
            path: target.to_path_buf(),
            reason: "the target directory is not empty and not a mount (files of someone else are not mounted over)",
        });
    }
    let mut mounted = false;
    let result = (|| {
        if let Some(options) = tmpfs {
            mount_tmpfs(target, options)?;
            mounted = true;
        }
        write_file_set(target, set).map(|_| ())
    })();
    if let Err(e) = result {
        if mounted && let Err(u) = unmount(target) {
            tracing::error!(target = %target.display(), error = %u, "cannot undo the mount of a failed publish");
        }
        if created {
            let _ = fs::remove_dir_all(target);
        }
        return Err(e);
    }
    Ok(())
}

/// Unmounts `target` (every mount stacked there) and removes it. Succeeds
/// when it is already gone. Files left below the unmounted target are not
/// ours (ours live in the tmpfs): they are kept, with a warning.
pub fn teardown(target: &Path) -> Result<(), VolumeError> {
    match target.parent().map(fs::symlink_metadata) {
        // Nothing left to tear down.
        Some(Err(e)) if e.kind() == ErrorKind::NotFound => return Ok(()),
        _ => no_symlinks_above(target)?,
    }
    // A bounded loop: a mount stacked by an older driver is removed too.
    for _ in 0..8 {
        if !is_mount_point(target)? {
            break;
        }
        unmount(target)?;
    }
    match fs::symlink_metadata(target) {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(VolumeError::io("inspect", target)(e)),
        Ok(m) if m.is_dir() => match fs::remove_dir(target) {
            Err(e) if e.kind() == ErrorKind::DirectoryNotEmpty => {
                tracing::warn!(target = %target.display(), "unmounted; the directory holds files this driver did not write, so it is left in place");
                Ok(())
            }
            other => other.map_err(VolumeError::io("remove", target)),
        },
        Ok(_) => fs::remove_file(target).map_err(VolumeError::io("remove", target)),
    }
}

/// The directories above `target` must be what they say: a symlink planted
/// in the path would send a mount or a removal elsewhere.
fn no_symlinks_above(target: &Path) -> Result<(), VolumeError> {
    let Some(parent) = target.parent() else {
        return Ok(());
    };
    let real = fs::canonicalize(parent).map_err(VolumeError::io("resolve", parent))?;
    if real != parent {
        return Err(VolumeError::Unsafe {
            path: target.to_path_buf(),
            reason: "a directory in the path is a symlink",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_symlink_in_the_path_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = dir.path().join("elsewhere");
        fs::create_dir(&elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, dir.path().join("link")).unwrap();
        let target = dir.path().join("link/mount");
        let e = populate(&target, &FileSet::default(), None).unwrap_err();
        assert!(matches!(e, VolumeError::Unsafe { .. }), "{e}");
        assert!(!elsewhere.join("mount").exists());
        fs::create_dir(elsewhere.join("mount")).unwrap();
        assert!(matches!(teardown(&target), Err(VolumeError::Unsafe { .. })));
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
        let e = populate(&target, &FileSet::default(), None).unwrap_err();
        assert!(e.to_string().contains("not empty"), "{e}");
        assert_eq!(
            fs::read_to_string(target.join("theirs")).unwrap(),
            "keep me"
        );
        // An unpublish of it unmounts nothing and removes nothing foreign.
        teardown(&target).unwrap();
        assert_eq!(
            fs::read_to_string(target.join("theirs")).unwrap(),
            "keep me"
        );
        // An empty target (kubelet may create it) is fine.
        let empty = dir.path().join("empty");
        fs::create_dir(&empty).unwrap();
        populate(&empty, &FileSet::default(), None).unwrap();
        assert!(empty.join("..data").exists());
    }

    #[test]
    fn teardown_of_a_missing_target_is_fine() {
        let dir = tempfile::tempdir().unwrap();
        assert!(teardown(&dir.path().join("gone/mount")).is_ok());
        assert!(teardown(&dir.path().join("mount")).is_ok());
    }
}
