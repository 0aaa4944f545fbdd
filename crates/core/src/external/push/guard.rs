//! What one planned write (or delete) does to one remote secret, given
//! what AWS holds: refuse, skip, create, or update (tags, resource policy,
//! replicas, value), in External Secrets' order and with its rules
//! (`providers/v1/aws/secretsmanager/secretsmanager.go` `PushSecret`,
//! `DeleteSecret`; `parameterstore/parameterstore.go` likewise).
//!
//! The guard: an existing remote secret is written or deleted only when it
//! carries exactly the tag `managed-by: external-secrets` ([`is_managed`]);
//! an unmanaged one is refused on push (naming its key) and kept on
//! delete. Metadata can never set that tag ([`super::metadata`]).

use std::collections::BTreeMap;

use serde_json::Value;

use super::api::UpdatePolicy;
use super::metadata::{
    ParameterStoreMetadata, ParameterType, PushMetadata, SecretPushFormat, SecretsManagerMetadata,
    Tier,
};
use super::plan::PushEntry;
use super::values::{self, NotObject};
use super::{MANAGED_BY_KEY, MANAGED_BY_VALUE, PushError};
use crate::external::api::SecretsManagerSettings;
use crate::secret::SecretBytes;

/// The version id External Secrets gives a secret's first value.
pub const INITIAL_VERSION: &str = "00000000-0000-0000-0000-000000000001";
/// Secrets Manager's largest value (SecretString or SecretBinary).
pub const SM_MAX_VALUE: usize = 65536;

/// Whether remote tags mark the secret as ours: the key `managed-by`
/// with the value `external-secrets`, both exactly (no prefix, no case
/// folding, no trimming).
pub fn is_managed(tags: &BTreeMap<String, String>) -> bool {
    tags.get(MANAGED_BY_KEY).map(String::as_str) == Some(MANAGED_BY_VALUE)
}

/// Why a write is skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// `updatePolicy: IfNotExists` and the remote secret exists.
    Exists,
    /// The remote value is already the one to push (Parameter Store:
    /// nothing else is reconciled then).
    Unchanged,
}

/// The ClientRequestToken (version id) of a Secrets Manager write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token {
    /// [`INITIAL_VERSION`]: the secret has no version yet.
    Initial,
    /// A new random UUID (the controller makes it).
    Fresh,
}

/// A Secrets Manager value write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmWrite {
    pub value: SecretBytes,
    /// SecretBinary or SecretString.
    pub format: SecretPushFormat,
    pub token: Token,
}

/// A replica region and the KMS key of its copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replica {
    pub region: String,
    pub kms_key_id: Option<String>,
}

/// What a Secrets Manager secret currently holds (its AWSCURRENT version).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SmCurrent {
    /// DescribeSecret lists no version (created without a value).
    NoVersion,
    /// GetSecretValue's answer.
    String(SecretBytes),
    Binary(SecretBytes),
}

impl SmCurrent {
    fn bytes(&self) -> Option<&[u8]> {
        match self {
            SmCurrent::NoVersion => None,
            SmCurrent::String(v) | SmCurrent::Binary(v) => Some(v.expose()),
        }
    }
}

/// An existing Secrets Manager secret, as DescribeSecret (and, when it
/// has a version, GetSecretValue) tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmRemote {
    pub tags: BTreeMap<String, String>,
    pub kms_key_id: Option<String>,
    /// Regions of `ReplicationStatus`, in AWS's order.
    pub replica_regions: Vec<String>,
    pub current: SmCurrent,
}

/// The resource policy step of a Secrets Manager update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyStep {
    /// DeleteResourcePolicy (External Secrets calls it on every push when
    /// metadata names no policy; "not found" is success).
    Delete,
    /// GetResourcePolicy, then PutResourcePolicy when
    /// [`policy_differs`] says so.
    Reconcile {
        policy: String,
        block_public_policy: Option<bool>,
    },
}

