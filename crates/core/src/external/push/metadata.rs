//! Push metadata of the AWS providers: `metadata` of a `data` or `dataTo`
//! entry, a `kind: PushSecretMetadata` envelope whose `spec` is the
//! service's ([`SecretsManagerMetadataSpec`], [`ParameterStoreMetadataSpec`]).
//! Read as External Secrets reads it (`runtime/esutils/metadata`,
//! `constructMetadataWithDefaults` of each provider): unknown fields are
//! refused, field names match case-insensitively (Go's `encoding/json`, so
//! `kmsKeyID` is `kmsKeyId`), then defaults apply and the user may not set
//! the `managed-by` tag. Stricter than External Secrets, each refused
//! with its path: a field name given twice in different case, a value
//! AWS would refuse (tag, description and key lengths, tag counts, `aws:`
//! tag keys), a `resourcePolicy` without `policySourceRef`, `tier.policies`
//! without tier Advanced (ESO drops them), unknown `secretType` / tier.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::api::{METADATA_API_VERSION, METADATA_KIND};
use super::{MANAGED_BY_KEY, MANAGED_BY_VALUE, PushError};
use crate::external::api::AwsService;
use crate::names::{self, NameKind};

/// The envelope every push metadata has.
#[derive(Deserialize, Serialize, JsonSchema, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetadataEnvelope {
    /// `kubernetes.external-secrets.io/v1alpha1`.
    #[serde(default)]
    pub api_version: Option<String>,
    /// `PushSecretMetadata`.
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<Value>,
}

/// `spec` of Secrets Manager push metadata.
#[derive(Deserialize, Serialize, JsonSchema, Debug, Clone, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretsManagerMetadataSpec {
    /// `binary` (default) or `string`: SecretBinary or SecretString.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_push_format: Option<String>,
    /// KMS key of a new secret (default `alias/aws/secretsmanager`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
    /// Description of a new secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// When any: the secret's tags (besides `managed-by`), on every push.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
    /// The secret's resource policy, on every push (none: deleted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_policy: Option<ResourcePolicySpec>,
    /// When set (even empty): the regions the secret is replicated to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_locations: Option<Vec<String>>,
}

#[derive(Deserialize, Serialize, JsonSchema, Debug, Clone, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourcePolicySpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_public_policy: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_source_ref: Option<PolicySourceRefSpec>,
}

/// Where the policy JSON is: a key of a ConfigMap or Secret of the
/// PushSecret's namespace.
#[derive(Deserialize, Serialize, JsonSchema, Debug, Clone, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicySourceRefSpec {
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub key: Option<String>,
}

/// `spec` of Parameter Store push metadata.
#[derive(Deserialize, Serialize, JsonSchema, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ParameterStoreMetadataSpec {
    /// `String` (default), `StringList` or `SecureString`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_type: Option<String>,
    /// KMS key of a SecureString (default `alias/aws/ssm`).
    #[serde(default, rename = "kmsKeyID", skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<TierSpec>,
    /// Without a `secretKey`: the Secret's values as text, not base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encode_as_decoded: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Deserialize, Serialize, JsonSchema, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TierSpec {
    /// `Standard` (default), `Advanced` or `Intelligent-Tiering`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// Parameter policies (JSON), tier Advanced only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policies: Option<Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretPushFormat {
    Binary,
    String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicySourceKind {
    ConfigMap,
    Secret,
}

/// A resource policy to keep on the secret: its JSON is read by the
/// controller from `kind`/`name`/`key` in the PushSecret's namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourcePolicy {
    pub block_public_policy: Option<bool>,
    pub kind: PolicySourceKind,
    pub name: String,
    pub key: String,
}

/// Secrets Manager metadata with defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretsManagerMetadata {
    pub format: SecretPushFormat,
    /// Used when the secret is created only.
    pub description: String,
    /// Used when the secret is created, and for new replicas.
    pub kms_key_id: String,
    /// The user's tags plus `managed-by: external-secrets`.
    pub tags: BTreeMap<String, String>,
    /// Whether the user named any tag: only then are an existing secret's
    /// tags made these (External Secrets' `patchTags`).
    pub tags_named: bool,
    pub resource_policy: Option<ResourcePolicy>,
    /// `None`: replicas are left alone; `Some`: exactly these regions.
    pub replication_locations: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParameterType {
    String,
    StringList,
    SecureString,
}

