//! A pod proves its identity with its own token before it is served
//! credentials (and values) obtained for its identity key by another pod.
//! The proof is the API server's TokenReview: the token must be valid for
//! the audience and belong to the pod's service account (and to the pod,
//! when the token is bound to one). Verdicts are kept a few minutes per
//! token so a node does not ask for every republish; a verdict the node
//! reached itself is trusted only while the token's pod still exists
//! ([`judge_pod`]), as the API server would check.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

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

impl Claimant<'_> {
    /// The claimant's token refused, for `reason`.
    pub fn refused(&self, reason: String) -> NotProven {
        NotProven {
            namespace: self.namespace.to_owned(),
            pod: self.pod.to_owned(),
            service_account: self.service_account.to_owned(),
            audience: self.audience.to_owned(),
            reason,
        }
    }
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
    let refuse = |reason: String| who.refused(reason);
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

/// Who proved a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProvenBy {
    /// The node, by its signature: the API server's checks of the bound
    /// pod are left to [`judge_pod`], at every use.
    Node,
    /// The API server (TokenReview), which also checked the bound pod then.
    ApiServer,
}

/// A token's bound pod, as the API server has it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BoundPod {
    Exists {
        uid: String,
        /// When the pod's deletion was asked for (its `deletionTimestamp`).
        deleted_at: Option<SystemTime>,
    },
    Gone,
}

/// How long past a pod's `deletionTimestamp` the API server still accepts
/// its tokens (kube-apiserver's claims validation, `jwt.DefaultLeeway`).
pub const DELETED_POD_LEEWAY: Duration = Duration::from_secs(60);

/// Whether `pod` still stands behind `who`'s token at `now`, as the API
/// server decides it ("service account token has been invalidated"
/// otherwise). Pure.
pub fn judge_pod(pod: &BoundPod, who: &Claimant<'_>, now: SystemTime) -> Result<(), NotProven> {
    let refuse = |reason: String| who.refused(reason);
    match pod {
        BoundPod::Gone => Err(refuse(
            "its pod no longer exists (the token has been invalidated)".into(),
        )),
        BoundPod::Exists { uid, .. } if !who.pod_uid.is_empty() && uid != who.pod_uid => {
            Err(refuse(format!(
                "its pod was deleted and another made under its name (uid {uid}); the token has been invalidated"
            )))
        }
        BoundPod::Exists {
            deleted_at: Some(at),
            ..
        } if *at + DELETED_POD_LEEWAY < now => Err(refuse(
            "its pod was deleted (the token has been invalidated)".into(),
        )),
        BoundPod::Exists { .. } => Ok(()),
    }
}

/// Tokens proven recently, by a keyed hash of (token, audience): the tokens
/// themselves are not kept.
pub struct ProvenTokens {
    keys: RandomState,
    entries: Mutex<HashMap<u64, (String, Instant, ProvenBy)>>,
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

    /// Who proved `token` for `who` within the last [`PROOF_LIFETIME`].
    pub fn proven_by(&self, token: &Token, who: &Claimant<'_>) -> Option<ProvenBy> {
        self.proven_by_at(token, who, Instant::now())
    }

    fn proven_by_at(&self, token: &Token, who: &Claimant<'_>, now: Instant) -> Option<ProvenBy> {
        let key = self.key(token, who);
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.retain(|_, (_, until, _)| *until > now);
        entries
            .get(&key)
            .filter(|(subject, _, _)| *subject == Self::subject(who))
            .map(|(_, _, by)| *by)
    }

    pub fn remember(&self, token: &Token, who: &Claimant<'_>, by: ProvenBy) {
        self.remember_at(token, who, by, Instant::now());
    }

    fn remember_at(&self, token: &Token, who: &Claimant<'_>, by: ProvenBy, now: Instant) {
        let key = self.key(token, who);
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, (Self::subject(who), now + PROOF_LIFETIME, by));
    }

    /// Drops a proof whose pod is gone.
    pub fn forget(&self, token: &Token, who: &Claimant<'_>) {
        let key = self.key(token, who);
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
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
        proofs.remember_at(&token, &who(), ProvenBy::Node, t0);
        assert!(proofs.is_proven_at(&token, &who(), t0 + Duration::from_secs(60)));
        assert_eq!(
            proofs.proven_by_at(&token, &who(), t0),
            Some(ProvenBy::Node)
        );
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
        // A proof whose pod is gone is dropped.
        proofs.remember_at(&token, &who(), ProvenBy::ApiServer, t0);
        assert_eq!(
            proofs.proven_by_at(&token, &who(), t0),
            Some(ProvenBy::ApiServer)
        );
        proofs.forget(&token, &who());
        assert!(!proofs.is_proven_at(&token, &who(), t0));
    }

    impl ProvenTokens {
        fn is_proven_at(&self, token: &Token, who: &Claimant<'_>, now: Instant) -> bool {
            self.proven_by_at(token, who, now).is_some()
        }
    }

    #[test]
    fn a_token_stands_only_while_its_pod_does() {
        let now = SystemTime::now();
        let pod = |uid: &str, deleted_secs_ago: Option<u64>| BoundPod::Exists {
            uid: uid.into(),
            deleted_at: deleted_secs_ago.map(|s| now - Duration::from_secs(s)),
        };
        assert_eq!(judge_pod(&pod("uid-1", None), &who(), now), Ok(()));
        // Within its grace period and the API server's minute after it.
        assert_eq!(judge_pod(&pod("uid-1", Some(59)), &who(), now), Ok(()));
        for (gone, reason) in [
            (BoundPod::Gone, "its pod no longer exists"),
            (
                pod("uid-2", None),
                "another made under its name (uid uid-2)",
            ),
            (pod("uid-1", Some(61)), "its pod was deleted"),
        ] {
            let e = judge_pod(&gone, &who(), now).unwrap_err();
            assert!(e.to_string().contains(reason), "{e}");
            assert!(e.to_string().contains("invalidated"), "{e}");
        }
    }
}
