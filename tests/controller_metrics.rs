//! The controller's metrics and probes, against a real kube-apiserver with
//! the controller running as its own ServiceAccount and moto as AWS: after
//! ExternalSecrets sync (two of one secret) and one fails (its store is
//! refused), the scrape carries External Secrets Operator's names and
//! labels with values that count what happened, our own refresh time and
//! calls saved, and no secret value; an ExternalSecret deleted leaves no
//! series; `/readyz` and `/livez` answer, on the leader and on a standby;
//! a leader whose watches cannot list is live but not ready.
//! Needs root (moto, the control plane) and the binaries of
//! scripts/k8s-peers.sh.

mod common;

use std::time::Duration;

use common::control_plane::*;
use common::controller::*;
use common::*;

const NS: &str = "controller-metrics";
const CLASS: &str = "controller-metrics";
const VALUE: &str = "metrics-pw-7f3a9c";

fn scrape(port: u16) -> String {
    let (code, body) = http_get(port, "/metrics").expect("the metrics endpoint answers");
    assert_eq!(code, 200, "{body}");
    body
}

/// The value of the sample `series` (name and labels, exactly), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    })
}

fn es(name: &str) -> String {
    format!("{{name=\"{name}\",namespace=\"{NS}\"}}")
}

fn condition(name: &str, status: &str) -> String {
    format!(
        "externalsecret_status_condition{{name=\"{name}\",namespace=\"{NS}\",condition=\"Ready\",status=\"{status}\"}}"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_controller_exposes_external_secrets_metrics_and_probes() {
    require_root();
    let cp = control_plane();
    install_controller(cp, NS);
    moto().create_secret("controller-metrics/db", VALUE).await;

    let store = |name: &str, extra: &str| {
        format!(
            "apiVersion: external-secrets.io/v1\nkind: SecretStore\nmetadata: {{name: {name}, namespace: {NS}}}\nspec:\n  controller: {CLASS}\n  provider: {{aws: {{service: SecretsManager, region: {REGION}, auth: {{jwt: {{serviceAccountRef: {{name: reader}}}}}}{extra}}}}}\n---\n"
        )
    };
    let external_secret = |name: &str, store: &str| {
        format!(
            "apiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {{name: {name}, namespace: {NS}}}\nspec:\n  refreshInterval: 1h\n  secretStoreRef: {{name: {store}}}\n  target: {{name: {name}}}\n  data: [{{secretKey: password, remoteRef: {{key: controller-metrics/db}}}}]\n---\n"
        )
    };
    let mut manifests = format!(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: reader\n  namespace: {NS}\n  annotations: {{eks.amazonaws.com/role-arn: \"{READER_ROLE}\"}}\n---\n"
    );
    manifests += &store("good", "");
    // No IAM role ARN: the controller refuses the store, so its
    // ExternalSecret fails.
    manifests += &store("bad", ", role: not-a-role");
    manifests += &external_secret("ok-a", "good");
    manifests += &external_secret("ok-b", "good");
    manifests += &external_secret("failing", "bad");
    cp.kubectl(&["apply", "-f", "-"], Some(&manifests));

    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = controller_kubeconfig(cp, dir.path());
    let (metrics_port, health_port) = (free_port(), free_port());
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    let health_addr = format!("127.0.0.1:{health_port}");
    let _leader = ControllerProcess::start_with(
        dir.path(),
        "controller-metrics",
        &kubeconfig,
        &[
            "--controller-class",
            CLASS,
            "--lease-name",
            "controller-metrics",
            "--metrics-addr",
            &metrics_addr,
            "--health-addr",
            &health_addr,
        ],
    );

    let ready_of = |port: u16| http_get(port, "/readyz").map(|(code, _)| code);
    eventually(Duration::from_secs(30), "the leader ready", || {
        ready_of(health_port) == Some(200)
    })
    .await;
    assert_eq!(http_get(health_port, "/livez").map(|(c, _)| c), Some(200));
    // The probes and the metrics are on their own ports.
    assert_eq!(http_get(health_port, "/metrics").map(|(c, _)| c), Some(404));

    // Synced and failed, as the scrape tells.
    eventually(
        Duration::from_secs(60),
        "both outcomes in the scrape",
        || {
            let text = scrape(metrics_port);
            sample(&text, &condition("ok-a", "True")) == Some(1.0)
                && sample(&text, &condition("ok-b", "True")) == Some(1.0)
                && sample(&text, &condition("failing", "False")) == Some(1.0)
        },
    )
    .await;
    let text = scrape(metrics_port);
    for line in text
        .lines()
        .filter(|l| l.starts_with("externalsecret_") || l.starts_with("aws_calls_saved_total"))
    {
        eprintln!("scraped: {line}");
    }
    let value = |series: &str| {
        sample(&text, series).unwrap_or_else(|| panic!("no sample {series} in\n{text}"))
    };
    assert!(value(&format!("externalsecret_sync_calls_total{}", es("ok-a"))) >= 1.0);
    assert!(value(&format!("externalsecret_sync_calls_total{}", es("failing"))) >= 1.0);
    assert_eq!(
        value(&format!("externalsecret_sync_calls_error{}", es("ok-a"))),
        0.0
    );
    assert!(value(&format!("externalsecret_sync_calls_error{}", es("failing"))) >= 1.0);
    assert_eq!(value(&condition("ok-a", "False")), 0.0);
    assert_eq!(value(&condition("failing", "True")), 0.0);
    // In nanoseconds, as External Secrets Operator's: more than 1 µs, less
    // than 30 s.
    let took = value(&format!("externalsecret_reconcile_duration{}", es("ok-a")));
    assert!((1e3..30e9).contains(&took), "{took}");
    // The time of the last good refresh: now-ish; none for the failing one.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let refreshed = value(&format!(
        "externalsecret_last_refresh_timestamp_seconds{}",
        es("ok-a")
    ));
    assert!(
        (now - 120.0..now + 5.0).contains(&refreshed),
        "{refreshed} vs {now}"
    );
    assert_eq!(
        sample(
            &text,
            &format!(
                "externalsecret_last_refresh_timestamp_seconds{}",
                es("failing")
            )
        ),
        None
    );
    // Secrets Manager calls under External Secrets' provider and call names.
    let sm_calls: f64 = ["GetSecretValue", "BatchGetSecretValue"]
        .iter()
        .filter_map(|call| {
            sample(
                &text,
                &format!(
                    "externalsecret_provider_api_calls_count{{provider=\"AWS/SecretsManager\",call=\"{call}\",status=\"success\"}}"
                ),
            )
        })
        .sum();
    assert!(sm_calls >= 1.0, "{text}");
    // Two ExternalSecrets of one secret and store: one call served both.
    let saved: f64 = ["sharing", "batching"]
        .iter()
        .filter_map(|by| sample(&text, &format!("aws_calls_saved_total{{by=\"{by}\"}}")))
        .sum();
    assert!(saved >= 1.0, "{text}");
    assert!(text.contains("# TYPE externalsecret_sync_calls_error unknown"));
    assert!(text.contains("# TYPE externalsecret_provider_api_calls_count unknown"));
    assert!(!text.contains(VALUE), "a secret value in the scrape");
    for line in text.lines().filter(|l| l.contains("name=\"")) {
        assert!(!line.contains("eyJ"), "a token in {line}");
    }

    // A standby replica: ready (a rolling update needs it), live, and it
    // syncs nothing.
    let (standby_metrics, standby_health) = (free_port(), free_port());
    let standby_metrics_addr = format!("127.0.0.1:{standby_metrics}");
    let standby_health_addr = format!("127.0.0.1:{standby_health}");
    let _standby = ControllerProcess::start_with(
        dir.path(),
        "controller-metrics-standby",
        &kubeconfig,
        &[
            "--controller-class",
            CLASS,
            "--lease-name",
            "controller-metrics",
            "--metrics-addr",
            &standby_metrics_addr,
            "--health-addr",
            &standby_health_addr,
        ],
    );
    eventually(Duration::from_secs(30), "the standby ready", || {
        ready_of(standby_health) == Some(200)
    })
    .await;
    assert_eq!(
        http_get(standby_health, "/livez").map(|(c, _)| c),
        Some(200)
    );
    let standby_text = scrape(standby_metrics);
    assert!(
        !standby_text.contains("externalsecret_sync_calls_total{"),
        "{standby_text}"
    );

    // A leader whose watches cannot list (its ServiceAccount may take the
    // Lease and nothing more): live, but not ready, and it says why.
    let unlisted = "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: metrics-unlisted, namespace: aws-secrets-csi}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: metrics-unlisted, namespace: aws-secrets-csi}\nrules: [{apiGroups: [coordination.k8s.io], resources: [leases], verbs: [get, create, update]}]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: metrics-unlisted, namespace: aws-secrets-csi}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: metrics-unlisted}\nsubjects: [{kind: ServiceAccount, name: metrics-unlisted, namespace: aws-secrets-csi}]\n";
    cp.kubectl(&["apply", "-f", "-"], Some(unlisted));
    let token = cp.token("aws-secrets-csi", "metrics-unlisted", &["--duration", "1h"]);
    let unlisted_kubeconfig = dir.path().join("unlisted.kubeconfig");
    cp.kubeconfig_with_token(&unlisted_kubeconfig, &cp.server, &token);
    let unlisted_health = free_port();
    let unlisted_health_addr = format!("127.0.0.1:{unlisted_health}");
    let _unlisted = ControllerProcess::start_with(
        dir.path(),
        "controller-metrics-unlisted",
        &unlisted_kubeconfig,
        &[
            "--controller-class",
            CLASS,
            "--lease-name",
            "controller-metrics-unlisted",
            "--health-addr",
            &unlisted_health_addr,
        ],
    );
    eventually(
        Duration::from_secs(30),
        "the unlisted leader answers",
        || http_get(unlisted_health, "/livez").map(|(c, _)| c) == Some(200),
    )
    .await;
    // Leading within a second (its own Lease); still not ready after.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (code, why) = http_get(unlisted_health, "/readyz").unwrap();
    assert_eq!(code, 503, "{why}");
    assert!(why.contains("not listed"), "{why}");
    assert_eq!(
        http_get(unlisted_health, "/livez").map(|(c, _)| c),
        Some(200)
    );

    // Deleted: its series go, the others stay.
    cp.kubectl(&["delete", "externalsecret", "ok-b", "-n", NS], None);
    eventually(
        Duration::from_secs(30),
        "the deleted one's series gone",
        || !scrape(metrics_port).contains("name=\"ok-b\""),
    )
    .await;
    let text = scrape(metrics_port);
    assert!(
        sample(&text, &condition("ok-a", "True")) == Some(1.0),
        "{text}"
    );
}
