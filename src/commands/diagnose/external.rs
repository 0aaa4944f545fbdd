//! `diagnose --external-secret`: walks what the controller's sync of one
//! ExternalSecret would do (its stores, their identity, the plan, each
//! remote ref, the target Secret) with the controller's own code, and
//! writes nothing: the syncer it runs on holds a fence that is never
//! renewed, so any Secret, status or event write would be refused.

use std::sync::Arc;
use std::time::Duration;

use aws_secrets_csi_core::external::{
    self, CreationPolicy, ExternalError, Part, StoreAuth, StoreKind, StoreRef, SyncPlan,
};
use aws_secrets_csi_core::target_secret::{self, Refusal};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::DynamicObject;

use super::{Report, fix_for_fetch, fix_for_identity};
use crate::aws::AwsIdentity;
use crate::cluster::ClusterError;
use crate::controller::{self, Held, Kinds, Policies, Resolved, SyncError, Syncer};
use crate::fetch::{Fetcher, Priority, RateBudget, Sharing};
use crate::identity::{AgentEndpoints, Identities, PodIdentityAgent};
use crate::metrics::Metrics;

/// What names a remote ref and its region.
const REF_NAMES: &str = "remoteRef.key, remoteRef.version or the store's region";

/// How the walk is configured: the controller's own settings.
pub(super) struct Settings<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub class: &'a str,
    pub namespaced_stores_use_controller_identity: bool,
}

fn kind_name(kind: StoreKind) -> &'static str {
    match kind {
        StoreKind::SecretStore => "SecretStore",
        StoreKind::ClusterSecretStore => "ClusterSecretStore",
    }
}

/// `SecretStore ns/name` or `ClusterSecretStore name`.
fn store_label(ns: &str, r: &StoreRef) -> String {
    match r.kind {
        StoreKind::SecretStore => format!("SecretStore {ns}/{}", r.name),
        StoreKind::ClusterSecretStore => format!("ClusterSecretStore {}", r.name),
    }
}

