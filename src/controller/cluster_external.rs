//! ClusterExternalSecrets: an ExternalSecret in each namespace a
//! ClusterExternalSecret selects, kept as External Secrets Operator keeps
//! them (the decisions are `aws_secrets_csi_core::external::cluster`'s;
//! this module reads and writes). A ClusterExternalSecret is looked at
//! again when it changes (spec or annotations), when a namespace it
//! selects or provisioned changes (labels, or being deleted), when an
//! ExternalSecret it controls changes or goes, and every `refreshTime`
//! (default one hour). Every write is a server-side apply (or a delete)
//! of its own field manager, made only when something differs, after the
//! Lease fence. Deleting a ClusterExternalSecret leaves its
//! ExternalSecrets to the garbage collector (they are its dependents).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_secrets_csi_core::external::api::ClusterExternalSecretStatus;
use aws_secrets_csi_core::external::cluster::{self, Ces, Namespace as NamespaceView};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, PartialObjectMeta, Patch,
    PatchParams, Preconditions,
};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};

use super::held::Held;
use super::lease::{Fence, Fenced};

/// The field manager of the ExternalSecrets and statuses written here.
pub const MANAGER: &str = "aws-secrets-csi-controller-clusterexternalsecret";
/// Namespaces worked on at once in one reconcile.
const CONCURRENCY: usize = 8;
/// The wait after a reconcile that could not finish.
const RETRY: Duration = Duration::from_secs(15);

struct Ctx {
    client: kube::Client,
    ces: ApiResource,
    es: ApiResource,
    namespaces: Store<PartialObjectMeta<Namespace>>,
    /// Every ExternalSecret (the sync's own watch): those this
    /// ClusterExternalSecret controls, wherever they are.
    external_secrets: Store<Held>,
    fence: Arc<Fence>,
    min_refresh: Duration,
}

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error(transparent)]
    Fenced(#[from] Fenced),
    #[error("{0}")]
    Api(String),
    #[error("one or more namespaces failed")]
    Failed,
}

/// The ClusterExternalSecret kind as served (v1, else v1beta1); `None`
/// when the cluster serves neither. Other errors (the API server not
/// answering yet) are retried.
async fn served(client: &kube::Client) -> Option<ApiResource> {
    let mut wait = Duration::from_secs(1);
    loop {
        let mut missing = 0;
        let mut last = None;
        for version in ["v1", "v1beta1"] {
            let gvk = GroupVersionKind::gvk(cluster::GROUP, version, cluster::KIND);
            match kube::discovery::pinned_kind(client, &gvk).await {
                Ok((resource, _)) => return Some(resource),
                Err(kube::Error::Discovery(_)) => missing += 1,
                Err(kube::Error::Api(s)) if s.code == 404 => missing += 1,
                Err(e) => last = Some(e),
            }
        }
        if missing == 2 {
            return None;
        }
        tracing::warn!(
            error = %last.map(|e| e.to_string()).unwrap_or_default(),
            "could not learn whether the cluster serves ClusterExternalSecrets; trying again"
        );
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(60));
    }
}

