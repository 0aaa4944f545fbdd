//! Hostile and faulty conditions, first part (issue 7 goes further): targets
//! outside kubelet's pod volumes, a driver without the mount privilege, a
//! full tmpfs, and no secret value or token in the log even at trace level.
//! Real driver, real moto, real tmpfs: needs root.

mod common;

use std::process::Command;

use common::*;
use tonic::Code;

#[tokio::test(flavor = "multi_thread")]
async fn targets_outside_kubelet_pod_volumes_are_refused_and_untouched() {
    let w = World::new().await;
    moto().create_secret("h1/s", "h1-value").await;
    w.kube.put_service_account("h1", "app", Some(READER_ROLE));
    w.class(
        "h1",
        "c",
        "- {objectName: h1/s, objectType: secretsmanager, objectAlias: s}",
    );
    let pod = PodSpec::new("h1", "p", "app");
    let victim = w.dir.path().join("precious");
    std::fs::create_dir(&victim).unwrap();
    std::fs::write(victim.join("data"), "keep me").unwrap();
    let mut node = w.driver.node().await;

    let err = w.publish(&victim, "c", &pod).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message()
            .contains("is not a pod volume directory of kubelet"),
        "{}",
        err.message()
    );
    let err = node
        .node_unpublish_volume(unpublish_request(&victim, &pod))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(
        std::fs::read_to_string(victim.join("data")).unwrap(),
        "keep me"
    );
    assert!(mounts_under(&victim).is_empty());

    // A symlink planted in a pod's volume path points outside: refused too.
    let volume = w
        .dir
        .path()
        .join("pods/uid-evil/volumes/kubernetes.io~csi/secrets");
    std::fs::create_dir_all(volume.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(&victim, &volume).unwrap();
    let target = volume.join("mount");
    let evil = PodSpec::new("h1", "evil", "app");
    let err = w.publish(&target, "c", &evil).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("symlink"), "{}", err.message());
    assert!(mounts_under(&victim).is_empty());
    assert_eq!(
        std::fs::read_dir(&victim).unwrap().count(),
        1,
        "nothing written through the link"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_target_that_is_a_symlink_is_never_followed() {
    let w = World::new().await;
    moto().create_secret("h9/s", "h9-value").await;
    w.kube.put_service_account("h9", "app", Some(READER_ROLE));
    w.class(
        "h9",
        "c",
        "- {objectName: h9/s, objectType: secretsmanager, objectAlias: s}",
    );
    let victim_pod = PodSpec::new("h9", "victim", "app");
    let victim = w.dir.target(&victim_pod.uid);
    w.publish(&victim, "c", &victim_pod).await.unwrap();
    // Another volume's target is a symlink to the victim's mounted volume.
    let evil_pod = PodSpec::new("h9", "evil", "app");
    let evil = w.dir.target(&evil_pod.uid);
    std::os::unix::fs::symlink(&victim, &evil).unwrap();
    let err = w.publish(&evil, "c", &evil_pod).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("symlink"), "{}", err.message());
    // Unpublishing it removes the link and never unmounts through it.
    w.driver
        .node()
        .await
        .node_unpublish_volume(unpublish_request(&evil, &evil_pod))
        .await
        .unwrap();
    assert!(
        std::fs::symlink_metadata(&evil).is_err(),
        "the link is gone"
    );
    assert!(mount_line(&victim).is_some(), "the victim is still mounted");
    assert_eq!(read(&victim, "s"), "h9-value");
}

