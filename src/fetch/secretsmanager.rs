//! Secrets Manager: `BatchGetSecretValue` for current versions, `GetSecretValue`
//! for pinned ones (or when the role may not call the batch API).

use std::collections::HashMap;

use aws_config::SdkConfig;
use aws_sdk_secretsmanager::Client;
use futures::future::join_all;

use super::{Calls, FetchedValue, ObjectFailure, Outcome, Wanted};
use crate::secret::SecretBytes;

/// BatchGetSecretValue takes at most 20 ids.
pub const BATCH_SIZE: usize = 20;

/// `config` carries the region and the credentials to use.
pub(crate) async fn fetch(
    config: &SdkConfig,
    region: &str,
    wanted: &[Wanted<'_>],
    calls: &Calls<'_>,
) -> Vec<Outcome> {
    if wanted.is_empty() {
        return Vec::new();
    }
    let client = Sm {
        client: Client::new(config),
        calls,
    };

    // Distinct current-version ids go to the batch API; the rest one by one.
    let is_current = |w: &Wanted<'_>| {
        w.object.version_id.is_none()
            && w.object
                .version_label
                .as_deref()
                .is_none_or(|l| l == "AWSCURRENT")
    };
    let mut ids: Vec<&str> = Vec::new();
    for w in wanted.iter().filter(|w| is_current(w)) {
        if !ids.contains(&w.object.name.as_str()) {
            ids.push(&w.object.name);
        }
    }
    // Ids wanted only to fill a batch's room are never fetched one by one.
    let fill: Vec<&str> = ids
        .iter()
        .copied()
        .filter(|id| {
            wanted
                .iter()
                .filter(|w| w.object.name == *id)
                .all(|w| w.fill)
        })
        .collect();
    let batches = join_all(
        ids.chunks(BATCH_SIZE)
            .map(|chunk| batch(&client, region, chunk, &fill)),
    )
    .await;
    let by_id: HashMap<&str, Outcome> = batches.into_iter().flatten().collect();

    let singles = join_all(wanted.iter().filter(|w| !is_current(w)).map(|w| {
        single(
            &client,
            region,
            &w.object.name,
            w.object.version_id.as_deref(),
            w.object.version_label.as_deref(),
        )
    }))
    .await;
    let mut singles = singles.into_iter();
    wanted
        .iter()
        .map(|w| {
            if is_current(w) {
                by_id
                    .get(w.object.name.as_str())
                    .cloned()
                    .unwrap_or_else(|| Err(ObjectFailure::not_requested(&w.object.name, region)))
            } else {
                singles
                    .next()
                    .unwrap_or_else(|| Err(ObjectFailure::not_requested(&w.object.name, region)))
            }
        })
        .collect()
}

/// One BatchGetSecretValue call; ids it does not answer for are fetched one
/// by one, and so is the whole chunk when the role may not use the batch API
/// (policies written for the AWS provider grant GetSecretValue only).
async fn batch<'a>(
    client: &Sm<'_>,
    region: &str,
    ids: &[&'a str],
    fill: &[&str],
) -> Vec<(&'a str, Outcome)> {
    let one_by_one = |ids: &[&'a str]| -> Vec<&'a str> {
        ids.iter()
            .copied()
            .filter(|id| !fill.contains(id))
            .collect()
    };
    // The batch budget (100/s an account) spent, and room for these ids in
    // GetSecretValue's (10,000/s): spill over rather than wait.
    if !client.calls.try_admit("BatchGetSecretValue") {
        if client.calls.has_room("GetSecretValue", ids.len()) {
            tracing::debug!(
                region,
                secrets = ids.len(),
                "BatchGetSecretValue budget spent; GetSecretValue per secret"
            );
            return singles(client, region, &one_by_one(ids)).await;
        }
        client.calls.admit("BatchGetSecretValue").await;
    }
    let response = client
        .client
        .batch_get_secret_value()
        .set_secret_id_list(Some(ids.iter().map(|s| s.to_string()).collect()))
        .send()
        .await;
    client.record(
        "BatchGetSecretValue",
        response
            .as_ref()
            .err()
            .map(|e| ObjectFailure::from_sdk(ids[0], region, e)),
    );
    let out = match response {
        Ok(out) => {
            // Fill ids were asked for by no one: they save no call.
            client
                .calls
                .metrics
                .batched(ids.iter().filter(|id| !fill.contains(id)).count());
            out
        }
        Err(e) => {
            let failure = ObjectFailure::from_sdk(ids[0], region, &e);
            if failure.kind() == super::FailureKind::AccessDenied
                || failure.code == "UnknownOperationException"
            {
                tracing::debug!(
                    region,
                    "BatchGetSecretValue not allowed; using GetSecretValue per secret"
                );
                return singles(client, region, &one_by_one(ids)).await;
            }
            return ids
                .iter()
                .map(|id| {
                    (
                        *id,
                        Err(ObjectFailure {
                            object: id.to_string(),
                            ..failure.clone()
                        }),
                    )
                })
                .collect();
        }
    };

    let mut results: Vec<(&'a str, Option<Outcome>)> = ids.iter().map(|id| (*id, None)).collect();
    for entry in out.secret_values() {
        let value = match (entry.secret_string(), entry.secret_binary()) {
            (Some(s), _) => SecretBytes::from(s),
            (None, Some(b)) => SecretBytes::new(b.as_ref().to_vec()),
            (None, None) => continue,
        };
        for (id, slot) in results.iter_mut().filter(|(_, slot)| slot.is_none()) {
            if matches_entry(id, entry.name(), entry.arn()) {
                *slot = Some(Ok(FetchedValue {
                    bytes: value.clone(),
                    version: entry.version_id().map(str::to_owned),
                    stages: entry.version_stages().to_vec(),
                    created_ms: super::epoch_ms(entry.created_date()),
                }));
            }
        }
    }
    for error in out.errors() {
        let Some(secret_id) = error.secret_id() else {
            continue;
        };
        for (id, slot) in results
            .iter_mut()
            .filter(|(id, slot)| slot.is_none() && *id == secret_id)
        {
            *slot = Some(Err(ObjectFailure::new(
                id,
                region,
                error.error_code().unwrap_or("UnknownError"),
                error.message().unwrap_or(""),
                // Per-secret errors come inside a 200; they are client-side
                // conditions (not found, access denied, decryption).
                Some(400),
            )));
        }
    }
    let unanswered: Vec<&'a str> = one_by_one(
        &results
            .iter()
            .filter(|(_, s)| s.is_none())
            .map(|(id, _)| *id)
            .collect::<Vec<_>>(),
    );
    let mut fallback: HashMap<&str, Outcome> = singles(client, region, &unanswered)
        .await
        .into_iter()
        .collect();
    results
        .into_iter()
        .map(|(id, slot)| {
            let outcome = slot
                .or_else(|| fallback.remove(id))
                .unwrap_or_else(|| Err(ObjectFailure::not_requested(id, region)));
            (id, outcome)
        })
        .collect()
}

/// A client whose calls are budgeted and counted.
struct Sm<'a> {
    client: Client,
    calls: &'a Calls<'a>,
}

