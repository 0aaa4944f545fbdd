use std::collections::BTreeMap;

use super::*;

fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn plan_objects(objects: &str) -> Result<MountPlan, PlanError> {
    plan(
        &params(&[("region", "us-east-1"), ("objects", objects)]),
        None,
    )
}

fn err(objects: &str) -> String {
    plan_objects(objects).unwrap_err().to_string()
}

fn paths(p: &MountPlan) -> Vec<(String, u32)> {
    p.files()
        .map(|(f, _)| (f.path.to_string(), f.mode))
        .collect()
}

#[test]
fn a_full_class_plans_every_file_with_its_mode() {
    let p = plan_objects(
        r#"
- objectName: "prod/db"
  objectType: secretsmanager
  filePermission: "0600"
  jmesPath:
    - {path: username, objectAlias: db-user}
    - {path: password, objectAlias: db-pass, filePermission: "0400"}
- objectName: "/shop/flags"
  objectType: ssmparameter
  objectAlias: flags
  objectVersion: "3"
"#,
    )
    .unwrap();
    assert_eq!(p.region, "us-east-1");
    assert_eq!(p.auth, AuthMode::Irsa);
    assert_eq!(
        paths(&p),
        vec![
            ("prod_db".into(), 0o600),
            ("db-user".into(), 0o600),
            ("db-pass".into(), 0o400),
            ("flags".into(), 0o644),
        ]
    );
    assert_eq!(p.objects[1].object_type, ObjectType::SsmParameter);
    assert_eq!(p.objects[1].primary.version_id.as_deref(), Some("3"));
    assert!(p.objects[0].failover.is_none());
    assert!(p.warnings.is_empty());
}

#[test]
fn keys_match_case_insensitively_like_the_aws_provider() {
    let p = plan_objects(
        "- ObjectName: a\n  OBJECTTYPE: secretsmanager\n  jmesPath:\n    - Path: x\n      ObjectAlias: ax\n",
    )
    .unwrap();
    assert_eq!(paths(&p), vec![("a".into(), 0o644), ("ax".into(), 0o644)]);
}

#[test]
fn unknown_keys_are_accepted_with_a_warning() {
    let p =
        plan_objects("- objectName: a\n  objectType: secretsmanager\n  objectAlais: b\n").unwrap();
    assert_eq!(paths(&p), vec![("a".into(), 0o644)]);
    assert_eq!(
        p.warnings,
        vec![
            "objects[0] (a): unknown key `objectAlais`, ignored; did you mean `objectAlias`?"
                .to_string()
        ]
    );
}

#[test]
fn region_comes_from_the_class_then_the_driver() {
    let objects = "- {objectName: a, objectType: secretsmanager}";
    let p = plan(&params(&[("objects", objects)]), Some("eu-west-1")).unwrap();
    assert_eq!(p.region, "eu-west-1");
    let p = plan(
        &params(&[("objects", objects), ("region", "us-east-2")]),
        Some("eu-west-1"),
    )
    .unwrap();
    assert_eq!(p.region, "us-east-2");
    let e = plan(&params(&[("objects", objects)]), None).unwrap_err();
    assert_eq!(e, PlanError::RegionNotFound);
    assert!(e.to_string().starts_with("Region not found"));
}

#[test]
fn failover_region_must_differ_from_primary() {
    let e = plan(
        &params(&[
            ("region", "us-east-1"),
            ("failoverRegion", "us-east-1"),
            ("objects", "- {objectName: a, objectType: secretsmanager}"),
        ]),
        None,
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "us-east-1: failover region cannot be the same as the primary region"
    );
}

#[test]
fn failover_region_asks_for_the_same_object_when_no_failover_object() {
    let p = plan(
        &params(&[
            ("region", "us-east-1"),
            ("failoverRegion", "us-west-2"),
            (
                "objects",
                "- {objectName: a, objectType: secretsmanager, objectVersionLabel: AWSPREVIOUS}",
            ),
        ]),
        None,
    )
    .unwrap();
    assert_eq!(p.failover_region.as_deref(), Some("us-west-2"));
    let f = p.objects[0].failover.as_ref().unwrap();
    assert_eq!(f.name, "a");
    assert_eq!(f.version_label.as_deref(), Some("AWSPREVIOUS"));
}

#[test]
fn path_translation_values() {
    let objects = "- {objectName: /a/b, objectType: secretsmanager}";
    let with = |t: &str| {
        plan(
            &params(&[
                ("region", "r"),
                ("objects", objects),
                ("pathTranslation", t),
            ]),
            None,
        )
    };
    assert_eq!(paths(&with("").unwrap())[0].0, "_a_b");
    assert_eq!(paths(&with("-").unwrap())[0].0, "-a-b");
    assert_eq!(paths(&with("False").unwrap())[0].0, "a/b");
    assert_eq!(paths(&with("FALSE").unwrap())[0].0, "a/b");
    for bad in ["--", "no", "é"] {
        assert_eq!(
            with(bad).unwrap_err().to_string(),
            "pathTranslation must be either 'False' or a single character string"
        );
    }
}

