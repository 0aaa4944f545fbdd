//! The liveness endpoint kubelet probes, served by the driver itself instead
//! of a livenessprobe sidecar: healthy while the CSI socket accepts
//! connections and kubelet has not refused the registration.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::registration::RegistrationVerdict;
use crate::http_endpoint::HttpLimits;

/// What `/healthz` checks.
#[derive(Clone)]
pub struct Health {
    /// The CSI socket, as this process sees it.
    pub csi_socket: PathBuf,
    /// kubelet's verdict, where the driver registers itself.
    pub registration: Option<Arc<RegistrationVerdict>>,
}

impl Health {
    /// `Err` says why the driver should be restarted.
    pub async fn check(&self) -> Result<(), String> {
        match tokio::time::timeout(
            Duration::from_secs(3),
            tokio::net::UnixStream::connect(&self.csi_socket),
        )
        .await
        {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                return Err(format!(
                    "the CSI socket {} does not answer: {e}",
                    self.csi_socket.display()
                ));
            }
            Err(_) => {
                return Err(format!(
                    "the CSI socket {} did not answer within 3s",
                    self.csi_socket.display()
                ));
            }
        }
        match self.registration.as_ref().and_then(|r| r.get()) {
            Some(Err(e)) => Err(format!("kubelet refused the registration: {e}")),
            _ => Ok(()),
        }
    }
}

/// Serves `/healthz` on `addr` within `limits` until `stop` turns true:
/// 200 "ok", or 503 with the reason.
pub async fn serve_health(
    addr: SocketAddr,
    health: Health,
    limits: HttpLimits,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    use axum::http::StatusCode;
    use axum::routing::get;
    let app = axum::Router::new().route(
        "/healthz",
        get(move || {
            let health = health.clone();
            async move {
                match health.check().await {
                    Ok(()) => (StatusCode::OK, "ok".to_owned()),
                    Err(why) => {
                        tracing::warn!(reason = %why, "health check failed");
                        (StatusCode::SERVICE_UNAVAILABLE, why)
                    }
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen for health checks on {addr}: {e}"))?;
    tracing::info!(%addr, "serving health checks");
    crate::http_endpoint::serve(listener, app, limits, async move {
        let _ = stop.wait_for(|s| *s).await;
    })
    .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unhealthy_without_a_listening_socket_or_after_a_refusal() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("csi.sock");
        let verdict = Arc::new(RegistrationVerdict::default());
        let health = Health {
            csi_socket: socket.clone(),
            registration: Some(verdict.clone()),
        };
        let why = health.check().await.unwrap_err();
        assert!(why.contains("does not answer"), "{why}");
        let _listener = tokio::net::UnixListener::bind(&socket).unwrap();
        assert_eq!(health.check().await, Ok(()));
        verdict.set(Err("no such version".into()));
        assert_eq!(
            health.check().await,
            Err("kubelet refused the registration: no such version".into())
        );
    }
}
