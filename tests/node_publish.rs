//! NodePublishVolume / NodeUnpublishVolume end to end: the real driver binary
//! over its CSI socket, a real moto server, real tmpfs mounts. Needs root.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::*;
use tonic::Code;

async fn world() -> World {
    World::new().await
}

fn mode(target: &Path, name: &str) -> u32 {
    std::fs::metadata(target.join(name))
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

/// Nothing is left at a target after a failed publish: no mount, no directory.
fn assert_nothing_left(target: &Path) {
    assert!(
        mount_line(target).is_none(),
        "a mount was left at {}",
        target.display()
    );
    assert!(!target.exists(), "{} was left behind", target.display());
}

#[tokio::test(flavor = "multi_thread")]
async fn publish_writes_secrets_and_parameters_then_unpublish_removes_them() {
    let w = world().await;
    let moto = moto();
    moto.create_secret("t1/db", r#"{"username":"admin-t1","password":"pw-t1-Zq8"}"#)
        .await;
    let bin: Vec<u8> = (0..=255u8).rev().collect();
    moto.secrets_manager()
        .create_secret()
        .name("t1/bin")
        .secret_binary(aws_sdk_secretsmanager::primitives::Blob::new(bin.clone()))
        .send()
        .await
        .unwrap();
    moto.put_parameter("/t1/flags", "flags-v1").await;
    moto.put_parameter("/t1/flags", "flags-v2").await;
    moto.ssm()
        .label_parameter_version()
        .name("/t1/flags")
        .parameter_version(1)
        .labels("blue")
        .send()
        .await
        .unwrap();
    w.kube.put_service_account("shop", "web", Some(READER_ROLE));
    w.kube.put_class(
        "shop",
        "db-creds",
        &[
            ("region", REGION),
            (
                "objects",
                r#"
- objectName: t1/db
  objectType: secretsmanager
  jmesPath:
    - {path: username, objectAlias: db-user}
    - {path: password, objectAlias: db-pass, filePermission: "0400"}
- {objectName: t1/bin, objectType: secretsmanager, objectAlias: bin, filePermission: "0600"}
- {objectName: /t1/flags, objectType: ssmparameter}
- {objectName: /t1/flags, objectType: ssmparameter, objectAlias: flags-blue, objectVersionLabel: blue}
- {objectName: /t1/flags, objectType: ssmparameter, objectAlias: flags-v2, objectVersion: "2"}
"#,
            ),
        ],
    );
    let pod = PodSpec::new("shop", "web-1", "web");
    let target = w.dir.target(&pod.uid);
    let mut node = w.driver.node().await;
    node.node_publish_volume(publish_request(&target, "db-creds", &pod))
        .await
        .unwrap();

    assert_eq!(
        read(&target, "t1_db"),
        r#"{"username":"admin-t1","password":"pw-t1-Zq8"}"#
    );
    assert_eq!(read(&target, "db-user"), "admin-t1");
    assert_eq!(read(&target, "db-pass"), "pw-t1-Zq8");
    assert_eq!(std::fs::read(target.join("bin")).unwrap(), bin);
    assert_eq!(read(&target, "_t1_flags"), "flags-v2");
    assert_eq!(read(&target, "flags-blue"), "flags-v1");
    assert_eq!(read(&target, "flags-v2"), "flags-v2");
    assert_eq!(mode(&target, "db-user"), 0o644);
    assert_eq!(mode(&target, "db-pass"), 0o400);
    assert_eq!(mode(&target, "bin"), 0o600);
    // kubelet's atomic layout: every name is a symlink through ..data.
    assert_eq!(
        std::fs::read_link(target.join("db-user")).unwrap(),
        Path::new("..data/db-user")
    );
    assert!(
        std::fs::symlink_metadata(target.join("..data"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    // A real tmpfs with the safe options and a size cap.
    let line = mount_line(&target).expect("target is a mount point");
    let (opts, rest) = line.split_once(" - ").unwrap();
    assert!(rest.starts_with("tmpfs "), "{line}");
    for o in ["nosuid", "nodev", "noexec"] {
        assert!(opts.contains(o), "{o} missing: {line}");
    }
    assert!(rest.contains("size=16384k"), "{line}");

    node.node_unpublish_volume(unpublish_request(&target, &pod))
        .await
        .unwrap();
    assert_nothing_left(&target);
    assert_no_leak(
        &w.driver,
        &[
            "admin-t1",
            "pw-t1-Zq8",
            "flags-v1",
            "eyJ-test-token-for-web-1",
        ],
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn more_than_twenty_secrets_and_ten_parameters_in_one_class() {
    let w = world().await;
    let moto = moto();
    let mut objects = String::new();
    for i in 0..25 {
        moto.create_secret(&format!("t2/s{i}"), &format!("secret-value-{i}"))
            .await;
        objects.push_str(&format!(
            "- {{objectName: t2/s{i}, objectType: secretsmanager, objectAlias: s{i}}}\n"
        ));
    }
    for i in 0..13 {
        moto.put_parameter(&format!("/t2/p{i}"), &format!("param-value-{i}"))
            .await;
        objects.push_str(&format!(
            "- {{objectName: /t2/p{i}, objectType: ssmparameter, objectAlias: p{i}}}\n"
        ));
    }
    w.kube.put_service_account("t2", "app", Some(READER_ROLE));
    w.kube
        .put_class("t2", "many", &[("region", REGION), ("objects", &objects)]);
    let pod = PodSpec::new("t2", "many-1", "app");
    let target = w.dir.target(&pod.uid);
    let mut node = w.driver.node().await;
    node.node_publish_volume(publish_request(&target, "many", &pod))
        .await
        .unwrap();
    for i in 0..25 {
        assert_eq!(read(&target, &format!("s{i}")), format!("secret-value-{i}"));
    }
    for i in 0..13 {
        assert_eq!(read(&target, &format!("p{i}")), format!("param-value-{i}"));
    }
    node.node_unpublish_volume(unpublish_request(&target, &pod))
        .await
        .unwrap();
    assert_nothing_left(&target);
}

#[tokio::test(flavor = "multi_thread")]
async fn objects_named_by_full_arn() {
    let w = world().await;
    let moto = moto();
    let arn = moto.create_secret("t3/by-arn", "arn-value").await;
    moto.put_parameter("/t3/param", "param-by-arn").await;
    let param_arn = format!("arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/t3/param");
    w.kube.put_service_account("t3", "app", Some(READER_ROLE));
    let objects = format!(
        "- {{objectName: \"{arn}\", objectAlias: secret}}\n- {{objectName: \"{param_arn}\", objectAlias: param}}\n"
    );
    w.kube
        .put_class("t3", "arns", &[("region", REGION), ("objects", &objects)]);
    let pod = PodSpec::new("t3", "arn-1", "app");
    let target = w.dir.target(&pod.uid);
    let mut node = w.driver.node().await;
    node.node_publish_volume(publish_request(&target, "arns", &pod))
        .await
        .unwrap();
    assert_eq!(read(&target, "secret"), "arn-value");
    assert_eq!(read(&target, "param"), "param-by-arn");
    node.node_unpublish_volume(unpublish_request(&target, &pod))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_secret_fails_with_not_found_and_leaves_nothing() {
    let w = world().await;
    moto().create_secret("t4/present", "present-value").await;
    w.kube.put_service_account("t4", "app", Some(READER_ROLE));
    w.class("t4", "c", "- {objectName: t4/present, objectType: secretsmanager}\n- {objectName: t4/absent, objectType: secretsmanager}");
    let pod = PodSpec::new("t4", "p", "app");
    let target = w.dir.target(&pod.uid);
    let err = w.publish(&target, "c", &pod).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert!(err.message().contains("t4/absent"), "{}", err.message());
    assert!(
        err.message().contains("ResourceNotFoundException"),
        "{}",
        err.message()
    );
    assert!(
        err.message().contains("SecretProviderClass t4/c"),
        "{}",
        err.message()
    );
    assert!(!err.message().contains("present-value"));
    assert_nothing_left(&target);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_parameter_fails_with_not_found() {
    let w = world().await;
    w.kube.put_service_account("t5", "app", Some(READER_ROLE));
    w.class(
        "t5",
        "c",
        "- {objectName: /t5/absent, objectType: ssmparameter}",
    );
    let pod = PodSpec::new("t5", "p", "app");
    let target = w.dir.target(&pod.uid);
    let err = w.publish(&target, "c", &pod).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert!(err.message().contains("/t5/absent"), "{}", err.message());
    assert_nothing_left(&target);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_role_without_permission_is_denied_and_leaves_nothing() {
    let w = world().await;
    moto().create_secret("t6/locked", "locked-value").await;
    w.kube.put_service_account("t6", "app", Some(NOBODY_ROLE));
    w.class(
        "t6",
        "c",
        "- {objectName: t6/locked, objectType: secretsmanager}",
    );
    let pod = PodSpec::new("t6", "p", "app");
    let target = w.dir.target(&pod.uid);
    let err = w.publish(&target, "c", &pod).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("t6/locked"), "{}", err.message());
    assert!(err.message().contains("AccessDenied"), "{}", err.message());
    assert_nothing_left(&target);
    assert_no_leak(&w.driver, &["locked-value", "eyJ-test-token-for-p"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_class_is_invalid_argument_with_the_aws_provider_text() {
    let w = world().await;
    w.kube.put_service_account("t7", "app", Some(READER_ROLE));
    w.class("t7", "dup", "- {objectName: a, objectType: secretsmanager, objectAlias: x}\n- {objectName: b, objectType: secretsmanager, objectAlias: x}");
    w.kube.put_class(
        "t7",
        "escape",
        &[("region", REGION), ("pathTranslation", "False"), ("objects", "- {objectName: a, objectType: secretsmanager, jmesPath: [{path: p, objectAlias: ../../etc/x}]}")],
    );
    let pod = PodSpec::new("t7", "p", "app");
    let target = w.dir.target(&pod.uid);
    let mut node = w.driver.node().await;
    let err = node
        .node_publish_volume(publish_request(&target, "dup", &pod))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(
        err.message(),
        "SecretProviderClass t7/dup: found duplicate object alias x"
    );
    let err = node
        .node_publish_volume(publish_request(&target, "escape", &pod))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("path can not contain ../"),
        "{}",
        err.message()
    );
    assert_nothing_left(&target);
    assert!(!w.dir.path().join("etc").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_class_is_not_found() {
    let w = world().await;
    w.kube.put_service_account("t8", "app", Some(READER_ROLE));
    let pod = PodSpec::new("t8", "p", "app");
    let target = w.dir.target(&pod.uid);
    let err = w.publish(&target, "nope", &pod).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(err.message(), "SecretProviderClass t8/nope not found");
    assert_nothing_left(&target);
}

#[tokio::test(flavor = "multi_thread")]
async fn identity_problems_have_clear_errors() {
    let w = world().await;
    w.class("t9", "c", "- {objectName: x, objectType: secretsmanager}");
    w.kube.put_service_account("t9", "plain", None);
    w.kube
        .put_service_account("t9", "badarn", Some("not-an-arn"));
    w.kube.put_service_account("t9", "app", Some(READER_ROLE));
    let mut node = w.driver.node().await;

    let pod = PodSpec::new("t9", "p1", "plain");
    let target = w.dir.target(&pod.uid);
    let err = node
        .node_publish_volume(publish_request(&target, "c", &pod))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(
        err.message(),
        "An IAM role must be associated with service account plain (namespace: t9)"
    );
    assert_nothing_left(&target);

    let pod = PodSpec::new("t9", "p2", "badarn");
    let target = w.dir.target(&pod.uid);
    let err = node
        .node_publish_volume(publish_request(&target, "c", &pod))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("invalid role ARN \"not-an-arn\""),
        "{}",
        err.message()
    );

    let mut pod = PodSpec::new("t9", "p3", "app");
    pod.token = None;
    let target = w.dir.target(&pod.uid);
    let err = node
        .node_publish_volume(publish_request(&target, "c", &pod))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(
        err.message().contains("sts.amazonaws.com"),
        "{}",
        err.message()
    );
    assert_nothing_left(&target);

    let pod = PodSpec::new("t9", "p4", "missing-sa");
    let target = w.dir.target(&pod.uid);
    let err = node
        .node_publish_volume(publish_request(&target, "c", &pod))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(err.message(), "ServiceAccount t9/missing-sa not found");
}

#[tokio::test(flavor = "multi_thread")]
async fn republish_of_a_mounted_target_does_not_mount_again() {
    let w = world().await;
    moto().create_secret("t10/s", "republish-value").await;
    w.kube.put_service_account("t10", "app", Some(READER_ROLE));
    w.class(
        "t10",
        "c",
        "- {objectName: t10/s, objectType: secretsmanager, objectAlias: s}",
    );
    let pod = PodSpec::new("t10", "p", "app");
    let target = w.dir.target(&pod.uid);
    let mut node = w.driver.node().await;
    for _ in 0..3 {
        node.node_publish_volume(publish_request(&target, "c", &pod))
            .await
            .unwrap();
    }
    assert_eq!(
        mounts_under(&target).len(),
        1,
        "exactly one mount at the target"
    );
    assert_eq!(read(&target, "s"), "republish-value");
    node.node_unpublish_volume(unpublish_request(&target, &pod))
        .await
        .unwrap();
    assert_nothing_left(&target);
    // Unpublish is idempotent.
    node.node_unpublish_volume(unpublish_request(&target, &pod))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_are_read_from_secrets_first() {
    let w = world().await;
    moto().create_secret("t11/s", "from-secrets-value").await;
    w.kube.put_service_account("t11", "app", Some(READER_ROLE));
    w.class(
        "t11",
        "c",
        "- {objectName: t11/s, objectType: secretsmanager, objectAlias: s}",
    );
    let mut pod = PodSpec::new("t11", "p", "app");
    pod.token = None;
    let target = w.dir.target(&pod.uid);
    let mut req = publish_request(&target, "c", &pod);
    req.secrets.insert(
        "csi.storage.k8s.io/serviceAccount.tokens".into(),
        r#"{"sts.amazonaws.com":{"token":"eyJ-test-token-for-p.t11.app.uid-p","expirationTimestamp":"2026-11-28T13:00:00Z"}}"#.into(),
    );
    let mut node = w.driver.node().await;
    node.node_publish_volume(req).await.unwrap();
    assert_eq!(read(&target, "s"), "from-secrets-value");
    node.node_unpublish_volume(unpublish_request(&target, &pod))
        .await
        .unwrap();
    assert_no_leak(
        &w.driver,
        &["eyJ-test-token-for-p.t11.app.uid-p", "from-secrets-value"],
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_requests_are_refused_before_anything_happens() {
    let w = world().await;
    let pod = PodSpec::new("t12", "p", "app");
    let target = w.dir.target(&pod.uid);
    let mut node = w.driver.node().await;
    let mut req = publish_request(&target, "c", &pod);
    req.readonly = false;
    let err = node.node_publish_volume(req).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("readOnly"));
    let mut req = publish_request(&target, "c", &pod);
    req.volume_context.remove("secretProviderClass");
    let err = node.node_publish_volume(req).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("secretProviderClass"));
    assert_nothing_left(&target);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_4xx_in_the_primary_region_does_not_ask_the_failover_region() {
    let w = world().await;
    let moto = moto();
    // The secret exists only in the failover region: asking it would succeed.
    moto.create_secret_in("us-west-2", "t13/only-west", "west-value")
        .await;
    moto.create_secret("t13/both", "east-both").await;
    moto.create_secret_in("us-west-2", "t13/both", "west-both")
        .await;
    w.kube.put_service_account("t13", "app", Some(READER_ROLE));
    w.kube.put_class(
        "t13",
        "missing-east",
        &[
            ("region", REGION),
            ("failoverRegion", "us-west-2"),
            (
                "objects",
                "- {objectName: t13/only-west, objectType: secretsmanager}",
            ),
        ],
    );
    w.kube.put_class(
        "t13",
        "both",
        &[
            ("region", REGION),
            ("failoverRegion", "us-west-2"),
            (
                "objects",
                "- {objectName: t13/both, objectType: secretsmanager, objectAlias: s}",
            ),
        ],
    );
    let pod = PodSpec::new("t13", "p", "app");
    let target = w.dir.target(&pod.uid);
    let mut node = w.driver.node().await;
    let err = node
        .node_publish_volume(publish_request(&target, "missing-east", &pod))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert!(
        err.message()
            .contains("t13/only-west in us-east-1: ResourceNotFoundException"),
        "{}",
        err.message()
    );
    assert_nothing_left(&target);
    // When the primary answers, its value is used.
    node.node_publish_volume(publish_request(&target, "both", &pod))
        .await
        .unwrap();
    assert_eq!(read(&target, "s"), "east-both");
    node.node_unpublish_volume(unpublish_request(&target, &pod))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_class_with_a_typo_is_warned_about_once_and_named_in_its_error() {
    let w = world().await;
    moto().create_secret("t14/s", "typo-value").await;
    w.kube.put_service_account("t14", "app", Some(READER_ROLE));
    // `objetAlias` is ignored (as upstream), so the file takes the name.
    w.class(
        "t14",
        "c",
        "- {objectName: t14/s, objectType: secretsmanager, objetAlias: s}",
    );
    for name in ["p1", "p2"] {
        let pod = PodSpec::new("t14", name, "app");
        w.publish(&w.dir.target(&pod.uid), "c", &pod).await.unwrap();
    }
    assert_eq!(
        w.kube.gets("/api/v1/namespaces/t14/events"),
        1,
        "one warning event for the class, not one per publish"
    );
    let logs = w.driver.logs();
    assert_eq!(
        logs.matches("unknown key `objetAlias`, ignored; did you mean `objectAlias`?")
            .count(),
        1,
        "{logs}"
    );
    // A typo that breaks the class: the error says it too.
    w.class(
        "t14",
        "broken",
        "- {objectName: t14/s, objectTyp: secretsmanager}",
    );
    let pod = PodSpec::new("t14", "p3", "app");
    let err = w
        .publish(&w.dir.target(&pod.uid), "broken", &pod)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(
        err.message(),
        "SecretProviderClass t14/broken: Must use objectType when a full ARN is not specified: t14/s (also: objects[0] (t14/s): unknown key `objectTyp`, ignored; did you mean `objectType`?)"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_class_without_objects_mounts_an_empty_volume_and_pod_attributes_are_refused() {
    let w = world().await;
    w.kube.put_service_account("t30", "app", Some(READER_ROLE));
    w.kube.put_class("t30", "empty", &[("region", REGION)]);
    let pod = PodSpec::new("t30", "p", "app");
    let target = w.dir.target(&pod.uid);
    let mut node = w.driver.node().await;
    // As the AWS provider does: an empty volume, and a warning event.
    node.node_publish_volume(publish_request(&target, "empty", &pod))
        .await
        .unwrap();
    assert!(mount_line(&target).is_some(), "a tmpfs is mounted");
    let visible: Vec<_> = std::fs::read_dir(&target)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| !n.starts_with(".."))
        .collect();
    assert!(visible.is_empty(), "{visible:?}");
    node.node_unpublish_volume(unpublish_request(&target, &pod))
        .await
        .unwrap();

    // A pod author's attribute would override the class upstream: refused,
    // by name, before anything is mounted.
    let mut req = publish_request(&target, "empty", &pod);
    req.volume_context
        .insert("objects".into(), "- {objectName: x}".into());
    let err = node.node_publish_volume(req).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(
        err.message()
            .starts_with("volume attribute \"objects\" is not supported: set it in the SecretProviderClass's parameters"),
        "{}",
        err.message()
    );
    assert!(!target.exists() || mount_line(&target).is_none());
}
