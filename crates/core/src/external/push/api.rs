//! The PushSecret API (`external-secrets.io` v1alpha1, as External Secrets
//! v2.9.0 serves it) as typed structs: `PushSecret` and `ClusterPushSecret`
//! spec and status. Shared shapes (label selectors, generator references,
//! the target template, rewrite steps, conditions) are the ExternalSecret
//! API's own types, so both kinds read and generate schemas alike.
//!
//! Unknown fields are refused with their path ([`parse`]); the CRD's CEL
//! rules and defaults are checked by [`validate_spec`] and applied by the
//! accessors ([`PushSecretSpec::update_policy`] and the like), since the
//! API server may not have applied them (a manifest read from a file).

use std::collections::BTreeMap;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::PushError;
use crate::external::api::{
    Condition, GeneratorRef, LabelSelector, NamespaceFailure, RewriteRegexp, RewriteTransform,
    StoreKindName, TemplateSpec,
};
use crate::external::conditions;
use crate::external::go_regexp::GoRegex;
use crate::external::refresh::go_parse_duration;
use crate::names::{self, NameKind};

/// Absent and `null` both read as empty (marked nullable in the schema).
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Free-form JSON kept as written (`apiextensionsv1.JSON`).
fn any_json(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"x-kubernetes-preserve-unknown-fields": true})
}

/// The API group's `PushSecretMetadata` envelope `apiVersion`.
pub const METADATA_API_VERSION: &str = "kubernetes.external-secrets.io/v1alpha1";
/// The API group's `PushSecretMetadata` envelope `kind`.
pub const METADATA_KIND: &str = "PushSecretMetadata";
/// The finalizer a PushSecret with `deletionPolicy: Delete` carries.
pub const FINALIZER: &str = "pushsecret.externalsecrets.io/finalizer";
/// `refreshInterval` when none is written (the CRD's default).
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(3600);
/// The longest `refreshInterval` / `refreshTime` accepted (a year).
pub const MAX_REFRESH: Duration = Duration::from_secs(366 * 24 * 3600);

/// `updatePolicy`.
#[derive(Deserialize, Serialize, JsonSchema, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum UpdatePolicy {
    /// The remote value is replaced (default).
    #[default]
    Replace,
    /// Only created: a remote secret that exists is left as it is.
    IfNotExists,
}

/// `deletionPolicy`.
#[derive(Deserialize, Serialize, JsonSchema, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PushDeletionPolicy {
    /// What was pushed and is no longer wanted (or the PushSecret is
    /// deleted) is deleted remotely, if it still carries the managed-by tag.
    Delete,
    /// Nothing is ever deleted remotely (default).
    #[default]
    None,
}

/// `conversionStrategy` of a push entry: how source key names are read.
#[derive(Deserialize, Serialize, JsonSchema, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PushConversionStrategy {
    /// Keys as they are (default).
    #[default]
    None,
    /// `_UXXXX_` (4 or 5 hex digits) in a key becomes that character: the
    /// reverse of an ExternalSecret's `conversionStrategy: Unicode`.
    ReverseUnicode,
}

/// One `secretStoreRefs[]` entry, and a `dataTo[].storeRef`.
#[derive(Deserialize, Serialize, JsonSchema, Debug, Clone, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PushSecretStoreRef {
    /// One store by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Every store (of `kind`) whose labels match; a SecretStore of the
    /// PushSecret's namespace only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<LabelSelector>,
    /// `SecretStore` (default) or `ClusterSecretStore`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<StoreKindName>,
}

impl PushSecretStoreRef {
    /// `kind`, defaulted.
    pub fn kind(&self) -> StoreKindName {
        self.kind.unwrap_or(StoreKindName::SecretStore)
    }
}

/// `spec.selector`: exactly one of its fields.
#[derive(Deserialize, Serialize, JsonSchema, Debug, Clone, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PushSecretSelector {
    /// A Secret of the PushSecret's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<PushSecretSecret>,
    /// A generator's output instead of a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator_ref: Option<GeneratorRef>,
}

