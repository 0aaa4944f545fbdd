//! AWS change events -> the secret or parameter they name. Pure.
//!
//! Secrets Manager API calls reach EventBridge through CloudTrail
//! (`source: aws.secretsmanager`, detail-type `AWS API Call via
//! CloudTrail`; a rotation also as `RotationSucceeded`), Parameter Store
//! changes as `Parameter Store Change`. An EventBridge rule sends them to an
//! SQS queue, directly or through SNS (then the message is an SNS
//! notification holding the event). The event only says *which* object
//! changed: the value is read from AWS afresh, so a duplicate, a late or a
//! reordered event can cost a read but can never roll a value back.

use serde_json::Value;

use crate::spc::ObjectType;

/// The largest message body read (SQS allows 256 KiB; an EventBridge event
/// is at most 256 KiB too).
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// The object an event says changed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Change {
    pub service: ObjectType,
    pub region: String,
    /// The account, when the event says (EventBridge's `account`).
    pub account: Option<String>,
    /// Every name the object is known by in the event: the name or id the
    /// caller gave, the name AWS answered, and the ARN (Secrets Manager's
    /// full ARN ends in `-` and six random characters).
    pub names: Vec<String>,
    /// What happened (`PutSecretValue`, `Update`, ...), for logs.
    pub what: String,
}

/// Why a message is not a change of an object we know how to read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("the message is larger than {MAX_MESSAGE_BYTES} bytes")]
    TooLarge,
    #[error("the message is not JSON")]
    NotJson,
    #[error("the message is not an EventBridge event (no source or detail-type)")]
    NotAnEvent,
    /// An event of another service or kind: deleted, never an error.
    #[error("an event of {0} is not a change of a secret or parameter")]
    Unrelated(String),
    #[error("the {0} event names no secret or parameter")]
    NoObject(String),
}

/// Secrets Manager calls that change what a reader gets.
const SECRETS_MANAGER_CALLS: [&str; 8] = [
    "PutSecretValue",
    "UpdateSecret",
    "UpdateSecretVersionStage",
    "RotateSecret",
    "RestoreSecret",
    "DeleteSecret",
    "CreateSecret",
    "RotationSucceeded",
];

/// Reads one SQS message body: an EventBridge event, or an SNS
/// notification carrying one.
pub fn parse(body: &str) -> Result<Change, EventError> {
    if body.len() > MAX_MESSAGE_BYTES {
        return Err(EventError::TooLarge);
    }
    let mut event: Value = serde_json::from_str(body).map_err(|_| EventError::NotJson)?;
    // SNS without raw delivery wraps the event as a string in `Message`.
    if event.get("Type").and_then(Value::as_str) == Some("Notification")
        && let Some(inner) = event.get("Message").and_then(Value::as_str)
    {
        event = serde_json::from_str(inner).map_err(|_| EventError::NotJson)?;
    }
    let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_owned);
    let (Some(source), Some(kind)) = (text(&event, "source"), text(&event, "detail-type")) else {
        return Err(EventError::NotAnEvent);
    };
    let detail = event.get("detail").cloned().unwrap_or(Value::Null);
    let account = text(&event, "account");
    let region = text(&event, "region")
        .or_else(|| text(&detail, "awsRegion"))
        .unwrap_or_default();
    let resources: Vec<String> = event
        .get("resources")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|r| r.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    match source.as_str() {
        "aws.secretsmanager" => {
            let what = text(&detail, "eventName").unwrap_or_default();
            if !SECRETS_MANAGER_CALLS.contains(&what.as_str()) {
                return Err(EventError::Unrelated(format!("aws.secretsmanager {what}")));
            }
            let empty = Value::Null;
            let request = detail.get("requestParameters").unwrap_or(&empty);
            let response = detail.get("responseElements").unwrap_or(&empty);
            let extra = detail.get("additionalEventData").unwrap_or(&empty);
            let mut names: Vec<String> = [
                text(request, "secretId"),
                text(request, "name"),
                text(response, "arn"),
                text(response, "name"),
                text(extra, "SecretId"),
            ]
            .into_iter()
            .flatten()
            .chain(
                resources
                    .into_iter()
                    .filter(|r| r.contains(":secretsmanager:")),
            )
            .collect();
            // The name inside a full ARN (`...:secret:prod/db-AbCdEf`).
            let from_arns: Vec<String> =
                names.iter().filter_map(|n| secret_name_of_arn(n)).collect();
            names.extend(from_arns);
            finish(ObjectType::SecretsManager, region, account, names, what)
        }
        "aws.ssm" if kind == "Parameter Store Change" => {
            let what = text(&detail, "operation").unwrap_or_default();
            let mut names: Vec<String> = text(&detail, "name").into_iter().collect();
            for arn in resources.iter().filter(|r| r.contains(":parameter")) {
                names.push(arn.clone());
                if let Some(name) = parameter_name_of_arn(arn) {
                    names.push(name);
                }
            }
            finish(ObjectType::SsmParameter, region, account, names, what)
        }
        other => Err(EventError::Unrelated(format!("{other} {kind}"))),
    }
}

