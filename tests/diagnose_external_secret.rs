//! `aws-secrets-csi diagnose --external-secret`, the real binary against a
//! real kube-apiserver (with the External Secrets CRDs and no controller
//! running) and moto as AWS: a healthy ExternalSecret walks every step OK
//! and exits 0; each broken one (no store, a store of another controller,
//! a store held back by its status, a denied role, a missing secret, a
//! missing property, a refused field, a missing key Secret, a Secret made
//! by hand, a Secret another ExternalSecret owns) names the step, the
//! cause and the fix, and exits 1. Nothing is written: no Secret, no
//! status, no event; no secret value or token is printed. Needs root
//! (moto, the control plane) and the binaries of scripts/k8s-peers.sh.

mod common;

use std::process::Command;

use common::control_plane::*;
use common::controller::*;
use common::*;
use serde_json::Value;

const NS: &str = "diag-es";
const USER: &str = "diag-es-user";
const PASS: &str = "diag-es-pass-4711";

struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn diagnose(cp: &ControlPlane, name: &str) -> Outcome {
    let out = Command::new(env!("CARGO_BIN_EXE_aws-secrets-csi"))
        .args(["diagnose", "-n", NS, "--external-secret", name])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("KUBECONFIG", &cp.admin)
        .env("AWS_ENDPOINT_URL", &moto().endpoint)
        .env("AWS_REGION", REGION)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    let outcome = Outcome {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    // The report, for the log of a failed run.
    eprintln!(
        "--- diagnose {name}: exit {:?}\n{}{}",
        outcome.code, outcome.stdout, outcome.stderr
    );
    let (_, admin_secret) = moto().admin_keys();
    for needle in [PASS, USER, "eyJ", admin_secret] {
        assert!(
            !outcome.stdout.contains(needle) && !outcome.stderr.contains(needle),
            "{name}: a value or token ({needle:?}) in the report:\n{}{}",
            outcome.stdout,
            outcome.stderr
        );
    }
    outcome
}

/// Exit 1, and each line (a FAIL and its fix, or OK steps before it).
fn expect_fail(cp: &ControlPlane, name: &str, lines: &[&str]) {
    let o = diagnose(cp, name);
    assert_eq!(o.code, Some(1), "{name}:\n{}{}", o.stdout, o.stderr);
    for line in lines {
        assert!(
            o.stdout.contains(line),
            "{name}: no {line:?} in:\n{}",
            o.stdout
        );
    }
    assert!(o.stderr.contains("step(s) failed"), "{name}: {}", o.stderr);
    assert!(!o.stdout.contains("every step is OK"), "{}", o.stdout);
}

fn external_secret(name: &str, store: &str, target: &str, data: &str) -> String {
    format!(
        "apiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {{name: {name}, namespace: {NS}}}\nspec:\n  refreshInterval: 1h\n  secretStoreRef: {store}\n  target: {{name: {target}}}\n  data: {data}\n---\n"
    )
}

fn store(name: &str, extra: &str, auth: &str) -> String {
    format!(
        "apiVersion: external-secrets.io/v1\nkind: SecretStore\nmetadata: {{name: {name}, namespace: {NS}}}\nspec:\n{extra}  provider: {{aws: {{service: SecretsManager, region: {REGION}, auth: {auth}}}}}\n---\n"
    )
}

fn json(cp: &ControlPlane, args: &[&str]) -> Option<Value> {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    cp.try_kubectl(&all, None)
        .ok()
        .map(|t| serde_json::from_str(&t).unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn diagnose_walks_an_external_secret_and_names_each_broken_step_with_its_fix() {
    require_root();
    let cp = control_plane();
    install_controller(cp, NS);
    moto()
        .create_secret(
            "diag-es/db",
            &format!(r#"{{"user":"{USER}","pass":"{PASS}"}}"#),
        )
        .await;
    let (key_id, _) = moto().admin_keys();

    let jwt = |sa: &str| format!("{{jwt: {{serviceAccountRef: {{name: {sa}}}}}}}");
    let account = |name: &str, role: &str| {
        format!(
            "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: {name}, namespace: {NS}, annotations: {{eks.amazonaws.com/role-arn: \"{role}\"}}}}\n---\n"
        )
    };
    let user = "[{secretKey: user, remoteRef: {key: diag-es/db, property: user}}]";
    let good = "{name: good}";
    let mut m = account("app", READER_ROLE);
    m += &account("denied", NOBODY_ROLE);
    m += &store("good", "", &jwt("app"));
    m += &store("denied", "", &jwt("denied"));
    m += &store("theirs", "  controller: someone-else\n", &jwt("app"));
    m += &store("gated", "", &jwt("app"));
    // Static keys whose Secret lacks the secret key (only the id is there).
    m += &format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: half-keys, namespace: {NS}}}\nstringData: {{access-key-id: \"{key_id}\"}}\n---\n"
    );
    m += &store(
        "keys",
        "",
        "{secretRef: {accessKeyIDSecretRef: {name: half-keys, key: access-key-id}, secretAccessKeySecretRef: {name: half-keys, key: secret-access-key}}}",
    );
    // A ClusterSecretStore for namespace diag-es-prod only.
    m += &format!(
        "apiVersion: external-secrets.io/v1\nkind: ClusterSecretStore\nmetadata: {{name: diag-es-prod-only}}\nspec:\n  conditions: [{{namespaces: [diag-es-prod]}}]\n  provider: {{aws: {{service: SecretsManager, region: {REGION}, auth: {{jwt: {{serviceAccountRef: {{name: app, namespace: {NS}}}}}}}}}}}\n---\n"
    );
    m += &external_secret(
        "not-admitted",
        "{name: diag-es-prod-only, kind: ClusterSecretStore}",
        "not-admitted",
        user,
    );
    m += &external_secret("healthy", good, "healthy", user);
    // Listed by a find, beside a data entry.
    m += &format!(
        "apiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {{name: with-find, namespace: {NS}}}\nspec:\n  secretStoreRef: {good}\n  target: {{name: with-find}}\n  data: {user}\n  dataFrom: [{{find: {{path: diag-es/, name: {{regexp: \"db$\"}}}}}}]\n---\n"
    );
    m += &external_secret("no-store", "{name: absent}", "no-store", user);
    m += &external_secret("other-class", "{name: theirs}", "other-class", user);
    m += &external_secret("held-back", "{name: gated}", "held-back", user);
    m += &external_secret("denied", "{name: denied}", "denied", user);
    m += &external_secret(
        "missing-secret",
        good,
        "missing-secret",
        "[{secretKey: x, remoteRef: {key: diag-es/absent}}]",
    );
    m += &external_secret(
        "missing-property",
        good,
        "missing-property",
        "[{secretKey: x, remoteRef: {key: diag-es/db, property: nope}}]",
    );
    m += &external_secret(
        "refused",
        good,
        "refused",
        "[{secretKey: x, remoteRef: {key: diag-es/db, conversionStrategy: Unicode}}]",
    );
    m += &external_secret("static-keys", "{name: keys}", "static-keys", user);
    m += &external_secret("foreign", good, "by-hand", user);
    m += &external_secret("second", good, "taken", user);
    m += &format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: by-hand, namespace: {NS}}}\nstringData: {{kept: as-is}}\n---\n"
    );
    cp.kubectl(&["apply", "-f", "-"], Some(&m));
    // The flood gate: a status Ready=False, as the controller writes it.
    cp.kubectl(
        &[
            "patch",
            "secretstore",
            "gated",
            "-n",
            NS,
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"conditions":[{"type":"Ready","status":"False","reason":"InvalidProviderConfig","message":"unable to create client: spec.provider.aws.role: bad","lastTransitionTime":"2026-01-01T00:00:00Z"}]}}"#,
        ],
        None,
    );
    // A Secret the ExternalSecret `healthy` owns, targeted by `second`.
    let healthy_uid = cp.get("externalsecret", "healthy", NS)["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_owned();
    cp.kubectl(
        &["apply", "-f", "-"],
        Some(&format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: taken\n  namespace: {NS}\n  labels: {{reconcile.external-secrets.io/managed: \"true\"}}\n  ownerReferences: [{{apiVersion: external-secrets.io/v1, kind: ExternalSecret, name: healthy, uid: {healthy_uid}, controller: true}}]\nstringData: {{user: theirs}}\n"
        )),
    );
    let before = |kind: &str, name: &str| {
        json(cp, &["get", kind, name, "-n", NS]).map(|v| v["metadata"]["resourceVersion"].clone())
    };
    let by_hand = before("secret", "by-hand").expect("by-hand exists");
    let taken = before("secret", "taken").expect("taken exists");
    let es_versions: Vec<_> = ["healthy", "foreign", "denied"]
        .iter()
        .map(|n| before("externalsecret", n).unwrap())
        .collect();

    // Every step OK, exit 0.
    let o = diagnose(cp, "healthy");
    assert_eq!(o.code, Some(0), "{}{}", o.stdout, o.stderr);
    for line in [
        "ok    ExternalSecret diag-es/healthy found (external-secrets.io/v1)",
        "ok    SecretStore diag-es/good (spec.secretStoreRef): exists",
        "ok    SecretStore diag-es/good: served by this controller (spec.controller \"\")",
        "ok    SecretStore diag-es/good: valid (SecretsManager in us-east-1), not held back",
        &format!(
            "ok    ServiceAccount diag-es/app (the store's auth.jwt): role {READER_ROLE} (eks.amazonaws.com/role-arn)"
        ),
        "ok    token for ServiceAccount diag-es/app, audience sts.amazonaws.com (TokenRequest)",
        "ok    identity: STS AssumeRoleWithWebIdentity exchanged the token for credentials",
        "ok    ExternalSecret diag-es/healthy: planned: 1 remote ref(s), 0 find(s), target Secret diag-es/healthy",
        "ok    remote ref diag-es/db in us-east-1: fetched",
        "ok    ExternalSecret diag-es/healthy: property and decoding of every entry work",
        "ok    Secret diag-es/healthy: 1 key(s) would be written",
        "ok    Secret diag-es/healthy (spec.target): creationPolicy Owner, deletionPolicy Retain",
        "ok    Secret diag-es/healthy does not exist: the controller would create it",
        "every step is OK: a sync of this ExternalSecret would succeed",
    ] {
        assert!(o.stdout.contains(line), "no {line:?} in:\n{}", o.stdout);
    }
    assert!(!o.stdout.contains("FAIL"), "{}", o.stdout);

    let o = diagnose(cp, "with-find");
    assert_eq!(o.code, Some(0), "{}{}", o.stdout, o.stderr);
    for line in [
        "ok    ExternalSecret diag-es/with-find: planned: 1 remote ref(s), 1 find(s)",
        "ok    find #0 (path \"diag-es/\") in us-east-1: 1 secret(s) listed and fetched",
        "ok    Secret diag-es/with-find: 2 key(s) would be written",
    ] {
        assert!(o.stdout.contains(line), "no {line:?} in:\n{}", o.stdout);
    }

    // One broken step of each kind, with its cause and its fix.
    expect_fail(
        cp,
        "no-store",
        &[
            "ok    ExternalSecret diag-es/no-store found",
            "FAIL  SecretStore diag-es/absent (spec.secretStoreRef) not found",
            "fix: create SecretStore absent in namespace diag-es, or correct spec.secretStoreRef",
        ],
    );
    expect_fail(
        cp,
        "other-class",
        &[
            "FAIL  SecretStore diag-es/theirs (spec.secretStoreRef): served by another controller (its spec.controller is not \"\")",
            "fix: set the store's spec.controller to \"\", or run diagnose with --controller-class",
        ],
    );
    expect_fail(
        cp,
        "held-back",
        &[
            "FAIL  SecretStore diag-es/gated is not ready (its status condition Ready is False: unable to create client: spec.provider.aws.role: bad)",
            "fix: correct the SecretStore as its status says",
        ],
    );
    expect_fail(
        cp,
        "not-admitted",
        &[
            "FAIL  ClusterSecretStore diag-es-prod-only: using ClusterSecretStore \"diag-es-prod-only\" is not allowed from namespace \"diag-es\": denied by spec.conditions",
            "fix: give namespace diag-es a label the ClusterSecretStore's spec.conditions select",
        ],
    );
    expect_fail(
        cp,
        "denied",
        &[
            &format!(
                "ok    ServiceAccount diag-es/denied (the store's auth.jwt): role {NOBODY_ROLE}"
            ),
            "ok    identity: STS AssumeRoleWithWebIdentity exchanged the token for credentials",
            "FAIL  remote ref diag-es/db in us-east-1: AccessDenied",
            "fix: allow the role secretsmanager:GetSecretValue",
        ],
    );
    expect_fail(
        cp,
        "missing-secret",
        &[
            "FAIL  remote ref diag-es/absent in us-east-1: ResourceNotFoundException",
            "fix: no such secret (or version or label) in us-east-1: correct remoteRef.key, remoteRef.version or the store's region",
        ],
    );
    expect_fail(
        cp,
        "missing-property",
        &[
            "ok    remote ref diag-es/db in us-east-1: fetched",
            "FAIL  ExternalSecret diag-es/missing-property: ",
            "property \"nope\" not found in the secret",
            "fix: correct remoteRef.property",
        ],
    );
    expect_fail(
        cp,
        "refused",
        &[
            "FAIL  ExternalSecret diag-es/refused: spec.data[0].remoteRef.conversionStrategy",
            "fix: correct the field as the message says",
        ],
    );
    expect_fail(
        cp,
        "static-keys",
        &[
            "ok    Secret diag-es/half-keys (the store's auth.secretRef): key \"access-key-id\" readable",
            "FAIL  the store's auth.secretRef: Secret diag-es/half-keys: has no key \"secret-access-key\"",
            "fix: create Secret diag-es/half-keys with key \"secret-access-key\"",
        ],
    );
    expect_fail(
        cp,
        "foreign",
        &[
            "ok    remote ref diag-es/db in us-east-1: fetched",
            "ok    Secret diag-es/by-hand exists, made by hand or another tool (no owner, no managed label)",
            "FAIL  Secret diag-es/by-hand exists and was not created by an ExternalSecret",
            "fix: if the controller may write it: kubectl label secret -n diag-es by-hand external-secrets.aws-secrets-csi.io/writable=true",
        ],
    );
    expect_fail(
        cp,
        "second",
        &[
            "ok    Secret diag-es/taken exists, owned by another ExternalSecret, diag-es/healthy",
            "FAIL  Secret diag-es/taken already owned by ExternalSecret healthy; refusing to take it over",
            "fix: choose another spec.target.name, or set creationPolicy Merge",
        ],
    );
    expect_fail(
        cp,
        "nobody-here",
        &["FAIL  ExternalSecret diag-es/nobody-here not found"],
    );

    // Opted in by the label, the Secret made by hand is writable.
    cp.kubectl(
        &[
            "label",
            "secret",
            "by-hand",
            "-n",
            NS,
            "external-secrets.aws-secrets-csi.io/writable=true",
        ],
        None,
    );
    let o = diagnose(cp, "foreign");
    assert_eq!(o.code, Some(0), "{}{}", o.stdout, o.stderr);
    assert!(
        o.stdout.contains(
            "ok    Secret diag-es/by-hand: the controller may write it (creationPolicy Owner)"
        ) && o
            .stdout
            .contains("opted in by external-secrets.aws-secrets-csi.io/writable=true"),
        "{}",
        o.stdout
    );
    let by_hand_labelled = before("secret", "by-hand").unwrap();
    assert_ne!(by_hand_labelled, by_hand, "the label is a write of its own");

    // Nothing written: no target Secret, the others as they were, no
    // status on any ExternalSecret, no event.
    for target in [
        "healthy",
        "with-find",
        "denied",
        "missing-property",
        "no-store",
    ] {
        assert_eq!(
            json(cp, &["get", "secret", target, "-n", NS]),
            None,
            "Secret {target} was written"
        );
    }
    let after = before("secret", "by-hand").unwrap();
    assert_eq!(after, by_hand_labelled, "by-hand was written");
    assert_eq!(
        before("secret", "taken").unwrap(),
        taken,
        "taken was written"
    );
    let by_hand_data = json(cp, &["get", "secret", "by-hand", "-n", NS]).unwrap();
    assert_eq!(
        by_hand_data["data"].as_object().map(|d| d.len()),
        Some(1),
        "{by_hand_data}"
    );
    for (n, v) in ["healthy", "foreign", "denied"].iter().zip(&es_versions) {
        assert_eq!(&before("externalsecret", n).unwrap(), v, "{n} was written");
        let es = cp.get("externalsecret", n, NS);
        assert!(
            es["status"].is_null() || es["status"] == serde_json::json!({}),
            "{es}"
        );
    }
    let events = json(cp, &["get", "events", "-n", NS]).unwrap();
    assert_eq!(
        events["items"].as_array().map(Vec::len),
        Some(0),
        "{events}"
    );
}
