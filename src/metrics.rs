//! Prometheus metrics. The established names of the Secrets Store CSI Driver
//! (`node_publish_total`, `rotation_reconcile_total`, ...) with their labels,
//! plus what it lacks: AWS calls by API and outcome, and how old each mounted
//! volume's content is. Labels never carry a value or a token.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::state::VolumeStore;

mod external_secrets;
pub use external_secrets::{Exists, ExternalSecretMetrics, SyncOutcome};

const PROVIDER: &str = "aws";
const OS: &str = "linux";

/// How an object a volume asked for was served: fetched now, joined to a
/// fetch in flight, or taken from an earlier fetch (a label of
/// `object_requests`; defined here so that metrics depends on no step).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    Fetched,
    Joined,
    Reused,
}

impl Served {
    pub fn label(self) -> &'static str {
        match self {
            Served::Fetched => "fetched",
            Served::Joined => "joined",
            Served::Reused => "reused",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderLabels {
    provider: &'static str,
    os_type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    provider: &'static str,
    error_type: &'static str,
    os_type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OsLabels {
    os_type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RotationLabels {
    provider: &'static str,
    os_type: &'static str,
    rotated: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RotationErrorLabels {
    provider: &'static str,
    error_type: &'static str,
    os_type: &'static str,
    rotated: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServedLabels {
    served: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SavedLabels {
    by: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AwsCallLabels {
    api: &'static str,
    outcome: &'static str,
}

pub struct Metrics {
    registry: Registry,
    node_publish: Family<ProviderLabels, Counter>,
    node_publish_error: Family<ErrorLabels, Counter>,
    node_unpublish: Family<OsLabels, Counter>,
    node_unpublish_error: Family<OsLabels, Counter>,
    rotation_reconcile: Family<RotationLabels, Counter>,
    rotation_reconcile_error: Family<RotationErrorLabels, Counter>,
    rotation_reconcile_duration: Family<OsLabels, Histogram>,
    aws_calls: Family<AwsCallLabels, Counter>,
    object_requests: Family<ServedLabels, Counter>,
    calls_saved: Family<SavedLabels, Counter>,
    external_secrets: Option<ExternalSecretMetrics>,
    sync_k8s_secret: Family<ProviderLabels, Counter>,
    k8s_secret_duration: Family<OsLabels, Histogram>,
    class_refresh_failures: Family<ClassFailureLabels, Counter>,
    aws_events: Family<EventLabels, Counter>,
    told_volumes: Family<EventLabels, Counter>,
    failing_classes: std::sync::Mutex<std::collections::HashSet<(String, String)>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let node_publish = Family::default();
        let node_publish_error = Family::default();
        let node_unpublish = Family::default();
        let node_unpublish_error = Family::default();
        let rotation_reconcile = Family::default();
        let rotation_reconcile_error = Family::default();
        // 0.1 s .. ~100 s, as the upstream driver's buckets.
        let rotation_reconcile_duration =
            Family::<OsLabels, Histogram>::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.1, 2.0, 11))
            });
        let aws_calls = Family::default();
        let object_requests = Family::default();
        // Both kinds from zero: a rate over a counter that appears at its
        // first increment misses that increment (and a dashboard finds no
        // series until something was saved).
        let calls_saved = Family::<SavedLabels, Counter>::default();
        for by in ["sharing", "batching"] {
            drop(calls_saved.get_or_create(&SavedLabels { by }));
        }
        let sync_k8s_secret = Family::default();
        let k8s_secret_duration = Family::<OsLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.1, 2.0, 11))
        });
        registry.register(
            "node_publish",
            "Successful NodePublishVolume calls",
            node_publish.clone(),
        );
        registry.register(
            "node_publish_error",
            "Failed NodePublishVolume calls",
            node_publish_error.clone(),
        );
        registry.register(
            "node_unpublish",
            "Successful NodeUnpublishVolume calls",
            node_unpublish.clone(),
        );
        registry.register(
            "node_unpublish_error",
            "Failed NodeUnpublishVolume calls",
            node_unpublish_error.clone(),
        );
        registry.register(
            "rotation_reconcile",
            "Refreshes of mounted volumes; rotated=true when the content changed",
            rotation_reconcile.clone(),
        );
        registry.register(
            "rotation_reconcile_error",
            "Failed refreshes of mounted volumes (the old files were kept)",
            rotation_reconcile_error.clone(),
        );
        registry.register(
            "rotation_reconcile_duration_sec",
            "Duration of refreshes of mounted volumes in seconds",
            rotation_reconcile_duration.clone(),
        );
        registry.register(
            "aws_api_calls",
            "Calls to AWS APIs by API and outcome",
            aws_calls.clone(),
        );
        registry.register(
            "aws_object_requests",
            "Objects asked for by volumes, by how they were served: fetched (a new AWS call), joined (a call under way for another pod), reused (a value fetched for another pod within the refresh interval)",
            object_requests.clone(),
        );
        registry.register(
            "aws_calls_saved",
            "AWS calls not made: by=sharing (a value reused or a call joined), by=batching (the objects of one batch call beyond the first)",
            calls_saved.clone(),
        );
        registry.register(
            "sync_k8s_secret",
            "Kubernetes Secrets synced from secretObjects (written, or found up to date)",
            sync_k8s_secret.clone(),
        );
        registry.register(
            "k8s_secret_duration_sec",
            "Duration of the sync of a volume's Secrets in seconds",
            k8s_secret_duration.clone(),
        );
        let class_refresh_failures = Family::default();
        registry.register(
            "secretproviderclass_refresh_failures",
            "Failed refreshes of the class's mounted volumes on this node, by cause (the old files were kept)",
            class_refresh_failures.clone(),
        );
        let aws_events = Family::default();
        registry.register(
            "aws_events",
            "AWS change events read from the events queue, by outcome: applied (ExternalSecrets refreshed), unread (nobody reads the object: no AWS call), unrelated, invalid, queue_error (the queue could not be read), record_error (the change record for the nodes could not be written: the messages come back)",
            aws_events.clone(),
        );
        let told_volumes = Family::default();
        registry.register(
            "aws_change_volumes",
            "Volumes on this node that read an object AWS reported changed, by outcome: refreshed (fetched at once; swapped counts those whose files changed too), failed, deferred (to the pod's next republish: no credentials held, or the record lost changes)",
            told_volumes.clone(),
        );
        Metrics {
            registry,
            class_refresh_failures,
            aws_events,
            told_volumes,
            failing_classes: Default::default(),
            sync_k8s_secret,
            k8s_secret_duration,
            node_publish,
            node_publish_error,
            node_unpublish,
            node_unpublish_error,
            rotation_reconcile,
            rotation_reconcile_error,
            rotation_reconcile_duration,
            aws_calls,
            object_requests,
            calls_saved,
            external_secrets: None,
        }
    }

    /// Adds External Secrets Operator's metrics (the controller's), which
    /// the returned handle records; AWS calls are counted under their
    /// provider and call names too.
    pub fn with_external_secrets(mut self) -> (Self, ExternalSecretMetrics) {
        let es = ExternalSecretMetrics::default();
        self.registry.register_collector(Box::new(es.clone()));
        self.external_secrets = Some(es.clone());
        (self, es)
    }

    /// Adds the per-volume content age, read from `store` at each scrape.
    pub fn with_volumes(mut self, store: Arc<VolumeStore>) -> Self {
        self.registry
            .register_collector(Box::new(ClassFreshness(store)));
        self
    }

    pub fn publish_ok(&self) {
        self.node_publish
            .get_or_create(&ProviderLabels {
                provider: PROVIDER,
                os_type: OS,
            })
            .inc();
    }

    pub fn publish_error(&self, error_type: &'static str) {
        self.node_publish_error
            .get_or_create(&ErrorLabels {
                provider: PROVIDER,
                error_type,
                os_type: OS,
            })
            .inc();
    }

    pub fn unpublish(&self, ok: bool) {
        let family = if ok {
            &self.node_unpublish
        } else {
            &self.node_unpublish_error
        };
        family.get_or_create(&OsLabels { os_type: OS }).inc();
    }

    pub fn rotation(&self, rotated: bool, seconds: f64) {
        self.rotation_reconcile
            .get_or_create(&RotationLabels {
                provider: PROVIDER,
                os_type: OS,
                rotated: bool_label(rotated),
            })
            .inc();
        self.rotation_reconcile_duration
            .get_or_create(&OsLabels { os_type: OS })
            .observe(seconds);
    }

    pub fn rotation_error(&self, error_type: &'static str, seconds: f64) {
        self.rotation_reconcile_error
            .get_or_create(&RotationErrorLabels {
                provider: PROVIDER,
                error_type,
                os_type: OS,
                rotated: "false",
            })
            .inc();
        self.rotation_reconcile_duration
            .get_or_create(&OsLabels { os_type: OS })
            .observe(seconds);
    }

    /// What a change told to the node did to its volumes.
    pub fn told(&self, outcome: crate::publish::ToldOutcome) {
        for (label, n) in [
            ("refreshed", outcome.refreshed),
            ("swapped", outcome.swapped),
            ("failed", outcome.failed),
            ("deferred", outcome.deferred),
        ] {
            if n > 0 {
                self.told_volumes
                    .get_or_create(&EventLabels { outcome: label })
                    .inc_by(n as u64);
            }
        }
    }

    /// One message of the events queue, or a failed read of the queue.
    pub fn aws_event(&self, outcome: &'static str) {
        self.aws_events
            .get_or_create(&EventLabels { outcome })
            .inc();
    }

    /// A failed refresh of a volume of `namespace`/`class`, by cause (the
    /// error type: a short fixed word, never a value).
    pub fn refresh_failed(&self, namespace: &str, class: &str, cause: &'static str) {
        let mut labels = ClassFailureLabels {
            namespace: label_text(namespace),
            class: label_text(class),
            cause,
        };
        {
            let mut seen = self
                .failing_classes
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let key = (labels.namespace.clone(), labels.class.clone());
            if !seen.contains(&key) {
                if seen.len() >= MAX_FAILING_CLASSES {
                    labels.namespace = "(other)".into();
                    labels.class = "(other)".into();
                } else {
                    seen.insert(key);
                }
            }
        }
        self.class_refresh_failures.get_or_create(&labels).inc();
    }

    /// One sync of a volume's Secrets: how many were synced, how long it took.
    pub fn secrets_synced(&self, count: u64, seconds: f64) {
        self.sync_k8s_secret
            .get_or_create(&ProviderLabels {
                provider: PROVIDER,
                os_type: OS,
            })
            .inc_by(count);
        self.k8s_secret_duration
            .get_or_create(&OsLabels { os_type: OS })
            .observe(seconds);
    }

    /// How an object a volume asked for was served.
    pub fn shared_value(&self, served: Served) {
        self.object_requests
            .get_or_create(&ServedLabels {
                served: served.label(),
            })
            .inc();
        if served != Served::Fetched {
            self.calls_saved
                .get_or_create(&SavedLabels { by: "sharing" })
                .inc();
        }
    }

    /// One batch call that fetched `objects` objects asked for: each
    /// beyond the first would have been a call of its own.
    pub fn batched(&self, objects: usize) {
        if objects > 1 {
            self.calls_saved
                .get_or_create(&SavedLabels { by: "batching" })
                .inc_by(objects as u64 - 1);
        }
    }

    /// One AWS API call; `outcome` is `ok` or a failure class.
    pub fn aws_call(&self, api: &'static str, outcome: &'static str) {
        self.aws_calls
            .get_or_create(&AwsCallLabels { api, outcome })
            .inc();
        if let Some(es) = &self.external_secrets {
            es.provider_call(api, outcome);
        }
    }

    /// The text exposition (OpenMetrics).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

