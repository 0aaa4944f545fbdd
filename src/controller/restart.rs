//! Opt-in restarts of the workloads whose pods read secrets that rotated.
//! A Deployment, StatefulSet or DaemonSet annotated
//! `aws-secrets-csi.io/restart-on-rotation: "true"` gets a new
//! `aws-secrets-csi.io/restartedAt` in its pod template (as `kubectl
//! rollout restart` does under its own key) when
//! - one of its pods reports `SecretRotated` (the Event the node driver
//!   records when a mounted volume's content changes), or
//! - this controller changed the data of a Secret its pod template reads.
//!
//! The controller does it, never the node driver: a DaemonSet with patch
//! rights on every workload would let one node reach the whole cluster.
//! When is the core's [`Schedule`] (one rotation read by 300 pods restarts
//! their owner once); this module hears the signals, finds the owners and
//! patches them. Only the leader runs it.

use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_secrets_csi_core::restart::{Due, Millis, Schedule, Signal, Timing, Verdict};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::Api;
use kube::api::{ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;

use super::lease::{Fence, Fenced};
use crate::metrics::ExternalSecretMetrics;

/// The annotation by which a workload asks for restarts.
pub const OPT_IN: &str = "aws-secrets-csi.io/restart-on-rotation";
/// The pod template annotation a restart sets (RFC 3339).
pub const RESTARTED_AT: &str = "aws-secrets-csi.io/restartedAt";
/// The reason of the node driver's Events on a pod whose files changed.
pub const ROTATED: &str = "SecretRotated";
/// The reason of the Event on a restarted workload.
pub const RESTARTED: &str = "RestartedForRotation";
/// The field manager of the restarts and of their Events.
const MANAGER: &str = "aws-secrets-csi-controller-restart";
/// Pods looked up at once (a GET each, then their owners').
const LOOKUPS: usize = 8;
/// How long a looked-up ReplicaSet, workload or namespace's readers is
/// reused: a burst of 300 pods reads its owner once, not 300 times.
const REMEMBER: Duration = Duration::from_secs(10);
/// The most entries each of those caches holds.
const CACHE_MAX: usize = 4096;
/// Events older than this are not heard (a watch that lists again brings
/// the last hour's).
const FRESH: Millis = 5 * 60 * 1000;
/// Events from before this replica led are heard back to this far: a
/// rotation reported during a failover is not lost (the one the last
/// leader answered is known from the workload's annotation).
const GRACE: Millis = 60 * 1000;
/// Event UIDs remembered (against a list that brings them again).
const HEARD_MAX: usize = 100_000;
/// Secret changes waiting to be looked at; more are dropped (logged).
pub const QUEUE: usize = 1024;

/// The kinds that may opt in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Deployment,
    StatefulSet,
    DaemonSet,
}

impl Kind {
    const ALL: [Kind; 3] = [Kind::Deployment, Kind::StatefulSet, Kind::DaemonSet];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Deployment => "Deployment",
            Kind::StatefulSet => "StatefulSet",
            Kind::DaemonSet => "DaemonSet",
        }
    }

    fn resource(self) -> ApiResource {
        match self {
            Kind::Deployment => ApiResource::erase::<Deployment>(&()),
            Kind::StatefulSet => ApiResource::erase::<StatefulSet>(&()),
            Kind::DaemonSet => ApiResource::erase::<DaemonSet>(&()),
        }
    }

    /// The kind an owner reference names (apps/v1 only).
    fn of(r: &OwnerReference) -> Option<Kind> {
        if r.api_version != "apps/v1" {
            return None;
        }
        Kind::ALL.into_iter().find(|k| k.name() == r.kind)
    }
}

/// A workload that may be restarted.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Workload {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for Workload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}/{}", self.kind.name(), self.namespace, self.name)
    }
}

