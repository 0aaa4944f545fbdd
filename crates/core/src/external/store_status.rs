//! The status a SecretStore or ClusterSecretStore this controller serves
//! should show, as External Secrets v2.9.0's store controller writes it
//! (`pkg/controllers/secretstore/{common,util}.go`): one condition of type
//! `Ready` and, once valid, `capabilities: ReadWrite` (the AWS provider's).
//!
//! - Valid: `Ready=True`, reason `Valid`, message `store validated`.
//! - Refused: `Ready=False`, reason `InvalidProviderConfig`, message
//!   `unable to create client` (ESO's) followed by the field path and the
//!   cause (ESO puts the cause in an Event; here the status says it, so that
//!   `kubectl get` shows what to fix). The message comes from the spec and
//!   this controller's rules only: never a secret value or a token.
//! - The condition's `lastTransitionTime` moves only when its status flips;
//!   nothing is written when status, reason and message are already there.
//! - A refused store keeps the capabilities it had (ESO sets them on the
//!   valid path only); other condition types are kept, `Ready` goes last.
//!
//! Pure: the verdict comes from the spec alone. ESO's AWS `Validate()` makes
//! no call to Secrets Manager or Parameter Store; it resolves credentials
//! (static keys: a Secret read; IRSA or a role: an STS call), and answers
//! "unknown, so valid" for referent stores. This controller makes no call at
//! all: credentials are resolved, and their failures reported on the
//! ExternalSecrets, at sync time; a store marked not ready by a passing STS
//! fault would stop (flood gate) every ExternalSecret of the store for a
//! whole refresh interval, and an STS call per store per interval is load
//! that tells nothing a sync does not.

use std::time::Duration;

use serde_json::{Value, json};

use super::{ExternalError, Store, StoreAuth, go_duration};

/// The condition type.
pub const READY: &str = "Ready";
/// ESO's `ReasonStoreValid` and its message.
pub const REASON_VALID: &str = "Valid";
pub const MESSAGE_VALID: &str = "store validated";
/// ESO's `ReasonInvalidProviderConfig` and the start of its message.
pub const REASON_INVALID: &str = "InvalidProviderConfig";
pub const MESSAGE_INVALID: &str = "unable to create client";
/// The AWS provider's `Capabilities()`.
pub const CAPABILITIES: &str = "ReadWrite";
/// ESO's `--store-requeue-interval` default: how often a store is validated
/// again when its `refreshInterval` is unset or 0.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(5 * 60);

/// The path and cause of the refusal of a namespaced store without `auth`.
pub const CONTROLLER_IDENTITY_PATH: &str = "spec.provider.aws.auth";
pub const CONTROLLER_IDENTITY_WHY: &str = "is required: a SecretStore without auth would lend the controller's own AWS identity to its namespace (allowed only with --namespaced-stores-use-controller-identity; a ClusterSecretStore may use it)";

/// A store's spec as this controller may use it: [`super::store`], and
/// the operator's rule that a namespaced store does not borrow the
/// controller's identity unless allowed. `namespace`: the store's own
/// (None for a ClusterSecretStore).
pub fn usable(
    spec: &Value,
    namespace: Option<&str>,
    namespaced_stores_use_controller_identity: bool,
) -> Result<Store, ExternalError> {
    let store = super::store(spec, namespace)?;
    if store.auth == StoreAuth::Controller
        && namespace.is_some()
        && !namespaced_stores_use_controller_identity
    {
        return Err(ExternalError::Invalid {
            path: CONTROLLER_IDENTITY_PATH.into(),
            why: CONTROLLER_IDENTITY_WHY.into(),
        });
    }
    Ok(store)
}

/// The `Ready` condition a store should carry (without its time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub ready: bool,
    pub reason: &'static str,
    pub message: String,
}

impl Verdict {
    pub fn valid() -> Self {
        Verdict {
            ready: true,
            reason: REASON_VALID,
            message: MESSAGE_VALID.into(),
        }
    }

    /// `cause` names the field and what is wrong with it.
    pub fn invalid(cause: impl std::fmt::Display) -> Self {
        Verdict {
            ready: false,
            reason: REASON_INVALID,
            message: format!("{MESSAGE_INVALID}: {cause}"),
        }
    }

