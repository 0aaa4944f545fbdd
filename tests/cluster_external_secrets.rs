//! ClusterExternalSecrets against a real kube-apiserver (and, when built,
//! kube-controller-manager's garbage collector) with the controller running
//! as its own ServiceAccount and moto as AWS: namespaces selected by label
//! get their ExternalSecret (and its Secret syncs), a namespace relabelled
//! out loses it, a foreign ExternalSecret of the same name is a failed
//! namespace and stays as it was, force-sync is mirrored, a rename replaces
//! them, deleting the ClusterExternalSecret takes them along; nothing is
//! applied again when nothing changed; and the controller used exactly
//! what its RBAC grants for all this. Needs root (moto, the control plane)
//! and the binaries of scripts/k8s-peers.sh.

mod common;

use std::path::Path;
use std::time::Duration;

use common::control_plane::*;
use common::controller::*;
use common::*;
use serde_json::Value;

const USER: &str = "system:serviceaccount:aws-secrets-csi:aws-secrets-csi-controller";

/// A schemaless ClusterExternalSecret CRD (v1, cluster-scoped, with a
/// status subresource), for when deploy/controller has none yet.
const MINIMAL_CRD: &str = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: clusterexternalsecrets.external-secrets.io}
spec:
  group: external-secrets.io
  scope: Cluster
  names: {kind: ClusterExternalSecret, listKind: ClusterExternalSecretList, plural: clusterexternalsecrets, singular: clusterexternalsecret, shortNames: [ces]}
  versions:
    - name: v1
      served: true
      storage: true
      subresources: {status: {}}
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec: {type: object, x-kubernetes-preserve-unknown-fields: true}
            status: {type: object, x-kubernetes-preserve-unknown-fields: true}
"#;

fn install_ces_crd(cp: &ControlPlane) {
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/controller/crd-clusterexternalsecrets.yaml");
    if file.exists() {
        cp.kubectl(&["apply", "-f", file.to_str().unwrap()], None);
    } else {
        cp.kubectl(&["apply", "-f", "-"], Some(MINIMAL_CRD));
    }
    cp.kubectl(
        &[
            "wait",
            "--for=condition=Established",
            "crd/clusterexternalsecrets.external-secrets.io",
            "--timeout=30s",
        ],
        None,
    );
}

fn json_of(cp: &ControlPlane, args: &[&str]) -> Option<Value> {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    cp.try_kubectl(&all, None)
        .ok()
        .map(|t| serde_json::from_str(&t).unwrap())
}

fn es(cp: &ControlPlane, ns: &str, name: &str) -> Option<Value> {
    json_of(cp, &["get", "externalsecret", name, "-n", ns])
}

fn ces(cp: &ControlPlane) -> Value {
    json_of(cp, &["get", "clusterexternalsecret", "shared"]).expect("the ClusterExternalSecret")
}

fn secret_value(cp: &ControlPlane, ns: &str, name: &str, key: &str) -> Option<String> {
    use base64::Engine;
    let s = json_of(cp, &["get", "secret", name, "-n", ns])?;
    let b = s["data"][key].as_str()?;
    String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b).ok()?).ok()
}

