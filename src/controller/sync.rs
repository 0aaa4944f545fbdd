//! One ExternalSecret, synced: its store, the plan (pure, in the core),
//! the store's identity, the shared fetch, the Secret's data (pure), then
//! the Secret and the status, each written only when it changes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_credential_types::Credentials;
use aws_secrets_csi_core::external::{
    self, CreationPolicy, DeletionPolicy, ExternalError, Refresh, Store, StoreAuth, StoreKind,
    SyncPlan,
};
use aws_secrets_csi_core::target_secret::{self, Existing, Policy};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Api;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use kube::runtime::reflector::{ObjectRef, Store as Cache};
use serde_json::{Value, json};

use super::held::Held;
use super::lease::{Fence, Fenced};

use crate::aws::{AwsIdentity, IdentityKey};
use crate::cluster::{Cluster, ClusterError};
use crate::fetch::{FailureKind, FetchError, Fetcher, Priority, Sharing};
use crate::identity::{Identities, IdentityError, IdentityRequest, Source};
use crate::secret::Token;
use aws_secrets_csi_core::aws_events::Change;

/// Field manager of every write of the controller.
pub const MANAGER: &str = "aws-secrets-csi-controller";
/// Label on the Secrets the controller writes.
pub const MANAGED_LABEL: &str = "reconcile.external-secrets.io/managed";
/// Label that lets a Secret be read by `templateFrom`.
pub const TEMPLATE_SOURCE_LABEL: &str = "external-secrets.aws-secrets-csi.io/template-source";

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("{kind} {name}: {source}")]
    Spec {
        kind: &'static str,
        name: String,
        source: ExternalError,
    },
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("{0}")]
    Fetch(#[from] FetchError),
    #[error("Secret {namespace}/{name}: {message}")]
    Secret {
        namespace: String,
        name: String,
        message: String,
    },
    #[error("ExternalSecret status: {0}")]
    Status(String),
    #[error(transparent)]
    Fenced(#[from] Fenced),
    /// The flood gate: the store's status is Ready=False. Its message
    /// (this controller's names the field to fix) is passed on, so the
    /// ExternalSecret says why without a look at the store.
    #[error("{kind} {name} is not ready (its status condition Ready is False: {message})")]
    StoreNotReady {
        kind: &'static str,
        name: String,
        message: String,
    },
    /// The ExternalSecret's namespace could not be read (its labels decide
    /// a ClusterSecretStore's conditions).
    #[error("Namespace {namespace}: {message}")]
    Namespace { namespace: String, message: String },
    /// A ClusterSecretStore's conditions leave this namespace out.
    #[error("{0}")]
    Denied(String),
}

/// A store, checked for an ExternalSecret of its namespace.
pub(crate) struct Resolved {
    pub(crate) store: Store,
    /// `namespace/name`, or the name of a ClusterSecretStore.
    pub(crate) store_id: String,
    /// A digest of the store's spec: a changed store (other credentials,
    /// region) is refreshed through at once, not at its next tick.
    pub(crate) spec_digest: u64,
}

/// The flood gate: Some(the Ready condition's message) when a store's
/// `status` holds a Ready condition that is not True.
pub fn gate(status: &Value) -> Option<String> {
    status["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")
        .filter(|c| c["status"].as_str() != Some("True"))
        .map(|c| c["message"].as_str().unwrap_or_default().to_owned())
}

/// What a sync did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Synced {
    /// Another controller serves the store (`spec.controller`).
    NotOurs,
    /// The Secret was written or already held the data.
    Done {
        written: bool,
        /// Values were read (the refresh time advances); false when a
        /// CreatedOnce or OnChange ExternalSecret had nothing to do.
        refreshed: bool,
        next: Option<Duration>,
        /// The Secret whose data this write changed (not a first write,
        /// not one that changed only labels or annotations): the
        /// workloads that read it may be restarted.
        rotated: Option<String>,
    },
    /// `creationPolicy: Merge` and the Secret does not exist (yet):
    /// nothing is created, as External Secrets does.
    Missing { next: Option<Duration> },
    /// AWS had none of the secrets and `deletionPolicy` is Retain: the
    /// Secret keeps its last data.
    Retained { next: Option<Duration> },
    /// AWS had none of the secrets and `deletionPolicy` is Delete: the
    /// Secret is gone.
    Deleted { next: Option<Duration> },
}

/// The API resources of the External Secrets kinds, at the version the
/// cluster serves.
#[derive(Clone)]
pub struct Kinds {
    pub external_secret: ApiResource,
    pub secret_store: ApiResource,
    pub cluster_secret_store: ApiResource,
}

/// The rules an operator sets for every sync.
#[derive(Debug, Clone)]
pub struct Policies {
    /// The shortest refresh interval honoured.
    pub min_refresh: Duration,
    /// Whether a namespaced SecretStore without `auth` may use the
    /// controller's own AWS identity.
    pub namespaced_stores_use_controller_identity: bool,
}

/// Everything a sync runs on: the node driver's identity and fetch layers,
/// and the cluster.
pub struct Syncer {
    pub client: kube::Client,
    pub cluster: Cluster,
    pub identities: Identities,
    pub fetcher: Fetcher,
    pub kinds: Kinds,
    /// `spec.controller` of the stores served ("" = those without one).
    pub class: String,
    policies: Policies,
    /// Every write checks it: a replica that lost the Lease writes nothing.
    fence: std::sync::Arc<Fence>,
    /// The stores, from their watches (a GET only before the watch has it).
    secret_stores: Cache<Held>,
    cluster_stores: Cache<Held>,
    /// Tokens of store ServiceAccounts, reused while fresh: one
    /// TokenRequest per ServiceAccount per 50 minutes, not per sync.
    tokens: Mutex<HashMap<TokenKey, (Token, Instant)>>,
    /// The role annotation of store ServiceAccounts, reused for a minute:
    /// a GET per ServiceAccount per minute, not per sync.
    roles: Mutex<HashMap<AccountKey, (Option<String>, Instant)>>,
    /// Namespace labels for ClusterSecretStore conditions, reused for a
    /// minute: a GET per namespace per minute, not per sync.
    namespaces: Mutex<HashMap<String, (Labels, Instant)>>,
    /// The `syncedResourceVersion` this controller wrote, by ExternalSecret
    /// UID, until the watch brings it back: a sync that starts right after
    /// a status write (a Secret deleted at once) reads the cached object
    /// without it, and would take itself for a first sync (a CreatedOnce
    /// Orphan Secret was written again).
    /// Kept for [`WATCH_LAG`] at most.
    written_versions: Mutex<HashMap<String, (String, Instant)>>,
    /// When each periodically refreshed ExternalSecret (by UID) reads AWS
    /// next: its store's next tick. One this process has not seen yet (a
    /// restart, a failover) waits for that tick instead of reading at once,
    /// so a new leader does not refresh ten thousand together; the status
    /// keeps no refresh time for it (not written on an unchanged refresh).
    ticks: Mutex<HashMap<String, Tick>>,
    /// The ExternalSecrets' watch cache, for reading ahead (set once the
    /// controller runs; unset, nothing is read ahead).
    external_secrets: std::sync::OnceLock<Cache<Held>>,
    read_ahead: Mutex<ReadAhead>,
}

/// First syncs read ahead: a first sync also asks AWS for what other
/// ExternalSecrets of its store, not synced yet, read (up to one batch),
/// so that ten thousand new ExternalSecrets, taken in fair turns across
/// namespaces (a store's rarely run together), still go to AWS in full
/// batches; theirs then come from the shared values.
#[derive(Default)]
struct ReadAhead {
    /// By store (`namespace/name`, or a ClusterSecretStore's name): the
    /// ExternalSecrets never synced, as of `scanned`.
    unsynced: HashMap<String, Vec<std::sync::Arc<Held>>>,
    scanned: Option<Instant>,
    /// ExternalSecrets (by UID) already read ahead.
    done: HashMap<String, Instant>,
}

/// How often the cache is scanned for ExternalSecrets never synced.
const READ_AHEAD_SCAN: Duration = Duration::from_secs(5);

/// The next periodic read of an ExternalSecret, and the digest of the
/// stores it read through last.
#[derive(Clone, Copy)]
struct Tick {
    at: std::time::SystemTime,
    stores: u64,
}

type Labels = BTreeMap<String, String>;

/// (namespace, service account) of a store.
type AccountKey = (String, String);

/// (namespace, service account, audience) of a store's token.
type TokenKey = (String, String, String);

const TOKEN_SECONDS: i64 = 3600;
/// Longer than a watch takes to bring back a status write.
const WATCH_LAG: Duration = Duration::from_secs(60);
const TOKEN_REUSE: Duration = Duration::from_secs(50 * 60);
const ROLE_REUSE: Duration = Duration::from_secs(60);

