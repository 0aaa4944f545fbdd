//! External Secrets manifests (`external-secrets.io` v1 and v1beta1, the AWS
//! provider's part): a SecretStore (or ClusterSecretStore) and an
//! ExternalSecret -> a [`SyncPlan`] (pure), and fetched values -> the data
//! of the Kubernetes Secret. The objects to fetch are a [`MountPlan`], so the
//! controller runs on the same identity, fetch and sharing layers as the
//! node driver. Every field is read from the raw JSON: a field this
//! controller does not support is refused by its path, never ignored.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use base64::Engine;
use serde_json::Value;

use crate::names::{self, NameKind};
use crate::secret::SecretBytes;
use crate::spc::{
    AddressPreference, AuthMode, DEFAULT_FILE_MODE, FilePath, FileSpec, MountPlan, ObjectRef,
    ObjectType, PlannedObject, RoleChain, VolumeLimits, is_role_arn,
};
use crate::target_secret;
use crate::template::{
    Limits as TemplateLimits, Options as TemplateOptions, Template, Value as TemplateValue,
};

pub mod api;
pub mod cluster;
pub mod conditions;
pub mod decoding;
pub mod go_regexp;
pub mod push;
pub mod refresh;
pub mod rewrite;
pub mod store_status;
pub mod tags;

/// The most a Kubernetes Secret may hold (the API server's limit).
pub const MAX_SECRET_BYTES: u64 = 1024 * 1024;

/// Why an ExternalSecret (with its store) cannot be synced. The path names
/// the field, as users write it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExternalError {
    #[error("{path}: not supported by this controller ({why})")]
    Unsupported { path: String, why: &'static str },
    #[error("{path}: {why}")]
    Invalid { path: String, why: String },
    #[error("{path} is required")]
    Missing { path: String },
    #[error("{key}: property {property:?} not found in the secret")]
    PropertyNotFound { key: String, property: String },
    #[error("{key}: the secret is not JSON, so property {property:?} cannot be read")]
    NotJson { key: String, property: String },
    #[error("{key}: the value is not valid {encoding}")]
    Decoding { key: String, encoding: &'static str },
    #[error("the Secret's data would hold more than {MAX_SECRET_BYTES} bytes")]
    TooLarge,
    /// `key`: the template's path (`spec.target.template.data.<key>`).
    #[error("{key}: {why}")]
    Template { key: String, why: String },
    #[error("{key}: the value holds a NUL byte (nullBytePolicy: Fail)")]
    NullByte { key: String },
    #[error(transparent)]
    Rewrite(#[from] rewrite::RewriteError),
}

fn unsupported(path: impl Into<String>, why: &'static str) -> ExternalError {
    ExternalError::Unsupported {
        path: path.into(),
        why,
    }
}

fn invalid(path: impl Into<String>, why: impl Into<String>) -> ExternalError {
    ExternalError::Invalid {
        path: path.into(),
        why: why.into(),
    }
}

/// How the store's credentials are obtained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreAuth {
    /// `auth.jwt.serviceAccountRef`: a token of that ServiceAccount
    /// (TokenRequest) exchanged for the role in its IRSA annotation.
    Jwt {
        namespace: String,
        service_account: String,
        audience: String,
    },
    /// `auth.secretRef`: static keys in a Secret.
    Keys {
        access_key_id: SecretKeyRef,
        secret_access_key: SecretKeyRef,
        session_token: Option<SecretKeyRef>,
    },
    /// No `auth`: the controller's own credentials.
    Controller,
}

/// A key of a Kubernetes Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretKeyRef {
    pub namespace: String,
    pub name: String,
    pub key: String,
}

/// What a store says, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Store {
    pub service: ObjectType,
    pub region: String,
    pub auth: StoreAuth,
    /// `additionalRoles`, then `role` with `externalID` and `sessionTags`:
    /// assumed after the auth's own.
    pub chain: Option<RoleChain>,
    /// Prepended to every key read (`prefix`).
    pub prefix: String,
    pub tags_policy: api::SessionTagsPolicy,
    /// `customSessionTags` less empty keys and values.
    pub custom_tags: Vec<(String, String)>,
    /// A ClusterSecretStore's `conditions`: the namespaces that may use it.
    pub conditions: Vec<api::StoreCondition>,
}

/// Kind of the store an ExternalSecret names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    SecretStore,
    ClusterSecretStore,
}

/// The store an ExternalSecret names (`secretStoreRef`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreRef {
    pub kind: StoreKind,
    pub name: String,
}

/// When the Secret is refreshed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresh {
    Every(Duration),
    /// `refreshInterval: 0` or `refreshPolicy: CreatedOnce`: synced once
    /// (again only when its Secret is gone or was edited), not on a change
    /// of the ExternalSecret.
    Once,
    /// `refreshPolicy: OnChange`: synced when the ExternalSecret changes
    /// (spec, labels or annotations).
    OnChange,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreationPolicy {
    /// Created and owned by the ExternalSecret (deleted with it).
    Owner,
    /// Created, not owned.
    Orphan,
    /// The Secret must exist; our keys are merged into it.
    Merge,
    /// No Secret is written.
    None,
    /// Created (not owned) when missing, merged into when present.
    CreateOrMerge,
}

impl CreationPolicy {
    /// How a sync writes the target Secret under this policy, given whether
    /// it exists (None: it writes nothing). CreateOrMerge creates what is
    /// missing, unowned, and merges into what is there.
    pub fn write_policy(self, exists: bool) -> Option<target_secret::Policy> {
        use target_secret::Policy;
        match (self, exists) {
            (CreationPolicy::None, _) => None,
            (CreationPolicy::Owner, _) => Some(Policy::Owner),
            (CreationPolicy::Orphan, _) | (CreationPolicy::CreateOrMerge, false) => {
                Some(Policy::Orphan)
            }
            (CreationPolicy::Merge, _) | (CreationPolicy::CreateOrMerge, true) => {
                Some(Policy::Merge)
            }
        }
    }
}

/// `target.deletionPolicy`: what a sync does when AWS no longer has the
/// ExternalSecret's secrets (External Secrets' semantics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeletionPolicy {
    /// A missing secret fails the sync; when a `find` finds nothing, the
    /// Secret keeps its last data.
    #[default]
    Retain,
    /// Missing secrets are skipped; when none is left, the Secret is
    /// deleted (an Owner target only).
    Delete,
    /// Missing secrets are skipped and their keys leave the Secret.
    Merge,
}

/// The Kubernetes Secret to keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub name: String,
    pub creation: CreationPolicy,
    pub deletion: DeletionPolicy,
    pub immutable: bool,
    pub type_: Option<String>,
    /// `template.metadata` labels and annotations (templates).
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub finalizers: Vec<String>,
    /// Whether there is a `template` at all: without one, the
    /// ExternalSecret's own labels and annotations go to the Secret.
    pub templated: bool,
    /// `mergePolicy: Merge`: the fetched keys stay beside the templated.
    pub merge_data: bool,
    /// `template.data`: output keys built from the fetched keys.
    pub template: BTreeMap<String, String>,
    /// `template.templateFrom`, in order (before `template.data`, which
    /// wins).
    pub template_from: Vec<TemplateFromPlan>,
}

/// Where a `templateFrom` entry's templates are (ConfigMaps and Secrets
/// of the ExternalSecret's own namespace only).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum TemplateSource {
    ConfigMap(String),
    Secret(String),
    Literal(String),
}

/// What a `templateFrom` entry's output goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateTarget {
    Data,
    Annotations,
    Labels,
}

/// One `templateFrom[]` entry, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateFromPlan {
    /// `spec.target.template.templateFrom[i]`.
    pub at: String,
    pub source: TemplateSource,
    /// The keys of the ConfigMap or Secret used, and how.
    pub items: Vec<(String, api::TemplateScope)>,
    pub target: TemplateTarget,
    pub decoding: api::DecodingStrategy,
}

/// The ConfigMaps' and Secrets' data `templateFrom` names, as fetched.
pub type TemplateSources = BTreeMap<TemplateSource, BTreeMap<String, Vec<u8>>>;

/// The most `templateFrom` entries an ExternalSecret may have: each is a
/// read of the API server per sync.
pub const MAX_TEMPLATE_FROM: usize = 10;

