//! Step "request": a kubelet NodePublishVolume request -> [`PublishRequest`].
//! Pure: checks the arguments and reads the pod's attributes and tokens.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use aws_secrets_csi_core::names::{self, InvalidName, NameKind};

use crate::proto::NodePublishVolumeRequest;
use crate::secret::Token;

pub const ATTR_CLASS: &str = "secretProviderClass";
pub const ATTR_POD_NAME: &str = "csi.storage.k8s.io/pod.name";
pub const ATTR_POD_NAMESPACE: &str = "csi.storage.k8s.io/pod.namespace";
pub const ATTR_POD_UID: &str = "csi.storage.k8s.io/pod.uid";
pub const ATTR_SERVICE_ACCOUNT: &str = "csi.storage.k8s.io/serviceAccount.name";
pub const ATTR_TOKENS: &str = "csi.storage.k8s.io/serviceAccount.tokens";

/// Token audience for IRSA (`AssumeRoleWithWebIdentity`).
pub const AUDIENCE_STS: &str = "sts.amazonaws.com";
/// Token audience for EKS Pod Identity.
pub const AUDIENCE_POD_IDENTITY: &str = "pods.eks.amazonaws.com";

/// The pod a volume belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pod {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub service_account: String,
}

/// A validated NodePublishVolume request.
#[derive(Debug, Clone)]
pub struct PublishRequest {
    pub volume_id: String,
    pub target: PathBuf,
    pub class_name: String,
    pub pod: Pod,
    /// Service-account tokens by audience, as kubelet minted them.
    pub tokens: HashMap<String, Token>,
}

/// A request kubelet should not have sent: all are InvalidArgument.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("volume id is missing")]
    VolumeId,
    #[error("volume id is longer than 128 bytes or holds control characters")]
    VolumeIdShape,
    #[error("target path is missing")]
    TargetPath,
    #[error("target path {0:?} is not absolute")]
    RelativeTarget(String),
    #[error(
        "target path {target:?} is not a pod volume directory of kubelet ({root}/pods/<pod uid>/volumes/kubernetes.io~csi/<volume>/mount); refusing to touch it"
    )]
    TargetOutsideKubelet { target: String, root: String },
    #[error("volume capability is missing")]
    Capability,
    #[error("only mount volumes are supported, not block volumes")]
    BlockCapability,
    #[error("volume must be mounted readOnly: set `readOnly: true` on the pod's csi volume")]
    NotReadOnly,
    #[error(
        "volume attribute {ATTR_CLASS:?} is missing: name the SecretProviderClass in the pod's volumeAttributes"
    )]
    ClassName,
    #[error("pod information is missing ({0}): the CSIDriver object must set podInfoOnMount: true")]
    PodInfo(&'static str),
    #[error("volume attribute {attribute} {value:?}: {error}")]
    Name {
        attribute: &'static str,
        value: String,
        error: InvalidName,
    },
    #[error(
        "target path {target:?} is not a volume of pod {uid:?} ({ATTR_POD_UID}); refusing to publish another pod's volume"
    )]
    OtherPod { target: String, uid: String },
    #[error("{ATTR_TOKENS} is not valid JSON from kubelet: {0}")]
    Tokens(String),
    #[error(
        "volume attribute {0:?} is not supported: set it in the SecretProviderClass's parameters (the pod's volumeAttributes may name only {ATTR_CLASS:?}; the upstream driver let them override the class's parameters, this driver does not)"
    )]
    Attribute(String),
}

/// Keys kubelet itself puts in the volume context (pod information, the
/// ephemeral flag, tokens).
const KUBELET_PREFIX: &str = "csi.storage.k8s.io/";

#[derive(Deserialize)]
struct TokenStatus {
    #[serde(default)]
    token: String,
}

