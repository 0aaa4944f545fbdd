//! Rotation in place: kubelet's republish refreshes a mounted volume when its
//! interval has passed, swaps the whole file set atomically, keeps the old
//! files when AWS fails, and survives a SIGKILL of the driver. Real driver,
//! real moto, real tmpfs: needs root.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::*;

const APIS: [&str; 4] = [
    "AssumeRoleWithWebIdentity",
    "BatchGetSecretValue",
    "GetSecretValue",
    "GetParameters",
];

async fn calls(driver: &Driver) -> Vec<u64> {
    let text = driver.metrics().await;
    APIS.iter()
        .map(|api| {
            text.lines()
                .filter(|l| l.starts_with(&format!("aws_api_calls_total{{api=\"{api}\"")))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
                .sum()
        })
        .collect()
}

async fn put_secret(name: &str, value: &str) {
    moto().put_secret(name, value).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn republish_refreshes_only_after_the_interval_with_the_fewest_calls() {
    let w = World::new().await;
    let moto = moto();
    moto.create_secret("r1/a", "a-v1").await;
    moto.create_secret("r1/b", "b-v1").await;
    let pinned = moto
        .secrets_manager()
        .create_secret()
        .name("r1/pinned")
        .secret_string("pinned-v1")
        .send()
        .await
        .unwrap()
        .version_id()
        .unwrap()
        .to_owned();
    moto.put_parameter("/r1/p", "p-v1").await;
    moto.put_parameter("/r1/q", "q-v1").await;
    w.kube.put_service_account("r1", "app", Some(READER_ROLE));
    let objects = format!(
        "- {{objectName: r1/a, objectType: secretsmanager, objectAlias: a}}\n- {{objectName: r1/b, objectType: secretsmanager, objectAlias: b}}\n- {{objectName: r1/pinned, objectType: secretsmanager, objectAlias: pinned, objectVersion: {pinned}}}\n- {{objectName: /r1/p, objectType: ssmparameter, objectAlias: p}}\n- {{objectName: /r1/q, objectType: ssmparameter, objectAlias: q}}\n"
    );
    w.kube.put_class(
        "r1",
        "c",
        &[
            ("region", REGION),
            ("refreshInterval", "3s"),
            ("objects", &objects),
        ],
    );
    let pod = PodSpec::new("r1", "p", "app");
    let target = w.dir.target(&pod.uid);
    let mut node = w.driver.node().await;
    node.node_publish_volume(publish_request(&target, "c", &pod))
        .await
        .unwrap();
    let first = data_link(&target);
    // First mount: 1 STS, 1 batch for the two current secrets, 1 GetSecretValue
    // for the pinned version, 1 GetParameters.
    assert_eq!(calls(&w.driver).await, vec![1, 1, 1, 1]);

    put_secret("r1/a", "a-v2").await;
    // Before the interval: no call of any kind, no change.
    for _ in 0..3 {
        node.node_publish_volume(publish_request(&target, "c", &pod))
            .await
            .unwrap();
    }
    assert_eq!(calls(&w.driver).await, vec![1, 1, 1, 1]);
    assert_eq!(read(&target, "a"), "a-v1");
    assert_eq!(data_link(&target), first);

    // After it: one refresh, the pinned version costs nothing, one swap.
    tokio::time::sleep(Duration::from_millis(3400)).await;
    node.node_publish_volume(publish_request(&target, "c", &pod))
        .await
        .unwrap();
    assert_eq!(
        calls(&w.driver).await,
        vec![1, 2, 1, 2],
        "a refresh: 1 batch + 1 GetParameters; the credentials come from the cache"
    );
    assert_eq!(read(&target, "a"), "a-v2");
    assert_eq!(read(&target, "b"), "b-v1");
    assert_eq!(read(&target, "pinned"), "pinned-v1");
    let second = data_link(&target);
    assert_ne!(second, first);
    assert_eq!(
        data_dirs(&target),
        vec![second.clone()],
        "the old directory is gone"
    );
    assert_eq!(
        w.driver
            .metric("rotation_reconcile_total{provider=\"aws\",os_type=\"linux\",rotated=\"true\"}")
            .await,
        1.0
    );

    // Another interval without a change: same calls, no swap.
    tokio::time::sleep(Duration::from_millis(3400)).await;
    node.node_publish_volume(publish_request(&target, "c", &pod))
        .await
        .unwrap();
    assert_eq!(calls(&w.driver).await, vec![1, 3, 1, 3]);
    assert_eq!(data_link(&target), second, "unchanged bytes: no swap");
    assert_eq!(
        w.driver
            .metric(
                "rotation_reconcile_total{provider=\"aws\",os_type=\"linux\",rotated=\"false\"}"
            )
            .await,
        1.0
    );
    assert_eq!(mounts_under(&target).len(), 1);

    let metrics = w.driver.metrics().await;
    assert!(
        metrics.contains("node_publish_total{provider=\"aws\",os_type=\"linux\"} 6"),
        "{metrics}"
    );
    assert!(
        metrics.contains("secretproviderclass_seconds_since_refresh{namespace=\"r1\",class=\"c\"}")
            && metrics.contains("secretproviderclass_volumes{namespace=\"r1\",class=\"c\"} 1"),
        "{metrics}"
    );
    // Secrets Manager says when it made the version served.
    assert!(
        metrics.contains(
            "secretproviderclass_served_version_age_seconds{namespace=\"r1\",class=\"c\"}"
        ),
        "{metrics}"
    );
    node.node_unpublish_volume(unpublish_request(&target, &pod))
        .await
        .unwrap();
    assert_eq!(
        w.driver
            .metric("node_unpublish_total{os_type=\"linux\"}")
            .await,
        1.0
    );
    assert!(
        !w.driver
            .metrics()
            .await
            .contains("secretproviderclass_volumes{"),
        "an unpublished volume is forgotten"
    );
    assert_no_leak(
        &w.driver,
        &["a-v1", "a-v2", "pinned-v1", "eyJ-test-token-for-p"],
    );
}

/// Reads two files through one resolution of `..data`, as a reader that
/// wants a consistent snapshot does. None when the snapshot was swapped away
/// while reading (the reader simply tries again).
fn read_pair(target: &Path) -> Option<(String, String)> {
    let dir = std::fs::read_link(target.join("..data")).ok()?;
    let a = std::fs::read_to_string(target.join(&dir).join("a")).ok()?;
    let b = std::fs::read_to_string(target.join(&dir).join("b")).ok()?;
    Some((a, b))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reader_never_sees_half_old_half_new() {
    let w = World::new().await;
    moto()
        .create_secret("r2/pair", r#"{"a":"0","b":"0"}"#)
        .await;
    w.kube.put_service_account("r2", "app", Some(READER_ROLE));
    w.kube.put_class(
        "r2",
        "c",
        &[
            ("region", REGION),
            ("refreshInterval", "1ms"),
            ("objects", "- {objectName: r2/pair, objectType: secretsmanager, jmesPath: [{path: a, objectAlias: a}, {path: b, objectAlias: b}]}"),
        ],
    );
    let pod = PodSpec::new("r2", "p", "app");
    let target = w.dir.target(&pod.uid);
    let mut node = w.driver.node().await;
    node.node_publish_volume(publish_request(&target, "c", &pod))
        .await
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let checked = Arc::new(AtomicUsize::new(0));
    let reader = std::thread::spawn({
        let (stop, checked, target) = (stop.clone(), checked.clone(), target.clone());
        move || {
            let mut seen = std::collections::HashSet::new();
            while !stop.load(Ordering::Relaxed) {
                if let Some((a, b)) = read_pair(&target) {
                    assert_eq!(a, b, "a reader saw a mix of two versions");
                    seen.insert(a);
                    checked.fetch_add(1, Ordering::Relaxed);
                }
            }
            seen.len()
        }
    });
    let rotations = 25;
    for i in 1..=rotations {
        put_secret("r2/pair", &format!(r#"{{"a":"{i}","b":"{i}"}}"#)).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        node.node_publish_volume(publish_request(&target, "c", &pod))
            .await
            .unwrap();
        assert_eq!(read(&target, "a"), i.to_string());
    }
    stop.store(true, Ordering::Relaxed);
    let versions_seen = reader.join().expect("the reader saw a mix");
    assert!(checked.load(Ordering::Relaxed) > 100, "the reader ran");
    assert!(versions_seen > 1, "the reader saw rotations");
    assert_eq!(
        w.driver
            .metric("rotation_reconcile_total{provider=\"aws\",os_type=\"linux\",rotated=\"true\"}")
            .await,
        rotations as f64
    );
    assert_eq!(data_dirs(&target).len(), 1);
    node.node_unpublish_volume(unpublish_request(&target, &pod))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn aws_down_keeps_the_old_files_and_the_next_refresh_recovers() {
    require_root();
    let port = free_port();
    let private = Moto::start(port);
    private
        .secrets_manager()
        .create_secret()
        .name("r3/s")
        .secret_string("before-outage")
        .send()
        .await
        .unwrap();
    let endpoint = private.endpoint.clone();
    let w = World::with(&[("AWS_ENDPOINT_URL", &endpoint)], &[]).await;
    w.kube.put_service_account("r3", "app", Some(READER_ROLE));
    w.kube.put_class(
        "r3",
        "c",
        &[
            ("region", REGION),
            ("refreshInterval", "1s"),
            (
                "objects",
                "- {objectName: r3/s, objectType: secretsmanager, objectAlias: s}",
            ),
        ],
    );
    let pod = PodSpec::new("r3", "p", "app");
    let target = w.dir.target(&pod.uid);
    let mut node = w.driver.node().await;
    node.node_publish_volume(publish_request(&target, "c", &pod))
        .await
        .unwrap();
    let before = data_link(&target);

    drop(private); // AWS is gone.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    node.node_publish_volume(publish_request(&target, "c", &pod))
        .await
        .expect("a failed refresh still returns OK");
    assert_eq!(read(&target, "s"), "before-outage");
    assert_eq!(data_link(&target), before);
    let errors = w.driver.metrics().await;
    assert!(
        errors.contains("rotation_reconcile_error_total{provider=\"aws\",error_type=\"AwsUnavailable\",os_type=\"linux\",rotated=\"false\"} 1"),
        "{errors}"
    );
    assert!(
        w.driver
            .logs()
            .contains("refresh failed; the old files stay")
    );

    // AWS is back (a fresh emulator on the same port, with a new value).
    let back = Moto::start(port);
    back.secrets_manager()
        .create_secret()
        .name("r3/s")
        .secret_string("after-outage")
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    node.node_publish_volume(publish_request(&target, "c", &pod))
        .await
        .unwrap();
    assert_eq!(read(&target, "s"), "after-outage", "{}", w.driver.logs());
    assert_eq!(
        w.driver
            .metric("rotation_reconcile_total{provider=\"aws\",os_type=\"linux\",rotated=\"true\"}")
            .await,
        1.0
    );
    assert_eq!(mounts_under(&target).len(), 1);
    node.node_unpublish_volume(unpublish_request(&target, &pod))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_mid_refresh_then_restart_leaves_one_mount_and_one_consistent_set() {
    let mut w = World::new().await;
    moto()
        .create_secret("r4/pair", r#"{"a":"0","b":"0"}"#)
        .await;
    w.kube.put_service_account("r4", "app", Some(READER_ROLE));
    w.kube.put_class(
        "r4",
        "c",
        &[
            ("region", REGION),
            ("refreshInterval", "1ms"),
            ("objects", "- {objectName: r4/pair, objectType: secretsmanager, jmesPath: [{path: a, objectAlias: a}, {path: b, objectAlias: b}]}"),
        ],
    );
    let pod = PodSpec::new("r4", "p", "app");
    let target = w.dir.target(&pod.uid);
    w.publish(&target, "c", &pod).await.unwrap();

    let mut version = 0;
    for round in 0..4 {
        // Refreshes back to back, each with new content, then a SIGKILL at a
        // moment that varies from round to round.
        let mut node = w.driver.node().await;
        let hammer = tokio::spawn({
            let (target, pod) = (target.clone(), pod.clone());
            async move {
                let mut v = version;
                loop {
                    v += 1;
                    put_secret("r4/pair", &format!(r#"{{"a":"{v}","b":"{v}"}}"#)).await;
                    if node
                        .node_publish_volume(publish_request(&target, "c", &pod))
                        .await
                        .is_err()
                    {
                        return v;
                    }
                }
            }
        });
        tokio::time::sleep(Duration::from_millis(150 + 70 * round)).await;
        w.driver.kill();
        version = hammer.await.unwrap();

        w.driver = Driver::start(w.dir.path(), &w.kube.kubeconfig, &[]).await;
        assert!(
            w.driver.logs().contains("recovered published volumes"),
            "{}",
            w.driver.logs()
        );
        let mut node = w.driver.node().await;
        node.node_publish_volume(publish_request(&target, "c", &pod))
            .await
            .unwrap();
        assert_eq!(mounts_under(&target).len(), 1, "round {round}: one mount");
        let (a, b) = read_pair(&target).expect("a complete set");
        assert_eq!(a, b, "round {round}: consistent files");
        assert_eq!(read(&target, "a"), read(&target, "b"));
        assert_eq!(
            data_dirs(&target).len(),
            1,
            "round {round}: no leftover directories: {:?}",
            data_dirs(&target)
        );
        assert!(!target.join("..data_tmp").exists());
    }
    let mut node = w.driver.node().await;
    node.node_unpublish_volume(unpublish_request(&target, &pod))
        .await
        .unwrap();
    assert!(mounts_under(&target).is_empty());
    assert!(!target.exists());
    assert_eq!(
        std::fs::read_dir(w.dir.path().join("state"))
            .unwrap()
            .count(),
        0,
        "state forgotten at unpublish"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_driver_restarted_with_an_unmounted_volume_forgets_it() {
    let mut w = World::new().await;
    moto().create_secret("r5/s", "r5-value").await;
    w.kube.put_service_account("r5", "app", Some(READER_ROLE));
    w.class(
        "r5",
        "c",
        "- {objectName: r5/s, objectType: secretsmanager, objectAlias: s}",
    );
    let pod = PodSpec::new("r5", "p", "app");
    let target = w.dir.target(&pod.uid);
    w.publish(&target, "c", &pod).await.unwrap();
    w.driver.kill();
    // The node rebooted, say: the tmpfs is gone.
    nix::mount::umount2(&target, nix::mount::MntFlags::MNT_DETACH).unwrap();
    w.driver = Driver::start(w.dir.path(), &w.kube.kubeconfig, &[]).await;
    assert_eq!(
        std::fs::read_dir(w.dir.path().join("state"))
            .unwrap()
            .count(),
        0
    );
    // kubelet publishes it again: a fresh mount.
    w.publish(&target, "c", &pod).await.unwrap();
    assert_eq!(read(&target, "s"), "r5-value");
    assert_eq!(mounts_under(&target).len(), 1);
}
