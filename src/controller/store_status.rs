//! The status of the SecretStores and ClusterSecretStores this controller
//! serves (`spec.controller`), as External Secrets Operator's store
//! controller writes it: `Ready` (with reason and message) and
//! `capabilities`. The verdict is
//! `aws_secrets_csi_core::external::store_status`'s (pure, no AWS call);
//! this module reads and writes. A store is looked at again on every event
//! of its watch (the sync's own, teed) and every `refreshInterval` (5
//! minutes by default, as ESO's `--store-requeue-interval`). The status is
//! written only when it differs, by a merge patch that carries the store's
//! resourceVersion (a verdict on an older spec must not land over a newer
//! one), after the Lease fence. The ExternalSecrets of a store see the
//! write through the same watch and sync again: a store that becomes valid
//! lets them through the flood gate at once.

use std::sync::Arc;
use std::time::Duration;

use aws_secrets_csi_core::external::{self, store_status};
use futures::{Stream, StreamExt};
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use serde_json::json;

use super::held::Held;
use super::lease::{Fence, Fenced};

/// The field manager of the statuses written here.
pub const MANAGER: &str = "aws-secrets-csi-controller-storestatus";
/// The wait after a write that failed (or lost a race with a newer spec,
/// whose own event comes anyway).
const RETRY: Duration = Duration::from_secs(15);
/// Stores validated at once (each a pure check and at most one write).
const CONCURRENCY: u16 = 4;

/// What every store's reconcile needs.
pub struct Rules {
    pub client: kube::Client,
    pub class: String,
    pub namespaced_stores_use_controller_identity: bool,
    pub fence: Arc<Fence>,
}

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error(transparent)]
    Fenced(#[from] Fenced),
    #[error("{0}")]
    Api(String),
}

/// Runs one kind's controller (SecretStore or ClusterSecretStore) until its
/// watch ends. `trigger`: the events of the kind's watch (the sync's);
/// `reader`: that watch's store.
pub async fn run(
    rules: Arc<Rules>,
    resource: ApiResource,
    reader: Store<Held>,
    trigger: impl Stream<Item = Result<Held, watcher::Error>> + Send + 'static,
) {
    let kind = resource.kind.clone();
    let ctx = Arc::new((rules, resource.clone()));
    Controller::for_stream_with(trigger, reader, resource)
        .with_config(kube::runtime::controller::Config::default().concurrency(CONCURRENCY))
        .run(
            move |store: Arc<Held>, ctx: Arc<(Arc<Rules>, ApiResource)>| {
                let kind = kind.clone();
                async move {
                    let (rules, resource) = (&ctx.0, &ctx.1);
                    match reconcile(&store, rules, resource).await {
                        Ok(next) => Ok::<_, std::convert::Infallible>(next),
                        Err(e) => {
                            tracing::warn!(%kind, store = %id(&store), error = %e, "store status not written; trying again");
                            Ok(Action::requeue(RETRY))
                        }
                    }
                }
            },
            |_, _, _| Action::await_change(),
            ctx,
        )
        .for_each(|_| async {})
        .await;
}

fn id(store: &Held) -> String {
    match store.namespace() {
        Some(ns) => format!("{ns}/{}", store.name_any()),
        None => store.name_any(),
    }
}

async fn reconcile(store: &Held, rules: &Rules, resource: &ApiResource) -> Result<Action, Error> {
    let object = &store.object;
    // A spec not held (too large, unreadable) cannot say whose it is: left
    // alone, as its ExternalSecrets report it.
    if store.refusal.is_some() {
        return Ok(Action::await_change());
    }
    let spec = object.data.get("spec").cloned().unwrap_or_default();
    if !external::served_by(&spec, &rules.class) {
        return Ok(Action::await_change());
    }
    let namespace = object.metadata.namespace.as_deref();
    let verdict = store_status::Verdict::of(
        &spec,
        namespace,
        rules.namespaced_stores_use_controller_identity,
    );
    let next = match store_status::refresh_interval(&spec) {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(store = %id(store), error = %e, "validated again on the default interval");
            store_status::DEFAULT_REFRESH
        }
    }
    .min(super::MAX_REQUEUE);
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let Some(status) = store_status::next_status(&object.data["status"], &verdict, &now) else {
        return Ok(Action::requeue(next));
    };
    let name = store.name_any();
    let api = match namespace {
        Some(ns) => Api::<DynamicObject>::namespaced_with(rules.client.clone(), ns, resource),
        None => Api::<DynamicObject>::all_with(rules.client.clone(), resource),
    };
    let patch = json!({
        "metadata": {"resourceVersion": object.metadata.resource_version},
        "status": status,
    });
    rules.fence.check()?;
    match api
        .patch_status(
            &name,
            &PatchParams {
                field_manager: Some(MANAGER.into()),
                ..Default::default()
            },
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => {
            tracing::info!(kind = %resource.kind, store = %id(store), ready = verdict.ready, message = %verdict.message, "store status written");
            Ok(Action::requeue(next))
        }
        // Changed (or gone) since this verdict: its own event follows.
        Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => Ok(Action::await_change()),
        Err(e) => Err(Error::Api(format!(
            "status of {} {}: {e}",
            resource.kind,
            id(store)
        ))),
    }
}
