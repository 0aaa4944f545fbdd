//! What went wrong with one object, from the AWS error code and HTTP status.

use std::fmt;

use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};

use crate::aws::HttpStatus;

/// One object that could not be fetched in one region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectFailure {
    pub object: String,
    pub region: String,
    /// AWS error code (`ResourceNotFoundException`, ...) or a local kind
    /// (`NetworkError`, `TimeoutError`).
    pub code: String,
    pub message: String,
    /// HTTP status when AWS answered.
    pub status: Option<u16>,
    /// The failover region's answer, when it was asked and failed too: a
    /// secret missing there, or its key denied there, is often the real cause.
    pub failover: Option<Box<ObjectFailure>>,
}

/// The classes of failure the driver treats differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    NotFound,
    AccessDenied,
    Throttled,
    /// Another 4xx: the request or the object is wrong.
    InvalidRequest,
    /// 5xx, network, timeout: worth retrying, and worth the failover region.
    Unavailable,
}

impl FailureKind {
    /// The `outcome` label of the AWS call metric.
    pub fn label(self) -> &'static str {
        match self {
            FailureKind::NotFound => "not_found",
            FailureKind::AccessDenied => "access_denied",
            FailureKind::Throttled => "throttled",
            FailureKind::InvalidRequest => "invalid_request",
            FailureKind::Unavailable => "unavailable",
        }
    }
}

impl ObjectFailure {
    pub(crate) fn not_requested(object: &str, region: &str) -> Self {
        ObjectFailure {
            object: object.to_owned(),
            region: region.to_owned(),
            code: "NotRequested".into(),
            message: "internal: object was not requested".into(),
            status: None,
            failover: None,
        }
    }

    pub(crate) fn new(
        object: &str,
        region: &str,
        code: &str,
        message: &str,
        status: Option<u16>,
    ) -> Self {
        ObjectFailure {
            object: object.to_owned(),
            region: region.to_owned(),
            code: code.to_owned(),
            message: message.to_owned(),
            status,
            failover: None,
        }
    }

    /// From an SDK error of any AWS service call.
    pub(crate) fn from_sdk<E, R>(object: &str, region: &str, e: &SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata,
        R: HttpStatus,
    {
        let (code, message, status) = crate::aws::describe(e);
        ObjectFailure::new(object, region, &code, &message, status)
    }

    /// A 4xx answer: the failover region is not asked (same as every other
    /// region would answer), and kubelet's retry will not help by itself.
    pub fn is_client_error(&self) -> bool {
        self.status.is_some_and(|s| (400..500).contains(&s))
            && self.kind() != FailureKind::Throttled
    }

    pub fn kind(&self) -> FailureKind {
        let code = self.code.as_str();
        if code.contains("Throttl") || code == "TooManyUpdates" || code == "RequestLimitExceeded" {
            return FailureKind::Throttled;
        }
        if code.starts_with("AccessDenied")
            || code == "UnrecognizedClientException"
            || code.contains("NotAuthorized")
        {
            return FailureKind::AccessDenied;
        }
        if code == "ResourceNotFoundException"
            || code.starts_with("ParameterNotFound")
            || code == "ParameterVersionNotFound"
            || code == "InvalidParameters"
            // ListTagsForResource's answer for a parameter that is not there.
            || code == "InvalidResourceId"
        {
            return FailureKind::NotFound;
        }
        match self.status {
            // An answer whose code could not be read still says enough.
            Some(401 | 403) => FailureKind::AccessDenied,
            Some(429) => FailureKind::Throttled,
            Some(s) if (400..500).contains(&s) => FailureKind::InvalidRequest,
            _ => FailureKind::Unavailable,
        }
    }
}

impl fmt::Display for ObjectFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} in {}: {}: {}",
            self.object, self.region, self.code, self.message
        )?;
        if let Some(other) = &self.failover {
            write!(
                f,
                " (failover {} in {}: {}: {})",
                other.object, other.region, other.code, other.message
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(code: &str, status: Option<u16>) -> ObjectFailure {
        ObjectFailure::new("o", "r", code, "m", status)
    }

    #[test]
    fn kinds_follow_codes_then_status() {
        assert_eq!(
            f("ResourceNotFoundException", Some(400)).kind(),
            FailureKind::NotFound
        );
        assert_eq!(
            f("ParameterNotFound", Some(400)).kind(),
            FailureKind::NotFound
        );
        assert_eq!(
            f("InvalidResourceId", Some(400)).kind(),
            FailureKind::NotFound
        );
        assert_eq!(
            f("AccessDeniedException", Some(400)).kind(),
            FailureKind::AccessDenied
        );
        assert_eq!(
            f("ThrottlingException", Some(400)).kind(),
            FailureKind::Throttled
        );
        assert_eq!(
            f("ValidationException", Some(400)).kind(),
            FailureKind::InvalidRequest
        );
        assert_eq!(
            f("InternalServiceError", Some(500)).kind(),
            FailureKind::Unavailable
        );
        assert_eq!(f("NetworkError", None).kind(), FailureKind::Unavailable);
        assert_eq!(
            f("UnknownError", Some(403)).kind(),
            FailureKind::AccessDenied
        );
        assert_eq!(f("UnknownError", Some(429)).kind(), FailureKind::Throttled);
    }

    #[test]
    fn the_failover_regions_cause_is_shown_beside_the_primarys() {
        let primary =
            ObjectFailure::new("db", "us-east-1", "InternalServiceError", "boom", Some(500));
        let failover = ObjectFailure::new(
            "db-replica",
            "us-west-2",
            "ResourceNotFoundException",
            "Secrets Manager can't find the specified secret.",
            Some(400),
        );
        let both = ObjectFailure {
            failover: Some(Box::new(failover)),
            ..primary
        };
        assert_eq!(
            both.to_string(),
            "db in us-east-1: InternalServiceError: boom (failover db-replica in us-west-2: \
             ResourceNotFoundException: Secrets Manager can't find the specified secret.)"
        );
        // The primary's failure still decides the kind (and so the code).
        assert_eq!(both.kind(), FailureKind::Unavailable);
    }

    #[test]
    fn only_non_throttling_4xx_are_client_errors() {
        assert!(f("AccessDeniedException", Some(400)).is_client_error());
        assert!(!f("ThrottlingException", Some(400)).is_client_error());
        assert!(!f("InternalServiceError", Some(500)).is_client_error());
        assert!(!f("NetworkError", None).is_client_error());
    }
}
