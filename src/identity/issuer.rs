//! A pod's token proven on the node: the API server publishes the keys it
//! signs service-account tokens with (service-account issuer discovery,
//! `/openid/v1/jwks`), so a token kubelet hands over can be checked here —
//! signature, issuer, audience, lifetime, service account and pod — without
//! a TokenReview round trip per pod. What cannot be decided here (a key not
//! published, a token not bound to a pod, an account not in the watch cache)
//! is left to the TokenReview, never guessed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::proof::{Claimant, NotProven};
use crate::secret::Token;

/// The API server's issuer and its token-signing keys.
#[derive(Debug, Clone)]
pub struct IssuerKeys {
    issuer: String,
    keys: JwkSet,
}

#[derive(Debug, thiserror::Error)]
#[error("the API server's service-account issuer discovery is unusable: {0}")]
pub struct IssuerError(String);

impl IssuerKeys {
    /// From the bodies of `/.well-known/openid-configuration` and
    /// `/openid/v1/jwks`.
    pub fn parse(configuration: &str, jwks: &str) -> Result<Self, IssuerError> {
        #[derive(Deserialize)]
        struct Configuration {
            issuer: String,
        }
        let configuration: Configuration = serde_json::from_str(configuration)
            .map_err(|e| IssuerError(format!("openid-configuration: {e}")))?;
        let keys: JwkSet =
            serde_json::from_str(jwks).map_err(|e| IssuerError(format!("jwks: {e}")))?;
        if keys.keys.is_empty() {
            return Err(IssuerError("jwks lists no keys".into()));
        }
        Ok(IssuerKeys {
            issuer: configuration.issuer,
            keys,
        })
    }
}

/// How long fetched keys are used before they are fetched again (a key the
/// API server stopped publishing stops proving tokens within this).
pub const KEYS_MAX_AGE: Duration = Duration::from_secs(600);
/// The least time between two fetches (tokens under unknown keys, or an
/// API server that does not publish them, do not make a fetch each).
pub const KEYS_MIN_RELOAD: Duration = Duration::from_secs(30);

/// How long one fetch of the keys may take.
const KEYS_FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// The issuer keys fetched last. One caller fetches at a time; while it
/// does, the others go on with the keys there are, or none (a slow API
/// server at a reload never holds up publishes), and wait only for the
/// first fetch, at start. A failed fetch drops the keys: a key the API
/// server may have withdrawn is not trusted on without it.
#[derive(Default)]
pub struct KnownKeys {
    /// The keys and when they were last asked for.
    current: std::sync::Mutex<(Option<Arc<IssuerKeys>>, Option<Instant>)>,
    fetching: tokio::sync::Mutex<()>,
}

impl KnownKeys {
    /// The keys, fetched with `load` when there are none or they are older
    /// than [`KEYS_MAX_AGE`], or when `reload` asks (a token under an
    /// unknown key), never more than once per [`KEYS_MIN_RELOAD`]. None
    /// while the API server does not give them.
    pub async fn get<F, E>(&self, reload: bool, load: impl FnOnce() -> F) -> Option<Arc<IssuerKeys>>
    where
        F: std::future::Future<Output = Result<IssuerKeys, E>>,
        E: std::fmt::Display,
    {
        let snapshot = || {
            self.current
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
        };
        let (keys, fetched) = snapshot();
        let due = match fetched.map(|at| at.elapsed()) {
            None => true,
            Some(age) => {
                age >= KEYS_MAX_AGE || ((reload || keys.is_none()) && age >= KEYS_MIN_RELOAD)
            }
        };
        if !due {
            return keys;
        }
        let _fetching = match self.fetching.try_lock() {
            Ok(guard) => guard,
            Err(_) if fetched.is_some() => return keys,
            Err(_) => self.fetching.lock().await,
        };
        // Another caller may have fetched them while this one waited.
        let (latest, latest_fetched) = snapshot();
        if latest_fetched != fetched {
            return latest;
        }
        self.current.lock().unwrap_or_else(|p| p.into_inner()).1 = Some(Instant::now());
        let fetched = match tokio::time::timeout(KEYS_FETCH_TIMEOUT, load()).await {
            Ok(Ok(new)) => Some(Arc::new(new)),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot fetch the API server's token keys; tokens are proven by TokenReview");
                None
            }
            Err(_) => {
                tracing::warn!(timeout = ?KEYS_FETCH_TIMEOUT, "the API server's token keys did not come in time; tokens are proven by TokenReview");
                None
            }
        };
        self.current.lock().unwrap_or_else(|p| p.into_inner()).0 = fetched.clone();
        fetched
    }
}

