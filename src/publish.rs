//! NodePublishVolume and NodeUnpublishVolume: the data flow of DESIGN.md,
//! step by step (request -> class -> plan -> identity -> fetch -> render ->
//! volume). Every step's error is kept whole in [`PublishError`]; which gRPC
//! code each becomes is decided in `csi::status`.
//!
//! A publish of a target that is already mounted is kubelet's republish
//! (`requiresRepublish`): never a second mount, a refresh when the volume's
//! interval has passed, and the old files kept when the refresh fails.

use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tracing::Instrument;

use crate::aws::{AwsIdentity, IdentityKey};
use crate::cluster::{Cluster, ClusterError, EventType, Synced, desired_secret};
use crate::fetch::{FetchError, FetchedValue, Fetcher, Priority, Sharing};
use crate::identity::issuer::{self, KnownKeys, LocalProof};
use crate::identity::{
    Claimant, Identities, IdentityError, IdentityRequest, ProvenBy, ProvenTokens, Source, judge,
    judge_pod,
};
use crate::metrics::Metrics;
use crate::render::{self, FileSet, RenderError};
use crate::request::{AUDIENCE_POD_IDENTITY, AUDIENCE_STS, PublishRequest, RequestError};
use crate::rotation::RefreshState;
use crate::secret::Token;
use crate::spc::{
    self, AuthMode, MountPlan, PlanError, SecretObject, SecretProviderClass,
    SecretProviderClassSpec,
};
use crate::state::{ServedVersion, VolumeRecord, VolumeStore};
use crate::volume::{
    self, Layout, Mounted, TmpfsOptions, VolumeBudget, VolumeError, WriteOutcome, footprint,
};

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(
        "SecretProviderClass {namespace}/{name}: {source}{}",
        hints_text(hints)
    )]
    Class {
        namespace: String,
        name: String,
        source: Box<PlanError>,
        /// Typos found in the class, often the cause of the error.
        hints: Vec<String>,
    },
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("SecretProviderClass {class}: {source}")]
    Fetch { class: String, source: FetchError },
    #[error("SecretProviderClass {class}: {source}")]
    Render { class: String, source: RenderError },
    #[error("volume {target}: {source}")]
    Volume {
        target: PathBuf,
        source: VolumeError,
    },
    #[error("publish did not finish within {0:?}; nothing was mounted")]
    Deadline(Duration),
    #[error("an operation on volume {0} is already in progress")]
    Busy(String),
    /// A refresh the node was told of found no credentials held for the
    /// pod's identity: it waits for the pod's next republish and token.
    #[error("no credentials are held for the pod's identity; refreshed at its next republish")]
    NotHeld,
    #[error(
        "volume {volume_id} is already published at {target}; a volume is published at one target"
    )]
    PublishedElsewhere { volume_id: String, target: PathBuf },
    #[error(
        "target {target} holds volume {holder}, not {volume_id}; a target holds one volume, and it is left as it is"
    )]
    TargetHeld {
        target: PathBuf,
        volume_id: String,
        holder: String,
    },
    #[error(
        "volume {volume_id} is not published at {target} ({why}); nothing was unmounted or removed"
    )]
    NotPublishedHere {
        volume_id: String,
        target: PathBuf,
        why: String,
    },
    #[error(
        "volume {volume_id} was published for pod {was}; this request names {now}, and the volume is left as it is"
    )]
    OtherIdentity {
        volume_id: String,
        was: String,
        now: String,
    },
}

fn hints_text(hints: &[String]) -> String {
    if hints.is_empty() {
        String::new()
    } else {
        format!(" (also: {})", hints.join("; "))
    }
}

impl PublishError {
    /// The `error_type` label of the error metrics: a small fixed set.
    pub fn error_type(&self) -> &'static str {
        use crate::fetch::FailureKind;
        match self {
            PublishError::Request(_) => "InvalidRequest",
            PublishError::Cluster(ClusterError::NotFound {
                kind: "SecretProviderClass",
                ..
            }) => "SecretProviderClassNotFound",
            PublishError::Cluster(ClusterError::NotFound { .. }) => "ServiceAccountNotFound",
            PublishError::Cluster(ClusterError::Unusable { .. }) => "InvalidSecretProviderClass",
            PublishError::Cluster(_) => "KubernetesApiError",
            PublishError::Class { .. } => "InvalidSecretProviderClass",
            PublishError::Identity(_) => "IdentityError",
            PublishError::Fetch { source, .. } => match source.kind() {
                FailureKind::NotFound => "AwsNotFound",
                FailureKind::AccessDenied => "AwsAccessDenied",
                FailureKind::Throttled => "AwsThrottled",
                FailureKind::InvalidRequest => "AwsInvalidRequest",
                FailureKind::Unavailable => "AwsUnavailable",
            },
            PublishError::Render {
                source: RenderError::TooLarge { .. },
                ..
            } => "VolumeTooLarge",
            PublishError::Render { .. } => "RenderError",
            // The upstream driver's names for the same failures.
            PublishError::Volume {
                source: VolumeError::Mount { .. },
                ..
            } => "FailedToMount",
            PublishError::Volume {
                source: VolumeError::OverBudget { .. },
                ..
            } => "NodeVolumeBudgetExceeded",
            PublishError::Volume { .. } => "FileWriteError",
            PublishError::Deadline(_) => "Timeout",
            PublishError::Busy(_) => "OperationInProgress",
            PublishError::NotHeld => "CredentialsNotHeld",
            PublishError::PublishedElsewhere { .. } => "VolumePublishedElsewhere",
            PublishError::TargetHeld { .. }
            | PublishError::OtherIdentity { .. }
            | PublishError::NotPublishedHere { .. } => "VolumeConflict",
        }
    }
}

/// Node-wide settings of the publish path.
#[derive(Debug, Clone)]
pub struct PublishConfig {
    /// Region for classes that name none.
    pub default_region: Option<String>,
    pub tmpfs: TmpfsOptions,
    /// Kept well inside kubelet's 2-minute RPC deadline.
    pub deadline: Duration,
    /// How often a mounted volume is refreshed, unless its class says.
    pub refresh_interval: Duration,
    /// This node's name, for the region label when neither the class nor
    /// the driver names a region.
    pub node_name: Option<String>,
    /// Keep the Kubernetes Secrets of `secretObjects` (off unless enabled).
    pub sync_secrets: bool,
    /// Files one volume may hold (its bytes are the tmpfs size).
    pub max_files: usize,
    /// kubelet's root directory: targets are resolved below it, without
    /// following links.
    pub kubelet_dir: PathBuf,
}

impl PublishConfig {
    /// What one volume may hold: every class is planned and rendered within
    /// this before anything is fetched or written.
    pub fn limits(&self) -> spc::VolumeLimits {
        spc::VolumeLimits {
            max_files: self.max_files,
            max_bytes: self.tmpfs.size_bytes,
        }
    }
}

/// What a successful publish did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// A new tmpfs was mounted and filled.
    Mounted { files: usize },
    /// A republish before the volume's refresh was due: nothing was asked.
    NotDue,
    /// A republish refreshed the volume; `changed` when files were swapped.
    Refreshed { changed: bool },
    /// A republish whose refresh failed; the old files are still there.
    RefreshFailed,
}

pub struct Publisher {
    cluster: Cluster,
    identities: Identities,
    /// Pods' tokens the API server vouched for recently.
    proven: ProvenTokens,
    /// The API server's token-signing keys, to prove tokens on the node.
    issuer_keys: KnownKeys,
    /// The node's `topology.kubernetes.io/region` label, looked up once.
    node_region: tokio::sync::OnceCell<Option<String>>,
    /// Each volume's SecretProviderClassPodStatus, written after the reply.
    pod_status: PodStatusWrites,
    /// The same for the volume's synced Secrets (kept only once all synced,
    /// so a failed sync is tried again at the next refresh).
    secrets_synced: Mutex<std::collections::HashMap<String, u64>>,
    /// Classes (namespace, name, content) whose warnings were said once.
    warned: Mutex<HashSet<(String, String, u64)>>,
    plans: Plans,
    fetcher: Fetcher,
    /// Bytes rendered and not yet written, across publishes.
    rendering: RenderBytes,
    config: PublishConfig,
    volumes: Arc<VolumeStore>,
    /// Bytes the node's volumes may hold, all together.
    budget: Arc<VolumeBudget>,
    metrics: Arc<Metrics>,
    in_flight: Arc<Mutex<HashSet<String>>>,
    /// Each mounted volume's last request and plan, so a change AWS reports
    /// can refresh it before kubelet's next republish (docs/events.md).
    /// Only in memory: the tokens in a request are never written down.
    held: Mutex<HashMap<String, HeldVolume>>,
    /// Volumes told of a change they could not refresh at once (no
    /// credentials held, another operation under way): their next
    /// republish refreshes them whatever their interval.
    told: Mutex<HashSet<String>>,
}

