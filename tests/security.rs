//! Security round 2 (issue 11): what a hostile class or pod author tries
//! against the node's driver, through `serve`, with a real moto and real
//! tmpfs mounts (needs root). Each test failed on the driver before the fix
//! it proves.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use tonic::Code;

/// A class that fans one ~60 KB value out to `n` jmesPath files.
fn fan_out(secret: &str, n: usize) -> String {
    let mut yaml = format!(
        "- objectName: {secret}\n  objectType: secretsmanager\n  objectAlias: whole\n  jmesPath:\n"
    );
    for i in 0..n {
        yaml.push_str(&format!("    - {{path: v, objectAlias: f{i}}}\n"));
    }
    yaml
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fanned_out_class_is_refused_within_the_volume_and_memory_stays_flat() {
    let w = World::new().await;
    let moto = moto();
    // Under the Secrets Manager limit of 64 KB.
    moto.create_secret("s1/big", &format!("{{\"v\":\"{}\"}}", "x".repeat(60_000)))
        .await;
    w.kube.put_service_account("s1", "app", Some(READER_ROLE));
    let before = peak_rss_kib(w.driver.pid());

    // 4,000 files: refused while planning, before any fetch.
    w.class("s1", "wide", &fan_out("s1/big", 4000));
    let pod = PodSpec::new("s1", "wide", "app");
    let target = w.dir.target(&pod.uid);
    let err = w.publish(&target, "wide", &pod).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains("SecretProviderClass s1/wide")
            && err
                .message()
                .contains("asks for 4001 files; a volume holds at most 2048"),
        "{}",
        err.message()
    );
    assert!(!target.exists());

    // 2,000 files of 60 KB each (120 MB): refused while rendering, at the
    // volume's 16 MiB.
    w.class("s1", "deep", &fan_out("s1/big", 2000));
    let pod = PodSpec::new("s1", "deep", "app");
    let target = w.dir.target(&pod.uid);
    let err = w.publish(&target, "deep", &pod).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(
        err.message().contains("SecretProviderClass s1/deep")
            && err.message().contains("more than 16777216 bytes"),
        "{}",
        err.message()
    );
    assert!(mounts_under(&target).is_empty() && !target.exists());

    // The same through 2,000 objects naming one secret under other aliases.
    let objects: String = (0..2000)
        .map(|i| {
            format!("- {{objectName: s1/big, objectType: secretsmanager, objectAlias: a{i}}}\n")
        })
        .collect();
    w.class("s1", "many", &objects);
    let pod = PodSpec::new("s1", "many", "app");
    let target = w.dir.target(&pod.uid);
    let err = w.publish(&target, "many", &pod).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");

    // kubelet retries: the driver is still there, and its memory did not
    // follow the fan-out (it went from 13 to 487 MiB before the limits).
    for _ in 0..3 {
        let _ = w.publish(&target, "many", &pod).await;
    }
    let after = peak_rss_kib(w.driver.pid());
    println!("driver peak RSS: {before} KiB before the attack, {after} KiB after");
    assert!(
        after < before + 96 * 1024,
        "peak RSS grew from {before} KiB to {after} KiB"
    );
    // And it still serves a sound class.
    moto.create_secret("s1/ok", "fine").await;
    w.class(
        "s1",
        "ok",
        "- {objectName: s1/ok, objectType: secretsmanager, objectAlias: ok}",
    );
    let pod = PodSpec::new("s1", "ok", "app");
    let target = w.dir.target(&pod.uid);
    w.publish(&target, "ok", &pod).await.unwrap();
    assert_eq!(read(&target, "ok"), "fine");
}

/// Mounts a tmpfs that is not the driver's (as another driver would) at
/// `target`, with one file in it.
fn foreign_tmpfs(target: &Path) {
    std::fs::create_dir_all(target).unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        target,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("size=1m"),
    )
    .unwrap();
    std::fs::write(target.join("theirs"), "keep me").unwrap();
}

