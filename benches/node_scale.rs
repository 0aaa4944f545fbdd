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
//! Side by side with the incumbents: with `BENCH_ASCP` naming a binary of
//! the AWS provider (ASCP) v3.1.1, built however you build it (the Go module
//! proxy refuses its module), every scenario runs again through the
//! Secrets Store CSI Driver v1.6.0 (`$SSCSID_BIN`, scripts/sscsid-peer.sh)
//! and that provider, as shipped and with its Kubernetes client limits
//! raised (`--qps=100 --burst=200`), against the same API server and the
//! same AWS stand-in, and the table gains their rows and the ratios. The
//! provider's STS client takes only a region, so the stand-in answers as
//! AWS's own host names: HTTPS on 127.0.0.1:443 with a CA made for the run,
//! the names in an /etc/hosts of the provider's own mount namespace, where
//! its in-cluster token and CA also lie under /var/run/secrets. Our driver
//! talks to the same HTTPS stand-in then. Without `BENCH_ASCP`, the
//! provider's column holds the calls of its documented call pattern
//! (shared/reference/ascp.md 3.3), computed, not measured.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::aws_standin::{self as aws, AwsStandIn};
use common::control_plane::{ControlPlane, control_plane};
use common::kube::FakeKube;
use common::*;

use aws_secrets_csi::csi::ProbeRequest;
use aws_secrets_csi::csi::identity_client::IdentityClient;
use aws_secrets_csi::csi::node_client::NodeClient;
use std::process::{Command, Stdio};
use tonic::transport::Channel;

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
    /// The class also renders templated files over all its objects (an
    /// .env, a JSON config and a PEM-style bundle) and a rotation manifest:
    /// the cost of rendering, beside the same scenario without.
    templated: bool,
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
    /// From starting the processes until their CSI socket answers.
    startup: Duration,
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
        if self.templated {
            name += ", 3 templated files + manifest";
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
        templated: false,
    };
    // 110 pods x 20 objects held, the node the issue's figures are of.
    let held = Scenario {
        pods: scale(110, 11),
        identities: scale(10, 2),
        secrets: 15,
        parameters: 5,
        sequential: false,
        hold: Some(hold(false)),
        unpaced: false,
        templated: false,
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
            templated: false,
        },
        Scenario {
            pods: scale(100, 10),
            identities: scale(10, 2),
            secrets: 8,
            parameters: 2,
            sequential: false,
            hold: None,
            unpaced: false,
            templated: false,
        },
        held,
        Scenario {
            hold: Some(hold(true)),
            ..held
        },
        Scenario {
            hold: Some(hold(true)),
            templated: true,
            ..held
        },
    ]
}

/// The templates of a templated scenario: every object in an .env, all of
/// them in a JSON config, and the secrets concatenated as a PEM bundle is.
fn class_templates(s: &Scenario) -> String {
    let names: Vec<String> = (0..s.secrets)
        .map(|i| format!("s{i}"))
        .chain((0..s.parameters).map(|i| format!("p{i}")))
        .collect();
    let env: String = names
        .iter()
        .map(|n| format!("          {}={{{{ .{n} | quote }}}}\n", n.to_uppercase()))
        .collect();
    let dict: String = names.iter().map(|n| format!(" \"{n}\" .{n}")).collect();
    let bundle: String = (0..s.secrets).map(|i| format!("{{{{ .s{i} }}}}")).collect();
    format!(
        "- path: app.env\n  template: |\n{env}- path: config.json\n  template: '{{{{ dict{dict} | toPrettyJson }}}}'\n- path: bundle.pem\n  template: '{bundle}'\n"
    )
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

async fn publish(stack: &Stack, dir: &TestDir, pod: &PodSpec) -> Duration {
    let target = dir.target(&pod.uid);
    let request = publish_request(&target, "c", pod);
    let mut node = stack.node().await;
    let started = Instant::now();
    node.node_publish_volume(request)
        .await
        .unwrap_or_else(|e| panic!("{} publish {}: {e:?}", stack.name(), pod.name));
    started.elapsed()
}

/// Which driver a run measures.
#[derive(Clone, Copy, PartialEq)]
enum Which {
    Ours,
    /// The Secrets Store CSI Driver and the AWS provider; `raised`: the
    /// provider's Kubernetes client limits raised from 5/s (burst 10) to
    /// 100/s (burst 200).
    Theirs {
        raised: bool,
    },
}

impl Which {
    fn name(self) -> &'static str {
        match self {
            Which::Ours => "ours",
            Which::Theirs { raised: false } => "upstream + ASCP",
            Which::Theirs { raised: true } => "upstream + ASCP, qps raised",
        }
    }
}