impl ParameterType {
    pub fn as_str(self) -> &'static str {
        match self {
            ParameterType::String => "String",
            ParameterType::StringList => "StringList",
            ParameterType::SecureString => "SecureString",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    Standard,
    Advanced,
    IntelligentTiering,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Standard => "Standard",
            Tier::Advanced => "Advanced",
            Tier::IntelligentTiering => "Intelligent-Tiering",
        }
    }

    /// The largest value a parameter of this tier holds (bytes).
    pub fn max_value(self) -> usize {
        match self {
            Tier::Standard => 4096,
            Tier::Advanced | Tier::IntelligentTiering => 8192,
        }
    }
}

/// Parameter Store metadata with defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParameterStoreMetadata {
    pub secret_type: ParameterType,
    /// Sent with SecureString only.
    pub kms_key_id: String,
    pub tier: Tier,
    /// Parameter policies as JSON text (tier Advanced only).
    pub policies: Option<String>,
    pub encode_as_decoded: bool,
    /// The user's tags plus `managed-by: external-secrets`.
    pub tags: BTreeMap<String, String>,
    pub description: String,
}

/// Push metadata of one entry for one store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushMetadata {
    SecretsManager(SecretsManagerMetadata),
    ParameterStore(ParameterStoreMetadata),
}

/// The description External Secrets gives what it creates.
pub const DEFAULT_DESCRIPTION: &str = "secret 'managed-by:external-secrets'";
pub const SM_DEFAULT_KMS_KEY: &str = "alias/aws/secretsmanager";
pub const SSM_DEFAULT_KMS_KEY: &str = "alias/aws/ssm";
/// AWS's limits, checked before any call.
pub const MAX_TAGS: usize = 50;
pub const MAX_TAG_KEY: usize = 128;
pub const MAX_TAG_VALUE: usize = 256;
pub const SM_MAX_DESCRIPTION: usize = 2048;
pub const SSM_MAX_DESCRIPTION: usize = 1024;
pub const SM_MAX_KMS_KEY: usize = 2048;
pub const SSM_MAX_KMS_KEY: usize = 256;
pub const SSM_MAX_POLICIES: usize = 4096;
pub const MAX_REPLICAS: usize = 50;

/// Go's `encoding/json` field-name folding: ASCII case, plus the two
/// non-ASCII letters that fold to ASCII ones (K KELVIN SIGN, LATIN SMALL
/// LETTER LONG S).
fn fold(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            '\u{212a}' => 'K',
            '\u{17f}' => 'S',
            c => c.to_ascii_uppercase(),
        })
        .collect()
}

/// `value`'s object keys renamed to the `fields` they match
/// case-insensitively; other keys are kept (serde refuses them by name).
fn fold_keys(value: &mut Value, fields: &[&str], at: &str) -> Result<(), PushError> {
    let Value::Object(map) = value else {
        return Ok(());
    };
    let mut out = Map::with_capacity(map.len());
    for (k, v) in std::mem::take(map) {
        let folded = fold(&k);
        let name = fields
            .iter()
            .find(|f| fold(f) == folded)
            .map_or(k.clone(), |f| (*f).to_owned());
        if out.contains_key(&name) {
            return Err(PushError::invalid(
                format!("{at}.{name}"),
                format!("given twice ({k:?}; field names match regardless of case)"),
            ));
        }
        out.insert(name, v);
    }
    *map = out;
    Ok(())
}

/// serde's errors with this module's paths and External Secrets' words
/// (`unknown field "x"`).
fn from_value<T: serde::de::DeserializeOwned>(value: Value, at: &str) -> Result<T, PushError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let inner = e.path().to_string();
        let path = if inner == "." || inner.is_empty() {
            at.to_owned()
        } else {
            format!("{at}.{inner}")
        };
        let message = e.inner().to_string();
        if let Some(rest) = message.strip_prefix("unknown field `") {
            let field = rest.split('`').next().unwrap_or_default();
            let path = path
                .strip_suffix(&format!(".{field}"))
                .map_or(path.clone(), str::to_owned);
            PushError::invalid(path, format!("unknown field {field:?}"))
        } else {
            PushError::invalid(path, message)
        }
    })
}

