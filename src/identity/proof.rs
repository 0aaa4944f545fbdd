//! A pod proves its identity with its own token before it is served
//! credentials (and values) obtained for its identity key by another pod.
//! The proof is the API server's TokenReview: the token must be valid for
//! the audience and belong to the pod's service account (and to the pod,
//! when the token is bound to one). Verdicts are kept a few minutes per
//! token so a node does not ask for every republish.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::secret::Token;

/// How long a proven token is trusted without asking again (kubelet's
/// tokens live at least 10 minutes and are replaced at 80 % of that).
const PROOF_LIFETIME: Duration = Duration::from_secs(300);

/// Whose token a pod must present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimant<'a> {
    pub namespace: &'a str,
    pub service_account: &'a str,
    pub pod: &'a str,
    pub pod_uid: &'a str,
    pub audience: &'a str,
}

/// Why a token does not prove the claimant's identity. Never holds the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the {audience} token of pod {namespace}/{pod} does not prove service account {service_account}: {reason}"
)]
pub struct NotProven {
    pub namespace: String,
    pub pod: String,
    pub service_account: String,
    pub audience: String,
    pub reason: String,
}

/// What the API server says of a token (TokenReview): the evidence
/// [`judge`] weighs. Defined here, not in `cluster`, so that the API edge
/// depends on identity and not the other way round.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenReviewed {
    pub authenticated: bool,
    pub username: Option<String>,
    /// The pod a bound token belongs to (`authentication.kubernetes.io/pod-uid`).
    pub pod_uid: Option<String>,
    /// The API server's reason when not authenticated (never holds the token).
    pub error: Option<String>,
}

/// Decides whether a TokenReview answer proves `who`. Pure.
pub fn judge(review: &TokenReviewed, who: &Claimant<'_>) -> Result<(), NotProven> {
    let refuse = |reason: String| NotProven {
        namespace: who.namespace.to_owned(),
        pod: who.pod.to_owned(),
        service_account: who.service_account.to_owned(),
        audience: who.audience.to_owned(),
        reason,
    };
    if !review.authenticated {
        return Err(refuse(format!(
            "the API server did not accept it ({})",
            review.error.as_deref().unwrap_or("no reason given")
        )));
    }
    let expected = format!(
        "system:serviceaccount:{}:{}",
        who.namespace, who.service_account
    );
    match review.username.as_deref() {
        Some(user) if user == expected => {}
        Some(user) => return Err(refuse(format!("it belongs to {user}"))),
        None => return Err(refuse("it names no user".into())),
    }
    if let Some(uid) = review.pod_uid.as_deref()
        && !who.pod_uid.is_empty()
        && uid != who.pod_uid
    {
        return Err(refuse(format!("it is bound to another pod (uid {uid})")));
    }
    Ok(())
}

/// Tokens proven recently, by a keyed hash of (token, audience): the tokens
/// themselves are not kept.
pub struct ProvenTokens {
    keys: RandomState,
    entries: Mutex<HashMap<u64, (String, Instant)>>,
}

impl Default for ProvenTokens {
    fn default() -> Self {
        ProvenTokens {
            keys: RandomState::new(),
            entries: Mutex::default(),
        }
    }
}

impl ProvenTokens {
    fn key(&self, token: &Token, who: &Claimant<'_>) -> u64 {
        self.keys.hash_one((token.expose(), who.audience))
    }

    /// What a proof was for: the claimant, whole.
    fn subject(who: &Claimant<'_>) -> String {
        format!(
            "{}/{}/{}/{}",
            who.namespace, who.service_account, who.pod_uid, who.audience
        )
    }

    pub fn is_proven(&self, token: &Token, who: &Claimant<'_>) -> bool {
        self.is_proven_at(token, who, Instant::now())
    }

    fn is_proven_at(&self, token: &Token, who: &Claimant<'_>, now: Instant) -> bool {
        let key = self.key(token, who);
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.retain(|_, (_, until)| *until > now);
        entries
            .get(&key)
            .is_some_and(|(subject, _)| *subject == Self::subject(who))
    }

    pub fn remember(&self, token: &Token, who: &Claimant<'_>) {
        self.remember_at(token, who, Instant::now());
    }

    fn remember_at(&self, token: &Token, who: &Claimant<'_>, now: Instant) {
        let key = self.key(token, who);
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, (Self::subject(who), now + PROOF_LIFETIME));
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A pod's claim, for the tests of every way of proving it.
    pub(crate) fn who() -> Claimant<'static> {
        Claimant {
            namespace: "shop",
            service_account: "web",
            pod: "web-1",
            pod_uid: "uid-1",
            audience: "sts.amazonaws.com",
        }
    }

    fn review(user: &str, uid: Option<&str>) -> TokenReviewed {
        TokenReviewed {
            authenticated: true,
            username: Some(user.into()),
            pod_uid: uid.map(Into::into),
            error: None,
        }
    }

    #[test]
    fn the_pods_own_service_account_and_pod_prove_it() {
        assert_eq!(
            judge(
                &review("system:serviceaccount:shop:web", Some("uid-1")),
                &who()
            ),
            Ok(())
        );
        // A token not bound to a pod proves the service account.
        assert_eq!(
            judge(&review("system:serviceaccount:shop:web", None), &who()),
            Ok(())
        );
    }

    #[test]
    fn anything_else_is_refused_with_the_reason() {
        let cases = [
            (
                TokenReviewed {
                    error: Some("token has expired".into()),
                    ..Default::default()
                },
                "did not accept it (token has expired)",
            ),
            (
                review("system:serviceaccount:shop:admin", Some("uid-1")),
                "belongs to system:serviceaccount:shop:admin",
            ),
            (
                review("system:serviceaccount:other:web", None),
                "belongs to system:serviceaccount:other:web",
            ),
            (
                review("system:serviceaccount:shop:web", Some("uid-2")),
                "bound to another pod (uid uid-2)",
            ),
            (
                TokenReviewed {
                    authenticated: true,
                    ..Default::default()
                },
                "names no user",
            ),
        ];
        for (r, reason) in cases {
            let e = judge(&r, &who()).unwrap_err();
            assert!(e.to_string().contains(reason), "{e}");
            assert!(
                e.to_string().starts_with("the sts.amazonaws.com token of pod shop/web-1 does not prove service account web"),
                "{e}"
            );
        }
    }

    #[test]
    fn a_proof_is_kept_for_its_claimant_and_lifetime_only() {
        let proofs = ProvenTokens::default();
        let token = Token::new("eyJ-t".into());
        let t0 = Instant::now();
        assert!(!proofs.is_proven_at(&token, &who(), t0));
        proofs.remember_at(&token, &who(), t0);
        assert!(proofs.is_proven_at(&token, &who(), t0 + Duration::from_secs(60)));
        // The same token presented for another pod or audience is not.
        let other_pod = Claimant {
            pod_uid: "uid-9",
            ..who()
        };
        assert!(!proofs.is_proven_at(&token, &other_pod, t0));
        let other_audience = Claimant {
            audience: "pods.eks.amazonaws.com",
            ..who()
        };
        assert!(!proofs.is_proven_at(&token, &other_audience, t0));
        assert!(!proofs.is_proven_at(&Token::new("eyJ-u".into()), &who(), t0));
        assert!(!proofs.is_proven_at(&token, &who(), t0 + PROOF_LIFETIME));
    }
}
