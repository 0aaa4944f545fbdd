//! Step "spc": a SecretProviderClass's parameters -> a validated
//! [`MountPlan`]. Pure.

mod paths;
mod plan;
#[cfg(test)]
mod properties;
mod templates;

pub use paths::{FilePath, PathRule, PathTranslation};
pub use plan::{
    AddressPreference, AuthMode, DEFAULT_FILE_MODE, FileSpec, JmesFile, MountPlan, ObjectRef,
    ObjectType, PlanError, PlannedObject, RoleChain, VolumeLimits, is_role_arn, lint, plan,
    plan_within,
};
pub use templates::{DEFAULT_TEMPLATE_MODE, MAX_TEMPLATE_BYTES, TemplateFile, template_label};