impl SyncPlan {
    /// The ConfigMaps and Secrets its `templateFrom` reads.
    pub fn template_sources(&self) -> Vec<TemplateSource> {
        let mut out: Vec<TemplateSource> = self
            .target
            .template_from
            .iter()
            .filter(|t| !matches!(t.source, TemplateSource::Literal(_)))
            .map(|t| t.source.clone())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// The entries that read plan object `object` (`spec.dataFrom[j]`,
    /// `spec.data[i]`): what an event about a missing secret names.
    pub fn entries_reading(&self, object: usize) -> Vec<String> {
        let from = self
            .extracts
            .iter()
            .filter(|e| e.object == object)
            .map(|e| e.keys.at.clone());
        let data = self
            .data
            .iter()
            .enumerate()
            .filter(|(_, d)| d.object == object)
            .map(|(i, _)| format!("spec.data[{i}]"));
        from.chain(data).collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoding {
    None,
    Base64,
    Base64Url,
    Auto,
}

/// One `data[]` entry: a key of the Secret from one remote value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataItem {
    /// Its place in `spec.data` (a later entry's key wins).
    pub position: usize,
    pub secret_key: String,
    /// Index into the plan's objects.
    pub object: usize,
    /// `remoteRef.key` as written (without the store's prefix).
    pub key: String,
    pub property: Option<String>,
    pub decoding: Decoding,
    /// `nullBytePolicy: Fail`.
    pub null_bytes: bool,
}

/// One `dataFrom[].extract`: every key of a JSON remote value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extract {
    pub object: usize,
    pub key: String,
    pub property: Option<String>,
    pub decoding: Decoding,
    pub null_bytes: bool,
    pub keys: KeyRules,
}

/// How one `dataFrom` entry's keys are made: its `rewrite` steps (checked
/// when planned), else its `conversionStrategy`; its place in `dataFrom`
/// (later entries win, as in External Secrets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRules {
    /// `spec.dataFrom[i]`.
    pub at: String,
    pub position: usize,
    pub rewrite: Vec<api::Rewrite>,
    pub conversion: api::ConversionStrategy,
}

/// One `dataFrom[].find`: every object whose name matches, each a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Find {
    /// `name.regexp`, compiled once when planned (bounded in size).
    pub name: Option<NameRegex>,
    /// `path`: a name prefix (Secrets Manager) or a path (Parameter Store).
    pub path: Option<String>,
    /// `tags`: all must be present with these values (Secrets Manager's
    /// ListSecrets or Parameter Store's DescribeParameters filters them).
    pub tags: BTreeMap<String, String>,
    pub decoding: Decoding,
    pub null_bytes: bool,
    pub keys: KeyRules,
}

/// The most objects one `find` may bring into a Secret.
pub const MAX_FOUND: usize = 100;
/// The most distinct remote objects one ExternalSecret may name (`data`
/// and `extract`), and the most `find` entries: bounds the fetches an
/// ExternalSecret author can make the controller do.
pub const MAX_OBJECTS: usize = 500;
pub const MAX_FINDS: usize = 10;

/// The longest `find.name.regexp` accepted. Names are matched against
/// every listed object, so the pattern's size bounds the work an author
/// can ask for (a 263 KB pattern compiled per name once took 89 s of CPU).
pub const MAX_REGEX_BYTES: usize = 4096;

/// A compiled `name.regexp`; equal when the patterns are.
#[derive(Debug, Clone)]
pub struct NameRegex(regex::Regex);

impl NameRegex {
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl PartialEq for NameRegex {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for NameRegex {}

impl Find {
    /// Whether a listed name is one this find wants.
    pub fn matches(&self, name: &str) -> bool {
        self.path.as_deref().is_none_or(|p| name.starts_with(p))
            && self.name.as_ref().is_none_or(|re| re.0.is_match(name))
    }
}

/// Compiles a `name.regexp` within bounds: the pattern's length, and the
/// compiled program's and lazy DFA's memory.
fn compile_regex(re: &str) -> Result<NameRegex, String> {
    if re.len() > MAX_REGEX_BYTES {
        return Err(format!(
            "is {} bytes, over the limit of {MAX_REGEX_BYTES}",
            re.len()
        ));
    }
    regex::RegexBuilder::new(re)
        .size_limit(1 << 20)
        .dfa_size_limit(1 << 20)
        .build()
        .map(NameRegex)
        .map_err(|e| format!("not a regular expression: {}", first_line(&e.to_string())))
}

/// Everything a sync of one ExternalSecret needs, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncPlan {
    /// The remote objects, one per distinct (key, version), to fetch with
    /// the node driver's fetch layer.
    pub objects: MountPlan,
    pub data: Vec<DataItem>,
    pub extracts: Vec<Extract>,
    pub finds: Vec<Find>,
    /// The objects read for their tags (`metadataPolicy: Fetch`), by index
    /// into `objects`: their value is the tags as JSON ([`tags::tags_json`]).
    /// A key read for its value and for its tags is two objects.
    pub tags_of: BTreeSet<usize>,
    pub target: Target,
    pub refresh: Refresh,
    /// `syncWindows`: when periodic refreshes may run.
    pub windows: Option<refresh::Windows>,
}

/// How the controller reads a plan's objects: the value objects through the
/// fetch layer (as one [`MountPlan`]), the tag objects one tag call each.
#[derive(Debug, Clone, PartialEq)]
pub struct Reads {
    /// The objects read for their values, in plan order.
    pub values: MountPlan,
    /// The plan index of each of `values`' objects.
    pub value_objects: Vec<usize>,
    /// The plan indices of the objects read for their tags, in plan order.
    pub tag_objects: Vec<usize>,
}

impl SyncPlan {
    /// The plan's objects split into value reads and tag reads.
    pub fn reads(&self) -> Reads {
        let mut values = self.objects.clone();
        let (mut value_objects, mut tag_objects) = (Vec::new(), Vec::new());
        values.objects.clear();
        for (i, o) in self.objects.objects.iter().enumerate() {
            if self.tags_of.contains(&i) {
                tag_objects.push(i);
            } else {
                value_objects.push(i);
                values.objects.push(o.clone());
            }
        }
        Reads {
            values,
            value_objects,
            tag_objects,
        }
    }

    /// Per plan object, in plan order, what was read for it: the value reads
    /// (in the order of [`Reads::value_objects`]) and the tag reads (in the
    /// order of [`Reads::tag_objects`]); None where nothing came back.
    pub fn merge_reads<T>(
        &self,
        reads: &Reads,
        values: impl IntoIterator<Item = T>,
        tags: impl IntoIterator<Item = T>,
    ) -> Vec<Option<T>> {
        let mut out: Vec<Option<T>> = (0..self.objects.objects.len()).map(|_| None).collect();
        for (&i, value) in reads.value_objects.iter().zip(values) {
            out[i] = Some(value);
        }
        for (&i, tag) in reads.tag_objects.iter().zip(tags) {
            out[i] = Some(tag);
        }
        out
    }
}

/// Where an ExternalSecret points: read before its store is known.
pub fn store_ref(spec: &Value) -> Result<StoreRef, ExternalError> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Only {
        #[serde(default)]
        secret_store_ref: Option<Value>,
    }
    let only: Only = api::parse(spec, "spec").map_err(|_| invalid("spec", "must be a mapping"))?;
    let r: api::StoreRefSpec = match only.secret_store_ref {
        None | Some(Value::Null) => {
            return Err(ExternalError::Missing {
                path: "spec.secretStoreRef".into(),
            });
        }
        Some(r) => api::parse(&r, "spec.secretStoreRef")?,
    };
    store_ref_at(&r, "spec.secretStoreRef")
}

fn store_ref_at(r: &api::StoreRefSpec, at: &str) -> Result<StoreRef, ExternalError> {
    let name = r.name.clone().ok_or(ExternalError::Missing {
        path: format!("{at}.name"),
    })?;
    check_name(&name, &format!("{at}.name"), NameKind::Subdomain)?;
    let kind = match r.kind {
        None | Some(api::StoreKindName::SecretStore) => StoreKind::SecretStore,
        Some(api::StoreKindName::ClusterSecretStore) => StoreKind::ClusterSecretStore,
    };
    Ok(StoreRef { kind, name })
}

/// Which entries of an ExternalSecret a plan covers: those read through
/// its own store (`secretStoreRef`), or those whose `sourceRef.storeRef`
/// names a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Own,
    Store(StoreRef),
}

