//! Step "kube": the pod's SecretProviderClass and its ServiceAccount's role,
//! read from the Kubernetes API; and what the driver writes back: events on
//! the pod, synced Secrets, SecretProviderClassPodStatus objects.

pub mod change_record;
mod secret_sync;
mod tls;
mod watched;

use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    Event, Node, ObjectReference, Pod as PodObject, Secret, ServiceAccount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::Api;
use kube::api::{
    ApiResource, DynamicObject, GroupVersionKind, PartialObjectMeta, Patch, PatchParams, PostParams,
};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};

pub use secret_sync::{MANAGED_LABEL, SyncError, desired_secret, is_ours, merged, up_to_date};
pub use watched::{MAX_CLASS_BYTES, WatchedClass};

use crate::identity::issuer::IssuerKeys;
use crate::identity::{BoundPod, TokenReviewed};
use crate::request::Pod;

/// Field manager of every server-side apply, and the component of the
/// driver's Events (the controller hears its `SecretRotated` by it).
pub(crate) const MANAGER: &str = "aws-secrets-csi";
/// The node label of our SecretProviderClassPodStatus objects. Not the
/// upstream driver's `internal.secrets-store.csi.k8s.io/node-name`: its
/// status controller watches the objects with that label on its node, and
/// beside ours it would take our pods' objects for its own and retry them
/// forever (their volumes are not its driver's).
pub const NODE_LABEL: &str = "secrets-store.aws-secrets-csi.io/node-name";

use crate::spc::SecretProviderClass;

/// The node label that names the node's AWS region.
pub const REGION_LABEL: &str = "topology.kubernetes.io/region";

/// The ServiceAccount annotation that names the IRSA role.
pub const ROLE_ANNOTATION: &str = "eks.amazonaws.com/role-arn";

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("{kind} {namespace}/{name} not found")]
    NotFound {
        kind: &'static str,
        namespace: String,
        name: String,
    },
    #[error("{kind} {namespace}/{name}: refused by the API server: {message}")]
    Forbidden {
        kind: &'static str,
        namespace: String,
        name: String,
        message: String,
    },
    #[error("{kind} {namespace}/{name} is not used: {why}")]
    Unusable {
        kind: &'static str,
        namespace: String,
        name: String,
        why: String,
    },
    #[error("{kind} {namespace}/{name}: the API server could not be used: {message}")]
    Unavailable {
        kind: &'static str,
        namespace: String,
        name: String,
        message: String,
    },
}

/// What a pod's spec says about its secret volumes.
#[derive(Debug, Clone)]
pub struct PodClasses {
    pub uid: String,
    pub service_account: String,
    /// (volume name, CSI driver, SecretProviderClass name) of each CSI
    /// volume that names a class.
    pub volumes: Vec<(String, String, String)>,
}

/// Objects per page of the watches' lists (client-go's default is 500):
/// classes may be 1.5 MB each, a ServiceAccount's metadata 256 KB.
const CLASS_PAGE: u32 = 5;
const ACCOUNT_PAGE: u32 = 100;

/// Reads what a publish needs from the Kubernetes API.
#[derive(Clone)]
pub struct Cluster {
    client: kube::Client,
    /// This node, the reporting instance of events.
    node: String,
    /// Watch caches of classes and ServiceAccounts (absent: direct GETs).
    classes: Option<Store<WatchedClass>>,
    accounts: Option<Store<PartialObjectMeta<ServiceAccount>>>,
    /// Watch cache of this node's pods: name, uid and deletion time only.
    pods: Option<Store<PartialObjectMeta<PodObject>>>,
}

impl Cluster {
    /// Every lookup is a direct GET.
    pub fn new(client: kube::Client, node: String) -> Self {
        Cluster {
            client,
            node,
            classes: None,
            accounts: None,
            pods: None,
        }
    }

