//! Hostile input and crashes, second part: a target pre-filled by someone
//! else, a volume id reused at another target, SIGKILL during a first
//! publish and during an unpublish followed by kubelet's retry, and unusual
//! sizes through the whole driver (64 KiB of non-UTF-8 bytes, 255-byte
//! names, a thousand objects). Real driver, real moto, real tmpfs: needs
//! root.

mod common;

use std::time::Duration;

use common::proxy::{AwsProxy, Fault};
use common::*;
use tonic::Code;

#[tokio::test(flavor = "multi_thread")]
async fn a_target_prefilled_by_someone_else_is_refused_and_kept() {
    let w = World::new().await;
    moto().create_secret("x1/s", "x1-value").await;
    w.kube.put_service_account("x1", "app", Some(READER_ROLE));
    w.class(
        "x1",
        "c",
        "- {objectName: x1/s, objectType: secretsmanager, objectAlias: s}",
    );
    let pod = PodSpec::new("x1", "p", "app");
    let target = w.dir.target(&pod.uid);
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("theirs"), "not the driver's").unwrap();
    std::os::unix::fs::symlink("/etc", target.join("..data")).unwrap();

    let err = w.publish(&target, "c", &pod).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("not empty"), "{}", err.message());
    assert!(mount_line(&target).is_none(), "nothing mounted over it");
    assert_eq!(
        std::fs::read_to_string(target.join("theirs")).unwrap(),
        "not the driver's"
    );
    // kubelet's unpublish of it removes nothing that is not the driver's.
    w.driver
        .node()
        .await
        .node_unpublish_volume(unpublish_request(&target, &pod))
        .await
        .unwrap();
    assert!(target.join("theirs").exists());
    assert_eq!(
        std::fs::read_link(target.join("..data")).unwrap(),
        std::path::Path::new("/etc")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_volume_id_is_published_at_one_target_only() {
    let w = World::new().await;
    moto().create_secret("x2/s", "x2-value").await;
    w.kube.put_service_account("x2", "app", Some(READER_ROLE));
    w.class(
        "x2",
        "c",
        "- {objectName: x2/s, objectType: secretsmanager, objectAlias: s}",
    );
    let first = PodSpec::new("x2", "first", "app");
    let first_target = w.dir.target(&first.uid);
    w.publish(&first_target, "c", &first).await.unwrap();

    // The same volume id at another pod's target.
    let second = PodSpec::new("x2", "second", "app");
    let second_target = w.dir.target(&second.uid);
    let mut request = publish_request(&second_target, "c", &second);
    request.volume_id = format!("csi-{}", first.uid);
    let err = w
        .driver
        .node()
        .await
        .node_publish_volume(request.clone())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
    assert!(
        err.message()
            .contains(&format!("already published at {}", first_target.display())),
        "{}",
        err.message()
    );
    assert!(
        !second_target.exists(),
        "nothing created at the second target"
    );
    assert_eq!(read(&first_target, "s"), "x2-value");

    // Once the first is unpublished, the id is free again.
    w.driver
        .node()
        .await
        .node_unpublish_volume(unpublish_request(&first_target, &first))
        .await
        .unwrap();
    w.driver
        .node()
        .await
        .node_publish_volume(request)
        .await
        .unwrap();
    assert_eq!(read(&second_target, "s"), "x2-value");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_during_a_first_publish_then_kubelet_retries() {
    require_root();
    moto().create_secret("x3/s", "x3-value").await;
    let proxy = AwsProxy::start(&moto().endpoint).await;
    proxy.fault_when(|r| {
        r.target
            .starts_with("secretsmanager.")
            .then_some(Fault::Delay(Duration::from_secs(20)))
    });
    let mut w = World::with(&[("AWS_ENDPOINT_URL", &proxy.endpoint)], &[]).await;
    w.kube.put_service_account("x3", "app", Some(READER_ROLE));
    w.class(
        "x3",
        "c",
        "- {objectName: x3/s, objectType: secretsmanager, objectAlias: s}",
    );
    let pod = PodSpec::new("x3", "p", "app");
    let target = w.dir.target(&pod.uid);
    let request = publish_request(&target, "c", &pod);
    let mut node = w.driver.node().await;
    let pending = tokio::spawn({
        let request = request.clone();
        async move { node.node_publish_volume(request).await }
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    w.driver.kill();
    let err = pending.await.unwrap().unwrap_err();
    assert!(
        matches!(
            err.code(),
            Code::Unavailable | Code::Unknown | Code::Internal
        ),
        "kubelet sees a transport error: {err:?}"
    );
    assert!(
        mount_line(&target).is_none() && !target.exists(),
        "nothing half-done"
    );

    // The restarted driver (AWS fast again) serves kubelet's retry.
    proxy.fault_when(|_| None);
    w.driver = Driver::start(
        w.dir.path(),
        &w.kube.kubeconfig,
        &[("AWS_ENDPOINT_URL", &proxy.endpoint)],
    )
    .await;
    w.driver
        .node()
        .await
        .node_publish_volume(request)
        .await
        .unwrap();
    assert_eq!(read(&target, "s"), "x3-value");
    assert_eq!(mounts_under(&target).len(), 1, "one mount");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_during_unpublish_then_kubelet_retries() {
    let mut w = World::new().await;
    moto().create_secret("x4/s", "x4-value").await;
    w.kube.put_service_account("x4", "app", Some(READER_ROLE));
    w.class(
        "x4",
        "c",
        "- {objectName: x4/s, objectType: secretsmanager, objectAlias: s}",
    );
    // Several volumes, so that the kill lands at different points of their
    // unpublishes: before, during or after.
    let pods: Vec<PodSpec> = (0..6)
        .map(|i| PodSpec::new("x4", &format!("p{i}"), "app"))
        .collect();
    for pod in &pods {
        w.publish(&w.dir.target(&pod.uid), "c", pod).await.unwrap();
    }
    let mut sent = Vec::new();
    for pod in &pods {
        let mut node = w.driver.node().await;
        let request = unpublish_request(&w.dir.target(&pod.uid), pod);
        sent.push(tokio::spawn(async move {
            node.node_unpublish_volume(request).await
        }));
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
    w.driver.kill();
    for s in sent {
        let _ = s.await.unwrap();
    }
    w.driver = Driver::start(w.dir.path(), &w.kube.kubeconfig, &[]).await;
    for pod in &pods {
        let target = w.dir.target(&pod.uid);
        w.driver
            .node()
            .await
            .node_unpublish_volume(unpublish_request(&target, pod))
            .await
            .unwrap();
        assert!(mount_line(&target).is_none(), "{}", target.display());
        assert!(!target.exists(), "{}", target.display());
    }
    assert!(mounts_under(w.dir.path()).is_empty());
    let state: Vec<_> = std::fs::read_dir(w.dir.path().join("state"))
        .unwrap()
        .collect();
    assert!(state.is_empty(), "no volume state left: {state:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn binary_values_long_names_and_a_thousand_objects() {
    let w = World::with(&[], &["--aws-rate-limit", "GetParameters=1000"]).await;
    let moto = moto();
    // 64 KiB of bytes that are not UTF-8, as SecretBinary.
    let binary: Vec<u8> = (0..65536u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8 | 0x80)
        .collect();
    assert!(std::str::from_utf8(&binary).is_err());
    moto.secrets_manager()
        .create_secret()
        .name("x5/binary")
        .secret_binary(aws_sdk_secretsmanager::primitives::Blob::new(
            binary.clone(),
        ))
        .send()
        .await
        .unwrap();
    let long = "n".repeat(255);
    let mut objects =
        format!("- {{objectName: x5/binary, objectType: secretsmanager, objectAlias: {long}}}\n");
    const PARAMETERS: usize = 1000;
    let names: Vec<String> = (0..PARAMETERS).map(|i| format!("/x5/p{i}")).collect();
    for chunk in names.chunks(50) {
        futures::future::join_all(chunk.iter().map(|n| moto.put_parameter(n, n))).await;
    }
    for (i, n) in names.iter().enumerate() {
        objects += &format!("- {{objectName: {n}, objectType: ssmparameter, objectAlias: p{i}}}\n");
    }
    w.kube.put_service_account("x5", "app", Some(READER_ROLE));
    w.class("x5", "c", &objects);
    let pod = PodSpec::new("x5", "p", "app");
    let target = w.dir.target(&pod.uid);
    w.publish(&target, "c", &pod).await.unwrap();
    assert_eq!(std::fs::read(target.join(&long)).unwrap(), binary);
    for i in [0, 499, 999] {
        assert_eq!(read(&target, &format!("p{i}")), format!("/x5/p{i}"));
    }
    assert_eq!(
        w.driver.aws_calls("GetParameters").await,
        (PARAMETERS / 10) as u64
    );

    // One byte more than a file name may hold: refused, nothing mounted.
    let too_long = "n".repeat(256);
    w.class(
        "x5",
        "long",
        &format!(
            "- {{objectName: x5/binary, objectType: secretsmanager, objectAlias: {too_long}}}"
        ),
    );
    let other = PodSpec::new("x5", "q", "app");
    let other_target = w.dir.target(&other.uid);
    let err = w.publish(&other_target, "long", &other).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("255"), "{}", err.message());
    assert!(!other_target.exists());
}
