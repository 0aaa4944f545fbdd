//! Node-scale benchmark: the real driver binary, driven through its CSI
//! socket as kubelet drives it, against a real kube-apiserver and etcd (the
//! tests' API stand-in under `cargo test` or with `BENCH_API=fake`) and a
//! local AWS stand-in that answers with a fixed latency and counts calls per
//! API. For each scenario it prints publish latency p50/p99, calls per API,
//! the driver's CPU time and peak RSS; with `BENCH_STEPS=1`, each publish
//! step's p50/p99 (the driver's `--log-step-times`).
//!
//!     sudo cargo bench --bench node_scale            # root: real tmpfs mounts
//!
//! Under `cargo test` (no `--bench` argument) it runs a small version of the
//! same scenarios in a debug build and checks the call counts it can promise.
//!
//! The AWS provider (ASCP) v3.1.1 is not run here: the Go module proxy
//! refuses github.com/aws/secrets-store-csi-driver-provider-aws, and the
//! build from its fetched source is not yet pointed at this stand-in (its
//! STS client takes only the region). So its column holds the calls its
//! documented call pattern makes for the same scenario
//! (shared/reference/ascp.md 3.3), computed, not measured.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::aws_standin::{self as aws, AwsStandIn};
use common::control_plane::{ControlPlane, control_plane};
use common::kube::FakeKube;
use common::*;

const NS: &str = "bench";

#[derive(Clone, Copy)]
struct Scenario {
    pods: usize,
    identities: usize,
    secrets: usize,
    parameters: usize,
    /// Publish one pod after the other (else all at once).
    sequential: bool,
    hold: Option<Hold>,
    /// Raise the driver's per-API rate budget (BatchGetSecretValue 10/s,
    /// GetParameters 10/s by default) to the account's whole quota.
    unpaced: bool,
}

#[derive(Clone, Copy)]
struct Hold {
    intervals: u32,
    interval: Duration,
    change: bool,
}

#[derive(Default)]
struct Figures {
    p50: Duration,
    p99: Duration,
    first_wave: BTreeMap<String, u64>,
    /// Calls per refresh interval while volumes are held.
    per_interval: Option<BTreeMap<String, f64>>,
    /// TCP connections the AWS stand-in accepted, over the whole scenario.
    connections: u64,
    /// Calls over the whole scenario.
    calls: u64,
    cpu: Duration,
    peak_rss_kib: u64,
    /// Resident memory at the end: heap and stacks, and mapped files (the
    /// binary's code, shared with every other process that maps it).
    rss_anon_kib: u64,
    rss_file_kib: u64,
    /// Per publish step of the first wave, with step times on: (step,
    /// publishes, p50, p99) of the time from the step's start to its end.
    steps: Vec<(String, usize, Duration, Duration)>,
}

impl Scenario {
    fn name(&self) -> String {
        let objects = self.secrets + self.parameters;
        let who = if self.identities == 1 {
            "one identity".to_owned()
        } else if self.identities == self.pods {
            "one identity each".to_owned()
        } else {
            format!("{} identities", self.identities)
        };
        let mut name = if self.sequential {
            format!(
                "1 pod x {objects} objects, cold, {who}, {} times",
                self.pods
            )
        } else {
            format!("{} pods x {objects} objects, {who}", self.pods)
        };
        if self.unpaced {
            name += ", rate budget raised to the account quota";
        }
        if let Some(h) = self.hold {
            name += &format!(
                ", held {} intervals of {}, {}",
                h.intervals,
                humantime::format_duration(h.interval),
                if h.change {
                    "a change every interval"
                } else {
                    "no change"
                }
            );
        }
        name
    }
}

