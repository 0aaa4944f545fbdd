//! SecretProviderClass parameters -> [`MountPlan`]: every rule of the AWS
//! provider (same parameter names, defaults and error texts), plus stricter
//! checks on every file name. Pure: no I/O.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use super::paths::{FilePath, PathRule, PathTranslation};
use super::templates::{TemplateFile, parse_manifest, parse_object_files, parse_templates};

/// How many times a jmesPath expression may copy its input. Only
/// multi-select lists and hashes copy: `[@,@][]` doubles an array, so 30 of
/// them in a line (210 bytes of class) would ask for 2^30 elements and take
/// the node's driver down (found by the render fuzz target). Extracting
/// fields, filters, slices, pipes and functions copy nothing.
pub const MAX_JMES_COPIES: u64 = 16;

/// An upper bound of how many times `ast` can copy its input: the product of
/// the widths of every multi-select list and hash in it (each one can repeat
/// everything it is given once per element). Everything else yields at most
/// what it was given.
fn jmes_copies(ast: &jmespath::ast::Ast) -> u64 {
    use jmespath::ast::Ast;
    let (width, children): (usize, Vec<&Ast>) = match ast {
        Ast::MultiList { elements, .. } => (elements.len(), elements.iter().collect()),
        Ast::MultiHash { elements, .. } => (
            elements.len(),
            elements.iter().map(|kv| &kv.value).collect(),
        ),
        Ast::Comparison { lhs, rhs, .. }
        | Ast::And { lhs, rhs, .. }
        | Ast::Or { lhs, rhs, .. }
        | Ast::Projection { lhs, rhs, .. }
        | Ast::Subexpr { lhs, rhs, .. } => (1, vec![lhs, rhs]),
        Ast::Condition {
            predicate, then, ..
        } => (1, vec![predicate, then]),
        Ast::Expref { ast: node, .. }
        | Ast::Flatten { node, .. }
        | Ast::Not { node, .. }
        | Ast::ObjectValues { node, .. } => (1, vec![node]),
        Ast::Function { args, .. } => (1, args.iter().collect()),
        Ast::Identity { .. }
        | Ast::Field { .. }
        | Ast::Index { .. }
        | Ast::Literal { .. }
        | Ast::Slice { .. } => (1, vec![]),
    };
    children
        .into_iter()
        .fold(width.max(1) as u64, |n, c| n.saturating_mul(jmes_copies(c)))
}

/// What one volume may hold. Every class is planned and rendered within
/// these, so no class can make the driver hold more in memory than its
/// volume may hold (a 60 KB value named 4,000 times would otherwise be
/// 240 MB before the tmpfs refused it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VolumeLimits {
    /// Files per volume (whole values and jmesPath files together).
    pub max_files: usize,
    /// Bytes of content per volume: the size of its tmpfs.
    pub max_bytes: u64,
}

impl Default for VolumeLimits {
    fn default() -> Self {
        VolumeLimits {
            max_files: 2048,
            max_bytes: 16 * 1024 * 1024,
        }
    }
}

/// File mode when neither the object nor the jmesPath entry sets one; the
/// upstream driver hands the AWS provider 0644.
pub const DEFAULT_FILE_MODE: u32 = 0o644;

/// Which AWS service holds an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectType {
    SecretsManager,
    SsmParameter,
}

impl ObjectType {
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectType::SecretsManager => "secretsmanager",
            ObjectType::SsmParameter => "ssmparameter",
        }
    }
}

/// How the pod's service account becomes AWS credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// IAM Roles for Service Accounts: the ServiceAccount's role annotation and
    /// `AssumeRoleWithWebIdentity`.
    Irsa,
    /// EKS Pod Identity through the node agent.
    PodIdentity,
}

/// Which address of the Pod Identity agent to use (`preferredAddressType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressPreference {
    Auto,
    Ipv4,
    Ipv6,
}

/// Further roles assumed with `sts:AssumeRole` after the pod's identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RoleChain {
    /// Role ARNs, assumed one after the other.
    pub roles: Vec<String>,
    /// Sent with every AssumeRole of the chain (`assumeRoleExternalId`).
    pub external_id: Option<String>,
    /// Session duration (`assumeRoleDurationSeconds`, 900..=43200).
    pub duration_seconds: Option<u32>,
    /// Session tags (`assumeRoleSessionTags: "team=shop,env=prod"`), sorted.
    pub session_tags: Vec<(String, String)>,
    /// Tag keys passed on to the next sessions (External Secrets'
    /// `transitiveTagKeys`).
    pub transitive_tag_keys: Vec<String>,
    /// The first `plain` roles are assumed without the external ID, tags or
    /// duration (External Secrets' `additionalRoles`); 0 for a class.
    pub plain: usize,
}

/// One object as it is asked for in one region.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectRef {
    pub name: String,
    pub version_id: Option<String>,
    pub version_label: Option<String>,
}

/// A file to write: where and with which mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSpec {
    pub path: FilePath,
    pub mode: u32,
}

/// A file cut out of a JSON secret with a JMESPath expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JmesFile {
    pub expression: String,
    pub file: FileSpec,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedObject {
    pub object_type: ObjectType,
    /// What to ask the primary region for.
    pub primary: ObjectRef,
    /// What to ask the failover region for (the `failoverObject`, or the same
    /// object), present only when the class names a failover region.
    pub failover: Option<ObjectRef>,
    /// The file holding the whole value.
    pub file: FileSpec,
    pub jmes: Vec<JmesFile>,
}

impl PlannedObject {
    /// The name users gave this object (`objectName`), for messages.
    pub fn name(&self) -> &str {
        &self.primary.name
    }
}

