//! External Secrets manifests (`external-secrets.io` v1 and v1beta1, the AWS
//! provider's part): a SecretStore (or ClusterSecretStore) and an
//! ExternalSecret -> a [`SyncPlan`] (pure), and fetched values -> the data
//! of the Kubernetes Secret. The objects to fetch are a [`MountPlan`], so the
//! controller runs on the same identity, fetch and sharing layers as the
//! node driver. Every field is read from the raw JSON: a field this
//! controller does not support is refused by its path, never ignored.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use serde_json::{Map, Value};

use crate::names::{self, NameKind};
use crate::secret::SecretBytes;
use crate::spc::{
    AddressPreference, AuthMode, DEFAULT_FILE_MODE, FilePath, FileSpec, MountPlan, ObjectRef,
    ObjectType, PlannedObject, RoleChain, VolumeLimits, is_role_arn,
};
use crate::target_secret;

pub mod conditions;
pub mod decoding;
pub mod go_regexp;
pub mod refresh;
pub mod rewrite;

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
    #[error("template.data.{key}: {why}")]
    Template { key: String, why: String },
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
    /// `role`, `externalID`, `sessionTags`: assumed after the auth's own.
    pub chain: Option<RoleChain>,
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
    /// `refreshInterval: 0` or `refreshPolicy: CreatedOnce`: synced once.
    Once,
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
}

/// The Kubernetes Secret to keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub name: String,
    pub creation: CreationPolicy,
    pub immutable: bool,
    pub type_: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// `template.data`: output keys built from the fetched keys.
    pub template: BTreeMap<String, String>,
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
    pub secret_key: String,
    /// Index into the plan's objects.
    pub object: usize,
    pub property: Option<String>,
    pub decoding: Decoding,
}

/// One `dataFrom[].extract`: every key of a JSON remote value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extract {
    pub object: usize,
    pub property: Option<String>,
    pub decoding: Decoding,
}

/// One `dataFrom[].find`: every object whose name matches, each a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Find {
    /// `name.regexp`, compiled once when planned (bounded in size).
    pub name: Option<NameRegex>,
    /// `path`: a name prefix (Secrets Manager) or a path (Parameter Store).
    pub path: Option<String>,
    /// `tags`: all must be present with these values (Secrets Manager).
    pub tags: BTreeMap<String, String>,
    pub decoding: Decoding,
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

/// The Secret key of a found object: its name with every character a
/// Secret key may not hold (anything but letters, digits, `-`, `_`, `.`)
/// replaced by `_`, as External Secrets' default conversion does
/// (`db/prod/password` -> `db_prod_password`).
pub fn found_key(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
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
    pub target: Target,
    pub refresh: Refresh,
}

