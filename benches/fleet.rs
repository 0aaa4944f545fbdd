//! A fleet, simulated: many driver processes as many nodes, one AWS
//! stand-in that enforces one account's quotas (and throttles beyond them,
//! as AWS does), and a rollout of many pods over a few identities, every
//! node at once. Prints the time until every pod is mounted, the calls per
//! API against the quota, the throttled calls and the publishes kubelet had
//! to retry, with the driver's default rate budget and without it.
//!
//!     sudo cargo bench --bench fleet              # 100 nodes, 2,000 pods
//!     FLEET_NODES=200 FLEET_PODS=4000 sudo cargo bench --bench fleet
//!
//! Under `cargo test` it runs a few nodes and pods and checks that every pod
//! mounts and that the stand-in's accounting adds up.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::aws_standin::AwsStandIn;
use common::kube::FakeKube;
use common::*;

const NS: &str = "fleet";
/// One account's default quotas in one region (requests per second).
const QUOTAS: &[(&str, u32)] = &[
    ("AssumeRoleWithWebIdentity", 600),
    ("BatchGetSecretValue", 100),
    ("GetSecretValue", 10_000),
    ("GetParameters", 40),
];
const SECRETS: usize = 8;
const PARAMETERS: usize = 2;
/// Publishes at once per node (kubelet starts a pod's volume setup as the
/// pod arrives; a node receives its pods within seconds of a rollout).
const AT_ONCE: usize = 20;

struct Fleet {
    nodes: usize,
    pods: usize,
    identities: usize,
    latency: Duration,
    /// The driver's default per-node rate budget, or one raised far beyond
    /// any quota (as good as none).
    budgets: bool,
}

struct Outcome {
    all_mounted: Duration,
    p50: Duration,
    p99: Duration,
    retried: u64,
    calls: BTreeMap<String, u64>,
    throttled: BTreeMap<String, u64>,
    peaks: BTreeMap<String, u64>,
    start_all: Duration,
}

/// The identity of pod `p`, placed on node `p % nodes`.
fn identity_of(p: usize, nodes: usize, identities: usize) -> usize {
    (p / nodes) % identities
}

fn class_objects() -> String {
    let mut objects = String::new();
    for i in 0..SECRETS {
        objects += &format!(
            "- {{objectName: fleet/s{i}, objectType: secretsmanager, objectAlias: s{i}}}\n"
        );
    }
    for i in 0..PARAMETERS {
        objects += &format!(
            "- {{objectName: /fleet/p{i}, objectType: ssmparameter, objectAlias: p{i}}}\n"
        );
    }
    objects
}

/// Publishes one pod as kubelet does: a failed publish is tried again
/// after a back-off (kubelet's starts at 500 ms and doubles), until it
/// mounts. Returns the time to the mount and the attempts it took.
async fn mount(driver: &Driver, dir: &TestDir, pod: &PodSpec) -> (Duration, u64) {
    let target = dir.target(&pod.uid);
    let started = Instant::now();
    let mut backoff = Duration::from_millis(500);
    let mut attempts = 0;
    loop {
        attempts += 1;
        let mut node = driver.node().await;
        match node
            .node_publish_volume(publish_request(&target, "c", pod))
            .await
        {
            Ok(_) => return (started.elapsed(), attempts),
            Err(e) => {
                assert!(
                    attempts < 20,
                    "pod {} never mounted: {}",
                    pod.name,
                    e.message()
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(8));
            }
        }
    }
}

