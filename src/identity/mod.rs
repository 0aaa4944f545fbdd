//! Step "identity": a pod's service-account token -> AWS credentials.
//!
//! - IRSA: `AssumeRoleWithWebIdentity` with the pod's `sts.amazonaws.com`
//!   token and the role annotated on its ServiceAccount.
//! - EKS Pod Identity: the node's Pod Identity agent, with the pod's
//!   `pods.eks.amazonaws.com` token.
//! - Then, optionally, a chain of `AssumeRole` calls (`assumeRoleArn`).
//!
//! Credentials are cached per identity key (everything that changes what IAM
//! allows) until shortly before they expire; a pod is never served
//! credentials obtained under another key.

mod cache;
pub mod issuer;
mod pod_identity;
mod proof;
mod sts;

use std::sync::Arc;
use std::time::Duration;

use aws_config::SdkConfig;
use aws_credential_types::Credentials;

pub use pod_identity::{AgentEndpoints, PodIdentityAgent};
pub use proof::{
    BoundPod, Claimant, NotProven, ProvenBy, ProvenTokens, TokenReviewed, judge, judge_pod,
};

use crate::aws::IdentityKey;
use crate::metrics::Metrics;
use crate::secret::Token;
use crate::spc::{AddressPreference, RoleChain};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error(
        "CSI token error: token for audience {0:?} not found - ensure tokenRequests includes this audience in the CSIDriver spec"
    )]
    TokenMissing(&'static str),
    #[error(
        "An IAM role must be associated with service account {service_account} (namespace: {namespace})"
    )]
    NoRole {
        namespace: String,
        service_account: String,
    },
    #[error("invalid role ARN {0:?} in annotation eks.amazonaws.com/role-arn")]
    BadRoleArn(String),
    #[error("{api} for {role} failed: {code}: {message}")]
    Sts {
        api: &'static str,
        role: String,
        code: String,
        message: String,
        /// HTTP status when STS answered; None for network errors.
        status: Option<u16>,
    },
    #[error("{api} for {role} returned no credentials")]
    NoCredentials { api: &'static str, role: String },
    #[error(
        "EKS Pod Identity agent refused the pod's token ({status}): {message}; check the pod identity association of service account {service_account} (namespace: {namespace})"
    )]
    AgentRefused {
        status: u16,
        message: String,
        namespace: String,
        service_account: String,
    },
    #[error("EKS Pod Identity agent unreachable at {tried}: {message}")]
    AgentUnavailable { tried: String, message: String },
    #[error("EKS Pod Identity agent answered with invalid credentials: {0}")]
    AgentAnswer(String),
    #[error(transparent)]
    NotProven(#[from] NotProven),
}

impl IdentityError {
    /// A refusal: retrying as is will not help, and another region would
    /// refuse too.
    pub fn is_client_error(&self) -> bool {
        match self {
            IdentityError::Sts { status, .. } => {
                status.is_some_and(|s| (400..500).contains(&s) && s != 429)
            }
            IdentityError::NoCredentials { .. }
            | IdentityError::AgentUnavailable { .. }
            | IdentityError::AgentAnswer(_) => false,
            _ => true,
        }
    }
}

/// Checks an IAM role ARN's shape: `arn:<partition>:iam::<account>:role/<name>`.
pub fn check_role_arn(arn: &str) -> Result<(), IdentityError> {
    if crate::spc::is_role_arn(arn) {
        Ok(())
    } else {
        Err(IdentityError::BadRoleArn(arn.to_owned()))
    }
}

/// A role session name that identifies the pod in CloudTrail:
/// `<namespace>@<pod>`, cut to STS's 64 characters, other characters as `-`.
pub fn session_name(namespace: &str, pod: &str) -> String {
    const SESSION_NAME_MAX: usize = 64;
    let raw = format!("{namespace}@{pod}");
    let mut name: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "+=,.@-_".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    name.truncate(SESSION_NAME_MAX);
    if name.len() < 2 {
        name = "aws-secrets-csi".to_owned();
    }
    name
}

