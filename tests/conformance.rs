//! The AWS provider's own test cases (ASCP v3.1.1), run through our real
//! binary against moto: tests/conformance/ascp-v3.1.1.yaml holds each case's
//! class, AWS state and the outcome ASCP's tests expect. A case passes when
//! our outcome is ASCP's, or, for an intended difference, when it is the one
//! the case records, differs from ASCP's, and the README lists it. Prints
//! "N of M cases equal, K intended differences". Needs python3 with moto
//! (scripts/test.sh provides it); no root.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::proxy::AwsProxy;
use common::*;
use serde::Deserialize;

const PRIMARY: &str = "us-west-2";
const FAILOVER: &str = "us-east-2";

#[derive(Deserialize)]
struct Suite {
    cases: Vec<Case>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    #[serde(default)]
    params: BTreeMap<String, String>,
    #[serde(default)]
    objects: String,
    #[serde(default)]
    secrets: BTreeMap<String, String>,
    #[serde(default)]
    secrets_failover: BTreeMap<String, String>,
    #[serde(default)]
    binary_secrets: BTreeMap<String, String>,
    #[serde(default)]
    parameters: BTreeMap<String, String>,
    #[serde(default)]
    parameters_failover: BTreeMap<String, String>,
    /// Versions of a parameter, oldest first, each with its label.
    #[serde(default)]
    parameters_labels: BTreeMap<String, Vec<(String, String)>>,
    /// `region/service` pairs answering 503.
    #[serde(default)]
    down: Vec<String>,
    /// The driver's own region (`""`: none).
    env_region: Option<String>,
    expect: Option<Outcome>,
    ours: Option<Outcome>,
    why: Option<String>,
    readme: Option<String>,
    elsewhere: Option<String>,
}

#[derive(Deserialize, Clone, Debug, Default)]
#[serde(deny_unknown_fields)]
struct Outcome {
    /// A text the error message holds (`""`: any error).
    error: Option<String>,
    #[serde(default)]
    files: BTreeMap<String, String>,
    #[serde(default)]
    modes: BTreeMap<String, String>,
}

/// What our binary did with a case.
struct Run {
    ok: bool,
    stderr: String,
    target: std::path::PathBuf,
    /// The ARNs of the case's secrets, for file names that hold them.
    arns: BTreeMap<String, String>,
}

impl Outcome {
    /// Why `run` is not this outcome, if it is not.
    fn mismatch(&self, run: &Run) -> Option<String> {
        if let Some(text) = &self.error {
            if run.ok {
                return Some(format!("succeeded; expected an error with {text:?}"));
            }
            return (!run.stderr.contains(text.as_str()))
                .then(|| format!("error {:?} lacks {text:?}", run.stderr.trim()));
        }
        if !run.ok {
            return Some(format!("failed: {}", run.stderr.trim()));
        }
        for (file, want) in &self.files {
            // With pathTranslation False an ARN's `/` is a directory.
            let file = with_arns(file, &run.arns);
            match std::fs::read(run.target.join(&file)) {
                Ok(have) if have == want.as_bytes() => {}
                Ok(have) => {
                    return Some(format!(
                        "{file} holds {:?}, expected {want:?}",
                        String::from_utf8_lossy(&have)
                    ));
                }
                Err(e) => return Some(format!("{file}: {e}")),
            }
        }
        for (file, mode) in &self.modes {
            let want = u32::from_str_radix(mode, 8).unwrap();
            let have = std::fs::metadata(run.target.join(file))
                .map(|m| m.permissions().mode() & 0o7777)
                .unwrap_or(u32::MAX);
            if have != want {
                return Some(format!("{file} has mode {have:o}, expected {mode}"));
            }
        }
        None
    }
}

