//! EKS Pod Identity: the node's agent (`http://169.254.170.23/v1/credentials`
//! or `http://[fd00:ec2::23]/v1/credentials`) exchanges the pod's
//! `pods.eks.amazonaws.com` token, sent as the Authorization header, for the
//! credentials of the pod's association. A freshly started node may not have
//! its agent up yet, so unreachable addresses are retried for a while; with
//! `auto`, IPv4 falls back to IPv6 (really, on each attempt).

use std::time::{Duration, Instant};

use aws_credential_types::Credentials;
use aws_sdk_sts::primitives::{DateTime, DateTimeFormat};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use serde::Deserialize;

use super::IdentityError;
use crate::metrics::Metrics;
use crate::secret::Token;
use crate::spc::AddressPreference;

/// The agent's two addresses (configurable, so tests can run a stand-in).
#[derive(Debug, Clone)]
pub struct AgentEndpoints {
    pub ipv4: String,
    pub ipv6: String,
}

impl Default for AgentEndpoints {
    fn default() -> Self {
        AgentEndpoints {
            ipv4: "http://169.254.170.23/v1/credentials".into(),
            ipv6: "http://[fd00:ec2::23]/v1/credentials".into(),
        }
    }
}

pub struct PodIdentityAgent {
    endpoints: AgentEndpoints,
    client: Client<HttpConnector, Empty<Bytes>>,
    /// One HTTP attempt.
    attempt_timeout: Duration,
    /// How long unreachable addresses are retried.
    retry_for: Duration,
}

/// The container-credentials document the agent answers with.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AgentCredentials {
    access_key_id: String,
    secret_access_key: String,
    token: String,
    expiration: String,
}

/// One attempt's result.
enum Attempt {
    Credentials(Credentials),
    Refused { status: u16, message: String },
    Unreachable(String),
}

impl PodIdentityAgent {
    pub fn new(endpoints: AgentEndpoints, attempt_timeout: Duration, retry_for: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(attempt_timeout));
        let client = Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector);
        PodIdentityAgent {
            endpoints,
            client,
            attempt_timeout,
            retry_for,
        }
    }

    pub(super) async fn credentials(
        &self,
        token: &Token,
        preference: AddressPreference,
        namespace: &str,
        service_account: &str,
        metrics: &Metrics,
    ) -> Result<Credentials, IdentityError> {
        let order: Vec<&str> = match preference {
            AddressPreference::Ipv4 => vec![&self.endpoints.ipv4],
            AddressPreference::Ipv6 => vec![&self.endpoints.ipv6],
            AddressPreference::Auto => vec![&self.endpoints.ipv4, &self.endpoints.ipv6],
        };
        let give_up = Instant::now() + self.retry_for;
        let mut pause = Duration::from_millis(200);
        loop {
            let mut last = String::new();
            for url in &order {
                match self.attempt(url, token).await {
                    Attempt::Credentials(c) => {
                        metrics.aws_call("PodIdentityAgent", "ok");
                        return Ok(c);
                    }
                    Attempt::Refused { status, message } => {
                        metrics.aws_call("PodIdentityAgent", "access_denied");
                        return Err(IdentityError::AgentRefused {
                            status,
                            message,
                            namespace: namespace.to_owned(),
                            service_account: service_account.to_owned(),
                        });
                    }
                    Attempt::Unreachable(why) => {
                        metrics.aws_call("PodIdentityAgent", "unavailable");
                        tracing::debug!(url, why, "Pod Identity agent attempt failed");
                        last = format!("{url}: {why}");
                    }
                }
            }
            if Instant::now() + pause > give_up {
                return Err(IdentityError::AgentUnavailable {
                    tried: order.join(" and "),
                    message: last,
                });
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }

    async fn attempt(&self, url: &str, token: &Token) -> Attempt {
        let request = match hyper::Request::get(url)
            .header(hyper::header::AUTHORIZATION, token.expose())
            .body(Empty::new())
        {
            Ok(r) => r,
            Err(e) => return Attempt::Unreachable(format!("invalid agent address: {e}")),
        };
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| {
                if e.is_connect() {
                    "connection failed".to_owned()
                } else {
                    "request failed".to_owned()
                }
            })?;
            let status = response.status().as_u16();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|_| "reading the answer failed".to_owned())?
                .to_bytes();
            Ok::<_, String>((status, body))
        };
        let (status, body) = match tokio::time::timeout(self.attempt_timeout, exchange).await {
            Err(_) => return Attempt::Unreachable("timed out".into()),
            Ok(Err(why)) => return Attempt::Unreachable(why),
            Ok(Ok(answer)) => answer,
        };
        match status {
            200 => match parse(&body) {
                Ok(c) => Attempt::Credentials(c),
                Err(why) => Attempt::Unreachable(why),
            },
            400..=499 => Attempt::Refused {
                status,
                message: safe_message(&body, token),
            },
            _ => Attempt::Unreachable(format!("HTTP {status}")),
        }
    }
}

fn parse(body: &[u8]) -> Result<Credentials, String> {
    let c: AgentCredentials = serde_json::from_slice(body)
        .map_err(|e| format!("invalid credentials document: {:?}", e.classify()))?;
    let expiry = DateTime::from_str(&c.expiration, DateTimeFormat::DateTime)
        .ok()
        .and_then(|d| std::time::SystemTime::try_from(d).ok())
        .ok_or_else(|| "invalid Expiration in the credentials document".to_owned())?;
    Ok(Credentials::new(
        c.access_key_id,
        c.secret_access_key,
        Some(c.token),
        Some(expiry),
        "pod-identity",
    ))
}

/// The agent's error text, short, and only if it does not echo the token.
fn safe_message(body: &[u8], token: &Token) -> String {
    let text = String::from_utf8_lossy(body);
    if text.contains(token.expose()) || text.contains("Secret") || text.contains("Token\"") {
        return "(answer withheld)".into();
    }
    text.chars().take(200).collect::<String>().trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_agent_document() {
        let c = parse(br#"{"AccessKeyId":"ASIA1","SecretAccessKey":"s","Token":"t","AccountId":"1","Expiration":"2026-11-28T18:00:00Z"}"#).unwrap();
        assert_eq!(c.access_key_id(), "ASIA1");
        assert!(c.expiry().is_some());
        assert!(parse(br#"{"AccessKeyId":"a"}"#).is_err());
        assert!(
            parse(br#"{"AccessKeyId":"a","SecretAccessKey":"s","Token":"t","Expiration":"soon"}"#)
                .is_err()
        );
    }

    #[test]
    fn error_text_never_echoes_the_token() {
        let token = Token::new("eyJ-pod-token".into());
        assert_eq!(
            safe_message(b"invalid token eyJ-pod-token", &token),
            "(answer withheld)"
        );
        assert_eq!(
            safe_message(b"no association for this service account", &token),
            "no association for this service account"
        );
        assert_eq!(safe_message(&[b'x'; 500], &token).len(), 200);
    }
}