enum Stack {
    Ours(Driver),
    Theirs(Upstream),
}

impl Stack {
    fn name(&self) -> &'static str {
        match self {
            Stack::Ours(_) => Which::Ours.name(),
            Stack::Theirs(u) => Which::Theirs { raised: u.raised }.name(),
        }
    }

    async fn node(&self) -> NodeClient<Channel> {
        match self {
            Stack::Ours(driver) => driver.node().await,
            Stack::Theirs(upstream) => NodeClient::new(upstream.channel().await.unwrap()),
        }
    }

    /// The end of its processes' logs, for a failure's message.
    fn logs(&self) -> String {
        let tail = |text: String| {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(20)..].join("\n")
        };
        match self {
            Stack::Ours(driver) => tail(driver.logs()),
            Stack::Theirs(u) => ["driver.err", "provider.err"]
                .iter()
                .map(|f| {
                    let text = std::fs::read_to_string(u.work.join(f)).unwrap_or_default();
                    format!("{f}:\n{}", tail(text))
                })
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }

    /// CPU and memory of every process of the stack, added up.
    fn usage(&self) -> Usage {
        let pids = match self {
            Stack::Ours(driver) => vec![driver.pid()],
            Stack::Theirs(u) => vec![u.driver.0.id(), u.provider.0.id()],
        };
        pids.into_iter()
            .map(usage)
            .fold(Usage::default(), |a, b| Usage {
                cpu: a.cpu + b.cpu,
                peak_rss_kib: a.peak_rss_kib + b.peak_rss_kib,
                rss_anon_kib: a.rss_anon_kib + b.rss_anon_kib,
                rss_file_kib: a.rss_file_kib + b.rss_file_kib,
            })
    }
}

/// The programs of the incumbent stack.
struct Incumbents {
    /// The AWS provider (BENCH_ASCP).
    ascp: std::path::PathBuf,
    /// The Secrets Store CSI Driver v1.6.0.
    driver: std::path::PathBuf,
}

impl Incumbents {
    fn from_env() -> Option<Self> {
        let ascp = std::path::PathBuf::from(std::env::var_os("BENCH_ASCP")?);
        assert!(
            ascp.is_file(),
            "BENCH_ASCP={} is not a file",
            ascp.display()
        );
        Some(Incumbents {
            ascp,
            driver: sscsid_bin().join("secrets-store-csi-driver"),
        })
    }
}

/// AWS's host names for the region, as the AWS provider's SDK resolves them.
const AWS_HOSTS: [&str; 3] = [
    "sts.us-east-1.amazonaws.com",
    "secretsmanager.us-east-1.amazonaws.com",
    "ssm.us-east-1.amazonaws.com",
];

/// The provider in a mount namespace of its own: AWS's names resolve to
/// the stand-in, and its in-cluster token and CA lie where client-go looks
/// (the host's /etc/hosts and /run stay as they are).
const PROVIDER_NAMESPACE: &str = r#"set -e
mount --bind "$1" /etc/hosts
mount -t tmpfs -o size=1m,mode=0755 bench /run
mkdir -p /run/secrets/kubernetes.io/serviceaccount
cp "$2/token" "$2/ca.crt" /run/secrets/kubernetes.io/serviceaccount/
shift 2
exec "$@"
"#;

/// The incumbents running: their driver and the AWS provider it calls.
struct Upstream {
    driver: Peer,
    provider: Peer,
    socket: std::path::PathBuf,
    work: std::path::PathBuf,
    raised: bool,
}

