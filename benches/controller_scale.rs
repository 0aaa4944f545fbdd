//! The controller at External Secrets Operator's breaking scale (issue 34):
//! 10,000 ExternalSecrets in 500 namespaces over 140 stores (100
//! SecretStores with `jwt` auth, 40 ClusterSecretStores with static keys,
//! `jwt` or no auth), reading 1,000 Secrets Manager secrets and 1,000
//! parameters, refreshing every 60 s, on a real kube-apiserver and etcd
//! under External Secrets Operator's own CRDs (v0.16.2), with the counting
//! AWS stand-in at 20 ms a call. Printed: time to the first sync of all,
//! Secrets written, AWS calls by API for the first sync and per interval
//! (with the bound of one call per 20 Secrets Manager secrets and per 10
//! parameters per identity), API server requests by verb, CPU and peak RSS,
//! a new ExternalSecret's time to its Secret under full load, and after a
//! restart and after a leader failover: the time until every ExternalSecret
//! is Ready again in the new process and the most refreshes in one second.
//! Then External Secrets Operator on the same workload, as far as it goes
//! (`ESO_LIMIT` seconds for its first sync, default 600), and the ratios.
//!
//!     sudo cargo bench --bench controller_scale
//!
//! `SCALE_NAMESPACES` (default 500) scales the workload down; `ESO=0` skips
//! the peer. Under `cargo test` a small version runs (ours only, our CRDs)
//! and checks that every ExternalSecret synced, that a new one synced under
//! load and that a restart neither re-read AWS at once nor lost Ready.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ::kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams};
use common::aws_standin::AwsStandIn;
use common::control_plane::*;
use common::controller::*;
use common::eso_peer::*;
use common::*;
use futures::StreamExt;
use serde_json::{Value, json};

const OUR_USER: &str = "system:serviceaccount:aws-secrets-csi:aws-secrets-csi-controller";
const ESO_USER: &str = "system:serviceaccount:aws-secrets-csi:eso";
const MANAGED: &str = "reconcile.external-secrets.io/managed=true";

#[derive(Clone, Copy)]
struct Scale {
    namespaces: usize,
    per_namespace: usize,
    /// Namespaces 0..local have a SecretStore of their own.
    local: usize,
    cluster_stores: usize,
    sm_secrets: usize,
    parameters: usize,
    interval: u64,
}