pub(super) async fn walk(settings: &Settings<'_>, report: &mut Report) -> anyhow::Result<()> {
    let (ns, name) = (settings.namespace, settings.name);
    let es_id = format!("{ns}/{name}");
    let client = super::super::kube_client().await?;
    let kinds = match controller::served_kinds(&client).await {
        Ok(kinds) => kinds,
        Err(e) => {
            report.fail(
                &e.to_string(),
                "install the External Secrets CRDs (deploy/controller/crd-*.yaml, or `aws-secrets-csi crds`)",
            );
            return Ok(());
        }
    };

    // The ExternalSecret, read as the controller holds it.
    let api: Api<Held> = Api::namespaced_with(client.clone(), ns, &kinds.external_secret);
    let held = match api.get_opt(name).await {
        Ok(Some(held)) => held,
        Ok(None) => {
            report.fail(
                &format!("ExternalSecret {es_id} not found"),
                &format!("check the namespace and the name (kubectl get externalsecrets -n {ns})"),
            );
            return Ok(());
        }
        Err(e) => {
            report.fail(
                &format!("ExternalSecret {es_id}: {e}"),
                "use a kubeconfig that may get externalsecrets, secretstores, clustersecretstores, serviceaccounts, secrets and namespaces",
            );
            return Ok(());
        }
    };
    if let Some(refusal) = &held.refusal {
        report.fail(
            &format!("ExternalSecret {es_id}: spec: {refusal}"),
            "shorten the ExternalSecret (split it into several)",
        );
        return Ok(());
    }
    report.ok(&format!(
        "ExternalSecret {es_id} found ({})",
        kinds.external_secret.api_version
    ));
    let es = &held.object;
    let spec = es.data.get("spec").cloned().unwrap_or_default();
    let spec_fix = "correct the field as the message says (the controller refuses it the same way, in the ExternalSecret's status)";
    let own_ref = match external::store_ref(&spec) {
        Ok(r) => r,
        Err(e) => {
            report.fail(&format!("ExternalSecret {es_id}: {e}"), spec_fix);
            return Ok(());
        }
    };
    let source_refs = match external::source_stores(&spec) {
        Ok(refs) => refs,
        Err(e) => {
            report.fail(&format!("ExternalSecret {es_id}: {e}"), spec_fix);
            return Ok(());
        }
    };

    // The stores, read once each, then checked by the controller's own
    // resolve_store over caches holding just them.
    let mut refs = vec![own_ref.clone()];
    refs.extend(source_refs.iter().cloned());
    let (mut secret_stores, mut cluster_stores) = (Vec::new(), Vec::new());
    for r in &refs {
        let (resource, store_ns) = match r.kind {
            StoreKind::SecretStore => (&kinds.secret_store, Some(ns)),
            StoreKind::ClusterSecretStore => (&kinds.cluster_secret_store, None),
        };
        let api: Api<Held> = match store_ns {
            Some(n) => Api::namespaced_with(client.clone(), n, resource),
            None => Api::all_with(client.clone(), resource),
        };
        match api.get_opt(&r.name).await {
            Ok(Some(store)) => match r.kind {
                StoreKind::SecretStore => secret_stores.push(store),
                StoreKind::ClusterSecretStore => cluster_stores.push(store),
            },
            Ok(None) => {}
            Err(e) => {
                report.fail(
                    &format!("{}: cannot be read: {e}", store_label(ns, r)),
                    "use a kubeconfig that may get secretstores and clustersecretstores",
                );
                return Ok(());
            }
        }
    }
    let sdk = super::super::aws_config().await;
    let metrics = Arc::new(Metrics::new());
    let syncer = controller::read_only_syncer(
        client.clone(),
        Identities::new(
            sdk.clone(),
            PodIdentityAgent::new(
                AgentEndpoints::default(),
                Duration::from_secs(2),
                Duration::from_secs(2),
            ),
            metrics.clone(),
        ),
        Fetcher::new(sdk, metrics, Arc::new(RateBudget::new(&[]))),
        Kinds::clone(&kinds),
        settings.class.to_owned(),
        Policies {
            min_refresh: Duration::from_secs(10),
            namespaced_stores_use_controller_identity: settings
                .namespaced_stores_use_controller_identity,
        },
        secret_stores,
        cluster_stores,
    );
    let walk = Walk {
        syncer: &syncer,
        es,
        namespace: ns,
        es_id: &es_id,
        class: settings.class,
    };
    let Some(own) = walk.store(&own_ref, "spec.secretStoreRef", report).await else {
        return Ok(());
    };
    let mut parts = Vec::new();
    for r in &source_refs {
        if let Some(part) = walk.store(r, "a sourceRef.storeRef", report).await {
            parts.push((r.clone(), part));
        }
    }

    // The plan: every field the controller refuses, by its path.
    let plan = match external::sync_plan(name, &spec, &own.store) {
        Ok(plan) => plan,
        Err(e) => {
            report.fail(&format!("ExternalSecret {es_id}: {e}"), spec_fix);
            return Ok(());
        }
    };
    report.ok(&format!(
        "ExternalSecret {es_id}: planned: {} remote ref(s), {} find(s), target Secret {ns}/{}",
        plan.objects.objects.len(),
        plan.finds.len(),
        plan.target.name
    ));
    let mut entries = walk.reads(&plan, &own, report).await;
    for (r, part) in &parts {
        let label = store_label(ns, r);
        match external::sync_plan_part(name, &spec, &part.store, &Part::Store(r.clone())) {
            Ok(part_plan) => {
                report.ok(&format!(
                    "ExternalSecret {es_id}: entries read through {label}: {} remote ref(s), {} find(s)",
                    part_plan.objects.objects.len(),
                    part_plan.finds.len()
                ));
                let part_entries = walk.reads(&part_plan, part, report).await;
                entries = entries.zip(part_entries).map(|(mut a, b)| {
                    a.extend(b);
                    a
                });
            }
            Err(e) => {
                report.fail(&format!("ExternalSecret {es_id}: {e}"), spec_fix);
                entries = None;
            }
        }
    }
    if let Some(entries) = entries {
        walk.render(&plan, entries, report).await;
    }
    walk.target(&plan, report).await;
    Ok(())
}