/// A Secret whose data the controller changed.
#[derive(Debug, Clone)]
pub struct SecretChanged {
    pub namespace: String,
    pub name: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RestartError {
    #[error(transparent)]
    Fenced(#[from] Fenced),
    #[error("{what}: {message}")]
    Api { what: String, message: String },
}

fn api_error(what: impl std::fmt::Display) -> impl FnOnce(kube::Error) -> RestartError {
    let what = what.to_string();
    move |e| RestartError::Api {
        what,
        message: e.to_string(),
    }
}

/// The pod an Event reports as rotated.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RotatedPod {
    namespace: String,
    name: String,
    uid: Option<String>,
}

/// The pod a `SecretRotated` Event of the node driver names, when it names
/// one of its own namespace: an Event in namespace A about a pod elsewhere
/// is not heard, and nothing is looked up outside A. The component is
/// checked to keep other tools' Events of that reason out (it is no
/// authentication: whoever may create Events in A may write it, and can
/// restart A's opted-in workloads no more often than the schedule allows).
fn rotated_pod(event: &Event) -> Option<RotatedPod> {
    let namespace = event
        .metadata
        .namespace
        .as_deref()
        .filter(|n| !n.is_empty())?;
    let o = &event.involved_object;
    let ours = [
        event.reporting_component.as_deref(),
        event.source.as_ref().and_then(|s| s.component.as_deref()),
    ]
    .contains(&Some(crate::cluster::MANAGER));
    let is_pod = o.kind.as_deref() == Some("Pod") && o.api_version.as_deref() == Some("v1");
    let heard = event.reason.as_deref() == Some(ROTATED)
        && ours
        && is_pod
        && o.namespace.as_deref() == Some(namespace);
    Some(RotatedPod {
        namespace: namespace.to_owned(),
        name: o.name.clone().filter(|n| heard && !n.is_empty())?,
        uid: o.uid.clone().filter(|u| !u.is_empty()),
    })
}

/// The Secrets a pod template reads by name: volumes (also projected) and
/// environment (`secretKeyRef`, `envFrom`) of its containers and init
/// containers. Here, not in the core: it is over k8s-openapi's PodSpec,
/// which the core does without (its fuzz builds stay small).
pub fn secrets_read(spec: &PodSpec) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for v in spec.volumes.iter().flatten() {
        out.extend(v.secret.as_ref().and_then(|s| s.secret_name.clone()));
        for source in v
            .projected
            .as_ref()
            .and_then(|p| p.sources.as_ref())
            .into_iter()
            .flatten()
        {
            out.extend(source.secret.as_ref().map(|s| s.name.clone()));
        }
    }
    for c in spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
    {
        for e in c.env.iter().flatten() {
            out.extend(
                e.value_from
                    .as_ref()
                    .and_then(|v| v.secret_key_ref.as_ref())
                    .map(|r| r.name.clone()),
            );
        }
        for e in c.env_from.iter().flatten() {
            out.extend(e.secret_ref.as_ref().map(|r| r.name.clone()));
        }
    }
    out.retain(|n| !n.is_empty());
    out
}

/// Whether a workload asked for restarts.
fn opted_in(meta: &ObjectMeta) -> bool {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(OPT_IN))
        .is_some_and(|v| v == "true")
}

/// The restart a workload's pod template shows (its annotation).
fn shown(object: &DynamicObject) -> Option<Millis> {
    let at = object.data["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT].as_str()?;
    at.parse::<k8s_openapi::jiff::Timestamp>().ok().map(millis)
}

fn millis(t: k8s_openapi::jiff::Timestamp) -> Millis {
    u64::try_from(t.as_millisecond()).unwrap_or(0)
}

fn now() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
}

