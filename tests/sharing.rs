//! Node-scale efficiency: AWS calls grow with the distinct (identity,
//! object) pairs on a node, not with pods. Pods of one identity share calls
//! in flight, batches and recent values; other identities never see them;
//! the per-API budget paces calls. Real driver, real moto, real tmpfs: needs
//! root.

mod common;

use std::time::{Duration, Instant};

use common::*;

const SECRETS: usize = 10;
const PARAMETERS: usize = 3;

async fn setup(w: &World, ns: &str, interval: &str) {
    let moto = moto();
    let mut objects = String::new();
    for i in 0..SECRETS {
        moto.create_secret(&format!("{ns}/s{i}"), &format!("{ns}-s{i}-v1"))
            .await;
        objects += &format!(
            "- {{objectName: {ns}/s{i}, objectType: secretsmanager, objectAlias: s{i}}}\n"
        );
    }
    for i in 0..PARAMETERS {
        moto.put_parameter(&format!("/{ns}/p{i}"), &format!("{ns}-p{i}-v1"))
            .await;
        objects +=
            &format!("- {{objectName: /{ns}/p{i}, objectType: ssmparameter, objectAlias: p{i}}}\n");
    }
    w.kube.put_class(
        ns,
        "c",
        &[
            ("region", REGION),
            ("refreshInterval", interval),
            ("objects", &objects),
        ],
    );
}

async fn publish_all(w: &World, pods: &[PodSpec]) -> Vec<Result<(), tonic::Status>> {
    let calls = pods.iter().map(|pod| {
        let target = w.dir.target(&pod.uid);
        async move { w.publish(&target, "c", pod).await }
    });
    futures::future::join_all(calls).await
}