impl Syncer {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        client: kube::Client,
        identities: Identities,
        fetcher: Fetcher,
        kinds: Kinds,
        class: String,
        policies: Policies,
        fence: std::sync::Arc<Fence>,
        secret_stores: Cache<Held>,
        cluster_stores: Cache<Held>,
    ) -> Self {
        Syncer {
            cluster: Cluster::new(client.clone(), "aws-secrets-csi-controller".into()),
            client,
            identities,
            fetcher,
            kinds,
            class,
            policies,
            fence,
            secret_stores,
            cluster_stores,
            tokens: Mutex::default(),
            roles: Mutex::default(),
            namespaces: Mutex::default(),
            written_versions: Mutex::default(),
            ticks: Mutex::default(),
            external_secrets: std::sync::OnceLock::new(),
            read_ahead: Mutex::default(),
        }
    }

    /// First syncs read ahead for the ExternalSecrets of this cache.
    pub fn read_ahead_from(&self, external_secrets: Cache<Held>) {
        let _ = self.external_secrets.set(external_secrets);
    }

    /// The objects other ExternalSecrets of `store_id` (never synced, not
    /// read ahead yet) read, as one plan: at most `room` objects.
    fn companions(
        &self,
        es: &DynamicObject,
        store_id: &str,
        store: &Store,
        own: &aws_secrets_csi_core::spc::MountPlan,
        room: usize,
    ) -> Option<aws_secrets_csi_core::spc::MountPlan> {
        let cache = self.external_secrets.get()?;
        if room == 0 {
            return None;
        }
        let mut ahead = self.read_ahead.lock().unwrap_or_else(|p| p.into_inner());
        if ahead.scanned.is_none_or(|t| t.elapsed() >= READ_AHEAD_SCAN) {
            let mut unsynced: HashMap<String, Vec<std::sync::Arc<Held>>> = HashMap::new();
            for held in cache.state() {
                if held.refusal.is_some() || self.synced_version(&held.object).is_some() {
                    continue;
                }
                let Ok(r) = external::store_ref(&held.object.data["spec"]) else {
                    continue;
                };
                let id = match r.kind {
                    StoreKind::SecretStore => format!(
                        "{}/{}",
                        held.object
                            .metadata
                            .namespace
                            .as_deref()
                            .unwrap_or_default(),
                        r.name
                    ),
                    StoreKind::ClusterSecretStore => r.name.clone(),
                };
                unsynced.entry(id).or_default().push(held);
            }
            ahead.unsynced = unsynced;
            ahead.scanned = Some(Instant::now());
            let retain = Duration::from_secs(600);
            ahead.done.retain(|_, at| at.elapsed() < retain);
        }
        let me = es.metadata.uid.as_deref().unwrap_or_default();
        let my_ns = es.metadata.namespace.as_deref().unwrap_or_default();
        let candidates = ahead.unsynced.get(store_id).cloned().unwrap_or_default();
        let mut plan = own.clone();
        plan.objects.clear();
        // Bounded work under the lock: a few candidates per object of room.
        for held in candidates.into_iter().take(room * 4) {
            // Another namespace's ExternalSecret is read ahead only where
            // the store is the same for it (a ClusterSecretStore's `jwt`
            // without a namespace takes each ExternalSecret's own) and lets
            // every namespace in (no conditions): no namespace makes AWS
            // calls under an identity its own sync would not use.
            let their_ns = held
                .object
                .metadata
                .namespace
                .as_deref()
                .unwrap_or_default();
            if their_ns != my_ns {
                let same = store.conditions.is_empty()
                    && external::store_ref(&held.object.data["spec"])
                        .ok()
                        .and_then(|r| self.watched_store(their_ns, &r))
                        .is_some_and(|theirs| theirs == *store);
                if !same {
                    continue;
                }
            }
            let Some(uid) = held.object.metadata.uid.as_deref() else {
                continue;
            };
            if uid == me || ahead.done.contains_key(uid) {
                continue;
            }
            let name = held.object.metadata.name.clone().unwrap_or_default();
            // Parts through other stores are theirs to read.
            let spec = &held.object.data["spec"];
            if external::source_stores(spec).is_ok_and(|s| !s.is_empty()) {
                continue;
            }
            let Ok(theirs) = external::sync_plan(&name, spec, store) else {
                continue;
            };
            let objects = theirs.reads().values.objects;
            if objects.is_empty() || plan.objects.len() + objects.len() > room {
                continue;
            }
            ahead.done.insert(uid.to_owned(), Instant::now());
            plan.objects.extend(objects);
            if plan.objects.len() == room {
                break;
            }
        }
        (!plan.objects.is_empty()).then_some(plan)
    }

    /// The next sync of this ExternalSecret reads AWS whatever its tick
    /// (AWS reported a change of an object it reads).
    pub fn refresh_now(&self, es: &DynamicObject) {
        if let Some(uid) = es.metadata.uid.as_deref() {
            self.ticks_mut()
                .entry(uid.to_owned())
                .or_insert(Tick {
                    at: std::time::SystemTime::UNIX_EPOCH,
                    stores: 0,
                })
                .at = std::time::SystemTime::UNIX_EPOCH;
        }
    }

    /// Forgets the ticks of ExternalSecrets no longer held.
    pub fn retain_ticks(&self, held: impl Fn(&str) -> bool) {
        self.ticks_mut().retain(|uid, _| held(uid));
    }

    fn ticks_mut(&self) -> std::sync::MutexGuard<'_, HashMap<String, Tick>> {
        self.ticks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a periodic refresh of an unchanged ExternalSecret is due
    /// now; if not, how long until it is. The first look of this process
    /// schedules it at the store's next tick; a store changed since the
    /// last read makes it due.
    fn tick_due(
        &self,
        uid: &str,
        interval: Duration,
        clock: &str,
        stores: u64,
    ) -> Result<(), Duration> {
        let now = std::time::SystemTime::now();
        let mut ticks = self.ticks_mut();
        let tick = *ticks.entry(uid.to_owned()).or_insert_with(|| Tick {
            at: now + until_next_tick(interval, clock, now),
            stores,
        });
        if tick.stores != stores {
            return Ok(());
        }
        let at = tick.at;
        // A requeue may wake a little early (timers, a wait for a slot
        // counts the other way): within a second (or a tenth of the
        // interval) of its tick is the tick.
        let early = (interval / 10).min(Duration::from_secs(1));
        match at.duration_since(now + early) {
            Ok(wait) if !wait.is_zero() => Err(wait + early),
            _ => Ok(()),
        }
    }

    /// A refresh read AWS: the next is at the store's next tick.
    fn refreshed(&self, uid: &str, next: Duration, stores: u64) {
        self.ticks_mut().insert(
            uid.to_owned(),
            Tick {
                at: std::time::SystemTime::now() + next,
                stores,
            },
        );
    }

    /// The field manager of one ExternalSecret's writes: each owns the keys
    /// it writes, so two ExternalSecrets merging into one Secret (or an
    /// Owner and a Merge one) keep each other's keys.
    fn manager(es_uid: &str) -> String {
        format!("{MANAGER}/{es_uid}")
    }

    /// Syncs one ExternalSecret and records the outcome in its status.
    /// `slot` (its place among the syncs in flight) is given back before
    /// the status is written: the next sync of the tick reaches the fetch
    /// sooner, so one tick's refreshes go to AWS in fewer batches.
    pub async fn sync<Slot>(&self, held: &Held, slot: Slot) -> Result<Synced, SyncError> {
        let es = &held.object;
        let result = match &held.refusal {
            // Held without its spec: refused alone, in its own status.
            Some(refusal) => Err(SyncError::Spec {
                kind: "ExternalSecret",
                name: format!(
                    "{}/{}",
                    es.metadata.namespace.as_deref().unwrap_or_default(),
                    es.metadata.name.as_deref().unwrap_or_default()
                ),
                source: ExternalError::Invalid {
                    path: "spec".into(),
                    why: refusal.to_string(),
                },
            }),
            None => self.sync_data(es).await,
        };
        drop(slot);
        // Ready outcomes: (reason, message, written, refreshed).
        let ready = match &result {
            Ok(Synced::Done {
                written, refreshed, ..
            }) => Some(("SecretSynced", "Secret was synced", *written, *refreshed)),
            Ok(Synced::Missing { .. }) => Some((
                "SecretMissing",
                "secret will not be created, creation policy is Merge",
                false,
                true,
            )),
            Ok(Synced::Retained { .. }) => Some((
                "SecretSynced",
                "secret retained due to DeletionPolicy=Retain",
                false,
                true,
            )),
            Ok(Synced::Deleted { .. }) => Some((
                "SecretDeleted",
                "secret deleted due to DeletionPolicy=Delete",
                false,
                true,
            )),
            _ => None,
        };
        if let Some((reason, message, written, refreshed)) = ready {
            let outcome = Outcome {
                ready: true,
                reason,
                message,
                written,
                refreshed,
            };
            self.status(es, &outcome).await?;
        }
        match &result {
            Ok(_) => {}
            // Nothing more is written by a replica that lost the Lease.
            Err(SyncError::Fenced(_)) => {}
            Err(e) => {
                let message = e.to_string();
                let outcome = Outcome {
                    ready: false,
                    reason: "SecretSyncedError",
                    message: &message,
                    written: false,
                    refreshed: false,
                };
                self.status(es, &outcome).await?;
            }
        }
        result
    }

    /// Whether a periodic refresh of `es` reads the object `change` names,
    /// through its own store or a `sourceRef.storeRef`'s (each store's
    /// region, service and prefix applied as a sync applies them), or may
    /// find it (`dataFrom.find` of that service and region). From the
    /// watches alone: no call. An ExternalSecret refreshed only on a change
    /// of its own (`CreatedOnce`, `OnChange`, interval 0) reads nothing
    /// here, as External Secrets' refresh rules have it.
    pub(crate) fn reads_change(&self, es: &DynamicObject, change: &Change) -> bool {
        let ns = es.metadata.namespace.clone().unwrap_or_default();
        let name = es.metadata.name.clone().unwrap_or_default();
        let spec = es.data.get("spec").cloned().unwrap_or(Value::Null);
        let Ok(own) = external::store_ref(&spec) else {
            return false;
        };
        let parts = external::source_stores(&spec).unwrap_or_default();
        std::iter::once((own, external::Part::Own))
            .chain(
                parts
                    .into_iter()
                    .map(|r| (r.clone(), external::Part::Store(r))),
            )
            .any(|(store_ref, part)| {
                let Some(store) = self.watched_store(&ns, &store_ref) else {
                    return false;
                };
                let Ok(plan) = external::sync_plan_part(&name, &spec, &store, &part) else {
                    return false;
                };
                if !matches!(plan.refresh, Refresh::Every(_)) {
                    return false;
                }
                let region = plan.objects.region.as_str();
                plan.objects
                    .objects
                    .iter()
                    .any(|o| change.is_read_by(o.object_type, region, &o.primary.name))
                    // A find may come to read any object of its service.
                    || (!plan.finds.is_empty()
                        && change.service == store.service
                        && (change.region.is_empty() || change.region == region))
            })
    }

    /// Whether both store watches have listed.
    pub(crate) fn stores_listed(&self) -> bool {
        super::events::ready(&self.secret_stores) && super::events::ready(&self.cluster_stores)
    }

    /// A store as its watch holds it, planned as a sync would (no GET, no
    /// wait: what the watch has not seen is not read).
    fn watched_store(&self, ns: &str, store_ref: &external::StoreRef) -> Option<external::Store> {
        let (cache, resource, store_ns) = match store_ref.kind {
            StoreKind::SecretStore => (&self.secret_stores, &self.kinds.secret_store, Some(ns)),
            StoreKind::ClusterSecretStore => {
                (&self.cluster_stores, &self.kinds.cluster_secret_store, None)
            }
        };
        let mut key = ObjectRef::new_with(&store_ref.name, resource.clone());
        if let Some(ns) = store_ns {
            key = key.within(ns);
        }
        let held = cache.get(&key)?;
        let spec = held.object.data.get("spec").cloned().unwrap_or(Value::Null);
        if !external::served_by(&spec, &self.class) {
            return None;
        }
        external::store_status::usable(
            &spec,
            store_ns,
            self.policies.namespaced_stores_use_controller_identity,
        )
        .ok()
        .map(|s| s.for_sync(ns, &store_ref.name, store_ref.kind))
    }

    /// A store, from its watch. A store the watch has not seen does not
    /// exist (yet): when it appears, its watch event syncs the
    /// ExternalSecrets that name it. Before the watch's first list, the
    /// lookup waits for it (at most 30 s).
    async fn store_object(
        &self,
        kind: StoreKind,
        namespace: &str,
        name: &str,
    ) -> Result<std::sync::Arc<Held>, SyncError> {
        let (cache, resource, ns, label) = match kind {
            StoreKind::SecretStore => (
                &self.secret_stores,
                &self.kinds.secret_store,
                Some(namespace),
                "SecretStore",
            ),
            StoreKind::ClusterSecretStore => (
                &self.cluster_stores,
                &self.kinds.cluster_secret_store,
                None,
                "ClusterSecretStore",
            ),
        };
        let mut key = ObjectRef::new_with(name, resource.clone());
        if let Some(ns) = ns {
            key = key.within(ns);
        }
        // Polled, not awaited: kube's readiness signal wakes only one of
        // several waiters (the others slept out their timeout).
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(held) = cache.get(&key) {
                return Ok(held);
            }
            if futures::FutureExt::now_or_never(cache.wait_until_ready()).is_some() {
                return Err(ClusterError::NotFound {
                    kind: label,
                    namespace: ns.unwrap_or_default().to_owned(),
                    name: name.to_owned(),
                }
                .into());
            }
            if Instant::now() >= deadline {
                return Err(ClusterError::Unavailable {
                    kind: label,
                    namespace: ns.unwrap_or_default().to_owned(),
                    name: name.to_owned(),
                    message: "the watch has not listed the stores yet".into(),
                }
                .into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn sync_data(&self, es: &DynamicObject) -> Result<Synced, SyncError> {
        let ns = es.metadata.namespace.clone().unwrap_or_default();
        let name = es.metadata.name.clone().unwrap_or_default();
        let spec = es.data.get("spec").cloned().unwrap_or(Value::Null);
        let spec_error = |kind, name: &str| {
            let name = name.to_owned();
            move |source| SyncError::Spec { kind, name, source }
        };
        let es_id = format!("{ns}/{name}");
        let store_ref = external::store_ref(&spec).map_err(spec_error("ExternalSecret", &es_id))?;
        let Some(Resolved {
            store,
            store_id,
            spec_digest,
        }) = self.resolve_store(&ns, &store_ref).await?
        else {
            return Ok(Synced::NotOurs);
        };
        // The stores entries name in `sourceRef.storeRef`: each is checked
        // as the ExternalSecret's own store is, before anything is fetched.
        let source_stores =
            external::source_stores(&spec).map_err(spec_error("ExternalSecret", &es_id))?;
        let mut parts = Vec::with_capacity(source_stores.len());
        for r in source_stores {
            let kind = match r.kind {
                StoreKind::SecretStore => "SecretStore",
                StoreKind::ClusterSecretStore => "ClusterSecretStore",
            };
            match self.resolve_store(&ns, &r).await? {
                Some(resolved) => parts.push((r, resolved)),
                None => {
                    return Err(SyncError::Denied(format!(
                        "{kind} {} (a sourceRef.storeRef) is served by another controller",
                        r.name
                    )));
                }
            }
        }
        let plan = external::sync_plan(&name, &spec, &store)
            .map_err(spec_error("ExternalSecret", &es_id))?;
        let version = version_of(es);
        let synced = self.synced_version(es);
        let synced = synced.as_deref();
        let api = Api::<Secret>::namespaced(self.client.clone(), &ns);
        let get_secret = || async {
            api.get_opt(&plan.target.name)
                .await
                .map_err(|e| SyncError::Secret {
                    namespace: ns.clone(),
                    name: plan.target.name.clone(),
                    message: e.to_string(),
                })
        };
        let mut due = external::refresh_due(plan.refresh, synced, &version);
        // One clock per identity (auth, role chain, region), not per store:
        // the stores of one identity refresh at the same instants, so a
        // secret several of them read goes to AWS once an interval.
        let clock = format!("{:?}|{:?}|{}", store.auth, store.chain, store.region);
        // The stores read through, as they are now.
        let stores = parts.iter().fold(spec_digest, |d, (_, part)| {
            d.rotate_left(7) ^ part.spec_digest
        });
        // A periodic refresh of an unchanged ExternalSecret at its store's
        // tick; between ticks (a watch event, a restart) only the Secret
        // is checked.
        let mut tick_next = None;
        let uid = es.metadata.uid.clone().unwrap_or_default();
        if let Refresh::Every(d) = plan.refresh
            && !due
        {
            if plan.target.creation == CreationPolicy::Merge {
                // A Merge target's keys live in a Secret others write (it
                // may be made after this one, or made again): only writing
                // them shows they are there, so each of its syncs goes
                // through the fetch (values shared), as before ticks.
                due = true;
            } else {
                match self.tick_due(&uid, d.max(self.policies.min_refresh), &clock, stores) {
                    Ok(()) => due = true,
                    Err(wait) => tick_next = Some(wait),
                }
            }
        }
        // syncWindows gate the periodic refreshes only: a change, a first
        // sync or a missing Secret still syncs. The next look is when a
        // window opens (or the next tick, if sooner).
        let mut window_next = None;
        if let (Refresh::Every(_), Some(windows)) = (plan.refresh, &plan.windows)
            && synced == Some(version.as_str())
        {
            let now = std::time::SystemTime::now();
            if !windows.allows(now) {
                due = false;
                window_next = windows
                    .next_allowed(now)
                    .and_then(|t| t.duration_since(now).ok());
            }
        }
        // The Secret is read before the fetch only when it decides whether
        // to fetch at all; a periodic refresh reads it after, so that the
        // refreshes of one tick reach the fetch together (one batch).
        let mut early = None;
        if !due {
            let existing = get_secret().await?;
            // External Secrets' isSecretValid: an Orphan target (or none)
            // is always as written, even deleted (CreatedOnce does not
            // bring it back); any other must exist, marked and unedited.
            let valid = existing.as_ref().is_some_and(|s| intact(s, &plan))
                || matches!(
                    plan.target.creation,
                    CreationPolicy::Orphan | CreationPolicy::None
                );
            if valid {
                // CreatedOnce, interval 0 or OnChange with nothing changed
                // (or a closed window), and the Secret as written: nothing
                // to read or write.
                let next = match plan.refresh {
                    Refresh::Every(d) => Some(
                        tick_next
                            .unwrap_or_else(|| {
                                until_next_tick(
                                    d.max(self.policies.min_refresh),
                                    &clock,
                                    std::time::SystemTime::now(),
                                )
                            })
                            .min(window_next.unwrap_or(Duration::MAX)),
                    ),
                    _ => None,
                };
                return Ok(Synced::Done {
                    written: false,
                    refreshed: false,
                    next,
                    rotated: None,
                });
            }
            early = Some(existing);
        }
        let (identity, scope) = self.identity(&store, &store_id, &name).await?;
        // ExternalSecrets of one identity that read one secret share one
        // value fetched at their common tick (see `until_next_tick`) for a
        // quarter of the interval: long enough for a tick's syncs, which
        // their status writes spread over seconds, to reach the fetch
        // (a tenth gave a second batch per tick), short enough that every
        // tick still asks AWS once.
        // The operator's floor on refresh intervals.
        let refresh = match plan.refresh {
            Refresh::Every(d) => Refresh::Every(d.max(self.policies.min_refresh)),
            other => other,
        };
        // A change of the ExternalSecret (its spec, or a label or annotation
        // such as `force-sync`) reads AWS afresh.
        let changed = synced.is_some_and(|s| s != version);
        // A first sync takes a value read within the interval (read ahead
        // for it by another of its store's first syncs): as fresh as a
        // periodic refresh promises.
        let max_age = match refresh {
            Refresh::Every(d) if synced.is_none() => d,
            Refresh::Every(d) if !changed => (d / 4).max(Duration::from_secs(1)),
            _ => Duration::ZERO,
        };
        let sharing = Sharing {
            scope: Some(scope),
            max_age,
            priority: Priority::FirstMount,
        };
        let ahead = match refresh {
            Refresh::Every(_) if synced.is_none() && parts.is_empty() => {
                let own = plan.reads().values;
                let batch: usize = match store.service {
                    aws_secrets_csi_core::spc::ObjectType::SecretsManager => 20,
                    _ => 10,
                };
                self.companions(
                    es,
                    &store_id,
                    &store,
                    &own,
                    batch.saturating_sub(own.objects.len()),
                )
            }
            _ => None,
        };
        // Both at once: the fetch layer's batch window puts them in one call.
        let (values, _) = tokio::join!(self.values(es, &plan, &identity, &sharing), async {
            if let Some(ahead) = &ahead {
                self.fetcher
                    .fetch_each(ahead, &identity, &[], &sharing)
                    .await;
            }
        });
        let values = values?;
        let found = self.find(&plan, &store, &identity, &sharing).await?;
        let mut entries = external::provider_entries(&plan, &values, &found)
            .map_err(spec_error("ExternalSecret", &es_id))?;
        // The entries read through other stores, each with its own
        // identity, fetched together.
        let others = futures::future::try_join_all(
            parts
                .iter()
                .map(|(r, part)| self.part_entries(es, &spec, r, part, max_age)),
        )
        .await?;
        entries.extend(others.into_iter().flatten());
        let existing = match early {
            Some(existing) => existing,
            None => get_secret().await?,
        };
        let data = external::merge_entries(entries);
        let next = match refresh {
            Refresh::Every(d) => {
                let next = until_next_tick(d, &clock, std::time::SystemTime::now());
                self.refreshed(&uid, next, stores);
                Some(next)
            }
            Refresh::Once | Refresh::OnChange => None,
        };
        // AWS has none of the secrets: the deletion policy decides, before
        // any template runs (as External Secrets does).
        if data.is_empty() {
            match plan.target.deletion {
                DeletionPolicy::Retain => return Ok(Synced::Retained { next }),
                DeletionPolicy::Delete => {
                    self.delete_target(es, &plan, existing).await?;
                    return Ok(Synced::Deleted { next });
                }
                DeletionPolicy::Merge => {}
            }
        }
        if plan.target.creation == CreationPolicy::Merge && existing.is_none() {
            return Ok(Synced::Missing {
                next: match plan.refresh {
                    Refresh::Every(d) => Some(d.max(self.policies.min_refresh)),
                    Refresh::Once | Refresh::OnChange => None,
                },
            });
        }
        let sources = self.template_sources(&ns, &plan).await?;
        let rendered = external::render_target(&plan, data, &sources)
            .map_err(spec_error("ExternalSecret", &es_id))?;
        let write = self
            .write_secret(es, &ns, &plan, rendered, existing)
            .await?;
        Ok(Synced::Done {
            written: write != Write::Unchanged,
            refreshed: true,
            next,
            rotated: (write == Write::DataChanged).then(|| plan.target.name.clone()),
        })
    }

    /// Whether the ExternalSecret was never synced, or changed (spec,
    /// labels, annotations such as `force-sync`) since its last sync: its
    /// sync goes before periodic refreshes.
    pub fn is_new_or_changed(&self, es: &DynamicObject) -> bool {
        self.synced_version(es).as_deref() != Some(version_of(es).as_str())
    }

    /// The version of the ExternalSecret last synced: its status's, or the
    /// one this controller wrote and the watch has not brought back yet.
    fn synced_version(&self, es: &DynamicObject) -> Option<String> {
        let cached = es.data["status"]["syncedResourceVersion"]
            .as_str()
            .filter(|s| !s.is_empty());
        let uid = es.metadata.uid.as_deref()?;
        let mut written = self
            .written_versions
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match (cached, written.get(uid)) {
            // The watch caught up: forget it.
            (Some(c), Some((w, _))) if c == w => {
                written.remove(uid);
                Some(c.to_owned())
            }
            (_, Some((w, at))) if at.elapsed() < WATCH_LAG => Some(w.clone()),
            (c, _) => {
                written.remove(uid);
                c.map(str::to_owned)
            }
        }
    }

    /// A store an ExternalSecret reads through, checked: it exists and is
    /// valid, not held back by the flood gate, served by this controller
    /// (None when not), its conditions admit the namespace, and a
    /// namespaced store without auth is allowed to lend the controller's
    /// identity.
    pub(crate) async fn resolve_store(
        &self,
        ns: &str,
        store_ref: &external::StoreRef,
    ) -> Result<Option<Resolved>, SyncError> {
        let spec_error = |kind, name: &str| {
            let name = name.to_owned();
            move |source| SyncError::Spec { kind, name, source }
        };
        let (store_ns, store_kind): (Option<&str>, &'static str) = match store_ref.kind {
            StoreKind::SecretStore => (Some(ns), "SecretStore"),
            StoreKind::ClusterSecretStore => (None, "ClusterSecretStore"),
        };
        let store_obj = self
            .store_object(store_ref.kind, ns, &store_ref.name)
            .await?;
        let store_id = match store_ns {
            Some(n) => format!("{n}/{}", store_ref.name),
            None => store_ref.name.clone(),
        };
        if let Some(refusal) = &store_obj.refusal {
            return Err(spec_error(store_kind, &store_id)(ExternalError::Invalid {
                path: "spec".into(),
                why: refusal.to_string(),
            }));
        }
        // The flood gate: a store whose status says it is not ready (its
        // controller found it invalid) is not used.
        if let Some(message) = gate(&store_obj.object.data["status"]) {
            return Err(SyncError::StoreNotReady {
                kind: store_kind,
                name: store_id.clone(),
                message,
            });
        }
        let store_spec = store_obj
            .object
            .data
            .get("spec")
            .cloned()
            .unwrap_or(Value::Null);
        if !external::served_by(&store_spec, &self.class) {
            return Ok(None);
        }
        // The rules the store's status reports (store_status.rs), so that a
        // store marked ready is one a sync uses.
        let store = external::store_status::usable(
            &store_spec,
            store_ns,
            self.policies.namespaced_stores_use_controller_identity,
        )
        .map_err(spec_error(store_kind, &store_id))?
        .for_sync(ns, &store_ref.name, store_ref.kind);
        if !store.conditions.is_empty() {
            let labels = self.namespace_labels(ns).await?;
            external::conditions::check_namespace(
                &store_ref.name,
                &store.conditions,
                external::conditions::Namespace {
                    name: ns,
                    labels: &labels,
                },
            )
            .map_err(|e| SyncError::Denied(e.to_string()))?;
        }
        let spec_digest = {
            use std::hash::{DefaultHasher, Hash, Hasher};
            let mut h = DefaultHasher::new();
            store_spec.to_string().hash(&mut h);
            h.finish()
        };
        Ok(Some(Resolved {
            store,
            store_id,
            spec_digest,
        }))
    }

    /// The keys of the entries whose `sourceRef.storeRef` names `store_ref`,
    /// read through that store with its own identity.
    async fn part_entries(
        &self,
        es: &DynamicObject,
        spec: &Value,
        store_ref: &external::StoreRef,
        part: &Resolved,
        max_age: Duration,
    ) -> Result<external::EntryKeys, SyncError> {
        let name = es.metadata.name.clone().unwrap_or_default();
        let es_id = format!(
            "{}/{name}",
            es.metadata.namespace.as_deref().unwrap_or_default()
        );
        let spec_error = |source| SyncError::Spec {
            kind: "ExternalSecret",
            name: es_id.clone(),
            source,
        };
        let plan = external::sync_plan_part(
            &name,
            spec,
            &part.store,
            &external::Part::Store(store_ref.clone()),
        )
        .map_err(spec_error)?;
        let (identity, scope) = self.identity(&part.store, &part.store_id, &name).await?;
        let sharing = Sharing {
            scope: Some(scope),
            max_age,
            priority: Priority::FirstMount,
        };
        let values = self.values(es, &plan, &identity, &sharing).await?;
        let found = self.find(&plan, &part.store, &identity, &sharing).await?;
        external::provider_entries(&plan, &values, &found).map_err(spec_error)
    }

    /// The values of the plan's objects, in plan order, from the shared
    /// fetch. Under `deletionPolicy` Delete or Merge a secret that is gone
    /// is skipped (None, with an event naming its entry); under Retain it
    /// fails the sync.
    pub(crate) async fn values(
        &self,
        es: &DynamicObject,
        plan: &SyncPlan,
        identity: &AwsIdentity,
        sharing: &Sharing,
    ) -> Result<Vec<Option<crate::secret::SecretBytes>>, SyncError> {
        // Objects read for their value go through the batched, shared
        // fetch; those read for their tags (`metadataPolicy: Fetch`), one
        // tag call each, at the same time.
        let reads = plan.reads();
        let tagged: Vec<(crate::spc::ObjectType, &str)> = reads
            .tag_objects
            .iter()
            .map(|&i| {
                let o = &plan.objects.objects[i];
                (o.object_type, o.primary.name.as_str())
            })
            .collect();
        let (fetched, tags) = tokio::join!(
            async {
                if reads.values.objects.is_empty() {
                    return Vec::new();
                }
                self.fetcher
                    .fetch_each(&reads.values, identity, &[], sharing)
                    .await
            },
            async {
                if tagged.is_empty() {
                    return Vec::new();
                }
                self.fetcher
                    .tags(&plan.objects.region, identity, &tagged)
                    .await
            },
        );
        let outcomes: Vec<Result<crate::secret::SecretBytes, crate::fetch::ObjectFailure>> = plan
            .merge_reads(
                &reads,
                fetched.into_iter().map(|o| o.map(|v| v.bytes)),
                tags.into_iter()
                    .map(|o| o.map(|t| external::tags::tags_json(&t).into())),
            )
            .into_iter()
            .enumerate()
            .map(|(i, o)| {
                o.unwrap_or_else(|| {
                    Err(crate::fetch::ObjectFailure::not_requested(
                        plan.objects.objects[i].name(),
                        &plan.objects.region,
                    ))
                })
            })
            .collect();
        let skip_missing = plan.target.deletion != DeletionPolicy::Retain;
        let mut values = Vec::with_capacity(outcomes.len());
        let mut failures = Vec::new();
        let mut missing = Vec::new();
        for (index, outcome) in outcomes.into_iter().enumerate() {
            match outcome {
                Ok(v) => values.push(Some(v)),
                Err(f) if skip_missing && f.kind() == FailureKind::NotFound => {
                    missing.push(index);
                    values.push(None);
                }
                Err(f) => failures.push(f),
            }
        }
        if !failures.is_empty() {
            return Err(FetchError { failures }.into());
        }
        // One event a sync, naming at most a few entries: an ExternalSecret
        // of 500 keys all gone must not cost 500 API writes a refresh.
        const NAMED: usize = 5;
        let gone: Vec<String> = missing
            .iter()
            .flat_map(|&index| {
                let name = plan.objects.objects[index].name();
                plan.entries_reading(index)
                    .into_iter()
                    .map(move |entry| format!("{entry} (key={name})"))
            })
            .collect();
        if !gone.is_empty() {
            let mut message = format!(
                "secret does not exist at provider using {}",
                gone[..gone.len().min(NAMED)].join(", ")
            );
            if gone.len() > NAMED {
                message += &format!(" and {} more", gone.len() - NAMED);
            }
            self.event(es, "Normal", "MissingProviderSecret", &message)
                .await;
        }
        Ok(values)
    }

    /// `deletionPolicy: Delete` with nothing left in AWS: the Secret goes,
    /// if this ExternalSecret controls it (never one it does not own).
    async fn delete_target(
        &self,
        es: &DynamicObject,
        plan: &SyncPlan,
        existing: Option<Secret>,
    ) -> Result<(), SyncError> {
        let ns = es.metadata.namespace.clone().unwrap_or_default();
        let secret_error = |message: String| SyncError::Secret {
            namespace: ns.clone(),
            name: plan.target.name.clone(),
            message,
        };
        if plan.target.creation != CreationPolicy::Owner {
            return Err(secret_error(
                "not deleted: deletionPolicy Delete needs creationPolicy Owner".into(),
            ));
        }
        let Some(secret) = existing else {
            return Ok(());
        };
        let ours = secret
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|o| o.controller == Some(true) && Some(&o.uid) == es.metadata.uid.as_ref());
        if !ours {
            return Err(secret_error(
                "not deleted: this ExternalSecret does not own it".into(),
            ));
        }
        self.fence.check()?;
        // The UID precondition: a Secret made anew under the same name
        // since it was read is not ours to delete.
        let params = kube::api::DeleteParams {
            preconditions: Some(kube::api::Preconditions {
                uid: secret.metadata.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        let api = Api::<Secret>::namespaced(self.client.clone(), &ns);
        match api.delete(&plan.target.name, &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
            Err(e) => return Err(secret_error(e.to_string())),
        }
        self.event(
            es,
            "Normal",
            "Deleted",
            "secret deleted due to DeletionPolicy=Delete",
        )
        .await;
        Ok(())
    }

    /// The objects `dataFrom.find` selects (listed, filtered, at most
    /// [`external::MAX_FOUND`] a find), with their values from the same
    /// batched, shared fetch.
    pub(crate) async fn find(
        &self,
        plan: &SyncPlan,
        store: &Store,
        identity: &AwsIdentity,
        sharing: &Sharing,
    ) -> Result<Vec<(usize, String, crate::secret::SecretBytes)>, SyncError> {
        if plan.finds.is_empty() {
            return Ok(Vec::new());
        }
        let mut wanted: Vec<(usize, String)> = Vec::new();
        for (index, find) in plan.finds.iter().enumerate() {
            let listing = crate::fetch::Listing {
                service: store.service,
                prefix: find.path.clone(),
                tags: find.tags.clone(),
                cap: 10 * external::MAX_FOUND,
            };
            let names = self.fetcher.list(&store.region, identity, &listing).await?;
            wanted.extend(
                names
                    .into_iter()
                    .filter(|n| find.matches(n))
                    .take(external::MAX_FOUND)
                    .map(|n| (index, n)),
            );
        }
        let names: Vec<String> = wanted.iter().map(|(_, n)| n.clone()).collect();
        let objects = external::found_plan(plan, store.service, &names);
        let outcomes = self
            .fetcher
            .fetch_each(&objects, identity, &[], sharing)
            .await;
        let mut out = Vec::with_capacity(wanted.len());
        let mut failures = Vec::new();
        for ((index, name), outcome) in wanted.into_iter().zip(outcomes) {
            match outcome {
                Ok(value) => out.push((index, name, value.bytes)),
                // Listed, then deleted before its value was read: it is
                // not found, as if listed a moment later.
                Err(f) if f.kind() == FailureKind::NotFound => {}
                Err(f) => failures.push(f),
            }
        }
        if failures.is_empty() {
            Ok(out)
        } else {
            Err(FetchError { failures }.into())
        }
    }

    /// The credentials of a store, and the scope values are shared in.
    pub(crate) async fn identity(
        &self,
        store: &Store,
        store_id: &str,
        es_name: &str,
    ) -> Result<(AwsIdentity, IdentityKey), SyncError> {
        const SESSION: &str = "aws-secrets-csi-controller";
        let scope = |source: String, namespace: &str, service_account: &str| IdentityKey {
            source,
            namespace: namespace.to_owned(),
            service_account: service_account.to_owned(),
            chain: store.chain.clone(),
            region: store.region.clone(),
        };
        match &store.auth {
            StoreAuth::Jwt {
                namespace,
                service_account,
                audience,
            } => {
                let role = self
                    .role(namespace, service_account)
                    .await?
                    .ok_or_else(|| IdentityError::NoRole {
                        namespace: namespace.clone(),
                        service_account: service_account.clone(),
                    })?;
                let token = self.token(namespace, service_account, audience).await?;
                let who = IdentityRequest {
                    namespace,
                    service_account,
                    pod: es_name,
                    source: Source::Irsa {
                        role_arn: &role,
                        token: &token,
                    },
                    region: &store.region,
                    failover_region: None,
                    chain: store.chain.as_ref(),
                };
                let obtained = self.identities.credentials(&who).await?;
                Ok((
                    AwsIdentity::Pod(obtained.credentials),
                    IdentityKey::of(&who),
                ))
            }
            StoreAuth::Keys {
                access_key_id,
                secret_access_key,
                session_token,
            } => {
                let id = self.secret_key(access_key_id).await?;
                let secret = self.secret_key(secret_access_key).await?;
                let token = match session_token {
                    Some(r) => Some(self.secret_key(r).await?),
                    None => None,
                };
                let mut credentials = Credentials::new(id, secret, token, None, "secretRef");
                if let Some(chain) = &store.chain {
                    credentials = self
                        .identities
                        .chain_from(credentials, &store.region, chain, SESSION)
                        .await?;
                }
                Ok((
                    AwsIdentity::Pod(credentials),
                    scope(
                        format!("keys:{}/{}", access_key_id.namespace, access_key_id.name),
                        &access_key_id.namespace,
                        "",
                    ),
                ))
            }
            StoreAuth::Controller => {
                let identity = match &store.chain {
                    None => AwsIdentity::Ambient,
                    Some(chain) => {
                        use aws_credential_types::provider::ProvideCredentials;
                        let ambient = self
                            .identities
                            .base()
                            .credentials_provider()
                            .ok_or(IdentityError::NoCredentials {
                                api: "AssumeRole",
                                role: chain.roles.join(","),
                            })?
                            .provide_credentials()
                            .await
                            .map_err(|_| IdentityError::NoCredentials {
                                api: "AssumeRole",
                                role: chain.roles.join(","),
                            })?;
                        AwsIdentity::Pod(
                            self.identities
                                .chain_from(ambient, &store.region, chain, SESSION)
                                .await?,
                        )
                    }
                };
                Ok((identity, scope(format!("controller:{store_id}"), "", "")))
            }
        }
    }

    /// A store ServiceAccount's IRSA role, reused for [`ROLE_REUSE`].
    /// The ConfigMaps and Secrets `templateFrom` names, from the
    /// ExternalSecret's own namespace. A Secret is read only when it is
    /// opted in with [`TEMPLATE_SOURCE_LABEL`]: the author of an
    /// ExternalSecret needs no Secret RBAC, so without it any Secret of the
    /// namespace could be copied into one they can read.
    pub(crate) async fn template_sources(
        &self,
        ns: &str,
        plan: &SyncPlan,
    ) -> Result<external::TemplateSources, SyncError> {
        use external::TemplateSource;
        let mut out = external::TemplateSources::new();
        for source in plan.template_sources() {
            let error = |name: &str, message: String| SyncError::Secret {
                namespace: ns.to_owned(),
                name: name.to_owned(),
                message,
            };
            let data = match &source {
                TemplateSource::ConfigMap(name) => {
                    let cm = Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(
                        self.client.clone(),
                        ns,
                    )
                    .get(name)
                    .await
                    .map_err(|e| error(name, format!("templateFrom ConfigMap: {e}")))?;
                    cm.data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.into_bytes()))
                        .collect()
                }
                TemplateSource::Secret(name) => {
                    let secret = Api::<Secret>::namespaced(self.client.clone(), ns)
                        .get(name)
                        .await
                        .map_err(|e| error(name, format!("templateFrom Secret: {e}")))?;
                    let opted_in = secret
                        .metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get(TEMPLATE_SOURCE_LABEL))
                        .is_some_and(|v| v == "true");
                    if !opted_in
                        || !target_secret::allowed_type(secret.type_.as_deref().unwrap_or("Opaque"))
                    {
                        return Err(error(
                            name,
                            format!(
                                "is not a template source: a Secret is read by templateFrom only when it carries the label {TEMPLATE_SOURCE_LABEL}=true (and is not of a type Kubernetes acts on)"
                            ),
                        ));
                    }
                    secret
                        .data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.0))
                        .collect()
                }
                TemplateSource::Literal(_) => continue,
            };
            out.insert(source, data);
        }
        Ok(out)
    }

    /// A namespace's labels (for ClusterSecretStore conditions).
    async fn namespace_labels(
        &self,
        namespace: &str,
    ) -> Result<BTreeMap<String, String>, SyncError> {
        if let Some((labels, at)) = self
            .namespaces
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(namespace)
            && at.elapsed() < ROLE_REUSE
        {
            return Ok(labels.clone());
        }
        let ns = Api::<k8s_openapi::api::core::v1::Namespace>::all(self.client.clone())
            .get(namespace)
            .await
            .map_err(|e| SyncError::Namespace {
                namespace: namespace.to_owned(),
                message: e.to_string(),
            })?;
        let labels = ns.metadata.labels.unwrap_or_default();
        let mut cache = self.namespaces.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() > 4096 {
            cache.retain(|_, (_, at)| at.elapsed() < ROLE_REUSE);
        }
        cache.insert(namespace.to_owned(), (labels.clone(), Instant::now()));
        Ok(labels)
    }

    pub(crate) async fn role(
        &self,
        namespace: &str,
        service_account: &str,
    ) -> Result<Option<String>, SyncError> {
        let key = (namespace.to_owned(), service_account.to_owned());
        if let Some((role, at)) = self
            .roles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            && at.elapsed() < ROLE_REUSE
        {
            return Ok(role.clone());
        }
        let role = self
            .cluster
            .service_account_role(namespace, service_account)
            .await?;
        let mut roles = self.roles.lock().unwrap_or_else(|p| p.into_inner());
        if roles.len() > 4096 {
            roles.retain(|_, (_, at)| at.elapsed() < ROLE_REUSE);
        }
        roles.insert(key, (role.clone(), Instant::now()));
        Ok(role)
    }

    pub(crate) async fn token(
        &self,
        namespace: &str,
        service_account: &str,
        audience: &str,
    ) -> Result<Token, SyncError> {
        let key = (
            namespace.to_owned(),
            service_account.to_owned(),
            audience.to_owned(),
        );
        if let Some((token, at)) = self
            .tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            && at.elapsed() < TOKEN_REUSE
        {
            return Ok(token.clone());
        }
        let token = self
            .cluster
            .request_token_for(namespace, service_account, audience, None, TOKEN_SECONDS)
            .await?;
        self.tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, (token.clone(), Instant::now()));
        Ok(token)
    }

    pub(crate) async fn secret_key(&self, r: &external::SecretKeyRef) -> Result<String, SyncError> {
        let secret = Api::<Secret>::namespaced(self.client.clone(), &r.namespace)
            .get(&r.name)
            .await
            .map_err(|e| crate::cluster::classify(e, "Secret", &r.namespace, &r.name))?;
        let bytes = secret
            .data
            .and_then(|mut d| d.remove(&r.key))
            .ok_or_else(|| SyncError::Secret {
                namespace: r.namespace.clone(),
                name: r.name.clone(),
                message: format!("has no key {:?}", r.key),
            })?;
        String::from_utf8(bytes.0).map_err(|_| SyncError::Secret {
            namespace: r.namespace.clone(),
            name: r.name.clone(),
            message: format!("key {:?} is not text", r.key),
        })
    }

    /// Writes the Secret as the creation policy says, and says what changed.
    /// Only into a Secret the ExternalSecret may write
    /// ([`target_secret::may_write`]), under its own field manager, and
    /// only when what it owns there differs from what it would write.
    async fn write_secret(
        &self,
        es: &DynamicObject,
        ns: &str,
        plan: &SyncPlan,
        rendered: external::Rendered,
        existing: Option<Secret>,
    ) -> Result<Write, SyncError> {
        let target = &plan.target;
        let Some(policy) = target.creation.write_policy(existing.is_some()) else {
            return Ok(Write::Unchanged);
        };
        let api = Api::<Secret>::namespaced(self.client.clone(), ns);
        let secret_error = |message: String| SyncError::Secret {
            namespace: ns.to_owned(),
            name: target.name.clone(),
            message,
        };
        let es_uid = es.metadata.uid.clone().unwrap_or_default();
        if policy == Policy::Owner {
            self.remove_renamed(es, ns, &target.name).await?;
        }
        match &existing {
            None if policy == Policy::Merge => {
                return Err(secret_error(
                    "does not exist, and creationPolicy Merge only adds keys to an existing Secret"
                        .into(),
                ));
            }
            None => {}
            Some(s) => target_secret::may_write(&existing_of(s), policy, &es_uid)
                .map_err(|refusal| secret_error(refusal.to_string()))?,
        }
        let hash =
            target_secret::data_hash(rendered.data.iter().map(|(k, v)| (k.as_str(), v.expose())));
        let data: BTreeMap<String, ByteString> = rendered
            .data
            .into_iter()
            .map(|(k, v)| (k, ByteString(v.expose().to_vec())))
            .collect();
        // Without a template the ExternalSecret's own labels and
        // annotations go to the Secret (less those Kubernetes owns and
        // the controller's own digest), as in External Secrets.
        let (mut labels, mut annotations) = if target.templated {
            (rendered.labels, rendered.annotations)
        } else {
            let own = |m: &Option<BTreeMap<String, String>>| -> BTreeMap<String, String> {
                m.iter()
                    .flatten()
                    .filter(|(k, _)| {
                        !target_secret::reserved_key(k) && k.as_str() != super::held::DIGEST_KEY
                    })
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            };
            (own(&es.metadata.labels), own(&es.metadata.annotations))
        };
        let mut desired = Secret {
            metadata: ObjectMeta {
                name: Some(target.name.clone()),
                namespace: Some(ns.to_owned()),
                ..Default::default()
            },
            data: Some(data),
            ..Default::default()
        };
        if policy != Policy::Merge {
            labels.insert(MANAGED_LABEL.into(), "true".into());
            annotations.insert(target_secret::DATA_HASH_ANNOTATION.into(), hash);
            desired.metadata.labels = Some(labels);
            desired.metadata.annotations = Some(annotations);
            desired.metadata.finalizers =
                (!target.finalizers.is_empty()).then(|| target.finalizers.clone());
            desired.type_ = Some(target.type_.clone().unwrap_or_else(|| "Opaque".into()));
            desired.immutable = target.immutable.then_some(true);
        }
        if policy == Policy::Owner {
            desired.metadata.owner_references = Some(vec![OwnerReference {
                api_version: self.kinds.external_secret.api_version.clone(),
                kind: "ExternalSecret".into(),
                name: es.metadata.name.clone().unwrap_or_default(),
                uid: es_uid.clone(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]);
        }
        let manager = Self::manager(&es_uid);
        // Written by this controller before each ExternalSecret had a field
        // manager of its own: that manager's fields are released once
        // (after the new manager owns what it writes), so keys it alone
        // held go away. Not for Merge: another ExternalSecret's keys may be
        // among them.
        let legacy = policy != Policy::Merge
            && existing
                .as_ref()
                .is_some_and(|s| applied_by(s, MANAGER).is_some());
        if let Some(current) = &existing
            && !legacy
            && holds(current, &desired, &manager)
        {
            return Ok(Write::Unchanged);
        }
        if existing.as_ref().is_some_and(|s| s.immutable == Some(true)) {
            // An immutable target that exists keeps its data while the
            // ExternalSecret asks for immutable too (External Secrets does
            // not touch it); delete it to have it written again.
            if target.immutable {
                return Ok(Write::Unchanged);
            }
            return Err(secret_error(
                "is immutable and its data changed; delete it to let it be created again".into(),
            ));
        }
        let mut object = serde_json::to_value(&desired).map_err(|e| secret_error(e.to_string()))?;
        object["apiVersion"] = json!("v1");
        object["kind"] = json!("Secret");
        self.fence.check()?;
        let mut after = api
            .patch(
                &target.name,
                &PatchParams::apply(&manager).force(),
                &Patch::Apply(&object),
            )
            .await
            .map_err(|e| secret_error(e.to_string()))?;
        if legacy {
            let release = json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": target.name, "namespace": ns},
            });
            self.fence.check()?;
            after = api
                .patch(
                    &target.name,
                    &PatchParams::apply(MANAGER).force(),
                    &Patch::Apply(&release),
                )
                .await
                .map_err(|e| secret_error(e.to_string()))?;
        }
        // The data as the API server holds it now, against what it held:
        // the whole Secret's, since keys released or written by others
        // change what a pod reads as much as ours do.
        Ok(match existing.map(|s| s.data.unwrap_or_default()) {
            None => Write::Created,
            Some(before) if before != after.data.unwrap_or_default() => Write::DataChanged,
            Some(_) => Write::MetadataChanged,
        })
    }

    /// The Secret an Owner ExternalSecret wrote under its previous
    /// `target.name` (its status' `binding.name`): deleted when it is
    /// still the ExternalSecret's own, as External Secrets does.
    async fn remove_renamed(
        &self,
        es: &DynamicObject,
        ns: &str,
        name: &str,
    ) -> Result<(), SyncError> {
        let Some(old) = es.data["status"]["binding"]["name"]
            .as_str()
            .filter(|old| !old.is_empty() && *old != name)
        else {
            return Ok(());
        };
        let api = Api::<Secret>::namespaced(self.client.clone(), ns);
        let error = |e: kube::Error| SyncError::Secret {
            namespace: ns.to_owned(),
            name: old.to_owned(),
            message: e.to_string(),
        };
        let Some(secret) = api.get_opt(old).await.map_err(error)? else {
            return Ok(());
        };
        let ours = secret
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|o| o.controller == Some(true) && Some(&o.uid) == es.metadata.uid.as_ref());
        if ours {
            self.fence.check()?;
            let uid = secret.metadata.uid.clone();
            api.delete(
                old,
                &kube::api::DeleteParams {
                    preconditions: Some(kube::api::Preconditions {
                        uid,
                        resource_version: None,
                    }),
                    ..Default::default()
                },
            )
            .await
            .map_err(error)?;
        }
        Ok(())
    }

    /// The ExternalSecret's status: the Ready condition, refreshTime,
    /// syncedResourceVersion and binding; written only when one of them
    /// changes or the Secret was written. A refresh that changed nothing
    /// writes nothing (External Secrets Operator writes refreshTime at every
    /// refresh: ten thousand status writes an interval at that scale); the
    /// time of each one's last read of AWS is the metric
    /// `externalsecret_last_refresh_timestamp_seconds`.
    async fn status(&self, es: &DynamicObject, outcome: &Outcome<'_>) -> Result<(), SyncError> {
        let Outcome {
            ready,
            reason,
            message,
            written,
            refreshed,
        } = *outcome;
        let old = es.data.get("status").cloned().unwrap_or(Value::Null);
        let old_ready = old["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
            .cloned()
            .unwrap_or(Value::Null);
        let status_text = if ready { "True" } else { "False" };
        // A failed sync keeps the version it last synced, so that the
        // next one still sees the change.
        let version = if ready {
            json!(version_of(es))
        } else {
            old.get("syncedResourceVersion")
                .cloned()
                .unwrap_or(Value::Null)
        };
        // The Secret, for servicebinding.io: only one that was synced (not
        // with creationPolicy None, nor a Merge target that is missing).
        let writes = es.data["spec"]["target"]["creationPolicy"].as_str() != Some("None");
        let binding = match self.target_name(es) {
            Some(name) if reason == "SecretSynced" && writes => json!({"name": name}),
            _ => old.get("binding").cloned().unwrap_or(Value::Null),
        };
        let unchanged = old_ready["status"] == status_text
            && old_ready["reason"] == reason
            && old_ready["message"] == message
            && old["syncedResourceVersion"] == version
            && old["binding"] == binding
            && !written;
        if unchanged {
            return Ok(());
        }
        let now = k8s_openapi::jiff::Timestamp::now().to_string();
        let transition = match &old_ready["lastTransitionTime"] {
            Value::String(t) if old_ready["status"] == status_text => json!(t),
            _ => json!(now),
        };
        let refresh_time = if ready && refreshed {
            json!(now)
        } else {
            old.get("refreshTime").cloned().unwrap_or(Value::Null)
        };
        let mut status = json!({
            "conditions": [{
                "type": "Ready",
                "status": status_text,
                "reason": reason,
                "message": message,
                "lastTransitionTime": transition,
            }],
        });
        // A field not known yet is left out, not sent as null: a schema
        // that types it (External Secrets' CRDs, ours) refuses a null.
        let wrote_version = version.as_str().map(str::to_owned);
        for (field, value) in [
            ("refreshTime", refresh_time),
            ("syncedResourceVersion", version),
            ("binding", binding),
        ] {
            if !value.is_null() {
                status[field] = value;
            }
        }
        let patch = json!({
            "apiVersion": self.kinds.external_secret.api_version,
            "kind": "ExternalSecret",
            "status": status,
        });
        // The answer decoded as held: an object nested too deep for the
        // JSON parser still gets its status.
        let api: Api<Held> = Api::namespaced_with(
            self.client.clone(),
            es.metadata.namespace.as_deref().unwrap_or_default(),
            &self.kinds.external_secret,
        );
        self.fence.check()?;
        api.patch_status(
            es.metadata.name.as_deref().unwrap_or_default(),
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map_err(|e| SyncError::Status(e.to_string()))?;
        if let (Some(uid), Some(v)) = (es.metadata.uid.as_deref(), wrote_version) {
            let mut written = self
                .written_versions
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            // Bounded: those of ExternalSecrets not synced again since
            // (deleted, or never refreshed) go once they are past the lag.
            if written.len() >= 1_000 {
                written.retain(|_, (_, at)| at.elapsed() < WATCH_LAG);
            }
            written.insert(uid.to_owned(), (v, Instant::now()));
        }
        // An event when the outcome changes (not at every retry).
        let (kind, event_reason) = if ready {
            ("Normal", "Updated")
        } else {
            ("Warning", "UpdateFailed")
        };
        if !ready || written {
            self.event(es, kind, event_reason, message).await;
        }
        Ok(())
    }

    /// `spec.target.name`, or the ExternalSecret's name.
    fn target_name(&self, es: &DynamicObject) -> Option<String> {
        es.data["spec"]["target"]["name"]
            .as_str()
            .filter(|n| !n.is_empty())
            .map(str::to_owned)
            .or_else(|| es.metadata.name.clone())
    }

    /// An event on the ExternalSecret; best effort, like the driver's.
    async fn event(&self, es: &DynamicObject, kind: &str, reason: &str, message: &str) {
        use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
        let ns = es.metadata.namespace.clone().unwrap_or_default();
        let name = es.metadata.name.clone().unwrap_or_default();
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let event = Event {
            metadata: ObjectMeta {
                generate_name: Some(format!("{name}.")),
                namespace: Some(ns.clone()),
                ..Default::default()
            },
            involved_object: ObjectReference {
                api_version: Some(self.kinds.external_secret.api_version.clone()),
                kind: Some("ExternalSecret".into()),
                name: Some(name.clone()),
                namespace: Some(ns.clone()),
                uid: es.metadata.uid.clone(),
                ..Default::default()
            },
            reason: Some(reason.to_owned()),
            message: Some(message.chars().take(1024).collect()),
            type_: Some(kind.to_owned()),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            count: Some(1),
            source: Some(EventSource {
                component: Some(MANAGER.into()),
                host: None,
            }),
            reporting_component: Some(MANAGER.into()),
            reporting_instance: Some(MANAGER.into()),
            ..Default::default()
        };
        if self.fence.check().is_err() {
            return;
        }
        if let Err(e) = Api::<Event>::namespaced(self.client.clone(), &ns)
            .create(&Default::default(), &event)
            .await
        {
            tracing::warn!(externalsecret = %format!("{ns}/{name}"), reason, error = %e, "cannot record an event");
        }
    }
}

/// What a write of the Secret did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Write {
    Unchanged,
    Created,
    /// Its data changed (what pods that read it see).
    DataChanged,
    /// Only its labels, annotations or type changed.
    MetadataChanged,
}