/// Runs until the watches end (never, but for a shutdown).
pub async fn run(
    client: kube::Client,
    es: ApiResource,
    external_secrets: Store<Held>,
    fence: Arc<Fence>,
    min_refresh: Duration,
) {
    let Some(ces) = served(&client).await else {
        tracing::info!(
            "the cluster serves no external-secrets.io ClusterExternalSecret: none are provisioned"
        );
        return;
    };
    tracing::info!(version = %ces.version, "provisioning ClusterExternalSecrets");

    let ces_writer = reflector::store::Writer::new(ces.clone());
    let ces_store = ces_writer.as_reader();
    let ces_stream = watcher(
        Api::<Held>::all_with(client.clone(), &ces),
        watcher::Config::default(),
    )
    .default_backoff()
    .reflect(ces_writer)
    .applied_objects()
    // Its spec and annotations (force-sync); not its status, which is
    // written here.
    .predicate_filter(
        |c: &Held| {
            let m = &c.object.metadata;
            Some(digest(&(m.generation, &m.annotations, &m.uid)))
        },
        Default::default(),
    );

    let (ns_store, ns_writer) = reflector::store();
    let ns_stream = watcher(
        Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .modify(|ns| ns.metadata.managed_fields = None)
    .reflect(ns_writer)
    .touched_objects()
    .predicate_filter(
        |ns: &PartialObjectMeta<Namespace>| {
            let m = &ns.metadata;
            Some(digest(&(&m.labels, m.deletion_timestamp.is_some(), &m.uid)))
        },
        Default::default(),
    );

    // ExternalSecrets a ClusterExternalSecret controls: their metadata
    // (generation, labels, annotations, owners), and their deletion.
    let seen: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
    let es_stream = watcher(
        Api::<PartialObjectMeta<DynamicObject>>::all_with(client.clone(), &es),
        watcher::Config::default(),
    )
    .default_backoff()
    .filter_map(move |event| {
        let seen = seen.clone();
        async move {
            let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
            match event {
                Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => {
                    controller_name(&o)?;
                    let m = &o.metadata;
                    let h = digest(&(
                        m.generation,
                        &m.labels,
                        &m.annotations,
                        owners(&o.metadata.owner_references),
                    ));
                    let key = m.uid.clone().unwrap_or_default();
                    (seen.insert(key, h) != Some(h)).then_some(Ok(o))
                }
                Ok(watcher::Event::Delete(o)) => {
                    seen.remove(o.metadata.uid.as_deref().unwrap_or_default());
                    controller_name(&o)?;
                    Some(Ok(o))
                }
                Ok(_) => None,
                Err(e) => Some(Err(e)),
            }
        }
    });

    let ctx = Arc::new(Ctx {
        client,
        ces: ces.clone(),
        es: es.clone(),
        namespaces: ns_store,
        external_secrets,
        fence,
        min_refresh,
    });

    let by_namespace = {
        let store = ces_store.clone();
        let resource = ces.clone();
        move |ns: PartialObjectMeta<Namespace>| {
            let name = ns.name_any();
            let labels = ns.metadata.labels.clone().unwrap_or_default();
            let view = NamespaceView {
                name: &name,
                labels: &labels,
                terminating: ns.metadata.deletion_timestamp.is_some(),
            };
            store
                .state()
                .into_iter()
                .filter(|c| concerns(c, view))
                .map(|c| ObjectRef::from_obj_with(c.as_ref(), resource.clone()))
                .collect::<Vec<_>>()
        }
    };
    let by_owner = {
        let resource = ces.clone();
        move |es: PartialObjectMeta<DynamicObject>| {
            controller_name(&es).map(|name| ObjectRef::new_with(&name, resource.clone()))
        }
    };
    Controller::for_stream_with(ces_stream, ces_store, ces.clone())
        .watches_stream_with(ns_stream, by_namespace, ())
        .watches_stream_with(es_stream, by_owner, es)
        .run(
            |c: Arc<Held>, ctx: Arc<Ctx>| async move {
                let name = c.name_any();
                match reconcile(&c, &ctx).await {
                    Ok(next) => Ok::<_, std::convert::Infallible>(
                        next.map_or_else(Action::await_change, |d| {
                            Action::requeue(d.min(super::MAX_REQUEUE))
                        }),
                    ),
                    Err(e) => {
                        tracing::warn!(clusterexternalsecret = %name, error = %e, "not provisioned; trying again");
                        Ok(Action::requeue(RETRY))
                    }
                }
            },
            |_, _, _| Action::await_change(),
            ctx,
        )
        .for_each(|_| async {})
        .await;
}

fn digest(v: &impl Hash) -> u64 {
    let mut h = DefaultHasher::new();
    v.hash(&mut h);
    h.finish()
}

fn owners(
    refs: &Option<Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>>,
) -> Vec<(String, String, String, Option<bool>)> {
    refs.iter()
        .flatten()
        .map(|r| {
            (
                r.api_version.clone(),
                r.kind.clone(),
                r.uid.clone(),
                r.controller,
            )
        })
        .collect()
}

/// The ClusterExternalSecret that controls an ExternalSecret, if one does.
fn controller_name(es: &PartialObjectMeta<DynamicObject>) -> Option<String> {
    es.metadata
        .owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
        .filter(|r| {
            r.kind == cluster::KIND
                && r.api_version.split_once('/').map(|(g, _)| g) == Some(cluster::GROUP)
        })
        .map(|r| r.name.clone())
}

/// Whether a namespace's change concerns a ClusterExternalSecret: it
/// selects the namespace now, or provisioned it (or failed in it) before.
fn concerns(c: &Held, ns: NamespaceView<'_>) -> bool {
    let status = cluster::read_status(&c.object.data["status"]);
    if status.provisioned_namespaces.iter().any(|n| n == ns.name)
        || status
            .failed_namespaces
            .iter()
            .any(|f| f.namespace == ns.name)
    {
        return true;
    }
    cluster::read_spec(&c.object.data["spec"])
        .ok()
        .and_then(|spec| cluster::selected(&spec, &[ns]).ok())
        .is_some_and(|s| !s.is_empty())
}

/// One reconcile; the wait before the next.
async fn reconcile(c: &Held, ctx: &Ctx) -> Result<Option<Duration>, Error> {
    let name = c.name_any();
    if c.object.metadata.deletion_timestamp.is_some() {
        // Its ExternalSecrets are its dependents: the garbage collector's.
        return Ok(None);
    }
    let old = cluster::read_status(&c.object.data["status"]);
    if let Some(refusal) = &c.refusal {
        write_status(
            ctx,
            &name,
            &old,
            &cluster::refused(&old, refusal.to_string()),
        )
        .await?;
        return Ok(None);
    }
    let spec = match cluster::read_spec(&c.object.data["spec"]) {
        Ok(s) => s,
        Err(e) => {
            write_status(ctx, &name, &old, &cluster::refused(&old, e.to_string())).await?;
            return Ok(None);
        }
    };
    let refresh = match cluster::refresh(&spec, ctx.min_refresh) {
        Ok(r) => r,
        Err(e) => {
            write_status(ctx, &name, &old, &cluster::refused(&old, e)).await?;
            return Ok(None);
        }
    };
    // An empty store would read as no namespace selected, and every
    // ExternalSecret would be pruned.
    ctx.namespaces
        .wait_until_ready()
        .await
        .map_err(|e| Error::Api(e.to_string()))?;
    let namespaces = ctx.namespaces.state();
    let labels: Vec<BTreeMap<String, String>> = namespaces
        .iter()
        .map(|n| n.metadata.labels.clone().unwrap_or_default())
        .collect();
    let names: Vec<String> = namespaces.iter().map(|n| n.name_any()).collect();
    let views: Vec<NamespaceView<'_>> = namespaces
        .iter()
        .zip(&labels)
        .zip(&names)
        .map(|((n, labels), name)| NamespaceView {
            name,
            labels,
            terminating: n.metadata.deletion_timestamp.is_some(),
        })
        .collect();
    let plan = match cluster::plan(&name, &spec, &old, &views) {
        Ok(p) => p,
        Err(status) => {
            write_status(ctx, &name, &old, &status).await?;
            return Ok(refresh);
        }
    };

    // A rename: the old ones go first (ESO's order); if one cannot, the
    // old name stays in the status and this is tried again.
    if let Some(prev) = &plan.renamed_from {
        let targets: Vec<(String, String)> = old
            .provisioned_namespaces
            .iter()
            .map(|ns| (ns.clone(), prev.clone()))
            .collect();
        let failed = delete_all(ctx, &name, targets).await?;
        if !failed.is_empty() {
            write_status(ctx, &name, &old, &cluster::rename_failed(&old, &failed)).await?;
            return Err(Error::Failed);
        }
    }

    // Namespaces no longer selected, and any other ExternalSecret it
    // controls that it no longer wants.
    let owned: Vec<(String, String)> = ctx
        .external_secrets
        .state()
        .iter()
        .filter(|es| {
            let refs =
                serde_json::to_value(&es.object.metadata.owner_references).unwrap_or(Value::Null);
            cluster::controlled_by(&refs, &name)
        })
        .map(|es| (es.namespace().unwrap_or_default(), es.name_any()))
        .collect();
    let mut targets: BTreeSet<(String, String)> = plan
        .removed
        .iter()
        .map(|ns| (ns.clone(), plan.es_name.clone()))
        .collect();
    targets.extend(cluster::strays(&owned, &plan.es_name, &plan.selected));
    let mut failed = delete_all(ctx, &name, targets.into_iter().collect()).await?;

    let no_annotations = BTreeMap::new();
    let ces = Ces {
        name: &name,
        uid: c.object.metadata.uid.as_deref().unwrap_or_default(),
        api_version: &ctx.ces.api_version,
        annotations: c
            .object
            .metadata
            .annotations
            .as_ref()
            .unwrap_or(&no_annotations),
        spec: &c.object.data["spec"],
    };
    // The annotations held may be a digest (over the held bound): then the
    // object is read in full for them.
    let full_annotations;
    let ces = if c
        .object
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(super::held::DIGEST_KEY))
    {
        let api = Api::<DynamicObject>::all_with(ctx.client.clone(), &ctx.ces);
        let full = api
            .get(&name)
            .await
            .map_err(|e| Error::Api(e.to_string()))?;
        full_annotations = full.metadata.annotations.unwrap_or_default();
        Ces {
            annotations: &full_annotations,
            ..ces
        }
    } else {
        ces
    };
    // Futures gathered first: a stream mapped by a closure over borrows
    // is not Send enough for the controller.
    let (ces_name, es_name) = (name.as_str(), plan.es_name.as_str());
    let work: Vec<_> = plan
        .provision
        .iter()
        .map(|ns| {
            let desired = cluster::desired(&ces, &spec, ns, es_name, &ctx.es.api_version);
            async move {
                let r = provision(ctx, ces_name, ns, es_name, &desired).await;
                (ns.clone(), r)
            }
        })
        .collect();
    let results: Vec<(String, Outcome)> = futures::stream::iter(work)
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let mut provisioned = Vec::new();
    let mut written = 0;
    for (ns, r) in results {
        match r? {
            Ok(w) => {
                written += usize::from(w);
                provisioned.push(ns);
            }
            Err(reason) => {
                failed.insert(ns, reason);
            }
        }
    }
    if written > 0 {
        tracing::info!(clusterexternalsecret = %name, written, "ExternalSecrets applied");
    }
    let new = cluster::status_after(&old, &plan.es_name, &provisioned, &failed);
    write_status(ctx, &name, &old, &new).await?;
    // A namespace that failed (a foreign ExternalSecret of that name) is
    // looked at again soon: the one in the way is not watched, so its
    // deletion would otherwise wait for the refresh.
    if !failed.is_empty() {
        return Ok(Some(refresh.map_or(RETRY, |r| r.min(RETRY))));
    }
    Ok(refresh)
}