fn scenarios(full: bool) -> Vec<Scenario> {
    let scale = |n: usize, small: usize| if full { n } else { small };
    let hold = |change| Hold {
        intervals: if full { 10 } else { 3 },
        interval: Duration::from_secs(1),
        change,
    };
    let cold = Scenario {
        pods: scale(30, 3),
        identities: scale(30, 3),
        secrets: 8,
        parameters: 2,
        sequential: true,
        hold: None,
        unpaced: false,
    };
    vec![
        cold,
        Scenario {
            unpaced: true,
            ..cold
        },
        Scenario {
            pods: scale(100, 10),
            identities: 1,
            secrets: 8,
            parameters: 2,
            sequential: false,
            hold: Some(hold(false)),
            unpaced: false,
        },
        Scenario {
            pods: scale(100, 10),
            identities: scale(10, 2),
            secrets: 8,
            parameters: 2,
            sequential: false,
            hold: None,
            unpaced: false,
        },
        Scenario {
            pods: scale(110, 11),
            identities: scale(10, 2),
            secrets: 15,
            parameters: 5,
            sequential: false,
            hold: Some(hold(false)),
            unpaced: false,
        },
        Scenario {
            pods: scale(110, 11),
            identities: scale(10, 2),
            secrets: 15,
            parameters: 5,
            sequential: false,
            hold: Some(hold(true)),
            unpaced: false,
        },
    ]
}

/// What the AWS provider's documented call pattern costs for `s` (IRSA,
/// one region): per mount 1 STS + 1 GetSecretValue per secret + 1
/// GetParameters per 10 parameters; per rotation poll of each pod 1 STS +
/// 1 DescribeSecret per secret + the GetParameters, plus a GetSecretValue
/// per changed secret.
fn ascp_calls(s: &Scenario) -> (u64, Option<f64>) {
    let pods = s.pods as u64;
    let params = s.parameters.div_ceil(10) as u64;
    let first = pods * (1 + s.secrets as u64 + params);
    let per_interval = s.hold.map(|h| {
        let changed = if h.change { s.secrets as u64 } else { 0 };
        (pods * (1 + s.secrets as u64 + params + changed)) as f64
    });
    (first, per_interval)
}

fn class_objects(s: &Scenario) -> String {
    let mut objects = String::new();
    for i in 0..s.secrets {
        objects += &format!(
            "- {{objectName: bench/s{i}, objectType: secretsmanager, objectAlias: s{i}}}\n"
        );
    }
    for i in 0..s.parameters {
        objects += &format!(
            "- {{objectName: /bench/p{i}, objectType: ssmparameter, objectAlias: p{i}}}\n"
        );
    }
    objects
}

async fn publish(driver: &Driver, dir: &TestDir, pod: &PodSpec) -> Duration {
    let target = dir.target(&pod.uid);
    let request = publish_request(&target, "c", pod);
    let mut node = driver.node().await;
    let started = Instant::now();
    node.node_publish_volume(request)
        .await
        .unwrap_or_else(|e| panic!("publish {}: {e:?}", pod.name));
    started.elapsed()
}

/// The step spans' close events in a JSON log (`--log-step-times`): per
/// step, how many and their p50 / p99 wall time (busy + idle).
fn step_times(log: &str) -> Vec<(String, usize, Duration, Duration)> {
    let mut by_step: BTreeMap<String, Vec<Duration>> = BTreeMap::new();
    for line in log.lines() {
        let Ok(event) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let Some(step) = event["span"]["step"].as_str() else {
            continue;
        };
        if event["message"] != "close" {
            continue;
        }
        let time = |field: &str| {
            event[field]
                .as_str()
                .map_or(Duration::ZERO, parse_span_time)
        };
        by_step
            .entry(step.to_owned())
            .or_default()
            .push(time("time.busy") + time("time.idle"));
    }
    by_step
        .into_iter()
        .map(|(step, mut times)| {
            times.sort();
            let pick = |q: f64| {
                times[((times.len() as f64 * q).ceil() as usize).clamp(1, times.len()) - 1]
            };
            (step, times.len(), pick(0.5), pick(0.99))
        })
        .collect()
}

/// tracing's span times: "12.3ms", "450µs", "7.1s", "900ns".
fn parse_span_time(text: &str) -> Duration {
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().unwrap_or(0.0);
    let seconds = match unit {
        "s" => number,
        "ms" => number / 1e3,
        "µs" | "us" => number / 1e6,
        "ns" => number / 1e9,
        _ => 0.0,
    };
    Duration::from_secs_f64(seconds)
}

