//! Reading the tags of one object (the controller's `remoteRef.metadataPolicy:
//! Fetch`): Secrets Manager `DescribeSecret`, Parameter Store
//! `ListTagsForResource` (resource type Parameter, id the name). One call an
//! object, through the rate budget and the call metric. Tags are returned
//! as they are; what becomes of them (JSON) is the core's.

use std::collections::BTreeMap;

use aws_config::SdkConfig;
use aws_sdk_ssm::types::ResourceTypeForTagging;

use super::{Calls, ObjectFailure, recorded};
use crate::spc::ObjectType;

/// The tags of `name` (the full name: the store's prefix included).
pub(crate) async fn tags(
    config: &SdkConfig,
    region: &str,
    service: ObjectType,
    name: &str,
    calls: &Calls<'_>,
) -> Result<BTreeMap<String, String>, ObjectFailure> {
    match service {
        ObjectType::SecretsManager => secret_tags(config, region, name, calls).await,
        ObjectType::SsmParameter => parameter_tags(config, region, name, calls).await,
    }
}

async fn secret_tags(
    config: &SdkConfig,
    region: &str,
    name: &str,
    calls: &Calls<'_>,
) -> Result<BTreeMap<String, String>, ObjectFailure> {
    const API: &str = "DescribeSecret";
    let client = aws_sdk_secretsmanager::Client::new(config);
    calls.admit(API).await;
    let answer = client.describe_secret().secret_id(name).send().await;
    let out = recorded(calls, API, name, region, answer)?;
    Ok(out
        .tags()
        .iter()
        .filter_map(|t| {
            Some((
                t.key()?.to_owned(),
                t.value().unwrap_or_default().to_owned(),
            ))
        })
        .collect())
}

async fn parameter_tags(
    config: &SdkConfig,
    region: &str,
    name: &str,
    calls: &Calls<'_>,
) -> Result<BTreeMap<String, String>, ObjectFailure> {
    const API: &str = "ListTagsForResource";
    let client = aws_sdk_ssm::Client::new(config);
    calls.admit(API).await;
    let answer = client
        .list_tags_for_resource()
        .resource_type(ResourceTypeForTagging::Parameter)
        .resource_id(name)
        .send()
        .await;
    let out = recorded(calls, API, name, region, answer)?;
    Ok(out
        .tag_list()
        .iter()
        .map(|t| (t.key().to_owned(), t.value().to_owned()))
        .collect())
}
