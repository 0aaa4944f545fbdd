//! Step "spc": a SecretProviderClass -> a validated [`MountPlan`]. Pure.

mod class;
mod manifest;
mod paths;
mod plan;
#[cfg(test)]
mod properties;

pub use class::{SecretObject, SecretObjectData, SecretProviderClass, SecretProviderClassSpec};
pub use manifest::{ManifestError, load_manifest};
pub use paths::{FilePath, PathRule, PathTranslation};
pub use plan::{
    AddressPreference, AuthMode, DEFAULT_FILE_MODE, FileSpec, JmesFile, MountPlan, ObjectRef,
    ObjectType, PlanError, PlannedObject, RoleChain, is_role_arn, plan, plan_class,
};
