//! The node's budget of bytes held in volumes. The kernel charges the pages
//! of a tmpfs to the memory cgroup of whoever wrote them: the driver. Left
//! unbounded, pods' volumes fill the driver's memory limit and the kernel
//! kills the driver (and a restarted driver, charged the same pages, cannot
//! start). So every byte a volume will hold is reserved here before it is
//! written, counted as tmpfs counts it (whole pages), and a swap counts the
//! new set while the old one is still there.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::VolumeError;
use crate::render::FileSet;

/// What `set` takes in a tmpfs: each file's bytes, rounded up to whole
/// pages (tmpfs allocates, and the kernel charges, by the page).
pub fn footprint(set: &FileSet) -> u64 {
    let page = rustix::param::page_size() as u64;
    set.files()
        .iter()
        .map(|f| (f.bytes.len() as u64).div_ceil(page) * page)
        .sum()
}

/// Bytes held by each volume, and bytes reserved by writes under way,
/// against one node-wide limit.
#[derive(Debug)]
pub struct VolumeBudget {
    limit: u64,
    state: Mutex<Held>,
}

#[derive(Debug, Default)]
struct Held {
    /// What each volume's files take now.
    volumes: HashMap<String, u64>,
    /// Settled plus reserved bytes, across volumes.
    total: u64,
}

impl VolumeBudget {
    pub fn new(limit: u64) -> Self {
        VolumeBudget {
            limit,
            state: Mutex::default(),
        }
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Bytes held and reserved now.
    pub fn held(&self) -> u64 {
        self.lock().total
    }

    /// Records what a volume holds now, as found on disk (at start, or
    /// read before a refresh); never refused: the bytes are there already.
    pub fn set(&self, volume_id: &str, bytes: u64) {
        let mut held = self.lock();
        let before = held.volumes.insert(volume_id.to_owned(), bytes);
        held.total = held.total - before.unwrap_or(0) + bytes;
    }

    /// Reserves `bytes` more for `volume_id` while they are written, on top
    /// of what the volume already holds; refused when the node's volumes
    /// would then hold more than the limit.
    pub fn reserve(
        self: &Arc<Self>,
        volume_id: &str,
        bytes: u64,
    ) -> Result<Reservation, VolumeError> {
        let mut held = self.lock();
        if held.total.saturating_add(bytes) > self.limit {
            return Err(VolumeError::OverBudget {
                volume_id: volume_id.to_owned(),
                bytes,
                held: held.total,
                limit: self.limit,
            });
        }
        held.total += bytes;
        Ok(Reservation {
            budget: self.clone(),
            volume_id: volume_id.to_owned(),
            bytes,
        })
    }

    /// Forgets a volume that is gone (unpublished).
    pub fn release(&self, volume_id: &str) {
        let mut held = self.lock();
        if let Some(bytes) = held.volumes.remove(volume_id) {
            held.total -= bytes;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Bytes reserved for a write under way; given back when dropped, unless
/// [`Reservation::settle`]d.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<VolumeBudget>,
    volume_id: String,
    bytes: u64,
}

impl Reservation {
    /// The write is done and the volume now holds `bytes` (the new set
    /// after a swap, the old one when nothing was swapped): what it held
    /// before and the reservation give way to that.
    pub fn settle(mut self, bytes: u64) {
        let reserved = std::mem::take(&mut self.bytes);
        let mut held = self.budget.lock();
        held.total -= reserved;
        let before = held.volumes.insert(self.volume_id.clone(), bytes);
        held.total = held.total - before.unwrap_or(0) + bytes;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.budget.lock().total -= self.bytes;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::FileEntry;
    use crate::secret::SecretBytes;
    use crate::spc::FilePath;

    fn set(sizes: &[usize]) -> FileSet {
        FileSet::new(
            sizes
                .iter()
                .enumerate()
                .map(|(i, n)| FileEntry {
                    path: FilePath::parse(&format!("f{i}")).unwrap(),
                    mode: 0o644,
                    bytes: SecretBytes::new(vec![b'x'; *n]),
                })
                .collect(),
        )
    }

    #[test]
    fn a_set_takes_whole_pages() {
        let page = rustix::param::page_size() as u64;
        assert_eq!(footprint(&set(&[])), 0);
        assert_eq!(footprint(&set(&[0, 1, page as usize])), 2 * page);
        assert_eq!(footprint(&set(&[1, page as usize + 1])), 3 * page);
    }

    #[test]
    fn reservations_are_refused_past_the_limit_and_given_back() {
        let budget = Arc::new(VolumeBudget::new(100));
        let a = budget.reserve("a", 60).unwrap();
        let e = budget.reserve("b", 41).unwrap_err();
        assert_eq!(
            e.to_string(),
            "volume b needs 41 bytes; the node's volumes hold 60 of the 100 bytes allowed (--max-node-volume-bytes)"
        );
        a.settle(60);
        assert_eq!(budget.held(), 60);
        // A failed write gives its reservation back.
        drop(budget.reserve("b", 40).unwrap());
        assert_eq!(budget.held(), 60);
        // A swap counts old and new while both are there, then the new.
        assert!(budget.reserve("a", 50).is_err(), "60 + 50 > 100");
        let swap = budget.reserve("a", 30).unwrap();
        assert_eq!(budget.held(), 90);
        swap.settle(30);
        assert_eq!(budget.held(), 30);
        // A volume found on disk is counted, and released when gone.
        budget.set("c", 50);
        budget.set("c", 20);
        assert_eq!(budget.held(), 50);
        budget.release("a");
        budget.release("a");
        budget.release("c");
        assert_eq!(budget.held(), 0);
    }
}