/// `spec.selector.secret`: by name, or every Secret matching a selector.
#[derive(Deserialize, Serialize, JsonSchema, Debug, Clone, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PushSecretSecret {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}

/// `remoteRef` of a push entry.
#[derive(Deserialize, Serialize, JsonSchema, Debug, Clone, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PushSecretRemoteRef {
    /// The remote secret's (parameter's) name, after the store's prefix.
    pub remote_key: String,
    /// A key of the remote JSON object to set (Secrets Manager); dots
    /// nest, `\.` is a literal dot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub property: Option<String>,
}

/// `match` of a push entry.
#[derive(Deserialize, Serialize, JsonSchema, Debug, Clone, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PushSecretMatch {
    /// The source key pushed; none: the whole Secret as a JSON object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key: Option<String>,
    pub remote_ref: PushSecretRemoteRef,
}

impl PushSecretMatch {
    /// `secretKey`, where `""` means none (as External Secrets reads it).
    pub fn secret_key(&self) -> Option<&str> {
        self.secret_key.as_deref().filter(|k| !k.is_empty())
    }
}

/// One `spec.data[]` entry; also what `status.syncedPushSecrets` records.
#[derive(Deserialize, Serialize, JsonSchema, Debug, Clone, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PushSecretData {
    #[serde(rename = "match")]
    pub match_: PushSecretMatch,
    /// Provider metadata (`kind: PushSecretMetadata`), read per store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_json")]
    pub metadata: Option<Value>,
    /// `None` (default) or `ReverseUnicode`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversion_strategy: Option<PushConversionStrategy>,
}

impl PushSecretData {
    /// The key in `status.syncedPushSecrets`: `remoteKey`, or
    /// `remoteKey/property`.
    pub fn status_key(&self) -> String {
        let r = &self.match_.remote_ref;
        match r.property.as_deref().filter(|p| !p.is_empty()) {
            Some(p) => format!("{}/{p}", r.remote_key),
            None => r.remote_key.clone(),
        }
    }

    /// `conversionStrategy`, defaulted.
    pub fn conversion(&self) -> PushConversionStrategy {
        self.conversion_strategy.unwrap_or_default()
    }
}

/// `dataTo[].match`.
#[derive(Deserialize, Serialize, JsonSchema, Debug, Clone, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PushSecretDataToMatch {
    /// Keys (after `conversionStrategy`) matching this Go regular
    /// expression, unanchored; none: every key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regexp: Option<String>,
}

/// One `dataTo[].rewrite[]` step: exactly one of its fields.
#[derive(Deserialize, Serialize, JsonSchema, Debug, Clone, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PushSecretRewrite {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regexp: Option<RewriteRegexp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transform: Option<RewriteTransform>,
}

/// One `spec.dataTo[]` entry: many source keys to one store.
#[derive(Deserialize, Serialize, JsonSchema, Debug, Clone, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PushSecretDataTo {
    /// The store(s) written: by name (one of `secretStoreRefs`) or by
    /// labels (among the stores `secretStoreRefs` found).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_ref: Option<PushSecretStoreRef>,
    /// Bundle mode: every matched key goes into this one remote secret as
    /// a JSON object. Without it, each key is its own remote secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_key: Option<String>,
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub match_: Option<PushSecretDataToMatch>,
    /// Renames keys into remote keys, in order (per-key mode only).
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    #[schemars(extend("nullable" = true))]
    pub rewrite: Vec<PushSecretRewrite>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_json")]
    pub metadata: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversion_strategy: Option<PushConversionStrategy>,
}

impl PushSecretDataTo {
    /// `remoteKey`, where `""` means none.
    pub fn remote_key(&self) -> Option<&str> {
        self.remote_key.as_deref().filter(|k| !k.is_empty())
    }
}