/// The part an entry belongs to, from its `sourceRef` (checked).
fn part_of(source: Option<&api::SourceRef>, at: &str) -> Result<Part, ExternalError> {
    let Some(source) = source else {
        return Ok(Part::Own);
    };
    let at = format!("{at}.sourceRef");
    if source.generator_ref.is_some() {
        return Err(unsupported(
            format!("{at}.generatorRef"),
            "generators are not supported yet",
        ));
    }
    match &source.store_ref {
        Some(r) => Ok(Part::Store(store_ref_at(r, &format!("{at}.storeRef"))?)),
        None => Err(ExternalError::Missing {
            path: format!("{at}.storeRef"),
        }),
    }
}

/// The stores that entries name in `sourceRef.storeRef`, each once, in
/// the order first named: each is a [`Part`] planned with its own store.
pub fn source_stores(spec: &Value) -> Result<Vec<StoreRef>, ExternalError> {
    let spec: api::ExternalSecretSpec = api::parse(spec, "spec")?;
    let data = spec
        .data
        .iter()
        .enumerate()
        .map(|(i, d)| part_of(d.source_ref.as_ref(), &format!("spec.data[{i}]")));
    let from = spec
        .data_from
        .iter()
        .enumerate()
        .map(|(i, d)| part_of(d.source_ref.as_ref(), &format!("spec.dataFrom[{i}]")));
    let mut out: Vec<StoreRef> = Vec::new();
    for part in from.chain(data) {
        if let Part::Store(r) = part?
            && !out.contains(&r)
        {
            out.push(r);
        }
    }
    Ok(out)
}

/// Whether the controller of `class` serves a store: its `spec.controller`
/// names that class and, for the default class ("", which External Secrets
/// Operator serves too), its provider is AWS. A store that is another
/// controller's is left alone: no status, no event, before anything of it
/// is validated, so that both can run side by side.
pub fn served_by(spec: &Value, class: &str) -> bool {
    let controller = spec.get("controller").and_then(Value::as_str).unwrap_or("");
    controller == class && (!class.is_empty() || spec["provider"].get("aws").is_some())
}

/// The session tags External Secrets' `sessionTagsPolicy: Simple` and
/// `Custom` add, which only one of its own stores may set.
const RESERVED_SESSION_TAGS: [&str; 3] = ["esoNamespace", "esoStoreName", "esoStoreKind"];

/// A store's spec. `namespace` is the store's own (None for a
/// ClusterSecretStore, whose ServiceAccount refs name their namespace).
pub fn store(spec: &Value, namespace: Option<&str>) -> Result<Store, ExternalError> {
    let spec: api::SecretStoreSpec = api::parse(spec, "spec")?;
    let at = "spec.provider.aws";
    let aws = spec
        .provider
        .aws
        .ok_or(ExternalError::Missing { path: at.into() })?;
    if namespace.is_some() && !spec.conditions.is_empty() {
        return Err(invalid(
            "spec.conditions",
            "only a ClusterSecretStore has conditions",
        ));
    }
    // Checked now (selectors, regexes), so that a broken condition is the
    // store's error, not a refusal of every namespace.
    let probe = BTreeMap::new();
    conditions::namespace_allowed(
        &spec.conditions,
        conditions::Namespace {
            name: "",
            labels: &probe,
        },
    )
    .map_err(|e| match e {
        conditions::ConditionError::InvalidSelector { path, why }
        | conditions::ConditionError::InvalidRegex { path, why } => invalid(path, why),
        other => invalid("spec.conditions", other.to_string()),
    })?;
    if let Some(r) = &spec.retry_settings
        && let Some(interval) = &r.retry_interval
        && go_duration(interval).is_none()
    {
        return Err(invalid(
            "spec.retrySettings.retryInterval",
            format!("{interval:?} is not a duration such as 1s or 500ms"),
        ));
    }
    let service = match aws.service {
        api::AwsService::SecretsManager => ObjectType::SecretsManager,
        api::AwsService::ParameterStore => ObjectType::SsmParameter,
        api::AwsService::CertificateManager => {
            return Err(unsupported(
                format!("{at}.service"),
                "CertificateManager (alpha in External Secrets) is not served",
            ));
        }
    };
    if aws.region.is_empty() {
        return Err(ExternalError::Missing {
            path: format!("{at}.region"),
        });
    }
    if let Some(sm) = &aws.secrets_manager {
        if let Some(days) = sm.recovery_window_in_days
            && !(7..=30).contains(&days)
        {
            return Err(invalid(
                format!("{at}.secretsManager.recoveryWindowInDays"),
                "must be between 7 and 30",
            ));
        }
        if sm.force_delete_without_recovery == Some(true) && sm.recovery_window_in_days.is_some() {
            return Err(invalid(
                format!("{at}.secretsManager"),
                "forceDeleteWithoutRecovery and recoveryWindowInDays exclude each other",
            ));
        }
    }
    let auth = match &aws.auth {
        None => StoreAuth::Controller,
        Some(auth) => store_auth(auth, namespace)?,
    };
    for (i, role) in aws.additional_roles.iter().enumerate() {
        check_role(role, &format!("{at}.additionalRoles[{i}]"))?;
    }
    let policy = aws.session_tags_policy.unwrap_or_default();
    if !aws.custom_session_tags.is_empty() && policy != api::SessionTagsPolicy::Custom {
        return Err(invalid(
            format!("{at}.customSessionTags"),
            "takes effect only with sessionTagsPolicy: Custom",
        ));
    }
    if let Some(key) = aws
        .custom_session_tags
        .keys()
        .find(|k| RESERVED_SESSION_TAGS.contains(&k.as_str()))
    {
        return Err(invalid(
            format!("{at}.customSessionTags[{key:?}]"),
            "esoNamespace, esoStoreName and esoStoreKind are set by the controller",
        ));
    }
    let chain = match &aws.role {
        None => {
            if aws.external_id.is_some() || !aws.session_tags.is_empty() {
                return Err(invalid(
                    format!("{at}.externalID"),
                    "externalID and sessionTags go with role",
                ));
            }
            (!aws.additional_roles.is_empty()).then(|| RoleChain {
                roles: aws.additional_roles.clone(),
                plain: aws.additional_roles.len(),
                external_id: None,
                duration_seconds: None,
                session_tags: Vec::new(),
                transitive_tag_keys: Vec::new(),
            })
        }
        Some(role) => {
            check_role(role, &format!("{at}.role"))?;
            let mut session_tags: Vec<(String, String)> = aws
                .session_tags
                .iter()
                .map(|t| (t.key.clone(), t.value.clone()))
                .collect();
            session_tags.sort();
            let mut roles = aws.additional_roles.clone();
            roles.push(role.clone());
            Some(RoleChain {
                roles,
                // External Secrets assumes its additionalRoles plainly and
                // sends the external ID and tags with `role` only.
                plain: aws.additional_roles.len(),
                external_id: aws.external_id.clone(),
                duration_seconds: None,
                session_tags,
                transitive_tag_keys: aws.transitive_tag_keys.clone(),
            })
        }
    };
    let store = Store {
        conditions: spec.conditions.clone(),
        service,
        region: aws.region.clone(),
        auth,
        chain,
        prefix: aws.prefix.clone().unwrap_or_default(),
        tags_policy: policy,
        custom_tags: aws
            .custom_session_tags
            .iter()
            .filter(|(k, v)| !k.is_empty() && !v.is_empty())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    };
    // STS takes at most 50 session tags.
    if store
        .chain
        .as_ref()
        .is_some_and(|c| c.session_tags.len() + store.custom_tags.len() + 3 > 50)
    {
        return Err(invalid(
            format!("{at}.sessionTags"),
            "at most 50 tags (with those the policy adds)",
        ));
    }
    Ok(store)
}

fn check_role(role: &str, at: &str) -> Result<(), ExternalError> {
    if is_role_arn(role) {
        Ok(())
    } else {
        Err(invalid(
            at,
            format!("{role:?} is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)"),
        ))
    }
}