/// Everything a mount needs to know, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountPlan {
    pub region: String,
    pub failover_region: Option<String>,
    pub auth: AuthMode,
    pub address_preference: AddressPreference,
    pub objects: Vec<PlannedObject>,
    /// How often a mounted volume is checked for changes (`refreshInterval`,
    /// our addition); None means the driver's default.
    pub refresh_interval: Option<std::time::Duration>,
    /// Roles to assume after the pod's own, in order (`assumeRoleArn`, our
    /// addition): cross-account secrets without a second provider.
    pub role_chain: Option<RoleChain>,
    /// Things that are accepted (the AWS provider accepts them) but are
    /// probably mistakes, such as an unknown key in an object.
    pub warnings: Vec<String>,
    /// What the volume may hold; rendering stops at `max_bytes`.
    pub limits: VolumeLimits,
    /// Files rendered from templates over the fetched values (`templates`,
    /// our addition).
    pub templates: Vec<TemplateFile>,
    /// Whether each object's own files (whole value, jmesPath) are written
    /// (`objectFiles`, our addition; true unless the class says false).
    pub object_files: bool,
    /// Where the rotation manifest goes (`rotationManifest`, our addition).
    pub manifest: Option<FileSpec>,
}

impl MountPlan {
    /// Every file of the objects, with the object it comes from (written
    /// unless `object_files` is false; always the names templates see).
    pub fn files(&self) -> impl Iterator<Item = (&FileSpec, &PlannedObject)> {
        self.objects.iter().flat_map(|o| {
            std::iter::once((&o.file, o)).chain(o.jmes.iter().map(move |j| (&j.file, o)))
        })
    }

    /// Every file the volume holds, with where it comes from: an object's
    /// name, `templates[i]` or `rotationManifest`.
    pub fn written(&self) -> Vec<(&FileSpec, String)> {
        let mut out: Vec<(&FileSpec, String)> = Vec::new();
        if self.object_files {
            out.extend(self.files().map(|(f, o)| (f, o.name().to_owned())));
        }
        out.extend(
            self.templates
                .iter()
                .enumerate()
                .map(|(i, t)| (&t.file, format!("templates[{i}]"))),
        );
        out.extend(
            self.manifest
                .iter()
                .map(|m| (m, "rotationManifest".to_owned())),
        );
        out
    }
}

/// Why a class was refused. Texts follow the AWS provider's where it has one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("provider is {0:?}, but this driver serves only provider \"aws\"")]
    Provider(String),
    #[error(
        "Region not found: the SecretProviderClass names no region and the driver has none configured"
    )]
    RegionNotFound,
    #[error("{0}: failover region cannot be the same as the primary region")]
    FailoverSameAsPrimary(String),
    #[error("pathTranslation must be either 'False' or a single character string")]
    PathTranslation,
    #[error("failed to parse usePodIdentity value, error: invalid boolean {0:?}")]
    UsePodIdentity(String),
    #[error("refreshInterval must be a positive duration such as 30s, 2m or 1h, not {0:?}")]
    RefreshInterval(String),
    #[error("assumeRoleArn: {0:?} is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)")]
    AssumeRoleArn(String),
    #[error("{0} is set but assumeRoleArn is not")]
    AssumeRoleWithoutArn(&'static str),
    #[error("assumeRoleDurationSeconds must be a whole number from 900 to 43200, not {0:?}")]
    AssumeRoleDuration(String),
    #[error("assumeRoleExternalId must be 2 to 1224 characters of letters, digits and +=,.@:/-_")]
    AssumeRoleExternalId,
    #[error(
        "assumeRoleSessionTags must be key=value pairs separated by commas (at most 50; keys up to 128 and values up to 256 characters): {0:?}"
    )]
    AssumeRoleSessionTags(String),
    #[error("Failed to load SecretProviderClass: {0}")]
    Load(String),
    #[error("Failed to load SecretProviderClass: parameters.templates{0}")]
    Templates(String),
    /// A template that does not parse; the engine's text names it
    /// (`templates[i] (path)`), its line and column.
    #[error("Failed to load SecretProviderClass: parameters.{0}")]
    Template(String),
    #[error("objectFiles must be true or false, not {0:?}")]
    ObjectFiles(String),
    /// A YAML syntax error inside `objects`; line and column count from the
    /// start of the `objects` text (commands that have the file map them).
    #[error(
        "Failed to load SecretProviderClass: parameters.objects line {line} column {column}: {message}"
    )]
    Yaml {
        line: u64,
        column: u64,
        message: String,
    },
    #[error("Empty descriptor entry in SecretProviderClass")]
    EmptyDescriptor,
    #[error("Object name must be specified")]
    ObjectNameMissing,
    #[error("Invalid ARN format in object name: {0}")]
    InvalidArn(String),
    #[error("ARN region must match region {region}: {name}")]
    ArnRegion { region: String, name: String },
    #[error("Must use objectType when a full ARN is not specified: {0}")]
    ObjectTypeMissing(String),
    #[error("Invalid service in ARN: {0}")]
    ArnService(String),
    #[error("Invalid objectType: {0}")]
    InvalidObjectType(String),
    #[error("objectType does not match ARN: {0}")]
    ObjectTypeMismatch(String),
    #[error("ssm parameters can not specify both objectVersion and objectVersionLabel: {0}")]
    SsmVersionAndLabel(String),
    #[error("Invalid File Permission: {0}")]
    FilePermission(String),
    #[error(
        "Invalid File Permission: {0}: setuid, setgid and sticky bits are not allowed (use 0000 to 0777)"
    )]
    FilePermissionSpecialBits(String),
    #[error(
        "the class asks for {files} files; a volume holds at most {limit} (the driver's --max-files-per-volume)"
    )]
    TooManyFiles { files: usize, limit: usize },
    #[error("Path must be specified for JMES object")]
    JmesPathMissing,
    #[error("Object alias must be specified for JMES object")]
    JmesAliasMissing,
    #[error("Invalid JMES Path: {0}.")]
    JmesInvalid(String),
    #[error(
        "JMES Path - {path} can copy its input {copies} times (multi-select lists and hashes, nested); at most {MAX_JMES_COPIES} is allowed."
    )]
    JmesTooWide { path: String, copies: u64 },
    #[error("object alias must be specified for objects with failover entries: {0}")]
    FailoverAliasMissing(String),
    #[error("failover object allowed only when failover region is defined: {0}")]
    FailoverWithoutRegion(String),
    #[error("object versions must match between primary and failover regions: {0}")]
    FailoverVersionMismatch(String),
    /// Two objects of one name with the same alias and label: ASCP's words,
    /// which say which of the two were missing or equal.
    #[error(
        "found descriptor with duplicate object name {name}, {}",
        duplicate_detail(alias, label)
    )]
    DuplicateObject {
        name: String,
        alias: String,
        label: String,
    },
    #[error("{}: {source}", object_label(*index, name))]
    Object {
        index: usize,
        name: String,
        source: Box<PlanError>,
    },
    #[error("found duplicate object alias {0}")]
    DuplicateAlias(String),
    #[error(
        "Name already in use for objectAlias: found duplicate object alias {alias} in JMES path entry {path}"
    )]
    DuplicateJmesAlias { alias: String, path: String },
    #[error("invalid file name {file:?} for object {object}: {rule}")]
    BadFileName {
        file: String,
        object: String,
        rule: PathRule,
    },
    #[error(
        "file name collision: {file:?} (object {first}) and {other:?} (object {second}) cannot both be written"
    )]
    FileCollision {
        file: String,
        first: String,
        other: String,
        second: String,
    },
}