/// Where an ExternalSecret points: read before its store is known.
pub fn store_ref(spec: &Value) -> Result<StoreRef, ExternalError> {
    let r = spec
        .get("secretStoreRef")
        .ok_or_else(|| ExternalError::Missing {
            path: "spec.secretStoreRef".into(),
        })?;
    let name = name_at(r, "name", "spec.secretStoreRef", NameKind::Subdomain)?.ok_or(
        ExternalError::Missing {
            path: "spec.secretStoreRef.name".into(),
        },
    )?;
    let kind = match string_at(r, "kind", "spec.secretStoreRef")?.as_deref() {
        None | Some("SecretStore") => StoreKind::SecretStore,
        Some("ClusterSecretStore") => StoreKind::ClusterSecretStore,
        Some(other) => {
            return Err(invalid(
                "spec.secretStoreRef.kind",
                format!("{other:?} is not SecretStore or ClusterSecretStore"),
            ));
        }
    };
    Ok(StoreRef { kind, name })
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

/// A store's spec. `namespace` is the store's own (None for a
/// ClusterSecretStore, whose ServiceAccount refs name their namespace).
pub fn store(spec: &Value, namespace: Option<&str>) -> Result<Store, ExternalError> {
    only(spec, "spec", &["controller", "provider", "refreshInterval"])?;
    let provider = object_at(spec, "provider", "spec")?.ok_or(ExternalError::Missing {
        path: "spec.provider.aws".into(),
    })?;
    if let Some(other) = provider.keys().find(|k| *k != "aws") {
        return Err(unsupported(
            format!("spec.provider.{other}"),
            "this controller serves only provider.aws",
        ));
    }
    let aws = provider.get("aws").ok_or(ExternalError::Missing {
        path: "spec.provider.aws".into(),
    })?;
    let at = "spec.provider.aws";
    only(
        aws,
        at,
        &[
            "service",
            "region",
            "role",
            "externalID",
            "sessionTags",
            "auth",
        ],
    )?;
    let service = match string_at(aws, "service", at)?.as_deref() {
        Some("SecretsManager") => ObjectType::SecretsManager,
        Some("ParameterStore") => ObjectType::SsmParameter,
        Some(other) => {
            return Err(invalid(
                format!("{at}.service"),
                format!("{other:?} is not SecretsManager or ParameterStore"),
            ));
        }
        None => {
            return Err(ExternalError::Missing {
                path: format!("{at}.service"),
            });
        }
    };
    let region = string_at(aws, "region", at)?.ok_or(ExternalError::Missing {
        path: format!("{at}.region"),
    })?;
    let auth = match aws.get("auth") {
        None | Some(Value::Null) => StoreAuth::Controller,
        Some(auth) => store_auth(auth, namespace)?,
    };
    let chain = match string_at(aws, "role", at)? {
        None => {
            if aws.get("externalID").is_some() || aws.get("sessionTags").is_some() {
                return Err(invalid(
                    format!("{at}.externalID"),
                    "externalID and sessionTags go with role",
                ));
            }
            None
        }
        Some(role) => {
            if !is_role_arn(&role) {
                return Err(invalid(
                    format!("{at}.role"),
                    format!("{role:?} is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)"),
                ));
            }
            let mut session_tags = Vec::new();
            let tags = list_at(aws, "sessionTags", at)?;
            // STS takes at most 50 session tags.
            if tags.len() > 50 {
                return Err(invalid(format!("{at}.sessionTags"), "at most 50 tags"));
            }
            for (i, t) in tags.iter().enumerate() {
                let here = format!("{at}.sessionTags[{i}]");
                only(t, &here, &["key", "value"])?;
                let key = string_at(t, "key", &here)?.ok_or(ExternalError::Missing {
                    path: format!("{here}.key"),
                })?;
                session_tags.push((key, string_at(t, "value", &here)?.unwrap_or_default()));
            }
            session_tags.sort();
            Some(RoleChain {
                roles: vec![role],
                external_id: string_at(aws, "externalID", at)?,
                duration_seconds: None,
                session_tags,
            })
        }
    };
    Ok(Store {
        service,
        region,
        auth,
        chain,
    })
}

fn store_auth(auth: &Value, namespace: Option<&str>) -> Result<StoreAuth, ExternalError> {
    let at = "spec.provider.aws.auth";
    only(auth, at, &["jwt", "secretRef"])?;
    let ns_of = |r: &Value, here: &str| -> Result<String, ExternalError> {
        match (name_at(r, "namespace", here, NameKind::Label)?, namespace) {
            (Some(ns), None) => Ok(ns),
            (None, Some(own)) => Ok(own.to_owned()),
            // A namespaced store reads only its own namespace.
            (Some(ns), Some(own)) if ns == own => Ok(ns),
            (Some(_), Some(_)) => Err(invalid(
                format!("{here}.namespace"),
                "a SecretStore may only refer to its own namespace",
            )),
            (None, None) => Err(ExternalError::Missing {
                path: format!("{here}.namespace"),
            }),
        }
    };
    if let Some(jwt) = auth.get("jwt") {
        let here = format!("{at}.jwt.serviceAccountRef");
        only(jwt, &format!("{at}.jwt"), &["serviceAccountRef"])?;
        let r = jwt
            .get("serviceAccountRef")
            .ok_or(ExternalError::Missing { path: here.clone() })?;
        only(r, &here, &["name", "namespace", "audiences"])?;
        let service_account =
            name_at(r, "name", &here, NameKind::Subdomain)?.ok_or(ExternalError::Missing {
                path: format!("{here}.name"),
            })?;
        let audience = match r.get("audiences") {
            None => "sts.amazonaws.com".to_owned(),
            Some(Value::Array(list)) if list.len() == 1 && list[0].is_string() => {
                list[0].as_str().unwrap_or_default().to_owned()
            }
            Some(_) => {
                return Err(unsupported(
                    format!("{here}.audiences"),
                    "exactly one audience is supported",
                ));
            }
        };
        return Ok(StoreAuth::Jwt {
            namespace: ns_of(r, &here)?,
            service_account,
            audience,
        });
    }
    let refs = auth.get("secretRef").ok_or(ExternalError::Missing {
        path: format!("{at}.jwt"),
    })?;
    let here = format!("{at}.secretRef");
    only(
        refs,
        &here,
        &[
            "accessKeyIDSecretRef",
            "secretAccessKeySecretRef",
            "sessionTokenSecretRef",
        ],
    )?;
    let key_ref = |field: &str| -> Result<Option<SecretKeyRef>, ExternalError> {
        let Some(r) = refs.get(field) else {
            return Ok(None);
        };
        let p = format!("{here}.{field}");
        only(r, &p, &["name", "key", "namespace"])?;
        Ok(Some(SecretKeyRef {
            namespace: ns_of(r, &p)?,
            name: name_at(r, "name", &p, NameKind::Subdomain)?.ok_or(ExternalError::Missing {
                path: format!("{p}.name"),
            })?,
            key: string_at(r, "key", &p)?.ok_or(ExternalError::Missing {
                path: format!("{p}.key"),
            })?,
        }))
    };
    Ok(StoreAuth::Keys {
        access_key_id: key_ref("accessKeyIDSecretRef")?.ok_or(ExternalError::Missing {
            path: format!("{here}.accessKeyIDSecretRef"),
        })?,
        secret_access_key: key_ref("secretAccessKeySecretRef")?.ok_or(ExternalError::Missing {
            path: format!("{here}.secretAccessKeySecretRef"),
        })?,
        session_token: key_ref("sessionTokenSecretRef")?,
    })
}

/// An ExternalSecret's spec (named `name`) against its store.
pub fn sync_plan(name: &str, spec: &Value, store: &Store) -> Result<SyncPlan, ExternalError> {
    only(
        spec,
        "spec",
        &[
            "refreshInterval",
            "refreshPolicy",
            "secretStoreRef",
            "target",
            "data",
            "dataFrom",
        ],
    )?;
    let refresh = refresh(spec)?;
    let target = target(name, spec.get("target"))?;
    let mut objects: Vec<PlannedObject> = Vec::new();
    // One object per distinct (key, version): two keys of one secret cost
    // one fetch.
    let mut object_of = |key: &str, version: Option<String>| -> Result<usize, ExternalError> {
        let primary = object_ref(store.service, key, version);
        if let Some(i) = objects.iter().position(|o| o.primary == primary) {
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
        Ok(objects.len() - 1)
    };
    let mut data = Vec::new();
    for (i, item) in list_at(spec, "data", "spec")?.iter().enumerate() {
        let at = format!("spec.data[{i}]");
        only(item, &at, &["secretKey", "remoteRef", "sourceRef"])?;
        if item.get("sourceRef").is_some() {
            return Err(unsupported(
                format!("{at}.sourceRef"),
                "values come from this ExternalSecret's own store",
            ));
        }
        let secret_key = string_at(item, "secretKey", &at)?.ok_or(ExternalError::Missing {
            path: format!("{at}.secretKey"),
        })?;
        let r = item.get("remoteRef").ok_or(ExternalError::Missing {
            path: format!("{at}.remoteRef"),
        })?;
        let (key, property, version, decoding) = remote_ref(r, &format!("{at}.remoteRef"))?;
        data.push(DataItem {
            secret_key,
            object: object_of(&key, version)?,
            property,
            decoding,
        });
    }
    let mut extracts = Vec::new();
    let mut finds = Vec::new();
    for (i, item) in list_at(spec, "dataFrom", "spec")?.iter().enumerate() {
        let at = format!("spec.dataFrom[{i}]");
        only(item, &at, &["extract", "find"])?;
        if let Some(f) = item.get("find") {
            if finds.len() >= MAX_FINDS {
                return Err(invalid(
                    at,
                    format!("at most {MAX_FINDS} find entries are allowed"),
                ));
            }
            finds.push(find(f, &format!("{at}.find"), store.service)?);
            continue;
        }
        let r = item.get("extract").ok_or(ExternalError::Missing {
            path: format!("{at}.extract"),
        })?;
        let (key, property, version, decoding) = remote_ref(r, &format!("{at}.extract"))?;
        extracts.push(Extract {
            object: object_of(&key, version)?,
            property,
            decoding,
        });
    }
    if data.is_empty() && extracts.is_empty() && finds.is_empty() && target.template.is_empty() {
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
                Refresh::Once => None,
            },
            role_chain: store.chain.clone(),
            warnings: Vec::new(),
            limits: VolumeLimits {
                max_files: usize::MAX,
                max_bytes: MAX_SECRET_BYTES,
            },
        },
        data,
        extracts,
        finds,
        target,
        refresh,
    })
}