#[test]
fn use_pod_identity_parses_like_go() {
    let objects = "- {objectName: a, objectType: secretsmanager}";
    let with = |v: &str| {
        plan(
            &params(&[("region", "r"), ("objects", objects), ("usePodIdentity", v)]),
            None,
        )
    };
    for t in ["1", "t", "T", "TRUE", "true", "True"] {
        assert_eq!(with(t).unwrap().auth, AuthMode::PodIdentity, "{t}");
    }
    for f in ["0", "f", "F", "FALSE", "false", "False", ""] {
        assert_eq!(with(f).unwrap().auth, AuthMode::Irsa, "{f}");
    }
    assert_eq!(
        with("yes").unwrap_err().to_string(),
        "failed to parse usePodIdentity value, error: invalid boolean \"yes\""
    );
}

#[test]
fn preferred_address_type_falls_back_to_auto_with_a_warning() {
    let objects = "- {objectName: a, objectType: secretsmanager}";
    let with = |v: &str| {
        plan(
            &params(&[
                ("region", "r"),
                ("objects", objects),
                ("preferredAddressType", v),
            ]),
            None,
        )
        .unwrap()
    };
    assert_eq!(with("IPv4").address_preference, AddressPreference::Ipv4);
    assert_eq!(with("ipv6").address_preference, AddressPreference::Ipv6);
    assert_eq!(with("auto").address_preference, AddressPreference::Auto);
    let p = with("ipv5");
    assert_eq!(p.address_preference, AddressPreference::Auto);
    assert_eq!(p.warnings.len(), 1);
}

#[test]
fn empty_or_missing_objects_plan_an_empty_volume_with_a_warning() {
    for p in [
        plan(&params(&[("region", "r")]), None).unwrap(),
        plan_objects("[]").unwrap(),
        plan_objects("  \n").unwrap(),
    ] {
        assert!(p.objects.is_empty());
        assert_eq!(p.files().count(), 0);
        assert_eq!(
            p.warnings,
            ["the objects parameter is missing or empty: the volume will be empty"]
        );
    }
}

#[test]
fn malformed_yaml_fails_to_load() {
    assert!(err("- objectName: [unclosed").starts_with("Failed to load SecretProviderClass: "));
    assert_eq!(
        err("objectName: a"),
        "Failed to load SecretProviderClass: objects must be a list, found a mapping"
    );
    assert_eq!(
        err("- just-a-string"),
        "Failed to load SecretProviderClass: objects[0] must be a mapping, found a string"
    );
    assert_eq!(
        err("- {objectName: a, objectType: secretsmanager}\n- ~"),
        "objects[1]: Empty descriptor entry in SecretProviderClass"
    );
}

#[test]
fn unquoted_modes_fail_with_a_hint() {
    // YAML 1.1 reads 0600 as 384, which the AWS provider refuses too.
    for mode in ["0600", "644", "true"] {
        assert_eq!(
            err(&format!(
                "- {{objectName: a, objectType: secretsmanager, filePermission: {mode}}}"
            )),
            "Failed to load SecretProviderClass: objects[0].filePermission must be a string; quote the value"
        );
    }
    assert_eq!(
        err(
            "- {objectName: a, objectType: secretsmanager, jmesPath: [{path: a, objectAlias: b, filePermission: 0400}]}"
        ),
        "Failed to load SecretProviderClass: objects[0].jmesPath[0].filePermission must be a string; quote the value"
    );
}

#[test]
fn unquoted_scalars_are_read_as_the_aws_provider_reads_them() {
    let p = plan_objects(
        "- {objectName: 12345, objectType: secretsmanager, objectVersion: 1, objectAlias: yes}\n\
         - {objectName: off, objectType: ssmparameter, objectVersion: 1.10}\n\
         - {objectName: 0x1F, objectType: ssmparameter, objectAlias: 1e6, objectVersionLabel: n}\n\
         - {objectName: \"0600\", objectType: ssmparameter, objectAlias: 0600}\n\
         - {objectName: 'yes', objectType: ssmparameter, objectVersion: 2.5e-5}\n\
         - {objectName: YeS, objectType: ssmparameter, objectVersionLabel: On}\n",
    )
    .unwrap();
    let o = &p.objects;
    assert_eq!(o[0].primary.name, "12345");
    assert_eq!(o[0].primary.version_id.as_deref(), Some("1"));
    assert_eq!(o[1].primary.name, "false");
    assert_eq!(o[1].primary.version_id.as_deref(), Some("1.1"));
    assert_eq!(o[2].primary.name, "31");
    assert_eq!(o[2].primary.version_label.as_deref(), Some("false"));
    // Quoted text is kept as written; unquoted 0600 is octal 384.
    assert_eq!(o[3].primary.name, "0600");
    assert_eq!(o[4].primary.name, "yes");
    assert_eq!(o[4].primary.version_id.as_deref(), Some("2.5e-05"));
    // Go's reader knows three spellings of each boolean word, not any case.
    assert_eq!(o[5].primary.name, "YeS");
    assert_eq!(o[5].primary.version_label.as_deref(), Some("true"));
    assert_eq!(
        paths(&p).into_iter().map(|(f, _)| f).collect::<Vec<_>>(),
        ["true", "false", "1e+06", "384", "yes", "YeS"]
    );
    assert_eq!(p.warnings.len(), 11, "{:?}", p.warnings);
    assert!(p.warnings.iter().any(|w| w
        == "objects[0] (12345).objectAlias: the unquoted boolean is read as \"true\", as the AWS provider reads it; quote it to say so"), "{:?}", p.warnings);
}