fn object_label(index: usize, name: &str) -> String {
    if name.is_empty() {
        format!("objects[{index}]")
    } else {
        format!("objects[{index}] ({name})")
    }
}

impl PlanError {
    /// What went wrong, without the object it is about.
    pub fn cause(&self) -> &PlanError {
        match self {
            PlanError::Object { source, .. } => source.cause(),
            other => other,
        }
    }

    /// The same error, saying which object it is about when its own text
    /// does not (the AWS provider's texts for these name no object).
    fn in_object(self, index: usize, name: &str) -> PlanError {
        match self {
            PlanError::EmptyDescriptor
            | PlanError::ObjectNameMissing
            | PlanError::FilePermission(_)
            | PlanError::FilePermissionSpecialBits(_)
            | PlanError::JmesPathMissing
            | PlanError::JmesAliasMissing
            | PlanError::JmesInvalid(_)
            | PlanError::JmesTooWide { .. } => PlanError::Object {
                index,
                name: name.to_owned(),
                source: Box::new(self),
            },
            other => other,
        }
    }
}

/// The parameters a class may hold (the AWS provider's and our additions).
const KNOWN_PARAMETERS: [&str; 14] = [
    "objects",
    "region",
    "failoverRegion",
    "pathTranslation",
    "usePodIdentity",
    "preferredAddressType",
    "refreshInterval",
    "assumeRoleArn",
    "assumeRoleExternalId",
    "assumeRoleDurationSeconds",
    "assumeRoleSessionTags",
    "templates",
    "objectFiles",
    "rotationManifest",
];
const OBJECT_KEYS: [&str; 8] = [
    "objectName",
    "objectAlias",
    "objectVersion",
    "objectVersionLabel",
    "objectType",
    "filePermission",
    "jmesPath",
    "failoverObject",
];
const JMES_KEYS: [&str; 3] = ["path", "objectAlias", "filePermission"];
const FAILOVER_KEYS: [&str; 3] = ["objectName", "objectVersion", "objectVersionLabel"];

/// The warning for a key nobody reads, with the known key it most likely
/// meant (`objectTyp` -> `objectType`).
fn unknown_key(at: &str, key: &str, known: &[&str], what: &str) -> String {
    let lower = key.to_ascii_lowercase();
    let closest = known
        .iter()
        .map(|k| (strsim::jaro_winkler(&lower, &k.to_ascii_lowercase()), *k))
        .filter(|(score, _)| *score >= 0.85)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match closest {
        Some((_, k)) => format!("{at}: unknown {what} `{key}`, ignored; did you mean `{k}`?"),
        None => format!(
            "{at}: unknown {what} `{key}`, ignored (known: {})",
            known.join(", ")
        ),
    }
}

/// Keys of `parameters` that nothing reads: almost always typos. The
/// upstream driver adds the pod's `csi.storage.k8s.io/*` attributes itself.
fn parameter_warnings(parameters: &BTreeMap<String, String>) -> Vec<String> {
    parameters
        .keys()
        .filter(|k| !KNOWN_PARAMETERS.contains(&k.as_str()))
        .filter(|k| !k.starts_with("csi.storage.k8s.io/"))
        .map(|k| unknown_key("parameters", k, &KNOWN_PARAMETERS, "parameter"))
        .collect()
}

/// Every warning of a class (unknown parameters and keys, with the name
/// each most likely meant), whether or not the class plans: a typo is
/// often the cause of the error (`objectTyp` -> "Must use objectType").
pub fn lint(parameters: &BTreeMap<String, String>) -> Vec<String> {
    let mut warnings = parameter_warnings(parameters);
    let objects = parameters.get("objects").map(String::as_str).unwrap_or("");
    let _ = parse_objects(objects, &mut warnings);
    warnings
}

/// Builds the plan for a class's `parameters` within the default
/// [`VolumeLimits`]. `default_region` is the driver's own region, used when
/// the class names none.
pub fn plan(
    parameters: &BTreeMap<String, String>,
    default_region: Option<&str>,
) -> Result<MountPlan, PlanError> {
    plan_within(parameters, default_region, VolumeLimits::default())
}

