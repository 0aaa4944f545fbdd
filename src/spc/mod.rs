//! Step "spc": a SecretProviderClass -> a validated [`MountPlan`]. Pure. The
//! planning itself lives in the `aws-secrets-csi-core` crate (so that it is
//! fuzzed apart from the driver's dependencies); here are the Kubernetes
//! resource and the manifest reader.

mod class;
mod manifest;

pub use aws_secrets_csi_core::spc::*;
pub use class::{
    SecretObject, SecretObjectData, SecretProviderClass, SecretProviderClassSpec, plan_class,
};
pub use manifest::{ManifestError, load_manifest, objects_origin};