/// What a refresh between republishes needs of a mounted volume.
#[derive(Clone)]
struct HeldVolume {
    req: PublishRequest,
    /// None for a volume republished since the driver started but not yet
    /// fetched: planned when a change comes.
    plan: Option<Arc<MountPlan>>,
}

/// Status writes under way at once, across volumes.
const STATUS_WRITES_AT_ONCE: usize = 4;

/// The SecretProviderClassPodStatus writes (the upstream driver's record of
/// what a pod mounted; read by people and tools, never by kubelet): one
/// server-side apply per change, made after the reply so a wave of mounts
/// does not queue behind the API server's writes. At most one write per
/// volume is under way: a newer state cancels the older write and waits for
/// it to end before its own. A few at once across volumes: kube's client
/// speaks HTTP/1.1, so every write at once is a TLS connection of its own,
/// and a wave's writes would contend with the wave's mounts.
struct PodStatusWrites {
    cluster: Cluster,
    at_once: Arc<tokio::sync::Semaphore>,
    /// What each volume's status last said (a hash), once written.
    written: Arc<Mutex<std::collections::HashMap<String, u64>>>,
    pending: Mutex<std::collections::HashMap<String, tokio::task::JoinHandle<()>>>,
}

impl PodStatusWrites {
    fn new(cluster: Cluster) -> Self {
        PodStatusWrites {
            cluster,
            at_once: Arc::new(tokio::sync::Semaphore::new(STATUS_WRITES_AT_ONCE)),
            written: Arc::default(),
            pending: Mutex::default(),
        }
    }

    fn write(&self, req: &PublishRequest, versions: &[(String, String)]) {
        let mut h = DefaultHasher::new();
        (&req.target, &req.class_name, versions).hash(&mut h);
        let hash = h.finish();
        let volume_id = req.volume_id.clone();
        if self
            .written
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&volume_id)
            == Some(&hash)
        {
            return;
        }
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let earlier = pending.remove(&volume_id);
        if let Some(earlier) = &earlier {
            earlier.abort();
        }
        // Ended writes leave their handles; they go as others arrive.
        pending.retain(|_, task| !task.is_finished());
        let (cluster, written) = (self.cluster.clone(), self.written.clone());
        let at_once = self.at_once.clone();
        let (pod, class, target) = (
            req.pod.clone(),
            req.class_name.clone(),
            req.target.to_string_lossy().into_owned(),
        );
        let versions = versions.to_vec();
        let id = volume_id.clone();
        let task = tokio::spawn(
            async move {
                if let Some(earlier) = earlier {
                    let _ = earlier.await;
                }
                let Ok(_permit) = at_once.acquire().await else {
                    return;
                };
                match cluster
                    .apply_pod_status(&pod, &class, &target, &versions)
                    .await
                {
                    Ok(()) => {
                        written
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(id, hash);
                    }
                    Err(e) => {
                        tracing::warn!(volume_id = %id, error = %e, "cannot write the SecretProviderClassPodStatus")
                    }
                }
            }
            .instrument(crate::step!(detached "pod_status")),
        );
        pending.insert(volume_id, task);
    }

    /// Stops the volume's write under way, if any, and waits for its end.
    async fn cancel(&self, volume_id: &str) {
        let task = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(volume_id);
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
    }

    /// Drops what is known of a volume that is gone, and its write under
    /// way.
    fn forget(&self, volume_id: &str) {
        self.written
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(volume_id);
        if let Some(task) = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(volume_id)
        {
            task.abort();
        }
    }
}

/// What a refresh produced, besides the files.
struct Rendered {
    set: FileSet,
    /// (file of each object, version AWS reported), for the pod status.
    versions: Vec<(String, String)>,
    /// (object name, what was served), for the rotation event and metrics.
    served: Vec<(String, render::manifest::Served)>,
    secret_objects: Vec<SecretObject>,
    interval: Duration,
    fingerprint: u64,
    /// The plan it was rendered by (which objects the volume reads).
    plan: Arc<MountPlan>,
    /// The node's room for rendered bytes, held until the files are written.
    _in_flight: Option<InFlight>,
}

impl Rendered {
    fn served_versions(&self) -> Vec<ServedVersion> {
        self.served
            .iter()
            .map(|(object, s)| ServedVersion {
                object: object.clone(),
                version: s.version.clone(),
                created_ms: s.created_ms,
            })
            .collect()
    }
}

/// What a change told to the node did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ToldOutcome {
    /// Volumes refreshed (fetched and compared) at once.
    pub refreshed: usize,
    /// Of those, the volumes whose files were swapped.
    pub swapped: usize,
    /// Volumes whose refresh failed (counted and reported as any refresh).
    pub failed: usize,
    /// Volumes left to their pod's next republish.
    pub deferred: usize,
}

/// The reason of the Event a pod gets when its files change; the
/// controller restarts workloads that opted in when it sees one.
pub const ROTATED_REASON: &str = "SecretRotated";

/// The rotation Event's text: the objects whose version changed (names and
/// version ids, never a value), at most ten of them.
fn rotation_message(
    class: &str,
    before: &[ServedVersion],
    after: &[ServedVersion],
    files: usize,
) -> String {
    let rotated: Vec<String> = after
        .iter()
        .filter_map(|now| {
            let was = before.iter().find(|b| b.object == now.object)?;
            (was.version != now.version).then(|| {
                format!(
                    "{} (version {} -> {})",
                    now.object,
                    was.version.as_deref().unwrap_or("?"),
                    now.version.as_deref().unwrap_or("?")
                )
            })
        })
        .collect();
    let what = match rotated.len() {
        0 => "new content".to_owned(),
        n if n <= 10 => format!("rotated {}", rotated.join(", ")),
        n => format!("rotated {} and {} more", rotated[..10].join(", "), n - 10),
    };
    format!("SecretProviderClass {class}: {what}; {files} file(s) swapped atomically")
}

impl Publisher {
    pub fn new(
        cluster: Cluster,
        identities: Identities,
        fetcher: Fetcher,
        config: PublishConfig,
        volumes: Arc<VolumeStore>,
        budget: Arc<VolumeBudget>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Publisher {
            pod_status: PodStatusWrites::new(cluster.clone()),
            cluster,
            identities,
            proven: ProvenTokens::default(),
            issuer_keys: KnownKeys::default(),
            node_region: tokio::sync::OnceCell::new(),
            secrets_synced: Mutex::default(),
            warned: Mutex::default(),
            plans: Plans::default(),
            fetcher,
            rendering: RenderBytes::new(RENDER_BYTES_AT_ONCE),
            config,
            volumes,
            budget,
            metrics,
            in_flight: Default::default(),
            held: Mutex::default(),
            told: Mutex::default(),
        }
    }

    /// Drops what the node holds past its time and no volume needs now
    /// (shared values; see [`crate::fetch::LONGEST_SHARED`]); run on the
    /// driver's own clock, since no request may come once pods are gone.
    pub fn sweep(&self) {
        self.fetcher.sweep_shared_values();
    }

    /// Work done once before the first publish needs it: the API server's
    /// token-signing keys.
    pub async fn prepare(&self) {
        self.issuer_keys
            .get(false, || self.cluster.issuer_keys())
            .await;
    }

    pub async fn publish(&self, req: PublishRequest) -> Result<Published, PublishError> {
        let result = self
            .publish_once(&req)
            .instrument(crate::step!("publish"))
            .await;
        if let Err(e) = &result
            && !matches!(e, PublishError::Busy(_))
        {
            self.cluster
                .event(
                    &req.pod,
                    EventType::Warning,
                    "FailedToMountSecrets",
                    &e.to_string(),
                )
                .await;
        }
        result
    }