impl Store {
    /// The store as used for one sync: `sessionTagsPolicy` Simple and
    /// Custom tag the final role's session with the ExternalSecret's
    /// namespace and the store's name and kind (so IAM policies can scope
    /// by them); those tags make the identity one of its own.
    pub fn for_sync(&self, namespace: &str, store_name: &str, kind: StoreKind) -> Store {
        let mut store = self.clone();
        // Referent auth: the ExternalSecret's namespace.
        let referent = |ns: &mut String| {
            if ns.is_empty() {
                *ns = namespace.to_owned();
            }
        };
        match &mut store.auth {
            StoreAuth::Jwt { namespace, .. } => referent(namespace),
            StoreAuth::Keys {
                access_key_id,
                secret_access_key,
                session_token,
            } => {
                referent(&mut access_key_id.namespace);
                referent(&mut secret_access_key.namespace);
                if let Some(t) = session_token {
                    referent(&mut t.namespace);
                }
            }
            StoreAuth::Controller => {}
        }
        if self.tags_policy == api::SessionTagsPolicy::None {
            return store;
        }
        if let Some(chain) = store.chain.as_mut().filter(|c| c.roles.len() > c.plain) {
            let mut tags: BTreeMap<String, String> = chain.session_tags.iter().cloned().collect();
            tags.extend(self.custom_tags.iter().cloned());
            tags.insert("esoNamespace".into(), namespace.into());
            tags.insert("esoStoreName".into(), store_name.into());
            tags.insert(
                "esoStoreKind".into(),
                match kind {
                    StoreKind::SecretStore => "SecretStore",
                    StoreKind::ClusterSecretStore => "ClusterSecretStore",
                }
                .into(),
            );
            chain.session_tags = tags.into_iter().collect();
        }
        store
    }
}

fn store_auth(auth: &api::AwsAuth, namespace: Option<&str>) -> Result<StoreAuth, ExternalError> {
    let at = "spec.provider.aws.auth";
    let ns_of = |ns: &Option<String>, here: &str| -> Result<String, ExternalError> {
        if let Some(ns) = ns {
            check_name(ns, &format!("{here}.namespace"), NameKind::Label)?;
        }
        match (ns, namespace) {
            (Some(ns), None) => Ok(ns.clone()),
            (None, Some(own)) => Ok(own.to_owned()),
            // A namespaced store reads only its own namespace.
            (Some(ns), Some(own)) if ns == own => Ok(ns.clone()),
            (Some(_), Some(_)) => Err(invalid(
                format!("{here}.namespace"),
                "a SecretStore may only refer to its own namespace",
            )),
            // A ClusterSecretStore's ref without a namespace is "referent":
            // each ExternalSecret's own namespace (filled in by
            // `Store::for_sync`).
            (None, None) => Ok(String::new()),
        }
    };
    if let Some(jwt) = &auth.jwt {
        let here = format!("{at}.jwt.serviceAccountRef");
        let r = jwt
            .service_account_ref
            .as_ref()
            .ok_or(ExternalError::Missing { path: here.clone() })?;
        check_name(&r.name, &format!("{here}.name"), NameKind::Subdomain)?;
        let audience = match r.audiences.as_slice() {
            [] => "sts.amazonaws.com".to_owned(),
            [one] => one.clone(),
            _ => {
                return Err(unsupported(
                    format!("{here}.audiences"),
                    "exactly one audience is supported",
                ));
            }
        };
        return Ok(StoreAuth::Jwt {
            namespace: ns_of(&r.namespace, &here)?,
            service_account: r.name.clone(),
            audience,
        });
    }
    let refs = auth.secret_ref.as_ref().ok_or(ExternalError::Missing {
        path: format!("{at}.jwt"),
    })?;
    let here = format!("{at}.secretRef");
    let key_ref = |r: &Option<api::SecretKeySelector>,
                   field: &str|
     -> Result<Option<SecretKeyRef>, ExternalError> {
        let Some(r) = r else {
            return Ok(None);
        };
        let p = format!("{here}.{field}");
        let name = r.name.clone().ok_or(ExternalError::Missing {
            path: format!("{p}.name"),
        })?;
        check_name(&name, &format!("{p}.name"), NameKind::Subdomain)?;
        Ok(Some(SecretKeyRef {
            namespace: ns_of(&r.namespace, &p)?,
            name,
            key: r.key.clone().ok_or(ExternalError::Missing {
                path: format!("{p}.key"),
            })?,
        }))
    };
    Ok(StoreAuth::Keys {
        access_key_id: key_ref(&refs.access_key_id_secret_ref, "accessKeyIDSecretRef")?.ok_or(
            ExternalError::Missing {
                path: format!("{here}.accessKeyIDSecretRef"),
            },
        )?,
        secret_access_key: key_ref(
            &refs.secret_access_key_secret_ref,
            "secretAccessKeySecretRef",
        )?
        .ok_or(ExternalError::Missing {
            path: format!("{here}.secretAccessKeySecretRef"),
        })?,
        session_token: key_ref(&refs.session_token_secret_ref, "sessionTokenSecretRef")?,
    })
}

/// An ExternalSecret's spec (named `name`) against its store: the entries
/// read through its own store ([`Part::Own`]).
pub fn sync_plan(name: &str, spec: &Value, store: &Store) -> Result<SyncPlan, ExternalError> {
    sync_plan_part(name, spec, store, &Part::Own)
}

/// [`sync_plan`] for the entries of one [`Part`], against that part's
/// store. Entries keep their places in `data` and `dataFrom`, so the keys
/// of all parts merge in External Secrets' order ([`merge_entries`]).
pub fn sync_plan_part(
    name: &str,
    spec: &Value,
    store: &Store,
    part: &Part,
) -> Result<SyncPlan, ExternalError> {
    let spec: api::ExternalSecretSpec = api::parse(spec, "spec")?;
    let windows = match &spec.sync_windows {
        None => None,
        Some(w) => Some(refresh::Windows::new(w).map_err(|e| match e {
            refresh::RefreshError::Invalid { path, why } => invalid(path, why),
        })?),
    };
    let refresh = refresh(&spec)?;
    let target = target(name, spec.target.as_ref())?;
    let mut objects: Vec<PlannedObject> = Vec::new();
    let mut tags_of = BTreeSet::new();
    // One object per distinct (key, version, read for tags): two keys of
    // one secret cost one fetch. Tags belong to the secret, not to one of
    // its versions: a tag read has no version (External Secrets' Secrets
    // Manager ignores it too).
    let mut object_of =
        |key: &str, version: Option<String>, tags: bool| -> Result<usize, ExternalError> {
            let version = if tags { None } else { version };
            let primary = object_ref(store.service, &format!("{}{key}", store.prefix), version);
            if let Some(i) = objects
                .iter()
                .enumerate()
                .position(|(i, o)| o.primary == primary && tags_of.contains(&i) == tags)
            {
                return Ok(i);
            }
            if objects.len() >= MAX_OBJECTS {
                return Err(invalid(
                    "spec",
                    format!("names more than {MAX_OBJECTS} remote objects"),
                ));
            }
            let path = FilePath::parse(&format!("o{}", objects.len()))
                .map_err(|_| invalid("spec", "internal: object name"))?;
            objects.push(PlannedObject {
                object_type: store.service,
                primary,
                failover: None,
                file: FileSpec {
                    path,
                    mode: DEFAULT_FILE_MODE,
                },
                jmes: Vec::new(),
            });
            if tags {
                tags_of.insert(objects.len() - 1);
            }
            Ok(objects.len() - 1)
        };
    let mut data = Vec::new();
    for (i, item) in spec.data.iter().enumerate() {
        let at = format!("spec.data[{i}]");
        if part_of(item.source_ref.as_ref(), &at)? != *part {
            continue;
        }
        let r = remote_ref(&item.remote_ref, &format!("{at}.remoteRef"), false)?;
        data.push(DataItem {
            position: i,
            secret_key: item.secret_key.clone(),
            object: object_of(&item.remote_ref.key, r.version, r.tags)?,
            key: item.remote_ref.key.clone(),
            property: r.property,
            decoding: r.decoding,
            null_bytes: r.null_bytes,
        });
    }
    let mut extracts = Vec::new();
    let mut finds = Vec::new();
    for (i, item) in spec.data_from.iter().enumerate() {
        let at = format!("spec.dataFrom[{i}]");
        if part_of(item.source_ref.as_ref(), &at)? != *part {
            continue;
        }
        for (j, step) in item.rewrite.iter().enumerate() {
            check_rewrite(step, &format!("{at}.rewrite[{j}]"))?;
        }
        match (&item.extract, &item.find) {
            (Some(_), Some(_)) => {
                return Err(invalid(at, "extract and find exclude each other"));
            }
            (None, None) => {
                return Err(ExternalError::Missing {
                    path: format!("{at}.extract or find"),
                });
            }
            (None, Some(f)) => {
                if finds.len() >= MAX_FINDS {
                    return Err(invalid(
                        at,
                        format!("at most {MAX_FINDS} find entries are allowed"),
                    ));
                }
                if !store.prefix.is_empty() {
                    return Err(unsupported(
                        format!("{at}.find"),
                        "find through a store with a prefix is not supported",
                    ));
                }
                let keys = KeyRules {
                    at: at.clone(),
                    position: i,
                    rewrite: item.rewrite.clone(),
                    conversion: f.conversion_strategy.unwrap_or_default(),
                };
                finds.push(find(f, &format!("{at}.find"), keys)?);
            }
            (Some(e), None) => {
                let r = remote_ref(e, &format!("{at}.extract"), true)?;
                extracts.push(Extract {
                    object: object_of(&e.key, r.version, r.tags)?,
                    key: e.key.clone(),
                    property: r.property,
                    decoding: r.decoding,
                    null_bytes: r.null_bytes,
                    keys: KeyRules {
                        at: at.clone(),
                        position: i,
                        rewrite: item.rewrite.clone(),
                        conversion: e.conversion_strategy.unwrap_or_default(),
                    },
                });
            }
        }
    }
    if spec.data.is_empty() && spec.data_from.is_empty() && target.template.is_empty() {
        return Err(ExternalError::Missing {
            path: "spec.data or spec.dataFrom".into(),
        });
    }
    Ok(SyncPlan {
        objects: MountPlan {
            region: store.region.clone(),
            failover_region: None,
            auth: AuthMode::Irsa,
            address_preference: AddressPreference::Auto,
            objects,
            refresh_interval: match refresh {
                Refresh::Every(d) => Some(d),
                Refresh::Once | Refresh::OnChange => None,
            },
            role_chain: store.chain.clone(),
            warnings: Vec::new(),
            limits: VolumeLimits {
                max_files: usize::MAX,
                max_bytes: MAX_SECRET_BYTES,
            },
            templates: Vec::new(),
            object_files: true,
            manifest: None,
        },
        data,
        extracts,
        finds,
        tags_of,
        target,
        refresh,
        windows,
    })
}

