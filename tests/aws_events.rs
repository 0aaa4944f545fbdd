//! Told of changes instead of polling: the controller with `--events-queue`
//! against moto's SQS and a real kube-apiserver. ExternalSecrets refresh
//! every hour; a change made in moto reaches the Secret only when its event
//! (the exact shape EventBridge delivers from CloudTrail and Parameter
//! Store; moto's CloudTrail makes none) is put on the queue. A duplicate, a
//! late event of an older version, an event for a secret nobody reads, a
//! burst of a thousand events, a queue that is gone or denied, and a
//! controller that dies with an event on the queue each do what they must. The second test takes events to a
//! node: the controller records each change in a ConfigMap, a real driver
//! (its own RBAC) watches it and refreshes the tmpfs volumes that read the
//! changed secret, one AWS read per identity. Needs root (moto, the control
//! plane, tmpfs) and the binaries of scripts/k8s-peers.sh.

mod common;

use std::time::{Duration, Instant};

use common::control_plane::*;
use common::controller::*;
use common::*;

const NS: &str = "aws-events";
const CLASS: &str = "aws-events";

fn put_secret_event(name: &str) -> String {
    put_secret_value_event(name)
}

fn parameter_event(name: &str) -> String {
    serde_json::json!({
        "version": "0",
        "id": format!("evt-{name}"),
        "detail-type": "Parameter Store Change",
        "source": "aws.ssm",
        "account": "123456789012",
        "time": "2026-12-07T20:00:00Z",
        "region": REGION,
        "resources": [format!("arn:aws:ssm:{REGION}:123456789012:parameter{name}")],
        "detail": {"name": name, "type": "SecureString", "operation": "Update"}
    })
    .to_string()
}

async fn send(queue: &str, body: &str) {
    moto()
        .sqs()
        .send_message()
        .queue_url(queue)
        .message_body(body)
        .send()
        .await
        .unwrap();
}

async fn put_secret(name: &str, value: &str) {
    moto().put_secret(name, value).await;
}

/// An ExternalSecret of an hour's interval reading `remote` into `key`.
fn external_secret(name: &str, store: &str, key: &str, remote: &str, extra: &str) -> String {
    format!(
        "---\napiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {{name: {name}, namespace: {NS}}}\nspec:\n  refreshInterval: 1h\n  {extra}\n  secretStoreRef: {{name: {store}}}\n  data: [{{secretKey: {key}, remoteRef: {{key: {remote}}}}}]\n"
    )
}

