//! Step "volume": the tmpfs at a pod's target path and the atomic swap of its
//! whole [`FileSet`](crate::render::FileSet), kubelet style. Targets are
//! resolved once without following links and reached through that handle.

mod budget;
mod lifecycle;
mod mountinfo;
mod target;
mod tmpfs;
mod writer;

use std::io;
use std::path::PathBuf;

pub use budget::{Reservation, VolumeBudget, footprint};
pub use lifecycle::{Layout, held_bytes, mounted, populate, read, teardown, tidy, write};
pub use mountinfo::{MountEntry, parse_mountinfo};
pub use target::{MOUNT_SOURCE, Mounted, Target};
pub use tmpfs::{TmpfsOptions, mount_tmpfs, unmount};
pub use writer::{DATA_LINK, WriteOutcome};

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot mount tmpfs at {path}: {source}")]
    Mount { path: PathBuf, source: nix::Error },
    #[error("cannot unmount {path}: {source}")]
    Unmount { path: PathBuf, source: nix::Error },
    #[error("refusing to write into {path}: {reason}")]
    Unsafe { path: PathBuf, reason: &'static str },
    #[error(
        "{path} holds a file system this driver did not mount ({fs_type} from {mounted_from:?}); it is neither written into nor unmounted"
    )]
    Foreign {
        path: PathBuf,
        fs_type: String,
        mounted_from: String,
    },
    #[error(
        "volume {volume_id} needs {bytes} bytes; the node's volumes hold {held} of the {limit} bytes allowed (--max-node-volume-bytes)"
    )]
    OverBudget {
        volume_id: String,
        bytes: u64,
        held: u64,
        limit: u64,
    },
}

impl VolumeError {
    /// True when the volume ran out of space (tmpfs size cap or inodes), or
    /// the node's volumes out of their budget.
    pub fn is_no_space(&self) -> bool {
        match self {
            VolumeError::Io { source, .. } => source.raw_os_error() == Some(libc_enospc()),
            VolumeError::OverBudget { .. } => true,
            _ => false,
        }
    }

    /// The same error with paths below `via` (a handle's /proc path) shown
    /// below `path` (what the user named).
    pub(crate) fn named(self, via: &std::path::Path, path: &std::path::Path) -> Self {
        let rename = |p: PathBuf| match p.strip_prefix(via) {
            Ok(rest) if rest.as_os_str().is_empty() => path.to_path_buf(),
            Ok(rest) => path.join(rest),
            Err(_) => p,
        };
        match self {
            VolumeError::Io {
                action,
                path: p,
                source,
            } => VolumeError::Io {
                action,
                path: rename(p),
                source,
            },
            VolumeError::Unsafe { path: p, reason } => VolumeError::Unsafe {
                path: rename(p),
                reason,
            },
            other => other,
        }
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| VolumeError::Io {
            action,
            path,
            source,
        }
    }
}

fn libc_enospc() -> i32 {
    nix::errno::Errno::ENOSPC as i32
}
