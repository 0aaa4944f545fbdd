use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use tonic::{Request, Response, Status};

use super::status::status_of;
use crate::metrics::Metrics;
use crate::proto::node_server::Node;
use crate::proto::*;
use crate::publish::{PublishError, Published, Publisher};
use crate::request;

/// CSI Node: publish and unpublish. No optional node capability is
/// advertised: kubelet never stages ephemeral volumes, and stats or expansion
/// mean nothing for a secrets volume.
pub struct NodeService {
    node_id: String,
    /// kubelet's root directory: targets must be pod volumes below it.
    kubelet_dir: PathBuf,
    publisher: Arc<Publisher>,
    metrics: Arc<Metrics>,
}

impl NodeService {
    pub fn new(
        node_id: String,
        kubelet_dir: PathBuf,
        publisher: Arc<Publisher>,
        metrics: Arc<Metrics>,
    ) -> Self {
        NodeService {
            node_id,
            kubelet_dir,
            publisher,
            metrics,
        }
    }

    fn reject(&self, e: PublishError) -> Status {
        tracing::warn!(error = %e, "publish request refused");
        self.metrics.publish_error(e.error_type());
        status_of(&e)
    }
}

#[tonic::async_trait]
impl Node for NodeService {
    async fn node_publish_volume(
        &self,
        request: Request<NodePublishVolumeRequest>,
    ) -> Result<Response<NodePublishVolumeResponse>, Status> {
        let started = Instant::now();
        if tracing::enabled!(tracing::Level::DEBUG) {
            // What kubelet sends, for diagnosis: the keys only (the values
            // carry tokens), the secrets' keys likewise. Only when asked
            // for: every republish passes here.
            let r = request.get_ref();
            let mut keys: Vec<&str> = r.volume_context.keys().map(String::as_str).collect();
            keys.sort_unstable();
            let mut secret_keys: Vec<&str> = r.secrets.keys().map(String::as_str).collect();
            secret_keys.sort_unstable();
            tracing::debug!(volume_id = %r.volume_id, target_path = %r.target_path, readonly = r.readonly, context_keys = ?keys, secret_keys = ?secret_keys, "NodePublishVolume");
        }
        let req = request::parse_publish(request.get_ref(), &self.kubelet_dir)
            .map_err(|e| self.reject(PublishError::from(e)))?;
        let (volume_id, namespace, pod, class) = (
            req.volume_id.clone(),
            req.pod.namespace.clone(),
            req.pod.name.clone(),
            req.class_name.clone(),
        );
        match self.publisher.publish(req).await {
            Ok(outcome) => {
                match outcome {
                    Published::Mounted { files } => {
                        tracing::info!(%volume_id, %namespace, %pod, %class, files, elapsed_ms = started.elapsed().as_millis() as u64, "volume published")
                    }
                    other => {
                        tracing::debug!(%volume_id, %namespace, %pod, outcome = ?other, "volume republished")
                    }
                }
                self.metrics.publish_ok();
                Ok(Response::new(NodePublishVolumeResponse {}))
            }
            Err(e) => {
                tracing::warn!(%volume_id, %namespace, %pod, %class, error = %e, "publish failed");
                self.metrics.publish_error(e.error_type());
                Err(status_of(&e))
            }
        }
    }

    async fn node_unpublish_volume(
        &self,
        request: Request<NodeUnpublishVolumeRequest>,
    ) -> Result<Response<NodeUnpublishVolumeResponse>, Status> {
        let req = request.into_inner();
        request::check_volume_id(&req.volume_id).map_err(|e| self.reject(e.into()))?;
        if req.target_path.is_empty() {
            return Err(Status::invalid_argument("target path is missing"));
        }
        // Unpublish removes the target: never anything but a pod volume.
        request::check_target(&req.target_path, &self.kubelet_dir)
            .map_err(|e| self.reject(e.into()))?;
        let result = self
            .publisher
            .unpublish(&req.volume_id, PathBuf::from(&req.target_path))
            .await;
        self.metrics.unpublish(result.is_ok());
        match result {
            Ok(()) => {
                tracing::info!(volume_id = %req.volume_id, "volume unpublished");
                Ok(Response::new(NodeUnpublishVolumeResponse {}))
            }
            Err(e) => {
                tracing::warn!(volume_id = %req.volume_id, error = %e, "unpublish failed");
                Err(status_of(&e))
            }
        }
    }

    async fn node_get_capabilities(
        &self,
        _: Request<NodeGetCapabilitiesRequest>,
    ) -> Result<Response<NodeGetCapabilitiesResponse>, Status> {
        Ok(Response::new(NodeGetCapabilitiesResponse {
            capabilities: Vec::new(),
        }))
    }

    async fn node_get_info(
        &self,
        _: Request<NodeGetInfoRequest>,
    ) -> Result<Response<NodeGetInfoResponse>, Status> {
        Ok(Response::new(NodeGetInfoResponse {
            node_id: self.node_id.clone(),
            max_volumes_per_node: 0,
            accessible_topology: None,
        }))
    }

    async fn node_stage_volume(
        &self,
        _: Request<NodeStageVolumeRequest>,
    ) -> Result<Response<NodeStageVolumeResponse>, Status> {
        Err(Status::unimplemented("NodeStageVolume is not supported"))
    }

    async fn node_unstage_volume(
        &self,
        _: Request<NodeUnstageVolumeRequest>,
    ) -> Result<Response<NodeUnstageVolumeResponse>, Status> {
        Err(Status::unimplemented("NodeUnstageVolume is not supported"))
    }

    async fn node_get_volume_stats(
        &self,
        _: Request<NodeGetVolumeStatsRequest>,
    ) -> Result<Response<NodeGetVolumeStatsResponse>, Status> {
        Err(Status::unimplemented("NodeGetVolumeStats is not supported"))
    }

    async fn node_expand_volume(
        &self,
        _: Request<NodeExpandVolumeRequest>,
    ) -> Result<Response<NodeExpandVolumeResponse>, Status> {
        Err(Status::unimplemented("NodeExpandVolume is not supported"))
    }
}