    /// Lookups come from watch caches of all SecretProviderClasses and of
    /// the metadata of all ServiceAccounts; a miss (an object created a
    /// moment before its pod) is one direct GET. The watches run until the
    /// runtime stops.
    pub fn watching(client: kube::Client, node: String) -> Self {
        // Classes are decoded into what a publish reads (see `watched`);
        // accounts are stripped to their uid and role before the store.
        // Lists come in small pages: a page is read whole before it is
        // decoded, and tenants' objects may be 1.5 MB each. (A list "from
        // any version" is served whole from the API server's cache, limit
        // or not: 80 classes of 900 KB were one 72 MB answer.)
        let classes = spawn_reflector(
            "SecretProviderClass",
            watcher::watcher(
                Api::<WatchedClass>::all(client.clone()),
                watcher::Config::default()
                    .page_size(CLASS_PAGE)
                    .list_semantic(watcher::ListSemantic::MostRecent),
            ),
        );
        let accounts = spawn_reflector(
            "ServiceAccount",
            watcher::watcher(
                Api::<PartialObjectMeta<ServiceAccount>>::all(client.clone()),
                watcher::Config::default()
                    .page_size(ACCOUNT_PAGE)
                    .list_semantic(watcher::ListSemantic::MostRecent),
            )
            .modify(watched::strip_account),
        );
        // The pods of this node only (as kubelet watches them): whether a
        // token's pod still exists is asked at every publish.
        let pods = spawn_reflector(
            "Pod",
            watcher::watcher(
                Api::<PartialObjectMeta<PodObject>>::all(client.clone()),
                watcher::Config::default().fields(&format!("spec.nodeName={node}")),
            )
            .modify(|pod| {
                // Of the annotations, only sync-now (bounded).
                let sync_now = pod
                    .metadata
                    .annotations
                    .take()
                    .and_then(|mut a| a.remove_entry(watched::SYNC_NOW))
                    .map(|(k, v)| (k, watched::bounded_sync_now(v)));
                let kept = ObjectMeta {
                    name: pod.metadata.name.take(),
                    namespace: pod.metadata.namespace.take(),
                    uid: pod.metadata.uid.take(),
                    deletion_timestamp: pod.metadata.deletion_timestamp.take(),
                    resource_version: pod.metadata.resource_version.take(),
                    annotations: sync_now.map(|kv| std::collections::BTreeMap::from([kv])),
                    ..Default::default()
                };
                pod.metadata = kept;
            }),
        );
        Cluster {
            client,
            node,
            classes: Some(classes),
            accounts: Some(accounts),
            pods: Some(pods),
        }
    }

    /// A token's bound pod as the API server has it: from the watch of
    /// this node's pods once it has listed them, else (not in it: a pod
    /// bound a moment ago; or no watch yet) one GET when `ask`. None when
    /// not known without asking.
    pub async fn bound_pod(
        &self,
        namespace: &str,
        name: &str,
        ask: bool,
    ) -> Result<Option<BoundPod>, ClusterError> {
        use futures::FutureExt;
        let seen = |meta: &ObjectMeta| BoundPod::Exists {
            uid: meta.uid.clone().unwrap_or_default(),
            deleted_at: meta
                .deletion_timestamp
                .as_ref()
                .map(|t| std::time::SystemTime::from(t.0)),
        };
        let watched = self.pods.as_ref().filter(|s| {
            s.wait_until_ready()
                .now_or_never()
                .is_some_and(|r| r.is_ok())
        });
        if let Some(store) = watched
            && let Some(pod) = store.get(&ObjectRef::new(name).within(namespace))
        {
            return Ok(Some(seen(&pod.metadata)));
        }
        if !ask && watched.is_none() {
            return Ok(None);
        }
        let found = Api::<PodObject>::namespaced(self.client.clone(), namespace)
            .get_metadata_opt(name)
            .await
            .map_err(|e| classify(e, "Pod", namespace, name))?;
        Ok(Some(found.map_or(BoundPod::Gone, |p| seen(&p.metadata))))
    }