    /// What is mounted at `target`, resolved without following links.
    async fn mounted(&self, target: &std::path::Path) -> Result<Mounted, VolumeError> {
        let (root, path) = (self.config.kubelet_dir.clone(), target.to_path_buf());
        blocking(target, move || volume::mounted(&root, &path))
            .instrument(crate::step!("lookup"))
            .await
    }

    async fn publish_once(&self, req: &PublishRequest) -> Result<Published, PublishError> {
        let _guard = VolumeGuard::take(&self.in_flight, &req.volume_id)?;
        let _target_guard = VolumeGuard::take(&self.in_flight, &target_key(&req.target))?;
        let target = req.target.clone();
        let on_target = |source| PublishError::Volume {
            target: target.clone(),
            source,
        };
        // A volume id is one pod's volume: published at a second target
        // while its first is still mounted, it is refused (CSI: the volume
        // is published, incompatibly).
        if let Some(record) = self.volumes.get(&req.volume_id)
            && record.target != req.target
        {
            let mounted = self.mounted(&record.target).await;
            if !matches!(mounted, Ok(Mounted::No)) {
                return Err(PublishError::PublishedElsewhere {
                    volume_id: req.volume_id.clone(),
                    target: record.target,
                });
            }
        }
        let mounted = self.mounted(&req.target).await.map_err(on_target)?;
        // A target holds one volume: a record of another volume id there is
        // a conflict while our mount stands, and stale once it is gone.
        if let Some(holder) = self.volumes.at_target(&req.target)
            && holder.volume_id != req.volume_id
        {
            if mounted == Mounted::Ours {
                return Err(PublishError::TargetHeld {
                    target: req.target.clone(),
                    volume_id: req.volume_id.clone(),
                    holder: holder.volume_id,
                });
            }
            self.forget(&holder.volume_id);
        }
        match mounted {
            Mounted::Ours => {
                // Ours, and the same pod's: its record (when there is one,
                // a restart may have lost it) names this pod.
                if let Some(record) = self.volumes.get(&req.volume_id) {
                    let was = (&record.namespace, &record.pod_uid, &record.service_account);
                    let now = (&req.pod.namespace, &req.pod.uid, &req.pod.service_account);
                    if was != now {
                        return Err(PublishError::OtherIdentity {
                            volume_id: req.volume_id.clone(),
                            was: format!(
                                "{}/{} (service account {})",
                                record.namespace, record.pod, record.service_account
                            ),
                            now: format!(
                                "{}/{} (service account {})",
                                req.pod.namespace, req.pod.name, req.pod.service_account
                            ),
                        });
                    }
                }
                return Ok(self.republish(req).await);
            }
            Mounted::Foreign { fs_type, source } => {
                return Err(on_target(VolumeError::Foreign {
                    path: req.target.clone(),
                    fs_type,
                    mounted_from: source,
                }));
            }
            Mounted::No => {}
        }
        let rendered =
            tokio::time::timeout(self.config.deadline, self.render(req, None, false, false))
                .await
                .map_err(|_| PublishError::Deadline(self.config.deadline))??;
        let files = rendered.set.len();
        // Reserved before anything is mounted: a refusal leaves nothing.
        let bytes = footprint(&rendered.set);
        let reservation = self
            .budget
            .reserve(&req.volume_id, bytes)
            .map_err(on_target)?;
        let tmpfs = self.config.tmpfs.clone();
        let (root, path) = (self.config.kubelet_dir.clone(), req.target.clone());
        let set = rendered.set.clone();
        blocking(&req.target, move || {
            volume::populate(&root, &path, &set, Some(&tmpfs))
        })
        .instrument(crate::step!("populate"))
        .await
        .map_err(on_target)?;
        reservation.settle(bytes);
        let refresh = RefreshState::mounted(now_ms(), rendered.interval, &req.volume_id);
        self.remember(
            req,
            refresh,
            rendered.fingerprint,
            rendered.served_versions(),
        );
        self.hold(req, &rendered.plan);
        self.report(req, &rendered)
            .instrument(crate::step!("report"))
            .await;
        Ok(Published::Mounted { files })
    }

    /// A publish of a mounted target: refresh if due, never fail the call
    /// for a failed refresh (kubelet before 1.37 deletes the mount directory
    /// on a failed republish).
    async fn republish(&self, req: &PublishRequest) -> Published {
        let now = now_ms();
        let record = self
            .volumes
            .get(&req.volume_id)
            .filter(|r| r.target == req.target);
        // The class's sync-now annotation changed since the volume last
        // fetched: fetch now, whatever the interval (our addition).
        let asked = |r: &VolumeRecord| {
            let now = self
                .cluster
                .sync_now(&req.pod.namespace, &req.class_name, &req.pod.name);
            now.is_some() && now != r.sync_now
        };
        let forced = record.as_ref().is_some_and(asked);
        // Told of a change it could not act on at once: refresh now (the
        // shared value was dropped when the node was told).
        let told = self.lock_told().remove(&req.volume_id);
        if let Some(r) = &record
            && !r.refresh.is_due(now)
            && !forced
            && !told
        {
            self.hold_request(req);
            return Published::NotDue;
        }
        let started = Instant::now();
        let result = tokio::time::timeout(
            self.config.deadline,
            self.refresh(req, record.as_ref(), forced, false),
        )
        .await
        .unwrap_or(Err(PublishError::Deadline(self.config.deadline)));
        self.settle(req, record, now, started, result).await
    }

    /// What a refresh did, recorded: the volume's state, metrics, the
    /// pod's events and status.
    async fn settle(
        &self,
        req: &PublishRequest,
        record: Option<VolumeRecord>,
        now: u64,
        started: Instant,
        result: Result<(Rendered, WriteOutcome), PublishError>,
    ) -> Published {
        let seconds = started.elapsed().as_secs_f64();
        match result {
            Ok((rendered, outcome)) => {
                let changed = outcome == WriteOutcome::Swapped;
                let mut refresh = record.as_ref().map_or_else(
                    || RefreshState::mounted(now, rendered.interval, &req.volume_id),
                    |r| r.refresh,
                );
                refresh.succeeded(now, changed, rendered.interval, &req.volume_id);
                let versions = rendered.served_versions();
                let before = record
                    .as_ref()
                    .map(|r| r.versions.as_slice())
                    .unwrap_or(&[]);
                let message =
                    rotation_message(&req.class_name, before, &versions, rendered.set.len());
                self.remember(req, refresh, rendered.fingerprint, versions);
                self.hold(req, &rendered.plan);
                self.metrics.rotation(changed, seconds);
                if changed {
                    tracing::info!(volume_id = %req.volume_id, namespace = %req.pod.namespace, pod = %req.pod.name, files = rendered.set.len(), "volume content changed");
                    self.cluster
                        .event(&req.pod, EventType::Normal, ROTATED_REASON, &message)
                        .await;
                }
                self.report(req, &rendered).await;
                Published::Refreshed { changed }
            }
            Err(e) => {
                tracing::warn!(volume_id = %req.volume_id, namespace = %req.pod.namespace, pod = %req.pod.name, error = %e, "refresh failed; the old files stay");
                self.metrics.rotation_error(e.error_type(), seconds);
                let mut refresh = record.as_ref().map_or_else(
                    || RefreshState::mounted(now, self.config.refresh_interval, &req.volume_id),
                    |r| r.refresh,
                );
                refresh.failed(now);
                let fingerprint = record.as_ref().map_or(0, |r| r.class_fingerprint);
                let versions = record.map(|r| r.versions).unwrap_or_default();
                self.remember(req, refresh, fingerprint, versions);
                self.hold_request(req);
                self.metrics
                    .refresh_failed(&req.pod.namespace, &req.class_name, e.error_type());
                self.cluster
                    .event(
                        &req.pod,
                        EventType::Warning,
                        "FailedToRefreshSecrets",
                        &format!("{e}; the files mounted before are kept"),
                    )
                    .await;
                Published::RefreshFailed
            }
        }
    }

