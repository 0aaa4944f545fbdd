use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tonic::{Request, Response, Status};

use crate::proto::identity_server::Identity;
use crate::proto::{
    GetPluginCapabilitiesRequest, GetPluginCapabilitiesResponse, GetPluginInfoRequest,
    GetPluginInfoResponse, ProbeRequest, ProbeResponse,
};

/// CSI Identity: the driver's name and version, no plugin capabilities (no
/// controller service), and readiness.
pub struct IdentityService {
    name: String,
    ready: Arc<AtomicBool>,
}

impl IdentityService {
    /// `ready` is set once the node service can serve publishes.
    pub fn new(name: String, ready: Arc<AtomicBool>) -> Self {
        IdentityService { name, ready }
    }
}

#[tonic::async_trait]
impl Identity for IdentityService {
    async fn get_plugin_info(
        &self,
        _: Request<GetPluginInfoRequest>,
    ) -> Result<Response<GetPluginInfoResponse>, Status> {
        Ok(Response::new(GetPluginInfoResponse {
            name: self.name.clone(),
            vendor_version: env!("CARGO_PKG_VERSION").to_owned(),
            manifest: Default::default(),
        }))
    }

    async fn get_plugin_capabilities(
        &self,
        _: Request<GetPluginCapabilitiesRequest>,
    ) -> Result<Response<GetPluginCapabilitiesResponse>, Status> {
        Ok(Response::new(GetPluginCapabilitiesResponse {
            capabilities: Vec::new(),
        }))
    }

    async fn probe(&self, _: Request<ProbeRequest>) -> Result<Response<ProbeResponse>, Status> {
        if self.ready.load(Ordering::Acquire) {
            Ok(Response::new(ProbeResponse { ready: Some(true) }))
        } else {
            Err(Status::unavailable("the driver is starting"))
        }
    }
}