/// [`plan`] for a volume with these limits: a class that asks for more
/// files is refused before any of them is validated or fetched.
pub fn plan_within(
    parameters: &BTreeMap<String, String>,
    default_region: Option<&str>,
    limits: VolumeLimits,
) -> Result<MountPlan, PlanError> {
    let param = |k: &str| parameters.get(k).map(String::as_str).unwrap_or("");

    // The objects first: a broken YAML is the first thing to fix, even in a
    // class that also lacks a region.
    let mut warnings = parameter_warnings(parameters);
    let descriptors = parse_objects(param("objects"), &mut warnings)?;
    let object_files = parse_object_files(param("objectFiles"))?;
    let manifest = parse_manifest(param("rotationManifest"))?;
    // The objects' files first (templates are counted once parsed, below:
    // their YAML is bounded by its node budget).
    let files: usize = descriptors
        .iter()
        .map(|d| 1 + d.jmes_path.len())
        .sum::<usize>()
        .min(if object_files { usize::MAX } else { 0 })
        + usize::from(manifest.is_some());
    if files > limits.max_files {
        return Err(PlanError::TooManyFiles {
            files,
            limit: limits.max_files,
        });
    }

    let region = match param("region") {
        "" => default_region
            .filter(|r| !r.is_empty())
            .ok_or(PlanError::RegionNotFound)?
            .to_owned(),
        r => r.to_owned(),
    };
    let failover_region = match param("failoverRegion") {
        "" => None,
        r if r == region => return Err(PlanError::FailoverSameAsPrimary(r.to_owned())),
        r => Some(r.to_owned()),
    };
    let translation = match param("pathTranslation") {
        "" => PathTranslation::Replace('_'),
        t if t.eq_ignore_ascii_case("false") => PathTranslation::Off,
        // Go's len() counts bytes: only a one-byte character is accepted.
        t if t.len() == 1 => PathTranslation::Replace(t.chars().next().unwrap_or('_')),
        _ => return Err(PlanError::PathTranslation),
    };
    let auth = match param("usePodIdentity") {
        "" => AuthMode::Irsa,
        v => match parse_go_bool(v) {
            Some(true) => AuthMode::PodIdentity,
            Some(false) => AuthMode::Irsa,
            None => return Err(PlanError::UsePodIdentity(v.to_owned())),
        },
    };
    let address_preference = match param("preferredAddressType").to_ascii_lowercase().as_str() {
        "ipv4" => AddressPreference::Ipv4,
        "ipv6" => AddressPreference::Ipv6,
        "" | "auto" => AddressPreference::Auto,
        other => {
            // The AWS provider silently treats any other value as auto; keep
            // that meaning, but say so.
            warnings.push(format!(
                "preferredAddressType {other:?} is not ipv4, ipv6 or auto; using auto"
            ));
            AddressPreference::Auto
        }
    };

    let refresh_interval = match param("refreshInterval") {
        "" => None,
        v => match humantime::parse_duration(v) {
            Ok(d) if !d.is_zero() => {
                // kubelet republishes every 60-90 s, and below a second the
                // volume is fetched at every republish: usually a slip
                // (`1ms` for `1m`), so say so.
                if d < std::time::Duration::from_secs(1) {
                    warnings.push(format!(
                        "refreshInterval {v:?} is under a second: the volume is fetched from AWS at every republish (did you mean {}?)",
                        v.trim_end_matches("ms").to_owned() + "m"
                    ));
                }
                Some(d)
            }
            _ => return Err(PlanError::RefreshInterval(v.to_owned())),
        },
    };

    let role_chain = role_chain(&param)?;

    let regions = Regions {
        primary: &region,
        failover: failover_region.as_deref(),
    };
    let mut objects = Vec::with_capacity(descriptors.len());
    for (index, d) in descriptors.iter().enumerate() {
        objects.push(
            validate(d, regions, translation).map_err(|e| e.in_object(index, &d.object_name))?,
        );
    }
    check_duplicates(&descriptors)?;
    // After the duplicates, as ASCP finds a bad path only when it renders.
    for (index, d) in descriptors.iter().enumerate() {
        check_jmes_expressions(d).map_err(|e| e.in_object(index, &d.object_name))?;
    }
    let templates = parse_templates(param("templates"))?;
    // Counted as parsed: a line count of the text would take a template's
    // own `- ` lines for entries, and miss a flow-style list.
    if files + templates.len() > limits.max_files {
        return Err(PlanError::TooManyFiles {
            files: files + templates.len(),
            limit: limits.max_files,
        });
    }
    if !object_files && templates.is_empty() {
        warnings.push(
            "objectFiles is false and the class has no templates: the volume holds no secret"
                .to_owned(),
        );
    }
    let plan = MountPlan {
        region,
        failover_region,
        auth,
        address_preference,
        objects,
        refresh_interval,
        role_chain,
        warnings,
        limits,
        templates,
        object_files,
        manifest,
    };
    check_collisions(&plan)?;
    Ok(plan)
}

/// `assumeRoleArn` and its companions.
fn role_chain<'a>(param: &impl Fn(&str) -> &'a str) -> Result<Option<RoleChain>, PlanError> {
    let roles: Vec<String> = param("assumeRoleArn")
        .split([',', ' ', '\n', '\t'])
        .filter(|r| !r.is_empty())
        .map(str::to_owned)
        .collect();
    if roles.is_empty() {
        for companion in [
            "assumeRoleExternalId",
            "assumeRoleDurationSeconds",
            "assumeRoleSessionTags",
        ] {
            if !param(companion).is_empty() {
                return Err(PlanError::AssumeRoleWithoutArn(companion));
            }
        }
        return Ok(None);
    }
    if let Some(bad) = roles.iter().find(|r| !is_role_arn(r)) {
        return Err(PlanError::AssumeRoleArn(bad.clone()));
    }
    let external_id = match param("assumeRoleExternalId") {
        "" => None,
        id if (2..=1224).contains(&id.len())
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+=,.@:/-_".contains(c)) =>
        {
            Some(id.to_owned())
        }
        _ => return Err(PlanError::AssumeRoleExternalId),
    };
    let duration_seconds = match param("assumeRoleDurationSeconds") {
        "" => None,
        d => match d.parse::<u32>() {
            Ok(n) if (900..=43200).contains(&n) => Some(n),
            _ => return Err(PlanError::AssumeRoleDuration(d.to_owned())),
        },
    };
    let tags_param = param("assumeRoleSessionTags");
    let mut session_tags = Vec::new();
    for pair in tags_param
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let bad = || PlanError::AssumeRoleSessionTags(tags_param.to_owned());
        let (k, v) = pair.split_once('=').ok_or_else(bad)?;
        let (k, v) = (k.trim(), v.trim());
        if k.is_empty() || k.len() > 128 || v.len() > 256 {
            return Err(bad());
        }
        session_tags.push((k.to_owned(), v.to_owned()));
    }
    session_tags.sort();
    if session_tags.len() > 50 || session_tags.windows(2).any(|w| w[0].0 == w[1].0) {
        return Err(PlanError::AssumeRoleSessionTags(tags_param.to_owned()));
    }
    Ok(Some(RoleChain {
        roles,
        external_id,
        duration_seconds,
        session_tags,
        transitive_tag_keys: Vec::new(),
        plain: 0,
    }))
}

