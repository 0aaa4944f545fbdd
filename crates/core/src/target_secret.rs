//! The rules for a Kubernetes Secret written on an author's behalf, shared
//! by both front ends (a class's `secretObjects`, an ExternalSecret's
//! target). The author may be hostile and holds no Secret RBAC of its own:
//! some Secret types, labels and annotations make Kubernetes itself act
//! (a `kubernetes.io/service-account-token` Secret is filled with a
//! long-lived token of the ServiceAccount its annotation names), and a
//! Secret that someone else keeps (Helm's release, a token, one owned by
//! another controller or another ExternalSecret) is not the author's to
//! write. Pure rules, decided here once.

/// The Secret types a writer may create or write into. Others carry
/// meaning to Kubernetes or to another tool (service-account and bootstrap
/// tokens, `helm.sh/release.v1`).
pub const ALLOWED_TYPES: [&str; 6] = [
    "Opaque",
    "kubernetes.io/tls",
    "kubernetes.io/dockerconfigjson",
    "kubernetes.io/dockercfg",
    "kubernetes.io/basic-auth",
    "kubernetes.io/ssh-auth",
];

pub fn allowed_type(type_: &str) -> bool {
    ALLOWED_TYPES.contains(&type_)
}

/// Label and annotation keys under the `kubernetes.io` and `k8s.io`
/// prefixes (and their subdomains) belong to Kubernetes: an author may not
/// set them. `app.kubernetes.io` is the exception: the recommended labels
/// (`app.kubernetes.io/name`, `.../part-of`) describe an application to
/// people and tools, no controller acts on them, and External Secrets
/// templates use them.
pub fn reserved_key(key: &str) -> bool {
    let Some((prefix, _)) = key.split_once('/') else {
        return false;
    };
    let prefix = prefix.to_ascii_lowercase();
    if prefix == "app.kubernetes.io" {
        return false;
    }
    ["kubernetes.io", "k8s.io"]
        .iter()
        .any(|r| prefix == *r || prefix.ends_with(&format!(".{r}")))
}

/// The label by which a Secret the controller did not create opts in to
/// being written by ExternalSecrets of its namespace (`Merge`, or `Owner`
/// and `Orphan` on a Secret that already exists).
pub const WRITABLE_LABEL: &str = "external-secrets.aws-secrets-csi.io/writable";

/// How the ExternalSecret asks to write its Secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    Owner,
    Orphan,
    Merge,
}

/// The controlling owner reference of an existing Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Controller<'a> {
    pub kind: &'a str,
    pub api_version: &'a str,
    pub name: &'a str,
    pub uid: &'a str,
}

/// What the writer needs to know of a Secret that exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Existing<'a> {
    pub type_: &'a str,
    /// Carries `reconcile.external-secrets.io/managed=true`: an
    /// ExternalSecret's controller created it.
    pub managed: bool,
    /// Carries [`WRITABLE_LABEL`]`=true`: someone with Secret RBAC opted
    /// it in.
    pub writable: bool,
    pub controller: Option<Controller<'a>>,
}

/// Why an ExternalSecret may not write into an existing Secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "is of type {0:?}, which an ExternalSecret never writes (only Opaque, kubernetes.io/tls, kubernetes.io/dockerconfigjson, kubernetes.io/dockercfg, kubernetes.io/basic-auth and kubernetes.io/ssh-auth)"
    )]
    Type(String),
    #[error("already owned by ExternalSecret {0}; refusing to take it over")]
    OwnedByExternalSecret(String),
    #[error("is controlled by {kind} {name}; refusing to write it")]
    OwnedByOther { kind: String, name: String },
    #[error(
        "exists and was not created by an ExternalSecret (no label reconcile.external-secrets.io/managed=true); label it {WRITABLE_LABEL}=true to let ExternalSecrets of its namespace write it"
    )]
    NotManaged,
}