/// The Event's text on a restarted workload: what asked for it, never a
/// value.
fn restart_message(due: &Due<Workload>, at: &str) -> String {
    let mut why = Vec::new();
    if due.pods > 0 {
        why.push(format!("{} pod(s) reported {ROTATED}", due.pods));
    }
    if !due.secrets.is_empty() {
        let names: Vec<&str> = due.secrets.iter().map(String::as_str).collect();
        why.push(format!("data of Secret(s) {} changed", names.join(", ")));
    }
    format!(
        "restarted for rotated secrets ({}): pod template annotation {RESTARTED_AT}={at}",
        why.join("; ")
    )
}

/// A lookup kept for [`REMEMBER`].
struct Recent<K, V> {
    entries: HashMap<K, (V, Instant)>,
}

impl<K: Hash + Eq, V: Clone> Recent<K, V> {
    fn new() -> Self {
        Recent {
            entries: HashMap::new(),
        }
    }

    fn get(&self, key: &K) -> Option<V> {
        self.entries
            .get(key)
            .filter(|(_, at)| at.elapsed() < REMEMBER)
            .map(|(v, _)| v.clone())
    }

    fn put(&mut self, key: K, value: V) {
        if self.entries.len() >= CACHE_MAX {
            self.entries.retain(|_, (_, at)| at.elapsed() < REMEMBER);
            if self.entries.len() >= CACHE_MAX {
                self.entries.clear();
            }
        }
        self.entries.insert(key, (value, Instant::now()));
    }

    fn remove(&mut self, key: &K) {
        self.entries.remove(key);
    }
}

/// A ReplicaSet as last read: its UID and its controller (a Deployment's
/// reference); None when it is gone.
type ReplicaSetView = Option<(String, Option<OwnerReference>)>;

/// An opted-in workload as last read: its UID and the restart it shows.
#[derive(Debug, Clone)]
struct OptedIn {
    uid: String,
    shown: Option<Millis>,
}

/// An opted-in workload of a namespace and the Secrets its template reads.
#[derive(Debug, Clone)]
struct Reader {
    workload: Workload,
    shown: Option<Millis>,
    secrets: BTreeSet<String>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The restarts of one leader.
pub struct Restarts {
    client: kube::Client,
    fence: Arc<Fence>,
    metrics: ExternalSecretMetrics,
    schedule: Mutex<Schedule<Workload>>,
    wake: tokio::sync::Notify,
    /// ReplicaSet (namespace, name) -> its UID and controller reference.
    replica_sets: Mutex<Recent<(String, String), ReplicaSetView>>,
    /// Workload -> what it showed, None when it did not opt in (or is gone).
    workloads: Mutex<Recent<Workload, Option<OptedIn>>>,
    /// Namespace -> its opted-in workloads and the Secrets they read.
    readers: Mutex<Recent<String, Arc<Vec<Reader>>>>,
    /// Event UID -> its creation time, against hearing one twice.
    heard: Mutex<HashMap<String, Millis>>,
    /// When this replica began to lead.
    started: Millis,
}

impl Restarts {
    pub fn new(
        client: kube::Client,
        fence: Arc<Fence>,
        timing: Timing,
        metrics: ExternalSecretMetrics,
    ) -> Self {
        Restarts {
            client,
            fence,
            metrics,
            schedule: Mutex::new(Schedule::new(timing)),
            wake: tokio::sync::Notify::new(),
            replica_sets: Mutex::new(Recent::new()),
            workloads: Mutex::new(Recent::new()),
            readers: Mutex::new(Recent::new()),
            heard: Mutex::default(),
            started: now(),
        }
    }

    /// Hears the signals and restarts what is due, until the watch ends
    /// (never, but with the controller).
    pub async fn run(self: Arc<Self>, changes: tokio::sync::mpsc::Receiver<SecretChanged>) {
        // Only this reason, so the watch carries the driver's Events alone.
        let events = watcher(
            Api::<Event>::all(self.client.clone()),
            watcher::Config::default().fields(&format!("reason={ROTATED}")),
        )
        .default_backoff()
        .for_each_concurrent(LOOKUPS, |e| {
            let this = self.clone();
            async move {
                match e {
                    Ok(watcher::Event::Apply(event) | watcher::Event::InitApply(event)) => {
                        this.heard_event(event).await
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "watch of {ROTATED} events"),
                }
            }
        });
        let secrets =
            tokio_stream::wrappers::ReceiverStream::new(changes).for_each_concurrent(2, |c| {
                let this = self.clone();
                async move { this.changed_secret(c).await }
            });
        futures::future::join3(events, secrets, self.clone().restart_when_due()).await;
    }