impl Sm<'_> {
    fn record(&self, api: &'static str, failure: Option<ObjectFailure>) {
        self.calls
            .record(api, failure.map_or("ok", |f| f.kind().label()));
    }
}

/// An id names a secret by name, full ARN, or partial ARN (without the
/// random six-character suffix).
fn matches_entry(id: &str, name: Option<&str>, arn: Option<&str>) -> bool {
    name == Some(id)
        || arn == Some(id)
        || arn.is_some_and(|a| {
            a.len() == id.len() + 7 && a.starts_with(id) && a.as_bytes()[id.len()] == b'-'
        })
}

async fn singles<'a>(client: &Sm<'_>, region: &str, ids: &[&'a str]) -> Vec<(&'a str, Outcome)> {
    join_all(
        ids.iter()
            .map(|id| async move { (*id, single(client, region, id, None, None).await) }),
    )
    .await
}

async fn single(
    client: &Sm<'_>,
    region: &str,
    id: &str,
    version_id: Option<&str>,
    stage: Option<&str>,
) -> Outcome {
    client.calls.admit("GetSecretValue").await;
    let out = client
        .client
        .get_secret_value()
        .secret_id(id)
        .set_version_id(version_id.map(str::to_owned))
        .set_version_stage(stage.map(str::to_owned))
        .send()
        .await
        .map_err(|e| ObjectFailure::from_sdk(id, region, &e));
    client.record("GetSecretValue", out.as_ref().err().cloned());
    let out = out?;
    let bytes = match (out.secret_string(), out.secret_binary()) {
        (Some(s), _) => SecretBytes::from(s),
        (None, Some(b)) => SecretBytes::new(b.as_ref().to_vec()),
        (None, None) => {
            return Err(ObjectFailure::new(
                id,
                region,
                "EmptySecret",
                "the secret version has no value",
                None,
            ));
        }
    };
    Ok(FetchedValue {
        bytes,
        version: out.version_id().map(str::to_owned),
        stages: out.version_stages().to_vec(),
        created_ms: super::epoch_ms(out.created_date()),
    })
}

#[cfg(test)]
mod tests {
    use super::matches_entry;

    #[test]
    fn ids_match_by_name_full_or_partial_arn() {
        let arn = "arn:aws:secretsmanager:us-east-1:1:secret:prod/db-AbCdEf";
        assert!(matches_entry("prod/db", Some("prod/db"), Some(arn)));
        assert!(matches_entry(arn, Some("prod/db"), Some(arn)));
        assert!(matches_entry(
            "arn:aws:secretsmanager:us-east-1:1:secret:prod/db",
            Some("prod/db"),
            Some(arn)
        ));
        assert!(!matches_entry("prod", Some("prod/db"), Some(arn)));
        assert!(!matches_entry(
            "arn:aws:secretsmanager:us-east-1:1:secret:prod",
            Some("prod/db"),
            Some(arn)
        ));
    }
}
