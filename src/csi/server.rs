//! Serving the CSI services on a unix socket until shutdown.

use std::future::Future;
use std::path::{Path, PathBuf};

use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;

use super::proto::identity_server::IdentityServer;
use super::proto::node_server::NodeServer;
use super::{IdentityService, NodeService};

/// A CSI endpoint: `unix:///path/csi.sock` or a bare `/path/csi.sock`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint(PathBuf);

impl std::str::FromStr for Endpoint {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let path = s.strip_prefix("unix://").unwrap_or(s);
        if path.starts_with('/') {
            Ok(Endpoint(PathBuf::from(path)))
        } else {
            Err(format!(
                "endpoint {s:?} must be unix:///absolute/path or /absolute/path"
            ))
        }
    }
}

impl Endpoint {
    pub fn path(&self) -> &Path {
        &self.0
    }
}

/// Binds the socket (removing a stale one left by a previous run) and serves
/// until `shutdown` resolves; in-flight calls are allowed to finish.
pub async fn serve(
    endpoint: &Endpoint,
    identity: IdentityService,
    node: NodeService,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let path = endpoint.path();
    match std::fs::remove_file(path) {
        Ok(()) => tracing::info!(socket = %path.display(), "removed stale socket"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(anyhow::anyhow!(
                "cannot remove stale socket {}: {e}",
                path.display()
            ));
        }
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| {
            anyhow::anyhow!("cannot create socket directory {}: {e}", dir.display())
        })?;
    }
    let listener = UnixListener::bind(path)
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", path.display()))?;
    tracing::info!(socket = %path.display(), "serving CSI Identity and Node");
    let result = tonic::transport::Server::builder()
        .add_service(IdentityServer::new(identity))
        .add_service(NodeServer::new(node))
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
        .await;
    let _ = std::fs::remove_file(path);
    result.map_err(Into::into)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(
            "unix:///csi/csi.sock".parse::<Endpoint>().unwrap().path(),
            Path::new("/csi/csi.sock")
        );
        assert_eq!(
            "/csi/csi.sock".parse::<Endpoint>().unwrap().path(),
            Path::new("/csi/csi.sock")
        );
        assert!("tcp://1.2.3.4:5".parse::<Endpoint>().is_err());
        assert!("unix://relative".parse::<Endpoint>().is_err());
    }
}
