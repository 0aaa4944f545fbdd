use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use crate::cluster::Cluster;
use crate::csi::{
    self, CsiListener, Endpoint, Health, IdentityService, NodeService, Registration,
    RegistrationVerdict,
};
use crate::fetch::{Fetcher, RateBudget, RateSetting};
use crate::http_endpoint::HttpLimits;
use crate::identity::{AgentEndpoints, Identities, PodIdentityAgent};
use crate::metrics::{self, Metrics};
use crate::publish::{PublishConfig, Publisher};
use crate::state::VolumeStore;
use crate::volume::{self, TmpfsOptions, VolumeBudget};

/// The CSI node server (what the DaemonSet runs).
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// CSI socket: unix:///path/csi.sock
    #[arg(long, env = "CSI_ENDPOINT", default_value = "unix:///csi/csi.sock")]
    pub endpoint: Endpoint,
    /// This node's name (the DaemonSet passes spec.nodeName).
    #[arg(long, env = "NODE_ID")]
    pub node_id: String,
    /// The CSI driver name, as in the CSIDriver object and pod volumes.
    #[arg(
        long,
        env = "DRIVER_NAME",
        default_value = "secrets-store.aws-secrets-csi.io"
    )]
    pub driver_name: String,
    /// Size cap of each volume's tmpfs (Ki, Mi, Gi suffixes); also the most
    /// a class may render for one volume.
    #[arg(long, env = "TMPFS_SIZE", default_value = "16Mi", value_parser = parse_size)]
    pub tmpfs_size: u64,
    /// The most bytes all volumes on the node may hold together (Ki, Mi, Gi
    /// suffixes), counted in tmpfs pages. The kernel charges a tmpfs's
    /// pages to the driver's memory cgroup: past its limit the driver is
    /// killed. A publish that would exceed this is refused
    /// (ResourceExhausted, retried by kubelet) and a refresh keeps the old
    /// files. Unset: the driver's cgroup v2 `memory.max` minus 64Mi for the
    /// driver itself (at least a quarter of the limit), else 512Mi.
    #[arg(long, env = "MAX_NODE_VOLUME_BYTES", value_parser = parse_size)]
    pub max_node_volume_bytes: Option<u64>,
    /// The most files one volume may hold (whole values and jmesPath files);
    /// a class asking for more is refused before anything is fetched.
    #[arg(long, env = "MAX_FILES_PER_VOLUME", default_value_t = 2048)]
    pub max_files_per_volume: usize,
    /// How long a publish may take before it is abandoned and cleaned up;
    /// below kubelet's 2-minute deadline.
    #[arg(long, env = "PUBLISH_TIMEOUT", default_value = "100s", value_parser = humantime::parse_duration)]
    pub publish_timeout: Duration,
    /// How often a mounted volume is checked for changes, unless its class
    /// sets `refreshInterval`. Checks happen on kubelet's republish calls
    /// (every 60-90 s with requiresRepublish: true).
    #[arg(long, env = "REFRESH_INTERVAL", default_value = "2m", value_parser = humantime::parse_duration)]
    pub refresh_interval: Duration,
    /// kubelet's root directory; only pod volume directories below it are
    /// ever mounted or removed.
    #[arg(long, env = "KUBELET_DIR", default_value = "/var/lib/kubelet")]
    pub kubelet_dir: PathBuf,
    /// Where the state of published volumes is kept across restarts.
    #[arg(long, env = "STATE_DIR", default_value = "/run/aws-secrets-csi")]
    pub state_dir: PathBuf,
    /// Address of the Prometheus metrics endpoint (/metrics, /healthz),
    /// IP:PORT (a bare IPv6 address is fine). Loopback unless told: the
    /// endpoint has no authentication, so the DaemonSet names the pod's own
    /// IP, and only a deliberate 0.0.0.0 listens on every address.
    #[arg(long, env = "METRICS_ADDR", default_value = "127.0.0.1:8095", value_parser = parse_listen_addr)]
    pub metrics_addr: SocketAddr,
    /// Keep the Kubernetes Secrets a class lists in `secretObjects` in sync
    /// with its files (needs the RBAC of deploy/rbac-secret-sync.yaml).
    #[arg(long, env = "SYNC_SECRETS")]
    pub sync_secrets: bool,
    /// The EKS Pod Identity agent's IPv4 address.
    #[arg(
        long,
        env = "POD_IDENTITY_AGENT_IPV4",
        default_value = "http://169.254.170.23/v1/credentials"
    )]
    pub pod_identity_agent_ipv4: String,
    /// The EKS Pod Identity agent's IPv6 address.
    #[arg(
        long,
        env = "POD_IDENTITY_AGENT_IPV6",
        default_value = "http://[fd00:ec2::23]/v1/credentials"
    )]
    pub pod_identity_agent_ipv6: String,
    /// Timeout of one call to the Pod Identity agent.
    #[arg(long, env = "POD_IDENTITY_TIMEOUT", default_value = "2s", value_parser = humantime::parse_duration)]
    pub pod_identity_timeout: Duration,
    /// How long an unreachable Pod Identity agent is retried (a new node's
    /// agent may start after the driver).
    #[arg(long, env = "POD_IDENTITY_RETRY_FOR", default_value = "30s", value_parser = humantime::parse_duration)]
    pub pod_identity_retry_for: Duration,
    /// The node's budget for one AWS API, in calls per second (burst: one
    /// second's worth), e.g. `--aws-rate-limit GetParameters=5`; repeat for
    /// several. Defaults: GetSecretValue=1000, BatchGetSecretValue=10,
    /// GetParameters=10 (a tenth or a quarter of the account's quota), each
    /// bursting to one second of the account's quota (10000, 100, 40).
    #[arg(
        long = "aws-rate-limit",
        value_name = "API=RATE",
        env = "AWS_RATE_LIMITS",
        value_delimiter = ','
    )]
    pub aws_rate_limits: Vec<RateSetting>,
    /// Register with kubelet without node-driver-registrar: the CSI socket's
    /// path on the host, as kubelet must dial it (e.g.
    /// /var/lib/kubelet/plugins/<driver>/csi.sock). Unset: a sidecar
    /// registers the driver.
    #[arg(long, env = "KUBELET_REGISTRATION_PATH")]
    pub kubelet_registration_path: Option<PathBuf>,
    /// kubelet's plugins_registry directory, as this process sees it; the
    /// registration socket `<driver>-reg.sock` is served there.
    #[arg(long, env = "REGISTRATION_DIR", default_value = "/registration")]
    pub registration_dir: PathBuf,
    /// Address of the liveness endpoint (/healthz: the CSI socket answers
    /// and kubelet has not refused the registration), IP:PORT; unset: none
    /// (a livenessprobe sidecar probes the CSI socket).
    #[arg(long, env = "HEALTH_ADDR", value_parser = parse_listen_addr)]
    pub health_addr: Option<SocketAddr>,
    /// Connections the metrics endpoint, and likewise the health endpoint,
    /// hold open at once; more are closed as soon as they come. Far below
    /// the open-file limit, so that kubelet can always reach the CSI socket.
    #[arg(long, env = "HTTP_MAX_CONNECTIONS", default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub http_max_connections: u16,
    /// How long a client of the metrics and health endpoints has to send a
    /// request's headers, and how long a kept-alive connection may stay
    /// idle; any connection is closed after 60 s.
    #[arg(long, env = "HTTP_HEADER_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub http_header_timeout: Duration,
    /// The controller's record of AWS changes, NAMESPACE/NAME (a ConfigMap;
    /// the controller writes it when it reads an events queue): the volumes
    /// that read a changed object are refreshed at once, with the
    /// credentials held for their pod. Unset: volumes refresh at their
    /// interval only.
    #[arg(long, env = "CHANGES_CONFIGMAP", value_parser = parse_object_ref)]
    pub changes_configmap: Option<(String, String)>,
}

