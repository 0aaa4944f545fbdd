//! kubelet's plugin registration, served by the driver itself instead of a
//! node-driver-registrar sidecar: a socket under `<kubelet>/plugins_registry/`
//! that kubelet's plugin watcher finds, asks for the driver's name and CSI
//! socket, and answers with its verdict. Whenever the socket disappears or is
//! replaced (kubelet restarted on a cleaned directory, an operator removed
//! it), it is bound again: a new socket is what makes kubelet register anew.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UnixListener;
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use super::server::{Connection, bind_fresh};

#[allow(clippy::all, clippy::pedantic)]
mod proto {
    tonic::include_proto!("pluginregistration");
}

pub use proto::registration_client::RegistrationClient;
use proto::registration_server::{Registration as RegistrationApi, RegistrationServer};
pub use proto::{InfoRequest, PluginInfo, RegistrationStatus};

/// The CSI versions kubelet may pick from.
const CSI_VERSIONS: &[&str] = &["1.0.0"];

/// How often the socket is checked for removal or replacement.
const WATCH_EVERY: Duration = Duration::from_secs(2);

/// What the driver tells kubelet.
#[derive(Debug, Clone)]
pub struct Registration {
    /// The registration socket, as this process sees it.
    pub socket: PathBuf,
    pub driver_name: String,
    /// The CSI socket's path on the host (kubelet dials it there).
    pub csi_endpoint_on_host: PathBuf,
}

impl Registration {
    /// `<dir>/<driver>-reg.sock`, the name node-driver-registrar uses, so a
    /// driver moving off the sidecar replaces its socket rather than adding
    /// a second one.
    pub fn socket_in(dir: &Path, driver_name: &str) -> PathBuf {
        dir.join(format!("{driver_name}-reg.sock"))
    }

    fn info(&self) -> PluginInfo {
        PluginInfo {
            r#type: "CSIPlugin".into(),
            name: self.driver_name.clone(),
            endpoint: self.csi_endpoint_on_host.display().to_string(),
            supported_versions: CSI_VERSIONS.iter().map(|v| (*v).into()).collect(),
        }
    }
}

/// kubelet's last verdict on the registration (none yet: `None`).
#[derive(Debug, Default)]
pub struct RegistrationVerdict(Mutex<Option<Result<(), String>>>);

impl RegistrationVerdict {
    pub fn get(&self) -> Option<Result<(), String>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(super) fn set(&self, verdict: Result<(), String>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(verdict);
    }
}

struct RegistrationService {
    info: PluginInfo,
    verdict: Arc<RegistrationVerdict>,
}

#[tonic::async_trait]
impl RegistrationApi for RegistrationService {
    async fn get_info(&self, _: Request<InfoRequest>) -> Result<Response<PluginInfo>, Status> {
        tracing::info!(driver = %self.info.name, "kubelet asked for the plugin's registration");
        Ok(Response::new(self.info.clone()))
    }

    async fn notify_registration_status(
        &self,
        request: Request<RegistrationStatus>,
    ) -> Result<Response<proto::RegistrationStatusResponse>, Status> {
        let status = request.into_inner();
        if status.plugin_registered {
            tracing::info!(driver = %self.info.name, "kubelet registered the driver");
            self.verdict.set(Ok(()));
        } else {
            tracing::error!(driver = %self.info.name, error = %status.error, "kubelet refused the driver's registration");
            self.verdict.set(Err(status.error));
        }
        Ok(Response::new(proto::RegistrationStatusResponse {}))
    }
}

