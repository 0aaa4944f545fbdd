//! The second front end: Kubernetes Secrets kept in sync from External
//! Secrets manifests (SecretStore, ClusterSecretStore, ExternalSecret), no
//! pod involved. The same pipeline as `publish` (plan -> identity -> fetch
//! -> render), driven by kube-runtime's controller: an ExternalSecret is
//! synced when it or its store changes, and again after its refresh
//! interval (on its store's clock, so one identity's refreshes batch). One
//! replica syncs; the others wait on a Lease.

mod change_record;
mod cluster_external;
pub mod crds;
pub mod events;
mod fair;
pub mod health;
mod held;
mod lease;
pub mod restart;
mod store_status;
mod sync;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::api::{ApiResource, GroupVersionKind};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};

pub use held::Held;
pub use lease::{Elector, Fence, LeaseConfig, LeaseError};
pub use sync::{Kinds, MANAGED_LABEL, MANAGER, Policies, Synced, Syncer, until_next_tick};
pub(crate) use sync::{Resolved, SyncError, existing_of};

use crate::fetch::{BatchWindow, Fetcher, RateBudget};
use crate::http_endpoint::HttpLimits;
use crate::identity::{AgentEndpoints, Identities, PodIdentityAgent};
use crate::metrics::{ExternalSecretMetrics, Metrics, SyncOutcome};

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
    /// Serve ClusterExternalSecrets (they name no controller class: turn
    /// this off where External Secrets Operator serves them).
    #[arg(
        long,
        env = "CLUSTER_EXTERNAL_SECRETS",
        default_value_t = true,
        action = clap::ArgAction::Set
    )]
    pub cluster_external_secrets: bool,
    /// Its namespace (the Deployment passes its own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "aws-secrets-csi")]
    pub lease_namespace: String,
    /// This replica's name in the Lease (the Deployment passes the pod name).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// How long a Lease holds without renewal.
    #[arg(long, env = "LEASE_DURATION", default_value = "15s", value_parser = humantime::parse_duration)]
    pub lease_duration: Duration,
    /// The shortest refresh interval honoured: an ExternalSecret that asks
    /// for less is refreshed this often (each refresh reads its Secret from
    /// the API server, so a tenant's `refreshInterval: 1s` is API load).
    #[arg(long, env = "MIN_REFRESH_INTERVAL", default_value = "10s", value_parser = humantime::parse_duration)]
    pub min_refresh_interval: Duration,
    /// Let a namespaced SecretStore without `auth` use the controller's own
    /// AWS identity. Off: that identity would serve every namespace that
    /// may create a SecretStore; a ClusterSecretStore (an admin's object)
    /// may always use it.
    #[arg(
        long,
        env = "NAMESPACED_STORES_USE_CONTROLLER_IDENTITY",
        default_value_t = false
    )]
    pub namespaced_stores_use_controller_identity: bool,
    /// The most syncs of one namespace running at once (of 32 in all): a
    /// tenant whose syncs hang leaves the rest to others, and freed slots go
    /// to the waiting namespaces in turn. Alone, a namespace's syncs of one
    /// store run this many at once and gather into few AWS batches.
    #[arg(long, env = "SYNCS_PER_NAMESPACE", default_value_t = 24)]
    pub syncs_per_namespace: usize,
    /// Calls per second to one AWS API, API=RATE (GetSecretValue,
    /// BatchGetSecretValue, GetParameters; repeat or comma-separate).
    /// Defaults: half the account's quota (5000, 50, 20): the controller is
    /// one process for the cluster; the nodes' drivers take a tenth each.
    #[arg(
        long = "aws-rate-limit",
        value_name = "API=RATE",
        env = "AWS_RATE_LIMITS",
        value_delimiter = ','
    )]
    pub aws_rate_limits: Vec<crate::fetch::RateSetting>,
    /// Restart the Deployments, StatefulSets and DaemonSets annotated
    /// `aws-secrets-csi.io/restart-on-rotation: "true"` when secrets their
    /// pods read rotate (a pod's `SecretRotated` Event, or a change of a
    /// Secret this controller writes that their pod template reads).
    #[arg(
        long,
        env = "RESTART_ON_ROTATION",
        default_value_t = true,
        action = clap::ArgAction::Set
    )]
    pub restart_on_rotation: bool,
    /// A restart waits this long after the last signal of its workload, so
    /// that one rotation seen by many pods restarts it once ...
    #[arg(long, env = "RESTART_QUIET", default_value = "10s", value_parser = humantime::parse_duration)]
    pub restart_quiet: Duration,
    /// ... but no longer than this after the first.
    #[arg(long, env = "RESTART_MAX_WAIT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub restart_max_wait: Duration,
    /// The least time between two restarts of one workload (a signal
    /// meanwhile from a pod of the new rollout waits for its end).
    #[arg(long, env = "RESTART_MIN_INTERVAL", default_value = "5m", value_parser = humantime::parse_duration)]
    pub restart_min_interval: Duration,
    /// Address of the Prometheus metrics endpoint (/metrics), IP:PORT;
    /// unset: none. Off unless asked (the chart asks): the endpoint has no
    /// authentication, a loopback default would serve no Prometheus in a
    /// pod, and replicas sharing a host would contend for one port.
    #[arg(long, env = "METRICS_ADDR", value_parser = crate::commands::parse_listen_addr)]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Address of the probes' endpoint (/readyz, /livez), IP:PORT; unset:
    /// none.
    #[arg(long, env = "HEALTH_ADDR", value_parser = crate::commands::parse_listen_addr)]
    pub health_addr: Option<std::net::SocketAddr>,
    /// An SQS queue URL fed by an EventBridge rule with Secrets Manager and
    /// Parameter Store change events: the ExternalSecrets that read a
    /// changed object are refreshed at once (polling stays the backstop).
    /// Read with the controller's own AWS identity.
    #[arg(long, env = "EVENTS_QUEUE")]
    pub events_queue: Option<String>,
    /// The ConfigMap (in the controller's namespace) where the changes AWS
    /// reported are recorded for the node drivers, which watch it and
    /// refresh the volumes that read a changed object; empty: the nodes are
    /// not told (their volumes refresh at their interval).
    #[arg(
        long,
        env = "CHANGES_CONFIGMAP",
        default_value = "aws-secrets-csi-changes"
    )]
    pub changes_configmap: String,
}