/// The envelope checked, its `spec` (folded to `fields`) returned.
fn envelope(raw: &Value, at: &str, fields: &[&str]) -> Result<Value, PushError> {
    if !raw.is_object() {
        return Err(PushError::invalid(
            at,
            format!(
                "must be an object (apiVersion: {METADATA_API_VERSION}, kind: {METADATA_KIND}, spec)"
            ),
        ));
    }
    let mut raw = raw.clone();
    fold_keys(&mut raw, &["apiVersion", "kind", "spec"], at)?;
    let env: MetadataEnvelope = from_value(raw, at)?;
    let api_version = env.api_version.unwrap_or_default();
    if api_version != METADATA_API_VERSION {
        return Err(PushError::invalid(
            format!("{at}.apiVersion"),
            format!("unexpected apiVersion {api_version:?}, expected {METADATA_API_VERSION:?}"),
        ));
    }
    let kind = env.kind.unwrap_or_default();
    if kind != METADATA_KIND {
        return Err(PushError::invalid(
            format!("{at}.kind"),
            format!("unexpected kind {kind:?}, expected {METADATA_KIND:?}"),
        ));
    }
    let mut spec = match env.spec {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(s) => s,
    };
    fold_keys(&mut spec, fields, &format!("{at}.spec"))?;
    Ok(spec)
}

fn bounded(text: &str, max: usize, at: String) -> Result<(), PushError> {
    let n = text.chars().count();
    if n > max {
        return Err(PushError::invalid(
            at,
            format!("is {n} characters, over AWS's limit of {max}"),
        ));
    }
    Ok(())
}

/// A tag character AWS takes (letters, digits, spaces and `_.:/=+-@`).
fn tag_char(c: char) -> bool {
    c.is_alphanumeric()
        || c.is_whitespace()
        || matches!(c, '_' | '.' | ':' | '/' | '=' | '+' | '-' | '@')
}

/// The user's tags checked, `managed-by` added.
fn tags(
    user: Option<BTreeMap<String, String>>,
    at: &str,
) -> Result<(BTreeMap<String, String>, bool), PushError> {
    let user = user.unwrap_or_default();
    let named = !user.is_empty();
    if user.len() + 1 > MAX_TAGS {
        return Err(PushError::invalid(
            at,
            format!(
                "{} tags and managed-by are over AWS's limit of {MAX_TAGS}",
                user.len()
            ),
        ));
    }
    for (k, v) in &user {
        let at = format!("{at}[{k:?}]");
        if k == MANAGED_BY_KEY {
            return Err(PushError::invalid(
                at,
                format!(
                    "Cannot specify a '{MANAGED_BY_KEY}' tag: it marks what this controller manages and is set by it"
                ),
            ));
        }
        if k.is_empty() {
            return Err(PushError::invalid(at, "a tag key must not be empty"));
        }
        if k.len() >= 4 && k[..4].eq_ignore_ascii_case("aws:") {
            return Err(PushError::invalid(
                at,
                "tag keys beginning with aws: are AWS's",
            ));
        }
        bounded(k, MAX_TAG_KEY, at.clone())?;
        bounded(v, MAX_TAG_VALUE, format!("{at} value"))?;
        if k.chars().chain(v.chars()).any(|c| !tag_char(c)) {
            return Err(PushError::invalid(
                at,
                "tags hold letters, digits, spaces and _.:/=+-@ only",
            ));
        }
    }
    let mut all = user;
    all.insert(MANAGED_BY_KEY.to_owned(), MANAGED_BY_VALUE.to_owned());
    Ok((all, named))
}

fn region_ok(r: &str) -> bool {
    !r.is_empty()
        && r.len() <= 32
        && r.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !r.starts_with('-')
        && !r.ends_with('-')
}

