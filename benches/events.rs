//! Told, not polling: the controller with `--events-queue` on a real
//! kube-apiserver and etcd, moto as AWS (Secrets Manager and SQS). 1,000
//! ExternalSecrets read 200 secrets (five each, one store, one identity),
//! refreshing every hour as External Secrets Operator's default has it.
//! Beside it, a node driver (real tmpfs volumes) holds 100 pods of one
//! identity, each mounting a class of 20 of the secrets (refreshInterval
//! 1h), told of changes through the controller's change record.
//! Rounds of changes: each changes some secrets in moto and puts their
//! events on the queue (EventBridge's exact shape); printed: the time from
//! the event to every Secret, and to every mounted file, that reads the
//! secret holding the new value (p50, p99, max), the AWS calls per event of
//! the controller and of the node, and what polling at the peers' defaults
//! costs for the same freshness.
//!
//!     sudo cargo bench --bench events
//!
//! Under `cargo test` a small version runs (20 ExternalSecrets over 4
//! secrets) and checks that every event reached its Secrets.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::control_plane::*;
use common::controller::*;
use common::*;

const NS: &str = "bench-events";
const CLASS: &str = "bench-events";

fn event(name: &str) -> String {
    put_secret_value_event(name)
}

type Seen = std::sync::Arc<std::sync::Mutex<BTreeMap<String, String>>>;

/// Every Secret of the namespace as a watch sees it: name -> its
/// `password`, decoded. (A watch, not a list every few milliseconds: a list
/// of 1,000 Secrets loads the API server the controller writes to.)
fn watch_secrets(client: &::kube::Client) -> Seen {
    use ::kube::runtime::{WatchStreamExt, watcher};
    use futures::StreamExt;
    use k8s_openapi::api::core::v1::Secret;
    let seen: Seen = Default::default();
    let api = ::kube::Api::<Secret>::namespaced(client.clone(), NS);
    let into = seen.clone();
    tokio::spawn(async move {
        let mut events = watcher(api, watcher::Config::default())
            .applied_objects()
            .boxed();
        while let Some(event) = events.next().await {
            let Ok(s) = event else { continue };
            let (Some(name), Some(value)) = (
                s.metadata.name,
                s.data.and_then(|d| d.get("password").map(|v| v.0.to_vec())),
            ) else {
                continue;
            };
            into.lock()
                .unwrap()
                .insert(name, String::from_utf8_lossy(&value).into_owned());
        }
    });
    seen
}

fn secrets(seen: &Seen) -> BTreeMap<String, String> {
    seen.lock().unwrap().clone()
}

