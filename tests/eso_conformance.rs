//! External Secrets Operator's own tests (v2.9.0), ported as data in
//! tests/conformance/eso-v2.9.0/cases-*.yaml, played against our real
//! controller on a real kube-apiserver, with moto as AWS. Every case runs in
//! its own namespace (its prefix `${P}`), all cases of a CRD set at once;
//! the sets run one after the other on the same API server: first our CRDs
//! (deploy/controller/crd-*.yaml), then External Secrets Operator's own
//! (v1.3.2's files from the Go module cache, the newest the module proxy
//! serves, with the defaults v2.9.0's schemas add written into every object:
//! crd-defaults.yaml). The data format is described in the header of
//! cases-e2e-common.yaml.
//!
//! A case passes when every expectation holds; a case marked `notYet` must
//! fail (counted "not yet supported") and fails the test once it passes, so
//! the list stays true; `difference` marks an intended difference (expect
//! is ours); `theirCrdsLack` marks a case that uses a field newer than the
//! v1.3.2 schemas, which the API server prunes under their CRDs (counted
//! "not applicable" there). Prints one score line per CRD set and a combined one. Needs
//! python3 with moto, the peers of scripts/k8s-peers.sh and `go` (for the
//! v1.3.2 module): `cargo test --test eso_conformance -- --nocapture`.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use common::control_plane::*;
use common::*;
use serde::Deserialize;
use serde_json::{Value, json};

const DIR: &str = "tests/conformance/eso-v2.9.0";
const FILES: [(&str, &str); 5] = [
    ("e", "cases-e2e-common.yaml"),
    ("a", "cases-aws-provider.yaml"),
    ("c", "cases-controller.yaml"),
    ("x", "cases-cluster-external-secret.yaml"),
    ("s", "cases-secretstore.yaml"),
];
/// How long one expectation may take to come true.
const TIMEOUT: Duration = Duration::from_secs(30);
/// TIMEOUT, or $ESO_CONFORMANCE_TIMEOUT seconds (a debugging aid).
fn timeout() -> Duration {
    std::env::var("ESO_CONFORMANCE_TIMEOUT")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(TIMEOUT, Duration::from_secs)
}
/// Runs at once (each mostly waits on the controller).
const PARALLEL: usize = 32;
const GROUP: &str = "/apis/external-secrets.io/v1";

#[derive(Deserialize)]
struct File {
    #[serde(default)]
    defaults: Value,
    cases: Vec<Value>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Case {
    name: String,
    source: String,
    #[serde(default = "sm_only")]
    services: Vec<String>,
    #[serde(default)]
    remote: Vec<Remote>,
    #[serde(default)]
    objects: String,
    #[serde(default)]
    namespace_labels: BTreeMap<String, String>,
    #[serde(default)]
    namespaces: Vec<Value>,
    #[serde(default)]
    store: Value,
    #[serde(default)]
    external_secret: Value,
    #[serde(default)]
    cluster_external_secret: Value,
    #[serde(default)]
    steps: Vec<Value>,
    expect: Value,
    not_yet: Option<String>,
    /// Under their CRDs only: the case uses a field newer than v1.3.2's
    /// schemas (the newest the module proxy serves), which the API server
    /// prunes, so it cannot run as written. Must fail there (it counts "not
    /// applicable"); the test fails once it passes.
    their_crds_lack: Option<String>,
    difference: Option<String>,
    theirs: Option<Value>,
}

fn sm_only() -> Vec<String> {
    vec!["SecretsManager".into()]
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Remote {
    key: String,
    value: String,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    #[serde(default)]
    binary: bool,
    #[serde(default)]
    stages: Vec<String>,
    version_id: Option<String>,
}

/// One case under one service and one CRD set.
struct Run {
    label: String,
    case: Case,
    defaults: Value,
    service: String,
    prefix: String,
}

/// The API server as the cluster admin, with JSON in and out.
#[derive(Clone)]
struct Kube {
    client: ::kube::Client,
}

impl Kube {
    async fn new(kubeconfig: &Path) -> Self {
        let config = ::kube::Config::from_custom_kubeconfig(
            ::kube::config::Kubeconfig::read_from(kubeconfig).unwrap(),
            &::kube::config::KubeConfigOptions::default(),
        )
        .await
        .unwrap();
        Kube {
            client: ::kube::Client::try_from(config).unwrap(),
        }
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        content_type: &str,
    ) -> Result<Value, String> {
        let req = http::Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", content_type)
            .body(body.map(|b| b.to_string().into_bytes()).unwrap_or_default())
            .unwrap();
        let text = self
            .client
            .request_text(req)
            .await
            .map_err(|e| e.to_string())?;
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> Option<Value> {
        self.call("GET", path, None, "application/json").await.ok()
    }

    async fn create(&self, collection: &str, object: &Value) -> Result<Value, String> {
        self.call("POST", collection, Some(object), "application/json")
            .await
    }

    async fn merge(&self, path: &str, patch: &Value) -> Result<Value, String> {
        self.call("PATCH", path, Some(patch), "application/merge-patch+json")
            .await
    }

    async fn delete(&self, path: &str) -> Result<Value, String> {
        self.call("DELETE", path, None, "application/json").await
    }
}

/// The collection path of a kind (namespaced unless `namespace` is empty).
fn collection(kind: &str, namespace: &str) -> String {
    let (base, plural) = match kind {
        "Secret" => ("/api/v1", "secrets"),
        "ConfigMap" => ("/api/v1", "configmaps"),
        "ServiceAccount" => ("/api/v1", "serviceaccounts"),
        "Namespace" => ("/api/v1", "namespaces"),
        "ExternalSecret" => (GROUP, "externalsecrets"),
        "SecretStore" => (GROUP, "secretstores"),
        "ClusterSecretStore" => (GROUP, "clustersecretstores"),
        "ClusterExternalSecret" => (GROUP, "clusterexternalsecrets"),
        other => panic!("a kind the runner does not know: {other}"),
    };
    if namespace.is_empty() {
        format!("{base}/{plural}")
    } else {
        format!("{base}/namespaces/{namespace}/{plural}")
    }
}

/// RFC 7386 merge: `patch` over `base`, null removes (an absent patch,
/// null at the top, changes nothing).
fn merge(base: &mut Value, patch: &Value) {
    if patch.is_null() {
        return;
    }
    match (base.as_object_mut(), patch.as_object()) {
        (Some(b), Some(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    b.remove(k);
                } else {
                    let slot = b.entry(k.clone()).or_insert(Value::Null);
                    if !slot.is_object() {
                        *slot = json!({});
                    }
                    if v.is_object() {
                        merge(slot, v);
                    } else {
                        *slot = v.clone();
                    }
                }
            }
        }
        _ => *base = patch.clone(),
    }
}

/// Writes `value` at `path` (dot-separated, `[]` = each element) where the
/// parent exists and the field does not: what a schema default does.
fn default_at(object: &mut Value, path: &[&str], value: &Value) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    let (name, each) = match first.strip_suffix("[]") {
        Some(n) => (n, true),
        None => (*first, false),
    };
    let Some(map) = object.as_object_mut() else {
        return;
    };
    if rest.is_empty() {
        map.entry(name.to_owned()).or_insert_with(|| value.clone());
        return;
    }
    match map.get_mut(name) {
        Some(Value::Array(items)) if each => {
            for item in items {
                default_at(item, rest, value);
            }
        }
        Some(child) if !each => default_at(child, rest, value),
        _ => {}
    }
}

/// What a Secret's data says, as text.
fn decoded(secret: &Value) -> BTreeMap<String, String> {
    secret["data"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(v.as_str().unwrap_or_default())
                        .unwrap_or_default();
                    (k.clone(), String::from_utf8_lossy(&bytes).into_owned())
                })
                .collect()
        })
        .unwrap_or_default()
}

