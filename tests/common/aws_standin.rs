//! A local AWS stand-in for the benchmark: STS AssumeRoleWithWebIdentity,
//! Secrets Manager GetSecretValue / BatchGetSecretValue / DescribeSecret and
//! SSM GetParameters / GetParameter, each answered after a fixed latency, each call counted.
//! Every name exists; its value is derived from the name and a version that
//! `change_all` bumps. Loopback only; stopped when dropped.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

/// The size of every value: a typical small secret (a JSON credential).
const VALUE_BYTES: usize = 200;

#[derive(Default)]
struct State {
    calls: Mutex<BTreeMap<String, u64>>,
    /// The current version of each object (1 until changed).
    generation: Mutex<u64>,
    /// TCP connections accepted: with connection reuse, far fewer than calls.
    connections: std::sync::atomic::AtomicU64,
    /// Requests received (counted before the latency, so a caller can see
    /// a call in flight).
    received: std::sync::atomic::AtomicU64,
    /// Account quotas (calls per second, burst of one second) per API;
    /// calls beyond them are answered as AWS throttles.
    quotas: Mutex<HashMap<String, Bucket>>,
    throttled: Mutex<BTreeMap<String, u64>>,
    /// Calls answered per API and second since the start.
    per_second: Mutex<BTreeMap<(String, u64), u64>>,
    started: Option<std::time::Instant>,
}

struct Bucket {
    per_second: f64,
    tokens: f64,
    at: std::time::Instant,
}

impl Bucket {
    fn take(&mut self) -> bool {
        let now = std::time::Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * self.per_second)
            .min(self.per_second);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

pub struct AwsStandIn {
    pub endpoint: String,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl AwsStandIn {
    pub async fn start(latency: Duration) -> Self {
        Self::start_with_quotas(latency, &[]).await
    }

    /// A stand-in that enforces an account's quotas: (API, calls per
    /// second), each with a burst of one second's calls.
    pub async fn start_with_quotas(latency: Duration, quotas: &[(&str, u32)]) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        Self::serve(
            listener,
            None,
            latency,
            quotas,
            format!("http://127.0.0.1:{port}"),
        )
    }

    /// The stand-in as AWS's own host names reach it, for a client that
    /// takes no endpoint (the AWS provider's STS client): HTTPS on `addr`
    /// (127.0.0.1:443) with a certificate for `names`, signed by a CA made
    /// for this run, whose PEM is returned beside it.
    pub async fn start_tls(latency: Duration, addr: &str, names: &[&str]) -> (Self, String) {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "aws-secrets-csi bench CA");
        let ca_pem = ca_params.self_signed(&ca_key).unwrap().pem();
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        let mut config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .unwrap_or_else(|e| panic!("the AWS stand-in cannot listen on {addr}: {e}"));
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let standin = Self::serve(
            listener,
            Some(acceptor),
            latency,
            &[],
            format!("https://{addr}"),
        );
        (standin, ca_pem)
    }

