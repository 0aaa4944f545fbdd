//! The SecretProviderClass resource (`secrets-store.csi.x-k8s.io/v1`), with only
//! the fields this driver reads. Unknown fields are ignored, as the upstream
//! driver does.

use std::collections::BTreeMap;

use kube::CustomResource;
use serde::{Deserialize, Serialize};

use super::{MountPlan, PlanError, VolumeLimits, plan_within};

#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "secrets-store.csi.x-k8s.io",
    version = "v1",
    kind = "SecretProviderClass",
    namespaced,
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct SecretProviderClassSpec {
    #[serde(default)]
    pub provider: String,
    #[serde(default)]
    pub parameters: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_objects: Vec<SecretObject>,
}

/// A Kubernetes Secret to keep in sync with mounted files (`secretObjects`).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretObject {
    #[serde(default)]
    pub secret_name: String,
    #[serde(default, rename = "type")]
    pub type_: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub data: Vec<SecretObjectData>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretObjectData {
    #[serde(default)]
    pub object_name: String,
    #[serde(default)]
    pub key: String,
}

/// Builds the plan for a whole class, for a volume with `limits`: the
/// provider must be `aws`.
pub fn plan_class(
    spec: &SecretProviderClassSpec,
    default_region: Option<&str>,
    limits: VolumeLimits,
) -> Result<MountPlan, PlanError> {
    if spec.provider != "aws" {
        return Err(PlanError::Provider(spec.provider.clone()));
    }
    plan_within(&spec.parameters, default_region, limits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_class_for_another_provider_is_refused() {
        let spec = SecretProviderClassSpec {
            provider: "azure".into(),
            parameters: [
                ("region", "r"),
                ("objects", "- {objectName: a, objectType: secretsmanager}"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
            ..Default::default()
        };
        assert_eq!(
            plan_class(&spec, None, VolumeLimits::default())
                .unwrap_err()
                .to_string(),
            "provider is \"azure\", but this driver serves only provider \"aws\""
        );
        let aws = SecretProviderClassSpec {
            provider: "aws".into(),
            ..spec
        };
        assert!(plan_class(&aws, None, VolumeLimits::default()).is_ok());
    }
}
