//! The controller beside External Secrets Operator itself, on one real API
//! server with the Operator's own CRDs (v0.16.2 serves v1beta1 only, so this
//! is also our controller working with another project's CRDs as
//! installed). Each controller gets its own store class, its own counting AWS
//! stand-in (20 ms latency) and the same workload: 200 ExternalSecrets over 20
//! secrets, refreshed every 20 s. A benchmark that prints figures, not a
//! check: `cargo test --test eso_side_by_side -- --ignored --nocapture`.
//! Needs scripts/eso-peer.sh (the Operator built from Go modules) and the
//! peers of scripts/k8s-peers.sh.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::aws_standin::AwsStandIn;
use common::control_plane::*;
use common::eso_peer::*;
use common::*;

const COUNT: usize = 200;
const INTERVAL: u64 = 20;

struct Running {
    child: Child,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn workload(class: &str, prefix: &str) -> String {
    let mut m = format!(
        "apiVersion: external-secrets.io/v1beta1\nkind: SecretStore\nmetadata: {{name: {class}-store, namespace: bench}}\nspec:\n  controller: {class}\n  provider: {{aws: {{service: SecretsManager, region: us-east-1, auth: {{jwt: {{serviceAccountRef: {{name: reader}}}}}}}}}}\n---\n"
    );
    for i in 0..COUNT {
        m += &format!(
            "apiVersion: external-secrets.io/v1beta1\nkind: ExternalSecret\nmetadata: {{name: {prefix}-{i}, namespace: bench}}\nspec:\n  refreshInterval: {INTERVAL}s\n  secretStoreRef: {{name: {class}-store}}\n  target: {{name: {prefix}-{i}}}\n  data: [{{secretKey: v, remoteRef: {{key: bench/secret-{}}}}}]\n---\n",
            i % 20
        );
    }
    m
}

#[tokio::test(flavor = "multi_thread")]
#[ignore]
async fn external_secrets_operator_beside_ours() {
    let cp = control_plane();
    let eso = eso_binary();
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
            "--timeout=60s",
        ],
        None,
    );
    let rbac = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/controller/rbac.yaml");
    cp.kubectl(
        &["apply", "-f", "-"],
        Some(&format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: aws-secrets-csi}}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: bench}}\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: reader\n  namespace: bench\n  annotations: {{eks.amazonaws.com/role-arn: \"{READER_ROLE}\"}}\n"
        )),
    );
    cp.kubectl(&["apply", "-f", rbac.to_str().unwrap()], None);
    let theirs_aws = AwsStandIn::start(Duration::from_millis(20)).await;
    let ours_aws = AwsStandIn::start(Duration::from_millis(20)).await;
    cp.kubectl(&["apply", "-f", "-"], Some(&workload("eso", "theirs")));
    cp.kubectl(&["apply", "-f", "-"], Some(&workload("ours", "ours")));
    let dir = tempfile::tempdir().unwrap();

    let synced = |prefix: &str| -> usize {
        cp.try_kubectl(&["get", "secrets", "-n", "bench", "-o", "name"], None)
            .map(|o| {
                o.lines()
                    .filter(|l| l.starts_with(&format!("secret/{prefix}-")))
                    .count()
            })
            .unwrap_or(0)
    };
    let started = Instant::now();
    let theirs = Running {
        child: Command::new(&eso)
            .args([
                "--controller-class",
                "eso",
                "--metrics-addr",
                "127.0.0.1:0",
                "--enable-leader-election=false",
                "--enable-push-secret-reconciler=false",
                "--enable-cluster-push-secret-reconciler=false",
                "--enable-cluster-external-secret-reconciler=false",
            ])
            .env("KUBECONFIG", &cp.admin)
            .env("AWS_SECRETSMANAGER_ENDPOINT", &theirs_aws.endpoint)
            .env("AWS_STS_ENDPOINT", &theirs_aws.endpoint)
            .env("AWS_REGION", REGION)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("eso.log")).unwrap())
            .spawn()
            .expect("start External Secrets Operator"),
    };
    let ours = Running {
        child: Command::new(
            std::env::var("AWS_SECRETS_CSI_BIN")
                .unwrap_or_else(|_| env!("CARGO_BIN_EXE_aws-secrets-csi").to_owned()),
        )
        .args([
            "controller",
            "--controller-class",
            "ours",
            "--lease-namespace",
            "aws-secrets-csi",
        ])
        .env("KUBECONFIG", &cp.admin)
        .env("AWS_ENDPOINT_URL", &ours_aws.endpoint)
        .env("AWS_REGION", REGION)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("ours.log")).unwrap())
        .spawn()
        .unwrap(),
    };
    let (mut theirs_first, mut ours_first) = (None, None);
    let deadline = Instant::now() + Duration::from_secs(300);
    while (theirs_first.is_none() || ours_first.is_none()) && Instant::now() < deadline {
        if theirs_first.is_none() && synced("theirs") >= COUNT {
            theirs_first = Some(started.elapsed());
        }
        if ours_first.is_none() && synced("ours") >= COUNT {
            ours_first = Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let first_calls = (theirs_aws.calls(), ours_aws.calls());
    theirs_aws.reset();
    ours_aws.reset();
    tokio::time::sleep(Duration::from_secs(3 * INTERVAL)).await;
    let interval_calls = (theirs_aws.calls(), ours_aws.calls());
    let rss = (
        peak_rss_kib(theirs.child.id()),
        peak_rss_kib(ours.child.id()),
    );
    let total = |m: &std::collections::BTreeMap<String, u64>| m.values().sum::<u64>();
    println!(
        "{COUNT} ExternalSecrets over 20 secrets each, {INTERVAL} s interval, 20 ms AWS latency:"
    );
    println!(
        "  first sync: External Secrets Operator {:?}, ours {:?}",
        theirs_first, ours_first
    );
    println!(
        "  AWS calls of the first sync: theirs {:?}, ours {:?}",
        first_calls.0, first_calls.1
    );
    println!(
        "  AWS calls in three intervals: theirs {:?} ({} in all), ours {:?} ({} in all)",
        interval_calls.0,
        total(&interval_calls.0),
        interval_calls.1,
        total(&interval_calls.1)
    );
    println!("  peak RSS: theirs {} KiB, ours {} KiB", rss.0, rss.1);
    let eso_log = std::fs::read_to_string(dir.path().join("eso.log")).unwrap_or_default();
    assert!(
        theirs_first.is_some(),
        "External Secrets Operator did not sync; its log ends:\n{}",
        eso_log
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(ours_first.is_some(), "our controller did not sync");
}
