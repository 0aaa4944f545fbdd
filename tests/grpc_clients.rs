//! The CSI socket serves gRPC clients that are not Go. kubelet and
//! csi-sanity send `:authority: localhost`; grpcio (Python, the gRPC C core)
//! sends the socket's percent-encoded path, which the server must accept.
//! Needs root (the driver runs as on a node) and python3 with grpcio (the
//! venv scripts/peers.sh makes).

mod common;

use std::process::Command;

use common::*;

#[tokio::test(flavor = "multi_thread")]
async fn a_python_grpcio_client_reaches_the_identity_service() {
    let w = World::new().await;
    let client = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/grpc_identity.py"
    );
    let out = tokio::task::spawn_blocking({
        let socket = w.driver.socket.clone();
        move || {
            Command::new("python3")
                .arg(client)
                .arg(&socket)
                .output()
                .expect("python3 with grpcio (scripts/test.sh puts the venv first on PATH)")
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "grpcio client failed: {stderr}\n{}",
        w.driver.logs()
    );
    assert_eq!(
        stdout.trim(),
        "secrets-store.aws-secrets-csi.io",
        "{stderr}"
    );
}
