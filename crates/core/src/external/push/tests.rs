//! Unit tests of the push groundwork. Cases named after External Secrets
//! v2.9.0 tests (tests/conformance/eso-v2.9.0/push/*.yaml) reproduce the
//! decision those cases pin down; the rest are this module's own rules
//! and hostile input.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::api::{self, PushSecretSpec, PushSecretStatus, SyncedPushSecrets, UpdatePolicy};
use super::guard::{self, *};
use super::metadata::{self, *};
use super::names;
use super::plan::{self, *};
use super::*;
use crate::external::api::{AwsService, SecretsManagerSettings, StoreKindName};
use crate::secret::SecretBytes;

const SECRET: &str = "hunter2-very-secret";

fn spec(v: Value) -> PushSecretSpec {
    api::parse(&v, "spec").expect("spec parses")
}

/// ESO's controller suite's default PushSecret, with `extra` merged over
/// its spec.
fn ps(extra: Value) -> PushSecretSpec {
    let mut base = json!({
        "secretStoreRefs": [{"name": "test-store", "kind": "SecretStore"}],
        "selector": {"secret": {"name": "test-secret"}},
        "data": [{"match": {"secretKey": "key", "remoteRef": {"remoteKey": "path/to/key"}}}],
    });
    if let (Value::Object(b), Value::Object(e)) = (&mut base, extra) {
        for (k, v) in e {
            if v.is_null() {
                b.remove(&k);
            } else {
                b.insert(k, v);
            }
        }
    }
    spec(base)
}

fn store(name: &str) -> PlanStore {
    PlanStore {
        kind: StoreKindName::SecretStore,
        name: name.to_owned(),
        labels: BTreeMap::new(),
        service: AwsService::SecretsManager,
        prefix: String::new(),
        region: "eu-west-2".into(),
    }
}

fn ssm_store(name: &str) -> PlanStore {
    PlanStore {
        service: AwsService::ParameterStore,
        ..store(name)
    }
}

fn src(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
        .collect()
}

fn no_transform(_: &str, _: &str) -> Result<String, String> {
    Err("no template engine".into())
}

/// Stands in for the template engine: `{{ .value | upper }}` and
/// `{{ .value }}`.
fn fake_transform(template: &str, key: &str) -> Result<String, String> {
    Ok(template
        .replace("{{ .value | upper }}", &key.to_uppercase())
        .replace("{{ .value }}", key))
}

fn run(
    spec: &PushSecretSpec,
    source: &BTreeMap<String, Vec<u8>>,
    stores: &[PlanStore],
) -> Result<PushPlan, PushError> {
    plan::plan(
        spec,
        &PushSecretStatus::default(),
        source,
        stores,
        &fake_transform,
    )
}

/// The plan's status map as `{store: {statusKey: secretKey}}`, as the
/// conformance cases write `synced`.
fn synced(p: &PushPlan) -> BTreeMap<String, BTreeMap<String, String>> {
    p.synced()
        .into_iter()
        .map(|(s, m)| {
            (
                s,
                m.into_iter()
                    .map(|(k, d)| (k, d.match_.secret_key.unwrap_or_default()))
                    .collect(),
            )
        })
        .collect()
}

fn map(pairs: &[(&str, &[(&str, &str)])]) -> BTreeMap<String, BTreeMap<String, String>> {
    pairs
        .iter()
        .map(|(s, m)| {
            (
                (*s).to_owned(),
                m.iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            )
        })
        .collect()
}

fn values(p: &PushPlan) -> Vec<(String, String)> {
    p.entries
        .iter()
        .map(|e| {
            (
                e.remote_name.clone(),
                String::from_utf8(e.value.expose().to_vec()).unwrap(),
            )
        })
        .collect()
}

fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn meta(spec: Value) -> Value {
    json!({"apiVersion": "kubernetes.external-secrets.io/v1alpha1", "kind": "PushSecretMetadata", "spec": spec})
}

// ---------------------------------------------------------------- api

#[test]
fn full_spec_reads_and_defaults_apply() {
    let s = spec(json!({
        "refreshInterval": "1h0m0s",
        "updatePolicy": "IfNotExists",
        "deletionPolicy": "Delete",
        "secretStoreRefs": [
            {"name": "a", "kind": "SecretStore"},
            {"labelSelector": {"matchLabels": {"env": "prod"}}, "kind": "ClusterSecretStore"}
        ],
        "selector": {"secret": {"name": "src"}},
        "data": [{
            "conversionStrategy": "ReverseUnicode",
            "match": {"secretKey": "k", "remoteRef": {"remoteKey": "r", "property": "p"}},
            "metadata": meta(json!({"secretPushFormat": "string"}))
        }],
        "dataTo": [{
            "storeRef": {"name": "a"},
            "match": {"regexp": "^db-"},
            "rewrite": [{"regexp": {"source": "^db-", "target": "app/"}}, {"transform": {"template": "{{ .value }}"}}],
            "conversionStrategy": "None"
        }],
        "template": {"engineVersion": "v2", "data": {"k": "{{ .k }}"}}
    }));
    api::validate_spec(&s).expect("valid");
    assert_eq!(s.update_policy(), UpdatePolicy::IfNotExists);
    assert_eq!(s.deletion_policy(), api::PushDeletionPolicy::Delete);
    assert_eq!(s.refresh_interval().unwrap().as_secs(), 3600);
    assert_eq!(s.data[0].status_key(), "r/p");
    let d = ps(json!({}));
    assert_eq!(d.update_policy(), UpdatePolicy::Replace);
    assert_eq!(d.deletion_policy(), api::PushDeletionPolicy::None);
    assert_eq!(d.refresh_interval().unwrap(), api::DEFAULT_REFRESH);
    assert_eq!(
        ps(json!({"refreshInterval": "0"}))
            .refresh_interval()
            .unwrap()
            .as_secs(),
        0
    );
    let err = ps(json!({"refreshInterval": "-1s"}))
        .refresh_interval()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "spec.refreshInterval: must not be negative"
    );
    assert!(
        ps(json!({"refreshInterval": "9000h"}))
            .refresh_interval()
            .is_err()
    );
    assert!(
        ps(json!({"refreshInterval": "soon"}))
            .refresh_interval()
            .is_err()
    );
}

#[test]
fn unknown_fields_and_bad_values_are_refused_by_path() {
    let err = api::parse::<PushSecretSpec>(
        &json!({"secretStoreRefs": [], "selector": {}, "data": [{"match": {"remoteRef": {"remoteKey": "x", "version": "1"}}}]}),
        "spec",
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("spec.data[0].match.remoteRef.version: not supported"),
        "{err}"
    );
    let err = api::parse::<PushSecretSpec>(
        &json!({"secretStoreRefs": [], "selector": {}, "updatePolicy": "Sometimes"}),
        "spec",
    )
    .unwrap_err();
    assert!(err.to_string().starts_with("spec.updatePolicy:"), "{err}");
    let err = api::parse::<PushSecretSpec>(&json!({"secretStoreRefs": []}), "spec").unwrap_err();
    assert_eq!(err.to_string(), "spec.selector is required");
}

#[test]
fn cel_rules_and_bounds() {
    let check = |extra: Value| api::validate_spec(&ps(extra)).map_err(|e| e.to_string());
    assert_eq!(
        check(json!({"selector": {}})).unwrap_err(),
        "spec.selector: exactly one of secret or generatorRef is required"
    );
    assert!(
        check(json!({"selector": {"secret": {"name": "a"}, "generatorRef": {"kind": "Fake", "name": "g"}}}))
            .is_err()
    );
    assert!(check(json!({"selector": {"secret": {}}})).is_err());
    assert!(check(json!({"selector": {"secret": {"name": "Not_A_Name"}}})).is_err());
    assert!(
        check(json!({"selector": {"secret": {"selector": {"matchLabels": {"a": "b"}}}}})).is_ok()
    );
    assert!(check(json!({"selector": {"generatorRef": {"apiVersion": "generators.external-secrets.io/v1alpha1", "kind": "Fake", "name": "test"}}})).is_ok());
    assert_eq!(
        check(json!({"secretStoreRefs": []})).unwrap_err(),
        "spec.secretStoreRefs is required"
    );
    assert!(check(json!({"secretStoreRefs": [{"kind": "SecretStore"}]})).is_err());
    assert!(
        check(json!({"secretStoreRefs": [{"name": "a", "labelSelector": {}}]})).is_err(),
        "name and labelSelector together"
    );
    // DataToStoreRefNotInList / DataToNamedStoreRefWithLabelSelectorRefs
    assert_eq!(
        check(json!({"dataTo": [{"storeRef": {"name": "non-existent-store"}}]})).unwrap_err(),
        "spec.dataTo[0].storeRef.name: storeRef \"non-existent-store\" not found in secretStoreRefs"
    );
    assert!(
        check(json!({
            "secretStoreRefs": [{"labelSelector": {"matchLabels": {"env": "prod"}}}],
            "dataTo": [{"storeRef": {"name": "totally-nonexistent-store"}}]
        }))
        .unwrap_err()
        .contains("not found in secretStoreRefs")
    );
    // Kind counts: a ClusterSecretStore of that name is not the store.
    assert!(
        check(
            json!({"dataTo": [{"storeRef": {"name": "test-store", "kind": "ClusterSecretStore"}}]})
        )
        .is_err()
    );
    assert_eq!(
        check(json!({"dataTo": [{}]})).unwrap_err(),
        "spec.dataTo[0].storeRef is required"
    );
    // AdmissionRejectsRemoteKeyWithRewrite
    assert!(
        check(json!({"dataTo": [{
            "storeRef": {"name": "test-store"}, "remoteKey": "my-bundle",
            "rewrite": [{"regexp": {"source": "^", "target": "prefix/"}}]
        }]}))
        .unwrap_err()
        .contains("remoteKey and rewrite are mutually exclusive")
    );
    assert!(
        check(json!({"dataTo": [{"storeRef": {"name": "test-store"}, "rewrite": [{}]}]}))
            .unwrap_err()
            .contains("exactly one of regexp or transform must be set")
    );
    // DataToInvalidRegex
    assert!(check(json!({"dataTo": [{"storeRef": {"name": "test-store"}, "match": {"regexp": "[invalid(regex"}}]}))
        .unwrap_err()
        .starts_with("spec.dataTo[0].match.regexp: failed to compile regexp pattern"));
    assert!(
        check(json!({"data": [{"match": {"remoteRef": {"remoteKey": ""}}}]}))
            .unwrap_err()
            .contains("remoteKey is required")
    );
    assert!(
        check(json!({"data": [{"match": {"remoteRef": {"remoteKey": "a", "property": ""}}}]}))
            .is_err()
    );
    // Bounds.
    let many: Vec<Value> = (0..=api::MAX_DATA)
        .map(|i| json!({"match": {"remoteRef": {"remoteKey": format!("k{i}")}}}))
        .collect();
    assert!(
        check(json!({"data": many}))
            .unwrap_err()
            .contains("more than 500")
    );
    let huge_re = "a".repeat(5000);
    assert!(
        check(
            json!({"dataTo": [{"storeRef": {"name": "test-store"}, "match": {"regexp": huge_re}}]})
        )
        .is_err()
    );
}

#[test]
fn status_reads_as_eso_writes_it() {
    let status: PushSecretStatus = serde_json::from_value(json!({
        "refreshTime": "2026-01-01T00:00:00Z",
        "syncedResourceVersion": "1-abc",
        "syncedPushSecrets": {
            "SecretStore/test-store": {
                "path/to/key": {"match": {"secretKey": "key", "remoteRef": {"remoteKey": "path/to/key"}}, "conversionStrategy": "None"},
                "shared/field1": {"match": {"secretKey": "a", "remoteRef": {"remoteKey": "shared", "property": "field1"}}}
            }
        },
        "conditions": [{"type": "Ready", "status": "True", "reason": "Synced", "message": "PushSecret synced successfully", "lastTransitionTime": "2026-01-01T00:00:00Z"}]
    }))
    .expect("status");
    let entries = &status.synced_push_secrets["SecretStore/test-store"];
    assert_eq!(entries["shared/field1"].status_key(), "shared/field1");
    let back = serde_json::to_value(&status).unwrap();
    assert_eq!(
        back["syncedPushSecrets"]["SecretStore/test-store"]["path/to/key"]["conversionStrategy"],
        "None"
    );
    // A null map reads as empty.
    let empty: PushSecretStatus =
        serde_json::from_value(json!({"syncedPushSecrets": null})).unwrap();
    assert!(empty.synced_push_secrets.is_empty());
}

