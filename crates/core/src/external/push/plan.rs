//! The push planner: a PushSecret, its source Secret's data and the
//! stores it resolved to -> the writes to make ([`PushEntry`], in order)
//! and the remote secrets to delete ([`Deletion`]). External Secrets'
//! `handlePushSecretDataForStore` and `DeleteSecretFromProviders`
//! (`pkg/controllers/pushsecret/pushsecret_controller.go`), pure:
//!
//! - per store, `dataTo` entries aimed at it (by name, or by labels) are
//!   expanded first: their `conversionStrategy` applied to the source
//!   keys, `match.regexp` filtering them, then either one bundle (a JSON
//!   object of the matched keys at `remoteKey`) or one write per key, named
//!   by the `rewrite` steps; then every `data` entry. A `data` entry
//!   pushing a source key drops the per-key `dataTo` write of that key.
//! - two writes to one remote place (remote key and property) are an
//!   error naming both; so is one name from two `dataTo` entries (before
//!   `data` overrides, as ESO checks).
//! - the value of a write is the source key's bytes, or (no `secretKey`)
//!   the whole Secret as a JSON object of strings (Parameter Store: of
//!   base64 unless `encodeAsDecoded`).
//!
//! Errors in the spec (names, metadata, duplicates, patterns) fail the
//! whole plan before anything is pushed. A source key that is missing (or
//! a value a service cannot hold) stops the plan there, as ESO's loop
//! stops: the writes before it are made, then the PushSecret fails
//! ([`PushPlan::stop`]).
//!
//! Differences from External Secrets, each refusing what ESO does
//! silently or at random: a `property` on a Parameter Store entry (ESO
//! ignores it and overwrites the parameter) is refused; one remote name
//! written whole by one entry and by property by another is a duplicate;
//! two entries whose status keys collide (`a/b` + property `c` and `a/b/c`)
//! are refused; a bundle is never dropped by a `data` entry without
//! `secretKey` (ESO drops every bundle then); `.`/`..` segments in names
//! are refused; a dropped property of a remote secret other entries still
//! write is removed from its JSON instead of the whole secret being
//! deleted ([`DeletionAction`]).

use std::collections::{BTreeMap, BTreeSet};

use super::PushError;
use super::api::{
    PushConversionStrategy, PushDeletionPolicy, PushSecretData, PushSecretDataTo, PushSecretMatch,
    PushSecretRemoteRef, PushSecretSpec, PushSecretStatus, SyncedPushSecrets, UpdatePolicy,
    validate_spec,
};
use super::metadata::{self, PushMetadata};
use super::names;
use super::values;
use crate::external::api::{AwsService, StoreKindName};
use crate::external::conditions;
use crate::external::go_regexp::GoRegex;
use crate::external::rewrite::TransformFn;
use crate::secret::SecretBytes;

/// The most writes one plan may hold (all stores): each is an AWS call or
/// more per refresh.
pub const MAX_ENTRIES: usize = 1000;
/// The most stores one PushSecret may resolve to.
pub const MAX_STORES: usize = 100;

/// A store the PushSecret resolved to (`secretStoreRefs`), with what the
/// plan needs of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanStore {
    pub kind: StoreKindName,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub service: AwsService,
    /// The store's `prefix`, prepended to every remote key.
    pub prefix: String,
    pub region: String,
}

impl PlanStore {
    /// `Kind/name`, the store's key in `status.syncedPushSecrets`.
    pub fn key(&self) -> String {
        store_key(self.kind, &self.name)
    }
}

fn kind_name(kind: StoreKindName) -> &'static str {
    match kind {
        StoreKindName::SecretStore => "SecretStore",
        StoreKindName::ClusterSecretStore => "ClusterSecretStore",
    }
}

/// `Kind/name`.
pub fn store_key(kind: StoreKindName, name: &str) -> String {
    format!("{}/{name}", kind_name(kind))
}