#[test]
fn go_float_formatting_matches_strconv() {
    // strconv.FormatFloat(x, 'g', -1, 32), as printed by Go 1.x (and the
    // class above as sigs.k8s.io/yaml v1.6.0 reads it), checked with Go.
    for (x, go) in [
        (1.0, "1"),
        (1.1, "1.1"),
        (0.5, "0.5"),
        (100000.0, "100000"),
        (1000000.0, "1e+06"),
        (1234567.0, "1.234567e+06"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
        (-2.5, "-2.5"),
        (1.23456789, "1.2345679"),
        (f64::INFINITY, "+Inf"),
        (f64::NEG_INFINITY, "-Inf"),
        (f64::NAN, "NaN"),
    ] {
        assert_eq!(go_float32_g(x), go, "{x}");
    }
}

#[test]
fn yaml_alias_bombs_are_refused() {
    let bomb = "a: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: [*f,*f,*f,*f,*f,*f,*f,*f,*f,*f]\n";
    assert!(err(bomb).starts_with("Failed to load SecretProviderClass: "));
}

#[test]
fn object_name_rules() {
    assert_eq!(
        err("- {objectType: secretsmanager}"),
        "objects[0]: Object name must be specified"
    );
    assert_eq!(
        err("- {objectName: a}"),
        "Must use objectType when a full ARN is not specified: a"
    );
    assert_eq!(
        err("- {objectName: a, objectType: ssm}"),
        "Invalid objectType: ssm"
    );
    assert_eq!(
        err("- {objectName: a, objectType: vault}"),
        "Invalid objectType: vault"
    );
}

#[test]
fn arn_rules() {
    let sm = "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db-AbCdEf";
    let p = plan_objects(&format!("- {{objectName: \"{sm}\"}}")).unwrap();
    assert_eq!(p.objects[0].object_type, ObjectType::SecretsManager);
    assert_eq!(
        paths(&p)[0].0,
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod_db-AbCdEf"
    );

    let ssm = "arn:aws:ssm:us-east-1:123456789012:parameter/shop/flags";
    let p = plan_objects(&format!("- {{objectName: \"{ssm}\", objectAlias: flags}}")).unwrap();
    assert_eq!(p.objects[0].object_type, ObjectType::SsmParameter);
    let p = plan_objects(&format!(
        "- {{objectName: \"{ssm}\", objectAlias: flags, objectType: ssmparameter}}"
    ))
    .unwrap();
    assert_eq!(p.objects[0].object_type, ObjectType::SsmParameter);

    assert_eq!(
        err("- {objectName: \"arn:aws:secretsmanager:us-east-1\"}"),
        "Invalid ARN format in object name: arn:aws:secretsmanager:us-east-1"
    );
    assert_eq!(
        err("- {objectName: \"arn:aws:secretsmanager:us-west-2:1:secret:x\"}"),
        "ARN region must match region us-east-1: arn:aws:secretsmanager:us-west-2:1:secret:x"
    );
    assert_eq!(
        err("- {objectName: \"arn:aws:s3:us-east-1:1:bucket\"}"),
        "Invalid service in ARN: s3"
    );
    assert_eq!(
        err(&format!(
            "- {{objectName: \"{sm}\", objectType: ssmparameter}}"
        )),
        format!("objectType does not match ARN: {sm}")
    );
    assert_eq!(
        err("- {objectName: \"arn:aws:s3:us-east-1:1:bucket\", objectType: secretsmanager}"),
        "objectType does not match ARN: arn:aws:s3:us-east-1:1:bucket"
    );
}

#[test]
fn cross_account_arns_are_allowed() {
    let p = plan_objects(
        "- {objectName: \"arn:aws:secretsmanager:us-east-1:999999999999:secret:shared\"}",
    )
    .unwrap();
    assert_eq!(p.objects.len(), 1);
}

#[test]
fn ssm_cannot_pin_version_and_label() {
    assert_eq!(
        err(
            "- {objectName: p, objectType: ssmparameter, objectVersion: \"1\", objectVersionLabel: blue}"
        ),
        "ssm parameters can not specify both objectVersion and objectVersionLabel: p"
    );
    // Secrets Manager may (both are sent).
    let p = plan_objects("- {objectName: s, objectType: secretsmanager, objectVersion: v1, objectVersionLabel: AWSCURRENT}").unwrap();
    assert_eq!(p.objects[0].primary.version_id.as_deref(), Some("v1"));
    assert_eq!(
        p.objects[0].primary.version_label.as_deref(),
        Some("AWSCURRENT")
    );
}

#[test]
fn file_permission_rules() {
    for bad in ["600", "0800", "00600", "rw-r", "0x10"] {
        assert_eq!(
            err(&format!(
                "- {{objectName: a, objectType: secretsmanager, filePermission: \"{bad}\"}}"
            )),
            format!("objects[0] (a): Invalid File Permission: {bad}")
        );
    }
    assert_eq!(
        err(
            "- {objectName: a, objectType: secretsmanager, jmesPath: [{path: x, objectAlias: y, filePermission: \"999\"}]}"
        ),
        "objects[0] (a): Invalid File Permission: 999"
    );
    let p = plan_objects("- {objectName: a, objectType: secretsmanager, filePermission: \"0777\"}")
        .unwrap();
    assert_eq!(p.objects[0].file.mode, 0o777);
}

#[test]
fn jmes_entry_rules() {
    assert_eq!(
        err("- {objectName: a, objectType: secretsmanager, jmesPath: [{objectAlias: y}]}"),
        "objects[0] (a): Path must be specified for JMES object"
    );
    assert_eq!(
        err("- {objectName: a, objectType: secretsmanager, jmesPath: [{path: x}]}"),
        "objects[0] (a): Object alias must be specified for JMES object"
    );
    assert_eq!(
        err(
            "- {objectName: a, objectType: secretsmanager, jmesPath: [{path: \"a[\", objectAlias: y}]}"
        ),
        "objects[0] (a): Invalid JMES Path: a[."
    );
    // Hyphenated keys must be quoted identifiers, as upstream documents.
    assert!(plan_objects("- {objectName: a, objectType: secretsmanager, jmesPath: [{path: '\"a-b\"', objectAlias: y}]}").is_ok());
}

#[test]
fn failover_object_rules() {
    let two = |objects: &str| {
        plan(
            &params(&[
                ("region", "us-east-1"),
                ("failoverRegion", "us-west-2"),
                ("objects", objects),
            ]),
            None,
        )
    };
    let p = two("- {objectName: \"arn:aws:secretsmanager:us-east-1:1:secret:a\", objectAlias: a, failoverObject: {objectName: \"arn:aws:secretsmanager:us-west-2:1:secret:a\"}}").unwrap();
    assert_eq!(
        p.objects[0].failover.as_ref().unwrap().name,
        "arn:aws:secretsmanager:us-west-2:1:secret:a"
    );

    assert_eq!(
        two("- {objectName: a, objectType: secretsmanager, failoverObject: {objectName: b}}")
            .unwrap_err()
            .to_string(),
        "object alias must be specified for objects with failover entries: a"
    );
    assert_eq!(
        err(
            "- {objectName: a, objectAlias: x, objectType: secretsmanager, failoverObject: {objectName: b}}"
        ),
        "failover object allowed only when failover region is defined: a"
    );
    assert_eq!(
        two("- {objectName: a, objectAlias: x, objectType: secretsmanager, failoverObject: {objectName: \"arn:aws:secretsmanager:us-east-1:1:secret:b\"}}").unwrap_err().to_string(),
        "ARN region must match region us-west-2: arn:aws:secretsmanager:us-east-1:1:secret:b"
    );
    assert_eq!(
        two("- {objectName: a, objectAlias: x, objectType: secretsmanager, objectVersion: v1, failoverObject: {objectName: b, objectVersion: v2}}").unwrap_err().to_string(),
        "object versions must match between primary and failover regions: a"
    );
    assert_eq!(
        two("- {objectName: a, objectAlias: x, objectType: ssmparameter, failoverObject: {objectName: b, objectVersion: \"1\", objectVersionLabel: l}}").unwrap_err().to_string(),
        "ssm parameters can not specify both objectVersion and objectVersionLabel: a"
    );
    assert_eq!(
        two("- {objectName: \"arn:aws:ssm:us-east-1:1:parameter/a\", objectAlias: x, failoverObject: {objectName: \"arn:aws:secretsmanager:us-west-2:1:secret:b\"}}").unwrap_err().to_string(),
        "objectType does not match ARN: arn:aws:secretsmanager:us-west-2:1:secret:b"
    );
}

#[test]
fn duplicate_object_rules_follow_the_aws_provider_table() {
    // Allowed: same name with different aliases, or different labels plus aliases.
    assert!(plan_objects("- {objectName: a, objectType: secretsmanager, objectAlias: x}\n- {objectName: a, objectType: secretsmanager, objectAlias: y}").is_ok());
    assert!(plan_objects("- {objectName: a, objectType: secretsmanager, objectAlias: cur, objectVersionLabel: AWSCURRENT}\n- {objectName: a, objectType: secretsmanager, objectAlias: prev, objectVersionLabel: AWSPREVIOUS}").is_ok());
    // ASCP's four cases, in its words.
    let dup = |a: &str, b: &str| {
        err(&format!(
            "- {{objectName: a, objectType: secretsmanager{a}}}\n- {{objectName: a, objectType: secretsmanager{b}}}"
        ))
    };
    assert_eq!(
        dup(", objectAlias: x", ", objectAlias: x"),
        "found descriptor with duplicate object name a, duplicate object alias x, and no version label"
    );
    assert_eq!(
        dup(", objectVersionLabel: L", ", objectVersionLabel: L"),
        "found descriptor with duplicate object name a, no object alias, and duplicate version label L"
    );
    assert_eq!(
        dup(
            ", objectAlias: x, objectVersionLabel: L",
            ", objectAlias: x, objectVersionLabel: L"
        ),
        "found descriptor with duplicate object name a, duplicate object alias x, and duplicate version label L"
    );
    assert_eq!(
        dup("", ""),
        "found descriptor with duplicate object name a, no object alias, and no version label"
    );
    // Repeated alias on different objects.
    assert_eq!(
        err(
            "- {objectName: a, objectType: secretsmanager, objectAlias: x}\n- {objectName: b, objectType: secretsmanager, objectAlias: x}"
        ),
        "found duplicate object alias x"
    );
    // jmes alias clashing with an object alias.
    assert_eq!(
        err(
            "- {objectName: a, objectType: secretsmanager, objectAlias: x}\n- {objectName: b, objectType: secretsmanager, jmesPath: [{path: p, objectAlias: x}]}"
        ),
        "Name already in use for objectAlias: found duplicate object alias x in JMES path entry p"
    );
}

#[test]
fn stricter_than_upstream_same_name_different_labels_without_alias_collide() {
    // The AWS provider accepts this and the second write wins; we refuse.
    let e = err(
        "- {objectName: a, objectType: secretsmanager, objectVersionLabel: AWSCURRENT}\n- {objectName: a, objectType: secretsmanager, objectVersionLabel: AWSPREVIOUS}",
    );
    assert_eq!(
        e,
        "file name collision: \"a\" (object a) and \"a\" (object a) cannot both be written"
    );
}

#[test]
fn collisions_after_translation_are_refused() {
    let e = err(
        "- {objectName: a/b, objectType: secretsmanager}\n- {objectName: a_b, objectType: ssmparameter}",
    );
    assert_eq!(
        e,
        "file name collision: \"a_b\" (object a/b) and \"a_b\" (object a_b) cannot both be written"
    );
    // An un-aliased object against a jmes alias.
    let e = err(
        "- {objectName: a, objectType: secretsmanager}\n- {objectName: b, objectType: secretsmanager, jmesPath: [{path: p, objectAlias: a}]}",
    );
    assert!(e.starts_with("file name collision: \"a\""), "{e}");
}

#[test]
fn a_file_inside_another_files_path_collides() {
    let objects = "- {objectName: a, objectType: secretsmanager}\n- {objectName: a-x, objectType: secretsmanager}\n- {objectName: a/b, objectType: secretsmanager}";
    let e = plan(
        &params(&[
            ("region", "r"),
            ("pathTranslation", "False"),
            ("objects", objects),
        ]),
        None,
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "file name collision: \"a\" (object a) and \"a/b\" (object a/b) cannot both be written"
    );
    // Order does not matter.
    let objects = "- {objectName: a/b, objectType: secretsmanager}\n- {objectName: a, objectType: secretsmanager}";
    let e = plan(
        &params(&[
            ("region", "r"),
            ("pathTranslation", "False"),
            ("objects", objects),
        ]),
        None,
    )
    .unwrap_err();
    assert!(e.to_string().starts_with("file name collision"), "{e}");
    // Siblings in one directory are fine.
    let objects = "- {objectName: d/a, objectType: secretsmanager}\n- {objectName: d/b, objectType: secretsmanager}";
    assert!(
        plan(
            &params(&[
                ("region", "r"),
                ("pathTranslation", "False"),
                ("objects", objects)
            ]),
            None
        )
        .is_ok()
    );
}

#[test]
fn traversal_is_refused_in_every_name_field() {
    let off = |objects: &str| {
        plan(
            &params(&[
                ("region", "r"),
                ("pathTranslation", "False"),
                ("objects", objects),
            ]),
            None,
        )
        .unwrap_err()
        .to_string()
    };
    // objectName, objectAlias, jmes alias; with translation off.
    assert_eq!(
        off("- {objectName: ../etc/x, objectType: secretsmanager}"),
        "invalid file name \"../etc/x\" for object ../etc/x: path can not contain ../ or ./ components"
    );
    assert_eq!(
        off("- {objectName: a, objectAlias: x/../../y, objectType: secretsmanager}"),
        "invalid file name \"x/../../y\" for object a: path can not contain ../ or ./ components"
    );
    assert_eq!(
        off(
            "- {objectName: a, objectType: secretsmanager, jmesPath: [{path: p, objectAlias: ../../host}]}"
        ),
        "invalid file name \"../../host\" for object a: path can not contain ../ or ./ components"
    );
    // Bare "." and "..", which the AWS provider's regex misses.
    assert!(
        err("- {objectName: a, objectAlias: \"..\", objectType: secretsmanager}")
            .contains("path can not contain")
    );
    assert!(
        err("- {objectName: a, objectAlias: \".\", objectType: secretsmanager}")
            .contains("path can not contain")
    );
    assert!(err("- {objectName: a, objectType: secretsmanager, jmesPath: [{path: p, objectAlias: \"..\"}]}").contains("path can not contain"));
    // kubelet's reserved names.
    assert!(
        err("- {objectName: a, objectAlias: ..data, objectType: secretsmanager}")
            .contains("reserved")
    );
    // NUL and empty components.
    assert!(
        err("- {objectName: a, objectAlias: \"x\\0y\", objectType: secretsmanager}")
            .contains("NUL")
    );
    assert!(
        off("- {objectName: a, objectAlias: \"x//y\", objectType: secretsmanager}")
            .contains("empty path component")
    );
    // With translation on, slashes cannot make directories, so "a/../b" is a plain name.
    let p = plan_objects("- {objectName: a/../b, objectType: secretsmanager}").unwrap();
    assert_eq!(paths(&p)[0].0, "a_.._b");
}

#[test]
fn names_are_judged_as_written_before_translation() {
    // An alias is the author's file name: absolute or climbing is refused,
    // translated or not, and the message quotes what the author wrote.
    for translation in ["", "False", "-"] {
        let e = |objects: &str| {
            plan(
                &params(&[
                    ("region", "r"),
                    ("pathTranslation", translation),
                    ("objects", objects),
                ]),
                None,
            )
            .unwrap_err()
            .to_string()
        };
        assert_eq!(
            e("- {objectName: a, objectAlias: /etc/passwd, objectType: secretsmanager}"),
            "invalid file name \"/etc/passwd\" for object a: the file name is an absolute path"
        );
        assert_eq!(
            e("- {objectName: a, objectAlias: ../../etc/x, objectType: secretsmanager}"),
            "invalid file name \"../../etc/x\" for object a: path can not contain ../ or ./ components"
        );
        assert_eq!(
            e(
                "- {objectName: a, objectType: secretsmanager, jmesPath: [{path: p, objectAlias: /root/x}]}"
            ),
            "invalid file name \"/root/x\" for object a: the file name is an absolute path"
        );
        assert_eq!(
            e(
                "- {objectName: a, objectType: secretsmanager, jmesPath: [{path: p, objectAlias: x/../../y}]}"
            ),
            "invalid file name \"x/../../y\" for object a: path can not contain ../ or ./ components"
        );
    }
    // An object name that climbs is named as written, not as translated.
    assert_eq!(
        err("- {objectName: ../../etc/x, objectType: secretsmanager}"),
        "invalid file name \"../../etc/x\" for object ../../etc/x: path can not contain ../ or ./ components"
    );
    // SSM names start with "/": translated as upstream, not refused.
    let p = plan_objects("- {objectName: /shop/flags, objectType: ssmparameter}").unwrap();
    assert_eq!(paths(&p)[0].0, "_shop_flags");
}

#[test]
fn file_permissions_are_permission_bits_only() {
    for bad in ["4755", "6777", "2700", "1777", "7000"] {
        let e = err(&format!(
            "- {{objectName: a, objectType: secretsmanager, filePermission: \"{bad}\"}}"
        ));
        assert_eq!(
            e,
            format!(
                "objects[0] (a): Invalid File Permission: {bad}: setuid, setgid and sticky bits are not allowed (use 0000 to 0777)"
            )
        );
        let e = err(&format!(
            "- {{objectName: a, objectType: secretsmanager, jmesPath: [{{path: p, objectAlias: b, filePermission: \"{bad}\"}}]}}"
        ));
        assert!(e.contains("setuid"), "{e}");
    }
    for good in ["0000", "0400", "0644", "0777"] {
        let p = plan_objects(&format!(
            "- {{objectName: a, objectType: secretsmanager, filePermission: \"{good}\"}}"
        ))
        .unwrap();
        assert_eq!(
            p.objects[0].file.mode,
            u32::from_str_radix(good, 8).unwrap()
        );
    }
}

#[test]
fn a_broken_objects_yaml_is_reported_before_a_missing_region() {
    let e = plan(
        &params(&[("objects", "- {objectName: a, objectType")]),
        None,
    )
    .unwrap_err();
    assert!(matches!(e, PlanError::Yaml { .. }), "{e}");
    // With sound objects, the missing region is what is said.
    let e = plan(
        &params(&[("objects", "- {objectName: a, objectType: secretsmanager}")]),
        None,
    )
    .unwrap_err();
    assert_eq!(e, PlanError::RegionNotFound);
}

#[test]
fn files_per_volume_are_bounded_while_planning() {
    let limits = VolumeLimits {
        max_files: 10,
        max_bytes: 1 << 20,
    };
    let with = |objects: &str| {
        plan_within(
            &params(&[("region", "r"), ("objects", objects)]),
            None,
            limits,
        )
    };
    let jmes = |n: usize| {
        let entries: String = (0..n)
            .map(|i| format!("    - {{path: p, objectAlias: f{i}}}\n"))
            .collect();
        format!("- objectName: s\n  objectType: secretsmanager\n  jmesPath:\n{entries}")
    };
    // The object's own file and 9 jmesPath files: 10.
    assert_eq!(with(&jmes(9)).unwrap().files().count(), 10);
    assert_eq!(
        with(&jmes(10)).unwrap_err().to_string(),
        "the class asks for 11 files; a volume holds at most 10 (the driver's --max-files-per-volume)"
    );
    let many: String = (0..11)
        .map(|i| format!("- {{objectName: s, objectAlias: a{i}, objectType: secretsmanager}}\n"))
        .collect();
    assert!(matches!(
        with(&many),
        Err(PlanError::TooManyFiles {
            files: 11,
            limit: 10
        })
    ));
    // The limits travel with the plan, for rendering.
    assert_eq!(with(&jmes(1)).unwrap().limits, limits);
}

#[test]
fn leading_slashes_are_stripped_with_translation_off_as_upstream() {
    let p = plan(
        &params(&[
            ("region", "r"),
            ("pathTranslation", "false"),
            (
                "objects",
                "- {objectName: /shop/db, objectType: ssmparameter}",
            ),
        ]),
        None,
    )
    .unwrap();
    assert_eq!(paths(&p)[0].0, "shop/db");
}

#[test]
fn thousands_of_objects_plan_quickly() {
    let mut yaml = String::new();
    for i in 0..2000 {
        yaml.push_str(&format!(
            "- {{objectName: s{i}, objectType: secretsmanager}}\n"
        ));
    }
    assert_eq!(plan_objects(&yaml).unwrap().objects.len(), 2000);
}

#[test]
fn refresh_interval_is_an_optional_duration() {
    let objects = "- {objectName: a, objectType: secretsmanager}";
    let with = |v: &str| {
        plan(
            &params(&[
                ("region", "r"),
                ("objects", objects),
                ("refreshInterval", v),
            ]),
            None,
        )
    };
    assert_eq!(with("").unwrap().refresh_interval, None);
    assert_eq!(
        with("30s").unwrap().refresh_interval,
        Some(std::time::Duration::from_secs(30))
    );
    assert_eq!(
        with("2m").unwrap().refresh_interval,
        Some(std::time::Duration::from_secs(120))
    );
    assert_eq!(
        with("1h").unwrap().refresh_interval,
        Some(std::time::Duration::from_secs(3600))
    );
    for bad in ["0s", "soon", "-1m", "10"] {
        assert_eq!(
            with(bad).unwrap_err().to_string(),
            format!(
                "refreshInterval must be a positive duration such as 30s, 2m or 1h, not {bad:?}"
            )
        );
    }
    // Under a second: accepted (tests and the impatient use it), but said.
    assert_eq!(
        with("1ms").unwrap().warnings,
        vec![
            "refreshInterval \"1ms\" is under a second: the volume is fetched from AWS at every republish (did you mean 1m?)"
        ]
    );
    assert!(with("1s").unwrap().warnings.is_empty());
}

#[test]
fn role_chain_parameters() {
    let objects = "- {objectName: a, objectType: secretsmanager}";
    let with = |extra: &[(&str, &str)]| {
        let mut p = params(&[("region", "r"), ("objects", objects)]);
        for (k, v) in extra {
            p.insert(k.to_string(), v.to_string());
        }
        plan(&p, None)
    };
    assert_eq!(with(&[]).unwrap().role_chain, None);
    let chain = with(&[
        (
            "assumeRoleArn",
            "arn:aws:iam::111111111111:role/hop, arn:aws:iam::222222222222:role/final",
        ),
        ("assumeRoleExternalId", "ext-123"),
        ("assumeRoleDurationSeconds", "1800"),
        ("assumeRoleSessionTags", "team=shop, env=prod"),
    ])
    .unwrap()
    .role_chain
    .unwrap();
    assert_eq!(
        chain.roles,
        vec![
            "arn:aws:iam::111111111111:role/hop",
            "arn:aws:iam::222222222222:role/final"
        ]
    );
    assert_eq!(chain.external_id.as_deref(), Some("ext-123"));
    assert_eq!(chain.duration_seconds, Some(1800));
    assert_eq!(
        chain.session_tags,
        vec![
            ("env".to_string(), "prod".to_string()),
            ("team".to_string(), "shop".to_string())
        ]
    );

    let err = |extra: &[(&str, &str)]| with(extra).unwrap_err().to_string();
    assert_eq!(
        err(&[("assumeRoleArn", "arn:aws:iam::1:user/x")]),
        "assumeRoleArn: \"arn:aws:iam::1:user/x\" is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)"
    );
    assert_eq!(
        err(&[("assumeRoleExternalId", "x1")]),
        "assumeRoleExternalId is set but assumeRoleArn is not"
    );
    let role = ("assumeRoleArn", "arn:aws:iam::1:role/r");
    assert!(
        err(&[role, ("assumeRoleDurationSeconds", "60")])
            .starts_with("assumeRoleDurationSeconds must be")
    );
    assert!(
        err(&[role, ("assumeRoleDurationSeconds", "1h")])
            .starts_with("assumeRoleDurationSeconds must be")
    );
    assert!(
        err(&[role, ("assumeRoleExternalId", "has space")])
            .starts_with("assumeRoleExternalId must be")
    );
    assert!(
        err(&[role, ("assumeRoleSessionTags", "novalue")])
            .starts_with("assumeRoleSessionTags must be")
    );
    assert!(
        err(&[role, ("assumeRoleSessionTags", "a=1,a=2")])
            .starts_with("assumeRoleSessionTags must be")
    );
}

/// A class with one jmesPath entry `path` (YAML single-quoted).
fn plan_jmes(path: &str) -> Result<MountPlan, PlanError> {
    plan_objects(&format!(
        "- objectName: a\n  objectType: secretsmanager\n  jmesPath:\n    - {{path: '{}', objectAlias: y}}\n",
        path.replace('\'', "''")
    ))
}

#[test]
fn jmes_paths_that_copy_their_input_too_often_are_refused() {
    // `[@,@][]` doubles an array: 2^4 copies pass, 2^5 do not.
    assert!(plan_jmes(&"[@,@][]".repeat(4)).is_ok());
    let five = "[@,@][]".repeat(5);
    assert_eq!(
        plan_jmes(&five).unwrap_err().to_string(),
        format!(
            "objects[0] (a): JMES Path - {five} can copy its input 32 times (multi-select lists and hashes, nested); at most 16 is allowed."
        )
    );
    // Nested and hashed selections count; thirty in a line saturate, not overflow.
    assert!(plan_jmes("[[@,@],[@,@]]").is_ok());
    assert!(plan_jmes("{a: {b: @, c: @}, d: [@, @, @]}").is_ok());
    assert!(matches!(
        plan_jmes("{a: {b: @, c: @}, d: [@, @, @], e: [@, @]}")
            .unwrap_err()
            .cause(),
        PlanError::JmesTooWide { copies: 36, .. }
    ));
    assert!(plan_jmes(&"[@,@][]".repeat(70)).is_err());
    // What the render fuzz target found: 859 bytes that asked for gigabytes.
    let found = "[BBBBCBn&nnnnnBBn&nnnnnBBBBn&nnBBBBBn&nnBBBBBBBB] [][nnnnBBBBn&nnBBBBBn&nnBBBBBBBB] [][] [n&nnnBBn&nnn&nnnBBn&nnnBBn&n&nnnBBn&nnnnnBBBBn&nnBBBBBn&nnBBBBBBBB] [][nnnnBBBBn&nnBBBBBn&nnBBBBBBBB] [][] [n&nnnBBn&nnn&nnnBBn&nnnnnBBBBn&nnBBBBBn&nnBBBBBBBB] [][nnnnBBBBn&nnBBBBBn&nnBBBBBBBB] [][] [n&nnnBBn&nnnnnBBBBn&nn&nnnnBnnBBBBn&nnBBBBn&nnBBBBBn&nnBBBBBBBB] [][nnnnBBBBn&nnBBBBBn&nnBBBBBBBB] [][] [n&nnnBBn&nnnnnBBBBn&nn&nnnnBBn&n&nnnBBn&nnnnnBBBBn&nnBBBBBn&nnBBBBBBBB] [][nnnnBBBBn&nnBBBBBn&nnBBBBBBBB] [][] [n&nnnBBn&nnn&nnnBBn&nnnBBn&n&nnnBBn&nnnnnBBBBn&nnBBBBBn&nnBBBBBBBB] [][nnnnBBBBn&nnBBBBBn&nnBBBBBBBB] [][] [n&nnnBBn&nnn&nnnBBn&nnnnnBBBBn&nnBBBBBn&nnBBBBBBBB] [][nnnnBBBBn&nnBBBBBn&nnBBBBBBBB] [][] [n&nnnBBn&nnnnnBBBBn&nn&nnnnBnnBBBBn&nnBBBBn&nnBBBBBn&nnBBBBBBBB] [][nnnnBBBBn&nnBBBBBn&nnBBBBBBBB] [][] [n&nnnBBn&nnnnnBBBBn&nn&nnnnBnnBBBBn&nn&nnnnB@B]";
    assert!(
        matches!(
            plan_jmes(found).as_ref().map_err(PlanError::cause),
            Err(PlanError::JmesTooWide { .. })
        ),
        "{:?}",
        plan_jmes(found).map(|_| ())
    );
}

#[test]
fn everyday_jmes_paths_copy_nothing_and_pass() {
    for path in [
        "username",
        "db.credentials.password",
        "hosts[0]",
        "\"key-with-dash\"",
        "items[?name=='db'].value | [0]",
        "join(',', [user, host, port])",
        "{u: username, p: password}.p",
        "to_string(port)",
        "sort_by(items, &name)[-1].value",
    ] {
        assert!(plan_jmes(path).is_ok(), "{path}");
    }
}

#[test]
fn typos_are_named_with_the_key_they_most_likely_meant() {
    let p = plan(
        &params(&[
            ("region", "r"),
            ("pathTranslaton", "-"),
            ("csi.storage.k8s.io/pod.name", "added by the upstream driver"),
            (
                "objects",
                "- objectName: db\n  objectType: secretsmanager\n  objetAlias: x\n  jmesPath:\n    - {path: u, objectAlias: user, filePermision: \"0400\"}\n",
            ),
        ]),
        None,
    )
    .unwrap();
    assert_eq!(
        p.warnings,
        vec![
            "parameters: unknown parameter `pathTranslaton`, ignored; did you mean `pathTranslation`?",
            "objects[0] (db).jmesPath[0]: unknown key `filePermision`, ignored; did you mean `filePermission`?",
            "objects[0] (db): unknown key `objetAlias`, ignored; did you mean `objectAlias`?",
        ]
    );
    // Nothing close: the known keys are listed.
    let w = lint(&params(&[
        ("region", "r"),
        ("zzz", "1"),
        ("objects", "- {}"),
    ]));
    assert_eq!(w.len(), 1);
    assert!(
        w[0].contains("unknown parameter `zzz`, ignored (known: objects, region"),
        "{w:?}"
    );
}

#[test]
fn typos_are_reported_even_when_the_class_fails() {
    // `objectTyp` is why the object has no type: both are said.
    let parameters = params(&[
        ("region", "r"),
        ("objects", "- {objectName: db, objectTyp: secretsmanager}"),
    ]);
    assert_eq!(
        plan(&parameters, None).unwrap_err(),
        PlanError::ObjectTypeMissing("db".into())
    );
    assert_eq!(
        lint(&parameters),
        vec!["objects[0] (db): unknown key `objectTyp`, ignored; did you mean `objectType`?"]
    );
}

#[test]
fn yaml_errors_say_where_inside_objects() {
    let e = plan_objects("- objectName: a\n  objectType: secretsmanager\n- objectName: \"b\n")
        .unwrap_err();
    assert!(
        matches!(&e, PlanError::Yaml { line: 3, column: 15, message } if message == "unclosed quote"),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "Failed to load SecretProviderClass: parameters.objects line 3 column 15: unclosed quote"
    );
}