async fn run(f: &Fleet) -> Outcome {
    use futures::StreamExt;
    let base = TestDir::new();
    let kube = FakeKube::start(base.path()).await;
    let aws = AwsStandIn::start_with_quotas(f.latency, QUOTAS).await;
    for i in 0..f.identities {
        kube.put_service_account(NS, &format!("sa{i}"), Some(READER_ROLE));
    }
    let objects = class_objects();
    kube.put_class(
        NS,
        "c",
        &[
            ("region", REGION),
            ("refreshInterval", "10m"),
            ("objects", &objects),
        ],
    );
    let unbudgeted: Vec<String> = QUOTAS
        .iter()
        .filter(|(api, _)| *api != "AssumeRoleWithWebIdentity")
        .flat_map(|(api, _)| ["--aws-rate-limit".to_owned(), format!("{api}=100000")])
        .collect();
    let args: Vec<&str> = if f.budgets {
        vec![]
    } else {
        unbudgeted.iter().map(String::as_str).collect()
    };
    let started = Instant::now();
    let dirs: Vec<TestDir> = (0..f.nodes).map(|_| TestDir::new()).collect();
    let drivers: Vec<Driver> = futures::stream::iter(dirs.iter().map(|dir| {
        Driver::start_against(
            &aws.endpoint,
            dir.path(),
            &kube.kubeconfig,
            &[("RUST_LOG", "error")],
            &args,
        )
    }))
    // In order: driver n serves the node of dirs[n].
    .buffered(16)
    .collect()
    .await;
    let start_all = started.elapsed();
    aws.reset();

    // Pods spread over the nodes as a scheduler spreads Deployments: every
    // node gets pods of every identity.
    let pods: Vec<(usize, PodSpec)> = (0..f.pods)
        .map(|p| {
            let sa = format!("sa{}", identity_of(p, f.nodes, f.identities));
            (p % f.nodes, PodSpec::new(NS, &format!("pod-{p}"), &sa))
        })
        .collect();
    let started = Instant::now();
    let per_node = (0..f.nodes).map(|n| {
        let (driver, dir) = (&drivers[n], &dirs[n]);
        let mine: Vec<&PodSpec> = pods
            .iter()
            .filter(|(node, _)| *node == n)
            .map(|(_, p)| p)
            .collect();
        async move {
            futures::stream::iter(mine.into_iter().map(|p| mount(driver, dir, p)))
                .buffer_unordered(AT_ONCE)
                .collect::<Vec<_>>()
                .await
        }
    });
    let results: Vec<(Duration, u64)> = futures::future::join_all(per_node)
        .await
        .into_iter()
        .flatten()
        .collect();
    let all_mounted = started.elapsed();
    let calls = aws.calls();
    let throttled = aws.throttled();
    let peaks = aws.peak_per_second();

    // Every pod reads its own files.
    for (n, pod) in pods.iter().step_by(f.pods.div_ceil(50).max(1)) {
        let target = dirs[*n].target(&pod.uid);
        assert_eq!(
            read(&target, "s0"),
            common::aws_standin::value_of("fleet/s0", 1)
        );
    }
    futures::future::join_all(pods.iter().map(|(n, pod)| async {
        let target = dirs[*n].target(&pod.uid);
        drivers[*n]
            .node()
            .await
            .node_unpublish_volume(unpublish_request(&target, pod))
            .await
            .unwrap();
    }))
    .await;
    drop(drivers);

    let mut latencies: Vec<Duration> = results.iter().map(|(d, _)| *d).collect();
    latencies.sort();
    let pick = |q: f64| {
        latencies[((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1]
    };
    Outcome {
        all_mounted,
        p50: pick(0.5),
        p99: pick(0.99),
        retried: results.iter().map(|(_, a)| a - 1).sum(),
        calls,
        throttled,
        peaks,
        start_all,
    }
}

fn per_api(map: &BTreeMap<String, u64>) -> String {
    if map.is_empty() {
        return "none".into();
    }
    map.iter()
        .map(|(api, n)| format!("{api} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    require_root();
    let number = |name: &str, full_default: usize, small: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(if full { full_default } else { small })
    };
    let (nodes, pods, identities) = (
        number("FLEET_NODES", 100, 3),
        number("FLEET_PODS", 2000, 12),
        number("FLEET_IDENTITIES", 4, 2),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "# aws-secrets-csi fleet simulation: {nodes} driver processes (nodes), {pods} pods over {identities} identities, {SECRETS} secrets + {PARAMETERS} parameters each, every node at once, at most {AT_ONCE} publishes at once per node; AWS stand-in at 20 ms enforcing the account quotas {} ({} build)\n",
        QUOTAS
            .iter()
            .map(|(api, q)| format!("{api} {q}/s"))
            .collect::<Vec<_>>()
            .join(", "),
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
    );
    println!(
        "| rate budget | drivers started in | every pod mounted after | pod mount p50 / p99 | publishes retried | AWS calls | throttled calls | most calls in one second (quota) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for budgets in [true, false] {
        let fleet = Fleet {
            nodes,
            pods,
            identities,
            latency: Duration::from_millis(20),
            budgets,
        };
        let o = runtime.block_on(run(&fleet));
        let peaks: Vec<String> = o
            .peaks
            .iter()
            .map(|(api, n)| {
                let quota = QUOTAS.iter().find(|(q, _)| q == api).map_or(0, |(_, q)| *q);
                format!("{api} {n} ({quota})")
            })
            .collect();
        println!(
            "| {} | {:.1} s | {:.2} s | {:.0} / {:.0} ms | {} | {} | {} | {} |",
            if budgets {
                "default (per node)"
            } else {
                "none (raised past the quotas)"
            },
            o.start_all.as_secs_f64(),
            o.all_mounted.as_secs_f64(),
            o.p50.as_secs_f64() * 1000.0,
            o.p99.as_secs_f64() * 1000.0,
            o.retried,
            per_api(&o.calls),
            per_api(&o.throttled),
            peaks.join(", "),
        );
        if !full {
            // Each node and identity needs its credentials and its values
            // once; a throttled call is answered, never counted as served.
            let served = |api: &str| o.calls.get(api).copied().unwrap_or(0);
            let pairs: std::collections::BTreeSet<(usize, usize)> = (0..pods)
                .map(|p| (p % nodes, identity_of(p, nodes, identities)))
                .collect();
            assert_eq!(served("AssumeRoleWithWebIdentity"), pairs.len() as u64);
            assert!(served("BatchGetSecretValue") + served("GetSecretValue") > 0);
            for (api, peak) in &o.peaks {
                let quota = QUOTAS
                    .iter()
                    .find(|(q, _)| q == api)
                    .map_or(u64::MAX, |(_, q)| u64::from(*q));
                // A burst of one second plus one second's refill at most.
                assert!(*peak <= 2 * quota, "{api}: {peak} calls in one second");
            }
        }
    }
}
