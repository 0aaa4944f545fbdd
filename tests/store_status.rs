//! The status of the stores the controller serves, against a real
//! kube-apiserver with the controller running as its own ServiceAccount
//! and moto as AWS, as External Secrets Operator's store controller writes
//! it (`pkg/controllers/secretstore/common.go`): a valid SecretStore and
//! ClusterSecretStore are Ready=True (`Valid`, `store validated`,
//! capabilities ReadWrite); a store the controller refuses is Ready=False
//! (`InvalidProviderConfig`) with the field named, its ExternalSecrets stop
//! at the flood gate, and once fixed it flips to True and they sync; a
//! store of another controller class is not touched; a store whose verdict
//! does not change is not written again (its refreshInterval of 1 s
//! re-validates it meanwhile); and the controller used exactly what its
//! RBAC grants. Needs root (moto, the control plane) and the binaries of
//! scripts/k8s-peers.sh.

mod common;

use std::time::Duration;

use common::control_plane::*;
use common::controller::*;
use common::*;
use serde_json::Value;

const USER: &str = "system:serviceaccount:aws-secrets-csi:aws-secrets-csi-controller";
const NS: &str = "store-status";
const CLASS: &str = "store-status";

fn json_of(cp: &ControlPlane, args: &[&str]) -> Option<Value> {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    cp.try_kubectl(&all, None)
        .ok()
        .map(|t| serde_json::from_str(&t).unwrap())
}

fn store(cp: &ControlPlane, name: &str) -> Value {
    json_of(cp, &["get", "secretstore", name, "-n", NS]).expect("the SecretStore")
}

fn cluster_store(cp: &ControlPlane, name: &str) -> Value {
    json_of(cp, &["get", "clustersecretstore", name]).expect("the ClusterSecretStore")
}

/// The Ready condition (Null when there is none).
fn ready(object: &Value) -> Value {
    object["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
        .cloned()
        .unwrap_or(Value::Null)
}

fn secret_value(cp: &ControlPlane, name: &str, key: &str) -> Option<String> {
    use base64::Engine;
    let s = json_of(cp, &["get", "secret", name, "-n", NS])?;
    let b = s["data"][key].as_str()?;
    String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b).ok()?).ok()
}