/// A new Secrets Manager secret: CreateSecret, then PutResourcePolicy
/// when `policy` is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmCreate {
    pub name: String,
    pub value: SecretBytes,
    pub format: SecretPushFormat,
    /// Always holds `managed-by: external-secrets`.
    pub tags: BTreeMap<String, String>,
    pub description: String,
    pub kms_key_id: String,
    pub replicas: Vec<Replica>,
    /// The policy JSON and `blockPublicPolicy`.
    pub policy: Option<(String, Option<bool>)>,
    /// Always [`Token::Initial`].
    pub token: Token,
}

/// An update of an existing, managed Secrets Manager secret, in order:
/// UntagResource, TagResource, the policy step, RemoveRegionsFromReplication,
/// ReplicateSecretToRegions, PutSecretValue. Tags, policy and replicas are
/// made the desired ones on every push, whether or not the value changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmUpdate {
    pub name: String,
    pub untag: Vec<String>,
    /// TagResource with these (all desired tags), when any differs.
    pub tag: BTreeMap<String, String>,
    pub policy: PolicyStep,
    pub remove_regions: Vec<String>,
    pub add_replicas: Vec<Replica>,
    /// None: the value is unchanged.
    pub write: Option<SmWrite>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SmDecision {
    Skip(Skip),
    Create(SmCreate),
    Update(SmUpdate),
}

fn sm_meta(entry: &PushEntry) -> Result<&SecretsManagerMetadata, PushError> {
    match &entry.metadata {
        PushMetadata::SecretsManager(m) => Ok(m),
        PushMetadata::ParameterStore(_) => Err(PushError::invalid(
            entry.at.clone(),
            "planned for Parameter Store, not Secrets Manager",
        )),
    }
}

fn ssm_meta(entry: &PushEntry) -> Result<&ParameterStoreMetadata, PushError> {
    match &entry.metadata {
        PushMetadata::ParameterStore(m) => Ok(m),
        PushMetadata::SecretsManager(_) => Err(PushError::invalid(
            entry.at.clone(),
            "planned for Secrets Manager, not Parameter Store",
        )),
    }
}

/// The bytes to hold after the push: the entry's value, or (with a
/// `property`) the current JSON object with that property set. `None`:
/// the property already holds the value.
fn sm_final_value(entry: &PushEntry, current: Option<&[u8]>) -> Result<Option<Vec<u8>>, PushError> {
    let Some(path) = &entry.property_path else {
        return Ok(Some(entry.value.expose().to_vec()));
    };
    // The plan checked the value is UTF-8 text for a property push.
    let text = std::str::from_utf8(entry.value.expose())
        .map_err(|_| PushError::invalid(entry.at.clone(), "a property value must be UTF-8 text"))?;
    values::set_property(current, path, text).map_err(|NotObject(why)| PushError::NotJsonObject {
        key: entry.remote_name.clone(),
        path: why,
    })
}

fn check_size(entry: &PushEntry, len: usize) -> Result<(), PushError> {
    if len > SM_MAX_VALUE {
        return Err(PushError::TooLarge {
            path: entry.at.clone(),
            len,
            limit: SM_MAX_VALUE,
            service: "Secrets Manager",
        });
    }
    Ok(())
}

fn replicas(regions: &[String], kms: Option<&str>) -> Vec<Replica> {
    regions
        .iter()
        .map(|r| Replica {
            region: r.clone(),
            kms_key_id: kms.map(str::to_owned),
        })
        .collect()
}

/// Tags to remove, and the desired set when any of it (other than
/// `managed-by`) is missing or different (`FindTagKeysToRemove`,
/// `computeTagsToUpdate`).
fn tag_changes(
    current: &BTreeMap<String, String>,
    desired: &BTreeMap<String, String>,
) -> (Vec<String>, BTreeMap<String, String>) {
    let untag = current
        .keys()
        .filter(|k| !desired.contains_key(*k))
        .cloned()
        .collect();
    let modified = desired
        .iter()
        .any(|(k, v)| k != MANAGED_BY_KEY && current.get(k) != Some(v));
    let tag = if modified {
        desired.clone()
    } else {
        BTreeMap::new()
    };
    (untag, tag)
}

