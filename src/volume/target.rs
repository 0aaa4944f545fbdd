//! A volume's target directory, resolved once below a trusted root
//! (kubelet's directory) without following any symlink. Every later step
//! (mount, write, read, unmount) goes through the handle, never through the
//! path string again: a directory swapped for a symlink after the check
//! cannot send a mount or a file anywhere else.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use pathrs::Root;
use pathrs::error::ErrorKind;
use pathrs::flags::ResolverFlags;
use rustix::fs::{Mode, OFlags};

use super::mountinfo::find_mount;
use super::{MountEntry, VolumeError};

/// The source name of every tmpfs this driver mounts (the first column of
/// `mount`'s output): with the type and the options, how the driver tells
/// its own mounts from anyone else's.
pub const MOUNT_SOURCE: &str = "aws-secrets-csi";

/// An open handle on a target directory (or on the root of the tmpfs
/// mounted there).
#[derive(Debug)]
pub struct Target {
    /// The path as the request named it: for messages only.
    path: PathBuf,
    fd: OwnedFd,
}

/// What is mounted at a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mounted {
    /// Nothing: a plain directory.
    No,
    /// A tmpfs this driver mounted (its source name, tmpfs, nosuid, nodev,
    /// noexec).
    Ours,
    /// Someone else's file system: never written into, never unmounted.
    Foreign { fs_type: String, source: String },
}

impl Target {
    /// Opens `target`, which must lie below `root`; no component below the
    /// root may be a symlink, the target included. None when it does not
    /// exist (or a directory above it does not).
    pub fn open(root: &Path, target: &Path) -> Result<Option<Target>, VolumeError> {
        let Some(parent) = Self::parent(root, target)? else {
            return Ok(None);
        };
        Self::open_in(&parent, target)
    }

    /// Opens `target`, creating it (mode 0750) when missing; true when it
    /// was created here. Its parent must exist (kubelet creates it).
    pub fn create(root: &Path, target: &Path) -> Result<(Target, bool), VolumeError> {
        let parent = Self::parent(root, target)?.ok_or_else(|| {
            VolumeError::io("open the directory above", target)(io::ErrorKind::NotFound.into())
        })?;
        let name = file_name(target)?;
        let created = match rustix::fs::mkdirat(&parent, name, Mode::from_raw_mode(0o750)) {
            Ok(()) => true,
            Err(rustix::io::Errno::EXIST) => false,
            Err(e) => return Err(VolumeError::io("create directory", target)(e.into())),
        };
        let opened = Self::open_in(&parent, target)?
            .ok_or_else(|| VolumeError::io("open", target)(io::ErrorKind::NotFound.into()))?;
        Ok((opened, created))
    }

