//! Security round 3 (issue 28), the node driver's memory: what pods' volumes
//! and tenants' objects make the driver hold. Real driver, real moto, real
//! tmpfs: needs root.

mod common;

use std::path::PathBuf;

use common::*;
use tonic::Code;

/// 60,000 bytes take 15 pages of tmpfs: 61,440 bytes a value.
const VALUE_BYTES: usize = 60_000;
const VOLUME_BYTES: u64 = 5 * 15 * 4096;

fn budget_flags() -> [&'static str; 2] {
    ["--max-node-volume-bytes", "1Mi"]
}

/// The kernel charges every tmpfs page to the driver's memory cgroup: the
/// node's volumes are bounded below the driver's limit, a restarted driver
/// counts the volumes it already has, and an unpublish makes room.
#[tokio::test(flavor = "multi_thread")]
async fn volumes_past_the_node_budget_are_refused_and_counted_again_after_a_restart() {
    assert_eq!(
        rustix::param::page_size(),
        4096,
        "the figures assume 4 KiB pages"
    );
    let mut w = World::with(&[], &budget_flags()).await;
    let moto = moto();
    for i in 0..5 {
        moto.create_secret(&format!("m1/v{i}"), &"x".repeat(VALUE_BYTES))
            .await;
    }
    w.kube.put_service_account("m1", "app", Some(READER_ROLE));
    let objects: String = (0..5)
        .map(|i| {
            format!("- {{objectName: m1/v{i}, objectType: secretsmanager, objectAlias: v{i}}}\n")
        })
        .collect();
    w.kube.put_class(
        "m1",
        "c",
        &[
            ("region", REGION),
            ("refreshInterval", "1s"),
            ("objects", &objects),
        ],
    );
    let pods: Vec<PodSpec> = (0..5)
        .map(|i| PodSpec::new("m1", &format!("p{i}"), "app"))
        .collect();
    let targets: Vec<PathBuf> = pods.iter().map(|p| w.dir.target(&p.uid)).collect();
    let refused = |err: tonic::Status, volume: &str, held: u64| {
        assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
        let expected = format!(
            "volume {volume} needs {VOLUME_BYTES} bytes; the node's volumes hold {held} of the 1048576 bytes allowed (--max-node-volume-bytes)"
        );
        assert!(err.message().contains(&expected), "{}", err.message());
    };

    // Three volumes fit in 1 MiB; the fourth is refused and leaves nothing.
    for i in 0..3 {
        w.publish(&targets[i], "c", &pods[i]).await.unwrap();
    }
    let err = w.publish(&targets[3], "c", &pods[3]).await.unwrap_err();
    refused(err, "csi-uid-p3", 3 * VOLUME_BYTES);
    assert!(mounts_under(&targets[3]).is_empty() && !targets[3].exists());

    // A refresh needs room for the new set beside the old one: without it
    // the old files stay (and the republish still answers OK).
    moto.secrets_manager()
        .put_secret_value()
        .secret_id("m1/v0")
        .secret_string("y".repeat(VALUE_BYTES))
        .send()
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    w.publish(&targets[0], "c", &pods[0]).await.unwrap();
    assert!(
        read(&targets[0], "v0").starts_with('x'),
        "the old files stay"
    );
    assert_eq!(data_dirs(&targets[0]).len(), 1);
    assert_eq!(
        w.driver
            .metric("rotation_reconcile_error_total{provider=\"aws\",error_type=\"NodeVolumeBudgetExceeded\",os_type=\"linux\",rotated=\"false\"}")
            .await,
        1.0
    );

    // An unpublish makes room: the refresh and the fourth volume go in.
    let mut node = w.driver.node().await;
    node.node_unpublish_volume(unpublish_request(&targets[2], &pods[2]))
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    w.publish(&targets[0], "c", &pods[0]).await.unwrap();
    assert!(read(&targets[0], "v0").starts_with('y'), "refreshed");
    w.publish(&targets[3], "c", &pods[3]).await.unwrap();

    // A restarted driver counts the volumes it has (p0, p1, p3) from the
    // state records, and still serves them.
    w.driver.kill();
    w.driver = Driver::start_with(w.dir.path(), &w.kube.kubeconfig, &[], &budget_flags()).await;
    let err = w.publish(&targets[4], "c", &pods[4]).await.unwrap_err();
    refused(err, "csi-uid-p4", 3 * VOLUME_BYTES);
    assert!(mounts_under(&targets[4]).is_empty() && !targets[4].exists());
    w.publish(&targets[1], "c", &pods[1]).await.unwrap();
    assert!(read(&targets[1], "v1").starts_with('x'));
    let mut node = w.driver.node().await;
    node.node_unpublish_volume(unpublish_request(&targets[1], &pods[1]))
        .await
        .unwrap();
    w.publish(&targets[4], "c", &pods[4]).await.unwrap();
    assert_eq!(read(&targets[4], "v4").len(), VALUE_BYTES);
}