/// Messages on the queue, visible or in flight.
async fn on_queue(queue: &str) -> u64 {
    let out = moto()
        .sqs()
        .get_queue_attributes()
        .queue_url(queue)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
        .send()
        .await
        .unwrap();
    let attrs = out.attributes.unwrap_or_default();
    let n = |k: aws_sdk_sqs::types::QueueAttributeName| -> u64 {
        attrs.get(&k).and_then(|v| v.parse().ok()).unwrap_or(0)
    };
    n(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        + n(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
}

/// Waits until every message of the queue is deleted.
async fn queue_empties(queue: &str) {
    queue_empties_within(queue, Duration::from_secs(30)).await
}

async fn queue_empties_within(queue: &str, limit: Duration) {
    let started = Instant::now();
    while on_queue(queue).await > 0 {
        assert!(
            started.elapsed() < limit,
            "the handled messages were not deleted within {limit:?}: {} left",
            on_queue(queue).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn secret_value(cp: &ControlPlane, name: &str, key: &str) -> String {
    cp.try_kubectl(
        &[
            "get",
            "secret",
            name,
            "-n",
            NS,
            "-o",
            &format!("jsonpath={{.data.{key}}}"),
        ],
        None,
    )
    .ok()
    .and_then(|b64| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.decode(b64).ok()
    })
    .map(|b| String::from_utf8_lossy(&b).into_owned())
    .unwrap_or_default()
}

fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

fn aws_calls(text: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with("aws_api_calls_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn aws_change_events_refresh_the_external_secrets_that_read_them() {
    require_root();
    let cp = control_plane();
    install_controller(cp, NS);
    let moto = moto();
    moto.create_secret("events/db", "db-v1").await;
    moto.create_secret("events/unread", "u-v1").await;
    moto.put_parameter("/events/key", "key-v1").await;
    let queue = moto.create_queue("aws-events").await;

    let manifests = format!(
        r#"apiVersion: v1
kind: ServiceAccount
metadata:
  name: reader
  namespace: {NS}
  annotations: {{eks.amazonaws.com/role-arn: "{READER_ROLE}"}}
---
apiVersion: external-secrets.io/v1
kind: SecretStore
metadata: {{name: sm, namespace: {NS}}}
spec:
  controller: {CLASS}
  provider: {{aws: {{service: SecretsManager, region: {REGION}, auth: {{jwt: {{serviceAccountRef: {{name: reader}}}}}}}}}}
---
apiVersion: external-secrets.io/v1
kind: SecretStore
metadata: {{name: ps, namespace: {NS}}}
spec:
  controller: {CLASS}
  provider: {{aws: {{service: ParameterStore, region: {REGION}, auth: {{jwt: {{serviceAccountRef: {{name: reader}}}}}}}}}}
"#
    ) + &[
        external_secret("db", "sm", "password", "events/db", ""),
        external_secret("db-again", "sm", "password", "events/db", ""),
        external_secret(
            "once",
            "sm",
            "password",
            "events/db",
            "refreshPolicy: CreatedOnce",
        ),
        external_secret("key", "ps", "key", "/events/key", ""),
    ]
    .concat();
    cp.kubectl(&["apply", "-f", "-"], Some(&manifests));

    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = controller_kubeconfig(cp, dir.path());
    let (access, secret) = moto.admin_keys();
    let keys = [
        ("AWS_ACCESS_KEY_ID", access),
        ("AWS_SECRET_ACCESS_KEY", secret),
    ];
    let metrics_port = free_port();
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    let start = |identity: &str, queue: &str, metrics: &str| {
        let mut args = vec![
            "--controller-class",
            CLASS,
            "--lease-name",
            "aws-events",
            "--events-queue",
            queue,
        ];
        if !metrics.is_empty() {
            args.extend(["--metrics-addr", metrics]);
        }
        ControllerProcess::start_with_env(
            dir.path(),
            identity,
            &kubeconfig,
            &args,
            &moto.endpoint,
            &keys,
        )
    };
    let mut leader = start("events-a", &queue, &metrics_addr);
    let scrape = || {
        http_get(metrics_port, "/metrics")
            .map(|(_, b)| b)
            .unwrap_or_default()
    };
    eventually(Duration::from_secs(60), "the first sync", || {
        secret_value(cp, "db", "password") == "db-v1"
            && secret_value(cp, "db-again", "password") == "db-v1"
            && secret_value(cp, "once", "password") == "db-v1"
            && secret_value(cp, "key", "key") == "key-v1"
    })
    .await;

    // Changed in AWS, no event: an hour's interval keeps the old value.
    put_secret("events/db", "db-v2").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(secret_value(cp, "db", "password"), "db-v1");

    // The event: both readers refresh at once; CreatedOnce does not (as
    // External Secrets' refresh rules have it); the message is deleted.
    let calls_before = aws_calls(&scrape());
    let sent = Instant::now();
    send(&queue, &put_secret_event("events/db")).await;
    eventually(
        Duration::from_secs(30),
        "the Secrets to follow the event",
        || {
            secret_value(cp, "db", "password") == "db-v2"
                && secret_value(cp, "db-again", "password") == "db-v2"
        },
    )
    .await;
    eprintln!(
        "event to Secret: {:?} (the ExternalSecrets refresh every hour)",
        sent.elapsed()
    );
    queue_empties(&queue).await;
    assert_eq!(secret_value(cp, "once", "password"), "db-v1");
    let metrics = scrape();
    assert_eq!(
        sample(&metrics, "aws_events_total{outcome=\"applied\"}"),
        1.0,
        "{metrics}"
    );
    // Two ExternalSecrets of one identity read the changed secret: one call.
    let calls = aws_calls(&metrics) - calls_before;
    assert!(
        (1.0..=2.0).contains(&calls),
        "AWS calls for one event: {calls}\n{metrics}"
    );
    eprintln!("AWS calls for one event read by two ExternalSecrets: {calls}");

    // A duplicate and an event for a secret nobody reads: no AWS call for
    // the latter, the value stands, both messages go.
    let calls_before = aws_calls(&scrape());
    send(&queue, &put_secret_event("events/unread")).await;
    eventually(Duration::from_secs(30), "the unread event handled", || {
        sample(&scrape(), "aws_events_total{outcome=\"unread\"}") == 1.0
    })
    .await;
    assert_eq!(
        aws_calls(&scrape()),
        calls_before,
        "no AWS call for an unread secret"
    );
    send(&queue, &put_secret_event("events/db")).await;
    eventually(Duration::from_secs(30), "the duplicate handled", || {
        sample(&scrape(), "aws_events_total{outcome=\"applied\"}") == 2.0
    })
    .await;
    assert_eq!(secret_value(cp, "db", "password"), "db-v2");
    // (Each step's messages are gone before the next is sent: events on
    // the queue together are coalesced, by design.)
    queue_empties(&queue).await;

    // A late event of an older version after a newer one: the value is
    // read from AWS, never taken from the event, so nothing rolls back.
    put_secret("events/db", "db-v3").await;
    send(&queue, &put_secret_event("events/db")).await;
    eventually(Duration::from_secs(30), "the newer value", || {
        secret_value(cp, "db", "password") == "db-v3"
            && sample(&scrape(), "aws_events_total{outcome=\"applied\"}") == 3.0
    })
    .await;
    queue_empties(&queue).await;
    send(&queue, &put_secret_event("events/db")).await; // the "old" event
    eventually(Duration::from_secs(30), "the late event handled", || {
        sample(&scrape(), "aws_events_total{outcome=\"applied\"}") == 4.0
    })
    .await;
    assert_eq!(secret_value(cp, "db", "password"), "db-v3");

    // Parameter Store changes, by name and ARN; junk is deleted, counted.
    moto.put_parameter("/events/key", "key-v2").await;
    send(&queue, &parameter_event("/events/key")).await;
    send(&queue, "not an event").await;
    eventually(Duration::from_secs(30), "the parameter to follow", || {
        secret_value(cp, "key", "key") == "key-v2"
    })
    .await;
    queue_empties(&queue).await;
    assert_eq!(
        sample(&scrape(), "aws_events_total{outcome=\"invalid\"}"),
        1.0
    );

    // A burst of a thousand events (EventBridge retries, a rotation storm):
    // 995 for the secret two ExternalSecrets read, 5 for one nobody reads,
    // sent ten to a call as fast as moto takes them. They are coalesced: far
    // fewer reads than events, every message deleted, the value current.
    put_secret("events/db", "db-burst").await;
    let calls_before = aws_calls(&scrape());
    let applied_before = sample(&scrape(), "aws_events_total{outcome=\"applied\"}");
    let sent = Instant::now();
    let bodies: Vec<String> = (0..1000)
        .map(|n| {
            put_secret_event(if n % 200 == 0 {
                "events/unread"
            } else {
                "events/db"
            })
        })
        .collect();
    // A hundred calls of ten, ten calls at a time.
    for burst in bodies.chunks(100) {
        send_messages(&queue, burst).await;
    }
    eventually(Duration::from_secs(30), "the burst's value", || {
        secret_value(cp, "db", "password") == "db-burst"
    })
    .await;
    // (moto scans its whole queue at each receive: a thousand messages
    // waiting drain at about twenty a second there.)
    queue_empties_within(&queue, Duration::from_secs(180)).await;
    let metrics = scrape();
    let reads = aws_calls(&metrics) - calls_before;
    let batches = sample(&metrics, "aws_events_total{outcome=\"applied\"}") - applied_before;
    eprintln!(
        "a burst of 1,000 events: {batches} refreshes of the secret, {reads} AWS reads, all deleted {:?} after the first was sent",
        sent.elapsed()
    );
    assert!(
        reads <= batches && reads <= 100.0,
        "at most a read per batch of ten: {reads} reads, {batches} batches"
    );
    assert_eq!(secret_value(cp, "db-again", "password"), "db-burst");

    // The leader dies with an event on the queue: the next leader reads it
    // (the message was not deleted), and refreshes.
    leader.kill();
    // A long poll the dead leader had open could still take the message
    // (it would come back after the visibility timeout, 90 s): the event
    // is sent once that poll has ended.
    tokio::time::sleep(Duration::from_secs(21)).await;
    put_secret("events/db", "db-v4").await;
    send(&queue, &put_secret_event("events/db")).await;
    let port_b = free_port();
    let follower = start("events-b", &queue, &format!("127.0.0.1:{port_b}"));
    // (A new leader syncs everything once anyway: what shows the event was
    // not lost is that this leader read it from the queue and applied it.)
    let started = Instant::now();
    loop {
        let m = http_get(port_b, "/metrics")
            .map(|(_, b)| b)
            .unwrap_or_default();
        if sample(&m, "aws_events_total{outcome=\"applied\"}") == 1.0
            && secret_value(cp, "db", "password") == "db-v4"
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the next leader did not apply the event: {m}\n{}",
            std::fs::read_to_string(&follower.log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    queue_empties(&queue).await;
    drop(follower);

    // A queue that is gone, and one the controller may not read: counted,
    // logged, and polling goes on (a new ExternalSecret still syncs).
    for (identity, queue, keys) in [
        (
            "events-gone",
            format!("{}/123456789012/no-such-queue", moto.endpoint),
            keys.to_vec(),
        ),
        (
            "events-denied",
            queue.clone(),
            vec![
                ("AWS_ACCESS_KEY_ID", "AKIANOTKNOWN"),
                ("AWS_SECRET_ACCESS_KEY", "x"),
            ],
        ),
    ] {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let c = ControllerProcess::start_with_env(
            dir.path(),
            identity,
            &kubeconfig,
            &[
                "--controller-class",
                CLASS,
                "--lease-name",
                "aws-events",
                "--events-queue",
                &queue,
                "--metrics-addr",
                &addr,
            ],
            &moto.endpoint,
            &keys,
        );
        let es = format!("polled-{identity}");
        cp.kubectl(
            &["apply", "-f", "-"],
            Some(&external_secret(&es, "sm", "password", "events/db", "")),
        );
        eventually(
            Duration::from_secs(60),
            "a queue error counted and a sync by polling",
            || {
                let m = http_get(port, "/metrics")
                    .map(|(_, b)| b)
                    .unwrap_or_default();
                sample(&m, "aws_events_total{outcome=\"queue_error\"}") >= 1.0
                    && secret_value(cp, &es, "password") == "db-v4"
            },
        )
        .await;
        let log = std::fs::read_to_string(&c.log).unwrap_or_default();
        assert!(log.contains("cannot read the events queue"), "{identity}");
        drop(c);
    }
}

const NODE_NS: &str = "aws-events-node";
/// Pods of one identity reading the changed secret on the node.
const PODS: usize = 20;

/// A pod of `NODE_NS` on the test node, with the token kubelet would get.
fn bound_pod(cp: &ControlPlane, name: &str, service_account: &str) -> PodSpec {
    let uid = cp.kubectl(
        &[
            "get",
            "pod",
            name,
            "-n",
            NODE_NS,
            "-o",
            "jsonpath={.metadata.uid}",
        ],
        None,
    );
    let token = pod_token(cp, NODE_NS, name, &uid, service_account);
    PodSpec {
        namespace: NODE_NS.into(),
        name: name.into(),
        uid,
        service_account: service_account.into(),
        token: Some(token.trim().to_owned()),
        pod_identity_token: None,
    }
}

/// The record of changes the controller keeps for the nodes.
fn change_record(cp: &ControlPlane) -> String {
    cp.try_kubectl(
        &[
            "get",
            "configmap",
            "aws-secrets-csi-changes",
            "-n",
            "aws-secrets-csi",
            "-o",
            "jsonpath={.data.changes\\.json}",
        ],
        None,
    )
    .unwrap_or_default()
}

/// Calls the driver made to read secrets.
async fn driver_reads(driver: &Driver) -> u64 {
    driver.aws_calls("BatchGetSecretValue").await + driver.aws_calls("GetSecretValue").await
}

#[tokio::test(flavor = "multi_thread")]
async fn aws_change_events_reach_the_volumes_mounted_on_a_node() {
    require_root();
    let cp = control_plane();
    install_controller(cp, NODE_NS);
    install_spc_crds(cp);
    let deploy = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    for file in ["rbac.yaml", "rbac-changes.yaml"] {
        cp.kubectl(&["apply", "-f", deploy.join(file).to_str().unwrap()], None);
    }
    // The driver's roles under a ServiceAccount of its own: other tests
    // count the calls of the chart's.
    cp.kubectl(
        &["apply", "-f", "-"],
        Some(
            "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: driver-events, namespace: aws-secrets-csi}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: driver-events}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: aws-secrets-csi}\nsubjects: [{kind: ServiceAccount, name: driver-events, namespace: aws-secrets-csi}]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: driver-events-changes, namespace: aws-secrets-csi}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: aws-secrets-csi-changes}\nsubjects: [{kind: ServiceAccount, name: driver-events, namespace: aws-secrets-csi}]\n",
        ),
    );
    let moto = moto();
    moto.create_secret("nodes/db", "db-v1").await;
    moto.create_secret("nodes/quiet", "quiet-v1").await;
    moto.create_secret("nodes/unread", "u-v1").await;
    let queue = moto.create_queue("node-events").await;
    let pod = |name: &str, sa: &str| {
        format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {NODE_NS}}}\nspec:\n  serviceAccountName: {sa}\n  nodeName: test-node\n  containers: [{{name: app, image: example.invalid/app}}]\n"
        )
    };
    let mut manifests = format!(
        r#"apiVersion: v1
kind: ServiceAccount
metadata:
  name: app
  namespace: {NODE_NS}
  annotations: {{eks.amazonaws.com/role-arn: "{READER_ROLE}"}}
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: other
  namespace: {NODE_NS}
  annotations: {{eks.amazonaws.com/role-arn: "{READER_ROLE}"}}
---
apiVersion: secrets-store.csi.x-k8s.io/v1
kind: SecretProviderClass
metadata: {{name: db, namespace: {NODE_NS}}}
spec:
  provider: aws
  parameters:
    region: {REGION}
    refreshInterval: 1h
    objects: |
      - {{objectName: nodes/db, objectType: secretsmanager, objectAlias: db}}
      - {{objectName: nodes/quiet, objectType: secretsmanager, objectAlias: quiet}}
"#
    );
    for i in 0..PODS {
        manifests += &pod(&format!("app-{i}"), "app");
    }
    manifests += &pod("lone", "other");
    cp.kubectl(&["apply", "-f", "-"], Some(&manifests));
    let mut pods: Vec<PodSpec> = (0..PODS)
        .map(|i| bound_pod(cp, &format!("app-{i}"), "app"))
        .collect();
    pods.push(bound_pod(cp, "lone", "other"));

    let dir = tempfile::tempdir().unwrap();
    let token = cp.token("aws-secrets-csi", "driver-events", &["--duration", "1h"]);
    let driver_kubeconfig = dir.path().join("driver.kubeconfig");
    cp.kubeconfig_with_token(&driver_kubeconfig, &cp.server, token.trim());
    let tdir = TestDir::new();
    let start_driver = || {
        Driver::start_with(
            tdir.path(),
            &driver_kubeconfig,
            &[],
            &[
                "--changes-configmap",
                "aws-secrets-csi/aws-secrets-csi-changes",
            ],
        )
    };
    let mut driver = start_driver().await;
    let kubeconfig = controller_kubeconfig(cp, dir.path());
    let (access, secret) = moto.admin_keys();
    let _controller = ControllerProcess::start_with_env(
        dir.path(),
        "node-events",
        &kubeconfig,
        &[
            "--controller-class",
            "node-events",
            "--lease-name",
            "node-events",
            "--events-queue",
            &queue,
        ],
        &moto.endpoint,
        &[
            ("AWS_ACCESS_KEY_ID", access),
            ("AWS_SECRET_ACCESS_KEY", secret),
        ],
    );
    let mut node = driver.node().await;
    for p in &pods {
        node.node_publish_volume(publish_request(&tdir.target(&p.uid), "db", p))
            .await
            .unwrap();
        assert_eq!(read(&tdir.target(&p.uid), "db"), "db-v1");
    }
    let all_read = |value: &str| {
        pods.iter().all(|p| {
            std::fs::read_to_string(tdir.target(&p.uid).join("db"))
                .ok()
                .as_deref()
                == Some(value)
        })
    };

    // Changed in AWS, no event: the class refreshes every hour.
    put_secret("nodes/db", "db-v2").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(all_read("db-v1"));

    // The event: every volume that reads the secret swaps, one read per
    // identity on the node (21 volumes, two identities).
    let reads_before = driver_reads(&driver).await;
    let sent = Instant::now();
    send(&queue, &put_secret_event("nodes/db")).await;
    eventually(
        Duration::from_secs(30),
        "every mounted file to follow the event",
        || all_read("db-v2"),
    )
    .await;
    let took = sent.elapsed();
    let reads = driver_reads(&driver).await - reads_before;
    eprintln!(
        "event to {} mounted files: {took:?}; the driver's AWS reads: {reads}",
        pods.len()
    );
    assert!(
        (1..=2).contains(&reads),
        "one read per identity, not per volume: {reads}\n{}",
        driver.metrics().await
    );
    assert!(
        pods.iter()
            .all(|p| read(&tdir.target(&p.uid), "quiet") == "quiet-v1"),
        "the unchanged object stays"
    );
    let refreshed = || async {
        driver
            .metric("aws_change_volumes_total{outcome=\"refreshed\"}")
            .await
    };
    let started = Instant::now();
    while refreshed().await < pods.len() as f64 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{}",
            driver.metrics().await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(refreshed().await, pods.len() as f64, "each volume once");
    queue_empties(&queue).await;

    // An event for a secret no volume reads: recorded for the nodes, no
    // AWS call on the node. A duplicate of the first: a read at most, the
    // value stands.
    let reads_before = driver_reads(&driver).await;
    send(&queue, &put_secret_event("nodes/unread")).await;
    eventually(
        Duration::from_secs(30),
        "the unread change recorded",
        || change_record(cp).contains("nodes/unread"),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        driver_reads(&driver).await,
        reads_before,
        "no read for an unread secret"
    );
    send(&queue, &put_secret_event("nodes/db")).await;
    let started = Instant::now();
    while driver
        .metric("aws_change_volumes_total{outcome=\"refreshed\"}")
        .await
        < 2.0 * pods.len() as f64
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the duplicate did not refresh the volumes\n{}",
            driver.metrics().await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let reads = driver_reads(&driver).await - reads_before;
    assert!(
        (1..=2).contains(&reads),
        "a duplicate costs a read per identity: {reads}"
    );
    assert!(all_read("db-v2"));
    assert_eq!(
        driver
            .metric("aws_change_volumes_total{outcome=\"swapped\"}")
            .await,
        pods.len() as f64,
        "the duplicate swapped nothing"
    );
    queue_empties(&queue).await;

    // The driver restarts: it holds no credentials now. kubelet
    // republishes (not due: nothing is fetched). An event: no volume can be
    // refreshed with credentials held, so none is read now; each one's next
    // republish fetches, with its pod's fresh token.
    drop(node);
    driver.kill();
    let driver = start_driver().await;
    let mut node = driver.node().await;
    for p in &pods {
        node.node_publish_volume(publish_request(&tdir.target(&p.uid), "db", p))
            .await
            .unwrap();
    }
    assert_eq!(
        driver_reads(&driver).await,
        0,
        "a republish not due reads nothing"
    );
    // The watch has listed the record before the event is sent.
    tokio::time::sleep(Duration::from_secs(2)).await;
    put_secret("nodes/db", "db-v3").await;
    send(&queue, &put_secret_event("nodes/db")).await;
    let started = Instant::now();
    while driver
        .metric("aws_change_volumes_total{outcome=\"deferred\"}")
        .await
        < pods.len() as f64
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the volumes were not deferred\n{}",
            driver.metrics().await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        driver_reads(&driver).await,
        0,
        "no credentials held: no read"
    );
    assert!(all_read("db-v2"));
    for p in &pods {
        node.node_publish_volume(publish_request(&tdir.target(&p.uid), "db", p))
            .await
            .unwrap();
    }
    assert!(all_read("db-v3"), "the next republish fetched");
    let reads = driver_reads(&driver).await;
    assert!((1..=2).contains(&reads), "one read per identity: {reads}");
    queue_empties(&queue).await;

    // Least privilege: the driver used what deploy/rbac.yaml and
    // deploy/rbac-changes.yaml grant, and watched the record; the
    // controller made and replaced it with the grants of
    // deploy/controller/rbac.yaml kept for it.
    let used = cp.calls_by("system:serviceaccount:aws-secrets-csi:driver-events");
    let mut granted = granted_by_all_roles("rbac.yaml");
    granted.extend(granted_by_all_roles("rbac-changes.yaml"));
    let missing: Vec<_> = used.difference(&granted).collect();
    assert!(
        missing.is_empty(),
        "the driver used but was not granted: {missing:?}"
    );
    for verb in ["list", "watch"] {
        assert!(
            used.contains(&("configmaps".to_owned(), verb.to_owned())),
            "{used:?}"
        );
    }
    let used = cp.calls_by("system:serviceaccount:aws-secrets-csi:aws-secrets-csi-controller");
    let unused: Vec<_> = events_grants().difference(&used).cloned().collect();
    assert!(unused.is_empty(), "events grants not used: {unused:?}");
    assert!(events_grants().is_subset(&granted_by_all_roles("controller/rbac.yaml")));

    for p in &pods {
        node.node_unpublish_volume(unpublish_request(&tdir.target(&p.uid), p))
            .await
            .unwrap();
    }
}
