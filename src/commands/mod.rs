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
///
/// Its HTTPS client is the SDK's default one (rustls with aws-lc, proxies
/// from the environment), made once here: without it, every service client
/// made from the config builds its own, so each fetch had a fresh connection
/// pool, TLS setup and root store, and no connection to AWS was reused.
pub async fn aws_config() -> SdkConfig {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    use aws_smithy_http_client::{Builder, Connector, proxy::ProxyConfig};
    let https = Builder::new().build_with_connector_fn(|settings, components| {
        let mut connector = Connector::builder().tls_provider(Provider::Rustls(CryptoMode::AwsLc));
        connector.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            connector.set_sleep_impl(components.sleep_impl());
        }
        connector.set_proxy_config(Some(ProxyConfig::from_env()));
        connector.build()
    });
    aws_config::defaults(BehaviorVersion::v2026_01_12())
        .http_client(https)
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
