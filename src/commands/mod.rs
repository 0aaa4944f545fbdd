//! The subcommands: `serve` (the DaemonSet), `check` and `mount` (the same
//! pipeline from the command line, without Kubernetes).

mod check;
mod mount;
mod serve;

pub use check::{CheckArgs, check};
pub use mount::{MountArgs, mount};
pub use serve::{ServeArgs, parse_size, serve};

use aws_config::{BehaviorVersion, SdkConfig};

/// The standard AWS configuration (environment, profile, `AWS_ENDPOINT_URL`,
/// ...), with a pinned behaviour version so an SDK upgrade cannot silently
/// change retries or timeouts.
pub async fn aws_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::v2026_01_12())
        .load()
        .await
}

/// Reads and plans a class file, with the message the driver would give.
fn load_class(file: &std::path::Path) -> anyhow::Result<crate::spc::SecretProviderClass> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
    crate::spc::load_manifest(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))
}

/// `namespace/name` of a class, as messages name it.
fn class_id(class: &crate::spc::SecretProviderClass) -> String {
    format!(
        "{}/{}",
        class.metadata.namespace.as_deref().unwrap_or("default"),
        class.metadata.name.as_deref().unwrap_or("")
    )
}
