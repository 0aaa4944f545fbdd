//! The External Secrets controller as the tests run it: its CRDs and RBAC
//! installed, a kubeconfig of its ServiceAccount, and the process
//! (moved from tests/kubernetes.rs unchanged).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::control_plane::ControlPlane;
use super::{REGION, moto};

/// The External Secrets CRDs (established), the namespace of the
/// controller with its RBAC, and `namespace` for the test's objects.
pub fn install_controller(cp: &ControlPlane, namespace: &str) {
    static CRDS: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/controller");
    CRDS.get_or_init(|| {
        for crd in [
            "crd-externalsecrets.yaml",
            "crd-secretstores.yaml",
            "crd-clustersecretstores.yaml",
        ] {
            cp.kubectl(&["apply", "-f", deploy.join(crd).to_str().unwrap()], None);
        }
        cp.kubectl(
            &[
                "wait",
                "--for=condition=Established",
                "crd/externalsecrets.external-secrets.io",
                "crd/secretstores.external-secrets.io",
                "crd/clustersecretstores.external-secrets.io",
                "--timeout=30s",
            ],
            None,
        );
    });
    // Tests running at once apply the same Namespace: a create that
    // lost the race to another is AlreadyExists, which is as good.
    let namespaces = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: aws-secrets-csi}}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: {namespace}}}\n"
    );
    if let Err(e) = cp.try_kubectl(&["apply", "-f", "-"], Some(&namespaces)) {
        assert!(e.contains("AlreadyExists"), "kubectl apply namespaces: {e}");
        cp.kubectl(&["apply", "-f", "-"], Some(&namespaces));
    }
    cp.kubectl(
        &["apply", "-f", deploy.join("rbac.yaml").to_str().unwrap()],
        None,
    );
}

/// A kubeconfig with a token of the controller's ServiceAccount.
pub fn controller_kubeconfig(cp: &ControlPlane, dir: &Path) -> PathBuf {
    let token = cp.token(
        "aws-secrets-csi",
        "aws-secrets-csi-controller",
        &["--duration", "1h"],
    );
    let kubeconfig = dir.join("controller.kubeconfig");
    cp.kubeconfig_with_token(&kubeconfig, &cp.server, &token);
    kubeconfig
}

/// One `aws-secrets-csi controller` process, stopped (SIGKILL) when dropped;
/// its log is checked for tokens then.
pub struct ControllerProcess {
    pub child: Child,
    pub log: PathBuf,
}

impl ControllerProcess {
    pub fn start(dir: &Path, identity: &str, kubeconfig: &Path) -> Self {
        Self::start_with(dir, identity, kubeconfig, &[])
    }

    /// With more arguments (a test of its own passes its own Lease and
    /// controller class, so that tests running at once do not meet).
    pub fn start_with(dir: &Path, identity: &str, kubeconfig: &Path, extra: &[&str]) -> Self {
        Self::start_against(dir, identity, kubeconfig, extra, &moto().endpoint)
    }

    /// Against another AWS endpoint.
    pub fn start_against(
        dir: &Path,
        identity: &str,
        kubeconfig: &Path,
        extra: &[&str],
        aws: &str,
    ) -> Self {
        Self::start_with_env(dir, identity, kubeconfig, extra, aws, &[])
    }

    /// With more environment (e.g. the controller's own AWS keys).
    pub fn start_with_env(
        dir: &Path,
        identity: &str,
        kubeconfig: &Path,
        extra: &[&str],
        aws: &str,
        env: &[(&str, &str)],
    ) -> Self {
        let log = dir.join(format!("controller-{identity}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_aws-secrets-csi"))
            .args([
                "controller",
                "--identity",
                identity,
                "--lease-namespace",
                "aws-secrets-csi",
                "--lease-duration",
                "3s",
                // The tests' intervals are seconds long.
                "--min-refresh-interval",
                "1s",
            ])
            .args(extra)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("KUBECONFIG", kubeconfig)
            .env("AWS_ENDPOINT_URL", aws)
            .env("AWS_REGION", REGION)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("RUST_LOG", "debug")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start the controller");
        ControllerProcess { child, log }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        self.kill();
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        if !std::thread::panicking() {
            for marker in ["eyJhbGci", "eyJ-", "FQoGZXIvYXdzE"] {
                assert!(
                    !log.contains(marker),
                    "the controller logged a token ({marker})"
                );
            }
        }
    }
}

