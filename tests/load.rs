//! Load: 500 concurrent publishes, republishes (which refresh: the class
//! asks for a 1-second interval) and unpublishes through one driver, against
//! the AWS stand-in, twice. Zero errors; afterwards no mount, no
//! directory, no file handle and no state record is left, the second round
//! holds no more sockets than the first (a bounded connection pool, not a
//! leak), and the driver's memory is printed. Needs root.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;
use futures::StreamExt;

const PODS: usize = 500;
const CONCURRENCY: usize = 500;

/// (non-socket, socket) file descriptors of a process.
fn open_fds(pid: u32) -> (Vec<String>, usize) {
    let mut other = Vec::new();
    let mut sockets = 0;
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
    {
        match std::fs::read_link(entry.path()) {
            Ok(l) if l.to_string_lossy().starts_with("socket:") => sockets += 1,
            Ok(l) => other.push(l.to_string_lossy().into_owned()),
            Err(_) => {}
        }
    }
    (other, sockets)
}

fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Every pod: publish, two republishes; then every pod unpublished. Returns
/// how long the publishes took.
async fn round(w: &World, pods: &[PodSpec], targets: &[PathBuf]) -> Duration {
    let started = Instant::now();
    let errors: Vec<String> = futures::stream::iter(pods.iter().zip(targets))
        .map(|(pod, target)| async move {
            for _ in 0..3 {
                if let Err(e) = w.publish(target, "c", pod).await {
                    return Some(format!("{}: {e:?}", pod.name));
                }
            }
            None
        })
        .buffer_unordered(CONCURRENCY)
        .filter_map(|e| async move { e })
        .collect()
        .await;
    let took = started.elapsed();
    assert!(
        errors.is_empty(),
        "{} errors, first: {:?}",
        errors.len(),
        errors.first()
    );
    assert_eq!(mounts_under(w.dir.path()).len(), pods.len());
    for target in targets.iter().step_by(37) {
        assert_eq!(read(target, "k"), "load/a");
        assert_eq!(read(target, "b"), aws_standin::value_of("load/b", 1));
        assert_eq!(read(target, "p"), aws_standin::value_of("/load/p", 1));
    }
    let errors: Vec<String> = futures::stream::iter(pods.iter().zip(targets))
        .map(|(pod, target)| async move {
            w.driver
                .node()
                .await
                .node_unpublish_volume(unpublish_request(target, pod))
                .await
                .err()
                .map(|e| format!("{}: {e:?}", pod.name))
        })
        .buffer_unordered(CONCURRENCY)
        .filter_map(|e| async move { e })
        .collect()
        .await;
    assert!(
        errors.is_empty(),
        "{} unpublish errors, first: {:?}",
        errors.len(),
        errors.first()
    );
    assert!(mounts_under(w.dir.path()).is_empty(), "no mount left");
    assert!(targets.iter().all(|t| !t.exists()), "no target left");
    assert_eq!(
        std::fs::read_dir(w.dir.path().join("state"))
            .unwrap()
            .count(),
        0,
        "no state left"
    );
    took
}

#[tokio::test(flavor = "multi_thread")]
async fn hundreds_of_concurrent_publishes_republishes_and_unpublishes() {
    let aws = aws_standin::AwsStandIn::start(Duration::ZERO).await;
    let w = World::with(&[("AWS_ENDPOINT_URL", &aws.endpoint)], &[]).await;
    w.kube.put_service_account("load", "app", Some(READER_ROLE));
    w.kube.put_class(
        "load",
        "c",
        &[
            ("region", REGION),
            ("refreshInterval", "1s"),
            (
                "objects",
                "- {objectName: load/a, objectType: secretsmanager, jmesPath: [{path: name, objectAlias: k}]}\n- {objectName: load/b, objectType: secretsmanager, objectAlias: b}\n- {objectName: /load/p, objectType: ssmparameter, objectAlias: p}",
            ),
        ],
    );
    let pid = w.driver.pid();
    let pods: Vec<PodSpec> = (0..PODS)
        .map(|i| PodSpec::new("load", &format!("p{i}"), "app"))
        .collect();
    let targets: Vec<PathBuf> = pods.iter().map(|p| w.dir.target(&p.uid)).collect();
    let (files_before, _) = open_fds(pid);
    let (rss_before, _) = rss_kib(pid);

    let first = round(&w, &pods, &targets).await;
    let (_, sockets_first) = open_fds(pid);
    let second = round(&w, &pods, &targets).await;
    // Let closing connections finish closing.
    let mut fds = open_fds(pid);
    for _ in 0..30 {
        if fds.0.len() <= files_before.len() && fds.1 <= sockets_first {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        fds = open_fds(pid);
    }
    let (rss_after, rss_peak) = rss_kib(pid);
    println!(
        "load: 2 rounds of {PODS} pods x (1 publish + 2 republishes + 1 unpublish) at concurrency {CONCURRENCY}: \
         publishes took {first:?} and {second:?}; driver RSS {rss_before} KiB before, {rss_after} KiB after, \
         peak {rss_peak} KiB; sockets {sockets_first} after round 1, {} after round 2",
        fds.1
    );
    assert_eq!(
        fds.0.len(),
        files_before.len(),
        "no file, directory or pipe left open: {:?}",
        fds.0
    );
    assert!(
        fds.1 <= sockets_first + 4,
        "sockets grow from round to round: {sockets_first} then {}",
        fds.1
    );
    let sts = w
        .driver
        .metric("aws_api_calls_total{api=\"AssumeRoleWithWebIdentity\",outcome=\"ok\"}")
        .await;
    assert_eq!(sts, 1.0, "one identity: one STS call for all pods");
    println!("load: AWS calls {:?}", aws.calls());
}
