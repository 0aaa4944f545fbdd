//! The one place that decides which gRPC code each failure becomes. Kubelet
//! treats Unavailable, DeadlineExceeded, Aborted, ResourceExhausted (and
//! Canceled) as "maybe mounted, retry"; every other code as final.

use tonic::{Code, Status};

use crate::cluster::ClusterError;
use crate::fetch::FailureKind;
use crate::identity::IdentityError;
use crate::publish::PublishError;

pub fn status_of(e: &PublishError) -> Status {
    Status::new(code_of(e), e.to_string())
}

fn code_of(e: &PublishError) -> Code {
    match e {
        PublishError::Request(_) => Code::InvalidArgument,
        PublishError::Cluster(ClusterError::NotFound { .. }) => Code::NotFound,
        PublishError::Cluster(ClusterError::Forbidden { .. }) => Code::PermissionDenied,
        PublishError::Cluster(ClusterError::Unavailable { .. }) => Code::Unavailable,
        PublishError::Cluster(ClusterError::Unusable { .. }) => Code::InvalidArgument,
        PublishError::Class { .. } => Code::InvalidArgument,
        PublishError::Identity(i) => match i {
            IdentityError::TokenMissing(_) | IdentityError::NotProven(_) => Code::Unauthenticated,
            IdentityError::AgentRefused { .. } => Code::PermissionDenied,
            IdentityError::AgentUnavailable { .. } | IdentityError::AgentAnswer(_) => {
                Code::Unavailable
            }
            IdentityError::NoRole { .. } => Code::FailedPrecondition,
            IdentityError::BadRoleArn(_) => Code::InvalidArgument,
            IdentityError::Sts { .. } if i.is_client_error() => Code::PermissionDenied,
            IdentityError::Sts { .. } | IdentityError::NoCredentials { .. } => Code::Unavailable,
        },
        PublishError::Fetch { source, .. } => match source.kind() {
            FailureKind::NotFound => Code::NotFound,
            FailureKind::AccessDenied => Code::PermissionDenied,
            FailureKind::Throttled => Code::ResourceExhausted,
            FailureKind::InvalidRequest => Code::InvalidArgument,
            FailureKind::Unavailable => Code::Unavailable,
        },
        PublishError::Render {
            source: crate::render::RenderError::TooLarge { .. },
            ..
        } => Code::ResourceExhausted,
        PublishError::Render { .. } => Code::InvalidArgument,
        PublishError::Volume { source, .. } if source.is_no_space() => Code::ResourceExhausted,
        PublishError::Volume {
            source:
                crate::volume::VolumeError::Unsafe { .. } | crate::volume::VolumeError::Foreign { .. },
            ..
        } => Code::FailedPrecondition,
        PublishError::Volume { .. } => Code::Internal,
        PublishError::Deadline(_) => Code::DeadlineExceeded,
        PublishError::Busy(_) => Code::Aborted,
        // Never a reply to kubelet (a refresh between republishes); were it
        // one, kubelet would retry.
        PublishError::NotHeld => Code::Unavailable,
        PublishError::NotPublishedHere { .. } => Code::NotFound,
        PublishError::PublishedElsewhere { .. }
        | PublishError::TargetHeld { .. }
        | PublishError::OtherIdentity { .. } => Code::AlreadyExists,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fetch::{FetchError, ObjectFailure};
    use crate::request::RequestError;

    fn fetch(code: &str, status: Option<u16>) -> PublishError {
        PublishError::Fetch {
            class: "ns/c".into(),
            source: FetchError {
                failures: vec![ObjectFailure {
                    object: "o".into(),
                    region: "r".into(),
                    code: code.into(),
                    message: "m".into(),
                    status,
                    failover: None,
                }],
            },
        }
    }

    #[test]
    fn codes() {
        assert_eq!(
            code_of(&RequestError::VolumeId.into()),
            Code::InvalidArgument
        );
        assert_eq!(
            code_of(&fetch("ResourceNotFoundException", Some(400))),
            Code::NotFound
        );
        assert_eq!(
            code_of(&fetch("AccessDeniedException", Some(400))),
            Code::PermissionDenied
        );
        assert_eq!(
            code_of(&fetch("ThrottlingException", Some(400))),
            Code::ResourceExhausted
        );
        assert_eq!(
            code_of(&fetch("InternalServiceError", Some(500))),
            Code::Unavailable
        );
        assert_eq!(code_of(&fetch("NetworkError", None)), Code::Unavailable);
        assert_eq!(code_of(&PublishError::Busy("v".into())), Code::Aborted);
        assert_eq!(
            code_of(&PublishError::Deadline(std::time::Duration::from_secs(1))),
            Code::DeadlineExceeded
        );
        assert_eq!(
            code_of(&IdentityError::TokenMissing("sts.amazonaws.com").into()),
            Code::Unauthenticated
        );
        assert_eq!(
            code_of(
                &IdentityError::NoRole {
                    namespace: "n".into(),
                    service_account: "s".into()
                }
                .into()
            ),
            Code::FailedPrecondition
        );
    }

    #[test]
    fn message_names_object_and_code() {
        let s = status_of(&fetch("ResourceNotFoundException", Some(400)));
        assert_eq!(
            s.message(),
            "SecretProviderClass ns/c: failed to fetch 1 object(s): o in r: ResourceNotFoundException: m"
        );
    }
}