    /// Whether an Event is new to this replica and recent.
    fn fresh(&self, event: &Event) -> bool {
        let (Some(uid), Some(created)) = (
            event.metadata.uid.clone(),
            event.metadata.creation_timestamp.as_ref(),
        ) else {
            return false;
        };
        let created = millis(created.0);
        let now = now();
        if created.saturating_add(FRESH) < now || created.saturating_add(GRACE) < self.started {
            return false;
        }
        let mut heard = lock(&self.heard);
        if heard.len() >= HEARD_MAX {
            heard.retain(|_, at| at.saturating_add(FRESH) >= now);
            if heard.len() >= HEARD_MAX {
                heard.clear();
            }
        }
        heard.insert(uid, created).is_none()
    }

    async fn heard_event(&self, event: Event) {
        let Some(pod) = rotated_pod(&event) else {
            return;
        };
        if !self.fresh(&event) {
            return;
        }
        match self.owner_of(&pod).await {
            Ok(Some((workload, uid, created))) => match self.opted_in(&workload, &uid).await {
                Ok(Some(opted)) => {
                    let verdict =
                        self.signal(workload.clone(), Signal::Pod { created }, opted.shown);
                    tracing::debug!(%workload, namespace = %pod.namespace, pod = %pod.name, ?verdict, "{ROTATED}");
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(namespace = %pod.namespace, pod = %pod.name, error = %e, "cannot read the owner of a rotated pod")
                }
            },
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(namespace = %pod.namespace, pod = %pod.name, error = %e, "cannot read a rotated pod")
            }
        }
    }

    fn signal(&self, workload: Workload, signal: Signal, shown: Option<Millis>) -> Verdict {
        let verdict = lock(&self.schedule).signal(workload, now(), signal, shown);
        if matches!(verdict, Verdict::Pending { .. }) {
            self.wake.notify_one();
        }
        verdict
    }

    /// The workload that controls a pod (Pod -> ReplicaSet -> Deployment,
    /// Pod -> StatefulSet, Pod -> DaemonSet, all in the pod's namespace),
    /// its expected UID, and the pod's creation time. None: the pod is gone
    /// (or is another pod by the same name), or has no such owner.
    async fn owner_of(
        &self,
        pod: &RotatedPod,
    ) -> Result<Option<(Workload, String, Millis)>, RestartError> {
        let ns = &pod.namespace;
        let Some(meta) = Api::<Pod>::namespaced(self.client.clone(), ns)
            .get_metadata_opt(&pod.name)
            .await
            .map_err(api_error(format!("Pod {ns}/{}", pod.name)))?
            .map(|p| p.metadata)
        else {
            return Ok(None);
        };
        // A StatefulSet's pod comes back under the same name: the one that
        // reported is gone with its rotation.
        if pod.uid.is_some() && meta.uid != pod.uid {
            return Ok(None);
        }
        let Some(created) = meta.creation_timestamp.as_ref().map(|t| millis(t.0)) else {
            return Ok(None);
        };
        let Some(owner) = controller_of(&meta) else {
            return Ok(None);
        };
        let workload = |kind, r: &OwnerReference| Workload {
            kind,
            namespace: ns.clone(),
            name: r.name.clone(),
        };
        if owner.kind == "ReplicaSet" && owner.api_version == "apps/v1" {
            let Some((rs_uid, rs_owner)) = self.replica_set(ns, &owner.name).await? else {
                return Ok(None);
            };
            if rs_uid != owner.uid {
                return Ok(None);
            }
            return Ok(rs_owner
                .filter(|r| Kind::of(r) == Some(Kind::Deployment))
                .map(|r| (workload(Kind::Deployment, &r), r.uid.clone(), created)));
        }
        Ok(Kind::of(owner)
            .filter(|k| *k != Kind::Deployment)
            .map(|k| (workload(k, owner), owner.uid.clone(), created)))
    }