fn template_from(tf: &api::TemplateFrom, at: &str) -> Result<TemplateFromPlan, ExternalError> {
    let target = match tf.target.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("data") => TemplateTarget::Data,
        Some("annotations") => TemplateTarget::Annotations,
        Some("labels") => TemplateTarget::Labels,
        Some(_) => {
            return Err(unsupported(
                format!("{at}.target"),
                "only Data, Annotations and Labels (a field path is for generic targets)",
            ));
        }
    };
    let refs = |r: &api::TemplateRef,
                what: &str|
     -> Result<Vec<(String, api::TemplateScope)>, ExternalError> {
        check_name(&r.name, &format!("{at}.{what}.name"), NameKind::Subdomain)?;
        if r.items.is_empty() {
            return Err(ExternalError::Missing {
                path: format!("{at}.{what}.items"),
            });
        }
        Ok(r.items
            .iter()
            .map(|i| {
                (
                    i.key.clone(),
                    i.template_as.unwrap_or(api::TemplateScope::Values),
                )
            })
            .collect())
    };
    let (source, items) = match (&tf.config_map, &tf.secret, &tf.literal) {
        (Some(cm), None, None) => (
            TemplateSource::ConfigMap(cm.name.clone()),
            refs(cm, "configMap")?,
        ),
        (None, Some(sec), None) => (
            TemplateSource::Secret(sec.name.clone()),
            refs(sec, "secret")?,
        ),
        (None, None, Some(literal)) => {
            parse_template(&format!("{at}.literal"), literal)?;
            (TemplateSource::Literal(literal.clone()), Vec::new())
        }
        (None, None, None) => {
            return Err(ExternalError::Missing {
                path: format!("{at}.configMap, secret or literal"),
            });
        }
        _ => {
            return Err(invalid(
                at,
                "configMap, secret and literal exclude each other",
            ));
        }
    };
    Ok(TemplateFromPlan {
        at: at.to_owned(),
        source,
        items,
        target,
        decoding: tf.values_decoding_strategy.unwrap_or_default(),
    })
}

/// One `rewrite[]` step, checked when planned: exactly one kind, a Go
/// regular expression within bounds, a transform template that parses.
fn check_rewrite(step: &api::Rewrite, at: &str) -> Result<(), ExternalError> {
    match (&step.regexp, &step.transform, &step.merge) {
        (Some(r), None, None) => go_regexp::GoRegex::new(&r.source)
            .map(|_| ())
            .map_err(|why| invalid(format!("{at}.regexp.source"), why)),
        (None, Some(t), None) => {
            parse_template(&format!("{at}.transform.template"), &t.template).map(|_| ())
        }
        (None, None, Some(_)) => Ok(()),
        (None, None, None) => Err(ExternalError::Missing {
            path: format!("{at}.regexp, transform or merge"),
        }),
        _ => Err(invalid(
            at,
            "regexp, transform and merge exclude each other",
        )),
    }
}

fn find(f: &api::FindSpec, at: &str, keys: KeyRules) -> Result<Find, ExternalError> {
    let name = match f.name.as_ref().and_then(|n| n.regexp.as_ref()) {
        None => None,
        Some(re) => {
            Some(compile_regex(re).map_err(|why| invalid(format!("{at}.name.regexp"), why))?)
        }
    };
    let path = f.path.clone().filter(|p| !p.is_empty());
    if name.is_none() && path.is_none() && f.tags.is_empty() {
        return Err(ExternalError::Missing {
            path: format!("{at}.name, path or tags"),
        });
    }
    Ok(Find {
        name,
        path,
        tags: f.tags.clone(),
        decoding: decoding(f.decoding_strategy),
        null_bytes: f.null_byte_policy == Some(api::NullBytePolicy::Fail),
        keys,
    })
}

/// The objects `dataFrom.find` found, as a [`MountPlan`] for the fetch
/// layer (their current versions).
pub fn found_plan(plan: &SyncPlan, service: ObjectType, names: &[String]) -> MountPlan {
    let mut found = plan.objects.clone();
    found.objects = names
        .iter()
        .enumerate()
        .filter_map(|(i, name)| {
            Some(PlannedObject {
                object_type: service,
                primary: object_ref(service, name, None),
                failover: None,
                file: FileSpec {
                    path: FilePath::parse(&format!("f{i}")).ok()?,
                    mode: DEFAULT_FILE_MODE,
                },
                jmes: Vec::new(),
            })
        })
        .collect();
    found
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or_default()
}

fn object_ref(service: ObjectType, key: &str, version: Option<String>) -> ObjectRef {
    let (version_id, version_label) = match (service, version) {
        (_, None) => (None, None),
        // Secrets Manager: `uuid/<id>` pins a version id, anything else is
        // a staging label (AWSCURRENT, AWSPREVIOUS, ...).
        (ObjectType::SecretsManager, Some(v)) => match v.strip_prefix("uuid/") {
            Some(id) => (Some(id.to_owned()), None),
            None => (None, Some(v)),
        },
        // Parameter Store: a version number, else a label.
        (ObjectType::SsmParameter, Some(v)) if v.bytes().all(|b| b.is_ascii_digit()) => {
            (Some(v), None)
        }
        (ObjectType::SsmParameter, Some(v)) => (None, Some(v)),
    };
    ObjectRef {
        name: key.to_owned(),
        version_id,
        version_label,
    }
}

/// A remote ref, validated.
struct Remote {
    /// `metadataPolicy: Fetch`: the value is the object's tags.
    tags: bool,
    property: Option<String>,
    version: Option<String>,
    decoding: Decoding,
    null_bytes: bool,
}

/// `keys_converted`: an `extract`, whose keys `conversionStrategy` makes;
/// a `data[]` entry's key is its `secretKey`.
fn remote_ref(r: &api::RemoteRef, at: &str, keys_converted: bool) -> Result<Remote, ExternalError> {
    if r.key.is_empty() {
        return Err(ExternalError::Missing {
            path: format!("{at}.key"),
        });
    }
    if !keys_converted && r.conversion_strategy == Some(api::ConversionStrategy::Unicode) {
        return Err(unsupported(
            format!("{at}.conversionStrategy"),
            "only Default is supported",
        ));
    }
    Ok(Remote {
        tags: r.metadata_policy == Some(api::MetadataPolicy::Fetch),
        property: r.property.clone().filter(|p| !p.is_empty()),
        version: r.version.clone().filter(|v| !v.is_empty()),
        decoding: decoding(r.decoding_strategy),
        null_bytes: r.null_byte_policy == Some(api::NullBytePolicy::Fail),
    })
}