fn find(f: &Value, at: &str, service: ObjectType) -> Result<Find, ExternalError> {
    only(
        f,
        at,
        &[
            "name",
            "path",
            "tags",
            "conversionStrategy",
            "decodingStrategy",
        ],
    )?;
    only_value(
        f,
        "conversionStrategy",
        at,
        "Default",
        "only Default is supported",
    )?;
    let name = match f.get("name") {
        None | Some(Value::Null) => None,
        Some(n) => {
            only(n, &format!("{at}.name"), &["regexp"])?;
            let re =
                string_at(n, "regexp", &format!("{at}.name"))?.ok_or(ExternalError::Missing {
                    path: format!("{at}.name.regexp"),
                })?;
            Some(compile_regex(&re).map_err(|why| invalid(format!("{at}.name.regexp"), why))?)
        }
    };
    let tags = string_map(f.get("tags"), &format!("{at}.tags"))?;
    if !tags.is_empty() && service == ObjectType::SsmParameter {
        return Err(unsupported(
            format!("{at}.tags"),
            "tags are matched for Secrets Manager only",
        ));
    }
    let path = string_at(f, "path", at)?.filter(|p| !p.is_empty());
    if name.is_none() && path.is_none() && tags.is_empty() {
        return Err(ExternalError::Missing {
            path: format!("{at}.name, path or tags"),
        });
    }
    let decoding = decoding(f, at)?;
    Ok(Find {
        name,
        path,
        tags,
        decoding,
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

type RemoteRef = (String, Option<String>, Option<String>, Decoding);

fn remote_ref(r: &Value, at: &str) -> Result<RemoteRef, ExternalError> {
    only(
        r,
        at,
        &[
            "key",
            "property",
            "version",
            "decodingStrategy",
            "conversionStrategy",
            "metadataPolicy",
        ],
    )?;
    let key = string_at(r, "key", at)?.ok_or(ExternalError::Missing {
        path: format!("{at}.key"),
    })?;
    only_value(
        r,
        "conversionStrategy",
        at,
        "Default",
        "only Default is supported",
    )?;
    only_value(
        r,
        "metadataPolicy",
        at,
        "None",
        "only None is supported (tags are not fetched)",
    )?;
    let decoding = decoding(r, at)?;
    Ok((
        key,
        string_at(r, "property", at)?.filter(|p| !p.is_empty()),
        string_at(r, "version", at)?.filter(|v| !v.is_empty()),
        decoding,
    ))
}

fn refresh(spec: &Value) -> Result<Refresh, ExternalError> {
    let policy = string_at(spec, "refreshPolicy", "spec")?;
    match policy.as_deref() {
        Some("CreatedOnce") => return Ok(Refresh::Once),
        None | Some("Periodic") => {}
        Some("OnChange") => return Ok(Refresh::Once),
        Some(other) => {
            return Err(invalid(
                "spec.refreshPolicy",
                format!("{other:?} is not Periodic, OnChange or CreatedOnce"),
            ));
        }
    }
    let text = match spec.get("refreshInterval") {
        None | Some(Value::Null) => "1h".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => return Err(invalid("spec.refreshInterval", "must be a duration")),
    };
    if text == "0" || text == "0s" {
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
fn go_duration(text: &str) -> Option<Duration> {
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

fn target(es_name: &str, t: Option<&Value>) -> Result<Target, ExternalError> {
    let at = "spec.target";
    let mut target = Target {
        name: es_name.to_owned(),
        creation: CreationPolicy::Owner,
        immutable: false,
        type_: None,
        labels: BTreeMap::new(),
        annotations: BTreeMap::new(),
        template: BTreeMap::new(),
    };
    let Some(t) = t.filter(|t| !t.is_null()) else {
        return Ok(target);
    };
    only(
        t,
        at,
        &[
            "name",
            "creationPolicy",
            "deletionPolicy",
            "immutable",
            "template",
        ],
    )?;
    if let Some(name) = name_at(t, "name", at, NameKind::Subdomain)? {
        target.name = name;
    }
    target.creation = match string_at(t, "creationPolicy", at)?.as_deref() {
        None | Some("Owner") => CreationPolicy::Owner,
        Some("Orphan") => CreationPolicy::Orphan,
        Some("Merge") => CreationPolicy::Merge,
        Some("None") => CreationPolicy::None,
        Some(other) => {
            return Err(invalid(
                format!("{at}.creationPolicy"),
                format!("{other:?} is not Owner, Orphan, Merge or None"),
            ));
        }
    };
    match string_at(t, "deletionPolicy", at)?.as_deref() {
        // What happens to the Secret when the remote value is gone: we keep
        // the last good data, which is Retain.
        None | Some("Retain") => {}
        Some(other) => {
            return Err(unsupported(
                format!("{at}.deletionPolicy"),
                if other == "Delete" || other == "Merge" {
                    "only Retain is supported: the last good data is kept"
                } else {
                    "not Retain, Delete or Merge"
                },
            ));
        }
    }
    target.immutable = match t.get("immutable") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(invalid(format!("{at}.immutable"), "must be true or false")),
    };
    if let Some(template) = t.get("template") {
        let at = "spec.target.template";
        only(
            template,
            at,
            &["type", "metadata", "data", "engineVersion", "mergePolicy"],
        )?;
        only_value(
            template,
            "engineVersion",
            at,
            "v2",
            "only v2 templates are supported",
        )?;
        only_value(
            template,
            "mergePolicy",
            at,
            "Replace",
            "only Replace is supported",
        )?;
        target.type_ = string_at(template, "type", at)?;
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
        if let Some(meta) = template.get("metadata") {
            let here = format!("{at}.metadata");
            only(meta, &here, &["labels", "annotations"])?;
            target.labels = string_map(meta.get("labels"), &format!("{here}.labels"))?;
            target.annotations =
                string_map(meta.get("annotations"), &format!("{here}.annotations"))?;
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
        }
        target.template = string_map(template.get("data"), &format!("{at}.data"))?;
        for (key, text) in &target.template {
            check_template(key, text)?;
        }
    }
    Ok(target)
}

/// The template forms supported: literal text and `{{ .key }}` (a fetched
/// key's value), optionally piped through `toString`/`b64dec`/`b64enc`.
fn check_template(key: &str, text: &str) -> Result<(), ExternalError> {
    expand_template(
        key,
        text,
        &|_| Some(Vec::new()),
        &mut MAX_SECRET_BYTES.clone(),
    )
    .map(|_| ())
}

/// Expands one template, within `left` bytes (shared by every key of the
/// Secret): a template that repeats a large value, or pipes it through
/// `b64enc` again and again, stops at the Secret's size instead of growing.
fn expand_template(
    key: &str,
    text: &str,
    lookup: &dyn Fn(&str) -> Option<Vec<u8>>,
    left: &mut u64,
) -> Result<Vec<u8>, ExternalError> {
    fn take(left: &mut u64, n: usize) -> Result<(), ExternalError> {
        *left = left.checked_sub(n as u64).ok_or(ExternalError::TooLarge)?;
        Ok(())
    }
    let err = |why: String| ExternalError::Template {
        key: key.to_owned(),
        why,
    };
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        take(left, start)?;
        out.extend_from_slice(&rest.as_bytes()[..start]);
        let end = rest[start..]
            .find("}}")
            .ok_or_else(|| err("an unclosed {{".into()))?
            + start;
        let inner = rest[start + 2..end].trim().trim_matches('-').trim();
        let mut parts = inner.split('|').map(str::trim);
        let name = parts
            .next()
            .and_then(|p| p.strip_prefix('.'))
            .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_alphanumeric() || "_-".contains(c)))
            .ok_or_else(|| {
                err(format!(
                    "{{{{ {inner} }}}}: only {{{{ .key }}}} (optionally | toString, b64enc or b64dec) is supported"
                ))
            })?;
        let mut value = lookup(name).ok_or_else(|| err(format!("no fetched key {name:?}")))?;
        for filter in parts {
            value = match filter {
                "toString" => value,
                "b64enc" => {
                    // Checked before it is made: base64 is 4/3 the size.
                    if (value.len() as u64).div_ceil(3) * 4 > *left {
                        return Err(ExternalError::TooLarge);
                    }
                    base64::engine::general_purpose::STANDARD
                        .encode(&value)
                        .into_bytes()
                }
                "b64dec" => base64::engine::general_purpose::STANDARD
                    .decode(&value)
                    .map_err(|_| err(format!("{name} is not base64")))?,
                other => return Err(err(format!("the function {other:?} is not supported"))),
            };
        }
        take(left, value.len())?;
        out.extend_from_slice(&value);
        rest = &rest[end + 2..];
    }
    take(left, rest.len())?;
    out.extend_from_slice(rest.as_bytes());
    Ok(out)
}

/// The Secret's data from the fetched values (in plan order) and the
/// objects `dataFrom.find` found (find index, name, value), within
/// [`MAX_SECRET_BYTES`].
pub fn render_secret(
    plan: &SyncPlan,
    values: &[SecretBytes],
    found: &[(usize, String, SecretBytes)],
) -> Result<BTreeMap<String, SecretBytes>, ExternalError> {
    let mut data: BTreeMap<String, SecretBytes> = BTreeMap::new();
    for (index, name, value) in found {
        let decoding = plan
            .finds
            .get(*index)
            .map_or(Decoding::None, |f| f.decoding);
        data.insert(found_key(name), decode(name, value.clone(), decoding)?);
    }
    let key_name = |i: usize| plan.objects.objects[i].name().to_owned();
    let value_of = |i: usize| values.get(i).cloned().unwrap_or_default();
    for extract in &plan.extracts {
        let value = value_of(extract.object);
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
        let Value::Object(map) = node else {
            return Err(invalid(
                format!("dataFrom extract of {key}"),
                "the value is not a JSON object",
            ));
        };
        for (k, v) in map {
            data.insert(k.clone(), decode(&key, text_of(v), extract.decoding)?);
        }
    }
    for item in &plan.data {
        let value = value_of(item.object);
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
        data.insert(item.secret_key.clone(), decode(&key, bytes, item.decoding)?);
    }
    if !plan.target.template.is_empty() {
        let fetched = data;
        let lookup = |name: &str| fetched.get(name).map(|v| v.expose().to_vec());
        let mut out = BTreeMap::new();
        let mut left = MAX_SECRET_BYTES;
        for (key, text) in &plan.target.template {
            out.insert(
                key.clone(),
                SecretBytes::new(expand_template(key, text, &lookup, &mut left)?),
            );
        }
        data = out;
    }
    let total: u64 = data.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum();
    if total > MAX_SECRET_BYTES {
        return Err(ExternalError::TooLarge);
    }
    Ok(data)
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

/// Refuses `key` of `v` unless it is absent or `allowed` (a field whose
/// other values this controller does not implement).
fn only_value(
    v: &Value,
    key: &str,
    at: &str,
    allowed: &str,
    why: &'static str,
) -> Result<(), ExternalError> {
    match string_at(v, key, at)?.as_deref() {
        None => Ok(()),
        Some(value) if value == allowed => Ok(()),
        Some(_) => Err(unsupported(format!("{at}.{key}"), why)),
    }
}

/// `decodingStrategy` of a remote ref or a find.
fn decoding(v: &Value, at: &str) -> Result<Decoding, ExternalError> {
    Ok(match string_at(v, "decodingStrategy", at)?.as_deref() {
        None | Some("None") => Decoding::None,
        Some("Base64") => Decoding::Base64,
        Some("Base64URL") => Decoding::Base64Url,
        Some("Auto") => Decoding::Auto,
        Some(other) => {
            return Err(invalid(
                format!("{at}.decodingStrategy"),
                format!("{other:?} is not None, Base64, Base64URL or Auto"),
            ));
        }
    })
}

/// Refuses any key of `v` (an object at `at`) not in `known`.
fn only(v: &Value, at: &str, known: &[&str]) -> Result<(), ExternalError> {
    match v {
        Value::Object(map) => match map.keys().find(|k| !known.contains(&k.as_str())) {
            Some(k) => Err(unsupported(
                format!("{at}.{k}"),
                "this field is not one this controller reads",
            )),
            None => Ok(()),
        },
        Value::Null => Ok(()),
        _ => Err(invalid(at, "must be a mapping")),
    }
}

/// A Kubernetes object name at `key` of `v`: it goes into an API request
/// path, so it must be the RFC 1123 name it claims to be.
fn name_at(
    v: &Value,
    key: &str,
    at: &str,
    kind: NameKind,
) -> Result<Option<String>, ExternalError> {
    let name = string_at(v, key, at)?;
    if let Some(n) = &name {
        names::check(n, kind).map_err(|e| invalid(format!("{at}.{key}"), e.to_string()))?;
    }
    Ok(name)
}

/// The list at `key` of `v` (empty when absent).
fn list_at<'v>(v: &'v Value, key: &str, at: &str) -> Result<&'v [Value], ExternalError> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(list)) => Ok(list),
        Some(_) => Err(invalid(format!("{at}.{key}"), "must be a list")),
    }
}

fn string_at(v: &Value, key: &str, at: &str) -> Result<Option<String>, ExternalError> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(invalid(format!("{at}.{key}"), "must be a string")),
    }
}

fn object_at<'v>(
    v: &'v Value,
    key: &str,
    at: &str,
) -> Result<Option<&'v Map<String, Value>>, ExternalError> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(_) => Err(invalid(format!("{at}.{key}"), "must be a mapping")),
    }
}

fn string_map(v: Option<&Value>, at: &str) -> Result<BTreeMap<String, String>, ExternalError> {
    match v {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                _ => Err(invalid(format!("{at}.{k}"), "must be a string")),
            })
            .collect(),
        Some(_) => Err(invalid(at, "must be a mapping")),
    }
}

#[cfg(test)]
#[path = "external_tests.rs"]
mod tests;