#[test]
fn cluster_push_secret() {
    let s: api::ClusterPushSecretSpec = api::parse(
        &json!({
            "pushSecretSpec": {
                "secretStoreRefs": [{"name": "test-store", "kind": "SecretStore"}],
                "selector": {"secret": {"name": "test-secret"}}
            },
            "namespaceSelectors": [{"matchLabels": {"kubernetes.io/metadata.name": "a"}}],
            "refreshTime": "10s",
            "pushSecretMetadata": {"labels": {"l": "v"}, "annotations": {"a": "v"}}
        }),
        "spec",
    )
    .unwrap();
    api::validate_cluster_spec(&s).unwrap();
    assert_eq!(s.push_secret_name("my-cps"), "my-cps");
    assert_eq!(s.refresh_time().unwrap().as_secs(), 10);
    let mut named = s.clone();
    named.push_secret_name = Some("other".into());
    assert_eq!(named.push_secret_name("my-cps"), "other");
    named.push_secret_name = Some("Bad Name".into());
    assert!(
        api::validate_cluster_spec(&named)
            .unwrap_err()
            .to_string()
            .starts_with("spec.pushSecretName")
    );
    let mut bad = s.clone();
    bad.push_secret_spec.selector = Default::default();
    assert_eq!(
        api::validate_cluster_spec(&bad).unwrap_err().to_string(),
        "spec.pushSecretSpec.selector: exactly one of secret or generatorRef is required"
    );
    let status: api::ClusterPushSecretStatus = serde_json::from_value(json!({
        "pushSecretName": "my-cps",
        "provisionedNamespaces": ["a"],
        "failedNamespaces": [{"namespace": "b", "reason": "exists"}]
    }))
    .unwrap();
    assert_eq!(status.failed_namespaces[0].namespace, "b");
    let err = api::parse::<api::ClusterPushSecretSpec>(
        &json!({"pushSecretSpec": {"selector": {}}, "namespaces": ["a"]}),
        "spec",
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("spec.namespaces: not supported"),
        "{err}"
    );
}

#[test]
fn schemas_generate_with_free_form_metadata() {
    let schema = serde_json::to_value(schemars::schema_for!(PushSecretSpec)).unwrap();
    let text = schema.to_string();
    assert!(
        text.contains("x-kubernetes-preserve-unknown-fields"),
        "{text}"
    );
    let _ = schemars::schema_for!(api::ClusterPushSecretSpec);
    let _ = schemars::schema_for!(PushSecretStatus);
    let _ = schemars::schema_for!(api::ClusterPushSecretStatus);
    let _ = schemars::schema_for!(metadata::SecretsManagerMetadataSpec);
    let _ = schemars::schema_for!(metadata::ParameterStoreMetadataSpec);
}

// ----------------------------------------------------------- metadata

#[test]
fn secrets_manager_metadata_defaults() {
    let m = metadata::secrets_manager(None, "spec.data[0].metadata").unwrap();
    assert_eq!(m.format, SecretPushFormat::Binary);
    assert_eq!(m.description, "secret 'managed-by:external-secrets'");
    assert_eq!(m.kms_key_id, "alias/aws/secretsmanager");
    assert_eq!(m.tags, tags(&[("managed-by", "external-secrets")]));
    assert!(!m.tags_named);
    assert_eq!(m.resource_policy, None);
    assert_eq!(m.replication_locations, None);
    // Empty strings are defaults too (Go's zero values).
    let m = metadata::secrets_manager(
        Some(&meta(
            json!({"secretPushFormat": "", "description": "", "kmsKeyId": ""}),
        )),
        "m",
    )
    .unwrap();
    assert_eq!(m.format, SecretPushFormat::Binary);
    assert_eq!(m.kms_key_id, "alias/aws/secretsmanager");
    // `spec: null` and no spec: every default.
    let m2 = metadata::secrets_manager(
        Some(&json!({"apiVersion": "kubernetes.external-secrets.io/v1alpha1", "kind": "PushSecretMetadata", "spec": null})),
        "m",
    )
    .unwrap();
    assert_eq!(m, m2);
}

#[test]
fn secrets_manager_metadata_fields() {
    let m = metadata::secrets_manager(
        Some(&meta(json!({
            "secretPushFormat": "string",
            "kmsKeyID": "bb123123-b2b0-4f60-ac3a-44a13f0e6b6c",
            "description": "this is a description",
            "tags": {"env": "sandbox"},
            "resourcePolicy": {"blockPublicPolicy": true, "policySourceRef": {"kind": "ConfigMap", "name": "resource-policy", "key": "policy.json"}},
            "replicationLocations": ["eu-north-1", "eu-central-1"]
        }))),
        "spec.data[0].metadata",
    )
    .unwrap();
    assert_eq!(m.format, SecretPushFormat::String);
    assert_eq!(m.kms_key_id, "bb123123-b2b0-4f60-ac3a-44a13f0e6b6c");
    assert_eq!(
        m.tags,
        tags(&[("env", "sandbox"), ("managed-by", "external-secrets")])
    );
    assert!(m.tags_named);
    assert_eq!(
        m.resource_policy,
        Some(ResourcePolicy {
            block_public_policy: Some(true),
            kind: PolicySourceKind::ConfigMap,
            name: "resource-policy".into(),
            key: "policy.json".into(),
        })
    );
    assert_eq!(
        m.replication_locations.as_deref(),
        Some(&["eu-north-1".to_owned(), "eu-central-1".to_owned()][..])
    );
    // Explicitly empty: replicas to remove; null: left alone.
    let empty =
        metadata::secrets_manager(Some(&meta(json!({"replicationLocations": []}))), "m").unwrap();
    assert_eq!(empty.replication_locations, Some(vec![]));
    let null =
        metadata::secrets_manager(Some(&meta(json!({"replicationLocations": null}))), "m").unwrap();
    assert_eq!(null.replication_locations, None);
}

#[test]
fn metadata_field_names_fold_like_go() {
    for name in ["kmsKeyId", "kmsKeyID", "KMSKEYID", "kmskeyid"] {
        let m = metadata::secrets_manager(Some(&meta(json!({name: "k1"}))), "m").unwrap();
        assert_eq!(m.kms_key_id, "k1", "{name}");
    }
    let m = metadata::parameter_store(
        Some(&meta(
            json!({"kmsKeyId": "k2", "SecretType": "SecureString"}),
        )),
        "m",
    )
    .unwrap();
    assert_eq!(m.kms_key_id, "k2");
    assert_eq!(m.secret_type, ParameterType::SecureString);
    // The Kelvin sign folds to K, as in Go.
    let m = metadata::secrets_manager(Some(&meta(json!({"\u{212a}msKeyId": "k3"}))), "m").unwrap();
    assert_eq!(m.kms_key_id, "k3");
    let err = metadata::secrets_manager(
        Some(&meta(json!({"kmsKeyId": "a", "kmsKeyID": "b"}))),
        "spec.data[0].metadata",
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("spec.data[0].metadata.spec.kmsKeyId: given twice"),
        "{err}"
    );
    // Envelope and nested fields fold too; map keys (tags) do not.
    let m = metadata::secrets_manager(
        Some(&json!({"APIVERSION": "kubernetes.external-secrets.io/v1alpha1", "Kind": "PushSecretMetadata",
            "Spec": {"Tags": {"Env": "x"}, "ResourcePolicy": {"PolicySourceRef": {"KIND": "Secret", "name": "p", "key": "k"}}}})),
        "m",
    )
    .unwrap();
    assert!(m.tags.contains_key("Env"));
    assert_eq!(m.resource_policy.unwrap().kind, PolicySourceKind::Secret);
}

#[test]
fn metadata_refusals_name_their_path() {
    let sm = |v: Value| {
        metadata::secrets_manager(Some(&v), "spec.data[0].metadata")
            .unwrap_err()
            .to_string()
    };
    // PSInvalidMetadata: an unknown field, before apiVersion is checked.
    assert_eq!(
        sm(json!({"fakeMetadataKey": ""})),
        "spec.data[0].metadata: unknown field \"fakeMetadataKey\""
    );
    assert_eq!(
        sm(meta(json!({"bogus": 1}))),
        "spec.data[0].metadata.spec: unknown field \"bogus\""
    );
    assert!(
        sm(json!({"apiVersion": "v1", "kind": "PushSecretMetadata"}))
            .contains("unexpected apiVersion")
    );
    assert!(
        sm(json!({"apiVersion": "kubernetes.external-secrets.io/v1alpha1", "kind": "Other"}))
            .contains("unexpected kind")
    );
    assert!(sm(json!("string")).contains("must be an object"));
    assert!(sm(meta(json!({"secretPushFormat": "text"}))).contains("invalid secret push format"));
    assert!(sm(meta(json!({"tags": {"a": 1}}))).starts_with("spec.data[0].metadata.spec.tags"));
    // The guard's tag cannot come from metadata.
    assert_eq!(
        sm(meta(json!({"tags": {"managed-by": "someone-else"}}))),
        "spec.data[0].metadata.spec.tags[\"managed-by\"]: Cannot specify a 'managed-by' tag: it marks what this controller manages and is set by it"
    );
    assert!(
        sm(meta(json!({"tags": {"managed-by": "external-secrets"}})))
            .contains("Cannot specify a 'managed-by' tag")
    );
    assert!(sm(meta(json!({"tags": {"AWS:x": "y"}}))).contains("aws:"));
    assert!(sm(meta(json!({"tags": {"": "y"}}))).contains("must not be empty"));
    assert!(sm(meta(json!({"tags": {"k": "v\u{0}"}}))).contains("tags hold"));
    assert!(sm(meta(json!({"tags": {"k".repeat(129): "v"}}))).contains("over AWS's limit of 128"));
    let many: serde_json::Map<String, Value> =
        (0..50).map(|i| (format!("t{i}"), json!("v"))).collect();
    assert!(sm(meta(json!({"tags": many}))).contains("over AWS's limit of 50"));
    assert!(sm(meta(json!({"description": "d".repeat(2049)}))).contains("2049 characters"));
    assert!(
        sm(meta(json!({"resourcePolicy": {"blockPublicPolicy": true}})))
            .ends_with("policySourceRef is required")
    );
    assert!(
        sm(meta(
            json!({"resourcePolicy": {"policySourceRef": {"kind": "Pod", "name": "a", "key": "b"}}})
        ))
        .contains("unsupported PolicySourceRef kind")
    );
    assert!(sm(meta(json!({"resourcePolicy": {"policySourceRef": {"kind": "Secret", "name": "../x", "key": "b"}}})))
        .contains("policySourceRef.name"));
    assert!(sm(meta(json!({"resourcePolicy": {"policySourceRef": {"kind": "Secret", "name": "x", "key": "a/b"}}})))
        .contains("policySourceRef.key"));
    assert!(
        sm(meta(
            json!({"replicationLocations": ["eu-north-1", "eu-north-1"]})
        ))
        .contains("given twice")
    );
    assert!(
        sm(meta(json!({"replicationLocations": ["EU North"]}))).contains("replicationLocations[0]")
    );
}