/// How a sync ended, for the status.
#[derive(Clone, Copy)]
struct Outcome<'m> {
    ready: bool,
    reason: &'static str,
    message: &'m str,
    written: bool,
    refreshed: bool,
}

/// The ExternalSecret's `syncedResourceVersion` now.
fn version_of(es: &DynamicObject) -> String {
    let empty = BTreeMap::new();
    let m = &es.metadata;
    external::refresh::resource_version(
        m.generation.unwrap_or(0),
        m.labels.as_ref().unwrap_or(&empty),
        m.annotations.as_ref().unwrap_or(&empty),
    )
}

/// Whether a Secret still holds what this ExternalSecret wrote (External
/// Secrets' `isSecretValid`, less its Orphan rule, which the caller
/// applies): it carries the managed label and its data matches the
/// data-hash annotation. A
/// Merge target is not labelled by this controller: it is intact when
/// it exists.
fn intact(s: &Secret, plan: &SyncPlan) -> bool {
    match plan.target.creation {
        // Not labelled by this controller: as written when it exists.
        CreationPolicy::Merge => true,
        _ => {
            let labelled = s
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(MANAGED_LABEL))
                .is_some_and(|v| v == "true");
            let hash = target_secret::data_hash(
                s.data
                    .iter()
                    .flatten()
                    .map(|(k, v)| (k.as_str(), v.0.as_slice())),
            );
            labelled
                && s.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(target_secret::DATA_HASH_ANNOTATION))
                    .is_some_and(|h| *h == hash)
        }
    }
}

