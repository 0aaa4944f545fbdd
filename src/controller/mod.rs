//! The second front end: Kubernetes Secrets kept in sync from External
//! Secrets manifests (SecretStore, ClusterSecretStore, ExternalSecret), no
//! pod involved. The same pipeline as `publish` (plan -> identity -> fetch
//! -> render), driven by kube-runtime's controller: an ExternalSecret is
//! synced when it or its store changes, and again after its refresh
//! interval (on its store's clock, so one identity's refreshes batch). One
//! replica syncs; the others wait on a Lease.

mod lease;
mod sync;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, ResourceExt};

pub use lease::{Elector, LeaseConfig, LeaseError};
pub use sync::{Kinds, MANAGED_LABEL, MANAGER, Synced, Syncer, until_next_tick};

use crate::fetch::{BatchWindow, Fetcher, RateBudget};
use crate::identity::{AgentEndpoints, Identities, PodIdentityAgent};
use crate::metrics::Metrics;

/// The controller (a Deployment; one replica active).
#[derive(Debug, clap::Args)]
pub struct ControllerArgs {
    /// The `spec.controller` of the stores this controller serves; empty:
    /// the stores that name none. Lets External Secrets Operator and this
    /// controller run side by side while a cluster migrates.
    #[arg(long, env = "CONTROLLER_CLASS", default_value = "")]
    pub controller_class: String,
    /// The Lease that elects the active replica.
    #[arg(long, env = "LEASE_NAME", default_value = "aws-secrets-csi-controller")]
    pub lease_name: String,
    /// Its namespace (the Deployment passes its own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "aws-secrets-csi")]
    pub lease_namespace: String,
    /// This replica's name in the Lease (the Deployment passes the pod name).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// How long a Lease holds without renewal.
    #[arg(long, env = "LEASE_DURATION", default_value = "15s", value_parser = humantime::parse_duration)]
    pub lease_duration: Duration,
}

/// The API resource of an External Secrets kind, at the version the cluster
/// serves: v1 when it is there, else v1beta1 (External Secrets Operator's
/// own CRDs before v0.17 serve only v1beta1).
async fn served(client: &kube::Client, kind: &str) -> anyhow::Result<ApiResource> {
    let mut last = None;
    for version in ["v1", "v1beta1"] {
        let gvk = GroupVersionKind::gvk("external-secrets.io", version, kind);
        match kube::discovery::pinned_kind(client, &gvk).await {
            Ok((resource, _)) => return Ok(resource),
            Err(e) => last = Some(e),
        }
    }
    Err(anyhow::anyhow!(
        "the cluster serves no external-secrets.io {kind} (install deploy/controller/crd-*.yaml): {}",
        last.map(|e| e.to_string()).unwrap_or_default()
    ))
}