/// `spec` of a PushSecret.
#[derive(Deserialize, Serialize, JsonSchema, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PushSecretSpec {
    /// A Go duration (default `1h0m0s`); `0`: pushed once per change of
    /// the PushSecret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_interval: Option<String>,
    /// The stores written.
    #[serde(default, deserialize_with = "nullable")]
    #[schemars(extend("nullable" = true))]
    pub secret_store_refs: Vec<PushSecretStoreRef>,
    /// `Replace` (default) or `IfNotExists`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_policy: Option<UpdatePolicy>,
    /// `None` (default) or `Delete`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<PushDeletionPolicy>,
    /// The source: a Secret or a generator.
    pub selector: PushSecretSelector,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    #[schemars(extend("nullable" = true))]
    pub data: Vec<PushSecretData>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    #[schemars(extend("nullable" = true))]
    pub data_to: Vec<PushSecretDataTo>,
    /// Applied to the source data (in memory) before anything is pushed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<TemplateSpec>,
}

impl PushSecretSpec {
    pub fn update_policy(&self) -> UpdatePolicy {
        self.update_policy.unwrap_or_default()
    }

    pub fn deletion_policy(&self) -> PushDeletionPolicy {
        self.deletion_policy.unwrap_or_default()
    }

    /// `refreshInterval`, defaulted; zero: no periodic push.
    pub fn refresh_interval(&self) -> Result<Duration, PushError> {
        duration(
            self.refresh_interval.as_deref(),
            "spec.refreshInterval",
            DEFAULT_REFRESH,
        )
    }
}

/// `status.syncedPushSecrets`: store (`Kind/name`) -> status key
/// (`remoteKey` or `remoteKey/property`) -> the entry pushed there.
pub type SyncedPushSecrets = BTreeMap<String, BTreeMap<String, PushSecretData>>;

/// `status` of a PushSecret.
#[derive(Deserialize, Serialize, JsonSchema, Debug, Clone, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PushSecretStatus {
    /// When the last push completed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("nullable" = true))]
    pub refresh_time: Option<String>,
    /// The PushSecret's resourceVersion the last push was for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synced_resource_version: Option<String>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    #[schemars(extend("nullable" = true))]
    pub synced_push_secrets: SyncedPushSecrets,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    #[schemars(extend("nullable" = true))]
    pub conditions: Vec<Condition>,
}

/// `spec.pushSecretMetadata` of a ClusterPushSecret: labels and
/// annotations of each PushSecret made.
#[derive(Deserialize, Serialize, JsonSchema, Debug, Clone, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PushSecretObjectMetadata {
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    #[schemars(extend("nullable" = true))]
    pub annotations: BTreeMap<String, String>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    #[schemars(extend("nullable" = true))]
    pub labels: BTreeMap<String, String>,
}

/// `spec` of a ClusterPushSecret: a PushSecret in each selected namespace.
#[derive(Deserialize, Serialize, JsonSchema, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterPushSecretSpec {
    pub push_secret_spec: PushSecretSpec,
    /// How often namespaces are listed again (a Go duration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_time: Option<String>,
    /// The PushSecrets' name (default: the ClusterPushSecret's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push_secret_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push_secret_metadata: Option<PushSecretObjectMetadata>,
    /// Namespaces matching any of these (ORed).
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    #[schemars(extend("nullable" = true))]
    pub namespace_selectors: Vec<LabelSelector>,
}

impl ClusterPushSecretSpec {
    /// The name of the PushSecrets made.
    pub fn push_secret_name<'a>(&'a self, cps_name: &'a str) -> &'a str {
        self.push_secret_name
            .as_deref()
            .filter(|n| !n.is_empty())
            .unwrap_or(cps_name)
    }

    /// `refreshTime`, defaulted (1h).
    pub fn refresh_time(&self) -> Result<Duration, PushError> {
        duration(
            self.refresh_time.as_deref(),
            "spec.refreshTime",
            DEFAULT_REFRESH,
        )
    }
}

/// `status` of a ClusterPushSecret.
#[derive(Deserialize, Serialize, JsonSchema, Debug, Clone, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ClusterPushSecretStatus {
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    #[schemars(extend("nullable" = true))]
    pub failed_namespaces: Vec<NamespaceFailure>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    #[schemars(extend("nullable" = true))]
    pub provisioned_namespaces: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push_secret_name: Option<String>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    #[schemars(extend("nullable" = true))]
    pub conditions: Vec<Condition>,
}