#[test]
fn parameter_store_metadata() {
    let m = metadata::parameter_store(None, "m").unwrap();
    assert_eq!(m.secret_type, ParameterType::String);
    assert_eq!(m.kms_key_id, "alias/aws/ssm");
    assert_eq!(m.tier, Tier::Standard);
    assert_eq!(m.policies, None);
    assert!(!m.encode_as_decoded);
    assert_eq!(m.description, "secret 'managed-by:external-secrets'");
    assert_eq!(m.tags, tags(&[("managed-by", "external-secrets")]));
    let m = metadata::parameter_store(
        Some(&meta(json!({
            "secretType": "SecureString",
            "kmsKeyID": "arn:aws:kms:sa-east-1:00000000000:key/bb123123-b2b0-4f60-ac3a-44a13f0e6b6c",
            "tier": {"type": "Advanced", "policies": [{"type": "Expiration", "version": "1.0", "attributes": {"timestamp": "2099-12-02T21:34:33.000Z"}}]},
            "encodeAsDecoded": true,
            "tags": {"env": "sandbox"}
        }))),
        "m",
    )
    .unwrap();
    assert_eq!(m.tier, Tier::Advanced);
    assert!(m.policies.unwrap().starts_with("[{"));
    assert!(m.encode_as_decoded);
    let it = metadata::parameter_store(
        Some(&meta(json!({"tier": {"type": "Intelligent-Tiering"}}))),
        "m",
    )
    .unwrap();
    assert_eq!(it.tier, Tier::IntelligentTiering);
    let err = |v: Value| {
        metadata::parameter_store(Some(&meta(v)), "spec.data[1].metadata")
            .unwrap_err()
            .to_string()
    };
    assert!(
        err(json!({"secretType": "Binary"})).starts_with("spec.data[1].metadata.spec.secretType")
    );
    assert!(
        err(json!({"tier": {"type": "Premium"}}))
            .starts_with("spec.data[1].metadata.spec.tier.type")
    );
    assert!(err(json!({"tier": {"policies": []}})).contains("tier Advanced only"));
    assert!(
        err(json!({"tags": {"managed-by": "x"}})).contains("Cannot specify a 'managed-by' tag")
    );
    assert!(
        err(json!({"secretPushFormat": "string"})).contains("unknown field \"secretPushFormat\"")
    );
    assert!(err(json!({"kmsKeyID": "k".repeat(257)})).contains("kmsKeyID"));
    assert!(err(json!({"description": "d".repeat(1025)})).contains("1025"));
}

// -------------------------------------------------------------- names

#[test]
fn secrets_manager_names() {
    let sm = |prefix: &str, key: &str| {
        names::remote_name(
            AwsService::SecretsManager,
            prefix,
            key,
            "eu-west-2",
            "spec.data[0].match.remoteRef.remoteKey",
        )
    };
    assert_eq!(
        sm("team/", "db/pass+1=@x.y_z-").unwrap(),
        "team/db/pass+1=@x.y_z-"
    );
    assert_eq!(
        sm("", "").unwrap_err().to_string(),
        "spec.data[0].match.remoteRef.remoteKey is required"
    );
    for bad in [
        "a b",
        "a:b",
        "arn:aws:secretsmanager:eu-west-2:123456789012:secret:other-AbCdEf",
        "ä",
        "a\nb",
        "a*",
    ] {
        let e = sm("", bad).unwrap_err().to_string();
        assert!(
            e.starts_with("spec.data[0].match.remoteRef.remoteKey: "),
            "{bad}: {e}"
        );
    }
    // `..` and `.` segments, with or without a prefix.
    for bad in ["../other-team/db", "a/../b", "./x", "..", "x/."] {
        assert!(
            sm("team-a/", bad)
                .unwrap_err()
                .to_string()
                .contains("'..' path segment"),
            "{bad}"
        );
    }
    assert!(sm("", "a..b").is_ok(), "dots inside a segment are a name");
    assert!(sm("", &"a".repeat(512)).is_ok());
    let e = sm("p/", &"a".repeat(511)).unwrap_err().to_string();
    assert!(e.contains("at most 512"), "{e}");
    // The prefix's characters count: its fault is named.
    let e = sm("bad prefix/", "x").unwrap_err().to_string();
    assert!(e.contains("with the store's prefix"), "{e}");
    // Huge names are quoted cut.
    let e = sm("", &format!("{}:", "a".repeat(100_000)))
        .unwrap_err()
        .to_string();
    assert!(e.len() < 400, "{}", e.len());
}

#[test]
fn parameter_store_names() {
    let ssm = |prefix: &str, key: &str| {
        names::remote_name(AwsService::ParameterStore, prefix, key, "eu-west-2", "at")
    };
    assert_eq!(ssm("", "/team/db/pass").unwrap(), "/team/db/pass");
    assert_eq!(
        ssm("/p/test/this/thing/", "fake-key").unwrap(),
        "/p/test/this/thing/fake-key"
    );
    assert!(ssm("", "plain_name.v-1").is_ok());
    for bad in [
        "ssm-fake-key",
        "SSM-x",
        "awsTestParameter",
        "/aws/testparam1",
        "/Ssm/x",
        "a/b",
        "/a//b",
        "/a/",
        "/a/../b",
        "/a b",
        "/a+b",
        "/a@b",
    ] {
        assert!(ssm("", bad).is_err(), "{bad}");
    }
    let deep = format!(
        "/{}",
        (1..=16)
            .map(|i| format!("l{i}"))
            .collect::<Vec<_>>()
            .join("/")
    );
    assert!(
        ssm("", &deep)
            .unwrap_err()
            .to_string()
            .contains("at most 15 levels")
    );
    let ok_deep = format!(
        "/{}",
        (1..=15)
            .map(|i| format!("l{i}"))
            .collect::<Vec<_>>()
            .join("/")
    );
    assert!(ssm("", &ok_deep).is_ok());
    // 1011 with the ARN: arn:aws:ssm:eu-west-2:123456789012:parameter = 44.
    let fits = format!("/{}", "a".repeat(1011 - 44 - 1));
    assert!(ssm("", &fits).is_ok());
    let over = format!("/{}", "a".repeat(1011 - 44));
    assert!(
        ssm("", &over)
            .unwrap_err()
            .to_string()
            .contains("with its ARN")
    );
    // A longer partition and region leave less room.
    assert!(
        names::remote_name(AwsService::ParameterStore, "", &fits, "us-gov-west-1", "at").is_err()
    );
    assert_eq!(names::ssm_identity("/TestParam1"), "TestParam1");
    assert_eq!(names::ssm_identity("/a/b"), "/a/b");
    assert!(names::remote_name(AwsService::CertificateManager, "", "x", "r", "at").is_err());
}

// ------------------------------------------------------------ planner

#[test]
fn sync() {
    // "should sync"
    let p = run(
        &ps(json!({})),
        &src(&[("key", "value")]),
        &[store("test-store")],
    )
    .unwrap();
    assert_eq!(values(&p), vec![("path/to/key".into(), "value".into())]);
    assert_eq!(
        synced(&p),
        map(&[("SecretStore/test-store", &[("path/to/key", "key")])])
    );
    assert_eq!(p.stop, None);
    assert!(p.deletions.is_empty());
    let e = &p.entries[0];
    assert_eq!(e.at, "spec.data[0]");
    assert_eq!(e.source_key.as_deref(), Some("key"));
    assert!(matches!(e.metadata, PushMetadata::SecretsManager(_)));
}

#[test]
fn whole_secret_as_json() {
    // SMSetWithoutSecretKey, PSWholeSecretBase64, PSWholeSecretEncodedAsDecoded
    let s = ps(json!({"data": [{"match": {"remoteRef": {"remoteKey": "fake-key"}}}]}));
    let source = src(&[("fake-secret-key", "fake-value")]);
    let p = run(&s, &source, &[store("test-store")]).unwrap();
    assert_eq!(
        p.entries[0].value.expose(),
        br#"{"fake-secret-key":"fake-value"}"#
    );
    assert_eq!(
        synced(&p),
        map(&[("SecretStore/test-store", &[("fake-key", "")])])
    );
    let source = src(&[("fakeSecretKey", "fakeValue")]);
    let p = run(
        &ps(json!({"data": [{"match": {"remoteRef": {"remoteKey": "/p/fake-key"}}}]})),
        &source,
        &[ssm_store("test-store")],
    )
    .unwrap();
    assert_eq!(
        p.entries[0].value.expose(),
        br#"{"fakeSecretKey":"ZmFrZVZhbHVl"}"#
    );
    let s = ps(
        json!({"data": [{"match": {"remoteRef": {"remoteKey": "fake-key"}}, "metadata": meta(json!({"encodeAsDecoded": true}))}]}),
    );
    let stores = [PlanStore {
        prefix: "/p/test/this/thing/".into(),
        ..ssm_store("test-store")
    }];
    let p = run(&s, &source, &stores).unwrap();
    assert_eq!(
        p.entries[0].value.expose(),
        br#"{"fakeSecretKey":"fakeValue"}"#
    );
    assert_eq!(p.entries[0].remote_name, "/p/test/this/thing/fake-key");
    // PSPushWithPrefix: the status key has no prefix.
    assert_eq!(p.entries[0].status_key, "fake-key");
}

#[test]
fn conversion_strategy() {
    // "should sync with conversion strategy"
    let s = ps(
        json!({"data": [{"conversionStrategy": "ReverseUnicode", "match": {"secretKey": "some-array[0].entity", "remoteRef": {"remoteKey": "path/to/key"}}}]}),
    );
    let p = run(
        &s,
        &src(&[("some-array_U005b_0_U005d_.entity", "value")]),
        &[store("test-store")],
    )
    .unwrap();
    assert_eq!(values(&p), vec![("path/to/key".into(), "value".into())]);
    // Two keys converting to one: the push stops, naming keys only.
    let p = run(
        &s,
        &src(&[("a_U0041_", SECRET), ("aA", SECRET)]),
        &[store("test-store")],
    )
    .unwrap();
    let stop = p.stop.unwrap().to_string();
    assert!(
        stop.starts_with("spec.data[0].conversionStrategy: secret name collision"),
        "{stop}"
    );
    assert!(!stop.contains(SECRET));
}

#[test]
fn missing_key_stops_after_earlier_writes() {
    // IfNotExistsPartial / FailNoSecretKey
    let s = ps(
        json!({"updatePolicy": "IfNotExists", "deletionPolicy": "Delete", "data": [
            {"match": {"secretKey": "key", "remoteRef": {"remoteKey": "path/to/key"}}},
            {"match": {"secretKey": "other-key", "remoteRef": {"remoteKey": "path/to/other-key"}}}
        ]}),
    );
    let mut status = PushSecretStatus::default();
    status.synced_push_secrets.insert(
        "SecretStore/test-store".into(),
        [("old".to_owned(), s.data[0].clone())].into(),
    );
    let p = plan::plan(
        &s,
        &status,
        &src(&[("key", "value")]),
        &[store("test-store")],
        &no_transform,
    )
    .unwrap();
    assert_eq!(p.update_policy, UpdatePolicy::IfNotExists);
    assert_eq!(values(&p), vec![("path/to/key".into(), "value".into())]);
    assert_eq!(
        p.stop.as_ref().unwrap().to_string(),
        "spec.data[1].match.secretKey: secret key other-key does not exist in the source Secret"
    );
    // No deletion after a failed push: the desired set is incomplete.
    assert!(p.deletions.is_empty());
    let after = p.synced_after_failure(1, &status.synced_push_secrets);
    assert_eq!(after["SecretStore/test-store"].len(), 2);
}