fn string_map(v: &Value) -> BTreeMap<String, Value> {
    v.as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

fn duration(v: &Value) -> Duration {
    v.as_str()
        .and_then(|s| humantime::parse_duration(s).ok())
        .unwrap_or_default()
}

/// What one run holds between its expectations.
struct State {
    kube: Kube,
    ns: String,
    es_name: String,
    es: Value,
    ces_name: String,
    /// The store's API path, for `expect.store`.
    store_path: String,
    /// Why the API server refused the ExternalSecret or its store, if it did.
    refused: Option<String>,
    /// uid of each Secret at the end of the last expectation met.
    uids: BTreeMap<String, String>,
}

impl State {
    fn es_path(&self) -> String {
        format!(
            "{}/{}",
            collection("ExternalSecret", &self.ns),
            self.es_name
        )
    }

    fn target(&self) -> String {
        self.es["spec"]["target"]["name"]
            .as_str()
            .unwrap_or(&self.es_name)
            .to_owned()
    }

    /// Why `expect` does not hold now, if it does not. `first` holds the
    /// resourceVersions an `unchanged` check compares with.
    async fn mismatch(
        &self,
        expect: &Value,
        first: &mut BTreeMap<String, String>,
    ) -> Option<String> {
        let es = self.kube.get(&self.es_path()).await;
        let ready = es.as_ref().and_then(|es| {
            es["status"]["conditions"]
                .as_array()?
                .iter()
                .find(|c| c["type"] == "Ready")
                .cloned()
        });
        if expect["refused"] == true {
            if self.refused.is_some() {
                return None;
            }
            let target = self
                .kube
                .get(&format!(
                    "{}/{}",
                    collection("Secret", &self.ns),
                    self.target()
                ))
                .await;
            let failed = ready
                .as_ref()
                .is_some_and(|c| c["status"] == "False" && c["reason"] == "SecretSyncedError");
            if !failed || target.is_some() {
                return Some(format!(
                    "expected a refusal; Ready is {}, the Secret {}",
                    ready.map(|c| c.to_string()).unwrap_or("absent".into()),
                    if target.is_some() {
                        "exists"
                    } else {
                        "is absent"
                    }
                ));
            }
        }
        if let Some(why) = &self.refused {
            return Some(format!("the API server refused an object: {why}"));
        }
        if let Some(want) = expect.get("ready") {
            let Some(c) = &ready else {
                return Some("no Ready condition".into());
            };
            for field in ["status", "reason"] {
                if let Some(w) = want.get(field)
                    && c[field] != *w
                {
                    return Some(format!(
                        "Ready {field} is {}, expected {w} (reason {}, message {})",
                        c[field], c["reason"], c["message"]
                    ));
                }
            }
            if let Some(w) = want["message"].as_str()
                && !c["message"].as_str().unwrap_or_default().contains(w)
            {
                return Some(format!(
                    "Ready message is {}, expected it to hold {w:?}",
                    c["message"]
                ));
            }
        }
        if expect["noReady"] == true
            && let Some(c) = &ready
        {
            return Some(format!("expected no Ready condition, got {c}"));
        }
        if let Some(want) = expect.get("store")
            && let Some(why) = self.store_mismatch(want, first).await
        {
            return Some(why);
        }
        if let Some(want) = expect.get("binding") {
            let got = es
                .as_ref()
                .and_then(|e| e["status"]["binding"]["name"].as_str().map(str::to_owned))
                .unwrap_or_default();
            if got != want.as_str().unwrap_or_default() {
                return Some(format!("status.binding.name is {got:?}, expected {want}"));
            }
        }
        if expect["esUnchanged"] == true {
            let rv = es
                .as_ref()
                .map(|e| e["metadata"]["resourceVersion"].to_string())
                .unwrap_or_default();
            let was = first.entry("es".into()).or_insert_with(|| rv.clone());
            if *was != rv {
                return Some(format!(
                    "the ExternalSecret changed: resourceVersion {was} -> {rv}"
                ));
            }
        }
        if let Some(want) = expect.get("secret")
            && let Some(why) = self.secret_mismatch(want, first).await
        {
            return Some(why);
        }
        if let Some(want) = expect["externalSecrets"].as_object() {
            for (key, w) in want {
                let (ns, name) = key.split_once('/').unwrap();
                let got = self
                    .kube
                    .get(&format!("{}/{name}", collection("ExternalSecret", ns)))
                    .await;
                match (got, w.is_null()) {
                    (Some(_), true) => return Some(format!("ExternalSecret {key} exists")),
                    (None, false) => return Some(format!("ExternalSecret {key} is missing")),
                    (Some(got), false) => {
                        for field in ["labels", "annotations"] {
                            let have = string_map(&got["metadata"][field]);
                            let wanted = string_map(&w[field]);
                            if have != wanted {
                                return Some(format!(
                                    "ExternalSecret {key} {field} are {have:?}, expected {wanted:?}"
                                ));
                            }
                        }
                        let store = got["spec"]["secretStoreRef"]["name"]
                            .as_str()
                            .unwrap_or_default();
                        if store != w["storeName"].as_str().unwrap_or_default() {
                            return Some(format!(
                                "ExternalSecret {key} names store {store:?}, expected {}",
                                w["storeName"]
                            ));
                        }
                    }
                    (None, true) => {}
                }
            }
        }
        if let Some(want) = expect.get("clusterExternalSecret") {
            let got = self
                .kube
                .get(&format!(
                    "{}/{}",
                    collection("ClusterExternalSecret", ""),
                    self.ces_name
                ))
                .await
                .unwrap_or(Value::Null);
            let status = &got["status"];
            let ready = status["conditions"]
                .as_array()
                .and_then(|c| c.iter().find(|c| c["type"] == "Ready").cloned())
                .unwrap_or(Value::Null);
            if let Some(w) = want.get("ready")
                && ready["status"] != *w
            {
                return Some(format!(
                    "ClusterExternalSecret Ready is {ready}, expected {w}"
                ));
            }
            if let Some(w) = want["message"].as_str()
                && !ready["message"].as_str().unwrap_or_default().contains(w)
            {
                return Some(format!(
                    "ClusterExternalSecret message is {}, expected {w:?}",
                    ready["message"]
                ));
            }
            if let Some(w) = want.get("externalSecretName")
                && status["externalSecretName"] != *w
            {
                return Some(format!(
                    "status.externalSecretName is {}, expected {w}",
                    status["externalSecretName"]
                ));
            }
            if let Some(w) = want.get("provisionedNamespaces") {
                let mut have: Vec<&str> = status["provisionedNamespaces"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                have.sort();
                let wanted: Vec<&str> = w
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter_map(Value::as_str)
                    .collect();
                if have != wanted {
                    return Some(format!(
                        "provisionedNamespaces {have:?}, expected {wanted:?}"
                    ));
                }
            }
            if let Some(w) = want.get("failedNamespaces") {
                let have = status["failedNamespaces"].clone();
                let have = if have.is_null() { json!([]) } else { have };
                if have != *w {
                    return Some(format!("failedNamespaces {have}, expected {w}"));
                }
            }
        }
        None
    }

    /// Why the store's status is not as `want` says ({ready, noReady,
    /// capabilities, unchanged}), if it is not.
    async fn store_mismatch(
        &self,
        want: &Value,
        first: &mut BTreeMap<String, String>,
    ) -> Option<String> {
        let Some(store) = self.kube.get(&self.store_path).await else {
            return Some("the store is missing".into());
        };
        let ready = store["status"]["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "Ready"));
        if want["noReady"] == true
            && let Some(c) = ready
        {
            return Some(format!("expected no Ready condition on the store, got {c}"));
        }
        if let Some(w) = want.get("ready") {
            let Some(c) = ready else {
                return Some("no Ready condition on the store".into());
            };
            for field in ["status", "reason"] {
                if let Some(v) = w.get(field)
                    && c[field] != *v
                {
                    return Some(format!(
                        "store Ready {field} is {}, expected {v} (message {})",
                        c[field], c["message"]
                    ));
                }
            }
            if let Some(m) = w["message"].as_str()
                && !c["message"].as_str().unwrap_or_default().contains(m)
            {
                return Some(format!(
                    "store Ready message is {}, expected it to hold {m:?}",
                    c["message"]
                ));
            }
        }
        if let Some(w) = want.get("capabilities")
            && store["status"]["capabilities"] != *w
        {
            return Some(format!(
                "store capabilities are {}, expected {w}",
                store["status"]["capabilities"]
            ));
        }
        if want["unchanged"] == true {
            let rv = store["metadata"]["resourceVersion"].to_string();
            let was = first.entry("store".into()).or_insert_with(|| rv.clone());
            if *was != rv {
                return Some(format!("the store changed: resourceVersion {was} -> {rv}"));
            }
        }
        None
    }

    async fn secret_mismatch(
        &self,
        want: &Value,
        first: &mut BTreeMap<String, String>,
    ) -> Option<String> {
        let name = want["name"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| self.target());
        let got = self
            .kube
            .get(&format!("{}/{name}", collection("Secret", &self.ns)))
            .await;
        if want["absent"] == true {
            return got.map(|s| {
                format!(
                    "Secret {name} exists, with keys {:?}",
                    decoded(&s).keys().collect::<Vec<_>>()
                )
            });
        }
        let Some(secret) = got else {
            return Some(format!("Secret {name} does not exist"));
        };
        let meta = &secret["metadata"];
        if let Some(t) = want.get("type")
            && secret["type"] != *t
        {
            return Some(format!(
                "Secret {name} type is {}, expected {t}",
                secret["type"]
            ));
        }
        let data = decoded(&secret);
        if let Some(w) = want.get("data") {
            let wanted: BTreeMap<String, String> = string_map(w)
                .into_iter()
                .map(|(k, v)| (k, v.as_str().unwrap_or_default().to_owned()))
                .collect();
            if data != wanted {
                return Some(format!(
                    "Secret {name} data\n  got:      {data:?}\n  expected: {wanted:?}"
                ));
            }
        }
        if let Some(w) = want["dataHas"].as_object() {
            for (k, v) in w {
                if data.get(k).map(String::as_str) != v.as_str() {
                    return Some(format!(
                        "Secret {name} key {k} is {:?}, expected {v}; data {data:?}",
                        data.get(k)
                    ));
                }
            }
        }
        for field in ["labels", "annotations"] {
            if let Some(w) = want[field].as_object() {
                for (k, v) in w {
                    let have = &meta[field][k];
                    if have != v {
                        return Some(format!(
                            "Secret {name} {field} {k} is {have}, expected {v}; {field} {}",
                            meta[field]
                        ));
                    }
                }
            }
        }
        if let Some(w) = want["finalizers"].as_array() {
            let have = meta["finalizers"].as_array().cloned().unwrap_or_default();
            if w.iter().any(|f| !have.contains(f)) {
                return Some(format!(
                    "Secret {name} finalizers {have:?}, expected to contain {w:?}"
                ));
            }
        }
        if let Some(w) = want.get("immutable")
            && secret["immutable"] != *w
        {
            return Some(format!(
                "Secret {name} immutable is {}, expected {w}",
                secret["immutable"]
            ));
        }
        if let Some(w) = want["owned"].as_bool() {
            let owned = meta["ownerReferences"].as_array().is_some_and(|o| {
                o.iter()
                    .any(|r| r["kind"] == "ExternalSecret" && r["controller"] == true)
            });
            if owned != w {
                return Some(format!(
                    "Secret {name} owned by an ExternalSecret: {owned}, expected {w}"
                ));
            }
        }
        let uid = meta["uid"].as_str().unwrap_or_default();
        if want["recreated"] == true && self.uids.get(&name).map(String::as_str) == Some(uid) {
            return Some(format!(
                "Secret {name} is the same object (uid {uid}), expected a new one"
            ));
        }
        if want["unchanged"] == true {
            let rv = meta["resourceVersion"].to_string();
            let was = first.entry(name.clone()).or_insert_with(|| rv.clone());
            if *was != rv {
                return Some(format!(
                    "Secret {name} changed: resourceVersion {was} -> {rv}"
                ));
            }
        }
        None
    }

    /// Waits until `expect` holds (and keeps holding for its `hold`).
    async fn expect(&mut self, expect: &Value) -> Result<(), String> {
        let hold = duration(&expect["hold"]);
        let started = Instant::now();
        let mut first = BTreeMap::new();
        let mut since: Option<Instant> = None;
        loop {
            match self.mismatch(expect, &mut first).await {
                None => {
                    let at = *since.get_or_insert_with(Instant::now);
                    if at.elapsed() >= hold {
                        break;
                    }
                }
                Some(why) => {
                    if let Some(at) = since {
                        return Err(format!("held for {:?}, then: {why}", at.elapsed()));
                    }
                    if started.elapsed() > timeout() {
                        return Err(why);
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        // Remember the Secrets seen, for a later `recreated`.
        if let Some(list) = self
            .kube
            .get(&collection("Secret", &self.ns))
            .await
            .and_then(|l| l["items"].as_array().cloned())
        {
            for s in list {
                self.uids.insert(
                    s["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    s["metadata"]["uid"].as_str().unwrap_or_default().to_owned(),
                );
            }
        }
        Ok(())
    }
}

/// The AWS side of a run.
struct Aws {
    sm: aws_sdk_secretsmanager::Client,
    ssm: aws_sdk_ssm::Client,
    parameter_store: bool,
}

impl Aws {
    async fn put(&self, r: &Remote, exists: bool) {
        if self.parameter_store {
            let mut put = self
                .ssm
                .put_parameter()
                .name(&r.key)
                .value(&r.value)
                .r#type(aws_sdk_ssm::types::ParameterType::String);
            if exists {
                put = put.overwrite(true);
            } else {
                for (k, v) in &r.tags {
                    put = put.tags(
                        aws_sdk_ssm::types::Tag::builder()
                            .key(k)
                            .value(v)
                            .build()
                            .unwrap(),
                    );
                }
            }
            put.send().await.unwrap();
            return;
        }
        if exists {
            let mut put = self.sm.put_secret_value().secret_id(&r.key);
            put = if r.binary {
                put.secret_binary(aws_sdk_secretsmanager::primitives::Blob::new(
                    r.value.as_bytes(),
                ))
            } else {
                put.secret_string(&r.value)
            };
            for s in &r.stages {
                put = put.version_stages(s);
            }
            if let Some(id) = &r.version_id {
                put = put.client_request_token(id);
            }
            put.send().await.unwrap();
            return;
        }
        let mut create = self.sm.create_secret().name(&r.key);
        create = if r.binary {
            create.secret_binary(aws_sdk_secretsmanager::primitives::Blob::new(
                r.value.as_bytes(),
            ))
        } else {
            create.secret_string(&r.value)
        };
        for (k, v) in &r.tags {
            create = create.tags(
                aws_sdk_secretsmanager::types::Tag::builder()
                    .key(k)
                    .value(v)
                    .build(),
            );
        }
        if let Some(id) = &r.version_id {
            create = create.client_request_token(id);
        }
        create.send().await.unwrap();
    }

    async fn delete(&self, key: &str) {
        if self.parameter_store {
            self.ssm.delete_parameter().name(key).send().await.unwrap();
        } else {
            self.sm
                .delete_secret()
                .secret_id(key)
                .force_delete_without_recovery(true)
                .send()
                .await
                .unwrap();
        }
    }
}

/// Plays one run: its objects, its store, its ExternalSecret (or
/// ClusterExternalSecret), then its expectations and steps.
async fn play(run: &Run, kube: &Kube, theirs: bool, defaults: &Value) -> Result<(), String> {
    let case = &run.case;
    let ns = run.prefix.clone();
    let moto = moto();
    let aws = Aws {
        sm: moto.secrets_manager(),
        ssm: moto.ssm(),
        parameter_store: run.service == "ParameterStore",
    };
    // Namespaces: the case's, one for credentials a ClusterSecretStore names,
    // and any the case lists.
    let mut namespaces = vec![
        json!({"metadata": {"name": ns, "labels": case.namespace_labels}}),
        json!({"metadata": {"name": format!("{ns}-creds")}}),
    ];
    namespaces.extend(case.namespaces.iter().map(|n| json!({"metadata": n})));
    for n in &namespaces {
        let mut n = n.clone();
        n["apiVersion"] = json!("v1");
        n["kind"] = json!("Namespace");
        kube.create(&collection("Namespace", ""), &n).await?;
    }
    let (key, secret) = moto.admin_keys();
    for n in [ns.clone(), format!("{ns}-creds")] {
        let creds = json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "aws-creds"}, "stringData": {"kid": key, "sak": secret}});
        kube.create(&collection("Secret", &n), &creds).await?;
        let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": "reader-sa", "annotations": {"eks.amazonaws.com/role-arn": READER_ROLE}}});
        kube.create(&collection("ServiceAccount", &n), &sa).await?;
    }
    let mut seen = std::collections::HashSet::new();
    for r in &case.remote {
        aws.put(r, !seen.insert(r.key.clone())).await;
    }
    let mut state = State {
        kube: kube.clone(),
        ns: ns.clone(),
        es_name: String::new(),
        es: Value::Null,
        ces_name: format!("{ns}-ces"),
        store_path: String::new(),
        refused: None,
        uids: BTreeMap::new(),
    };
    let docs: Vec<Value> = if case.objects.trim().is_empty() {
        vec![]
    } else {
        serde_saphyr::from_str_multiple(&case.objects).map_err(|e| e.to_string())?
    };
    for mut doc in docs {
        let kind = doc["kind"].as_str().unwrap().to_owned();
        let in_ns = doc["metadata"]["namespace"]
            .as_str()
            .unwrap_or(&ns)
            .to_owned();
        with_defaults(&mut doc, &kind, theirs, defaults);
        kube.create(&collection(&kind, &in_ns), &doc).await?;
    }

    // The store.
    let store = &case.store;
    let kind = store["kind"].as_str().unwrap_or("SecretStore").to_owned();
    let cluster = kind == "ClusterSecretStore";
    let store_name = if cluster {
        format!("{ns}-store")
    } else {
        "store".into()
    };
    let refs = |namespace: Option<String>| {
        let mut r = json!({
            "accessKeyIDSecretRef": {"name": "aws-creds", "key": "kid"},
            "secretAccessKeySecretRef": {"name": "aws-creds", "key": "sak"},
        });
        if let Some(n) = namespace {
            r["accessKeyIDSecretRef"]["namespace"] = json!(n);
            r["secretAccessKeySecretRef"]["namespace"] = json!(n);
        }
        json!({"secretRef": r})
    };
    let creds_ns = cluster.then(|| format!("{ns}-creds"));
    let auth = match store["auth"].as_str().unwrap_or("static") {
        "static" => refs(creds_ns),
        "referent" => refs(None),
        "none" => Value::Null,
        "jwt" => {
            let mut sa = json!({"name": "reader-sa"});
            if let Some(n) = creds_ns {
                sa["namespace"] = json!(n);
            }
            json!({"jwt": {"serviceAccountRef": sa}})
        }
        "jwt-referent" => json!({"jwt": {"serviceAccountRef": {"name": "reader-sa"}}}),
        other => return Err(format!("unknown store auth {other}")),
    };
    let mut aws_spec = json!({"service": run.service, "region": REGION});
    if !auth.is_null() {
        aws_spec["auth"] = auth;
    }
    merge(&mut aws_spec, &store["aws"]);
    let mut spec = json!({"provider": {"aws": aws_spec}});
    merge(&mut spec, &store["spec"]);
    let mut store_obj = json!({"apiVersion": "external-secrets.io/v1", "kind": kind,
        "metadata": {"name": store_name}, "spec": spec});
    with_defaults(&mut store_obj, &kind, theirs, defaults);
    state.store_path = format!(
        "{}/{store_name}",
        collection(&kind, if cluster { "" } else { &ns })
    );
    if let Err(e) = kube
        .create(
            &collection(&kind, if cluster { "" } else { &ns }),
            &store_obj,
        )
        .await
    {
        state.refused = Some(e);
    }

    // The ExternalSecret, or the ClusterExternalSecret.
    if !case.cluster_external_secret.is_null() {
        let mut ces = run.defaults["clusterExternalSecret"].clone();
        merge(&mut ces, &case.cluster_external_secret);
        ces["apiVersion"] = json!("external-secrets.io/v1");
        ces["kind"] = json!("ClusterExternalSecret");
        if ces["metadata"]["name"].is_null() {
            ces["metadata"]["name"] = json!(state.ces_name);
        }
        state.ces_name = ces["metadata"]["name"].as_str().unwrap().to_owned();
        with_defaults(&mut ces, "ClusterExternalSecret", theirs, defaults);
        if let Err(e) = kube
            .create(&collection("ClusterExternalSecret", ""), &ces)
            .await
        {
            state.refused = Some(e);
        }
    } else {
        let mut es = run.defaults["externalSecret"].clone();
        merge(&mut es, &case.external_secret);
        es["apiVersion"] = json!("external-secrets.io/v1");
        es["kind"] = json!("ExternalSecret");
        es["metadata"]["namespace"] = json!(ns);
        if es["spec"]["secretStoreRef"].is_null() {
            es["spec"]["secretStoreRef"] = json!({"name": store_name, "kind": kind});
        }
        with_defaults(&mut es, "ExternalSecret", theirs, defaults);
        state.es_name = es["metadata"]["name"]
            .as_str()
            .ok_or_else(|| format!("no ExternalSecret name in {es}"))?
            .to_owned();
        state.es = es;
        if state.refused.is_none()
            && let Err(e) = kube
                .create(&collection("ExternalSecret", &ns), &state.es)
                .await
        {
            state.refused = Some(e);
        }
    }

    state
        .expect(&case.expect)
        .await
        .map_err(|e| format!("initial: {e}"))?;
    for (i, step) in case.steps.iter().enumerate() {
        do_step(step, &mut state, &aws, kube)
            .await
            .map_err(|e| format!("step {}: {e}", i + 1))?;
        if let Some(expect) = step.get("expect") {
            state
                .expect(expect)
                .await
                .map_err(|e| format!("step {} ({}): {e}", i + 1, step_name(step)))?;
        }
    }
    Ok(())
}

fn step_name(step: &Value) -> String {
    step.as_object()
        .and_then(|m| m.keys().find(|k| *k != "expect").cloned())
        .unwrap_or_default()
}

async fn do_step(step: &Value, state: &mut State, aws: &Aws, kube: &Kube) -> Result<(), String> {
    let ns = state.ns.clone();
    let secret_path = |name: &str| format!("{}/{name}", collection("Secret", &ns));
    let ces_path = format!(
        "{}/{}",
        collection("ClusterExternalSecret", ""),
        state.ces_name
    );
    let name = step_name(step);
    let arg = &step[&name];
    match name.as_str() {
        "wait" => tokio::time::sleep(duration(arg)).await,
        "updateRemote" => {
            let r = Remote {
                key: arg["key"].as_str().unwrap().into(),
                value: arg["value"].as_str().unwrap().into(),
                tags: BTreeMap::new(),
                binary: false,
                stages: vec![],
                version_id: None,
            };
            // A key the case never created is created now.
            let exists = if aws.parameter_store {
                aws.ssm.get_parameter().name(&r.key).send().await.is_ok()
            } else {
                aws.sm
                    .describe_secret()
                    .secret_id(&r.key)
                    .send()
                    .await
                    .is_ok()
            };
            aws.put(&r, exists).await;
        }
        "deleteRemote" => aws.delete(arg.as_str().unwrap()).await,
        "deleteSecret" => {
            kube.delete(&secret_path(arg.as_str().unwrap())).await?;
        }
        "patchSecret" => {
            kube.merge(&secret_path(arg["name"].as_str().unwrap()), &arg["patch"])
                .await?;
        }
        "patchStore" => {
            kube.merge(&state.store_path, arg).await?;
        }
        "patchExternalSecret" => {
            merge(&mut state.es, arg);
            kube.merge(&state.es_path(), arg).await?;
        }
        "deleteExternalSecret" => {
            kube.delete(&state.es_path()).await?;
            let gone = Instant::now();
            while kube.get(&state.es_path()).await.is_some() {
                if gone.elapsed() > TIMEOUT {
                    return Err("the ExternalSecret was not deleted".into());
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        "createExternalSecret" => {
            let mut es = state.es.clone();
            es["metadata"] = json!({"name": state.es_name, "namespace": ns,
                "labels": es["metadata"]["labels"], "annotations": es["metadata"]["annotations"]});
            kube.create(&collection("ExternalSecret", &ns), &es).await?;
        }
        "patchClusterExternalSecret" => {
            kube.merge(&ces_path, arg).await?;
        }
        "labelNamespace" => {
            let path = format!(
                "{}/{}",
                collection("Namespace", ""),
                arg["name"].as_str().unwrap()
            );
            let now = kube.get(&path).await.ok_or("no such namespace")?;
            let mut labels = serde_json::Map::new();
            for k in now["metadata"]["labels"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, _)| k)
            {
                // The API server keeps this one itself.
                if k != "kubernetes.io/metadata.name" {
                    labels.insert(k.clone(), Value::Null);
                }
            }
            for (k, v) in arg["labels"].as_object().into_iter().flatten() {
                labels.insert(k.clone(), v.clone());
            }
            kube.merge(&path, &json!({"metadata": {"labels": labels}}))
                .await?;
        }
        "deleteObject" => {
            let path = format!(
                "{}/{}",
                collection(
                    arg["kind"].as_str().unwrap(),
                    arg["namespace"].as_str().unwrap_or(&ns)
                ),
                arg["name"].as_str().unwrap()
            );
            kube.delete(&path).await?;
        }
        other => return Err(format!("unknown step {other}")),
    }
    Ok(())
}

/// Under their CRDs, the defaults v2.9.0's schemas would have written.
fn with_defaults(object: &mut Value, kind: &str, theirs: bool, defaults: &Value) {
    if !theirs {
        return;
    }
    for d in defaults[kind].as_array().into_iter().flatten() {
        let path: Vec<&str> = d["path"].as_str().unwrap().split('.').collect();
        default_at(object, &path, &d["value"]);
    }
}

/// The `aws-secrets-csi controller` process of one CRD set; killed when
/// dropped, its log checked for tokens and kept for a failure's report.
struct Controller {
    child: Child,
    log: PathBuf,
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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

fn start_controller(cp: &ControlPlane, dir: &Path, set: &str) -> Controller {
    let token = cp.token(
        "aws-secrets-csi",
        "aws-secrets-csi-controller",
        &["--duration", "1h"],
    );
    let kubeconfig = dir.join(format!("controller-{set}.kubeconfig"));
    cp.kubeconfig_with_token(&kubeconfig, &cp.server, &token);
    let log = dir.join(format!("controller-{set}.log"));
    let (key, secret) = moto().admin_keys();
    let child = Command::new(env!("CARGO_BIN_EXE_aws-secrets-csi"))
        .args([
            "controller",
            "--identity",
            set,
            "--lease-namespace",
            "aws-secrets-csi",
            "--lease-duration",
            "3s",
            "--min-refresh-interval",
            "1s",
        ])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("KUBECONFIG", &kubeconfig)
        .env("AWS_ENDPOINT_URL", &moto().endpoint)
        .env("AWS_REGION", REGION)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        // The controller's own identity, for a ClusterSecretStore without
        // auth (ESO's "environment variables" session).
        .env("AWS_ACCESS_KEY_ID", key)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env("RUST_LOG", "info,aws_secrets_csi=debug")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start the controller");
    Controller { child, log }
}

const CRD_NAMES: [&str; 4] = [
    "crd/externalsecrets.external-secrets.io",
    "crd/secretstores.external-secrets.io",
    "crd/clustersecretstores.external-secrets.io",
    "crd/clusterexternalsecrets.external-secrets.io",
];

/// Replaces whatever External Secrets CRDs the API server has with `files`.
fn install_crds(cp: &ControlPlane, files: &[PathBuf], established: &[&str]) {
    let mut delete = vec![
        "delete",
        "--ignore-not-found",
        "--wait=true",
        "--timeout=120s",
    ];
    delete.extend(CRD_NAMES);
    cp.kubectl(&delete, None);
    for f in files {
        cp.kubectl(&["apply", "--server-side", "-f", f.to_str().unwrap()], None);
    }
    let mut wait = vec!["wait", "--for=condition=Established", "--timeout=60s"];
    wait.extend(established);
    cp.kubectl(&wait, None);
}

/// External Secrets Operator v1.3.2's CRD files, from the Go module cache
/// (downloaded there by `go mod download` when missing).
fn their_crds() -> Vec<PathBuf> {
    let out = Command::new("go")
        .args([
            "mod",
            "download",
            "-json",
            "github.com/external-secrets/external-secrets@v1.3.2",
        ])
        .env("GOFLAGS", "-mod=mod")
        .current_dir(std::env::temp_dir())
        .output()
        .expect("run go mod download");
    let info: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "go mod download: {e}: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let dir =
        PathBuf::from(info["Dir"].as_str().expect("the module's Dir")).join("config/crds/bases");
    [
        "externalsecrets",
        "secretstores",
        "clustersecretstores",
        "clusterexternalsecrets",
    ]
    .iter()
    .map(|k| dir.join(format!("external-secrets.io_{k}.yaml")))
    .collect()
}

#[derive(Default)]
struct Score {
    total: usize,
    equal: usize,
    intended: usize,
    not_yet: usize,
    not_applicable: usize,
    failures: Vec<String>,
}

impl Score {
    fn line(&self, what: &str) -> String {
        format!(
            "External Secrets v2.9.0 conformance{what}: {} of {} equal, {} intended differences, {} not yet supported, {} not applicable (a field newer than their v1.3.2 CRDs), {} failed",
            self.equal,
            self.total,
            self.intended,
            self.not_yet,
            self.not_applicable,
            self.failures.len()
        )
    }
}

/// Every run of every case file for one CRD set (`o` ours, `t` theirs).
fn runs(root: &Path, set: &str) -> Vec<Run> {
    let mut out = Vec::new();
    for (letter, file) in FILES {
        let text = std::fs::read_to_string(root.join(DIR).join(file)).unwrap();
        let parsed: File = serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
        for (i, raw) in parsed.cases.iter().enumerate() {
            let first: Case = serde_json::from_value(raw.clone())
                .unwrap_or_else(|e| panic!("{file} case {i}: {e}"));
            assert!(
                first.difference.is_none() || first.theirs.is_some(),
                "{}: a difference records ESO's outcome in theirs",
                first.name
            );
            for service in &first.services {
                let svc = if service == "ParameterStore" {
                    "ps"
                } else {
                    "sm"
                };
                let prefix = format!("{set}{letter}{i}{svc}");
                // ${P} everywhere: the case is data, so its text is replaced.
                let text = serde_json::to_string(raw).unwrap().replace("${P}", &prefix);
                let defaults = serde_json::to_string(&parsed.defaults)
                    .unwrap()
                    .replace("${P}", &prefix);
                out.push(Run {
                    label: format!("{file} {} ({service})", first.name),
                    case: serde_json::from_str(&text).unwrap(),
                    defaults: serde_json::from_str(&defaults).unwrap(),
                    service: service.clone(),
                    prefix,
                });
            }
        }
    }
    out
}

async fn play_set(
    cp: &ControlPlane,
    kube: &Kube,
    set: &str,
    dir: &Path,
    defaults: &Value,
) -> Score {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let theirs = set == "t";
    let controller = start_controller(cp, dir, set);
    // ESO_CONFORMANCE_ONLY=TEXT[,TEXT] plays only the cases whose label holds a TEXT
    // (a debugging aid; the score then covers those alone).
    let only = std::env::var("ESO_CONFORMANCE_ONLY").unwrap_or_default();
    let runs: Vec<Run> = runs(root, set)
        .into_iter()
        .filter(|r| only.split(',').any(|o| r.label.contains(o)))
        .collect();
    let limit = Arc::new(tokio::sync::Semaphore::new(PARALLEL));
    let mut tasks = Vec::new();
    for run in runs {
        let (kube, limit, defaults) = (kube.clone(), limit.clone(), defaults.clone());
        tasks.push(tokio::spawn(async move {
            let _slot = limit.acquire_owned().await.unwrap();
            let outcome = play(&run, &kube, theirs, &defaults).await;
            (run, outcome)
        }));
    }
    let mut score = Score::default();
    let crds = if theirs {
        " (their CRDs)"
    } else {
        " (our CRDs)"
    };
    for task in tasks {
        let (run, outcome) = task.await.unwrap();
        score.total += 1;
        let lacking = run.case.their_crds_lack.as_ref().filter(|_| theirs);
        if let Some(why) = lacking {
            match outcome {
                Err(_) => score.not_applicable += 1,
                Ok(()) => score.failures.push(format!(
                    "{}{crds}: passes now; remove its theirCrdsLack ({why})",
                    run.label
                )),
            }
            continue;
        }
        match (&run.case.not_yet, &run.case.difference, outcome) {
            (None, None, Ok(())) => score.equal += 1,
            (None, Some(_), Ok(())) => score.intended += 1,
            (Some(_), _, Err(_)) => score.not_yet += 1,
            (Some(why), _, Ok(())) => score.failures.push(format!(
                "{}{crds}: passes now; remove its notYet ({why})",
                run.label
            )),
            (None, _, Err(diff)) => score
                .failures
                .push(format!("{}{crds} [{}]: {diff}", run.label, run.case.source)),
        }
    }
    if !score.failures.is_empty() {
        // The controller's last words, for the failures' report.
        let log = std::fs::read_to_string(&controller.log).unwrap_or_default();
        let tail: Vec<&str> = log
            .lines()
            .filter(|l| !l.contains("leases/"))
            .rev()
            .take(60)
            .collect();
        println!(
            "controller's API calls{crds}: {:?}",
            cp.calls_by("system:serviceaccount:aws-secrets-csi:aws-secrets-csi-controller")
        );
        println!("controller log{crds}, last lines:");
        for l in tail.iter().rev() {
            println!("  {l}");
        }
    }
    score
}

#[tokio::test(flavor = "multi_thread")]
async fn external_secrets_operators_own_tests() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let defaults: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(root.join(DIR).join("crd-defaults.yaml")).unwrap(),
    )
    .unwrap();
    let cp = control_plane();
    let _ = moto();
    let deploy = root.join("deploy/controller");
    cp.kubectl(
        &["apply", "-f", "-"],
        Some("apiVersion: v1\nkind: Namespace\nmetadata: {name: aws-secrets-csi}\n"),
    );
    cp.kubectl(
        &["apply", "-f", deploy.join("rbac.yaml").to_str().unwrap()],
        None,
    );
    let kube = Kube::new(&cp.admin).await;
    let dir = tempfile::tempdir().unwrap();

    let ours: Vec<PathBuf> = [
        "crd-externalsecrets.yaml",
        "crd-secretstores.yaml",
        "crd-clustersecretstores.yaml",
        "crd-clusterexternalsecrets.yaml",
    ]
    .iter()
    .map(|f| deploy.join(f))
    .collect();
    install_crds(cp, &ours, &CRD_NAMES);
    let our_score = play_set(cp, &kube, "o", dir.path(), &defaults).await;
    println!("{}", our_score.line(" (our CRDs)"));

    install_crds(cp, &their_crds(), &CRD_NAMES);
    let their_score = play_set(cp, &kube, "t", dir.path(), &defaults).await;
    println!("{}", their_score.line(" (their CRDs)"));

    let mut all = Score {
        total: our_score.total + their_score.total,
        equal: our_score.equal + their_score.equal,
        intended: our_score.intended + their_score.intended,
        not_yet: our_score.not_yet + their_score.not_yet,
        not_applicable: our_score.not_applicable + their_score.not_applicable,
        failures: our_score.failures,
    };
    all.failures.extend(their_score.failures);
    println!("{}", all.line(""));

    for f in &all.failures {
        println!("FAILED {f}");
    }
    assert!(
        all.failures.is_empty(),
        "{} run(s) failed (listed above)",
        all.failures.len()
    );
}