    async fn replica_set(&self, ns: &str, name: &str) -> Result<ReplicaSetView, RestartError> {
        let key = (ns.to_owned(), name.to_owned());
        if let Some(found) = lock(&self.replica_sets).get(&key) {
            return Ok(found);
        }
        let found = Api::<ReplicaSet>::namespaced(self.client.clone(), ns)
            .get_metadata_opt(name)
            .await
            .map_err(api_error(format!("ReplicaSet {ns}/{name}")))?
            .map(|rs| {
                (
                    rs.metadata.uid.clone().unwrap_or_default(),
                    controller_of(&rs.metadata).cloned(),
                )
            });
        lock(&self.replica_sets).put(key, found.clone());
        Ok(found)
    }

    /// The workload when it opted in and is the one its pods name (`uid`).
    async fn opted_in(
        &self,
        workload: &Workload,
        uid: &str,
    ) -> Result<Option<OptedIn>, RestartError> {
        let cached = lock(&self.workloads).get(workload);
        let found = match cached {
            Some(found) => found,
            None => {
                let found = self.read(workload).await?.and_then(|o| {
                    opted_in(&o.metadata).then(|| OptedIn {
                        uid: o.metadata.uid.clone().unwrap_or_default(),
                        shown: shown(&o),
                    })
                });
                lock(&self.workloads).put(workload.clone(), found.clone());
                found
            }
        };
        Ok(found.filter(|o| o.uid == uid))
    }

