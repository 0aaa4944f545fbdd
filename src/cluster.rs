//! Step "kube": the pod's SecretProviderClass and its ServiceAccount's role,
//! read from the Kubernetes API.

use k8s_openapi::api::core::v1::{Node, ServiceAccount};
use kube::Api;

use crate::spc::SecretProviderClass;

/// The node label that names the node's AWS region.
pub const REGION_LABEL: &str = "topology.kubernetes.io/region";

/// The ServiceAccount annotation that names the IRSA role.
pub const ROLE_ANNOTATION: &str = "eks.amazonaws.com/role-arn";

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("{kind} {namespace}/{name} not found")]
    NotFound {
        kind: &'static str,
        namespace: String,
        name: String,
    },
    #[error("reading {kind} {namespace}/{name} was refused by the API server: {message}")]
    Forbidden {
        kind: &'static str,
        namespace: String,
        name: String,
        message: String,
    },
    #[error("cannot read {kind} {namespace}/{name} from the API server: {message}")]
    Unavailable {
        kind: &'static str,
        namespace: String,
        name: String,
        message: String,
    },
}

/// Reads what a publish needs from the Kubernetes API.
#[derive(Clone)]
pub struct Cluster {
    client: kube::Client,
}

impl Cluster {
    pub fn new(client: kube::Client) -> Self {
        Cluster { client }
    }

    pub async fn secret_provider_class(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<SecretProviderClass, ClusterError> {
        Api::<SecretProviderClass>::namespaced(self.client.clone(), namespace)
            .get(name)
            .await
            .map_err(|e| classify(e, "SecretProviderClass", namespace, name))
    }

    /// The role ARN annotated on a ServiceAccount, if any.
    pub async fn service_account_role(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<String>, ClusterError> {
        let sa = Api::<ServiceAccount>::namespaced(self.client.clone(), namespace)
            .get(name)
            .await
            .map_err(|e| classify(e, "ServiceAccount", namespace, name))?;
        Ok(sa
            .metadata
            .annotations
            .and_then(|mut a| a.remove(ROLE_ANNOTATION))
            .filter(|r| !r.is_empty()))
    }
}

impl Cluster {
    /// The region label of a node, if it has one.
    pub async fn node_region(&self, name: &str) -> Result<Option<String>, ClusterError> {
        let node = Api::<Node>::all(self.client.clone())
            .get(name)
            .await
            .map_err(|e| classify(e, "Node", "", name))?;
        Ok(node
            .metadata
            .labels
            .and_then(|mut l| l.remove(REGION_LABEL))
            .filter(|r| !r.is_empty()))
    }
}

fn classify(e: kube::Error, kind: &'static str, namespace: &str, name: &str) -> ClusterError {
    let (namespace, name) = (namespace.to_owned(), name.to_owned());
    match e {
        kube::Error::Api(s) if s.code == 404 => ClusterError::NotFound {
            kind,
            namespace,
            name,
        },
        kube::Error::Api(s) if s.code == 401 || s.code == 403 => ClusterError::Forbidden {
            kind,
            namespace,
            name,
            message: s.message.clone(),
        },
        other => ClusterError::Unavailable {
            kind,
            namespace,
            name,
            message: other.to_string(),
        },
    }
}
