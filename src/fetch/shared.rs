//! Values shared across the pods of a node, so AWS calls grow with the
//! distinct (identity, object) pairs on the node, not with pods:
//!
//! - a request for an object that is already being fetched for the same
//!   identity key and region waits for that call instead of making another;
//! - requests that arrive within a short window are sent together, as one
//!   `BatchGetSecretValue` (20 ids) or `GetParameters` (10 names); on a
//!   node the window opens only while requests are arriving together, so
//!   a lone pod's fetch is not delayed;
//! - a value fetched for one pod is served to another pod of the same
//!   identity key while it is younger than that pod's refresh interval (the
//!   staleness every mounted pod already accepts), so a node checks each
//!   object once per interval, whatever the number of volumes.
//!
//! Nothing crosses identity keys: the key is part of every entry. Failures
//! are handed to the requests that waited for the call, and never kept.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::SdkConfig;
use tokio::sync::watch;
use tokio::time::Instant;

use super::budget::{Priority, RateBudget};
use super::{FetchedValue, ObjectFailure, Outcome, Wanted, secretsmanager, ssm};
use crate::aws::IdentityKey;
use crate::metrics::{Metrics, Served};
use crate::spc::{ObjectRef, ObjectType};

/// The longest a value stays for sharing, whatever interval its requests
/// accepted: a class's `refreshInterval` (up to a year) is its own volumes'
/// business, and must not keep values in the driver's memory once the pods
/// that read them are gone. Past this, a new pod's request asks AWS again.
pub const LONGEST_SHARED: Duration = Duration::from_secs(10 * 60);

/// How long a new batch waits for other requests to join it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchWindow {
    /// Every batch waits this long (the controller: a store's syncs reach
    /// the fetch layer over a few hundred milliseconds and wait for no pod).
    Always(Duration),
    /// A batch waits this long only while its queue is busy: when another
    /// batch of the same identity, region and kind started less than
    /// [`BURST`] ago. A lone request goes at once: a pod that starts alone
    /// gains nothing by waiting, and the wait was most of a cold mount's
    /// time on the node beyond its two AWS round trips.
    InBursts(Duration),
}

/// The node's window: 3 ms, while pods arrive together.
pub const BATCH_WINDOW: BatchWindow = BatchWindow::InBursts(Duration::from_millis(3));

/// Batches of one queue started within this span are taken for a burst
/// (a wave of pods reaches the driver over tens of milliseconds): the
/// first of a burst goes alone, the ones after it gather.
pub const BURST: Duration = Duration::from_millis(50);

impl BatchWindow {
    /// How long a new batch waits, given how long ago the previous batch
    /// of its queue started (None: not within the last [`BURST`]).
    pub fn wait(self, since_previous: Option<Duration>) -> Duration {
        match self {
            BatchWindow::Always(window) => window,
            BatchWindow::InBursts(window) => match since_previous {
                Some(since) if since < BURST => window,
                _ => Duration::ZERO,
            },
        }
    }
}