/// Removes every secret and parameter in both regions (moto keeps its IAM
/// bootstrap, so it is not reset).
async fn clear(moto: &Moto) {
    for region in [PRIMARY, FAILOVER] {
        let sm = moto.secrets_manager_in(region);
        let listed = sm.list_secrets().max_results(100).send().await.unwrap();
        for s in listed.secret_list() {
            sm.delete_secret()
                .secret_id(s.arn().unwrap())
                .force_delete_without_recovery(true)
                .send()
                .await
                .unwrap();
        }
        let ssm = moto.ssm_in(region);
        let mut names = Vec::new();
        let mut next = None;
        loop {
            let page = ssm
                .describe_parameters()
                .set_next_token(next)
                .send()
                .await
                .unwrap();
            names.extend(
                page.parameters()
                    .iter()
                    .filter_map(|p| p.name().map(str::to_owned)),
            );
            next = page.next_token().map(str::to_owned);
            if next.is_none() {
                break;
            }
        }
        for chunk in names.chunks(10) {
            ssm.delete_parameters()
                .set_names(Some(chunk.to_vec()))
                .send()
                .await
                .unwrap();
        }
    }
}

/// Puts the case's AWS state into moto; the ARNs of its secrets by
/// `region:name`.
async fn seed(moto: &Moto, case: &Case) -> BTreeMap<String, String> {
    let mut arns = BTreeMap::new();
    let secrets = [
        (PRIMARY, &case.secrets, false),
        (FAILOVER, &case.secrets_failover, false),
        (PRIMARY, &case.binary_secrets, true),
    ];
    for (region, map, binary) in secrets {
        for (name, value) in map {
            let create = moto.secrets_manager_in(region).create_secret().name(name);
            let create = if binary {
                create.secret_binary(aws_sdk_secretsmanager::primitives::Blob::new(
                    value.as_bytes(),
                ))
            } else {
                create.secret_string(value)
            };
            let out = create.send().await.unwrap();
            arns.insert(format!("{region}:{name}"), out.arn().unwrap().to_owned());
        }
    }
    for (region, map) in [
        (PRIMARY, &case.parameters),
        (FAILOVER, &case.parameters_failover),
    ] {
        for (name, value) in map {
            put_parameter(moto, region, name, value).await;
        }
    }
    for (name, versions) in &case.parameters_labels {
        for (value, label) in versions {
            let version = put_parameter(moto, PRIMARY, name, value).await;
            moto.ssm_in(PRIMARY)
                .label_parameter_version()
                .name(name)
                .parameter_version(version)
                .labels(label)
                .send()
                .await
                .unwrap();
        }
    }
    arns
}

async fn put_parameter(moto: &Moto, region: &str, name: &str, value: &str) -> i64 {
    moto.ssm_in(region)
        .put_parameter()
        .name(name)
        .value(value)
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .overwrite(true)
        .send()
        .await
        .unwrap()
        .version()
}

/// `text` with `${arn:NAME}` (primary region) and `${arn@REGION:NAME}`
/// replaced by moto's ARNs.
fn with_arns(text: &str, arns: &BTreeMap<String, String>) -> String {
    let mut text = text.to_owned();
    for (key, arn) in arns {
        let (region, name) = key.split_once(':').unwrap();
        text = text.replace(&format!("${{arn@{region}:{name}}}"), arn);
        if region == PRIMARY {
            text = text.replace(&format!("${{arn:{name}}}"), arn);
        }
    }
    assert!(!text.contains("${arn"), "an ARN of no secret in {text:?}");
    text
}

/// The case's SecretProviderClass, its objects `with_arns`.
fn class_manifest(case: &Case, arns: &BTreeMap<String, String>) -> String {
    let objects = with_arns(&case.objects, arns);
    let mut params = BTreeMap::from([("region".to_owned(), PRIMARY.to_owned())]);
    params.extend(case.params.clone());
    params.retain(|_, v| !v.is_empty());
    params.insert("objects".into(), objects);
    let class = serde_json::json!({
        "apiVersion": "secrets-store.csi.x-k8s.io/v1",
        "kind": "SecretProviderClass",
        "metadata": {"name": "conformance", "namespace": "ascp"},
        "spec": {"provider": "aws", "parameters": params},
    });
    serde_json::to_string_pretty(&class).unwrap()
}

