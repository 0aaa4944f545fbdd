//! `diagnose`: walks what a publish for one pod would do, against the real
//! cluster and AWS, and writes nothing: the class found and valid, the
//! ServiceAccount's role, a token for it (TokenRequest), the exchange, each
//! object's fetch, the files that would be written. Each step is OK or says
//! the exact cause and the fix. The same planning, identity, fetch and
//! rendering as `serve` and `mount`; only the report is its own.

use std::sync::Arc;
use std::time::Duration;

use crate::aws::AwsIdentity;
use crate::cluster::{Cluster, ClusterError};
use crate::fetch::{FailureKind, Fetcher, Priority, RateBudget, Sharing};
use crate::identity::{
    AgentEndpoints, Identities, IdentityError, IdentityRequest, PodIdentityAgent, Source,
};
use crate::metrics::Metrics;
use crate::render;
use crate::request::{AUDIENCE_POD_IDENTITY, AUDIENCE_STS};
use crate::spc::{self, AuthMode, ObjectType};

mod external;

/// Diagnose one pod's secret volumes (or a class used by a service account).
#[derive(Debug, clap::Args)]
pub struct DiagnoseArgs {
    /// The namespace of the pod (or of the class and service account).
    #[arg(short = 'n', long)]
    pub namespace: String,
    /// The pod whose SecretProviderClass volumes to walk.
    #[arg(long, required_unless_present_any = ["service_account", "external_secret"])]
    pub pod: Option<String>,
    /// Without a pod: the service account whose identity to use ...
    #[arg(long, conflicts_with = "pod", requires = "class")]
    pub service_account: Option<String>,
    /// ... and the SecretProviderClass to walk.
    #[arg(long, requires = "service_account")]
    pub class: Option<String>,
    /// Region for a class that names none (as the driver's AWS_REGION).
    #[arg(long, env = "AWS_REGION")]
    pub region: Option<String>,
    /// Instead of a pod: the ExternalSecret whose sync to walk (its stores,
    /// their identity, each remote ref, the target Secret).
    #[arg(long, conflicts_with_all = ["pod", "service_account", "class"])]
    pub external_secret: Option<String>,
    /// With --external-secret: the controller's class (its
    /// --controller-class; empty: the stores that name no spec.controller).
    #[arg(long, env = "CONTROLLER_CLASS", default_value = "")]
    pub controller_class: String,
    /// With --external-secret: as the controller's flag of that name.
    #[arg(
        long,
        env = "NAMESPACED_STORES_USE_CONTROLLER_IDENTITY",
        default_value_t = false
    )]
    pub namespaced_stores_use_controller_identity: bool,
}

/// What was found wrong, counted as the report goes.
#[derive(Default)]
struct Report {
    failed: usize,
}

impl Report {
    fn ok(&self, what: &str) {
        println!("ok    {what}");
    }

    fn warn(&self, what: &str) {
        println!("warn  {what}");
    }

    fn fail(&mut self, what: &str, fix: &str) {
        self.failed += 1;
        println!("FAIL  {what}");
        println!("      fix: {fix}");
    }
}