    fn api(&self, kind: Kind, ns: &str) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), ns, &kind.resource())
    }

    async fn read(&self, w: &Workload) -> Result<Option<DynamicObject>, RestartError> {
        self.api(w.kind, &w.namespace)
            .get_opt(&w.name)
            .await
            .map_err(api_error(w))
    }

    /// A Secret the controller changed: the opted-in workloads of its
    /// namespace whose template reads it.
    async fn changed_secret(&self, changed: SecretChanged) {
        match self.readers(&changed.namespace).await {
            Ok(readers) => {
                for r in readers.iter().filter(|r| r.secrets.contains(&changed.name)) {
                    let verdict = self.signal(
                        r.workload.clone(),
                        Signal::Secret {
                            name: changed.name.clone(),
                        },
                        r.shown,
                    );
                    tracing::debug!(workload = %r.workload, secret = %changed.name, ?verdict, "Secret data changed");
                }
            }
            Err(e) => {
                tracing::warn!(namespace = %changed.namespace, secret = %changed.name, error = %e, "cannot list the workloads that read a changed Secret")
            }
        }
    }

    /// The opted-in workloads of a namespace, listed a page at a time.
    async fn readers(&self, ns: &str) -> Result<Arc<Vec<Reader>>, RestartError> {
        if let Some(found) = lock(&self.readers).get(&ns.to_owned()) {
            return Ok(found);
        }
        let mut readers = Vec::new();
        for kind in Kind::ALL {
            let api = self.api(kind, ns);
            let mut params = ListParams::default().limit(250);
            loop {
                let page = api
                    .list(&params)
                    .await
                    .map_err(api_error(format!("{} in {ns}", kind.name())))?;
                for o in page.items.iter().filter(|o| opted_in(&o.metadata)) {
                    let spec: PodSpec =
                        serde_json::from_value(o.data["spec"]["template"]["spec"].clone())
                            .unwrap_or_default();
                    readers.push(Reader {
                        workload: Workload {
                            kind,
                            namespace: ns.to_owned(),
                            name: o.metadata.name.clone().unwrap_or_default(),
                        },
                        shown: shown(o),
                        secrets: secrets_read(&spec),
                    });
                }
                match page.metadata.continue_.filter(|c| !c.is_empty()) {
                    Some(token) => params = params.continue_token(&token),
                    None => break,
                }
            }
        }
        let readers = Arc::new(readers);
        lock(&self.readers).put(ns.to_owned(), readers.clone());
        Ok(readers)
    }

    /// Restarts each owner when it is due.
    async fn restart_when_due(self: Arc<Self>) {
        let mut pruned = Instant::now();
        loop {
            let next = lock(&self.schedule).next_due();
            let wait = next.map_or(Duration::from_secs(60), |at| {
                Duration::from_millis(at.saturating_sub(now()))
            });
            tokio::select! {
                _ = self.wake.notified() => continue,
                _ = tokio::time::sleep(wait) => {}
            }
            let due = lock(&self.schedule).due(now());
            for d in due {
                self.restart(d).await;
            }
            if pruned.elapsed() > Duration::from_secs(60) {
                lock(&self.schedule).prune(now());
                pruned = Instant::now();
            }
        }
    }

    async fn restart(&self, due: Due<Workload>) {
        let started = now();
        let workload = due.owner.clone();
        match self.patch(&workload).await {
            Ok(Some(Restarted { at, cutoff, uid })) => {
                lock(&self.schedule).restarted(&workload, started, cutoff);
                lock(&self.workloads).remove(&workload);
                lock(&self.readers).remove(&workload.namespace);
                self.metrics.workload_restarted(workload.kind.name());
                let message = restart_message(&due, &at);
                tracing::info!(%workload, pods = due.pods, secrets = ?due.secrets, "restarted for rotated secrets");
                self.record(&workload, uid, &message).await;
            }
            Ok(None) => {
                tracing::info!(%workload, "not restarted: gone, or no longer annotated {OPT_IN}=true");
                lock(&self.schedule).forget(&workload);
            }
            Err(e) => {
                let again = lock(&self.schedule).failed(due, started);
                tracing::warn!(%workload, error = %e, again, "restart failed");
            }
        }
    }

    /// Sets the restart annotation on a workload that still opted in.
    async fn patch(&self, w: &Workload) -> Result<Option<Restarted>, RestartError> {
        self.fence.check()?;
        let Some(current) = self.read(w).await? else {
            return Ok(None);
        };
        if !opted_in(&current.metadata) {
            return Ok(None);
        }
        let now = k8s_openapi::jiff::Timestamp::now();
        let at = now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
        // The UID makes it a precondition: a workload deleted and created
        // again under the name meanwhile is not restarted for the old one.
        let patch = json!({
            "metadata": {"uid": current.metadata.uid},
            "spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: at}}}},
        });
        self.fence.check()?;
        let after = self
            .api(w.kind, &w.namespace)
            .patch(
                &w.name,
                &PatchParams {
                    field_manager: Some(MANAGER.into()),
                    ..Default::default()
                },
                &Patch::Merge(&patch),
            )
            .await
            .map_err(api_error(w))?;
        let server = after
            .metadata
            .managed_fields
            .iter()
            .flatten()
            .filter(|f| f.manager.as_deref() == Some(MANAGER))
            .filter_map(|f| f.time.as_ref().map(|t| millis(t.0)))
            .max();
        Ok(Some(Restarted {
            at,
            cutoff: server.unwrap_or_else(|| millis(now)),
            uid: after.metadata.uid,
        }))
    }

    /// An Event on the restarted workload; best effort.
    async fn record(&self, w: &Workload, uid: Option<String>, message: &str) {
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let event = Event {
            metadata: ObjectMeta {
                generate_name: Some(format!("{}.", w.name)),
                namespace: Some(w.namespace.clone()),
                ..Default::default()
            },
            involved_object: ObjectReference {
                api_version: Some("apps/v1".into()),
                kind: Some(w.kind.name().into()),
                name: Some(w.name.clone()),
                namespace: Some(w.namespace.clone()),
                uid,
                ..Default::default()
            },
            reason: Some(RESTARTED.into()),
            message: Some(message.chars().take(1024).collect()),
            type_: Some("Normal".into()),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            count: Some(1),
            source: Some(EventSource {
                component: Some(super::MANAGER.into()),
                host: None,
            }),
            reporting_component: Some(super::MANAGER.into()),
            reporting_instance: Some(super::MANAGER.into()),
            ..Default::default()
        };
        if self.fence.check().is_err() {
            return;
        }
        if let Err(e) = Api::<Event>::namespaced(self.client.clone(), &w.namespace)
            .create(&PostParams::default(), &event)
            .await
        {
            tracing::warn!(workload = %w, error = %e, "cannot record an event");
        }
    }
}