/// The API server the driver talks to: a real kube-apiserver and etcd (as
/// on a node: classes and ServiceAccounts from watches, real TokenReviews,
/// status objects and events written), or the small stand-in of the tests.
enum ApiServer {
    Real {
        cp: &'static ControlPlane,
        namespace: String,
    },
    Fake(FakeKube),
}

impl ApiServer {
    async fn start(dir: &TestDir, real: bool, scenario: usize) -> Self {
        if !real {
            return ApiServer::Fake(FakeKube::start(dir.path()).await);
        }
        let cp = control_plane();
        static CRDS: std::sync::Once = std::sync::Once::new();
        CRDS.call_once(|| {
            let crds = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/crds/");
            cp.kubectl(&["apply", "-f", crds.to_str().unwrap()], None);
            // The CRDs are served a moment after they are created.
            cp.kubectl(
                &[
                    "wait",
                    "--for=condition=Established",
                    "crd",
                    "--all",
                    "--timeout=60s",
                ],
                None,
            );
        });
        let namespace = format!("{NS}-{scenario}-{}", std::process::id());
        cp.kubectl(&["create", "namespace", &namespace], None);
        ApiServer::Real { cp, namespace }
    }

    fn namespace(&self) -> &str {
        match self {
            ApiServer::Real { namespace, .. } => namespace,
            ApiServer::Fake(_) => NS,
        }
    }

    fn kubeconfig(&self) -> &std::path::Path {
        match self {
            ApiServer::Real { cp, .. } => &cp.admin,
            ApiServer::Fake(kube) => &kube.kubeconfig,
        }
    }

    /// The ServiceAccounts, the class and the pods, with their tokens.
    async fn setup(&self, s: &Scenario, class: &[(&str, &str)]) -> Vec<PodSpec> {
        let ns = self.namespace();
        let names: Vec<(String, String)> = (0..s.pods)
            .map(|p| (format!("pod-{p}"), format!("sa{}", p % s.identities)))
            .collect();
        match self {
            ApiServer::Fake(kube) => {
                for i in 0..s.identities {
                    kube.put_service_account(ns, &format!("sa{i}"), Some(READER_ROLE));
                }
                kube.put_class(ns, "c", class);
                names
                    .iter()
                    .map(|(pod, sa)| PodSpec::new(ns, pod, sa))
                    .collect()
            }
            ApiServer::Real { cp, .. } => {
                let mut items = vec![];
                for i in 0..s.identities {
                    items.push(
                        serde_json::json!({"apiVersion": "v1", "kind": "ServiceAccount",
                        "metadata": {"name": format!("sa{i}"), "namespace": ns,
                            "annotations": {"eks.amazonaws.com/role-arn": READER_ROLE}}}),
                    );
                }
                let parameters: serde_json::Map<String, serde_json::Value> = class
                    .iter()
                    .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
                    .collect();
                items.push(
                    serde_json::json!({"apiVersion": "secrets-store.csi.x-k8s.io/v1",
                    "kind": "SecretProviderClass", "metadata": {"name": "c", "namespace": ns},
                    "spec": {"provider": "aws", "parameters": parameters}}),
                );
                for (pod, sa) in &names {
                    items.push(serde_json::json!({"apiVersion": "v1", "kind": "Pod",
                        "metadata": {"name": pod, "namespace": ns},
                        "spec": {"serviceAccountName": sa, "automountServiceAccountToken": false,
                            "containers": [{"name": "app", "image": "app"}]}}));
                }
                let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items});
                cp.kubectl(&["apply", "-f", "-"], Some(&list.to_string()));
                let pods: serde_json::Value = serde_json::from_str(
                    &cp.kubectl(&["get", "pods", "-n", ns, "-o", "json"], None),
                )
                .unwrap();
                let uids: BTreeMap<String, String> = pods["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| {
                        let meta = &p["metadata"];
                        (
                            meta["name"].as_str().unwrap().to_owned(),
                            meta["uid"].as_str().unwrap().to_owned(),
                        )
                    })
                    .collect();
                // Tokens as kubelet asks for them: bound to the pod, for
                // the STS audience.
                let client = admin_client(&cp.admin).await;
                let accounts: ::kube::Api<k8s_openapi::api::core::v1::ServiceAccount> =
                    ::kube::Api::namespaced(client, ns);
                let tokens = futures::future::join_all(names.iter().map(|(pod, sa)| {
                    let request = k8s_openapi::api::authentication::v1::TokenRequest {
                        spec: k8s_openapi::api::authentication::v1::TokenRequestSpec {
                            audiences: vec!["sts.amazonaws.com".into()],
                            expiration_seconds: Some(3600),
                            bound_object_ref: Some(
                                k8s_openapi::api::authentication::v1::BoundObjectReference {
                                    api_version: Some("v1".into()),
                                    kind: Some("Pod".into()),
                                    name: Some(pod.clone()),
                                    uid: Some(uids[pod].clone()),
                                },
                            ),
                        },
                        ..Default::default()
                    };
                    let accounts = accounts.clone();
                    async move {
                        accounts
                            .create_token_request(sa, &Default::default(), &request)
                            .await
                            .expect("TokenRequest")
                            .status
                            .expect("a token")
                            .token
                    }
                }))
                .await;
                names
                    .iter()
                    .zip(tokens)
                    .map(|((pod, sa), token)| PodSpec {
                        uid: uids[pod].clone(),
                        token: Some(token),
                        pod_identity_token: None,
                        ..PodSpec::new(ns, pod, sa)
                    })
                    .collect()
            }
        }
    }

    fn teardown(&self) {
        if let ApiServer::Real { cp, namespace } = self {
            cp.kubectl(&["delete", "namespace", namespace, "--wait=false"], None);
        }
    }
}