fn rv(object: &Value) -> String {
    object["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn patch_store(cp: &ControlPlane, name: &str, patch: &str) {
    cp.kubectl(
        &[
            "patch",
            "secretstore",
            name,
            "-n",
            NS,
            "--type=merge",
            "-p",
            patch,
        ],
        None,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn stores_get_their_status_as_external_secrets_writes_it() {
    require_root();
    let cp = control_plane();
    install_controller(cp, NS);
    moto().create_secret("store-status/db", "pw-1").await;

    let jwt =
        |sa_ns: &str| format!("auth: {{jwt: {{serviceAccountRef: {{name: reader{sa_ns}}}}}}}");
    let store_yaml = |kind: &str, name: &str, class: &str, extra: &str, auth: &str| {
        let ns = if kind == "SecretStore" {
            format!(", namespace: {NS}")
        } else {
            String::new()
        };
        format!(
            "apiVersion: external-secrets.io/v1\nkind: {kind}\nmetadata: {{name: {name}{ns}}}\nspec:\n  controller: {class}\n  provider: {{aws: {{service: SecretsManager, region: us-east-1, {auth}{extra}}}}}\n---\n"
        )
    };
    let mut manifests = format!(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: reader\n  namespace: {NS}\n  annotations: {{eks.amazonaws.com/role-arn: \"{READER_ROLE}\"}}\n---\n"
    );
    manifests += &store_yaml("SecretStore", "good", CLASS, "", &jwt(""));
    manifests += &store_yaml(
        "ClusterSecretStore",
        "store-status-cluster",
        CLASS,
        "",
        &jwt(&format!(", namespace: {NS}")),
    );
    // A role that is no IAM role ARN: refused by the controller (the API
    // server's schema takes any string).
    manifests += &store_yaml("SecretStore", "bad", CLASS, ", role: not-a-role", &jwt(""));
    manifests += &store_yaml("SecretStore", "theirs", "someone-else", "", &jwt(""));
    manifests += &format!(
        "apiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {{name: from-bad, namespace: {NS}}}\nspec:\n  refreshInterval: 1h\n  secretStoreRef: {{name: bad}}\n  target: {{name: from-bad}}\n  data: [{{secretKey: password, remoteRef: {{key: store-status/db}}}}]\n"
    );
    cp.kubectl(&["apply", "-f", "-"], Some(&manifests));
    let theirs_before = store(cp, "theirs");

    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = controller_kubeconfig(cp, dir.path());
    let _controller = ControllerProcess::start_with(
        dir.path(),
        "store-status",
        &kubeconfig,
        &["--controller-class", CLASS, "--lease-name", "store-status"],
    );

    // Valid: Ready=True with ESO's reason and message, capabilities
    // ReadWrite; for both kinds.
    let valid = |s: &Value| {
        let c = ready(s);
        c["status"] == "True"
            && c["reason"] == "Valid"
            && c["message"] == "store validated"
            && c["lastTransitionTime"].is_string()
            && s["status"]["capabilities"] == "ReadWrite"
    };
    eventually(Duration::from_secs(30), "the SecretStore Ready", || {
        valid(&store(cp, "good"))
    })
    .await;
    eventually(
        Duration::from_secs(30),
        "the ClusterSecretStore Ready",
        || valid(&cluster_store(cp, "store-status-cluster")),
    )
    .await;

    // kubectl's columns (the CRD's, as ESO's): STATUS, CAPABILITIES, READY.
    let table = cp.kubectl(&["get", "secretstore", "good", "-n", NS], None);
    let (head, row) = table.trim().split_once('\n').expect("a header and a row");
    let columns: Vec<&str> = head.split_whitespace().collect();
    assert_eq!(columns, ["NAME", "AGE", "STATUS", "CAPABILITIES", "READY"]);
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[2..], ["Valid", "ReadWrite", "True"], "{table}");

    // Refused: Ready=False naming the field, and its ExternalSecret stops
    // at the flood gate with the store's message.
    eventually(
        Duration::from_secs(30),
        "the refused store not Ready",
        || ready(&store(cp, "bad"))["status"] == "False",
    )
    .await;
    let refused = ready(&store(cp, "bad"));
    assert_eq!(refused["reason"], "InvalidProviderConfig", "{refused}");
    let message = refused["message"].as_str().unwrap();
    assert!(
        message.starts_with("unable to create client: spec.provider.aws.role: ")
            && message.contains("\"not-a-role\" is not an IAM role ARN"),
        "{message}"
    );
    assert!(store(cp, "bad")["status"]["capabilities"].is_null());
    let es_message = || {
        let es = json_of(cp, &["get", "externalsecret", "from-bad", "-n", NS]).unwrap();
        let c = ready(&es);
        (c["status"].as_str() == Some("False"))
            .then(|| c["message"].as_str().unwrap_or_default().to_owned())
    };
    eventually(Duration::from_secs(30), "the ExternalSecret gated", || {
        es_message().is_some_and(|m| m.contains("SecretStore store-status/bad is not ready"))
    })
    .await;
    assert!(es_message().unwrap().contains("spec.provider.aws.role"));
    assert_eq!(secret_value(cp, "from-bad", "password"), None);

    // Another cause, still not ready: the message follows, the transition
    // time stays.
    let since = refused["lastTransitionTime"].clone();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    patch_store(
        cp,
        "bad",
        r#"{"spec":{"provider":{"aws":{"role":"also-not-a-role"}}}}"#,
    );
    eventually(Duration::from_secs(30), "the new cause", || {
        ready(&store(cp, "bad"))["message"]
            .as_str()
            .is_some_and(|m| m.contains("also-not-a-role"))
    })
    .await;
    assert_eq!(ready(&store(cp, "bad"))["lastTransitionTime"], since);

    // Not ours: never written.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let theirs = store(cp, "theirs");
    assert!(theirs["status"].is_null(), "{theirs}");
    assert_eq!(rv(&theirs), rv(&theirs_before));

    // Unchanged: not written again, while an event (a label) and the
    // store's own refreshInterval of 1 s make it look again.
    patch_store(cp, "good", r#"{"spec":{"refreshInterval":1}}"#);
    cp.kubectl(
        &["label", "secretstore", "good", "-n", NS, "looked=again"],
        None,
    );
    let status_patches = || cp.count_calls(USER, "secretstores/status", "patch");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (before, version) = (status_patches(), rv(&store(cp, "good")));
    let good_since = ready(&store(cp, "good"))["lastTransitionTime"].clone();
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        rv(&store(cp, "good")),
        version,
        "the store was written again"
    );
    assert_eq!(
        status_patches(),
        before,
        "a status patch with nothing changed"
    );
    assert_eq!(ready(&store(cp, "good"))["lastTransitionTime"], good_since);

    // Fixed: Ready flips to True at once (a new transition time), and the
    // ExternalSecret it held back syncs.
    patch_store(cp, "bad", r#"{"spec":{"provider":{"aws":{"role":null}}}}"#);
    let took = eventually(Duration::from_secs(30), "the fixed store Ready", || {
        valid(&store(cp, "bad"))
    })
    .await;
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert_ne!(ready(&store(cp, "bad"))["lastTransitionTime"], since);
    eventually(Duration::from_secs(30), "the ExternalSecret synced", || {
        secret_value(cp, "from-bad", "password").as_deref() == Some("pw-1")
    })
    .await;

    // Least privilege: the status writes are granted, and were made.
    let used = cp.calls_by(USER);
    let granted = granted_by_all_roles("controller/rbac.yaml");
    let missing: Vec<_> = used.difference(&granted).collect();
    assert!(missing.is_empty(), "used but not granted: {missing:?}");
    for resource in ["secretstores/status", "clustersecretstores/status"] {
        assert!(
            used.contains(&(resource.to_owned(), "patch".to_owned())),
            "{resource} never patched: {used:?}"
        );
    }
    // Validation is pure: no store's status was read one by one.
    assert_eq!(cp.count_calls(USER, "secretstores", "get"), 0);
}
