//! NodePublishVolume and NodeUnpublishVolume: the data flow of DESIGN.md,
//! step by step (request -> class -> plan -> identity -> fetch -> render ->
//! volume). Every step's error is kept whole in [`PublishError`]; which gRPC
//! code each becomes is decided in `csi::status`.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::cluster::{Cluster, ClusterError};
use crate::fetch::{FetchError, Fetcher};
use crate::identity::{self, AwsIdentity, IdentityError, WebIdentity};
use crate::render::{self, FileSet, RenderError};
use crate::request::{AUDIENCE_STS, PublishRequest, RequestError};
use crate::spc::{self, AuthMode, MountPlan, PlanError};
use crate::volume::{self, TmpfsOptions, VolumeError};

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error("SecretProviderClass {namespace}/{name}: {source}")]
    Class {
        namespace: String,
        name: String,
        source: Box<PlanError>,
    },
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("SecretProviderClass {class}: {source}")]
    Fetch { class: String, source: FetchError },
    #[error("SecretProviderClass {class}: {source}")]
    Render { class: String, source: RenderError },
    #[error("volume {target}: {source}")]
    Volume {
        target: PathBuf,
        source: VolumeError,
    },
    #[error("publish did not finish within {0:?}; nothing was mounted")]
    Deadline(Duration),
    #[error("an operation on volume {0} is already in progress")]
    Busy(String),
}

/// Node-wide settings of the publish path.
#[derive(Debug, Clone)]
pub struct PublishConfig {
    /// Region for classes that name none.
    pub default_region: Option<String>,
    pub tmpfs: TmpfsOptions,
    /// Kept well inside kubelet's 2-minute RPC deadline.
    pub deadline: Duration,
}

/// What a successful publish did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// A new tmpfs was mounted and filled.
    Mounted { files: usize },
    /// The target was already mounted (a republish); left as is.
    AlreadyMounted,
}

pub struct Publisher {
    cluster: Cluster,
    web_identity: WebIdentity,
    fetcher: Fetcher,
    config: PublishConfig,
    in_flight: Arc<Mutex<HashSet<String>>>,
}

impl Publisher {
    pub fn new(
        cluster: Cluster,
        web_identity: WebIdentity,
        fetcher: Fetcher,
        config: PublishConfig,
    ) -> Self {
        Publisher {
            cluster,
            web_identity,
            fetcher,
            config,
            in_flight: Default::default(),
        }
    }

    pub async fn publish(&self, req: PublishRequest) -> Result<Published, PublishError> {
        let _guard = VolumeGuard::take(&self.in_flight, &req.volume_id)?;
        let target = req.target.clone();
        let on_target = |source| PublishError::Volume {
            target: target.clone(),
            source,
        };
        if volume::is_mount_point(&req.target).map_err(on_target)? {
            return Ok(Published::AlreadyMounted);
        }
        let set = tokio::time::timeout(self.config.deadline, self.file_set(&req))
            .await
            .map_err(|_| PublishError::Deadline(self.config.deadline))??;
        let files = set.len();
        let tmpfs = self.config.tmpfs.clone();
        let path = req.target.clone();
        tokio::task::spawn_blocking(move || volume::populate(&path, &set, Some(&tmpfs)))
            .await
            .map_err(|e| {
                on_target(VolumeError::io("populate", &req.target)(
                    std::io::Error::other(e),
                ))
            })?
            .map_err(on_target)?;
        Ok(Published::Mounted { files })
    }

    pub async fn unpublish(&self, volume_id: &str, target: PathBuf) -> Result<(), PublishError> {
        let _guard = VolumeGuard::take(&self.in_flight, volume_id)?;
        let path = target.clone();
        tokio::task::spawn_blocking(move || volume::teardown(&path))
            .await
            .map_err(|e| PublishError::Volume {
                target: target.clone(),
                source: VolumeError::io("tear down", &target)(std::io::Error::other(e)),
            })?
            .map_err(|source| PublishError::Volume { target, source })
    }

    /// Class -> plan -> credentials -> values -> files; no side effects on
    /// the node.
    async fn file_set(&self, req: &PublishRequest) -> Result<FileSet, PublishError> {
        let ns = &req.pod.namespace;
        let class = self
            .cluster
            .secret_provider_class(ns, &req.class_name)
            .await?;
        let plan = spc::plan_class(&class.spec, self.config.default_region.as_deref()).map_err(
            |source| PublishError::Class {
                namespace: ns.clone(),
                name: req.class_name.clone(),
                source: Box::new(source),
            },
        )?;
        for warning in &plan.warnings {
            tracing::warn!(namespace = %ns, class = %req.class_name, "{warning}");
        }
        let identity = match plan.auth {
            AuthMode::Irsa => {
                let token = req
                    .tokens
                    .get(AUDIENCE_STS)
                    .ok_or(IdentityError::TokenMissing(AUDIENCE_STS))?;
                let role = self
                    .cluster
                    .service_account_role(ns, &req.pod.service_account)
                    .await?
                    .ok_or_else(|| IdentityError::NoRole {
                        namespace: ns.clone(),
                        service_account: req.pod.service_account.clone(),
                    })?;
                let session = identity::session_name(ns, &req.pod.name);
                let credentials = self
                    .web_identity
                    .assume_role(&plan.region, &role, token, &session)
                    .await?;
                AwsIdentity::Pod(credentials)
            }
            AuthMode::PodIdentity => return Err(IdentityError::PodIdentityUnsupported.into()),
        };
        fetch_and_render(
            &self.fetcher,
            &plan,
            &identity,
            &format!("{ns}/{}", req.class_name),
        )
        .await
    }
}

/// Fetches a plan's values and renders its files.
pub async fn fetch_and_render(
    fetcher: &Fetcher,
    plan: &MountPlan,
    identity: &AwsIdentity,
    class: &str,
) -> Result<FileSet, PublishError> {
    let values = fetcher
        .fetch(plan, identity)
        .await
        .map_err(|source| PublishError::Fetch {
            class: class.to_owned(),
            source,
        })?;
    let bytes: Vec<_> = values.into_iter().map(|v| v.bytes).collect();
    render::render(plan, &bytes).map_err(|source| PublishError::Render {
        class: class.to_owned(),
        source,
    })
}

/// One operation per volume at a time; a second one gets Aborted, which
/// kubelet retries (CSI spec "operation pending").
struct VolumeGuard {
    set: Arc<Mutex<HashSet<String>>>,
    id: String,
}

impl VolumeGuard {
    fn take(set: &Arc<Mutex<HashSet<String>>>, id: &str) -> Result<Self, PublishError> {
        let mut s = set.lock().unwrap_or_else(|p| p.into_inner());
        if !s.insert(id.to_owned()) {
            return Err(PublishError::Busy(id.to_owned()));
        }
        Ok(VolumeGuard {
            set: set.clone(),
            id: id.to_owned(),
        })
    }
}

impl Drop for VolumeGuard {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_operation_per_volume() {
        let set = Arc::new(Mutex::new(HashSet::new()));
        let g = VolumeGuard::take(&set, "v1").unwrap();
        assert!(matches!(
            VolumeGuard::take(&set, "v1"),
            Err(PublishError::Busy(_))
        ));
        assert!(VolumeGuard::take(&set, "v2").is_ok());
        drop(g);
        assert!(VolumeGuard::take(&set, "v1").is_ok());
    }
}
