//! Real peers for the integration tests: a moto server (AWS), a small
//! in-process Kubernetes API stand-in, the driver binary itself over its CSI
//! socket, and real tmpfs mounts (so these tests must run as root).
#![allow(dead_code)]

pub mod agent;
pub mod aws_standin;
pub mod control_plane;
pub mod controller;
pub mod eso_peer;
pub mod kube;
pub mod proxy;
pub mod relay;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use aws_credential_types::Credentials;
use aws_secrets_csi::csi::identity_client::IdentityClient;
use aws_secrets_csi::csi::node_client::NodeClient;
use aws_secrets_csi::csi::{
    NodePublishVolumeRequest, NodeUnpublishVolumeRequest, ProbeRequest, VolumeCapability,
    volume_capability,
};
use tonic::transport::Channel;

pub const REGION: &str = "us-east-1";
pub const ACCOUNT: &str = "123456789012";
pub const READER_ROLE: &str = "arn:aws:iam::123456789012:role/reader";
pub const NOBODY_ROLE: &str = "arn:aws:iam::123456789012:role/nobody";
pub const HOPPER_ROLE: &str = "arn:aws:iam::123456789012:role/hopper";
pub const CHAINED_ROLE: &str = "arn:aws:iam::123456789012:role/chained";

/// The whole body of a request a stand-in server received (empty if the
/// client broke off).
pub async fn body_of(req: hyper::Request<hyper::body::Incoming>) -> hyper::body::Bytes {
    use http_body_util::BodyExt;
    req.into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default()
}

/// Peak resident memory of a process (VmHWM), in KiB.
pub fn peak_rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmHWM:")
}

/// Resident memory of a process now (VmRSS), in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:")
}

/// A `kB` field of a process's `/proc/PID/status`.
fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Mounting a tmpfs needs CAP_SYS_ADMIN: say so plainly instead of failing
/// somewhere deep in a test.
pub fn require_root() {
    if !nix::unistd::geteuid().is_root() {
        panic!("these integration tests mount tmpfs file systems and must run as root");
    }
}

/// One moto server per test binary, with IAM enforced. It exits by itself
/// when the test binary does.
pub struct Moto {
    child: Child,
    pub endpoint: String,
    access_key: String,
    secret_key: String,
}

pub fn moto() -> &'static Moto {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    MOTO.get_or_init(|| Moto::start(free_port()))
}