/// Secrets Manager metadata at `at` (`spec.data[0].metadata`), defaults
/// applied; `None`: every default.
pub fn secrets_manager(raw: Option<&Value>, at: &str) -> Result<SecretsManagerMetadata, PushError> {
    let spec: SecretsManagerMetadataSpec = match raw {
        None => SecretsManagerMetadataSpec::default(),
        Some(raw) => {
            let fields = [
                "secretPushFormat",
                "kmsKeyId",
                "description",
                "tags",
                "resourcePolicy",
                "replicationLocations",
            ];
            let mut spec = envelope(raw, at, &fields)?;
            if let Some(rp) = spec.get_mut("resourcePolicy") {
                let rp_at = format!("{at}.spec.resourcePolicy");
                fold_keys(rp, &["blockPublicPolicy", "policySourceRef"], &rp_at)?;
                if let Some(src) = rp.get_mut("policySourceRef") {
                    fold_keys(
                        src,
                        &["kind", "name", "key"],
                        &format!("{rp_at}.policySourceRef"),
                    )?;
                }
            }
            from_value(spec, &format!("{at}.spec"))?
        }
    };
    let at = format!("{at}.spec");
    let format = match spec.secret_push_format.as_deref().unwrap_or_default() {
        "" | "binary" => SecretPushFormat::Binary,
        "string" => SecretPushFormat::String,
        other => {
            return Err(PushError::invalid(
                format!("{at}.secretPushFormat"),
                format!("invalid secret push format {other:?}: binary or string"),
            ));
        }
    };
    let description = spec
        .description
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| DEFAULT_DESCRIPTION.to_owned());
    bounded(
        &description,
        SM_MAX_DESCRIPTION,
        format!("{at}.description"),
    )?;
    let kms_key_id = spec
        .kms_key_id
        .filter(|k| !k.is_empty())
        .unwrap_or_else(|| SM_DEFAULT_KMS_KEY.to_owned());
    bounded(&kms_key_id, SM_MAX_KMS_KEY, format!("{at}.kmsKeyId"))?;
    let (tags, tags_named) = tags(spec.tags, &format!("{at}.tags"))?;
    let resource_policy = match spec.resource_policy {
        None => None,
        Some(rp) => {
            let rp_at = format!("{at}.resourcePolicy");
            let Some(src) = rp.policy_source_ref else {
                return Err(PushError::Missing {
                    path: format!("{rp_at}.policySourceRef"),
                });
            };
            let src_at = format!("{rp_at}.policySourceRef");
            let kind = match src.kind.as_deref().unwrap_or_default() {
                "ConfigMap" => PolicySourceKind::ConfigMap,
                "Secret" => PolicySourceKind::Secret,
                other => {
                    return Err(PushError::invalid(
                        format!("{src_at}.kind"),
                        format!(
                            "unsupported PolicySourceRef kind {other:?} (must be ConfigMap or Secret)"
                        ),
                    ));
                }
            };
            let name = src.name.unwrap_or_default();
            names::check(&name, NameKind::Subdomain)
                .map_err(|e| PushError::invalid(format!("{src_at}.name"), e.to_string()))?;
            let key = src.key.unwrap_or_default();
            if key.is_empty()
                || key.len() > 253
                || !key
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
            {
                return Err(PushError::invalid(
                    format!("{src_at}.key"),
                    "a ConfigMap or Secret key: 1 to 253 of letters, digits, '-', '.', '_'",
                ));
            }
            Some(ResourcePolicy {
                block_public_policy: rp.block_public_policy,
                kind,
                name,
                key,
            })
        }
    };
    if let Some(regions) = &spec.replication_locations {
        let r_at = format!("{at}.replicationLocations");
        if regions.len() > MAX_REPLICAS {
            return Err(PushError::invalid(
                r_at,
                format!("more than {MAX_REPLICAS} regions"),
            ));
        }
        for (i, r) in regions.iter().enumerate() {
            if !region_ok(r) {
                return Err(PushError::invalid(
                    format!("{r_at}[{i}]"),
                    "not a region name (lower-case letters, digits and '-')",
                ));
            }
            if regions[..i].contains(r) {
                return Err(PushError::invalid(
                    format!("{r_at}[{i}]"),
                    format!("region {r} given twice"),
                ));
            }
        }
    }
    Ok(SecretsManagerMetadata {
        format,
        description,
        kms_key_id,
        tags,
        tags_named,
        resource_policy,
        replication_locations: spec.replication_locations,
    })
}