async fn admin_client(kubeconfig: &std::path::Path) -> ::kube::Client {
    let config = ::kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
    let config = ::kube::Config::from_custom_kubeconfig(config, &Default::default())
        .await
        .unwrap();
    ::kube::Client::try_from(config).unwrap()
}

/// kubelet's operation executor starts volume setups as pods arrive; a
/// wave is at most this many publishes at once.
const AT_ONCE: usize = 50;

async fn wave(driver: &Driver, dir: &TestDir, pods: &[PodSpec]) -> Vec<Duration> {
    use futures::StreamExt;
    futures::stream::iter(pods.iter().map(|p| publish(driver, dir, p)))
        .buffer_unordered(AT_ONCE)
        .collect()
        .await
}

async fn run(s: &Scenario, latency: Duration, real_api: bool, number: usize) -> Figures {
    let dir = TestDir::new();
    let kube = ApiServer::start(&dir, real_api, number).await;
    let aws = AwsStandIn::start(latency).await;
    let interval = s.hold.map_or("2m".to_owned(), |h| {
        humantime::format_duration(h.interval).to_string()
    });
    let objects = class_objects(s);
    let pods = kube
        .setup(
            s,
            &[
                ("region", REGION),
                ("refreshInterval", &interval),
                ("objects", &objects),
            ],
        )
        .await;
    let mut args = vec![];
    if s.unpaced {
        args.extend([
            "--aws-rate-limit",
            "BatchGetSecretValue=100",
            "--aws-rate-limit",
            "GetParameters=40",
        ]);
    }
    let trace = std::env::var_os("BENCH_STEPS").is_some();
    if trace {
        args.extend(["--log-step-times", "--log-format", "json"]);
    }
    let driver = Driver::start_against(
        &aws.endpoint,
        dir.path(),
        kube.kubeconfig(),
        &[("RUST_LOG", "warn")],
        &args,
    )
    .await;
    if real_api {
        // The driver's watches have listed the class and the accounts.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let mut latencies = Vec::with_capacity(pods.len());
    if s.sequential {
        for pod in &pods {
            latencies.push(publish(&driver, &dir, pod).await);
        }
    } else {
        latencies = wave(&driver, &dir, &pods).await;
    }
    let first_wave = aws.calls();
    let steps = if trace {
        let mut steps = step_times(&driver.logs());
        let cpu = usage(driver.pid()).cpu;
        steps.push(("(driver CPU, setup and first wave)".into(), 1, cpu, cpu));
        steps
    } else {
        Vec::new()
    };
    let mut connections = aws.connections();
    let mut calls: u64 = first_wave.values().sum();
    let last = dir.target(&pods[pods.len() - 1].uid);
    assert_eq!(read(&last, "s0"), aws::value_of("bench/s0", 1));

    let per_interval = match s.hold {
        None => None,
        Some(h) => {
            aws.reset();
            let started = Instant::now();
            let total = h.interval * h.intervals;
            let mut next_change = Duration::ZERO;
            // kubelet republishes every mounted volume about twice per
            // interval (every 60-90 s for the default 2 minutes).
            while started.elapsed() < total {
                if h.change && started.elapsed() >= next_change {
                    aws.change_all();
                    next_change += h.interval;
                }
                wave(&driver, &dir, &pods).await;
                tokio::time::sleep(h.interval / 2).await;
            }
            if h.change {
                assert_ne!(
                    read(&last, "s0"),
                    aws::value_of("bench/s0", 1),
                    "held volumes saw the changes"
                );
            }
            let n = f64::from(h.intervals);
            connections += aws.connections();
            calls += aws.calls().values().sum::<u64>();
            Some(
                aws.calls()
                    .into_iter()
                    .map(|(api, c)| (api, c as f64 / n))
                    .collect(),
            )
        }
    };

    let usage = usage(driver.pid());
    for pod in &pods {
        let target = dir.target(&pod.uid);
        driver
            .node()
            .await
            .node_unpublish_volume(unpublish_request(&target, pod))
            .await
            .unwrap();
    }
    kube.teardown();
    latencies.sort();
    let pick = |q: f64| {
        latencies[((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1]
    };
    Figures {
        p50: pick(0.50),
        p99: pick(0.99),
        first_wave,
        per_interval,
        connections,
        calls,
        cpu: usage.cpu,
        peak_rss_kib: usage.peak_rss_kib,
        rss_anon_kib: usage.rss_anon_kib,
        rss_file_kib: usage.rss_file_kib,
        steps,
    }
}

struct Usage {
    cpu: Duration,
    peak_rss_kib: u64,
    rss_anon_kib: u64,
    rss_file_kib: u64,
}

/// CPU time (user + system) and memory of a process, from /proc.
fn usage(pid: u32) -> Usage {
    // USER_HZ is 100 on Linux whatever the kernel's HZ.
    const TICKS: u64 = 100;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i)?.parse::<u64>().ok())
        .sum();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |field: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    Usage {
        cpu: Duration::from_millis(ticks * 1000 / TICKS),
        peak_rss_kib: kib("VmHWM:"),
        rss_anon_kib: kib("RssAnon:"),
        rss_file_kib: kib("RssFile:"),
    }
}

fn calls_text(calls: &BTreeMap<String, u64>) -> String {
    let parts: Vec<String> = calls.iter().map(|(api, n)| format!("{api} {n}")).collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    require_root();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let latencies: Vec<u64> = match std::env::var("BENCH_LATENCY_MS") {
        Ok(ms) => ms
            .split(',')
            .filter_map(|m| m.trim().parse().ok())
            .collect(),
        Err(_) if full => vec![0, 20],
        Err(_) => vec![0],
    };
    // Run only the scenarios whose name holds this text.
    let only = std::env::var("BENCH_SCENARIO").unwrap_or_default();
    // The full run talks to a real API server unless told otherwise.
    let real_api = full && std::env::var("BENCH_API").as_deref() != Ok("fake");
    println!(
        "# aws-secrets-csi node-scale benchmark ({} build{})\n",
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
        "API server: {}; at most {AT_ONCE} publishes at once.\n",
        if real_api {
            "a real kube-apiserver and etcd (watches, TokenReviews, status objects and events)"
        } else {
            "the tests' stand-in (GETs only, no watches: every publish GETs the class and the ServiceAccount)"
        }
    );
    println!(
        "AWS provider column: calls from its documented call pattern (computed, not measured: it is not run against this stand-in yet).\n"
    );
    println!(
        "| scenario | AWS latency | publish p50 | publish p99 | AWS calls, first wave | calls per refresh interval | AWS provider calls (first wave / per interval) | AWS calls / connections | driver CPU | driver peak RSS | RSS at the end: heap / mapped files |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let mut number = 0;
    for &ms in &latencies {
        for s in scenarios(full)
            .into_iter()
            .filter(|s| s.name().contains(&only))
        {
            number += 1;
            let f = runtime.block_on(run(&s, Duration::from_millis(ms), real_api, number));
            let ours_first: u64 = f.first_wave.values().sum();
            let (theirs_first, theirs_interval) = ascp_calls(&s);
            let interval_text = f.per_interval.as_ref().map_or("-".to_owned(), |m| {
                m.iter()
                    .map(|(api, n)| format!("{api} {n:.1}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            });
            let ours_interval: Option<f64> = f.per_interval.as_ref().map(|m| m.values().sum());
            let ratio = |theirs: f64, ours: f64| {
                if ours > 0.0 {
                    format!("{:.0}x", theirs / ours)
                } else {
                    "inf".into()
                }
            };
            let theirs_text = match (theirs_interval, ours_interval) {
                (Some(t), Some(o)) => format!(
                    "{theirs_first} ({}) / {t:.0} ({})",
                    ratio(theirs_first as f64, ours_first as f64),
                    ratio(t, o)
                ),
                _ => format!(
                    "{theirs_first} ({})",
                    ratio(theirs_first as f64, ours_first as f64)
                ),
            };
            println!(
                "| {} | {ms} ms | {:.1} ms | {:.1} ms | {} | {} | {} | {} / {} | {:.2} s | {:.1} MiB | {:.1} / {:.1} MiB |",
                s.name(),
                f.p50.as_secs_f64() * 1000.0,
                f.p99.as_secs_f64() * 1000.0,
                calls_text(&f.first_wave),
                interval_text,
                theirs_text,
                f.calls,
                f.connections,
                f.cpu.as_secs_f64(),
                f.peak_rss_kib as f64 / 1024.0,
                f.rss_anon_kib as f64 / 1024.0,
                f.rss_file_kib as f64 / 1024.0,
            );
            for (step, n, p50, p99) in &f.steps {
                println!(
                    "|   step {step} | {ms} ms | {:.1} ms | {:.1} ms | {n} times | | | | | | |",
                    p50.as_secs_f64() * 1000.0,
                    p99.as_secs_f64() * 1000.0,
                );
            }
            if !full {
                smoke_checks(&s, &f);
            }
        }
    }
}

/// What the smoke run promises (the full run prints; it does not assert).
fn smoke_checks(s: &Scenario, f: &Figures) {
    let first = |api: &str| f.first_wave.get(api).copied().unwrap_or(0);
    assert_eq!(
        first("AssumeRoleWithWebIdentity"),
        s.identities as u64,
        "{}: one STS call per identity",
        s.name()
    );
    // Every identity's first pod makes one batch (and one GetParameters per
    // 10 names); later pods of the identity make none.
    assert_eq!(
        first("BatchGetSecretValue"),
        s.identities as u64,
        "{}",
        s.name()
    );
    assert_eq!(
        first("GetParameters"),
        (s.identities * s.parameters.div_ceil(10)) as u64,
        "{}",
        s.name()
    );
    assert_eq!(first("GetSecretValue"), 0, "{}", s.name());
    // One HTTPS client for the whole driver: calls reuse its connections
    // (one new client per fetch made a connection per call).
    if s.sequential || s.hold.is_some() {
        assert!(
            f.connections < f.calls,
            "{}: {} connections for {} calls",
            s.name(),
            f.connections,
            f.calls
        );
    }
    if let Some(per_interval) = &f.per_interval {
        let batch = per_interval
            .get("BatchGetSecretValue")
            .copied()
            .unwrap_or(0.0);
        assert!(
            batch <= s.identities as f64,
            "{}: at most one batch per identity and interval, saw {batch}",
            s.name()
        );
        let sts = per_interval
            .get("AssumeRoleWithWebIdentity")
            .copied()
            .unwrap_or(0.0);
        assert_eq!(sts, 0.0, "{}: refreshes use cached credentials", s.name());
    }
}
