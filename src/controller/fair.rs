//! Sync slots shared fairly between namespaces: at most `total` syncs run
//! at once, and at most `per_namespace` of them for one namespace. A tenant
//! with a thousand slow ExternalSecrets (a large `find`, an AWS that times
//! out) then holds a few slots and every other namespace keeps the rest:
//! its syncs wait behind their own namespace's, not behind that tenant's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub struct Slots {
    total: Arc<Semaphore>,
    per_namespace: usize,
    namespaces: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// A running sync's slot; released when dropped.
pub struct Slot {
    _total: OwnedSemaphorePermit,
    _namespace: OwnedSemaphorePermit,
}

impl Slots {
    pub fn new(total: usize, per_namespace: usize) -> Self {
        Slots {
            total: Arc::new(Semaphore::new(total.max(1))),
            per_namespace: per_namespace.clamp(1, total.max(1)),
            namespaces: Mutex::default(),
        }
    }

    /// Waits for a slot of `namespace`'s own, then for one of all (in the
    /// order asked): a namespace never queues more than its share for the
    /// shared slots.
    pub async fn take(&self, namespace: &str) -> Slot {
        let own = {
            let mut map = self.namespaces.lock().unwrap_or_else(|p| p.into_inner());
            // Forget namespaces with nothing running or waiting, so that
            // the map does not grow with every namespace ever seen.
            if map.len() > 1024 {
                map.retain(|_, s| Arc::strong_count(s) > 1);
            }
            map.entry(namespace.to_owned())
                .or_insert_with(|| Arc::new(Semaphore::new(self.per_namespace)))
                .clone()
        };
        let namespace = own.acquire_owned().await.expect("never closed");
        let total = self
            .total
            .clone()
            .acquire_owned()
            .await
            .expect("never closed");
        Slot {
            _total: total,
            _namespace: namespace,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn one_namespace_cannot_take_every_slot() {
        let slots = Arc::new(Slots::new(8, 2));
        // A tenant with 100 syncs that never finish.
        let mut held = Vec::new();
        for _ in 0..100 {
            let slots = slots.clone();
            held.push(tokio::spawn(async move {
                let _slot = slots.take("noisy").await;
                std::future::pending::<()>().await;
            }));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Another namespace still gets its slots at once.
        let mut quiet = Vec::new();
        for i in 0..2 {
            let got = tokio::time::timeout(Duration::from_secs(1), slots.take("quiet")).await;
            assert!(got.is_ok(), "slot {i} of the quiet namespace waited");
            quiet.push(got);
        }
        // And a third namespace too: the noisy one holds 2 of 8.
        assert!(
            tokio::time::timeout(Duration::from_secs(1), slots.take("third"))
                .await
                .is_ok()
        );
        for h in held {
            h.abort();
        }
    }
}