/// What the node can say of a token by itself.
#[derive(Debug, PartialEq, Eq)]
pub enum LocalProof {
    Proven,
    Refused(NotProven),
    /// Signed with a key not among those known: the API server may have
    /// rotated its keys since they were fetched.
    UnknownKey,
    /// Only the API server can say; why, for the debug log.
    CannotTell(&'static str),
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    #[serde(rename = "kubernetes.io")]
    kubernetes: Option<KubernetesClaims>,
}

#[derive(Deserialize)]
struct KubernetesClaims {
    pod: Option<ObjectClaim>,
    serviceaccount: Option<ObjectClaim>,
}

#[derive(Deserialize)]
struct ObjectClaim {
    uid: String,
}

/// Checks `token` for `who`. `account_uid` is the uid of the pod's
/// ServiceAccount as the watch cache has it: a token of an account deleted
/// and made again under the same name is not its.
pub fn verify(
    token: &Token,
    keys: &IssuerKeys,
    who: &Claimant<'_>,
    account_uid: Option<&str>,
) -> LocalProof {
    let refuse = |reason: &str| {
        LocalProof::Refused(NotProven {
            namespace: who.namespace.to_owned(),
            pod: who.pod.to_owned(),
            service_account: who.service_account.to_owned(),
            audience: who.audience.to_owned(),
            reason: reason.to_owned(),
        })
    };
    let Ok(header) = jsonwebtoken::decode_header(token.expose()) else {
        return LocalProof::CannotTell("not a signed JWT");
    };
    // The algorithms the API server signs with; a key's own algorithm, when
    // it names one, must agree.
    if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) {
        return LocalProof::CannotTell("an algorithm the API server does not sign with");
    }
    let Some(jwk) = header.kid.as_deref().and_then(|kid| keys.keys.find(kid)) else {
        return LocalProof::UnknownKey;
    };
    let Ok(key) = DecodingKey::from_jwk(jwk) else {
        return LocalProof::CannotTell("a published key this node cannot read");
    };
    let mut validation = Validation::new(header.alg);
    validation.set_audience(&[who.audience]);
    validation.set_issuer(&[&keys.issuer]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.validate_nbf = true;
    validation.leeway = 0;
    let claims = match jsonwebtoken::decode::<Claims>(token.expose(), &key, &validation) {
        Ok(data) => data.claims,
        Err(e) => {
            return match e.kind() {
                ErrorKind::InvalidSignature => {
                    refuse("its signature does not verify with the API server's key")
                }
                // Lifetimes are the API server's to judge, on its clock: a
                // node's clock a second behind must not refuse a token
                // issued this instant.
                ErrorKind::ExpiredSignature | ErrorKind::ImmatureSignature => {
                    LocalProof::CannotTell("outside its lifetime on this node's clock")
                }
                ErrorKind::InvalidAudience => refuse(&format!(
                    "it is not issued for the {} audience",
                    who.audience
                )),
                // The API server may accept more issuers than it publishes.
                ErrorKind::InvalidIssuer => LocalProof::CannotTell("another issuer"),
                _ => LocalProof::CannotTell("claims this node cannot read"),
            };
        }
    };
    let expected = format!(
        "system:serviceaccount:{}:{}",
        who.namespace, who.service_account
    );
    if claims.sub != expected {
        return refuse(&format!("it belongs to {}", claims.sub));
    }
    let Some(kubernetes) = claims.kubernetes else {
        return LocalProof::CannotTell("no kubernetes.io claims");
    };
    // Bound to the pod kubelet publishes for: only such tokens are decided
    // here (the TokenReview also checks that the pod still exists).
    match kubernetes.pod {
        Some(pod) if who.pod_uid.is_empty() || pod.uid == who.pod_uid => {}
        Some(pod) => return refuse(&format!("it is bound to another pod (uid {})", pod.uid)),
        None => return LocalProof::CannotTell("not bound to a pod"),
    }
    // An account deleted and made again under its name has a new uid; the
    // watch cache may lag behind it, so a difference is the API server's to
    // judge.
    match (kubernetes.serviceaccount, account_uid) {
        (Some(claimed), Some(current)) if claimed.uid == current => LocalProof::Proven,
        (Some(_), Some(_)) => {
            LocalProof::CannotTell("the service account's uid differs from the cached one")
        }
        _ => LocalProof::CannotTell("the service account's uid is not known here"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::proof::tests::who;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
    use base64::Engine as _;
    use jsonwebtoken::{EncodingKey, Header};

    const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

    struct Signer {
        pkcs8: Vec<u8>,
        jwks: String,
    }

    fn signer(kid: &str) -> Signer {
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .unwrap();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        // Uncompressed point: 0x04, x, y.
        let point = pair.public_key().as_ref();
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let jwks = serde_json::json!({"keys": [{"kty": "EC", "crv": "P-256", "alg": "ES256",
            "use": "sig", "kid": kid, "x": b64(&point[1..33]), "y": b64(&point[33..65])}]})
        .to_string();
        Signer {
            pkcs8: pkcs8.as_ref().to_vec(),
            jwks,
        }
    }

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    /// What kubelet's TokenRequest for the pod gives, changed by `edit`.
    fn token(signer: &Signer, kid: &str, edit: impl FnOnce(&mut serde_json::Value)) -> Token {
        let mut claims = serde_json::json!({
            "aud": ["sts.amazonaws.com"], "iss": ISSUER,
            "exp": now() + 600, "iat": now(), "nbf": now(),
            "sub": "system:serviceaccount:shop:web",
            "kubernetes.io": {"namespace": "shop",
                "pod": {"name": "web-1", "uid": "uid-1"},
                "serviceaccount": {"name": "web", "uid": "sa-uid"}},
        });
        edit(&mut claims);
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(kid.into());
        let key = EncodingKey::from_ec_der(&signer.pkcs8);
        Token::new(jsonwebtoken::encode(&header, &claims, &key).unwrap())
    }

    fn keys(signer: &Signer) -> IssuerKeys {
        IssuerKeys::parse(&format!(r#"{{"issuer":"{ISSUER}"}}"#), &signer.jwks).unwrap()
    }

    type Edit = Box<dyn FnOnce(&mut serde_json::Value)>;

    fn reason(proof: LocalProof) -> String {
        match proof {
            LocalProof::Refused(e) => e.to_string(),
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn the_pods_own_token_is_proven() {
        let s = signer("k1");
        let t = token(&s, "k1", |_| {});
        assert_eq!(
            verify(&t, &keys(&s), &who(), Some("sa-uid")),
            LocalProof::Proven
        );
    }

    #[test]
    fn another_accounts_or_pods_or_audiences_token_is_refused() {
        let s = signer("k1");
        let cases: Vec<(Edit, &str)> = vec![
            (
                Box::new(|c| c["sub"] = "system:serviceaccount:shop:admin".into()),
                "it belongs to system:serviceaccount:shop:admin",
            ),
            (
                Box::new(|c| c["kubernetes.io"]["pod"]["uid"] = "uid-2".into()),
                "bound to another pod (uid uid-2)",
            ),
            (
                Box::new(|c| c["aud"] = serde_json::json!(["pods.eks.amazonaws.com"])),
                "not issued for the sts.amazonaws.com audience",
            ),
        ];
        for (edit, expected) in cases {
            let text = reason(verify(
                &token(&s, "k1", edit),
                &keys(&s),
                &who(),
                Some("sa-uid"),
            ));
            assert!(text.contains(expected), "{text}");
            assert!(
                text.starts_with(
                    "the sts.amazonaws.com token of pod shop/web-1 does not prove service account web"
                ),
                "{text}"
            );
        }
    }

    #[test]
    fn a_token_signed_by_another_key_under_a_published_kid_is_refused() {
        let (published, forger) = (signer("k1"), signer("k1"));
        let forged = token(&forger, "k1", |_| {});
        assert!(
            reason(verify(&forged, &keys(&published), &who(), Some("sa-uid")))
                .contains("signature does not verify")
        );
        // A tampered payload under the real signature, too.
        let real = token(&published, "k1", |_| {});
        let parts: Vec<&str> = real.expose().split('.').collect();
        let other = token(&forger, "k1", |c| {
            c["sub"] = "system:serviceaccount:shop:admin".into()
        });
        let tampered = Token::new(format!(
            "{}.{}.{}",
            parts[0],
            other.expose().split('.').nth(1).unwrap(),
            parts[2]
        ));
        assert!(
            reason(verify(&tampered, &keys(&published), &who(), Some("sa-uid")))
                .contains("signature does not verify")
        );
    }

    #[test]
    fn what_the_node_cannot_decide_is_left_to_the_api_server() {
        let s = signer("k1");
        assert_eq!(
            verify(
                &token(&signer("k2"), "k2", |_| {}),
                &keys(&s),
                &who(),
                Some("sa-uid")
            ),
            LocalProof::UnknownKey
        );
        let cases: Vec<(Token, Option<&str>)> = vec![
            // An account deleted and made again since (or a lagging cache).
            (
                token(&s, "k1", |c| {
                    c["kubernetes.io"]["serviceaccount"]["uid"] = "new-uid".into()
                }),
                Some("sa-uid"),
            ),
            // Not bound to a pod (a long-lived or hand-made token).
            (
                token(&s, "k1", |c| {
                    c["kubernetes.io"].as_object_mut().unwrap().remove("pod");
                }),
                Some("sa-uid"),
            ),
            // Another issuer the API server may also accept.
            (
                token(&s, "k1", |c| c["iss"] = "https://elsewhere".into()),
                Some("sa-uid"),
            ),
            // The account is not in the watch cache.
            (token(&s, "k1", |_| {}), None),
            // Expired, or not valid yet, on this node's clock.
            (
                token(&s, "k1", |c| c["exp"] = (now() - 5).into()),
                Some("sa-uid"),
            ),
            (
                token(&s, "k1", |c| c["nbf"] = (now() + 600).into()),
                Some("sa-uid"),
            ),
            // Not a JWT at all.
            (Token::new("eyJ-not-a-jwt".into()), Some("sa-uid")),
        ];
        for (t, account) in cases {
            let proof = verify(&t, &keys(&s), &who(), account);
            assert!(matches!(proof, LocalProof::CannotTell(_)), "{proof:?}");
        }
    }

    #[tokio::test]
    async fn keys_are_fetched_once_and_a_slow_reload_holds_up_nobody() {
        let s = signer("k1");
        let known = KnownKeys::default();
        let fetches = std::sync::atomic::AtomicUsize::new(0);
        let load = || async {
            fetches.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok::<_, IssuerError>(keys(&s))
        };
        assert!(known.get(false, load).await.is_some());
        assert!(known.get(false, load).await.is_some());
        // An unknown key asks again, but not within KEYS_MIN_RELOAD.
        assert!(known.get(true, load).await.is_some());
        assert_eq!(fetches.load(std::sync::atomic::Ordering::SeqCst), 1);

        // Keys due again: while one caller's fetch hangs, another goes on
        // with the keys there are.
        known.current.lock().unwrap().1 = Some(Instant::now() - KEYS_MAX_AGE);
        assert!(beside_a_hanging_fetch(&known, load).await.is_some());
        // After a failed fetch there are none; a fetch that hangs then holds
        // up nobody either (the others go on to a TokenReview).
        *known.current.lock().unwrap() = (None, Some(Instant::now() - KEYS_MIN_RELOAD));
        assert!(beside_a_hanging_fetch(&known, load).await.is_none());
    }

    /// What a second caller gets while a first caller's fetch never ends;
    /// fails if it waits for that fetch.
    async fn beside_a_hanging_fetch<F>(
        known: &KnownKeys,
        load: impl FnOnce() -> F,
    ) -> Option<Arc<IssuerKeys>>
    where
        F: std::future::Future<Output = Result<IssuerKeys, IssuerError>>,
    {
        let hanging = known.get(false, || {
            std::future::pending::<Result<IssuerKeys, IssuerError>>()
        });
        let other = async {
            tokio::task::yield_now().await;
            tokio::time::timeout(Duration::from_secs(5), known.get(false, load))
                .await
                .expect("a get waited for another's fetch")
        };
        tokio::select! {
            _ = hanging => panic!("a pending fetch cannot end"),
            got = other => got,
        }
    }

    #[test]
    fn discovery_documents_are_checked() {
        let s = signer("k1");
        assert!(IssuerKeys::parse("{}", &s.jwks).is_err());
        assert!(IssuerKeys::parse(r#"{"issuer":"x"}"#, r#"{"keys":[]}"#).is_err());
        assert!(IssuerKeys::parse(r#"{"issuer":"x"}"#, "not json").is_err());
        assert!(IssuerKeys::parse(r#"{"issuer":"x"}"#, &s.jwks).is_ok());
    }
}
