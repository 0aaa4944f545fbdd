//! Listing the objects of an account (the controller's `dataFrom.find`):
//! Secrets Manager `ListSecrets` with name-prefix and tag filters, Parameter
//! Store `GetParametersByPath`, or `DescribeParameters` with tag filters (and
//! a recursive path filter) when tags are asked for. Bounded: at most `cap`
//! names, and the pages stop there.

use std::collections::BTreeMap;

use aws_config::SdkConfig;
use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType};

use super::{Calls, ObjectFailure, recorded};
use crate::spc::ObjectType;

/// What to list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    pub service: ObjectType,
    /// Name prefix (Secrets Manager) or path (Parameter Store).
    pub prefix: Option<String>,
    /// Tags that must all be present with these values.
    pub tags: BTreeMap<String, String>,
    /// The most names returned.
    pub cap: usize,
}

pub(crate) async fn names(
    config: &SdkConfig,
    region: &str,
    listing: &Listing,
    calls: &Calls<'_>,
) -> Result<Vec<String>, ObjectFailure> {
    match listing.service {
        ObjectType::SecretsManager => secret_names(config, region, listing, calls).await,
        ObjectType::SsmParameter if listing.tags.is_empty() => {
            parameter_names(config, region, listing, calls).await
        }
        ObjectType::SsmParameter => tagged_parameter_names(config, region, listing, calls).await,
    }
}

async fn secret_names(
    config: &SdkConfig,
    region: &str,
    listing: &Listing,
    calls: &Calls<'_>,
) -> Result<Vec<String>, ObjectFailure> {
    const API: &str = "ListSecrets";
    let client = aws_sdk_secretsmanager::Client::new(config);
    let mut filters = Vec::new();
    if let Some(prefix) = &listing.prefix {
        filters.push(
            Filter::builder()
                .key(FilterNameStringType::Name)
                .values(prefix)
                .build(),
        );
    }
    for (key, value) in &listing.tags {
        filters.push(
            Filter::builder()
                .key(FilterNameStringType::TagKey)
                .values(key)
                .build(),
        );
        filters.push(
            Filter::builder()
                .key(FilterNameStringType::TagValue)
                .values(value)
                .build(),
        );
    }
    let mut names = Vec::new();
    let mut token: Option<String> = None;
    loop {
        calls.admit(API).await;
        let answer = client
            .list_secrets()
            .set_filters((!filters.is_empty()).then(|| filters.clone()))
            .set_next_token(token.take())
            .max_results(100)
            .send()
            .await;
        let page = recorded(calls, API, "ListSecrets", region, answer)?;
        for secret in page.secret_list() {
            // The name filter matches prefixes of words; keep true prefixes.
            let Some(name) = secret.name() else { continue };
            if listing
                .prefix
                .as_deref()
                .is_none_or(|p| name.starts_with(p))
            {
                names.push(name.to_owned());
            }
        }
        token = page.next_token().map(str::to_owned);
        if token.is_none() || names.len() >= listing.cap {
            break;
        }
    }
    names.truncate(listing.cap);
    Ok(names)
}

async fn parameter_names(
    config: &SdkConfig,
    region: &str,
    listing: &Listing,
    calls: &Calls<'_>,
) -> Result<Vec<String>, ObjectFailure> {
    const API: &str = "GetParametersByPath";
    let client = aws_sdk_ssm::Client::new(config);
    let path = listing.prefix.clone().unwrap_or_else(|| "/".to_owned());
    let mut names = Vec::new();
    let mut token: Option<String> = None;
    loop {
        calls.admit(API).await;
        let answer = client
            .get_parameters_by_path()
            .path(&path)
            .recursive(true)
            .with_decryption(false)
            .set_next_token(token.take())
            .max_results(10)
            .send()
            .await;
        let page = recorded(calls, API, &path, region, answer)?;
        names.extend(
            page.parameters()
                .iter()
                .filter_map(|p| p.name().map(str::to_owned)),
        );
        token = page.next_token().map(str::to_owned);
        if token.is_none() || names.len() >= listing.cap {
            break;
        }
    }
    names.truncate(listing.cap);
    Ok(names)
}

/// Parameters with all of `listing.tags` (`tag:<key>` Equals the value),
/// under `listing.prefix` when there is one (`Path`, recursive), as External
/// Secrets' find by tags lists them.
async fn tagged_parameter_names(
    config: &SdkConfig,
    region: &str,
    listing: &Listing,
    calls: &Calls<'_>,
) -> Result<Vec<String>, ObjectFailure> {
    use aws_sdk_ssm::types::ParameterStringFilter;
    const API: &str = "DescribeParameters";
    let filter = |key: String, option: &str, value: &str| {
        ParameterStringFilter::builder()
            .key(key)
            .option(option)
            .values(value)
            .build()
            .map_err(|e| ObjectFailure::new(API, region, "InvalidFilter", &e.to_string(), None))
    };
    let mut filters = Vec::new();
    for (key, value) in &listing.tags {
        filters.push(filter(format!("tag:{key}"), "Equals", value)?);
    }
    if let Some(path) = &listing.prefix {
        filters.push(filter("Path".to_owned(), "Recursive", path)?);
    }
    let client = aws_sdk_ssm::Client::new(config);
    let mut names = Vec::new();
    let mut token: Option<String> = None;
    loop {
        calls.admit(API).await;
        let answer = client
            .describe_parameters()
            .set_parameter_filters(Some(filters.clone()))
            .set_next_token(token.take())
            .max_results(50)
            .send()
            .await;
        let page = recorded(calls, API, API, region, answer)?;
        names.extend(
            page.parameters()
                .iter()
                .filter_map(|p| p.name().map(str::to_owned)),
        );
        token = page.next_token().map(str::to_owned);
        if token.is_none() || names.len() >= listing.cap {
            break;
        }
    }
    names.truncate(listing.cap);
    Ok(names)
}
