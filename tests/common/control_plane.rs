//! A real Kubernetes control plane for the tests (kube-apiserver, etcd and,
//! when built, kube-controller-manager's garbage collector), one per test
//! binary, started by tests/peers/control_plane.sh.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running control plane (one per test binary).
pub struct ControlPlane {
    child: Child,
    pub work: PathBuf,
    pub server: String,
    pub admin: PathBuf,
    pub bin: PathBuf,
}

pub fn peers_bin() -> PathBuf {
    if let Ok(dir) = std::env::var("K8S_PEERS_BIN") {
        return PathBuf::from(dir);
    }
    let out = Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/k8s-peers.sh"))
        .stderr(Stdio::inherit())
        .output()
        .expect("run scripts/k8s-peers.sh");
    assert!(out.status.success(), "scripts/k8s-peers.sh failed");
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

pub fn control_plane() -> &'static ControlPlane {
    static CP: std::sync::OnceLock<ControlPlane> = std::sync::OnceLock::new();
    CP.get_or_init(|| start(&[]))
}

/// A control plane a real node can join (tests/node.rs): with the DaemonSet,
/// service-account and root-CA controllers, and kube-scheduler.
pub fn control_plane_for_a_node() -> &'static ControlPlane {
    static CP: std::sync::OnceLock<ControlPlane> = std::sync::OnceLock::new();
    CP.get_or_init(|| start(&[("NODE_CONTROLLERS", "1")]))
}

fn start(env: &[(&str, &str)]) -> ControlPlane {
    let bin = peers_bin();
    let work = tempfile::Builder::new()
        .prefix("asc-k8s-")
        .tempdir()
        .unwrap()
        .keep();
    let mut child = Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/control_plane.sh"))
        .arg(&bin)
        .arg(&work)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the control plane");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let parts: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        parts.first(),
        Some(&"READY"),
        "control plane did not start: {line}"
    );
    ControlPlane {
        child,
        server: parts[1].to_owned(),
        admin: PathBuf::from(parts[2]),
        work,
        bin,
    }
}

/// helm: $HELM, else the one `go install` put in ~/go/bin, else PATH's.
pub fn helm() -> PathBuf {
    std::env::var("HELM")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            let in_gobin =
                PathBuf::from(std::env::var("HOME").unwrap_or_default()).join("go/bin/helm");
            if in_gobin.exists() {
                in_gobin
            } else {
                PathBuf::from("helm")
            }
        })
}

impl ControlPlane {
    /// A client with the admin's kubeconfig.
    pub async fn admin_client(&self) -> ::kube::Client {
        let config = ::kube::Config::from_custom_kubeconfig(
            ::kube::config::Kubeconfig::read_from(&self.admin).unwrap(),
            &Default::default(),
        )
        .await
        .unwrap();
        ::kube::Client::try_from(config).unwrap()
    }