impl Scale {
    fn total(&self) -> usize {
        self.namespaces * self.per_namespace
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Service {
    SecretsManager,
    ParameterStore,
}

#[derive(Clone, Copy)]
enum Auth {
    StaticKeys,
    Controller,
    Jwt,
}

/// One kind of object the workload creates.
fn resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

struct Object {
    api: ApiResource,
    namespace: Option<String>,
    body: Value,
}

/// The workload of one controller class; its namespaces are `{class}-{n}`.
/// Also: per identity, the distinct Secrets Manager secrets and parameters
/// it reads (the bound on calls per interval).
struct Workload {
    objects: Vec<Object>,
    reads: BTreeMap<String, (BTreeSet<usize>, BTreeSet<usize>)>,
}

impl Workload {
    /// At most one call per 20 secrets and per 10 parameters per identity
    /// per interval (issue 34's target).
    fn bound(&self) -> usize {
        self.reads
            .values()
            .map(|(sm, ps)| sm.len().div_ceil(20) + ps.len().div_ceil(10))
            .sum()
    }
}

fn key_of(n: usize, j: usize, count: usize) -> usize {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut h = DefaultHasher::new();
    (n, j).hash(&mut h);
    (h.finish() % count as u64) as usize
}

fn workload(class: &str, s: Scale) -> Workload {
    let ns_api = resource("", "v1", "Namespace", "namespaces");
    let sa_api = resource("", "v1", "ServiceAccount", "serviceaccounts");
    let secret_api = resource("", "v1", "Secret", "secrets");
    let store_api = resource(
        "external-secrets.io",
        "v1beta1",
        "SecretStore",
        "secretstores",
    );
    let cluster_api = resource(
        "external-secrets.io",
        "v1beta1",
        "ClusterSecretStore",
        "clustersecretstores",
    );
    let es_api = resource(
        "external-secrets.io",
        "v1beta1",
        "ExternalSecret",
        "externalsecrets",
    );
    let ns = |n: usize| format!("{class}-{n}");
    let mut objects = Vec::new();
    for n in 0..s.namespaces {
        objects.push(Object {
            api: ns_api.clone(),
            namespace: None,
            body: json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns(n)}}),
        });
    }
    // Namespace 0 holds the static keys and the ServiceAccount the `jwt`
    // ClusterSecretStores name.
    objects.push(Object {
        api: secret_api,
        namespace: Some(ns(0)),
        body: json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "aws-keys", "namespace": ns(0)},
            "stringData": {"id": "AKIDBENCHSTATICKEYS0", "secret": "bench-static-secret-key"}}),
    });
    let service_name = |s: Service| match s {
        Service::SecretsManager => "SecretsManager",
        Service::ParameterStore => "ParameterStore",
    };
    for n in 0..s.local.max(1).min(s.namespaces) {
        objects.push(Object {
            api: sa_api.clone(),
            namespace: Some(ns(n)),
            body: json!({"apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"name": "reader", "namespace": ns(n),
                    "annotations": {"eks.amazonaws.com/role-arn": READER_ROLE}}}),
        });
    }
    let local_service = |n: usize| {
        if n.is_multiple_of(2) {
            Service::SecretsManager
        } else {
            Service::ParameterStore
        }
    };
    for n in 0..s.local.min(s.namespaces) {
        objects.push(Object {
            api: store_api.clone(),
            namespace: Some(ns(n)),
            body: json!({"apiVersion": "external-secrets.io/v1beta1", "kind": "SecretStore",
                "metadata": {"name": "store", "namespace": ns(n)},
                "spec": {"controller": class, "provider": {"aws": {
                    "service": service_name(local_service(n)), "region": REGION,
                    "auth": {"jwt": {"serviceAccountRef": {"name": "reader"}}}}}}}),
        });
    }
    let cluster = |k: usize| {
        let service = if k.is_multiple_of(2) {
            Service::SecretsManager
        } else {
            Service::ParameterStore
        };
        let auth = match k % 3 {
            0 => Auth::StaticKeys,
            1 => Auth::Controller,
            _ => Auth::Jwt,
        };
        (service, auth)
    };
    for k in 0..s.cluster_stores {
        let (service, auth) = cluster(k);
        let mut aws = json!({"service": service_name(service), "region": REGION});
        match auth {
            Auth::StaticKeys => {
                aws["auth"] = json!({"secretRef": {
                    "accessKeyIDSecretRef": {"name": "aws-keys", "key": "id", "namespace": ns(0)},
                    "secretAccessKeySecretRef": {"name": "aws-keys", "key": "secret", "namespace": ns(0)}}})
            }
            Auth::Jwt => {
                aws["auth"] =
                    json!({"jwt": {"serviceAccountRef": {"name": "reader", "namespace": ns(0)}}})
            }
            Auth::Controller => {}
        }
        objects.push(Object {
            api: cluster_api.clone(),
            namespace: None,
            body: json!({"apiVersion": "external-secrets.io/v1beta1", "kind": "ClusterSecretStore",
                "metadata": {"name": format!("{class}-cluster-{k}")},
                "spec": {"controller": class, "provider": {"aws": aws}}}),
        });
    }
    let mut reads: BTreeMap<String, (BTreeSet<usize>, BTreeSet<usize>)> = BTreeMap::new();
    for n in 0..s.namespaces {
        for j in 0..s.per_namespace {
            let (store_ref, service, identity) = if n < s.local && j < s.per_namespace / 2 {
                (
                    json!({"name": "store", "kind": "SecretStore"}),
                    local_service(n),
                    format!("jwt {}/reader", ns(n)),
                )
            } else {
                let k = (n * s.per_namespace + j) % s.cluster_stores;
                let (service, auth) = cluster(k);
                let identity = match auth {
                    Auth::StaticKeys => "static keys".to_owned(),
                    Auth::Controller => "the controller's".to_owned(),
                    Auth::Jwt => format!("jwt {}/reader", ns(0)),
                };
                (
                    json!({"name": format!("{class}-cluster-{k}"), "kind": "ClusterSecretStore"}),
                    service,
                    identity,
                )
            };
            let entry = reads.entry(identity).or_default();
            let key = match service {
                Service::SecretsManager => {
                    let i = key_of(n, j, s.sm_secrets);
                    entry.0.insert(i);
                    format!("scale/sm-{i}")
                }
                Service::ParameterStore => {
                    let i = key_of(n, j, s.parameters);
                    entry.1.insert(i);
                    format!("/scale/ps-{i}")
                }
            };
            objects.push(Object {
                api: es_api.clone(),
                namespace: Some(ns(n)),
                body: external_secret(&ns(n), &format!("es-{j}"), store_ref, &key, s.interval),
            });
        }
    }
    Workload { objects, reads }
}