fn decoding(d: Option<api::DecodingStrategy>) -> Decoding {
    match d {
        None | Some(api::DecodingStrategy::None) => Decoding::None,
        Some(api::DecodingStrategy::Base64) => Decoding::Base64,
        Some(api::DecodingStrategy::Base64Url) => Decoding::Base64Url,
        Some(api::DecodingStrategy::Auto) => Decoding::Auto,
    }
}

fn refresh(spec: &api::ExternalSecretSpec) -> Result<Refresh, ExternalError> {
    match spec.refresh_policy {
        Some(api::RefreshPolicy::CreatedOnce) => return Ok(Refresh::Once),
        Some(api::RefreshPolicy::OnChange) => return Ok(Refresh::OnChange),
        None | Some(api::RefreshPolicy::Periodic) => {}
    }
    let text = spec.refresh_interval.clone().unwrap_or_else(|| "1h".into());
    if go_duration(&text) == Some(Duration::ZERO) || text == "0" {
        return Ok(Refresh::Once);
    }
    let d = go_duration(&text).ok_or_else(|| {
        invalid(
            "spec.refreshInterval",
            format!("{text:?} is not a duration such as 1h, 15m or 30s"),
        )
    })?;
    if d < Duration::from_secs(1) {
        return Err(invalid(
            "spec.refreshInterval",
            format!("{text:?} is under a second"),
        ));
    }
    if d > MAX_GO_DURATION {
        return Err(invalid(
            "spec.refreshInterval",
            "is longer than the longest duration Kubernetes and External Secrets read (2562047h)",
        ));
    }
    Ok(Refresh::Every(d))
}

/// Go's longest duration (an int64 of nanoseconds, about 292 years).
pub const MAX_GO_DURATION: Duration = Duration::from_secs(i64::MAX as u64 / 1_000_000_000);

/// A Go duration (`1h30m`, `15m`, `30s`, `1.5h`), as Kubernetes writes them.
/// Never panics: a number too large for a duration is no duration.
pub(crate) fn go_duration(text: &str) -> Option<Duration> {
    humantime::parse_duration(text).ok().or_else(|| {
        let (number, unit) = text.split_at(text.find(|c: char| c.is_ascii_alphabetic())?);
        let n: f64 = number.parse().ok()?;
        let seconds = match unit {
            "h" => n * 3600.0,
            "m" => n * 60.0,
            "s" => n,
            _ => return None,
        };
        Duration::try_from_secs_f64(seconds).ok()
    })
}

fn target(es_name: &str, t: Option<&api::TargetSpec>) -> Result<Target, ExternalError> {
    let at = "spec.target";
    let mut target = Target {
        name: es_name.to_owned(),
        creation: CreationPolicy::Owner,
        deletion: DeletionPolicy::Retain,
        immutable: false,
        type_: None,
        labels: BTreeMap::new(),
        annotations: BTreeMap::new(),
        finalizers: Vec::new(),
        templated: false,
        merge_data: false,
        template: BTreeMap::new(),
        template_from: Vec::new(),
    };
    let Some(t) = t else {
        return Ok(target);
    };
    if let Some(name) = &t.name {
        check_name(name, &format!("{at}.name"), NameKind::Subdomain)?;
        target.name = name.clone();
    }
    if t.manifest.is_some() {
        return Err(unsupported(
            format!("{at}.manifest"),
            "only Secrets are written",
        ));
    }
    target.creation = match t.creation_policy {
        None | Some(api::CreationPolicyName::Owner) => CreationPolicy::Owner,
        Some(api::CreationPolicyName::Orphan) => CreationPolicy::Orphan,
        Some(api::CreationPolicyName::Merge) => CreationPolicy::Merge,
        Some(api::CreationPolicyName::None) => CreationPolicy::None,
        Some(api::CreationPolicyName::CreateOrMerge) => CreationPolicy::CreateOrMerge,
    };
    target.deletion = match t.deletion_policy {
        None | Some(api::DeletionPolicyName::Retain) => DeletionPolicy::Retain,
        Some(api::DeletionPolicyName::Delete) => DeletionPolicy::Delete,
        Some(api::DeletionPolicyName::Merge) => DeletionPolicy::Merge,
    };
    // External Secrets' webhook rules: only a Secret the ExternalSecret
    // owns may be deleted, and Merge needs a Secret to merge with.
    match (target.deletion, target.creation) {
        (
            DeletionPolicy::Delete,
            CreationPolicy::Merge | CreationPolicy::None | CreationPolicy::CreateOrMerge,
        ) => {
            return Err(invalid(
                format!("{at}.deletionPolicy"),
                "Delete needs creationPolicy Owner: only a Secret the ExternalSecret owns is deleted",
            ));
        }
        (DeletionPolicy::Merge, CreationPolicy::None) => {
            return Err(invalid(
                format!("{at}.deletionPolicy"),
                "Merge cannot be used with creationPolicy None: there is no Secret to merge with",
            ));
        }
        _ => {}
    }
    target.immutable = t.immutable.unwrap_or(false);
    let Some(template) = &t.template else {
        return Ok(target);
    };
    let at = "spec.target.template";
    target.templated = true;
    if template
        .engine_version
        .as_deref()
        .is_some_and(|v| v != "v2")
    {
        return Err(unsupported(
            format!("{at}.engineVersion"),
            "only v2 templates are supported",
        ));
    }
    if template.template_from.len() > MAX_TEMPLATE_FROM {
        return Err(invalid(
            format!("{at}.templateFrom"),
            format!("at most {MAX_TEMPLATE_FROM} entries are allowed"),
        ));
    }
    for (i, tf) in template.template_from.iter().enumerate() {
        target
            .template_from
            .push(template_from(tf, &format!("{at}.templateFrom[{i}]"))?);
    }
    target.merge_data = template.merge_policy == Some(api::MergePolicy::Merge);
    target.type_ = template.type_.clone().filter(|t| !t.is_empty());
    // A type Kubernetes acts on (a service-account-token Secret is
    // filled with a long-lived token of the ServiceAccount it names) is
    // never written for an ExternalSecret author.
    if let Some(t) = &target.type_
        && !target_secret::allowed_type(t)
    {
        return Err(invalid(
            format!("{at}.type"),
            format!(
                "{t:?} is not allowed (allowed: {})",
                target_secret::ALLOWED_TYPES.join(", ")
            ),
        ));
    }
    if let Some(meta) = &template.metadata {
        let here = format!("{at}.metadata");
        target.labels = meta.labels.clone();
        target.annotations = meta.annotations.clone();
        let keys = (target.labels.keys().map(|k| ("labels", k)))
            .chain(target.annotations.keys().map(|k| ("annotations", k)));
        for (what, key) in keys {
            if target_secret::reserved_key(key) {
                return Err(invalid(
                    format!("{here}.{what}[{key:?}]"),
                    "keys under kubernetes.io and k8s.io belong to Kubernetes (app.kubernetes.io excepted)",
                ));
            }
        }
        for (i, f) in meta.finalizers.iter().enumerate() {
            if target_secret::reserved_key(f) || !f.contains('/') {
                return Err(invalid(
                    format!("{here}.finalizers[{i}]"),
                    "a finalizer must be a qualified name outside kubernetes.io and k8s.io",
                ));
            }
        }
        target.finalizers = meta.finalizers.clone();
        for (what, map) in [
            ("labels", &target.labels),
            ("annotations", &target.annotations),
        ] {
            for (key, text) in map {
                check_template(&format!("{here}.{what}.{key}"), text)?;
            }
        }
    }
    target.template = template.data.clone();
    for (key, text) in &target.template {
        check_template(&format!("{at}.data.{key}"), text)?;
    }
    Ok(target)
}

/// A template of `template.data` or `template.metadata`, parsed with
/// External Secrets' engine (v2: Go text/template and its functions), so
/// that a syntax error or a function it does not offer is refused when the
/// ExternalSecret is read, by its path.
fn check_template(path: &str, text: &str) -> Result<(), ExternalError> {
    parse_template(path, text).map(|_| ())
}