    fn lock_told(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.told.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_held(&self) -> std::sync::MutexGuard<'_, HashMap<String, HeldVolume>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps the volume's request and plan for refreshes it is told of.
    fn hold(&self, req: &PublishRequest, plan: &Arc<MountPlan>) {
        self.lock_held().insert(
            req.volume_id.clone(),
            HeldVolume {
                req: req.clone(),
                plan: Some(plan.clone()),
            },
        );
    }

    /// Keeps kubelet's newest request (its tokens are the freshest); a
    /// volume not held yet (the driver restarted) is held from now on.
    fn hold_request(&self, req: &PublishRequest) {
        self.lock_held()
            .entry(req.volume_id.clone())
            .and_modify(|h| h.req = req.clone())
            .or_insert_with(|| HeldVolume {
                req: req.clone(),
                plan: None,
            });
    }

    /// The plan of a held volume's class, as a publish would plan it now.
    async fn plan_of(&self, req: &PublishRequest) -> Option<Arc<MountPlan>> {
        let ns = &req.pod.namespace;
        let class = self
            .cluster
            .secret_provider_class(ns, &req.class_name)
            .await
            .ok()?;
        let default_region = self.default_region(&class.spec).await;
        self.plans
            .get_or_plan(
                (ns, &req.class_name),
                &class,
                default_region.as_deref(),
                || spc::plan_class(&class.spec, default_region.as_deref(), self.config.limits()),
            )
            .ok()
    }

    /// AWS changed objects (the controller's change record says): the
    /// volumes on this node that read one are refreshed now, each with the
    /// credentials held for its pod's identity; a volume whose identity has
    /// none held is refreshed at its pod's next republish. The changed
    /// objects' shared values are dropped first, so the volumes of one
    /// identity fetch each object once between them.
    pub async fn told(&self, news: aws_secrets_csi_core::change_log::News) -> ToldOutcome {
        let mut outcome = ToldOutcome::default();
        if news.gap {
            // Changes were missed: anything may have changed. Every volume
            // fetches afresh at its next republish (not all at once now).
            let all: Vec<String> = self.lock_held().keys().cloned().collect();
            outcome.deferred += all.len();
            self.fetcher.forget_changed(|_, _, _| true);
            self.lock_told().extend(all);
            tracing::warn!(
                "the change record lost changes this node had not read; every volume fetches at its next republish"
            );
        }
        if news.changes.is_empty() {
            return outcome;
        }
        let held: Vec<HeldVolume> = self.lock_held().values().cloned().collect();
        let mut affected: Vec<HeldVolume> = Vec::new();
        for mut h in held {
            if h.plan.is_none() {
                h.plan = self.plan_of(&h.req).await;
            }
            if h.plan
                .as_ref()
                .is_some_and(|plan| news.changes.iter().any(|c| c.is_read_by_plan(plan)))
            {
                affected.push(h);
            }
        }
        if affected.is_empty() {
            return outcome;
        }
        let forgotten = self.fetcher.forget_changed(|service, region, name| {
            news.changes
                .iter()
                .any(|c| c.is_read_by(service, region, name))
        });
        tracing::info!(
            changes = news.changes.len(),
            volumes = affected.len(),
            forgotten,
            "AWS reported changes: refreshing the volumes that read them"
        );
        let results =
            futures::future::join_all(affected.iter().map(|h| self.refresh_told(&h.req))).await;
        for r in results {
            match r {
                Some(Published::Refreshed { changed }) => {
                    outcome.refreshed += 1;
                    outcome.swapped += usize::from(changed);
                }
                Some(_) => outcome.failed += 1,
                None => outcome.deferred += 1,
            }
        }
        outcome
    }

    /// One volume's refresh after a change: None when it is left to the
    /// pod's next republish.
    async fn refresh_told(&self, req: &PublishRequest) -> Option<Published> {
        let defer = || {
            self.lock_told().insert(req.volume_id.clone());
            None
        };
        // An operation on the volume under way (a publish, an unpublish):
        // it is left to the next republish.
        let Ok(_guard) = VolumeGuard::take(&self.in_flight, &req.volume_id) else {
            return defer();
        };
        let Ok(_target_guard) = VolumeGuard::take(&self.in_flight, &target_key(&req.target)) else {
            return defer();
        };
        // Only a volume still recorded at this target and still our mount.
        let record = self
            .volumes
            .get(&req.volume_id)
            .filter(|r| r.target == req.target && r.pod_uid == req.pod.uid)?;
        if !matches!(self.mounted(&req.target).await, Ok(Mounted::Ours)) {
            return None;
        }
        let now = now_ms();
        let started = Instant::now();
        let result = tokio::time::timeout(
            self.config.deadline,
            self.refresh(req, Some(&record), false, true),
        )
        .await
        .unwrap_or(Err(PublishError::Deadline(self.config.deadline)));
        match result {
            // No credentials held, or the token no longer proves the pod:
            // the pod's next republish brings a fresh token.
            Err(PublishError::NotHeld | PublishError::Identity(_)) => defer(),
            result => Some(self.settle(req, Some(record), now, started, result).await),
        }
    }

    /// Fetches and writes a mounted volume's content; objects pinned to a
    /// version id are taken from the files when the class has not changed.
    async fn refresh(
        &self,
        req: &PublishRequest,
        record: Option<&VolumeRecord>,
        fresh: bool,
        held_only: bool,
    ) -> Result<(Rendered, WriteOutcome), PublishError> {
        let on_target = |source| PublishError::Volume {
            target: req.target.clone(),
            source,
        };
        let (root, path) = (self.config.kubelet_dir.clone(), req.target.clone());
        let previous = blocking(&req.target, move || {
            volume::read(&root, &path, Layout::Tmpfs)
        })
        .await
        .map_err(on_target)?;
        // What the volume holds is counted from its files, whatever the
        // driver knew before (a restart may have lost the record).
        self.budget
            .set(&req.volume_id, previous.as_ref().map_or(0, footprint));
        // The old files are not kept in memory while the new are fetched:
        // their digest tells an unchanged set.
        let digests = std::hash::RandomState::new();
        let previous_digest = previous.as_ref().map(|set| digest(&digests, set));
        let reuse = previous.map(|set| (record.map_or(0, |r| r.class_fingerprint), set));
        let rendered = self.render(req, reuse, fresh, held_only).await?;
        // A swap writes the new set while the old one is still there: both
        // count until it is done. Unchanged content is not written at all.
        let unchanged = previous_digest == Some(digest(&digests, &rendered.set));
        let bytes = footprint(&rendered.set);
        let reservation = match unchanged {
            true => None,
            false => Some(
                self.budget
                    .reserve(&req.volume_id, bytes)
                    .map_err(on_target)?,
            ),
        };
        let (root, path) = (self.config.kubelet_dir.clone(), req.target.clone());
        let set = rendered.set.clone();
        let outcome = blocking(&req.target, move || {
            volume::write(&root, &path, Layout::Tmpfs, &set)
        })
        .await
        .map_err(on_target)?;
        if let Some(reservation) = reservation {
            reservation.settle(bytes);
        }
        Ok((rendered, outcome))
    }

    /// Unmounts and removes a volume's target. Only this driver's tmpfs is
    /// unmounted; a target recorded for another volume id, or a volume
    /// recorded at another target, is left untouched (NotFound).
    pub async fn unpublish(&self, volume_id: &str, target: PathBuf) -> Result<(), PublishError> {
        let _guard = VolumeGuard::take(&self.in_flight, volume_id)?;
        let _target_guard = VolumeGuard::take(&self.in_flight, &target_key(&target))?;
        let why = match (self.volumes.at_target(&target), self.volumes.get(volume_id)) {
            (Some(holder), _) if holder.volume_id != volume_id => {
                Some(format!("the target holds volume {}", holder.volume_id))
            }
            (_, Some(record)) if record.target != target => Some(format!(
                "the volume is published at {}",
                record.target.display()
            )),
            _ => None,
        };
        if let Some(why) = why {
            return Err(PublishError::NotPublishedHere {
                volume_id: volume_id.to_owned(),
                target,
                why,
            });
        }
        // No status write of this volume lands after its unpublish.
        self.pod_status.cancel(volume_id).await;
        let (root, path) = (self.config.kubelet_dir.clone(), target.clone());
        blocking(&target, move || volume::teardown(&root, &path))
            .await
            .map_err(|source| PublishError::Volume {
                target: target.clone(),
                source,
            })?;
        self.forget(volume_id);
        Ok(())
    }

    /// Drops everything known of a volume that is gone.
    fn forget(&self, volume_id: &str) {
        self.lock_held().remove(volume_id);
        self.lock_told().remove(volume_id);
        self.pod_status.forget(volume_id);
        self.budget.release(volume_id);
        self.secrets_synced
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(volume_id);
        if let Err(e) = self.volumes.remove(volume_id) {
            tracing::warn!(%volume_id, error = %e, "cannot forget the volume's state");
        }
    }

    /// Class -> plan -> credentials -> values -> files; no side effects on
    /// the node. `reuse` is the class fingerprint and file set of an earlier
    /// fetch, for values that cannot have changed; `fresh` reads AWS even
    /// where another pod's value is young enough (a sync asked for).
    async fn render(
        &self,
        req: &PublishRequest,
        reuse: Option<(u64, FileSet)>,
        fresh: bool,
        held_only: bool,
    ) -> Result<Rendered, PublishError> {
        let refresh = reuse.is_some();
        let ns = &req.pod.namespace;
        let class = self
            .cluster
            .secret_provider_class(ns, &req.class_name)
            .instrument(crate::step!("class"))
            .await?;
        let default_region = self
            .default_region(&class.spec)
            .instrument(crate::step!("region"))
            .await;
        let plan = self
            .plans
            .get_or_plan(
                (ns, &req.class_name),
                &class,
                default_region.as_deref(),
                || spc::plan_class(&class.spec, default_region.as_deref(), self.config.limits()),
            )
            .map_err(|source| PublishError::Class {
                namespace: ns.clone(),
                name: req.class_name.clone(),
                source: Box::new(source),
                hints: spc::lint(&class.spec.parameters),
            })?;
        let fingerprint = fingerprint(&class.spec);
        self.warn_once(req, &plan.warnings, fingerprint).await;
        let role;
        let audience = match plan.auth {
            AuthMode::Irsa => AUDIENCE_STS,
            AuthMode::PodIdentity => AUDIENCE_POD_IDENTITY,
        };
        let token = req
            .tokens
            .get(audience)
            .ok_or(IdentityError::TokenMissing(audience))?;
        // The account's uid, for proving the token on the node.
        let account_uid;
        let source = match plan.auth {
            AuthMode::Irsa => {
                let account = self
                    .cluster
                    .service_account(ns, &req.pod.service_account)
                    .instrument(crate::step!("service_account"))
                    .await?;
                account_uid = account.uid;
                role = account.role.ok_or_else(|| IdentityError::NoRole {
                    namespace: ns.clone(),
                    service_account: req.pod.service_account.clone(),
                })?;
                Source::Irsa {
                    role_arn: &role,
                    token,
                }
            }
            AuthMode::PodIdentity => {
                account_uid = self
                    .cluster
                    .cached_service_account_uid(ns, &req.pod.service_account);
                Source::PodIdentity {
                    token,
                    preference: plan.address_preference,
                }
            }
        };
        let who = IdentityRequest {
            namespace: ns,
            service_account: &req.pod.service_account,
            pod: &req.pod.name,
            source,
            region: &plan.region,
            failover_region: plan.failover_region.as_deref(),
            chain: plan.role_chain.as_ref(),
        };
        // The earlier files go here: only pinned values are kept of them.
        // The manifest's times of unchanged versions are kept, whatever
        // else changed in the class.
        let previous_manifest = reuse.as_ref().and_then(|(_, set)| {
            let spec = plan.manifest.as_ref()?;
            let f = set.files().iter().find(|f| f.path == spec.path)?;
            Some(f.bytes.clone())
        });
        let known = match reuse {
            Some((previous_fingerprint, set)) if previous_fingerprint == fingerprint => {
                pinned_values(&plan, &set)
            }
            _ => Vec::new(),
        };
        let class_id = format!("{ns}/{}", req.class_name);
        let interval = plan
            .refresh_interval
            .unwrap_or(self.config.refresh_interval);
        // Values are shared with other pods of the same identity key while
        // younger than the interval: as fresh as a mounted pod's files.
        let sharing = Sharing {
            scope: Some(IdentityKey::of(&who)),
            // Asked to sync now: AWS is asked, not another pod's copy.
            max_age: if fresh { Duration::ZERO } else { interval },
            priority: if refresh {
                Priority::Refresh
            } else {
                Priority::FirstMount
            },
        };
        // The pod's token is proven before any credentials are obtained or
        // served: a token of another ServiceAccount is refused even on an
        // identity's first mount, whatever the role's trust policy says.
        let proven = self
            .prove(req, token, audience, account_uid.as_deref())
            .instrument(crate::step!("token_proof"))
            .await?;
        let mut obtained = match held_only {
            // Told of a change: only what is held, never a new exchange.
            true if !proven => return Err(PublishError::NotHeld),
            true => self.identities.held(&who).ok_or(PublishError::NotHeld)?,
            false => {
                self.identities
                    .credentials(&who)
                    .instrument(crate::step!("credentials"))
                    .await?
            }
        };
        if obtained.cached && !proven {
            // The API server could not say: credentials another pod
            // obtained are served only once this pod's token is exchanged.
            obtained = self.identities.exchange(&who).await?;
        }
        // A refresh holds the new set and, while writing, the one read back
        // to compare.
        let in_flight = Rendering {
            bytes: &self.rendering,
            copies: if refresh { 2 } else { 1 },
        };
        let mut set = fetch_and_render(
            &self.fetcher,
            &plan,
            &AwsIdentity::Pod(obtained.credentials),
            &known,
            &sharing,
            &class_id,
            Some(in_flight),
            previous_manifest.as_ref().map(|b| b.expose()),
        )
        .instrument(crate::step!("fetch"))
        .await;
        // Cached credentials that AWS refuses are dropped and obtained anew,
        // once: they may have been revoked or come from a forgetful endpoint.
        if obtained.cached && matches!(&set, Err(e) if e.error_type() == "AwsAccessDenied") {
            self.identities.forget(&who);
            if held_only {
                return Err(PublishError::NotHeld);
            }
            let fresh = self.identities.credentials(&who).await?;
            set = fetch_and_render(
                &self.fetcher,
                &plan,
                &AwsIdentity::Pod(fresh.credentials),
                &known,
                &sharing,
                &class_id,
                Some(in_flight),
                previous_manifest.as_ref().map(|b| b.expose()),
            )
            .await;
        }
        let Fetched {
            set,
            versions,
            served,
            room: in_flight,
        } = set?;
        let served = plan
            .objects
            .iter()
            .zip(served)
            .map(|(o, s)| (o.name().to_owned(), s))
            .collect();
        Ok(Rendered {
            set,
            versions,
            served,
            secret_objects: class.spec.secret_objects.clone(),
            interval,
            fingerprint,
            plan,
            _in_flight: in_flight,
        })
    }

    /// Whether `token` is this pod's: checked on the node against the API
    /// server's published signing keys when that can decide, else by a
    /// TokenReview (a verdict is kept 5 minutes per token). True when
    /// proven; false when the API server cannot answer (the caller then
    /// relies on the exchange with AWS); an error when the token is someone
    /// else's.
    async fn prove(
        &self,
        req: &PublishRequest,
        token: &Token,
        audience: &str,
        account_uid: Option<&str>,
    ) -> Result<bool, PublishError> {
        let claimant = Claimant {
            namespace: &req.pod.namespace,
            service_account: &req.pod.service_account,
            pod: &req.pod.name,
            pod_uid: &req.pod.uid,
            audience,
        };
        if let Some(by) = self.proven.proven_by(token, &claimant) {
            match self.pod_stands(req, &claimant, by == ProvenBy::Node).await {
                Ok(true) => return Ok(true),
                // Proven again below, as if new.
                Ok(false) => {}
                Err(e) => {
                    self.proven.forget(token, &claimant);
                    return Err(e);
                }
            }
        }
        let mut reload = false;
        loop {
            let Some(keys) = self
                .issuer_keys
                .get(reload, || self.cluster.issuer_keys())
                .await
            else {
                break;
            };
            match issuer::verify(token, &keys, &claimant, account_uid) {
                LocalProof::Proven => {
                    if !self.pod_stands(req, &claimant, true).await? {
                        break;
                    }
                    self.proven.remember(token, &claimant, ProvenBy::Node);
                    return Ok(true);
                }
                LocalProof::Refused(e) => return Err(IdentityError::from(e).into()),
                LocalProof::UnknownKey if !reload => reload = true,
                LocalProof::UnknownKey => break,
                LocalProof::CannotTell(why) => {
                    tracing::debug!(namespace = %req.pod.namespace, pod = %req.pod.name, why, "token left to a TokenReview");
                    break;
                }
            }
        }
        match self.cluster.review_token(token, audience).await {
            Ok(review) => {
                judge(&review, &claimant).map_err(IdentityError::from)?;
                self.proven.remember(token, &claimant, ProvenBy::ApiServer);
                Ok(true)
            }
            Err(e) => {
                tracing::warn!(namespace = %req.pod.namespace, pod = %req.pod.name, error = %e, "cannot review the pod's token; relying on the exchange with AWS instead");
                Ok(false)
            }
        }
    }

    /// Whether the pod a proven token is bound to still stands, as the API
    /// server would check: from the watch of this node's pods (a proof
    /// outlives its pod by the watch's lag), else by a GET when `ask` (a
    /// proof the node made itself). An error when the pod is gone or
    /// another; false when that cannot be told (the API server is not
    /// answering: the token is then proven by a TokenReview, or not at all).
    async fn pod_stands(
        &self,
        req: &PublishRequest,
        claimant: &Claimant<'_>,
        ask: bool,
    ) -> Result<bool, PublishError> {
        match self
            .cluster
            .bound_pod(&req.pod.namespace, &req.pod.name, ask)
            .await
        {
            Ok(Some(pod)) => {
                judge_pod(&pod, claimant, std::time::SystemTime::now())
                    .map_err(IdentityError::from)?;
                Ok(true)
            }
            Ok(None) => Ok(true),
            Err(e) => {
                tracing::warn!(namespace = %req.pod.namespace, pod = %req.pod.name, error = %e, "cannot tell whether the pod of a proven token still exists");
                Ok(false)
            }
        }
    }

    /// A class's warnings (typos, mostly), logged and sent as an event the
    /// first time this driver plans that content of the class, not at every
    /// publish and refresh.
    async fn warn_once(&self, req: &PublishRequest, warnings: &[String], fingerprint: u64) {
        if warnings.is_empty() {
            return;
        }
        let key = (
            req.pod.namespace.clone(),
            req.class_name.clone(),
            fingerprint,
        );
        {
            let mut warned = self.warned.lock().unwrap_or_else(|p| p.into_inner());
            // Bounded: class authors make new contents at will; past this
            // many, a warning may be said again, never held forever.
            if warned.len() >= 10_000 {
                warned.clear();
            }
            if !warned.insert(key) {
                return;
            }
        }
        for warning in warnings {
            tracing::warn!(namespace = %req.pod.namespace, class = %req.class_name, "{warning}");
        }
        self.cluster
            .event(
                &req.pod,
                EventType::Warning,
                "SecretProviderClassWarning",
                &format!(
                    "SecretProviderClass {}: {}",
                    req.class_name,
                    warnings.join("; ")
                ),
            )
            .await;
    }

    /// After content was written: the pod status object (in the
    /// background: nothing waits for it) and the synced Secrets (before the
    /// reply: a container's `secretKeyRef` finds them when it starts), each
    /// written only when it changed. Failures are reported (log, event) and
    /// do not fail the mount.
    async fn report(&self, req: &PublishRequest, rendered: &Rendered) {
        self.pod_status.write(req, &rendered.versions);
        if !self.config.sync_secrets || rendered.secret_objects.is_empty() {
            return;
        }
        // Synced Secrets change only when the objects' versions or the
        // class's secretObjects do; while both stay, no API call at all.
        let mut h = DefaultHasher::new();
        (&rendered.versions, format!("{:?}", rendered.secret_objects)).hash(&mut h);
        let sync_hash = h.finish();
        let synced_already = self
            .secrets_synced
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&req.volume_id)
            == Some(&sync_hash);
        if synced_already {
            return;
        }
        let mut all_synced = true;
        let started = std::time::Instant::now();
        let mut synced = 0;
        let owner = match self.cluster.secret_owner(&req.pod).await {
            Ok(owner) => Some(owner),
            Err(e) => {
                tracing::warn!(namespace = %req.pod.namespace, pod = %req.pod.name, error = %e, "cannot find the owner for synced Secrets");
                None
            }
        };
        for (index, object) in rendered.secret_objects.iter().enumerate() {
            let result = match desired_secret(
                index,
                object,
                &rendered.set,
                &req.pod.namespace,
                owner.clone(),
            ) {
                Ok(desired) => self.cluster.sync_secret(&desired).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(Synced::Written) => {
                    synced += 1;
                    tracing::info!(namespace = %req.pod.namespace, secret = %object.secret_name, "synced Secret")
                }
                Ok(Synced::Unchanged) => synced += 1,
                Err(e) => {
                    all_synced = false;
                    tracing::warn!(namespace = %req.pod.namespace, secret = %object.secret_name, error = %e, "Secret sync failed");
                    self.metrics.publish_error("SecretSyncFailed");
                    self.cluster
                        .event(
                            &req.pod,
                            EventType::Warning,
                            "FailedToSyncSecret",
                            &format!("SecretProviderClass {}: {e}", req.class_name),
                        )
                        .await;
                }
            }
        }
        self.metrics
            .secrets_synced(synced, started.elapsed().as_secs_f64());
        if all_synced {
            self.secrets_synced
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(req.volume_id.clone(), sync_hash);
        }
    }