#[test]
fn data_to_all_regex_and_rewrites() {
    let source = src(&[
        ("db-host", "localhost"),
        ("db-port", "5432"),
        ("db-username", "admin"),
        ("app-name", "myapp"),
    ]);
    let stores = [store("test-store")];
    // DataToMatchAll
    let p = run(
        &ps(json!({"data": null, "dataTo": [{"storeRef": {"name": "test-store"}}]})),
        &source,
        &stores,
    )
    .unwrap();
    assert_eq!(
        synced(&p),
        map(&[(
            "SecretStore/test-store",
            &[
                ("app-name", "app-name"),
                ("db-host", "db-host"),
                ("db-port", "db-port"),
                ("db-username", "db-username")
            ]
        )])
    );
    let rec = &p.synced()["SecretStore/test-store"]["db-host"];
    assert_eq!(
        rec.conversion_strategy,
        Some(api::PushConversionStrategy::None)
    );
    // DataToRegex
    let p = run(&ps(json!({"data": null, "dataTo": [{"storeRef": {"name": "test-store"}, "match": {"regexp": "^db-.*"}}]})), &source, &stores).unwrap();
    assert_eq!(p.entries.len(), 3);
    // DataToRegexpRewrite
    let p = run(
        &ps(json!({"data": null, "dataTo": [{"storeRef": {"name": "test-store"}, "match": {"regexp": "^db-(host|port)"},
            "rewrite": [{"regexp": {"source": "^db-", "target": "app/database/"}}]}]})),
        &source,
        &stores,
    )
    .unwrap();
    assert_eq!(
        synced(&p),
        map(&[(
            "SecretStore/test-store",
            &[
                ("app/database/host", "db-host"),
                ("app/database/port", "db-port")
            ]
        )])
    );
    // DataToTransformRewrite
    let p = run(
        &ps(json!({"data": null, "dataTo": [{"storeRef": {"name": "test-store"}, "match": {"regexp": "^app-name$"},
            "rewrite": [{"transform": {"template": "app/{{ .value | upper }}"}}]}]})),
        &source,
        &stores,
    )
    .unwrap();
    assert_eq!(values(&p), vec![("app/APP-NAME".into(), "myapp".into())]);
    // DataToChainedRewrites
    let p = run(
        &ps(json!({"data": null, "dataTo": [{"storeRef": {"name": "test-store"}, "match": {"regexp": "^db-username$"},
            "rewrite": [{"regexp": {"source": "^db-", "target": ""}}, {"regexp": {"source": "^", "target": "app/"}}]}]})),
        &source,
        &stores,
    )
    .unwrap();
    assert_eq!(
        synced(&p),
        map(&[("SecretStore/test-store", &[("app/username", "db-username")])])
    );
    // DataToDuplicateValues
    let p = run(
        &ps(json!({"data": null, "dataTo": [{"storeRef": {"name": "test-store"}, "rewrite": [{"regexp": {"source": "-host$", "target": "/endpoint"}}]}]})),
        &src(&[("db-host", "same-value"), ("cache-host", "same-value")]),
        &stores,
    )
    .unwrap();
    assert_eq!(
        synced(&p),
        map(&[(
            "SecretStore/test-store",
            &[("cache/endpoint", "cache-host"), ("db/endpoint", "db-host")]
        )])
    );
    // A transform failing names its step and the key, not the value.
    let err = plan::plan(
        &ps(json!({"data": null, "dataTo": [{"storeRef": {"name": "test-store"}, "rewrite": [{"transform": {"template": "x"}}]}]})),
        &PushSecretStatus::default(),
        &src(&[("k", SECRET)]),
        &stores,
        &no_transform,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("spec.dataTo[0].rewrite[0].transform.template: on key \"k\""),
        "{err}"
    );
    assert!(!err.contains(SECRET));
    // A rewrite to nothing.
    let err = run(
        &ps(json!({"data": null, "dataTo": [{"storeRef": {"name": "test-store"}, "rewrite": [{"regexp": {"source": ".*", "target": ""}}]}]})),
        &src(&[("k", "v")]),
        &stores,
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("empty remote key produced for source key \"k\""),
        "{err}"
    );
}

#[test]
fn data_to_conversion_and_explicit_override() {
    let stores = [store("test-store")];
    // DataToConversionStrategy
    let p = run(
        &ps(json!({"data": null, "dataTo": [{"storeRef": {"name": "test-store"}, "conversionStrategy": "ReverseUnicode"}]})),
        &src(&[("unicode-key", "unicode-value-αβγ"), ("normal-key", "normal-value")]),
        &stores,
    )
    .unwrap();
    assert_eq!(
        synced(&p),
        map(&[(
            "SecretStore/test-store",
            &[("normal-key", "normal-key"), ("unicode-key", "unicode-key")]
        )])
    );
    // DataToExplicitOverride
    let p = run(
        &ps(json!({"dataTo": [{"storeRef": {"name": "test-store"}}], "data": [{"match": {"secretKey": "key1", "remoteRef": {"remoteKey": "override-key1"}}}]})),
        &src(&[("key1", "value1"), ("key2", "value2")]),
        &stores,
    )
    .unwrap();
    assert_eq!(
        synced(&p),
        map(&[(
            "SecretStore/test-store",
            &[("key2", "key2"), ("override-key1", "key1")]
        )])
    );
    // dataTo writes come first, then data.
    assert_eq!(p.entries[0].at, "spec.dataTo[0]");
    assert_eq!(p.entries[1].at, "spec.data[0]");
    // ExplicitOverridesDataToAfterConversion
    let p = run(
        &ps(json!({
            "dataTo": [{"storeRef": {"name": "test-store"}, "conversionStrategy": "ReverseUnicode", "rewrite": [{"regexp": {"source": "^", "target": "dataTo/"}}]}],
            "data": [{"conversionStrategy": "ReverseUnicode", "match": {"secretKey": "some-key", "remoteRef": {"remoteKey": "explicit/some-key"}}}]
        })),
        &src(&[("some_U002D_key", "value"), ("other", "other-value")]),
        &stores,
    )
    .unwrap();
    assert_eq!(
        synced(&p),
        map(&[(
            "SecretStore/test-store",
            &[("dataTo/other", "other"), ("explicit/some-key", "some-key")]
        )])
    );
    assert_eq!(values(&p)[1], ("explicit/some-key".into(), "value".into()));
    // MergeExplicitOverridesDataTo, KeepAllEntriesWithoutConflict
    let p = run(
        &ps(json!({"dataTo": [{"storeRef": {"name": "test-store"}, "rewrite": [{"regexp": {"source": "^key$", "target": "dataTo-path"}}]}],
            "data": [{"match": {"secretKey": "key", "remoteRef": {"remoteKey": "explicit-path"}}}]})),
        &src(&[("key", "value")]),
        &stores,
    )
    .unwrap();
    assert_eq!(
        synced(&p),
        map(&[("SecretStore/test-store", &[("explicit-path", "key")])])
    );
}

#[test]
fn data_to_store_refs() {
    // DataToStoreRef
    let stores = [
        store("test-store"),
        PlanStore {
            prefix: "p/second/".into(),
            ..store("second-store")
        },
    ];
    let p = run(
        &ps(json!({
            "secretStoreRefs": [{"name": "test-store", "kind": "SecretStore"}, {"name": "second-store", "kind": "SecretStore"}],
            "data": null,
            "dataTo": [
                {"storeRef": {"name": "test-store", "kind": "SecretStore"}, "match": {"regexp": "^db-.*"}},
                {"storeRef": {"name": "second-store", "kind": "SecretStore"}, "match": {"regexp": "^api-.*"}},
                {"storeRef": {"name": "test-store", "kind": "SecretStore"}, "match": {"regexp": "^app-.*"}},
                {"storeRef": {"name": "second-store", "kind": "SecretStore"}, "match": {"regexp": "^app-.*"}}
            ]
        })),
        &src(&[("db-host", "localhost"), ("api-key", "secret123"), ("app-name", "myapp")]),
        &stores,
    )
    .unwrap();
    assert_eq!(
        synced(&p),
        map(&[
            (
                "SecretStore/second-store",
                &[("api-key", "api-key"), ("app-name", "app-name")]
            ),
            (
                "SecretStore/test-store",
                &[("app-name", "app-name"), ("db-host", "db-host")]
            ),
        ])
    );
    assert!(values(&p).contains(&("p/second/api-key".into(), "secret123".into())));
    // DataToLabelSelector / DataToLabelSelectorMatchesNoStore
    let labelled = [PlanStore {
        labels: tags(&[("env", "test")]),
        ..store("test-store")
    }];
    let s = ps(
        json!({"secretStoreRefs": [{"labelSelector": {"matchLabels": {"env": "test"}}}], "data": null,
        "dataTo": [{"storeRef": {"labelSelector": {"matchLabels": {"env": "test"}}}}]}),
    );
    let p = run(&s, &src(&[("key1", "value1")]), &labelled).unwrap();
    assert_eq!(
        synced(&p),
        map(&[("SecretStore/test-store", &[("key1", "key1")])])
    );
    let s = ps(
        json!({"secretStoreRefs": [{"labelSelector": {"matchLabels": {"env": "staging"}}}], "data": null,
        "dataTo": [{"storeRef": {"labelSelector": {"matchLabels": {"env": "production"}}}}]}),
    );
    assert_eq!(
        run(&s, &src(&[("key1", "value1")]), &labelled)
            .unwrap_err()
            .to_string(),
        "spec.dataTo[0].storeRef.labelSelector: labelSelector does not match any store in secretStoreRefs"
    );
    // MultipleManagedStores: data goes to every store; a store with no
    // write still has its (empty) map.
    let two = [
        store("test-managed-store-1"),
        PlanStore {
            prefix: "2/".into(),
            ..store("test-managed-store-2")
        },
    ];
    let p = run(&ps(json!({})), &src(&[("key", "value")]), &two).unwrap();
    assert_eq!(
        synced(&p),
        map(&[
            (
                "SecretStore/test-managed-store-1",
                &[("path/to/key", "key")]
            ),
            (
                "SecretStore/test-managed-store-2",
                &[("path/to/key", "key")]
            ),
        ])
    );
    let p = run(&ps(json!({"data": null, "dataTo": [{"storeRef": {"name": "test-store"}, "match": {"regexp": "^none$"}}]})), &src(&[("key", "value")]), &[store("test-store")]).unwrap();
    assert_eq!(synced(&p), map(&[("SecretStore/test-store", &[])]));
    // Stores named twice, or an ACM store, are refused.
    assert!(
        run(
            &ps(json!({})),
            &src(&[("key", "v")]),
            &[store("a"), store("a")]
        )
        .is_err()
    );
    let acm = PlanStore {
        service: AwsService::CertificateManager,
        ..store("a")
    };
    assert!(
        run(&ps(json!({})), &src(&[("key", "v")]), &[acm])
            .unwrap_err()
            .to_string()
            .contains("not supported")
    );
}

