//! The External Secrets CRDs (`external-secrets.io`: ExternalSecret,
//! SecretStore, ClusterSecretStore, ClusterExternalSecret), generated from
//! the typed API the controller reads (`aws_secrets_csi_core::external::api`),
//! so what the API server validates and what the controller reads are one
//! definition. Pure: `aws-secrets-csi crds` prints them, and a test checks
//! that `deploy/controller/crd-*.yaml` (which the chart renders through its
//! `controller` link) are this output.
//!
//! The schemas are structural (the API server validates every field, prunes
//! the ones not in them, and `kubectl explain` describes them): schemars'
//! OpenAPI 3 output with subschemas inlined and kube's rewrites (`oneOf`
//! enums hoisted to `enum`, `additionalProperties: false` of
//! `deny_unknown_fields` dropped beside `properties`, `Option` and the
//! lists serde reads `null` as empty as `nullable`, except enums: see
//! [`tidy`]). v1 is stored; v1beta1 is served with the same schema (no
//! conversion: the fields this controller reads are the same in both).

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceColumnDefinition, CustomResourceDefinition, CustomResourceDefinitionNames,
    CustomResourceDefinitionSpec, CustomResourceDefinitionVersion, CustomResourceSubresourceStatus,
    CustomResourceSubresources, CustomResourceValidation, JSONSchemaProps,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::schema::{OptionalEnum, OptionalIntOrString, StructuralSchemaRewriter};
use schemars::JsonSchema;
use schemars::generate::SchemaSettings;
use schemars::transform::AddNullable;
use serde_json::{Value, json};

use aws_secrets_csi_core::external::api;

pub const GROUP: &str = "external-secrets.io";

/// The command that writes the checked-in copies (named by the test that
/// compares them).
/// (`deploy/chart/aws-secrets-csi/controller` is a link to `deploy/controller`.)
pub const REGENERATE: &str = "cargo run -q -- crds --dir deploy/controller";