/// What [`target_secret::may_write`] needs to know of an existing Secret.
pub(crate) fn existing_of(s: &Secret) -> Existing<'_> {
    let label = |key: &str| {
        s.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(key))
            .is_some_and(|v| v == "true")
    };
    Existing {
        type_: s.type_.as_deref().unwrap_or("Opaque"),
        managed: label(MANAGED_LABEL),
        writable: label(target_secret::WRITABLE_LABEL),
        controller: s
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true))
            .map(|o| target_secret::Controller {
                kind: &o.kind,
                api_version: &o.api_version,
                name: &o.name,
                uid: &o.uid,
            }),
    }
}

/// The fields `manager` applied to a Secret (its `fieldsV1`), if any.
fn applied_by<'s>(s: &'s Secret, manager: &str) -> Option<&'s Value> {
    s.metadata
        .managed_fields
        .iter()
        .flatten()
        .find(|f| f.manager.as_deref() == Some(manager) && f.operation.as_deref() == Some("Apply"))
        .and_then(|f| f.fields_v1.as_ref())
        .map(|f| &f.0)
}

/// Whether `current` already holds what `manager` would write as
/// `desired`: every desired key with its value (other writers' keys are
/// theirs), no key the manager wrote before and no longer writes, the
/// desired type, labels, annotations and owner. A Secret that holds them
/// is not written (nor its status), however many others write into it.
fn holds(current: &Secret, desired: &Secret, manager: &str) -> bool {
    let want = desired.data.as_ref();
    let have = current.data.as_ref();
    let values = want
        .iter()
        .flat_map(|d| d.iter())
        .all(|(k, v)| have.and_then(|h| h.get(k)) == Some(v));
    // A key the manager applied before and no longer wants: the apply
    // that drops it must be made (data, and labels or annotations taken
    // from the ExternalSecret and since removed from it).
    let applied = applied_by(current, manager);
    let stale_in = |fields: Option<&Value>, wanted: &dyn Fn(&str) -> bool| {
        fields.and_then(Value::as_object).is_some_and(|keys| {
            keys.keys()
                .any(|k| k.strip_prefix("f:").is_some_and(|k| !wanted(k)))
        })
    };
    let metadata = applied.and_then(|f| f.get("f:metadata"));
    let stale = stale_in(applied.and_then(|f| f.get("f:data")), &|k| {
        want.is_some_and(|d| d.contains_key(k))
    }) || stale_in(metadata.and_then(|m| m.get("f:labels")), &|k| {
        desired
            .metadata
            .labels
            .as_ref()
            .is_some_and(|l| l.contains_key(k))
    }) || stale_in(metadata.and_then(|m| m.get("f:annotations")), &|k| {
        desired
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(k))
    });
    let subset = |want: &Option<BTreeMap<String, String>>,
                  have: &Option<BTreeMap<String, String>>| {
        want.iter()
            .flatten()
            .all(|(k, v)| have.as_ref().and_then(|h| h.get(k)) == Some(v))
    };
    let owners = desired.metadata.owner_references.iter().flatten().all(|o| {
        current
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|c| c.uid == o.uid && c.controller == o.controller)
    });
    values
        && !stale
        && (desired.type_.is_none() || desired.type_ == current.type_)
        && subset(&desired.metadata.labels, &current.metadata.labels)
        && subset(&desired.metadata.annotations, &current.metadata.annotations)
        && owners
}