#[tokio::test(flavor = "multi_thread")]
async fn pods_of_one_identity_share_calls_and_other_identities_do_not() {
    let w = World::new().await;
    setup(&w, "sh1", "2m").await;
    w.kube.put_service_account("sh1", "app", Some(READER_ROLE));
    w.kube
        .put_service_account("sh1", "other", Some(READER_ROLE));
    w.kube
        .put_service_account("sh1", "denied", Some(NOBODY_ROLE));

    let app: Vec<PodSpec> = (0..30)
        .map(|i| PodSpec::new("sh1", &format!("app-{i}"), "app"))
        .collect();
    for result in publish_all(&w, &app).await {
        result.unwrap();
    }
    for pod in &app {
        let target = w.dir.target(&pod.uid);
        assert_eq!(read(&target, "s7"), "sh1-s7-v1");
        assert_eq!(read(&target, "p2"), "sh1-p2-v1");
    }
    assert_eq!(w.driver.aws_calls("AssumeRoleWithWebIdentity").await, 1);
    assert_eq!(
        w.driver.aws_calls("BatchGetSecretValue").await,
        1,
        "30 pods x 10 secrets: one batch call"
    );
    assert_eq!(w.driver.aws_calls("GetParameters").await, 1);
    assert_eq!(w.driver.aws_calls("GetSecretValue").await, 0);

    // Another service account with the same role is another identity key:
    // its pods get their own credentials and their own calls.
    let other: Vec<PodSpec> = (0..5)
        .map(|i| PodSpec::new("sh1", &format!("other-{i}"), "other"))
        .collect();
    for result in publish_all(&w, &other).await {
        result.unwrap();
    }
    assert_eq!(w.driver.aws_calls("AssumeRoleWithWebIdentity").await, 2);
    assert_eq!(w.driver.aws_calls("BatchGetSecretValue").await, 2);
    assert_eq!(w.driver.aws_calls("GetParameters").await, 2);

    // A pod whose role may not read the secrets is refused, although the
    // node holds their values for other identities.
    let denied = PodSpec::new("sh1", "denied-0", "denied");
    let target = w.dir.target(&denied.uid);
    let err = w.publish(&target, "c", &denied).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    assert!(!target.join("s0").exists());
    assert!(mount_line(&target).is_none());

    // Every object request of the 34 later pods was served without a call
    // of its own (joined a call under way, or reused its value).
    let served = |how: &'static str| {
        let driver = &w.driver;
        async move {
            driver
                .metric(&format!("aws_object_requests_total{{served=\"{how}\"}}"))
                .await
        }
    };
    let per_pod = (SECRETS + PARAMETERS) as f64;
    assert_eq!(served("fetched").await, 3.0 * per_pod);
    assert_eq!(
        served("joined").await + served("reused").await,
        (29.0 + 4.0) * per_pod
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn refreshes_of_many_volumes_check_each_object_once_per_interval() {
    let w = World::new().await;
    setup(&w, "sh2", "3s").await;
    w.kube.put_service_account("sh2", "app", Some(READER_ROLE));
    let pods: Vec<PodSpec> = (0..8)
        .map(|i| PodSpec::new("sh2", &format!("app-{i}"), "app"))
        .collect();
    // Volumes mounted at different times within one interval.
    for pod in &pods {
        w.publish(&w.dir.target(&pod.uid), "c", pod).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(w.driver.aws_calls("BatchGetSecretValue").await, 1);
    assert_eq!(w.driver.aws_calls("GetParameters").await, 1);

    moto()
        .secrets_manager()
        .put_secret_value()
        .secret_id("sh2/s3")
        .secret_string("sh2-s3-v2")
        .send()
        .await
        .unwrap();
    // After the interval every volume refreshes (kubelet's republish), and
    // the node checks each object once for all of them.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    for result in publish_all(&w, &pods).await {
        result.unwrap();
    }
    for pod in &pods {
        assert_eq!(read(&w.dir.target(&pod.uid), "s3"), "sh2-s3-v2");
    }
    assert_eq!(w.driver.aws_calls("BatchGetSecretValue").await, 2);
    assert_eq!(w.driver.aws_calls("GetParameters").await, 2);
    assert_eq!(
        w.driver
            .metric("rotation_reconcile_total{provider=\"aws\",os_type=\"linux\",rotated=\"true\"}")
            .await,
        8.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_rate_budget_paces_calls_across_identities() {
    // GetSecretValue kept below a class's ten secrets, so that batches
    // cannot spill over to it: they wait.
    let w = World::with(
        &[],
        &["--aws-rate-limit", "BatchGetSecretValue=1,GetSecretValue=1"],
    )
    .await;
    setup(&w, "sh3", "2m").await;
    // Three identities: three batch calls, at most one a second after the
    // first (a burst of one).
    let pods: Vec<PodSpec> = (0..3)
        .map(|i| {
            w.kube
                .put_service_account("sh3", &format!("sa{i}"), Some(READER_ROLE));
            PodSpec::new("sh3", &format!("pod-{i}"), &format!("sa{i}"))
        })
        .collect();
    let started = Instant::now();
    for result in publish_all(&w, &pods).await {
        result.unwrap();
    }
    let took = started.elapsed();
    assert_eq!(w.driver.aws_calls("BatchGetSecretValue").await, 3);
    assert!(
        took >= Duration::from_millis(1900),
        "3 calls at 1/s took only {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_spent_batch_budget_spills_over_to_get_secret_value() {
    let w = World::with(&[], &["--aws-rate-limit", "BatchGetSecretValue=1"]).await;
    setup(&w, "sh5", "2m").await;
    let pods: Vec<PodSpec> = (0..3)
        .map(|i| {
            w.kube
                .put_service_account("sh5", &format!("sa{i}"), Some(READER_ROLE));
            PodSpec::new("sh5", &format!("pod-{i}"), &format!("sa{i}"))
        })
        .collect();
    for result in publish_all(&w, &pods).await {
        result.unwrap();
    }
    // One batch (the budget's one token); the two other identities' ten
    // secrets each by GetSecretValue, which has room: nobody waits.
    assert_eq!(w.driver.aws_calls("BatchGetSecretValue").await, 1);
    assert_eq!(
        w.driver.aws_calls("GetSecretValue").await,
        2 * SECRETS as u64
    );
    for pod in &pods {
        let target = w.dir.target(&pod.uid);
        for i in 0..SECRETS {
            assert_eq!(read(&target, &format!("s{i}")), format!("sh5-s{i}-v1"));
        }
    }
}

#[test]
fn an_unknown_api_in_the_rate_budget_is_refused_at_start() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_aws-secrets-csi"))
        .args(["serve", "--node-id", "n", "--aws-rate-limit", "GetSecret=5"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("\"GetSecret\": not an API with a budget"),
        "{stderr}"
    );
}

const TOKEN_REVIEWS: &str = "/apis/authentication.k8s.io/v1/tokenreviews";

#[tokio::test(flavor = "multi_thread")]
async fn a_pod_proves_its_own_identity_before_it_is_served_shared_credentials() {
    let w = World::new().await;
    setup(&w, "sh4", "2m").await;
    w.kube.put_service_account("sh4", "app", Some(READER_ROLE));
    w.kube
        .put_service_account("sh4", "other", Some(READER_ROLE));
    let first = PodSpec::new("sh4", "first", "app");
    w.publish(&w.dir.target(&first.uid), "c", &first)
        .await
        .unwrap();
    assert_eq!(w.driver.aws_calls("AssumeRoleWithWebIdentity").await, 1);
    assert_eq!(
        w.kube.gets(TOKEN_REVIEWS),
        1,
        "its token was reviewed before it went to STS"
    );

    // A pod of service account "app" whose token is another account's, or
    // no valid token at all: refused, although "app" has credentials.
    let mut impostor = PodSpec::new("sh4", "impostor", "app");
    impostor.token = PodSpec::new("sh4", "impostor", "other").token;
    let target = w.dir.target(&impostor.uid);
    let err = w.publish(&target, "c", &impostor).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");
    assert!(
        err.message().contains(
            "token of pod sh4/impostor does not prove service account app: it belongs to system:serviceaccount:sh4:other"
        ),
        "{}",
        err.message()
    );
    assert!(!target.exists());
    let mut forged = PodSpec::new("sh4", "forged", "app");
    forged.token = Some("eyJ-forged".into());
    let target = w.dir.target(&forged.uid);
    let err = w.publish(&target, "c", &forged).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");
    assert!(
        err.message().contains("did not accept it"),
        "{}",
        err.message()
    );
    assert!(!err.message().contains("eyJ-forged"), "no token in errors");
    assert!(!target.exists());

    // A genuine pod: one review, then the shared credentials and values.
    let second = PodSpec::new("sh4", "second", "app");
    w.publish(&w.dir.target(&second.uid), "c", &second)
        .await
        .unwrap();
    assert_eq!(read(&w.dir.target(&second.uid), "s1"), "sh4-s1-v1");
    assert_eq!(w.kube.gets(TOKEN_REVIEWS), 4);
    assert_eq!(w.driver.aws_calls("AssumeRoleWithWebIdentity").await, 1);
    assert_eq!(w.driver.aws_calls("BatchGetSecretValue").await, 1);

    // The API server cannot review: the pod's token goes to STS instead.
    w.kube.token_reviews_down(true);
    let third = PodSpec::new("sh4", "third", "app");
    w.publish(&w.dir.target(&third.uid), "c", &third)
        .await
        .unwrap();
    assert_eq!(w.driver.aws_calls("AssumeRoleWithWebIdentity").await, 2);
    assert_no_leak(
        &w.driver,
        &[
            impostor.token.as_deref().unwrap(),
            "eyJ-forged",
            third.token.as_deref().unwrap(),
        ],
    );
}