/// `arn:<partition>:iam::<account>:role/<name>`.
pub fn is_role_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    parts.len() == 6
        && parts[0] == "arn"
        && !parts[1].is_empty()
        && parts[2] == "iam"
        && parts[3].is_empty()
        && !parts[4].is_empty()
        && parts[5]
            .strip_prefix("role/")
            .is_some_and(|n| !n.is_empty())
}

/// `strconv.ParseBool`, which the AWS provider uses for `usePodIdentity`.
fn parse_go_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

#[derive(Clone, Copy)]
struct Regions<'a> {
    primary: &'a str,
    failover: Option<&'a str>,
}

/// One entry of `objects` as written, keys already matched.
#[derive(Debug, Default)]
struct Descriptor {
    object_name: String,
    object_alias: String,
    object_version: String,
    object_version_label: String,
    object_type: String,
    file_permission: String,
    jmes_path: Vec<JmesEntry>,
    failover: Option<FailoverEntry>,
}

#[derive(Debug, Default)]
struct JmesEntry {
    path: String,
    object_alias: String,
    file_permission: String,
}

#[derive(Debug, Default)]
struct FailoverEntry {
    object_name: String,
    object_version: String,
    object_version_label: String,
}

/// Parses the `objects` YAML the way the AWS provider does (YAML 1.1 -> JSON
/// -> Go struct): keys match case-insensitively, unknown keys are ignored (we
/// warn), and an unquoted number or boolean becomes the string Go's YAML
/// reader makes of it (`objectVersion: 1` is "1", `objectAlias: yes` is
/// "true"); we warn, since the text written is not the text used.
fn parse_objects(yaml: &str, warnings: &mut Vec<String>) -> Result<Vec<Descriptor>, PlanError> {
    // The AWS provider mounts an empty volume; so do we (a class that
    // worked stays working), but say so, since it is usually a mistake.
    let empty = |warnings: &mut Vec<String>| {
        warnings
            .push("the objects parameter is missing or empty: the volume will be empty".to_owned());
        Ok(Vec::new())
    };
    if yaml.trim().is_empty() {
        return empty(warnings);
    }
    // YAML 1.1, as the AWS provider reads it: `y`, `yes`, `on` are booleans
    // and `0600` is octal.
    let options = serde_saphyr::options! {
        strict_booleans: false,
        legacy_octal_numbers: true,
        budget: serde_saphyr::budget! {
            max_aliases: 64,
            max_depth: 32,
            max_nodes: 200_000,
        },
    };
    let loose: Value = serde_saphyr::from_str_with_options(yaml, options).map_err(yaml_error)?;
    // The YAML reader takes any case (`yEs`); Go's takes three spellings of
    // each word. A second reading with YAML 1.2 booleans has the text.
    let strict: Value = serde_saphyr::from_str_with_options(
        yaml,
        serde_saphyr::options! {
            strict_booleans: true,
            legacy_octal_numbers: true,
            budget: serde_saphyr::budget! {
                max_aliases: 64,
                max_depth: 32,
                max_nodes: 200_000,
            },
        },
    )
    .map_err(yaml_error)?;
    let items = match go_booleans(loose, strict) {
        Value::Null => return empty(warnings),
        Value::Array(items) if items.is_empty() => return empty(warnings),
        Value::Array(items) => items,
        other => {
            return Err(PlanError::Load(format!(
                "objects must be a list, found {}",
                kind_of(&other)
            )));
        }
    };
    let mut out = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        let map = match item {
            Value::Null => return Err(PlanError::EmptyDescriptor.in_object(index, "")),
            Value::Object(map) => map,
            other => {
                return Err(PlanError::Load(format!(
                    "objects[{index}] must be a mapping, found {}",
                    kind_of(&other)
                )));
            }
        };
        let mut d = Descriptor::default();
        // The object's own warnings, named once its objectName is known.
        let mut own = Vec::new();
        for (key, value) in map {
            let at = || format!("objects[{index}].{key}");
            match key.to_ascii_lowercase().as_str() {
                "objectname" => d.object_name = string_field(&value, at, &mut own)?,
                "objectalias" => d.object_alias = string_field(&value, at, &mut own)?,
                "objectversion" => d.object_version = string_field(&value, at, &mut own)?,
                "objectversionlabel" => {
                    d.object_version_label = string_field(&value, at, &mut own)?
                }
                "objecttype" => d.object_type = string_field(&value, at, &mut own)?,
                "filepermission" => d.file_permission = mode_field(&value, at, &mut own)?,
                "jmespath" => d.jmes_path = jmes_entries(value, &at(), &mut own)?,
                "failoverobject" => d.failover = failover_entry(value, &at(), &mut own)?,
                _ => own.push(unknown_key(
                    &format!("objects[{index}]"),
                    &key,
                    &OBJECT_KEYS,
                    "key",
                )),
            }
        }
        let prefix = format!("objects[{index}]");
        let named = object_label(index, &d.object_name);
        warnings.extend(own.into_iter().map(|w| w.replacen(&prefix, &named, 1)));
        out.push(d);
    }
    Ok(out)
}