    fn serve(
        listener: tokio::net::TcpListener,
        tls: Option<tokio_rustls::TlsAcceptor>,
        latency: Duration,
        quotas: &[(&str, u32)],
        endpoint: String,
    ) -> Self {
        let now = std::time::Instant::now();
        let state = Arc::new(State {
            received: Default::default(),
            generation: Mutex::new(1),
            quotas: Mutex::new(
                quotas
                    .iter()
                    .map(|(api, rate)| {
                        let rate = f64::from(*rate);
                        (
                            api.to_string(),
                            Bucket {
                                per_second: rate,
                                tokens: rate,
                                at: now,
                            },
                        )
                    })
                    .collect(),
            ),
            started: Some(now),
            ..Default::default()
        });
        let served = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                served
                    .connections
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let state = served.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service =
                        hyper::service::service_fn(move |req| answer(req, state.clone(), latency));
                    let http = hyper::server::conn::http1::Builder::new();
                    let _ = match tls {
                        None => http.serve_connection(TokioIo::new(stream), service).await,
                        Some(tls) => match tls.accept(stream).await {
                            Ok(stream) => {
                                http.serve_connection(TokioIo::new(stream), service).await
                            }
                            Err(_) => return,
                        },
                    };
                });
            }
        });
        AwsStandIn {
            endpoint,
            state,
            task,
        }
    }

    /// Calls per API since the start (or the last `reset`).
    pub fn calls(&self) -> BTreeMap<String, u64> {
        self.state.calls.lock().unwrap().clone()
    }

    /// TCP connections accepted since the start (or the last `reset`).
    pub fn connections(&self) -> u64 {
        self.state
            .connections
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Calls answered as throttled, per API.
    pub fn throttled(&self) -> BTreeMap<String, u64> {
        self.state.throttled.lock().unwrap().clone()
    }

    /// The most calls of each API answered within one second.
    pub fn peak_per_second(&self) -> BTreeMap<String, u64> {
        let mut peaks = BTreeMap::new();
        for ((api, _), n) in self.state.per_second.lock().unwrap().iter() {
            let peak = peaks.entry(api.clone()).or_insert(0);
            *peak = (*peak).max(*n);
        }
        peaks
    }

    pub fn reset(&self) {
        self.state.calls.lock().unwrap().clear();
        self.state
            .connections
            .store(0, std::sync::atomic::Ordering::Relaxed);
    }

    /// Requests received so far, answered or not.
    pub fn received(&self) -> u64 {
        self.state
            .received
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Every object gets a new version.
    pub fn change_all(&self) {
        *self.state.generation.lock().unwrap() += 1;
    }
}

impl Drop for AwsStandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The value of `name` at `generation`, padded to a realistic size.
pub fn value_of(name: &str, generation: u64) -> String {
    let mut v = format!("{{\"name\":\"{name}\",\"generation\":{generation},\"pad\":\"");
    while v.len() < VALUE_BYTES - 2 {
        v.push('x');
    }
    v.push_str("\"}");
    v
}

async fn answer(
    req: Request<Incoming>,
    state: Arc<State>,
    latency: Duration,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let target = req
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = super::body_of(req).await;
    state
        .received
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let generation = *state.generation.lock().unwrap();
    let api_name = if target.is_empty() {
        url_decode_form(&body).remove("Action").unwrap_or_default()
    } else {
        target.rsplit('.').next().unwrap_or("").to_owned()
    };
    let admitted = state
        .quotas
        .lock()
        .unwrap()
        .get_mut(&api_name)
        .is_none_or(Bucket::take);
    if !admitted {
        *state.throttled.lock().unwrap().entry(api_name).or_default() += 1;
        // As AWS says it: STS in XML, the JSON services in JSON.
        let (body, kind) = if target.is_empty() {
            (
                "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>bench</RequestId></ErrorResponse>".to_owned(),
                "text/xml",
            )
        } else {
            (
                json!({"__type": "ThrottlingException", "message": "Rate exceeded"}).to_string(),
                "application/x-amz-json-1.1",
            )
        };
        return Ok(Response::builder()
            .status(400)
            .header("content-type", kind)
            .body(Full::new(Bytes::from(body)))
            .unwrap());
    }
    if let Some(started) = state.started {
        let second = started.elapsed().as_secs();
        *state
            .per_second
            .lock()
            .unwrap()
            .entry((api_name, second))
            .or_default() += 1;
    }
    let (api, response) = if target.is_empty() {
        sts(&body)
    } else {
        let input: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let api = target.rsplit('.').next().unwrap_or("").to_owned();
        let out = match api.as_str() {
            "GetSecretValue" => secret(input["SecretId"].as_str().unwrap_or(""), generation),
            "BatchGetSecretValue" => {
                let ids = input["SecretIdList"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                let values: Vec<Value> = ids
                    .iter()
                    .filter_map(Value::as_str)
                    .map(|id| secret(id, generation))
                    .collect();
                json!({"SecretValues": values, "Errors": []})
            }
            "DescribeSecret" => {
                let id = input["SecretId"].as_str().unwrap_or("");
                let mut stages = serde_json::Map::new();
                stages.insert(version_id(generation), json!(["AWSCURRENT"]));
                json!({"ARN": arn(id), "Name": id, "VersionIdsToStages": stages})
            }
            "GetParameters" => {
                let names = input["Names"].as_array().cloned().unwrap_or_default();
                let parameters: Vec<Value> = names
                    .iter()
                    .filter_map(Value::as_str)
                    .map(|n| parameter(n, generation))
                    .collect();
                json!({"Parameters": parameters, "InvalidParameters": []})
            }
            // One at a time, as External Secrets Operator reads them.
            "GetParameter" => {
                json!({"Parameter": parameter(input["Name"].as_str().unwrap_or(""), generation)})
            }
            _ => json!({"__type": "UnknownOperationException"}),
        };
        (api, (out.to_string(), "application/x-amz-json-1.1"))
    };
    *state.calls.lock().unwrap().entry(api).or_default() += 1;
    Ok(Response::builder()
        .header("content-type", response.1)
        .body(Full::new(Bytes::from(response.0)))
        .unwrap())
}

fn parameter(name: &str, generation: u64) -> Value {
    json!({
        "Name": name, "Type": "SecureString", "DataType": "text",
        "Value": value_of(name, generation), "Version": generation,
        "ARN": format!("arn:aws:ssm:us-east-1:123456789012:parameter{name}"),
    })
}

fn version_id(generation: u64) -> String {
    format!("00000000-0000-4000-8000-{generation:012}")
}

fn arn(id: &str) -> String {
    format!("arn:aws:secretsmanager:us-east-1:123456789012:secret:{id}-AbCdEf")
}

fn secret(id: &str, generation: u64) -> Value {
    json!({
        "ARN": arn(id), "Name": id, "VersionId": version_id(generation),
        "SecretString": value_of(id, generation), "VersionStages": ["AWSCURRENT"],
        "CreatedDate": 1.7e9,
    })
}

/// STS speaks the query protocol: a form in, XML out.
fn sts(body: &[u8]) -> (String, (String, &'static str)) {
    let form: HashMap<String, String> = url_decode_form(body);
    let action = form.get("Action").cloned().unwrap_or_default();
    let expiration =
        humantime::format_rfc3339_seconds(SystemTime::now() + Duration::from_secs(3600));
    let xml = format!(
        "<{action}Response xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><{action}Result>\
         <Credentials><AccessKeyId>ASIABENCH</AccessKeyId><SecretAccessKey>bench-secret-key</SecretAccessKey>\
         <SessionToken>bench-session</SessionToken><Expiration>{expiration}</Expiration></Credentials>\
         <SubjectFromWebIdentityToken>bench</SubjectFromWebIdentityToken>\
         <AssumedRoleUser><Arn>arn:aws:sts::123456789012:assumed-role/reader/bench</Arn><AssumedRoleId>AROABENCH:bench</AssumedRoleId></AssumedRoleUser>\
         </{action}Result><ResponseMetadata><RequestId>bench</RequestId></ResponseMetadata></{action}Response>"
    );
    (action, (xml, "text/xml"))
}

fn url_decode_form(body: &[u8]) -> HashMap<String, String> {
    let text = String::from_utf8_lossy(body);
    text.split('&')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            Some((decode(k), decode(v)))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
