//! The driver registers itself with kubelet (no node-driver-registrar) and
//! serves its own liveness endpoint (no livenessprobe), over the
//! pluginregistration.k8s.io/v1 API on a socket under plugins_registry.
//! Here a gRPC client plays kubelet's plugin watcher; tests/node.rs runs a
//! real kubelet. Needs root (the driver checks CAP_SYS_ADMIN).

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aws_secrets_csi::csi::{InfoRequest, RegistrationClient, RegistrationStatus};
use common::*;

const HOST_SOCKET: &str = "/var/lib/kubelet/plugins/secrets-store.aws-secrets-csi.io/csi.sock";

async fn registration_client(socket: &Path) -> RegistrationClient<tonic::transport::Channel> {
    let channel = tonic::transport::Endpoint::from_shared(format!("unix://{}", socket.display()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    RegistrationClient::new(channel)
}

async fn healthz(port: u16) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).await.unwrap();
    let code = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (code, body)
}

fn inode(path: &Path) -> Option<u64> {
    std::fs::symlink_metadata(path).ok().map(|m| m.ino())
}

struct Registered {
    world: World,
    socket: PathBuf,
    health_port: u16,
}

async fn registered_driver() -> Registered {
    require_root();
    let health_port = free_port();
    let dir = TestDir::new();
    let registry = dir.path().join("plugins_registry");
    let kube = common::kube::FakeKube::start(dir.path()).await;
    let driver = Driver::start_with(
        dir.path(),
        &kube.kubeconfig,
        &[],
        &[
            "--kubelet-registration-path",
            HOST_SOCKET,
            "--registration-dir",
            registry.to_str().unwrap(),
            "--health-addr",
            &format!("127.0.0.1:{health_port}"),
        ],
    )
    .await;
    let socket = registry.join("secrets-store.aws-secrets-csi.io-reg.sock");
    Registered {
        world: World { driver, kube, dir },
        socket,
        health_port,
    }
}

#[tokio::test]
async fn kubelet_learns_the_driver_name_and_host_socket_and_its_verdict_drives_health() {
    let r = registered_driver().await;
    // The socket is there before the driver answers its first probe.
    assert!(r.socket.exists(), "{}", r.world.driver.logs());
    let mut client = registration_client(&r.socket).await;
    let info = client.get_info(InfoRequest {}).await.unwrap().into_inner();
    assert_eq!(info.r#type, "CSIPlugin");
    assert_eq!(info.name, "secrets-store.aws-secrets-csi.io");
    assert_eq!(info.endpoint, HOST_SOCKET);
    assert_eq!(info.supported_versions, ["1.0.0"]);

    assert_eq!(healthz(r.health_port).await, (200, "ok".into()));
    client
        .notify_registration_status(RegistrationStatus {
            plugin_registered: false,
            error: "no CSI version in common".into(),
        })
        .await
        .unwrap();
    let (code, body) = healthz(r.health_port).await;
    assert_eq!(code, 503);
    assert_eq!(
        body,
        "kubelet refused the registration: no CSI version in common"
    );
    client
        .notify_registration_status(RegistrationStatus {
            plugin_registered: true,
            error: String::new(),
        })
        .await
        .unwrap();
    assert_eq!(healthz(r.health_port).await, (200, "ok".into()));
    let logs = r.world.driver.logs();
    assert!(logs.contains("kubelet registered the driver"), "{logs}");
}

#[tokio::test]
async fn a_removed_or_replaced_registration_socket_is_served_again() {
    let r = registered_driver().await;
    let first = inode(&r.socket).expect("registration socket");
    std::fs::remove_file(&r.socket).unwrap();
    let again = wait_for_new_socket(&r.socket, first).await;
    let info = registration_client(&r.socket)
        .await
        .get_info(InfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.name, "secrets-store.aws-secrets-csi.io");

    // Something else bound in its place (a stale driver, a test): replaced.
    std::fs::remove_file(&r.socket).unwrap();
    let squatter = std::os::unix::net::UnixListener::bind(&r.socket).unwrap();
    let squatter_inode = inode(&r.socket).unwrap();
    assert_ne!(squatter_inode, again);
    wait_for_new_socket(&r.socket, squatter_inode).await;
    drop(squatter);
    registration_client(&r.socket)
        .await
        .get_info(InfoRequest {})
        .await
        .unwrap();
}

async fn wait_for_new_socket(path: &Path, old: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(ino) = inode(path)
            && ino != old
            && registration_client_answers(path).await
        {
            return ino;
        }
        assert!(Instant::now() < deadline, "the socket was not bound again");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn registration_client_answers(path: &Path) -> bool {
    let Ok(channel) = tonic::transport::Endpoint::from_shared(format!("unix://{}", path.display()))
        .unwrap()
        .connect()
        .await
    else {
        return false;
    };
    RegistrationClient::new(channel)
        .get_info(InfoRequest {})
        .await
        .is_ok()
}

#[tokio::test]
async fn health_fails_when_the_csi_socket_is_gone_and_the_socket_goes_on_shutdown() {
    let mut r = registered_driver().await;
    std::fs::remove_file(&r.world.driver.socket).unwrap();
    let (code, body) = healthz(r.health_port).await;
    assert_eq!(code, 503);
    assert!(body.contains("does not answer"), "{body}");

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(r.world.driver.pid() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = r.world.driver.wait_exit(Duration::from_secs(20));
    assert!(status.is_some(), "{}", r.world.driver.logs());
    // Gone, so that kubelet deregisters a driver that is not there.
    assert!(!r.socket.exists());
}
