//! Told, not polling: the controller with `--events-queue` on a real
//! kube-apiserver and etcd, moto as AWS (Secrets Manager and SQS). 1,000
//! ExternalSecrets read 200 secrets (five each, one store, one identity),
//! refreshing every hour as External Secrets Operator's default has it.
//! Rounds of changes: each changes some secrets in moto and puts their
//! events on the queue (EventBridge's exact shape); printed: the time from
//! the event to every Secret that reads the secret holding the new value
//! (p50, p99, max), the AWS calls per event, and what polling at External
//! Secrets Operator's defaults costs for the same freshness.
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
    serde_json::json!({
        "version": "0",
        "detail-type": "AWS API Call via CloudTrail",
        "source": "aws.secretsmanager",
        "account": "123456789012",
        "region": REGION,
        "detail": {
            "eventName": "PutSecretValue",
            "awsRegion": REGION,
            "requestParameters": {"secretId": name}
        }
    })
    .to_string()
}

/// Every Secret of the namespace: name -> its `password`, decoded.
async fn secrets(client: &::kube::Client) -> BTreeMap<String, String> {
    use k8s_openapi::api::core::v1::Secret;
    let api = ::kube::Api::<Secret>::namespaced(client.clone(), NS);
    let Ok(list) = api.list(&Default::default()).await else {
        return BTreeMap::new();
    };
    list.items
        .into_iter()
        .filter_map(|s| {
            let name = s.metadata.name?;
            let value = s.data?.get("password")?.0.clone();
            Some((name, String::from_utf8_lossy(&value).into_owned()))
        })
        .collect()
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
    let queue = moto
        .sqs()
        .create_queue()
        .queue_name("bench-events")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
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
        ],
    );
    let client = {
        let config = ::kube::Config::from_custom_kubeconfig(
            ::kube::config::Kubeconfig::read_from(&cp.admin).unwrap(),
            &Default::default(),
        )
        .await
        .unwrap();
        ::kube::Client::try_from(config).unwrap()
    };
    loop {
        let s = secrets(&client).await;
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
        let sent = Instant::now();
        for &i in &chosen {
            moto.sqs()
                .send_message()
                .queue_url(&queue)
                .message_body(event(&format!("bench/s{i}")))
                .send()
                .await
                .unwrap();
        }
        // Per changed secret: when all its Secrets held the new value.
        let mut waiting: BTreeMap<usize, ()> = chosen.iter().map(|&i| (i, ())).collect();
        while !waiting.is_empty() {
            let s = secrets(&client).await;
            let now = sent.elapsed();
            waiting.retain(|i, _| {
                let done = (0..per_secret)
                    .all(|j| s.get(&format!("es-{i}-{j}")).map(String::as_str) == Some(&value));
                if done {
                    latencies.push(now);
                }
                !done
            });
            assert!(
                sent.elapsed() < Duration::from_secs(120),
                "round {round}: {} secrets not propagated",
                waiting.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let event_calls = calls(&scrape()) - calls_before;
    let events = (rounds * changed) as f64;
    latencies.sort();
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
    }
}
