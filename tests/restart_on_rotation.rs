//! Opt-in restarts of workloads whose secrets rotate, against a real
//! kube-apiserver with the controller running as its own ServiceAccount
//! (short timing: quiet 1 s, maximum wait 3 s, minimum interval 6 s) and
//! moto as AWS. Pods are created directly, owned as their controllers
//! would own them (no scheduler, no kubelet). A burst of `SecretRotated`
//! Events from 300 pods of an annotated Deployment restarts it once, as
//! it does an annotated StatefulSet and DaemonSet, and never a Deployment
//! without the annotation; the same old pods reporting again restart
//! nothing; a pod created after the restart waits for the minimum
//! interval; an Event in another namespace naming a pod of the first
//! restarts nothing in either; an ExternalSecret whose Secret's data
//! changes restarts the annotated Deployment that reads it (envFrom), not
//! one that reads another Secret nor one without the annotation, and not
//! for the Secret's first write or a refresh that changed no data. Each
//! restart has its Event and its count in `workload_restarts_total`, and
//! the controller used exactly the restart grants of its RBAC. Needs root
//! (moto, the control plane) and the binaries of scripts/k8s-peers.sh.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::control_plane::*;
use common::controller::*;
use common::*;
use serde_json::Value;

const USER: &str = "system:serviceaccount:aws-secrets-csi:aws-secrets-csi-controller";
const A: &str = "restart-a";
const B: &str = "restart-b";
const ES: &str = "restart-es";
const OPT_IN: &str = "aws-secrets-csi.io/restart-on-rotation";
const RESTARTED_AT: &str = "aws-secrets-csi.io/restartedAt";
const WEB_PODS: usize = 300;

fn json_of(cp: &ControlPlane, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    serde_json::from_str(&cp.kubectl(&all, None)).unwrap()
}

/// `kind/name` -> metadata.generation of the namespace's workloads.
fn generations(cp: &ControlPlane, ns: &str) -> BTreeMap<String, i64> {
    json_of(
        cp,
        &["get", "deployments,statefulsets,daemonsets", "-n", ns],
    )["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                format!(
                    "{}/{}",
                    o["kind"].as_str().unwrap(),
                    o["metadata"]["name"].as_str().unwrap()
                ),
                o["metadata"]["generation"].as_i64().unwrap(),
            )
        })
        .collect()
}

fn generation(cp: &ControlPlane, ns: &str, workload: &str) -> i64 {
    generations(cp, ns)[workload]
}

/// The restart annotation of a workload's pod template, as Unix seconds.
fn restarted_at(cp: &ControlPlane, ns: &str, kind: &str, name: &str) -> Option<u64> {
    let o = json_of(cp, &["get", kind, name, "-n", ns]);
    let at = o["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT].as_str()?;
    let out = std::process::Command::new("date")
        .args(["-u", "-d", at, "+%s"])
        .output()
        .unwrap();
    Some(
        String::from_utf8(out.stdout)
            .unwrap()
            .trim()
            .parse()
            .unwrap(),
    )
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn uid(cp: &ControlPlane, kind: &str, name: &str, ns: &str) -> String {
    cp.get(kind, name, ns)["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_owned()
}

const POD_SPEC: &str = "{serviceAccountName: app, automountServiceAccountToken: false, containers: [{name: app, image: example.invalid/app}]}";

/// A workload (Deployment, StatefulSet, DaemonSet or ReplicaSet) whose
/// pods are labelled app=`name`; `owner`: (kind, name, uid) of its
/// controller; `template`: its pod spec.
fn workload(
    kind: &str,
    ns: &str,
    name: &str,
    opted_in: bool,
    owner: Option<(&str, &str, &str)>,
    template: &str,
) -> String {
    let annotations = if opted_in {
        format!(", annotations: {{{OPT_IN}: \"true\"}}")
    } else {
        String::new()
    };
    let owner = owner.map_or(String::new(), |(k, n, u)| {
        format!(", ownerReferences: [{{apiVersion: apps/v1, kind: {k}, name: {n}, uid: {u}, controller: true}}]")
    });
    let label = name.trim_end_matches("-rs");
    let service = if kind == "StatefulSet" {
        format!("  serviceName: {name}\n")
    } else {
        String::new()
    };
    format!(
        "apiVersion: apps/v1\nkind: {kind}\nmetadata: {{name: {name}, namespace: {ns}{annotations}{owner}}}\nspec:\n{service}  selector: {{matchLabels: {{app: {label}}}}}\n  template:\n    metadata: {{labels: {{app: {label}}}}}\n    spec: {template}\n---\n"
    )
}

fn pod(ns: &str, name: &str, app: &str, owner: (&str, &str, &str)) -> String {
    let (kind, owner_name, owner_uid) = owner;
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {ns}, labels: {{app: {app}}}, ownerReferences: [{{apiVersion: apps/v1, kind: {kind}, name: {owner_name}, uid: {owner_uid}, controller: true}}]}}\nspec: {POD_SPEC}\n---\n"
    )
}