fn bool_label(b: bool) -> &'static str {
    if b { "true" } else { "false" }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClassLabels {
    namespace: String,
    class: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClassFailureLabels {
    namespace: String,
    class: String,
    cause: &'static str,
}

/// Classes whose refresh failures are counted apart; past this, failures
/// go to one `class="(other)"` series, so that no author of classes can
/// grow the scrape without end.
const MAX_FAILING_CLASSES: usize = 1000;

/// A label value from a state record (a file on the node: its strings are
/// not to be trusted). The encoder escapes `\\`, `"` and newline; other
/// control characters (a carriage return, which some readers take for a line
/// break) become U+FFFD.
fn label_text(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() && c != '\n' {
                '\u{FFFD}'
            } else {
                c
            }
        })
        .collect()
}

/// The staleness of each SecretProviderClass mounted on the node, worst
/// volume first, one series per class (never per pod: a label set bounded
/// by the classes, and no pod name in a label):
/// `secretproviderclass_seconds_since_refresh` (since the oldest last
/// successful fetch among its volumes; it grows while refreshes fail),
/// `secretproviderclass_served_version_age_seconds` (since AWS made the
/// oldest version its volumes serve) and `secretproviderclass_volumes`.
#[derive(Debug)]
struct ClassFreshness(Arc<VolumeStore>);

