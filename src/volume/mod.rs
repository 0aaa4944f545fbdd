//! Step "volume": the tmpfs at a pod's target path and the atomic swap of its
//! whole [`FileSet`](crate::render::FileSet), kubelet style.

mod lifecycle;
mod mountinfo;
mod tmpfs;
mod writer;

use std::io;
use std::path::PathBuf;

pub use lifecycle::{populate, teardown};
pub use mountinfo::{MountEntry, parse_mountinfo};
pub use tmpfs::{TmpfsOptions, is_mount_point, mount_tmpfs, unmount};
pub use writer::{DATA_LINK, WriteOutcome, read_file_set, tidy, write_file_set};

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
}

impl VolumeError {
    /// True when the volume ran out of space (tmpfs size cap or inodes).
    pub fn is_no_space(&self) -> bool {
        match self {
            VolumeError::Io { source, .. } => source.raw_os_error() == Some(libc_enospc()),
            _ => false,
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