/// The write for one Secrets Manager entry. `remote`: None when
/// DescribeSecret says not found. `policy`: the resource policy JSON the
/// controller read for `metadata.resourcePolicy` (ignored without one).
pub fn decide_secrets_manager(
    entry: &PushEntry,
    update: UpdatePolicy,
    remote: Option<&SmRemote>,
    policy: Option<&str>,
) -> Result<SmDecision, PushError> {
    let meta = sm_meta(entry)?;
    // IfNotExists asks GetSecretValue first: a secret without a version
    // is "not found" there, so it is written.
    if update == UpdatePolicy::IfNotExists
        && remote.is_some_and(|r| r.current != SmCurrent::NoVersion)
    {
        return Ok(SmDecision::Skip(Skip::Exists));
    }
    let wanted_policy = match (&meta.resource_policy, policy) {
        (None, _) => None,
        (Some(rp), Some(text)) => Some((text.to_owned(), rp.block_public_policy)),
        (Some(rp), None) => {
            return Err(PushError::invalid(
                format!("{}.metadata.spec.resourcePolicy.policySourceRef", entry.at),
                format!(
                    "the policy of {:?} {}/{} was not read",
                    rp.kind, rp.name, rp.key
                ),
            ));
        }
    };
    let Some(remote) = remote else {
        let value = sm_final_value(entry, None)?.unwrap_or_default();
        check_size(entry, value.len())?;
        return Ok(SmDecision::Create(SmCreate {
            name: entry.remote_name.clone(),
            value: SecretBytes::new(value),
            format: meta.format,
            tags: meta.tags.clone(),
            description: meta.description.clone(),
            kms_key_id: meta.kms_key_id.clone(),
            replicas: replicas(
                meta.replication_locations.as_deref().unwrap_or_default(),
                Some(&meta.kms_key_id),
            ),
            policy: wanted_policy.filter(|(p, _)| !p.is_empty()),
            token: Token::Initial,
        }));
    };
    if !is_managed(&remote.tags) {
        return Err(PushError::NotManaged {
            key: entry.remote_name.clone(),
        });
    }
    let (untag, tag) = if meta.tags_named {
        tag_changes(&remote.tags, &meta.tags)
    } else {
        (Vec::new(), BTreeMap::new())
    };
    let policy = match wanted_policy {
        Some((p, block)) if !p.is_empty() => PolicyStep::Reconcile {
            policy: p,
            block_public_policy: block,
        },
        _ => PolicyStep::Delete,
    };
    let (remove_regions, add_replicas) = match &meta.replication_locations {
        None => (Vec::new(), Vec::new()),
        Some(want) => {
            let remove = remote
                .replica_regions
                .iter()
                .filter(|r| !want.contains(r))
                .cloned()
                .collect();
            let add: Vec<String> = want
                .iter()
                .filter(|r| !remote.replica_regions.contains(r))
                .cloned()
                .collect();
            (remove, replicas(&add, remote.kms_key_id.as_deref()))
        }
    };
    let current = remote.current.bytes();
    let write = match sm_final_value(entry, current)? {
        None => None,
        Some(value) if current == Some(value.as_slice()) => None,
        Some(value) => {
            check_size(entry, value.len())?;
            Some(SmWrite {
                value: SecretBytes::new(value),
                format: meta.format,
                token: if current.is_some() {
                    Token::Fresh
                } else {
                    Token::Initial
                },
            })
        }
    };
    Ok(SmDecision::Update(SmUpdate {
        name: entry.remote_name.clone(),
        untag,
        tag,
        policy,
        remove_regions,
        add_replicas,
        write,
    }))
}