/// The longest wait before an ExternalSecret is looked at again: a longer
/// interval is checked this often (kube's scheduler cannot hold a wait of
/// years, and an interval of years would panic it).
const MAX_REQUEUE: Duration = Duration::from_secs(30 * 24 * 3600);
/// Syncs running at once, over every namespace.
const SYNCS: usize = 32;

/// A watch of an External Secrets kind, held as [`Held`], reflected into a
/// store for lookups; the stream of applied objects.
fn held_watch(
    client: &kube::Client,
    resource: &ApiResource,
) -> (
    Store<Held>,
    impl futures::Stream<Item = Result<Held, watcher::Error>> + Send + 'static,
) {
    let writer = reflector::store::Writer::new(resource.clone());
    let reader = writer.as_reader();
    let stream = watcher(
        Api::<Held>::all_with(client.clone(), resource),
        watcher::Config::default(),
    )
    .default_backoff()
    .reflect(writer)
    .applied_objects();
    (reader, stream)
}

/// A store watch's events, also sent to a second reader (the store
/// status controller), so that one watch serves both. kube's shared
/// streams need a dynamic type with a default, which these kinds lack.
/// Unbounded: the receiver is a controller's trigger, polled as long as
/// the sender's own reader (both run in [`run`] until it ends), which
/// drains it into its queue of one entry per store; what waits in the
/// channel is at most this watch's own backlog.
fn tee(
    stream: impl futures::Stream<Item = Result<Held, watcher::Error>> + Send + 'static,
) -> (
    impl futures::Stream<Item = Result<Held, watcher::Error>> + Send + 'static,
    futures::channel::mpsc::UnboundedReceiver<Result<Held, watcher::Error>>,
) {
    let (tx, rx) = futures::channel::mpsc::unbounded();
    let stream = stream.inspect(move |event| {
        if let Ok(held) = event {
            // Closed only when the status controller stopped, with run.
            let _ = tx.unbounded_send(Ok(held.clone()));
        }
    });
    (stream, rx)
}