/// Where a pod's first credentials come from.
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    Irsa {
        role_arn: &'a str,
        token: &'a Token,
    },
    PodIdentity {
        token: &'a Token,
        preference: AddressPreference,
    },
}

/// Everything needed to obtain one pod's credentials.
#[derive(Debug, Clone, Copy)]
pub struct IdentityRequest<'a> {
    pub namespace: &'a str,
    pub service_account: &'a str,
    /// For the role session name.
    pub pod: &'a str,
    pub source: Source<'a>,
    pub region: &'a str,
    /// STS in this region is asked when the primary region's STS is down.
    pub failover_region: Option<&'a str>,
    pub chain: Option<&'a RoleChain>,
}

/// Credentials, and whether they came from the cache.
#[derive(Debug, Clone)]
pub struct Obtained {
    pub credentials: Credentials,
    pub cached: bool,
}

/// Obtains and caches pod credentials.
pub struct Identities {
    base: SdkConfig,
    agent: PodIdentityAgent,
    cache: cache::CredentialCache,
    metrics: Arc<Metrics>,
}

impl Identities {
    pub fn new(base: SdkConfig, agent: PodIdentityAgent, metrics: Arc<Metrics>) -> Self {
        Identities {
            base,
            agent,
            cache: cache::CredentialCache::new(Duration::from_secs(300)),
            metrics,
        }
    }

    /// Credentials for `req`: from the cache while they are fresh, else from
    /// STS or the Pod Identity agent (then the role chain), then cached.
    /// `Obtained::cached` says which.
    pub async fn credentials(&self, req: &IdentityRequest<'_>) -> Result<Obtained, IdentityError> {
        self.get(req, true).await
    }

    /// Credentials for `req` from STS or the agent, whatever the cache
    /// holds: the pod's token is exchanged (and so proven) here and now.
    pub async fn exchange(&self, req: &IdentityRequest<'_>) -> Result<Obtained, IdentityError> {
        self.get(req, false).await
    }

    /// Credentials for `req` only if the cache holds them (a refresh the
    /// node was told of uses what it holds and exchanges no token).
    pub fn held(&self, req: &IdentityRequest<'_>) -> Option<Obtained> {
        if let Source::Irsa { role_arn, .. } = req.source {
            check_role_arn(role_arn).ok()?;
        }
        self.cache
            .get(&IdentityKey::of(req))
            .map(|credentials| Obtained {
                credentials,
                cached: true,
            })
    }

    async fn get(
        &self,
        req: &IdentityRequest<'_>,
        from_cache: bool,
    ) -> Result<Obtained, IdentityError> {
        if let Source::Irsa { role_arn, .. } = req.source {
            check_role_arn(role_arn)?;
        }
        let key = IdentityKey::of(req);
        let cached = || {
            from_cache
                .then(|| self.cache.get(&key))
                .flatten()
                .map(|credentials| Obtained {
                    credentials,
                    cached: true,
                })
        };
        if let Some(obtained) = cached() {
            return Ok(obtained);
        }
        // One call in flight per identity: pods that start together wait for
        // the first one's credentials instead of each asking STS.
        let gate = self.cache.gate(&key);
        let _one_at_a_time = gate.lock().await;
        if let Some(obtained) = cached() {
            return Ok(obtained);
        }
        self.obtain(req, key).await
    }

