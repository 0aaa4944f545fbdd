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
/// when it is already gone.
pub fn teardown(target: &Path) -> Result<(), VolumeError> {
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
        Ok(m) if m.is_dir() => {
            fs::remove_dir_all(target).map_err(VolumeError::io("remove", target))
        }
        Ok(_) => fs::remove_file(target).map_err(VolumeError::io("remove", target)),
    }
}