/// Reads a NodePublishVolume request. The tokens come from `secrets` first
/// (Kubernetes >= 1.35 `serviceAccountTokenInSecrets`), then from the volume
/// context.
pub fn parse_publish(
    req: &NodePublishVolumeRequest,
    kubelet_dir: &Path,
) -> Result<PublishRequest, RequestError> {
    check_volume_id(&req.volume_id)?;
    if req.target_path.is_empty() {
        return Err(RequestError::TargetPath);
    }
    if !req.target_path.starts_with('/') {
        return Err(RequestError::RelativeTarget(req.target_path.clone()));
    }
    let capability = req
        .volume_capability
        .as_ref()
        .ok_or(RequestError::Capability)?;
    if let Some(crate::proto::volume_capability::AccessType::Block(_)) = capability.access_type {
        return Err(RequestError::BlockCapability);
    }
    if !req.readonly {
        return Err(RequestError::NotReadOnly);
    }
    let target_uid = check_target(&req.target_path, kubelet_dir)?;
    let ctx = &req.volume_context;
    // A pod author's attribute is refused, never silently ignored: the
    // upstream driver merges them over the class's parameters (a pod could
    // change `objects` or `region` of a class someone else wrote).
    if let Some(key) = ctx
        .keys()
        .filter(|k| *k != ATTR_CLASS && !k.starts_with(KUBELET_PREFIX))
        .min()
    {
        return Err(RequestError::Attribute(key.clone()));
    }
    let class_name = non_empty(ctx, ATTR_CLASS).ok_or(RequestError::ClassName)?;
    // Each of these goes into an API request path: only a real name may.
    let named = |attribute: &'static str, kind| -> Result<String, RequestError> {
        let value = non_empty(ctx, attribute).ok_or(RequestError::PodInfo(attribute))?;
        names::check(&value, kind).map_err(|error| RequestError::Name {
            attribute,
            value: value.clone(),
            error,
        })?;
        Ok(value)
    };
    names::check(&class_name, NameKind::Subdomain).map_err(|error| RequestError::Name {
        attribute: ATTR_CLASS,
        value: class_name.clone(),
        error,
    })?;
    let pod = Pod {
        namespace: named(ATTR_POD_NAMESPACE, NameKind::Label)?,
        name: named(ATTR_POD_NAME, NameKind::Subdomain)?,
        uid: non_empty(ctx, ATTR_POD_UID).ok_or(RequestError::PodInfo(ATTR_POD_UID))?,
        service_account: named(ATTR_SERVICE_ACCOUNT, NameKind::Subdomain)?,
    };
    // The target names its pod: a request for one pod never touches the
    // volume of another.
    if pod.uid != target_uid {
        return Err(RequestError::OtherPod {
            target: req.target_path.clone(),
            uid: pod.uid,
        });
    }
    let tokens_json = req
        .secrets
        .get(ATTR_TOKENS)
        .or_else(|| ctx.get(ATTR_TOKENS))
        .filter(|s| !s.is_empty());
    let tokens = match tokens_json {
        None => HashMap::new(),
        Some(json) => parse_tokens(json)?,
    };
    Ok(PublishRequest {
        volume_id: req.volume_id.clone(),
        target: PathBuf::from(&req.target_path),
        class_name,
        pod,
        tokens,
    })
}

/// A volume id as CSI bounds it (at most 128 bytes): it names the volume's
/// state file and appears in logs and metric labels.
pub fn check_volume_id(id: &str) -> Result<(), RequestError> {
    if id.is_empty() {
        return Err(RequestError::VolumeId);
    }
    if id.len() > 128 || id.chars().any(char::is_control) {
        return Err(RequestError::VolumeIdShape);
    }
    Ok(())
}

/// A target must be the `mount` directory of a CSI volume of a pod, below
/// kubelet's directory: the driver mounts there and, at unpublish, removes
/// it, so no other path may ever be accepted. Checked on the text (no `.`,
/// `..` or empty components); symlinks are checked where the path is used.
/// Returns the pod uid the path names.
pub fn check_target<'t>(target: &'t str, kubelet_dir: &Path) -> Result<&'t str, RequestError> {
    let refuse = || RequestError::TargetOutsideKubelet {
        target: target.to_owned(),
        root: kubelet_dir.display().to_string(),
    };
    let root = kubelet_dir
        .to_str()
        .ok_or_else(refuse)?
        .trim_end_matches('/');
    let rest = target
        .strip_prefix(root)
        .and_then(|r| r.strip_prefix("/pods/"))
        .ok_or_else(refuse)?;
    let parts: Vec<&str> = rest.split('/').collect();
    let shape_ok = parts.len() == 5
        && parts[1] == "volumes"
        && parts[2] == "kubernetes.io~csi"
        && parts[4] == "mount"
        && [parts[0], parts[3]]
            .iter()
            .all(|p| !p.is_empty() && *p != "." && *p != ".." && !p.contains('\0'));
    if shape_ok {
        Ok(parts[0])
    } else {
        Err(refuse())
    }
}

fn non_empty(map: &HashMap<String, String>, key: &str) -> Option<String> {
    map.get(key).filter(|v| !v.is_empty()).cloned()
}