/// The four CRDs, in the order they are printed.
pub fn crds() -> Vec<CustomResourceDefinition> {
    let ready =
        |field: &str| column_at(field, "string", r#".status.conditions[?(@.type=="Ready")]"#);
    let age = || column("Age", "date", ".metadata.creationTimestamp");
    let store_columns = || {
        vec![
            age(),
            ready("reason").named("Status"),
            column("Capabilities", "string", ".status.capabilities"),
            ready("status").named("Ready"),
        ]
    };
    vec![
        crd(
            Names {
                kind: "ExternalSecret",
                plural: "externalsecrets",
                short: "es",
                namespaced: true,
            },
            "Kubernetes Secret kept in sync with values read from AWS Secrets Manager or \
             SSM Parameter Store through a SecretStore or ClusterSecretStore.",
            schema_of::<api::ExternalSecretSpec>(),
            schema_of::<api::ExternalSecretStatus>(),
            vec![
                column("Store", "string", ".spec.secretStoreRef.name"),
                column("Refresh Interval", "string", ".spec.refreshInterval"),
                ready("reason").named("Status"),
                ready("status").named("Ready"),
                age(),
            ],
        ),
        crd(
            Names {
                kind: "SecretStore",
                plural: "secretstores",
                short: "ss",
                namespaced: true,
            },
            "Where the ExternalSecrets of its namespace read: an AWS service, a region \
             and the identity used to read it.",
            schema_of::<api::SecretStoreSpec>(),
            schema_of::<api::SecretStoreStatus>(),
            store_columns(),
        ),
        crd(
            Names {
                kind: "ClusterSecretStore",
                plural: "clustersecretstores",
                short: "css",
                namespaced: false,
            },
            "A SecretStore that ExternalSecrets of any namespace (or of the namespaces \
             its conditions select) may use.",
            schema_of::<api::SecretStoreSpec>(),
            schema_of::<api::SecretStoreStatus>(),
            store_columns(),
        ),
        crd(
            Names {
                kind: "ClusterExternalSecret",
                plural: "clusterexternalsecrets",
                short: "ces",
                namespaced: false,
            },
            "An ExternalSecret created in each namespace it selects.",
            schema_of::<api::ClusterExternalSecretSpec>(),
            schema_of::<api::ClusterExternalSecretStatus>(),
            vec![
                column(
                    "Store",
                    "string",
                    ".spec.externalSecretSpec.secretStoreRef.name",
                ),
                column("Refresh Interval", "string", ".spec.refreshTime"),
                ready("status").named("Ready"),
            ],
        ),
    ]
}

/// The file a CRD is kept in: `crd-<plural>.yaml`.
pub fn file_name(crd: &CustomResourceDefinition) -> String {
    format!("crd-{}.yaml", crd.spec.names.plural)
}

/// One CRD as the YAML document of its file, with a header saying where it
/// comes from.
pub fn to_yaml(crd: &CustomResourceDefinition) -> String {
    let body = serde_saphyr::to_string(crd).expect("a CRD serializes to YAML");
    format!(
        "# {kind}, {GROUP}: generated by `aws-secrets-csi crds` from the typed API the\n\
         # controller reads (crates/core/src/external/api.rs); do not edit, run\n\
         # {REGENERATE}\n\
         # v1 stored, v1beta1 served with the same schema. A cluster that already\n\
         # has External Secrets Operator's CRDs keeps them (the chart renders this\n\
         # one only where none exists).\n\
         {body}",
        kind = crd.spec.names.kind,
    )
}

/// All four as one multi-document YAML stream.
pub fn all_yaml() -> String {
    crds().iter().map(to_yaml).collect::<Vec<_>>().join("---\n")
}

struct Names {
    kind: &'static str,
    plural: &'static str,
    short: &'static str,
    namespaced: bool,
}

fn crd(
    names: Names,
    description: &str,
    spec: Value,
    status: Value,
    columns: Vec<CustomResourceColumnDefinition>,
) -> CustomResourceDefinition {
    let root: JSONSchemaProps = serde_json::from_value(json!({
        "description": description,
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
    }))
    .expect("a valid JSONSchemaProps");
    let version = |name: &str, storage: bool| CustomResourceDefinitionVersion {
        name: name.to_owned(),
        served: true,
        storage,
        subresources: Some(CustomResourceSubresources {
            status: Some(CustomResourceSubresourceStatus(json!({}))),
            scale: None,
        }),
        additional_printer_columns: Some(columns.clone()),
        schema: Some(CustomResourceValidation {
            open_api_v3_schema: Some(root.clone()),
        }),
        ..Default::default()
    };
    CustomResourceDefinition {
        metadata: ObjectMeta {
            name: Some(format!("{}.{GROUP}", names.plural)),
            labels: Some([("app.kubernetes.io/part-of".into(), "aws-secrets-csi".into())].into()),
            // Deleting a CRD deletes every object of it: kept when the
            // chart is uninstalled.
            annotations: Some([("helm.sh/resource-policy".into(), "keep".into())].into()),
            ..Default::default()
        },
        spec: CustomResourceDefinitionSpec {
            group: GROUP.to_owned(),
            names: CustomResourceDefinitionNames {
                kind: names.kind.to_owned(),
                list_kind: Some(format!("{}List", names.kind)),
                plural: names.plural.to_owned(),
                singular: Some(names.kind.to_lowercase()),
                short_names: Some(vec![names.short.to_owned()]),
                categories: Some(vec!["external-secrets".to_owned()]),
            },
            scope: if names.namespaced {
                "Namespaced"
            } else {
                "Cluster"
            }
            .to_owned(),
            versions: vec![version("v1", true), version("v1beta1", false)],
            ..Default::default()
        },
        status: None,
    }
}

fn column(name: &str, type_: &str, json_path: &str) -> CustomResourceColumnDefinition {
    CustomResourceColumnDefinition {
        name: name.to_owned(),
        type_: type_.to_owned(),
        json_path: json_path.to_owned(),
        ..Default::default()
    }
}

fn column_at(field: &str, type_: &str, at: &str) -> CustomResourceColumnDefinition {
    column(field, type_, &format!("{at}.{field}"))
}

trait Named {
    fn named(self, name: &str) -> Self;
}

impl Named for CustomResourceColumnDefinition {
    fn named(mut self, name: &str) -> Self {
        name.clone_into(&mut self.name);
        self
    }
}

/// `T`'s schema, structural: inlined, `Option` as `nullable`, enums as
/// `enum`, no `additionalProperties` beside `properties`, no titles.
fn schema_of<T: JsonSchema>() -> Value {
    let generator = SchemaSettings::openapi3()
        .with(|s| {
            s.inline_subschemas = true;
            s.meta_schema = None;
        })
        .with_transform(AddNullable::default())
        .with_transform(StructuralSchemaRewriter)
        .with_transform(OptionalEnum)
        .with_transform(OptionalIntOrString)
        .into_generator();
    let mut schema = generator.into_root_schema_for::<T>().to_value();
    tidy(&mut schema);
    schema
}

/// What schemars adds that a CRD schema has no use for (titles), and
/// optional enums made non-nullable, recursively.
///
/// The API server refuses `null` for a nullable enum even when `null` is
/// one of its values (kube-apiserver 1.36: `Unsupported value: null`),
/// while it prunes a `null` of a field that is not nullable. So an
/// optional enum lists only its values and is not nullable: `null` there
/// is dropped, which serde reads as absent anyway.
fn tidy(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            map.remove("title");
            map.remove("$schema");
            if let Some(Value::Array(values)) = map.get_mut("enum") {
                values.retain(|v| !v.is_null());
                map.remove("nullable");
            }
            for (key, value) in map.iter_mut() {
                // An enum's values and a default are data, not schemas.
                if key != "enum" && key != "default" {
                    tidy(value);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(tidy),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// Each node of a schema with its path.
    fn walk<'v>(at: String, schema: &'v Value, out: &mut Vec<(String, &'v Value)>) {
        out.push((at.clone(), schema));
        if let Some(properties) = schema["properties"].as_object() {
            for (name, property) in properties {
                walk(format!("{at}.{name}"), property, out);
            }
        }
        if schema["items"].is_object() {
            walk(format!("{at}[]"), &schema["items"], out);
        }
        if schema["additionalProperties"].is_object() {
            walk(format!("{at}{{}}"), &schema["additionalProperties"], out);
        }
    }

    fn nodes(crd: &CustomResourceDefinition) -> Vec<(String, Value)> {
        let root = serde_json::to_value(
            crd.spec.versions[0]
                .schema
                .as_ref()
                .unwrap()
                .open_api_v3_schema
                .as_ref()
                .unwrap(),
        )
        .unwrap();
        let mut out = vec![];
        walk(String::new(), &root, &mut out);
        out.into_iter().map(|(at, v)| (at, v.clone())).collect()
    }

    fn node(crd: &CustomResourceDefinition, at: &str) -> Value {
        nodes(crd)
            .into_iter()
            .find(|(path, _)| path == at)
            .unwrap_or_else(|| panic!("{at} not in the schema"))
            .1
    }

    #[test]
    fn the_checked_in_crds_are_the_generated_ones() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        for dir in [
            "deploy/controller",
            "deploy/chart/aws-secrets-csi/controller",
        ] {
            for crd in crds() {
                let path = root.join(dir).join(file_name(&crd));
                let found = std::fs::read_to_string(&path).unwrap_or_default();
                assert!(
                    found == to_yaml(&crd),
                    "{} is not what `aws-secrets-csi crds` generates from \
                     crates/core/src/external/api.rs; regenerate it: {REGENERATE}",
                    path.display()
                );
            }
        }
    }

    #[test]
    fn the_schemas_are_structural() {
        for crd in crds() {
            let kind = &crd.spec.names.kind;
            let versions: Vec<_> = crd.spec.versions.iter().map(|v| &v.schema).collect();
            assert_eq!(versions[0], versions[1], "{kind}: v1beta1 is v1's schema");
            for (at, schema) in nodes(&crd) {
                let object = schema.as_object().unwrap();
                let int_or_string = schema["x-kubernetes-int-or-string"] == true;
                // Every node has a type (int-or-string has none), and no
                // keyword a structural schema forbids or a CRD cannot hold.
                assert!(
                    schema["type"].is_string() != int_or_string,
                    "{kind} {at}: {schema}"
                );
                for forbidden in [
                    "$ref",
                    "$defs",
                    "definitions",
                    "const",
                    "oneOf",
                    "anyOf",
                    "allOf",
                    "not",
                    "title",
                    "uniqueItems",
                ] {
                    assert!(!object.contains_key(forbidden), "{kind} {at}: {forbidden}");
                }
                // additionalProperties is a map's value schema, never beside
                // properties and never `false` (pruning drops what the schema
                // lacks).
                if let Some(additional) = object.get("additionalProperties") {
                    assert!(additional.is_object(), "{kind} {at}");
                    assert!(!object.contains_key("properties"), "{kind} {at}");
                }
                if schema["type"] == "object" && !object.contains_key("additionalProperties") {
                    assert!(
                        object.contains_key("properties") || at.ends_with(".metadata"),
                        "{kind} {at}: an object without fields would be pruned empty"
                    );
                }
                if let Some(values) = schema["enum"].as_array() {
                    assert_eq!(schema["type"], "string", "{kind} {at}");
                    // Not nullable: see tidy.
                    assert!(
                        values.iter().all(Value::is_string) && schema.get("nullable").is_none(),
                        "{kind} {at}: {values:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn enums_int_or_string_and_nullable_lists_are_kept() {
        let all = crds();
        let es = &all[0];
        let creation = node(es, ".spec.target.creationPolicy");
        assert_eq!(
            creation["enum"],
            json!(["Owner", "Orphan", "Merge", "None", "CreateOrMerge"])
        );
        assert!(creation.get("nullable").is_none());
        // Lists serde reads `null` as empty accept null.
        assert_eq!(node(es, ".spec.data")["nullable"], true);
        assert_eq!(node(es, ".spec.target.template.data")["nullable"], true);
        // ... and a required list does not.
        assert!(
            node(es, ".spec.target.template.templateFrom[].configMap.items")
                .get("nullable")
                .is_none()
        );
        assert_eq!(
            node(es, ".spec.data[]")["required"],
            json!(["remoteRef", "secretKey"])
        );
        for store in &all[1..3] {
            let refresh = node(store, ".spec.refreshInterval");
            assert_eq!(refresh["x-kubernetes-int-or-string"], true);
            assert_eq!(node(store, ".spec")["required"], json!(["provider"]));
            assert_eq!(
                node(store, ".spec.provider.aws.service")["enum"],
                json!(["SecretsManager", "ParameterStore", "CertificateManager"])
            );
        }
        let ces = &all[3];
        assert_eq!(
            node(ces, ".spec.externalSecretSpec.target.creationPolicy"),
            creation
        );
        assert_eq!(
            crd_scope(&all),
            ["Namespaced", "Namespaced", "Cluster", "Cluster"]
        );
    }

    fn crd_scope(all: &[CustomResourceDefinition]) -> Vec<&str> {
        all.iter().map(|c| c.spec.scope.as_str()).collect()
    }

    /// Every field serde reads `null` as empty (`deserialize_with =
    /// "nullable"`) says so in its schema: the attribute follows it.
    #[test]
    fn every_nullable_field_is_nullable_in_the_schema() {
        let source = include_str!("../../crates/core/src/external/api.rs");
        let mut pending = false;
        let (mut fields, mut marked) = (0, 0);
        for line in source.lines().map(str::trim) {
            if line.contains(r#"deserialize_with = "nullable""#) {
                pending = true;
                fields += 1;
            } else if pending && line.starts_with("pub ") {
                panic!(
                    "{line}: deserialize_with = \"nullable\" without #[schemars(extend(\"nullable\" = true))]"
                );
            } else if line == r#"#[schemars(extend("nullable" = true))]"# {
                assert!(
                    pending,
                    "a nullable mark on a field serde does not read null on"
                );
                pending = false;
                marked += 1;
            }
        }
        assert_eq!(fields, marked);
        assert!(fields > 20, "{fields}");
    }

    #[test]
    fn the_yaml_reads_back_as_the_crds() {
        let docs: Vec<CustomResourceDefinition> =
            serde_saphyr::from_str_multiple(&all_yaml()).unwrap();
        assert_eq!(docs, crds());
    }
}
