//! The tmpfs mount itself, made with the new mount API onto an open handle
//! of the target (never onto a path), so the file system lands exactly on
//! the directory that was checked, and the handle it gives back is its root.
//! Mounting needs CAP_SYS_ADMIN (root on the node).

use rustix::mount::{
    FsMountFlags, FsOpenFlags, MountAttrFlags, MoveMountFlags, UnmountFlags, fsconfig_create,
    fsconfig_set_string, fsmount, fsopen, move_mount,
};

use super::VolumeError;
use super::target::{MOUNT_SOURCE, Target};

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

/// Mounts a fresh tmpfs (`nosuid,nodev,noexec`, source
/// [`MOUNT_SOURCE`]) on `target`; returns the handle of its root.
pub fn mount_tmpfs(target: &Target, options: &TmpfsOptions) -> Result<Target, VolumeError> {
    let fail = |e: rustix::io::Errno| VolumeError::Mount {
        path: target.path().to_path_buf(),
        source: nix::errno::Errno::from_raw(e.raw_os_error()),
    };
    let fs = fsopen("tmpfs", FsOpenFlags::FSOPEN_CLOEXEC).map_err(fail)?;
    fsconfig_set_string(&fs, "source", MOUNT_SOURCE).map_err(fail)?;
    fsconfig_set_string(&fs, "size", options.size_bytes.to_string()).map_err(fail)?;
    fsconfig_set_string(&fs, "mode", format!("{:o}", options.mode)).map_err(fail)?;
    fsconfig_create(&fs).map_err(fail)?;
    let root = fsmount(
        &fs,
        FsMountFlags::FSMOUNT_CLOEXEC,
        MountAttrFlags::MOUNT_ATTR_NOSUID
            | MountAttrFlags::MOUNT_ATTR_NODEV
            | MountAttrFlags::MOUNT_ATTR_NOEXEC,
    )
    .map_err(fail)?;
    move_mount(
        &root,
        "",
        target.fd(),
        "",
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
    )
    .map_err(fail)?;
    Ok(Target::from_fd(target.path(), root))
}

/// Unmounts the mount whose root `target` is, through its handle; a busy
/// mount is detached so that teardown always ends.
pub fn unmount(target: &Target) -> Result<(), VolumeError> {
    let err = |e: rustix::io::Errno| VolumeError::Unmount {
        path: target.path().to_path_buf(),
        source: nix::errno::Errno::from_raw(e.raw_os_error()),
    };
    match rustix::mount::unmount(target.via(), UnmountFlags::empty()) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::BUSY) => {
            rustix::mount::unmount(target.via(), UnmountFlags::DETACH).map_err(err)
        }
        Err(e) => Err(err(e)),
    }
}