impl Moto {
    /// A moto of a test's own (one it may stop), on `port`.
    pub fn start(port: u16) -> Moto {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/moto_server.py");
        let mut child = Command::new("python3")
            .arg(&script)
            .arg("--port")
            .arg(port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start python3 for moto (scripts/test.sh puts a venv with moto first on PATH)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("moto stdout"))
            .read_line(&mut line)
            .expect("read moto bootstrap line");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| {
            panic!("moto did not start (run the tests through scripts/test.sh, or put ~/.cache/aws-secrets-csi/venv/bin first on PATH): {e}: {line:?}")
        });
        Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            access_key: v["access_key"].as_str().unwrap().to_owned(),
            secret_key: v["secret_key"].as_str().unwrap().to_owned(),
        }
    }

    pub fn port(&self) -> u16 {
        self.endpoint.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// The admin user's access key and secret key.
    pub fn admin_keys(&self) -> (&str, &str) {
        (&self.access_key, &self.secret_key)
    }

    /// An SSM client for another region.
    pub fn ssm_in(&self, region: &str) -> aws_sdk_ssm::Client {
        aws_sdk_ssm::Client::new(&self.config_in(region))
    }

    fn config(&self) -> aws_config::SdkConfig {
        self.config_in(REGION)
    }

    fn config_in(&self, region: &str) -> aws_config::SdkConfig {
        aws_config::SdkConfig::builder()
            .endpoint_url(&self.endpoint)
            .region(aws_config::Region::new(region.to_owned()))
            .credentials_provider(
                aws_credential_types::provider::SharedCredentialsProvider::new(Credentials::new(
                    &self.access_key,
                    &self.secret_key,
                    None,
                    None,
                    "test-admin",
                )),
            )
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build()
    }

    /// A Secrets Manager client with admin rights, for fixtures.
    pub fn secrets_manager(&self) -> aws_sdk_secretsmanager::Client {
        aws_sdk_secretsmanager::Client::new(&self.config())
    }

    /// A Secrets Manager client for another region.
    pub fn secrets_manager_in(&self, region: &str) -> aws_sdk_secretsmanager::Client {
        aws_sdk_secretsmanager::Client::new(&self.config_in(region))
    }

    /// An SQS client with admin rights (the events queue).
    pub fn sqs(&self) -> aws_sdk_sqs::Client {
        aws_sdk_sqs::Client::new(&self.config())
    }

    /// An SSM client with admin rights, for fixtures.
    pub fn ssm(&self) -> aws_sdk_ssm::Client {
        aws_sdk_ssm::Client::new(&self.config())
    }

    pub async fn create_secret(&self, name: &str, value: &str) -> String {
        self.secrets_manager()
            .create_secret()
            .name(name)
            .secret_string(value)
            .send()
            .await
            .unwrap()
            .arn()
            .unwrap()
            .to_owned()
    }

    /// A new current version of a secret.
    /// A new SQS queue; its URL.
    pub async fn create_queue(&self, name: &str) -> String {
        self.sqs()
            .create_queue()
            .queue_name(name)
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap()
    }

    pub async fn put_secret(&self, name: &str, value: &str) {
        self.secrets_manager()
            .put_secret_value()
            .secret_id(name)
            .secret_string(value)
            .send()
            .await
            .unwrap();
    }

    pub async fn create_secret_in(&self, region: &str, name: &str, value: &str) {
        self.secrets_manager_in(region)
            .create_secret()
            .name(name)
            .secret_string(value)
            .send()
            .await
            .unwrap();
    }

    pub async fn put_parameter(&self, name: &str, value: &str) -> i64 {
        self.ssm()
            .put_parameter()
            .name(name)
            .value(value)
            .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
            .overwrite(true)
            .send()
            .await
            .unwrap()
            .version()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GET `path` on 127.0.0.1:`port`: (status code, body); None when nothing
/// answers.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut out = String::new();
    stream.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, body.to_owned()))
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A per-test directory that plays kubelet's root. Everything mounted below
/// it is unmounted when the test ends, whatever happened.
pub struct TestDir {
    dir: tempfile::TempDir,
}