    /// The path to hand to path-based calls: the kernel resolves it to this
    /// very directory, whatever happens to the path meanwhile.
    pub fn via(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))
    }

    /// The path the request named, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn from_fd(path: &Path, fd: OwnedFd) -> Target {
        Target {
            path: path.to_path_buf(),
            fd,
        }
    }

    pub(super) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// What is mounted here: the mount whose root this directory is.
    pub fn mounted(&self) -> Result<Mounted, VolumeError> {
        let unique = unique_mount(self.fd.as_fd());
        if let Some(UniqueMount { id, is_root: true }) = unique
            && known_ours::contains(id)
            && self.still_tmpfs_nosuid_nodev_noexec()?
        {
            return Ok(Mounted::Ours);
        }
        Ok(match self.mount()? {
            None => Mounted::No,
            Some(m) if is_ours(&m) => {
                if let Some(UniqueMount { id, .. }) = unique {
                    known_ours::insert(id);
                }
                Mounted::Ours
            }
            Some(m) => Mounted::Foreign {
                fs_type: m.fs_type,
                source: m.source,
            },
        })
    }

    /// For a mount already found ours in mountinfo: it is still a tmpfs,
    /// still nosuid, nodev, noexec (a remount could change the flags, never
    /// the source name).
    fn still_tmpfs_nosuid_nodev_noexec(&self) -> Result<bool, VolumeError> {
        const TMPFS_MAGIC: u64 = 0x0102_1994;
        const NOSUID_NODEV_NOEXEC: u64 = 0x2 | 0x4 | 0x8;
        let fs = rustix::fs::fstatfs(&self.fd)
            .map_err(|e| VolumeError::io("inspect", &self.path)(e.into()))?;
        #[allow(clippy::unnecessary_cast)] // the field types differ by architecture
        let (f_type, f_flags) = (fs.f_type as u64, fs.f_flags as u64);
        Ok(f_type == TMPFS_MAGIC && f_flags & NOSUID_NODEV_NOEXEC == NOSUID_NODEV_NOEXEC)
    }

    /// The mount whose root this directory is, if it is one. Found by mount
    /// id (the directory's and its parent's differ only at a mount's root),
    /// so no path is compared and no link followed.
    fn mount(&self) -> Result<Option<MountEntry>, VolumeError> {
        let here = mount_id(self.fd.as_fd()).map_err(VolumeError::io("inspect", &self.path))?;
        let parent = rustix::fs::openat(
            &self.fd,
            "..",
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| VolumeError::io("open the directory above", &self.path)(e.into()))?;
        let above = mount_id(parent.as_fd()).map_err(VolumeError::io("inspect", &self.path))?;
        if here == above {
            return Ok(None);
        }
        let text = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(VolumeError::io("read", "/proc/self/mountinfo"))?;
        Ok(find_mount(&text, here))
    }

    /// True when the directory holds no entry at all.
    pub fn is_empty(&self) -> Result<bool, VolumeError> {
        let mut entries =
            std::fs::read_dir(self.via()).map_err(VolumeError::io("read", &self.path))?;
        Ok(entries.next().is_none())
    }

    /// The directory above `target`, resolved below `root` without links.
    fn parent(root: &Path, target: &Path) -> Result<Option<Directory>, VolumeError> {
        let rel = target.strip_prefix(root).map_err(|_| VolumeError::Unsafe {
            path: target.to_path_buf(),
            reason: "the target is not below the driver's root directory",
        })?;
        if !rel.components().all(|c| matches!(c, Component::Normal(_)))
            || rel.as_os_str().is_empty()
        {
            return Err(VolumeError::Unsafe {
                path: target.to_path_buf(),
                reason: "the target path has '.', '..' or empty components",
            });
        }
        let root_dir = Root::open(root)
            .map_err(|e| resolve_error(root, e))?
            .with_resolver_flags(ResolverFlags::NO_SYMLINKS);
        let above = rel.parent().unwrap_or(Path::new(""));
        if above.as_os_str().is_empty() {
            let fd: OwnedFd = root_dir.into();
            return Ok(Some(Directory(fd)));
        }
        match root_dir.resolve(above) {
            Ok(handle) => Ok(Some(Directory(handle.into()))),
            Err(e)
                if e.kind()
                    == ErrorKind::OsError(Some(rustix::io::Errno::NOENT.raw_os_error())) =>
            {
                Ok(None)
            }
            Err(e) => Err(resolve_error(target, e)),
        }
    }

    fn open_in(parent: &Directory, target: &Path) -> Result<Option<Target>, VolumeError> {
        let name = file_name(target)?;
        let fd = match rustix::fs::openat(
            parent,
            name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => return Ok(None),
            Err(e) => return Err(VolumeError::io("open", target)(e.into())),
        };
        let stat =
            rustix::fs::fstat(&fd).map_err(|e| VolumeError::io("inspect", target)(e.into()))?;
        let kind = rustix::fs::FileType::from_raw_mode(stat.st_mode);
        if kind != rustix::fs::FileType::Directory {
            return Err(VolumeError::Unsafe {
                path: target.to_path_buf(),
                reason: if kind == rustix::fs::FileType::Symlink {
                    "the target is a symlink, which is never followed"
                } else {
                    "the target is not a directory"
                },
            });
        }
        Ok(Some(Target {
            path: target.to_path_buf(),
            fd,
        }))
    }

    /// Removes the (empty) target directory itself; gone already is fine.
    pub fn remove_empty(root: &Path, target: &Path) -> Result<bool, VolumeError> {
        let Some(parent) = Self::parent(root, target)? else {
            return Ok(true);
        };
        match rustix::fs::unlinkat(&parent, file_name(target)?, rustix::fs::AtFlags::REMOVEDIR) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(true),
            Err(rustix::io::Errno::NOTEMPTY) | Err(rustix::io::Errno::EXIST) => Ok(false),
            Err(e) => Err(VolumeError::io("remove", target)(e.into())),
        }
    }

    /// Removes a non-directory entry at the target (a planted symlink).
    pub fn remove_link(root: &Path, target: &Path) -> Result<(), VolumeError> {
        let Some(parent) = Self::parent(root, target)? else {
            return Ok(());
        };
        match rustix::fs::unlinkat(&parent, file_name(target)?, rustix::fs::AtFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
            Err(e) => Err(VolumeError::io("remove", target)(e.into())),
        }
    }
}

