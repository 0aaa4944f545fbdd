//! Told of changes instead of polling: the controller's leader long-polls
//! an SQS queue that an EventBridge rule feeds with Secrets Manager
//! (CloudTrail) and Parameter Store change events, and refreshes at once
//! the ExternalSecrets that read the object each event names. Polling
//! stays as the backstop for lost events.
//!
//! - The event only says which object changed; the refresh reads AWS (the
//!   shared value of that object is dropped first), so a duplicate costs at
//!   most a read and a late or reordered event can never roll a value back.
//! - An event for an object nobody reads costs no AWS call.
//! - Events of one batch that name one object are one refresh.
//! - A message is deleted only once every refresh it asked for has run
//!   (or when it is not a change we act on): a controller that fails over
//!   mid-way leaves it on the queue, and the next leader gets it again
//!   after the visibility timeout.
//! - A queue that is gone or denied is logged and counted
//!   (`aws_events_total{outcome="queue_error"}`), retried with a backoff,
//!   and polling goes on.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_secrets_csi_core::aws_events::{self, Change, EventError};
use kube::ResourceExt;
use kube::api::ApiResource;
use kube::runtime::reflector::{ObjectRef, Store as Cache};
use tokio::sync::{Notify, mpsc};

use super::held::Held;
use super::sync::Syncer;
use crate::metrics::Metrics;

/// Messages asked for at once (SQS's most).
const BATCH: i32 = 10;
/// Long poll: SQS's longest wait.
const WAIT_SECONDS: i32 = 20;
/// How long a received message stays hidden from other receivers: the
/// refreshes it asks for must be done within it, else it comes back.
const VISIBILITY_SECONDS: i32 = 90;
/// How long the refreshes of one batch are waited for before its messages
/// are left to come back.
const REFRESH_WAIT: Duration = Duration::from_secs(60);
/// Batches handled at once: the next batch is received while the syncs of
/// the earlier ones run (a long poll answers as soon as one message is
/// there, so a burst comes in many small batches; one at a time, each
/// waited for the syncs of all before it).
const BATCHES_AT_ONCE: usize = 16;

/// How often each ExternalSecret's sync started and finished, so that a
/// message is deleted only after a sync that *started after* its event ran
/// to its end (a sync under way when the event came may have read the old
/// value).
#[derive(Default)]
pub struct Syncs {
    counts: Mutex<HashMap<String, (u64, u64)>>,
    changed: Notify,
}

/// A sync's start, handed back when it ends.
pub struct Started {
    id: String,
    index: u64,
}

impl Syncs {
    /// A sync of `id` (namespace/name) starts.
    pub fn start(&self, id: &str) -> Started {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let entry = counts.entry(id.to_owned()).or_default();
        entry.0 += 1;
        Started {
            id: id.to_owned(),
            index: entry.0,
        }
    }

    /// The sync `started` ended (whatever its outcome: a failed refresh is
    /// retried by the controller's own backoff, not by the queue).
    pub fn end(&self, started: Started) {
        {
            let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
            let entry = counts.entry(started.id).or_default();
            entry.1 = entry.1.max(started.index);
        }
        self.changed.notify_waiters();
    }

    /// Syncs of `id` started so far.
    fn started(&self, id: &str) -> u64 {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.get(id).map_or(0, |c| c.0)
    }

    /// Whether a sync of `id` that started after `after` syncs ended.
    fn ended_after(&self, id: &str, after: u64) -> bool {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.get(id).is_some_and(|c| c.1 > after)
    }

    /// Forgets the counts of ExternalSecrets that are gone.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.retain(|id, _| keep(id));
    }
}

/// The queue and what the source needs of the controller.
pub struct Source {
    pub queue_url: String,
    pub sqs: aws_sdk_sqs::Client,
    pub syncer: Arc<Syncer>,
    pub external_secrets: Cache<Held>,
    pub resource: ApiResource,
    /// Where refreshes are asked for (the controller's trigger stream).
    pub refresh: mpsc::Sender<ObjectRef<Held>>,
    pub syncs: Arc<Syncs>,
    pub metrics: Arc<Metrics>,
    /// Where the nodes learn of changes (docs/events.md); None: they are
    /// not told (`--changes-configmap ""`).
    pub record: Option<super::change_record::ChangeRecord>,
}

