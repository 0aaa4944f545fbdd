//! Leader election on a `coordination.k8s.io` Lease: one replica syncs, the
//! others wait to take over. A replica that cannot renew in time stops (the
//! Deployment starts it again as a follower), so two never sync at once for
//! longer than a lease.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Api;
use kube::api::{ObjectMeta, PostParams};

/// Who holds the lease, for how long.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// This replica's name (the pod name).
    pub identity: String,
    pub duration: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("Lease {namespace}/{name}: {message}")]
    Api {
        namespace: String,
        name: String,
        message: String,
    },
    #[error("Lease {namespace}/{name}: lost to {holder}")]
    Lost {
        namespace: String,
        name: String,
        holder: String,
    },
}

pub struct Elector {
    api: Api<Lease>,
    config: LeaseConfig,
    fence: Arc<Fence>,
}

/// Whether this replica may still write. A leader that was paused (a
/// SIGSTOP, a stalled node) past its Lease resumes with writes in flight
/// while another replica leads; every write checks the fence first, and the
/// fence holds only while the last renewal (timed from before its request
/// was sent) is younger than four fifths of the Lease: a margin for clocks
/// and for the write's own time on the wire.
#[derive(Debug)]
pub struct Fence {
    renewed: Mutex<Option<Instant>>,
    valid_for: Duration,
}

#[derive(Debug, thiserror::Error)]
#[error("this replica no longer holds the Lease (last renewed {0:?} ago); the write was not made")]
pub struct Fenced(pub Duration);

impl Fence {
    pub fn new(lease: Duration) -> Self {
        Fence {
            renewed: Mutex::new(None),
            valid_for: lease * 4 / 5,
        }
    }

    fn renewed_at(&self, at: Instant) {
        *self.renewed.lock().unwrap_or_else(|p| p.into_inner()) = Some(at);
    }

    /// No more writes: this replica is handing the Lease over.
    fn close(&self) {
        *self.renewed.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Ok while the Lease is surely still ours.
    pub fn check(&self) -> Result<(), Fenced> {
        match *self.renewed.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(at) if at.elapsed() < self.valid_for => Ok(()),
            Some(at) => Err(Fenced(at.elapsed())),
            None => Err(Fenced(Duration::MAX)),
        }
    }
}

fn now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

impl Elector {
    pub fn new(client: kube::Client, config: LeaseConfig) -> Self {
        Elector {
            api: Api::namespaced(client, &config.namespace),
            fence: Arc::new(Fence::new(config.duration)),
            config,
        }
    }

    /// The fence every write of the leader checks.
    pub fn fence(&self) -> Arc<Fence> {
        self.fence.clone()
    }

    fn error(&self, message: impl std::fmt::Display) -> LeaseError {
        LeaseError::Api {
            namespace: self.config.namespace.clone(),
            name: self.config.name.clone(),
            message: message.to_string(),
        }
    }

    /// Waits until this replica holds the lease.
    pub async fn acquire(&self) -> Result<(), LeaseError> {
        loop {
            let sent = Instant::now();
            match self.try_acquire().await {
                Ok(true) => {
                    self.fence.renewed_at(sent);
                    return Ok(());
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "cannot take the lease yet"),
            }
            tokio::time::sleep(self.config.duration / 3).await;
        }
    }

    /// Renews the lease until it is lost; returns why.
    pub async fn hold(&self) -> LeaseError {
        let mut last_renewal = Instant::now();
        loop {
            tokio::time::sleep(self.config.duration / 3).await;
            let sent = Instant::now();
            match self.try_acquire().await {
                Ok(true) => {
                    last_renewal = sent;
                    self.fence.renewed_at(sent);
                }
                Ok(false) => {
                    let holder = self
                        .api
                        .get_opt(&self.config.name)
                        .await
                        .ok()
                        .flatten()
                        .and_then(|l| l.spec?.holder_identity)
                        .unwrap_or_default();
                    return LeaseError::Lost {
                        namespace: self.config.namespace.clone(),
                        name: self.config.name.clone(),
                        holder,
                    };
                }
                Err(e) => {
                    // Not renewed within the lease: another replica may hold
                    // it by now.
                    if last_renewal.elapsed() >= self.config.duration {
                        return e;
                    }
                    tracing::warn!(error = %e, "cannot renew the lease; retrying");
                }
            }
        }
    }

    /// At shutdown (a rollout, a drained node): the fence closes, then the
    /// Lease is given up (no holder), so that another replica takes it at
    /// its next try instead of waiting out the Lease. Best effort: if it
    /// fails, the Lease expires as it would have.
    pub async fn release(&self) {
        self.fence.close();
        let Ok(Some(mut lease)) = self.api.get_opt(&self.config.name).await else {
            return;
        };
        let Some(spec) = lease.spec.as_mut() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => tracing::info!("Lease released"),
            Err(e) => {
                tracing::warn!(error = %e, "could not release the Lease; it expires by itself")
            }
        }
    }

    /// One attempt: create the lease, renew ours, or take an expired one.
    /// The update carries the resourceVersion read, so two replicas cannot
    /// both win.
    async fn try_acquire(&self) -> Result<bool, LeaseError> {
        let me = &self.config.identity;
        let seconds = self.config.duration.as_secs().max(1) as i32;
        let Some(mut lease) = self
            .api
            .get_opt(&self.config.name)
            .await
            .map_err(|e| self.error(e))?
        else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.name.clone()),
                    namespace: Some(self.config.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(me.clone()),
                    lease_duration_seconds: Some(seconds),
                    acquire_time: Some(now()),
                    renew_time: Some(now()),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(self.error(e)),
            };
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let expired = spec.renew_time.as_ref().is_none_or(|t| {
            let age = k8s_openapi::jiff::Timestamp::now().duration_since(t.0);
            let limit = spec.lease_duration_seconds.unwrap_or(seconds);
            age.as_secs() >= i64::from(limit)
        });
        if holder != *me && !holder.is_empty() && !expired {
            return Ok(false);
        }
        if holder != *me {
            spec.holder_identity = Some(me.clone());
            spec.acquire_time = Some(now());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.renew_time = Some(now());
        spec.lease_duration_seconds = Some(seconds);
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(self.error(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fence_closes_when_the_lease_was_not_renewed_in_time() {
        let fence = Fence::new(Duration::from_millis(500));
        assert!(fence.check().is_err(), "never acquired");
        fence.renewed_at(Instant::now());
        assert!(fence.check().is_ok());
        // A pause past four fifths of the Lease: closed, whatever the
        // process thinks it is doing.
        fence.renewed_at(Instant::now() - Duration::from_millis(401));
        let e = fence.check().unwrap_err();
        assert!(e.to_string().contains("no longer holds the Lease"), "{e}");
        fence.renewed_at(Instant::now());
        assert!(fence.check().is_ok(), "open again after a renewal");
    }
}