    /// The `aws-secrets-csi.io/sync-now` annotations of a class and of a
    /// pod, together, from the watches only (no GET: a republish asks every
    /// minute). None when neither has one (or the driver has no watch).
    pub fn sync_now(&self, namespace: &str, class: &str, pod: &str) -> Option<String> {
        let class = self
            .classes
            .as_ref()
            .and_then(|c| c.get(&ObjectRef::new(class).within(namespace)))
            .and_then(|c| c.sync_now.clone());
        let pod = self
            .pods
            .as_ref()
            .and_then(|p| p.get(&ObjectRef::new(pod).within(namespace)))
            .and_then(|p| {
                p.metadata
                    .annotations
                    .as_ref()?
                    .get(watched::SYNC_NOW)
                    .cloned()
            });
        match (class, pod) {
            (None, None) => None,
            (class, pod) => Some(format!(
                "class={}\npod={}",
                class.unwrap_or_default(),
                pod.unwrap_or_default()
            )),
        }
    }

    pub async fn secret_provider_class(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Arc<SecretProviderClass>, ClusterError> {
        // The watch store's own copy: no class is cloned per publish.
        let watched = match self
            .classes
            .as_ref()
            .and_then(|s| s.get(&ObjectRef::new(name).within(namespace)))
        {
            Some(cached) => cached,
            None => Arc::new(
                Api::<WatchedClass>::namespaced(self.client.clone(), namespace)
                    .get(name)
                    .await
                    .map_err(|e| classify(e, "SecretProviderClass", namespace, name))?,
            ),
        };
        watched
            .content
            .clone()
            .map_err(|why| ClusterError::Unusable {
                kind: "SecretProviderClass",
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                why,
            })
    }

    /// The uid of a ServiceAccount, from the watch cache only (None when
    /// not cached: the caller then asks the API server another way).
    pub fn cached_service_account_uid(&self, namespace: &str, name: &str) -> Option<String> {
        self.cached_account(namespace, name)?.metadata.uid.clone()
    }

    fn cached_account(
        &self,
        namespace: &str,
        name: &str,
    ) -> Option<std::sync::Arc<PartialObjectMeta<ServiceAccount>>> {
        self.accounts
            .as_ref()?
            .get(&ObjectRef::new(name).within(namespace))
    }

    /// The API server's service-account issuer and token-signing keys
    /// (`/.well-known/openid-configuration`, `/openid/v1/jwks`).
    pub async fn issuer_keys(&self) -> Result<IssuerKeys, ClusterError> {
        // Named "<kind> /<path>" in errors.
        const KIND: &str = "service-account issuer discovery";
        let get = |path: &'static str| {
            let client = self.client.clone();
            async move {
                let request = http::Request::get(format!("/{path}"))
                    .body(Vec::new())
                    .map_err(|e| ClusterError::Unavailable {
                        kind: KIND,
                        namespace: String::new(),
                        name: path.to_owned(),
                        message: e.to_string(),
                    })?;
                client
                    .request_text(request)
                    .await
                    .map_err(|e| classify(e, KIND, "", path))
            }
        };
        let configuration = get(".well-known/openid-configuration").await?;
        let jwks = get("openid/v1/jwks").await?;
        IssuerKeys::parse(&configuration, &jwks).map_err(|e| ClusterError::Unavailable {
            kind: KIND,
            namespace: String::new(),
            name: "openid/v1/jwks".into(),
            message: e.to_string(),
        })
    }

