//! The External Secrets CRDs (`external-secrets.io`: ExternalSecret,
//! SecretStore, ClusterSecretStore, ClusterExternalSecret), generated from
//! the typed API the controller reads (`aws_secrets_csi_core::external::api`),
//! so what the API server validates and what the controller reads are one
//! definition. Pure: `aws-secrets-csi crds` prints them, and a test checks
//! that `deploy/controller/crd-*.yaml` and the chart's copies are this
//! output.
//!
//! The schemas are structural (the API server validates every field, prunes
//! the ones not in them, and `kubectl explain` describes them): schemars'
//! OpenAPI 3 output with subschemas inlined and kube's rewrites (`oneOf`
//! enums hoisted to `enum`, `additionalProperties: false` of
//! `deny_unknown_fields` dropped beside `properties`, `Option` as
//! `nullable`). v1 is stored; v1beta1 is served with the same schema (no
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
pub const REGENERATE: &str = "cargo run -q -- crds --dir deploy/controller --dir deploy/chart/aws-secrets-csi/controller";

/// The four CRDs, in the order they are printed.
pub fn crds() -> Vec<CustomResourceDefinition> {
    let ready = |field: &str| column_at(field, "string", r#".status.conditions[?(@.type=="Ready")]"#);
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

/// What schemars adds that a CRD schema has no use for (titles, the type
/// names of the root), recursively.
fn tidy(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            map.remove("title");
            map.remove("$schema");
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
    use super::*;

    #[test]
    fn dump() {
        println!("{}", all_yaml());
    }
}