/// How long until the next refresh of an ExternalSecret whose clock (its
/// store's identity) is `clock`: the next tick of a clock with period
/// `interval` and a phase drawn from its name. Every ExternalSecret of one
/// identity with one interval refreshes at the same instants, so their
/// secrets go to AWS in few batches per interval, whenever each was
/// created; different identities tick at different phases, so a thousand
/// created together do not all refresh together.
pub fn until_next_tick(interval: Duration, clock: &str, now: std::time::SystemTime) -> Duration {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let period = interval.as_millis().max(1);
    let mut h = DefaultHasher::new();
    clock.hash(&mut h);
    let phase = u128::from(h.finish()) % period;
    let now = now
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let since = (now + period - phase) % period;
    Duration::from_millis((period - since) as u64)
}

/// How long an object that failed waits before the next try.
pub fn retry_after(failures: u32) -> Duration {
    Duration::from_secs(5u64.saturating_mul(1 << failures.min(6))).min(Duration::from_secs(300))
}

/// Keeps per-object failure counts for the retry backoff.
#[derive(Default)]
pub struct Failures(Mutex<HashMap<String, u32>>);

impl Failures {
    pub fn failed(&self, id: &str) -> u32 {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(id.to_owned()).or_default();
        *n += 1;
        *n
    }