impl Upstream {
    async fn start(
        dir: &TestDir,
        cp: &ControlPlane,
        programs: &Incumbents,
        aws_ca: &std::path::Path,
        raised: bool,
        rotation: &str,
    ) -> Self {
        let work = dir.path().join("upstream");
        let providers = work.join("providers");
        let account = work.join("serviceaccount");
        std::fs::create_dir_all(&providers).unwrap();
        std::fs::create_dir_all(&account).unwrap();
        std::fs::write(account.join("token"), provider_token(cp)).unwrap();
        std::fs::copy(cp.work.join("certs/apiserver.crt"), account.join("ca.crt")).unwrap();
        let hosts = work.join("hosts");
        std::fs::write(
            &hosts,
            format!("127.0.0.1 localhost {}\n", AWS_HOSTS.join(" ")),
        )
        .unwrap();
        let api_port = cp.server.rsplit(':').next().unwrap().to_owned();
        let log = |name: &str| std::fs::File::create(work.join(name)).unwrap();
        let mut provider = Command::new("unshare");
        provider
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(PROVIDER_NAMESPACE)
            .arg("sh")
            .arg(&hosts)
            .arg(&account)
            .arg(&programs.ascp)
            .arg(format!("--provider-volume={}", providers.display()))
            .arg("--driver-writes-secrets=true");
        if raised {
            provider.args(["--qps=100", "--burst=200"]);
        }
        provider
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("KUBERNETES_SERVICE_HOST", "127.0.0.1")
            .env("KUBERNETES_SERVICE_PORT", &api_port)
            .env("SSL_CERT_FILE", aws_ca)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdin(Stdio::null())
            .stdout(log("provider.log"))
            .stderr(log("provider.err"));
        let provider = Peer(provider.spawn().expect("start the AWS provider"));
        let socket = work.join("csi.sock");
        let driver = Peer(
            upstream_driver(&programs.driver, &socket, &providers, &cp.admin)
                .args(["--enable-secret-rotation=true"])
                .arg(format!("--rotation-poll-interval={rotation}"))
                .stdin(Stdio::null())
                .stdout(log("driver.log"))
                .stderr(log("driver.err"))
                .spawn()
                .expect("start the upstream driver"),
        );
        let upstream = Upstream {
            driver,
            provider,
            socket,
            work: work.clone(),
            raised,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let provider_up = providers.join("aws.sock").exists();
            let driver_up = match upstream.channel().await {
                Ok(channel) => IdentityClient::new(channel)
                    .probe(ProbeRequest {})
                    .await
                    .is_ok(),
                Err(_) => false,
            };
            if provider_up && driver_up {
                return upstream;
            }
            assert!(
                Instant::now() < deadline,
                "the incumbents did not start; their logs are in {}",
                work.display()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn channel(&self) -> Result<Channel, tonic::transport::Error> {
        tonic::transport::Endpoint::from_shared(format!("unix://{}", self.socket.display()))
            .unwrap()
            .connect()
            .await
    }
}

/// A token for the AWS provider's own ServiceAccount, with what its chart
/// grants (read pods, nodes and ServiceAccounts), made once per run.
fn provider_token(cp: &ControlPlane) -> String {
    static TOKEN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TOKEN
        .get_or_init(|| {
            cp.kubectl(
                &["apply", "-f", "-"],
                Some(
                    r#"
apiVersion: v1
kind: ServiceAccount
metadata: {name: csi-secrets-store-provider-aws, namespace: kube-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: csi-secrets-store-provider-aws-bench}
rules:
  - {apiGroups: [""], resources: [serviceaccounts, pods, nodes], verbs: [get]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: csi-secrets-store-provider-aws-bench}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: csi-secrets-store-provider-aws-bench}
subjects: [{kind: ServiceAccount, name: csi-secrets-store-provider-aws, namespace: kube-system}]
"#,
                ),
            );
            cp.token(
                "kube-system",
                "csi-secrets-store-provider-aws",
                &["--duration=6h"],
            )
        })
        .clone()
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
                            "nodeName": "test-node",
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

    /// CPU time the control plane (etcd, kube-apiserver) has used so far;
    /// zero for the stand-in.
    fn cpu(&self) -> Duration {
        match self {
            ApiServer::Real { cp, .. } => cp.processes().into_iter().map(|p| usage(p).cpu).sum(),
            ApiServer::Fake(_) => Duration::ZERO,
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

async fn wave(stack: &Stack, dir: &TestDir, pods: &[PodSpec]) -> Vec<Duration> {
    use futures::StreamExt;
    futures::stream::iter(pods.iter().map(|p| publish(stack, dir, p)))
        .buffer_unordered(AT_ONCE)
        .collect()
        .await
}

/// One scenario through one stack. With `incumbents` (a side-by-side run),
/// every stack talks to the HTTPS stand-in on 127.0.0.1:443.
async fn run(
    s: &Scenario,
    latency: Duration,
    real_api: bool,
    number: usize,
    which: Which,
    incumbents: Option<&Incumbents>,
) -> Figures {
    let dir = TestDir::new();
    let kube = ApiServer::start(&dir, real_api, number).await;
    let (aws, aws_ca) = match incumbents {
        None => (AwsStandIn::start(latency).await, None),
        Some(_) => {
            let names: Vec<&str> = AWS_HOSTS.iter().copied().chain(["127.0.0.1"]).collect();
            let (aws, ca) = AwsStandIn::start_tls(latency, "127.0.0.1:443", &names).await;
            let path = dir.path().join("aws-ca.pem");
            std::fs::write(&path, ca).unwrap();
            (aws, Some(path))
        }
    };
    let interval = s.hold.map_or("2m".to_owned(), |h| {
        humantime::format_duration(h.interval).to_string()
    });
    let objects = class_objects(s);
    let templates = class_templates(s);
    let mut class = vec![
        ("region", REGION),
        ("refreshInterval", interval.as_str()),
        ("objects", objects.as_str()),
    ];
    if s.templated {
        class.extend([
            ("templates", templates.as_str()),
            ("rotationManifest", "rotation.json"),
        ]);
    }
    let pods = kube.setup(s, &class).await;
    let mut args = vec![];
    if s.unpaced {
        args.extend([
            "--aws-rate-limit",
            "BatchGetSecretValue=100",
            "--aws-rate-limit",
            "GetParameters=40",
        ]);
    }
    let trace = std::env::var_os("BENCH_STEPS").is_some() && which == Which::Ours;
    if trace {
        args.extend(["--log-step-times", "--log-format", "json"]);
    }
    let started = Instant::now();
    let stack = match which {
        Which::Ours => {
            let ca = aws_ca.as_ref().map(|p| p.to_str().unwrap());
            let mut env = vec![("RUST_LOG", "warn")];
            env.extend(ca.map(|ca| ("SSL_CERT_FILE", ca)));
            Stack::Ours(
                Driver::start_against(&aws.endpoint, dir.path(), kube.kubeconfig(), &env, &args)
                    .await,
            )
        }
        Which::Theirs { raised } => {
            let ApiServer::Real { cp, .. } = &kube else {
                panic!("the incumbents run against the real API server only");
            };
            Stack::Theirs(
                Upstream::start(
                    &dir,
                    cp,
                    incumbents.expect("the incumbents' programs"),
                    aws_ca.as_ref().unwrap(),
                    raised,
                    &interval,
                )
                .await,
            )
        }
    };
    let startup = started.elapsed();
    if real_api {
        // The drivers' watches and caches have listed the class and the
        // accounts.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let control_plane_before = kube.cpu();
    let mut latencies = Vec::with_capacity(pods.len());
    if s.sequential {
        for pod in &pods {
            latencies.push(publish(&stack, &dir, pod).await);
        }
    } else {
        latencies = wave(&stack, &dir, &pods).await;
    }
    let first_wave = aws.calls();
    let steps = if trace {
        let Stack::Ours(driver) = &stack else {
            unreachable!("step times are ours")
        };
        let mut steps = step_times(&driver.logs());
        let cpu = usage(driver.pid()).cpu;
        steps.push(("(driver CPU, setup and first wave)".into(), 1, cpu, cpu));
        // On a real cluster the API server runs elsewhere; here it shares
        // the two cores with the driver and the wave.
        let api = kube.cpu().saturating_sub(control_plane_before);
        steps.push(("(control plane CPU, first wave)".into(), 1, api, api));
        steps
    } else {
        Vec::new()
    };
    let mut connections = aws.connections();
    let mut calls: u64 = first_wave.values().sum();
    let last = dir.target(&pods[pods.len() - 1].uid);
    assert_eq!(
        std::fs::read_to_string(last.join("s0")).unwrap_or_else(|e| panic!(
            "{}: no file s0 in {} ({e}); {}",
            stack.name(),
            last.display(),
            stack.logs()
        )),
        aws::value_of("bench/s0", 1)
    );

    let per_interval = match s.hold {
        None => None,
        Some(h) => {
            aws.reset();
            // kubelet republishes every mounted volume about twice per
            // interval (every 60-90 s for the default 2 minutes): two waves
            // an interval, each followed by half an interval's pause, so
            // every stack does the same work however long its waves take.
            for republish in 0..2 * h.intervals {
                if h.change && republish % 2 == 0 {
                    aws.change_all();
                }
                wave(&stack, &dir, &pods).await;
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

    let usage = stack.usage();
    for pod in &pods {
        let target = dir.target(&pod.uid);
        stack
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
        startup,
        steps,
    }
}

#[derive(Default)]
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
    let incumbents = if real_api {
        Incumbents::from_env()
    } else {
        None
    };
    match &incumbents {
        Some(i) => println!(
            "Side by side: the Secrets Store CSI Driver v1.6.0 ({}) with the AWS provider ({}), rotation on, as shipped and with the provider's client limits raised (--qps=100 --burst=200); AWS over HTTPS for every stack. Their CPU and peak RSS are both processes' added up. Ratios: ours / theirs (raised).\n",
            i.driver.display(),
            i.ascp.display()
        ),
        None => println!(
            "The incumbents are not run (set BENCH_ASCP to a binary of the AWS provider v3.1.1 to run them side by side); their row holds the calls of the AWS provider's documented call pattern, computed.\n"
        ),
    }
    println!(
        "| scenario | stack | AWS latency | publish p50 | publish p99 | AWS calls, first wave | calls per refresh interval | AWS calls / connections | CPU | peak RSS | RSS at the end: heap / mapped files | startup |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut number = 0;
    // The same scenario without templates, per latency: what rendering
    // templates adds is printed beside it.
    let mut untemplated: BTreeMap<(u64, String), (f64, u64, Duration)> = BTreeMap::new();
    for &ms in &latencies {
        for s in scenarios(full)
            .into_iter()
            .filter(|s| s.name().contains(&only))
        {
            let mut stacks = vec![Which::Ours];
            // Our rate budget is nothing to the incumbents: their runs of
            // an unpaced scenario would repeat the paced one's.
            if incumbents.is_some() && !s.unpaced {
                // As shipped, the provider reads the API at 5/s: a held
                // scenario's every republish wave would take minutes.
                if s.hold.is_none() {
                    stacks.push(Which::Theirs { raised: false });
                }
                stacks.push(Which::Theirs { raised: true });
            }
            let mut figures = vec![];
            for which in stacks {
                number += 1;
                let f = runtime.block_on(run(
                    &s,
                    Duration::from_millis(ms),
                    real_api,
                    number,
                    which,
                    incumbents.as_ref(),
                ));
                print_row(&s, which.name(), ms, &f);
                if !full && which == Which::Ours {
                    smoke_checks(&s, &f);
                }
                if which == Which::Ours {
                    let key = (ms, s.name().replace(", 3 templated files + manifest", ""));
                    if !s.templated {
                        untemplated.insert(key, (f.cpu.as_secs_f64(), f.peak_rss_kib, f.p99));
                    } else if let Some((cpu, rss, p99)) = untemplated.get(&key) {
                        println!(
                            "| {} | **templated / without templates** | {ms} ms | | {:.3} | | | | {:.3} | {:.3} | | |",
                            s.name(),
                            f.p99.as_secs_f64() / p99.as_secs_f64().max(1e-9),
                            f.cpu.as_secs_f64() / cpu.max(1e-9),
                            f.peak_rss_kib as f64 / (*rss).max(1) as f64,
                        );
                    }
                }
                figures.push(f);
            }
            if figures.len() > 1 {
                print_ratios(&s, ms, &figures[0], figures.last().unwrap());
            } else if incumbents.is_none() {
                let (first, per_interval) = ascp_calls(&s);
                println!(
                    "| {} | AWS provider, documented pattern (computed) | {ms} ms | | | {first} | {} | | | | | |",
                    s.name(),
                    per_interval.map_or("-".to_owned(), |n| format!("{n:.0}"))
                );
            }
        }
    }
}

fn print_row(s: &Scenario, stack: &str, ms: u64, f: &Figures) {
    let interval_text = f.per_interval.as_ref().map_or("-".to_owned(), |m| {
        m.iter()
            .map(|(api, n)| format!("{api} {n:.1}"))
            .collect::<Vec<_>>()
            .join(", ")
    });
    println!(
        "| {} | {stack} | {ms} ms | {:.1} ms | {:.1} ms | {} | {} | {} / {} | {:.2} s | {:.1} MiB | {:.1} / {:.1} MiB | {:.0} ms |",
        s.name(),
        f.p50.as_secs_f64() * 1000.0,
        f.p99.as_secs_f64() * 1000.0,
        calls_text(&f.first_wave),
        interval_text,
        f.calls,
        f.connections,
        f.cpu.as_secs_f64(),
        f.peak_rss_kib as f64 / 1024.0,
        f.rss_anon_kib as f64 / 1024.0,
        f.rss_file_kib as f64 / 1024.0,
        f.startup.as_secs_f64() * 1000.0,
    );
    for (step, n, p50, p99) in &f.steps {
        println!(
            "|   step {step} | {stack} | {ms} ms | {:.1} ms | {:.1} ms | {n} times | | | | | | |",
            p50.as_secs_f64() * 1000.0,
            p99.as_secs_f64() * 1000.0,
        );
    }
}

/// The row of ratios, ours / theirs: below 1 is ours smaller (faster,
/// fewer calls, less CPU or memory).
fn print_ratios(s: &Scenario, ms: u64, ours: &Figures, theirs: &Figures) {
    let ratio = |o: f64, t: f64| {
        if t > 0.0 {
            format!("{:.3}", o / t)
        } else {
            "-".to_owned()
        }
    };
    let sum = |m: &BTreeMap<String, u64>| m.values().sum::<u64>() as f64;
    let per_interval = match (&ours.per_interval, &theirs.per_interval) {
        (Some(o), Some(t)) => ratio(o.values().sum(), t.values().sum()),
        _ => "-".to_owned(),
    };
    println!(
        "| {} | **ours / theirs (raised)** | {ms} ms | {} | {} | {} | {per_interval} | {} / {} | {} | {} | {} | {} |",
        s.name(),
        ratio(ours.p50.as_secs_f64(), theirs.p50.as_secs_f64()),
        ratio(ours.p99.as_secs_f64(), theirs.p99.as_secs_f64()),
        ratio(sum(&ours.first_wave), sum(&theirs.first_wave)),
        ratio(ours.calls as f64, theirs.calls as f64),
        ratio(ours.connections as f64, theirs.connections as f64),
        ratio(ours.cpu.as_secs_f64(), theirs.cpu.as_secs_f64()),
        ratio(ours.peak_rss_kib as f64, theirs.peak_rss_kib as f64),
        ratio(
            (ours.rss_anon_kib + ours.rss_file_kib) as f64,
            (theirs.rss_anon_kib + theirs.rss_file_kib) as f64
        ),
        ratio(ours.startup.as_secs_f64(), theirs.startup.as_secs_f64()),
    );
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