impl Source {
    /// Polls until the future is dropped (the leader's work ends).
    pub async fn run(self) {
        let this = Arc::new(self);
        this.receive().await
    }

    async fn receive(self: &Arc<Self>) {
        // Which ExternalSecrets read an object is known from the watches
        // only once they have listed: an event read before would find no
        // reader and be deleted.
        while !(ready(&self.external_secrets) && self.syncer.stores_listed()) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tracing::info!(queue = %self.queue_url, "listening for AWS change events");
        let mut failures: u32 = 0;
        let at_once = Arc::new(tokio::sync::Semaphore::new(BATCHES_AT_ONCE));
        let mut batches = tokio::task::JoinSet::new();
        loop {
            let Ok(permit) = at_once.clone().acquire_owned().await else {
                return;
            };
            // Ended batches leave their results; they go as others arrive.
            while batches.try_join_next().is_some() {}
            let received = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(BATCH)
                .wait_time_seconds(WAIT_SECONDS)
                .visibility_timeout(VISIBILITY_SECONDS)
                .send()
                .await;
            let messages = match received {
                Ok(out) => {
                    failures = 0;
                    out.messages.unwrap_or_default()
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    // The code and AWS's message, or what kept the request
                    // from AWS (never a message body).
                    let (code, message, _) = crate::aws::describe(&e);
                    self.metrics.aws_event("queue_error");
                    let wait = backoff(failures);
                    tracing::warn!(queue = %self.queue_url, error = %code, cause = %message, detail = %aws_sdk_sqs::error::DisplayErrorContext(&e), retry_in = ?wait, "cannot read the events queue; ExternalSecrets are still refreshed by polling");
                    tokio::time::sleep(wait).await;
                    continue;
                }
            };
            if messages.is_empty() {
                continue;
            }
            // The batches end with the leader's work (the set is dropped):
            // their messages then come back to the next leader.
            let this = self.clone();
            batches.spawn(async move {
                this.batch(messages).await;
                drop(permit);
            });
        }
    }

