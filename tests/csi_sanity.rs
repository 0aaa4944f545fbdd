//! csi-sanity (kubernetes-csi/csi-test v5.4.0) against `serve`. Specs that
//! need a CSI Controller service are skipped: this is a node-only driver, and
//! csi-sanity obtains every volume for its positive node specs from
//! CreateVolume. Those paths (publish, republish, unpublish) are covered by
//! tests/node_publish.rs. Needs root (the driver runs as on a node).
//!
//! csi-sanity v5.4.0 calls ControllerGetCapabilities in the setup of every
//! Node spec, even when the driver advertises no controller. The driver does
//! not serve a controller (DESIGN.md), so the test hands csi-sanity a
//! stand-in controller endpoint (Identity plus a Controller that answers
//! ControllerGetCapabilities with no capability and everything else with
//! Unimplemented).

mod common;

use std::path::PathBuf;
use std::process::Command;

use aws_secrets_csi::csi::controller_server::{Controller, ControllerServer};
use aws_secrets_csi::csi::*;
use common::kube::FakeKube;
use common::*;
use tonic::{Request, Response, Status};

struct NoController;

#[tonic::async_trait]
impl Controller for NoController {
    async fn controller_get_capabilities(
        &self,
        _: Request<ControllerGetCapabilitiesRequest>,
    ) -> Result<Response<ControllerGetCapabilitiesResponse>, Status> {
        // csi-sanity refuses an empty list (nil in Go); RPC type UNKNOWN says
        // "no capability", as the upstream Secrets Store driver answers.
        let unknown = ControllerServiceCapability {
            r#type: Some(controller_service_capability::Type::Rpc(
                controller_service_capability::Rpc {
                    r#type: controller_service_capability::rpc::Type::Unknown as i32,
                },
            )),
        };
        Ok(Response::new(ControllerGetCapabilitiesResponse {
            capabilities: vec![unknown],
        }))
    }

    async fn create_volume(
        &self,
        _: Request<CreateVolumeRequest>,
    ) -> Result<Response<CreateVolumeResponse>, Status> {
        Err(Status::unimplemented("stand-in controller"))
    }

    async fn delete_volume(
        &self,
        _: Request<DeleteVolumeRequest>,
    ) -> Result<Response<DeleteVolumeResponse>, Status> {
        Err(Status::unimplemented("stand-in controller"))
    }

    async fn controller_publish_volume(
        &self,
        _: Request<ControllerPublishVolumeRequest>,
    ) -> Result<Response<ControllerPublishVolumeResponse>, Status> {
        Err(Status::unimplemented("stand-in controller"))
    }

    async fn controller_unpublish_volume(
        &self,
        _: Request<ControllerUnpublishVolumeRequest>,
    ) -> Result<Response<ControllerUnpublishVolumeResponse>, Status> {
        Err(Status::unimplemented("stand-in controller"))
    }

    async fn validate_volume_capabilities(
        &self,
        _: Request<ValidateVolumeCapabilitiesRequest>,
    ) -> Result<Response<ValidateVolumeCapabilitiesResponse>, Status> {
        Err(Status::unimplemented("stand-in controller"))
    }

    async fn list_volumes(
        &self,
        _: Request<ListVolumesRequest>,
    ) -> Result<Response<ListVolumesResponse>, Status> {
        Err(Status::unimplemented("stand-in controller"))
    }

    async fn get_capacity(
        &self,
        _: Request<GetCapacityRequest>,
    ) -> Result<Response<GetCapacityResponse>, Status> {
        Err(Status::unimplemented("stand-in controller"))
    }

    async fn create_snapshot(
        &self,
        _: Request<CreateSnapshotRequest>,
    ) -> Result<Response<CreateSnapshotResponse>, Status> {
        Err(Status::unimplemented("stand-in controller"))
    }

    async fn delete_snapshot(
        &self,
        _: Request<DeleteSnapshotRequest>,
    ) -> Result<Response<DeleteSnapshotResponse>, Status> {
        Err(Status::unimplemented("stand-in controller"))
    }

    async fn list_snapshots(
        &self,
        _: Request<ListSnapshotsRequest>,
    ) -> Result<Response<ListSnapshotsResponse>, Status> {
        Err(Status::unimplemented("stand-in controller"))
    }

    async fn get_snapshot(
        &self,
        _: Request<GetSnapshotRequest>,
    ) -> Result<Response<GetSnapshotResponse>, Status> {
        Err(Status::unimplemented("stand-in controller"))
    }

    async fn controller_expand_volume(
        &self,
        _: Request<ControllerExpandVolumeRequest>,
    ) -> Result<Response<ControllerExpandVolumeResponse>, Status> {
        Err(Status::unimplemented("stand-in controller"))
    }

    async fn controller_get_volume(
        &self,
        _: Request<ControllerGetVolumeRequest>,
    ) -> Result<Response<ControllerGetVolumeResponse>, Status> {
        Err(Status::unimplemented("stand-in controller"))
    }

    async fn controller_modify_volume(
        &self,
        _: Request<ControllerModifyVolumeRequest>,
    ) -> Result<Response<ControllerModifyVolumeResponse>, Status> {
        Err(Status::unimplemented("stand-in controller"))
    }
}