fn external_secret(
    namespace: &str,
    name: &str,
    store_ref: Value,
    key: &str,
    interval: u64,
) -> Value {
    json!({"apiVersion": "external-secrets.io/v1beta1", "kind": "ExternalSecret",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"refreshInterval": format!("{interval}s"), "secretStoreRef": store_ref,
            "target": {"name": name},
            "data": [{"secretKey": "value", "remoteRef": {"key": key}}]}})
}

async fn create_all(client: &::kube::Client, objects: &[Object]) {
    let create = |o: &Object| {
        let api: Api<DynamicObject> = match &o.namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &o.api),
            None => Api::all_with(client.clone(), &o.api),
        };
        let obj: DynamicObject = serde_json::from_value(o.body.clone()).unwrap();
        async move {
            for attempt in 0..20 {
                match api.create(&Default::default(), &obj).await {
                    Ok(_) => return,
                    Err(::kube::Error::Api(e)) if e.code == 409 => return,
                    Err(e) if attempt < 19 => {
                        let _ = e;
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    }
                    Err(e) => panic!("create {}: {e}", obj.metadata.name.clone().unwrap()),
                }
            }
        }
    };
    // Namespaces first, then everything else, many at once.
    let (namespaces, rest): (Vec<&Object>, Vec<&Object>) =
        objects.iter().partition(|o| o.api.kind == "Namespace");
    for batch in [namespaces, rest] {
        futures::stream::iter(batch.into_iter().map(create))
            .buffer_unordered(32)
            .collect::<Vec<()>>()
            .await;
    }
}

/// Managed Secrets as a watch sees them: (namespace, name) -> when first
/// seen.
type Seen = Arc<Mutex<HashMap<(String, String), Instant>>>;

fn watch_managed_secrets(client: &::kube::Client) -> Seen {
    use ::kube::runtime::{WatchStreamExt, watcher};
    use k8s_openapi::api::core::v1::Secret;
    let seen: Seen = Default::default();
    let api = Api::<Secret>::all(client.clone());
    let into = seen.clone();
    tokio::spawn(async move {
        let mut events = watcher(api, watcher::Config::default().labels(MANAGED))
            .applied_objects()
            .boxed();
        while let Some(event) = events.next().await {
            let Ok(s) = event else { continue };
            let key = (
                s.metadata.namespace.unwrap_or_default(),
                s.metadata.name.unwrap_or_default(),
            );
            into.lock().unwrap().entry(key).or_insert_with(Instant::now);
        }
    });
    seen
}

fn synced(seen: &Seen, class: &str) -> usize {
    let prefix = format!("{class}-");
    seen.lock()
        .unwrap()
        .keys()
        .filter(|(ns, _)| ns.starts_with(&prefix))
        .count()
}

/// CPU seconds (user + system) a process has used.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Fields 14 and 15 of stat (utime, stime), counted from the state (3).
    (ticks(11) + ticks(12)) / 100.0
}

/// API server requests of `user` since `from` (a byte offset of the audit
/// log), by verb and resource, each request once.
fn api_requests(cp: &ControlPlane, user: &str, from: u64) -> BTreeMap<String, usize> {
    use std::io::{Read, Seek};
    let mut text = String::new();
    if let Ok(mut f) = std::fs::File::open(cp.work.join("audit.log")) {
        let _ = f.seek(std::io::SeekFrom::Start(from));
        let _ = f.read_to_string(&mut text);
    }
    let mut seen = BTreeSet::new();
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Ok(e) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if e["user"]["username"] != user {
            continue;
        }
        if let Some(id) = e["auditID"].as_str()
            && !seen.insert(id.to_owned())
        {
            continue;
        }
        let Some(resource) = e["objectRef"]["resource"].as_str() else {
            continue;
        };
        let resource = match e["objectRef"]["subresource"].as_str() {
            Some(sub) => format!("{resource}/{sub}"),
            None => resource.to_owned(),
        };
        *out.entry(format!("{} {resource}", e["verb"].as_str().unwrap_or("?")))
            .or_default() += 1;
    }
    out
}

