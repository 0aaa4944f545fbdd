//! The subcommands: `serve` (the DaemonSet), `check` and `mount` (the same
//! pipeline from the command line, without Kubernetes), `crds` (the
//! External Secrets CRDs).

mod check;
mod crds;
mod diagnose;
mod mount;
mod serve;

pub use check::{CheckArgs, check};
pub use crds::{CrdsArgs, crds};
pub use diagnose::{DiagnoseArgs, diagnose};
pub use mount::{MountArgs, mount};
pub(crate) use serve::spawn_logged;
pub use serve::{ServeArgs, parse_listen_addr, parse_size, serve};

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
    // CloudTrail's userAgent then names who called: `app/aws-secrets-csi-<version>`.
    let app = aws_config::AppName::new(concat!("aws-secrets-csi-", env!("CARGO_PKG_VERSION")))
        .expect("a valid app name");
    aws_config::defaults(BehaviorVersion::v2026_01_12())
        .app_name(app)
        .http_client(https)
        .load()
        .await
}
/// The Kubernetes client (in-cluster or KUBECONFIG), without kube's own
/// retry of 429/503/504: it backs off for minutes, past kubelet's deadline.
/// A failed read fails the publish as Unavailable and kubelet retries it;
/// the watches and the refresh-time writes have their own backoff.
///
/// At most [`API_REQUESTS_AT_ONCE`] requests wait for their answer at a
/// time (tower's permit goes with the response future, so a watch holds
/// one only until its answer starts). kube's client speaks HTTP/1.1, so
/// every concurrent request is a TLS connection of its own, and its pool
/// keeps each one open for 90 s: in tests/load.rs, 500 publishes at once
/// left hundreds of idle connections, and the driver grew by 53-66 MiB
/// instead of 37.
pub(crate) async fn kube_client() -> anyhow::Result<kube::Client> {
    let cannot = |e: &dyn std::fmt::Display| {
        anyhow::anyhow!("cannot configure the Kubernetes client (in-cluster or KUBECONFIG): {e}")
    };
    let mut config = kube::Config::infer().await.map_err(|e| cannot(&e))?;
    config.default_retry = false;
    Ok(kube::client::ClientBuilder::try_from(config)
        .map_err(|e| cannot(&e))?
        .with_layer(&tower::limit::ConcurrencyLimitLayer::new(
            API_REQUESTS_AT_ONCE,
        ))
        .build())
}

/// Enough for a node's publishes (most need no request at all: classes and
/// accounts come from watches) and a controller's syncs.
const API_REQUESTS_AT_ONCE: usize = 16;

/// A class read from a file, with the file's text (for positions).
struct ClassFile {
    path: std::path::PathBuf,
    text: String,
    class: crate::spc::SecretProviderClass,
}

impl ClassFile {
    fn read(file: &std::path::Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(file)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
        let class = crate::spc::load_manifest(&text)
            .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        Ok(ClassFile {
            path: file.to_path_buf(),
            text,
            class,
        })
    }

    /// `namespace/name` of the class, as messages name it.
    fn id(&self) -> String {
        class_id(&self.class)
    }

    /// A planning error as the user should read it: a YAML error inside
    /// `objects` is placed in the file the user wrote.
    fn error(&self, e: &crate::spc::PlanError) -> anyhow::Error {
        if let crate::spc::PlanError::Yaml {
            line,
            column,
            message,
        } = e.cause()
            && let Some((start, indent)) = crate::spc::objects_origin(&self.text)
        {
            return anyhow::anyhow!(
                "SecretProviderClass {}: Failed to load SecretProviderClass: {}:{}:{}: {message} (inside parameters.objects, at its line {line} column {column})",
                self.id(),
                self.path.display(),
                start + line,
                indent + column
            );
        }
        anyhow::anyhow!("SecretProviderClass {}: {e}", self.id())
    }
}

/// `namespace/name` of a class, as messages name it.
fn class_id(class: &crate::spc::SecretProviderClass) -> String {
    format!(
        "{}/{}",
        class.metadata.namespace.as_deref().unwrap_or("default"),
        class.metadata.name.as_deref().unwrap_or("")
    )
}