    /// The region for a class that names none: the driver's own, else the
    /// node's `topology.kubernetes.io/region` label (one GET, then cached).
    async fn default_region(&self, spec: &SecretProviderClassSpec) -> Option<String> {
        if spec.parameters.get("region").is_some_and(|r| !r.is_empty()) {
            return None;
        }
        if let Some(r) = &self.config.default_region {
            return Some(r.clone());
        }
        let node = self.config.node_name.as_deref()?;
        // Only an answer is kept: after a failed lookup the next publish asks again.
        match self
            .node_region
            .get_or_try_init(|| self.cluster.node_region(node))
            .await
        {
            Ok(region) => region.clone(),
            Err(e) => {
                tracing::warn!(node, error = %e, "cannot read the node's region label");
                None
            }
        }
    }

    fn remember(
        &self,
        req: &PublishRequest,
        refresh: RefreshState,
        fingerprint: u64,
        versions: Vec<ServedVersion>,
    ) {
        let mut record = VolumeRecord::new(
            &req.volume_id,
            &req.target,
            &req.pod,
            &req.class_name,
            refresh,
        );
        record.class_fingerprint = fingerprint;
        record.versions = versions;
        // Whatever the outcome, the value seen is the one answered: a failed
        // fetch is retried on the refresh backoff, not at every republish.
        record.sync_now = self
            .cluster
            .sync_now(&req.pod.namespace, &req.class_name, &req.pod.name);
        if let Err(e) = self.volumes.put(record) {
            tracing::warn!(volume_id = %req.volume_id, error = %e, "cannot save the volume's state");
        }
    }
}

