//! Small AWS types that identity and fetch share, below both (so neither
//! depends on the other): the credentials a call runs with, the key that
//! says whose they are, and the description of an SDK error.

use aws_credential_types::Credentials;
use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};

/// The credentials a fetch runs with.
#[derive(Debug, Clone)]
pub enum AwsIdentity {
    /// Credentials obtained for one pod.
    Pod(Credentials),
    /// Whatever the standard AWS configuration provides (the `mount` command
    /// without a role). Never used for a pod.
    Ambient,
}

/// Everything that changes what IAM allows a set of credentials: where they
/// come from (the IRSA role, or Pod Identity), whose they are (namespace and
/// service account), the role chain with its external id, duration and
/// session tags, and the region of the STS call.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdentityKey {
    pub(crate) source: String,
    pub(crate) namespace: String,
    pub(crate) service_account: String,
    pub(crate) chain: Option<crate::spc::RoleChain>,
    pub(crate) region: String,
}

/// The AWS error code, message and HTTP status of any SDK error, for
/// messages and classification. Never includes request contents.
pub(crate) fn describe<E, R>(e: &SdkError<E, R>) -> (String, String, Option<u16>)
where
    E: ProvideErrorMetadata,
    R: HttpStatus,
{
    let status = match e {
        SdkError::ServiceError(s) => Some(s.raw().status_code()),
        SdkError::ResponseError(r) => Some(r.raw().status_code()),
        _ => None,
    };
    let code = e
        .code()
        .map(str::to_owned)
        .unwrap_or_else(|| match (e, status) {
            // An error body the SDK could not read (an emulator answering in
            // another protocol, a proxy): the status still tells the class.
            (_, Some(401 | 403)) => "AccessDenied".into(),
            (_, Some(404)) => "NotFound".into(),
            (_, Some(429)) => "Throttling".into(),
            (_, Some(s)) => format!("HTTP{s}"),
            (SdkError::TimeoutError(_), None) => "TimeoutError".into(),
            (SdkError::DispatchFailure(d), None) if d.is_timeout() => "TimeoutError".into(),
            (SdkError::DispatchFailure(_), None) => "NetworkError".into(),
            (SdkError::ConstructionFailure(_), None) => "RequestError".into(),
            _ => "UnknownError".into(),
        });
    let message = e
        .message()
        .map(str::to_owned)
        .unwrap_or_else(|| match status {
            Some(s) => format!("HTTP status {s}"),
            None => sdk_error_kind(e),
        });
    (code, message, status)
}

/// The HTTP status of a raw response, whatever the SDK's response type.
pub(crate) trait HttpStatus {
    fn status_code(&self) -> u16;
}

impl HttpStatus for aws_sdk_secretsmanager::config::http::HttpResponse {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
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