/// Reads `value` (found at `at`, e.g. `spec`) as `T`: an unknown field is
/// refused as unsupported by its path, a wrong value or type names its
/// path.
pub fn parse<T: serde::de::DeserializeOwned>(value: &Value, at: &str) -> Result<T, PushError> {
    crate::external::api::parse(value, at).map_err(PushError::from)
}

fn duration(text: Option<&str>, at: &str, default: Duration) -> Result<Duration, PushError> {
    let Some(text) = text else {
        return Ok(default);
    };
    let nanos = go_parse_duration(text).map_err(|why| PushError::invalid(at, why))?;
    if nanos < 0 {
        return Err(PushError::invalid(at, "must not be negative"));
    }
    let d = Duration::from_nanos(nanos.unsigned_abs());
    if d > MAX_REFRESH {
        return Err(PushError::invalid(at, "is longer than a year"));
    }
    Ok(d)
}

/// The most `secretStoreRefs`, `data` and `dataTo` entries, and rewrite
/// steps of one `dataTo`, a PushSecret may have.
pub const MAX_STORE_REFS: usize = 50;
pub const MAX_DATA: usize = 500;
pub const MAX_DATA_TO: usize = 50;
pub const MAX_REWRITES: usize = 20;

fn check_name(name: &str, at: &str) -> Result<(), PushError> {
    names::check(name, NameKind::Subdomain).map_err(|e| PushError::invalid(at, e.to_string()))
}

fn check_store_ref(r: &PushSecretStoreRef, at: &str) -> Result<(), PushError> {
    match (&r.name, &r.label_selector) {
        (Some(_), Some(_)) => Err(PushError::invalid(
            at,
            "name and labelSelector are exclusive (External Secrets ignores the selector)",
        )),
        (None, None) => Err(PushError::invalid(
            at,
            "storeRef must specify either name or labelSelector",
        )),
        (Some(name), None) => check_name(name, &format!("{at}.name")),
        (None, Some(sel)) => {
            // Validated as Kubernetes would when it builds the selector.
            conditions::selector_matches(sel, &BTreeMap::new(), &format!("{at}.labelSelector"))
                .map(|_| ())
                .map_err(|e| PushError::invalid(format!("{at}.labelSelector"), e.to_string()))
        }
    }
}

