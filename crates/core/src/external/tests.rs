use serde_json::json;

use super::*;

const ARN: &str = "arn:aws:secretsmanager:us-east-1:111122223333:secret:eso/example/secrets-Eq5llj";

/// The walkthrough's SecretStore.
fn walkthrough_store() -> Value {
    json!({
        "provider": {"aws": {
            "service": "SecretsManager",
            "region": "us-east-1",
            "auth": {"jwt": {"serviceAccountRef": {"name": "external-secrets-sa"}}}
        }}
    })
}

/// The walkthrough's ExternalSecret.
fn walkthrough_es() -> Value {
    json!({
        "refreshInterval": "1h",
        "secretStoreRef": {"name": "aws-secret-store", "kind": "SecretStore"},
        "target": {"name": "my-app-secrets", "creationPolicy": "Owner"},
        "data": [{"secretKey": "DB_PASSWORD", "remoteRef": {"key": ARN}}]
    })
}

fn sm_store() -> Store {
    store(&walkthrough_store(), Some("external-secrets")).unwrap()
}

#[test]
fn the_walkthrough_plans_one_fetch_and_one_key() {
    let s = sm_store();
    assert_eq!(s.service, ObjectType::SecretsManager);
    assert_eq!(s.region, "us-east-1");
    assert_eq!(
        s.auth,
        StoreAuth::Jwt {
            namespace: "external-secrets".into(),
            service_account: "external-secrets-sa".into(),
            audience: "sts.amazonaws.com".into()
        }
    );
    assert_eq!(
        store_ref(&walkthrough_es()).unwrap(),
        StoreRef {
            kind: StoreKind::SecretStore,
            name: "aws-secret-store".into()
        }
    );
    let p = sync_plan("my-app-secrets", &walkthrough_es(), &s).unwrap();
    assert_eq!(p.refresh, Refresh::Every(Duration::from_secs(3600)));
    assert_eq!(p.target.name, "my-app-secrets");
    assert_eq!(p.target.creation, CreationPolicy::Owner);
    assert_eq!(p.objects.objects.len(), 1);
    assert_eq!(p.objects.objects[0].primary.name, ARN);
    let data = render_secret(&p, &[SecretBytes::from("s3cr3t")], &[])
        .unwrap()
        .data;
    assert_eq!(data["DB_PASSWORD"].expose(), b"s3cr3t");
}

#[test]
fn keys_of_one_secret_share_one_fetch_and_versions_are_mapped() {
    let es = json!({
        "secretStoreRef": {"name": "s"},
        "data": [
            {"secretKey": "user", "remoteRef": {"key": "db", "property": "user"}},
            {"secretKey": "pass", "remoteRef": {"key": "db", "property": "pass"}},
            {"secretKey": "old", "remoteRef": {"key": "db", "property": "pass", "version": "AWSPREVIOUS"}},
            {"secretKey": "pinned", "remoteRef": {"key": "db", "version": "uuid/1234"}}
        ]
    });
    let p = sync_plan("x", &es, &sm_store()).unwrap();
    assert_eq!(p.objects.objects.len(), 3);
    assert_eq!(p.data[0].object, p.data[1].object);
    let old = &p.objects.objects[p.data[2].object].primary;
    assert_eq!(old.version_label.as_deref(), Some("AWSPREVIOUS"));
    let pinned = &p.objects.objects[p.data[3].object].primary;
    assert_eq!(pinned.version_id.as_deref(), Some("1234"));
    // Parameter Store: numbers are versions, words are labels.
    let mut ps = sm_store();
    ps.service = ObjectType::SsmParameter;
    let es = json!({"secretStoreRef": {"name": "s"}, "data": [
        {"secretKey": "a", "remoteRef": {"key": "/p", "version": "3"}},
        {"secretKey": "b", "remoteRef": {"key": "/p", "version": "stable"}}
    ]});
    let p = sync_plan("x", &es, &ps).unwrap();
    assert_eq!(
        p.objects.objects[0].primary.version_id.as_deref(),
        Some("3")
    );
    assert_eq!(
        p.objects.objects[1].primary.version_label.as_deref(),
        Some("stable")
    );
}