/// A resolved directory above a target.
struct Directory(OwnedFd);

impl AsFd for Directory {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// Ours: a tmpfs with our source name, mounted nosuid, nodev, noexec.
fn is_ours(m: &MountEntry) -> bool {
    m.fs_type == "tmpfs"
        && m.source == MOUNT_SOURCE
        && ["nosuid", "nodev", "noexec"]
            .iter()
            .all(|o| m.has_option(o))
}

fn file_name(target: &Path) -> Result<&std::ffi::OsStr, VolumeError> {
    target.file_name().ok_or_else(|| VolumeError::Unsafe {
        path: target.to_path_buf(),
        reason: "the target path has no final name",
    })
}

fn resolve_error(path: &Path, e: pathrs::error::Error) -> VolumeError {
    let errno = |n: rustix::io::Errno| ErrorKind::OsError(Some(n.raw_os_error()));
    match e.kind() {
        k if k == errno(rustix::io::Errno::LOOP) || k == errno(rustix::io::Errno::XDEV) => {
            VolumeError::Unsafe {
                path: path.to_path_buf(),
                reason: "a directory in the path is a symlink, which is never followed",
            }
        }
        k if k == errno(rustix::io::Errno::NOTDIR) => VolumeError::Unsafe {
            path: path.to_path_buf(),
            reason: "something in the path is not a directory",
        },
        ErrorKind::SafetyViolation => VolumeError::Unsafe {
            path: path.to_path_buf(),
            reason: "the path changed while it was resolved",
        },
        ErrorKind::OsError(Some(n)) => {
            VolumeError::io("resolve", path)(io::Error::from_raw_os_error(n))
        }
        _ => VolumeError::io("resolve", path)(io::Error::other(e.to_string())),
    }
}

/// Mounts already found ours in `/proc/self/mountinfo`, by unique mount id
/// (`STATX_MNT_ID_UNIQUE`, Linux 6.8+: never reused until the machine
/// reboots, unlike the ids mountinfo shows). The kernel formats a line per
/// mount on the node for every read of mountinfo: that was two thirds of the
/// driver's CPU in republish waves, so each mount is read there once.
mod known_ours {
    use std::collections::BTreeSet;
    use std::sync::Mutex;

    /// Ids of unmounted mounts stay until the set is full; then it starts
    /// over (a miss costs one mountinfo read).
    const BOUND: usize = 4096;

    static IDS: Mutex<BTreeSet<u64>> = Mutex::new(BTreeSet::new());

    pub(super) fn contains(id: u64) -> bool {
        IDS.lock().unwrap_or_else(|e| e.into_inner()).contains(&id)
    }