/// Exit 0 when every step is OK, 1 (with the causes) otherwise.
pub async fn diagnose(args: &DiagnoseArgs) -> anyhow::Result<()> {
    let mut report = Report::default();
    if let Some(name) = &args.external_secret {
        let settings = external::Settings {
            namespace: &args.namespace,
            name,
            class: &args.controller_class,
            namespaced_stores_use_controller_identity: args
                .namespaced_stores_use_controller_identity,
        };
        external::walk(&settings, &mut report).await?;
        return finish(report, "a sync of this ExternalSecret would succeed");
    }
    let kube = super::kube_client().await?;
    let cluster = Cluster::new(kube, "diagnose".into());
    let ns = args.namespace.as_str();

    // Which classes, for which service account and pod.
    let (service_account, pod, classes) = match (&args.pod, &args.service_account, &args.class) {
        (Some(pod), _, _) => match cluster.pod_classes(ns, pod).await {
            Ok(found) => {
                if found.volumes.is_empty() {
                    report.fail(
                        &format!("pod {ns}/{pod}: no CSI volume names a secretProviderClass"),
                        "add a csi volume with volumeAttributes.secretProviderClass to the pod",
                    );
                } else {
                    for (volume, driver, class) in &found.volumes {
                        report.ok(&format!(
                            "pod {ns}/{pod}: volume {volume} (driver {driver}) uses SecretProviderClass {class}, service account {}",
                            found.service_account
                        ));
                    }
                }
                let mut classes: Vec<String> =
                    found.volumes.iter().map(|(_, _, c)| c.clone()).collect();
                classes.dedup();
                (
                    found.service_account,
                    Some((pod.clone(), found.uid)),
                    classes,
                )
            }
            Err(e) => {
                report.fail(&e.to_string(), fix_for_cluster(&e, "the pod"));
                return finish(report, PUBLISH_OK);
            }
        },
        (None, Some(sa), Some(class)) => (sa.clone(), None, vec![class.clone()]),
        _ => anyhow::bail!("give --pod, or --service-account with --class"),
    };

    let sdk = super::aws_config().await;
    let metrics = Arc::new(Metrics::new());
    let fetcher = Fetcher::new(sdk.clone(), metrics.clone(), Arc::new(RateBudget::new(&[])));
    let identities = Identities::new(
        sdk.clone(),
        PodIdentityAgent::new(
            AgentEndpoints::default(),
            Duration::from_secs(2),
            Duration::from_secs(2),
        ),
        metrics,
    );
    let default_region = args
        .region
        .clone()
        .or_else(|| sdk.region().map(|r| r.to_string()));
    for class_name in &classes {
        let walk = Walk {
            cluster: &cluster,
            fetcher: &fetcher,
            identities: &identities,
            namespace: ns,
            service_account: &service_account,
            pod: pod.as_ref().map(|(n, u)| (n.as_str(), u.as_str())),
            default_region: default_region.as_deref(),
        };
        walk.class(class_name, &mut report).await;
    }
    finish(report, PUBLISH_OK)
}

/// What names a class's object and its region.
const CLASS_NAMES: &str = "objectName, the version fields or the class's region";

const PUBLISH_OK: &str = "a publish of these volumes would succeed";

fn finish(report: Report, outcome: &str) -> anyhow::Result<()> {
    if report.failed == 0 {
        println!("\nevery step is OK: {outcome}");
        Ok(())
    } else {
        anyhow::bail!("{} step(s) failed; see FAIL above", report.failed)
    }
}

struct Walk<'a> {
    cluster: &'a Cluster,
    fetcher: &'a Fetcher,
    identities: &'a Identities,
    namespace: &'a str,
    service_account: &'a str,
    pod: Option<(&'a str, &'a str)>,
    default_region: Option<&'a str>,
}