struct Walk<'a> {
    syncer: &'a Syncer,
    es: &'a DynamicObject,
    namespace: &'a str,
    es_id: &'a str,
    class: &'a str,
}

impl Walk<'_> {
    /// One store, through the controller's `resolve_store`: each of its
    /// checks reported, in the order the controller makes them.
    async fn store(&self, r: &StoreRef, named_by: &str, report: &mut Report) -> Option<Resolved> {
        let ns = self.namespace;
        let label = store_label(ns, r);
        let kind = kind_name(r.kind);
        match self.syncer.resolve_store(ns, r).await {
            Ok(Some(resolved)) => {
                let s = &resolved.store;
                report.ok(&format!("{label} ({named_by}): exists"));
                report.ok(&format!(
                    "{label}: served by this controller (spec.controller {:?})",
                    self.class
                ));
                report.ok(&format!(
                    "{label}: valid ({:?} in {}), not held back (its status is not Ready=False)",
                    s.service, s.region
                ));
                if !s.conditions.is_empty() {
                    report.ok(&format!("{label}: its conditions admit namespace {ns}"));
                }
                Some(resolved)
            }
            Ok(None) => {
                report.fail(
                    &format!(
                        "{label} ({named_by}): served by another controller (its spec.controller is not {:?})",
                        self.class
                    ),
                    &format!(
                        "set the store's spec.controller to {:?}, or run diagnose with --controller-class set to the class of the controller that serves it",
                        self.class
                    ),
                );
                None
            }
            Err(SyncError::Cluster(ClusterError::NotFound { .. })) => {
                let fix = match r.kind {
                    StoreKind::SecretStore => format!(
                        "create SecretStore {} in namespace {ns}, or correct {named_by} (name, and kind: ClusterSecretStore for a cluster-wide store)",
                        r.name
                    ),
                    StoreKind::ClusterSecretStore => format!(
                        "create ClusterSecretStore {}, or correct {named_by} (name, and kind: SecretStore for a store of namespace {ns})",
                        r.name
                    ),
                };
                report.fail(&format!("{label} ({named_by}) not found"), &fix);
                None
            }
            Err(SyncError::Spec { source, .. }) => {
                report.fail(
                    &format!("{label} is not valid: {source}"),
                    &format!("correct the {kind} as the message says"),
                );
                None
            }
            Err(e @ SyncError::StoreNotReady { .. }) => {
                report.fail(
                    &e.to_string(),
                    &format!(
                        "correct the {kind} as its status says: the controller holds back the ExternalSecrets of a store whose Ready condition is False"
                    ),
                );
                None
            }
            Err(SyncError::Denied(why)) => {
                report.fail(
                    &format!("{label}: {why}"),
                    &format!(
                        "give namespace {ns} a label the ClusterSecretStore's spec.conditions select, or add it to their namespaces (or use a store that admits it)"
                    ),
                );
                None
            }
            Err(e) => {
                report.fail(
                    &format!("{label}: {e}"),
                    "use a kubeconfig that may get namespaces, and check that the API server can be reached",
                );
                None
            }
        }
    }

    /// The store's identity, each remote ref and each find, then the keys
    /// they make (property, decoding); None when a step failed.
    async fn reads(
        &self,
        plan: &SyncPlan,
        resolved: &Resolved,
        report: &mut Report,
    ) -> Option<external::EntryKeys> {
        let store = &resolved.store;
        let identity = self.identity(resolved, report).await?;
        let (identity, scope) = identity;
        let sharing = Sharing {
            scope: Some(scope),
            max_age: Duration::ZERO,
            priority: Priority::FirstMount,
        };
        let region = &plan.objects.region;
        let values = match self.syncer.values(self.es, plan, &identity, &sharing).await {
            Ok(values) => {
                for (i, (object, value)) in plan.objects.objects.iter().zip(&values).enumerate() {
                    let what = if plan.tags_of.contains(&i) {
                        "tags read"
                    } else {
                        "fetched"
                    };
                    match value {
                        Some(_) => {
                            report.ok(&format!("remote ref {} in {region}: {what}", object.name()))
                        }
                        None => report.warn(&format!(
                            "remote ref {} in {region}: not found; skipped under deletionPolicy {:?}",
                            object.name(),
                            plan.target.deletion
                        )),
                    }
                }
                values
            }
            Err(SyncError::Fetch(e)) => {
                for object in &plan.objects.objects {
                    match e.failures.iter().find(|f| f.object == object.name()) {
                        Some(failure) => report.fail(
                            &format!("remote ref {failure}"),
                            &fix_for_fetch(
                                failure.kind(),
                                object.object_type,
                                &failure.region,
                                REF_NAMES,
                            ),
                        ),
                        None => report.ok(&format!(
                            "remote ref {} in {region}: fetched",
                            object.name()
                        )),
                    }
                }
                return None;
            }
            Err(e) => {
                report.fail(&format!("remote refs: {e}"), "see the message");
                return None;
            }
        };
        let found = match self.syncer.find(plan, store, &identity, &sharing).await {
            Ok(found) => {
                for (index, find) in plan.finds.iter().enumerate() {
                    let n = found.iter().filter(|(i, _, _)| *i == index).count();
                    let by = match (&find.path, &find.name) {
                        (Some(p), _) => format!("path {p:?}"),
                        (None, Some(r)) => format!("name.regexp {:?}", r.as_str()),
                        (None, None) => "tags".into(),
                    };
                    report.ok(&format!(
                        "find #{index} ({by}) in {}: {n} secret(s) listed and fetched",
                        store.region
                    ));
                }
                found
            }
            Err(SyncError::Fetch(e)) => {
                for failure in &e.failures {
                    report.fail(
                        &format!("find: {failure}"),
                        &fix_for_fetch(failure.kind(), store.service, &failure.region, REF_NAMES),
                    );
                }
                return None;
            }
            Err(e) => {
                report.fail(&format!("find: {e}"), "see the message");
                return None;
            }
        };
        match external::provider_entries(plan, &values, &found) {
            Ok(entries) => {
                report.ok(&format!(
                    "ExternalSecret {}: property and decoding of every entry work",
                    self.es_id
                ));
                Some(entries)
            }
            Err(e) => {
                report.fail(
                    &format!("ExternalSecret {}: {e}", self.es_id),
                    &fix_for_entry(&e),
                );
                None
            }
        }
    }

    /// The store's credentials: jwt (role annotation, TokenRequest, STS),
    /// secretRef (the key Secret's keys) or none (the caller's own).
    async fn identity(
        &self,
        resolved: &Resolved,
        report: &mut Report,
    ) -> Option<(AwsIdentity, crate::aws::IdentityKey)> {
        let store = &resolved.store;
        let label = &resolved.store_id;
        match &store.auth {
            StoreAuth::Jwt {
                namespace,
                service_account,
                audience,
            } => {
                let sa = format!("ServiceAccount {namespace}/{service_account}");
                match self.syncer.role(namespace, service_account).await {
                    Ok(Some(role)) => report.ok(&format!(
                        "{sa} (the store's auth.jwt): role {role} (eks.amazonaws.com/role-arn)"
                    )),
                    Ok(None) => {
                        report.fail(
                            &format!("{sa} (the store's auth.jwt): no eks.amazonaws.com/role-arn annotation"),
                            "annotate the ServiceAccount with eks.amazonaws.com/role-arn: arn:aws:iam::<account>:role/<name>",
                        );
                        return None;
                    }
                    Err(e) => {
                        report.fail(
                            &format!("{sa} (the store's auth.jwt): {e}"),
                            "create the ServiceAccount, or correct the store's auth.jwt.serviceAccountRef",
                        );
                        return None;
                    }
                }
                if let Err(e) = self
                    .syncer
                    .token(namespace, service_account, audience)
                    .await
                {
                    report.fail(
                        &format!("token for {sa}: {e}"),
                        &format!(
                            "your Kubernetes user needs `create` on serviceaccounts/token in namespace {namespace} (the controller's role has it)"
                        ),
                    );
                    return None;
                }
                report.ok(&format!(
                    "token for {sa}, audience {audience} (TokenRequest)"
                ));
            }
            StoreAuth::Keys {
                access_key_id,
                secret_access_key,
                session_token,
            } => {
                let mut readable = true;
                for r in [Some(access_key_id), Some(secret_access_key), session_token.as_ref()]
                    .into_iter()
                    .flatten()
                {
                    // The value is read and dropped: only its presence shows.
                    match self.syncer.secret_key(r).await {
                        Ok(_) => report.ok(&format!(
                            "Secret {}/{} (the store's auth.secretRef): key {:?} readable",
                            r.namespace, r.name, r.key
                        )),
                        Err(e) => {
                            readable = false;
                            report.fail(
                                &format!("the store's auth.secretRef: {e}"),
                                &format!(
                                    "create Secret {}/{} with key {:?} holding the AWS key, or correct the store's auth.secretRef",
                                    r.namespace, r.name, r.key
                                ),
                            );
                        }
                    }
                }
                if !readable {
                    return None;
                }
            }
            StoreAuth::Controller => report.ok(&format!(
                "{label}: no auth: the controller's own AWS credentials; diagnose uses yours (AWS_PROFILE, the environment, the instance role), which may differ"
            )),
        }
        match self.syncer.identity(store, label, self.es_id).await {
            Ok(identity) => {
                match &store.auth {
                    StoreAuth::Jwt { .. } => report.ok(
                        "identity: STS AssumeRoleWithWebIdentity exchanged the token for credentials",
                    ),
                    _ if store.chain.is_some() => report.ok("identity: the store's roles assumed"),
                    _ => {}
                }
                Some(identity)
            }
            Err(SyncError::Identity(e)) => {
                report.fail(&format!("identity: {e}"), fix_for_identity(&e));
                None
            }
            Err(e) => {
                report.fail(&format!("identity: {e}"), "see the message");
                None
            }
        }
    }

    /// The Secret's data as the controller would write it (templates
    /// included); never shown, only its keys counted.
    async fn render(&self, plan: &SyncPlan, entries: external::EntryKeys, report: &mut Report) {
        let data = external::merge_entries(entries);
        if data.is_empty() {
            report.warn(&format!(
                "ExternalSecret {}: AWS has none of its secrets: deletionPolicy {:?} decides",
                self.es_id, plan.target.deletion
            ));
            return;
        }
        let sources = match self.syncer.template_sources(self.namespace, plan).await {
            Ok(sources) => sources,
            Err(e) => {
                report.fail(
                    &e.to_string(),
                    "create it, or correct spec.target.template.templateFrom",
                );
                return;
            }
        };
        match external::render_target(plan, data, &sources) {
            Ok(rendered) => report.ok(&format!(
                "Secret {}/{}: {} key(s) would be written",
                self.namespace,
                plan.target.name,
                rendered.data.len()
            )),
            Err(e) => report.fail(
                &format!("ExternalSecret {}: {e}", self.es_id),
                "correct the template as the message says",
            ),
        }
    }

    /// The target Secret: its policies, whether it exists, who owns it,
    /// and whether the controller may write it (`target_secret::may_write`).
    async fn target(&self, plan: &SyncPlan, report: &mut Report) {
        let ns = self.namespace;
        let target = &plan.target;
        let id = format!("Secret {ns}/{}", target.name);
        report.ok(&format!(
            "{id} (spec.target): creationPolicy {:?}, deletionPolicy {:?}",
            target.creation, target.deletion
        ));
        if target.creation == CreationPolicy::None {
            report.ok(&format!("{id}: creationPolicy None: nothing is written"));
            return;
        }
        let existing = match Api::<Secret>::namespaced(self.syncer.client.clone(), ns)
            .get_opt(&target.name)
            .await
        {
            Ok(existing) => existing,
            Err(e) => {
                report.fail(
                    &format!("{id}: cannot be read: {e}"),
                    "use a kubeconfig that may get secrets in the namespace",
                );
                return;
            }
        };
        let Some(secret) = existing else {
            if target.creation == CreationPolicy::Merge {
                report.warn(&format!(
                    "{id} does not exist: creationPolicy Merge only adds keys to an existing Secret (the ExternalSecret reports SecretMissing until it exists)"
                ));
            } else {
                report.ok(&format!(
                    "{id} does not exist: the controller would create it"
                ));
            }
            return;
        };
        let es_uid = self.es.metadata.uid.as_deref().unwrap_or_default();
        let existing = controller::existing_of(&secret);
        let owner = match &existing.controller {
            Some(c) if c.uid == es_uid => "owned by this ExternalSecret".to_owned(),
            Some(c) if c.kind == "ExternalSecret" => {
                format!("owned by another ExternalSecret, {ns}/{}", c.name)
            }
            Some(c) => format!("controlled by {} {}", c.kind, c.name),
            None if existing.managed => {
                "made by an ExternalSecret (label reconcile.external-secrets.io/managed=true), owned by none".to_owned()
            }
            None => "made by hand or another tool (no owner, no managed label)".to_owned(),
        };
        let opted_in = if existing.writable {
            format!(", opted in by {}=true", target_secret::WRITABLE_LABEL)
        } else {
            String::new()
        };
        report.ok(&format!("{id} exists, {owner}{opted_in}"));
        let Some(policy) = target.creation.write_policy(true) else {
            return;
        };
        match target_secret::may_write(&existing, policy, es_uid) {
            Ok(()) => report.ok(&format!(
                "{id}: the controller may write it (creationPolicy {:?})",
                target.creation
            )),
            Err(refusal) => {
                let fix = match &refusal {
                    Refusal::Type(_) => {
                        "choose another spec.target.name: a Secret of this type is never written"
                            .to_owned()
                    }
                    Refusal::OwnedByExternalSecret(other) => format!(
                        "choose another spec.target.name, or set creationPolicy Merge to add keys beside ExternalSecret {ns}/{other}'s"
                    ),
                    Refusal::OwnedByOther { .. } | Refusal::NotManaged => format!(
                        "if the controller may write it: kubectl label secret -n {ns} {} {}=true (or choose another spec.target.name)",
                        target.name,
                        target_secret::WRITABLE_LABEL
                    ),
                };
                report.fail(&format!("{id} {refusal}"), &fix);
            }
        }
        if secret.immutable == Some(true) && !target.immutable {
            report.warn(&format!(
                "{id} is immutable: a change of its data will fail until it is deleted"
            ));
        }
    }
}

/// The fix for an entry whose value cannot be made into keys.
fn fix_for_entry(e: &ExternalError) -> String {
    match e {
        ExternalError::PropertyNotFound { .. } => {
            "correct remoteRef.property: the secret's JSON has no such field (a dot goes into nested objects)".into()
        }
        ExternalError::NotJson { .. } => {
            "remove remoteRef.property (the whole value is used), or store the secret as JSON".into()
        }
        ExternalError::Decoding { .. } => {
            "set decodingStrategy to the encoding the value is in (None when it is not encoded)".into()
        }
        ExternalError::NullByte { .. } => {
            "set nullBytePolicy to Ignore, or store the value without NUL bytes".into()
        }
        _ => "correct the ExternalSecret as the message says".into(),
    }
}
