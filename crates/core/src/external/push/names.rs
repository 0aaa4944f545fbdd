//! The names a push may write: a Secrets Manager secret name or a
//! Parameter Store parameter name, store prefix included (what AWS
//! sees). Checked before any call, so a name AWS would refuse fails with
//! the field's path, and a few names AWS takes but that only confuse are
//! refused too (noted per rule).

use crate::external::api::AwsService;

use super::PushError;

/// Secrets Manager: a name is 1 to 512 characters.
pub const SM_MAX_NAME: usize = 512;
/// Parameter Store: the name *with its ARN* is at most 1011 characters.
pub const SSM_MAX_ARN_NAME: usize = 1011;
/// Parameter Store: at most 15 levels of hierarchy.
pub const SSM_MAX_DEPTH: usize = 15;

fn sm_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '+' | '=' | '.' | '@' | '-')
}

fn ssm_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '.' | '-')
}

/// The ARN partition of a region (`cn-*`, `us-gov-*`, `us-iso*`...).
fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else if region.starts_with("us-isob-") {
        "aws-iso-b"
    } else if region.starts_with("us-iso-") {
        "aws-iso"
    } else {
        "aws"
    }
}

/// `prefix + remote_key` as the remote name for `service`, checked. `at`
/// is the field the remote key came from. Besides AWS's own rules, a `.`
/// or `..` path segment is refused (AWS keeps them literally, so they
/// escape nothing, but they read as if they did).
pub fn remote_name(
    service: AwsService,
    prefix: &str,
    remote_key: &str,
    region: &str,
    at: &str,
) -> Result<String, PushError> {
    if remote_key.is_empty() {
        return Err(PushError::Missing {
            path: at.to_owned(),
        });
    }
    let name = format!("{prefix}{remote_key}");
    // Names are not secret, but may be huge: bound what is quoted.
    let quoted = |s: &str| -> String {
        let cut: String = s.chars().take(64).collect();
        if cut.len() < s.len() {
            format!("{cut:?}...")
        } else {
            format!("{cut:?}")
        }
    };
    let shown = |why: String| {
        if prefix.is_empty() {
            PushError::invalid(at, format!("{}: {why}", quoted(&name)))
        } else {
            PushError::invalid(
                at,
                format!("{} (with the store's prefix): {why}", quoted(&name)),
            )
        }
    };
    if name.split('/').any(|seg| seg == "." || seg == "..") {
        return Err(PushError::invalid(
            at,
            format!("{} holds a '.' or '..' path segment", quoted(remote_key)),
        ));
    }
    match service {
        AwsService::SecretsManager => {
            if name.chars().count() > SM_MAX_NAME {
                return Err(PushError::invalid(
                    at,
                    format!(
                        "a Secrets Manager name is at most {SM_MAX_NAME} characters; with the store's prefix this one is {}",
                        name.chars().count()
                    ),
                ));
            }
            if let Some(c) = name.chars().find(|c| !sm_char(*c)) {
                return Err(shown(format!(
                    "{c:?} is not allowed in a Secrets Manager name (letters, digits and /_+=.@- only)"
                )));
            }
            Ok(name)
        }
        AwsService::ParameterStore => {
            if name.len() > SSM_MAX_ARN_NAME {
                return Err(PushError::invalid(
                    at,
                    format!(
                        "a parameter name is at most {SSM_MAX_ARN_NAME} characters with its ARN; this one is {} without it",
                        name.len()
                    ),
                ));
            }
            if let Some(c) = name.chars().find(|c| !ssm_char(*c)) {
                return Err(shown(format!(
                    "{c:?} is not allowed in a parameter name (letters, digits and _.-/ only)"
                )));
            }
            if name.contains('/') && !name.starts_with('/') {
                return Err(shown(
                    "a parameter name with '/' must start with '/' (fully qualified)".into(),
                ));
            }
            if name.contains("//") || name.ends_with('/') {
                return Err(shown("a parameter name has no empty path segment".into()));
            }
            let bare = name.trim_start_matches('/').to_ascii_lowercase();
            if bare.starts_with("aws") || bare.starts_with("ssm") {
                return Err(shown(
                    "a parameter name cannot begin with \"aws\" or \"ssm\" (any case)".into(),
                ));
            }
            if name.matches('/').count() > SSM_MAX_DEPTH {
                return Err(shown(format!(
                    "a parameter name has at most {SSM_MAX_DEPTH} levels"
                )));
            }
            // arn:<partition>:ssm:<region>:<12-digit account>:parameter[/]<name>
            let arn = 4
                + partition(region).len()
                + 5
                + region.len()
                + 1
                + 12
                + 10
                + usize::from(!name.starts_with('/'))
                + name.len();
            if arn > SSM_MAX_ARN_NAME {
                return Err(shown(format!(
                    "a parameter name is at most {SSM_MAX_ARN_NAME} characters with its ARN; in {region} this one is {arn}"
                )));
            }
            Ok(name)
        }
        AwsService::CertificateManager => {
            Err(PushError::unsupported(at, "pushing to Certificate Manager"))
        }
    }
}

/// Parameter Store treats `/name` and `name` as one parameter: the name
/// two remote names are the same parameter under.
pub fn ssm_identity(name: &str) -> &str {
    if name.matches('/').count() == 1 {
        name.trim_start_matches('/')
    } else {
        name
    }
}