impl Walk<'_> {
    async fn class(&self, name: &str, report: &mut Report) {
        let ns = self.namespace;
        let class = match self.cluster.secret_provider_class(ns, name).await {
            Ok(class) => class,
            Err(e) => {
                report.fail(
                    &e.to_string(),
                    fix_for_cluster(&e, "the SecretProviderClass"),
                );
                return;
            }
        };
        for warning in spc::lint(&class.spec.parameters) {
            report.warn(&format!("SecretProviderClass {ns}/{name}: {warning}"));
        }
        let plan = match spc::plan_class(
            &class.spec,
            self.default_region,
            spc::VolumeLimits::default(),
        ) {
            Ok(plan) => plan,
            Err(e) => {
                report.fail(
                    &format!("SecretProviderClass {ns}/{name}: {e}"),
                    "correct the class as the message says (`aws-secrets-csi check -f FILE` checks a file offline)",
                );
                return;
            }
        };
        report.ok(&format!(
            "SecretProviderClass {ns}/{name}: valid, {} object(s), {} file(s), region {}",
            plan.objects.len(),
            plan.files().count(),
            plan.region
        ));

        // The identity, as a publish would obtain it.
        let sa = self.service_account;
        let role;
        let (audience, source_is_irsa) = match plan.auth {
            AuthMode::Irsa => {
                match self.cluster.service_account_role(ns, sa).await {
                    Ok(Some(r)) => {
                        report.ok(&format!(
                            "ServiceAccount {ns}/{sa}: role {r} (eks.amazonaws.com/role-arn)"
                        ));
                        role = r;
                    }
                    Ok(None) => {
                        report.fail(
                            &format!("ServiceAccount {ns}/{sa}: no eks.amazonaws.com/role-arn annotation"),
                            "annotate the ServiceAccount with eks.amazonaws.com/role-arn: arn:aws:iam::<account>:role/<name> (or set usePodIdentity: \"true\" in the class for EKS Pod Identity)",
                        );
                        return;
                    }
                    Err(e) => {
                        report.fail(&e.to_string(), fix_for_cluster(&e, "the ServiceAccount"));
                        return;
                    }
                }
                (AUDIENCE_STS, true)
            }
            AuthMode::PodIdentity => {
                role = String::new();
                (AUDIENCE_POD_IDENTITY, false)
            }
        };
        let token = match self.cluster.request_token(ns, sa, audience, self.pod).await {
            Ok(token) => {
                report.ok(&format!(
                    "token for ServiceAccount {ns}/{sa}, audience {audience} (TokenRequest)"
                ));
                token
            }
            Err(e) => {
                report.fail(
                    &e.to_string(),
                    "your Kubernetes user needs `create` on serviceaccounts/token in the namespace (kubelet has it for pods)",
                );
                return;
            }
        };
        let source = if source_is_irsa {
            Source::Irsa {
                role_arn: &role,
                token: &token,
            }
        } else {
            Source::PodIdentity {
                token: &token,
                preference: plan.address_preference,
            }
        };
        let pod_name = self.pod.map_or("diagnose", |(n, _)| n);
        let who = IdentityRequest {
            namespace: ns,
            service_account: sa,
            pod: pod_name,
            source,
            region: &plan.region,
            failover_region: plan.failover_region.as_deref(),
            chain: plan.role_chain.as_ref(),
        };
        let credentials = match self.identities.credentials(&who).await {
            Ok(obtained) => {
                report.ok(&format!(
                    "identity: {} exchanged the token for credentials",
                    if source_is_irsa {
                        "STS AssumeRoleWithWebIdentity"
                    } else {
                        "the EKS Pod Identity agent"
                    }
                ));
                obtained.credentials
            }
            Err(e) => {
                report.fail(&format!("identity: {e}"), fix_for_identity(&e));
                return;
            }
        };

        // Each object, then the files; nothing is written.
        let sharing = Sharing {
            scope: None,
            max_age: Duration::ZERO,
            priority: Priority::FirstMount,
        };
        let identity = AwsIdentity::Pod(credentials);
        let values = match self.fetcher.fetch(&plan, &identity, &[], &sharing).await {
            Ok(values) => values,
            Err(e) => {
                for object in &plan.objects {
                    if !e.failures.iter().any(|f| f.object == object.name()) {
                        report.ok(&format!("fetch {}: readable", object.name()));
                    }
                }
                for failure in &e.failures {
                    let object_type = plan
                        .objects
                        .iter()
                        .find(|o| o.name() == failure.object)
                        .map_or(ObjectType::SecretsManager, |o| o.object_type);
                    report.fail(
                        &format!("fetch {failure}"),
                        &fix_for_fetch(failure.kind(), object_type, &failure.region, CLASS_NAMES),
                    );
                }
                return;
            }
        };
        for (object, value) in plan.objects.iter().zip(&values) {
            report.ok(&format!(
                "fetch {}: version {}",
                object.name(),
                value.version.as_deref().unwrap_or("(current)")
            ));
        }
        let bytes: Vec<_> = values.into_iter().map(|v| v.bytes).collect();
        match render::render(&plan, &bytes) {
            Ok(set) => {
                for file in set.files() {
                    report.ok(&format!(
                        "file {} (mode {:04o}, {} bytes) would be written",
                        file.path,
                        file.mode,
                        file.bytes.len()
                    ));
                }
            }
            Err(e) => report.fail(
                &format!("render: {e}"),
                "make the jmesPath entries match the secret's JSON (the path, and a string, number or boolean result)",
            ),
        }
    }
}