fn audit_offset(cp: &ControlPlane) -> u64 {
    std::fs::metadata(cp.work.join("audit.log"))
        .map(|m| m.len())
        .unwrap_or(0)
}

fn by_verb(requests: &BTreeMap<String, usize>) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for (k, n) in requests {
        *out.entry(k.split(' ').next().unwrap_or("?").to_owned())
            .or_default() += n;
    }
    out
}

fn sum(m: &BTreeMap<String, u64>) -> u64 {
    m.values().sum()
}

fn scrape(port: u16) -> String {
    http_get(port, "/metrics")
        .map(|(_, b)| b)
        .unwrap_or_default()
}

/// ExternalSecrets the process reports Ready (its own metric).
fn ready_count(text: &str) -> usize {
    text.lines()
        .filter(|l| {
            l.starts_with("externalsecret_status_condition{")
                && l.contains("status=\"True\"")
                && l.ends_with(" 1")
        })
        .count()
}

/// Refreshes (reads of AWS) per Unix second after `since`, from the
/// process's `externalsecret_last_refresh_timestamp_seconds`.
fn refreshes_per_second(text: &str, since: f64) -> BTreeMap<u64, usize> {
    let mut out = BTreeMap::new();
    for l in text.lines() {
        if !l.starts_with("externalsecret_last_refresh_timestamp_seconds{") {
            continue;
        }
        let Some(at) = l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) else {
            continue;
        };
        if at >= since {
            *out.entry(at as u64).or_default() += 1;
        }
    }
    out
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