fn jmes_entries(
    value: Value,
    at: &str,
    warnings: &mut Vec<String>,
) -> Result<Vec<JmesEntry>, PlanError> {
    let items = match value {
        Value::Null => return Ok(Vec::new()),
        Value::Array(items) => items,
        other => {
            return Err(PlanError::Load(format!(
                "{at} must be a list, found {}",
                kind_of(&other)
            )));
        }
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let map = match item {
            Value::Null => Default::default(),
            Value::Object(map) => map,
            other => {
                return Err(PlanError::Load(format!(
                    "{at}[{i}] must be a mapping, found {}",
                    kind_of(&other)
                )));
            }
        };
        let mut e = JmesEntry::default();
        for (key, value) in map {
            let here = || format!("{at}[{i}].{key}");
            match key.to_ascii_lowercase().as_str() {
                "path" => e.path = string_field(&value, here, warnings)?,
                "objectalias" => e.object_alias = string_field(&value, here, warnings)?,
                "filepermission" => e.file_permission = mode_field(&value, here, warnings)?,
                _ => warnings.push(unknown_key(&format!("{at}[{i}]"), &key, &JMES_KEYS, "key")),
            }
        }
        out.push(e);
    }
    Ok(out)
}

fn failover_entry(
    value: Value,
    at: &str,
    warnings: &mut Vec<String>,
) -> Result<Option<FailoverEntry>, PlanError> {
    let map = match value {
        Value::Null => return Ok(None),
        Value::Object(map) => map,
        other => {
            return Err(PlanError::Load(format!(
                "{at} must be a mapping, found {}",
                kind_of(&other)
            )));
        }
    };
    let mut f = FailoverEntry::default();
    for (key, value) in map {
        let here = || format!("{at}.{key}");
        match key.to_ascii_lowercase().as_str() {
            "objectname" => f.object_name = string_field(&value, here, warnings)?,
            "objectversion" => f.object_version = string_field(&value, here, warnings)?,
            "objectversionlabel" => f.object_version_label = string_field(&value, here, warnings)?,
            _ => warnings.push(unknown_key(at, &key, &FAILOVER_KEYS, "key")),
        }
    }
    Ok((!f.object_name.is_empty()).then_some(f))
}

fn string_field(
    value: &Value,
    at: impl Fn() -> String,
    warnings: &mut Vec<String>,
) -> Result<String, PlanError> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Null => Ok(String::new()),
        Value::Number(_) | Value::Bool(_) => {
            let text = go_yaml_string(value);
            warnings.push(format!(
                "{}: the unquoted {} is read as \"{text}\", as the AWS provider reads it; quote it to say so",
                at(),
                kind_of(value).trim_start_matches("a ")
            ));
            Ok(text)
        }
        other => Err(PlanError::Load(format!(
            "{} must be a string, found {}",
            at(),
            kind_of(other)
        ))),
    }
}

/// `loose` (every YAML 1.1 boolean spelling in any case read as a boolean)
/// with the booleans Go's YAML reader would not see put back as the text
/// `strict` (only true/false booleans) has at the same place.
fn go_booleans(loose: Value, strict: Value) -> Value {
    const GO_BOOLEANS: [&str; 22] = [
        "y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON", "n", "N", "no",
        "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF",
    ];
    match (loose, strict) {
        (Value::Bool(_), Value::String(text)) if !GO_BOOLEANS.contains(&text.as_str()) => {
            Value::String(text)
        }
        (Value::Array(a), Value::Array(b)) => Value::Array(
            a.into_iter()
                .zip(b)
                .map(|(l, s)| go_booleans(l, s))
                .collect(),
        ),
        (Value::Object(a), Value::Object(mut b)) => Value::Object(
            a.into_iter()
                .map(|(k, l)| {
                    let s = b.remove(&k).unwrap_or(Value::Null);
                    (k, go_booleans(l, s))
                })
                .collect(),
        ),
        (loose, _) => loose,
    }
}

/// A `filePermission`: `0600` unquoted is the octal number 384 to YAML 1.1,
/// so the AWS provider refuses every unquoted mode (but 1000-1777, which we
/// refuse as modes); say how to fix it rather than which number it became.
fn mode_field(
    value: &Value,
    at: impl Fn() -> String,
    warnings: &mut Vec<String>,
) -> Result<String, PlanError> {
    match value {
        Value::Number(_) | Value::Bool(_) => Err(PlanError::Load(format!(
            "{} must be a string; quote the value",
            at()
        ))),
        _ => string_field(value, at, warnings),
    }
}

/// The string Go's YAML reader (sigs.k8s.io/yaml over go-yaml v2) puts in a
/// string field for an unquoted boolean or number: `true`/`false`, integers
/// in decimal, floats as Go's `FormatFloat(f, 'g', -1, 32)`.
fn go_yaml_string(value: &Value) -> String {
    match value {
        Value::Bool(b) => b.to_string(),
        Value::Number(n) if n.is_f64() => go_float32_g(n.as_f64().unwrap_or_default()),
        other => other.to_string(),
    }
}

/// Go's `strconv.FormatFloat(f, 'g', -1, 32)`: the shortest digits that
/// read back as the same float32, in %e form when the exponent is below -4
/// or at least 6 (two exponent digits at least), else in %f form.
pub(crate) fn go_float32_g(f: f64) -> String {
    let f = f as f32;
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0" } else { "0" }.into();
    }
    // Rust's `{:e}` prints the shortest round-trip digits: "-1.2345e6".
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if !(-4..6).contains(&exp) {
        let (first, rest) = digits.split_at(1);
        let dot = if rest.is_empty() { "" } else { "." };
        let esign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{first}{dot}{rest}e{esign}{:02}", exp.abs());
    }
    let point = exp + 1; // digits before the decimal point
    let text = if point <= 0 {
        format!("0.{}{digits}", "0".repeat((-point) as usize))
    } else if point as usize >= digits.len() {
        format!("{digits}{}", "0".repeat(point as usize - digits.len()))
    } else {
        let (int, frac) = digits.split_at(point as usize);
        format!("{int}.{frac}")
    };
    format!("{sign}{text}")
}

pub(super) fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().to_owned()
}