/// Serves the registration socket until `stop` turns true, binding it again
/// whenever it is removed or replaced (one server throughout: a connection
/// kubelet keeps open never holds up a new socket); removes it on the way
/// out, so that kubelet deregisters a driver that is gone.
pub async fn serve_registration(
    registration: Registration,
    verdict: Arc<RegistrationVerdict>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let path = registration.socket.clone();
    let info = registration.info();
    let socket = Socket::bind(path.clone())?;
    tracing::info!(socket = %path.display(), endpoint = %info.endpoint, "serving kubelet plugin registration");
    let inode = socket.inode.clone();
    let incoming = futures::stream::unfold(socket, |mut socket| async move {
        let accepted = socket.accept().await;
        Some((accepted, socket))
    });
    let mut stopped = stop.clone();
    tonic::transport::Server::builder()
        .add_service(RegistrationServer::new(RegistrationService {
            info,
            verdict,
        }))
        .serve_with_incoming_shutdown(incoming, async move {
            let _ = stopped.wait_for(|s| *s).await;
        })
        .await?;
    if std::fs::symlink_metadata(&path).is_ok_and(|m| m.ino() == inode.load(Ordering::Acquire)) {
        let _ = std::fs::remove_file(&path);
    }
    Ok(())
}

/// The registration socket, bound again when it stops being ours.
struct Socket {
    path: PathBuf,
    listener: UnixListener,
    inode: Arc<AtomicU64>,
    check: tokio::time::Interval,
}

impl Socket {
    fn bind(path: PathBuf) -> anyhow::Result<Self> {
        let listener = bind_fresh(&path)?;
        let inode = Arc::new(AtomicU64::new(inode_of(&path).unwrap_or(0)));
        let mut check = tokio::time::interval(WATCH_EVERY);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Ok(Socket {
            path,
            listener,
            inode,
            check,
        })
    }

    /// The next connection; between connections, the socket is checked and
    /// bound again if it was removed or replaced.
    async fn accept(&mut self) -> std::io::Result<Connection> {
        loop {
            tokio::select! {
                accepted = self.listener.accept() => {
                    return accepted.map(|(stream, _)| Connection::new(stream));
                }
                _ = self.check.tick() => {
                    let ours = self.inode.load(Ordering::Acquire);
                    let is_ours = std::fs::symlink_metadata(&self.path)
                        .is_ok_and(|m| m.ino() == ours && m.file_type().is_socket());
                    if is_ours {
                        continue;
                    }
                    tracing::warn!(socket = %self.path.display(), "the registration socket was removed or replaced; binding it again so that kubelet registers the driver anew");
                    match bind_fresh(&self.path) {
                        Ok(listener) => {
                            self.listener = listener;
                            self.inode.store(inode_of(&self.path).unwrap_or(0), Ordering::Release);
                        }
                        // Tried again at the next check.
                        Err(e) => tracing::error!(error = %e, "cannot bind the registration socket again"),
                    }
                }
            }
        }
    }
}

fn inode_of(path: &Path) -> Option<u64> {
    std::fs::symlink_metadata(path).ok().map(|m| m.ino())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_kubelet_a_csi_plugin_its_name_and_host_socket() {
        let r = Registration {
            socket: Registration::socket_in(Path::new("/registration"), "secrets-store.x.io"),
            driver_name: "secrets-store.x.io".into(),
            csi_endpoint_on_host: "/var/lib/kubelet/plugins/secrets-store.x.io/csi.sock".into(),
        };
        assert_eq!(
            r.socket,
            Path::new("/registration/secrets-store.x.io-reg.sock")
        );
        let info = r.info();
        assert_eq!(info.r#type, "CSIPlugin");
        assert_eq!(info.name, "secrets-store.x.io");
        assert_eq!(
            info.endpoint,
            "/var/lib/kubelet/plugins/secrets-store.x.io/csi.sock"
        );
        assert_eq!(info.supported_versions, ["1.0.0"]);
    }

    #[test]
    fn the_verdict_is_kubelets_last_word() {
        let v = RegistrationVerdict::default();
        assert_eq!(v.get(), None);
        v.set(Err("version unsupported".into()));
        assert_eq!(v.get(), Some(Err("version unsupported".into())));
        v.set(Ok(()));
        assert_eq!(v.get(), Some(Ok(())));
    }
}