/// The node driver's Event on a pod whose files changed (as
/// `Cluster::event` writes it), in `ns`, naming the pod `pod_ns/name`.
/// `new_style`: with eventTime (the API server lets such an Event name an
/// object of another namespace).
fn rotated(ns: &str, pod_ns: &str, name: &str, uid: &str, new_style: bool) -> String {
    let now = "2026-01-01T00:00:00Z";
    let style = if new_style {
        "eventTime: \"2026-01-01T00:00:00.000000Z\"\nreportingInstance: node-1\naction: Rotate\n"
    } else {
        ""
    };
    format!(
        "apiVersion: v1\nkind: Event\nmetadata: {{generateName: {name}., namespace: {ns}}}\ninvolvedObject: {{apiVersion: v1, kind: Pod, name: {name}, namespace: {pod_ns}, uid: {uid}}}\nreason: SecretRotated\nmessage: \"SecretProviderClass app: new content in 1 file(s), swapped atomically\"\ntype: Normal\nfirstTimestamp: \"{now}\"\nlastTimestamp: \"{now}\"\ncount: 1\nsource: {{component: aws-secrets-csi, host: node-1}}\nreportingComponent: aws-secrets-csi\n{style}---\n"
    )
}

/// Pod name -> UID in a namespace.
fn pod_uids(cp: &ControlPlane, ns: &str) -> BTreeMap<String, String> {
    json_of(cp, &["get", "pods", "-n", ns])["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["metadata"]["name"].as_str().unwrap().to_owned(),
                p["metadata"]["uid"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Posts one SecretRotated Event (old style, as the driver) for each pod.
fn burst(cp: &ControlPlane, ns: &str, pods: &[&str]) {
    let uids = pod_uids(cp, ns);
    let events: String = pods
        .iter()
        .map(|p| rotated(ns, ns, p, &uids[*p], false))
        .collect();
    cp.kubectl(&["create", "-f", "-"], Some(&events));
}

/// The RestartedForRotation Events on a workload: their messages.
fn restart_events(cp: &ControlPlane, ns: &str, kind: &str, name: &str) -> Vec<String> {
    json_of(
        cp,
        &[
            "get",
            "events",
            "-n",
            ns,
            "--field-selector",
            &format!(
                "reason=RestartedForRotation,involvedObject.kind={kind},involvedObject.name={name}"
            ),
        ],
    )["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn secret_value(cp: &ControlPlane, ns: &str, name: &str, key: &str) -> Option<String> {
    use base64::Engine;
    let s = cp
        .try_kubectl(&["get", "secret", name, "-n", ns, "-o", "json"], None)
        .ok()?;
    let s: Value = serde_json::from_str(&s).unwrap();
    let b = s["data"][key].as_str()?;
    String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b).ok()?).ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn opted_in_workloads_restart_once_per_rotation() {
    require_root();
    let cp = control_plane();
    install_controller(cp, A);
    moto().create_secret("restart/db", "pw-1").await;
    moto().create_secret("restart/other", "other-1").await;
    let mut setup = String::new();
    for ns in [B, ES] {
        setup += &format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n---\n");
    }
    for ns in [A, B] {
        setup += &format!(
            "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: app, namespace: {ns}}}\n---\n"
        );
    }
    cp.kubectl(&["apply", "-f", "-"], Some(&setup));

    // Namespace A: web (opted in) with 300 pods through its ReplicaSet,
    // plain (not opted in) with 20, db (a StatefulSet, opted in) with 3,
    // agent (a DaemonSet, opted in) with 2. Namespace B: its own opted-in
    // web, with a pod of the name A's newest pod will have.
    let mut m = String::new();
    m += &workload("Deployment", A, "web", true, None, POD_SPEC);
    m += &workload("Deployment", A, "plain", false, None, POD_SPEC);
    m += &workload("StatefulSet", A, "db", true, None, POD_SPEC);
    m += &workload("DaemonSet", A, "agent", true, None, POD_SPEC);
    m += &workload("Deployment", B, "web", true, None, POD_SPEC);
    cp.kubectl(&["apply", "-f", "-"], Some(&m));
    let mut m = String::new();
    for (ns, name) in [(A, "web"), (A, "plain"), (B, "web")] {
        let owner = uid(cp, "deployment", name, ns);
        m += &workload(
            "ReplicaSet",
            ns,
            &format!("{name}-rs"),
            false,
            Some(("Deployment", name, &owner)),
            POD_SPEC,
        );
    }
    cp.kubectl(&["apply", "-f", "-"], Some(&m));
    let web_rs = uid(cp, "replicaset", "web-rs", A);
    let plain_rs = uid(cp, "replicaset", "plain-rs", A);
    let b_web_rs = uid(cp, "replicaset", "web-rs", B);
    let db = uid(cp, "statefulset", "db", A);
    let agent = uid(cp, "daemonset", "agent", A);
    let web_pods: Vec<String> = (0..WEB_PODS).map(|i| format!("web-rs-{i}")).collect();
    let plain_pods: Vec<String> = (0..20).map(|i| format!("plain-rs-{i}")).collect();
    let db_pods: Vec<String> = (0..3).map(|i| format!("db-{i}")).collect();
    let agent_pods: Vec<String> = (0..2).map(|i| format!("agent-{i}")).collect();
    let mut m = String::new();
    for p in &web_pods {
        m += &pod(A, p, "web", ("ReplicaSet", "web-rs", &web_rs));
    }
    for p in &plain_pods {
        m += &pod(A, p, "plain", ("ReplicaSet", "plain-rs", &plain_rs));
    }
    for p in &db_pods {
        m += &pod(A, p, "db", ("StatefulSet", "db", &db));
    }
    for p in &agent_pods {
        m += &pod(A, p, "agent", ("DaemonSet", "agent", &agent));
    }
    m += &pod(B, "web-new", "web", ("ReplicaSet", "web-rs", &b_web_rs));
    cp.kubectl(&["create", "-f", "-"], Some(&m));

    // Namespace ES: two ExternalSecrets; reads-db (opted in) reads db-creds
    // through envFrom, reads-other (opted in) reads other-creds through a
    // volume, reads-db-plain reads db-creds without the annotation.
    let mut m = format!(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: reader\n  namespace: {ES}\n  annotations: {{eks.amazonaws.com/role-arn: \"{READER_ROLE}\"}}\n---\napiVersion: external-secrets.io/v1\nkind: SecretStore\nmetadata: {{name: store, namespace: {ES}}}\nspec:\n  provider: {{aws: {{service: SecretsManager, region: us-east-1, auth: {{jwt: {{serviceAccountRef: {{name: reader}}}}}}}}}}\n---\n"
    );
    for (name, key) in [("db", "restart/db"), ("other", "restart/other")] {
        m += &format!(
            "apiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {{name: {name}, namespace: {ES}}}\nspec:\n  refreshInterval: 1h\n  secretStoreRef: {{name: store}}\n  target: {{name: {name}-creds}}\n  data: [{{secretKey: password, remoteRef: {{key: {key}}}}}]\n---\n"
        );
    }
    let env_from = "{containers: [{name: app, image: example.invalid/app, envFrom: [{secretRef: {name: db-creds}}]}]}";
    let volume = "{containers: [{name: app, image: example.invalid/app}], volumes: [{name: s, secret: {secretName: other-creds}}]}";
    m += &workload("Deployment", ES, "reads-db", true, None, env_from);
    m += &workload("Deployment", ES, "reads-other", true, None, volume);
    m += &workload("Deployment", ES, "reads-db-plain", false, None, env_from);
    cp.kubectl(&["apply", "-f", "-"], Some(&m));

    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = controller_kubeconfig(cp, dir.path());
    let metrics_port = free_port();
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    let controller = ControllerProcess::start_with(
        dir.path(),
        "restart",
        &kubeconfig,
        &[
            "--lease-name",
            "restart",
            "--restart-quiet",
            "1s",
            "--restart-max-wait",
            "3s",
            "--restart-min-interval",
            "6s",
            "--metrics-addr",
            &metrics_addr,
        ],
    );
    eventually(
        Duration::from_secs(30),
        "the watch of SecretRotated",
        || cp.count_calls(USER, "events", "watch") >= 1,
    )
    .await;
    let start = generations(cp, A);
    for w in [
        "Deployment/web",
        "Deployment/plain",
        "StatefulSet/db",
        "DaemonSet/agent",
    ] {
        assert_eq!(start[w], 1, "{w}: {start:?}");
    }

    // 1. The burst: every pod of A reports a rotation.
    let all_old: Vec<&str> = web_pods
        .iter()
        .chain(&plain_pods)
        .chain(&db_pods)
        .chain(&agent_pods)
        .map(String::as_str)
        .collect();
    let posted = Instant::now();
    burst(cp, A, &all_old);
    println!("{} Events posted in {:?}", all_old.len(), posted.elapsed());
    eventually(Duration::from_secs(30), "the opted-in restarts", || {
        let g = generations(cp, A);
        g["Deployment/web"] >= 2 && g["StatefulSet/db"] >= 2 && g["DaemonSet/agent"] >= 2
    })
    .await;
    println!("restarted {:?} after the burst began", posted.elapsed());
    let db_restarted = restarted_at(cp, A, "statefulset", "db").expect("db's restartedAt");
    assert!(restarted_at(cp, A, "deployment", "web").is_some());
    assert!(restarted_at(cp, A, "daemonset", "agent").is_some());

    // 2. At once, while db's minimum interval runs: a pod of db created
    // after its restart reports (it waits for the interval's end), and the
    // same old pods report again (nothing).
    let mut m = pod(A, "db-3", "db", ("StatefulSet", "db", &db));
    m += &pod(A, "web-new", "web", ("ReplicaSet", "web-rs", &web_rs));
    cp.kubectl(&["create", "-f", "-"], Some(&m));
    let mut again = all_old.clone();
    again.push("db-3");
    burst(cp, A, &again);
    let until = db_restarted as f64 + 6.0 + 1.0 + 3.0 + 2.0;
    let mut db_again_at = None;
    while unix_now() < until {
        let g = generations(cp, A);
        assert_eq!(g["Deployment/web"], 2, "web restarted again: {g:?}");
        assert_eq!(g["DaemonSet/agent"], 2, "agent restarted again: {g:?}");
        assert_eq!(g["Deployment/plain"], 1, "plain restarted: {g:?}");
        if g["StatefulSet/db"] >= 3 && db_again_at.is_none() {
            db_again_at = Some(unix_now());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let db_again_at = db_again_at.expect("db restarted for its new pod after the interval");
    // The annotation has whole seconds (floor): the interval ends at least
    // 5 s after it; a signal not held back would restart within 3 s.
    assert!(
        db_again_at >= db_restarted as f64 + 5.0,
        "db restarted {:.1} s after its last restart, within the minimum interval",
        db_again_at - db_restarted as f64
    );
    assert_eq!(
        generation(cp, A, "StatefulSet/db"),
        3,
        "db restarted once more"
    );

    // 3. An Event in B naming A's new pod (and B's pod of that name): not
    // heard in either namespace.
    let a_uids = pod_uids(cp, A);
    let cross = rotated(B, A, "web-new", &a_uids["web-new"], true);
    cp.kubectl(&["create", "-f", "-"], Some(&cross));
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(generation(cp, A, "Deployment/web"), 2, "A's web restarted");
    assert_eq!(generation(cp, B, "Deployment/web"), 1, "B's web restarted");

    // 4. The same pod's Event in its own namespace restarts its owner
    // (after the quiet period: its interval is long over).
    burst(cp, A, &["web-new"]);
    eventually(
        Duration::from_secs(10),
        "web restarted for its new pod",
        || generation(cp, A, "Deployment/web") == 3,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(generation(cp, A, "Deployment/web"), 3);
    assert_eq!(generation(cp, B, "Deployment/web"), 1);
    assert_eq!(generation(cp, A, "Deployment/plain"), 1);
    assert!(restarted_at(cp, A, "deployment", "plain").is_none());

    // 5. ExternalSecrets: the first write of their Secrets (long done by
    // now) restarted nothing.
    eventually(Duration::from_secs(30), "the Secrets synced", || {
        secret_value(cp, ES, "db-creds", "password").as_deref() == Some("pw-1")
            && secret_value(cp, ES, "other-creds", "password").as_deref() == Some("other-1")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let es_start = generations(cp, ES);
    assert!(
        es_start.values().all(|g| *g == 1),
        "restarted by a first write: {es_start:?}"
    );
    // A forced refresh with the same value: the Secret's annotations change
    // (the ExternalSecret's are copied), its data does not.
    let force = |n: &str| {
        cp.kubectl(
            &[
                "annotate",
                "externalsecret",
                "db",
                "-n",
                ES,
                &format!("force-sync={n}"),
                "--overwrite",
            ],
            None,
        );
    };
    force("1");
    eventually(Duration::from_secs(20), "the forced refresh", || {
        cp.get("secret", "db-creds", ES)["metadata"]["annotations"]["force-sync"] == "1"
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        generation(cp, ES, "Deployment/reads-db"),
        1,
        "restarted for a refresh that changed no data"
    );
    // The value rotates in AWS; the next sync changes the Secret's data.
    moto()
        .secrets_manager()
        .put_secret_value()
        .secret_id("restart/db")
        .secret_string("pw-2")
        .send()
        .await
        .unwrap();
    force("2");
    eventually(Duration::from_secs(20), "the new value", || {
        secret_value(cp, ES, "db-creds", "password").as_deref() == Some("pw-2")
    })
    .await;
    eventually(Duration::from_secs(10), "reads-db restarted", || {
        generation(cp, ES, "Deployment/reads-db") >= 2
    })
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let es_end = generations(cp, ES);
    assert_eq!(es_end["Deployment/reads-db"], 2, "{es_end:?}");
    assert_eq!(es_end["Deployment/reads-other"], 1, "{es_end:?}");
    assert_eq!(es_end["Deployment/reads-db-plain"], 1, "{es_end:?}");

    // Each restart has its Event, saying why and naming no value.
    let web = restart_events(cp, A, "Deployment", "web");
    assert_eq!(web.len(), 2, "{web:?}");
    assert!(
        web.iter()
            .all(|m| m.contains("pod(s) reported SecretRotated")),
        "{web:?}"
    );
    assert_eq!(restart_events(cp, A, "StatefulSet", "db").len(), 2);
    assert_eq!(restart_events(cp, A, "DaemonSet", "agent").len(), 1);
    assert!(restart_events(cp, A, "Deployment", "plain").is_empty());
    assert!(restart_events(cp, B, "Deployment", "web").is_empty());
    let reads_db = restart_events(cp, ES, "Deployment", "reads-db");
    assert_eq!(reads_db.len(), 1, "{reads_db:?}");
    assert!(
        reads_db[0].contains("data of Secret(s) db-creds changed"),
        "{reads_db:?}"
    );
    assert!(restart_events(cp, ES, "Deployment", "reads-other").is_empty());

    // Counted by kind.
    let (code, text) = http_get(metrics_port, "/metrics").expect("the metrics endpoint");
    assert_eq!(code, 200);
    for line in [
        "workload_restarts_total{kind=\"Deployment\"} 3",
        "workload_restarts_total{kind=\"StatefulSet\"} 2",
        "workload_restarts_total{kind=\"DaemonSet\"} 1",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }

    // Least privilege: what it used is granted, and every restart grant
    // was used.
    let used = cp.calls_by(USER);
    let granted = granted_by_all_roles("controller/rbac.yaml");
    let missing: Vec<_> = used.difference(&granted).collect();
    assert!(missing.is_empty(), "used but not granted: {missing:?}");
    let unused: Vec<_> = restart_grants().difference(&used).cloned().collect();
    assert!(unused.is_empty(), "restart grants not used: {unused:?}");
    assert!(restart_grants().is_subset(&granted));
    // Owners are read one by one and listed per namespace: no pod or
    // workload is watched (only the Events).
    for resource in ["deployments", "statefulsets", "daemonsets", "pods"] {
        assert_eq!(cp.count_calls(USER, resource, "watch"), 0, "{resource}");
    }

    let log = std::fs::read_to_string(&controller.log).unwrap();
    for value in ["pw-1", "pw-2", "other-1"] {
        assert!(!log.contains(value), "the controller logged a value");
    }
}
