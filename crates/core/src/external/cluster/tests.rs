//! External Secrets v2.9.0's ClusterExternalSecret controller cases
//! (`clusterexternalsecret_controller_test.go`, 13 entries), as far as
//! they are decisions: named after theirs. The reads and writes are
//! tests/cluster_external_secrets.rs's.

use super::*;

const MANAGER: &str = "test-manager";

struct World {
    labels: Vec<(String, BTreeMap<String, String>, bool)>,
}

impl World {
    fn new(namespaces: &[(&str, &[(&str, &str)])]) -> Self {
        World {
            labels: namespaces
                .iter()
                .map(|(name, pairs)| {
                    let mut l: BTreeMap<String, String> = pairs
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect();
                    // As the API server sets it on every namespace.
                    l.insert(NAMESPACE_NAME_LABEL.to_owned(), (*name).to_owned());
                    ((*name).to_owned(), l, false)
                })
                .collect(),
        }
    }

    fn terminating(mut self, name: &str) -> Self {
        for n in &mut self.labels {
            if n.0 == name {
                n.2 = true;
            }
        }
        self
    }

    fn namespaces(&self) -> Vec<Namespace<'_>> {
        self.labels
            .iter()
            .map(|(name, labels, terminating)| Namespace {
                name,
                labels,
                terminating: *terminating,
            })
            .collect()
    }
}

/// ESO's `defaultClusterExternalSecret` spec, with `extra` merged in.
fn spec_value(extra: Value) -> Value {
    let mut spec = json!({
        "externalSecretSpec": {
            "secretStoreRef": {"name": "test-store"},
            "target": {"name": "test-secret"},
            "data": [{
                "secretKey": "test-secret-key",
                "remoteRef": {"key": "test-remote-key", "nullBytePolicy": "Ignore"},
            }],
        },
    });
    for (k, v) in extra.as_object().expect("object") {
        spec[k] = v.clone();
    }
    spec
}

fn spec(v: &Value) -> ClusterExternalSecretSpec {
    read_spec(v).expect("valid spec")
}