/// A namespace's provisioning: written or not, or why it failed; or the
/// Lease lost.
type Outcome = Result<Result<bool, String>, Fenced>;

/// Applies `desired` as `es_name` in `ns`, unless one of that name that is
/// not this ClusterExternalSecret's is there, or it already holds it.
/// The inner error is the namespace's failure.
async fn provision(ctx: &Ctx, ces_name: &str, ns: &str, es_name: &str, desired: &Value) -> Outcome {
    let api = Api::<DynamicObject>::namespaced_with(ctx.client.clone(), ns, &ctx.es);
    let current = match api.get_opt(es_name).await {
        Ok(c) => c,
        Err(e) => return Ok(Err(e.to_string())),
    };
    if let Some(current) = &current {
        let refs = serde_json::to_value(&current.metadata.owner_references).unwrap_or(Value::Null);
        if !cluster::controlled_by(&refs, ces_name) {
            return Ok(Err(cluster::ALREADY_EXISTS.to_owned()));
        }
        let current = serde_json::to_value(current).unwrap_or(Value::Null);
        if cluster::holds(&current, desired, MANAGER) {
            return Ok(Ok(false));
        }
    }
    ctx.fence.check()?;
    match api
        .patch(
            es_name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(desired),
        )
        .await
    {
        Ok(_) => Ok(Ok(true)),
        Err(e) => Ok(Err(format!(
            "could not create or update ExternalSecret: {e}"
        ))),
    }
}