#[test]
fn the_driver_refuses_to_start_without_the_mount_privilege() {
    require_root();
    let dir = TestDir::new();
    let out = Command::new("setpriv")
        .args(["--bounding-set=-sys_admin", "--inh-caps=-sys_admin", "--"])
        .arg(env!("CARGO_BIN_EXE_aws-secrets-csi"))
        .args(["serve", "--node-id", "n", "--endpoint"])
        .arg(format!("unix://{}", dir.path().join("csi.sock").display()))
        .output()
        .expect("setpriv (util-linux)");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("needs CAP_SYS_ADMIN"), "{stderr}");
    assert!(
        !dir.path().join("csi.sock").exists(),
        "it never started serving"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_tmpfs_fails_the_mount_cleanly_and_keeps_old_files_on_refresh() {
    let w = World::with(&[], &["--tmpfs-size", "64Ki"]).await;
    let moto = moto();
    let big = "x".repeat(40 * 1024);
    moto.create_secret("h2/a", &big).await;
    moto.create_secret("h2/b", &big).await;
    moto.create_secret("h2/small", "small-v1").await;
    w.kube.put_service_account("h2", "app", Some(READER_ROLE));
    w.class(
        "h2",
        "too-big",
        "- {objectName: h2/a, objectType: secretsmanager, objectAlias: a}\n- {objectName: h2/b, objectType: secretsmanager, objectAlias: b}",
    );
    let pod = PodSpec::new("h2", "p", "app");
    let target = w.dir.target(&pod.uid);
    let err = w.publish(&target, "too-big", &pod).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(
        mounts_under(&target).is_empty() && !target.exists(),
        "nothing left behind"
    );

    // Mounted small, then the secret grows past the cap: the refresh fails,
    // the old file stays, the republish still answers OK.
    w.kube.put_class(
        "h2",
        "grows",
        &[
            ("region", REGION),
            ("refreshInterval", "1s"),
            (
                "objects",
                "- {objectName: h2/small, objectType: secretsmanager, objectAlias: s}",
            ),
        ],
    );
    let pod = PodSpec::new("h2", "q", "app");
    let target = w.dir.target(&pod.uid);
    w.publish(&target, "grows", &pod).await.unwrap();
    moto.secrets_manager()
        .put_secret_value()
        .secret_id("h2/small")
        .secret_string("y".repeat(70 * 1024))
        .send()
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    w.publish(&target, "grows", &pod).await.unwrap();
    assert_eq!(read(&target, "s"), "small-v1");
    assert_eq!(
        data_dirs(&target).len(),
        1,
        "the half-written directory was removed"
    );
    // Refused while rendering: the value is larger than the volume.
    assert!(
        w.driver
            .metrics()
            .await
            .contains("rotation_reconcile_error_total{provider=\"aws\",error_type=\"VolumeTooLarge\",os_type=\"linux\",rotated=\"false\"} 1")
    );

    // Under the byte limit, yet more than the tmpfs holds (each file takes
    // a 4 KiB page): the write itself fails, cleanly.
    moto.create_secret("h2/page", &"p".repeat(3000)).await;
    let objects: String = (0..20)
        .map(|i| {
            format!("- {{objectName: h2/page, objectType: secretsmanager, objectAlias: p{i}}}\n")
        })
        .collect();
    w.class("h2", "pages", &objects);
    let paged = PodSpec::new("h2", "paged", "app");
    let target = w.dir.target(&paged.uid);
    let err = w.publish(&target, "pages", &paged).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("No space left"), "{}", err.message());
    assert!(
        mounts_under(&target).is_empty() && !target.exists(),
        "nothing left behind"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_secret_reaches_the_log_even_at_trace_level() {
    let w = World::with(&[("RUST_LOG", "trace")], &[]).await;
    let moto = moto();
    moto.create_secret(
        "h3/db",
        r#"{"user":"trace-user-4d1","password":"trace-pw-9c7"}"#,
    )
    .await;
    moto.put_parameter("/h3/param", "trace-param-2b8").await;
    w.kube.put_service_account("h3", "app", Some(READER_ROLE));
    w.kube.put_class(
        "h3",
        "c",
        &[
            ("region", REGION),
            ("refreshInterval", "1s"),
            (
                "objects",
                "- {objectName: h3/db, objectType: secretsmanager, jmesPath: [{path: password, objectAlias: pw}]}\n- {objectName: /h3/param, objectType: ssmparameter, objectAlias: p}",
            ),
        ],
    );
    w.class("h3", "bad-json", "- {objectName: h3/db, objectType: ssmparameter, objectAlias: x, jmesPath: [{path: a, objectAlias: y}]}");
    let pod = PodSpec::new("h3", "p", "app");
    let target = w.dir.target(&pod.uid);
    w.publish(&target, "c", &pod).await.unwrap();
    moto.secrets_manager()
        .put_secret_value()
        .secret_id("h3/db")
        .secret_string(r#"{"user":"trace-user-4d1","password":"trace-pw-rotated-5e3"}"#)
        .send()
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    w.publish(&target, "c", &pod).await.unwrap();
    assert_eq!(read(&target, "pw"), "trace-pw-rotated-5e3");
    // Failures too: a parameter that is not JSON for a jmesPath entry.
    moto.put_parameter("/h3/db", "trace-notjson-7f1").await;
    let other = PodSpec::new("h3", "q", "app");
    let err = w
        .publish(&w.dir.target(&other.uid), "bad-json", &other)
        .await
        .unwrap_err();
    assert!(!err.message().contains("trace-notjson"));
    let logs = w.driver.logs();
    assert!(logs.len() > 10_000, "trace logging was on");
    assert_no_leak(
        &w.driver,
        &[
            "trace-user-4d1",
            "trace-pw-9c7",
            "trace-pw-rotated-5e3",
            "trace-param-2b8",
            "trace-notjson-7f1",
            "eyJ-test-token-for-p",
            "eyJ-test-token-for-q",
            "eyJ-pi-token-for-p",
        ],
    );
    // The temporary credentials from STS never appear either.
    let sts = logs.matches("SecretAccessKey").count();
    assert_eq!(sts, 0, "no credential field in the log");
}

#[tokio::test(flavor = "multi_thread")]
async fn aws_slower_than_the_publish_deadline_fails_in_time_and_leaves_nothing() {
    use common::proxy::{AwsProxy, Fault};
    require_root();
    moto().create_secret("h4/slow", "slow-value").await;
    let proxy = AwsProxy::start(&moto().endpoint).await;
    proxy.fault_when(|r| {
        r.target
            .starts_with("secretsmanager.")
            .then_some(Fault::Delay(std::time::Duration::from_secs(30)))
    });
    let w = World::with(
        &[("AWS_ENDPOINT_URL", &proxy.endpoint)],
        &["--publish-timeout", "2s"],
    )
    .await;
    w.kube.put_service_account("h4", "app", Some(READER_ROLE));
    w.class(
        "h4",
        "c",
        "- {objectName: h4/slow, objectType: secretsmanager, objectAlias: s}",
    );
    let pod = PodSpec::new("h4", "p", "app");
    let target = w.dir.target(&pod.uid);
    let started = std::time::Instant::now();
    let err = w.publish(&target, "c", &pod).await.unwrap_err();
    let took = started.elapsed();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    assert!(
        took < std::time::Duration::from_secs(10),
        "answered after {took:?}"
    );
    assert!(mounts_under(&target).is_empty() && !target.exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn aws_5xx_and_throttling_give_retryable_codes() {
    use common::proxy::{AwsProxy, Fault};
    require_root();
    moto().create_secret("h5/s", "h5-value").await;
    let proxy = AwsProxy::start(&moto().endpoint).await;
    let w = World::with(&[("AWS_ENDPOINT_URL", &proxy.endpoint)], &[]).await;
    w.kube.put_service_account("h5", "app", Some(READER_ROLE));
    w.class(
        "h5",
        "c",
        "- {objectName: h5/s, objectType: secretsmanager, objectAlias: s}",
    );
    for (fault, code, name) in [
        (Fault::Unavailable, Code::Unavailable, "p1"),
        (Fault::Throttled, Code::ResourceExhausted, "p2"),
    ] {
        proxy.fault_when(move |r| r.target.starts_with("secretsmanager.").then_some(fault));
        let pod = PodSpec::new("h5", name, "app");
        let target = w.dir.target(&pod.uid);
        let err = w.publish(&target, "c", &pod).await.unwrap_err();
        assert_eq!(err.code(), code, "{fault:?}: {err:?}");
        assert!(err.message().contains("h5/s"), "{}", err.message());
        assert!(!target.exists());
    }
    // The SDK retried (3 attempts each) before giving up.
    let calls = proxy
        .requests()
        .iter()
        .filter(|r| r.target.starts_with("secretsmanager."))
        .count();
    assert!(calls >= 6, "{calls} calls");
    // AWS recovers: the next publish works.
    proxy.fault_when(|_| None);
    let pod = PodSpec::new("h5", "p3", "app");
    let target = w.dir.target(&pod.uid);
    w.publish(&target, "c", &pod).await.unwrap();
    assert_eq!(read(&target, "s"), "h5-value");
}