pub async fn run(args: &ControllerArgs) -> anyhow::Result<()> {
    let client = crate::commands::kube_client().await?;
    let identity = args
        .identity
        .clone()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| format!("controller-{}", std::process::id()));
    let elector = Elector::new(
        client.clone(),
        LeaseConfig {
            namespace: args.lease_namespace.clone(),
            name: args.lease_name.clone(),
            identity: identity.clone(),
            duration: args.lease_duration,
        },
    );
    tracing::info!(%identity, lease = %args.lease_name, "waiting for the lease");
    tokio::select! {
        r = elector.acquire() => r?,
        _ = shutdown() => return Ok(()),
    }
    tracing::info!(%identity, "leading: syncing ExternalSecrets");
    let kinds = Kinds {
        external_secret: served(&client, "ExternalSecret").await?,
        secret_store: served(&client, "SecretStore").await?,
        cluster_secret_store: served(&client, "ClusterSecretStore").await?,
    };
    let sdk = crate::commands::aws_config().await;
    let metrics = Arc::new(Metrics::new());
    let syncer = Arc::new(Syncer::new(
        client.clone(),
        Identities::new(
            sdk.clone(),
            PodIdentityAgent::new(
                AgentEndpoints::default(),
                Duration::from_secs(2),
                Duration::from_secs(10),
            ),
            metrics.clone(),
        ),
        // The refreshes of one store's tick reach the fetch layer over a
        // few hundred milliseconds (32 syncs at a time): a wider batch
        // window gathers them into fewer calls.
        Fetcher::with_window(
            sdk,
            metrics,
            Arc::new(RateBudget::new(&[])),
            BatchWindow::Always(Duration::from_millis(100)),
        ),
        kinds.clone(),
        args.controller_class.clone(),
    ));
    let failures = Arc::new(sync::Failures::default());
    let es_api: Api<DynamicObject> = Api::all_with(client.clone(), &kinds.external_secret);
    // Syncs in flight are bounded: a thousand ExternalSecrets applied at
    // once are synced 32 at a time, not held in memory together.
    let controller = Controller::new_with(
        es_api,
        watcher::Config::default(),
        kinds.external_secret.clone(),
    )
    .with_config(kube::runtime::controller::Config::default().concurrency(32));
    let store = controller.store();
    // A change to a store syncs every ExternalSecret that names it, at once.
    let by_store = |kind: &'static str| {
        let store = store.clone();
        let resource = kinds.external_secret.clone();
        move |changed: DynamicObject| {
            let name = changed.name_any();
            let namespace = changed.namespace();
            store
                .state()
                .into_iter()
                .filter(|es| {
                    let r = &es.data["spec"]["secretStoreRef"];
                    let es_kind = r["kind"].as_str().unwrap_or("SecretStore");
                    r["name"] == name.as_str()
                        && es_kind == kind
                        && (namespace.is_none() || es.namespace() == namespace)
                })
                .map(|es| ObjectRef::from_obj_with(es.as_ref(), resource.clone()))
                .collect::<Vec<_>>()
        }
    };
    let controller = controller
        .owns(
            Api::<k8s_openapi::api::core::v1::Secret>::all(client.clone()),
            watcher::Config::default().labels(&format!("{MANAGED_LABEL}=true")),
        )
        .watches_with(
            Api::<DynamicObject>::all_with(client.clone(), &kinds.secret_store),
            kinds.secret_store.clone(),
            watcher::Config::default(),
            by_store("SecretStore"),
        )
        .watches_with(
            Api::<DynamicObject>::all_with(client.clone(), &kinds.cluster_secret_store),
            kinds.cluster_secret_store.clone(),
            watcher::Config::default(),
            by_store("ClusterSecretStore"),
        );
    let run = controller
        .run(
            move |es: Arc<DynamicObject>, syncer: Arc<Syncer>| {
                let failures = failures.clone();
                async move {
                    let id = format!("{}/{}", es.namespace().unwrap_or_default(), es.name_any());
                    match syncer.sync(&es).await {
                        Ok(Synced::Done { written, next }) => {
                            failures.succeeded(&id);
                            if written {
                                tracing::info!(externalsecret = %id, "Secret synced");
                            }
                            Ok(next.map_or_else(Action::await_change, Action::requeue))
                        }
                        Ok(Synced::NotOurs) => Ok(Action::await_change()),
                        Err(e) => {
                            let n = failures.failed(&id);
                            tracing::warn!(externalsecret = %id, error = %e, "sync failed; the Secret keeps its last good data");
                            Ok::<_, std::convert::Infallible>(Action::requeue(sync::retry_after(n)))
                        }
                    }
                }
            },
            |_es, _e: &std::convert::Infallible, _| Action::await_change(),
            syncer,
        )
        .for_each(|_| async {});
    tokio::select! {
        _ = run => Ok(()),
        lost = elector.hold() => {
            // Another replica leads now: stop, and start again as a follower.
            Err(anyhow::anyhow!("{lost}; stopping so that one replica syncs"))
        }
        _ = shutdown() => Ok(()),
    }
}

async fn shutdown() {
    use tokio::signal::unix::{SignalKind, signal};
    if let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        }
    } else {
        std::future::pending::<()>().await;
    }
}