    /// One batch: parse, coalesce, refresh, wait, delete.
    async fn batch(&self, messages: Vec<aws_sdk_sqs::types::Message>) {
        // Per object changed: the receipts of its messages.
        let mut changes: BTreeMap<(crate::spc::ObjectType, String, String), (Change, Vec<String>)> =
            BTreeMap::new();
        let mut done: Vec<String> = Vec::new();
        for m in messages {
            let Some(receipt) = m.receipt_handle else {
                continue;
            };
            match aws_events::parse(m.body.as_deref().unwrap_or_default()) {
                Ok(change) => {
                    changes
                        .entry(change.key())
                        .or_insert_with(|| (change, Vec::new()))
                        .1
                        .push(receipt);
                }
                Err(e) => {
                    let outcome = match e {
                        EventError::Unrelated(_) => "unrelated",
                        _ => "invalid",
                    };
                    self.metrics.aws_event(outcome);
                    tracing::debug!(error = %e, "an events queue message that names no change we read; deleted");
                    done.push(receipt);
                }
            }
        }
        // Every change goes to the nodes (their volumes may read objects no
        // ExternalSecret reads), written while the ExternalSecrets refresh.
        let parsed: Vec<String> = changes.values().flat_map(|(_, r)| r.clone()).collect();
        let recorded = {
            let record = self.record.clone();
            let all: Vec<Change> = changes.values().map(|(c, _)| c.clone()).collect();
            tokio::spawn(async move {
                match record {
                    Some(record) => record.record(all).await,
                    None => true,
                }
            })
        };
        // Which ExternalSecrets read each object, from the watches.
        let all = self.external_secrets.state();
        let mut waits: Vec<(String, u64, Vec<String>)> = Vec::new();
        let mut asked: BTreeSet<String> = BTreeSet::new();
        for (change, receipts) in changes.into_values() {
            let readers: Vec<&Arc<Held>> = all
                .iter()
                .filter(|es| self.syncer.reads_change(&es.object, &change))
                .collect();
            if readers.is_empty() {
                self.metrics.aws_event("unread");
                tracing::debug!(change = %change.what, "a change of an object no ExternalSecret reads");
                done.extend(receipts);
                continue;
            }
            self.metrics.aws_event("applied");
            let forgotten = self
                .syncer
                .fetcher
                .forget_changed(|service, region, name| change.is_read_by(service, region, name));
            tracing::info!(
                change = %change.what,
                object = %change.names.first().map(String::as_str).unwrap_or_default(),
                region = %change.region,
                externalsecrets = readers.len(),
                forgotten,
                "AWS reported a change: refreshing the ExternalSecrets that read it"
            );
            for es in readers {
                self.syncer.refresh_now(&es.object);
                let id = format!("{}/{}", es.namespace().unwrap_or_default(), es.name_any());
                let before = self.syncs.started(&id);
                if asked.insert(id.clone()) {
                    let key = ObjectRef::from_obj_with(es.as_ref(), self.resource.clone());
                    if self.refresh.send(key).await.is_err() {
                        return;
                    }
                }
                waits.push((id, before, receipts.clone()));
            }
        }
        // Each message waits for the refreshes it asked for.
        let deadline = tokio::time::Instant::now() + REFRESH_WAIT;
        let mut pending: HashMap<String, usize> = HashMap::new();
        for (_, _, receipts) in &waits {
            for r in receipts {
                *pending.entry(r.clone()).or_default() += 1;
            }
        }
        while !waits.is_empty() {
            let notified = self.syncs.changed.notified();
            waits.retain(|(id, before, receipts)| {
                if !self.syncs.ended_after(id, *before) {
                    return true;
                }
                for r in receipts {
                    if let Some(n) = pending.get_mut(r) {
                        *n -= 1;
                        if *n == 0 {
                            done.push(r.clone());
                        }
                    }
                }
                false
            });
            if waits.is_empty() || tokio::time::timeout_at(deadline, notified).await.is_err() {
                break;
            }
        }
        if !waits.is_empty() {
            tracing::warn!(
                refreshes = waits.len(),
                "refreshes asked for by AWS events did not end in time; their messages come back"
            );
        }
        // Not recorded for the nodes: the changes' messages come back.
        if !recorded.await.unwrap_or(false) {
            self.metrics.aws_event("record_error");
            done.retain(|r| !parsed.contains(r));
        }
        self.delete(done).await;
    }

    async fn delete(&self, receipts: Vec<String>) {
        for chunk in receipts.chunks(BATCH as usize) {
            let entries: Vec<_> = chunk
                .iter()
                .enumerate()
                .filter_map(|(i, r)| {
                    aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(r)
                        .build()
                        .ok()
                })
                .collect();
            if let Err(e) = self
                .sqs
                .delete_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
            {
                let (code, message, _) = crate::aws::describe(&e);
                tracing::warn!(error = %code, cause = %message, "cannot delete handled events; they come back and cost a refresh");
            }
        }
    }
}

/// Whether a watch has listed (polled: kube's readiness signal wakes only
/// one of several waiters).
pub(crate) fn ready(cache: &Cache<Held>) -> bool {
    futures::FutureExt::now_or_never(cache.wait_until_ready()).is_some()
}

/// 1 s, doubling, at most 32 s.
fn backoff(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.min(6).saturating_sub(1)).min(Duration::from_secs(60))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_waits_for_a_sync_that_started_after_its_event() {
        let syncs = Syncs::default();
        let under_way = syncs.start("ns/a");
        // The event comes while a sync is under way.
        let before = syncs.started("ns/a");
        syncs.end(under_way);
        assert!(
            !syncs.ended_after("ns/a", before),
            "that sync may have read the old value"
        );
        let next = syncs.start("ns/a");
        assert!(!syncs.ended_after("ns/a", before));
        syncs.end(next);
        assert!(syncs.ended_after("ns/a", before));
        assert!(!syncs.ended_after("ns/b", 0));
        syncs.retain(|id| id != "ns/a");
        assert_eq!(syncs.started("ns/a"), 0);
    }

    #[test]
    fn the_queue_is_retried_sooner_then_every_minute() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(6), Duration::from_secs(32));
        assert_eq!(backoff(100), Duration::from_secs(32));
    }
}