fn calls(scrape: &str) -> f64 {
    scrape
        .lines()
        .filter(|l| l.starts_with("aws_api_calls_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    require_root();
    let (secret_count, per_secret, rounds, changed) =
        if full { (200, 5, 5, 20) } else { (4, 5, 2, 2) };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(full, secret_count, per_secret, rounds, changed));
}

async fn run(full: bool, secret_count: usize, per_secret: usize, rounds: usize, changed: usize) {
    let cp = control_plane();
    install_controller(cp, NS);
    let moto = moto();
    let queue = moto.create_queue("bench-events").await;
    for i in 0..secret_count {
        moto.create_secret(&format!("bench/s{i}"), "v0").await;
    }
    let mut manifests = format!(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: reader\n  namespace: {NS}\n  annotations: {{eks.amazonaws.com/role-arn: \"{READER_ROLE}\"}}\n---\napiVersion: external-secrets.io/v1\nkind: SecretStore\nmetadata: {{name: sm, namespace: {NS}}}\nspec:\n  controller: {CLASS}\n  provider: {{aws: {{service: SecretsManager, region: {REGION}, auth: {{jwt: {{serviceAccountRef: {{name: reader}}}}}}}}}}\n"
    );
    for i in 0..secret_count {
        for j in 0..per_secret {
            manifests += &format!(
                "---\napiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {{name: es-{i}-{j}, namespace: {NS}}}\nspec:\n  refreshInterval: 1h\n  secretStoreRef: {{name: sm}}\n  data: [{{secretKey: password, remoteRef: {{key: bench/s{i}}}}}]\n"
            );
        }
    }
    cp.kubectl(&["apply", "-f", "-"], Some(&manifests));
    let total = secret_count * per_secret;

    // The node: pods of one identity, class c reads secrets
    // [c * per_class, (c + 1) * per_class).
    let (pod_count, classes) = if full { (100, 10) } else { (4, 2) };
    let per_class = secret_count / classes;
    let mounted = Mounted::start(cp, pod_count, classes, per_class).await;

    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = controller_kubeconfig(cp, dir.path());
    let (access, secret) = moto.admin_keys();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let started = Instant::now();
    let _controller = ControllerProcess::start_with_env(
        dir.path(),
        "bench-events",
        &kubeconfig,
        &[
            "--controller-class",
            CLASS,
            "--lease-name",
            "bench-events",
            "--events-queue",
            &queue,
            "--metrics-addr",
            &addr,
        ],
        &moto.endpoint,
        &[
            ("AWS_ACCESS_KEY_ID", access),
            ("AWS_SECRET_ACCESS_KEY", secret),
            // The tests' debug logging of every crate is not what runs.
            ("RUST_LOG", "info"),
        ],
    );
    let client = cp.admin_client().await;
    let seen = watch_secrets(&client);
    loop {
        let s = secrets(&seen);
        if s.len() == total && s.values().all(|v| v == "v0") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "first sync: {} of {total}",
            s.len()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let first_sync = started.elapsed();
    let scrape = || {
        http_get(port, "/metrics")
            .map(|(_, b)| b)
            .unwrap_or_default()
    };
    // Let the first sync's stragglers settle before counting.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let calls_before = calls(&scrape());
    let node_calls_before = mounted.reads().await;
    let mut to_file: Vec<Duration> = Vec::new();

    let mut latencies: Vec<Duration> = Vec::new();
    for round in 1..=rounds {
        let value = format!("v{round}");
        let chosen: Vec<usize> = (0..changed)
            .map(|k| (k * secret_count / changed + round) % secret_count)
            .collect();
        for &i in &chosen {
            moto.secrets_manager()
                .put_secret_value()
                .secret_id(format!("bench/s{i}"))
                .secret_string(&value)
                .send()
                .await
                .unwrap();
        }
        // Ten to a call, the calls at once (EventBridge delivers a burst
        // in parallel); timed from the first event on the queue.
        let sent = Instant::now();
        let bodies: Vec<String> = chosen
            .iter()
            .map(|i| event(&format!("bench/s{i}")))
            .collect();
        send_messages(&queue, &bodies).await;
        // Per changed secret: when all its Secrets held the new value, and
        // when all the files that mount it did.
        let mut waiting: BTreeMap<usize, ()> = chosen.iter().map(|&i| (i, ())).collect();
        let mut files_waiting: BTreeMap<usize, ()> = waiting.clone();
        while !waiting.is_empty() || !files_waiting.is_empty() {
            files_waiting.retain(|i, _| {
                let done = mounted.all_read(*i, &value);
                if done {
                    to_file.push(sent.elapsed());
                }
                !done
            });
            if !waiting.is_empty() {
                let s = secrets(&seen);
                let now = sent.elapsed();
                waiting.retain(|i, _| {
                    let done = (0..per_secret)
                        .all(|j| s.get(&format!("es-{i}-{j}")).map(String::as_str) == Some(&value));
                    if done {
                        latencies.push(now);
                    }
                    !done
                });
            }
            assert!(
                sent.elapsed() < Duration::from_secs(120),
                "round {round}: {} secrets, {} files not propagated",
                waiting.len(),
                files_waiting.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let event_calls = calls(&scrape()) - calls_before;
    let node_calls = (mounted.reads().await - node_calls_before) as f64;
    let events = (rounds * changed) as f64;
    latencies.sort();
    to_file.sort();
    let per_event = event_calls / events;
    // External Secrets Operator at its defaults: every ExternalSecret asks
    // AWS once per refreshInterval (1h), one GetSecretValue each.
    let eso_per_hour = total as f64;
    // To be as fresh by polling (the p99 here), each would poll that often.
    let p99 = percentile(&latencies, 0.99).as_secs_f64().max(0.001);
    let eso_same_freshness_per_hour = total as f64 * 3600.0 / p99;
    println!(
        "# aws-secrets-csi controller, AWS change events ({} build{})\n",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        if full {
            ""
        } else {
            ", smoke run under cargo test"
        }
    );
    println!(
        "{total} ExternalSecrets over {secret_count} secrets (refreshInterval 1h), one store and identity; real kube-apiserver, moto as Secrets Manager and SQS; first sync of all {:.1} s.\n",
        first_sync.as_secs_f64()
    );
    println!("| events | propagation p50 | p99 | max | AWS calls per event | Secrets per event |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| {} ({rounds} rounds of {changed}) | {:.0} ms | {:.0} ms | {:.0} ms | {per_event:.2} | {per_secret} |",
        events,
        percentile(&latencies, 0.5).as_secs_f64() * 1000.0,
        p99 * 1000.0,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1000.0,
    );
    println!();
    let objects_per_pod = per_class;
    println!(
        "{pod_count} pods on one node (one identity, {classes} classes of {per_class} secrets, refreshInterval 1h; each secret mounted by {} pods):\n",
        pod_count / classes
    );
    println!(
        "| events | event to file p50 | p99 | max | node AWS calls per event | files per event |"
    );
    println!("|---|---|---|---|---|---|");
    println!(
        "| {} | {:.0} ms | {:.0} ms | {:.0} ms | {:.2} | {} |",
        events,
        percentile(&to_file, 0.5).as_secs_f64() * 1000.0,
        percentile(&to_file, 0.99).as_secs_f64() * 1000.0,
        to_file.last().copied().unwrap_or_default().as_secs_f64() * 1000.0,
        node_calls / events,
        pod_count / classes
    );
    println!();
    // The upstream driver with rotation on polls every object of every
    // pod every 2 minutes (its default), one GetSecretValue each.
    println!(
        "Secrets Store CSI Driver + AWS provider with rotation at its default (2 min): {} calls an hour and up to 2 min of staleness; here {:.2} calls per change.",
        pod_count * objects_per_pod * 30,
        node_calls / events
    );
    println!();
    println!(
        "External Secrets Operator at its defaults: {eso_per_hour:.0} calls an hour for up to an hour of staleness; polled as fresh as this p99, {eso_same_freshness_per_hour:.0} calls an hour. Here: {per_event:.2} calls per change (ratio per change against one ESO poll round of the same Secrets: {:.4}).",
        per_event / per_secret as f64
    );
    if !full {
        assert_eq!(
            latencies.len(),
            rounds * changed,
            "every event reached its Secrets"
        );
        assert!(per_event <= 2.0, "calls per event: {per_event}");
        assert_eq!(
            to_file.len(),
            rounds * changed,
            "every event reached its files"
        );
        assert!(
            node_calls / events <= 1.0,
            "node calls per event: {}",
            node_calls / events
        );
    }
    mounted.unpublish().await;
}

const NODE_NS: &str = "bench-events-node";

/// The node driver and the volumes of its pods.
struct Mounted {
    driver: Driver,
    dir: TestDir,
    /// Per pod: its spec and the secrets its class reads.
    pods: Vec<(PodSpec, std::ops::Range<usize>)>,
}

impl Mounted {
    async fn start(cp: &ControlPlane, pods: usize, classes: usize, per_class: usize) -> Self {
        install_spc_crds(cp);
        let deploy = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
        for file in ["rbac.yaml", "rbac-changes.yaml"] {
            cp.kubectl(&["apply", "-f", deploy.join(file).to_str().unwrap()], None);
        }
        let mut manifests = format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {NODE_NS}}}\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: bench-driver, namespace: aws-secrets-csi}}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {{name: bench-driver}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: aws-secrets-csi}}\nsubjects: [{{kind: ServiceAccount, name: bench-driver, namespace: aws-secrets-csi}}]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: bench-driver-changes, namespace: aws-secrets-csi}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: aws-secrets-csi-changes}}\nsubjects: [{{kind: ServiceAccount, name: bench-driver, namespace: aws-secrets-csi}}]\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: reader\n  namespace: {NODE_NS}\n  annotations: {{eks.amazonaws.com/role-arn: \"{READER_ROLE}\"}}\n"
        );
        for c in 0..classes {
            let mut objects = String::new();
            for i in c * per_class..(c + 1) * per_class {
                objects += &format!(
                    "      - {{objectName: bench/s{i}, objectType: secretsmanager, objectAlias: s{i}}}\n"
                );
            }
            manifests += &format!(
                "---\napiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\nmetadata: {{name: c{c}, namespace: {NODE_NS}}}\nspec:\n  provider: aws\n  parameters:\n    region: {REGION}\n    refreshInterval: 1h\n    objects: |\n{objects}"
            );
        }
        for k in 0..pods {
            manifests += &format!(
                "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: p{k}, namespace: {NODE_NS}}}\nspec:\n  serviceAccountName: reader\n  nodeName: test-node\n  containers: [{{name: app, image: example.invalid/app}}]\n"
            );
        }
        cp.kubectl(&["apply", "-f", "-"], Some(&manifests));
        let uids = cp.kubectl(
            &[
                "get",
                "pods",
                "-n",
                NODE_NS,
                "-o",
                "jsonpath={range .items[*]}{.metadata.name} {.metadata.uid}{\"\\n\"}{end}",
            ],
            None,
        );
        let uids: BTreeMap<String, String> = uids
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(n, u)| (n.to_owned(), u.to_owned()))
            .collect();
        // kubelet's tokens, bound to each pod (8 kubectl at once).
        let specs: Vec<(PodSpec, std::ops::Range<usize>)> = std::thread::scope(|scope| {
            let chunks: Vec<Vec<usize>> = (0..pods)
                .collect::<Vec<_>>()
                .chunks(pods.div_ceil(8))
                .map(<[usize]>::to_vec)
                .collect();
            let handles: Vec<_> = chunks
                .into_iter()
                .map(|chunk| {
                    let uids = &uids;
                    scope.spawn(move || {
                        chunk
                            .into_iter()
                            .map(|k| {
                                let name = format!("p{k}");
                                let uid = uids[&name].clone();
                                let token = pod_token(cp, NODE_NS, &name, &uid, "reader");
                                let c = k % classes;
                                (
                                    PodSpec {
                                        namespace: NODE_NS.into(),
                                        name,
                                        uid,
                                        service_account: "reader".into(),
                                        token: Some(token),
                                        pod_identity_token: None,
                                    },
                                    c * per_class..(c + 1) * per_class,
                                )
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        let dir = TestDir::new();
        let token = cp.token("aws-secrets-csi", "bench-driver", &["--duration", "2h"]);
        let kubeconfig = dir.path().join("driver.kubeconfig");
        cp.kubeconfig_with_token(&kubeconfig, &cp.server, &token);
        let driver = Driver::start_with(
            dir.path(),
            &kubeconfig,
            &[("RUST_LOG", "info")],
            &[
                "--changes-configmap",
                "aws-secrets-csi/aws-secrets-csi-changes",
            ],
        )
        .await;
        let node = driver.node().await;
        let publishes = specs.iter().map(|(pod, range)| {
            let mut node = node.clone();
            let target = dir.target(&pod.uid);
            let class = format!("c{}", range.start / per_class);
            async move {
                node.node_publish_volume(publish_request(&target, &class, pod))
                    .await
                    .unwrap();
            }
        });
        futures::future::join_all(publishes).await;
        Mounted {
            driver,
            dir,
            pods: specs,
        }
    }

    /// Whether every mounted file of secret `i` holds `value`.
    fn all_read(&self, i: usize, value: &str) -> bool {
        self.pods
            .iter()
            .filter(|(_, range)| range.contains(&i))
            .all(|(pod, _)| {
                std::fs::read_to_string(self.dir.target(&pod.uid).join(format!("s{i}")))
                    .is_ok_and(|v| v == value)
            })
    }

    /// The driver's reads of Secrets Manager so far.
    async fn reads(&self) -> u64 {
        self.driver.aws_calls("BatchGetSecretValue").await
            + self.driver.aws_calls("GetSecretValue").await
    }

    async fn unpublish(self) {
        let mut node = self.driver.node().await;
        for (pod, _) in &self.pods {
            node.node_unpublish_volume(unpublish_request(&self.dir.target(&pod.uid), pod))
                .await
                .unwrap();
        }
    }
}
