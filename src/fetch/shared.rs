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
    /// Added to fill the call's room, not asked for.
    fill: bool,
}

/// The current-version objects a queue was asked for lately, with when:
/// what a batch call with room left fills it with.
#[derive(Default)]
struct Recent {
    asked: HashMap<ObjectRef, Instant>,
}

/// The most objects remembered a queue.
const RECENT_PER_QUEUE: usize = 1_000;

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
    recent: Mutex<HashMap<QueueKey, Recent>>,
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
            recent: Mutex::default(),
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
        self.remember(&queue, objects, now);
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
                        q.items.push(Queued {
                            key,
                            answer: tx,
                            fill: false,
                        });
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
        let mut queue = queue;
        self.fill(&key, &mut queue.items);
        let wanted: Vec<Wanted<'_>> = queue
            .items
            .iter()
            .enumerate()
            .map(|(index, q)| Wanted {
                index,
                object: &q.key.object,
                fill: q.fill,
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
            settle(&mut slots, item, &outcome, fetched_at);
            item.answer.send_replace(Some(outcome));
        }
    }

    /// Notes the current-version objects a request asked for.
    fn remember(&self, queue: &QueueKey, objects: &[&ObjectRef], now: Instant) {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let asked = &mut recent.entry(queue.clone()).or_default().asked;
        for object in objects.iter().filter(|o| is_current(o)) {
            asked.insert((*object).clone(), now);
        }
        if asked.len() > RECENT_PER_QUEUE {
            asked.retain(|_, at| now.saturating_duration_since(*at) < LONGEST_SHARED);
            if asked.len() > RECENT_PER_QUEUE {
                // The newest RECENT_PER_QUEUE stay: one sort, not a scan
                // per object dropped.
                let mut times: Vec<Instant> = asked.values().copied().collect();
                times.sort_unstable_by(|a, b| b.cmp(a));
                let cut = times[RECENT_PER_QUEUE - 1];
                asked.retain(|_, at| *at >= cut);
            }
        }
    }

    /// Fills the room left in a batch call (20 ids for Secrets Manager,
    /// 10 names for Parameter Store) with objects the queue was asked for
    /// in the last [`LONGEST_SHARED`] and that are not being fetched or
    /// fetched this past second: at no extra call, the objects the next
    /// requests of a refresh tick will ask for are fresh when they come.
    /// The controller's refreshes of one store reach the fetch in waves
    /// (bounded syncs in flight), each wave a subset of the store's
    /// secrets; without the fill, each wave that found new ones paid a
    /// call. A batch of pinned versions only (no batch call) gets none.
    fn fill(&self, key: &QueueKey, items: &mut Vec<Queued>) {
        let size = match key.kind {
            ObjectType::SecretsManager => secretsmanager::BATCH_SIZE,
            ObjectType::SsmParameter => ssm::BATCH_SIZE,
        };
        // What goes into batch calls: Secrets Manager batches current
        // versions only (the others go one by one); GetParameters takes
        // every selector (`name`, `name:version`, `name:label`).
        let batched = match key.kind {
            ObjectType::SecretsManager => {
                items.iter().filter(|q| is_current(&q.key.object)).count()
            }
            ObjectType::SsmParameter => items.len(),
        };
        let room = (size - batched % size) % size;
        if batched == 0 || room == 0 {
            return;
        }
        let now = Instant::now();
        let mut candidates: Vec<(ObjectRef, Instant)> = {
            let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
            let Some(r) = recent.get(key) else {
                return;
            };
            r.asked
                .iter()
                .filter(|(_, at)| now.saturating_duration_since(**at) < LONGEST_SHARED)
                .map(|(o, at)| (o.clone(), *at))
                .collect()
        };
        // The most recently asked first.
        candidates.sort_by_key(|(_, at)| std::cmp::Reverse(*at));
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let mut added = 0;
        for (object, _) in candidates {
            if added == room {
                break;
            }
            // A name already in the call (any version): one batch holds a
            // name once, so a second selector of it would cost a call.
            if items.iter().any(|q| q.key.object.name == object.name) {
                continue;
            }
            let value_key = ValueKey {
                queue: key.clone(),
                object,
            };
            let busy = match slots.get(&value_key) {
                Some(Slot::Pending(answer)) => answer.has_changed().is_ok(),
                Some(Slot::Ready { fetched_at, .. }) => {
                    now.saturating_duration_since(*fetched_at) < Duration::from_secs(1)
                }
                None => false,
            };
            if busy {
                continue;
            }
            let (tx, rx) = watch::channel(None);
            slots.insert(value_key.clone(), Slot::Pending(rx));
            items.push(Queued {
                key: value_key,
                answer: tx,
                fill: true,
            });
            added += 1;
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
        let now = Instant::now();
        self.recent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, r| {
                r.asked
                    .retain(|_, at| now.saturating_duration_since(*at) < LONGEST_SHARED);
                !r.asked.is_empty()
            });
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        self.sweep(&mut slots, now);
    }

    /// Drops the values held of the objects `changed` names (of every
    /// identity): the next request of one asks AWS. A fetch under way is
    /// dropped too: it still answers the requests that joined it (they
    /// came before the change), but what it brings is not kept for later
    /// ones ([`settle`]). Returns how many went.
    pub fn forget(&self, changed: impl Fn(ObjectType, &str, &str) -> bool) -> usize {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let before = slots.len();
        slots.retain(|key, _| !changed(key.queue.kind, &key.queue.region, &key.object.name));
        before - slots.len()
    }

    /// Values held now (for tests and the benchmark's memory figures).
    pub fn held(&self) -> usize {
        self.slots.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// Keeps (or drops) what a fetch brought for later requests, if its slot is
/// still this fetch's: a slot forgotten while the fetch was under way (the
/// object changed in AWS) is left to a newer fetch, since this one may
/// have read the old value. Its own waiters are answered either way.
fn settle(
    slots: &mut HashMap<ValueKey, Slot>,
    item: &Queued,
    outcome: &Outcome,
    fetched_at: Instant,
) {
    let ours = matches!(
        slots.get(&item.key),
        Some(Slot::Pending(rx)) if rx.same_channel(&item.answer.subscribe())
    );
    if !ours {
        return;
    }
    match outcome {
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

/// A current version (what the batch calls fetch): no version id, and no
/// label but AWSCURRENT.
fn is_current(o: &ObjectRef) -> bool {
    o.version_id.is_none() && o.version_label.as_deref().is_none_or(|l| l == "AWSCURRENT")
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[tokio::test(start_paused = true)]
    async fn a_batch_with_room_is_filled_with_what_the_queue_was_asked_for() {
        let shared = SharedValues::new(
            Arc::new(RateBudget::new(&[])),
            Arc::new(Metrics::new()),
            BATCH_WINDOW,
        );
        let queue = QueueKey {
            scope: None,
            region: "r".into(),
            kind: ObjectType::SsmParameter,
        };
        let object = |name: &str, version: Option<&str>| ObjectRef {
            name: name.into(),
            version_id: version.map(Into::into),
            version_label: None,
        };
        let asked: Vec<ObjectRef> = (0..12)
            .map(|i| object(&format!("p{i}"), None))
            .chain([object("pinned", Some("3"))])
            .collect();
        shared.remember(&queue, &asked.iter().collect::<Vec<_>>(), Instant::now());
        // p1 is being fetched, p2 was fetched this past second: not added.
        let (_tx, rx) = watch::channel(None);
        let value_key = |o: &ObjectRef| ValueKey {
            queue: queue.clone(),
            object: o.clone(),
        };
        {
            let mut slots = shared.slots.lock().unwrap();
            slots.insert(value_key(&asked[1]), Slot::Pending(rx));
            slots.insert(
                value_key(&asked[2]),
                Slot::Ready {
                    value: FetchedValue {
                        bytes: "v".into(),
                        version: None,
                        stages: Vec::new(),
                        created_ms: None,
                    },
                    fetched_at: Instant::now(),
                },
            );
        }
        let item = |o: &ObjectRef| Queued {
            key: value_key(o),
            answer: watch::channel(None).0,
            fill: false,
        };
        let mut items = vec![item(&asked[0])];
        shared.fill(&queue, &mut items);
        // GetParameters takes 10 names: 9 added, none busy, none pinned.
        assert_eq!(items.len(), 10);
        let added: Vec<&str> = items[1..]
            .iter()
            .inspect(|q| assert!(q.fill))
            .map(|q| q.key.object.name.as_str())
            .collect();
        for name in ["p0", "p1", "p2", "pinned"] {
            assert!(!added.contains(&name), "{name} in {added:?}");
        }
        // Each added one is pending: a request for it joins the call.
        assert!(matches!(
            shared.slots.lock().unwrap().get(&items[1].key),
            Some(Slot::Pending(_))
        ));
        // A full batch gets nothing.
        let mut full: Vec<Queued> = asked[..10].iter().map(item).collect();
        shared.fill(&queue, &mut full);
        assert_eq!(full.len(), 10);
        // Nor does a Secrets Manager fetch of pinned versions only (they go
        // one by one: there is no batch call to fill).
        let sm = QueueKey {
            kind: ObjectType::SecretsManager,
            ..queue.clone()
        };
        shared.remember(&sm, &asked.iter().collect::<Vec<_>>(), Instant::now());
        let mut pinned = vec![Queued {
            key: ValueKey {
                queue: sm.clone(),
                object: asked[12].clone(),
            },
            answer: watch::channel(None).0,
            fill: false,
        }];
        shared.fill(&sm, &mut pinned);
        assert_eq!(pinned.len(), 1);
        // A pinned version goes into GetParameters' call too: it takes a
        // place, and its name is not added again.
        // (Another region: the fills above are pending in this one.)
        let other = QueueKey {
            region: "r2".into(),
            ..queue.clone()
        };
        shared.remember(&other, &asked.iter().collect::<Vec<_>>(), Instant::now());
        let in_other = |o: &ObjectRef| Queued {
            key: ValueKey {
                queue: other.clone(),
                object: o.clone(),
            },
            answer: watch::channel(None).0,
            fill: false,
        };
        let p3_pinned = object("p3", Some("7"));
        let mut with_pinned = vec![in_other(&asked[0]), in_other(&p3_pinned)];
        shared.fill(&other, &mut with_pinned);
        assert_eq!(with_pinned.len(), 10);
        assert_eq!(
            with_pinned
                .iter()
                .filter(|q| q.key.object.name == "p3")
                .count(),
            1
        );
        // Forgotten once nobody asked for them in LONGEST_SHARED.
        tokio::time::advance(LONGEST_SHARED).await;
        shared.sweep_now();
        assert!(shared.recent.lock().unwrap().is_empty());
    }

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
                    stages: Vec::new(),
                    created_ms: None,
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
    fn a_fetch_under_way_when_its_object_changed_answers_but_is_not_kept() {
        let shared = SharedValues::new(
            Arc::new(RateBudget::new(&[])),
            Arc::new(Metrics::new()),
            BATCH_WINDOW,
        );
        let key = |name: &str| ValueKey {
            queue: QueueKey {
                scope: None,
                region: "r".into(),
                kind: ObjectType::SecretsManager,
            },
            object: ObjectRef {
                name: name.into(),
                version_id: None,
                version_label: None,
            },
        };
        let value = || FetchedValue {
            bytes: "old".into(),
            version: None,
            stages: Vec::new(),
            created_ms: None,
        };
        let mut items = Vec::new();
        for name in ["changed", "other"] {
            let (tx, rx) = watch::channel(None);
            shared
                .slots
                .lock()
                .unwrap()
                .insert(key(name), Slot::Pending(rx));
            items.push(Queued {
                key: key(name),
                answer: tx,
                fill: false,
            });
        }
        // The event: "changed" is forgotten while its fetch is under way.
        assert_eq!(shared.forget(|_, _, name| name == "changed"), 1);
        let mut slots = shared.slots.lock().unwrap();
        for item in &items {
            settle(&mut slots, item, &Ok(value()), Instant::now());
        }
        assert!(
            slots.get(&key("changed")).is_none(),
            "not kept for later requests"
        );
        assert!(matches!(slots.get(&key("other")), Some(Slot::Ready { .. })));
        // A newer fetch's slot is not overwritten by the older one either.
        let (_newer, rx) = watch::channel(None);
        slots.insert(key("changed"), Slot::Pending(rx));
        settle(&mut slots, &items[0], &Ok(value()), Instant::now());
        assert!(matches!(slots.get(&key("changed")), Some(Slot::Pending(_))));
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
