//! A real node: kubelet (v1.36, built from Go modules) with Debian's
//! containerd and runc runs the driver from its own image, installed with
//! `helm install` from deploy/chart; pods read, rotate and lose their
//! secrets through kubelet's own calls. Nothing here plays kubelet.
//!
//! Needs root (containerd, mounts, an address on lo), containerd and runc
//! (scripts/test.sh installs them), and the peers of scripts/k8s-peers.sh.
//! tests/peers/node.sh starts the node; scripts/node-images.sh makes the
//! pause and busybox images, scripts/image.sh the driver's (here from the
//! test build of the binary, to spare CI a release build).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::control_plane::*;
use common::*;

const NODE: &str = "node-1";
const DRIVER: &str = "secrets-store.aws-secrets-csi.io";

/// The node of tests/peers/node.sh; stopped (and everything it made
/// removed) when the test binary ends.
struct Node {
    child: Child,
    work: PathBuf,
    kubelet_root: PathBuf,
}

impl Node {
    fn start(cp: &ControlPlane, images: &[PathBuf]) -> Node {
        let work = tempfile::Builder::new()
            .prefix("asc-node-")
            .tempdir()
            .unwrap()
            .keep();
        let mut child = Command::new("bash")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/node.sh"))
            .arg(&cp.bin)
            .arg(&work)
            .arg(&cp.admin)
            .arg(NODE)
            .args(images)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start tests/peers/node.sh");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let parts: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            parts.first(),
            Some(&"READY"),
            "the node did not start: {line}"
        );
        Node {
            child,
            kubelet_root: PathBuf::from(parts[1]),
            work,
        }
    }

    /// Everything the container `container` of pod `namespace/pod` wrote,
    /// all its restarts included (kubelet's own log files).
    fn log(&self, namespace: &str, pod: &str, container: &str) -> String {
        self.logs_of(&format!("{namespace}_{pod}_"), container)
    }

    /// The driver's log, of whichever pod of the DaemonSet.
    fn driver_log(&self) -> String {
        self.logs_of("aws-secrets-csi_aws-secrets-csi-", "driver")
    }

    fn logs_of(&self, prefix: &str, container: &str) -> String {
        let mut out = String::new();
        for dir in std::fs::read_dir(self.work.join("pod-logs"))
            .unwrap()
            .flatten()
        {
            if !dir.file_name().to_string_lossy().starts_with(prefix) {
                continue;
            }
            let mut files: Vec<PathBuf> = std::fs::read_dir(dir.path().join(container))
                .map(|d| d.flatten().map(|e| e.path()).collect())
                .unwrap_or_default();
            files.sort();
            for f in files {
                out.push_str(&std::fs::read_to_string(f).unwrap_or_default());
            }
        }
        out
    }

    /// The first NodePublishVolume kubelet sent for pod `uid`, as the
    /// driver logs it at debug level (keys only, never values).
    fn publish_request_of(&self, uid: &str) -> LoggedRequest {
        let log = self.driver_log();
        let line = log
            .lines()
            .find(|l| l.contains("NodePublishVolume") && l.contains(uid))
            .unwrap_or_else(|| panic!("no NodePublishVolume for {uid} in\n{log}"));
        // kubelet's log line: "<time> <stream> <tag> <the driver's JSON>".
        let json = line.splitn(4, ' ').nth(3).unwrap_or_default();
        let line: serde_json::Value = serde_json::from_str(json).unwrap();
        let list = |field: &str| -> Vec<String> {
            serde_json::from_str(line[field].as_str().unwrap_or("[]")).unwrap()
        };
        LoggedRequest {
            context_keys: list("context_keys"),
            secret_keys: list("secret_keys"),
            line,
        }
    }

    fn restart_kubelet(&self) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGUSR1,
        )
        .unwrap();
    }

    /// The host PID of the driver serving this node's kubelet directory.
    fn driver_pid(&self) -> Option<u32> {
        let wanted = format!("--kubelet-dir={}", self.kubelet_root.display());
        std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            let ours =
                args.first()?.ends_with(b"aws-secrets-csi") && args.contains(&wanted.as_bytes());
            ours.then_some(pid)
        })
    }
}

/// What the driver logged of one NodePublishVolume.
struct LoggedRequest {
    context_keys: Vec<String>,
    secret_keys: Vec<String>,
    line: serde_json::Value,
}