fn finish(
    service: ObjectType,
    region: String,
    account: Option<String>,
    mut names: Vec<String>,
    what: String,
) -> Result<Change, EventError> {
    names.retain(|n| !n.is_empty());
    names.sort();
    names.dedup();
    if names.is_empty() {
        return Err(EventError::NoObject(what));
    }
    Ok(Change {
        service,
        region,
        account,
        names,
        what,
    })
}

/// `prod/db` of `arn:aws:secretsmanager:r:a:secret:prod/db-AbCdEf`.
fn secret_name_of_arn(arn: &str) -> Option<String> {
    let resource = arn.strip_prefix("arn:")?.splitn(5, ':').nth(4)?;
    let full = resource.strip_prefix("secret:")?;
    let (name, suffix) = full.rsplit_once('-')?;
    (suffix.len() == 6 && !name.is_empty()).then(|| name.to_owned())
}

/// `/app/key` of `arn:aws:ssm:r:a:parameter/app/key` (and `key` of
/// `...:parameter/key`, a name without a slash).
fn parameter_name_of_arn(arn: &str) -> Option<String> {
    let resource = arn.strip_prefix("arn:")?.splitn(5, ':').nth(4)?;
    let name = resource.strip_prefix("parameter")?;
    (name.len() > 1).then(|| name.to_owned())
}

/// The region of an SQS queue URL (`https://sqs.REGION.amazonaws.com/...`,
/// its FIPS and China forms, or the legacy `https://REGION.queue.amazonaws.com/...`);
/// None for any other address (an emulator, a VPC endpoint).
pub fn queue_region(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let host = rest.split(['/', ':']).next()?;
    let labels: Vec<&str> = host.split('.').collect();
    let region = match labels.as_slice() {
        ["sqs" | "sqs-fips", region, "amazonaws", "com" | "com.cn"] => *region,
        ["sqs" | "sqs-fips", region, "amazonaws", "com", "cn"] => *region,
        [region, "queue", "amazonaws", "com"] => *region,
        _ => return None,
    };
    let valid = !region.is_empty()
        && region.len() <= 32
        && region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    valid.then(|| region.to_owned())
}

impl Change {
    /// Whether a reader asking for `key` in `service` and `region` reads
    /// this object: by name, by full ARN, or by a partial ARN (without
    /// Secrets Manager's six-character suffix). A parameter name is
    /// compared without its leading slash. Erring towards yes costs a read;
    /// towards no, a stale value until the next poll.
    pub fn is_read_by(&self, service: ObjectType, region: &str, key: &str) -> bool {
        if service != self.service || (!self.region.is_empty() && region != self.region) {
            return false;
        }
        let key = key.trim();
        match service {
            ObjectType::SecretsManager => self.names.iter().any(|n| {
                n == key
                    || n.strip_prefix(key).is_some_and(|rest| {
                        key.starts_with("arn:") && rest.len() == 7 && rest.starts_with('-')
                    })
                    || secret_name_of_arn(key).is_some_and(|k| &k == n)
            }),
            ObjectType::SsmParameter => {
                let bare = |s: &str| s.trim_start_matches('/').to_owned();
                let key = parameter_name_of_arn(key).unwrap_or_else(|| key.to_owned());
                let key = key.split(':').next().unwrap_or_default().to_owned();
                self.names.iter().any(|n| bare(n) == bare(&key))
            }
        }
    }