/// NAMESPACE/NAME, both DNS names.
fn parse_object_ref(s: &str) -> Result<(String, String), String> {
    let (ns, name) = s
        .split_once('/')
        .ok_or_else(|| format!("{s:?} is not NAMESPACE/NAME"))?;
    let dns = |part: &str| {
        !part.is_empty()
            && part.len() <= 253
            && part
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
    };
    if !dns(ns) || !dns(name) {
        return Err(format!(
            "{s:?}: namespace and name must be lowercase DNS names"
        ));
    }
    Ok((ns.to_owned(), name.to_owned()))
}

impl ServeArgs {
    fn http_limits(&self) -> HttpLimits {
        HttpLimits {
            max_connections: usize::from(self.http_max_connections),
            header_timeout: self.http_header_timeout,
            ..Default::default()
        }
    }
}

pub async fn serve(args: &ServeArgs) -> anyhow::Result<()> {
    require_mount_privilege()?;
    raise_open_files_limit();
    let sdk = super::aws_config().await;
    let kube = super::kube_client().await?;
    let volumes = Arc::new(
        VolumeStore::open(&args.state_dir)
            .map_err(|e| anyhow::anyhow!("cannot open the state directory: {e}"))?,
    );
    let (limit, from) = node_volume_budget(args.max_node_volume_bytes, own_memory_max());
    let budget = Arc::new(VolumeBudget::new(limit));
    recover(&volumes, &budget, &args.kubelet_dir).await;
    let metrics = Arc::new(Metrics::new().with_volumes(volumes.clone()));
    let config = PublishConfig {
        default_region: sdk.region().map(|r| r.to_string()),
        tmpfs: TmpfsOptions {
            size_bytes: args.tmpfs_size,
            ..Default::default()
        },
        deadline: args.publish_timeout,
        refresh_interval: args.refresh_interval,
        node_name: Some(args.node_id.clone()),
        sync_secrets: args.sync_secrets,
        max_files: args.max_files_per_volume,
        kubelet_dir: args.kubelet_dir.clone(),
    };
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        driver = %args.driver_name,
        node = %args.node_id,
        region = config.default_region.as_deref().unwrap_or("(from each class)"),
        volumes = volumes.len(),
        volume_bytes = budget.held(),
        max_node_volume_bytes = limit,
        budget_from = from,
        "starting"
    );
    let publisher = Publisher::new(
        Cluster::watching(kube.clone(), args.node_id.clone()),
        Identities::new(
            sdk.clone(),
            PodIdentityAgent::new(
                AgentEndpoints {
                    ipv4: args.pod_identity_agent_ipv4.clone(),
                    ipv6: args.pod_identity_agent_ipv6.clone(),
                },
                args.pod_identity_timeout,
                args.pod_identity_retry_for,
            ),
            metrics.clone(),
        ),
        Fetcher::new(
            sdk,
            metrics.clone(),
            Arc::new(RateBudget::new(&args.aws_rate_limits)),
        ),
        config,
        volumes,
        budget,
        metrics.clone(),
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let metrics_server = spawn_logged(
        "metrics endpoint",
        metrics::serve(args.metrics_addr, metrics.clone(), args.http_limits(), {
            let mut stop = stop_rx.clone();
            async move {
                let _ = stop.wait_for(|s| *s).await;
            }
        }),
    );
    let ready = Arc::new(AtomicBool::new(true));
    // Bound before kubelet learns of it: kubelet calls NodeGetInfo as soon as
    // it registers the driver.
    let socket = CsiListener::bind(&args.endpoint)?;
    let verdict = Arc::new(RegistrationVerdict::default());
    let registration = args.kubelet_registration_path.as_ref().map(|host_path| {
        spawn_logged(
            "kubelet registration",
            csi::serve_registration(
                Registration {
                    socket: Registration::socket_in(&args.registration_dir, &args.driver_name),
                    driver_name: args.driver_name.clone(),
                    csi_endpoint_on_host: host_path.clone(),
                },
                verdict.clone(),
                stop_rx.clone(),
            ),
        )
    });
    let health = args.health_addr.map(|addr| {
        spawn_logged(
            "health endpoint",
            csi::serve_health(
                addr,
                Health {
                    csi_socket: args.endpoint.path().to_path_buf(),
                    registration: args
                        .kubelet_registration_path
                        .as_ref()
                        .map(|_| verdict.clone()),
                },
                args.http_limits(),
                stop_rx.clone(),
            ),
        )
    });
    let publisher = Arc::new(publisher);
    // The API server's token keys, fetched before the first pod needs them.
    tokio::spawn({
        let publisher = publisher.clone();
        async move { publisher.prepare().await }
    });
    // Told of AWS changes by the controller's record (docs/events.md).
    if let Some((namespace, name)) = &args.changes_configmap {
        tracing::info!(configmap = %format!("{namespace}/{name}"), "watching the record of AWS changes");
        let news = crate::cluster::change_record::watch(kube.clone(), namespace, name);
        let (publisher, metrics) = (publisher.clone(), metrics.clone());
        tokio::spawn(async move {
            futures::pin_mut!(news);
            while let Some(news) = futures::StreamExt::next(&mut news).await {
                let outcome = publisher.told(news).await;
                tracing::debug!(?outcome, "changes told");
                metrics.told(outcome);
            }
        });
    }
    tokio::spawn({
        let publisher = publisher.clone();
        async move {
            let mut every = tokio::time::interval(Duration::from_secs(60));
            loop {
                every.tick().await;
                publisher.sweep();
            }
        }
    });
    let result = csi::serve(
        socket,
        IdentityService::new(args.driver_name.clone(), ready),
        NodeService::new(
            args.node_id.clone(),
            args.kubelet_dir.clone(),
            publisher,
            metrics,
        ),
        shutdown_signal(),
    )
    .await;
    let _ = stop_tx.send(true);
    for task in [Some(metrics_server), registration, health]
        .into_iter()
        .flatten()
    {
        let _ = task.await;
    }
    result?;
    tracing::info!("stopped");
    Ok(())
}

