//! Credentials cached per identity key until shortly before they expire.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;

use super::{IdentityRequest, Source};
use crate::aws::IdentityKey;

/// The key of a pod's credentials is made here, where the identity sources
/// are known; its type lives in `aws`, below identity and fetch.
impl IdentityKey {
    pub fn of(req: &IdentityRequest<'_>) -> Self {
        IdentityKey {
            source: match req.source {
                Source::Irsa { role_arn, .. } => format!("irsa:{role_arn}"),
                Source::PodIdentity { .. } => "pod-identity".to_owned(),
            },
            namespace: req.namespace.to_owned(),
            service_account: req.service_account.to_owned(),
            chain: req.chain.cloned(),
            region: req.region.to_owned(),
        }
    }
}

pub(super) struct CredentialCache {
    /// Credentials closer than this to their expiry are not served.
    margin: Duration,
    entries: Mutex<HashMap<IdentityKey, Credentials>>,
    /// One lock per identity, held while its credentials are obtained.
    gates: Mutex<HashMap<IdentityKey, Arc<tokio::sync::Mutex<()>>>>,
}

impl CredentialCache {
    pub(super) fn new(margin: Duration) -> Self {
        CredentialCache {
            margin,
            entries: Mutex::default(),
            gates: Mutex::default(),
        }
    }

    pub(super) fn get(&self, key: &IdentityKey) -> Option<Credentials> {
        self.get_at(key, SystemTime::now())
    }

    fn get_at(&self, key: &IdentityKey, now: SystemTime) -> Option<Credentials> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let fresh = entries.get(key).is_some_and(|c| match c.expiry() {
            Some(expiry) => expiry
                .duration_since(now)
                .is_ok_and(|left| left > self.margin),
            None => false,
        });
        if fresh {
            entries.get(key).cloned()
        } else {
            entries.remove(key);
            None
        }
    }

    /// The lock that serialises obtaining `key`'s credentials.
    pub(super) fn gate(&self, key: &IdentityKey) -> Arc<tokio::sync::Mutex<()>> {
        self.gates
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key.clone())
            .or_default()
            .clone()
    }

    pub(super) fn remove(&self, key: &IdentityKey) {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    pub(super) fn put(&self, key: IdentityKey, credentials: Credentials) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        // Expired entries of identities no longer used go at each insert.
        let now = SystemTime::now();
        entries.retain(|_, c| c.expiry().is_some_and(|e| e > now));
        entries.insert(key, credentials);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Token;
    use crate::spc::AddressPreference;

    fn req<'a>(source: Source<'a>, ns: &'a str, sa: &'a str) -> IdentityRequest<'a> {
        IdentityRequest {
            namespace: ns,
            service_account: sa,
            pod: "p",
            source,
            region: "us-east-1",
            failover_region: None,
            chain: None,
        }
    }

    fn creds(expires_in: Duration) -> Credentials {
        Credentials::new(
            "AKID",
            "SECRET",
            Some("TOKEN".into()),
            Some(SystemTime::now() + expires_in),
            "test",
        )
    }

    #[test]
    fn keys_separate_every_identity() {
        let t = Token::new("t".into());
        let other = Token::new("other-token".into());
        let irsa = |role| Source::Irsa {
            role_arn: role,
            token: &t,
        };
        let a = IdentityKey::of(&req(irsa("arn:aws:iam::1:role/r"), "ns", "sa"));
        // The token itself is not part of the key: a republish brings a new one.
        assert_eq!(
            a,
            IdentityKey::of(&req(
                Source::Irsa {
                    role_arn: "arn:aws:iam::1:role/r",
                    token: &other
                },
                "ns",
                "sa"
            ))
        );
        assert_ne!(
            a,
            IdentityKey::of(&req(irsa("arn:aws:iam::1:role/r"), "ns", "sa2")),
            "service account"
        );
        assert_ne!(
            a,
            IdentityKey::of(&req(irsa("arn:aws:iam::1:role/r"), "ns2", "sa")),
            "namespace"
        );
        assert_ne!(
            a,
            IdentityKey::of(&req(irsa("arn:aws:iam::1:role/other"), "ns", "sa")),
            "role"
        );
        let pi = Source::PodIdentity {
            token: &t,
            preference: AddressPreference::Auto,
        };
        assert_ne!(a, IdentityKey::of(&req(pi, "ns", "sa")), "auth mode");
        let chain = crate::spc::RoleChain {
            roles: vec!["arn:aws:iam::2:role/x".into()],
            external_id: None,
            duration_seconds: None,
            session_tags: vec![],
            transitive_tag_keys: vec![],
            plain: 0,
        };
        let mut chained = req(irsa("arn:aws:iam::1:role/r"), "ns", "sa");
        chained.chain = Some(&chain);
        assert_ne!(a, IdentityKey::of(&chained), "role chain");
        let tagged_chain = crate::spc::RoleChain {
            session_tags: vec![("k".into(), "v".into())],
            transitive_tag_keys: vec![],
            plain: 0,
            ..chain.clone()
        };
        let mut tagged = chained;
        tagged.chain = Some(&tagged_chain);
        assert_ne!(
            IdentityKey::of(&chained),
            IdentityKey::of(&tagged),
            "session tags"
        );
        let mut west = req(irsa("arn:aws:iam::1:role/r"), "ns", "sa");
        west.region = "us-west-2";
        assert_ne!(a, IdentityKey::of(&west), "region");
    }

    #[test]
    fn served_until_the_margin_before_expiry() {
        let t = Token::new("t".into());
        let key = IdentityKey::of(&req(
            Source::Irsa {
                role_arn: "arn:aws:iam::1:role/r",
                token: &t,
            },
            "ns",
            "sa",
        ));
        let cache = CredentialCache::new(Duration::from_secs(300));
        cache.put(key.clone(), creds(Duration::from_secs(3600)));
        assert!(cache.get(&key).is_some());
        let later = SystemTime::now() + Duration::from_secs(3600 - 299);
        assert!(
            cache.get_at(&key, later).is_none(),
            "inside the margin: fetch anew"
        );
        assert!(cache.get(&key).is_none(), "and the stale entry is gone");
        cache.put(key.clone(), creds(Duration::from_secs(100)));
        assert!(
            cache.get(&key).is_none(),
            "credentials shorter than the margin are never served"
        );
    }
}