/// A world where namespace `ns` has a reader account `app`, a secret
/// `<ns>/s` holding `<ns>-value`, and a class `c` mounting it as `s`.
async fn one_secret_world(ns: &str) -> World {
    let w = World::new().await;
    moto()
        .create_secret(&format!("{ns}/s"), &format!("{ns}-value"))
        .await;
    w.kube.put_service_account(ns, "app", Some(READER_ROLE));
    w.class(
        ns,
        "c",
        &format!("- {{objectName: {ns}/s, objectType: secretsmanager, objectAlias: s}}"),
    );
    w
}

/// The driver's answer to a publish onto a mount it did not make.
fn refused_as_not_ours(err: tonic::Status) {
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message()
            .contains("file system this driver did not mount"),
        "{}",
        err.message()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mount_that_is_not_ours_is_neither_written_nor_unmounted() {
    let w = one_secret_world("s2").await;
    let mut node = w.driver.node().await;

    // Another file system mounted at a valid target (a tmpfs of another
    // driver), then a bind mount of a directory.
    let pod = PodSpec::new("s2", "p", "app");
    let target = w.dir.target(&pod.uid);
    foreign_tmpfs(&target);
    let bound = w.dir.path().join("bound");
    std::fs::create_dir(&bound).unwrap();
    std::fs::write(bound.join("theirs"), "keep me").unwrap();
    let pod2 = PodSpec::new("s2", "q", "app");
    let target2 = w.dir.target(&pod2.uid);
    std::fs::create_dir(&target2).unwrap();
    nix::mount::mount(
        Some(&bound),
        &target2,
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .unwrap();

    for (target, pod) in [(&target, &pod), (&target2, &pod2)] {
        refused_as_not_ours(w.publish(target, "c", pod).await.unwrap_err());
        let err = node
            .node_unpublish_volume(unpublish_request(target, pod))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
        assert!(mount_line(target).is_some(), "still mounted");
        let names: Vec<_> = std::fs::read_dir(target)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["theirs"], "nothing written, nothing removed");
        assert_eq!(read(target, "theirs"), "keep me");
    }
    let _ = nix::mount::umount2(&target, nix::mount::MntFlags::MNT_DETACH);
    let _ = nix::mount::umount2(&target2, nix::mount::MntFlags::MNT_DETACH);

    // The driver's own mounts carry its name, type and options.
    let pod3 = PodSpec::new("s2", "r", "app");
    let target3 = w.dir.target(&pod3.uid);
    w.publish(&target3, "c", &pod3).await.unwrap();
    let line = mount_line(&target3).unwrap();
    assert!(line.contains(" - tmpfs aws-secrets-csi "), "{line}");
    assert!(
        line.contains("nosuid") && line.contains("nodev") && line.contains("noexec"),
        "{line}"
    );
}

/// The driver reads mountinfo once per mount and then knows its own mounts
/// by their unique mount id: a mount remounted without noexec, or replaced
/// by another file system after the publish, must still be refused.
#[tokio::test(flavor = "multi_thread")]
async fn a_mount_changed_after_the_publish_is_not_ours_any_more() {
    let w = one_secret_world("s2b").await;

    // Published, then republished twice: the first republish reads
    // mountinfo, the second is decided from what the driver remembers.
    let pod = PodSpec::new("s2b", "p", "app");
    let target = w.dir.target(&pod.uid);
    for _ in 0..3 {
        w.publish(&target, "c", &pod).await.unwrap();
    }
    assert_eq!(read(&target, "s"), "s2b-value");

    // Remounted by someone else with exec allowed.
    use nix::mount::MsFlags;
    nix::mount::mount(
        None::<&str>,
        &target,
        None::<&str>,
        MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        None::<&str>,
    )
    .unwrap();
    assert!(!mount_line(&target).unwrap().contains("noexec"));
    refused_as_not_ours(w.publish(&target, "c", &pod).await.unwrap_err());

    // Replaced: the driver's tmpfs detached, another one mounted there.
    let pod2 = PodSpec::new("s2b", "q", "app");
    let target2 = w.dir.target(&pod2.uid);
    w.publish(&target2, "c", &pod2).await.unwrap();
    w.publish(&target2, "c", &pod2).await.unwrap();
    nix::mount::umount2(&target2, nix::mount::MntFlags::MNT_DETACH).unwrap();
    foreign_tmpfs(&target2);
    refused_as_not_ours(w.publish(&target2, "c", &pod2).await.unwrap_err());
    let names: Vec<_> = std::fs::read_dir(&target2)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["theirs"], "nothing written into their mount");
    let _ = nix::mount::umount2(&target, nix::mount::MntFlags::MNT_DETACH);
    let _ = nix::mount::umount2(&target2, nix::mount::MntFlags::MNT_DETACH);
}