struct Process {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Process {
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn terminate(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

fn ours(dir: &Path, kubeconfig: &Path, aws: &str, class: &str, identity: &str) -> Process {
    let port = free_port();
    let log = dir.join(format!("{identity}.log"));
    let child = Command::new(env!("CARGO_BIN_EXE_aws-secrets-csi"))
        .args(["controller", "--identity", identity])
        .args([
            "--lease-namespace",
            "aws-secrets-csi",
            "--lease-name",
            class,
        ])
        .args(["--lease-duration", "5s", "--controller-class", class])
        .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("KUBECONFIG", kubeconfig)
        .env("AWS_ENDPOINT_URL", aws)
        .env("AWS_REGION", REGION)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_ACCESS_KEY_ID", "AKIDBENCHCONTROLLER0")
        .env("AWS_SECRET_ACCESS_KEY", "bench-controller-secret-key")
        // For a look inside: CONTROLLER_RUST_LOG=info CONTROLLER_ARGS=--log-step-times
        .args(
            std::env::var("CONTROLLER_ARGS")
                .unwrap_or_default()
                .split_whitespace(),
        )
        .env(
            "RUST_LOG",
            std::env::var("CONTROLLER_RUST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        // More of the controller's environment, K=V,K=V (e.g. allocator
        // settings to compare).
        .envs(
            std::env::var("CONTROLLER_ENV")
                .unwrap_or_default()
                .split(',')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned())),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start the controller");
    Process { child, port, log }
}

fn eso(dir: &Path, bin: &Path, kubeconfig: &Path, aws: &str) -> Process {
    let port = free_port();
    let log = dir.join("eso.log");
    let child = Command::new(bin)
        .args(["--controller-class", "eso"])
        .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
        .args([
            "--enable-leader-election=false",
            "--enable-push-secret-reconciler=false",
            "--enable-cluster-push-secret-reconciler=false",
            "--enable-cluster-external-secret-reconciler=false",
        ])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("KUBECONFIG", kubeconfig)
        .env("AWS_SECRETSMANAGER_ENDPOINT", aws)
        .env("AWS_SSM_ENDPOINT", aws)
        .env("AWS_STS_ENDPOINT", aws)
        .env("AWS_REGION", REGION)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_ACCESS_KEY_ID", "AKIDBENCHCONTROLLER0")
        .env("AWS_SECRET_ACCESS_KEY", "bench-controller-secret-key")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start External Secrets Operator");
    Process { child, port, log }
}

async fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if done() {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

/// What one controller did on the workload.
#[derive(Default)]
struct Figures {
    first_sync: Option<Duration>,
    synced: usize,
    first_calls: BTreeMap<String, u64>,
    interval_calls: BTreeMap<String, u64>,
    first_requests: BTreeMap<String, usize>,
    interval_requests: BTreeMap<String, usize>,
    cpu_first: f64,
    cpu_interval: f64,
    peak_rss_kib: u64,
}

fn print_figures(who: &str, f: &Figures, intervals: u64) {
    println!("  {who}:");
    match f.first_sync {
        Some(t) => println!(
            "    first sync of all: {:.1} s ({} Secrets written)",
            t.as_secs_f64(),
            f.synced
        ),
        None => println!(
            "    first sync: not finished ({} Secrets written)",
            f.synced
        ),
    }
    println!(
        "    AWS calls, first sync: {} {:?}",
        sum(&f.first_calls),
        f.first_calls
    );
    println!(
        "    AWS calls per interval: {:.0} {:?} (over {intervals})",
        sum(&f.interval_calls) as f64 / intervals as f64,
        f.interval_calls
    );
    println!(
        "    API server requests, first sync: {} {:?}",
        f.first_requests.values().sum::<usize>(),
        by_verb(&f.first_requests)
    );
    println!("      by resource: {:?}", f.first_requests);
    println!(
        "    API server requests per interval: {:.0} {:?}",
        f.interval_requests.values().sum::<usize>() as f64 / intervals as f64,
        f.interval_requests
    );
    println!(
        "    CPU: {:.1} s for the first sync, {:.1} s per interval; peak RSS {:.1} MiB",
        f.cpu_first,
        f.cpu_interval / intervals as f64,
        f.peak_rss_kib as f64 / 1024.0
    );
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let namespaces = std::env::var("SCALE_NAMESPACES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let scale = if full {
        Scale {
            namespaces,
            per_namespace: 20,
            local: 100.min(namespaces),
            cluster_stores: 40,
            sm_secrets: 1000,
            parameters: 1000,
            interval: 60,
        }
    } else {
        Scale {
            namespaces: 6,
            per_namespace: 4,
            local: 2,
            cluster_stores: 6,
            sm_secrets: 10,
            parameters: 10,
            interval: 10,
        }
    };
    let with_eso = full && std::env::var("ESO").map(|v| v != "0").unwrap_or(true);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(run(full, scale, with_eso));
}

async fn run(full: bool, s: Scale, with_eso: bool) {
    let cp = control_plane();
    let eso_bin = with_eso.then(eso_binary);
    // External Secrets Operator's own CRDs where it runs beside; ours under
    // cargo test (same API, v1beta1 served by both).
    if with_eso {
        cp.kubectl(
            &["apply", "--server-side", "-f", eso_crds().to_str().unwrap()],
            None,
        );
        cp.kubectl(
            &[
                "wait",
                "--for=condition=Established",
                "crd/externalsecrets.external-secrets.io",
                "crd/secretstores.external-secrets.io",
                "crd/clustersecretstores.external-secrets.io",
                "--timeout=60s",
            ],
            None,
        );
        cp.kubectl(
            &["apply", "-f", "-"],
            Some("apiVersion: v1\nkind: Namespace\nmetadata: {name: aws-secrets-csi}\n"),
        );
        let rbac = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/controller/rbac.yaml");
        cp.kubectl(&["apply", "-f", rbac.to_str().unwrap()], None);
    } else {
        install_controller(cp, "scale-setup");
    }
    let client = cp.admin_client().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = controller_kubeconfig(cp, dir.path());
    let seen = watch_managed_secrets(&client);

    let work = workload("ours", s);
    let bound = work.bound();
    let applying = Instant::now();
    create_all(&client, &work.objects).await;
    let applied = applying.elapsed();
    eprintln!(
        "created {} objects in {:.1} s",
        work.objects.len(),
        applied.as_secs_f64()
    );
    let total = s.total();
    let intervals = if full { 2 } else { 1 };

    // ---- ours: first sync ----
    let aws = AwsStandIn::start(Duration::from_millis(20)).await;
    let audit = audit_offset(cp);
    let started = Instant::now();
    let mut leader = ours(dir.path(), &kubeconfig, &aws.endpoint, "ours", "ours-a");
    let first = wait_until(Duration::from_secs(if full { 600 } else { 120 }), || {
        synced(&seen, "ours") >= total
    })
    .await;
    assert!(
        first.is_some(),
        "our controller synced {} of {total}; its log ends:\n{}",
        synced(&seen, "ours"),
        leader.log_tail()
    );
    let mut f = Figures {
        first_sync: first.map(|_| started.elapsed()),
        synced: synced(&seen, "ours"),
        ..Default::default()
    };
    eprintln!(
        "ours: first sync in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // Status writes trail the Secrets a little.
    tokio::time::sleep(Duration::from_secs(3)).await;
    f.first_calls = aws.calls();
    f.first_requests = api_requests(cp, OUR_USER, audit);
    f.cpu_first = cpu_seconds(leader.child.id());
    aws.reset();

    // ---- ours: steady intervals ----
    let audit = audit_offset(cp);
    let cpu = cpu_seconds(leader.child.id());
    tokio::time::sleep(Duration::from_secs(intervals * s.interval)).await;
    f.interval_calls = aws.calls();
    f.interval_requests = api_requests(cp, OUR_USER, audit);
    f.cpu_interval = cpu_seconds(leader.child.id()) - cpu;

    // ---- ours: new ExternalSecrets while all refresh ----
    let es_api = resource(
        "external-secrets.io",
        "v1beta1",
        "ExternalSecret",
        "externalsecrets",
    );
    let mut to_ready = Vec::new();
    let probes = if full { 5 } else { 2 };
    for k in 0..probes {
        let namespace = format!("ours-{}", (k * 7 + 1) % s.namespaces);
        let name = format!("new-{k}");
        let store = if (k * 7 + 1) % s.namespaces < s.local {
            json!({"name": "store", "kind": "SecretStore"})
        } else {
            json!({"name": "ours-cluster-0", "kind": "ClusterSecretStore"})
        };
        let body = external_secret(&namespace, &name, store, "scale/sm-1", s.interval);
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &namespace, &es_api);
        let applied = Instant::now();
        // A local store of an odd namespace reads Parameter Store.
        let body = if (k * 7 + 1) % s.namespaces < s.local && ((k * 7 + 1) % s.namespaces) % 2 == 1
        {
            let mut b = body;
            b["spec"]["data"][0]["remoteRef"]["key"] = json!("/scale/ps-1");
            b
        } else {
            body
        };
        api.create(&Default::default(), &serde_json::from_value(body).unwrap())
            .await
            .unwrap();
        let key = (namespace.clone(), name.clone());
        wait_until(Duration::from_secs(60), || {
            seen.lock().unwrap().contains_key(&key)
        })
        .await
        .unwrap_or_else(|| panic!("the new ExternalSecret {namespace}/{name} did not sync"));
        to_ready.push(applied.elapsed());
        tokio::time::sleep(Duration::from_secs(s.interval / probes as u64)).await;
    }
    let total = total + probes;
    f.peak_rss_kib = peak_rss_kib(leader.child.id());
    f.synced = synced(&seen, "ours");

    eprintln!("ours: intervals and new ExternalSecrets measured");
    // ---- ours: a restart (a rollout: SIGTERM, a new process) ----
    let scrape_ready = |port: u16| ready_count(&scrape(port));
    leader.terminate();
    let restarted_at = unix_now();
    aws.reset();
    let restarted = Instant::now();
    let mut leader = ours(dir.path(), &kubeconfig, &aws.endpoint, "ours", "ours-b");
    let port = leader.port;
    let restart_ready = wait_until(Duration::from_secs(300), || scrape_ready(port) >= total)
        .await
        .map(|_| restarted.elapsed());
    let calls_at_ready = sum(&aws.calls());
    // A full interval after the restart: every ExternalSecret refreshed once.
    tokio::time::sleep(Duration::from_secs(s.interval + 5).saturating_sub(restarted.elapsed()))
        .await;
    let restart_herd = refreshes_per_second(&scrape(port), restarted_at);

    // ---- ours: a leader failover (the leader killed, a standby takes over) ----
    let mut standby = ours(dir.path(), &kubeconfig, &aws.endpoint, "ours", "ours-c");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let restart_log = leader.log_tail();
    leader.kill();
    let failed_at = unix_now();
    let failed = Instant::now();
    let port = standby.port;
    let failover_ready = wait_until(Duration::from_secs(300), || scrape_ready(port) >= total)
        .await
        .map(|_| failed.elapsed());
    tokio::time::sleep(Duration::from_secs(s.interval + 5).saturating_sub(failed.elapsed())).await;
    let failover_herd = refreshes_per_second(&scrape(port), failed_at);
    let standby_log = standby.log_tail();
    standby.kill();
    // For a look inside: the API server's audit log and our logs, kept.
    if let Ok(keep) = std::env::var("KEEP_LOGS") {
        let keep = Path::new(&keep);
        let _ = std::fs::create_dir_all(keep);
        let _ = std::fs::copy(cp.work.join("audit.log"), keep.join("audit.log"));
        for name in ["ours-a.log", "ours-b.log", "ours-c.log"] {
            let _ = std::fs::copy(dir.path().join(name), keep.join(name));
        }
    }
    drop(leader);

    let herd = |h: &BTreeMap<u64, usize>| {
        let all: usize = h.values().sum();
        let peak = h.values().copied().max().unwrap_or(0);
        (all, peak)
    };
    let (restart_all, restart_peak) = herd(&restart_herd);
    let (failover_all, failover_peak) = herd(&failover_herd);

    println!(
        "\n# aws-secrets-csi controller at scale ({} build{})\n",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        if full {
            ""
        } else {
            ", small version under cargo test"
        }
    );
    println!(
        "{total} ExternalSecrets in {} namespaces over {} stores ({} SecretStores jwt; {} ClusterSecretStores: static keys, the controller's identity, jwt), {} Secrets Manager secrets + {} parameters, refreshInterval {} s, AWS stand-in at 20 ms; created in {:.1} s",
        s.namespaces,
        s.local + s.cluster_stores,
        s.local,
        s.cluster_stores,
        s.sm_secrets,
        s.parameters,
        s.interval,
        applied.as_secs_f64()
    );
    print_figures("ours", &f, intervals);
    println!(
        "    bound per interval (one call per 20 secrets and per 10 parameters per identity, {} identities): {bound}",
        work.reads.len()
    );
    let mut sorted = to_ready.clone();
    sorted.sort();
    println!(
        "    a new ExternalSecret under full load, create to Secret: {:?}",
        sorted
            .iter()
            .map(|d| format!("{:.2} s", d.as_secs_f64()))
            .collect::<Vec<_>>()
    );
    println!(
        "    restart (SIGTERM, new process): all {total} Ready in {:?}, AWS calls until then {calls_at_ready}; refreshes in the next interval: {restart_all}, at most {restart_peak} in one second ({:.1} %)",
        restart_ready.map(|d| format!("{:.1} s", d.as_secs_f64())),
        100.0 * restart_peak as f64 / restart_all.max(1) as f64
    );
    println!(
        "    leader failover (SIGKILL, standby takes the Lease of 5 s): all Ready in {:?}; refreshes in the next interval: {failover_all}, at most {failover_peak} in one second ({:.1} %)",
        failover_ready.map(|d| format!("{:.1} s", d.as_secs_f64())),
        100.0 * failover_peak as f64 / failover_all.max(1) as f64
    );

    // The small version's checks: every ExternalSecret synced, a new one
    // synced, the restart and the failover found every one Ready without a
    // herd (each refreshes at its store's tick).
    assert!(f.synced >= total, "synced {} of {total}", f.synced);
    assert!(
        restart_ready.is_some(),
        "after the restart, not all Ready; its log ends:\n{restart_log}"
    );
    assert!(
        failover_ready.is_some(),
        "after the failover, not all Ready; the standby's log ends:\n{standby_log}"
    );
    // Each store's ExternalSecrets refresh at one tick, in one batch call
    // (none reads more than a batch holds in the small version): at most a
    // call per store per interval, and some.
    let interval_calls = sum(&f.interval_calls) as usize;
    assert!(
        interval_calls > 0
            && (full || interval_calls <= (s.local + s.cluster_stores) * intervals as usize),
        "calls in {intervals} intervals: {:?}",
        f.interval_calls
    );

    if let Some(bin) = eso_bin {
        run_eso(cp, &client, &bin, s, dir.path(), &seen, &f, intervals).await;
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_eso(
    cp: &ControlPlane,
    client: &::kube::Client,
    bin: &Path,
    s: Scale,
    dir: &Path,
    seen: &Seen,
    ours: &Figures,
    intervals: u64,
) {
    // Ours is stopped; its workload goes, so that the Operator's caches
    // hold what ours held.
    let es_api = resource(
        "external-secrets.io",
        "v1beta1",
        "ExternalSecret",
        "externalsecrets",
    );
    let secret_api = resource("", "v1", "Secret", "secrets");
    for n in 0..s.namespaces {
        let ns = format!("ours-{n}");
        for (api, labels) in [(&es_api, ""), (&secret_api, MANAGED)] {
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, api);
            let _ = api
                .delete_collection(
                    &DeleteParams::default(),
                    &ListParams::default().labels(labels),
                )
                .await;
        }
    }
    cp.kubectl(
        &["apply", "-f", "-"],
        Some("apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: eso, namespace: aws-secrets-csi}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: bench-eso}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}\nsubjects: [{kind: ServiceAccount, name: eso, namespace: aws-secrets-csi}]\n"),
    );
    let token = cp.token("aws-secrets-csi", "eso", &["--duration", "2h"]);
    let kubeconfig = dir.join("eso.kubeconfig");
    cp.kubeconfig_with_token(&kubeconfig, &cp.server, &token);
    let work = workload("eso", s);
    create_all(client, &work.objects).await;
    let total = s.total();
    let limit = std::env::var("ESO_LIMIT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(600);
    let aws = AwsStandIn::start(Duration::from_millis(20)).await;
    let audit = audit_offset(cp);
    let started = Instant::now();
    let mut theirs = eso(dir, bin, &kubeconfig, &aws.endpoint);
    let first = wait_until(Duration::from_secs(limit), || synced(seen, "eso") >= total).await;
    let mut f = Figures {
        first_sync: first.map(|_| started.elapsed()),
        synced: synced(seen, "eso"),
        first_calls: aws.calls(),
        first_requests: api_requests(cp, ESO_USER, audit),
        cpu_first: cpu_seconds(theirs.child.id()),
        ..Default::default()
    };
    aws.reset();
    let audit = audit_offset(cp);
    let cpu = cpu_seconds(theirs.child.id());
    tokio::time::sleep(Duration::from_secs(intervals * s.interval)).await;
    f.interval_calls = aws.calls();
    f.interval_requests = api_requests(cp, ESO_USER, audit);
    f.cpu_interval = cpu_seconds(theirs.child.id()) - cpu;
    f.peak_rss_kib = peak_rss_kib(theirs.child.id());
    let tail = theirs.log_tail();
    theirs.kill();
    print_figures(
        &format!("External Secrets Operator v0.16.2 (its defaults; {limit} s for the first sync)"),
        &f,
        intervals,
    );
    if f.synced < total {
        println!(
            "    after {limit} s it had written {} of {total} Secrets ({:.1} a second); its log ends:\n{}",
            f.synced,
            f.synced as f64 / started.elapsed().as_secs_f64(),
            tail.lines().rev().take(3).collect::<Vec<_>>().join("\n")
        );
    }
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
    println!("  ratios (External Secrets Operator / ours):");
    if let (Some(t), Some(o)) = (f.first_sync, ours.first_sync) {
        println!(
            "    time to first sync: {:.1}",
            ratio(t.as_secs_f64(), o.as_secs_f64())
        );
    } else if let Some(o) = ours.first_sync {
        // Unfinished: its rate against ours.
        let theirs_rate = f.synced as f64 / started.elapsed().as_secs_f64();
        let ours_rate = total as f64 / o.as_secs_f64();
        println!(
            "    first-sync rate (Secrets a second): ours {ours_rate:.1}, theirs {theirs_rate:.1}: {:.1}x",
            ratio(ours_rate, theirs_rate)
        );
    }
    println!(
        "    AWS calls, first sync: {:.1}; per interval: {:.1}",
        ratio(sum(&f.first_calls) as f64, sum(&ours.first_calls) as f64),
        ratio(
            sum(&f.interval_calls) as f64,
            sum(&ours.interval_calls) as f64
        )
    );
    println!(
        "    API server requests per interval: {:.1}",
        ratio(
            f.interval_requests.values().sum::<usize>() as f64,
            ours.interval_requests.values().sum::<usize>() as f64
        )
    );
    println!(
        "    CPU per interval: {:.1}; peak RSS: {:.1}",
        ratio(f.cpu_interval, ours.cpu_interval),
        ratio(f.peak_rss_kib as f64, ours.peak_rss_kib as f64)
    );
}