#[test]
fn bundles() {
    let stores = [store("test-store")];
    // DataToBundleAllKeys
    let p = run(
        &ps(json!({"data": null, "dataTo": [{"storeRef": {"name": "test-store"}, "remoteKey": "secrets-sync-target"}]})),
        &src(&[("DB_HOST", "localhost"), ("DB_USER", "admin")]),
        &stores,
    )
    .unwrap();
    assert_eq!(
        synced(&p),
        map(&[("SecretStore/test-store", &[("secrets-sync-target", "")])])
    );
    assert_eq!(
        values(&p)[0].1,
        r#"{"DB_HOST":"localhost","DB_USER":"admin"}"#
    );
    // DataToBundleWithRegexFilter / DataToBundleAndPerKeyMixed
    let p = run(
        &ps(json!({"data": null, "dataTo": [
            {"storeRef": {"name": "test-store"}, "remoteKey": "db-config", "match": {"regexp": "^DB_"}},
            {"storeRef": {"name": "test-store"}, "match": {"regexp": "^API_"}}
        ]})),
        &src(&[("DB_HOST", "localhost"), ("DB_USER", "admin"), ("API_KEY", "secret-key"), ("APP_NAME", "myapp")]),
        &stores,
    )
    .unwrap();
    assert_eq!(
        synced(&p),
        map(&[(
            "SecretStore/test-store",
            &[("API_KEY", "API_KEY"), ("db-config", "")]
        )])
    );
    assert_eq!(
        values(&p)[0],
        (
            "db-config".into(),
            r#"{"DB_HOST":"localhost","DB_USER":"admin"}"#.into()
        )
    );
    // A bundle on Parameter Store: base64 values unless encodeAsDecoded.
    let p = run(
        &ps(json!({"data": null, "dataTo": [{"storeRef": {"name": "test-store"}, "remoteKey": "/b"}]})),
        &src(&[("k", "v")]),
        &[ssm_store("test-store")],
    )
    .unwrap();
    assert_eq!(values(&p)[0].1, r#"{"k":"dg=="}"#);
    // A bundle is not dropped by a data entry without secretKey
    // (ESO drops it: both have no source key).
    let p = run(
        &ps(
            json!({"dataTo": [{"storeRef": {"name": "test-store"}, "remoteKey": "bundle"}],
            "data": [{"match": {"remoteRef": {"remoteKey": "whole"}}}]}),
        ),
        &src(&[("k", "v")]),
        &stores,
    )
    .unwrap();
    assert_eq!(
        synced(&p),
        map(&[("SecretStore/test-store", &[("bundle", ""), ("whole", "")])])
    );
}

#[test]
fn duplicates_name_both_entries() {
    let stores = [store("test-store")];
    let source = src(&[
        ("db-host", "localhost"),
        ("db-port", "5432"),
        ("api-key", "secret123"),
        ("a", "v1"),
        ("b", "v2"),
    ]);
    let err = |extra: Value| run(&ps(extra), &source, &stores).unwrap_err().to_string();
    // DataToDuplicateAcrossEntries
    assert_eq!(
        err(json!({"data": null, "dataTo": [
            {"storeRef": {"name": "test-store"}, "match": {"regexp": "^db-host$"}, "rewrite": [{"regexp": {"source": ".*", "target": "app/config"}}]},
            {"storeRef": {"name": "test-store"}, "match": {"regexp": "^db-port$"}, "rewrite": [{"regexp": {"source": ".*", "target": "app/config"}}]}
        ]})),
        "spec.dataTo[1].rewrite: duplicate remote key \"app/config\": spec.dataTo[0] (source key \"db-host\") writes it too"
    );
    // Within one dataTo entry.
    assert!(err(json!({"data": null, "dataTo": [
        {"storeRef": {"name": "test-store"}, "match": {"regexp": "^db-"}, "rewrite": [{"regexp": {"source": ".*", "target": "one"}}]}
    ]}))
    .contains("duplicate remote key \"one\""));
    // DataToAndDataDuplicateRemoteKey / MergeRemoteKeyConflictFails
    assert_eq!(
        err(
            json!({"dataTo": [{"storeRef": {"name": "test-store"}, "match": {"regexp": "^db-host$"}, "rewrite": [{"regexp": {"source": ".*", "target": "myapp/config"}}]}],
            "data": [{"match": {"secretKey": "api-key", "remoteRef": {"remoteKey": "myapp/config"}}}]})
        ),
        "spec.data[0].match.remoteRef: duplicate remote key \"myapp/config\": spec.dataTo[0] (source key \"db-host\") writes it too"
    );
    // DuplicateRemoteKeysFail / SameRemoteKeySamePropertyFail
    assert!(err(json!({"data": [
        {"match": {"secretKey": "a", "remoteRef": {"remoteKey": "shared"}}},
        {"match": {"secretKey": "b", "remoteRef": {"remoteKey": "shared"}}}
    ]}))
    .contains("spec.data[1].match.remoteRef: duplicate remote key \"shared\": spec.data[0] writes it too"));
    assert!(err(json!({"data": [
        {"match": {"secretKey": "a", "remoteRef": {"remoteKey": "shared", "property": "field"}}},
        {"match": {"secretKey": "b", "remoteRef": {"remoteKey": "shared", "property": "field"}}}
    ]}))
    .contains("duplicate remote key \"shared/field\""));
    // SameRemoteKeyDifferentPropertiesPass
    let p = run(
        &ps(json!({"data": [
            {"match": {"secretKey": "a", "remoteRef": {"remoteKey": "shared", "property": "field1"}}},
            {"match": {"secretKey": "b", "remoteRef": {"remoteKey": "shared", "property": "field2"}}}
        ]})),
        &source,
        &stores,
    )
    .unwrap();
    assert_eq!(
        synced(&p),
        map(&[(
            "SecretStore/test-store",
            &[("shared/field1", "a"), ("shared/field2", "b")]
        )])
    );
    // Whole and by property: one would undo the other.
    assert!(
        err(json!({"data": [
            {"match": {"secretKey": "a", "remoteRef": {"remoteKey": "shared"}}},
            {"match": {"secretKey": "b", "remoteRef": {"remoteKey": "shared", "property": "f"}}}
        ]}))
        .contains("written whole here and by property")
    );
    // Status keys that collide: a/b + property c, and a/b/c.
    assert!(
        err(json!({"data": [
            {"match": {"secretKey": "a", "remoteRef": {"remoteKey": "a/b", "property": "c"}}},
            {"match": {"secretKey": "b", "remoteRef": {"remoteKey": "a/b/c"}}}
        ]}))
        .contains("could not tell them apart")
    );
    // Parameter Store: /x and x are one parameter.
    let e = run(
        &ps(json!({"data": [
            {"match": {"secretKey": "a", "remoteRef": {"remoteKey": "/x"}}},
            {"match": {"secretKey": "b", "remoteRef": {"remoteKey": "x"}}}
        ]})),
        &source,
        &[ssm_store("s")],
    )
    .unwrap_err();
    assert!(matches!(e, PushError::Duplicate { .. }), "{e}");
}

#[test]
fn property_rules_per_service() {
    let s = ps(
        json!({"data": [{"match": {"secretKey": "key", "remoteRef": {"remoteKey": "/x", "property": "p"}}}]}),
    );
    assert_eq!(
        run(&s, &src(&[("key", "v")]), &[ssm_store("s")])
            .unwrap_err()
            .to_string(),
        "spec.data[0].match.remoteRef.property: not supported by this controller (a parameter has no properties (External Secrets ignores the property and overwrites the whole parameter))"
    );
    let s = ps(
        json!({"data": [{"match": {"secretKey": "key", "remoteRef": {"remoteKey": "x", "property": "a.*"}}}]}),
    );
    assert!(
        run(&s, &src(&[("key", "v")]), &[store("s")])
            .unwrap_err()
            .to_string()
            .starts_with("spec.data[0].match.remoteRef.property:")
    );
    let s = ps(
        json!({"data": [{"match": {"secretKey": "key", "remoteRef": {"remoteKey": "x", "property": "a.b"}}}]}),
    );
    let p = run(&s, &src(&[("key", "v")]), &[store("s")]).unwrap();
    assert_eq!(
        p.entries[0].property_path.as_deref(),
        Some(&["a".to_owned(), "b".to_owned()][..])
    );
    assert_eq!(p.entries[0].status_key, "x/a.b");
    // A binary value cannot be a JSON property: the push stops there.
    let mut source = src(&[]);
    source.insert("key".into(), vec![0xff, 0xfe]);
    let p = run(&s, &source, &[store("s")]).unwrap();
    assert!(p.stop.unwrap().to_string().contains("not UTF-8"));
}

#[test]
fn values_a_service_cannot_hold_stop_the_push() {
    let big = "x".repeat(5000);
    let s = ps(json!({}));
    let p = run(&s, &src(&[("key", &big)]), &[ssm_store("s")]).unwrap_err();
    // The name path/to/key is not fully qualified for Parameter Store.
    assert!(p.to_string().contains("must start with '/'"), "{p}");
    let s =
        ps(json!({"data": [{"match": {"secretKey": "key", "remoteRef": {"remoteKey": "/k"}}}]}));
    let p = run(&s, &src(&[("key", &big)]), &[ssm_store("s")]).unwrap();
    let stop = p.stop.unwrap();
    assert!(
        matches!(
            stop,
            PushError::TooLarge {
                len: 5000,
                limit: 4096,
                ..
            }
        ),
        "{stop}"
    );
    assert!(!stop.to_string().contains("xxxx"));
    let s = ps(
        json!({"data": [{"match": {"secretKey": "key", "remoteRef": {"remoteKey": "/k"}},
        "metadata": meta(json!({"tier": {"type": "Advanced"}}))}]}),
    );
    assert!(
        run(&s, &src(&[("key", &big)]), &[ssm_store("s")])
            .unwrap()
            .stop
            .is_none()
    );
    let mut bin = src(&[]);
    bin.insert("key".into(), vec![0, 159, 146, 150]);
    let p = run(
        &ps(json!({"data": [{"match": {"secretKey": "key", "remoteRef": {"remoteKey": "/k"}}}]})),
        &bin,
        &[ssm_store("s")],
    )
    .unwrap();
    assert!(p.stop.unwrap().to_string().contains("not UTF-8 text"));
    // Secrets Manager takes binary, up to 64 KiB.
    let p = run(&ps(json!({})), &bin, &[store("s")]).unwrap();
    assert!(p.stop.is_none());
    let huge = "y".repeat(70_000);
    let p = run(&ps(json!({})), &src(&[("key", &huge)]), &[store("s")]).unwrap();
    assert!(matches!(
        p.stop,
        Some(PushError::TooLarge { limit: 65536, .. })
    ));
}

#[test]
fn plans_are_bounded() {
    // A Secret with thousands of keys under a match-all dataTo.
    let source: BTreeMap<String, Vec<u8>> = (0..2000)
        .map(|i| (format!("k{i}"), b"v".to_vec()))
        .collect();
    let s = ps(json!({"data": null, "dataTo": [{"storeRef": {"name": "test-store"}}]}));
    let err = run(&s, &source, &[store("test-store")]).unwrap_err();
    assert!(
        err.to_string().contains("more than 1000 remote writes"),
        "{err}"
    );
    // 500 keys to 3 stores: over as well.
    let source: BTreeMap<String, Vec<u8>> =
        (0..500).map(|i| (format!("k{i}"), b"v".to_vec())).collect();
    let stores: Vec<PlanStore> = ["a", "b", "c"].iter().map(|n| store(n)).collect();
    let s = ps(
        json!({"secretStoreRefs": [{"labelSelector": {}}], "data": null, "dataTo": [{"storeRef": {"labelSelector": {}}}]}),
    );
    assert!(run(&s, &source, &stores).is_err());
    let many: Vec<PlanStore> = (0..=plan::MAX_STORES)
        .map(|i| store(&format!("s{i}")))
        .collect();
    assert!(run(&ps(json!({})), &src(&[("key", "v")]), &many).is_err());
    // A hostile regexp is refused by size, not run.
    let s = ps(
        json!({"data": null, "dataTo": [{"storeRef": {"name": "test-store"}, "match": {"regexp": "(a*)*".repeat(2000)}}]}),
    );
    assert!(run(&s, &src(&[("key", "v")]), &[store("test-store")]).is_err());
}

#[test]
fn errors_never_hold_values() {
    let source = src(&[("key", SECRET), ("other", SECRET)]);
    let failures: Vec<String> = vec![
        run(&ps(json!({"data": [{"match": {"secretKey": "nope", "remoteRef": {"remoteKey": "k"}}}]})), &source, &[store("s")])
            .unwrap()
            .stop
            .unwrap()
            .to_string(),
        run(&ps(json!({"data": [{"match": {"secretKey": "key", "remoteRef": {"remoteKey": "/k"}}, "metadata": {"x": SECRET}}]})), &source, &[ssm_store("s")])
            .unwrap_err()
            .to_string(),
        run(&ps(json!({"data": [
            {"match": {"secretKey": "key", "remoteRef": {"remoteKey": "k"}}},
            {"match": {"secretKey": "other", "remoteRef": {"remoteKey": "k"}}}
        ]})), &source, &[store("s")])
        .unwrap_err()
        .to_string(),
    ];
    for f in failures {
        assert!(!f.contains(SECRET), "{f}");
    }
    // Decisions that refuse: nothing of the value or current value.
    let p = run(&ps(json!({"data": [{"match": {"secretKey": "key", "remoteRef": {"remoteKey": "k", "property": "p"}}}]})), &source, &[store("s")]).unwrap();
    let remote = sm_remote(
        &[("managed-by", "external-secrets")],
        SmCurrent::String(SecretBytes::from(SECRET)),
    );
    let e =
        guard::decide_secrets_manager(&p.entries[0], UpdatePolicy::Replace, Some(&remote), None)
            .unwrap_err()
            .to_string();
    assert!(!e.contains(SECRET), "{e}");
    assert!(e.contains("requires a json secret"), "{e}");
    let unmanaged = sm_remote(&[], SmCurrent::String(SecretBytes::from(SECRET)));
    let e =
        guard::decide_secrets_manager(&p.entries[0], UpdatePolicy::Replace, Some(&unmanaged), None)
            .unwrap_err()
            .to_string();
    assert!(!e.contains(SECRET), "{e}");
    // Debug of a plan hides values too.
    assert!(!format!("{p:?}").contains(SECRET));
}

// ---------------------------------------------------------- deletions

fn data(secret_key: &str, remote: &str, property: Option<&str>) -> api::PushSecretData {
    serde_json::from_value(json!({"match": {"secretKey": secret_key, "remoteRef": {"remoteKey": remote, "property": property}}})).unwrap()
}

fn status_of(entries: &[(&str, &[(&str, api::PushSecretData)])]) -> SyncedPushSecrets {
    entries
        .iter()
        .map(|(s, m)| {
            (
                (*s).to_owned(),
                m.iter()
                    .map(|(k, d)| ((*k).to_owned(), d.clone()))
                    .collect(),
            )
        })
        .collect()
}

#[test]
fn deletions_follow_eso_where_safe() {
    // DeleteOnRemoteKeyChange
    let s = ps(
        json!({"deletionPolicy": "Delete", "data": [{"match": {"secretKey": "key", "remoteRef": {"remoteKey": "new-key"}}}]}),
    );
    let status = PushSecretStatus {
        synced_push_secrets: status_of(&[(
            "SecretStore/test-store",
            &[("path/to/key", data("key", "path/to/key", None))],
        )]),
        ..Default::default()
    };
    let p = plan::plan(
        &s,
        &status,
        &src(&[("key", "value")]),
        &[store("test-store")],
        &no_transform,
    )
    .unwrap();
    assert_eq!(
        p.deletions,
        vec![Deletion {
            store_kind: StoreKindName::SecretStore,
            store_name: "test-store".into(),
            status_key: "path/to/key".into(),
            remote_key: "path/to/key".into(),
            property: None,
            action: DeletionAction::DeleteSecret,
        }]
    );
    // deletionPolicy None: nothing is deleted.
    let mut none = s.clone();
    none.deletion_policy = None;
    assert!(
        plan::plan(
            &none,
            &status,
            &src(&[("key", "value")]),
            &[store("test-store")],
            &no_transform
        )
        .unwrap()
        .deletions
        .is_empty()
    );
    // DeleteWithProperties: field2 leaves the JSON, the secret stays
    // (ESO deletes the whole secret though field1 is still pushed).
    let old = status_of(&[(
        "SecretStore/test-store",
        &[
            (
                "path/to/key/field1",
                data("key", "path/to/key", Some("field1")),
            ),
            (
                "path/to/key/field2",
                data("other-key", "path/to/key", Some("field2")),
            ),
        ],
    )]);
    let new = status_of(&[(
        "SecretStore/test-store",
        &[(
            "path/to/key/field1",
            data("key", "path/to/key", Some("field1")),
        )],
    )]);
    let d = plan::deletions(&old, &new).unwrap();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].action, DeletionAction::RemoveProperty);
    assert_eq!(d[0].property.as_deref(), Some("field2"));
    // A property entry replaced by a whole push of the same key: keep.
    let whole = status_of(&[(
        "SecretStore/test-store",
        &[("path/to/key", data("key", "path/to/key", None))],
    )]);
    assert_eq!(
        plan::deletions(&old, &whole).unwrap()[0].action,
        DeletionAction::Keep
    );
    // DeleteWholeStore / finalizer / SourceDeletedCleanup: the store (or
    // everything) is gone from the desired set.
    let all = plan::deletions(&old, &SyncedPushSecrets::new()).unwrap();
    assert_eq!(all.len(), 2);
    assert!(all.iter().all(|d| d.action == DeletionAction::DeleteSecret));
    let other_store = status_of(&[(
        "SecretStore/new-store",
        &[("path/to/key", data("key", "path/to/key", None))],
    )]);
    assert!(
        plan::deletions(&whole, &other_store)
            .unwrap()
            .iter()
            .all(|d| d.action == DeletionAction::DeleteSecret)
    );
    // A tampered status: bad store keys and names are refused, not used.
    let bad = status_of(&[("Pod/x", &[("k", data("k", "k", None))])]);
    assert!(
        plan::deletions(&bad, &SyncedPushSecrets::new())
            .unwrap_err()
            .to_string()
            .contains("kind is not")
    );
    assert!(plan::deletions(&status_of(&[("noslash", &[])]), &SyncedPushSecrets::new()).is_err());
    let hostile = status_of(&[("SecretStore/s", &[("x", data("k", "../../prod/db", None))])]);
    let d = plan::deletions(&hostile, &SyncedPushSecrets::new()).unwrap();
    let e = d[0]
        .remote_name(&PlanStore {
            prefix: "team-a/".into(),
            ..store("s")
        })
        .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("status.syncedPushSecrets[\"SecretStore/s\"][\"x\"]"),
        "{e}"
    );
    assert!(d[0].remote_name(&store("s")).is_err());
    let fine = plan::deletions(&whole, &SyncedPushSecrets::new()).unwrap();
    assert_eq!(
        fine[0]
            .remote_name(&PlanStore {
                prefix: "p/".into(),
                ..store("test-store")
            })
            .unwrap(),
        "p/path/to/key"
    );
    assert_eq!(fine[0].store_key(), "SecretStore/test-store");
}