    /// The role ARN annotated on a ServiceAccount, if any.
    pub async fn service_account_role(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<String>, ClusterError> {
        Ok(self.service_account(namespace, name).await?.role)
    }

    /// What a publish needs of a ServiceAccount: from the watch cache, else
    /// one GET.
    pub async fn service_account(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<AccountFacts, ClusterError> {
        let metadata = match self.cached_account(namespace, name) {
            Some(meta) => meta.metadata.clone(),
            None => {
                Api::<ServiceAccount>::namespaced(self.client.clone(), namespace)
                    .get(name)
                    .await
                    .map_err(|e| classify(e, "ServiceAccount", namespace, name))?
                    .metadata
            }
        };
        Ok(AccountFacts {
            role: metadata
                .annotations
                .and_then(|mut a| a.remove(ROLE_ANNOTATION))
                .filter(|r| !r.is_empty()),
            uid: metadata.uid,
        })
    }
}

/// A ServiceAccount's role annotation and uid.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountFacts {
    pub role: Option<String>,
    pub uid: Option<String>,
}

/// Runs a reflector in the background and returns its store.
fn spawn_reflector<K>(
    kind: &'static str,
    stream: impl futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
) -> Store<K>
where
    K: kube::Resource + Clone + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
{
    use futures::StreamExt;
    let (reader, writer) = reflector::store();
    let events = reflector::reflector(writer, stream).default_backoff();
    let store = reader.clone();
    tokio::spawn(async move {
        let mut events = std::pin::pin!(events);
        while let Some(event) = events.next().await {
            match event {
                Err(e) => {
                    tracing::warn!(kind, error = %e, "watch failed; lookups fall back to GET until it recovers")
                }
                Ok(watcher::Event::InitDone) => {
                    tracing::info!(kind, objects = store.len(), "watch cache filled")
                }
                Ok(_) => {}
            }
        }
    });
    reader
}

/// The TokenReview `extra` key naming the pod of a bound token.
pub const POD_UID_EXTRA: &str = "authentication.kubernetes.io/pod-uid";

impl Cluster {
    /// Asks the API server whether `token` is valid for `audience`, and
    /// whose it is.
    pub async fn review_token(
        &self,
        token: &crate::secret::Token,
        audience: &str,
    ) -> Result<TokenReviewed, ClusterError> {
        use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
        let review = TokenReview {
            spec: TokenReviewSpec {
                audiences: Some(vec![audience.to_owned()]),
                token: Some(token.expose().to_owned()),
            },
            ..Default::default()
        };
        let answer = Api::<TokenReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| classify(e, "TokenReview", "", "(a pod's token)"))?;
        let status = answer.status.unwrap_or_default();
        let user = status.user.unwrap_or_default();
        Ok(TokenReviewed {
            authenticated: status.authenticated == Some(true),
            username: user.username,
            pod_uid: user
                .extra
                .and_then(|mut e| e.remove(POD_UID_EXTRA))
                .and_then(|v| v.into_iter().next()),
            error: status.error,
        })
    }

    /// The region label of a node, if it has one.
    pub async fn node_region(&self, name: &str) -> Result<Option<String>, ClusterError> {
        let node = Api::<Node>::all(self.client.clone())
            .get(name)
            .await
            .map_err(|e| classify(e, "Node", "", name))?;
        Ok(node
            .metadata
            .labels
            .and_then(|mut l| l.remove(REGION_LABEL))
            .filter(|r| !r.is_empty()))
    }
}

/// What a Secret sync did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synced {
    Written,
    Unchanged,
}

/// The type of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