/// Whether PutResourcePolicy is needed: the desired and current policies
/// differ as JSON objects (key order and spacing do not matter; numbers
/// compare as numbers). Either not being a JSON object is an error
/// naming which.
pub fn policy_differs(desired: &str, current: Option<&str>, at: &str) -> Result<bool, PushError> {
    let parse = |text: &str, which: &str| -> Result<Option<Value>, PushError> {
        if text.is_empty() {
            return Ok(None);
        }
        match serde_json::from_str::<Value>(text) {
            Ok(v @ Value::Object(_)) => Ok(Some(v)),
            // Go's Unmarshal into a map takes `null` as no map.
            Ok(Value::Null) => Ok(None),
            _ => Err(PushError::invalid(
                at,
                format!("the {which} resource policy is not a JSON object"),
            )),
        }
    };
    let want = parse(desired, "desired")?;
    let have = parse(current.unwrap_or_default(), "current")?;
    Ok(match (want, have) {
        (Some(a), Some(b)) => !values::go_json_equal(&a, &b),
        (None, None) => false,
        _ => true,
    })
}

/// A Parameter Store PutParameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsmPut {
    pub name: String,
    pub value: SecretBytes,
    pub type_: ParameterType,
    /// false on create (fails if another writer created it meanwhile).
    pub overwrite: bool,
    pub description: String,
    /// SecureString only.
    pub kms_key_id: Option<String>,
    /// Sent only for tier Advanced (as External Secrets does).
    pub tier: Option<Tier>,
    pub policies: Option<String>,
    /// On create only; always holds `managed-by: external-secrets`.
    pub tags: BTreeMap<String, String>,
}

/// An existing parameter: its value (read with decryption) and tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsmRemote {
    pub value: SecretBytes,
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SsmDecision {
    Skip(Skip),
    Create(SsmPut),
    /// PutParameter (overwrite), then RemoveTagsFromResource `untag`,
    /// then AddTagsToResource `tag` (when not empty). Unlike Secrets
    /// Manager, tags are reconciled only with a new value, and every tag
    /// metadata does not name is removed.
    Update {
        put: SsmPut,
        untag: Vec<String>,
        tag: BTreeMap<String, String>,
    },
}

/// The write for one Parameter Store entry. `remote`: None when
/// GetParameter says not found.
pub fn decide_parameter_store(
    entry: &PushEntry,
    update: UpdatePolicy,
    remote: Option<&SsmRemote>,
) -> Result<SsmDecision, PushError> {
    let meta = ssm_meta(entry)?;
    if update == UpdatePolicy::IfNotExists && remote.is_some() {
        return Ok(SsmDecision::Skip(Skip::Exists));
    }
    let put = |overwrite: bool, tags: BTreeMap<String, String>| SsmPut {
        name: entry.remote_name.clone(),
        value: entry.value.clone(),
        type_: meta.secret_type,
        overwrite,
        description: meta.description.clone(),
        kms_key_id: (meta.secret_type == ParameterType::SecureString)
            .then(|| meta.kms_key_id.clone()),
        tier: (meta.tier == Tier::Advanced).then_some(Tier::Advanced),
        policies: meta.policies.clone(),
        tags,
    };
    let Some(remote) = remote else {
        return Ok(SsmDecision::Create(put(false, meta.tags.clone())));
    };
    if !is_managed(&remote.tags) {
        return Err(PushError::NotManaged {
            key: entry.remote_name.clone(),
        });
    }
    // External Secrets refuses to compare the placeholder an undecrypted
    // read returns; it reads with decryption, so this is a stored value
    // that is literally the word.
    if remote.value.expose() == b"sensitive" {
        return Err(PushError::invalid(
            entry.at.clone(),
            format!(
                "{}: unable to compare 'sensitive' result, ensure to request a decrypted value",
                entry.remote_name
            ),
        ));
    }
    if remote.value.expose() == entry.value.expose() {
        return Ok(SsmDecision::Skip(Skip::Unchanged));
    }
    let (untag, tag) = tag_changes(&remote.tags, &meta.tags);
    Ok(SsmDecision::Update {
        put: put(true, BTreeMap::new()),
        untag,
        tag,
    })
}

