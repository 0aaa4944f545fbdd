//! Serving the CSI services on a unix socket until shutdown.

use std::future::Future;
use std::io;
use std::os::unix::fs::PermissionsExt;
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
    // Bound under a staging name, given its mode, then renamed into place:
    // under umask 0 a new socket is 0777, and anyone on the node who can
    // reach the directory could call the driver before a chmod. Its clients
    // (kubelet, a registrar sidecar) run as root.
    let staging = staging_path(path);
    let _ = std::fs::remove_file(&staging);
    let listener = UnixListener::bind(&staging)
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", path.display()))?;
    let placed = std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(SOCKET_MODE))
        .and_then(|()| std::fs::rename(&staging, path));
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&staging);
        return Err(anyhow::anyhow!(
            "cannot make socket {} owner and group only: {e}",
            path.display()
        ));
    }
    Ok(listener)
}

/// The mode of every socket the driver serves: owner and group (root).
pub(super) const SOCKET_MODE: u32 = 0o660;

/// A sibling of `path`, hidden, unique to this process.
fn staging_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.new", std::process::id()))
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

    #[tokio::test]
    async fn sockets_are_owner_and_group_only_whatever_the_umask() {
        use std::os::unix::fs::FileTypeExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/csi.sock");
        // A stale socket of a previous run is replaced.
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let _listener = bind_fresh(&path).unwrap();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o7777, SOCKET_MODE);
        // Nothing else is left beside it, and it answers under its name.
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [std::ffi::OsString::from("csi.sock")]);
        tokio::net::UnixStream::connect(&path).await.unwrap();
    }
}