async fn run(moto: &Moto, proxy: &AwsProxy, case: &Case, dir: &Path) -> Run {
    clear(moto).await;
    let arns = seed(moto, case).await;
    let down = case.down.clone();
    proxy.fail_when(move |r| {
        let service = if r.target.starts_with("secretsmanager.") {
            "secretsmanager"
        } else if r.target.starts_with("AmazonSSM.") {
            "ssm"
        } else {
            return false;
        };
        let region = r.region.clone().unwrap_or_default();
        down.iter().any(|d| *d == format!("{region}/{service}"))
    });
    let file = dir.join("class.yaml");
    std::fs::write(&file, class_manifest(case, &arns)).unwrap();
    let target = dir.join("target");
    let _ = std::fs::remove_dir_all(&target);
    let (key, secret) = moto.admin_keys();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_aws-secrets-csi"));
    cmd.args(["mount", "--no-tmpfs", "-f"])
        .arg(&file)
        .arg("--target")
        .arg(&target)
        .env("AWS_ENDPOINT_URL", &proxy.endpoint)
        .env("AWS_ACCESS_KEY_ID", key)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_MAX_ATTEMPTS", "1")
        .env_remove("AWS_DEFAULT_REGION")
        .env_remove("RUST_LOG");
    match case.env_region.as_deref() {
        Some("") => cmd.env_remove("AWS_REGION"),
        Some(region) => cmd.env("AWS_REGION", region),
        None => cmd.env("AWS_REGION", PRIMARY),
    };
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    Run {
        ok: out.status.success(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        target,
        arns,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_aws_providers_own_test_cases() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let suite: Suite = serde_saphyr::from_str(
        &std::fs::read_to_string(root.join("tests/conformance/ascp-v3.1.1.yaml")).unwrap(),
    )
    .unwrap();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let differences = readme
        .split_once("Differences, all on the safe side:")
        .map(|(_, rest)| rest.split("\n## ").next().unwrap_or_default())
        .expect("the README's Differences section");
    let moto = moto();
    let proxy = AwsProxy::start(&moto.endpoint).await;
    let dir = tempfile::tempdir().unwrap();
    let (mut equal, mut intended, mut elsewhere) = (0, 0, 0);
    let mut failures = Vec::new();
    for case in &suite.cases {
        if let Some(test) = &case.elsewhere {
            // Not a class: our test of the same behaviour must exist.
            let (file, name) = test.split_once("::").unwrap();
            let text = std::fs::read_to_string(root.join(file)).unwrap_or_default();
            if !text.contains(&format!("fn {name}(")) {
                failures.push(format!("{}: no test {test}", case.name));
            }
            assert!(case.why.is_some(), "{}: why elsewhere?", case.name);
            elsewhere += 1;
            continue;
        }
        let expect = case
            .expect
            .as_ref()
            .unwrap_or_else(|| panic!("{}: no expect", case.name));
        let run = run(moto, &proxy, case, dir.path()).await;
        match &case.ours {
            None => match expect.mismatch(&run) {
                None => equal += 1,
                Some(why) => failures.push(format!("{}: {why}", case.name)),
            },
            Some(ours) => {
                let readme_text = case.readme.as_deref().unwrap_or_default();
                if let Some(why) = ours.mismatch(&run) {
                    failures.push(format!("{} (intended difference): {why}", case.name));
                } else if expect.mismatch(&run).is_none() {
                    failures.push(format!(
                        "{}: listed as a difference, but we now do what ASCP does",
                        case.name
                    ));
                } else if case.why.is_none()
                    || readme_text.is_empty()
                    || !differences.contains(readme_text)
                {
                    failures.push(format!(
                        "{}: the difference must have a why and be in the README's Differences ({readme_text:?})",
                        case.name
                    ));
                } else {
                    intended += 1;
                }
            }
        }
    }
    let total = suite.cases.len() - elsewhere;
    println!(
        "ASCP v3.1.1 conformance: {equal} of {total} cases equal, {intended} intended differences, {} failed ({elsewhere} cases of the kubelet/driver interface covered by the tests they name)",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