#[test]
fn merge_keeps_what_was_pushed() {
    let old = status_of(&[
        ("SecretStore/a", &[("x", data("k", "x", None))]),
        ("SecretStore/b", &[("y", data("k", "y", None))]),
    ]);
    let new = status_of(&[("SecretStore/a", &[("z", data("k", "z", None))])]);
    let m = plan::merge_synced(new, &old);
    assert_eq!(m["SecretStore/a"].len(), 2);
    assert_eq!(m["SecretStore/b"].len(), 1);
}

// -------------------------------------------------------------- guard

fn sm_remote(t: &[(&str, &str)], current: SmCurrent) -> SmRemote {
    SmRemote {
        tags: tags(t),
        kms_key_id: None,
        replica_regions: Vec::new(),
        current,
    }
}

const MANAGED: &[(&str, &str)] = &[("managed-by", "external-secrets"), ("taname1", "tagvalue1")];

/// The planned entry of ESO's provider tests: {fake-secret-key:
/// fake-value} -> fake-key, with `entry` merged over spec.data[0].
fn sm_entry(entry: Value) -> PushEntry {
    let mut d =
        json!({"match": {"secretKey": "fake-secret-key", "remoteRef": {"remoteKey": "fake-key"}}});
    if let (Value::Object(b), Value::Object(e)) = (&mut d, entry) {
        for (k, v) in e {
            if k == "match" {
                for (mk, mv) in v.as_object().unwrap() {
                    if mk == "remoteRef" {
                        for (rk, rv) in mv.as_object().unwrap() {
                            b["match"]["remoteRef"][rk] = rv.clone();
                        }
                    } else {
                        b["match"][mk] = mv.clone();
                    }
                }
            } else {
                b.insert(k, v);
            }
        }
    }
    let s = ps(json!({"data": [d]}));
    let p = run(
        &s,
        &src(&[("fake-secret-key", "fake-value")]),
        &[store("test-store")],
    )
    .unwrap();
    assert!(p.stop.is_none());
    p.entries[0].clone()
}

fn update(d: SmDecision) -> SmUpdate {
    match d {
        SmDecision::Update(u) => u,
        other => panic!("not an update: {other:?}"),
    }
}

#[test]
fn guard_is_exact() {
    assert!(guard::is_managed(&tags(&[(
        "managed-by",
        "external-secrets"
    )])));
    for t in [
        &[("not-managed-by", "external-secrets")][..],
        &[("managed-by", "external-secrets-evil")],
        &[("managed-by", "external-secrets ")],
        &[("managed-by", "External-Secrets")],
        &[("Managed-By", "external-secrets")],
        &[("managed-by-x", "external-secrets")],
        &[("managed-by", "")],
        &[("managed-by", "external")],
        &[],
    ] {
        assert!(!guard::is_managed(&tags(t)), "{t:?}");
    }
    // SetSecretDoesNotOverwriteUntaggedSecret: refused, naming the key.
    let e = sm_entry(json!({}));
    let remote = sm_remote(
        &[("not-managed-by", "external-secrets")],
        SmCurrent::String("old-value".into()),
    );
    let err =
        guard::decide_secrets_manager(&e, UpdatePolicy::Replace, Some(&remote), None).unwrap_err();
    assert_eq!(
        err,
        PushError::NotManaged {
            key: "fake-key".into()
        }
    );
    assert!(
        err.to_string()
            .contains("secret not managed by external-secrets")
    );
    // A prefix that looks like ours changes nothing.
    let remote = sm_remote(
        &[("managed-by", "external-secrets-but-not")],
        SmCurrent::NoVersion,
    );
    assert!(guard::decide_secrets_manager(&e, UpdatePolicy::Replace, Some(&remote), None).is_err());
    // Unmanaged secrets are never deleted.
    assert_eq!(
        guard::decide_secrets_manager_delete(Some(&remote), None).unwrap(),
        DeleteDecision::NotManaged
    );
    assert_eq!(
        guard::decide_parameter_store_delete(Some(&tags(&[("managed-by", "x")]))),
        DeleteDecision::NotManaged
    );
}