    /// Whether a mounted volume of `plan` reads this object: any object of
    /// the plan, in its region or (for the failover object) the failover
    /// region.
    pub fn is_read_by_plan(&self, plan: &crate::spc::MountPlan) -> bool {
        plan.objects.iter().any(|o| {
            self.is_read_by(o.object_type, &plan.region, &o.primary.name)
                || o.failover.as_ref().is_some_and(|f| {
                    plan.failover_region
                        .as_deref()
                        .is_some_and(|region| self.is_read_by(o.object_type, region, &f.name))
                })
        })
    }

    /// A key for coalescing: events naming one object in one region are one.
    pub fn key(&self) -> (ObjectType, String, String) {
        (
            self.service,
            self.region.clone(),
            self.names.first().cloned().unwrap_or_default(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db-AbCdEf";

    fn cloudtrail(name: &str, request: Value, response: Value) -> String {
        serde_json::json!({
            "version": "0",
            "id": "e1",
            "detail-type": "AWS API Call via CloudTrail",
            "source": "aws.secretsmanager",
            "account": "123456789012",
            "time": "2026-12-07T19:00:00Z",
            "region": "us-east-1",
            "resources": [],
            "detail": {
                "eventSource": "secretsmanager.amazonaws.com",
                "eventName": name,
                "awsRegion": "us-east-1",
                "requestParameters": request,
                "responseElements": response,
            }
        })
        .to_string()
    }

    #[test]
    fn a_put_secret_value_by_arn_names_the_secret_every_way() {
        let c = parse(&cloudtrail(
            "PutSecretValue",
            serde_json::json!({"secretId": ARN}),
            serde_json::json!({"arn": ARN, "versionId": "v2", "versionStages": ["AWSCURRENT"]}),
        ))
        .unwrap();
        assert_eq!(c.service, ObjectType::SecretsManager);
        assert_eq!(c.region, "us-east-1");
        assert_eq!(c.account.as_deref(), Some("123456789012"));
        assert_eq!(c.what, "PutSecretValue");
        assert_eq!(c.names, vec![ARN.to_string(), "prod/db".to_string()]);
        let sm = ObjectType::SecretsManager;
        for key in [
            "prod/db",
            ARN,
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db",
        ] {
            assert!(c.is_read_by(sm, "us-east-1", key), "{key}");
        }
        for (service, region, key) in [
            (sm, "us-east-1", "prod/db2"),
            (sm, "us-east-1", "prod"),
            (sm, "eu-west-1", "prod/db"),
            (ObjectType::SsmParameter, "us-east-1", "prod/db"),
            (
                sm,
                "us-east-1",
                "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/d",
            ),
        ] {
            assert!(!c.is_read_by(service, region, key), "{key}");
        }
    }

    #[test]
    fn every_call_that_changes_a_reader_s_value_is_heard() {
        for name in SECRETS_MANAGER_CALLS {
            let c = parse(&cloudtrail(
                name,
                serde_json::json!({"secretId": "prod/db"}),
                Value::Null,
            ))
            .unwrap();
            assert!(c.is_read_by(ObjectType::SecretsManager, "us-east-1", "prod/db"));
        }
        // A read or a listing is not a change.
        for name in [
            "GetSecretValue",
            "DescribeSecret",
            "ListSecrets",
            "TagResource",
        ] {
            assert!(matches!(
                parse(&cloudtrail(
                    name,
                    serde_json::json!({"secretId": "x"}),
                    Value::Null
                )),
                Err(EventError::Unrelated(_))
            ));
        }
        // A rotation's service event names the secret in additionalEventData.
        let rotated = serde_json::json!({
            "source": "aws.secretsmanager",
            "detail-type": "AWS Service Event via CloudTrail",
            "region": "us-east-1",
            "detail": {"eventName": "RotationSucceeded", "additionalEventData": {"SecretId": ARN}}
        });
        let c = parse(&rotated.to_string()).unwrap();
        assert!(c.is_read_by(ObjectType::SecretsManager, "us-east-1", "prod/db"));
        // CreateSecret names it in the request.
        let c = parse(&cloudtrail(
            "CreateSecret",
            serde_json::json!({"name": "new/one"}),
            serde_json::json!({"arn": "arn:aws:secretsmanager:us-east-1:1:secret:new/one-xyzXYZ"}),
        ))
        .unwrap();
        assert!(c.is_read_by(ObjectType::SecretsManager, "us-east-1", "new/one"));
    }

    #[test]
    fn a_parameter_store_change_names_the_parameter() {
        let event = serde_json::json!({
            "version": "0",
            "detail-type": "Parameter Store Change",
            "source": "aws.ssm",
            "account": "123456789012",
            "region": "eu-west-1",
            "resources": ["arn:aws:ssm:eu-west-1:123456789012:parameter/app/key"],
            "detail": {"name": "/app/key", "type": "SecureString", "operation": "Update"}
        });
        let c = parse(&event.to_string()).unwrap();
        assert_eq!(c.service, ObjectType::SsmParameter);
        assert_eq!(c.what, "Update");
        let ps = ObjectType::SsmParameter;
        for key in [
            "/app/key",
            "app/key",
            "/app/key:3",
            "/app/key:stable",
            "arn:aws:ssm:eu-west-1:123456789012:parameter/app/key",
        ] {
            assert!(c.is_read_by(ps, "eu-west-1", key), "{key}");
        }
        for key in ["/app/key2", "/app", "/other"] {
            assert!(!c.is_read_by(ps, "eu-west-1", key), "{key}");
        }
        assert!(!c.is_read_by(ps, "us-east-1", "/app/key"));
        // Other events of aws.ssm are not changes of a parameter.
        let other = serde_json::json!({"source": "aws.ssm", "detail-type": "EC2 Command Status-change Notification", "detail": {}});
        assert!(matches!(
            parse(&other.to_string()),
            Err(EventError::Unrelated(_))
        ));
    }

    #[test]
    fn an_sns_notification_is_unwrapped() {
        let inner = cloudtrail(
            "PutSecretValue",
            serde_json::json!({"secretId": "prod/db"}),
            Value::Null,
        );
        let sns = serde_json::json!({"Type": "Notification", "MessageId": "m", "Message": inner});
        let c = parse(&sns.to_string()).unwrap();
        assert!(c.is_read_by(ObjectType::SecretsManager, "us-east-1", "prod/db"));
    }

    #[test]
    fn junk_is_refused_with_a_reason_never_a_panic() {
        assert_eq!(parse("not json"), Err(EventError::NotJson));
        assert_eq!(parse("{}"), Err(EventError::NotAnEvent));
        assert_eq!(parse("[1,2]"), Err(EventError::NotAnEvent));
        assert!(matches!(
            parse(r#"{"source":"aws.s3","detail-type":"Object Created"}"#),
            Err(EventError::Unrelated(_))
        ));
        assert!(matches!(
            parse(&cloudtrail("PutSecretValue", Value::Null, Value::Null)),
            Err(EventError::NoObject(_))
        ));
        assert_eq!(
            parse(&"x".repeat(MAX_MESSAGE_BYTES + 1)),
            Err(EventError::TooLarge)
        );
        assert_eq!(
            parse(r#"{"Type":"Notification","Message":"nope"}"#),
            Err(EventError::NotJson)
        );
        // Names that are not ARNs are not cut.
        assert_eq!(secret_name_of_arn("prod/db-AbCdEf"), None);
        assert_eq!(
            secret_name_of_arn("arn:aws:secretsmanager:r:a:secret:-abcdef"),
            None
        );
        assert_eq!(parameter_name_of_arn("arn:aws:ssm:r:a:parameter/"), None);
    }

    #[test]
    fn events_for_one_object_coalesce() {
        let a = parse(&cloudtrail(
            "PutSecretValue",
            serde_json::json!({"secretId": ARN}),
            Value::Null,
        ))
        .unwrap();
        let b = parse(&cloudtrail(
            "UpdateSecretVersionStage",
            serde_json::json!({"secretId": ARN}),
            Value::Null,
        ))
        .unwrap();
        assert_eq!(a.key(), b.key());
        let other = parse(&cloudtrail(
            "PutSecretValue",
            serde_json::json!({"secretId": "x"}),
            Value::Null,
        ))
        .unwrap();
        assert_ne!(a.key(), other.key());
    }

    #[test]
    fn a_mounted_class_reads_a_change_of_any_of_its_objects_in_its_regions() {
        let plan = |region: &str, extra: &[(&str, &str)], objects: &str| {
            let mut params: std::collections::BTreeMap<String, String> = [
                ("region".to_string(), region.to_string()),
                ("objects".to_string(), objects.to_string()),
            ]
            .into();
            for (k, v) in extra {
                params.insert(k.to_string(), v.to_string());
            }
            crate::spc::plan(&params, None).unwrap()
        };
        let objects = r#"
- objectName: prod/db
  objectType: secretsmanager
- objectName: /app/flag
  objectType: ssmparameter
"#;
        let p = plan("us-east-1", &[], objects);
        let put = parse(&cloudtrail(
            "PutSecretValue",
            serde_json::json!({"secretId": ARN}),
            Value::Null,
        ))
        .unwrap();
        assert!(put.is_read_by_plan(&p), "the ARN's name is prod/db");
        assert!(
            !put.is_read_by_plan(&plan("eu-west-1", &[], objects)),
            "another region"
        );
        let other = parse(&cloudtrail(
            "PutSecretValue",
            serde_json::json!({"secretId": "prod/other"}),
            Value::Null,
        ))
        .unwrap();
        assert!(!other.is_read_by_plan(&p));
        let flag = Change {
            service: ObjectType::SsmParameter,
            region: "us-east-1".into(),
            account: None,
            names: vec!["app/flag".into()],
            what: "Update".into(),
        };
        assert!(flag.is_read_by_plan(&p));
        // The failover region's object is read too.
        let failover = plan(
            "eu-west-1",
            &[("failoverRegion", "us-east-1")],
            "- objectName: prod/db\n  objectType: secretsmanager\n",
        );
        assert!(put.is_read_by_plan(&failover));
    }

    #[test]
    fn a_queue_url_names_its_region() {
        for (url, region) in [
            (
                "https://sqs.us-east-1.amazonaws.com/123456789012/q",
                Some("us-east-1"),
            ),
            (
                "https://sqs-fips.us-gov-west-1.amazonaws.com/1/q",
                Some("us-gov-west-1"),
            ),
            (
                "https://sqs.cn-north-1.amazonaws.com.cn/1/q",
                Some("cn-north-1"),
            ),
            (
                "https://eu-west-1.queue.amazonaws.com/1/q",
                Some("eu-west-1"),
            ),
            ("http://127.0.0.1:4566/123456789012/q", None),
            ("https://vpce-1.sqs.us-east-1.vpce.amazonaws.com/1/q", None),
            ("https://sqs.US_EAST.amazonaws.com/1/q", None),
            ("sqs.us-east-1.amazonaws.com/1/q", None),
        ] {
            assert_eq!(queue_region(url).as_deref(), region, "{url}");
        }
    }
}