fn fix_for_cluster(e: &ClusterError, what: &str) -> &'static str {
    match e {
        ClusterError::NotFound { .. } => match what {
            "the SecretProviderClass" => {
                "create the SecretProviderClass in the pod's namespace, or correct volumeAttributes.secretProviderClass in the pod"
            }
            "the ServiceAccount" => {
                "create the ServiceAccount, or correct serviceAccountName in the pod"
            }
            _ => "check the namespace and the name",
        },
        ClusterError::Forbidden { .. } => {
            "your Kubernetes user may not read it: use a kubeconfig that may get pods, serviceaccounts and secretproviderclasses"
        }
        ClusterError::Unusable { .. } => {
            "shorten the class (split its objects over several classes), or correct its spec"
        }
        ClusterError::Unavailable { .. } => {
            "the API server could not be reached: check KUBECONFIG (or the in-cluster configuration) and the network"
        }
    }
}

fn fix_for_identity(e: &IdentityError) -> &'static str {
    match e {
        IdentityError::Sts { .. } if e.is_client_error() => {
            "the role's trust policy must allow sts:AssumeRoleWithWebIdentity to the cluster's OIDC provider for this service account (condition sub = system:serviceaccount:<namespace>:<name>, aud = sts.amazonaws.com)"
        }
        IdentityError::Sts { .. } | IdentityError::NoCredentials { .. } => {
            "STS could not be reached: check the region, AWS_ENDPOINT_URL, proxies and the network"
        }
        IdentityError::BadRoleArn(_) => {
            "the annotation must be a role ARN: arn:aws:iam::<account>:role/<name>"
        }
        IdentityError::AgentUnavailable { .. } => {
            "the EKS Pod Identity agent answers only on a node (169.254.170.23): run diagnose from a pod on the node, or check that the agent add-on runs"
        }
        IdentityError::AgentRefused { .. } | IdentityError::AgentAnswer(_) => {
            "create an EKS pod identity association for this namespace and service account"
        }
        _ => "see the message",
    }
}

/// `names`: the fields that name the object and its region (a class's, or
/// an ExternalSecret's and its store's).
fn fix_for_fetch(kind: FailureKind, object_type: ObjectType, region: &str, names: &str) -> String {
    let (read, what) = match object_type {
        ObjectType::SecretsManager => (
            "secretsmanager:GetSecretValue (and BatchGetSecretValue to save calls)",
            "secret",
        ),
        ObjectType::SsmParameter => ("ssm:GetParameters", "parameter"),
    };
    match kind {
        FailureKind::NotFound => {
            format!("no such {what} (or version or label) in {region}: correct {names}")
        }
        FailureKind::AccessDenied => format!(
            "allow the role {read} on this {what}, and kms:Decrypt on its key if a customer managed key encrypts it"
        ),
        FailureKind::Throttled => {
            "AWS throttled the call: try again; a node's driver paces its calls".into()
        }
        FailureKind::InvalidRequest => {
            format!("AWS refused the request: check the {what}'s name and version fields")
        }
        FailureKind::Unavailable => {
            "AWS could not be reached: check the region, AWS_ENDPOINT_URL, proxies and the network"
                .into()
        }
    }
}
