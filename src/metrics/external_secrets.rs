//! The controller's metrics under External Secrets Operator's names and
//! labels (`externalsecret_sync_calls_total`, `..._sync_calls_error`,
//! `..._status_condition`, `..._reconcile_duration`,
//! `..._provider_api_calls_count`), so that its dashboards and alerts work
//! unchanged, plus the time of each ExternalSecret's last successful
//! refresh and the workloads restarted for rotated secrets. Label values are object names, API names and fixed words: never
//! a value or a token.
//!
//! Held per ExternalSecret and encoded at each scrape, so that an
//! ExternalSecret that is gone (see [`ExternalSecretMetrics::prune`]) leaves
//! no series and no memory behind.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Whether an ExternalSecret (namespace, name) still exists.
pub type Exists = dyn Fn(&str, &str) -> bool + Send + Sync;

#[derive(Debug, Default, Clone)]
struct PerObject {
    syncs: u64,
    errors: u64,
    /// The Ready condition last written: None before a status was written.
    ready: Option<bool>,
    last_duration: f64,
    /// Unix seconds of the last sync that read the values.
    last_refresh: Option<f64>,
}

#[derive(Default)]
struct State {
    objects: BTreeMap<(String, String), PerObject>,
    /// (provider, call, status) -> calls.
    calls: BTreeMap<(&'static str, &'static str, &'static str), u64>,
    /// Workload kind -> restarts for rotated secrets.
    restarts: BTreeMap<&'static str, u64>,
}

/// Shared by the sync loop (which records), the fetch layer (AWS calls) and
/// the registry (which encodes).
#[derive(Clone, Default)]
pub struct ExternalSecretMetrics {
    state: Arc<Mutex<State>>,
    exists: Arc<Mutex<Option<Arc<Exists>>>>,
}

impl std::fmt::Debug for ExternalSecretMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExternalSecretMetrics")
    }
}

/// One sync's outcome, as the metrics see it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SyncOutcome {
    /// The sync failed (counted in `sync_calls_error`).
    pub error: bool,
    /// The Ready condition it wrote; None: it wrote no status.
    pub ready: Option<bool>,
    /// It read the values (the refresh time advances).
    pub refreshed: bool,
    pub seconds: f64,
}