#[test]
fn secrets_manager_create() {
    // SetSecretSucceedsWithNewSecret
    let d = guard::decide_secrets_manager(&sm_entry(json!({})), UpdatePolicy::Replace, None, None)
        .unwrap();
    let SmDecision::Create(c) = d else {
        panic!("{d:?}")
    };
    assert_eq!(c.name, "fake-key");
    assert_eq!(c.value.expose(), b"fake-value");
    assert_eq!(c.format, SecretPushFormat::Binary);
    assert_eq!(c.tags, tags(&[("managed-by", "external-secrets")]));
    assert_eq!(c.description, "secret 'managed-by:external-secrets'");
    assert_eq!(c.kms_key_id, "alias/aws/secretsmanager");
    assert_eq!(c.token, Token::Initial);
    assert!(c.replicas.is_empty());
    assert_eq!(c.policy, None);
    // SetSecretWithPropertySucceedsWithNewSecret
    let d = guard::decide_secrets_manager(
        &sm_entry(json!({"match": {"remoteRef": {"property": "other-fake-property"}}})),
        UpdatePolicy::Replace,
        None,
        None,
    )
    .unwrap();
    let SmDecision::Create(c) = d else { panic!() };
    assert_eq!(c.value.expose(), br#"{"other-fake-property":"fake-value"}"#);
    // SetSecretWithRegionReplication: each replica with the secret's key.
    let e = sm_entry(
        json!({"metadata": meta(json!({"secretPushFormat": "string", "replicationLocations": ["eu-north-1", "eu-central-1"]}))}),
    );
    let SmDecision::Create(c) =
        guard::decide_secrets_manager(&e, UpdatePolicy::Replace, None, None).unwrap()
    else {
        panic!()
    };
    assert_eq!(c.format, SecretPushFormat::String);
    assert_eq!(
        c.replicas,
        vec![
            Replica {
                region: "eu-north-1".into(),
                kms_key_id: Some("alias/aws/secretsmanager".into())
            },
            Replica {
                region: "eu-central-1".into(),
                kms_key_id: Some("alias/aws/secretsmanager".into())
            },
        ]
    );
    // A resource policy named in metadata is put after creation, once read.
    let e = sm_entry(
        json!({"metadata": meta(json!({"resourcePolicy": {"blockPublicPolicy": true, "policySourceRef": {"kind": "ConfigMap", "name": "resource-policy", "key": "policy.json"}}}))}),
    );
    let err = guard::decide_secrets_manager(&e, UpdatePolicy::Replace, None, None).unwrap_err();
    assert!(err.to_string().contains("was not read"), "{err}");
    let SmDecision::Create(c) = guard::decide_secrets_manager(
        &e,
        UpdatePolicy::Replace,
        None,
        Some(r#"{"Version":"2012-10-17"}"#),
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(
        c.policy,
        Some((r#"{"Version":"2012-10-17"}"#.to_owned(), Some(true)))
    );
}

#[test]
fn secrets_manager_update() {
    let plain = sm_entry(json!({}));
    // SetSecretSucceedsWithExistingSecret: no tags in metadata, existing
    // tags left; policy deleted; new value with a fresh version.
    let u = update(
        guard::decide_secrets_manager(
            &plain,
            UpdatePolicy::Replace,
            Some(&sm_remote(MANAGED, SmCurrent::String("old-value".into()))),
            None,
        )
        .unwrap(),
    );
    assert!(u.untag.is_empty() && u.tag.is_empty());
    assert_eq!(u.policy, PolicyStep::Delete);
    assert_eq!(
        u.write,
        Some(SmWrite {
            value: "fake-value".into(),
            format: SecretPushFormat::Binary,
            token: Token::Fresh
        })
    );
    // ...NoSecretVersions: first version, token 0...01.
    let u = update(
        guard::decide_secrets_manager(
            &plain,
            UpdatePolicy::Replace,
            Some(&sm_remote(MANAGED, SmCurrent::NoVersion)),
            None,
        )
        .unwrap(),
    );
    assert_eq!(u.write.unwrap().token, Token::Initial);
    // SetSecretWillNotPushSameSecret
    let u = update(
        guard::decide_secrets_manager(
            &plain,
            UpdatePolicy::Replace,
            Some(&sm_remote(MANAGED, SmCurrent::Binary("fake-value".into()))),
            None,
        )
        .unwrap(),
    );
    assert_eq!(u.write, None);
    assert_eq!(u.policy, PolicyStep::Delete);
    // TestPushSecretEmptyExistingResourcePolicy: string format against a
    // binary of the same bytes is unchanged.
    let string_format = sm_entry(json!({"metadata": meta(json!({"secretPushFormat": "string"}))}));
    let u = update(
        guard::decide_secrets_manager(
            &string_format,
            UpdatePolicy::Replace,
            Some(&sm_remote(MANAGED, SmCurrent::Binary("fake-value".into()))),
            None,
        )
        .unwrap(),
    );
    assert_eq!(u.write, None);
    // SetSecretSucceedsWithExistingSecretAndAdditionalTags
    let tagged = sm_entry(json!({"metadata": meta(json!({"tags": {"tagname12": "tagvalue1"}}))}));
    let u = update(
        guard::decide_secrets_manager(
            &tagged,
            UpdatePolicy::Replace,
            Some(&sm_remote(MANAGED, SmCurrent::String("old-value".into()))),
            None,
        )
        .unwrap(),
    );
    assert_eq!(u.untag, vec!["taname1".to_owned()]);
    assert_eq!(
        u.tag,
        tags(&[
            ("managed-by", "external-secrets"),
            ("tagname12", "tagvalue1")
        ])
    );
    // TestPushSecretTagsUpdatedWhenValueUnchanged
    let new_tag = sm_entry(json!({"metadata": meta(json!({"tags": {"newTag": "newValue"}}))}));
    let u = update(
        guard::decide_secrets_manager(
            &new_tag,
            UpdatePolicy::Replace,
            Some(&sm_remote(
                &[("managed-by", "external-secrets")],
                SmCurrent::Binary("fake-value".into()),
            )),
            None,
        )
        .unwrap(),
    );
    assert!(u.untag.is_empty());
    assert_eq!(
        u.tag,
        tags(&[("managed-by", "external-secrets"), ("newTag", "newValue")])
    );
    assert_eq!(u.write, None);
    // Tags already as wanted: no TagResource.
    let u = update(
        guard::decide_secrets_manager(
            &new_tag,
            UpdatePolicy::Replace,
            Some(&sm_remote(
                &[("managed-by", "external-secrets"), ("newTag", "newValue")],
                SmCurrent::NoVersion,
            )),
            None,
        )
        .unwrap(),
    );
    assert!(u.tag.is_empty() && u.untag.is_empty());
    // IfNotExists: a secret with a value is kept; one without is written.
    assert_eq!(
        guard::decide_secrets_manager(
            &plain,
            UpdatePolicy::IfNotExists,
            Some(&sm_remote(&[], SmCurrent::String("x".into()))),
            None
        )
        .unwrap(),
        SmDecision::Skip(Skip::Exists)
    );
    assert!(matches!(
        guard::decide_secrets_manager(
            &plain,
            UpdatePolicy::IfNotExists,
            Some(&sm_remote(MANAGED, SmCurrent::NoVersion)),
            None
        )
        .unwrap(),
        SmDecision::Update(_)
    ));
    assert!(matches!(
        guard::decide_secrets_manager(&plain, UpdatePolicy::IfNotExists, None, None).unwrap(),
        SmDecision::Create(_)
    ));
    // A parameter-store entry is not decided here.
    let p = run(
        &ps(json!({"data": [{"match": {"secretKey": "key", "remoteRef": {"remoteKey": "/k"}}}]})),
        &src(&[("key", "v")]),
        &[ssm_store("s")],
    )
    .unwrap();
    assert!(
        guard::decide_secrets_manager(&p.entries[0], UpdatePolicy::Replace, None, None).is_err()
    );
    assert!(guard::decide_parameter_store(&plain, UpdatePolicy::Replace, None).is_err());
}

#[test]
fn secrets_manager_properties() {
    let prop = sm_entry(json!({"match": {"remoteRef": {"property": "other-fake-property"}}}));
    // ...AndNewPropertyBinary / ...AndNewPropertyString (written as binary).
    for current in [
        SmCurrent::Binary(r#"{"fake-property":"fake-value"}"#.into()),
        SmCurrent::String(r#"{"fake-property":"fake-value"}"#.into()),
    ] {
        let u = update(
            guard::decide_secrets_manager(
                &prop,
                UpdatePolicy::Replace,
                Some(&sm_remote(MANAGED, current)),
                None,
            )
            .unwrap(),
        );
        let w = u.write.unwrap();
        assert_eq!(w.format, SecretPushFormat::Binary);
        assert_eq!(
            serde_json::from_slice::<Value>(w.value.expose()).unwrap(),
            json!({"fake-property": "fake-value", "other-fake-property": "fake-value"})
        );
    }
    // ...NoSecretVersionsWithProperty
    let u = update(
        guard::decide_secrets_manager(
            &prop,
            UpdatePolicy::Replace,
            Some(&sm_remote(MANAGED, SmCurrent::NoVersion)),
            None,
        )
        .unwrap(),
    );
    assert_eq!(
        u.write.unwrap().value.expose(),
        br#"{"other-fake-property":"fake-value"}"#
    );
    // Already set: no write, whatever the formatting.
    let u = update(
        guard::decide_secrets_manager(
            &prop,
            UpdatePolicy::Replace,
            Some(&sm_remote(
                MANAGED,
                SmCurrent::String(r#"{ "other-fake-property" : "fake-value", "z": 1 }"#.into()),
            )),
            None,
        )
        .unwrap(),
    );
    assert_eq!(u.write, None);
    // ...AndNewPropertyWithDot
    let dot = sm_entry(
        json!({"match": {"remoteRef": {"property": "fake-property.other-fake-property"}}}),
    );
    let u = update(
        guard::decide_secrets_manager(
            &dot,
            UpdatePolicy::Replace,
            Some(&sm_remote(
                MANAGED,
                SmCurrent::String(r#"{"fake-property":{"fake-property":"fake-value"}}"#.into()),
            )),
            None,
        )
        .unwrap(),
    );
    assert_eq!(
        serde_json::from_slice::<Value>(u.write.unwrap().value.expose()).unwrap(),
        json!({"fake-property": {"fake-property": "fake-value", "other-fake-property": "fake-value"}})
    );
    // SetSecretWithPropertyFailsExistingNonJsonSecret
    let err = guard::decide_secrets_manager(
        &prop,
        UpdatePolicy::Replace,
        Some(&sm_remote(
            MANAGED,
            SmCurrent::String("non-json-secret".into()),
        )),
        None,
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("fake-key: a push with a property requires a json secret"),
        "{err}"
    );
    // JSON, but not an object (ESO's sjson would fail silently).
    assert!(
        guard::decide_secrets_manager(
            &prop,
            UpdatePolicy::Replace,
            Some(&sm_remote(MANAGED, SmCurrent::String("[1,2]".into()))),
            None
        )
        .is_err()
    );
    // A merge that would pass 64 KiB is refused before any call.
    let big = format!(r#"{{"a":"{}"}}"#, "x".repeat(65_530));
    assert!(matches!(
        guard::decide_secrets_manager(
            &prop,
            UpdatePolicy::Replace,
            Some(&sm_remote(MANAGED, SmCurrent::String(big.into()))),
            None
        ),
        Err(PushError::TooLarge { .. })
    ));
}

#[test]
fn secrets_manager_policy_and_replicas() {
    let with_policy = sm_entry(
        json!({"metadata": meta(json!({"secretPushFormat": "string", "resourcePolicy": {"blockPublicPolicy": true,
        "policySourceRef": {"kind": "ConfigMap", "name": "resource-policy", "key": "policy.json"}}}))}),
    );
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Sid":"A","Effect":"Deny","Principal":"*","Action":["x","y"],"Resource":"*"}]}"#;
    let u = update(
        guard::decide_secrets_manager(
            &with_policy,
            UpdatePolicy::Replace,
            Some(&sm_remote(MANAGED, SmCurrent::String("old-value".into()))),
            Some(policy),
        )
        .unwrap(),
    );
    assert_eq!(
        u.policy,
        PolicyStep::Reconcile {
            policy: policy.into(),
            block_public_policy: Some(true)
        }
    );
    // An empty policy text: deleted, as ESO does.
    let u = update(
        guard::decide_secrets_manager(
            &with_policy,
            UpdatePolicy::Replace,
            Some(&sm_remote(MANAGED, SmCurrent::NoVersion)),
            Some(""),
        )
        .unwrap(),
    );
    assert_eq!(u.policy, PolicyStep::Delete);
    // SetSecretWithExistingNonChangingResourcePolicy / ...ChangingResourcePolicy
    let reordered = r#"{ "Statement": [ {"Resource": "*", "Action": ["x", "y"], "Principal": "*", "Effect": "Deny", "Sid": "A"} ], "Version": "2012-10-17" }"#;
    assert!(!guard::policy_differs(policy, Some(reordered), "at").unwrap());
    assert!(
        guard::policy_differs(policy, Some(&reordered.replace("\"y\"", "\"z\"")), "at").unwrap()
    );
    // SetSecretWithEmptyExistingResourcePolicy
    assert!(guard::policy_differs(policy, None, "at").unwrap());
    assert!(guard::policy_differs(policy, Some(""), "at").unwrap());
    assert!(guard::policy_differs("[1]", None, "at").is_err());
    assert!(
        guard::policy_differs(policy, Some("not json"), "at")
            .unwrap_err()
            .to_string()
            .contains("current")
    );
    // SetReplicationOnSecretWhileKeepingExistingReplication
    let repl = sm_entry(
        json!({"metadata": meta(json!({"secretPushFormat": "string", "replicationLocations": ["eu-north-1", "eu-central-1"]}))}),
    );
    let remote = SmRemote {
        kms_key_id: Some("bb123123-b2b0-4f60-ac3a-44a13f0e6b6c".into()),
        replica_regions: ["eu-west-3", "eu-north-1", "sa-east-1", "ap-southeast-2"]
            .map(String::from)
            .to_vec(),
        ..sm_remote(MANAGED, SmCurrent::String("old-value".into()))
    };
    let u = update(
        guard::decide_secrets_manager(&repl, UpdatePolicy::Replace, Some(&remote), None).unwrap(),
    );
    assert_eq!(
        u.remove_regions,
        ["eu-west-3", "sa-east-1", "ap-southeast-2"]
            .map(String::from)
            .to_vec()
    );
    assert_eq!(
        u.add_replicas,
        vec![Replica {
            region: "eu-central-1".into(),
            kms_key_id: Some("bb123123-b2b0-4f60-ac3a-44a13f0e6b6c".into())
        }]
    );
    // SetReplicationOnSecretWithoutPreviousExistingReplications: no key.
    let u = update(
        guard::decide_secrets_manager(
            &repl,
            UpdatePolicy::Replace,
            Some(&sm_remote(MANAGED, SmCurrent::String("old-value".into()))),
            None,
        )
        .unwrap(),
    );
    assert_eq!(
        u.add_replicas
            .iter()
            .map(|r| r.kms_key_id.clone())
            .collect::<Vec<_>>(),
        vec![None, None]
    );
    // Without replicationLocations the replicas are left alone; with an
    // empty list they all go.
    let u = update(
        guard::decide_secrets_manager(
            &sm_entry(json!({})),
            UpdatePolicy::Replace,
            Some(&remote),
            None,
        )
        .unwrap(),
    );
    assert!(u.remove_regions.is_empty() && u.add_replicas.is_empty());
    let none = sm_entry(json!({"metadata": meta(json!({"replicationLocations": []}))}));
    let u = update(
        guard::decide_secrets_manager(&none, UpdatePolicy::Replace, Some(&remote), None).unwrap(),
    );
    assert_eq!(u.remove_regions.len(), 4);
}

fn ssm_entry(metadata: Option<Value>) -> PushEntry {
    let mut d =
        json!({"match": {"secretKey": "fakeSecretKey", "remoteRef": {"remoteKey": "/p/fake-key"}}});
    if let Some(m) = metadata {
        d["metadata"] = meta(m);
    }
    let p = run(
        &ps(json!({"data": [d]})),
        &src(&[("fakeSecretKey", "fakeValue")]),
        &[ssm_store("test-store")],
    )
    .unwrap();
    p.entries[0].clone()
}

fn ssm_remote(value: &str, t: &[(&str, &str)]) -> SsmRemote {
    SsmRemote {
        value: value.into(),
        tags: tags(t),
    }
}

#[test]
fn parameter_store_decisions() {
    // PutParameterSucceeds
    let SsmDecision::Create(put) =
        guard::decide_parameter_store(&ssm_entry(None), UpdatePolicy::Replace, None).unwrap()
    else {
        panic!()
    };
    assert_eq!(put.name, "/p/fake-key");
    assert_eq!(put.value.expose(), b"fakeValue");
    assert_eq!(put.type_, ParameterType::String);
    assert!(!put.overwrite);
    assert_eq!(put.tags, tags(&[("managed-by", "external-secrets")]));
    assert_eq!(put.kms_key_id, None);
    assert_eq!(put.tier, None);
    assert_eq!(put.description, "secret 'managed-by:external-secrets'");
    // PSAdvancedTierOnCreate: SecureString with its key, tier and policies.
    let adv = ssm_entry(Some(
        json!({"secretType": "SecureString", "kmsKeyID": "arn:aws:kms:sa-east-1:00000000000:key/bb",
        "tier": {"type": "Advanced", "policies": [{"type": "Expiration"}]}}),
    ));
    let SsmDecision::Create(put) =
        guard::decide_parameter_store(&adv, UpdatePolicy::Replace, None).unwrap()
    else {
        panic!()
    };
    assert_eq!(
        put.kms_key_id.as_deref(),
        Some("arn:aws:kms:sa-east-1:00000000000:key/bb")
    );
    assert_eq!(put.tier, Some(Tier::Advanced));
    assert_eq!(put.policies.as_deref(), Some(r#"[{"type":"Expiration"}]"#));
    // Intelligent-Tiering is not sent (as ESO).
    let it = ssm_entry(Some(json!({"tier": {"type": "Intelligent-Tiering"}})));
    let SsmDecision::Create(put) =
        guard::decide_parameter_store(&it, UpdatePolicy::Replace, None).unwrap()
    else {
        panic!()
    };
    assert_eq!(put.tier, None);
    // SetSecretContentMatches / SetSecretWithValidMetadata: same value,
    // nothing else (not even tags) is reconciled.
    assert_eq!(
        guard::decide_parameter_store(
            &adv,
            UpdatePolicy::Replace,
            Some(&ssm_remote(
                "fakeValue",
                &[("managed-by", "external-secrets"), ("extra", "x")]
            ))
        )
        .unwrap(),
        SsmDecision::Skip(Skip::Unchanged)
    );
    // GetSecretWithValidParameters: overwrite, no tags; nothing to retag.
    let d = guard::decide_parameter_store(
        &ssm_entry(None),
        UpdatePolicy::Replace,
        Some(&ssm_remote(
            "old-value",
            &[("managed-by", "external-secrets")],
        )),
    )
    .unwrap();
    let SsmDecision::Update { put, untag, tag } = d else {
        panic!()
    };
    assert!(put.overwrite && put.tags.is_empty() && untag.is_empty() && tag.is_empty());
    // SecretPatchTags
    let patch = ssm_entry(Some(json!({"tags": {"env": "sandbox", "rotation": "1h"}})));
    let d = guard::decide_parameter_store(
        &patch,
        UpdatePolicy::Replace,
        Some(&ssm_remote(
            "some-value",
            &[
                ("managed-by", "external-secrets"),
                ("team", "no-longer-needed"),
                ("rotation", "10m"),
            ],
        )),
    )
    .unwrap();
    let SsmDecision::Update { untag, tag, .. } = d else {
        panic!()
    };
    assert_eq!(untag, vec!["team".to_owned()]);
    assert_eq!(
        tag,
        tags(&[
            ("env", "sandbox"),
            ("managed-by", "external-secrets"),
            ("rotation", "1h")
        ])
    );
    // SetSecretNotManagedByESO
    assert_eq!(
        guard::decide_parameter_store(
            &ssm_entry(None),
            UpdatePolicy::Replace,
            Some(&ssm_remote("old-value", &[]))
        )
        .unwrap_err(),
        PushError::NotManaged {
            key: "/p/fake-key".into()
        }
    );
    // GetRemoteSecretWithoutDecryption
    let e = guard::decide_parameter_store(
        &ssm_entry(None),
        UpdatePolicy::Replace,
        Some(&ssm_remote(
            "sensitive",
            &[("managed-by", "external-secrets")],
        )),
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("unable to compare 'sensitive' result"),
        "{e}"
    );
    // IfNotExists: any existing parameter, managed or not, is kept.
    assert_eq!(
        guard::decide_parameter_store(
            &ssm_entry(None),
            UpdatePolicy::IfNotExists,
            Some(&ssm_remote("x", &[]))
        )
        .unwrap(),
        SsmDecision::Skip(Skip::Exists)
    );
}

#[test]
fn deletes() {
    let managed = SmRemote {
        replica_regions: vec!["eu-north-1".into()],
        ..sm_remote(
            &[("managed-by", "external-secrets")],
            SmCurrent::String("v".into()),
        )
    };
    assert_eq!(
        guard::decide_secrets_manager_delete(None, None).unwrap(),
        DeleteDecision::Gone
    );
    assert_eq!(
        guard::decide_secrets_manager_delete(Some(&managed), None).unwrap(),
        DeleteDecision::Delete {
            remove_regions: vec!["eu-north-1".into()],
            force_delete_without_recovery: false,
            recovery_window_in_days: None
        }
    );
    let settings = |force: Option<bool>, window: Option<i64>| SecretsManagerSettings {
        force_delete_without_recovery: force,
        recovery_window_in_days: window,
    };
    assert_eq!(
        guard::decide_secrets_manager_delete(Some(&managed), Some(&settings(Some(true), None)))
            .unwrap(),
        DeleteDecision::Delete {
            remove_regions: vec!["eu-north-1".into()],
            force_delete_without_recovery: true,
            recovery_window_in_days: None
        }
    );
    assert!(matches!(
        guard::decide_secrets_manager_delete(Some(&managed), Some(&settings(None, Some(7))))
            .unwrap(),
        DeleteDecision::Delete {
            recovery_window_in_days: Some(7),
            ..
        }
    ));
    assert!(
        guard::decide_secrets_manager_delete(Some(&managed), Some(&settings(None, Some(1))))
            .unwrap_err()
            .to_string()
            .contains("RecoveryWindowInDays must be between 7 and 30 days")
    );
    assert!(
        guard::decide_secrets_manager_delete(Some(&managed), Some(&settings(None, Some(-3))))
            .is_err()
    );
    assert!(
        guard::decide_secrets_manager_delete(Some(&managed), Some(&settings(Some(true), Some(7))))
            .unwrap_err()
            .to_string()
            .contains("ForceDeleteWithoutRecovery conflicts with RecoveryWindowInDays")
    );
    // Settings are only checked when something is deleted.
    assert_eq!(
        guard::decide_secrets_manager_delete(None, Some(&settings(None, Some(1)))).unwrap(),
        DeleteDecision::Gone
    );
    assert_eq!(
        guard::decide_parameter_store_delete(None),
        DeleteDecision::Gone
    );
    assert!(matches!(
        guard::decide_parameter_store_delete(Some(&tags(&[("managed-by", "external-secrets")]))),
        DeleteDecision::Delete { .. }
    ));
    // Removing a dropped property.
    let json_remote = sm_remote(
        &[("managed-by", "external-secrets")],
        SmCurrent::String(r#"{"field1":"v","field2":"w"}"#.into()),
    );
    let w = guard::remove_property(Some(&json_remote), "path/to/key", "field2")
        .unwrap()
        .unwrap();
    assert_eq!(w.value.expose(), br#"{"field1":"v"}"#);
    assert_eq!(w.format, SecretPushFormat::String);
    assert_eq!(
        guard::remove_property(Some(&json_remote), "k", "absent").unwrap(),
        None
    );
    assert_eq!(guard::remove_property(None, "k", "field1").unwrap(), None);
    let unmanaged = sm_remote(&[], SmCurrent::String(r#"{"field1":"v"}"#.into()));
    assert_eq!(
        guard::remove_property(Some(&unmanaged), "k", "field1").unwrap(),
        None
    );
    let not_json = sm_remote(
        &[("managed-by", "external-secrets")],
        SmCurrent::Binary("x".into()),
    );
    assert!(guard::remove_property(Some(&not_json), "k", "field1").is_err());
}

#[test]
fn error_paths_move_under_a_cluster_push_secret() {
    let e = PushError::Duplicate {
        path: "spec.data[1].match.remoteRef".into(),
        remote: "x".into(),
        other: "spec.data[0]".into(),
    };
    assert_eq!(
        e.under("spec.pushSecretSpec").to_string(),
        "spec.pushSecretSpec.data[1].match.remoteRef: duplicate remote key \"x\": spec.pushSecretSpec.data[0] writes it too"
    );
    let e = PushError::NotManaged { key: "k".into() };
    assert_eq!(e.clone().under("spec.pushSecretSpec"), e);
    assert_eq!(
        PushError::invalid("specific", "x").under("p").to_string(),
        "specific: x"
    );
}