#[tokio::test(flavor = "multi_thread")]
async fn volume_target_and_pod_must_agree() {
    let w = World::new().await;
    let moto = moto();
    moto.create_secret("s3a/s", "a-value").await;
    moto.create_secret("s3b/s", "b-value").await;
    w.kube.put_service_account("s3a", "app", Some(READER_ROLE));
    w.kube.put_service_account("s3b", "app", Some(READER_ROLE));
    w.class(
        "s3a",
        "c",
        "- {objectName: s3a/s, objectType: secretsmanager, objectAlias: s}",
    );
    w.class(
        "s3b",
        "c",
        "- {objectName: s3b/s, objectType: secretsmanager, objectAlias: s}",
    );
    let victim = PodSpec::new("s3a", "victim", "app");
    let target = w.dir.target(&victim.uid);
    w.publish(&target, "c", &victim).await.unwrap();
    let mut node = w.driver.node().await;

    // Another namespace's pod names the victim's target: refused.
    let other = PodSpec::new("s3b", "other", "app");
    let mut req = publish_request(&target, "c", &other);
    req.volume_id = format!("csi-{}", victim.uid);
    let err = node.node_publish_volume(req).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains("another pod's volume"),
        "{}",
        err.message()
    );

    // The victim's own pod info with another volume id at its target.
    let mut req = publish_request(&target, "c", &victim);
    req.volume_id = "csi-intruder".into();
    let err = node.node_publish_volume(req).await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
    assert!(
        err.message().contains("holds volume csi-uid-victim"),
        "{}",
        err.message()
    );

    // An unpublish naming an unknown volume id at the victim's target.
    let mut req = unpublish_request(&target, &victim);
    req.volume_id = "csi-unknown".into();
    let err = node.node_unpublish_volume(req).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert!(mount_line(&target).is_some(), "the victim stays mounted");
    assert_eq!(read(&target, "s"), "a-value");

    // The record is intact: the real unpublish works and cleans up.
    node.node_unpublish_volume(unpublish_request(&target, &victim))
        .await
        .unwrap();
    assert!(!target.exists());
    let state: Vec<_> = std::fs::read_dir(w.dir.path().join("state"))
        .unwrap()
        .collect();
    assert!(state.is_empty(), "no record left");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_symlink_swapped_in_during_publishes_never_lets_a_mount_or_file_escape() {
    let w = World::new().await;
    moto().create_secret("s4/s", "s4-value").await;
    w.kube.put_service_account("s4", "app", Some(READER_ROLE));
    w.class(
        "s4",
        "c",
        "- {objectName: s4/s, objectType: secretsmanager, objectAlias: s}",
    );
    let pod = PodSpec::new("s4", "racer", "app");
    let target = w.dir.target(&pod.uid);
    let volume = target.parent().unwrap().to_path_buf();
    let real = volume.with_file_name("secrets.real");
    let outside = w.dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();

    // Swaps the volume directory for a symlink to `outside` and back, as
    // fast as it can, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = std::thread::spawn({
        let (stop, volume, real, outside) =
            (stop.clone(), volume.clone(), real.clone(), outside.clone());
        move || {
            let mut swaps = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if std::fs::rename(&volume, &real).is_ok() {
                    let _ = std::os::unix::fs::symlink(&outside, &volume);
                    std::thread::yield_now();
                    let _ = std::fs::remove_file(&volume);
                    let _ = std::fs::rename(&real, &volume);
                    swaps += 1;
                    // Leave the real directory in place for a moment too, so
                    // publishes interleave at every step.
                    std::thread::sleep(std::time::Duration::from_micros(50 + swaps % 200));
                }
            }
            swaps
        }
    });
    const ATTEMPTS: usize = 300;
    let mut node = w.driver.node().await;
    let (mut published, mut refused) = (0, 0);
    for _ in 0..ATTEMPTS {
        match w.publish(&target, "c", &pod).await {
            Ok(()) => published += 1,
            Err(_) => refused += 1,
        }
        let _ = node
            .node_unpublish_volume(unpublish_request(&target, &pod))
            .await;
        assert!(
            mounts_under(&outside).is_empty(),
            "a mount escaped to {}",
            outside.display()
        );
        assert_eq!(
            std::fs::read_dir(&outside).unwrap().count(),
            0,
            "something was written outside the pod's volume"
        );
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    println!(
        "{ATTEMPTS} publish attempts against {swaps} directory/symlink swaps: {published} published, {refused} refused, 0 escapes"
    );
    assert!(swaps > 0, "the race never ran");
    // Once the swapping stops, the volume works and cleans up.
    if !volume.is_dir() {
        let _ = std::fs::remove_file(&volume);
        std::fs::rename(&real, &volume).unwrap();
    }
    let _ = node
        .node_unpublish_volume(unpublish_request(&target, &pod))
        .await;
    w.publish(&target, "c", &pod).await.unwrap();
    assert_eq!(read(&target, "s"), "s4-value");
    node.node_unpublish_volume(unpublish_request(&target, &pod))
        .await
        .unwrap();
    assert!(mounts_under(w.dir.path()).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn names_bound_for_the_api_are_checked_before_any_request() {
    let w = World::new().await;
    w.kube.put_service_account("s5", "app", Some(READER_ROLE));
    let pod = PodSpec::new("s5", "p", "app");
    let target = w.dir.target(&pod.uid);
    for class in ["../../kube-system/secretproviderclasses/x", "x?watch=1"] {
        let err = w.publish(&target, class, &pod).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(
            err.message().contains("is not a valid Kubernetes name"),
            "{}",
            err.message()
        );
    }
    let mut pod = PodSpec::new("s5", "p", "app");
    pod.service_account = "app/../../x".into();
    let err = w.publish(&target, "c", &pod).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert_eq!(
        w.kube.gets(
            "/apis/secrets-store.csi.x-k8s.io/v1/namespaces/kube-system/secretproviderclasses/x"
        ),
        0
    );
    assert!(!target.exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn another_service_accounts_token_is_refused_before_any_exchange() {
    let w = World::new().await;
    moto().create_secret("s6/s", "s6-value").await;
    w.kube.put_service_account("s6", "app", Some(READER_ROLE));
    w.kube.put_service_account("s6", "other", Some(READER_ROLE));
    w.class(
        "s6",
        "c",
        "- {objectName: s6/s, objectType: secretsmanager, objectAlias: s}",
    );
    // The pod claims ServiceAccount "app" and presents a token of "other":
    // on the identity's very first mount, nothing is cached yet.
    let mut pod = PodSpec::new("s6", "thief", "app");
    pod.token = PodSpec::new("s6", "thief", "other").token;
    let target = w.dir.target(&pod.uid);
    let err = w.publish(&target, "c", &pod).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    assert_eq!(
        w.driver.aws_calls("AssumeRoleWithWebIdentity").await,
        0,
        "no exchange with a token the API server disowned"
    );
    assert!(!target.exists());
    // The pod's own token works.
    let honest = PodSpec::new("s6", "honest", "app");
    let target = w.dir.target(&honest.uid);
    w.publish(&target, "c", &honest).await.unwrap();
    assert_eq!(read(&target, "s"), "s6-value");
}
