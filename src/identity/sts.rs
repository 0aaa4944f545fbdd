//! The two STS calls: `AssumeRoleWithWebIdentity` (IRSA; unsigned, the token
//! is the proof) and `AssumeRole` (a role chain; signed with the previous
//! credentials). Both on the regional STS endpoint.

use std::time::SystemTime;

use aws_config::SdkConfig;
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sdk_sts::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sts::types::Tag;

use super::IdentityError;
use crate::metrics::Metrics;
use crate::secret::Token;
use crate::spc::RoleChain;

fn client(base: &SdkConfig, region: &str, credentials: Option<Credentials>) -> aws_sdk_sts::Client {
    let mut config = base
        .to_builder()
        .region(aws_config::Region::new(region.to_owned()));
    if let Some(c) = credentials {
        config = config.credentials_provider(SharedCredentialsProvider::new(c));
    }
    aws_sdk_sts::Client::new(&config.build())
}

pub(super) async fn web_identity(
    base: &SdkConfig,
    region: &str,
    role_arn: &str,
    token: &Token,
    session_name: &str,
    metrics: &Metrics,
) -> Result<Credentials, IdentityError> {
    const API: &str = "AssumeRoleWithWebIdentity";
    let out = client(base, region, None)
        .assume_role_with_web_identity()
        .role_arn(role_arn)
        .role_session_name(session_name)
        .web_identity_token(token.expose())
        .send()
        .await;
    record(metrics, API, &out);
    let out = out.map_err(|e| failure(API, role_arn, &e))?;
    credentials(API, role_arn, out.credentials(), "irsa")
}

pub(super) async fn assume_role(
    base: &SdkConfig,
    region: &str,
    previous: Credentials,
    role_arn: &str,
    session_name: &str,
    // None: a role assumed plainly (External Secrets' additionalRoles).
    chain: Option<&RoleChain>,
    metrics: &Metrics,
) -> Result<Credentials, IdentityError> {
    const API: &str = "AssumeRole";
    let tags: Vec<Tag> = chain
        .iter()
        .flat_map(|c| c.session_tags.iter())
        .filter_map(|(k, v)| Tag::builder().key(k).value(v).build().ok())
        .collect();
    let transitive = chain
        .map(|c| c.transitive_tag_keys.clone())
        .filter(|k| !k.is_empty() && !tags.is_empty());
    let out = client(base, region, Some(previous))
        .assume_role()
        .role_arn(role_arn)
        .role_session_name(session_name)
        .set_external_id(chain.and_then(|c| c.external_id.clone()))
        .set_duration_seconds(chain.and_then(|c| c.duration_seconds).map(|d| d as i32))
        .set_tags((!tags.is_empty()).then_some(tags))
        .set_transitive_tag_keys(transitive)
        .send()
        .await;
    record(metrics, API, &out);
    let out = out.map_err(|e| failure(API, role_arn, &e))?;
    credentials(API, role_arn, out.credentials(), "role-chain")
}

fn record<T, E, R>(metrics: &Metrics, api: &'static str, out: &Result<T, SdkError<E, R>>)
where
    R: crate::aws::HttpStatus,
{
    let outcome = match out {
        Ok(_) => "ok",
        Err(SdkError::ServiceError(s)) => match s.raw().status_code() {
            403 => "access_denied",
            429 => "throttled",
            400..=499 => "invalid_request",
            _ => "unavailable",
        },
        Err(_) => "unavailable",
    };
    metrics.aws_call(api, outcome);
}

fn failure<E: ProvideErrorMetadata, R: crate::aws::HttpStatus>(
    api: &'static str,
    role: &str,
    e: &SdkError<E, R>,
) -> IdentityError {
    let (code, message, status) = crate::aws::describe(e);
    IdentityError::Sts {
        api,
        role: role.to_owned(),
        code,
        message,
        status,
    }
}

fn credentials(
    api: &'static str,
    role: &str,
    c: Option<&aws_sdk_sts::types::Credentials>,
    source: &'static str,
) -> Result<Credentials, IdentityError> {
    let c = c.ok_or_else(|| IdentityError::NoCredentials {
        api,
        role: role.to_owned(),
    })?;
    let expiry = SystemTime::try_from(*c.expiration()).ok();
    Ok(Credentials::new(
        c.access_key_id(),
        c.secret_access_key(),
        Some(c.session_token().to_owned()),
        expiry,
        source,
    ))
}