    /// The processes of the control plane (etcd, kube-apiserver, and the
    /// controllers when asked for): the children of its script.
    pub fn processes(&self) -> Vec<u32> {
        let script = self.child.id();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return vec![];
        };
        entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                // The parent is the field after the state, after the name.
                std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .ok()
                    .and_then(|stat| {
                        let (_, rest) = stat.rsplit_once(')')?;
                        rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                    })
                    == Some(script)
            })
            .collect()
    }

    /// kubectl as the cluster admin; panics on failure.
    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> String {
        match self.try_kubectl(args, stdin) {
            Ok(out) => out,
            Err(e) => panic!("kubectl {args:?} failed: {e}"),
        }
    }

    /// kubectl as the cluster admin: its output, or its error output.
    pub fn try_kubectl(&self, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
        let mut cmd = Command::new(self.bin.join("kubectl"));
        cmd.arg("--kubeconfig").arg(&self.admin).args(args);
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        }
        let out = child.wait_with_output().unwrap();
        if out.status.success() {
            Ok(String::from_utf8(out.stdout).unwrap())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// A token of `service_account` in `namespace` (kubectl create token),
    /// with any further flags (`--audience`, `--bound-object-*`, ...).
    pub fn token(&self, namespace: &str, service_account: &str, flags: &[&str]) -> String {
        let mut args = vec!["create", "token", service_account, "-n", namespace];
        args.extend_from_slice(flags);
        self.kubectl(&args, None).trim().to_owned()
    }

    /// One object, as JSON.
    pub fn get(&self, kind: &str, name: &str, namespace: &str) -> serde_json::Value {
        serde_json::from_str(
            &self.kubectl(&["get", kind, name, "-n", namespace, "-o", "json"], None),
        )
        .unwrap()
    }

    /// One object once it exists and `check` holds (objects the driver
    /// writes after its reply, such as the pod status), waiting up to 20 s.
    pub async fn get_when(
        &self,
        kind: &str,
        name: &str,
        namespace: &str,
        check: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let mut found = serde_json::Value::Null;
        eventually(
            Duration::from_secs(20),
            &format!("{kind} {namespace}/{name}"),
            || match self.try_kubectl(&["get", kind, name, "-n", namespace, "-o", "json"], None) {
                Ok(text) => {
                    found = serde_json::from_str(&text).unwrap();
                    check(&found)
                }
                Err(_) => false,
            },
        )
        .await;
        found
    }

    /// A kubeconfig that authenticates with `token` at `server` (the API
    /// server's own address, or a relay in front of it).
    pub fn kubeconfig_with_token(&self, path: &Path, server: &str, token: &str) {
        std::fs::write(
            path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster: {{server: \"{server}\", certificate-authority: \"{}\"}}\nusers:\n- name: driver\n  user: {{token: \"{token}\"}}\ncontexts:\n- name: test\n  context: {{cluster: test, user: driver}}\ncurrent-context: test\n",
                self.work.join("certs/apiserver.crt").display()
            ),
        )
        .unwrap();
    }

    /// Each request of `user` in the audit log, once (the audit policy may
    /// log a request's stages): (resource, verb, the event). The resource is
    /// `resource/subresource`, or the path of one of the API server's own
    /// (issuer discovery); API discovery, which every user may read, is left
    /// out.
    fn requests_by(&self, user: &str) -> Vec<(String, String, serde_json::Value)> {
        let text = std::fs::read_to_string(self.work.join("audit.log")).unwrap_or_default();
        let mut seen = std::collections::HashSet::new();
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|e| e["user"]["username"] == user)
            // A watch is logged when it starts and again when it ends.
            .filter(|e| match e["auditID"].as_str() {
                Some(id) => seen.insert(id.to_owned()),
                None => true,
            })
            .filter_map(|e| {
                let path = e["requestURI"]
                    .as_str()
                    .map(|u| u.split('?').next().unwrap_or(u))
                    .filter(|p| !p.starts_with("/api") && !p.starts_with("/version"));
                let mut resource = match e["objectRef"]["resource"].as_str() {
                    Some(r) => r.to_owned(),
                    None => path?.to_owned(),
                };
                if let Some(sub) = e["objectRef"]["subresource"].as_str() {
                    resource = format!("{resource}/{sub}");
                }
                let verb = e["verb"].as_str()?.to_owned();
                Some((resource, verb, e))
            })
            .collect()
    }

    /// How many requests of `user` the audit log shows for `resource` (or
    /// a path of the API server's own) with `verb`.
    pub fn count_calls(&self, user: &str, resource: &str, verb: &str) -> usize {
        self.requests_by(user)
            .iter()
            .filter(|(r, v, _)| r == resource && v == verb)
            .count()
    }

    /// (resource, verb) of every request the audit log shows for `user`.
    pub fn calls_by(&self, user: &str) -> BTreeSet<(String, String)> {
        self.requests_by(user)
            .into_iter()
            .flat_map(|(resource, verb, e)| {
                // A server-side apply that created its object (201) needed
                // the create verb as well as patch.
                let created = verb == "patch" && e["responseStatus"]["code"] == 201;
                std::iter::once((resource.clone(), verb))
                    .chain(created.then(|| (resource, "create".to_owned())))
            })
            .collect()
    }
}

/// Waits until `check` holds, up to `limit`, and says how long it took;
/// panics with `what` otherwise.
pub async fn eventually(limit: Duration, what: &str, mut check: impl FnMut() -> bool) -> Duration {
    let started = std::time::Instant::now();
    while !check() {
        assert!(
            started.elapsed() < limit,
            "timed out ({limit:?}) waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    started.elapsed()
}

/// The CRDs of deploy/crds (SecretProviderClass and its pod status),
/// applied once per test binary (its tests share one API server).
pub fn install_spc_crds(cp: &ControlPlane) {
    static DONE: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        let crds = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/crds/");
        cp.kubectl(&["apply", "-f", crds.to_str().unwrap()], None);
        cp.kubectl(
            &[
                "wait",
                "--for=condition=Established",
                "crd/secretproviderclasses.secrets-store.csi.x-k8s.io",
                "--timeout=30s",
            ],
            None,
        );
    });
}

/// The `sts.amazonaws.com` token kubelet would get for pod `name` (uid
/// `uid`) of `service_account`, bound to the pod, valid an hour.
pub fn pod_token(
    cp: &ControlPlane,
    namespace: &str,
    name: &str,
    uid: &str,
    service_account: &str,
) -> String {
    cp.token(
        namespace,
        service_account,
        &[
            "--audience",
            "sts.amazonaws.com",
            "--bound-object-kind",
            "Pod",
            "--bound-object-name",
            name,
            "--bound-object-uid",
            uid,
            "--duration",
            "1h",
        ],
    )
}