/// A YAML error of `objects`, with its position when the parser knows it
/// (and its text without the parser's own `error: line .. column ..:`).
fn yaml_error(e: serde_saphyr::Error) -> PlanError {
    let text = first_line(&e.to_string());
    let Some(at) = e.location() else {
        return PlanError::Load(text);
    };
    let message = text
        .strip_prefix("error: ")
        .unwrap_or(&text)
        .strip_prefix(&format!("line {} column {}: ", at.line(), at.column()))
        .map(str::to_owned)
        .unwrap_or_else(|| text.clone());
    PlanError::Yaml {
        line: at.line(),
        column: at.column(),
        message,
    }
}

fn validate(
    d: &Descriptor,
    regions: Regions<'_>,
    translation: PathTranslation,
) -> Result<PlannedObject, PlanError> {
    if d.object_name.is_empty() {
        return Err(PlanError::ObjectNameMissing);
    }
    let object_type = infer_type(&d.object_name, &d.object_type, regions.primary)?;
    if object_type == ObjectType::SsmParameter
        && !d.object_version.is_empty()
        && !d.object_version_label.is_empty()
    {
        return Err(PlanError::SsmVersionAndLabel(d.object_name.clone()));
    }
    let mode = match d.file_permission.as_str() {
        "" => DEFAULT_FILE_MODE,
        p => parse_mode(p)?,
    };
    let file = if d.object_alias.is_empty() {
        file_spec(
            &d.object_name,
            Written::Name,
            mode,
            translation,
            &d.object_name,
        )?
    } else {
        file_spec(
            &d.object_alias,
            Written::Alias,
            mode,
            translation,
            &d.object_name,
        )?
    };

    let mut jmes = Vec::with_capacity(d.jmes_path.len());
    for e in &d.jmes_path {
        if e.path.is_empty() {
            return Err(PlanError::JmesPathMissing);
        }
        if e.object_alias.is_empty() {
            return Err(PlanError::JmesAliasMissing);
        }
        let mode = match e.file_permission.as_str() {
            "" => mode,
            p => parse_mode(p)?,
        };
        jmes.push(JmesFile {
            expression: e.path.clone(),
            file: file_spec(
                &e.object_alias,
                Written::Alias,
                mode,
                translation,
                &d.object_name,
            )?,
        });
    }

    let failover = match (&d.failover, regions.failover) {
        (Some(f), failover_region) => {
            if d.object_alias.is_empty() {
                return Err(PlanError::FailoverAliasMissing(d.object_name.clone()));
            }
            let Some(failover_region) = failover_region else {
                return Err(PlanError::FailoverWithoutRegion(d.object_name.clone()));
            };
            let failover_type = infer_type(&f.object_name, &d.object_type, failover_region)?;
            if failover_type != object_type {
                return Err(PlanError::ObjectTypeMismatch(f.object_name.clone()));
            }
            if object_type == ObjectType::SsmParameter
                && !f.object_version.is_empty()
                && !f.object_version_label.is_empty()
            {
                return Err(PlanError::SsmVersionAndLabel(d.object_name.clone()));
            }
            if f.object_version != d.object_version {
                return Err(PlanError::FailoverVersionMismatch(d.object_name.clone()));
            }
            Some(ObjectRef {
                name: f.object_name.clone(),
                version_id: non_empty(&f.object_version),
                // Like the AWS provider: the failover entry's label if set,
                // else the primary's.
                version_label: non_empty(&f.object_version_label)
                    .or_else(|| non_empty(&d.object_version_label)),
            })
        }
        (None, Some(_)) => Some(ObjectRef {
            name: d.object_name.clone(),
            version_id: non_empty(&d.object_version),
            version_label: non_empty(&d.object_version_label),
        }),
        (None, None) => None,
    };

    Ok(PlannedObject {
        object_type,
        primary: ObjectRef {
            name: d.object_name.clone(),
            version_id: non_empty(&d.object_version),
            version_label: non_empty(&d.object_version_label),
        },
        failover,
        file,
        jmes,
    })
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

/// What a file name was written as: an object's name (an SSM name starts
/// with `/` and becomes `_...` by translation) or an alias (a name the
/// author chose for the file: never absolute).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Written {
    Name,
    Alias,
}

fn file_spec(
    name: &str,
    written: Written,
    mode: u32,
    translation: PathTranslation,
    object: &str,
) -> Result<FileSpec, PlanError> {
    // Judged as the author wrote it, before translation can disguise it
    // (`/etc/passwd` -> `_etc_passwd`, `../../x` -> `.._.._x`), and named in
    // the error as written.
    let as_written = |rule| PlanError::BadFileName {
        file: name.to_owned(),
        object: object.to_owned(),
        rule,
    };
    let climbs = name.split('/').any(|c| c == "..");
    if written == Written::Alias {
        if name.starts_with('/') {
            return Err(as_written(PathRule::Absolute));
        }
        if climbs {
            return Err(as_written(PathRule::DotComponent));
        }
    }
    // An object's name is the AWS name: `a/../b` is the harmless `a_.._b`
    // once translated, as the AWS provider has it; refused only when the
    // translated name is refused too.
    let file = translation.apply(name);
    let path = FilePath::parse(&file).map_err(|rule| {
        if climbs {
            as_written(PathRule::DotComponent)
        } else {
            PlanError::BadFileName {
                file,
                object: object.to_owned(),
                rule,
            }
        }
    })?;
    Ok(FileSpec { path, mode })
}

/// A 4-digit octal string, as the AWS provider requires (`^[0-7]{4}$`),
/// with permission bits only: the driver runs as root, and a setuid file
/// holding a secret is never what a pod needs.
pub(super) fn parse_mode(p: &str) -> Result<u32, PlanError> {
    if p.len() != 4 || !p.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return Err(PlanError::FilePermission(p.to_owned()));
    }
    let mode = u32::from_str_radix(p, 8).map_err(|_| PlanError::FilePermission(p.to_owned()))?;
    if mode & !0o777 != 0 {
        return Err(PlanError::FilePermissionSpecialBits(p.to_owned()));
    }
    Ok(mode)
}

