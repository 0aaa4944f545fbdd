//! SSM Parameter Store: `GetParameters` with decryption, 10 names a call,
//! `name:version` and `name:label` selectors.

use std::collections::HashSet;

use aws_config::SdkConfig;
use aws_sdk_ssm::Client;
use futures::future::join_all;

use super::{Calls, FetchedValue, ObjectFailure, Outcome, Wanted};
use crate::secret::SecretBytes;
use crate::spc::ObjectRef;

/// GetParameters takes at most 10 names.
pub const BATCH_SIZE: usize = 10;

/// The name sent to SSM: `name`, `name:version` or `name:label`.
fn selector(o: &ObjectRef) -> String {
    match (&o.version_id, &o.version_label) {
        (Some(v), _) => format!("{}:{v}", o.name),
        (None, Some(l)) => format!("{}:{l}", o.name),
        (None, None) => o.name.clone(),
    }
}

/// Splits requests into batches where each plain name appears once, so the
/// answers (which carry the plain name) map back without ambiguity.
fn batches<'a>(wanted: &'a [Wanted<'a>]) -> Vec<Vec<(String, &'a ObjectRef)>> {
    let mut distinct: Vec<(String, &ObjectRef)> = Vec::new();
    let mut seen = HashSet::new();
    for w in wanted {
        let s = selector(w.object);
        if seen.insert(s.clone()) {
            distinct.push((s, w.object));
        }
    }
    // Names asked for with several selectors go first, each copy into its
    // own batch; the rest fill the gaps.
    let mut per_name: std::collections::HashMap<&str, usize> = Default::default();
    for (_, o) in &distinct {
        *per_name.entry(o.name.as_str()).or_default() += 1;
    }
    distinct.sort_by_key(|(_, o)| std::cmp::Reverse(per_name[o.name.as_str()]));
    let mut out: Vec<Vec<(String, &ObjectRef)>> = Vec::new();
    for (sel, object) in distinct {
        let slot = out
            .iter_mut()
            .find(|b| b.len() < BATCH_SIZE && !b.iter().any(|(_, o)| o.name == object.name));
        match slot {
            Some(b) => b.push((sel, object)),
            None => out.push(vec![(sel, object)]),
        }
    }
    out
}

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
    let client = Client::new(config);
    let groups = batches(wanted);
    let answers: Vec<(String, Outcome)> =
        join_all(groups.iter().map(|b| call(&client, region, b, calls)))
            .await
            .into_iter()
            .flatten()
            .collect();
    wanted
        .iter()
        .map(|w| {
            let s = selector(w.object);
            answers
                .iter()
                .find(|(sel, _)| *sel == s)
                .map(|(_, o)| o.clone())
                .unwrap_or_else(|| Err(ObjectFailure::not_requested(&w.object.name, region)))
        })
        .collect()
}

async fn call(
    client: &Client,
    region: &str,
    batch: &[(String, &ObjectRef)],
    calls: &Calls<'_>,
) -> Vec<(String, Outcome)> {
    calls.admit("GetParameters").await;
    let response = client
        .get_parameters()
        .set_names(Some(batch.iter().map(|(s, _)| s.clone()).collect()))
        .with_decryption(true)
        .send()
        .await;
    let outcome = match &response {
        Ok(_) => "ok",
        Err(e) => ObjectFailure::from_sdk(&batch[0].1.name, region, e)
            .kind()
            .label(),
    };
    calls.record("GetParameters", outcome);
    let out = match response {
        Ok(out) => {
            calls.metrics.batched(batch.len());
            out
        }
        Err(e) => {
            return batch
                .iter()
                .map(|(sel, o)| {
                    (
                        sel.clone(),
                        Err(ObjectFailure::from_sdk(&o.name, region, &e)),
                    )
                })
                .collect();
        }
    };
    let invalid: HashSet<&str> = out
        .invalid_parameters()
        .iter()
        .map(String::as_str)
        .collect();
    batch
        .iter()
        .map(|(sel, o)| {
            let found = out.parameters().iter().find(|p| {
                p.name() == Some(o.name.as_str())
                    || p.arn() == Some(o.name.as_str())
                    // A name given without its leading slash, or an ARN whose
                    // answer carries the plain name.
                    || p.name().is_some_and(|n| o.name.ends_with(&format!("parameter{n}")) || o.name.ends_with(&format!("parameter/{n}")))
            });
            let outcome = match found {
                Some(p) if !invalid.contains(sel.as_str()) => Ok(FetchedValue {
                    bytes: SecretBytes::from(p.value().unwrap_or_default()),
                    version: Some(p.version().to_string()),
                    stages: o.version_label.iter().cloned().collect(),
                    created_ms: super::epoch_ms(p.last_modified_date()),
                }),
                _ => Err(ObjectFailure::new(
                    &o.name,
                    region,
                    "ParameterNotFound",
                    &format!("invalid parameters: {sel}"),
                    Some(400),
                )),
            };
            (sel.clone(), outcome)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(name: &str, v: Option<&str>, l: Option<&str>) -> ObjectRef {
        ObjectRef {
            name: name.into(),
            version_id: v.map(Into::into),
            version_label: l.map(Into::into),
        }
    }

    #[test]
    fn selectors() {
        assert_eq!(selector(&r("/a", None, None)), "/a");
        assert_eq!(selector(&r("/a", Some("3"), None)), "/a:3");
        assert_eq!(selector(&r("/a", None, Some("blue"))), "/a:blue");
    }

    #[test]
    fn batches_hold_ten_and_never_the_same_name_twice() {
        let objects: Vec<ObjectRef> = (0..25)
            .map(|i| r(&format!("/p{i}"), None, None))
            .chain([
                r("/p0", Some("1"), None),
                r("/p0", None, Some("l")),
                r("/p1", None, None),
            ])
            .collect();
        let wanted: Vec<Wanted<'_>> = objects
            .iter()
            .enumerate()
            .map(|(index, object)| Wanted {
                index,
                object,
                fill: false,
            })
            .collect();
        let b = batches(&wanted);
        let total: usize = b.iter().map(Vec::len).sum();
        assert_eq!(total, 27, "duplicates are asked once");
        assert!(b.iter().all(|batch| batch.len() <= BATCH_SIZE));
        for batch in &b {
            let names: HashSet<&str> = batch.iter().map(|(_, o)| o.name.as_str()).collect();
            assert_eq!(names.len(), batch.len());
        }
        assert_eq!(b.len(), 3);
    }
}