pub fn rules_of(role: &serde_json::Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for rule in role["rules"].as_array().unwrap() {
        // A path of the API server's own (issuer discovery) stands as itself.
        let resources = rule["resources"]
            .as_array()
            .or(rule["nonResourceURLs"].as_array())
            .unwrap();
        for r in resources {
            for v in rule["verbs"].as_array().unwrap() {
                out.insert((
                    r.as_str().unwrap().to_owned(),
                    v.as_str().unwrap().to_owned(),
                ));
            }
        }
    }
    out
}

/// (resource, verb) pairs every Role and ClusterRole of a deploy/ file grants.
pub fn granted_by_all_roles(file: &str) -> BTreeSet<(String, String)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(file);
    let docs: Vec<serde_json::Value> =
        serde_saphyr::from_str_multiple(&std::fs::read_to_string(path).unwrap()).unwrap();
    docs.iter()
        .filter(|d| d["kind"] == "ClusterRole" || d["kind"] == "Role")
        .flat_map(rules_of)
        .collect()
}

/// What the controller's RBAC grants for ClusterExternalSecrets alone:
/// used only where the cluster serves that kind (proven by
/// tests/cluster_external_secrets.rs, not by the walkthrough, whose
/// cluster has no ClusterExternalSecret CRD).
/// Grants of the controller that tests other than the walkthrough
/// exercise (`the_controller_follows_external_secrets_semantics`): deleting
/// a renamed target's Secret, a templateFrom ConfigMap, a namespace's
/// labels for ClusterSecretStore conditions. That test checks they were
/// used.
pub fn semantics_grants() -> BTreeSet<(String, String)> {
    [
        ("secrets", "delete"),
        ("configmaps", "get"),
        ("namespaces", "get"),
    ]
    .into_iter()
    .map(|(r, v)| (r.to_owned(), v.to_owned()))
    .collect()
}

/// Grants of the controller for restarts of opted-in workloads, used only
/// when a signal comes (tests/restart_on_rotation.rs checks each was
/// used); the watch of SecretRotated Events (events list, watch) runs in
/// every leader, so the walkthrough proves it.
pub fn restart_grants() -> BTreeSet<(String, String)> {
    [
        ("pods", "get"),
        ("replicasets", "get"),
        ("deployments", "get"),
        ("deployments", "list"),
        ("deployments", "patch"),
        ("statefulsets", "get"),
        ("statefulsets", "list"),
        ("statefulsets", "patch"),
        ("daemonsets", "get"),
        ("daemonsets", "list"),
        ("daemonsets", "patch"),
    ]
    .into_iter()
    .map(|(r, v)| (r.to_owned(), v.to_owned()))
    .collect()
}

/// Grants of the controller for the record of AWS changes it keeps for the
/// nodes, used only with `--events-queue` (tests/aws_events.rs checks each
/// was used).
pub fn events_grants() -> BTreeSet<(String, String)> {
    [
        ("configmaps", "create"),
        ("configmaps", "get"),
        ("configmaps", "update"),
    ]
    .into_iter()
    .map(|(r, v)| (r.to_owned(), v.to_owned()))
    .collect()
}

pub fn cluster_external_secret_grants() -> BTreeSet<(String, String)> {
    [
        ("clusterexternalsecrets", "list"),
        ("clusterexternalsecrets", "watch"),
        ("clusterexternalsecrets/status", "patch"),
        ("namespaces", "list"),
        ("namespaces", "watch"),
        ("externalsecrets", "get"),
        ("externalsecrets", "create"),
        ("externalsecrets", "patch"),
        ("externalsecrets", "delete"),
    ]
    .into_iter()
    .map(|(r, v)| (r.to_owned(), v.to_owned()))
    .collect()
}
