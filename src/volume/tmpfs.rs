//! The tmpfs mount itself. Mounting needs CAP_SYS_ADMIN (root on the node).

use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};

use super::{VolumeError, mountinfo};

/// How each volume's tmpfs is mounted.
#[derive(Debug, Clone)]
pub struct TmpfsOptions {
    /// Size cap in bytes: a class cannot fill the node's memory.
    pub size_bytes: u64,
    /// Mode of the volume's root directory.
    pub mode: u32,
}

impl Default for TmpfsOptions {
    fn default() -> Self {
        TmpfsOptions {
            size_bytes: 16 * 1024 * 1024,
            mode: 0o755,
        }
    }
}

/// Is `path` itself a mount point (of any file system)? Reads
/// /proc/self/mountinfo, so it is right whatever directory mtimes say. A
/// symlink is never one: a link planted at a target must not make another
/// volume's mount look like this target's.
pub fn is_mount_point(path: &Path) -> Result<bool, VolumeError> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => return Ok(false),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(VolumeError::io("inspect", path)(e)),
        Ok(_) => {}
    }
    let canonical = match std::fs::canonicalize(path) {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(VolumeError::io("resolve", path)(e)),
    };
    let text = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(VolumeError::io("read", "/proc/self/mountinfo"))?;
    Ok(mountinfo::parse_mountinfo(&text)
        .iter()
        .any(|m| m.mount_point == canonical))
}

/// Mounts a fresh tmpfs at `target` (which must exist), `nosuid,nodev,noexec`.
pub fn mount_tmpfs(target: &Path, options: &TmpfsOptions) -> Result<(), VolumeError> {
    let data = format!("size={},mode={:o}", options.size_bytes, options.mode);
    nix::mount::mount(
        Some("tmpfs"),
        target,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some(data.as_str()),
    )
    .map_err(|source| VolumeError::Mount {
        path: target.to_path_buf(),
        source,
    })
}

/// Unmounts `target`, never through a symlink; a busy mount is detached so
/// that teardown always ends.
pub fn unmount(target: &Path) -> Result<(), VolumeError> {
    let err = |source| VolumeError::Unmount {
        path: PathBuf::from(target),
        source,
    };
    match nix::mount::umount2(target, MntFlags::UMOUNT_NOFOLLOW) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EBUSY) => {
            nix::mount::umount2(target, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW)
                .map_err(err)
        }
        Err(e) => Err(err(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_symlink_to_a_mount_point_is_not_one() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink("/", &link).unwrap();
        assert!(is_mount_point(Path::new("/")).unwrap());
        assert!(!is_mount_point(&link).unwrap());
        assert!(!is_mount_point(&dir.path().join("absent")).unwrap());
    }
}