/// Values of objects pinned to a version id, from the files of an earlier
/// fetch of the same class: a version's content never changes.
pub fn pinned_values(plan: &MountPlan, previous: &FileSet) -> Vec<Option<FetchedValue>> {
    plan.objects
        .iter()
        .map(|o| {
            let version = o.primary.version_id.as_ref()?;
            let file = previous.files().iter().find(|f| f.path == o.file.path)?;
            Some(FetchedValue {
                bytes: file.bytes.clone(),
                version: Some(version.clone()),
                stages: Vec::new(),
                created_ms: None,
            })
        })
        .collect()
}

/// Identifies a class's content; a changed class is fetched whole.
pub fn fingerprint(spec: &SecretProviderClassSpec) -> u64 {
    let mut h = DefaultHasher::new();
    spec.provider.hash(&mut h);
    spec.parameters.hash(&mut h);
    h.finish()
}

/// The last plan of each class, kept while the class and the region it was
/// planned for are unchanged: parsing a class's objects YAML (twice, for Go's
/// booleans) was the driver's largest cost per republish after the kernel's.
/// Compared by content, not by a hash a class author could collide; the
/// class kept is the watch store's own copy, not another one.
#[derive(Default)]
struct Plans(Mutex<std::collections::HashMap<(String, String), PlannedClass>>);

