//! Security round 3 (issue 28, item 10): the driver's HTTP endpoints against
//! clients that connect and never finish a request, through `serve` started
//! at a soft open-file limit of 1,024 (containerd 2's default), with a real
//! moto and real tmpfs mounts (needs root).

mod common;

use std::time::{Duration, Instant};

use common::*;
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Half-sent requests held per port.
const HELD: usize = 1000;

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// The soft and hard open-file limits of a process, from /proc.
fn open_file_limits(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let mut fields = line["Max open files".len()..].split_whitespace();
    (
        fields.next().unwrap().to_owned(),
        fields.next().unwrap().to_owned(),
    )
}

/// `HELD` connections to `port`, each with half a request sent. A
/// connection the driver refused at once may fail the write.
async fn half_requests(port: u16, path: &str) -> Vec<TcpStream> {
    let mut held = Vec::with_capacity(HELD);
    for _ in 0..HELD {
        let mut stream = tokio::time::timeout(
            Duration::from_secs(5),
            TcpStream::connect(("127.0.0.1", port)),
        )
        .await
        .expect("the driver's backlog is full")
        .unwrap();
        let _ = stream
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: driver\r\n").as_bytes())
            .await;
        held.push(stream);
    }
    held
}

/// How many of `streams` the driver has closed (end of stream or reset).
async fn closed(streams: &mut [TcpStream]) -> usize {
    let mut n = 0;
    for stream in streams {
        let mut buf = [0u8; 256];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(1), stream.read(&mut buf)).await
        {
            n += 1;
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread")]
async fn half_sent_requests_on_the_http_ports_neither_hold_descriptors_nor_starve_the_csi_socket() {
    require_root();
    // The driver starts as a container runtime may start it; this test then
    // takes its own limit back for the connections it holds.
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, 1024.min(hard), hard).unwrap();
    let health_port = free_port();
    let health_addr = format!("127.0.0.1:{health_port}");
    let w = World::with(
        // The old driver ignores an unknown variable: the test runs against it.
        &[("HTTP_HEADER_TIMEOUT", "2s")],
        &["--health-addr", &health_addr],
    )
    .await;
    setrlimit(Resource::RLIMIT_NOFILE, soft.max(hard), hard).unwrap();
    let pid = w.driver.pid();
    let (driver_soft, driver_hard) = open_file_limits(pid);
    assert_eq!(driver_soft, driver_hard, "the driver keeps a soft limit");

    let moto = moto();
    moto.create_secret("e1/db", "hunter2").await;
    w.kube.put_service_account("e1", "app", Some(READER_ROLE));
    w.class(
        "e1",
        "db",
        "- {objectName: e1/db, objectType: secretsmanager}\n",
    );
    // The health endpoint answers, and the metrics one.
    let text = w.driver.metrics().await;
    assert!(text.contains("# EOF"), "{text}");
    let before = open_fds(pid);

    let started = Instant::now();
    let mut metrics_held = half_requests(w.driver.metrics_port, "/metrics").await;
    let mut health_held = half_requests(health_port, "/healthz").await;
    let opened_in = started.elapsed();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let during = open_fds(pid);
    eprintln!(
        "driver's open descriptors: {before} before, {during} with {HELD} half-sent requests on each port"
    );
    // Two listeners at 32 connections each, and some slack for the rest.
    assert!(
        during <= before + 2 * 32 + 16,
        "open descriptors {before} -> {during} with {HELD} half-sent requests on each port"
    );

    // kubelet's calls go on meanwhile: a new connection, a whole mount.
    let pod = PodSpec::new("e1", "web", "app");
    let target = w.dir.target(&pod.uid);
    tokio::time::timeout(Duration::from_secs(20), w.publish(&target, "db", &pod))
        .await
        .expect("the publish did not finish within 20 s")
        .expect("publish");
    assert_eq!(read(&target, "e1_db"), "hunter2");
    w.driver
        .node()
        .await
        .node_unpublish_volume(unpublish_request(&target, &pod))
        .await
        .unwrap();

    // The header timeout (2 s) closes what the driver holds.
    assert!(opened_in < Duration::from_secs(2), "{opened_in:?}");
    let deadline = started + Duration::from_secs(8);
    loop {
        let metrics_closed = closed(&mut metrics_held).await;
        let health_closed = closed(&mut health_held).await;
        if metrics_closed == HELD && health_closed == HELD {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still open after 8 s: {} of {HELD} on the metrics port, {} on the health port",
            HELD - metrics_closed,
            HELD - health_closed
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop((metrics_held, health_held));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = open_fds(pid);
    eprintln!("driver's open descriptors after the header timeout: {after}");
    assert!(after <= before + 4, "open descriptors {before} -> {after}");
    assert!(w.driver.metrics().await.contains("node_publish_total"));
    assert!(
        !w.driver.logs().contains("Too many open files"),
        "the driver ran out of descriptors"
    );
}