/// Deletes each (namespace, name) ExternalSecret this ClusterExternalSecret
/// controls (others are left); the namespaces where that failed.
async fn delete_all(
    ctx: &Ctx,
    ces_name: &str,
    targets: Vec<(String, String)>,
) -> Result<BTreeMap<String, String>, Fenced> {
    let work: Vec<_> = targets
        .into_iter()
        .map(|(ns, es_name)| async move {
            let r = delete_own(ctx, ces_name, &ns, &es_name).await;
            (ns, r)
        })
        .collect();
    let results: Vec<_> = futures::stream::iter(work)
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let mut failed = BTreeMap::new();
    for (ns, r) in results {
        if let Err(e) = r? {
            failed.insert(ns, e);
        }
    }
    Ok(failed)
}

async fn delete_own(
    ctx: &Ctx,
    ces_name: &str,
    ns: &str,
    es_name: &str,
) -> Result<Result<(), String>, Fenced> {
    let api = Api::<DynamicObject>::namespaced_with(ctx.client.clone(), ns, &ctx.es);
    let current = match api.get_opt(es_name).await {
        Ok(Some(c)) => c,
        Ok(None) => return Ok(Ok(())),
        Err(e) => return Ok(Err(e.to_string())),
    };
    let refs = serde_json::to_value(&current.metadata.owner_references).unwrap_or(Value::Null);
    if !cluster::controlled_by(&refs, ces_name) {
        return Ok(Ok(()));
    }
    ctx.fence.check()?;
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: current.metadata.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(es_name, &params).await {
        Ok(_) => Ok(Ok(())),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(Ok(())),
        Err(e) => Ok(Err(format!(
            "external secret in non matching namespace could not be deleted: {e}"
        ))),
    }
}

/// Writes the status when it differs from what is there.
async fn write_status(
    ctx: &Ctx,
    name: &str,
    old: &ClusterExternalSecretStatus,
    new: &ClusterExternalSecretStatus,
) -> Result<(), Error> {
    if old == new {
        return Ok(());
    }
    let patch = json!({
        "apiVersion": ctx.ces.api_version,
        "kind": cluster::KIND,
        "status": cluster::status_patch(old, new),
    });
    ctx.fence.check()?;
    Api::<DynamicObject>::all_with(ctx.client.clone(), &ctx.ces)
        .patch_status(
            name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map_err(|e| Error::Api(format!("status of ClusterExternalSecret {name}: {e}")))?;
    Ok(())
}
