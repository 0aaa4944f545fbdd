//! The controller's half of telling the nodes (docs/events.md, "Reaching
//! the nodes"): every change AWS reported is appended to one ConfigMap in
//! the controller's namespace, which every node driver watches. The leader
//! writes it at most twice a second, whatever the rate of events: changes
//! that arrive meanwhile go out in one write, so a burst of a thousand
//! events is a few writes and a few watch events per node.
//!
//! A batch of events waits for its changes to be written before its
//! messages are deleted, so a controller that dies in between leaves them
//! on the queue for the next leader.

use std::time::Duration;

use std::sync::Arc;

use aws_secrets_csi_core::aws_events::Change;
use aws_secrets_csi_core::change_log::{ChangeLog, DATA_KEY};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::sync::{mpsc, oneshot};

use super::lease::Fence;

/// The least time between two writes of the record: every node driver
/// gets each write through its watch.
const WRITE_GAP: Duration = Duration::from_millis(500);
/// How long the first change after a quiet time waits for others (the
/// events of one change burst come in several small batches).
const GATHER: Duration = Duration::from_millis(100);
/// Tries of one write that loses a race (409) before it is given up.
const TRIES: usize = 5;

/// Where changes are handed to the writer.
#[derive(Clone)]
pub struct ChangeRecord {
    tx: mpsc::Sender<(Vec<Change>, oneshot::Sender<bool>)>,
}

impl ChangeRecord {
    /// The record `namespace`/`name`, and its writer (run while leading).
    pub fn new(
        client: kube::Client,
        namespace: &str,
        name: &str,
        fence: Arc<Fence>,
    ) -> (
        ChangeRecord,
        impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        let (tx, rx) = mpsc::channel(1024);
        let writer = Writer {
            api: Api::namespaced(client, namespace),
            name: name.to_owned(),
            fence,
        };
        (ChangeRecord { tx }, writer.run(rx))
    }

    /// Hands `changes` to the writer; true once they are written.
    pub async fn record(&self, changes: Vec<Change>) -> bool {
        if changes.is_empty() {
            return true;
        }
        let (done, written) = oneshot::channel();
        if self.tx.send((changes, done)).await.is_err() {
            return false;
        }
        written.await.unwrap_or(false)
    }
}

struct Writer {
    api: Api<ConfigMap>,
    name: String,
    fence: Arc<Fence>,
}

#[derive(Debug, thiserror::Error)]
enum WriteError {
    #[error("{0}")]
    Api(#[from] kube::Error),
    #[error(transparent)]
    Fenced(#[from] super::lease::Fenced),
    #[error("another writer kept changing it ({TRIES} tries)")]
    Contended,
}

impl Writer {
    async fn run(self, mut rx: mpsc::Receiver<(Vec<Change>, oneshot::Sender<bool>)>) {
        let mut last: Option<tokio::time::Instant> = None;
        while let Some(first) = rx.recv().await {
            let gathered = tokio::time::Instant::now() + GATHER;
            let due = last.map_or(gathered, |last| (last + WRITE_GAP).max(gathered));
            tokio::time::sleep_until(due).await;
            let mut waiting = vec![first];
            while let Ok(more) = rx.try_recv() {
                waiting.push(more);
            }
            let changes: Vec<Change> = waiting
                .iter()
                .flat_map(|(c, _)| c.iter().cloned())
                .collect();
            last = Some(tokio::time::Instant::now());
            let ok = match self.write(&changes).await {
                Ok(seq) => {
                    tracing::debug!(changes = changes.len(), next = seq, configmap = %self.name, "recorded AWS changes for the nodes");
                    true
                }
                Err(e) => {
                    tracing::warn!(configmap = %self.name, error = %e, "cannot record AWS changes for the nodes; their events stay on the queue");
                    false
                }
            };
            for (_, done) in waiting {
                let _ = done.send(ok);
            }
        }
    }

    /// Appends `changes` to the record (made if missing); the next sequence
    /// number once written.
    async fn write(&self, changes: &[Change]) -> Result<u64, WriteError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        for _ in 0..TRIES {
            self.fence.check()?;
            let current = self.api.get_opt(&self.name).await?;
            let mut log = current
                .as_ref()
                .and_then(|cm| cm.data.as_ref()?.get(DATA_KEY))
                .and_then(|text| match ChangeLog::decode(text) {
                    Ok(log) => Some(log),
                    Err(e) => {
                        tracing::warn!(configmap = %self.name, error = %e, "the change record is unreadable; starting a new one");
                        None
                    }
                })
                .unwrap_or_else(|| ChangeLog::new(epoch()));
            log.record(changes, now);
            let data = [(DATA_KEY.to_owned(), log.encode())].into();
            let result = match current {
                Some(mut cm) => {
                    // Replaced with the version read: a concurrent writer
                    // (a leader that has not noticed it lost) makes it 409.
                    cm.data = Some(data);
                    cm.metadata.managed_fields = None;
                    self.api
                        .replace(&self.name, &PostParams::default(), &cm)
                        .await
                }
                None => {
                    let cm = ConfigMap {
                        metadata: ObjectMeta {
                            name: Some(self.name.clone()),
                            labels: Some(
                                [(
                                    "app.kubernetes.io/managed-by".to_owned(),
                                    super::MANAGER.to_owned(),
                                )]
                                .into(),
                            ),
                            ..Default::default()
                        },
                        data: Some(data),
                        ..Default::default()
                    };
                    self.api.create(&PostParams::default(), &cm).await
                }
            };
            match result {
                Ok(_) => return Ok(log.next),
                Err(kube::Error::Api(s)) if s.code == 409 => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(WriteError::Contended)
    }
}

/// A new record's epoch: unique enough that a record made anew is told
/// from the one it replaces.
fn epoch() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{:x}-{:x}", nanos, std::process::id())
}