/// The CRD's rules (CEL and schema) and this controller's bounds, checked
/// on a parsed spec; every error names its field. Metadata is checked per
/// store when planned (its meaning depends on the store's service).
pub fn validate_spec(spec: &PushSecretSpec) -> Result<(), PushError> {
    spec.refresh_interval()?;
    if spec.secret_store_refs.is_empty() {
        return Err(PushError::Missing {
            path: "spec.secretStoreRefs".into(),
        });
    }
    if spec.secret_store_refs.len() > MAX_STORE_REFS {
        return Err(PushError::invalid(
            "spec.secretStoreRefs",
            format!("more than {MAX_STORE_REFS} entries"),
        ));
    }
    for (i, r) in spec.secret_store_refs.iter().enumerate() {
        check_store_ref(r, &format!("spec.secretStoreRefs[{i}]"))?;
    }
    let sel = &spec.selector;
    match (&sel.secret, &sel.generator_ref) {
        (Some(_), Some(_)) | (None, None) => {
            return Err(PushError::invalid(
                "spec.selector",
                "exactly one of secret or generatorRef is required",
            ));
        }
        (Some(s), None) => match (&s.name, &s.selector) {
            (Some(name), None) => check_name(name, "spec.selector.secret.name")?,
            (None, Some(l)) => {
                conditions::selector_matches(l, &BTreeMap::new(), "spec.selector.secret.selector")
                    .map_err(|e| {
                        PushError::invalid("spec.selector.secret.selector", e.to_string())
                    })?;
            }
            _ => {
                return Err(PushError::invalid(
                    "spec.selector.secret",
                    "exactly one of name or selector is required",
                ));
            }
        },
        (None, Some(g)) => check_name(&g.name, "spec.selector.generatorRef.name")?,
    }
    if spec.data.len() > MAX_DATA {
        return Err(PushError::invalid(
            "spec.data",
            format!("more than {MAX_DATA} entries"),
        ));
    }
    if spec.data_to.len() > MAX_DATA_TO {
        return Err(PushError::invalid(
            "spec.dataTo",
            format!("more than {MAX_DATA_TO} entries"),
        ));
    }
    for (i, d) in spec.data.iter().enumerate() {
        let at = format!("spec.data[{i}].match.remoteRef");
        if d.match_.remote_ref.remote_key.is_empty() {
            return Err(PushError::Missing {
                path: format!("{at}.remoteKey"),
            });
        }
        if d.match_.remote_ref.property.as_deref() == Some("") {
            return Err(PushError::invalid(
                format!("{at}.property"),
                "must not be empty (leave it out to push the whole value)",
            ));
        }
    }
    for (i, d) in spec.data_to.iter().enumerate() {
        let at = format!("spec.dataTo[{i}]");
        let Some(r) = &d.store_ref else {
            return Err(PushError::Missing {
                path: format!("{at}.storeRef"),
            });
        };
        check_store_ref(r, &format!("{at}.storeRef"))?;
        if let Some(name) = &r.name {
            let kind = r.kind();
            let listed = spec
                .secret_store_refs
                .iter()
                .any(|s| s.name.as_deref() == Some(name.as_str()) && s.kind() == kind);
            if !listed {
                return Err(PushError::invalid(
                    format!("{at}.storeRef.name"),
                    format!("storeRef {name:?} not found in secretStoreRefs"),
                ));
            }
        }
        if d.remote_key().is_some() && !d.rewrite.is_empty() {
            return Err(PushError::invalid(
                format!("{at}.rewrite"),
                "remoteKey and rewrite are mutually exclusive: rewrite is only supported in per-key mode (without remoteKey)",
            ));
        }
        if let Some(re) = d.match_.as_ref().and_then(|m| m.regexp.as_deref()) {
            GoRegex::new(re).map_err(|why| {
                PushError::invalid(
                    format!("{at}.match.regexp"),
                    format!("failed to compile regexp pattern: {why}"),
                )
            })?;
        }
        if d.rewrite.len() > MAX_REWRITES {
            return Err(PushError::invalid(
                format!("{at}.rewrite"),
                format!("more than {MAX_REWRITES} steps"),
            ));
        }
        for (j, op) in d.rewrite.iter().enumerate() {
            let at = format!("{at}.rewrite[{j}]");
            match (&op.regexp, &op.transform) {
                (Some(r), None) => {
                    GoRegex::new(&r.source)
                        .map_err(|why| PushError::invalid(format!("{at}.regexp.source"), why))?;
                }
                (None, Some(_)) => {}
                _ => {
                    return Err(PushError::invalid(
                        at,
                        "exactly one of regexp or transform must be set",
                    ));
                }
            }
        }
    }
    Ok(())
}

/// [`validate_spec`] for a ClusterPushSecret, with its own fields.
pub fn validate_cluster_spec(spec: &ClusterPushSecretSpec) -> Result<(), PushError> {
    spec.refresh_time()?;
    if let Some(name) = spec.push_secret_name.as_deref().filter(|n| !n.is_empty()) {
        check_name(name, "spec.pushSecretName")?;
    }
    for (i, sel) in spec.namespace_selectors.iter().enumerate() {
        let at = format!("spec.namespaceSelectors[{i}]");
        conditions::selector_matches(sel, &BTreeMap::new(), &at)
            .map_err(|e| PushError::invalid(at.clone(), e.to_string()))?;
    }
    validate_spec(&spec.push_secret_spec).map_err(|e| e.under("spec.pushSecretSpec"))
}
