//! Serving the CSI services on a unix socket until shutdown.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{UnixListener, UnixStream};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::server::Connected;

use super::authority::AuthorityRewriter;

use super::{IdentityService, NodeService};
use crate::proto::identity_server::IdentityServer;
use crate::proto::node_server::NodeServer;

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

/// The CSI socket, bound (a stale one left by a previous run removed) before
/// anything tells kubelet to call it.
pub struct CsiListener {
    listener: UnixListener,
    path: PathBuf,
}

impl CsiListener {
    pub fn bind(endpoint: &Endpoint) -> anyhow::Result<Self> {
        Ok(CsiListener {
            listener: bind_fresh(endpoint.path())?,
            path: endpoint.path().to_path_buf(),
        })
    }
}

/// Serves CSI Identity and Node until `shutdown` resolves; in-flight calls
/// are allowed to finish.
pub async fn serve(
    socket: CsiListener,
    identity: IdentityService,
    node: NodeService,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let CsiListener { listener, path } = socket;
    tracing::info!(socket = %path.display(), "serving CSI Identity and Node");
    let result = tonic::transport::Server::builder()
        .add_service(IdentityServer::new(identity))
        .add_service(NodeServer::new(node))
        .serve_with_incoming_shutdown(
            UnixListenerStream::new(listener).map(|s| s.map(Connection::new)),
            shutdown,
        )
        .await;
    let _ = std::fs::remove_file(&path);
    result.map_err(Into::into)
}

/// Binds a unix socket at `path`, removing a stale one left by a previous
/// run and creating its directory.
pub(super) fn bind_fresh(path: &Path) -> anyhow::Result<UnixListener> {
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
    UnixListener::bind(path)
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", path.display()))
}

/// One client's connection, its requests' `:authority` made acceptable to
/// h2 on the way in (see [`AuthorityRewriter`]).
pub(super) struct Connection {
    stream: UnixStream,
    rewriter: AuthorityRewriter,
    /// Rewritten bytes not yet read, from `offset`.
    ready: Vec<u8>,
    offset: usize,
}

impl Connection {
    pub(super) fn new(stream: UnixStream) -> Self {
        Connection {
            stream,
            rewriter: AuthorityRewriter::default(),
            ready: Vec::new(),
            offset: 0,
        }
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        while this.offset == this.ready.len() {
            this.ready.clear();
            this.offset = 0;
            let mut raw = [0u8; 8192];
            let mut raw = ReadBuf::new(&mut raw);
            ready!(Pin::new(&mut this.stream).poll_read(cx, &mut raw))?;
            if raw.filled().is_empty() {
                return Poll::Ready(Ok(())); // end of stream
            }
            this.rewriter
                .feed(raw.filled(), &mut this.ready)
                .map_err(|_| {
                    io::Error::new(io::ErrorKind::InvalidData, "header block too large")
                })?;
        }
        let n = buf.remaining().min(this.ready.len() - this.offset);
        buf.put_slice(&this.ready[this.offset..this.offset + n]);
        this.offset += n;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

impl Connected for Connection {
    type ConnectInfo = <UnixStream as Connected>::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
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