/// A restart made.
struct Restarted {
    /// Its time as the annotation says it.
    at: String,
    /// Its time on the API server's clock (the time of this manager's
    /// write), which pods' creation times are on.
    cutoff: Millis,
    uid: Option<String>,
}

/// The restart timing from the controller's flags.
pub fn timing(quiet: Duration, max_wait: Duration, min_interval: Duration) -> Timing {
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    Timing {
        quiet: ms(quiet),
        max_wait: ms(max_wait),
        min_interval: ms(min_interval),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> PodSpec {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn every_way_a_pod_template_reads_a_secret_is_found() {
        let s = spec(json!({
            "volumes": [
                {"name": "a", "secret": {"secretName": "volume"}},
                {"name": "b", "projected": {"sources": [
                    {"secret": {"name": "projected"}},
                    {"configMap": {"name": "not-a-secret"}}
                ]}},
                {"name": "c", "configMap": {"name": "config"}}
            ],
            "containers": [{
                "name": "app",
                "env": [
                    {"name": "A", "valueFrom": {"secretKeyRef": {"name": "env-key", "key": "k"}}},
                    {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}},
                    {"name": "C", "value": "plain"}
                ],
                "envFrom": [{"secretRef": {"name": "env-from"}}, {"configMapRef": {"name": "cm2"}}]
            }],
            "initContainers": [{
                "name": "init",
                "envFrom": [{"secretRef": {"name": "init-from"}}],
                "env": [{"name": "D", "valueFrom": {"secretKeyRef": {"name": "init-key", "key": "k"}}}]
            }]
        }));
        let found: Vec<String> = secrets_read(&s).into_iter().collect();
        assert_eq!(
            found,
            [
                "env-from",
                "env-key",
                "init-from",
                "init-key",
                "projected",
                "volume"
            ]
        );
    }

    #[test]
    fn a_template_without_secrets_reads_none() {
        let s = spec(json!({"containers": [{"name": "app", "image": "x"}]}));
        assert!(secrets_read(&s).is_empty());
        // A volume naming no Secret (the field is optional) names none.
        let s = spec(json!({"containers": [], "volumes": [{"name": "a", "secret": {}}]}));
        assert!(secrets_read(&s).is_empty());
    }

    fn event(ns: &str, object_ns: Option<&str>) -> Event {
        Event {
            metadata: ObjectMeta {
                namespace: Some(ns.into()),
                ..Default::default()
            },
            involved_object: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some("web-1".into()),
                namespace: object_ns.map(Into::into),
                uid: Some("u1".into()),
                ..Default::default()
            },
            reason: Some(ROTATED.into()),
            reporting_component: Some(crate::cluster::MANAGER.into()),
            ..Default::default()
        }
    }

    #[test]
    fn a_rotated_pod_is_heard_in_its_own_namespace_only() {
        assert_eq!(
            rotated_pod(&event("a", Some("a"))),
            Some(RotatedPod {
                namespace: "a".into(),
                name: "web-1".into(),
                uid: Some("u1".into())
            })
        );
        // An Event in b about a pod of a; an Event naming no namespace.
        assert_eq!(rotated_pod(&event("b", Some("a"))), None);
        assert_eq!(rotated_pod(&event("a", None)), None);
    }

    #[test]
    fn only_the_drivers_rotated_pod_events_are_heard() {
        let mut e = event("a", Some("a"));
        e.reason = Some("SecretsRotated".into());
        assert_eq!(rotated_pod(&e), None);
        let mut e = event("a", Some("a"));
        e.involved_object.kind = Some("Deployment".into());
        assert_eq!(rotated_pod(&e), None);
        let mut e = event("a", Some("a"));
        e.involved_object.api_version = Some("example.com/v1".into());
        assert_eq!(rotated_pod(&e), None);
        let mut e = event("a", Some("a"));
        e.reporting_component = Some("another-tool".into());
        assert_eq!(rotated_pod(&e), None);
        // The older form names its component in source only.
        e.reporting_component = None;
        e.source = Some(EventSource {
            component: Some(crate::cluster::MANAGER.into()),
            host: None,
        });
        assert!(rotated_pod(&e).is_some());
        let mut e = event("a", Some("a"));
        e.involved_object.name = Some(String::new());
        assert_eq!(rotated_pod(&e), None);
    }

    #[test]
    fn only_owner_references_of_apps_v1_name_a_workload() {
        let r = |api_version: &str, kind: &str| OwnerReference {
            api_version: api_version.into(),
            kind: kind.into(),
            name: "x".into(),
            uid: "u".into(),
            ..Default::default()
        };
        assert_eq!(
            Kind::of(&r("apps/v1", "StatefulSet")),
            Some(Kind::StatefulSet)
        );
        assert_eq!(Kind::of(&r("apps/v1", "DaemonSet")), Some(Kind::DaemonSet));
        assert_eq!(
            Kind::of(&r("apps/v1", "Deployment")),
            Some(Kind::Deployment)
        );
        assert_eq!(Kind::of(&r("apps/v1", "ReplicaSet")), None);
        assert_eq!(Kind::of(&r("batch/v1", "Job")), None);
        assert_eq!(Kind::of(&r("example.com/v1", "StatefulSet")), None);
    }

    #[test]
    fn the_opt_in_is_the_annotation_true_and_nothing_else() {
        let meta = |v: Option<&str>| ObjectMeta {
            annotations: v.map(|v| [(OPT_IN.to_owned(), v.to_owned())].into()),
            ..Default::default()
        };
        assert!(opted_in(&meta(Some("true"))));
        assert!(!opted_in(&meta(Some("false"))));
        assert!(!opted_in(&meta(Some("yes"))));
        assert!(!opted_in(&meta(None)));
    }

    #[test]
    fn the_restart_a_template_shows_is_read_back() {
        let o: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: "2026-01-02T03:04:05Z"}}}}
        }))
        .unwrap();
        assert_eq!(shown(&o), Some(1_767_323_045_000));
        let o: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: "yesterday"}}}}
        }))
        .unwrap();
        assert_eq!(shown(&o), None);
    }

    #[test]
    fn the_event_says_what_asked_for_the_restart() {
        let due = Due {
            owner: Workload {
                kind: Kind::Deployment,
                namespace: "a".into(),
                name: "web".into(),
            },
            pods: 300,
            secrets: ["db".to_owned(), "tls".to_owned()].into(),
            attempts: 0,
        };
        assert_eq!(
            restart_message(&due, "2026-01-02T03:04:05Z"),
            "restarted for rotated secrets (300 pod(s) reported SecretRotated; data of Secret(s) db, tls changed): pod template annotation aws-secrets-csi.io/restartedAt=2026-01-02T03:04:05Z"
        );
    }
}