/// A server beside the CSI socket; its failure is logged when it happens
/// (the node service goes on: mounts matter more).
pub(crate) fn spawn_logged(
    what: &'static str,
    server: impl std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if let Err(e) = server.await {
            tracing::error!(error = %e, "{what} failed");
        }
    })
}

/// Mounting tmpfs needs CAP_SYS_ADMIN; without it every publish would fail,
/// so say so at start, plainly.
fn require_mount_privilege() -> anyhow::Result<()> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| anyhow::anyhow!("cannot read /proc/self/status: {e}"))?;
    let effective = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0);
    const CAP_SYS_ADMIN: u32 = 21;
    if effective & (1 << CAP_SYS_ADMIN) == 0 {
        anyhow::bail!(
            "the driver needs CAP_SYS_ADMIN to mount the tmpfs of each volume; run its container privileged (see deploy/daemonset.yaml)"
        );
    }
    Ok(())
}

/// The open-file soft limit raised to the hard one: a container runtime may
/// start the driver at 1,024 (containerd 2) while each pod's volume, each
/// kubelet connection and each AWS connection takes a descriptor. The HTTP
/// endpoints' caps keep their share far below it.
fn raise_open_files_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => tracing::info!(from = soft, to = hard, "raised the open-file limit"),
            Err(e) => tracing::warn!(soft, hard, error = %e, "cannot raise the open-file limit"),
        },
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot read the open-file limit"),
    }
}

