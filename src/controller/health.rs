//! The controller's readiness and liveness, for the Deployment's probes.
//!
//! `/readyz`: a standby replica (waiting for the Lease) is ready, and the
//! leader once its watches of ExternalSecrets and stores have listed and
//! the sync loop runs. A standby must be ready: during a rolling update the
//! new pod waits for the old one's Lease, and a new pod never ready would
//! keep the old one from being replaced. Not ready: starting, and a leader
//! that has not listed yet (its syncs would wait).
//!
//! `/livez`: the task that runs the controller (watches, syncs, the Lease)
//! was polled within [`LIVE_WITHIN`]: a task blocked or starved stops its
//! heartbeat, and kubelet restarts the pod.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::http_endpoint::HttpLimits;

/// How stale the heartbeat may be before `/livez` fails.
pub const LIVE_WITHIN: Duration = Duration::from_secs(30);
const BEAT: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    Starting = 0,
    /// Waiting for the Lease.
    Standby = 1,
    /// Leading; the watches have not listed yet.
    Listing = 2,
    /// Leading, listed, syncing.
    Syncing = 3,
}

#[derive(Debug)]
pub struct Health {
    phase: AtomicU8,
    started: Instant,
    /// Milliseconds after `started` of the last heartbeat.
    beat_ms: AtomicU64,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            phase: AtomicU8::new(Phase::Starting as u8),
            started: Instant::now(),
            beat_ms: AtomicU64::new(0),
        }
    }
}

impl Health {
    pub fn set(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Relaxed);
    }

    pub fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Relaxed) {
            1 => Phase::Standby,
            2 => Phase::Listing,
            3 => Phase::Syncing,
            _ => Phase::Starting,
        }
    }

    pub fn ready(&self) -> Result<(), &'static str> {
        match self.phase() {
            Phase::Standby | Phase::Syncing => Ok(()),
            Phase::Starting => Err("starting"),
            Phase::Listing => Err("leading; the watches have not listed yet"),
        }
    }

    fn beat(&self) {
        self.beat_ms
            .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    pub fn live(&self, now: Instant) -> Result<(), String> {
        let last = self.started + Duration::from_millis(self.beat_ms.load(Ordering::Relaxed));
        let since = now.saturating_duration_since(last);
        if since > LIVE_WITHIN {
            Err(format!(
                "the controller's task was last polled {since:?} ago"
            ))
        } else {
            Ok(())
        }
    }

    /// Beats while polled: run it in the same task as the controller.
    pub async fn heartbeat(&self) -> std::convert::Infallible {
        let mut every = tokio::time::interval(BEAT);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            self.beat();
        }
    }
}

/// Serves `/readyz` and `/livez` on `addr` until `stop` turns true: 200
/// "ok", or 503 with the reason.
pub async fn serve(
    addr: SocketAddr,
    health: Arc<Health>,
    limits: HttpLimits,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    use axum::http::StatusCode;
    use axum::routing::get;
    let answer = |r: Result<(), String>| match r {
        Ok(()) => (StatusCode::OK, "ok".to_owned()),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, why),
    };
    let ready = health.clone();
    let app = axum::Router::new()
        .route(
            "/readyz",
            get(move || {
                let r = ready.ready().map_err(str::to_owned);
                async move { answer(r) }
            }),
        )
        .route(
            "/livez",
            get(move || {
                let r = health.live(Instant::now());
                if let Err(why) = &r {
                    tracing::warn!(reason = %why, "liveness check failed");
                }
                async move { answer(r) }
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

    #[test]
    fn ready_when_standby_or_syncing_not_before_the_first_list() {
        let h = Health::default();
        assert!(h.ready().is_err());
        h.set(Phase::Standby);
        assert_eq!(h.ready(), Ok(()));
        h.set(Phase::Listing);
        assert!(h.ready().is_err());
        h.set(Phase::Syncing);
        assert_eq!(h.ready(), Ok(()));
    }

    #[tokio::test]
    async fn live_while_the_heartbeat_is_polled() {
        let h = Arc::new(Health::default());
        let beating = tokio::spawn({
            let h = h.clone();
            async move { h.heartbeat().await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(h.live(Instant::now()), Ok(()));
        beating.abort();
        // No beat for longer than LIVE_WITHIN.
        let later = Instant::now() + LIVE_WITHIN + Duration::from_secs(1);
        assert!(h.live(later).is_err());
    }
}