fn csi_sanity() -> PathBuf {
    if let Ok(p) = std::env::var("CSI_SANITY") {
        return PathBuf::from(p);
    }
    let in_gobin =
        PathBuf::from(std::env::var("HOME").unwrap_or_default()).join("go/bin/csi-sanity");
    if in_gobin.exists() {
        return in_gobin;
    }
    PathBuf::from("csi-sanity")
}

#[tokio::test(flavor = "multi_thread")]
async fn csi_sanity_node_and_identity_specs_pass() {
    require_root();
    let dir = TestDir::new();
    let kube = FakeKube::start(dir.path()).await;
    let driver = Driver::start(dir.path(), &kube.kubeconfig, &[]).await;
    let work = dir.path().join("sanity");
    std::fs::create_dir(&work).unwrap();
    let controller_socket = dir.path().join("controller.sock");
    let listener = tokio::net::UnixListener::bind(&controller_socket).unwrap();
    let controller = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(ControllerServer::new(NoController))
            // csi-sanity also runs the Identity specs on the controller endpoint.
            .add_service(identity_server::IdentityServer::new(IdentityService::new(
                "stand-in.controller.test".into(),
                std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true)),
            )))
            .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener)),
    );
    let bin = csi_sanity();
    let output = tokio::task::spawn_blocking({
        let socket = driver.socket.clone();
        let work = work.clone();
        let controller_socket = controller_socket.clone();
        move || {
            Command::new(&bin)
                .arg(format!("--csi.endpoint=unix://{}", socket.display()))
                .arg(format!("--csi.controllerendpoint=unix://{}", controller_socket.display()))
                .arg(format!("--csi.mountdir={}", work.join("mnt").display()))
                .arg(format!("--csi.stagingdir={}", work.join("stg").display()))
                .arg("--ginkgo.skip=Controller Server|should remove target path")
                .arg("--ginkgo.no-color")
                .arg("--ginkgo.v")
                .output()
                .unwrap_or_else(|e| {
                    panic!(
                        "cannot run {} ({e}); install it with: go install github.com/kubernetes-csi/csi-test/v5/cmd/csi-sanity@v5.4.0",
                        bin.display()
                    )
                })
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary = stdout
        .lines()
        .filter(|l| l.starts_with("Ran ") || l.contains("Passed |"))
        .collect::<Vec<_>>()
        .join("\n");
    println!("csi-sanity:\n{summary}");
    assert!(
        output.status.success(),
        "csi-sanity failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // "Ran 12 of 79 Specs", "SUCCESS! -- 12 Passed | 0 Failed | 0 Pending | 67 Skipped"
    let passed: usize = summary
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .find(|w| w[1] == "Passed")
        .and_then(|w| w[0].parse().ok())
        .unwrap_or(0);
    assert!(
        passed >= 10,
        "expected at least the 10 identity/node specs to pass:\n{stdout}"
    );
    assert!(summary.contains("0 Failed"), "{summary}");
    assert!(mounts_under(dir.path()).is_empty());
    controller.abort();
}
