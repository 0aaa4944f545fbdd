//! Values shared across the pods of a node, so AWS calls grow with the
//! distinct (identity, object) pairs on the node, not with pods:
//!
//! - a request for an object that is already being fetched for the same
//!   identity key and region waits for that call instead of making another;
//! - requests that arrive within a short window are sent together, as one
//!   `BatchGetSecretValue` (20 ids) or `GetParameters` (10 names);
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
use crate::metrics::Metrics;
use crate::spc::{ObjectRef, ObjectType};

/// How long the first request of a batch waits for others to join it.
pub const BATCH_WINDOW: Duration = Duration::from_millis(3);

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

/// A value as served: fetched now, joined, or taken from an earlier fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    Fetched,
    Joined,
    Reused,
}

impl Served {
    pub fn label(self) -> &'static str {
        match self {
            Served::Fetched => "fetched",
            Served::Joined => "joined",
            Served::Reused => "reused",
        }
    }
}

pub struct SharedValues {
    slots: Mutex<HashMap<ValueKey, Slot>>,
    queues: Mutex<HashMap<QueueKey, Queue>>,
    /// Values older than the largest `max_age` ever asked for are dropped.
    retain_ms: AtomicU64,
    window: Duration,
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

    pub fn new(budget: Arc<RateBudget>, metrics: Arc<Metrics>, window: Duration) -> Self {
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
        self.retain_ms
            .fetch_max(sharing.max_age.as_millis() as u64, Ordering::Relaxed);
        let now = Instant::now();
        let mut waiting: Vec<Result<Outcome, Answer>> = Vec::with_capacity(objects.len());
        let mut start_queue = false;
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
                        let q = queues.entry(queue.clone()).or_insert_with(|| {
                            start_queue = true;
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
        if start_queue {
            let this = Arc::clone(self);
            let key = queue.clone();
            // Spawned: the call completes (and serves the others) even if
            // the pod that started it gives up.
            tokio::spawn(async move { this.flush(key).await });
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

    /// Sends what queued up during the window, then hands out the answers.
    async fn flush(self: Arc<Self>, key: QueueKey) {
        tokio::time::sleep(self.window).await;
        let Some(queue) = self
            .queues
            .lock()
            .unwrap_or_else(|p| p.into_inner())
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