#[test]
fn properties_extracts_and_decoding_render_as_external_secrets_does() {
    let es = json!({
        "secretStoreRef": {"name": "s"},
        "data": [
            {"secretKey": "user", "remoteRef": {"key": "db", "property": "user"}},
            {"secretKey": "port", "remoteRef": {"key": "db", "property": "conn.port"}},
            {"secretKey": "first", "remoteRef": {"key": "db", "property": "hosts.0"}},
            {"secretKey": "dotted", "remoteRef": {"key": "db", "property": "a\\.b"}},
            {"secretKey": "cert", "remoteRef": {"key": "b64", "decodingStrategy": "Base64"}}
        ],
        "dataFrom": [{"extract": {"key": "flat"}}]
    });
    let p = sync_plan("x", &es, &sm_store()).unwrap();
    let db = SecretBytes::from(
        r#"{"user":"admin","conn":{"port":5432},"hosts":["h1","h2"],"a.b":"dot"}"#,
    );
    let values: Vec<SecretBytes> = p
        .objects
        .objects
        .iter()
        .map(|o| match o.name() {
            "db" => db.clone(),
            "b64" => SecretBytes::from("aGVsbG8="),
            _ => SecretBytes::from(r#"{"K1":"v1","K2":{"n":1}}"#),
        })
        .collect();
    let data = render_secret(&p, &values, &[]).unwrap().data;
    let text = |k: &str| String::from_utf8(data[k].expose().to_vec()).unwrap();
    assert_eq!(text("user"), "admin");
    assert_eq!(text("port"), "5432");
    assert_eq!(text("first"), "h1");
    assert_eq!(text("dotted"), "dot");
    assert_eq!(text("cert"), "hello");
    assert_eq!(text("K1"), "v1");
    assert_eq!(text("K2"), r#"{"n":1}"#);
}

#[test]
fn render_errors_name_the_key_never_the_value() {
    let es = json!({"secretStoreRef": {"name": "s"}, "data": [
        {"secretKey": "k", "remoteRef": {"key": "db", "property": "missing"}}
    ]});
    let p = sync_plan("x", &es, &sm_store()).unwrap();
    let e = render_secret(&p, &[SecretBytes::from(r#"{"pw":"hunter2"}"#)], &[]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "db: property \"missing\" not found in the secret"
    );
    let e = render_secret(&p, &[SecretBytes::from("hunter2")], &[]).unwrap_err();
    assert!(!e.to_string().contains("hunter2"));
    let es = json!({"secretStoreRef": {"name": "s"}, "data": [
        {"secretKey": "k", "remoteRef": {"key": "db", "decodingStrategy": "Base64"}}
    ]});
    let p = sync_plan("x", &es, &sm_store()).unwrap();
    assert_eq!(
        render_secret(&p, &[SecretBytes::from("not base64!")], &[]).unwrap_err(),
        ExternalError::Decoding {
            key: "db".into(),
            encoding: "base64"
        }
    );
}

#[test]
fn templates_build_keys_from_fetched_keys() {
    let es = json!({
        "secretStoreRef": {"name": "s"},
        "target": {"template": {
            "type": "kubernetes.io/basic-auth",
            "metadata": {"labels": {"app": "web"}},
            "data": {
                "username": "{{ .user }}",
                "dsn": "postgres://{{ .user }}:{{ .pass | toString }}@db",
                "b64": "{{ .user | b64enc }}"
            }
        }},
        "data": [
            {"secretKey": "user", "remoteRef": {"key": "db", "property": "user"}},
            {"secretKey": "pass", "remoteRef": {"key": "db", "property": "pass"}}
        ]
    });
    let p = sync_plan("x", &es, &sm_store()).unwrap();
    assert_eq!(p.target.type_.as_deref(), Some("kubernetes.io/basic-auth"));
    assert_eq!(p.target.labels["app"], "web");
    let data = render_secret(&p, &[SecretBytes::from(r#"{"user":"u","pass":"p"}"#)], &[])
        .unwrap()
        .data;
    let keys: Vec<_> = data.keys().cloned().collect();
    assert_eq!(
        keys,
        ["b64", "dsn", "username"],
        "template keys replace the data"
    );
    assert_eq!(data["dsn"].expose(), b"postgres://u:p@db");
    assert_eq!(data["b64"].expose(), b"dQ==");
    // Go's template language is External Secrets' (v2); what its
    // advisories removed (env, expandenv, getHostByName: CVE-2026-34984)
    // is refused when planned, by the template's path.
    let with = |t: &str| {
        json!({"secretStoreRef": {"name": "s"}, "target": {"template": {"data": {
        "x": t
    }}}, "data": [{"secretKey": "user", "remoteRef": {"key": "db"}}]})
    };
    let p = sync_plan(
        "x",
        &with("{{ if .user }}{{ .user | upper }}{{ end }}"),
        &sm_store(),
    )
    .unwrap();
    let out = render_secret(&p, &[SecretBytes::from("u")], &[]).unwrap();
    assert_eq!(out.data["x"].expose(), b"U");
    for refused in [
        r#"{{ env "HOME" }}"#,
        r#"{{ expandenv "$HOME" }}"#,
        r#"{{ getHostByName "example.com" }}"#,
        "{{ .user ",
    ] {
        let e = sync_plan("x", &with(refused), &sm_store()).unwrap_err();
        assert!(
            matches!(e, ExternalError::Template { ref key, .. } if key == "spec.target.template.data.x"),
            "{refused}: {e}"
        );
    }
}

#[test]
fn unsupported_fields_are_refused_by_their_path() {
    let s = sm_store();
    let cases = [
        (
            json!({"secretStoreRef": {"name": "s"}, "data": [{"secretKey": "a", "remoteRef": {"key": "k", "conversionStrategy": "Unicode"}}]}),
            "spec.data[0].remoteRef.conversionStrategy",
        ),
        (
            json!({"secretStoreRef": {"name": "s"}, "data": [{"secretKey": "a", "remoteRef": {"key": "k", "nope": 1}}]}),
            "spec.data[0].remoteRef.nope",
        ),
        (
            json!({"secretStoreRef": {"name": "s"}, "data": [{"secretKey": "a", "remoteRef": {"key": "k"}}], "target": {"template": {"engineVersion": "v1"}}}),
            "spec.target.template.engineVersion",
        ),
        (
            json!({"secretStoreRef": {"name": "s"}, "data": [{"secretKey": "a", "remoteRef": {"key": "k"}}], "extra": true}),
            "spec.extra",
        ),
    ];
    for (es, path) in cases {
        match sync_plan("x", &es, &s) {
            Err(ExternalError::Unsupported { path: p, .. }) => assert_eq!(p, path),
            other => panic!("{path}: {other:?}"),
        }
    }
    let stores = [
        (json!({"provider": {"vault": {}}}), "spec.provider.vault"),
        (
            json!({"provider": {"aws": {"service": "SecretsManager", "region": "r", "auth": {"jwt": {"serviceAccountRef": {"name": "a", "audiences": ["x", "y"]}}}}}}),
            "spec.provider.aws.auth.jwt.serviceAccountRef.audiences",
        ),
        (
            json!({"provider": {"aws": {"service": "CertificateManager", "region": "r"}}}),
            "spec.provider.aws.service",
        ),
        (
            json!({"provider": {"aws": {"service": "SecretsManager", "region": "r", "nope": "x"}}}),
            "spec.provider.aws.nope",
        ),
    ];
    for (spec, path) in stores {
        match store(&spec, Some("ns")) {
            Err(ExternalError::Unsupported { path: p, .. }) => assert_eq!(p, path),
            other => panic!("{path}: {other:?}"),
        }
    }
}

#[test]
fn store_rules() {
    let with = |aws: Value| store(&json!({"provider": {"aws": aws}}), Some("ns"));
    assert!(matches!(
        with(json!({"service": "Vault", "region": "r"})),
        Err(ExternalError::Invalid { .. })
    ));
    assert!(matches!(
        with(json!({"service": "SecretsManager"})),
        Err(ExternalError::Missing { ref path }) if path == "spec.provider.aws.region"
    ));
    let s = with(json!({
        "service": "ParameterStore", "region": "r",
        "role": "arn:aws:iam::1:role/x", "externalID": "ext",
        "sessionTags": [{"key": "team", "value": "shop"}]
    }))
    .unwrap();
    assert_eq!(s.service, ObjectType::SsmParameter);
    assert_eq!(s.auth, StoreAuth::Controller);
    let chain = s.chain.unwrap();
    assert_eq!(chain.roles, ["arn:aws:iam::1:role/x"]);
    assert_eq!(chain.external_id.as_deref(), Some("ext"));
    assert_eq!(
        chain.session_tags,
        [("team".to_string(), "shop".to_string())]
    );
    assert!(with(json!({"service": "SecretsManager", "region": "r", "role": "web"})).is_err());
    // A namespaced store reads keys and tokens of its own namespace only.
    let keys = json!({"secretRef": {
        "accessKeyIDSecretRef": {"name": "aws", "key": "id", "namespace": "other"},
        "secretAccessKeySecretRef": {"name": "aws", "key": "secret"}
    }});
    assert!(
        with(json!({"service": "SecretsManager", "region": "r", "auth": keys.clone()})).is_err()
    );
    let cluster = store(
        &json!({"provider": {"aws": {"service": "SecretsManager", "region": "r", "auth": keys}}}),
        None,
    );
    // A ClusterSecretStore ref without a namespace is referent: the
    // ExternalSecret's own namespace, at each sync.
    let cluster = cluster.unwrap();
    assert!(
        matches!(&cluster.auth, StoreAuth::Keys { secret_access_key, .. } if secret_access_key.namespace.is_empty()),
        "{cluster:?}"
    );
    let synced = cluster.for_sync("apps", "store", StoreKind::ClusterSecretStore);
    assert!(
        matches!(&synced.auth, StoreAuth::Keys { access_key_id, secret_access_key, .. }
            if access_key_id.namespace == "other" && secret_access_key.namespace == "apps"),
        "{synced:?}"
    );
    let s = with(
        json!({"service": "SecretsManager", "region": "r", "auth": {"secretRef": {
            "accessKeyIDSecretRef": {"name": "aws", "key": "id"},
            "secretAccessKeySecretRef": {"name": "aws", "key": "secret"}
        }}}),
    )
    .unwrap();
    assert!(
        matches!(s.auth, StoreAuth::Keys { ref access_key_id, session_token: None, .. } if access_key_id.namespace == "ns")
    );
}

#[test]
fn refresh_intervals_and_policies() {
    let with = |extra: Value| {
        let mut es = json!({"secretStoreRef": {"name": "s"}, "data": [{"secretKey": "a", "remoteRef": {"key": "k"}}]});
        for (k, v) in extra.as_object().unwrap() {
            es[k] = v.clone();
        }
        sync_plan("x", &es, &sm_store()).map(|p| p.refresh)
    };
    assert_eq!(
        with(json!({})).unwrap(),
        Refresh::Every(Duration::from_secs(3600))
    );
    assert_eq!(
        with(json!({"refreshInterval": "15m"})).unwrap(),
        Refresh::Every(Duration::from_secs(900))
    );
    assert_eq!(
        with(json!({"refreshInterval": "1h30m"})).unwrap(),
        Refresh::Every(Duration::from_secs(5400))
    );
    assert_eq!(
        with(json!({"refreshInterval": "0"})).unwrap(),
        Refresh::Once
    );
    assert_eq!(
        with(json!({"refreshInterval": "0s"})).unwrap(),
        Refresh::Once
    );
    assert_eq!(
        with(json!({"refreshPolicy": "CreatedOnce"})).unwrap(),
        Refresh::Once
    );
    assert_eq!(
        with(json!({"refreshPolicy": "OnChange"})).unwrap(),
        Refresh::OnChange
    );
    assert!(with(json!({"refreshInterval": "soon"})).is_err());
    assert!(with(json!({"refreshInterval": "10ms"})).is_err());
}

/// External Secrets' `shouldRefresh` table (externalsecret_controller_test.go),
/// less the clock: never synced -> sync; CreatedOnce and interval 0 -> not
/// even on a change; OnChange and Periodic -> on a change of the version.
#[test]
fn refresh_due_follows_should_refresh() {
    let every = Refresh::Every(Duration::from_secs(60));
    for r in [Refresh::Once, Refresh::OnChange, every] {
        assert!(refresh_due(r, None, "1-a"), "{r:?}: never synced");
    }
    assert!(!refresh_due(Refresh::Once, Some("1-a"), "2-b"));
    assert!(refresh_due(Refresh::OnChange, Some("1-a"), "2-a"));
    assert!(!refresh_due(Refresh::OnChange, Some("1-a"), "1-a"));
    assert!(refresh_due(every, Some("1-a"), "1-b"));
    let labels = BTreeMap::from([("a".to_owned(), "1".to_owned())]);
    let none = BTreeMap::new();
    assert_ne!(
        refresh::resource_version(1, &labels, &none),
        refresh::resource_version(1, &none, &labels),
        "a label is not an annotation"
    );
    assert_ne!(
        refresh::resource_version(1, &none, &none),
        refresh::resource_version(2, &none, &none)
    );
    assert!(refresh::resource_version(3, &none, &none).starts_with("3-"));
}

#[test]
fn find_selects_by_name_path_and_tags_and_keys_are_converted() {
    let es = json!({"secretStoreRef": {"name": "s"}, "dataFrom": [
        {"find": {"name": {"regexp": "^db/.*/password$"}}},
        {"find": {"path": "app/", "tags": {"team": "shop"}, "decodingStrategy": "Base64"}}
    ]});
    let p = sync_plan("x", &es, &sm_store()).unwrap();
    assert_eq!(p.finds.len(), 2);
    assert!(p.finds[0].matches("db/prod/password"));
    assert!(!p.finds[0].matches("db/prod/user"));
    assert!(p.finds[1].matches("app/one"));
    assert!(!p.finds[1].matches("other/app/one"));
    assert_eq!(p.finds[1].tags["team"], "shop");
    assert_eq!(
        rewrite::convert_key(rewrite::ConversionStrategy::Default, "db/prod/password"),
        "db_prod_password"
    );
    assert_eq!(
        rewrite::convert_key(rewrite::ConversionStrategy::Default, "a.b-c_d"),
        "a.b-c_d"
    );
    let data = render_secret(
        &p,
        &[],
        &[
            (0, "db/prod/password".into(), SecretBytes::from("pw")),
            (1, "app/one".into(), SecretBytes::from("aGk=")),
        ],
    )
    .unwrap()
    .data;
    assert_eq!(data["db_prod_password"].expose(), b"pw");
    assert_eq!(data["app_one"].expose(), b"hi");
    // A find needs something to select by; a bad regexp is said.
    let bad = |find: Value| {
        sync_plan(
            "x",
            &json!({"secretStoreRef": {"name": "s"}, "dataFrom": [{"find": find}]}),
            &sm_store(),
        )
    };
    assert!(matches!(bad(json!({})), Err(ExternalError::Missing { .. })));
    assert!(matches!(
        bad(json!({"name": {"regexp": "("}})),
        Err(ExternalError::Invalid { ref path, .. }) if path == "spec.dataFrom[0].find.name.regexp"
    ));
}

#[test]
fn parameter_store_finds_by_tags_with_or_without_path_and_name() {
    let mut ps = sm_store();
    ps.service = ObjectType::SsmParameter;
    let p = sync_plan(
        "x",
        &json!({"secretStoreRef": {"name": "s"}, "dataFrom": [
            {"find": {"tags": {"a": "b"}}},
            {"find": {"path": "/foobar", "tags": {"a": "b"}}},
            {"find": {"path": "/foobar", "name": {"regexp": "two$"}, "tags": {"a": "b", "c": "d"}}}
        ]}),
        &ps,
    )
    .unwrap();
    assert_eq!(p.finds.len(), 3);
    assert_eq!(p.finds[0].tags, BTreeMap::from([("a".into(), "b".into())]));
    assert_eq!(p.finds[0].path, None);
    assert!(p.finds[0].matches("/e2e/one"));
    assert_eq!(p.finds[1].path.as_deref(), Some("/foobar"));
    assert!(p.finds[1].matches("/foobar/x/two"));
    assert!(!p.finds[1].matches("/e2e/one"));
    assert_eq!(p.finds[2].tags.len(), 2);
    assert!(p.finds[2].matches("/foobar/x/two"));
    assert!(!p.finds[2].matches("/foobar/x/three"));
    // Found parameters' keys: `/` becomes `_`, as for a find by name.
    let data = render_secret(
        &p,
        &[],
        &[(1, "/foobar/x/two".into(), SecretBytes::from("v"))],
    )
    .unwrap()
    .data;
    assert_eq!(data["_foobar_x_two"].expose(), b"v");
}

#[test]
fn metadata_policy_fetch_reads_tags_as_a_distinct_object() {
    for service in [ObjectType::SecretsManager, ObjectType::SsmParameter] {
        let mut s = sm_store();
        s.service = service;
        s.prefix = "pre/".into();
        let es = json!({"secretStoreRef": {"name": "s"},
            "data": [
                {"secretKey": "value", "remoteRef": {"key": "k"}},
                {"secretKey": "tags", "remoteRef": {"key": "k", "metadataPolicy": "Fetch"}},
                {"secretKey": "team", "remoteRef": {"key": "k", "metadataPolicy": "Fetch", "property": "team"}},
                {"secretKey": "pinned", "remoteRef": {"key": "k", "metadataPolicy": "Fetch", "version": "3"}},
                {"secretKey": "none", "remoteRef": {"key": "k", "metadataPolicy": "None"}}
            ],
            "dataFrom": [{"extract": {"key": "k", "metadataPolicy": "Fetch"}}]
        });
        let p = sync_plan("x", &es, &s).unwrap();
        // The value of k and the tags of k: two objects, each read once.
        assert_eq!(p.objects.objects.len(), 2, "{service:?}");
        assert_eq!(p.tags_of, BTreeSet::from([1]));
        assert_eq!(p.objects.objects[1].primary.name, "pre/k");
        assert_eq!(p.objects.objects[1].primary.version_id, None);
        assert_eq!(p.objects.objects[1].primary.version_label, None);
        assert_eq!(
            p.data.iter().map(|d| d.object).collect::<Vec<_>>(),
            [0, 1, 1, 1, 0]
        );
        assert_eq!(p.extracts[0].object, 1);
        let reads = p.reads();
        assert_eq!(reads.value_objects, [0]);
        assert_eq!(reads.tag_objects, [1]);
        assert_eq!(reads.values.objects.len(), 1);
        assert_eq!(reads.values.objects[0].primary.name, "pre/k");
        let tags = BTreeMap::from([
            ("team".to_owned(), "shop".to_owned()),
            ("a&b".to_owned(), "<x>".to_owned()),
        ]);
        let values: Vec<SecretBytes> = p
            .merge_reads(
                &reads,
                [SecretBytes::from("secret")],
                [SecretBytes::from(tags::tags_json(&tags))],
            )
            .into_iter()
            .map(Option::unwrap)
            .collect();
        let data = render_secret(&p, &values, &[]).unwrap().data;
        assert_eq!(data["value"].expose(), b"secret");
        assert_eq!(data["none"].expose(), b"secret");
        assert_eq!(
            data["tags"].expose(),
            br#"{"a\u0026b":"\u003cx\u003e","team":"shop"}"#
        );
        assert_eq!(data["team"].expose(), b"shop");
        // (extract: the key made valid by the default conversion)
        assert_eq!(data["a_b"].expose(), b"<x>");
        // A property that is not a tag is not found.
        let es = json!({"secretStoreRef": {"name": "s"}, "data": [
            {"secretKey": "v", "remoteRef": {"key": "k", "metadataPolicy": "Fetch", "property": "fail"}}
        ]});
        let p = sync_plan("x", &es, &s).unwrap();
        let reads = p.reads();
        assert!(reads.values.objects.is_empty());
        let values: Vec<SecretBytes> = p
            .merge_reads(
                &reads,
                [],
                [SecretBytes::from(tags::tags_json(&BTreeMap::new()))],
            )
            .into_iter()
            .map(Option::unwrap)
            .collect();
        assert!(matches!(
            render_secret(&p, &values, &[]),
            Err(ExternalError::PropertyNotFound { .. })
        ));
    }
}

#[test]
fn what_an_external_secret_makes_the_controller_do_is_bounded() {
    let keys = |n: usize| {
        let data: Vec<Value> = (0..n)
            .map(|i| json!({"secretKey": format!("k{i}"), "remoteRef": {"key": format!("s{i}")}}))
            .collect();
        json!({"secretStoreRef": {"name": "s"}, "data": data})
    };
    assert_eq!(
        sync_plan("x", &keys(MAX_OBJECTS), &sm_store())
            .unwrap()
            .objects
            .objects
            .len(),
        MAX_OBJECTS
    );
    let e = sync_plan("x", &keys(MAX_OBJECTS + 1), &sm_store()).unwrap_err();
    assert_eq!(e.to_string(), "spec: names more than 500 remote objects");
    let finds: Vec<Value> = (0..=MAX_FINDS)
        .map(|i| json!({"find": {"path": format!("p{i}/")}}))
        .collect();
    let e = sync_plan(
        "x",
        &json!({"secretStoreRef": {"name": "s"}, "dataFrom": finds}),
        &sm_store(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("at most 10 find entries"), "{e}");
    let tags: Vec<Value> = (0..51)
        .map(|i| json!({"key": format!("t{i}"), "value": "v"}))
        .collect();
    assert!(
        store(
            &json!({"provider": {"aws": {"service": "SecretsManager", "region": "r", "role": "arn:aws:iam::1:role/x", "sessionTags": tags}}}),
            Some("ns")
        )
        .is_err()
    );
}

#[test]
fn templates_stop_at_the_secret_size_instead_of_growing() {
    let template = |text: String| {
        json!({"secretStoreRef": {"name": "s"},
               "target": {"template": {"data": {"out": text}}},
               "data": [{"secretKey": "v", "remoteRef": {"key": "big"}}]})
    };
    let value = SecretBytes::from("x".repeat(100_000));
    // A value repeated: 20 x 100 kB is over 1 MiB.
    let p = sync_plan("x", &template("{{ .v }}".repeat(20)), &sm_store()).unwrap();
    assert_eq!(
        render_secret(&p, std::slice::from_ref(&value), &[]).unwrap_err(),
        ExternalError::TooLarge
    );
    // A value piped through b64enc again and again: 4/3 each time.
    let piped = format!("{{{{ .v{} }}}}", " | b64enc".repeat(40));
    let p = sync_plan("x", &template(piped), &sm_store()).unwrap();
    assert_eq!(
        render_secret(&p, std::slice::from_ref(&value), &[]).unwrap_err(),
        ExternalError::TooLarge
    );
    // Within the size, the same forms work.
    let p = sync_plan("x", &template("{{ .v }}".repeat(5)), &sm_store()).unwrap();
    assert_eq!(
        render_secret(&p, &[value], &[]).unwrap().data["out"].len(),
        500_000
    );
}

#[test]
fn stores_of_another_controller_are_left_alone() {
    let aws = json!({"provider": {"aws": {"service": "SecretsManager", "region": "r"}}});
    let vault = json!({"provider": {"vault": {}}});
    let classed = json!({"controller": "ours", "provider": {"vault": {}}});
    assert!(served_by(&aws, ""));
    // The default class is External Secrets Operator's too: a Vault store
    // there is its, not ours to report on.
    assert!(!served_by(&vault, ""));
    assert!(!served_by(&aws, "ours"));
    // A store that names our class is ours, and refused if it is not AWS.
    assert!(served_by(&classed, "ours"));
    assert!(store(&classed, Some("ns")).is_err());
}

#[test]
fn names_bound_for_api_paths_are_checked() {
    let es = |target: &str, store_name: &str| {
        json!({"secretStoreRef": {"name": store_name}, "target": {"name": target},
               "data": [{"secretKey": "a", "remoteRef": {"key": "k"}}]})
    };
    for bad in ["../../kube-system/secrets/x", "x?watch=1", "UPPER"] {
        let e = sync_plan("x", &es(bad, "s"), &sm_store()).unwrap_err();
        assert!(
            matches!(&e, ExternalError::Invalid { path, .. } if path == "spec.target.name"),
            "{e}"
        );
        let e = store_ref(&es("ok", bad)).unwrap_err();
        assert!(
            matches!(&e, ExternalError::Invalid { path, .. } if path == "spec.secretStoreRef.name"),
            "{e}"
        );
        let jwt = json!({"provider": {"aws": {"service": "SecretsManager", "region": "r",
            "auth": {"jwt": {"serviceAccountRef": {"name": bad}}}}}});
        assert!(store(&jwt, Some("ns")).is_err(), "{bad}");
        let keys = json!({"provider": {"aws": {"service": "SecretsManager", "region": "r",
            "auth": {"secretRef": {"accessKeyIDSecretRef": {"name": bad, "key": "k"},
                                   "secretAccessKeySecretRef": {"name": "ok", "key": "k"}}}}}});
        assert!(store(&keys, Some("ns")).is_err(), "{bad}");
        let cluster = json!({"provider": {"aws": {"service": "SecretsManager", "region": "r",
            "auth": {"jwt": {"serviceAccountRef": {"name": "sa", "namespace": bad}}}}}});
        assert!(store(&cluster, None).is_err(), "{bad}");
    }
}

#[test]
fn a_service_account_token_secret_is_never_templated() {
    // External Secrets Operator's CVE-2026-42876: the type (or the
    // annotation that names the ServiceAccount) in the template.
    let es = |template: Value| {
        json!({"secretStoreRef": {"name": "s"},
               "data": [{"secretKey": "a", "remoteRef": {"key": "k"}}],
               "target": {"template": template}})
    };
    for (template, path) in [
        (
            json!({"type": "kubernetes.io/service-account-token"}),
            "spec.target.template.type",
        ),
        (
            json!({"type": "bootstrap.kubernetes.io/token"}),
            "spec.target.template.type",
        ),
        (
            json!({"type": "helm.sh/release.v1"}),
            "spec.target.template.type",
        ),
        (
            json!({"metadata": {"annotations": {"kubernetes.io/service-account.name": "deployer"}}}),
            "spec.target.template.metadata.annotations[\"kubernetes.io/service-account.name\"]",
        ),
        (
            json!({"metadata": {"labels": {"node-role.kubernetes.io/control-plane": ""}}}),
            "spec.target.template.metadata.labels[\"node-role.kubernetes.io/control-plane\"]",
        ),
    ] {
        match sync_plan("x", &es(template.clone()), &sm_store()) {
            Err(ExternalError::Invalid { path: p, why }) => {
                assert_eq!(p, path, "{template}");
                assert!(why.contains("allowed") || why.contains("belong"), "{why}");
            }
            other => panic!("{template}: {other:?}"),
        }
    }
    // What templates commonly set still plans.
    let ok = es(json!({"type": "kubernetes.io/dockerconfigjson",
                       "metadata": {"labels": {"app.kubernetes.io/name": "web"},
                                    "annotations": {"team": "a"}}}));
    let plan = sync_plan("x", &ok, &sm_store()).unwrap();
    assert_eq!(
        plan.target.type_.as_deref(),
        Some("kubernetes.io/dockerconfigjson")
    );
}

#[test]
fn a_refresh_interval_too_large_is_refused_not_a_panic() {
    let es = |interval: &str| {
        json!({"refreshInterval": interval, "secretStoreRef": {"name": "s"},
               "data": [{"secretKey": "a", "remoteRef": {"key": "k"}}]})
    };
    for huge in [
        "99999999999999999999h",
        "1e300h",
        "99999999999999999999999999999999999999s",
        "2562048h",
    ] {
        match sync_plan("x", &es(huge), &sm_store()) {
            Err(ExternalError::Invalid { path, .. }) => {
                assert_eq!(path, "spec.refreshInterval", "{huge}")
            }
            other => panic!("{huge}: {other:?}"),
        }
    }
    assert_eq!(
        sync_plan("x", &es("87600h"), &sm_store()).unwrap().refresh,
        Refresh::Every(Duration::from_secs(87600 * 3600))
    );
}

#[test]
fn a_find_regexp_is_bounded_and_compiled_once() {
    let es = |re: String| {
        json!({"secretStoreRef": {"name": "s"},
               "dataFrom": [{"find": {"name": {"regexp": re}}}]})
    };
    let long = format!("^({})$", vec!["db-[a-z0-9]{8}"; 400].join("|"));
    assert!(long.len() > MAX_REGEX_BYTES);
    match sync_plan("x", &es(long), &sm_store()) {
        Err(ExternalError::Invalid { path, why }) => {
            assert_eq!(path, "spec.dataFrom[0].find.name.regexp");
            assert!(why.contains("over the limit of 4096"), "{why}");
        }
        other => panic!("{other:?}"),
    }
    let plan = sync_plan("x", &es("^db/.*$".into()), &sm_store()).unwrap();
    assert!(plan.finds[0].matches("db/password"));
    assert!(!plan.finds[0].matches("web/db/password"));
    assert_eq!(plan.finds[0].name.as_ref().unwrap().as_str(), "^db/.*$");
}

/// Every default External Secrets Operator's v2.9.0 CRD schemas write
/// (config/crds/bases/external-secrets.io_{secretstores,externalsecrets}.yaml),
/// and those of its older releases (remoteRef strategies, 0.16-2.8), are
/// read as the values they stand for: an API server with their CRDs writes
/// them into every object.
#[test]
fn the_defaults_of_external_secrets_crds_are_accepted() {
    let s = store(
        &json!({"provider": {"aws": {"service": "SecretsManager", "region": "r", "sessionTagsPolicy": "None",
            "auth": {"jwt": {"serviceAccountRef": {"name": "sa"}}}}}}),
        Some("ns"),
    )
    .unwrap();
    assert_eq!(s.tags_policy, api::SessionTagsPolicy::None);
    let remote = json!({"key": "k", "conversionStrategy": "Default", "decodingStrategy": "None", "metadataPolicy": "None"});
    let es = json!({
        "secretStoreRef": {"name": "s", "kind": "SecretStore"},
        "refreshInterval": "1h0m0s",
        "target": {"creationPolicy": "Owner", "deletionPolicy": "Retain",
            "template": {"engineVersion": "v2", "mergePolicy": "Replace", "data": {"x": "{{ .a }}"}}},
        "data": [{"secretKey": "a", "remoteRef": remote}],
        "dataFrom": [{"extract": remote}],
    });
    let p = sync_plan("x", &es, &s).unwrap();
    assert_eq!(p.refresh, Refresh::Every(Duration::from_secs(3600)));
    assert_eq!(p.target.creation, CreationPolicy::Owner);
    assert!(!p.target.merge_data);
}

#[test]
fn store_roles_prefix_and_session_tag_policies() {
    let spec = json!({"provider": {"aws": {"service": "ParameterStore", "region": "r", "prefix": "/team/",
        "additionalRoles": ["arn:aws:iam::111111111111:role/hop"],
        "role": "arn:aws:iam::222222222222:role/final", "externalID": "x",
        "sessionTags": [{"key": "team", "value": "shop"}], "transitiveTagKeys": ["team"],
        "sessionTagsPolicy": "Custom", "customSessionTags": {"env": "prod", "": "dropped", "empty": ""}}}});
    let s = store(&spec, Some("ns")).unwrap();
    let chain = s.chain.clone().unwrap();
    assert_eq!(chain.roles.len(), 2);
    assert_eq!(
        chain.plain, 1,
        "additionalRoles are assumed without the final role's options"
    );
    assert_eq!(chain.transitive_tag_keys, ["team"]);
    assert_eq!(s.custom_tags, [("env".to_owned(), "prod".to_owned())]);
    let synced = s.for_sync("apps", "store", StoreKind::ClusterSecretStore);
    let tags = synced.chain.unwrap().session_tags;
    for (k, v) in [
        ("env", "prod"),
        ("esoNamespace", "apps"),
        ("esoStoreKind", "ClusterSecretStore"),
        ("esoStoreName", "store"),
        ("team", "shop"),
    ] {
        assert!(
            tags.contains(&(k.to_owned(), v.to_owned())),
            "{k}: {tags:?}"
        );
    }
    assert_eq!(tags.len(), 5);
    // The prefix goes before every key read.
    let es = json!({"secretStoreRef": {"name": "s"}, "data": [{"secretKey": "a", "remoteRef": {"key": "db"}}]});
    let p = sync_plan("x", &es, &s).unwrap();
    assert_eq!(p.objects.objects[0].name(), "/team/db");
    // Policy None adds nothing; customSessionTags without Custom, or with a
    // reserved key, is refused by its path.
    let none = store(
        &json!({"provider": {"aws": {"service": "SecretsManager", "region": "r",
        "role": "arn:aws:iam::222222222222:role/final"}}}),
        None,
    )
    .unwrap();
    assert!(
        none.for_sync("a", "b", StoreKind::SecretStore)
            .chain
            .unwrap()
            .session_tags
            .is_empty()
    );
    for (aws, path) in [
        (
            json!({"customSessionTags": {"a": "b"}}),
            "spec.provider.aws.customSessionTags",
        ),
        (
            json!({"sessionTagsPolicy": "Custom", "customSessionTags": {"esoNamespace": "b"}}),
            "spec.provider.aws.customSessionTags[\"esoNamespace\"]",
        ),
        (
            json!({"additionalRoles": ["nope"]}),
            "spec.provider.aws.additionalRoles[0]",
        ),
        (
            json!({"sessionTagsPolicy": "Sometimes"}),
            "spec.provider.aws.sessionTagsPolicy",
        ),
        (
            json!({"secretsManager": {"recoveryWindowInDays": 3}}),
            "spec.provider.aws.secretsManager.recoveryWindowInDays",
        ),
    ] {
        let mut spec = json!({"provider": {"aws": {"service": "SecretsManager", "region": "r"}}});
        for (k, v) in aws.as_object().unwrap() {
            spec["provider"]["aws"][k] = v.clone();
        }
        match store(&spec, None) {
            Err(ExternalError::Invalid { path: p, .. }) => assert_eq!(p, path),
            other => panic!("{path}: {other:?}"),
        }
    }
}

#[test]
fn merge_policy_null_bytes_and_templated_metadata() {
    let es = json!({"secretStoreRef": {"name": "s"},
    "target": {"creationPolicy": "CreateOrMerge", "template": {"mergePolicy": "Merge",
        "metadata": {"labels": {"env": "{{ .env }}"}, "annotations": {"note": "fixed"}, "finalizers": ["example.com/keep"]},
        "data": {"dsn": "db://{{ .user }}"}}},
    "data": [
        {"secretKey": "user", "remoteRef": {"key": "db", "property": "user"}},
        {"secretKey": "env", "remoteRef": {"key": "db", "property": "env"}},
    ]});
    let p = sync_plan("x", &es, &sm_store()).unwrap();
    assert_eq!(p.target.creation, CreationPolicy::CreateOrMerge);
    assert_eq!(p.target.finalizers, ["example.com/keep"]);
    let out = render_secret(
        &p,
        &[SecretBytes::from(r#"{"user":"u","env":"prod"}"#)],
        &[],
    )
    .unwrap();
    let keys: Vec<_> = out.data.keys().map(String::as_str).collect();
    assert_eq!(keys, ["dsn", "env", "user"], "Merge keeps the fetched keys");
    assert_eq!(out.labels["env"], "prod");
    assert_eq!(out.annotations["note"], "fixed");
    // nullBytePolicy: Fail refuses a value with a NUL byte; Ignore keeps it.
    let es = |policy: &str| {
        json!({"secretStoreRef": {"name": "s"},
        "data": [{"secretKey": "a", "remoteRef": {"key": "k", "nullBytePolicy": policy}}]})
    };
    let value = SecretBytes::new(b"a\0b".to_vec());
    let p = sync_plan("x", &es("Fail"), &sm_store()).unwrap();
    assert!(matches!(
        render_secret(&p, std::slice::from_ref(&value), &[]),
        Err(ExternalError::NullByte { .. })
    ));
    let p = sync_plan("x", &es("Ignore"), &sm_store()).unwrap();
    assert_eq!(
        render_secret(&p, &[value], &[]).unwrap().data["a"].expose(),
        b"a\0b"
    );
    // A finalizer under kubernetes.io is refused.
    let es = json!({"secretStoreRef": {"name": "s"}, "data": [{"secretKey": "a", "remoteRef": {"key": "k"}}],
        "target": {"template": {"metadata": {"finalizers": ["kubernetes.io/pv-protection"]}}}});
    assert!(matches!(
        sync_plan("x", &es, &sm_store()),
        Err(ExternalError::Invalid { path, .. }) if path == "spec.target.template.metadata.finalizers[0]"
    ));
}

/// `dataFrom[].rewrite` and `conversionStrategy` make the keys, entry by
/// entry in dataFrom order (a later entry's key wins, data[] over all), as
/// External Secrets does (`runtime/esutils` RewriteMap, its e2e
/// `JSONDataFromRewrite` and `FindByNameAndRewrite`).
#[test]
fn rewrite_and_conversion_make_the_keys_in_data_from_order() {
    let es = json!({"secretStoreRef": {"name": "s"},
    "data": [{"secretKey": "db_user", "remoteRef": {"key": "app", "property": "user"}}],
    "dataFrom": [
        {"extract": {"key": "app"}, "rewrite": [
            {"regexp": {"source": "^(.*)$", "target": "db_$1"}},
            {"transform": {"template": "{{ .value | upper }}"}},
        ]},
        {"find": {"name": {"regexp": "^cfg/"}, "conversionStrategy": "Unicode"}},
    ]});
    let p = sync_plan("x", &es, &sm_store()).unwrap();
    let out = render_secret(
        &p,
        &[SecretBytes::from(r#"{"user":"u","pass":"p"}"#)],
        &[(0, "cfg/é".into(), SecretBytes::from("v"))],
    )
    .unwrap()
    .data;
    let keys: Vec<_> = out.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        ["DB_PASS", "DB_USER", "cfg_U002f__U00e9_", "db_user"],
        "{keys:?}"
    );
    assert_eq!(out["DB_PASS"].expose(), b"p");
    // A rewrite is checked when planned, by its path.
    for (step, path) in [
        (
            json!({"regexp": {"source": "(", "target": "x"}}),
            "spec.dataFrom[0].rewrite[0].regexp.source",
        ),
        (
            json!({"transform": {"template": "{{ env \"HOME\" }}"}}),
            "spec.dataFrom[0].rewrite[0].transform.template",
        ),
        (
            json!({}),
            "spec.dataFrom[0].rewrite[0].regexp, transform or merge",
        ),
    ] {
        let es = json!({"secretStoreRef": {"name": "s"},
            "dataFrom": [{"extract": {"key": "app"}, "rewrite": [step]}]});
        let e = sync_plan("x", &es, &sm_store()).unwrap_err();
        let got = match &e {
            ExternalError::Invalid { path, .. } | ExternalError::Missing { path } => path.clone(),
            ExternalError::Template { key, .. } => key.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(got, path);
    }
    // A merge into one JSON key.
    let es = json!({"secretStoreRef": {"name": "s"},
        "dataFrom": [{"extract": {"key": "app"}, "rewrite": [
            {"merge": {"strategy": "JSON", "into": "all", "conflictPolicy": "Ignore"}}]}]});
    let p = sync_plan("x", &es, &sm_store()).unwrap();
    let out = render_secret(
        &p,
        &[SecretBytes::from(r#"{"a":"{\"x\":1}","b":"{\"y\":2}"}"#)],
        &[],
    )
    .unwrap()
    .data;
    assert!(
        out.contains_key("all"),
        "{:?}",
        out.keys().collect::<Vec<_>>()
    );
}

#[test]
fn sync_windows_are_read_and_checked() {
    let with = |w: serde_json::Value| {
        json!({"secretStoreRef": {"name": "s"},
        "data": [{"secretKey": "a", "remoteRef": {"key": "k"}}], "syncWindows": w})
    };
    let p = sync_plan(
        "x",
        &with(json!({"kind": "deny", "windows": [{"schedule": "0 9 * * 1-5", "duration": "8h"}]})),
        &sm_store(),
    )
    .unwrap();
    assert!(p.windows.is_some());
    let e = sync_plan(
        "x",
        &with(json!({"kind": "allow", "windows": [{"schedule": "not cron", "duration": "1h"}]})),
        &sm_store(),
    )
    .unwrap_err();
    assert!(
        matches!(&e, ExternalError::Invalid { path, .. } if path.starts_with("spec.syncWindows")),
        "{e:?}"
    );
}

#[test]
fn cluster_store_conditions_are_checked_when_read() {
    let with = |c: serde_json::Value| {
        json!({"conditions": c,
        "provider": {"aws": {"service": "SecretsManager", "region": "r"}}})
    };
    let s = store(&with(json!([{"namespaceRegexes": ["^team-"]}])), None).unwrap();
    assert_eq!(s.conditions.len(), 1);
    for (c, ns, path) in [
        (
            json!([{"namespaces": ["a"]}]),
            Some("ns"),
            "spec.conditions",
        ),
        (
            json!([{"namespaceRegexes": ["("]}]),
            None,
            "spec.conditions[0].namespaceRegexes[0]",
        ),
        (
            json!([{"namespaceSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}}]),
            None,
            "spec.conditions[0].namespaceSelector.matchExpressions[0].values",
        ),
    ] {
        match store(&with(c), ns) {
            Err(ExternalError::Invalid { path: p, .. }) => assert_eq!(p, path),
            other => panic!("{path}: {other:?}"),
        }
    }
}

/// `templateFrom` as External Secrets' `MergeTemplateFrom`: ConfigMap and
/// Secret items as `Values` (the key is the output key) or `KeysAndValues`
/// (the rendered YAML mapping gives keys and values), literals, targets
/// Data, Labels and Annotations, then `template.data` over them
/// (e2e `TemplateFromConfigmaps`, `JSONDataWithTemplateFromLiteral`).
#[test]
fn template_from_config_maps_secrets_and_literals() {
    let es = json!({"secretStoreRef": {"name": "s"},
    "data": [{"secretKey": "user", "remoteRef": {"key": "db", "property": "user"}},
             {"secretKey": "pass", "remoteRef": {"key": "db", "property": "pass"}}],
    "target": {"template": {
        "data": {"dsn": "db://{{ .user }}", "over": "data wins"},
        "templateFrom": [
            {"configMap": {"name": "tpl", "items": [
                {"key": "config.yaml"},
                {"key": "pairs", "templateAs": "KeysAndValues"}]}},
            {"secret": {"name": "tpl-secret", "items": [{"key": "over"}]}},
            {"literal": "team: '{{ .user }}-team'", "target": "Labels"},
            {"literal": "{{ .pass | b64enc }}: x", "target": "Annotations", "valuesDecodingStrategy": "None"},
        ]}}});
    let p = sync_plan("x", &es, &sm_store()).unwrap();
    assert_eq!(
        p.template_sources(),
        [
            TemplateSource::ConfigMap("tpl".into()),
            TemplateSource::Secret("tpl-secret".into())
        ]
    );
    let sources: TemplateSources = BTreeMap::from([
        (
            TemplateSource::ConfigMap("tpl".into()),
            BTreeMap::from([
                ("config.yaml".to_owned(), b"user: {{ .user }}".to_vec()),
                ("pairs".to_owned(), b"a: '{{ .user }}'\nb: fixed".to_vec()),
            ]),
        ),
        (
            TemplateSource::Secret("tpl-secret".into()),
            BTreeMap::from([("over".to_owned(), b"from the secret".to_vec())]),
        ),
    ]);
    let value = [SecretBytes::from(r#"{"user":"u","pass":"p"}"#)];
    let out = render_secret_with(&p, &value, &[], &sources).unwrap();
    let text = |k: &str| String::from_utf8(out.data[k].expose().to_vec()).unwrap();
    assert_eq!(text("config.yaml"), "user: u");
    assert_eq!(text("a"), "u");
    assert_eq!(text("b"), "fixed");
    assert_eq!(text("dsn"), "db://u");
    assert_eq!(
        text("over"),
        "data wins",
        "template.data wins over templateFrom"
    );
    assert!(
        !out.data.contains_key("user"),
        "Replace drops the fetched keys"
    );
    assert_eq!(out.labels["team"], "u-team");
    assert_eq!(out.annotations["cA=="], "x");
    // A missing key, a source not read, and a reserved label are errors.
    let mut missing = sources.clone();
    missing
        .get_mut(&TemplateSource::ConfigMap("tpl".into()))
        .unwrap()
        .remove("pairs");
    let e = render_secret_with(&p, &value, &[], &missing).unwrap_err();
    assert!(
        e.to_string()
            .contains("error in configmap tpl: missing key pairs"),
        "{e}"
    );
    assert!(render_secret(&p, &value, &[]).is_err());
    let es = json!({"secretStoreRef": {"name": "s"}, "data": [{"secretKey": "u", "remoteRef": {"key": "db"}}],
        "target": {"template": {"templateFrom": [{"literal": "kubernetes.io/x: y", "target": "Labels"}]}}});
    let p = sync_plan("x", &es, &sm_store()).unwrap();
    assert!(render_secret(&p, &[SecretBytes::from("v")], &[]).is_err());
    // Checked when planned: a generic target path, a bad name, no items.
    for (tf, path) in [
        (
            json!({"literal": "a: b", "target": "spec.x"}),
            "spec.target.template.templateFrom[0].target",
        ),
        (
            json!({"configMap": {"name": "../x", "items": [{"key": "k"}]}}),
            "spec.target.template.templateFrom[0].configMap.name",
        ),
        (
            json!({"secret": {"name": "s", "items": []}}),
            "spec.target.template.templateFrom[0].secret.items",
        ),
    ] {
        let es = json!({"secretStoreRef": {"name": "s"}, "data": [{"secretKey": "u", "remoteRef": {"key": "db"}}],
            "target": {"template": {"templateFrom": [tf]}}});
        let got = match sync_plan("x", &es, &sm_store()).unwrap_err() {
            ExternalError::Invalid { path, .. }
            | ExternalError::Missing { path }
            | ExternalError::Unsupported { path, .. } => path,
            other => panic!("{other:?}"),
        };
        assert_eq!(got, path);
    }
}

#[test]
fn deletion_policies_skip_missing_secrets_and_guard_what_they_delete() {
    let s = sm_store();
    let es = |target: Value| {
        json!({
            "secretStoreRef": {"name": "s"},
            "data": [{"secretKey": "a", "remoteRef": {"key": "one"}}],
            "dataFrom": [{"extract": {"key": "map"}}],
            "target": target,
        })
    };
    let plan = sync_plan("x", &es(json!({})), &s).unwrap();
    assert_eq!(plan.target.deletion, DeletionPolicy::Retain);
    for (policy, creation, want) in [
        ("Delete", "Owner", Ok(DeletionPolicy::Delete)),
        ("Delete", "Orphan", Ok(DeletionPolicy::Delete)),
        ("Delete", "Merge", Err(())),
        ("Delete", "None", Err(())),
        ("Delete", "CreateOrMerge", Err(())),
        ("Merge", "Merge", Ok(DeletionPolicy::Merge)),
        ("Merge", "None", Err(())),
        ("Retain", "None", Ok(DeletionPolicy::Retain)),
    ] {
        let got = sync_plan(
            "x",
            &es(json!({"deletionPolicy": policy, "creationPolicy": creation})),
            &s,
        );
        match (got, want) {
            (Ok(p), Ok(w)) => assert_eq!(p.target.deletion, w, "{policy}/{creation}"),
            (Err(ExternalError::Invalid { path, .. }), Err(())) => {
                assert_eq!(path, "spec.target.deletionPolicy", "{policy}/{creation}")
            }
            (got, _) => panic!("{policy}/{creation}: {got:?}"),
        }
    }
    // A secret that is gone gives no key; the others still do.
    let values: Vec<Option<SecretBytes>> = plan
        .objects
        .objects
        .iter()
        .map(|o| match o.name() {
            "one" => None,
            _ => Some(SecretBytes::from(r#"{"k":"v"}"#)),
        })
        .collect();
    let data = provider_data(&plan, &values, &[]).unwrap();
    assert_eq!(data.keys().collect::<Vec<_>>(), ["k"]);
    let one = plan.data[0].object;
    assert_eq!(plan.entries_reading(one), ["spec.data[0]"]);
    assert_eq!(
        plan.entries_reading(plan.extracts[0].object),
        ["spec.dataFrom[0]"]
    );
    let none: Vec<Option<SecretBytes>> = vec![None; values.len()];
    assert!(provider_data(&plan, &none, &[]).unwrap().is_empty());
}

#[test]
fn entries_of_other_stores_are_planned_apart_and_merge_in_order() {
    let s = sm_store();
    let es = json!({
        "secretStoreRef": {"name": "s"},
        "data": [
            {"secretKey": "k", "remoteRef": {"key": "own"}},
            {"secretKey": "k", "remoteRef": {"key": "far"}, "sourceRef": {"storeRef": {"name": "other"}}}
        ],
        "dataFrom": [
            {"extract": {"key": "map"}, "sourceRef": {"storeRef": {"name": "other"}}},
            {"extract": {"key": "map2"}, "sourceRef": {"storeRef": {"name": "third", "kind": "ClusterSecretStore"}}}
        ]
    });
    let stores = source_stores(&es).unwrap();
    assert_eq!(
        stores,
        [
            StoreRef {
                kind: StoreKind::SecretStore,
                name: "other".into()
            },
            StoreRef {
                kind: StoreKind::ClusterSecretStore,
                name: "third".into()
            }
        ]
    );
    let own = sync_plan("x", &es, &s).unwrap();
    let names = |p: &SyncPlan| -> Vec<String> {
        p.objects
            .objects
            .iter()
            .map(|o| o.name().to_owned())
            .collect()
    };
    assert_eq!(names(&own), ["own"]);
    let other = sync_plan_part("x", &es, &s, &Part::Store(stores[0].clone())).unwrap();
    assert_eq!(names(&other), ["far", "map"]);
    // data[1] (other store) comes after data[0] (own store): its key wins.
    let own_entries = provider_entries(&own, &[Some(SecretBytes::from("a"))], &[]).unwrap();
    let other_entries = provider_entries(
        &other,
        &[
            Some(SecretBytes::from("b")),
            Some(SecretBytes::from(r#"{"k":"c","m":"d"}"#)),
        ],
        &[],
    )
    .unwrap();
    let mut all = other_entries;
    all.extend(own_entries);
    let data = merge_entries(all);
    assert_eq!(data["k"].expose(), b"b");
    assert_eq!(data["m"].expose(), b"d");
    // A sourceRef must name a store; a generator is refused by its path.
    for (source, path) in [
        (json!({}), "spec.data[0].sourceRef.storeRef"),
        (
            json!({"generatorRef": {"kind": "Password", "name": "p"}}),
            "spec.data[0].sourceRef.generatorRef",
        ),
        (
            json!({"storeRef": {"name": "Bad/Name"}}),
            "spec.data[0].sourceRef.storeRef.name",
        ),
    ] {
        let es = json!({"secretStoreRef": {"name": "s"},
            "data": [{"secretKey": "k", "remoteRef": {"key": "own"}, "sourceRef": source}]});
        let err = sync_plan("x", &es, &s).unwrap_err();
        let got = match &err {
            ExternalError::Unsupported { path, .. }
            | ExternalError::Invalid { path, .. }
            | ExternalError::Missing { path } => path.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(got, path, "{err}");
    }
}

#[test]
fn create_or_merge_creates_unowned_and_merges_into_what_exists() {
    use crate::target_secret::Policy;
    assert_eq!(CreationPolicy::None.write_policy(true), None);
    assert_eq!(
        CreationPolicy::Owner.write_policy(false),
        Some(Policy::Owner)
    );
    assert_eq!(
        CreationPolicy::Orphan.write_policy(true),
        Some(Policy::Orphan)
    );
    assert_eq!(
        CreationPolicy::Merge.write_policy(false),
        Some(Policy::Merge)
    );
    assert_eq!(
        CreationPolicy::CreateOrMerge.write_policy(false),
        Some(Policy::Orphan)
    );
    assert_eq!(
        CreationPolicy::CreateOrMerge.write_policy(true),
        Some(Policy::Merge)
    );
}