impl TestDir {
    pub fn new() -> Self {
        TestDir {
            dir: tempfile::Builder::new()
                .prefix("asc-test-")
                .tempdir()
                .unwrap(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A kubelet-shaped target path for a pod volume; its parent exists, as
    /// kubelet guarantees, the target itself does not.
    pub fn target(&self, pod_uid: &str) -> PathBuf {
        self.volume_target(pod_uid, "secrets")
    }

    /// The target of another CSI volume of the same pod.
    pub fn volume_target(&self, pod_uid: &str, volume: &str) -> PathBuf {
        let parent = self
            .path()
            .join("pods")
            .join(pod_uid)
            .join("volumes/kubernetes.io~csi")
            .join(volume);
        std::fs::create_dir_all(&parent).unwrap();
        parent.join("mount")
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        for m in mounts_under(self.path()) {
            let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// Mount points at or below `root`, from /proc/self/mountinfo.
pub fn mounts_under(root: &Path) -> Vec<PathBuf> {
    let root = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    aws_secrets_csi::volume::parse_mountinfo(&text)
        .into_iter()
        .map(|m| m.mount_point)
        .filter(|p| p.starts_with(&root))
        .collect()
}

/// The mountinfo line of `target`, if it is a mount point.
pub fn mount_line(target: &Path) -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let t = target.to_str().unwrap();
    text.lines()
        .find(|l| l.split(' ').nth(4) == Some(t))
        .map(str::to_owned)
}

/// The driver binary serving on a socket in a test directory. Its state
/// directory is in the test directory too, so a driver started again in the
/// same directory finds the volumes of the one before.
pub struct Driver {
    child: Child,
    pub socket: PathBuf,
    log: PathBuf,
    pub metrics_port: u16,
}

impl Driver {
    pub async fn start(dir: &Path, kubeconfig: &Path, extra_env: &[(&str, &str)]) -> Self {
        Self::start_with(dir, kubeconfig, extra_env, &[]).await
    }

    pub async fn start_with(
        dir: &Path,
        kubeconfig: &Path,
        extra_env: &[(&str, &str)],
        args: &[&str],
    ) -> Self {
        Self::start_against(&moto().endpoint, dir, kubeconfig, extra_env, args).await
    }

    /// The driver with AWS at `aws_endpoint` (moto, or a stand-in).
    pub async fn start_against(
        aws_endpoint: &str,
        dir: &Path,
        kubeconfig: &Path,
        extra_env: &[(&str, &str)],
        args: &[&str],
    ) -> Self {
        let socket = dir.join("csi.sock");
        let log = dir.join("driver.log");
        let metrics_port = free_port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_aws-secrets-csi"));
        cmd.arg("serve")
            .arg("--endpoint")
            .arg(format!("unix://{}", socket.display()))
            .arg("--node-id")
            .arg("test-node")
            .arg("--state-dir")
            .arg(dir.join("state"))
            .arg("--kubelet-dir")
            .arg(dir)
            .arg("--metrics-addr")
            .arg(format!("127.0.0.1:{metrics_port}"))
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("KUBECONFIG", kubeconfig)
            .env("AWS_ENDPOINT_URL", aws_endpoint)
            .env("AWS_REGION", REGION)
            // No credentials of its own: every AWS call must use the pod's.
            .env("AWS_EC2_METADATA_DISABLED", "true")
            // Every suite runs the driver at trace level, and every driver's
            // log is searched for tokens and credentials when it stops.
            .env("RUST_LOG", "trace")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .unwrap(),
            );
        for (k, v) in extra_env {
            // An empty value removes the variable.
            if v.is_empty() {
                cmd.env_remove(k);
            } else {
                cmd.env(k, v);
            }
        }
        let child = cmd.spawn().expect("start the driver");
        let driver = Driver {
            child,
            socket,
            log,
            metrics_port,
        };
        driver.wait_ready().await;
        driver
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.socket.exists()
                && let Ok(channel) = self.channel().await
                && IdentityClient::new(channel)
                    .probe(ProbeRequest {})
                    .await
                    .is_ok()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "driver did not become ready:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn channel(&self) -> Result<Channel, tonic::transport::Error> {
        tonic::transport::Endpoint::from_shared(format!("unix://{}", self.socket.display()))
            .unwrap()
            .connect()
            .await
    }

    pub async fn node(&self) -> NodeClient<Channel> {
        NodeClient::new(self.channel().await.unwrap())
    }

    /// The text of the metrics endpoint.
    pub async fn metrics(&self) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.metrics_port))
            .await
            .unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).await.unwrap();
        out
    }

    /// The value of one metric line (`name{labels}`), 0 when absent.
    pub async fn metric(&self, series: &str) -> f64 {
        self.metrics()
            .await
            .lines()
            .find_map(|l| {
                l.strip_prefix(series)
                    .and_then(|rest| rest.trim().parse().ok())
            })
            .unwrap_or(0.0)
    }

    /// Calls made to one AWS API, whatever their outcome.
    pub async fn aws_calls(&self, api: &str) -> u64 {
        let prefix = format!("aws_api_calls_total{{api=\"{api}\"");
        self.metrics()
            .await
            .lines()
            .filter(|l| l.starts_with(&prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }

    /// Kills the driver with SIGKILL (no cleanup of any kind).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to `limit` for the process to exit by itself.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

/// What only a token or a credential looks like in a log: every token the
/// tests hand out starts `eyJ-`, and a real JWT (the API server's, the
/// driver's own ServiceAccount token included) starts with the base64 of
/// `{"alg` or `{"kid`; moto's and the AWS stand-in's session tokens and
/// secret keys have fixed beginnings. (A bare `eyJ` also turns up by chance
/// in moto's random request ids.)
const NEVER_LOGGED: [&str; 6] = [
    "eyJ-",
    "eyJhbGci",
    "eyJraWQi",
    "FQoGZXIvYXdzE",
    "bench-session",
    "bench-secret-key",
];

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            return;
        }
        let Ok(logs) = std::fs::read_to_string(&self.log) else {
            panic!(
                "the driver's log was gone before it stopped: stop the driver before its directory goes"
            );
        };
        for marker in NEVER_LOGGED {
            if let Some(at) = logs.find(marker) {
                let line = logs[..at].rsplit('\n').next().unwrap_or("");
                panic!("the driver logged a token or credential ({marker:?}) after: {line}");
            }
        }
    }
}