/// Parameter Store metadata at `at`, defaults applied.
pub fn parameter_store(raw: Option<&Value>, at: &str) -> Result<ParameterStoreMetadata, PushError> {
    let spec: ParameterStoreMetadataSpec = match raw {
        None => ParameterStoreMetadataSpec::default(),
        Some(raw) => {
            let fields = [
                "secretType",
                "kmsKeyID",
                "tier",
                "encodeAsDecoded",
                "tags",
                "description",
            ];
            let mut spec = envelope(raw, at, &fields)?;
            if let Some(tier) = spec.get_mut("tier") {
                fold_keys(tier, &["type", "policies"], &format!("{at}.spec.tier"))?;
            }
            from_value(spec, &format!("{at}.spec"))?
        }
    };
    let at = format!("{at}.spec");
    let secret_type = match spec.secret_type.as_deref().unwrap_or_default() {
        "" | "String" => ParameterType::String,
        "StringList" => ParameterType::StringList,
        "SecureString" => ParameterType::SecureString,
        other => {
            return Err(PushError::invalid(
                format!("{at}.secretType"),
                format!("{other:?} is not String, StringList or SecureString"),
            ));
        }
    };
    let tier_spec = spec.tier.unwrap_or_default();
    let tier = match tier_spec.type_.as_deref().unwrap_or_default() {
        "" | "Standard" => Tier::Standard,
        "Advanced" => Tier::Advanced,
        "Intelligent-Tiering" => Tier::IntelligentTiering,
        other => {
            return Err(PushError::invalid(
                format!("{at}.tier.type"),
                format!("{other:?} is not Standard, Advanced or Intelligent-Tiering"),
            ));
        }
    };
    let policies = match tier_spec.policies {
        None | Some(Value::Null) => None,
        Some(p) => {
            if tier != Tier::Advanced {
                return Err(PushError::unsupported(
                    format!("{at}.tier.policies"),
                    "parameter policies are sent with tier Advanced only",
                ));
            }
            let text = serde_json::to_string(&p).unwrap_or_default();
            if text.len() > SSM_MAX_POLICIES {
                return Err(PushError::invalid(
                    format!("{at}.tier.policies"),
                    format!(
                        "{} bytes of JSON, over AWS's limit of {SSM_MAX_POLICIES}",
                        text.len()
                    ),
                ));
            }
            Some(text)
        }
    };
    let kms_key_id = spec
        .kms_key_id
        .filter(|k| !k.is_empty())
        .unwrap_or_else(|| SSM_DEFAULT_KMS_KEY.to_owned());
    bounded(&kms_key_id, SSM_MAX_KMS_KEY, format!("{at}.kmsKeyID"))?;
    let description = spec
        .description
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| DEFAULT_DESCRIPTION.to_owned());
    bounded(
        &description,
        SSM_MAX_DESCRIPTION,
        format!("{at}.description"),
    )?;
    let (tags, _) = tags(spec.tags, &format!("{at}.tags"))?;
    Ok(ParameterStoreMetadata {
        secret_type,
        kms_key_id,
        tier,
        policies,
        encode_as_decoded: spec.encode_as_decoded.unwrap_or(false),
        tags,
        description,
    })
}

/// The metadata of one entry for a store of `service`.
pub fn for_service(
    service: AwsService,
    raw: Option<&Value>,
    at: &str,
) -> Result<PushMetadata, PushError> {
    match service {
        AwsService::SecretsManager => secrets_manager(raw, at).map(PushMetadata::SecretsManager),
        AwsService::ParameterStore => parameter_store(raw, at).map(PushMetadata::ParameterStore),
        AwsService::CertificateManager => {
            Err(PushError::unsupported(at, "pushing to Certificate Manager"))
        }
    }
}