impl Drop for Node {
    fn drop(&mut self) {
        // node.sh stops everything when its parent is gone; a test that
        // ends early stops it now.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}

/// Runs a script of the repository; its stdout's last line.
fn script(name: &str, args: &[&str]) -> String {
    let out = Command::new("bash")
        .arg(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("scripts")
                .join(name),
        )
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "scripts/{name} failed");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .last()
        .unwrap_or_default()
        .to_owned()
}

fn reader_pod(name: &str, class: &str, with_env: bool) -> String {
    let env = if with_env {
        "\n    env:\n      - name: DB_PASSWORD\n        valueFrom: {secretKeyRef: {name: db-synced, key: password}}"
    } else {
        ""
    };
    pod(
        name,
        class,
        "",
        &format!(
            r#"'while true; do echo "read=$(cat /mnt/secrets/password) env=$DB_PASSWORD"; sleep 1; done']{env}"#
        ),
    )
}

/// A pod of `name` on the node mounting `class` at /mnt/secrets and
/// running `command` (the end of an `sh -c` list), with `spec` added to
/// its spec.
fn pod(name: &str, class: &str, spec: &str, command: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: shop}}
spec:
  nodeName: {NODE}
  hostNetwork: true
  serviceAccountName: app
  terminationGracePeriodSeconds: 1{spec}
  containers:
  - name: app
    image: localhost/aws-secrets-csi-test/busybox:1
    command: [sh, -c, {command}
    volumeMounts:
      - {{name: secrets, mountPath: /mnt/secrets, readOnly: true}}
  volumes:
    - name: secrets
      csi:
        driver: {DRIVER}
        readOnly: true
        volumeAttributes: {{secretProviderClass: {class}}}
"#
    )
}

/// Classes of our additions: files in the shape the app reads (an .env
/// from a template, only it and the rotation manifest written), and one
/// whose template fails at its line 2.
const FILES_CLASSES: &str = r#"
apiVersion: secrets-store.csi.x-k8s.io/v1
kind: SecretProviderClass
metadata: {name: files, namespace: shop}
spec:
  provider: aws
  parameters:
    objectFiles: "false"
    rotationManifest: rotation.json
    objects: |
      - objectName: node/db
        objectType: secretsmanager
        jmesPath:
          - {path: username, objectAlias: user}
          - {path: password, objectAlias: password}
    templates: |
      - path: app.env
        template: "DB_USER={{ .user }} DB_PASSWORD={{ .password }}"
---
apiVersion: secrets-store.csi.x-k8s.io/v1
kind: SecretProviderClass
metadata: {name: broken-template, namespace: shop}
spec:
  provider: aws
  parameters:
    objects: |
      - {objectName: node/db, objectType: secretsmanager, objectAlias: db}
    templates: |
      - path: app.env
        template: |
          A={{ .db | len }}
          B={{ .nope }}
"#;

/// A Deployment of two pods reading the templated files, opted in to a
/// restart by the controller when its secrets rotate.
const ROLLING: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: rolling
  namespace: shop
  annotations: {aws-secrets-csi.io/restart-on-rotation: "true"}
spec:
  replicas: 2
  selector: {matchLabels: {app: rolling}}
  template:
    metadata: {labels: {app: rolling}}
    spec:
      nodeName: node-1
      hostNetwork: true
      serviceAccountName: app
      terminationGracePeriodSeconds: 1
      tolerations:
        - {key: node.kubernetes.io/not-ready, operator: Exists}
      containers:
      - name: app
        image: localhost/aws-secrets-csi-test/busybox:1
        command: [sh, -c, 'while true; do echo "read=$(cat /mnt/secrets/app.env)"; sleep 1; done']
        volumeMounts:
          - {name: secrets, mountPath: /mnt/secrets, readOnly: true}
      volumes:
        - name: secrets
          csi:
            driver: secrets-store.aws-secrets-csi.io
            readOnly: true
            volumeAttributes: {secretProviderClass: files}
"#;