fn parse_template(path: &str, text: &str) -> Result<Template, ExternalError> {
    Template::parse(path, text, &TemplateOptions::default()).map_err(|e| ExternalError::Template {
        key: path.to_owned(),
        why: e.message,
    })
}

/// Runs one template over the fetched keys, within `left` bytes (shared by
/// every key of the Secret): a template that repeats a large value stops
/// at the Secret's size instead of growing. The engine's messages name the
/// template and position, never a value.
fn run_template(
    path: &str,
    text: &str,
    input: &TemplateValue,
    left: &mut u64,
) -> Result<Vec<u8>, ExternalError> {
    let template = parse_template(path, text)?;
    let limits = TemplateLimits {
        max_output_bytes: usize::try_from(*left).unwrap_or(usize::MAX),
        ..TemplateLimits::default()
    };
    let out = template.execute(input, &limits).map_err(|e| match e.kind {
        crate::template::ErrorKind::Limit if e.message.contains("bytes") => ExternalError::TooLarge,
        _ => ExternalError::Template {
            key: path.to_owned(),
            why: e.message,
        },
    })?;
    *left = left
        .checked_sub(out.len() as u64)
        .ok_or(ExternalError::TooLarge)?;
    Ok(out)
}

/// Whether an ExternalSecret that was synced before (`synced` holds its
/// `status.syncedResourceVersion`, `version` its current one, see
/// [`refresh::resource_version`]) is synced again now, before its Secret is checked:
/// External Secrets' `shouldRefresh` without the clock (periodic ones are
/// requeued at their tick). A Secret that is missing or was edited
/// ([`target_secret::data_hash`]) is repaired whatever this says.
pub fn refresh_due(refresh: Refresh, synced: Option<&str>, version: &str) -> bool {
    match (refresh, synced) {
        (_, None) => true,
        (Refresh::Once, Some(_)) => false,
        (Refresh::OnChange | Refresh::Every(_), Some(s)) => s != version,
    }
}

/// One dataFrom entry's keys: its rewrite steps (a `transform` runs on the
/// template engine with `.value` = the key), else its conversion, then
/// External Secrets' key check.
fn data_from_keys(
    rules: &KeyRules,
    map: rewrite::SecretMap,
    source: &str,
) -> Result<rewrite::SecretMap, ExternalError> {
    // Each transform template is parsed once for all the keys it renames
    // (a find brings up to 100 keys).
    let parsed: BTreeMap<&str, Result<Template, String>> = rules
        .rewrite
        .iter()
        .filter_map(|r| r.transform.as_ref())
        .map(|t| {
            let template = Template::parse("transform", &t.template, &TemplateOptions::default())
                .map_err(|e| e.message);
            (t.template.as_str(), template)
        })
        .collect();
    let transform = |text: &str, key: &str| -> Result<String, String> {
        let template = match parsed.get(text) {
            Some(Ok(t)) => t,
            Some(Err(e)) => return Err(e.clone()),
            None => return Err("internal: transform not parsed".into()),
        };
        let input = TemplateValue::from_secret_data(&BTreeMap::from([(
            "value".to_owned(),
            key.as_bytes().to_vec(),
        )]));
        let out = template
            .execute(&input, &TemplateLimits::default())
            .map_err(|e| e.message)?;
        String::from_utf8(out).map_err(|_| "the key is not UTF-8 text".to_owned())
    };
    Ok(rewrite::data_from_keys(
        &rules.rewrite,
        rules.conversion,
        map,
        &rules.at,
        source,
        &transform,
    )?)
}

/// What a sync writes into the Secret besides its type.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rendered {
    pub data: BTreeMap<String, SecretBytes>,
    /// `template.metadata`, rendered (labels and annotations are not
    /// secret: a template that puts a secret value there is the author's
    /// choice, as in External Secrets).
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

/// The Secret's data (and templated metadata) from the fetched values (in
/// plan order) and the objects `dataFrom.find` found (find index, name,
/// value), within [`MAX_SECRET_BYTES`].
pub fn render_secret(
    plan: &SyncPlan,
    values: &[SecretBytes],
    found: &[(usize, String, SecretBytes)],
) -> Result<Rendered, ExternalError> {
    render_secret_with(plan, values, found, &TemplateSources::new())
}

/// [`render_secret`] with the ConfigMaps and Secrets `templateFrom` names
/// ([`SyncPlan::template_sources`]), fetched by the caller.
pub fn render_secret_with(
    plan: &SyncPlan,
    values: &[SecretBytes],
    found: &[(usize, String, SecretBytes)],
    sources: &TemplateSources,
) -> Result<Rendered, ExternalError> {
    let present: Vec<Option<SecretBytes>> = values.iter().cloned().map(Some).collect();
    let data = provider_data(plan, &present, found)?;
    render_target(plan, data, sources)
}

/// The keys AWS gave, before templates: `dataFrom` entries in order, then
/// `data[]`. A value that is None (the secret is gone, and the deletion
/// policy skips it) contributes no key. When this is empty, the deletion
/// policy decides what happens to the Secret (External Secrets decides
/// there, before any template runs).
pub fn provider_data(
    plan: &SyncPlan,
    values: &[Option<SecretBytes>],
    found: &[(usize, String, SecretBytes)],
) -> Result<BTreeMap<String, SecretBytes>, ExternalError> {
    Ok(merge_entries(provider_entries(plan, values, found)?))
}

/// Where an entry's keys go in the merge: `dataFrom` entries in order,
/// then `data[]` entries in order; a later one's key wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum EntryOrder {
    DataFrom(usize),
    Data(usize),
}

/// The keys each entry of one plan gave, with its place in the merge.
pub type EntryKeys = Vec<(EntryOrder, BTreeMap<String, SecretBytes>)>;

/// The keys of the entries of every part, merged in External Secrets'
/// order.
pub fn merge_entries(mut entries: EntryKeys) -> BTreeMap<String, SecretBytes> {
    entries.sort_by_key(|(order, _)| *order);
    let mut data = BTreeMap::new();
    for (_, map) in entries {
        data.extend(map);
    }
    data
}

/// [`provider_data`] entry by entry, not yet merged: a plan of one
/// [`Part`] gives its entries to merge with the other parts'.
pub fn provider_entries(
    plan: &SyncPlan,
    values: &[Option<SecretBytes>],
    found: &[(usize, String, SecretBytes)],
) -> Result<EntryKeys, ExternalError> {
    // Each dataFrom entry's keys, made by its rewrite or conversion, in
    // dataFrom order (a later entry's key wins), then data[] over them.
    let mut from: Vec<(usize, rewrite::SecretMap)> = Vec::new();
    for (index, find) in plan.finds.iter().enumerate() {
        let mut map = rewrite::SecretMap::new();
        for (_, name, value) in found.iter().filter(|(i, _, _)| *i == index) {
            let value = decode(name, value.clone(), find.decoding)?;
            if find.null_bytes && value.expose().contains(&0) {
                return Err(ExternalError::NullByte { key: name.clone() });
            }
            map.insert(name.clone(), value);
        }
        from.push((find.keys.position, data_from_keys(&find.keys, map, "find")?));
    }
    let key_name = |i: usize| plan.objects.objects[i].name().to_owned();
    let value_of = |i: usize| values.get(i).cloned().flatten();
    for extract in &plan.extracts {
        let Some(value) = value_of(extract.object) else {
            continue;
        };
        let key = key_name(extract.object);
        let json = parse_json(&value).ok_or_else(|| ExternalError::NotJson {
            key: key.clone(),
            property: extract.property.clone().unwrap_or_default(),
        })?;
        let node = match &extract.property {
            Some(p) => property(&json, p).ok_or_else(|| ExternalError::PropertyNotFound {
                key: key.clone(),
                property: p.clone(),
            })?,
            None => &json,
        };
        let Value::Object(object) = node else {
            return Err(invalid(
                format!("dataFrom extract of {key}"),
                "the value is not a JSON object",
            ));
        };
        let mut map = rewrite::SecretMap::new();
        for (k, v) in object {
            let value = decode(&key, text_of(v), extract.decoding)?;
            if extract.null_bytes && value.expose().contains(&0) {
                return Err(ExternalError::NullByte { key: key.clone() });
            }
            map.insert(k.clone(), value);
        }
        from.push((
            extract.keys.position,
            data_from_keys(&extract.keys, map, "extract")?,
        ));
    }
    let mut entries: EntryKeys = from
        .into_iter()
        .map(|(position, map)| (EntryOrder::DataFrom(position), map))
        .collect();
    for item in &plan.data {
        let Some(value) = value_of(item.object) else {
            continue;
        };
        let key = key_name(item.object);
        let bytes = match &item.property {
            None => value,
            Some(p) => {
                let json = parse_json(&value).ok_or_else(|| ExternalError::NotJson {
                    key: key.clone(),
                    property: p.clone(),
                })?;
                let found = property(&json, p).ok_or_else(|| ExternalError::PropertyNotFound {
                    key: key.clone(),
                    property: p.clone(),
                })?;
                text_of(found)
            }
        };
        let value = decode(&key, bytes, item.decoding)?;
        if item.null_bytes && value.expose().contains(&0) {
            return Err(ExternalError::NullByte { key: key.clone() });
        }
        entries.push((
            EntryOrder::Data(item.position),
            BTreeMap::from([(item.secret_key.clone(), value)]),
        ));
    }
    Ok(entries)
}