/// A pod as kubelet describes it to the driver.
#[derive(Clone)]
pub struct PodSpec {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub service_account: String,
    /// The `sts.amazonaws.com` token (IRSA).
    pub token: Option<String>,
    /// The `pods.eks.amazonaws.com` token (EKS Pod Identity).
    pub pod_identity_token: Option<String>,
}

impl PodSpec {
    pub fn new(namespace: &str, name: &str, service_account: &str) -> Self {
        PodSpec {
            namespace: namespace.into(),
            name: name.into(),
            uid: format!("uid-{name}"),
            service_account: service_account.into(),
            // The stand-in API server's TokenReview reads whose they are.
            token: Some(format!(
                "eyJ-test-token-for-{name}.{namespace}.{service_account}.uid-{name}"
            )),
            pod_identity_token: Some(format!(
                "eyJ-pi-token-for-{name}.{namespace}.{service_account}.uid-{name}"
            )),
        }
    }
}

/// The NodePublishVolume request kubelet sends for an inline CSI volume with
/// `podInfoOnMount: true` and `tokenRequests` (csi-contract B1/B2).
pub fn publish_request(target: &Path, class: &str, pod: &PodSpec) -> NodePublishVolumeRequest {
    let mut ctx: std::collections::HashMap<String, String> = [
        ("secretProviderClass", class.to_owned()),
        ("csi.storage.k8s.io/pod.name", pod.name.clone()),
        ("csi.storage.k8s.io/pod.namespace", pod.namespace.clone()),
        ("csi.storage.k8s.io/pod.uid", pod.uid.clone()),
        (
            "csi.storage.k8s.io/serviceAccount.name",
            pod.service_account.clone(),
        ),
        ("csi.storage.k8s.io/ephemeral", "true".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let mut tokens = serde_json::Map::new();
    for (audience, token) in [
        ("sts.amazonaws.com", &pod.token),
        ("pods.eks.amazonaws.com", &pod.pod_identity_token),
    ] {
        if let Some(token) = token {
            tokens.insert(
                audience.into(),
                serde_json::json!({"token": token, "expirationTimestamp": "2026-11-28T13:00:00Z"}),
            );
        }
    }
    if !tokens.is_empty() {
        ctx.insert(
            "csi.storage.k8s.io/serviceAccount.tokens".into(),
            serde_json::Value::Object(tokens).to_string(),
        );
    }
    NodePublishVolumeRequest {
        volume_id: format!("csi-{}", pod.uid),
        target_path: target.to_str().unwrap().to_owned(),
        volume_capability: Some(VolumeCapability {
            access_type: Some(volume_capability::AccessType::Mount(Default::default())),
            access_mode: Some(volume_capability::AccessMode {
                mode: volume_capability::access_mode::Mode::SingleNodeWriter as i32,
            }),
        }),
        readonly: true,
        volume_context: ctx,
        ..Default::default()
    }
}

pub fn unpublish_request(target: &Path, pod: &PodSpec) -> NodeUnpublishVolumeRequest {
    NodeUnpublishVolumeRequest {
        volume_id: format!("csi-{}", pod.uid),
        target_path: target.to_str().unwrap().to_owned(),
    }
}

/// Asserts that none of `needles` appears in the driver's log.
pub fn assert_no_leak(driver: &Driver, needles: &[&str]) {
    let logs = driver.logs();
    assert!(!logs.is_empty(), "the driver wrote no log at all");
    for n in needles {
        assert!(!logs.contains(n), "the driver log contains {n:?}:\n{logs}");
    }
}

/// One test's world: a directory, a Kubernetes stand-in and a driver.
/// Fields drop in this order: the driver stops (and its log is checked)
/// before its directory goes.
pub struct World {
    pub driver: Driver,
    pub kube: kube::FakeKube,
    pub dir: TestDir,
}

impl World {
    pub async fn new() -> Self {
        Self::with(&[], &[]).await
    }

    pub async fn with(env: &[(&str, &str)], args: &[&str]) -> Self {
        require_root();
        let dir = TestDir::new();
        let kube = kube::FakeKube::start(dir.path()).await;
        let driver = Driver::start_with(dir.path(), &kube.kubeconfig, env, args).await;
        World { dir, kube, driver }
    }
}

impl World {
    /// A SecretProviderClass in `REGION` with these `objects`.
    pub fn class(&self, namespace: &str, name: &str, objects: &str) {
        self.kube
            .put_class(namespace, name, &[("region", REGION), ("objects", objects)]);
    }

    /// NodePublishVolume for `pod` at `target`, as kubelet sends it.
    pub async fn publish(
        &self,
        target: &Path,
        class: &str,
        pod: &PodSpec,
    ) -> Result<(), tonic::Status> {
        self.driver
            .node()
            .await
            .node_publish_volume(publish_request(target, class, pod))
            .await
            .map(|_| ())
    }
}

/// A file of a volume, read through its visible name.
pub fn read(target: &Path, name: &str) -> String {
    std::fs::read_to_string(target.join(name)).unwrap_or_else(|e| panic!("read {name}: {e}"))
}

/// The hidden directories of a volume's `..data` layout (not `..data`).
pub fn data_dirs(target: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(target)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("..") && n != "..data")
        .collect();
    v.sort();
    v
}

/// Where `..data` points.
pub fn data_link(target: &Path) -> String {
    std::fs::read_link(target.join("..data"))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// The upstream Secrets Store CSI Driver v1.6.0 and its fake provider, built
/// from its Go module by scripts/sscsid-peer.sh ($SSCSID_BIN, which
/// scripts/test.sh sets).
pub fn sscsid_bin() -> PathBuf {
    let dir = std::env::var("SSCSID_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default())
                .join(".cache/aws-secrets-csi/sscsid-v1.6.0/bin")
        });
    assert!(
        dir.join("secrets-store-csi-driver").exists(),
        "the upstream driver is not built: run `bash scripts/sscsid-peer.sh` (scripts/test.sh does)"
    );
    dir
}

/// A child process killed when dropped.
pub struct Peer(pub Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The upstream driver's command line as its chart starts it, serving CSI
/// on `socket` and calling the providers whose sockets are in `providers`,
/// against the API server of `kubeconfig`.
pub fn upstream_driver(
    driver: &Path,
    socket: &Path,
    providers: &Path,
    kubeconfig: &Path,
) -> Command {
    let mut cmd = Command::new(driver);
    cmd.arg(format!("--endpoint=unix://{}", socket.display()))
        .args([
            "--nodeid=test-node",
            "--drivername=secrets-store.csi.k8s.io",
        ])
        .arg(format!("--provider-volume={}", providers.display()))
        .arg(format!(
            "--additional-provider-volume-paths={}",
            providers.display()
        ))
        .arg(format!("--metrics-addr=127.0.0.1:{}", free_port()))
        .env("KUBECONFIG", kubeconfig);
    cmd
}

/// A Secrets Manager `PutSecretValue` of secret `name` as EventBridge
/// delivers it from CloudTrail (the fields the controller reads).
pub fn put_secret_value_event(name: &str) -> String {
    serde_json::json!({
        "version": "0",
        "id": format!("evt-{name}"),
        "detail-type": "AWS API Call via CloudTrail",
        "source": "aws.secretsmanager",
        "account": "123456789012",
        "time": "2026-12-07T20:00:00Z",
        "region": REGION,
        "resources": [],
        "detail": {
            "eventSource": "secretsmanager.amazonaws.com",
            "eventName": "PutSecretValue",
            "awsRegion": REGION,
            "requestParameters": {"secretId": name},
            "responseElements": null
        }
    })
    .to_string()
}

/// Puts `bodies` on `queue`, ten to a call (SQS's most), the calls at once
/// (as EventBridge delivers a burst).
pub async fn send_messages(queue: &str, bodies: &[String]) {
    let sends = bodies.chunks(10).enumerate().map(|(c, chunk)| {
        let entries: Vec<_> = chunk
            .iter()
            .enumerate()
            .map(|(k, body)| {
                aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                    .id(format!("{c}-{k}"))
                    .message_body(body)
                    .build()
                    .unwrap()
            })
            .collect();
        moto()
            .sqs()
            .send_message_batch()
            .queue_url(queue)
            .set_entries(Some(entries))
            .send()
    });
    for r in futures::future::join_all(sends).await {
        r.unwrap();
    }
}