struct PlannedClass {
    class: Arc<SecretProviderClass>,
    default_region: Option<String>,
    plan: Arc<MountPlan>,
}

impl PlannedClass {
    fn holds(&self, class: &Arc<SecretProviderClass>, default_region: Option<&str>) -> bool {
        let same_class = Arc::ptr_eq(&self.class, class)
            || (self.class.spec.provider == class.spec.provider
                && self.class.spec.parameters == class.spec.parameters);
        same_class && self.default_region.as_deref() == default_region
    }
}

impl Plans {
    /// Classes a node's plans are kept for; beyond it, planning starts over.
    const BOUND: usize = 1024;

    fn get_or_plan(
        &self,
        (namespace, name): (&str, &str),
        class: &Arc<SecretProviderClass>,
        default_region: Option<&str>,
        plan: impl FnOnce() -> Result<MountPlan, PlanError>,
    ) -> Result<Arc<MountPlan>, PlanError> {
        let key = (namespace.to_owned(), name.to_owned());
        if let Some(known) = self.0.lock().unwrap_or_else(|p| p.into_inner()).get(&key)
            && known.holds(class, default_region)
        {
            return Ok(known.plan.clone());
        }
        // Errors are not kept: a broken class is rare and says so each time.
        let planned = Arc::new(plan()?);
        let mut plans = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if plans.len() >= Self::BOUND && !plans.contains_key(&key) {
            plans.clear();
        }
        plans.insert(
            key,
            PlannedClass {
                class: class.clone(),
                default_region: default_region.map(str::to_owned),
                plan: planned.clone(),
            },
        );
        Ok(planned)
    }
}

/// What one fetch produced: the files, and what was served.
pub struct Fetched {
    pub set: FileSet,
    /// (file of each object, version AWS reported), for the pod status.
    pub versions: Vec<(String, String)>,
    /// Version, stages and creation time of each object, in plan order.
    pub served: Vec<render::manifest::Served>,
    pub room: Option<InFlight>,
}

/// Fetches a plan's values and renders its files (and the rotation
/// manifest, keeping the times `previous_manifest` has for unchanged
/// versions); with `in_flight`, the rendering waits for room among the
/// node's rendered bytes, and the room taken is handed back with the files.
#[allow(clippy::too_many_arguments)]
pub async fn fetch_and_render(
    fetcher: &Fetcher,
    plan: &MountPlan,
    identity: &AwsIdentity,
    known: &[Option<FetchedValue>],
    sharing: &Sharing,
    class: &str,
    in_flight: Option<Rendering<'_>>,
    previous_manifest: Option<&[u8]>,
) -> Result<Fetched, PublishError> {
    let values = fetcher
        .fetch(plan, identity, known, sharing)
        .await
        .map_err(|source| PublishError::Fetch {
            class: class.to_owned(),
            source,
        })?;
    let versions = plan
        .objects
        .iter()
        .zip(&values)
        .map(|(o, v)| {
            (
                o.file.path.to_string(),
                v.version.clone().unwrap_or_default(),
            )
        })
        .collect();
    let mut served = Vec::with_capacity(values.len());
    let mut bytes = Vec::with_capacity(values.len());
    for v in values {
        served.push(render::manifest::Served {
            version: v.version,
            stages: v.stages,
            created_ms: v.created_ms,
        });
        bytes.push(v.bytes);
    }
    let room = match in_flight {
        Some(r) => Some(
            r.bytes
                .take(render_estimate(plan, &bytes).saturating_mul(r.copies))
                .instrument(crate::step!("render_room"))
                .await,
        ),
        None => None,
    };
    let mut set = render::render(plan, &bytes).map_err(|source| PublishError::Render {
        class: class.to_owned(),
        source,
    })?;
    if let Some(manifest) = render::manifest::render(plan, &served, previous_manifest, now_ms()) {
        set = set.with(manifest);
    }
    Ok(Fetched {
        set,
        versions,
        served,
        room,
    })
}

/// Rendered bytes the node holds at once across publishes (besides what
/// volumes hold): 50 publishes of a class that fans one value out to 15 MiB
/// of files wait for their turn instead of holding 50 x 15 MiB.
pub const RENDER_BYTES_AT_ONCE: u64 = 32 << 20;

/// The most a plan's files can take once rendered from `values`: each
/// whole value, and each jmesPath file at most its value's size; never more
/// than the volume may hold (rendering stops there).
pub fn render_estimate(plan: &MountPlan, values: &[crate::secret::SecretBytes]) -> u64 {
    let files: u64 = plan
        .objects
        .iter()
        .zip(values)
        .map(|(o, v)| v.len() as u64 * (1 + o.jmes.len() as u64))
        .sum();
    // A template's output is not known before it runs; it is taken to be
    // as large as everything it reads, and its own text.
    let templates: u64 = plan
        .templates
        .iter()
        .map(|t| files.saturating_add(t.source.len() as u64))
        .fold(0, u64::saturating_add);
    files.saturating_add(templates).min(plan.limits.max_bytes)
}

/// The node's room for rendered bytes, counted in KiB.
pub struct RenderBytes {
    room: Arc<tokio::sync::Semaphore>,
    kib: u32,
}

/// Room taken for one rendering; given back when dropped.
#[derive(Debug)]
pub struct InFlight(#[allow(dead_code)] tokio::sync::OwnedSemaphorePermit);

/// What one publish asks of [`RenderBytes`].
#[derive(Clone, Copy)]
pub struct Rendering<'a> {
    pub bytes: &'a RenderBytes,
    /// Copies of the rendered set held at once.
    pub copies: u64,
}

impl RenderBytes {
    pub fn new(bytes: u64) -> Self {
        let kib = u32::try_from(bytes.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .clamp(1, tokio::sync::Semaphore::MAX_PERMITS as u32);
        RenderBytes {
            room: Arc::new(tokio::sync::Semaphore::new(kib as usize)),
            kib,
        }
    }

    /// Waits for room for `bytes`; a rendering larger than all the room
    /// waits for all of it, and then goes alone.
    pub async fn take(&self, bytes: u64) -> InFlight {
        let kib = u32::try_from(bytes.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .clamp(1, self.kib);
        let permit = self
            .room
            .clone()
            .acquire_many_owned(kib)
            .await
            .expect("the render semaphore is never closed");
        InFlight(permit)
    }
}

/// A digest of a file set, with keys no class author knows.
fn digest(state: &std::hash::RandomState, set: &FileSet) -> u64 {
    use std::hash::BuildHasher;
    let mut h = state.build_hasher();
    for f in set.files() {
        (f.path.to_string(), f.mode, f.bytes.expose()).hash(&mut h);
    }
    h.finish()
}

/// The in-flight key of a target: one operation per target at a time too,
/// whatever volume id a request names.
fn target_key(target: &std::path::Path) -> String {
    format!("target:{}", target.display())
}

/// Runs file-system work off the async threads.
async fn blocking<T: Send + 'static>(
    target: &std::path::Path,
    work: impl FnOnce() -> Result<T, VolumeError> + Send + 'static,
) -> Result<T, VolumeError> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| Err(VolumeError::io("work on", target)(std::io::Error::other(e))))
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// One operation per volume at a time; a second one gets Aborted, which
/// kubelet retries (CSI spec "operation pending").
struct VolumeGuard {
    set: Arc<Mutex<HashSet<String>>>,
    id: String,
}

impl VolumeGuard {
    fn take(set: &Arc<Mutex<HashSet<String>>>, id: &str) -> Result<Self, PublishError> {
        let mut s = set.lock().unwrap_or_else(|p| p.into_inner());
        if !s.insert(id.to_owned()) {
            return Err(PublishError::Busy(id.to_owned()));
        }
        Ok(VolumeGuard {
            set: set.clone(),
            id: id.to_owned(),
        })
    }
}