    /// The verdict on a store's spec.
    pub fn of(
        spec: &Value,
        namespace: Option<&str>,
        namespaced_stores_use_controller_identity: bool,
    ) -> Self {
        match usable(spec, namespace, namespaced_stores_use_controller_identity) {
            Ok(_) => Verdict::valid(),
            Err(e) => Verdict::invalid(e),
        }
    }
}

/// The store's status once `verdict` is in it, or None when the status
/// already says it (then nothing is written). `status`: the store's current
/// `status` (Null when it has none); `now`: an RFC 3339 time, used only
/// when the condition is new or its status flips.
pub fn next_status(status: &Value, verdict: &Verdict, now: &str) -> Option<Value> {
    let conditions: &[Value] = status["conditions"].as_array().map_or(&[], Vec::as_slice);
    let current = conditions.iter().find(|c| c["type"] == READY);
    let wanted_status = if verdict.ready { "True" } else { "False" };
    let capabilities = if verdict.ready {
        Some(CAPABILITIES)
    } else {
        // Kept as it was (ESO sets them on the valid path only).
        status["capabilities"].as_str()
    };
    let same_condition = current.is_some_and(|c| {
        c["status"] == wanted_status
            && c["reason"] == verdict.reason
            && c["message"] == verdict.message.as_str()
    });
    if same_condition && status["capabilities"].as_str() == capabilities {
        return None;
    }
    let since = current
        .filter(|c| c["status"] == wanted_status)
        .and_then(|c| c["lastTransitionTime"].as_str())
        .unwrap_or(now);
    let mut kept: Vec<Value> = conditions
        .iter()
        .filter(|c| c["type"] != READY)
        .cloned()
        .collect();
    kept.push(json!({
        "type": READY,
        "status": wanted_status,
        "reason": verdict.reason,
        "message": verdict.message,
        "lastTransitionTime": since,
    }));
    let mut next = json!({ "conditions": kept });
    if let Some(c) = capabilities {
        next["capabilities"] = json!(c);
    }
    Some(next)
}