    async fn obtain(
        &self,
        req: &IdentityRequest<'_>,
        key: IdentityKey,
    ) -> Result<Obtained, IdentityError> {
        let session = session_name(req.namespace, req.pod);
        let mut credentials = match req.source {
            Source::Irsa { role_arn, token } => {
                let first = sts::web_identity(
                    &self.base,
                    req.region,
                    role_arn,
                    token,
                    &session,
                    &self.metrics,
                )
                .await;
                match (first, req.failover_region) {
                    (Err(e), Some(failover)) if !e.is_client_error() => {
                        tracing::warn!(region = req.region, failover, error = %e, "STS unavailable; trying the failover region");
                        sts::web_identity(
                            &self.base,
                            failover,
                            role_arn,
                            token,
                            &session,
                            &self.metrics,
                        )
                        .await?
                    }
                    (result, _) => result?,
                }
            }
            Source::PodIdentity { token, preference } => {
                self.agent
                    .credentials(
                        token,
                        preference,
                        req.namespace,
                        req.service_account,
                        &self.metrics,
                    )
                    .await?
            }
        };
        if let Some(chain) = req.chain {
            for (i, role) in chain.roles.iter().enumerate() {
                credentials = sts::assume_role(
                    &self.base,
                    req.region,
                    credentials,
                    role,
                    &session,
                    (i >= chain.plain).then_some(chain),
                    &self.metrics,
                )
                .await?;
            }
        }
        self.cache.put(key, credentials.clone());
        Ok(Obtained {
            credentials,
            cached: false,
        })
    }

    /// Drops the cached credentials of `req` (AWS refused them: revoked,
    /// expired early, or issued by an endpoint that forgot them).
    pub fn forget(&self, req: &IdentityRequest<'_>) {
        self.cache.remove(&IdentityKey::of(req));
    }

    /// Assumes the roles of `chain` one after the other, starting from
    /// `credentials` (the `mount` command's ambient credentials).
    pub async fn chain_from(
        &self,
        mut credentials: Credentials,
        region: &str,
        chain: &RoleChain,
        session: &str,
    ) -> Result<Credentials, IdentityError> {
        for (i, role) in chain.roles.iter().enumerate() {
            credentials = sts::assume_role(
                &self.base,
                region,
                credentials,
                role,
                session,
                (i >= chain.plain).then_some(chain),
                &self.metrics,
            )
            .await?;
        }
        Ok(credentials)
    }

    /// Assumes a role with a web-identity token, without caching (the
    /// `mount` command's `--role-arn`).
    /// The AWS configuration credentials are obtained with.
    pub fn base(&self) -> &SdkConfig {
        &self.base
    }

    pub async fn web_identity(
        &self,
        region: &str,
        role_arn: &str,
        token: &Token,
        session: &str,
    ) -> Result<Credentials, IdentityError> {
        check_role_arn(role_arn)?;
        sts::web_identity(&self.base, region, role_arn, token, session, &self.metrics).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_names_fit_sts_rules() {
        assert_eq!(session_name("shop", "web-7f9c"), "shop@web-7f9c");
        let long = session_name(&"n".repeat(63), &"p".repeat(253));
        assert_eq!(long.len(), 64);
        assert!(long.starts_with(&"n".repeat(63)));
        assert_eq!(session_name("a b", "c/d"), "a-b@c-d");
    }

    #[test]
    fn role_arn_shape() {
        assert!(check_role_arn("arn:aws:iam::123456789012:role/app").is_ok());
        assert!(check_role_arn("arn:aws-cn:iam::123456789012:role/path/app").is_ok());
        for bad in [
            "",
            "app",
            "arn:aws:iam::123:user/x",
            "arn:aws:sts::123:role/x",
            "arn:aws:iam::123:role/",
            "arn:aws:iam:us-east-1:123:role/x",
        ] {
            assert!(check_role_arn(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn client_errors_are_final() {
        let sts = |status| IdentityError::Sts {
            api: "AssumeRole",
            role: "r".into(),
            code: "c".into(),
            message: "m".into(),
            status,
        };
        assert!(sts(Some(403)).is_client_error());
        assert!(!sts(Some(429)).is_client_error());
        assert!(!sts(Some(503)).is_client_error());
        assert!(!sts(None).is_client_error());
        assert!(
            !IdentityError::AgentUnavailable {
                tried: "x".into(),
                message: "m".into()
            }
            .is_client_error()
        );
    }
}