#[derive(Default)]
struct ClassFigures {
    oldest_fetch_ms: u64,
    oldest_version_ms: Option<u64>,
    volumes: u64,
}

impl Collector for ClassFreshness {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let mut classes: std::collections::BTreeMap<(String, String), ClassFigures> =
            Default::default();
        for record in self.0.all() {
            let figures = classes
                .entry((label_text(&record.namespace), label_text(&record.class)))
                .or_insert(ClassFigures {
                    oldest_fetch_ms: u64::MAX,
                    ..Default::default()
                });
            figures.volumes += 1;
            figures.oldest_fetch_ms = figures.oldest_fetch_ms.min(record.refresh.fetched_at_ms);
            if let Some(created) = record.versions.iter().filter_map(|v| v.created_ms).min() {
                figures.oldest_version_ms = Some(
                    figures
                        .oldest_version_ms
                        .map_or(created, |o| o.min(created)),
                );
            }
        }
        let seconds = |ms: u64| now_ms.saturating_sub(ms) as f64 / 1000.0;
        let labels = |(namespace, class): &(String, String)| ClassLabels {
            namespace: namespace.clone(),
            class: class.clone(),
        };
        let mut metric = encoder.encode_descriptor(
            "secretproviderclass_seconds_since_refresh",
            "Seconds since the last successful fetch of the class's least recently refreshed volume on this node",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for (key, f) in &classes {
            ConstGauge::new(seconds(f.oldest_fetch_ms))
                .encode(metric.encode_family(&labels(key))?)?;
        }
        let mut metric = encoder.encode_descriptor(
            "secretproviderclass_served_version_age_seconds",
            "Seconds since AWS made the oldest secret version the class's volumes serve on this node",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for (key, f) in &classes {
            if let Some(ms) = f.oldest_version_ms {
                ConstGauge::new(seconds(ms)).encode(metric.encode_family(&labels(key))?)?;
            }
        }
        let mut metric = encoder.encode_descriptor(
            "secretproviderclass_volumes",
            "Volumes of the class mounted on this node",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for (key, f) in &classes {
            ConstGauge::new(f.volumes as i64).encode(metric.encode_family(&labels(key))?)?;
        }
        Ok(())
    }
}

/// Serves `/metrics` and `/healthz` within `limits` until `shutdown`
/// resolves.
pub async fn serve(
    addr: std::net::SocketAddr,
    metrics: Arc<Metrics>,
    limits: crate::http_endpoint::HttpLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    use axum::routing::get;
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        metrics.encode(),
                    )
                }
            }),
        )
        .route("/healthz", get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen for metrics on {addr}: {e}"))?;
    tracing::info!(%addr, "serving metrics");
    crate::http_endpoint::serve(listener, app, limits, shutdown).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn established_names_and_labels() {
        let m = Metrics::new();
        m.publish_ok();
        m.publish_error("SecretProviderClassNotFound");
        m.unpublish(true);
        m.rotation(true, 0.2);
        m.rotation_error("AwsUnavailable", 0.1);
        m.aws_call("BatchGetSecretValue", "ok");
        m.aws_call("BatchGetSecretValue", "throttled");
        m.secrets_synced(2, 0.05);
        m.secrets_synced(1, 0.3);
        let text = m.encode();
        for line in [
            "node_publish_total{provider=\"aws\",os_type=\"linux\"} 1",
            "node_publish_error_total{provider=\"aws\",error_type=\"SecretProviderClassNotFound\",os_type=\"linux\"} 1",
            "node_unpublish_total{os_type=\"linux\"} 1",
            "rotation_reconcile_total{provider=\"aws\",os_type=\"linux\",rotated=\"true\"} 1",
            "rotation_reconcile_error_total{provider=\"aws\",error_type=\"AwsUnavailable\",os_type=\"linux\",rotated=\"false\"} 1",
            "rotation_reconcile_duration_sec_count{os_type=\"linux\"} 2",
            "aws_api_calls_total{api=\"BatchGetSecretValue\",outcome=\"ok\"} 1",
            // The upstream driver's Secret sync metrics, with its labels.
            "sync_k8s_secret_total{provider=\"aws\",os_type=\"linux\"} 3",
            "k8s_secret_duration_sec_count{os_type=\"linux\"} 2",
            "k8s_secret_duration_sec_bucket{le=\"0.1\",os_type=\"linux\"} 1",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        assert!(
            text.contains(
                "aws_api_calls_total{api=\"BatchGetSecretValue\",outcome=\"throttled\"} 1"
            )
        );
        // The node has no ExternalSecrets.
        assert!(!text.contains("externalsecret_"), "{text}");
    }

    #[test]
    fn calls_saved_by_sharing_and_batching() {
        let m = Metrics::new();
        // Both series from zero, before anything was saved.
        let text = m.encode();
        for by in ["sharing", "batching"] {
            assert!(
                text.contains(&format!("aws_calls_saved_total{{by=\"{by}\"}} 0")),
                "{text}"
            );
        }
        m.shared_value(Served::Fetched);
        m.shared_value(Served::Reused);
        m.shared_value(Served::Joined);
        m.batched(5);
        m.batched(1);
        let text = m.encode();
        assert!(
            text.contains("aws_calls_saved_total{by=\"sharing\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("aws_calls_saved_total{by=\"batching\"} 4"),
            "{text}"
        );
    }

    #[test]
    fn the_controller_counts_aws_calls_under_external_secrets_names_too() {
        let (m, _es) = Metrics::new().with_external_secrets();
        m.aws_call("GetSecretValue", "not_found");
        let text = m.encode();
        assert!(
            text.contains("aws_api_calls_total{api=\"GetSecretValue\",outcome=\"not_found\"} 1"),
            "{text}"
        );
        assert!(text.contains("externalsecret_provider_api_calls_count{provider=\"AWS/SecretsManager\",call=\"GetSecretValue\",status=\"error\"} 1"), "{text}");
    }

    /// The metrics of a node holding one volume of `namespace`/`pod`.
    fn one_volume(volume_id: &str, namespace: &str, pod: &str) -> String {
        let store = Arc::new(VolumeStore::in_memory());
        let pod = crate::request::Pod {
            namespace: namespace.into(),
            name: pod.into(),
            uid: "u".into(),
            service_account: "sa".into(),
        };
        let refresh = crate::rotation::RefreshState::mounted(
            0,
            std::time::Duration::from_secs(60),
            volume_id,
        );
        store
            .put(crate::state::VolumeRecord::new(
                volume_id,
                std::path::Path::new("/t"),
                &pod,
                "c",
                refresh,
            ))
            .unwrap();
        Metrics::new().with_volumes(store).encode()
    }

    #[test]
    fn staleness_is_listed_per_class_never_per_pod() {
        let text = one_volume("v1", "shop", "web");
        assert!(
            text.contains(
                "secretproviderclass_seconds_since_refresh{namespace=\"shop\",class=\"c\"}"
            ),
            "{text}"
        );
        assert!(
            text.contains("secretproviderclass_volumes{namespace=\"shop\",class=\"c\"} 1"),
            "{text}"
        );
        assert!(!text.contains("web") && !text.contains("v1"), "{text}");
        // No version age is known for a volume without versions.
        assert!(
            !text.contains("secretproviderclass_served_version_age_seconds{"),
            "{text}"
        );
    }

    #[test]
    fn a_class_reports_its_worst_volume() {
        let store = Arc::new(VolumeStore::in_memory());
        let now = crate::publish::now_ms();
        for (id, fetched, created) in [
            ("a", now - 50_000, Some(now - 3_600_000)),
            ("b", now - 500_000, Some(now - 60_000)),
            ("c", now, None),
        ] {
            let pod = crate::request::Pod {
                namespace: "ns".into(),
                name: format!("pod-{id}"),
                uid: id.into(),
                service_account: "sa".into(),
            };
            let mut refresh =
                crate::rotation::RefreshState::mounted(now, std::time::Duration::from_secs(60), id);
            refresh.fetched_at_ms = fetched;
            let mut record = crate::state::VolumeRecord::new(
                id,
                std::path::Path::new(&format!("/t/{id}")),
                &pod,
                "db",
                refresh,
            );
            record.versions = vec![crate::state::ServedVersion {
                object: "o".into(),
                version: Some("v".into()),
                created_ms: created,
            }];
            store.put(record).unwrap();
        }
        let text = Metrics::new().with_volumes(store).encode();
        let value = |name: &str| -> f64 {
            let line = text
                .lines()
                .find(|l| l.starts_with(name))
                .unwrap_or_else(|| panic!("{name}: {text}"));
            line.rsplit(' ').next().unwrap().parse().unwrap()
        };
        let since = value("secretproviderclass_seconds_since_refresh{");
        assert!((500.0..510.0).contains(&since), "{since}");
        let age = value("secretproviderclass_served_version_age_seconds{");
        assert!((3600.0..3610.0).contains(&age), "{age}");
        assert_eq!(value("secretproviderclass_volumes{"), 3.0);
    }

    #[test]
    fn refresh_failures_are_counted_per_class_and_cause_within_a_bound() {
        let m = Metrics::new();
        m.refresh_failed("shop", "db", "AwsAccessDenied");
        m.refresh_failed("shop", "db", "AwsAccessDenied");
        m.refresh_failed("shop", "db", "Render");
        let text = m.encode();
        assert!(text.contains("secretproviderclass_refresh_failures_total{namespace=\"shop\",class=\"db\",cause=\"AwsAccessDenied\"} 2"), "{text}");
        assert!(text.contains("cause=\"Render\"} 1"), "{text}");
        for i in 0..MAX_FAILING_CLASSES + 50 {
            m.refresh_failed("ns", &format!("c{i}"), "Render");
        }
        let text = m.encode();
        let series = text
            .lines()
            .filter(|l| l.starts_with("secretproviderclass_refresh_failures_total{"))
            .count();
        assert_eq!(
            series,
            MAX_FAILING_CLASSES + 2,
            "one (other) series past the bound"
        );
        assert!(
            text.contains("namespace=\"(other)\",class=\"(other)\",cause=\"Render\"} 51"),
            "{text}"
        );
    }

    /// A state record is a file on the node: whatever its strings hold, a
    /// label value stays one quoted value on its own sample line.
    #[test]
    fn label_values_from_a_tampered_state_record_are_escaped() {
        let text = one_volume(
            "v1",
            "shop\r\n\\\"} 1\nnode_publish_total{provider=\"aws\",os_type=\"linux\"} 9999\n#",
            "web",
        );
        // The class's two samples (the saved-calls counters start at zero).
        let samples: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.starts_with("aws_calls_saved_total"))
            .collect();
        assert_eq!(samples.len(), 2, "{text}");
        assert!(!text.contains("9999\n"), "{text}");
        assert!(
            !text.contains('\r'),
            "no carriage return reaches the output: {text}"
        );
    }
}