impl Drop for VolumeGuard {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::render::FileEntry;
    use crate::secret::SecretBytes;

    #[test]
    fn a_class_is_planned_again_only_when_it_or_its_region_changed() {
        let spec = |objects: &str| {
            Arc::new(SecretProviderClass::new(
                "c",
                SecretProviderClassSpec {
                    provider: "aws".into(),
                    parameters: [("objects".to_owned(), objects.to_owned())].into(),
                    ..Default::default()
                },
            ))
        };
        let plans = Plans::default();
        let calls = std::cell::Cell::new(0);
        let get = |ns: &str, c: &Arc<SecretProviderClass>, region: Option<&str>| {
            plans.get_or_plan((ns, "c"), c, region, || {
                calls.set(calls.get() + 1);
                spc::plan_class(&c.spec, region, spc::VolumeLimits::default())
            })
        };
        let a = spec("- {objectName: a, objectType: secretsmanager}");
        let first = get("ns", &a, Some("r1")).unwrap();
        // The same object, and a new copy of the same content (a resync).
        let again = get("ns", &a, Some("r1")).unwrap();
        let copy = get("ns", &Arc::new((*a).clone()), Some("r1")).unwrap();
        assert!(Arc::ptr_eq(&first, &again) && Arc::ptr_eq(&first, &copy));
        assert_eq!(calls.get(), 1);
        // Another namespace, another region, other objects: planned anew.
        assert_eq!(get("other", &a, Some("r1")).unwrap().region, "r1");
        assert_eq!(get("ns", &a, Some("r2")).unwrap().region, "r2");
        let b = spec("- {objectName: b, objectType: secretsmanager}");
        assert_eq!(
            get("ns", &b, Some("r2")).unwrap().objects[0].primary.name,
            "b"
        );
        assert_eq!(calls.get(), 4);
        // A broken class is refused each time, and its error not kept.
        let broken = spec("- {objectName: b, objectType: nonsense}");
        assert!(get("ns", &broken, Some("r2")).is_err());
        assert!(get("ns", &broken, Some("r2")).is_err());
        assert_eq!(calls.get(), 6);
        assert_eq!(
            get("ns", &b, Some("r2")).unwrap().objects[0].primary.name,
            "b"
        );
        assert_eq!(calls.get(), 6, "the last good plan is still known");
    }

    #[tokio::test]
    async fn renderings_wait_for_room_among_the_nodes_rendered_bytes() {
        const MI: u64 = 1 << 20;
        let room = RenderBytes::new(32 * MI);
        let soon = std::time::Duration::from_millis(50);
        // Two 15 MiB renderings at once; the third waits for one to end.
        let a = room.take(15 * MI).await;
        let _b = room.take(15 * MI).await;
        assert!(
            tokio::time::timeout(soon, room.take(15 * MI))
                .await
                .is_err()
        );
        drop(a);
        let c = tokio::time::timeout(soon, room.take(15 * MI))
            .await
            .unwrap();
        // Small ones still go beside the big ones.
        let small = tokio::time::timeout(soon, room.take(4096)).await.unwrap();
        drop(c);
        drop(small);
        // One larger than all the room waits for all of it, then goes.
        assert!(
            tokio::time::timeout(soon, room.take(100 * MI))
                .await
                .is_err()
        );
        drop(_b);
        let _huge = tokio::time::timeout(soon, room.take(100 * MI))
            .await
            .unwrap();
        assert!(tokio::time::timeout(soon, room.take(1)).await.is_err());
    }

    #[test]
    fn a_renderings_room_is_its_values_times_their_files_within_the_volume() {
        let params: BTreeMap<String, String> = [
            ("region".to_string(), "r".to_string()),
            (
                "objects".to_string(),
                "- {objectName: a, objectType: secretsmanager, jmesPath: [{path: x, objectAlias: x}, {path: y, objectAlias: y}]}\n- {objectName: b, objectType: secretsmanager}".to_string(),
            ),
        ]
        .into();
        let mut plan = spc::plan(&params, None).unwrap();
        let values = [SecretBytes::from("0123456789"), SecretBytes::from("abc")];
        assert_eq!(render_estimate(&plan, &values), 10 * 3 + 3);
        plan.limits.max_bytes = 20;
        assert_eq!(render_estimate(&plan, &values), 20);
        // Each template counts as everything it reads, and its text.
        let mut params = params;
        params.insert(
            "templates".into(),
            "- {path: t1, template: '{{ .x }}'}\n- {path: t2, template: '{{ .y }}'}".into(),
        );
        let plan = spc::plan(&params, None).unwrap();
        assert_eq!(render_estimate(&plan, &values), 33 + (33 + 8) + (33 + 8));
    }

    #[test]
    fn a_rotation_event_names_the_objects_and_versions_that_changed() {
        let v = |object: &str, version: &str| ServedVersion {
            object: object.into(),
            version: Some(version.into()),
            created_ms: None,
        };
        let before = [v("prod/db", "a"), v("/app/key", "3")];
        assert_eq!(
            rotation_message("app", &before, &[v("prod/db", "b"), v("/app/key", "3")], 4),
            "SecretProviderClass app: rotated prod/db (version a -> b); 4 file(s) swapped atomically"
        );
        // Nothing known before (a driver restart lost the record), or no
        // version changed (the class did): no object is named.
        assert_eq!(
            rotation_message("app", &[], &before, 2),
            "SecretProviderClass app: new content; 2 file(s) swapped atomically"
        );
        assert_eq!(
            rotation_message("app", &before, &before, 2),
            "SecretProviderClass app: new content; 2 file(s) swapped atomically"
        );
        let many_before: Vec<_> = (0..15).map(|i| v(&format!("s{i}"), "1")).collect();
        let many_after: Vec<_> = (0..15).map(|i| v(&format!("s{i}"), "2")).collect();
        let m = rotation_message("app", &many_before, &many_after, 15);
        assert!(m.contains("s9 (version 1 -> 2) and 5 more"), "{m}");
        assert!(!m.contains("s10 "), "{m}");
    }

    #[test]
    fn one_operation_per_volume() {
        let set = Arc::new(Mutex::new(HashSet::new()));
        let g = VolumeGuard::take(&set, "v1").unwrap();
        assert!(matches!(
            VolumeGuard::take(&set, "v1"),
            Err(PublishError::Busy(_))
        ));
        assert!(VolumeGuard::take(&set, "v2").is_ok());
        drop(g);
        assert!(VolumeGuard::take(&set, "v1").is_ok());
    }

    #[test]
    fn only_version_pinned_objects_are_reused() {
        let params: BTreeMap<String, String> = [
            ("region".to_string(), "r".to_string()),
            (
                "objects".to_string(),
                "- {objectName: a, objectType: secretsmanager, objectVersion: v1}\n- {objectName: b, objectType: secretsmanager}\n- {objectName: c, objectType: ssmparameter, objectVersionLabel: l}\n- {objectName: d, objectType: ssmparameter, objectVersion: \"3\"}".to_string(),
            ),
        ]
        .into();
        let plan = spc::plan(&params, None).unwrap();
        let file = |p: &str, v: &str| FileEntry {
            path: spc::FilePath::parse(p).unwrap(),
            mode: 0o644,
            bytes: SecretBytes::from(v),
        };
        let previous = FileSet::new(vec![file("a", "A"), file("b", "B"), file("c", "C")]);
        let known = pinned_values(&plan, &previous);
        assert_eq!(known[0].as_ref().map(|v| v.bytes.expose()), Some(&b"A"[..]));
        assert!(known[1].is_none(), "current versions are always asked");
        assert!(known[2].is_none(), "a label can move");
        assert!(known[3].is_none(), "no earlier file");
    }

    #[test]
    fn a_changed_class_changes_the_fingerprint() {
        let mut spec = SecretProviderClassSpec {
            provider: "aws".into(),
            ..Default::default()
        };
        spec.parameters.insert(
            "objects".into(),
            "- {objectName: a, objectVersion: v1}".into(),
        );
        let before = fingerprint(&spec);
        spec.parameters.insert(
            "objects".into(),
            "- {objectName: a, objectVersion: v2}".into(),
        );
        assert_ne!(before, fingerprint(&spec));
    }
}
