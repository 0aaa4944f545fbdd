//! PushSecret and ClusterPushSecret (`external-secrets.io` v1alpha1, the
//! AWS provider's part), pure: the API types ([`api`]), the AWS
//! providers' push metadata ([`metadata`]), remote name rules
//! ([`names`]), the planner that turns a PushSecret, its source Secret and
//! its stores into the writes and deletes to make ([`plan`]), and the
//! decision for one remote write given what AWS holds ([`guard`]). No I/O:
//! the controller reads AWS and Kubernetes, asks these functions, and
//! makes the calls they name.
//!
//! Behaviour is External Secrets v2.9.0's (`pkg/controllers/pushsecret`,
//! `providers/v1/aws/{secretsmanager,parameterstore}`), except where a
//! function's documentation says otherwise (each such difference refuses
//! what ESO would do silently or at random). Errors name the field's path
//! and the cause; they never hold a secret value.

pub mod api;
pub mod guard;
pub mod metadata;
pub mod names;
pub mod plan;
mod values;

#[cfg(test)]
mod tests;

use crate::external::ExternalError;

/// The tag every remote secret written by a push carries, and without
/// which an existing remote secret is neither overwritten nor deleted.
pub const MANAGED_BY_KEY: &str = "managed-by";
pub const MANAGED_BY_VALUE: &str = "external-secrets";

/// Why a PushSecret (or one of its writes) cannot be done. `path` names
/// the field as users write it (`spec.data[0].match.remoteRef.remoteKey`),
/// `key` a remote secret's full name. No variant holds a secret value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    #[error("{path}: not supported by this controller ({why})")]
    Unsupported { path: String, why: String },
    #[error("{path}: {why}")]
    Invalid { path: String, why: String },
    #[error("{path} is required")]
    Missing { path: String },
    /// The source Secret lacks a key an entry pushes.
    #[error("{path}: secret key {key} does not exist in the source Secret")]
    MissingKey { path: String, key: String },
    /// Two entries would write one remote place.
    #[error("{path}: duplicate remote key {remote:?}: {other} writes it too")]
    Duplicate {
        path: String,
        remote: String,
        other: String,
    },
    /// The remote secret exists without `managed-by: external-secrets`.
    #[error(
        "{key}: secret not managed by external-secrets (no tag managed-by=external-secrets), left as it is"
    )]
    NotManaged { key: String },
    /// A `property` push into a remote value that is not a JSON object.
    #[error(
        "{key}: a push with a property requires a json secret holding an object; the current value is not one ({path})"
    )]
    NotJsonObject { key: String, path: String },
    /// A value over the service's size limit.
    #[error("{path}: the value is {len} bytes, over the limit of {limit} for {service}")]
    TooLarge {
        path: String,
        len: usize,
        limit: usize,
        service: &'static str,
    },
}

impl PushError {
    pub(crate) fn invalid(path: impl Into<String>, why: impl Into<String>) -> Self {
        PushError::Invalid {
            path: path.into(),
            why: why.into(),
        }
    }

    pub(crate) fn unsupported(path: impl Into<String>, why: impl Into<String>) -> Self {
        PushError::Unsupported {
            path: path.into(),
            why: why.into(),
        }
    }

    /// The same error with `spec.` paths moved under `prefix` (a
    /// ClusterPushSecret's `spec.pushSecretSpec`).
    pub fn under(self, prefix: &str) -> Self {
        let move_path = |p: String| match p.strip_prefix("spec") {
            Some(rest) if rest.is_empty() || rest.starts_with('.') => format!("{prefix}{rest}"),
            _ => p,
        };
        match self {
            PushError::Unsupported { path, why } => PushError::Unsupported {
                path: move_path(path),
                why,
            },
            PushError::Invalid { path, why } => PushError::Invalid {
                path: move_path(path),
                why,
            },
            PushError::Missing { path } => PushError::Missing {
                path: move_path(path),
            },
            PushError::MissingKey { path, key } => PushError::MissingKey {
                path: move_path(path),
                key,
            },
            PushError::Duplicate {
                path,
                remote,
                other,
            } => PushError::Duplicate {
                path: move_path(path),
                remote,
                other: move_path(other),
            },
            PushError::TooLarge {
                path,
                len,
                limit,
                service,
            } => PushError::TooLarge {
                path: move_path(path),
                len,
                limit,
                service,
            },
            other @ (PushError::NotManaged { .. } | PushError::NotJsonObject { .. }) => other,
        }
    }
}

impl From<ExternalError> for PushError {
    fn from(e: ExternalError) -> Self {
        match e {
            ExternalError::Unsupported { path, why } => PushError::Unsupported {
                path,
                why: why.to_owned(),
            },
            ExternalError::Invalid { path, why } => PushError::Invalid { path, why },
            ExternalError::Missing { path } => PushError::Missing { path },
            // No other variant comes out of parsing; keep the text.
            other => PushError::Invalid {
                path: "spec".into(),
                why: other.to_string(),
            },
        }
    }
}