/// How often the store is validated again: its `refreshInterval` (seconds,
/// or a duration such as `10m`) when above 0, else [`DEFAULT_REFRESH`].
/// Err (with the field's path) when it cannot be read; ESO then does not
/// validate the store at all, which leaves its readiness alone: the caller
/// keeps the default interval and says why.
pub fn refresh_interval(spec: &Value) -> Result<Duration, ExternalError> {
    let at = "spec.refreshInterval";
    let invalid = |why: String| ExternalError::Invalid {
        path: at.into(),
        why,
    };
    let interval = match &spec["refreshInterval"] {
        Value::Null => return Ok(DEFAULT_REFRESH),
        Value::Number(n) => match n.as_u64() {
            Some(s) => Duration::from_secs(s),
            None => return Err(invalid(format!("{n} is not a whole number of seconds ≥ 0"))),
        },
        Value::String(s) => go_duration(s)
            .ok_or_else(|| invalid(format!("{s:?} is not a duration such as 1h or 30s")))?,
        other => {
            return Err(invalid(format!(
                "{other} is neither seconds nor a duration"
            )));
        }
    };
    Ok(if interval.is_zero() {
        DEFAULT_REFRESH
    } else {
        interval
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: &str = "2026-12-07T16:00:00Z";
    const BEFORE: &str = "2026-01-01T00:00:00Z";

    fn spec(aws: Value) -> Value {
        json!({"provider": {"aws": aws}})
    }

    fn keys() -> Value {
        json!({"secretRef": {
            "accessKeyIDSecretRef": {"name": "creds", "key": "id"},
            "secretAccessKeySecretRef": {"name": "creds", "key": "secret"},
        }})
    }

    fn ready(status: &str, reason: &str, message: &str, since: &str) -> Value {
        json!({"type": "Ready", "status": status, "reason": reason,
               "message": message, "lastTransitionTime": since})
    }

    #[test]
    fn a_valid_store_is_ready_as_eso_says_it() {
        let s = spec(json!({"service": "SecretsManager", "region": "eu-west-1", "auth": keys()}));
        assert_eq!(Verdict::of(&s, Some("team"), false), Verdict::valid());
        assert_eq!(Verdict::of(&s, None, false), Verdict::valid());
        let v = Verdict::valid();
        assert_eq!(
            (v.ready, v.reason, v.message.as_str()),
            (true, "Valid", "store validated")
        );
    }

    #[test]
    fn a_refused_store_names_the_field_and_the_cause() {
        let s = spec(json!({"service": "SecretsManager", "region": "", "auth": keys()}));
        let v = Verdict::of(&s, Some("team"), false);
        assert!(!v.ready);
        assert_eq!(v.reason, "InvalidProviderConfig");
        assert_eq!(
            v.message,
            "unable to create client: spec.provider.aws.region is required"
        );

        let s = spec(json!({"service": "SecretsManager", "region": "us-east-1",
                            "role": "not-a-role", "auth": keys()}));
        let v = Verdict::of(&s, None, false);
        assert!(
            v.message
                .starts_with("unable to create client: spec.provider.aws.role: ")
        );
        assert!(v.message.contains("not an IAM role ARN"), "{}", v.message);

        // A field the schema does not have is named too.
        let s = spec(json!({"service": "SecretsManager", "region": "us-east-1", "colour": 1}));
        let v = Verdict::of(&s, None, false);
        assert!(!v.ready);
        assert!(
            v.message.contains("spec.provider.aws.colour"),
            "{}",
            v.message
        );

        // Another provider is not ours to serve.
        let v = Verdict::of(&json!({"provider": {}}), None, false);
        assert_eq!(
            v.message,
            "unable to create client: spec.provider.aws is required"
        );
    }

    #[test]
    fn a_namespaced_store_without_auth_is_ready_only_where_allowed() {
        let s = spec(json!({"service": "ParameterStore", "region": "us-east-1"}));
        let refused = Verdict::of(&s, Some("team"), false);
        assert!(!refused.ready);
        assert!(
            refused
                .message
                .contains("spec.provider.aws.auth: is required")
        );
        assert!(Verdict::of(&s, Some("team"), true).ready);
        // A ClusterSecretStore is an admin's object: it may use it.
        assert!(Verdict::of(&s, None, false).ready);
    }

    #[test]
    fn conditions_belong_to_cluster_stores_only() {
        let mut s =
            spec(json!({"service": "SecretsManager", "region": "us-east-1", "auth": keys()}));
        s["conditions"] = json!([{"namespaces": ["a"]}]);
        assert!(Verdict::of(&s, None, false).ready);
        let v = Verdict::of(&s, Some("team"), false);
        assert!(v.message.contains("spec.conditions"), "{}", v.message);
    }

    #[test]
    fn a_new_status_is_written_with_capabilities_when_valid() {
        let next = next_status(&Value::Null, &Verdict::valid(), NOW).unwrap();
        assert_eq!(
            next,
            json!({"conditions": [ready("True", "Valid", "store validated", NOW)],
                   "capabilities": "ReadWrite"})
        );
        let next = next_status(&Value::Null, &Verdict::invalid("x: y"), NOW).unwrap();
        assert_eq!(
            next,
            json!({"conditions": [ready("False", "InvalidProviderConfig",
                                        "unable to create client: x: y", NOW)]})
        );
    }

    #[test]
    fn an_unchanged_status_is_not_written() {
        let status = json!({"conditions": [ready("True", "Valid", "store validated", BEFORE)],
                            "capabilities": "ReadWrite"});
        assert_eq!(next_status(&status, &Verdict::valid(), NOW), None);
        let refused = Verdict::invalid("spec.provider.aws.region is required");
        let status = json!({"conditions": [ready("False", refused.reason, &refused.message, BEFORE)],
                            "capabilities": "ReadWrite"});
        assert_eq!(next_status(&status, &refused, NOW), None);
        let status =
            json!({"conditions": [ready("False", refused.reason, &refused.message, BEFORE)]});
        assert_eq!(next_status(&status, &refused, NOW), None);
    }

    #[test]
    fn the_transition_time_moves_only_when_the_status_flips() {
        // Same status, other message: rewritten, time kept.
        let status =
            json!({"conditions": [ready("False", "InvalidProviderConfig", "old", BEFORE)]});
        let next = next_status(&status, &Verdict::invalid("new"), NOW).unwrap();
        assert_eq!(next["conditions"][0]["lastTransitionTime"], BEFORE);
        assert_eq!(
            next["conditions"][0]["message"],
            "unable to create client: new"
        );
        // Same status, other reason (ESO's ValidationUnknown is Ready=True).
        let status = json!({"conditions": [ready("True", "ValidationUnknown", "m", BEFORE)]});
        let next = next_status(&status, &Verdict::valid(), NOW).unwrap();
        assert_eq!(next["conditions"][0]["lastTransitionTime"], BEFORE);
        assert_eq!(next["conditions"][0]["reason"], "Valid");
        // A flip either way: now.
        let status = json!({"conditions": [ready("False", "InvalidProviderConfig", "m", BEFORE)]});
        let next = next_status(&status, &Verdict::valid(), NOW).unwrap();
        assert_eq!(next["conditions"][0]["lastTransitionTime"], NOW);
        assert_eq!(next["conditions"][0]["status"], "True");
        let status = json!({"conditions": [ready("True", "Valid", "store validated", BEFORE)],
                            "capabilities": "ReadWrite"});
        let next = next_status(&status, &Verdict::invalid("x"), NOW).unwrap();
        assert_eq!(next["conditions"][0]["lastTransitionTime"], NOW);
        assert_eq!(next["conditions"][0]["status"], "False");
        // A condition without a time gets one.
        let status = json!({"conditions": [{"type": "Ready", "status": "True"}]});
        let next = next_status(&status, &Verdict::valid(), NOW).unwrap();
        assert_eq!(next["conditions"][0]["lastTransitionTime"], NOW);
    }

    #[test]
    fn a_refused_store_keeps_its_capabilities_and_a_valid_one_gets_them() {
        let status = json!({"conditions": [ready("True", "Valid", "store validated", BEFORE)],
                            "capabilities": "ReadWrite"});
        let next = next_status(&status, &Verdict::invalid("x"), NOW).unwrap();
        assert_eq!(next["capabilities"], "ReadWrite");
        // Valid, condition in place, capabilities missing: written.
        let status = json!({"conditions": [ready("True", "Valid", "store validated", BEFORE)]});
        let next = next_status(&status, &Verdict::valid(), NOW).unwrap();
        assert_eq!(next["capabilities"], "ReadWrite");
        assert_eq!(next["conditions"][0]["lastTransitionTime"], BEFORE);
        // Another capability (written by someone else) is corrected.
        let status = json!({"conditions": [ready("True", "Valid", "store validated", BEFORE)],
                            "capabilities": "ReadOnly"});
        let next = next_status(&status, &Verdict::valid(), NOW).unwrap();
        assert_eq!(next["capabilities"], "ReadWrite");
    }

    #[test]
    fn other_conditions_are_kept_and_ready_goes_last() {
        let other = json!({"type": "Other", "status": "True"});
        let status = json!({"conditions": [
            ready("False", "InvalidProviderConfig", "m", BEFORE), other.clone()]});
        let next = next_status(&status, &Verdict::valid(), NOW).unwrap();
        let conditions = next["conditions"].as_array().unwrap();
        assert_eq!(conditions.len(), 2);
        assert_eq!(conditions[0], other);
        assert_eq!(conditions[1]["type"], "Ready");
        // Only one Ready, however many there were.
        let status = json!({"conditions": [
            ready("True", "Valid", "store validated", BEFORE),
            ready("False", "InvalidProviderConfig", "m", BEFORE)]});
        let next = next_status(&status, &Verdict::invalid("m2"), NOW).unwrap();
        assert_eq!(next["conditions"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn refresh_intervals_read_as_eso_reads_them() {
        let at = |v: Value| refresh_interval(&json!({"refreshInterval": v}));
        assert_eq!(refresh_interval(&json!({})), Ok(DEFAULT_REFRESH));
        assert_eq!(at(json!(0)), Ok(DEFAULT_REFRESH));
        assert_eq!(at(json!("0s")), Ok(DEFAULT_REFRESH));
        assert_eq!(at(json!(90)), Ok(Duration::from_secs(90)));
        assert_eq!(at(json!("10m")), Ok(Duration::from_secs(600)));
        assert_eq!(at(json!("1h30m")), Ok(Duration::from_secs(5400)));
        for bad in [json!(-1), json!(1.5), json!("soon"), json!(true)] {
            let e = at(bad.clone()).unwrap_err();
            assert!(
                e.to_string().starts_with("spec.refreshInterval: "),
                "{bad}: {e}"
            );
        }
    }
}