/// The driver's own memory needs beside its volumes: about 20 MiB at rest,
/// plus the values being rendered and the watch caches.
const DRIVER_HEADROOM: u64 = 64 << 20;

/// The node's volume budget when no flag sets it, without a memory limit.
const UNLIMITED_DEFAULT_BUDGET: u64 = 512 << 20;

/// The node's volume budget and where it came from: the flag, else the
/// driver's memory limit minus its headroom (at least a quarter of the
/// limit, so a small limit still serves some volumes), else a fixed size.
fn node_volume_budget(flag: Option<u64>, memory_max: Option<u64>) -> (u64, &'static str) {
    match (flag, memory_max) {
        (Some(bytes), _) => (bytes, "--max-node-volume-bytes"),
        (None, Some(max)) => (
            max.saturating_sub(DRIVER_HEADROOM).max(max / 4),
            "the container's memory.max",
        ),
        (None, None) => (UNLIMITED_DEFAULT_BUDGET, "the default (no memory limit)"),
    }
}

/// The memory limit of the driver's own cgroup (v2), when it has one.
fn own_memory_max() -> Option<u64> {
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = cgroup_v2_path(&cgroups)?;
    let file = std::path::Path::new("/sys/fs/cgroup")
        .join(path.trim_start_matches('/'))
        .join("memory.max");
    parse_memory_max(&std::fs::read_to_string(file).ok()?)
}

/// The path of the unified (v2) hierarchy in `/proc/self/cgroup`.
fn cgroup_v2_path(text: &str) -> Option<&str> {
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .filter(|p| !p.split('/').any(|c| c == ".."))
}