fn by_name(ns: &str) -> Value {
    json!({"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: ns}}})
}

fn ces<'a>(spec: &'a Value, annotations: &'a BTreeMap<String, String>) -> Ces<'a> {
    Ces {
        name: "test-ces",
        uid: "uid-1",
        api_version: "external-secrets.io/v1",
        annotations,
        spec,
    }
}

fn ready_true() -> Vec<api::Condition> {
    vec![api::Condition {
        type_: "Ready".into(),
        status: "True".into(),
        ..Default::default()
    }]
}

fn ready_false() -> Vec<api::Condition> {
    vec![api::Condition {
        type_: "Ready".into(),
        status: "False".into(),
        message: Some(NAMESPACES_FAILED.into()),
        ..Default::default()
    }]
}

fn strings(s: &[&str]) -> Vec<String> {
    s.iter().map(|s| (*s).to_owned()).collect()
}

/// What the API server holds after `desired` was applied by `manager`
/// (defaults filled in, as ESO's CRD does, and the manager's fields).
fn applied(desired: &Value, manager: &str, fields: Value) -> Value {
    let mut current = desired.clone();
    current["spec"]["refreshInterval"] = json!("1h");
    current["spec"]["target"]["creationPolicy"] = json!("Owner");
    current["spec"]["data"][0]["remoteRef"]["conversionStrategy"] = json!("Default");
    current["metadata"]["uid"] = json!("es-uid");
    current["metadata"]["managedFields"] = json!([
        {"manager": "someone-else", "operation": "Update", "fieldsV1": {"f:metadata": {"f:labels": {"f:other": {}}}}},
        {"manager": manager, "operation": "Apply", "fieldsV1": fields},
    ]);
    current
}

/// The fieldsV1 an apply of `desired` leaves (lists atomic).
fn fields_of(v: &Value) -> Value {
    match v {
        Value::Object(m) if !m.is_empty() => {
            let mut out = Map::new();
            out.insert(".".into(), json!({}));
            for (k, child) in m {
                let f = if k == "ownerReferences" {
                    json!({".": {}, "k:{\"uid\":\"uid-1\"}": {}})
                } else {
                    fields_of(child)
                };
                out.insert(format!("f:{k}"), f);
            }
            Value::Object(out)
        }
        _ => json!({}),
    }
}

fn provision_all(plan: &Plan, old: &ClusterExternalSecretStatus) -> ClusterExternalSecretStatus {
    status_after(old, &plan.es_name, &plan.provision, &BTreeMap::new())
}

#[test]
fn should_use_cluster_external_secret_name_if_external_secret_name_isnt_defined() {
    let w = World::new(&[("ns-a", &[])]);
    let v = spec_value(by_name("ns-a"));
    let p = plan("test-ces", &spec(&v), &Default::default(), &w.namespaces()).expect("plan");
    assert_eq!(p.es_name, "test-ces");
    assert_eq!(p.provision, strings(&["ns-a"]));
    let status = provision_all(&p, &Default::default());
    assert_eq!(
        status,
        ClusterExternalSecretStatus {
            external_secret_name: Some("test-ces".into()),
            provisioned_namespaces: strings(&["ns-a"]),
            conditions: ready_true(),
            ..Default::default()
        }
    );
    let none = BTreeMap::new();
    let es = desired(
        &ces(&v, &none),
        &spec(&v),
        "ns-a",
        &p.es_name,
        "external-secrets.io/v1",
    );
    assert_eq!(es["metadata"]["name"], "test-ces");
    assert_eq!(es["spec"], v["externalSecretSpec"]);
    assert!(es["metadata"].get("labels").is_none());
    assert!(es["metadata"].get("annotations").is_none());
    assert_eq!(
        es["metadata"]["ownerReferences"],
        json!([{"apiVersion": "external-secrets.io/v1", "kind": "ClusterExternalSecret", "name": "test-ces", "uid": "uid-1", "controller": true, "blockOwnerDeletion": true}])
    );
}

#[test]
fn should_set_external_secret_name_and_metadata_if_the_fields_are_set() {
    let w = World::new(&[("ns-a", &[])]);
    let mut extra = by_name("ns-a");
    extra["externalSecretName"] = json!("test-es");
    extra["externalSecretMetadata"] = json!({
        "labels": {"test-label-key1": "test-label-value1", "test-label-key2": "test-label-value2"},
        "annotations": {"test-annotation-key1": "test-annotation-value1", "test-annotation-key2": "test-annotation-value2"},
    });
    let v = spec_value(extra);
    let p = plan("test-ces", &spec(&v), &Default::default(), &w.namespaces()).expect("plan");
    assert_eq!(p.es_name, "test-es");
    assert_eq!(
        provision_all(&p, &Default::default())
            .external_secret_name
            .as_deref(),
        Some("test-es")
    );
    let none = BTreeMap::new();
    let es = desired(
        &ces(&v, &none),
        &spec(&v),
        "ns-a",
        &p.es_name,
        "external-secrets.io/v1",
    );
    assert_eq!(es["metadata"]["name"], "test-es");
    assert_eq!(es["metadata"]["namespace"], "ns-a");
    assert_eq!(
        es["metadata"]["labels"],
        v["externalSecretMetadata"]["labels"]
    );
    assert_eq!(
        es["metadata"]["annotations"],
        v["externalSecretMetadata"]["annotations"]
    );
    assert_eq!(es["spec"], v["externalSecretSpec"]);
}

#[test]
fn should_delete_old_external_secrets_if_name_has_changed() {
    let w = World::new(&[("ns-a", &[])]);
    let mut extra = by_name("ns-a");
    extra["externalSecretName"] = json!("new-es-name");
    let v = spec_value(extra);
    let old = ClusterExternalSecretStatus {
        external_secret_name: Some("old-es-name".into()),
        provisioned_namespaces: strings(&["ns-a"]),
        conditions: ready_true(),
        ..Default::default()
    };
    let p = plan("test-ces", &spec(&v), &old, &w.namespaces()).expect("plan");
    assert_eq!(p.renamed_from.as_deref(), Some("old-es-name"));
    assert_eq!(p.es_name, "new-es-name");
    assert!(p.removed.is_empty());
    let status = provision_all(&p, &old);
    assert_eq!(status.external_secret_name.as_deref(), Some("new-es-name"));
    assert_eq!(status.provisioned_namespaces, strings(&["ns-a"]));
    assert_eq!(status.conditions, ready_true());
    // A deletion that failed keeps the old name, to be tried again.
    let failed = BTreeMap::from([("ns-a".to_owned(), "forbidden".to_owned())]);
    let status = rename_failed(&old, &failed);
    assert_eq!(status.external_secret_name.as_deref(), Some("old-es-name"));
    assert_eq!(status.conditions, ready_false());
    // The watch's ExternalSecrets under the old name are strays too.
    let owned = vec![
        ("ns-a".to_owned(), "old-es-name".to_owned()),
        ("ns-a".to_owned(), "new-es-name".to_owned()),
    ];
    assert_eq!(
        strays(&owned, &p.es_name, &p.selected),
        vec![("ns-a".to_owned(), "old-es-name".to_owned())]
    );
}

#[test]
fn should_update_external_secret_if_the_fields_change() {
    let v = spec_value(by_name("ns-a"));
    let none = BTreeMap::new();
    let before = desired(
        &ces(&v, &none),
        &spec(&v),
        "ns-a",
        "test-ces",
        "external-secrets.io/v1",
    );
    let current = applied(&before, MANAGER, fields_of(&before));
    // Applied once, with the API server's defaults: nothing to write.
    assert!(holds(&current, &before, MANAGER));
    // Not by this manager (ESO made it): applied once.
    assert!(!holds(&current, &before, "another-manager"));

    let mut extra = by_name("ns-a");
    extra["externalSecretMetadata"] = json!({
        "labels": {"test-label-key": "test-label-value"},
        "annotations": {"test-annotation-key": "test-annotation-value"},
    });
    let mut changed = spec_value(extra);
    changed["externalSecretSpec"]["secretStoreRef"]["name"] = json!("updated-test-store");
    let after = desired(
        &ces(&changed, &none),
        &spec(&changed),
        "ns-a",
        "test-ces",
        "external-secrets.io/v1",
    );
    assert_eq!(
        after["spec"]["secretStoreRef"]["name"],
        "updated-test-store"
    );
    assert_eq!(
        after["metadata"]["labels"]["test-label-key"],
        "test-label-value"
    );
    assert!(!holds(&current, &after, MANAGER));
    let current = applied(&after, MANAGER, fields_of(&after));
    assert!(holds(&current, &after, MANAGER));

    // A field taken out of the spec: the manager applied it, so the
    // apply (which removes it) is due, though every desired value is there.
    let mut fewer = after.clone();
    fewer["spec"]["target"]
        .as_object_mut()
        .expect("target")
        .remove("name");
    assert!(!holds(&current, &fewer, MANAGER));
    // A label another writer added is theirs.
    let mut other = current.clone();
    other["metadata"]["labels"]["other"] = json!("x");
    assert!(holds(&other, &after, MANAGER));
}

#[test]
fn should_not_overwrite_existing_external_secrets_and_error_out_if_one_is_present() {
    // An ExternalSecret made by hand: no owner.
    assert!(!controlled_by(&Value::Null, "test-ces"));
    assert!(!controlled_by(&json!([]), "test-ces"));
    // Owned, but not controlled, or by another kind or name.
    let r = |api: &str, kind: &str, name: &str, controller: bool| json!([{"apiVersion": api, "kind": kind, "name": name, "uid": "u", "controller": controller}]);
    assert!(controlled_by(
        &r("external-secrets.io/v1", KIND, "test-ces", true),
        "test-ces"
    ));
    assert!(controlled_by(
        &r("external-secrets.io/v1beta1", KIND, "test-ces", true),
        "test-ces"
    ));
    assert!(!controlled_by(
        &r("external-secrets.io/v1", KIND, "test-ces", false),
        "test-ces"
    ));
    assert!(!controlled_by(
        &r("external-secrets.io/v1", KIND, "other", true),
        "test-ces"
    ));
    assert!(!controlled_by(
        &r("example.com/v1", KIND, "test-ces", true),
        "test-ces"
    ));
    assert!(!controlled_by(
        &r("external-secrets.io/v1", "ExternalSecret", "test-ces", true),
        "test-ces"
    ));

    let failed = BTreeMap::from([("ns-a".to_owned(), ALREADY_EXISTS.to_owned())]);
    let status = status_after(&Default::default(), "test-ces", &[], &failed);
    assert_eq!(
        status,
        ClusterExternalSecretStatus {
            external_secret_name: Some("test-ces".into()),
            failed_namespaces: vec![NamespaceFailure {
                namespace: "ns-a".into(),
                reason: Some("external secret already exists in namespace".into()),
            }],
            conditions: ready_false(),
            ..Default::default()
        }
    );
}

#[test]
fn should_crate_an_external_secret_if_one_with_the_same_name_has_been_deleted() {
    let w = World::new(&[("ns-a", &[])]);
    let v = spec_value(by_name("ns-a"));
    let failed = BTreeMap::from([("ns-a".to_owned(), ALREADY_EXISTS.to_owned())]);
    let old = status_after(&Default::default(), "test-ces", &[], &failed);
    // The foreign one is gone: the next reconcile provisions, and the
    // failure goes.
    let p = plan("test-ces", &spec(&v), &old, &w.namespaces()).expect("plan");
    assert_eq!(p.provision, strings(&["ns-a"]));
    let status = provision_all(&p, &old);
    assert_eq!(
        status,
        ClusterExternalSecretStatus {
            external_secret_name: Some("test-ces".into()),
            provisioned_namespaces: strings(&["ns-a"]),
            conditions: ready_true(),
            ..Default::default()
        }
    );
    // The apply clears the list ESO (or an earlier status) wrote.
    assert_eq!(status_patch(&old, &status)["failedNamespaces"], json!([]));
    assert!(
        status_patch(&status, &status)
            .get("failedNamespaces")
            .is_none()
    );
}

#[test]
fn should_delete_external_secrets_when_namespaces_no_longer_match() {
    let key = "no-longer-match-label-key";
    let value = "no-longer-match-label-value";
    let v = spec_value(json!({"namespaceSelector": {"matchLabels": {key: value}}}));
    let before = World::new(&[("ns-a", &[(key, value)]), ("ns-b", &[(key, value)])]);
    let p = plan(
        "test-ces",
        &spec(&v),
        &Default::default(),
        &before.namespaces(),
    )
    .expect("plan");
    let old = provision_all(&p, &Default::default());
    assert_eq!(old.provisioned_namespaces, strings(&["ns-a", "ns-b"]));

    let after = World::new(&[("ns-a", &[]), ("ns-b", &[(key, value)])]);
    let p = plan("test-ces", &spec(&v), &old, &after.namespaces()).expect("plan");
    assert_eq!(p.removed, strings(&["ns-a"]));
    assert_eq!(p.provision, strings(&["ns-b"]));
    let status = provision_all(&p, &old);
    assert_eq!(status.provisioned_namespaces, strings(&["ns-b"]));
    assert_eq!(status.conditions, ready_true());
    let owned = vec![
        ("ns-a".to_owned(), "test-ces".to_owned()),
        ("ns-b".to_owned(), "test-ces".to_owned()),
    ];
    assert_eq!(
        strays(&owned, &p.es_name, &p.selected),
        vec![("ns-a".to_owned(), "test-ces".to_owned())]
    );
}

#[test]
fn should_sync_with_match_expression() {
    let w = World::new(&[
        ("ns-foo", &[("prefix", "foo")]),
        ("ns-bar", &[("prefix", "bar")]),
        ("ns-baz", &[("prefix", "baz")]),
    ]);
    let v = spec_value(json!({
        "refreshTime": "100ms",
        "namespaceSelector": {"matchExpressions": [
            {"key": "prefix", "operator": "In", "values": ["foo", "bar"]},
        ]},
    }));
    let p = plan("test-ces", &spec(&v), &Default::default(), &w.namespaces()).expect("plan");
    assert_eq!(p.provision, strings(&["ns-bar", "ns-foo"]));
    assert_eq!(
        provision_all(&p, &Default::default()).provisioned_namespaces,
        strings(&["ns-bar", "ns-foo"])
    );
    // 100ms is read, and raised to the controller's shortest.
    assert_eq!(
        refresh(&spec(&v), Duration::from_secs(10)),
        Ok(Some(Duration::from_secs(10)))
    );
    assert_eq!(
        refresh(&spec(&v), Duration::ZERO),
        Ok(Some(Duration::from_millis(100)))
    );
}

#[test]
fn should_be_ready_if_no_namespace_matches() {
    let w = World::new(&[("ns-a", &[])]);
    let v = spec_value(by_name("no-namespace-matches"));
    let p = plan("test-ces", &spec(&v), &Default::default(), &w.namespaces()).expect("plan");
    assert!(p.provision.is_empty());
    assert_eq!(
        provision_all(&p, &Default::default()),
        ClusterExternalSecretStatus {
            external_secret_name: Some("test-ces".into()),
            conditions: ready_true(),
            ..Default::default()
        }
    );
    // Nothing selects anything: no namespace either.
    let v = spec_value(json!({}));
    let p = plan("test-ces", &spec(&v), &Default::default(), &w.namespaces()).expect("plan");
    assert!(p.provision.is_empty());
}

#[test]
fn should_be_ready_if_namespace_is_selected_via_the_namespace_selectors() {
    let w = World::new(&[
        ("namespace1", &[("key", "value1")]),
        ("namespace2", &[("key", "value2")]),
        ("namespace3", &[("key", "value3")]),
    ]);
    let v = spec_value(json!({"namespaceSelectors": [
        {"matchLabels": {"key": "value1"}},
        {"matchLabels": {"key": "value2"}},
    ]}));
    let p = plan("test-ces", &spec(&v), &Default::default(), &w.namespaces()).expect("plan");
    assert_eq!(p.provision, strings(&["namespace1", "namespace2"]));
    // With the deprecated one too: OR'd, each namespace once.
    let v = spec_value(json!({
        "namespaceSelector": {"matchLabels": {"key": "value3"}},
        "namespaceSelectors": [{"matchLabels": {"key": "value1"}}, {"matchExpressions": [{"key": "key", "operator": "Exists"}]}],
    }));
    let p = plan("test-ces", &spec(&v), &Default::default(), &w.namespaces()).expect("plan");
    assert_eq!(
        p.provision,
        strings(&["namespace1", "namespace2", "namespace3"])
    );
}

#[test]
fn should_be_ready_if_namespace_is_selected_via_namespaces() {
    let w = World::new(&[("not-matching-namespace", &[])]);
    let v = spec_value(json!({"namespaces": ["does-not-exist", "not-matching-namespace"]}));
    let p = plan("test-ces", &spec(&v), &Default::default(), &w.namespaces()).expect("plan");
    assert_eq!(p.provision, strings(&["not-matching-namespace"]));
    assert_eq!(
        provision_all(&p, &Default::default()).conditions,
        ready_true()
    );
}

#[test]
fn should_propagate_the_force_sync_annotation() {
    let v = spec_value(json!({
        "externalSecretMetadata": {"annotations": {"keep": "me"}},
    }));
    let annotations = BTreeMap::from([(FORCE_SYNC_ANNOTATION.to_owned(), "true".to_owned())]);
    let es = desired(
        &ces(&v, &annotations),
        &spec(&v),
        "ns-a",
        "test-ces",
        "external-secrets.io/v1",
    );
    assert_eq!(
        es["metadata"]["annotations"],
        json!({FORCE_SYNC_ANNOTATION: "true", "keep": "me"})
    );
    // Its value, whatever it is (ESO's idiom is a changing timestamp).
    let annotations = BTreeMap::from([(FORCE_SYNC_ANNOTATION.to_owned(), "1700000000".to_owned())]);
    let es2 = desired(
        &ces(&v, &annotations),
        &spec(&v),
        "ns-a",
        "test-ces",
        "external-secrets.io/v1",
    );
    assert_eq!(
        es2["metadata"]["annotations"][FORCE_SYNC_ANNOTATION],
        "1700000000"
    );
    let current = applied(&es, MANAGER, fields_of(&es));
    assert!(!holds(&current, &es2, MANAGER));
}

#[test]
fn should_prune_the_force_sync_annotation() {
    let v = spec_value(json!({
        // Even from the metadata: only the ClusterExternalSecret's own counts.
        "externalSecretMetadata": {"annotations": {FORCE_SYNC_ANNOTATION: "from-metadata"}},
    }));
    let with = BTreeMap::from([(FORCE_SYNC_ANNOTATION.to_owned(), "true".to_owned())]);
    let before = desired(
        &ces(&v, &with),
        &spec(&v),
        "ns-a",
        "test-ces",
        "external-secrets.io/v1",
    );
    let current = applied(&before, MANAGER, fields_of(&before));
    let none = BTreeMap::new();
    let after = desired(
        &ces(&v, &none),
        &spec(&v),
        "ns-a",
        "test-ces",
        "external-secrets.io/v1",
    );
    assert!(after["metadata"].get("annotations").is_none());
    // The manager applied the annotation and no longer does: apply.
    assert!(!holds(&current, &after, MANAGER));
    let current = applied(&after, MANAGER, fields_of(&after));
    assert!(holds(&current, &after, MANAGER));
}

#[test]
fn an_invalid_selector_fails_the_whole_clusterexternalsecret() {
    let w = World::new(&[("ns-a", &[("team", "a")])]);
    let old = ClusterExternalSecretStatus {
        external_secret_name: Some("test-ces".into()),
        provisioned_namespaces: strings(&["ns-a"]),
        conditions: ready_true(),
        ..Default::default()
    };
    for bad in [
        json!({"namespaceSelectors": [{"matchLabels": {"team": "a"}}, {"matchExpressions": [{"key": "team", "operator": "In"}]}]}),
        // (an unknown operator is refused when the spec is read: the API's
        // enum)
        json!({"namespaceSelector": {"matchLabels": {"bad key!": "a"}}}),
        json!({"namespaces": ["Not_A_Name!"]}),
    ] {
        let v = spec_value(bad.clone());
        let status = plan("test-ces", &spec(&v), &old, &w.namespaces()).expect_err("invalid");
        assert_eq!(status.failed_namespaces.len(), 1, "{bad}");
        assert_eq!(status.failed_namespaces[0].namespace, UNKNOWN_NAMESPACE);
        assert!(
            status.failed_namespaces[0]
                .reason
                .as_deref()
                .is_some_and(|r| r.starts_with("spec.namespace")),
            "{status:?}"
        );
        // What was provisioned stays (nothing is deleted).
        assert_eq!(status.provisioned_namespaces, strings(&["ns-a"]));
        assert_eq!(status.conditions, ready_false());
    }
}

#[test]
fn terminating_namespaces_are_neither_provisioned_nor_pruned() {
    let w =
        World::new(&[("ns-a", &[("team", "a")]), ("ns-b", &[("team", "a")])]).terminating("ns-b");
    let v = spec_value(json!({"namespaceSelectors": [{"matchLabels": {"team": "a"}}]}));
    let old = ClusterExternalSecretStatus {
        provisioned_namespaces: strings(&["ns-a", "ns-b"]),
        external_secret_name: Some("test-ces".into()),
        ..Default::default()
    };
    let p = plan("test-ces", &spec(&v), &old, &w.namespaces()).expect("plan");
    assert_eq!(p.provision, strings(&["ns-a"]));
    assert!(p.removed.is_empty());
    assert_eq!(
        provision_all(&p, &old).provisioned_namespaces,
        strings(&["ns-a"])
    );
}

#[test]
fn more_namespaces_than_the_bound_change_nothing() {
    let names: Vec<String> = (0..=MAX_NAMESPACES).map(|i| format!("ns-{i:04}")).collect();
    let pairs: Vec<(&str, &[(&str, &str)])> = names.iter().map(|n| (n.as_str(), &[][..])).collect();
    let w = World::new(&pairs);
    let v = spec_value(json!({"namespaceSelectors": [{}]}));
    let old = ClusterExternalSecretStatus {
        external_secret_name: Some("test-ces".into()),
        provisioned_namespaces: strings(&["ns-0000"]),
        conditions: ready_true(),
        ..Default::default()
    };
    let status = plan("test-ces", &spec(&v), &old, &w.namespaces()).expect_err("over the bound");
    assert_eq!(status.provisioned_namespaces, old.provisioned_namespaces);
    assert_eq!(status.conditions.len(), 1);
    assert_eq!(status.conditions[0].status, "False");
    assert_eq!(
        status.conditions[0].message.as_deref(),
        Some(
            "selects 1001 namespaces, more than the 1000 one ClusterExternalSecret may provision: nothing was changed"
        )
    );
    // At the bound: provisioned.
    let w = World::new(&pairs[..MAX_NAMESPACES]);
    assert_eq!(
        plan("test-ces", &spec(&v), &old, &w.namespaces())
            .expect("at the bound")
            .provision
            .len(),
        MAX_NAMESPACES
    );
}

#[test]
fn refresh_time() {
    let with = |t: Value| spec(&spec_value(json!({"refreshTime": t})));
    let min = Duration::from_secs(1);
    assert_eq!(
        refresh(&spec(&spec_value(json!({}))), min),
        Ok(Some(DEFAULT_REFRESH))
    );
    assert_eq!(
        refresh(&with(json!("15m")), min),
        Ok(Some(Duration::from_secs(900)))
    );
    assert_eq!(
        refresh(&with(json!("1h30m")), min),
        Ok(Some(Duration::from_secs(5400)))
    );
    assert_eq!(refresh(&with(json!("0s")), min), Ok(None));
    assert_eq!(refresh(&with(json!("-1m")), min), Ok(None));
    assert!(refresh(&with(json!("soon")), min).is_err());
}

#[test]
fn other_conditions_are_kept_and_unknown_fields_refused() {
    let old = ClusterExternalSecretStatus {
        conditions: vec![
            api::Condition {
                type_: "Other".into(),
                status: "True".into(),
                ..Default::default()
            },
            api::Condition {
                type_: "Ready".into(),
                status: "False".into(),
                message: Some("x".into()),
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let status = status_after(&old, "n", &[], &BTreeMap::new());
    assert_eq!(status.conditions.len(), 2);
    assert_eq!(status.conditions[0].type_, "Other");
    assert_eq!(status.conditions[1], ready_true()[0]);

    let err = read_spec(&spec_value(json!({"namespaceSelectorz": {}}))).expect_err("unknown");
    assert!(
        err.to_string().starts_with("spec.namespaceSelectorz:"),
        "{err}"
    );
    // Nulls a schemaless CRD keeps are not applied.
    let v = spec_value(json!({}));
    let mut with_null = v.clone();
    with_null["externalSecretSpec"]["dataFrom"] = Value::Null;
    let none = BTreeMap::new();
    let es = desired(
        &ces(&with_null, &none),
        &spec(&v),
        "ns",
        "n",
        "external-secrets.io/v1",
    );
    assert!(es["spec"].get("dataFrom").is_none());
}
