//! A recording, fault-injecting HTTP proxy in front of moto: tests read what
//! the driver really sent (STS parameters, which region a call was signed
//! for) and make one region fail while another works.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// One request as the driver sent it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// `X-Amz-Target` (JSON protocols: Secrets Manager, SSM).
    pub target: String,
    /// The SigV4 credential scope's region, when signed.
    pub region: Option<String>,
    /// The form or JSON body.
    pub body: String,
    /// `User-Agent`, as CloudTrail's `userAgent` shows it.
    pub user_agent: String,
}

/// What the proxy does instead of forwarding.
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// 503 ServiceUnavailableException.
    Unavailable,
    /// 400 ThrottlingException, as AWS throttles.
    Throttled,
    /// Forward, but only after this long.
    Delay(std::time::Duration),
}

type FailWhen = Box<dyn Fn(&Recorded) -> Option<Fault> + Send + Sync>;

#[derive(Clone, Default)]
struct Shared {
    recorded: Arc<Mutex<Vec<Recorded>>>,
    fail: Arc<Mutex<Option<FailWhen>>>,
}

pub struct AwsProxy {
    pub endpoint: String,
    shared: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl AwsProxy {
    pub async fn start(upstream: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Shared::default();
        let upstream: Arc<str> = upstream.into();
        let client: Client<HttpConnector, Full<Bytes>> =
            Client::builder(TokioExecutor::new()).build(HttpConnector::new());
        let served = shared.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (shared, upstream, client) = (served.clone(), upstream.clone(), client.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        forward(req, shared.clone(), upstream.clone(), client.clone())
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        AwsProxy {
            endpoint: format!("http://127.0.0.1:{port}"),
            shared,
            task,
        }
    }

    /// Requests for which `f` is true get a 503 instead of moto's answer.
    pub fn fail_when(&self, f: impl Fn(&Recorded) -> bool + Send + Sync + 'static) {
        self.fault_when(move |r| f(r).then_some(Fault::Unavailable));
    }

    /// Requests for which `f` names a fault get it.
    pub fn fault_when(&self, f: impl Fn(&Recorded) -> Option<Fault> + Send + Sync + 'static) {
        *self.shared.fail.lock().unwrap() = Some(Box::new(f));
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.recorded.lock().unwrap().clone()
    }
}

impl Drop for AwsProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(
    req: Request<Incoming>,
    shared: Shared,
    upstream: Arc<str>,
    client: Client<HttpConnector, Full<Bytes>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    // Credential=AKID/20261128/us-east-1/secretsmanager/aws4_request
    let region = header("authorization")
        .split("Credential=")
        .nth(1)
        .and_then(|c| c.split('/').nth(2))
        .map(str::to_owned);
    let recorded = Recorded {
        target: header("x-amz-target"),
        region,
        body: String::from_utf8_lossy(&body).into_owned(),
        user_agent: header("user-agent"),
    };
    let fault = shared
        .fail
        .lock()
        .unwrap()
        .as_ref()
        .and_then(|f| f(&recorded));
    shared.recorded.lock().unwrap().push(recorded);
    let injected = |status: u16, body: &'static [u8]| {
        Ok(Response::builder()
            .status(status)
            .header("content-type", "application/x-amz-json-1.1")
            .body(Full::new(Bytes::from_static(body)))
            .unwrap())
    };
    match fault {
        Some(Fault::Unavailable) => {
            return injected(
                503,
                br#"{"__type":"ServiceUnavailableException","message":"injected by the test"}"#,
            );
        }
        Some(Fault::Throttled) => {
            return injected(
                400,
                br#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#,
            );
        }
        Some(Fault::Delay(d)) => tokio::time::sleep(d).await,
        None => {}
    }
    let uri = format!(
        "{upstream}{}",
        parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
    );
    let mut out = Request::builder().method(parts.method).uri(uri);
    for (k, v) in &parts.headers {
        out = out.header(k, v);
    }
    let answer = match client.request(out.body(Full::new(body)).unwrap()).await {
        Ok(r) => r,
        Err(_) => {
            return Ok(Response::builder()
                .status(502)
                .body(Full::new(Bytes::new()))
                .unwrap());
        }
    };
    let (parts, body) = answer.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    Ok(Response::from_parts(parts, Full::new(body)))
}