/// `memory.max`: a number of bytes, or `max` for none.
fn parse_memory_max(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// After a restart: volumes whose target is no longer mounted are forgotten;
/// the others are repaired if a write was interrupted (a kill mid-swap),
/// and what their files take is counted against the node's budget again.
async fn recover(
    volumes: &Arc<VolumeStore>,
    budget: &Arc<VolumeBudget>,
    kubelet_dir: &std::path::Path,
) {
    let store = volumes.clone();
    let budget = budget.clone();
    let root = kubelet_dir.to_path_buf();
    let report = tokio::task::spawn_blocking(move || {
        let dropped = store.retain(|r| {
            volume::mounted(&root, &r.target).is_ok_and(|m| m == volume::Mounted::Ours)
        });
        for record in store.all() {
            if let Err(e) = volume::tidy(&root, &record.target) {
                tracing::warn!(volume_id = %record.volume_id, error = %e, "cannot repair a volume");
            }
            match volume::held_bytes(&root, &record.target) {
                Ok(bytes) => budget.set(&record.volume_id, bytes),
                Err(e) => {
                    tracing::warn!(volume_id = %record.volume_id, error = %e, "cannot measure a volume")
                }
            }
        }
        (store.len(), dropped.len())
    })
    .await;
    if let Ok((kept, dropped)) = report
        && (kept > 0 || dropped > 0)
    {
        tracing::info!(
            kept,
            dropped,
            "recovered published volumes from the state directory"
        );
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
}

/// `IP:PORT`, where IP may be a bare IPv6 address (`fd00::5:8095`), as the
/// DaemonSet writes `$(POD_IP):8095` for either family.
pub fn parse_listen_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = s.parse() {
        return Ok(addr);
    }
    let (ip, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("{s:?} is not IP:PORT"))?;
    let ip: std::net::IpAddr = ip
        .trim_matches(['[', ']'])
        .parse()
        .map_err(|_| format!("{s:?} is not IP:PORT"))?;
    let port: u16 = port.parse().map_err(|_| format!("{s:?}: invalid port"))?;
    Ok(SocketAddr::new(ip, port))
}

/// A size such as `16Mi`, `512Ki`, `1Gi` or plain bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = digits.parse().map_err(|_| format!("invalid size {s:?}"))?;
    let factor = match unit {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        _ => return Err(format!("invalid size unit in {s:?}: use Ki, Mi or Gi")),
    };
    n.checked_mul(factor)
        .filter(|&v| v > 0)
        .ok_or_else(|| format!("invalid size {s:?}"))
}

#[cfg(test)]
mod tests {
    use super::{
        cgroup_v2_path, node_volume_budget, parse_listen_addr, parse_memory_max, parse_size,
    };

    #[test]
    fn the_volume_budget_follows_the_memory_limit() {
        const MI: u64 = 1 << 20;
        assert_eq!(
            node_volume_budget(Some(MI), Some(128 * MI)),
            (MI, "--max-node-volume-bytes")
        );
        // The chart's 128Mi limit: half for volumes, half for the driver.
        assert_eq!(node_volume_budget(None, Some(128 * MI)).0, 64 * MI);
        assert_eq!(node_volume_budget(None, Some(1024 * MI)).0, 960 * MI);
        assert_eq!(node_volume_budget(None, Some(64 * MI)).0, 16 * MI);
        assert_eq!(node_volume_budget(None, None).0, 512 * MI);
        assert_eq!(parse_memory_max("134217728\n"), Some(128 * MI));
        assert_eq!(parse_memory_max("max\n"), None);
        let cgroups = "12:cpu:/x\n0::/kubepods.slice/pod1/cri-abc\n";
        assert_eq!(
            cgroup_v2_path(cgroups),
            Some("/kubepods.slice/pod1/cri-abc")
        );
        assert_eq!(cgroup_v2_path("0::/\n"), Some("/"));
        assert_eq!(cgroup_v2_path("0::/../other\n"), None);
        assert_eq!(cgroup_v2_path("4:memory:/x\n"), None);
    }

    #[test]
    fn listen_addresses_of_either_family() {
        assert_eq!(
            parse_listen_addr("10.0.0.5:8095").unwrap().to_string(),
            "10.0.0.5:8095"
        );
        assert_eq!(
            parse_listen_addr("fd00::5:8095").unwrap().to_string(),
            "[fd00::5]:8095"
        );
        assert_eq!(
            parse_listen_addr("[fd00::5]:8095").unwrap().to_string(),
            "[fd00::5]:8095"
        );
        assert!(parse_listen_addr("localhost:8095").is_err());
        assert!(parse_listen_addr("10.0.0.5").is_err());
    }

    #[test]
    fn every_flag_of_serve_can_come_from_the_environment() {
        use clap::CommandFactory;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            serve: super::ServeArgs,
        }
        for arg in Cli::command().get_arguments() {
            if arg.get_long().is_some() {
                assert!(
                    arg.get_env().is_some(),
                    "--{} has no environment variable",
                    arg.get_id()
                );
            }
        }
    }

    #[test]
    fn metrics_listen_on_loopback_unless_told() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            serve: super::ServeArgs,
        }
        let cli = Cli::try_parse_from(["x", "--node-id", "n"]).unwrap();
        assert!(cli.serve.metrics_addr.ip().is_loopback());
        assert_eq!(cli.serve.metrics_addr.port(), 8095);
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("16Mi"), Ok(16 << 20));
        assert_eq!(parse_size("512Ki"), Ok(512 << 10));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("0").is_err());
        assert!(parse_size("1MB").is_err());
        assert!(parse_size("Mi").is_err());
    }
}