impl ExternalSecretMetrics {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Tells which ExternalSecrets exist (the controller's watch): the
    /// series of the others are dropped at each [`Self::prune`] and scrape.
    pub fn set_exists(&self, exists: Arc<Exists>) {
        *self.exists.lock().unwrap_or_else(|p| p.into_inner()) = Some(exists);
    }

    pub fn synced(&self, namespace: &str, name: &str, outcome: SyncOutcome) {
        let mut state = self.state();
        let o = state
            .objects
            .entry((namespace.to_owned(), name.to_owned()))
            .or_default();
        o.syncs += 1;
        if outcome.error {
            o.errors += 1;
        }
        if outcome.ready.is_some() {
            o.ready = outcome.ready;
        }
        o.last_duration = outcome.seconds;
        if outcome.refreshed {
            o.last_refresh = Some(unix_now());
        }
    }

    /// Drops the series of one ExternalSecret (another controller serves
    /// it now).
    pub fn forget(&self, namespace: &str, name: &str) {
        self.state()
            .objects
            .remove(&(namespace.to_owned(), name.to_owned()));
    }

    /// Drops the series of ExternalSecrets that no longer exist.
    pub fn prune(&self) {
        let exists = self
            .exists
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(exists) = exists {
            self.state()
                .objects
                .retain(|(namespace, name), _| exists(namespace, name));
        }
    }

    /// One AWS call, by this crate's API name and outcome (`ok` or a
    /// failure class), under External Secrets' provider and call names.
    pub fn provider_call(&self, api: &'static str, outcome: &'static str) {
        let Some((provider, call)) = provider_call_of(api) else {
            return;
        };
        let status = if outcome == "ok" { "success" } else { "error" };
        *self
            .state()
            .calls
            .entry((provider, call, status))
            .or_default() += 1;
    }

    /// One workload restarted for rotated secrets (its kind: Deployment,
    /// StatefulSet or DaemonSet; never its name, a bounded label set).
    pub fn workload_restarted(&self, kind: &'static str) {
        *self.state().restarts.entry(kind).or_default() += 1;
    }

    /// Tracked ExternalSecrets (for tests of the pruning).
    pub fn tracked(&self) -> usize {
        self.state().objects.len()
    }
}

/// External Secrets' provider and call names of an AWS API (its constants:
/// `AWS/SecretsManager`, `AWS/ParameterStore`, the API's name as the call,
/// but `DescribeParameter` for DescribeParameters; GetParameters, which it
/// never calls, keeps its own name). STS and the Pod Identity agent are no
/// provider there: they stay in `aws_api_calls` only.
fn provider_call_of(api: &'static str) -> Option<(&'static str, &'static str)> {
    const SM: &str = "AWS/SecretsManager";
    const PS: &str = "AWS/ParameterStore";
    match api {
        "GetSecretValue" | "BatchGetSecretValue" | "DescribeSecret" | "ListSecrets" => {
            Some((SM, api))
        }
        "DescribeParameters" => Some((PS, "DescribeParameter")),
        "GetParameter" | "GetParameters" | "GetParametersByPath" | "ListTagsForResource" => {
            Some((PS, api))
        }
        _ => None,
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ObjectLabels {
    name: String,
    namespace: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConditionLabels {
    name: String,
    namespace: String,
    condition: &'static str,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    provider: &'static str,
    call: &'static str,
    status: &'static str,
}

impl Collector for ExternalSecretMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.prune();
        let state = self.state();
        let labels = |(namespace, name): &(String, String)| ObjectLabels {
            name: name.clone(),
            namespace: namespace.clone(),
        };
        // A counter: OpenMetrics adds `_total`, which is External Secrets' name.
        let mut family = encoder.encode_descriptor(
            "externalsecret_sync_calls",
            "Total number of the External Secret sync calls",
            None,
            MetricType::Counter,
        )?;
        for (key, o) in &state.objects {
            ConstCounter::new(o.syncs).encode(family.encode_family(&labels(key))?)?;
        }
        // External Secrets' counters without `_total`: OpenMetrics would
        // add the suffix to a counter, so these are typed `unknown` to keep
        // the names its dashboards query.
        let mut family = encoder.encode_descriptor(
            "externalsecret_sync_calls_error",
            "Total number of the External Secret sync errors",
            None,
            MetricType::Unknown,
        )?;
        for (key, o) in &state.objects {
            ConstGauge::new(o.errors as i64).encode(family.encode_family(&labels(key))?)?;
        }
        let mut family = encoder.encode_descriptor(
            "externalsecret_status_condition",
            "The status condition of a specific External Secret",
            None,
            MetricType::Gauge,
        )?;
        for ((namespace, name), o) in &state.objects {
            let Some(ready) = o.ready else { continue };
            for (status, value) in [("True", ready), ("False", !ready)] {
                ConstGauge::new(i64::from(value)).encode(family.encode_family(
                    &ConditionLabels {
                        name: name.clone(),
                        namespace: namespace.clone(),
                        condition: "Ready",
                        status,
                    },
                )?)?;
            }
        }
        // In nanoseconds: External Secrets Operator sets this gauge to a Go
        // time.Duration as a float, and alerts written on its values would
        // be off by 1e9 in seconds.
        let mut family = encoder.encode_descriptor(
            "externalsecret_reconcile_duration",
            "The duration time to reconcile the External Secret, in nanoseconds (as External Secrets Operator's)",
            None,
            MetricType::Gauge,
        )?;
        for (key, o) in &state.objects {
            ConstGauge::new((o.last_duration * 1e9).round())
                .encode(family.encode_family(&labels(key))?)?;
        }
        let mut family = encoder.encode_descriptor(
            "externalsecret_last_refresh_timestamp_seconds",
            "Unix time of the External Secret's last successful read of its values (staleness: time() - this); not an External Secrets Operator metric",
            None,
            MetricType::Gauge,
        )?;
        for (key, o) in &state.objects {
            let Some(at) = o.last_refresh else { continue };
            ConstGauge::new(at).encode(family.encode_family(&labels(key))?)?;
        }
        let mut family = encoder.encode_descriptor(
            "externalsecret_provider_api_calls_count",
            "Number of API calls towards the secret provider",
            None,
            MetricType::Unknown,
        )?;
        for ((provider, call, status), n) in &state.calls {
            ConstGauge::new(*n as i64).encode(family.encode_family(&CallLabels {
                provider,
                call,
                status,
            })?)?;
        }
        // Each kind from zero, so that a rate over it starts at the first.
        let mut family = encoder.encode_descriptor(
            "workload_restarts",
            "Workloads restarted (annotated aws-secrets-csi.io/restart-on-rotation) because secrets they read rotated, by kind",
            None,
            MetricType::Counter,
        )?;
        for kind in ["Deployment", "StatefulSet", "DaemonSet"] {
            let n = state.restarts.get(kind).copied().unwrap_or(0);
            ConstCounter::new(n).encode(family.encode_family(&KindLabels { kind })?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(m: &ExternalSecretMetrics) -> String {
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(m.clone()));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        out
    }

    #[test]
    fn external_secrets_names_labels_and_values() {
        let m = ExternalSecretMetrics::default();
        let ok = SyncOutcome {
            error: false,
            ready: Some(true),
            refreshed: true,
            seconds: 0.25,
        };
        m.synced("shop", "db", ok);
        m.synced("shop", "db", ok);
        m.synced(
            "shop",
            "broken",
            SyncOutcome {
                error: true,
                ready: Some(false),
                refreshed: false,
                seconds: 0.5,
            },
        );
        m.provider_call("BatchGetSecretValue", "ok");
        m.provider_call("GetParameters", "throttled");
        m.provider_call("AssumeRoleWithWebIdentity", "ok");
        m.provider_call("DescribeParameters", "ok");
        let text = encode(&m);
        for line in [
            "# TYPE externalsecret_sync_calls counter",
            "externalsecret_sync_calls_total{name=\"db\",namespace=\"shop\"} 2",
            "# TYPE externalsecret_sync_calls_error unknown",
            "externalsecret_sync_calls_error{name=\"db\",namespace=\"shop\"} 0",
            "externalsecret_sync_calls_error{name=\"broken\",namespace=\"shop\"} 1",
            "externalsecret_status_condition{name=\"db\",namespace=\"shop\",condition=\"Ready\",status=\"True\"} 1",
            "externalsecret_status_condition{name=\"db\",namespace=\"shop\",condition=\"Ready\",status=\"False\"} 0",
            "externalsecret_status_condition{name=\"broken\",namespace=\"shop\",condition=\"Ready\",status=\"True\"} 0",
            "externalsecret_status_condition{name=\"broken\",namespace=\"shop\",condition=\"Ready\",status=\"False\"} 1",
            "externalsecret_reconcile_duration{name=\"broken\",namespace=\"shop\"} 500000000",
            "externalsecret_provider_api_calls_count{provider=\"AWS/SecretsManager\",call=\"BatchGetSecretValue\",status=\"success\"} 1",
            "externalsecret_provider_api_calls_count{provider=\"AWS/ParameterStore\",call=\"GetParameters\",status=\"error\"} 1",
            "externalsecret_provider_api_calls_count{provider=\"AWS/ParameterStore\",call=\"DescribeParameter\",status=\"success\"} 1",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        assert!(text.contains("externalsecret_last_refresh_timestamp_seconds{name=\"db\""));
        // Never refreshed: no time (an alert on time() - x would fire at once).
        assert!(!text.contains("externalsecret_last_refresh_timestamp_seconds{name=\"broken\""));
        assert!(!text.contains("AssumeRole"), "{text}");
    }

    #[test]
    fn workload_restarts_are_counted_by_kind_from_zero() {
        let m = ExternalSecretMetrics::default();
        m.workload_restarted("Deployment");
        m.workload_restarted("Deployment");
        m.workload_restarted("DaemonSet");
        let text = encode(&m);
        for line in [
            "# TYPE workload_restarts counter",
            "workload_restarts_total{kind=\"Deployment\"} 2",
            "workload_restarts_total{kind=\"StatefulSet\"} 0",
            "workload_restarts_total{kind=\"DaemonSet\"} 1",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn series_of_an_external_secret_that_is_gone_are_dropped() {
        let m = ExternalSecretMetrics::default();
        let outcome = SyncOutcome {
            error: false,
            ready: Some(true),
            refreshed: true,
            seconds: 0.1,
        };
        m.synced("shop", "kept", outcome);
        m.synced("shop", "gone", outcome);
        m.set_exists(Arc::new(|_namespace: &str, name: &str| name == "kept"));
        let text = encode(&m);
        assert!(text.contains("name=\"kept\""), "{text}");
        assert!(!text.contains("name=\"gone\""), "{text}");
        assert_eq!(m.tracked(), 1);
    }
}