fn ready(ces: &Value) -> (String, String) {
    let c = ces["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
        .cloned()
        .unwrap_or(Value::Null);
    (
        c["status"].as_str().unwrap_or_default().to_owned(),
        c["message"].as_str().unwrap_or_default().to_owned(),
    )
}

fn provisioned(ces: &Value) -> Vec<String> {
    ces["status"]["provisionedNamespaces"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

/// Whether the ExternalSecret is controlled by the ClusterExternalSecret
/// `uid`.
fn controlled_by(es: &Value, uid: &str) -> bool {
    es["metadata"]["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|r| {
            r["kind"] == "ClusterExternalSecret"
                && r["name"] == "shared"
                && r["uid"] == uid
                && r["controller"] == true
        })
}

fn label(cp: &ControlPlane, ns: &str, change: &str) {
    cp.kubectl(&["label", "namespace", ns, change, "--overwrite"], None);
}

#[tokio::test(flavor = "multi_thread")]
async fn cluster_external_secrets_provision_the_selected_namespaces() {
    require_root();
    let cp = control_plane();
    install_controller(cp, "ces-a");
    install_ces_crd(cp);
    moto().create_secret("ces/db", "pw-1").await;

    // ces-a and ces-b are team a; ces-c is not, and holds an ExternalSecret
    // of the same name of its own.
    let mut manifests = String::new();
    for (ns, team) in [("ces-a", "a"), ("ces-b", "a"), ("ces-c", "")] {
        let labels = if team.is_empty() {
            String::new()
        } else {
            format!(", labels: {{team: {team}}}")
        };
        manifests += &format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}{labels}}}\n---\n\
             apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: reader\n  namespace: {ns}\n  annotations: {{eks.amazonaws.com/role-arn: \"{READER_ROLE}\"}}\n---\n\
             apiVersion: external-secrets.io/v1\nkind: SecretStore\nmetadata: {{name: store, namespace: {ns}}}\nspec:\n  provider: {{aws: {{service: SecretsManager, region: us-east-1, auth: {{jwt: {{serviceAccountRef: {{name: reader}}}}}}}}}}\n---\n"
        );
    }
    manifests += "apiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {name: shared, namespace: ces-c, labels: {mine: \"yes\"}}\nspec:\n  refreshInterval: 1h\n  secretStoreRef: {name: store}\n  target: {name: hand-made}\n  data: [{secretKey: password, remoteRef: {key: ces/db}}]\n";
    cp.kubectl(&["apply", "-f", "-"], Some(&manifests));

    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = controller_kubeconfig(cp, dir.path());
    let _controller = ControllerProcess::start(dir.path(), "ces", &kubeconfig);

    cp.kubectl(
        &["apply", "-f", "-"],
        Some(
            "apiVersion: external-secrets.io/v1\nkind: ClusterExternalSecret\nmetadata: {name: shared}\nspec:\n  refreshTime: 1h\n  namespaceSelectors: [{matchLabels: {team: a}}]\n  externalSecretMetadata: {labels: {from: ces}, annotations: {note: kept}}\n  externalSecretSpec:\n    refreshInterval: 1h\n    secretStoreRef: {name: store}\n    target: {name: db}\n    data: [{secretKey: password, remoteRef: {key: ces/db}}]\n",
        ),
    );
    let uid = ces(cp)["metadata"]["uid"].as_str().unwrap().to_owned();

    // Both team-a namespaces get theirs, and their Secrets sync.
    eventually(
        Duration::from_secs(60),
        "the ExternalSecrets and their Secrets",
        || {
            ["ces-a", "ces-b"]
                .iter()
                .all(|ns| secret_value(cp, ns, "db", "password").as_deref() == Some("pw-1"))
        },
    )
    .await;
    for ns in ["ces-a", "ces-b"] {
        let e = es(cp, ns, "shared").expect("provisioned");
        assert!(controlled_by(&e, &uid), "{e}");
        assert_eq!(e["metadata"]["labels"]["from"], "ces");
        assert_eq!(e["metadata"]["annotations"]["note"], "kept");
        assert_eq!(e["spec"]["target"]["name"], "db");
    }
    eventually(Duration::from_secs(30), "the status", || {
        let c = ces(cp);
        provisioned(&c) == ["ces-a", "ces-b"]
            && ready(&c).0 == "True"
            && c["status"]["externalSecretName"] == "shared"
    })
    .await;
    assert!(es(cp, "ces-c", "shared").is_some_and(|e| !controlled_by(&e, &uid)));

    // Nothing is applied again while nothing changed: a namespace event
    // makes it look, and it writes nothing.
    let patches = || cp.count_calls(USER, "externalsecrets", "patch");
    let status_patches = || cp.count_calls(USER, "clusterexternalsecrets/status", "patch");
    let before = (patches(), status_patches());
    label(cp, "ces-a", "unrelated=x");
    cp.kubectl(
        &["annotate", "clusterexternalsecret", "shared", "unrelated=x"],
        None,
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        (patches(), status_patches()),
        before,
        "applied again with nothing changed"
    );

    // Relabelled out: its ExternalSecret goes.
    label(cp, "ces-b", "team=b");
    eventually(
        Duration::from_secs(30),
        "ces-b's ExternalSecret deleted",
        || es(cp, "ces-b", "shared").is_none(),
    )
    .await;
    eventually(Duration::from_secs(30), "ces-b out of the status", || {
        provisioned(&ces(cp)) == ["ces-a"]
    })
    .await;

    // A foreign ExternalSecret of that name: a failed namespace, left as
    // it was.
    label(cp, "ces-c", "team=a");
    eventually(Duration::from_secs(30), "ces-c failed", || {
        let c = ces(cp);
        c["status"]["failedNamespaces"]
            == serde_json::json!([{"namespace": "ces-c", "reason": "external secret already exists in namespace"}])
            && ready(&c) == ("False".to_owned(), "one or more namespaces failed".to_owned())
            && provisioned(&c) == ["ces-a"]
    })
    .await;
    let foreign = es(cp, "ces-c", "shared").expect("still there");
    assert!(
        foreign["metadata"]["ownerReferences"].is_null(),
        "{foreign}"
    );
    assert_eq!(
        foreign["metadata"]["labels"],
        serde_json::json!({"mine": "yes"})
    );
    assert_eq!(foreign["spec"]["target"]["name"], "hand-made");

    // force-sync is mirrored, and taken away with it.
    cp.kubectl(
        &[
            "annotate",
            "clusterexternalsecret",
            "shared",
            "external-secrets.io/force-sync=1700000000",
        ],
        None,
    );
    eventually(Duration::from_secs(30), "force-sync mirrored", || {
        es(cp, "ces-a", "shared").is_some_and(|e| {
            e["metadata"]["annotations"]["external-secrets.io/force-sync"] == "1700000000"
        })
    })
    .await;
    cp.kubectl(
        &[
            "annotate",
            "clusterexternalsecret",
            "shared",
            "external-secrets.io/force-sync-",
        ],
        None,
    );
    eventually(Duration::from_secs(30), "force-sync pruned", || {
        es(cp, "ces-a", "shared").is_some_and(|e| {
            e["metadata"]["annotations"]
                .get("external-secrets.io/force-sync")
                .is_none()
                && e["metadata"]["annotations"]["note"] == "kept"
        })
    })
    .await;

    // Renamed: the old ones (its own) go, the new ones come, and ces-c,
    // free of the name, is provisioned; its foreign one stays.
    cp.kubectl(
        &[
            "patch",
            "clusterexternalsecret",
            "shared",
            "--type=merge",
            "-p",
            r#"{"spec":{"externalSecretName":"renamed"}}"#,
        ],
        None,
    );
    eventually(Duration::from_secs(30), "the rename", || {
        let c = ces(cp);
        es(cp, "ces-a", "shared").is_none()
            && es(cp, "ces-a", "renamed").is_some_and(|e| controlled_by(&e, &uid))
            && es(cp, "ces-c", "renamed").is_some_and(|e| controlled_by(&e, &uid))
            && c["status"]["externalSecretName"] == "renamed"
            && provisioned(&c) == ["ces-a", "ces-c"]
            && c["status"]["failedNamespaces"]
                .as_array()
                .is_none_or(|f| f.is_empty())
            && ready(&c).0 == "True"
    })
    .await;
    assert!(es(cp, "ces-c", "shared").is_some_and(|e| !controlled_by(&e, &uid)));

    // Deleted: its ExternalSecrets are its dependents.
    cp.kubectl(&["delete", "clusterexternalsecret", "shared"], None);
    if cp.bin.join("kube-controller-manager").exists() {
        eventually(
            Duration::from_secs(90),
            "the garbage collection of its ExternalSecrets",
            || {
                ["ces-a", "ces-c"]
                    .iter()
                    .all(|ns| es(cp, ns, "renamed").is_none())
            },
        )
        .await;
    } else {
        // No garbage collector here: they name their owner.
        for ns in ["ces-a", "ces-c"] {
            assert!(es(cp, ns, "renamed").is_some_and(|e| controlled_by(&e, &uid)));
        }
    }
    assert!(es(cp, "ces-c", "shared").is_some(), "the foreign one stays");

    // Least privilege: everything used is granted, and everything granted
    // for ClusterExternalSecrets was used.
    let used = cp.calls_by(USER);
    let granted = granted_by_all_roles("controller/rbac.yaml");
    let missing: Vec<_> = used.difference(&granted).collect();
    assert!(missing.is_empty(), "used but not granted: {missing:?}");
    let unused: Vec<_> = cluster_external_secret_grants()
        .into_iter()
        .filter(|g| !used.contains(g))
        .collect();
    assert!(unused.is_empty(), "granted but never used: {unused:?}");
    assert!(
        cluster_external_secret_grants().is_subset(&granted),
        "deploy/controller/rbac.yaml grants what ClusterExternalSecrets use"
    );
}