/// How a fetch may share with other pods' fetches.
#[derive(Debug, Clone)]
pub struct Sharing {
    /// Values are shared only between requests of the same scope: the
    /// identity key, or None for the `mount` command's own credentials.
    pub scope: Option<IdentityKey>,
    /// The oldest shared value this request accepts; zero asks AWS (or
    /// joins a call already under way).
    pub max_age: Duration,
    pub priority: Priority,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct QueueKey {
    scope: Option<IdentityKey>,
    region: String,
    kind: ObjectType,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ValueKey {
    queue: QueueKey,
    object: ObjectRef,
}

type Answer = watch::Receiver<Option<Outcome>>;

enum Slot {
    Pending(Answer),
    Ready {
        value: FetchedValue,
        fetched_at: Instant,
    },
}

struct Queued {
    key: ValueKey,
    answer: watch::Sender<Option<Outcome>>,
}

struct Queue {
    items: Vec<Queued>,
    /// Region and credentials of the first request: every request of the
    /// queue has the same identity key, hence the same credentials.
    config: SdkConfig,
    priority: Priority,
}

/// The batches being gathered, and when each queue last started one.
#[derive(Default)]
struct Queues {
    open: HashMap<QueueKey, Queue>,
    /// Kept for [`BURST`] only.
    started: HashMap<QueueKey, Instant>,
}

pub struct SharedValues {
    slots: Mutex<HashMap<ValueKey, Slot>>,
    queues: Mutex<Queues>,
    /// Values older than the largest `max_age` ever asked for (at most
    /// [`LONGEST_SHARED`]) are dropped.
    retain_ms: AtomicU64,
    window: BatchWindow,
    budget: Arc<RateBudget>,
    metrics: Arc<Metrics>,
}

impl SharedValues {
    pub(super) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub(super) fn budget(&self) -> &RateBudget {
        &self.budget
    }

    pub fn new(budget: Arc<RateBudget>, metrics: Arc<Metrics>, window: BatchWindow) -> Self {
        SharedValues {
            slots: Mutex::default(),
            queues: Mutex::default(),
            retain_ms: AtomicU64::new(0),
            window,
            budget,
            metrics,
        }
    }

    /// One outcome per object, in order. `config` carries the region and
    /// the credentials of `sharing.scope`.
    pub async fn get(
        self: &Arc<Self>,
        config: &SdkConfig,
        region: &str,
        kind: ObjectType,
        objects: &[&ObjectRef],
        sharing: &Sharing,
    ) -> Vec<Outcome> {
        if objects.is_empty() {
            return Vec::new();
        }
        let queue = QueueKey {
            scope: sharing.scope.clone(),
            region: region.to_owned(),
            kind,
        };
        self.accept(sharing.max_age);
        let now = Instant::now();
        let mut waiting: Vec<Result<Outcome, Answer>> = Vec::with_capacity(objects.len());
        let mut start_queue = None;
        {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            self.sweep(&mut slots, now);
            for object in objects {
                let key = ValueKey {
                    queue: queue.clone(),
                    object: (*object).clone(),
                };
                match slots.get(&key) {
                    Some(Slot::Ready { value, fetched_at })
                        if now.saturating_duration_since(*fetched_at) <= sharing.max_age =>
                    {
                        self.metrics.shared_value(Served::Reused);
                        waiting.push(Ok(Ok(value.clone())));
                    }
                    // A pending fetch whose task died is fetched anew.
                    Some(Slot::Pending(answer)) if answer.has_changed().is_ok() => {
                        self.metrics.shared_value(Served::Joined);
                        waiting.push(Err(answer.clone()));
                    }
                    _ => {
                        self.metrics.shared_value(Served::Fetched);
                        let (tx, rx) = watch::channel(None);
                        slots.insert(key.clone(), Slot::Pending(rx.clone()));
                        waiting.push(Err(rx));
                        let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
                        let Queues { open, started } = &mut *queues;
                        let q = open.entry(queue.clone()).or_insert_with(|| {
                            started.retain(|_, at| now.saturating_duration_since(*at) < BURST);
                            let previous = started.insert(queue.clone(), now);
                            start_queue = Some(
                                self.window
                                    .wait(previous.map(|at| now.saturating_duration_since(at))),
                            );
                            Queue {
                                items: Vec::new(),
                                config: config.clone(),
                                priority: sharing.priority,
                            }
                        });
                        q.priority = q.priority.max(sharing.priority);
                        q.items.push(Queued { key, answer: tx });
                    }
                }
            }
        }
        if let Some(wait) = start_queue {
            let this = Arc::clone(self);
            let key = queue.clone();
            // Spawned: the call completes (and serves the others) even if
            // the pod that started it gives up.
            tokio::spawn(async move { this.flush(key, wait).await });
        }
        let mut out = Vec::with_capacity(waiting.len());
        for (w, object) in waiting.into_iter().zip(objects) {
            out.push(match w {
                Ok(outcome) => outcome,
                Err(mut rx) => match rx.wait_for(Option::is_some).await {
                    Ok(v) => v.clone().unwrap_or_else(|| Err(abandoned(object, region))),
                    Err(_) => Err(abandoned(object, region)),
                },
            });
        }
        out
    }

    /// Sends what queued up during `wait`, then hands out the answers.
    async fn flush(self: Arc<Self>, key: QueueKey, wait: Duration) {
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        let Some(queue) = self
            .queues
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .open
            .remove(&key)
        else {
            return;
        };
        let wanted: Vec<Wanted<'_>> = queue
            .items
            .iter()
            .enumerate()
            .map(|(index, q)| Wanted {
                index,
                object: &q.key.object,
            })
            .collect();
        let calls = super::Calls {
            metrics: &self.metrics,
            budget: &self.budget,
            priority: queue.priority,
        };
        let outcomes = match key.kind {
            ObjectType::SecretsManager => {
                secretsmanager::fetch(&queue.config, &key.region, &wanted, &calls).await
            }
            ObjectType::SsmParameter => {
                ssm::fetch(&queue.config, &key.region, &wanted, &calls).await
            }
        };
        let fetched_at = Instant::now();
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        for (item, outcome) in queue.items.iter().zip(outcomes) {
            match &outcome {
                Ok(value) => {
                    slots.insert(
                        item.key.clone(),
                        Slot::Ready {
                            value: value.clone(),
                            fetched_at,
                        },
                    );
                }
                Err(_) => {
                    slots.remove(&item.key);
                }
            }
            item.answer.send_replace(Some(outcome));
        }
    }

    /// Drops values nobody would accept any more.
    fn sweep(&self, slots: &mut HashMap<ValueKey, Slot>, now: Instant) {
        let retain = Duration::from_millis(self.retain_ms.load(Ordering::Relaxed));
        slots.retain(|_, slot| match slot {
            Slot::Pending(_) => true,
            Slot::Ready { fetched_at, .. } => now.saturating_duration_since(*fetched_at) <= retain,
        });
    }

    /// A request accepts values this old: they are kept that long, within
    /// [`LONGEST_SHARED`].
    fn accept(&self, max_age: Duration) {
        self.retain_ms.fetch_max(
            max_age.min(LONGEST_SHARED).as_millis() as u64,
            Ordering::Relaxed,
        );
    }

    /// Drops values nobody would accept any more, on the driver's clock
    /// (requests sweep too, but none may come once the pods are gone).
    pub fn sweep_now(&self) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        self.sweep(&mut slots, Instant::now());
    }

    /// Values held now (for tests and the benchmark's memory figures).
    pub fn held(&self) -> usize {
        self.slots.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

fn abandoned(object: &ObjectRef, region: &str) -> ObjectFailure {
    ObjectFailure::new(
        &object.name,
        region,
        "FetchAbandoned",
        "the shared fetch ended without an answer",
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[tokio::test(start_paused = true)]
    async fn values_go_on_the_drivers_clock_whatever_interval_was_asked() {
        let shared = SharedValues::new(
            Arc::new(RateBudget::new(&[])),
            Arc::new(Metrics::new()),
            BATCH_WINDOW,
        );
        // A year's interval asked, as a class may set it.
        shared.accept(Duration::from_secs(8760 * 3600));
        let key = ValueKey {
            queue: QueueKey {
                scope: None,
                region: "r".into(),
                kind: ObjectType::SecretsManager,
            },
            object: ObjectRef {
                name: "o".into(),
                version_id: None,
                version_label: None,
            },
        };
        shared.slots.lock().unwrap().insert(
            key,
            Slot::Ready {
                value: FetchedValue {
                    bytes: "v".into(),
                    version: None,
                },
                fetched_at: Instant::now(),
            },
        );
        tokio::time::advance(LONGEST_SHARED - Duration::from_secs(1)).await;
        shared.sweep_now();
        assert_eq!(shared.held(), 1, "still young enough to share");
        tokio::time::advance(Duration::from_secs(2)).await;
        shared.sweep_now();
        assert_eq!(shared.held(), 0, "dropped without any request");
    }

    #[test]
    fn a_lone_batch_goes_at_once_and_a_burst_gathers() {
        let node = BATCH_WINDOW;
        assert_eq!(node.wait(None), Duration::ZERO, "nothing before it");
        assert_eq!(node.wait(Some(BURST)), Duration::ZERO, "the burst is over");
        assert_eq!(node.wait(Some(BURST * 10)), Duration::ZERO);
        assert_eq!(node.wait(Some(Duration::ZERO)), 3 * MS);
        assert_eq!(node.wait(Some(BURST - MS)), 3 * MS);
    }

    #[test]
    fn a_fixed_window_always_waits() {
        let controller = BatchWindow::Always(100 * MS);
        for since in [None, Some(Duration::ZERO), Some(BURST), Some(BURST * 10)] {
            assert_eq!(controller.wait(since), 100 * MS);
        }
    }
}