    pub(super) fn insert(id: u64) {
        let mut ids = IDS.lock().unwrap_or_else(|e| e.into_inner());
        if ids.len() >= BOUND {
            ids.clear();
        }
        ids.insert(id);
    }
}

/// `STATX_MNT_ID_UNIQUE`, not yet named by rustix.
const STATX_MNT_ID_UNIQUE: u32 = 0x4000;

/// The mount an open file lies on, by unique id, and whether the file is
/// that mount's root: one `statx`.
struct UniqueMount {
    id: u64,
    is_root: bool,
}

/// None on kernels before 6.8 (no unique mount ids).
fn unique_mount(fd: BorrowedFd<'_>) -> Option<UniqueMount> {
    use rustix::fs::StatxAttributes;
    let mask = rustix::fs::StatxFlags::from_bits_retain(STATX_MNT_ID_UNIQUE);
    let st = rustix::fs::statx(fd, "", rustix::fs::AtFlags::EMPTY_PATH, mask).ok()?;
    (st.stx_mask & STATX_MNT_ID_UNIQUE != 0
        && st.stx_attributes_mask.contains(StatxAttributes::MOUNT_ROOT))
    .then(|| UniqueMount {
        id: st.stx_mnt_id,
        is_root: st.stx_attributes.contains(StatxAttributes::MOUNT_ROOT),
    })
}

/// The mount id of an open file (`mnt_id` in /proc/self/fdinfo).
fn mount_id(fd: BorrowedFd<'_>) -> io::Result<u64> {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd()))?;
    info.lines()
        .find_map(|l| l.strip_prefix("mnt_id:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| io::Error::other("no mnt_id in /proc/self/fdinfo"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_symlink_anywhere_below_the_root_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("real/sub")).unwrap();
        std::os::unix::fs::symlink(root.join("real"), root.join("link")).unwrap();
        std::os::unix::fs::symlink(root.join("real/sub"), root.join("real/target-link")).unwrap();
        let e = Target::open(root, &root.join("link/sub")).unwrap_err();
        assert!(e.to_string().contains("symlink"), "{e}");
        let e = Target::open(root, &root.join("real/target-link")).unwrap_err();
        assert!(e.to_string().contains("symlink"), "{e}");
        assert!(Target::create(root, &root.join("link/new")).is_err());
        assert!(
            !root.join("real/new").exists(),
            "nothing created through the link"
        );
        let t = Target::open(root, &root.join("real/sub")).unwrap().unwrap();
        assert_eq!(t.mounted().unwrap(), Mounted::No);
        assert!(t.is_empty().unwrap());
        assert!(
            Target::open(root, &root.join("real/absent"))
                .unwrap()
                .is_none()
        );
        assert!(
            Target::open(root, &root.join("absent/x"))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn targets_outside_the_root_or_climbing_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Target::open(dir.path(), Path::new("/etc/x")).is_err());
        assert!(Target::open(dir.path(), &dir.path().join("a/../b")).is_err());
    }

    #[test]
    fn create_says_whether_it_created() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("t");
        let (_, created) = Target::create(dir.path(), &target).unwrap();
        assert!(created);
        let (t, created) = Target::create(dir.path(), &target).unwrap();
        assert!(!created);
        std::fs::write(t.via().join("f"), "x").unwrap();
        assert_eq!(std::fs::read_to_string(target.join("f")).unwrap(), "x");
        assert!(!Target::remove_empty(dir.path(), &target).unwrap());
        std::fs::remove_file(target.join("f")).unwrap();
        assert!(Target::remove_empty(dir.path(), &target).unwrap());
        assert!(!target.exists());
    }

    #[test]
    fn the_root_file_system_is_not_ours() {
        let t = Target::open(Path::new("/"), Path::new("/proc"))
            .unwrap()
            .unwrap();
        assert!(
            matches!(t.mounted().unwrap(), Mounted::Foreign { fs_type, .. } if fs_type == "proc")
        );
    }
}