/// `{"<audience>": {"token": "...", "expirationTimestamp": "..."}}`. The error
/// says where the JSON broke, never what it held.
pub fn parse_tokens(json: &str) -> Result<HashMap<String, Token>, RequestError> {
    let map: BTreeMap<String, TokenStatus> = serde_json::from_str(json).map_err(|e| {
        RequestError::Tokens(format!(
            "{:?} at line {} column {}",
            e.classify(),
            e.line(),
            e.column()
        ))
    })?;
    Ok(map
        .into_iter()
        .filter(|(_, t)| !t.token.is_empty())
        .map(|(aud, t)| (aud, Token::new(t.token)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{VolumeCapability, volume_capability};

    fn request() -> NodePublishVolumeRequest {
        NodePublishVolumeRequest {
            volume_id: "csi-abc".into(),
            target_path: "/var/lib/kubelet/pods/uid-1/volumes/kubernetes.io~csi/s/mount".into(),
            volume_capability: Some(VolumeCapability {
                access_type: Some(volume_capability::AccessType::Mount(Default::default())),
                access_mode: None,
            }),
            readonly: true,
            volume_context: [
                (ATTR_CLASS, "db-creds"),
                (ATTR_POD_NAME, "web-1"),
                (ATTR_POD_NAMESPACE, "shop"),
                (ATTR_POD_UID, "uid-1"),
                (ATTR_SERVICE_ACCOUNT, "web"),
                ("csi.storage.k8s.io/ephemeral", "true"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            ..Default::default()
        }
    }

    const KUBELET: &str = "/var/lib/kubelet";

    fn parse_publish(req: &NodePublishVolumeRequest) -> Result<PublishRequest, RequestError> {
        super::parse_publish(req, Path::new(KUBELET))
    }

    #[test]
    fn targets_must_be_kubelet_pod_volume_mounts() {
        let ok = "/var/lib/kubelet/pods/uid-1/volumes/kubernetes.io~csi/secrets/mount";
        assert!(check_target(ok, Path::new(KUBELET)).is_ok());
        assert!(check_target(ok, Path::new("/var/lib/kubelet/")).is_ok());
        for bad in [
            "/etc",
            "/var/lib/kubelet/pods",
            "/var/lib/kubelet/pods/uid-1/volumes/kubernetes.io~csi/secrets",
            "/var/lib/kubelet/pods/uid-1/volumes/kubernetes.io~csi/secrets/mount/x",
            "/var/lib/kubelet/pods/../volumes/kubernetes.io~csi/secrets/mount",
            "/var/lib/kubelet/pods/uid-1/volumes/kubernetes.io~csi/../mount",
            "/var/lib/kubelet/pods/uid-1/volumes/kubernetes.io~empty-dir/x/mount",
            "/var/lib/kubelet/pods//volumes/kubernetes.io~csi/secrets/mount",
            "/var/lib/kubeletX/pods/uid-1/volumes/kubernetes.io~csi/secrets/mount",
        ] {
            let e = check_target(bad, Path::new(KUBELET)).unwrap_err();
            assert!(e.to_string().contains("refusing to touch it"), "{bad}: {e}");
        }
        let mut r = request();
        r.target_path = "/etc/secrets".into();
        assert!(matches!(
            parse_publish(&r),
            Err(RequestError::TargetOutsideKubelet { .. })
        ));
    }

    #[test]
    fn reads_pod_info_and_class() {
        let r = parse_publish(&request()).unwrap();
        assert_eq!(r.class_name, "db-creds");
        assert_eq!(
            r.pod,
            Pod {
                namespace: "shop".into(),
                name: "web-1".into(),
                uid: "uid-1".into(),
                service_account: "web".into()
            }
        );
        assert!(r.tokens.is_empty());
    }

    #[test]
    fn each_missing_argument_has_its_error() {
        let mut r = request();
        r.volume_id.clear();
        assert_eq!(parse_publish(&r).unwrap_err(), RequestError::VolumeId);
        let mut r = request();
        r.target_path.clear();
        assert_eq!(parse_publish(&r).unwrap_err(), RequestError::TargetPath);
        let mut r = request();
        r.target_path = "relative/mount".into();
        assert!(matches!(
            parse_publish(&r).unwrap_err(),
            RequestError::RelativeTarget(_)
        ));
        let mut r = request();
        r.volume_capability = None;
        assert_eq!(parse_publish(&r).unwrap_err(), RequestError::Capability);
        let mut r = request();
        r.volume_capability.as_mut().unwrap().access_type =
            Some(volume_capability::AccessType::Block(Default::default()));
        assert_eq!(
            parse_publish(&r).unwrap_err(),
            RequestError::BlockCapability
        );
        let mut r = request();
        r.readonly = false;
        assert_eq!(parse_publish(&r).unwrap_err(), RequestError::NotReadOnly);
        let mut r = request();
        r.volume_context.remove(ATTR_CLASS);
        assert_eq!(parse_publish(&r).unwrap_err(), RequestError::ClassName);
        // A pod's own attributes are refused by name; kubelet's are read.
        let mut r = request();
        r.volume_context
            .insert("csi.storage.k8s.io/ephemeral".into(), "true".into());
        assert!(parse_publish(&r).is_ok());
        for key in ["region", "objects", "secretProviderClassX"] {
            let mut r = request();
            r.volume_context.insert(key.into(), "x".into());
            let e = parse_publish(&r).unwrap_err();
            assert_eq!(e, RequestError::Attribute(key.into()));
            assert!(
                e.to_string()
                    .starts_with(&format!("volume attribute {key:?} is not supported"))
            );
        }
        let mut r = request();
        r.volume_context.remove(ATTR_POD_NAMESPACE);
        assert_eq!(
            parse_publish(&r).unwrap_err(),
            RequestError::PodInfo(ATTR_POD_NAMESPACE)
        );
        let mut r = request();
        r.volume_context.remove(ATTR_SERVICE_ACCOUNT);
        assert!(
            parse_publish(&r)
                .unwrap_err()
                .to_string()
                .contains("podInfoOnMount")
        );
    }

    #[test]
    fn volume_ids_are_bounded() {
        let mut r = request();
        r.volume_id = "v".repeat(129);
        assert_eq!(parse_publish(&r).unwrap_err(), RequestError::VolumeIdShape);
        r.volume_id = "csi-\nx".into();
        assert_eq!(parse_publish(&r).unwrap_err(), RequestError::VolumeIdShape);
        r.volume_id = "v".repeat(128);
        assert!(parse_publish(&r).is_ok());
    }

    #[test]
    fn names_bound_for_api_paths_are_checked() {
        for (attribute, bad) in [
            (ATTR_CLASS, "../../kube-system/x"),
            (ATTR_CLASS, "x?watch=1"),
            (ATTR_POD_NAMESPACE, "kube-system/secrets"),
            (ATTR_POD_NAMESPACE, "a.b"),
            (ATTR_POD_NAME, "p#frag"),
            (ATTR_SERVICE_ACCOUNT, "sa/../../x"),
        ] {
            let mut r = request();
            r.volume_context.insert(attribute.into(), bad.into());
            let e = parse_publish(&r).unwrap_err();
            assert!(
                matches!(&e, RequestError::Name { attribute: a, value, .. } if *a == attribute && value == bad),
                "{attribute}={bad}: {e}"
            );
            assert!(
                e.to_string().contains("is not a valid Kubernetes name"),
                "{e}"
            );
        }
    }

    #[test]
    fn the_pod_uid_must_be_the_targets() {
        let mut r = request();
        r.volume_context.insert(ATTR_POD_UID.into(), "uid-2".into());
        let e = parse_publish(&r).unwrap_err();
        assert!(matches!(e, RequestError::OtherPod { .. }), "{e}");
        assert!(e.to_string().contains("another pod's volume"), "{e}");
        let mut r = request();
        r.volume_context.remove(ATTR_POD_UID);
        assert_eq!(
            parse_publish(&r).unwrap_err(),
            RequestError::PodInfo(ATTR_POD_UID)
        );
    }

    #[test]
    fn tokens_come_from_secrets_before_volume_context() {
        let mut r = request();
        r.volume_context.insert(ATTR_TOKENS.into(), r#"{"sts.amazonaws.com":{"token":"from-context","expirationTimestamp":"2026-11-28T12:00:00Z"}}"#.into());
        assert_eq!(
            parse_publish(&r).unwrap().tokens[AUDIENCE_STS].expose(),
            "from-context"
        );
        r.secrets.insert(ATTR_TOKENS.into(), r#"{"sts.amazonaws.com":{"token":"from-secrets"},"pods.eks.amazonaws.com":{"token":"pi"}}"#.into());
        let p = parse_publish(&r).unwrap();
        assert_eq!(p.tokens[AUDIENCE_STS].expose(), "from-secrets");
        assert_eq!(p.tokens[AUDIENCE_POD_IDENTITY].expose(), "pi");
    }

    #[test]
    fn broken_token_json_never_echoes_its_content() {
        let mut r = request();
        r.volume_context.insert(
            ATTR_TOKENS.into(),
            r#"{"sts.amazonaws.com":{"token":"eyJsecret"#.into(),
        );
        let e = parse_publish(&r).unwrap_err().to_string();
        assert!(e.starts_with(ATTR_TOKENS), "{e}");
        assert!(!e.contains("eyJsecret"));
    }

    #[test]
    fn empty_tokens_are_dropped() {
        let t = parse_tokens(r#"{"sts.amazonaws.com":{"token":""}}"#).unwrap();
        assert!(t.is_empty());
    }
}
