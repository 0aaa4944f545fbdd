use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use crate::cluster::Cluster;
use crate::csi::{self, Endpoint, IdentityService, NodeService};
use crate::fetch::Fetcher;
use crate::identity::WebIdentity;
use crate::publish::{PublishConfig, Publisher};
use crate::volume::TmpfsOptions;

/// The CSI node server (what the DaemonSet runs).
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// CSI socket: unix:///path/csi.sock
    #[arg(long, env = "CSI_ENDPOINT", default_value = "unix:///csi/csi.sock")]
    pub endpoint: Endpoint,
    /// This node's name (the DaemonSet passes spec.nodeName).
    #[arg(long, env = "NODE_ID")]
    pub node_id: String,
    /// The CSI driver name, as in the CSIDriver object and pod volumes.
    #[arg(
        long,
        env = "DRIVER_NAME",
        default_value = "secrets-store.aws-secrets-csi.io"
    )]
    pub driver_name: String,
    /// Size cap of each volume's tmpfs (Ki, Mi, Gi suffixes).
    #[arg(long, default_value = "16Mi", value_parser = parse_size)]
    pub tmpfs_size: u64,
    /// How long a first publish may take before it is abandoned and cleaned
    /// up; below kubelet's 2-minute deadline.
    #[arg(long, default_value = "100s", value_parser = humantime::parse_duration)]
    pub publish_timeout: Duration,
}

pub async fn serve(args: &ServeArgs) -> anyhow::Result<()> {
    let sdk = super::aws_config().await;
    let kube = kube::Client::try_default().await.map_err(|e| {
        anyhow::anyhow!("cannot configure the Kubernetes client (in-cluster or KUBECONFIG): {e}")
    })?;
    let config = PublishConfig {
        default_region: sdk.region().map(|r| r.to_string()),
        tmpfs: TmpfsOptions {
            size_bytes: args.tmpfs_size,
            ..Default::default()
        },
        deadline: args.publish_timeout,
    };
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        driver = %args.driver_name,
        node = %args.node_id,
        region = config.default_region.as_deref().unwrap_or("(from each class)"),
        "starting"
    );
    let publisher = Publisher::new(
        Cluster::new(kube),
        WebIdentity::new(sdk.clone()),
        Fetcher::new(sdk),
        config,
    );
    let ready = Arc::new(AtomicBool::new(true));
    csi::serve(
        &args.endpoint,
        IdentityService::new(args.driver_name.clone(), ready),
        NodeService::new(args.node_id.clone(), Arc::new(publisher)),
        shutdown_signal(),
    )
    .await?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
}

/// A size such as `16Mi`, `512Ki`, `1Gi` or plain bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = digits.parse().map_err(|_| format!("invalid size {s:?}"))?;
    let factor = match unit {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        _ => return Err(format!("invalid size unit in {s:?}: use Ki, Mi or Gi")),
    };
    n.checked_mul(factor)
        .filter(|&v| v > 0)
        .ok_or_else(|| format!("invalid size {s:?}"))
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("16Mi"), Ok(16 << 20));
        assert_eq!(parse_size("512Ki"), Ok(512 << 10));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("0").is_err());
        assert!(parse_size("1MB").is_err());
        assert!(parse_size("Mi").is_err());
    }
}
