//! Step "identity": a pod's service-account token -> AWS credentials.
//! IRSA: `AssumeRoleWithWebIdentity` on the regional STS endpoint with the
//! pod's `sts.amazonaws.com` token and a session name that names the pod.

use std::sync::Arc;
use std::time::SystemTime;

use aws_config::SdkConfig;
use aws_credential_types::Credentials;
use aws_sdk_sts::error::ProvideErrorMetadata;

use crate::metrics::Metrics;
use crate::secret::Token;

/// STS limits a role session name to 64 characters of `[\w+=,.@-]`.
const SESSION_NAME_MAX: usize = 64;

/// The credentials a fetch runs with.
#[derive(Debug, Clone)]
pub enum AwsIdentity {
    /// Credentials obtained for one pod.
    Pod(Credentials),
    /// Whatever the standard AWS configuration provides (the `mount` command
    /// without a role). Never used for a pod.
    Ambient,
}

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
    #[error("AssumeRoleWithWebIdentity for {role} failed: {code}: {message}")]
    Sts {
        role: String,
        code: String,
        message: String,
        /// HTTP status when STS answered; None for network errors.
        status: Option<u16>,
    },
    #[error("AssumeRoleWithWebIdentity for {role} returned no credentials")]
    NoCredentials { role: String },
    #[error("EKS Pod Identity is not supported yet (usePodIdentity: true)")]
    PodIdentityUnsupported,
}

impl IdentityError {
    /// A 4xx from STS: the token or the trust policy is wrong, retrying as is
    /// will not help.
    pub fn is_client_error(&self) -> bool {
        match self {
            IdentityError::Sts { status, .. } => status.is_some_and(|s| (400..500).contains(&s)),
            IdentityError::NoCredentials { .. } => false,
            _ => true,
        }
    }
}

/// Checks an IAM role ARN's shape: `arn:<partition>:iam::<account>:role/<name>`.
pub fn check_role_arn(arn: &str) -> Result<(), IdentityError> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let ok = parts.len() == 6
        && parts[0] == "arn"
        && !parts[1].is_empty()
        && parts[2] == "iam"
        && parts[3].is_empty()
        && !parts[4].is_empty()
        && parts[5].starts_with("role/")
        && parts[5].len() > "role/".len();
    if ok {
        Ok(())
    } else {
        Err(IdentityError::BadRoleArn(arn.to_owned()))
    }
}

/// A role session name that identifies the pod in CloudTrail:
/// `<namespace>@<pod>`, cut to STS's 64 characters, other characters as `-`.
pub fn session_name(namespace: &str, pod: &str) -> String {
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
    if name.len() > SESSION_NAME_MAX {
        name.truncate(SESSION_NAME_MAX);
    }
    if name.len() < 2 {
        name = "aws-secrets-csi".to_owned();
    }
    name
}

/// Obtains pod credentials from STS.
#[derive(Clone)]
pub struct WebIdentity {
    base: SdkConfig,
    metrics: Arc<Metrics>,
}

impl WebIdentity {
    pub fn new(base: SdkConfig, metrics: Arc<Metrics>) -> Self {
        WebIdentity { base, metrics }
    }

    /// `AssumeRoleWithWebIdentity` in `region` (the regional endpoint).
    pub async fn assume_role(
        &self,
        region: &str,
        role_arn: &str,
        token: &Token,
        session_name: &str,
    ) -> Result<Credentials, IdentityError> {
        check_role_arn(role_arn)?;
        let config = aws_sdk_sts::config::Builder::from(&self.base)
            .region(aws_sdk_sts::config::Region::new(region.to_owned()))
            .build();
        let client = aws_sdk_sts::Client::from_conf(config);
        let out = client
            .assume_role_with_web_identity()
            .role_arn(role_arn)
            .role_session_name(session_name)
            .web_identity_token(token.expose())
            .send()
            .await;
        self.metrics.aws_call(
            "AssumeRoleWithWebIdentity",
            match &out {
                Ok(_) => "ok",
                Err(aws_sdk_sts::error::SdkError::ServiceError(s))
                    if s.raw().status().as_u16() == 403 =>
                {
                    "access_denied"
                }
                Err(aws_sdk_sts::error::SdkError::ServiceError(s))
                    if s.raw().status().is_client_error() =>
                {
                    "invalid_request"
                }
                Err(_) => "unavailable",
            },
        );
        let out = out.map_err(|e| {
            let status = match &e {
                aws_sdk_sts::error::SdkError::ServiceError(s) => Some(s.raw().status().as_u16()),
                _ => None,
            };
            IdentityError::Sts {
                role: role_arn.to_owned(),
                code: e.code().unwrap_or("NetworkError").to_owned(),
                message: e
                    .message()
                    .map(str::to_owned)
                    .unwrap_or_else(|| sdk_error_kind(&e)),
                status,
            }
        })?;
        let c = out
            .credentials()
            .ok_or_else(|| IdentityError::NoCredentials {
                role: role_arn.to_owned(),
            })?;
        let expiry = SystemTime::try_from(*c.expiration()).ok();
        Ok(Credentials::new(
            c.access_key_id(),
            c.secret_access_key(),
            Some(c.session_token().to_owned()),
            expiry,
            "irsa",
        ))
    }
}

/// A short description of an SDK error without a service message (timeouts,
/// connection failures). Never includes request contents.
pub fn sdk_error_kind<E, R>(e: &aws_sdk_sts::error::SdkError<E, R>) -> String {
    use aws_sdk_sts::error::SdkError;
    match e {
        SdkError::ConstructionFailure(_) => "request could not be built".into(),
        SdkError::TimeoutError(_) => "request timed out".into(),
        SdkError::DispatchFailure(d) => {
            if d.is_timeout() {
                "connection timed out".into()
            } else if d.is_io() {
                "connection failed".into()
            } else {
                "request could not be sent".into()
            }
        }
        SdkError::ResponseError(_) => "invalid response".into(),
        SdkError::ServiceError(_) => "service error".into(),
        _ => "unknown error".into(),
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
            role: "r".into(),
            code: "c".into(),
            message: "m".into(),
            status,
        };
        assert!(sts(Some(403)).is_client_error());
        assert!(!sts(Some(503)).is_client_error());
        assert!(!sts(None).is_client_error());
    }
}