/// The Secret's data and templated metadata from the keys AWS gave
/// ([`provider_data`]) and the `templateFrom` sources, within
/// [`MAX_SECRET_BYTES`].
pub fn render_target(
    plan: &SyncPlan,
    mut data: BTreeMap<String, SecretBytes>,
    sources: &TemplateSources,
) -> Result<Rendered, ExternalError> {
    let mut labels = BTreeMap::new();
    let mut annotations = BTreeMap::new();
    let input = TemplateValue::from_secret_data(
        &data
            .iter()
            .map(|(k, v)| (k.clone(), v.expose().to_vec()))
            .collect(),
    );
    // templateFrom first (External Secrets' order): its Data keys, labels
    // and annotations; template.metadata and template.data win over them.
    let mut left = MAX_SECRET_BYTES;
    let mut from_data = BTreeMap::new();
    for tf in &plan.target.template_from {
        let texts: Vec<(String, Vec<u8>, api::TemplateScope)> = match &tf.source {
            TemplateSource::Literal(l) => {
                vec![(
                    l.clone(),
                    l.as_bytes().to_vec(),
                    api::TemplateScope::KeysAndValues,
                )]
            }
            source => {
                let (what, name) = match source {
                    TemplateSource::ConfigMap(n) => ("configmap", n),
                    TemplateSource::Secret(n) | TemplateSource::Literal(n) => ("secret", n),
                };
                let data = sources.get(source).ok_or_else(|| ExternalError::Invalid {
                    path: tf.at.clone(),
                    why: format!("{what} {name} was not read"),
                })?;
                tf.items
                    .iter()
                    .map(|(key, scope)| {
                        data.get(key)
                            .map(|text| (key.clone(), text.clone(), *scope))
                            .ok_or_else(|| ExternalError::Invalid {
                                path: tf.at.clone(),
                                why: format!("error in {what} {name}: missing key {key}"),
                            })
                    })
                    .collect::<Result<_, _>>()?
            }
        };
        for (key, text, scope) in texts {
            let text = String::from_utf8(text).map_err(|_| ExternalError::Template {
                key: tf.at.clone(),
                why: format!("the template at key {key:?} is not UTF-8 text"),
            })?;
            let rendered = run_template(&tf.at, &text, &input, &mut left)?;
            let pairs: Vec<(String, Vec<u8>)> = match scope {
                api::TemplateScope::Values => vec![(key, rendered)],
                api::TemplateScope::KeysAndValues => {
                    let map: BTreeMap<String, String> = serde_saphyr::from_slice(&rendered)
                        .map_err(|_| ExternalError::Template {
                            key: tf.at.clone(),
                            why: "the rendered template is not a YAML mapping of strings".into(),
                        })?;
                    map.into_iter().map(|(k, v)| (k, v.into_bytes())).collect()
                }
            };
            for (k, v) in pairs {
                let v = decoding::decode(tf.decoding, &k, SecretBytes::new(v), &tf.at)
                    .map_err(|e| invalid(tf.at.clone(), e.to_string()))?;
                match tf.target {
                    TemplateTarget::Data => {
                        from_data.insert(k, v);
                    }
                    TemplateTarget::Labels | TemplateTarget::Annotations => {
                        if target_secret::reserved_key(&k) {
                            return Err(invalid(
                                tf.at.clone(),
                                format!(
                                    "{k:?}: keys under kubernetes.io and k8s.io belong to Kubernetes"
                                ),
                            ));
                        }
                        let text = String::from_utf8(v.expose().to_vec()).map_err(|_| {
                            invalid(tf.at.clone(), format!("{k:?}: the value is not UTF-8 text"))
                        })?;
                        if tf.target == TemplateTarget::Labels {
                            labels.insert(k, text);
                        } else {
                            annotations.insert(k, text);
                        }
                    }
                }
            }
        }
    }
    {
        for (what, map, out) in [
            ("labels", &plan.target.labels, &mut labels),
            ("annotations", &plan.target.annotations, &mut annotations),
        ] {
            for (key, text) in map {
                let path = format!("spec.target.template.metadata.{what}.{key}");
                let value = run_template(&path, text, &input, &mut left)?;
                let value = String::from_utf8(value).map_err(|_| ExternalError::Template {
                    key: path.clone(),
                    why: "the value is not UTF-8 text".into(),
                })?;
                out.insert(key.clone(), value);
            }
        }
    }
    if !plan.target.template.is_empty() || !plan.target.template_from.is_empty() {
        let fetched = data;
        // mergePolicy Merge keeps the fetched keys; templated keys win.
        let mut out = if plan.target.merge_data {
            fetched.clone()
        } else {
            BTreeMap::new()
        };
        out.extend(from_data);
        for (key, text) in &plan.target.template {
            let path = format!("spec.target.template.data.{key}");
            out.insert(
                key.clone(),
                SecretBytes::new(run_template(&path, text, &input, &mut left)?),
            );
        }
        data = out;
    }
    let total: u64 = data.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum();
    if total > MAX_SECRET_BYTES {
        return Err(ExternalError::TooLarge);
    }
    Ok(Rendered {
        data,
        labels,
        annotations,
    })
}

fn parse_json(value: &SecretBytes) -> Option<Value> {
    serde_json::from_slice(value.expose()).ok()
}

/// A gjson-style path: `a.b.c`, `list.0.name`, `\.` for a literal dot.
fn property<'v>(json: &'v Value, path: &str) -> Option<&'v Value> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut chars = path.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => current.extend(chars.next()),
            '.' => parts.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    parts.push(current);
    // A key that holds the whole path (`"a.b": ...`) wins, as gjson does
    // when the path is escaped; a plain key first.
    if let Some(v) = json.get(path) {
        return Some(v);
    }
    parts.iter().try_fold(json, |node, part| match node {
        Value::Object(map) => map.get(part),
        Value::Array(list) => list.get(part.parse::<usize>().ok()?),
        _ => None,
    })
}

/// A JSON value as a Secret holds it: strings as their text, anything else
/// as JSON.
fn text_of(v: &Value) -> SecretBytes {
    match v {
        Value::String(s) => SecretBytes::from(s.as_str()),
        other => SecretBytes::from(other.to_string()),
    }
}

fn decode(key: &str, value: SecretBytes, how: Decoding) -> Result<SecretBytes, ExternalError> {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
    let text = value.expose();
    let trimmed: Vec<u8> = text
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let fail = |encoding| ExternalError::Decoding {
        key: key.to_owned(),
        encoding,
    };
    Ok(match how {
        Decoding::None => value,
        Decoding::Base64 => {
            SecretBytes::new(STANDARD.decode(&trimmed).map_err(|_| fail("base64"))?)
        }
        Decoding::Base64Url => SecretBytes::new(
            URL_SAFE
                .decode(&trimmed)
                .or_else(|_| URL_SAFE_NO_PAD.decode(&trimmed))
                .map_err(|_| fail("base64url"))?,
        ),
        Decoding::Auto => STANDARD
            .decode(&trimmed)
            .or_else(|_| URL_SAFE.decode(&trimmed))
            .map(SecretBytes::new)
            .unwrap_or(value),
    })
}

/// A Kubernetes object name at `at`: it goes into an API request path, so
/// it must be the RFC 1123 name it claims to be.
fn check_name(name: &str, at: &str, kind: NameKind) -> Result<(), ExternalError> {
    names::check(name, kind).map_err(|e| invalid(at, e.to_string()))
}

#[cfg(test)]
mod tests;