/// A `status.syncedPushSecrets` store key read back (`Kind/name`).
pub fn parse_store_key(key: &str) -> Result<(StoreKindName, String), PushError> {
    let at = format!("status.syncedPushSecrets[{key:?}]");
    let (kind, name) = key
        .split_once('/')
        .ok_or_else(|| PushError::invalid(at.clone(), "not Kind/name"))?;
    let kind = match kind {
        "SecretStore" => StoreKindName::SecretStore,
        "ClusterSecretStore" => StoreKindName::ClusterSecretStore,
        _ => {
            return Err(PushError::invalid(
                at,
                "kind is not SecretStore or ClusterSecretStore",
            ));
        }
    };
    crate::names::check(name, crate::names::NameKind::Subdomain)
        .map_err(|e| PushError::invalid(at, e.to_string()))?;
    Ok((kind, name.to_owned()))
}

/// One write: a value to one remote secret (or one property of it)
/// through one store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushEntry {
    /// Index into the stores given to [`plan`].
    pub store: usize,
    /// `Kind/name` of the store.
    pub store_key: String,
    /// The entry it comes from: `spec.data[i]` or `spec.dataTo[i]`.
    pub at: String,
    /// Its key in `status.syncedPushSecrets`.
    pub status_key: String,
    /// The remote key as written (no prefix).
    pub remote_key: String,
    /// The name AWS sees: the store's prefix and the remote key, checked.
    pub remote_name: String,
    pub property: Option<String>,
    /// `property` split into object keys.
    pub property_path: Option<Vec<String>>,
    /// The source key pushed (none: the whole Secret, or a bundle).
    pub source_key: Option<String>,
    /// The bytes to push (before a property is merged into the remote
    /// JSON).
    pub value: SecretBytes,
    /// The entry's metadata for this store's service, defaults applied.
    pub metadata: PushMetadata,
    /// What `status.syncedPushSecrets` records for it.
    pub record: PushSecretData,
}

/// What to do with a remote secret an earlier push wrote and this one no
/// longer does (`deletionPolicy: Delete`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeletionAction {
    /// Delete the remote secret (if it still carries the managed-by tag).
    DeleteSecret,
    /// Other entries still write properties of this remote secret: only
    /// this property leaves its JSON ([`super::guard::remove_property`]).
    RemoveProperty,
    /// This store still writes the whole remote secret under another entry:
    /// nothing to do.
    Keep,
}

/// One entry of the previous `status.syncedPushSecrets` that is no longer
/// pushed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deletion {
    pub store_kind: StoreKindName,
    pub store_name: String,
    pub status_key: String,
    pub remote_key: String,
    pub property: Option<String>,
    pub action: DeletionAction,
}

impl Deletion {
    /// `Kind/name` of its store.
    pub fn store_key(&self) -> String {
        store_key(self.store_kind, &self.store_name)
    }

    /// The remote name to delete through `store` (the status is not
    /// trusted: the name is checked as a pushed one would be).
    pub fn remote_name(&self, store: &PlanStore) -> Result<String, PushError> {
        names::remote_name(
            store.service,
            &store.prefix,
            &self.remote_key,
            &store.region,
            &format!(
                "status.syncedPushSecrets[{:?}][{:?}]",
                self.store_key(),
                self.status_key
            ),
        )
    }
}

/// Everything one push of a PushSecret does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushPlan {
    pub update_policy: UpdatePolicy,
    /// The writes, store by store (in the order given), each store's
    /// `dataTo` writes first.
    pub entries: Vec<PushEntry>,
    /// Set when a write could not be made from the source data: make
    /// `entries` (all before it), then fail with this.
    pub stop: Option<PushError>,
    /// Stores planned (all of them, or up to the stop), as `Kind/name`:
    /// each has its map in the status, even an empty one.
    pub stores: Vec<String>,
    /// With `deletionPolicy: Delete` and no stop: the previous entries
    /// no longer pushed, to delete once every write succeeded.
    pub deletions: Vec<Deletion>,
}