    pub fn succeeded(&self, id: &str) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_store_ticks_together_and_stores_tick_apart() {
        use std::time::{SystemTime, UNIX_EPOCH};
        let d = Duration::from_secs(3600);
        let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        // ExternalSecrets of one store synced at different moments all
        // refresh at the same instant, within the interval.
        let instants: std::collections::BTreeSet<SystemTime> = (0..100)
            .map(|i| {
                let synced = t0 + Duration::from_secs(i * 37);
                let wait = until_next_tick(d, "ns/store", synced);
                assert!(wait <= d && wait > Duration::ZERO, "{wait:?}");
                synced + wait
            })
            .collect();
        assert!(
            instants.len() <= 2,
            "at most the tick before and after: {instants:?}"
        );
        // Different stores: phases spread over the interval.
        let phases: std::collections::BTreeSet<u64> = (0..200)
            .map(|i| until_next_tick(d, &format!("ns/store-{i}"), t0).as_secs() / 60)
            .collect();
        assert!(phases.len() > 30, "spread over minutes: {phases:?}");
    }

    fn secret(data: &[(&str, &str)], applied: Option<(&str, &[&str])>) -> Secret {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};
        Secret {
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            metadata: ObjectMeta {
                managed_fields: applied.map(|(manager, keys)| {
                    let keys: serde_json::Map<String, Value> =
                        keys.iter().map(|k| (format!("f:{k}"), json!({}))).collect();
                    vec![ManagedFieldsEntry {
                        manager: Some(manager.into()),
                        operation: Some("Apply".into()),
                        fields_v1: Some(FieldsV1(json!({"f:data": keys}))),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn a_secret_others_write_into_is_held_when_our_keys_are_there() {
        let me = "aws-secrets-csi-controller/uid-a";
        // Merge: another writer's key beside ours is no reason to write
        // (a write every sync was a loop of 1,840 patches in 20 s).
        let desired = secret(&[("a", "1")], None);
        let current = secret(&[("a", "1"), ("other", "x")], Some((me, &["a"])));
        assert!(holds(&current, &desired, me));
        // Our value changed, or ours is missing: write.
        assert!(!holds(
            &secret(&[("a", "0"), ("other", "x")], Some((me, &["a"]))),
            &desired,
            me
        ));
        assert!(!holds(&secret(&[("other", "x")], None), &desired, me));
        // A key we wrote before and no longer write: write (it goes away).
        let current = secret(&[("a", "1"), ("old", "x")], Some((me, &["a", "old"])));
        assert!(!holds(&current, &desired, me));
        // ... but not a key another manager wrote.
        let current = secret(
            &[("a", "1"), ("old", "x")],
            Some(("aws-secrets-csi-controller/uid-b", &["a", "old"])),
        );
        assert!(holds(&current, &desired, me));
        // Owner: the owner reference must be ours.
        let mut desired = desired;
        desired.metadata.owner_references = Some(vec![OwnerReference {
            uid: "uid-a".into(),
            controller: Some(true),
            ..Default::default()
        }]);
        let mut current = secret(&[("a", "1")], Some((me, &["a"])));
        assert!(!holds(&current, &desired, me));
        current.metadata.owner_references = desired.metadata.owner_references.clone();
        assert!(holds(&current, &desired, me));
        // A label we applied and no longer want (dropped from the
        // ExternalSecret): write, so it goes away.
        let mut current = secret(&[("a", "1")], None);
        current.metadata.owner_references = desired.metadata.owner_references.clone();
        current.metadata.labels = Some([("gone".to_string(), "x".to_string())].into());
        current.metadata.managed_fields = Some(vec![
            k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry {
                manager: Some(me.into()),
                operation: Some("Apply".into()),
                fields_v1: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::FieldsV1(
                    json!({"f:data": {"f:a": {}}, "f:metadata": {"f:labels": {"f:gone": {}}}}),
                )),
                ..Default::default()
            },
        ]);
        assert!(!holds(&current, &desired, me));
        desired.metadata.labels = Some([("gone".to_string(), "x".to_string())].into());
        assert!(holds(&current, &desired, me));
    }

    #[test]
    fn retries_back_off_to_five_minutes() {
        assert_eq!(retry_after(0), Duration::from_secs(5));
        assert_eq!(retry_after(1), Duration::from_secs(10));
        assert_eq!(retry_after(20), Duration::from_secs(300));
    }
}
