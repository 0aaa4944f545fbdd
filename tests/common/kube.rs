//! A small stand-in for the Kubernetes API server: it answers GETs of the
//! objects a test put in it, 404 otherwise, and TokenReviews of the tokens
//! `PodSpec` makes, over plain HTTP on loopback.

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

#[derive(Clone, Default)]
struct State {
    objects: Arc<Mutex<HashMap<String, serde_json::Value>>>,
    gets: Arc<Mutex<HashMap<String, usize>>>,
    /// TokenReviews answer 503 while set.
    reviews_down: Arc<std::sync::atomic::AtomicBool>,
}

pub struct FakeKube {
    state: State,
    pub kubeconfig: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl FakeKube {
    pub async fn start(dir: &Path) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = State::default();
        let served = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let state = served.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| answer(req, state.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster: {{server: \"http://127.0.0.1:{port}\"}}\nusers:\n- name: fake\n  user: {{}}\ncontexts:\n- name: fake\n  context: {{cluster: fake, user: fake}}\ncurrent-context: fake\n"
            ),
        )
        .unwrap();
        FakeKube {
            state,
            kubeconfig,
            task,
        }
    }

    fn put(&self, path: String, object: serde_json::Value) {
        self.state.objects.lock().unwrap().insert(path, object);
    }

    /// A SecretProviderClass with `provider: aws` and these parameters.
    pub fn put_class(&self, namespace: &str, name: &str, parameters: &[(&str, &str)]) {
        let params: serde_json::Map<String, serde_json::Value> = parameters
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
            .collect();
        self.put_class_spec(
            namespace,
            name,
            serde_json::json!({"provider": "aws", "parameters": params}),
        );
    }

    pub fn put_class_spec(&self, namespace: &str, name: &str, spec: serde_json::Value) {
        self.put(
            format!("/apis/secrets-store.csi.x-k8s.io/v1/namespaces/{namespace}/secretproviderclasses/{name}"),
            serde_json::json!({
                "apiVersion": "secrets-store.csi.x-k8s.io/v1",
                "kind": "SecretProviderClass",
                "metadata": {"name": name, "namespace": namespace, "uid": format!("spc-{name}")},
                "spec": spec,
            }),
        );
    }

    /// A ServiceAccount, annotated with an IRSA role when one is given.
    pub fn put_service_account(&self, namespace: &str, name: &str, role: Option<&str>) {
        let mut metadata = serde_json::json!({"name": name, "namespace": namespace});
        if let Some(role) = role {
            metadata["annotations"] = serde_json::json!({"eks.amazonaws.com/role-arn": role});
        }
        self.put(
            format!("/api/v1/namespaces/{namespace}/serviceaccounts/{name}"),
            serde_json::json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata}),
        );
    }

    /// A Node with labels (for the region label).
    pub fn put_node(&self, name: &str, labels: &[(&str, &str)]) {
        let labels: serde_json::Map<String, serde_json::Value> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
            .collect();
        self.put(
            format!("/api/v1/nodes/{name}"),
            serde_json::json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}}),
        );
    }

    /// TokenReviews fail (503) while `down`.
    pub fn token_reviews_down(&self, down: bool) {
        self.state
            .reviews_down
            .store(down, std::sync::atomic::Ordering::SeqCst);
    }

    /// How many requests (GETs, TokenReview POSTs) a path received.
    pub fn gets(&self, path: &str) -> usize {
        self.state
            .gets
            .lock()
            .unwrap()
            .get(path)
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const TOKEN_REVIEWS: &str = "/apis/authentication.k8s.io/v1/tokenreviews";

/// A TokenReview of a token `PodSpec` made:
/// `eyJ-<kind>-token-for-<pod>.<namespace>.<service account>.<pod uid>`,
/// valid for sts.amazonaws.com (kind `test`) or pods.eks.amazonaws.com
/// (kind `pi`). Anything else is not authenticated.
fn review(body: &[u8]) -> serde_json::Value {
    let request: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let token = request["spec"]["token"].as_str().unwrap_or("");
    let audiences: Vec<&str> = request["spec"]["audiences"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    let parts: Vec<&str> = token.split('.').collect();
    let audience = match parts.first() {
        Some(p) if p.starts_with("eyJ-test-token-for-") => "sts.amazonaws.com",
        Some(p) if p.starts_with("eyJ-pi-token-for-") => "pods.eks.amazonaws.com",
        _ => "",
    };
    let status = if parts.len() == 4 && audiences.contains(&audience) {
        serde_json::json!({
            "authenticated": true,
            "audiences": [audience],
            "user": {
                "username": format!("system:serviceaccount:{}:{}", parts[1], parts[2]),
                "extra": {"authentication.kubernetes.io/pod-uid": [parts[3]]},
            },
        })
    } else {
        serde_json::json!({"authenticated": false, "error": "invalid bearer token"})
    };
    serde_json::json!({
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
        "metadata": {}, "spec": {}, "status": status,
    })
}

async fn answer(req: Request<Incoming>, state: State) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    *state.gets.lock().unwrap().entry(path.clone()).or_default() += 1;
    if path == TOKEN_REVIEWS && req.method() == hyper::Method::POST {
        let down = state.reviews_down.load(std::sync::atomic::Ordering::SeqCst);
        let body = super::body_of(req).await;
        let (status, answer) = if down {
            (
                503,
                serde_json::json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": "unavailable", "reason": "ServiceUnavailable", "code": 503}),
            )
        } else {
            (201, review(&body))
        };
        return Ok(Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(answer.to_string())))
            .unwrap());
    }
    let found = state.objects.lock().unwrap().get(&path).cloned();
    let (status, body) = match found {
        Some(object) if req.method() == hyper::Method::GET => (200, object),
        _ => (
            404,
            serde_json::json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": format!("{path} not found"), "reason": "NotFound", "code": 404
            }),
        ),
    };
    Ok(Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap())
}