impl PushPlan {
    /// `status.syncedPushSecrets` once every write succeeded.
    pub fn synced(&self) -> SyncedPushSecrets {
        let mut out: SyncedPushSecrets = self
            .stores
            .iter()
            .map(|s| (s.clone(), BTreeMap::new()))
            .collect();
        for e in &self.entries {
            out.entry(e.store_key.clone())
                .or_default()
                .insert(e.status_key.clone(), e.record.clone());
        }
        out
    }

    /// `status.syncedPushSecrets` after a failed push: what was written
    /// (`written`, the first entries of [`Self::entries`]) merged into
    /// the previous status, so nothing pushed is forgotten.
    pub fn synced_after_failure(
        &self,
        written: usize,
        old: &SyncedPushSecrets,
    ) -> SyncedPushSecrets {
        let mut new = SyncedPushSecrets::new();
        for e in self.entries.iter().take(written) {
            new.entry(e.store_key.clone())
                .or_default()
                .insert(e.status_key.clone(), e.record.clone());
        }
        merge_synced(new, old)
    }
}

/// `new` with every entry of `old` it lacks (External Secrets'
/// `mergeSecretState`; on a status key in both, `new`'s record is kept).
pub fn merge_synced(mut new: SyncedPushSecrets, old: &SyncedPushSecrets) -> SyncedPushSecrets {
    for (store, entries) in old {
        let into = new.entry(store.clone()).or_default();
        for (k, v) in entries {
            into.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    new
}

/// The entries of `old` that `desired` no longer has, and what to do with
/// each remote secret. With an empty `desired`: everything (the
/// PushSecret is being deleted, or its source Secret is gone).
pub fn deletions(
    old: &SyncedPushSecrets,
    desired: &SyncedPushSecrets,
) -> Result<Vec<Deletion>, PushError> {
    let mut out = Vec::new();
    for (store, entries) in old {
        let (kind, name) = parse_store_key(store)?;
        let wanted = desired.get(store);
        for (status_key, data) in entries {
            if wanted.is_some_and(|w| w.contains_key(status_key)) {
                continue;
            }
            let rr = &data.match_.remote_ref;
            if rr.remote_key.is_empty() {
                return Err(PushError::Missing {
                    path: format!(
                        "status.syncedPushSecrets[{store:?}][{status_key:?}].match.remoteRef.remoteKey"
                    ),
                });
            }
            let property = rr.property.clone().filter(|p| !p.is_empty());
            let others: Vec<&PushSecretData> = wanted
                .map(|w| {
                    w.values()
                        .filter(|d| d.match_.remote_ref.remote_key == rr.remote_key)
                        .collect()
                })
                .unwrap_or_default();
            let action = if others.is_empty() {
                DeletionAction::DeleteSecret
            } else if property.is_some()
                && others.iter().all(|d| {
                    d.match_
                        .remote_ref
                        .property
                        .as_deref()
                        .is_some_and(|p| !p.is_empty())
                })
            {
                DeletionAction::RemoveProperty
            } else {
                DeletionAction::Keep
            };
            out.push(Deletion {
                store_kind: kind,
                store_name: name.clone(),
                status_key: status_key.clone(),
                remote_key: rr.remote_key.clone(),
                property,
                action,
            });
        }
    }
    Ok(out)
}

/// The raw key of the source Secret an explicit entry pushes (its
/// `secretKey` is the converted one).
fn original_key(
    key: &str,
    conv: PushConversionStrategy,
    source: &BTreeMap<String, Vec<u8>>,
) -> String {
    if conv == PushConversionStrategy::None {
        return key.to_owned();
    }
    source
        .keys()
        .find(|k| values::reverse_key(conv, k) == key)
        .cloned()
        .unwrap_or_else(|| key.to_owned())
}

/// A write before its value is read.
struct Candidate {
    store: usize,
    at: String,
    /// Who writes it, for duplicate errors.
    who: String,
    record: PushSecretData,
    remote_name: String,
    property_path: Option<Vec<String>>,
    /// A bundle's matched keys (converted) and values.
    bundle: Option<BTreeMap<String, Vec<u8>>>,
    metadata: PushMetadata,
    /// A per-key `dataTo` write (dropped when `data` pushes its key).
    per_key: bool,
}

fn data_to_targets(d: &PushSecretDataTo, store: &PlanStore, at: &str) -> Result<bool, PushError> {
    let Some(r) = &d.store_ref else {
        return Ok(false);
    };
    if r.kind() != store.kind {
        return Ok(false);
    }
    if let Some(name) = &r.name {
        return Ok(*name == store.name);
    }
    match &r.label_selector {
        Some(sel) => conditions::selector_matches(
            sel,
            &store.labels,
            &format!("{at}.storeRef.labelSelector"),
        )
        .map_err(|e| PushError::invalid(format!("{at}.storeRef.labelSelector"), e.to_string())),
        None => Ok(false),
    }
}

/// Records `remote` as written by `who`; a second writer is an error.
fn register(
    seen: &mut BTreeMap<String, String>,
    remote: &str,
    who: &str,
    at: &str,
) -> Result<(), PushError> {
    if let Some(other) = seen.get(remote) {
        return Err(PushError::Duplicate {
            path: at.to_owned(),
            remote: remote.to_owned(),
            other: other.clone(),
        });
    }
    seen.insert(remote.to_owned(), who.to_owned());
    Ok(())
}

/// The writes of one store, checked (pass one: no values read).
fn store_candidates(
    spec: &PushSecretSpec,
    source: &BTreeMap<String, Vec<u8>>,
    stores: &[PlanStore],
    si: usize,
    transform: TransformFn<'_>,
) -> Result<Vec<Candidate>, PushError> {
    let store = &stores[si];
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let mut cands: Vec<Candidate> = Vec::new();
    for (i, dt) in spec.data_to.iter().enumerate() {
        let at = format!("spec.dataTo[{i}]");
        if !data_to_targets(dt, store, &at)? {
            continue;
        }
        let conv = dt.conversion_strategy.unwrap_or_default();
        let converted = values::reverse_keys(conv, source)
            .map_err(|why| PushError::invalid(format!("{at}.conversionStrategy"), why))?;
        let re = match dt.match_.as_ref().and_then(|m| m.regexp.as_deref()) {
            Some(p) => Some(GoRegex::new(p).map_err(|why| {
                PushError::invalid(
                    format!("{at}.match.regexp"),
                    format!("failed to compile regexp pattern: {why}"),
                )
            })?),
            None => None,
        };
        let matched: Vec<(&String, &(&str, &[u8]))> = converted
            .iter()
            .filter(|(k, _)| re.as_ref().is_none_or(|re| re.is_match(k)))
            .collect();
        if matched.is_empty() {
            continue;
        }
        let metadata = metadata::for_service(
            store.service,
            dt.metadata.as_ref(),
            &format!("{at}.metadata"),
        )?;
        let record = |secret_key: Option<String>, remote_key: String| PushSecretData {
            match_: PushSecretMatch {
                secret_key,
                remote_ref: PushSecretRemoteRef {
                    remote_key,
                    property: None,
                },
            },
            metadata: dt.metadata.clone(),
            // The conversion was applied when matching.
            conversion_strategy: Some(PushConversionStrategy::None),
        };
        if let Some(rk) = dt.remote_key() {
            let key_at = format!("{at}.remoteKey");
            register(&mut seen, rk, &at, &key_at)?;
            let remote_name =
                names::remote_name(store.service, &store.prefix, rk, &store.region, &key_at)?;
            cands.push(Candidate {
                store: si,
                at: at.clone(),
                who: at.clone(),
                record: record(None, rk.to_owned()),
                remote_name,
                property_path: None,
                bundle: Some(
                    matched
                        .iter()
                        .map(|(k, (_, v))| ((*k).clone(), v.to_vec()))
                        .collect(),
                ),
                metadata,
                per_key: false,
            });
            continue;
        }
        // Compiled once per entry, applied per key.
        let mut steps: Vec<(String, Result<GoRegex, &str>)> = Vec::with_capacity(dt.rewrite.len());
        for (j, op) in dt.rewrite.iter().enumerate() {
            let step_at = format!("{at}.rewrite[{j}]");
            match (&op.regexp, &op.transform) {
                (Some(r), None) => {
                    let re = GoRegex::new(&r.source).map_err(|why| {
                        PushError::invalid(format!("{step_at}.regexp.source"), why)
                    })?;
                    steps.push((step_at, Ok(re)));
                }
                (None, Some(t)) => steps.push((step_at, Err(t.template.as_str()))),
                _ => {
                    return Err(PushError::invalid(
                        step_at,
                        "exactly one of regexp or transform must be set",
                    ));
                }
            }
        }
        for (conv_key, (orig, _)) in matched {
            let mut remote = conv_key.clone();
            for (j, (step_at, step)) in steps.iter().enumerate() {
                remote = match step {
                    Ok(re) => {
                        let target = dt.rewrite[j]
                            .regexp
                            .as_ref()
                            .map(|r| r.target.as_str())
                            .unwrap_or_default();
                        re.replace_all(&remote, target)
                    }
                    Err(template) => transform(template, &remote).map_err(|why| {
                        PushError::invalid(
                            format!("{step_at}.transform.template"),
                            format!("on key {remote:?}: {why}"),
                        )
                    })?,
                };
            }
            let key_at = if steps.is_empty() {
                at.clone()
            } else {
                format!("{at}.rewrite")
            };
            if remote.is_empty() {
                return Err(PushError::invalid(
                    key_at,
                    format!("empty remote key produced for source key {orig:?}"),
                ));
            }
            let who = format!("{at} (source key {orig:?})");
            register(&mut seen, &remote, &who, &key_at)?;
            let remote_name = names::remote_name(
                store.service,
                &store.prefix,
                &remote,
                &store.region,
                &key_at,
            )?;
            cands.push(Candidate {
                store: si,
                at: at.clone(),
                who,
                record: record(Some((*orig).to_owned()), remote),
                remote_name,
                property_path: None,
                bundle: None,
                metadata: metadata.clone(),
                per_key: true,
            });
        }
    }
    // Explicit entries: every store; a source key they push drops its
    // per-key dataTo write.
    let mut explicit_keys: BTreeSet<String> = BTreeSet::new();
    for (i, d) in spec.data.iter().enumerate() {
        let at = format!("spec.data[{i}]");
        let rr = &d.match_.remote_ref;
        let remote_name = names::remote_name(
            store.service,
            &store.prefix,
            &rr.remote_key,
            &store.region,
            &format!("{at}.match.remoteRef.remoteKey"),
        )?;
        let property_path = match rr.property.as_deref().filter(|p| !p.is_empty()) {
            None => None,
            Some(p) => {
                let p_at = format!("{at}.match.remoteRef.property");
                if store.service == AwsService::ParameterStore {
                    return Err(PushError::unsupported(
                        p_at,
                        "a parameter has no properties (External Secrets ignores the property and overwrites the whole parameter)",
                    ));
                }
                Some(values::property_path(p).map_err(|why| PushError::invalid(p_at, why))?)
            }
        };
        let metadata = metadata::for_service(
            store.service,
            d.metadata.as_ref(),
            &format!("{at}.metadata"),
        )?;
        if let Some(k) = d.match_.secret_key() {
            explicit_keys.insert(original_key(k, d.conversion(), source));
        }
        cands.push(Candidate {
            store: si,
            at: at.clone(),
            who: at,
            record: d.clone(),
            remote_name,
            property_path,
            bundle: None,
            metadata,
            per_key: false,
        });
    }
    cands.retain(|c| {
        !(c.per_key
            && c.record
                .match_
                .secret_key()
                .is_some_and(|k| explicit_keys.contains(k)))
    });
    // One remote place, one writer: (name, property); a name written
    // whole and by property; status keys that collide.
    let identity = |c: &Candidate| -> String {
        match store.service {
            AwsService::ParameterStore => names::ssm_identity(&c.remote_name).to_owned(),
            _ => c.remote_name.clone(),
        }
    };
    let mut places: BTreeMap<(String, Option<String>), &str> = BTreeMap::new();
    let mut whole: BTreeMap<String, &str> = BTreeMap::new();
    let mut by_property: BTreeMap<String, &str> = BTreeMap::new();
    let mut status: BTreeMap<String, &str> = BTreeMap::new();
    for c in &cands {
        let rr = &c.record.match_.remote_ref;
        let name = identity(c);
        let property = rr.property.clone().filter(|p| !p.is_empty());
        let path = format!("{}.match.remoteRef", c.at);
        let dup = |other: &str| PushError::Duplicate {
            path: if c.per_key || c.bundle.is_some() {
                c.at.clone()
            } else {
                path.clone()
            },
            remote: c.record.status_key(),
            other: other.to_owned(),
        };
        if let Some(other) = places.insert((name.clone(), property.clone()), &c.who) {
            return Err(dup(other));
        }
        let (mine, theirs) = if property.is_some() {
            (&mut by_property, &whole)
        } else {
            (&mut whole, &by_property)
        };
        if let Some(other) = theirs.get(&name) {
            return Err(PushError::invalid(
                path,
                format!(
                    "remote key {:?} is written whole here and by property by {other} (or the reverse): one would undo the other",
                    rr.remote_key
                ),
            ));
        }
        mine.entry(name).or_insert(&c.who);
        if let Some(other) = status.insert(c.record.status_key(), &c.who) {
            return Err(PushError::invalid(
                path,
                format!(
                    "its status key {:?} is also {other}'s; status.syncedPushSecrets could not tell them apart",
                    c.record.status_key()
                ),
            ));
        }
    }
    Ok(cands)
}

/// The value of one write (pass two), or why it cannot be made.
fn value_of(c: &Candidate, source: &BTreeMap<String, Vec<u8>>) -> Result<Vec<u8>, PushError> {
    let data = c.bundle.as_ref().unwrap_or(source);
    let conv = c.record.conversion();
    let converted = values::reverse_keys(conv, data)
        .map_err(|why| PushError::invalid(format!("{}.conversionStrategy", c.at), why))?;
    let value = match c.record.match_.secret_key() {
        Some(k) => match converted.get(k) {
            Some((_, v)) => v.to_vec(),
            None => {
                return Err(PushError::MissingKey {
                    path: format!("{}.match.secretKey", c.at),
                    key: k.to_owned(),
                });
            }
        },
        None => {
            let all: BTreeMap<String, Vec<u8>> = converted
                .into_iter()
                .map(|(k, (_, v))| (k, v.to_vec()))
                .collect();
            let base64 = match &c.metadata {
                PushMetadata::ParameterStore(m) => !m.encode_as_decoded,
                PushMetadata::SecretsManager(_) => false,
            };
            values::secret_json(&all, base64)
        }
    };
    let key_at = || format!("{}.match.secretKey", c.at);
    match &c.metadata {
        PushMetadata::ParameterStore(m) => {
            if std::str::from_utf8(&value).is_err() {
                return Err(PushError::invalid(
                    key_at(),
                    "the value is not UTF-8 text, and a parameter holds text",
                ));
            }
            if value.len() > m.tier.max_value() {
                return Err(PushError::TooLarge {
                    path: key_at(),
                    len: value.len(),
                    limit: m.tier.max_value(),
                    service: "Parameter Store (this tier)",
                });
            }
        }
        PushMetadata::SecretsManager(_) => {
            if c.property_path.is_some() && std::str::from_utf8(&value).is_err() {
                return Err(PushError::invalid(
                    key_at(),
                    "the value is not UTF-8 text, so it cannot be a property of a JSON object",
                ));
            }
            if value.len() > super::guard::SM_MAX_VALUE {
                return Err(PushError::TooLarge {
                    path: key_at(),
                    len: value.len(),
                    limit: super::guard::SM_MAX_VALUE,
                    service: "Secrets Manager",
                });
            }
        }
    }
    Ok(value)
}

/// The plan of one push of `spec` (with its `status`) from `source` (the
/// source Secret's data, after `spec.template` was applied) to `stores`
/// (what `secretStoreRefs` resolved to, unmanaged and deleting stores
/// left out, in the order to push). `transform` renders a rewrite
/// `transform.template` for one key.
pub fn plan(
    spec: &PushSecretSpec,
    status: &PushSecretStatus,
    source: &BTreeMap<String, Vec<u8>>,
    stores: &[PlanStore],
    transform: TransformFn<'_>,
) -> Result<PushPlan, PushError> {
    validate_spec(spec)?;
    if stores.len() > MAX_STORES {
        return Err(PushError::invalid(
            "spec.secretStoreRefs",
            format!("resolve to {} stores, more than {MAX_STORES}", stores.len()),
        ));
    }
    let mut keys = BTreeSet::new();
    for s in stores {
        if !keys.insert(s.key()) {
            return Err(PushError::invalid(
                "spec.secretStoreRefs",
                format!("{} is named twice", s.key()),
            ));
        }
        if s.service == AwsService::CertificateManager {
            return Err(PushError::unsupported(
                "spec.secretStoreRefs",
                "pushing through a Certificate Manager store",
            ));
        }
    }
    // A dataTo labelSelector must find one of the resolved stores.
    for (i, dt) in spec.data_to.iter().enumerate() {
        let at = format!("spec.dataTo[{i}]");
        if dt
            .store_ref
            .as_ref()
            .is_some_and(|r| r.label_selector.is_some())
        {
            let mut any = false;
            for s in stores {
                any |= data_to_targets(dt, s, &at)?;
            }
            if !any {
                return Err(PushError::invalid(
                    format!("{at}.storeRef.labelSelector"),
                    "labelSelector does not match any store in secretStoreRefs",
                ));
            }
        }
    }
    let mut all: Vec<Candidate> = Vec::new();
    for si in 0..stores.len() {
        all.extend(store_candidates(spec, source, stores, si, transform)?);
        if all.len() > MAX_ENTRIES {
            return Err(PushError::invalid(
                "spec",
                format!("more than {MAX_ENTRIES} remote writes"),
            ));
        }
    }
    let mut entries = Vec::with_capacity(all.len());
    let mut stop = None;
    let mut planned: Vec<String> = Vec::new();
    for c in all {
        let key = stores[c.store].key();
        if planned.last() != Some(&key) {
            planned.push(key.clone());
        }
        let value = match value_of(&c, source) {
            Ok(v) => v,
            Err(e) => {
                stop = Some(e);
                break;
            }
        };
        let rr = &c.record.match_.remote_ref;
        entries.push(PushEntry {
            store: c.store,
            store_key: key,
            status_key: c.record.status_key(),
            remote_key: rr.remote_key.clone(),
            remote_name: c.remote_name,
            property: rr.property.clone().filter(|p| !p.is_empty()),
            property_path: c.property_path,
            source_key: c.record.match_.secret_key().map(str::to_owned),
            value: SecretBytes::new(value),
            metadata: c.metadata,
            at: c.at,
            record: c.record,
        });
    }
    if stop.is_none() {
        // Stores with no write still get their (empty) status map.
        planned = stores.iter().map(PlanStore::key).collect();
    }
    let mut out = PushPlan {
        update_policy: spec.update_policy(),
        entries,
        stop,
        stores: planned,
        deletions: Vec::new(),
    };
    if spec.deletion_policy() == PushDeletionPolicy::Delete && out.stop.is_none() {
        out.deletions = deletions(&status.synced_push_secrets, &out.synced())?;
    }
    Ok(out)
}
