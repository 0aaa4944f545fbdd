//! Kubernetes object names, checked before one reaches a URL or a path.
//! Every name the driver puts into an API request path comes from a pod or
//! a class author; a name such as `../../kube-system/secrets/x` or
//! `x?watch=1` must never get that far.

use std::fmt;

/// Which kind of name: they differ in length and in whether dots are allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    /// RFC 1123 DNS subdomain (most object names): at most 253 characters,
    /// lower-case letters, digits, `-` and `.`, alphanumeric at both ends.
    Subdomain,
    /// RFC 1123 DNS label (namespaces): at most 63 characters, no dots.
    Label,
}

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidName {
    pub kind: NameKind,
    pub reason: &'static str,
}

impl fmt::Display for InvalidName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            NameKind::Subdomain => {
                "a valid Kubernetes name (RFC 1123 subdomain: lower-case letters, digits, '-' and '.', at most 253 characters, starting and ending with a letter or digit)"
            }
            NameKind::Label => {
                "a valid Kubernetes name (RFC 1123 label: lower-case letters, digits and '-', at most 63 characters, starting and ending with a letter or digit)"
            }
        };
        write!(f, "{} is not {what}", self.reason)
    }
}

/// Checks `name` as a name of `kind`.
pub fn check(name: &str, kind: NameKind) -> Result<(), InvalidName> {
    let refuse = |reason| Err(InvalidName { kind, reason });
    let max = match kind {
        NameKind::Subdomain => 253,
        NameKind::Label => 63,
    };
    if name.is_empty() {
        return refuse("an empty name");
    }
    if name.len() > max {
        return refuse("a name this long");
    }
    let allowed = |c: u8| {
        c.is_ascii_lowercase()
            || c.is_ascii_digit()
            || c == b'-'
            || (c == b'.' && kind == NameKind::Subdomain)
    };
    if !name.bytes().all(allowed) {
        return refuse("a name with these characters");
    }
    // Each dot-separated part is a label: alphanumeric at both ends.
    let ends_ok = |part: &str| {
        let b = part.as_bytes();
        !b.is_empty() && b[0].is_ascii_alphanumeric() && b[b.len() - 1].is_ascii_alphanumeric()
    };
    if !name.split('.').all(ends_ok) {
        return refuse("a name with these ends");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everyday_names_pass() {
        for ok in [
            "db-creds",
            "a",
            "web-1",
            "my.app.v2",
            "0abc",
            &"a".repeat(253),
        ] {
            assert_eq!(check(ok, NameKind::Subdomain), Ok(()), "{ok}");
        }
        for ok in ["shop", "kube-system", &"n".repeat(63)] {
            assert_eq!(check(ok, NameKind::Label), Ok(()), "{ok}");
        }
    }

    #[test]
    fn names_that_would_change_a_url_or_a_path_are_refused() {
        for bad in [
            "",
            "../../kube-system/secrets/x",
            "x?watch=1",
            "x#y",
            "a/b",
            "Upper",
            "-lead",
            "trail-",
            ".dot",
            "a..b",
            "a.-b",
            "x%2f",
            "x y",
            "é",
            "x\0",
            &"a".repeat(254),
        ] {
            assert!(check(bad, NameKind::Subdomain).is_err(), "{bad:?}");
        }
        assert!(check("a.b", NameKind::Label).is_err());
        assert!(check(&"n".repeat(64), NameKind::Label).is_err());
    }

    #[test]
    fn the_message_says_what_a_name_must_be() {
        let e = check("x?watch=1", NameKind::Subdomain).unwrap_err();
        assert_eq!(
            e.to_string(),
            "a name with these characters is not a valid Kubernetes name (RFC 1123 subdomain: lower-case letters, digits, '-' and '.', at most 253 characters, starting and ending with a letter or digit)"
        );
    }
}