fn is_external_secret(c: &Controller) -> bool {
    c.kind == "ExternalSecret" && c.api_version.starts_with("external-secrets.io/")
}

/// Whether the ExternalSecret with uid `es_uid` may write `existing` under
/// `policy`:
/// - never a Secret of a type outside [`ALLOWED_TYPES`];
/// - a Secret this ExternalSecret controls, always;
/// - one another ExternalSecret controls: only to `Merge` keys into it
///   (External Secrets' Owner + Merge pattern), never to take it over;
/// - one another controller controls: only when opted in by label;
/// - otherwise only one an ExternalSecret created (the managed label) or
///   one opted in by label.
pub fn may_write(existing: &Existing, policy: Policy, es_uid: &str) -> Result<(), Refusal> {
    if !allowed_type(existing.type_) {
        return Err(Refusal::Type(existing.type_.to_owned()));
    }
    if let Some(c) = &existing.controller {
        if c.uid == es_uid {
            return Ok(());
        }
        if is_external_secret(c) {
            if policy != Policy::Merge {
                return Err(Refusal::OwnedByExternalSecret(c.name.to_owned()));
            }
        } else if !existing.writable {
            return Err(Refusal::OwnedByOther {
                kind: c.kind.to_owned(),
                name: c.name.to_owned(),
            });
        }
    }
    if existing.managed || existing.writable {
        Ok(())
    } else {
        Err(Refusal::NotManaged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn es(uid: &'static str, name: &'static str) -> Option<Controller<'static>> {
        Some(Controller {
            kind: "ExternalSecret",
            api_version: "external-secrets.io/v1",
            name,
            uid,
        })
    }

    fn existing(type_: &'static str, managed: bool, writable: bool) -> Existing<'static> {
        Existing {
            type_,
            managed,
            writable,
            controller: None,
        }
    }

    const ALL: [Policy; 3] = [Policy::Owner, Policy::Orphan, Policy::Merge];

    #[test]
    fn token_and_helm_secrets_are_never_written() {
        for type_ in [
            "kubernetes.io/service-account-token",
            "helm.sh/release.v1",
            "bootstrap.kubernetes.io/token",
        ] {
            for managed in [false, true] {
                for writable in [false, true] {
                    let mut e = existing(type_, managed, writable);
                    for controller in [None, es("me", "mine")] {
                        e.controller = controller;
                        for p in ALL {
                            assert_eq!(
                                may_write(&e, p, "me"),
                                Err(Refusal::Type(type_.into())),
                                "{type_} {p:?}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_secret_nobody_opted_in_is_not_written() {
        for p in ALL {
            let e = may_write(&existing("Opaque", false, false), p, "me").unwrap_err();
            assert_eq!(e, Refusal::NotManaged);
            assert!(e.to_string().contains(WRITABLE_LABEL), "{e}");
            assert_eq!(may_write(&existing("Opaque", false, true), p, "me"), Ok(()));
            assert_eq!(may_write(&existing("Opaque", true, false), p, "me"), Ok(()));
        }
    }

    #[test]
    fn another_external_secrets_secret_is_merged_into_never_taken() {
        let mut e = existing("Opaque", true, false);
        e.controller = es("other", "db");
        for p in [Policy::Owner, Policy::Orphan] {
            let refusal = may_write(&e, p, "me").unwrap_err();
            assert_eq!(refusal, Refusal::OwnedByExternalSecret("db".into()));
            assert_eq!(
                refusal.to_string(),
                "already owned by ExternalSecret db; refusing to take it over"
            );
        }
        assert_eq!(may_write(&e, Policy::Merge, "me"), Ok(()));
        // Its own Secret, always.
        e.controller = es("me", "mine");
        e.managed = false;
        for p in ALL {
            assert_eq!(may_write(&e, p, "me"), Ok(()));
        }
    }

    #[test]
    fn another_controllers_secret_only_when_opted_in() {
        let mut e = existing("kubernetes.io/tls", true, false);
        e.controller = Some(Controller {
            kind: "Certificate",
            api_version: "cert-manager.io/v1",
            name: "web",
            uid: "u",
        });
        for p in ALL {
            assert_eq!(
                may_write(&e, p, "me"),
                Err(Refusal::OwnedByOther {
                    kind: "Certificate".into(),
                    name: "web".into()
                })
            );
        }
        e.writable = true;
        for p in ALL {
            assert_eq!(may_write(&e, p, "me"), Ok(()));
        }
        // A kind named ExternalSecret of another group is another controller.
        e.writable = false;
        e.controller = Some(Controller {
            kind: "ExternalSecret",
            api_version: "evil.example.com/v1",
            name: "x",
            uid: "u",
        });
        assert!(matches!(
            may_write(&e, Policy::Merge, "me"),
            Err(Refusal::OwnedByOther { .. })
        ));
    }

    #[test]
    fn kubernetes_keys_are_reserved_but_the_recommended_app_labels_are_not() {
        for key in [
            "kubernetes.io/service-account.name",
            "kubernetes.io/service-account.uid",
            "Kubernetes.IO/x",
            "kubectl.kubernetes.io/last-applied-configuration",
            "node-role.kubernetes.io/control-plane",
            "k8s.io/x",
            "x.k8s.io/y",
        ] {
            assert!(reserved_key(key), "{key}");
        }
        for key in [
            "app.kubernetes.io/name",
            "app.kubernetes.io/part-of",
            "example.com/kubernetes.io",
            "kubernetes.io",
            "team",
            "notkubernetes.io/x",
        ] {
            assert!(!reserved_key(key), "{key}");
        }
    }
}

/// Annotation with [`data_hash`] of the data written, as External Secrets
/// writes it: a Secret whose data no longer matches was edited by hand.
pub const DATA_HASH_ANNOTATION: &str = "reconcile.external-secrets.io/data-hash";

/// External Secrets' hash of a Secret's data: SHA3-224 of Go's `%+v` of
/// the `map[string][]byte` (keys sorted, bytes as decimal lists), hex. The
/// same text, so a Secret External Secrets wrote is seen as unedited here
/// and the other way round.
pub fn data_hash<'a>(data: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> String {
    use std::fmt::Write;
    let mut sorted: Vec<(&str, &[u8])> = data.into_iter().collect();
    sorted.sort();
    let mut text = String::from("map[");
    for (i, (k, v)) in sorted.iter().enumerate() {
        if i > 0 {
            text.push(' ');
        }
        let _ = write!(text, "{k}:[");
        for (j, b) in v.iter().enumerate() {
            if j > 0 {
                text.push(' ');
            }
            let _ = write!(text, "{b}");
        }
        text.push(']');
    }
    text.push(']');
    digest(text.as_bytes())
}

/// SHA3-224 of `bytes`, hex (External Secrets' `ObjectHash` of a string is
/// this of the string itself).
pub fn digest(bytes: &[u8]) -> String {
    use sha3::Digest;
    sha3::Sha3_224::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod hash_tests {
    use super::*;

    #[test]
    fn data_hash_is_external_secrets_object_hash() {
        // Go: fmt.Sprintf("%+v", map[string][]byte{"b": {1, 2}, "a": []byte("hi")})
        // is "map[a:[104 105] b:[1 2]]".
        assert_eq!(
            data_hash([("b", &[1u8, 2][..]), ("a", b"hi".as_slice())]),
            digest(b"map[a:[104 105] b:[1 2]]")
        );
        assert_eq!(data_hash(std::iter::empty()), digest(b"map[]"));
        // SHA3-224 of "" (FIPS 202 test vector).
        assert_eq!(
            digest(b""),
            "6b4e03423667dbb73b6e15454f0eb1abd4597f9a1b078e3f5b5a6bc7"
        );
    }
}