impl Cluster {
    /// Records an event on the pod. Events are best effort: a failure is
    /// logged, never returned. `message` must hold no value and no token
    /// (every error text of this driver qualifies).
    pub async fn event(&self, pod: &Pod, kind: EventType, reason: &str, message: &str) {
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let event = Event {
            metadata: ObjectMeta {
                generate_name: Some(format!("{}.", pod.name)),
                namespace: Some(pod.namespace.clone()),
                ..Default::default()
            },
            involved_object: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(pod.name.clone()),
                namespace: Some(pod.namespace.clone()),
                uid: (!pod.uid.is_empty()).then(|| pod.uid.clone()),
                ..Default::default()
            },
            reason: Some(reason.to_owned()),
            message: Some(message.chars().take(1024).collect()),
            type_: Some(format!("{kind:?}")),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            count: Some(1),
            source: Some(k8s_openapi::api::core::v1::EventSource {
                component: Some(MANAGER.into()),
                host: Some(self.node.clone()),
            }),
            reporting_component: Some(MANAGER.into()),
            reporting_instance: Some(self.node.clone()),
            ..Default::default()
        };
        let api = Api::<Event>::namespaced(self.client.clone(), &pod.namespace);
        if let Err(e) = api.create(&PostParams::default(), &event).await {
            tracing::warn!(namespace = %pod.namespace, pod = %pod.name, reason, error = %e, "cannot record an event");
        }
    }

    /// A pod's service account, uid and the SecretProviderClasses its CSI
    /// volumes name (`volumeAttributes.secretProviderClass`), for diagnosis.
    pub async fn pod_classes(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<PodClasses, ClusterError> {
        let pod = Api::<PodObject>::namespaced(self.client.clone(), namespace)
            .get(name)
            .await
            .map_err(|e| classify(e, "Pod", namespace, name))?;
        let spec = pod.spec.unwrap_or_default();
        let volumes = spec
            .volumes
            .unwrap_or_default()
            .into_iter()
            .filter_map(|v| {
                let csi = v.csi?;
                let class = csi.volume_attributes?.get("secretProviderClass")?.clone();
                Some((v.name, csi.driver, class))
            })
            .collect();
        Ok(PodClasses {
            uid: pod.metadata.uid.unwrap_or_default(),
            service_account: spec
                .service_account_name
                .unwrap_or_else(|| "default".to_owned()),
            volumes,
        })
    }

    /// A token of `service_account` for `audience` (TokenRequest), bound to
    /// the pod `(name, uid)` when one is given, as kubelet asks for it.
    pub async fn request_token(
        &self,
        namespace: &str,
        service_account: &str,
        audience: &str,
        pod: Option<(&str, &str)>,
    ) -> Result<crate::secret::Token, ClusterError> {
        self.request_token_for(namespace, service_account, audience, pod, 600)
            .await
    }

    /// [`Cluster::request_token`] for a token valid `seconds`.
    pub async fn request_token_for(
        &self,
        namespace: &str,
        service_account: &str,
        audience: &str,
        pod: Option<(&str, &str)>,
        seconds: i64,
    ) -> Result<crate::secret::Token, ClusterError> {
        use k8s_openapi::api::authentication::v1::{
            BoundObjectReference, TokenRequest, TokenRequestSpec,
        };
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: vec![audience.to_owned()],
                expiration_seconds: Some(seconds),
                bound_object_ref: pod.map(|(name, uid)| BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: Some(name.to_owned()),
                    uid: Some(uid.to_owned()),
                }),
            },
            ..Default::default()
        };
        let answer = Api::<ServiceAccount>::namespaced(self.client.clone(), namespace)
            .create_token_request(service_account, &PostParams::default(), &request)
            .await
            .map_err(|e| classify(e, "ServiceAccount token", namespace, service_account))?;
        let token = answer.status.map(|s| s.token).unwrap_or_default();
        if token.is_empty() {
            return Err(ClusterError::Unavailable {
                kind: "ServiceAccount token",
                namespace: namespace.to_owned(),
                name: service_account.to_owned(),
                message: "the API server returned no token".into(),
            });
        }
        Ok(crate::secret::Token::new(token))
    }

    /// Who should own a synced Secret: the pod's controller (so the Secret
    /// outlives a single pod of a Deployment), else the pod.
    pub async fn secret_owner(&self, pod: &Pod) -> Result<OwnerReference, ClusterError> {
        let object = Api::<PodObject>::namespaced(self.client.clone(), &pod.namespace)
            .get(&pod.name)
            .await
            .map_err(|e| classify(e, "Pod", &pod.namespace, &pod.name))?;
        let controller = object
            .metadata
            .owner_references
            .unwrap_or_default()
            .into_iter()
            .find(|o| o.controller == Some(true));
        Ok(controller.unwrap_or(OwnerReference {
            api_version: "v1".into(),
            kind: "Pod".into(),
            name: pod.name.clone(),
            uid: object.metadata.uid.unwrap_or_default(),
            ..Default::default()
        }))
    }

    /// Creates the Secret, or updates it to hold `desired` with its owner
    /// added to those it has (see [`merged`]); refuses a Secret this driver
    /// does not manage. Reads and writes with the resourceVersion, so two
    /// pods syncing one Secret at once both stay owners (the loser of the
    /// race reads again).
    pub async fn sync_secret(&self, desired: &Secret) -> Result<Synced, SyncError> {
        const ATTEMPTS: usize = 5;
        let namespace = desired.metadata.namespace.clone().unwrap_or_default();
        let name = desired.metadata.name.clone().unwrap_or_default();
        let api_error = |e: kube::Error| SyncError::Api {
            namespace: namespace.clone(),
            name: name.clone(),
            message: match e {
                kube::Error::Api(s) => format!("{} ({})", s.message, s.code),
                other => other.to_string(),
            },
        };
        let conflict = |e: &kube::Error| matches!(e, kube::Error::Api(s) if s.code == 409);
        let api = Api::<Secret>::namespaced(self.client.clone(), &namespace);
        let params = PostParams {
            field_manager: Some(MANAGER.into()),
            ..Default::default()
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let written = match api.get_opt(&name).await.map_err(api_error)? {
                None => {
                    let mut body = desired.clone();
                    body.metadata.managed_fields = None;
                    api.create(&params, &body).await
                }
                Some(existing) => {
                    if !is_ours(&existing) {
                        return Err(SyncError::NotOurs {
                            namespace: namespace.clone(),
                            name: name.clone(),
                        });
                    }
                    let Some(next) = merged(&existing, desired) else {
                        return Ok(Synced::Unchanged);
                    };
                    api.replace(&name, &params, &next).await
                }
            };
            match written {
                Ok(_) => return Ok(Synced::Written),
                Err(e) if conflict(&e) && attempt < ATTEMPTS => continue,
                Err(e) => return Err(api_error(e)),
            }
        }
    }

    /// Writes the SecretProviderClassPodStatus of a mounted volume (the
    /// upstream driver's record of what a pod has mounted), owned by the pod.
    pub async fn apply_pod_status(
        &self,
        pod: &Pod,
        class: &str,
        target: &str,
        objects: &[(String, String)],
    ) -> Result<(), ClusterError> {
        let name = format!("{}-{}-{}", pod.name, pod.namespace, class);
        let resource = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(
                "secrets-store.csi.x-k8s.io",
                "v1",
                "SecretProviderClassPodStatus",
            ),
            "secretproviderclasspodstatuses",
        );
        let api =
            Api::<DynamicObject>::namespaced_with(self.client.clone(), &pod.namespace, &resource);
        let status = serde_json::json!({
            "podName": pod.name,
            "secretProviderClassName": class,
            "mounted": true,
            "targetPath": target,
            "objects": objects.iter().map(|(id, version)| serde_json::json!({"id": id, "version": version})).collect::<Vec<_>>(),
        });
        let owner = (!pod.uid.is_empty()).then(|| {
            serde_json::json!([{"apiVersion": "v1", "kind": "Pod", "name": pod.name, "uid": pod.uid}])
        });
        let object = serde_json::json!({
            "apiVersion": "secrets-store.csi.x-k8s.io/v1",
            "kind": "SecretProviderClassPodStatus",
            "metadata": {
                "name": name,
                "namespace": pod.namespace,
                "labels": {NODE_LABEL: self.node},
                "ownerReferences": owner,
            },
            "status": status,
        });
        let params = PatchParams::apply(MANAGER).force();
        let error = |e| classify(e, "SecretProviderClassPodStatus", &pod.namespace, &name);
        // The CRD has no status subresource (as upstream's): status goes
        // in with the object.
        api.patch(&name, &params, &Patch::Apply(&object))
            .await
            .map_err(error)?;
        Ok(())
    }
}

pub(crate) fn classify(
    e: kube::Error,
    kind: &'static str,
    namespace: &str,
    name: &str,
) -> ClusterError {
    let (namespace, name) = (namespace.to_owned(), name.to_owned());
    match e {
        kube::Error::Api(s) if s.code == 404 => ClusterError::NotFound {
            kind,
            namespace,
            name,
        },
        kube::Error::Api(s) if s.code == 401 || s.code == 403 => ClusterError::Forbidden {
            kind,
            namespace,
            name,
            message: s.message.clone(),
        },
        other => ClusterError::Unavailable {
            kind,
            namespace,
            name,
            message: other.to_string(),
        },
    }
}