/// The parts of an ARN the rules look at.
struct Arn<'a> {
    service: &'a str,
    region: &'a str,
}

fn parse_arn(name: &str) -> Option<Arn<'_>> {
    // arn:partition:service:region:account:resource (resource may hold ':').
    let mut parts = name.splitn(6, ':');
    let (
        Some("arn"),
        Some(_partition),
        Some(service),
        Some(region),
        Some(_account),
        Some(_resource),
    ) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    )
    else {
        return None;
    };
    Some(Arn { service, region })
}

/// The AWS provider's `validateObjectName` and type inference, in its order.
fn infer_type(name: &str, declared: &str, region: &str) -> Result<ObjectType, PlanError> {
    let arn = if name.starts_with("arn:") {
        let arn = parse_arn(name).ok_or_else(|| PlanError::InvalidArn(name.to_owned()))?;
        if arn.region != region {
            return Err(PlanError::ArnRegion {
                region: region.to_owned(),
                name: name.to_owned(),
            });
        }
        Some(arn)
    } else {
        None
    };
    let from_service = |s: &str| match s {
        "secretsmanager" => Some(ObjectType::SecretsManager),
        "ssm" | "ssmparameter" => Some(ObjectType::SsmParameter),
        _ => None,
    };
    match (declared, arn) {
        ("", None) => Err(PlanError::ObjectTypeMissing(name.to_owned())),
        ("", Some(arn)) => {
            from_service(arn.service).ok_or_else(|| PlanError::ArnService(arn.service.to_owned()))
        }
        (declared, arn) => {
            let t = match declared {
                "secretsmanager" => ObjectType::SecretsManager,
                "ssmparameter" => ObjectType::SsmParameter,
                _ => return Err(PlanError::InvalidObjectType(declared.to_owned())),
            };
            match arn {
                Some(arn) if from_service(arn.service) != Some(t) => {
                    Err(PlanError::ObjectTypeMismatch(name.to_owned()))
                }
                _ => Ok(t),
            }
        }
    }
}

/// The AWS provider's duplicate rules: the same objectName twice is an error
/// unless the aliases or the version labels differ; an alias may appear once.
/// Each jmesPath compiles, and copies its input at most
/// [`MAX_JMES_COPIES`] times.
fn check_jmes_expressions(d: &Descriptor) -> Result<(), PlanError> {
    for e in &d.jmes_path {
        let Ok(expression) = jmespath::compile(&e.path) else {
            return Err(PlanError::JmesInvalid(e.path.clone()));
        };
        let copies = jmes_copies(expression.as_ast());
        if copies > MAX_JMES_COPIES {
            return Err(PlanError::JmesTooWide {
                path: e.path.clone(),
                copies,
            });
        }
    }
    Ok(())
}

fn duplicate_detail(alias: &str, label: &str) -> String {
    match (alias.is_empty(), label.is_empty()) {
        (false, true) => format!("duplicate object alias {alias}, and no version label"),
        (true, false) => format!("no object alias, and duplicate version label {label}"),
        (false, false) => {
            format!("duplicate object alias {alias}, and duplicate version label {label}")
        }
        (true, true) => "no object alias, and no version label".to_owned(),
    }
}

fn check_duplicates(descriptors: &[Descriptor]) -> Result<(), PlanError> {
    let mut seen: HashMap<&str, Vec<&Descriptor>> = HashMap::new();
    let mut aliases: HashMap<&str, ()> = HashMap::new();
    for d in descriptors {
        let same_name = seen.entry(d.object_name.as_str()).or_default();
        if same_name.iter().any(|o| {
            o.object_alias == d.object_alias && o.object_version_label == d.object_version_label
        }) {
            return Err(PlanError::DuplicateObject {
                name: d.object_name.clone(),
                alias: d.object_alias.clone(),
                label: d.object_version_label.clone(),
            });
        }
        same_name.push(d);
        if !d.object_alias.is_empty() && aliases.insert(&d.object_alias, ()).is_some() {
            return Err(PlanError::DuplicateAlias(d.object_alias.clone()));
        }
    }
    for d in descriptors {
        for e in &d.jmes_path {
            if aliases.insert(&e.object_alias, ()).is_some() {
                return Err(PlanError::DuplicateJmesAlias {
                    alias: e.object_alias.clone(),
                    path: e.path.clone(),
                });
            }
        }
    }
    Ok(())
}

/// Stricter than the AWS provider, which lets the last write win: no two
/// files may land on the same path, nor one inside the other.
fn check_collisions(plan: &MountPlan) -> Result<(), PlanError> {
    // The objects' names among themselves always (they are what templates
    // read, written or not), then every file the volume holds.
    collisions(plan.files().map(|(f, o)| (&f.path, o.name().to_owned())))?;
    collisions(plan.written().into_iter().map(|(f, from)| (&f.path, from)))
}

fn collisions<'a>(all: impl Iterator<Item = (&'a FilePath, String)>) -> Result<(), PlanError> {
    // Every file, and every directory some file needs, by path.
    let mut files: HashMap<&str, (&FilePath, String)> = HashMap::new();
    let mut dirs: HashMap<&str, (&FilePath, String)> = HashMap::new();
    let collision = |a: &(&FilePath, String), b: (&FilePath, String)| PlanError::FileCollision {
        file: a.0.to_string(),
        first: a.1.clone(),
        other: b.0.to_string(),
        second: b.1,
    };
    for (path, object) in all {
        let s = path.as_str();
        if let Some(earlier) = files.get(s).or_else(|| dirs.get(s)) {
            return Err(collision(earlier, (path, object)));
        }
        for (i, _) in s.match_indices('/') {
            let dir = &s[..i];
            if let Some(earlier) = files.get(dir) {
                return Err(collision(earlier, (path, object)));
            }
            dirs.entry(dir).or_insert((path, object.clone()));
        }
        files.insert(s, (path, object));
    }
    Ok(())
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
