//! A stand-in for the EKS Pod Identity agent: it checks the Authorization
//! header against the token it expects and answers with credentials that
//! moto accepts (for the "reader" role), as the real agent answers with the
//! credentials of the pod's association.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

pub struct FakeAgent {
    pub url: String,
    authorizations: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeAgent {
    /// Listens on `addr` (`127.0.0.1:0`, `[::1]:0`, or a fixed port).
    pub async fn start(addr: SocketAddr, expected_token: &str) -> Self {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let local = listener.local_addr().unwrap();
        let authorizations = Arc::new(Mutex::new(Vec::new()));
        let seen = authorizations.clone();
        let expected: Arc<str> = expected_token.into();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (seen, expected) = (seen.clone(), expected.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        answer(req, seen.clone(), expected.clone())
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        let host = match local {
            SocketAddr::V4(a) => a.to_string(),
            SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
        };
        FakeAgent {
            url: format!("http://{host}/v1/credentials"),
            authorizations,
            task,
        }
    }

    /// The Authorization headers received, in order.
    pub fn authorizations(&self) -> Vec<String> {
        self.authorizations.lock().unwrap().clone()
    }
}

impl Drop for FakeAgent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(
    req: Request<Incoming>,
    seen: Arc<Mutex<Vec<String>>>,
    expected: Arc<str>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    seen.lock().unwrap().push(auth.clone());
    if req.uri().path() != "/v1/credentials" || auth != *expected {
        return Ok(Response::builder()
            .status(403)
            .body(Full::new(Bytes::from_static(
                b"{\"Message\":\"no pod identity association for this token\"}",
            )))
            .unwrap());
    }
    let moto = super::moto();
    let sts = aws_sdk_sts::Client::new(
        &aws_config::SdkConfig::builder()
            .endpoint_url(&moto.endpoint)
            .region(aws_config::Region::new(super::REGION))
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build(),
    );
    let out = sts
        .assume_role_with_web_identity()
        .role_arn(super::READER_ROLE)
        .role_session_name("eks-pod-identity")
        .web_identity_token("agent-token")
        .send()
        .await
        .unwrap();
    let c = out.credentials().unwrap();
    let body = serde_json::json!({
        "AccessKeyId": c.access_key_id(),
        "SecretAccessKey": c.secret_access_key(),
        "Token": c.session_token(),
        "AccountId": super::ACCOUNT,
        "Expiration": c.expiration().fmt(aws_sdk_sts::primitives::DateTimeFormat::DateTime).unwrap(),
    });
    Ok(Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap())
}