/// A pod, not root, that prints its .env file and the manifest's first
/// version id.
fn files_pod(name: &str, class: &str) -> String {
    pod(
        name,
        class,
        // Not root: the files are readable by the app's own user.
        "\n  securityContext: {runAsUser: 65534, runAsGroup: 65534}",
        r#"'while true; do echo "read=$(cat /mnt/secrets/app.env) files=$(ls /mnt/secrets | tr "\n" ,) $(grep -o "versionId.*" /mnt/secrets/rotation.json | head -1)"; sleep 1; done']"#,
    )
}

fn last_read(log: &str) -> Option<&str> {
    log.lines()
        .rev()
        .find_map(|l| l.split_once("read=").map(|(_, rest)| rest))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_real_kubelet_runs_the_driver_from_its_image_and_pods_read_rotate_and_lose_their_secrets()
{
    require_root();
    let cp = control_plane_for_a_node();
    let moto = moto();
    let dir = TestDir::new();

    // The images: ours from this build's binary, the pause and the workload.
    let image = dir.path().join("aws-secrets-csi.oci.tar");
    script(
        "image.sh",
        &[
            "--binary",
            env!("CARGO_BIN_EXE_aws-secrets-csi"),
            "--out",
            image.to_str().unwrap(),
        ],
    );
    let images = PathBuf::from(script("node-images.sh", &[]));
    let node = Node::start(
        cp,
        &[
            images.join("pause.oci.tar"),
            images.join("busybox.oci.tar"),
            image,
        ],
    );

    // AWS change events: the controller reads them with its own identity.
    let queue = moto.create_queue("node-test-events").await;

    // helm install, AWS and the API server reached over the host's loopback
    // (the pod uses the host's network: there is no CNI).
    let api_port = cp.server.rsplit(':').next().unwrap();
    let values = dir.path().join("values.yaml");
    std::fs::write(
        &values,
        format!(
            r#"
kubeletPath: {root}
stateDir: {state}
hostNetwork: true
syncSecrets: true
awsRegion: {REGION}
refreshInterval: 2s
env:
  - {{name: KUBERNETES_SERVICE_HOST, value: "127.0.0.1"}}
  - {{name: KUBERNETES_SERVICE_PORT, value: "{api_port}"}}
  - {{name: AWS_ENDPOINT_URL, value: "{aws}"}}
  - {{name: AWS_EC2_METADATA_DISABLED, value: "true"}}
  - {{name: RUST_LOG, value: "info,aws_secrets_csi::csi=debug"}}
controller:
  enabled: true
  replicas: 1
  tolerations:
    - {{key: node.kubernetes.io/not-ready, operator: Exists, effect: NoSchedule}}
  restartOnRotation: {{quiet: 2s, maxWait: 10s, minInterval: 10m}}
  eventsQueue: "{queue}"
  env:
    - {{name: AWS_REGION, value: "{REGION}"}}
    - {{name: AWS_ACCESS_KEY_ID, value: "{access}"}}
    - {{name: AWS_SECRET_ACCESS_KEY, value: "{secret}"}}
"#,
            root = node.kubelet_root.display(),
            state = node.work.join("driver-state").display(),
            aws = moto.endpoint,
            access = moto.admin_keys().0,
            secret = moto.admin_keys().1,
        ),
    )
    .unwrap();
    let install = Command::new(helm())
        .args(["install", "asc"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/chart/aws-secrets-csi"))
        .args([
            "-n",
            "aws-secrets-csi",
            "--create-namespace",
            "--wait",
            "--timeout",
            "120s",
        ])
        .arg("--kubeconfig")
        .arg(&cp.admin)
        .arg("-f")
        .arg(&values)
        .output()
        .unwrap();
    assert!(
        install.status.success(),
        "helm install: {}{}",
        String::from_utf8_lossy(&install.stderr),
        node.driver_log()
    );
    // One container per node, registered with kubelet by the driver itself.
    let registered = || {
        cp.try_kubectl(
            &[
                "get",
                "csinode",
                NODE,
                "-o",
                "jsonpath={.spec.drivers[*].name}",
            ],
            None,
        )
        .is_ok_and(|names| names.split(' ').any(|n| n == DRIVER))
    };
    eventually(
        Duration::from_secs(60),
        "kubelet to register the driver",
        registered,
    )
    .await;
    let driver_log = || node.driver_log();
    let pods = cp.kubectl(
        &[
            "get",
            "pods",
            "-n",
            "aws-secrets-csi",
            "-o",
            "jsonpath={range .items[*]}{.spec.containers[*].name}{\"\\n\"}{end}",
        ],
        None,
    );
    // One container a pod: the node driver (no sidecars) and the
    // controller.
    let mut pods: Vec<&str> = pods.lines().collect();
    pods.sort();
    assert_eq!(pods, ["controller", "driver"]);
    assert!(
        driver_log().contains("kubelet registered the driver"),
        "{}",
        driver_log()
    );

    // A workload reads its secret, in the file and through a synced Secret.
    moto.create_secret("node/db", r#"{"username":"u","password":"pw-1"}"#)
        .await;
    cp.kubectl(
        &["apply", "-f", "-"],
        Some(&format!(
            r#"
apiVersion: v1
kind: Namespace
metadata: {{name: shop}}
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: app
  namespace: shop
  annotations: {{eks.amazonaws.com/role-arn: "{READER_ROLE}"}}
---
apiVersion: secrets-store.csi.x-k8s.io/v1
kind: SecretProviderClass
metadata: {{name: db, namespace: shop}}
spec:
  provider: aws
  parameters:
    objects: |
      - objectName: node/db
        objectType: secretsmanager
        jmesPath:
          - {{path: password, objectAlias: password}}
  secretObjects:
    - secretName: db-synced
      type: Opaque
      data:
        - {{objectName: password, key: password}}
---
apiVersion: secrets-store.csi.x-k8s.io/v1
kind: SecretProviderClass
metadata: {{name: broken, namespace: shop}}
spec:
  provider: aws
  parameters:
    objects: |
      - objectName: node/missing
        objectType: secretsmanager
---
{}
---
{FILES_CLASSES}
---
{}
---
{ROLLING}
"#,
            reader_pod("web", "db", true),
            files_pod("files", "files"),
        )),
    );
    let took = eventually(
        Duration::from_secs(90),
        "the container to read its secret",
        || last_read(&node.log("shop", "web", "app")) == Some("pw-1 env=pw-1"),
    )
    .await;
    eprintln!("pod running and reading its secret {took:?} after it was created");
    let uid = cp.get("pod", "web", "shop")["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_owned();
    // What kubelet really sent is what our kubelet-playing tests send
    // (tests/common publish_request): the same volume context keys, the
    // tokens in the context (not in secrets), a read-only volume, and a
    // target under the pod's CSI volume directory.
    let request = node.publish_request_of(&uid);
    let played = publish_request(Path::new("/t"), "db", &PodSpec::new("shop", "web", "app"));
    let mut expected: Vec<String> = played.volume_context.keys().cloned().collect();
    expected.sort();
    assert_eq!(request.context_keys, expected, "{}", request.line);
    assert!(request.secret_keys.is_empty(), "{}", request.line);
    assert_eq!(request.line["readonly"], true);
    assert_eq!(
        request.line["target_path"].as_str().unwrap_or_default(),
        format!(
            "{}/pods/{uid}/volumes/kubernetes.io~csi/secrets/mount",
            node.kubelet_root.display()
        )
    );
    eprintln!("kubelet's NodePublishVolume: {}", request.line);
    let volume = node.kubelet_root.join(format!(
        "pods/{uid}/volumes/kubernetes.io~csi/secrets/mount"
    ));
    assert!(
        mount_line(&volume).is_some_and(|l| l.contains(" - tmpfs ")),
        "{:?}",
        mount_line(&volume)
    );

    // Rotation through kubelet's own republish: the container reads the new
    // value from the same file; the synced Secret follows.
    moto.secrets_manager()
        .put_secret_value()
        .secret_id("node/db")
        .secret_string(r#"{"username":"u","password":"pw-2"}"#)
        .send()
        .await
        .unwrap();
    let took = eventually(
        Duration::from_secs(60),
        "the container to read the rotated value",
        || last_read(&node.log("shop", "web", "app")).is_some_and(|r| r.starts_with("pw-2 ")),
    )
    .await;
    eprintln!("rotation seen by the container {took:?} after the change in AWS");
    // The templated file follows in the same swap, the manifest names the
    // new version, and the pod gets a SecretRotated event naming the
    // object (never a value).
    let took = eventually(
        Duration::from_secs(60),
        "the templated .env to hold the rotated value",
        || {
            last_read(&node.log("shop", "files", "app")).is_some_and(|r| {
                r.starts_with("DB_USER=u DB_PASSWORD=pw-2 files=app.env,rotation.json, versionId")
            })
        },
    )
    .await;
    eprintln!("rotation seen in the templated file {took:?} after the change in AWS");
    let versions: Vec<String> = node
        .log("shop", "files", "app")
        .lines()
        .filter_map(|l| l.split_once("versionId").map(|(_, v)| v.to_owned()))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(
        versions.len(),
        2,
        "the manifest named two versions: {versions:?}"
    );
    let rotated = cp.kubectl(
        &[
            "get",
            "events",
            "-n",
            "shop",
            "--field-selector",
            "involvedObject.name=files,reason=SecretRotated",
            "-o",
            "jsonpath={.items[*].message}",
        ],
        None,
    );
    assert!(
        rotated.contains("SecretProviderClass files: rotated node/db (version "),
        "{rotated}"
    );
    assert!(!rotated.contains("pw-"), "{rotated}");
    // The Deployment that opted in is restarted by the controller once for
    // the rotation its two pods reported (one rollout: generation 2), and
    // its new pods read the new value.
    let generation = || {
        cp.get("deployment", "rolling", "shop")["metadata"]["generation"]
            .as_i64()
            .unwrap_or(0)
    };
    let took = eventually(
        Duration::from_secs(60),
        "the controller to restart the Deployment that opted in",
        || generation() == 2,
    )
    .await;
    eprintln!("the Deployment restarted {took:?} after the rotation was seen");
    let deployment = cp.get("deployment", "rolling", "shop");
    assert!(
        deployment["spec"]["template"]["metadata"]["annotations"]["aws-secrets-csi.io/restartedAt"]
            .is_string(),
        "{deployment}"
    );
    let restarted = cp.kubectl(
        &[
            "get",
            "events",
            "-n",
            "shop",
            "--field-selector",
            "involvedObject.name=rolling,reason=RestartedForRotation",
            "-o",
            "jsonpath={.items[*].message}",
        ],
        None,
    );
    assert!(
        !restarted.is_empty() && !restarted.contains("pw-"),
        "{restarted}"
    );
    eventually(
        Duration::from_secs(90),
        "the rolled pods to be ready",
        || {
            let d = cp.get("deployment", "rolling", "shop");
            d["status"]["updatedReplicas"] == 2 && d["status"]["readyReplicas"] == 2
        },
    )
    .await;
    let synced = || {
        cp.try_kubectl(
            &[
                "get",
                "secret",
                "db-synced",
                "-n",
                "shop",
                "-o",
                "jsonpath={.data.password}",
            ],
            None,
        )
        .unwrap_or_default()
    };
    eventually(
        Duration::from_secs(30),
        "the synced Secret to follow",
        || {
            synced() == "cHctMg==" // pw-2
        },
    )
    .await;

    // A class with an error: kubelet's FailedMount event carries our message.
    cp.kubectl(
        &["apply", "-f", "-"],
        Some(&reader_pod("broken", "broken", false)),
    );
    eventually(Duration::from_secs(60), "kubelet's FailedMount event", || {
        let events = cp.kubectl(
            &["get", "events", "-n", "shop", "--field-selector", "involvedObject.name=broken,reason=FailedMount", "-o", "jsonpath={.items[*].message}"],
            None,
        );
        events.contains("SecretProviderClass shop/broken: failed to fetch 1 object(s): node/missing in us-east-1: ResourceNotFoundException")
    })
    .await;
    cp.kubectl(
        &["delete", "pod", "broken", "-n", "shop", "--wait=false"],
        None,
    );
    // A template that fails: the mount fails with the template's place.
    cp.kubectl(
        &["apply", "-f", "-"],
        Some(&files_pod("broken-template", "broken-template")),
    );
    eventually(
        Duration::from_secs(60),
        "FailedMount naming the template's line",
        || {
            let events = cp.kubectl(
                &[
                    "get",
                    "events",
                    "-n",
                    "shop",
                    "--field-selector",
                    "involvedObject.name=broken-template,reason=FailedMount",
                    "-o",
                    "jsonpath={.items[*].message}",
                ],
                None,
            );
            events.contains("templates[0] (app.env):2") && !events.contains("pw-")
        },
    )
    .await;
    cp.kubectl(
        &[
            "delete",
            "pod",
            "broken-template",
            "-n",
            "shop",
            "--wait=false",
        ],
        None,
    );

    // The driver's container killed: kubelet restarts it, it registers
    // again, the mounted volume keeps working and the next republish
    // refreshes it.
    let registrations = || {
        driver_log()
            .matches("kubelet registered the driver")
            .count()
    };
    let before = registrations();
    let pid = node.driver_pid().expect("the driver's process");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    moto.secrets_manager()
        .put_secret_value()
        .secret_id("node/db")
        .secret_string(r#"{"username":"u","password":"pw-3"}"#)
        .send()
        .await
        .unwrap();
    eventually(
        Duration::from_secs(60),
        "the restarted driver to register again",
        || registrations() > before,
    )
    .await;
    assert_eq!(
        std::fs::read_to_string(volume.join("password"))
            .unwrap_or_default()
            .len(),
        4
    );
    eventually(
        Duration::from_secs(60),
        "the restarted driver to refresh the volume",
        || last_read(&node.log("shop", "web", "app")).is_some_and(|r| r.starts_with("pw-3 ")),
    )
    .await;

    // A second rotation (pw-3) within the minimum interval: no second
    // restart. (Whether the new pods report it depends on whether they
    // mounted before it; the old pods' reports must restart nothing.)
    tokio::time::sleep(Duration::from_secs(12)).await;
    let signals = cp.kubectl(
        &[
            "get",
            "events",
            "-n",
            "shop",
            "--field-selector",
            "reason=SecretRotated",
            "-o",
            "jsonpath={range .items[*]}{.involvedObject.name}{\"\\n\"}{end}",
        ],
        None,
    );
    eprintln!(
        "SecretRotated reports of the Deployment's pods: {}",
        signals
            .lines()
            .filter(|p| p.starts_with("rolling-"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    assert_eq!(
        generation(),
        2,
        "restarted once, not again within the minimum interval"
    );

    // kubelet restarted: the registration comes back and new pods mount.
    let before = registrations();
    node.restart_kubelet();
    eventually(
        Duration::from_secs(60),
        "kubelet to register the driver after its restart",
        || registrations() > before,
    )
    .await;
    cp.kubectl(
        &["apply", "-f", "-"],
        Some(&reader_pod("after-restart", "db", false)),
    );
    eventually(
        Duration::from_secs(90),
        "a pod started after kubelet's restart to read",
        || {
            last_read(&node.log("shop", "after-restart", "app"))
                .is_some_and(|r| r.starts_with("pw-3 "))
        },
    )
    .await;

    // Pod deletion: kubelet unpublishes, the tmpfs is gone, the pod's
    // directory goes, and the garbage collector takes the synced Secret.
    cp.kubectl(
        &[
            "delete",
            "pod",
            "web",
            "-n",
            "shop",
            "--wait=true",
            "--timeout=60s",
        ],
        None,
    );
    assert_eq!(mount_line(&volume), None);
    let pod_dir = node.kubelet_root.join("pods").join(&uid);
    eventually(
        Duration::from_secs(60),
        "kubelet to remove the pod's directory",
        || !pod_dir.exists(),
    )
    .await;
    // The Secret is owned by every pod that mounts the class: it stays
    // until the last one goes.
    assert!(
        cp.try_kubectl(&["get", "secret", "db-synced", "-n", "shop"], None)
            .is_ok()
    );
    cp.kubectl(
        &[
            "delete",
            "pod",
            "after-restart",
            "-n",
            "shop",
            "--wait=true",
            "--timeout=60s",
        ],
        None,
    );
    eventually(
        Duration::from_secs(30),
        "the synced Secret to be collected",
        || {
            cp.try_kubectl(&["get", "secret", "db-synced", "-n", "shop"], None)
                .is_err()
        },
    )
    .await;
    assert!(
        mounts_under(&node.kubelet_root)
            .iter()
            .all(|m| !m.starts_with(&pod_dir)),
        "{:?}",
        mounts_under(&node.kubelet_root)
    );
    // Told by AWS (docs/events.md): a class that refreshes every hour; a
    // change's event on the queue reaches the container's file through the
    // controller's change record and the node driver's watch, with the
    // chart's arguments and RBAC and the credentials held for the pod.
    moto.create_secret("node/evented", r#"{"password":"ev-1"}"#)
        .await;
    cp.kubectl(
        &["apply", "-f", "-"],
        Some(&format!(
            r#"
apiVersion: secrets-store.csi.x-k8s.io/v1
kind: SecretProviderClass
metadata: {{name: evented, namespace: shop}}
spec:
  provider: aws
  parameters:
    refreshInterval: 1h
    objects: |
      - objectName: node/evented
        objectType: secretsmanager
        jmesPath:
          - {{path: password, objectAlias: password}}
---
{}
"#,
            reader_pod("evented", "evented", false)
        )),
    );
    eventually(
        Duration::from_secs(90),
        "the evented pod to read its secret",
        || last_read(&node.log("shop", "evented", "app")).is_some_and(|r| r.starts_with("ev-1 ")),
    )
    .await;
    moto.secrets_manager()
        .put_secret_value()
        .secret_id("node/evented")
        .secret_string(r#"{"password":"ev-2"}"#)
        .send()
        .await
        .unwrap();
    let event = put_secret_value_event("node/evented");
    moto.sqs()
        .send_message()
        .queue_url(&queue)
        .message_body(event)
        .send()
        .await
        .unwrap();
    let sent = std::time::Instant::now();
    while !last_read(&node.log("shop", "evented", "app")).is_some_and(|r| r.starts_with("ev-2 ")) {
        if sent.elapsed() > Duration::from_secs(30) {
            let relevant = |log: String| {
                log.lines()
                    .filter(|l| {
                        l.contains("WARN")
                            || l.contains("ERROR")
                            || l.contains("change")
                            || l.contains("events")
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            panic!(
                "the container did not read the value the event announced\ncontroller:\n{}\ndriver:\n{}",
                relevant(node.logs_of("aws-secrets-csi_aws-secrets-csi-controller", "controller")),
                relevant(driver_log())
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let took = sent.elapsed();
    eprintln!("an AWS event reached the container's file in {took:?} (the class refreshes hourly)");
    assert!(
        driver_log().contains("AWS reported changes: refreshing the volumes that read them"),
        "{}",
        driver_log()
    );
    cp.kubectl(
        &[
            "delete",
            "pod",
            "evented",
            "-n",
            "shop",
            "--wait=true",
            "--timeout=60s",
        ],
        None,
    );

    // Kubernetes >= 1.35 can hand the tokens over in the request's secrets
    // instead of the volume context (the API server warns while it is
    // unset): the chart's tokensInSecrets, switched on by helm upgrade.
    let upgrade = Command::new(helm())
        .args(["upgrade", "asc"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/chart/aws-secrets-csi"))
        .args([
            "-n",
            "aws-secrets-csi",
            "--reuse-values",
            "--set",
            "tokensInSecrets=true",
        ])
        .arg("--kubeconfig")
        .arg(&cp.admin)
        .output()
        .unwrap();
    assert!(
        upgrade.status.success(),
        "helm upgrade: {}",
        String::from_utf8_lossy(&upgrade.stderr)
    );
    cp.kubectl(
        &["apply", "-f", "-"],
        Some(&reader_pod("tokens-in-secrets", "db", false)),
    );
    eventually(
        Duration::from_secs(90),
        "a pod mounted with the tokens in the request's secrets to read",
        || {
            last_read(&node.log("shop", "tokens-in-secrets", "app"))
                .is_some_and(|r| r.starts_with("pw-3 "))
        },
    )
    .await;
    let uid = cp.get("pod", "tokens-in-secrets", "shop")["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_owned();
    let request = node.publish_request_of(&uid);
    assert_eq!(
        request.secret_keys,
        ["csi.storage.k8s.io/serviceAccount.tokens"],
        "{}",
        request.line
    );
    assert!(
        !request
            .context_keys
            .iter()
            .any(|k| k == "csi.storage.k8s.io/serviceAccount.tokens"),
        "{}",
        request.line
    );
    eprintln!(
        "kubelet's NodePublishVolume with tokens in secrets: {}",
        request.line
    );

    let rss = node
        .driver_pid()
        .and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(str::to_owned)
        });
    eprintln!("the driver's RSS on this node (debug build): {rss:?}");
}