/// Whether an ExternalSecret's spec names the store `kind`/`name`: its
/// `secretStoreRef`, or the `sourceRef.storeRef` of an entry.
fn names_store(spec: &serde_json::Value, kind: &str, name: &str) -> bool {
    let is = |r: &serde_json::Value| {
        r["name"] == name && r["kind"].as_str().unwrap_or("SecretStore") == kind
    };
    let entries = |field: &str| {
        spec[field]
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| is(&e["sourceRef"]["storeRef"]))
    };
    is(&spec["secretStoreRef"]) || entries("data") || entries("dataFrom")
}

/// What makes an ExternalSecret sync again: its spec (generation), labels
/// and annotations; not its status, which the sync itself writes.
fn sync_trigger(es: &Held) -> Option<u64> {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let m = &es.object.metadata;
    let mut h = DefaultHasher::new();
    (m.generation, &m.labels, &m.annotations, &m.uid).hash(&mut h);
    Some(h.finish())
}

/// What makes the ExternalSecrets of a store sync again: its spec
/// (generation) and whether the flood gate holds them back (with the
/// store's message, which their status repeats); not the rest of its
/// status, so that the first Ready=True written on a store in use does not
/// sync each of its ExternalSecrets again.
fn store_trigger(store: &Held) -> Option<u64> {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let m = &store.object.metadata;
    let mut h = DefaultHasher::new();
    (
        m.generation,
        &m.uid,
        sync::gate(&store.object.data["status"]),
    )
        .hash(&mut h);
    Some(h.finish())
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

/// The External Secrets kinds, each at the version the cluster serves.
pub(crate) async fn served_kinds(client: &kube::Client) -> anyhow::Result<Kinds> {
    Ok(Kinds {
        external_secret: served(client, "ExternalSecret").await?,
        secret_store: served(client, "SecretStore").await?,
        cluster_secret_store: served(client, "ClusterSecretStore").await?,
    })
}

/// A [`Syncer`] that can write nothing (`diagnose`): its fence is never
/// renewed, so every write it might attempt (Secret, status, event) is
/// refused before it is sent. Its store caches hold only `stores` (fetched
/// by the caller), listed as complete: a store not among them is not found.
#[allow(clippy::too_many_arguments)]
pub(crate) fn read_only_syncer(
    client: kube::Client,
    identities: Identities,
    fetcher: Fetcher,
    kinds: Kinds,
    class: String,
    policies: Policies,
    secret_stores: Vec<Held>,
    cluster_stores: Vec<Held>,
) -> Syncer {
    let cache = |resource: &ApiResource, objects: Vec<Held>| {
        let mut writer = reflector::store::Writer::<Held>::new(resource.clone());
        writer.apply_watcher_event(&watcher::Event::Init);
        for object in objects {
            writer.apply_watcher_event(&watcher::Event::InitApply(object));
        }
        writer.apply_watcher_event(&watcher::Event::InitDone);
        writer.as_reader()
    };
    let secret_stores = cache(&kinds.secret_store, secret_stores);
    let cluster_stores = cache(&kinds.cluster_secret_store, cluster_stores);
    Syncer::new(
        client,
        identities,
        fetcher,
        kinds,
        class,
        policies,
        Arc::new(Fence::new(Duration::from_secs(1))),
        secret_stores,
        cluster_stores,
    )
}

/// Runs the controller with its metrics and probe endpoints.
pub async fn run(args: &ControllerArgs) -> anyhow::Result<()> {
    let (metrics, es_metrics) = Metrics::new().with_external_secrets();
    let metrics = Arc::new(metrics);
    let health = Arc::new(health::Health::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut servers = Vec::new();
    if let Some(addr) = args.metrics_addr {
        let mut stop = stop_rx.clone();
        servers.push(crate::commands::spawn_logged(
            "metrics endpoint",
            crate::metrics::serve(addr, metrics.clone(), HttpLimits::default(), async move {
                let _ = stop.wait_for(|s| *s).await;
            }),
        ));
    }
    if let Some(addr) = args.health_addr {
        servers.push(crate::commands::spawn_logged(
            "health endpoint",
            health::serve(addr, health.clone(), HttpLimits::default(), stop_rx),
        ));
    }
    // The heartbeat is polled in this task, with the controller: see health.
    let result = tokio::select! {
        r = control(args, metrics, es_metrics, &health) => r,
        never = health.heartbeat() => match never {},
    };
    let _ = stop_tx.send(true);
    for server in servers {
        let _ = server.await;
    }
    result
}

async fn control(
    args: &ControllerArgs,
    metrics: Arc<Metrics>,
    es_metrics: ExternalSecretMetrics,
    health: &health::Health,
) -> anyhow::Result<()> {
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
    health.set(health::Phase::Standby);
    tokio::select! {
        r = elector.acquire() => r?,
        _ = shutdown() => return Ok(()),
    }
    health.set(health::Phase::Listing);
    tracing::info!(%identity, "leading: syncing ExternalSecrets");
    let kinds = served_kinds(&client).await?;
    let (es_store, es_stream) = held_watch(&client, &kinds.external_secret);
    // ClusterExternalSecrets (when the cluster serves the kind).
    let cluster_external = {
        let run = cluster_external::run(
            client.clone(),
            kinds.external_secret.clone(),
            es_store.clone(),
            elector.fence(),
            args.min_refresh_interval,
        );
        let serve = args.cluster_external_secrets;
        async move {
            if serve {
                run.await
            } else {
                tracing::info!(
                    "ClusterExternalSecrets are not served (--cluster-external-secrets=false)"
                );
                futures::future::pending().await
            }
        }
    };
    let (secret_stores, secret_store_stream) = held_watch(&client, &kinds.secret_store);
    let (cluster_stores, cluster_store_stream) = held_watch(&client, &kinds.cluster_secret_store);
    let (secret_store_stream, secret_store_events) = tee(secret_store_stream);
    let (cluster_store_stream, cluster_store_events) = tee(cluster_store_stream);
    let secret_store_stream =
        secret_store_stream.predicate_filter(store_trigger, Default::default());
    let cluster_store_stream =
        cluster_store_stream.predicate_filter(store_trigger, Default::default());
    // The stores' status (Ready, capabilities), on the same watches.
    let store_status = {
        let rules = Arc::new(store_status::Rules {
            client: client.clone(),
            class: args.controller_class.clone(),
            namespaced_stores_use_controller_identity: args
                .namespaced_stores_use_controller_identity,
            fence: elector.fence(),
        });
        futures::future::join(
            store_status::run(
                rules.clone(),
                kinds.secret_store.clone(),
                secret_stores.clone(),
                secret_store_events,
            ),
            store_status::run(
                rules,
                kinds.cluster_secret_store.clone(),
                cluster_stores.clone(),
                cluster_store_events,
            ),
        )
    };
    let sdk = crate::commands::aws_config().await;
    // The queue's own region (from its URL), else the controller's.
    let sqs = match &args.events_queue {
        Some(url) => {
            let region = aws_secrets_csi_core::aws_events::queue_region(url)
                .or_else(|| sdk.region().map(|r| r.to_string()))
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "--events-queue {url}: no region to reach it in: give the queue's https://sqs.REGION.amazonaws.com/ACCOUNT/NAME URL or set AWS_REGION"
                    )
                })?;
            let config = aws_sdk_sqs::config::Builder::from(&sdk)
                .region(aws_sdk_sqs::config::Region::new(region))
                .build();
            Some(aws_sdk_sqs::Client::from_conf(config))
        }
        None => None,
    };
    let watched = (
        es_store.clone(),
        secret_stores.clone(),
        cluster_stores.clone(),
    );
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
            sdk.clone(),
            metrics.clone(),
            Arc::new(RateBudget::with_defaults(
                &crate::fetch::CONTROLLER_BUDGETS,
                &args.aws_rate_limits,
            )),
            BatchWindow::Always(Duration::from_millis(100)),
        ),
        kinds.clone(),
        args.controller_class.clone(),
        Policies {
            min_refresh: args.min_refresh_interval,
            namespaced_stores_use_controller_identity: args
                .namespaced_stores_use_controller_identity,
        },
        elector.fence(),
        secret_stores,
        cluster_stores,
    ));
    syncer.read_ahead_from(es_store.clone());
    // Restarts of opted-in workloads: the Secrets whose data a sync
    // changed are one of their signals.
    let (changes, changed) = tokio::sync::mpsc::channel(restart::QUEUE);
    let restarts = {
        let restarts = args.restart_on_rotation.then(|| {
            Arc::new(restart::Restarts::new(
                client.clone(),
                elector.fence(),
                restart::timing(
                    args.restart_quiet,
                    args.restart_max_wait,
                    args.restart_min_interval,
                ),
                es_metrics.clone(),
            ))
        });
        async move {
            match restarts {
                Some(r) => r.run(changed).await,
                None => futures::future::pending().await,
            }
        }
    };
    let changes = args.restart_on_rotation.then_some(changes);
    let failures = Arc::new(sync::Failures::default());
    // Refreshes asked for by AWS change events, and the syncs they wait for.
    let syncs = Arc::new(events::Syncs::default());
    let (refresh_tx, refresh_rx) = tokio::sync::mpsc::channel(1024);
    // The record of changes for the nodes, written by the leader.
    let (record, record_writer) =
        match args.events_queue.is_some() && !args.changes_configmap.is_empty() {
            true => {
                let (record, writer) = change_record::ChangeRecord::new(
                    client.clone(),
                    &args.lease_namespace,
                    &args.changes_configmap,
                    elector.fence(),
                );
                (Some(record), Some(writer))
            }
            false => (None, None),
        };
    let events = {
        let source = args
            .events_queue
            .clone()
            .zip(sqs)
            .map(|(queue_url, sqs)| events::Source {
                record,
                queue_url,
                sqs,
                syncer: syncer.clone(),
                external_secrets: es_store.clone(),
                resource: kinds.external_secret.clone(),
                refresh: refresh_tx,
                syncs: syncs.clone(),
                metrics: metrics.clone(),
            });
        async move {
            match (source, record_writer) {
                (Some(s), Some(writer)) => {
                    futures::future::join(s.run(), writer).await;
                }
                (Some(s), None) => s.run().await,
                _ => futures::future::pending().await,
            }
        }
    };
    // Status writes (the sync's own) do not trigger a sync: without this
    // filter, each write of a changing Secret came back as a new sync.
    let triggers = es_stream.predicate_filter(sync_trigger, Default::default());
    // Syncs run in the closure below, bounded there (fairly per namespace);
    // kube's own bound would let one namespace fill every slot.
    let controller =
        Controller::for_stream_with(triggers, es_store.clone(), kinds.external_secret.clone())
            .with_config(kube::runtime::controller::Config::default().concurrency(0))
            .reconcile_on(tokio_stream::wrappers::ReceiverStream::new(refresh_rx));
    // A change to a store syncs every ExternalSecret that names it, at once.
    let by_store = |kind: &'static str| {
        let store = es_store.clone();
        let resource = kinds.external_secret.clone();
        move |changed: Held| {
            let name = changed.name_any();
            let namespace = changed.namespace();
            store
                .state()
                .into_iter()
                .filter(|es| {
                    (namespace.is_none() || es.namespace() == namespace)
                        && names_store(&es.object.data["spec"], kind, &name)
                })
                .map(|es| ObjectRef::from_obj_with(es.as_ref(), resource.clone()))
                .collect::<Vec<_>>()
        }
    };
    // A Secret the controller wrote that is deleted or edited syncs its
    // ExternalSecret at once (External Secrets repairs them the same way):
    // found by its controller reference (Owner) or by the ExternalSecret's
    // own field manager (Orphan, CreateOrMerge). Metadata only: the
    // controller holds no Secret's data.
    let by_secret = {
        let store = es_store.clone();
        let resource = kinds.external_secret.clone();
        move |s: kube::core::PartialObjectMeta<k8s_openapi::api::core::v1::Secret>| {
            let uids: Vec<String> = s
                .metadata
                .owner_references
                .iter()
                .flatten()
                .filter(|o| o.kind == "ExternalSecret")
                .map(|o| o.uid.clone())
                .chain(s.metadata.managed_fields.iter().flatten().filter_map(|f| {
                    f.manager
                        .as_deref()?
                        .strip_prefix(MANAGER)?
                        .strip_prefix('/')
                        .map(str::to_owned)
                }))
                .collect();
            if uids.is_empty() {
                return Vec::new();
            }
            let namespace = s.metadata.namespace.clone();
            store
                .state()
                .into_iter()
                .filter(|es| {
                    es.namespace() == namespace
                        && es
                            .object
                            .metadata
                            .uid
                            .as_ref()
                            .is_some_and(|u| uids.contains(u))
                })
                .map(|es| ObjectRef::from_obj_with(es.as_ref(), resource.clone()))
                .collect::<Vec<_>>()
        }
    };
    let secrets = watcher(
        Api::<kube::core::PartialObjectMeta<k8s_openapi::api::core::v1::Secret>>::all(
            client.clone(),
        ),
        watcher::Config::default().labels(&format!("{MANAGED_LABEL}=true")),
    )
    .default_backoff()
    .touched_objects();
    let controller = controller
        .watches_stream_with(secrets, by_secret, ())
        .watches_stream_with(
            secret_store_stream,
            by_store("SecretStore"),
            kinds.secret_store.clone(),
        )
        .watches_stream_with(
            cluster_store_stream,
            by_store("ClusterSecretStore"),
            kinds.cluster_secret_store.clone(),
        );
    // The series of an ExternalSecret that is gone go with it.
    es_metrics.set_exists(Arc::new({
        let store = es_store.clone();
        let resource = kinds.external_secret.clone();
        move |namespace: &str, name: &str| {
            store
                .get(&ObjectRef::new_with(name, resource.clone()).within(namespace))
                .is_some()
        }
    }));
    // Ready once every watch the syncs read has listed (the loop polls
    // them); pruned now and then, for churn between scrapes.
    let listed = {
        let (a, b, c) = watched;
        let es_store_for_syncs = es_store.clone();
        let syncs_for_prune = syncs.clone();
        let syncer_for_prune = syncer.clone();
        let es_metrics = es_metrics.clone();
        async move {
            let _ = futures::future::join3(
                a.wait_until_ready(),
                b.wait_until_ready(),
                c.wait_until_ready(),
            )
            .await;
            health.set(health::Phase::Syncing);
            tracing::info!("watches listed: ready");
            let mut every = tokio::time::interval(Duration::from_secs(60));
            loop {
                every.tick().await;
                es_metrics.prune();
                let held = es_store_for_syncs.state();
                let ids: std::collections::HashSet<String> = held
                    .iter()
                    .map(|es| format!("{}/{}", es.namespace().unwrap_or_default(), es.name_any()))
                    .collect();
                syncs_for_prune.retain(|id| ids.contains(id));
                let uids: std::collections::HashSet<&str> = held
                    .iter()
                    .filter_map(|es| es.object.metadata.uid.as_deref())
                    .collect();
                syncer_for_prune.retain_ticks(|uid| uids.contains(uid));
            }
        }
    };
    let slots = Arc::new(fair::Slots::new(SYNCS, args.syncs_per_namespace));
    let run = controller
        .run(
            move |es: Arc<Held>, syncer: Arc<Syncer>| {
                let failures = failures.clone();
                let slots = slots.clone();
                let es_metrics = es_metrics.clone();
                let changes = changes.clone();
                let syncs = syncs.clone();
                async move {
                    let namespace = es.namespace().unwrap_or_default();
                    let name = es.name_any();
                    let id = format!("{namespace}/{name}");
                    let sync_started = syncs.start(&id);
                    // New and changed ExternalSecrets before refreshes.
                    let urgent = syncer.is_new_or_changed(&es.object);
                    let slot = slots.take(&namespace, urgent).await;
                    tracing::debug!(externalsecret = %id, "sync slot taken");
                    let started = std::time::Instant::now();
                    // Boxed: the thousands of syncs waiting for a slot
                    // hold a pointer each, not a sync's whole state.
                    let result = Box::pin(syncer.sync(&es, slot)).await;
                    syncs.end(sync_started);
                    match sync_outcome(&result, started.elapsed()) {
                        Some(outcome) => es_metrics.synced(&namespace, &name, outcome),
                        None if matches!(result, Ok(Synced::NotOurs)) => {
                            es_metrics.forget(&namespace, &name)
                        }
                        None => {}
                    }
                    match result {
                        Ok(Synced::Retained { next } | Synced::Deleted { next }) => {
                            failures.succeeded(&id);
                            Ok(next.map_or_else(Action::await_change, |d| {
                                Action::requeue(d.min(MAX_REQUEUE))
                            }))
                        }
                        Ok(Synced::Done { written, next, rotated, .. }) => {
                            failures.succeeded(&id);
                            if written {
                                tracing::info!(externalsecret = %id, "Secret synced");
                            }
                            if let (Some(name), Some(changes)) = (rotated, &changes) {
                                let changed = restart::SecretChanged { namespace, name };
                                if changes.try_send(changed).is_err() {
                                    tracing::warn!(externalsecret = %id, "too many changed Secrets waiting: the workloads that read this one are not restarted");
                                }
                            }
                            Ok(next.map_or_else(Action::await_change, |d| {
                                Action::requeue(d.min(MAX_REQUEUE))
                            }))
                        }
                        // Looked for again on the retry schedule (the Secret
                        // may be on its way), at most every interval.
                        Ok(Synced::Missing { next }) => {
                            let n = failures.failed(&id);
                            let retry = sync::retry_after(n);
                            Ok(Action::requeue(next.map_or(retry, |d| d.min(retry)).min(MAX_REQUEUE)))
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
        _ = futures::future::join5(run, cluster_external, store_status, restarts, events) => Ok(()),
        // Never ends (it prunes on); here to be polled in this task.
        _ = listed => Ok(()),
        lost = elector.hold() => {
            // Another replica leads now: stop, and start again as a follower.
            Err(anyhow::anyhow!("{lost}; stopping so that one replica syncs"))
        }
        _ = shutdown() => {
            elector.release().await;
            Ok(())
        }
    }
}

/// A sync's outcome as External Secrets' metrics count it; None: not a
/// sync of ours (another controller's store, or this replica lost the
/// Lease and wrote nothing).
fn sync_outcome(result: &Result<Synced, sync::SyncError>, took: Duration) -> Option<SyncOutcome> {
    let seconds = took.as_secs_f64();
    let ok = |refreshed| {
        Some(SyncOutcome {
            error: false,
            ready: Some(true),
            refreshed,
            seconds,
        })
    };
    match result {
        Ok(Synced::NotOurs) => None,
        Ok(Synced::Done { refreshed, .. }) => ok(*refreshed),
        // As sync() writes them: Ready=True, the values read.
        Ok(Synced::Missing { .. } | Synced::Retained { .. } | Synced::Deleted { .. }) => ok(true),
        Err(sync::SyncError::Fenced(_)) => None,
        Err(_) => Some(SyncOutcome {
            error: true,
            ready: Some(false),
            refreshed: false,
            seconds,
        }),
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

#[cfg(test)]
mod tests {
    #[test]
    fn a_store_is_named_by_secret_store_ref_or_by_an_entry() {
        let spec = serde_json::json!({
            "secretStoreRef": {"name": "own"},
            "data": [{"secretKey": "k", "remoteRef": {"key": "a"}, "sourceRef": {"storeRef": {"name": "other", "kind": "ClusterSecretStore"}}}],
            "dataFrom": [{"extract": {"key": "b"}, "sourceRef": {"storeRef": {"name": "third"}}}]
        });
        assert!(super::names_store(&spec, "SecretStore", "own"));
        assert!(super::names_store(&spec, "ClusterSecretStore", "other"));
        assert!(super::names_store(&spec, "SecretStore", "third"));
        assert!(!super::names_store(&spec, "SecretStore", "other"));
        assert!(!super::names_store(&spec, "ClusterSecretStore", "own"));
    }
}