/// What deleting one no-longer-wanted remote secret does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteDecision {
    /// Not there: nothing to do.
    Gone,
    /// There but not managed by external-secrets: kept, silently.
    NotManaged,
    /// Secrets Manager: RemoveRegionsFromReplication `remove_regions`
    /// (AWS refuses to delete a secret with replicas), then DeleteSecret.
    /// Parameter Store: DeleteParameter (no options).
    Delete {
        remove_regions: Vec<String>,
        force_delete_without_recovery: bool,
        recovery_window_in_days: Option<i64>,
    },
}

/// The store's Secrets Manager delete settings, checked as External
/// Secrets checks them before DeleteSecret (here before any call).
fn delete_options(
    settings: Option<&SecretsManagerSettings>,
) -> Result<(bool, Option<i64>), PushError> {
    let at = "spec.provider.aws.secretsManager";
    let force = settings
        .and_then(|s| s.force_delete_without_recovery)
        .unwrap_or(false);
    let window = settings
        .and_then(|s| s.recovery_window_in_days)
        .unwrap_or(0);
    if window < 0 || (window != 0 && !(7..=30).contains(&window)) {
        return Err(PushError::invalid(
            format!("{at}.recoveryWindowInDays"),
            "invalid DeleteSecretInput: RecoveryWindowInDays must be between 7 and 30 days",
        ));
    }
    if window != 0 && force {
        return Err(PushError::invalid(
            at,
            "invalid DeleteSecretInput: ForceDeleteWithoutRecovery conflicts with RecoveryWindowInDays",
        ));
    }
    Ok((force, (window != 0).then_some(window)))
}

/// Deleting a Secrets Manager secret (`remote`: None when not found).
/// A managed secret without a version is deleted too (External Secrets
/// reads its value first and takes "no value" as already gone).
pub fn decide_secrets_manager_delete(
    remote: Option<&SmRemote>,
    settings: Option<&SecretsManagerSettings>,
) -> Result<DeleteDecision, PushError> {
    let Some(remote) = remote else {
        return Ok(DeleteDecision::Gone);
    };
    if !is_managed(&remote.tags) {
        return Ok(DeleteDecision::NotManaged);
    }
    let (force, window) = delete_options(settings)?;
    Ok(DeleteDecision::Delete {
        remove_regions: remote.replica_regions.clone(),
        force_delete_without_recovery: force,
        recovery_window_in_days: window,
    })
}

/// Deleting a parameter (`tags`: None when not found).
pub fn decide_parameter_store_delete(tags: Option<&BTreeMap<String, String>>) -> DeleteDecision {
    match tags {
        None => DeleteDecision::Gone,
        Some(t) if !is_managed(t) => DeleteDecision::NotManaged,
        Some(_) => DeleteDecision::Delete {
            remove_regions: Vec::new(),
            force_delete_without_recovery: false,
            recovery_window_in_days: None,
        },
    }
}

/// A property no longer pushed out of a remote JSON object that other
/// entries still write (instead of External Secrets' deletion of the
/// whole secret): the new value, or None when there is nothing to do
/// (gone, unmanaged, no version, property absent).
pub fn remove_property(
    remote: Option<&SmRemote>,
    name: &str,
    property: &str,
) -> Result<Option<SmWrite>, PushError> {
    let Some(remote) = remote.filter(|r| is_managed(&r.tags)) else {
        return Ok(None);
    };
    let path = values::property_path(property)
        .map_err(|why| PushError::invalid(format!("{name} property"), why))?;
    let (bytes, format) = match &remote.current {
        SmCurrent::NoVersion => return Ok(None),
        SmCurrent::String(v) => (v, SecretPushFormat::String),
        SmCurrent::Binary(v) => (v, SecretPushFormat::Binary),
    };
    let out = values::remove_property(bytes.expose(), &path).map_err(|NotObject(why)| {
        PushError::NotJsonObject {
            key: name.to_owned(),
            path: why,
        }
    })?;
    Ok(out.map(|v| SmWrite {
        value: SecretBytes::new(v),
        format,
        token: Token::Fresh,
    }))
}
