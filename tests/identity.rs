//! Every way a pod's identity becomes AWS credentials: EKS Pod Identity
//! through a stand-in agent (IPv4, IPv6, auto fallback, an agent that starts
//! late, a refused token), role chaining (what STS received), the credential
//! cache, the failover region, and region discovery from the node label.
//! Real driver, real moto, real tmpfs: needs root.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::agent::FakeAgent;
use common::proxy::AwsProxy;
use common::*;
use tonic::Code;

const V4: &str = "127.0.0.1:0";
const V6: &str = "[::1]:0";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A port nothing listens on.
fn closed_url() -> String {
    format!("http://127.0.0.1:{}/v1/credentials", free_port())
}

async fn pod_identity_world(ipv4: &str, ipv6: &str) -> World {
    World::with(
        &[],
        &[
            "--pod-identity-agent-ipv4",
            ipv4,
            "--pod-identity-agent-ipv6",
            ipv6,
            "--pod-identity-timeout",
            "500ms",
            "--pod-identity-retry-for",
            "8s",
        ],
    )
    .await
}

fn pod_identity_class(w: &World, ns: &str, secret: &str, preference: &str) {
    w.kube.put_service_account(ns, "app", None); // no IRSA annotation needed
    w.kube.put_class(
        ns,
        "c",
        &[
            ("region", REGION),
            ("usePodIdentity", "true"),
            ("preferredAddressType", preference),
            (
                "objects",
                &format!("- {{objectName: {secret}, objectType: secretsmanager, objectAlias: s}}"),
            ),
        ],
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pod_identity_over_ipv4() {
    require_root();
    moto().create_secret("i1/s", "pi-v4-value").await;
    let pod = PodSpec::new("i1", "p", "app");
    let agent = FakeAgent::start(addr(V4), pod.pod_identity_token.as_deref().unwrap()).await;
    let w = pod_identity_world(&agent.url, &closed_url()).await;
    pod_identity_class(&w, "i1", "i1/s", "ipv4");
    let target = w.dir.target(&pod.uid);
    w.publish(&target, "c", &pod).await.unwrap();
    assert_eq!(read(&target, "s"), "pi-v4-value");
    assert_eq!(
        agent.authorizations(),
        vec![pod.pod_identity_token.clone().unwrap()],
        "the pod's own token, as Authorization"
    );
    assert_no_leak(&w.driver, &["eyJ-pi-token-for-p", "pi-v4-value"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn pod_identity_over_ipv6() {
    require_root();
    moto().create_secret("i2/s", "pi-v6-value").await;
    let pod = PodSpec::new("i2", "p", "app");
    let agent = FakeAgent::start(addr(V6), pod.pod_identity_token.as_deref().unwrap()).await;
    assert!(agent.url.starts_with("http://[::1]:"));
    let w = pod_identity_world(&closed_url(), &agent.url).await;
    pod_identity_class(&w, "i2", "i2/s", "ipv6");
    let target = w.dir.target(&pod.uid);
    w.publish(&target, "c", &pod).await.unwrap();
    assert_eq!(read(&target, "s"), "pi-v6-value");
}

#[tokio::test(flavor = "multi_thread")]
async fn pod_identity_auto_falls_back_from_ipv4_to_ipv6() {
    require_root();
    moto().create_secret("i3/s", "pi-auto-value").await;
    let pod = PodSpec::new("i3", "p", "app");
    let agent = FakeAgent::start(addr(V6), pod.pod_identity_token.as_deref().unwrap()).await;
    let w = pod_identity_world(&closed_url(), &agent.url).await;
    pod_identity_class(&w, "i3", "i3/s", "auto");
    let target = w.dir.target(&pod.uid);
    w.publish(&target, "c", &pod).await.unwrap();
    assert_eq!(read(&target, "s"), "pi-auto-value");
    assert_eq!(agent.authorizations().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn pod_identity_waits_for_an_agent_that_starts_late() {
    require_root();
    moto().create_secret("i4/s", "pi-late-value").await;
    let pod = PodSpec::new("i4", "p", "app");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/v1/credentials");
    let w = pod_identity_world(&url, &closed_url()).await;
    pod_identity_class(&w, "i4", "i4/s", "ipv4");
    let target = w.dir.target(&pod.uid);
    let token = pod.pod_identity_token.clone().unwrap();
    let late = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        FakeAgent::start(addr(&format!("127.0.0.1:{port}")), &token).await
    });
    w.publish(&target, "c", &pod).await.unwrap();
    let agent = late.await.unwrap();
    assert_eq!(read(&target, "s"), "pi-late-value");
    assert_eq!(agent.authorizations().len(), 1);
    let metrics = w.driver.metrics().await;
    assert!(
        metrics.contains("aws_api_calls_total{api=\"PodIdentityAgent\",outcome=\"ok\"} 1"),
        "{metrics}"
    );
    // The attempts before the agent was up were counted as unavailable.
    assert!(
        w.driver
            .metric("aws_api_calls_total{api=\"PodIdentityAgent\",outcome=\"unavailable\"}")
            .await
            >= 1.0,
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pod_identity_refusing_the_token_is_permission_denied() {
    require_root();
    let pod = PodSpec::new("i5", "p", "app");
    let agent = FakeAgent::start(addr(V4), "eyJ-some-other-token").await;
    let w = pod_identity_world(&agent.url, &closed_url()).await;
    pod_identity_class(&w, "i5", "i5/s", "ipv4");
    let target = w.dir.target(&pod.uid);
    let err = w.publish(&target, "c", &pod).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(
        err.message()
            .contains("EKS Pod Identity agent refused the pod's token (403)"),
        "{}",
        err.message()
    );
    assert!(
        err.message()
            .contains("service account app (namespace: i5)"),
        "{}",
        err.message()
    );
    assert!(!err.message().contains("eyJ"));
    assert!(!target.exists());

    // And a pod without the Pod Identity token: the CSIDriver lacks the audience.
    let mut pod = PodSpec::new("i5", "q", "app");
    pod.pod_identity_token = None;
    let target = w.dir.target(&pod.uid);
    let err = w.publish(&target, "c", &pod).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(
        err.message().contains("pods.eks.amazonaws.com"),
        "{}",
        err.message()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn role_chaining_uses_the_last_roles_credentials_and_sends_external_id_and_tags() {
    require_root();
    moto()
        .create_secret("i6/cross", "cross-account-value")
        .await;
    let proxy = AwsProxy::start(&moto().endpoint).await;
    let w = World::with(&[("AWS_ENDPOINT_URL", &proxy.endpoint)], &[]).await;
    // hopper may only assume roles: the read succeeds only with chained's credentials.
    w.kube.put_service_account("i6", "app", Some(HOPPER_ROLE));
    w.kube.put_class(
        "i6",
        "c",
        &[
            ("region", REGION),
            ("assumeRoleArn", CHAINED_ROLE),
            ("assumeRoleExternalId", "ext-4242"),
            ("assumeRoleDurationSeconds", "1800"),
            ("assumeRoleSessionTags", "team=shop,env=test"),
            (
                "objects",
                "- {objectName: i6/cross, objectType: secretsmanager, objectAlias: s}",
            ),
        ],
    );
    let pod = PodSpec::new("i6", "web-1", "app");
    let target = w.dir.target(&pod.uid);
    w.publish(&target, "c", &pod).await.unwrap();
    assert_eq!(read(&target, "s"), "cross-account-value");

    let sts: Vec<String> = proxy
        .requests()
        .into_iter()
        .map(|r| r.body)
        .filter(|b| b.starts_with("Action="))
        .collect();
    let web = sts
        .iter()
        .find(|b| b.contains("Action=AssumeRoleWithWebIdentity"))
        .expect("IRSA call");
    assert!(web.contains("RoleSessionName=i6%40web-1"), "{web}");
    let hop = sts
        .iter()
        .find(|b| b.contains("Action=AssumeRole&"))
        .expect("AssumeRole call");
    for part in [
        "RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fchained",
        "ExternalId=ext-4242",
        "DurationSeconds=1800",
        "RoleSessionName=i6%40web-1",
        "Tags.member.1.Key=env",
        "Tags.member.1.Value=test",
        "Tags.member.2.Key=team",
        "Tags.member.2.Value=shop",
    ] {
        assert!(hop.contains(part), "{part} missing from {hop}");
    }

    // The wrong external id: the chained role's trust policy refuses it.
    w.kube.put_class(
        "i6",
        "wrong-id",
        &[
            ("region", REGION),
            ("assumeRoleArn", CHAINED_ROLE),
            ("assumeRoleExternalId", "ext-0000"),
            (
                "objects",
                "- {objectName: i6/cross, objectType: secretsmanager}",
            ),
        ],
    );
    let pod = PodSpec::new("i6", "web-3", "app");
    let target = w.dir.target(&pod.uid);
    let err = w.publish(&target, "wrong-id", &pod).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(
        err.message().starts_with(
            "AssumeRole for arn:aws:iam::123456789012:role/chained failed: AccessDenied"
        ),
        "{}",
        err.message()
    );
    assert!(!target.exists());

    // Without the chain, hopper's own credentials are refused.
    w.class(
        "i6",
        "direct",
        "- {objectName: i6/cross, objectType: secretsmanager}",
    );
    let pod = PodSpec::new("i6", "web-2", "app");
    let target = w.dir.target(&pod.uid);
    let err = w.publish(&target, "direct", &pod).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_are_cached_per_identity_key() {
    let w = World::new().await;
    moto().create_secret("i7/s", "cached-value").await;
    w.kube.put_service_account("i7", "app", Some(READER_ROLE));
    w.kube.put_service_account("i7", "other", Some(READER_ROLE));
    w.class(
        "i7",
        "c",
        "- {objectName: i7/s, objectType: secretsmanager, objectAlias: s}",
    );
    let mut node = w.driver.node().await;
    let sts = "aws_api_calls_total{api=\"AssumeRoleWithWebIdentity\",outcome=\"ok\"}";
    for i in 0..5 {
        let pod = PodSpec::new("i7", &format!("p{i}"), "app");
        node.node_publish_volume(publish_request(&w.dir.target(&pod.uid), "c", &pod))
            .await
            .unwrap();
    }
    assert_eq!(
        w.driver.metric(sts).await,
        1.0,
        "five pods of one service account: one STS call"
    );
    let pod = PodSpec::new("i7", "q", "other");
    node.node_publish_volume(publish_request(&w.dir.target(&pod.uid), "c", &pod))
        .await
        .unwrap();
    assert_eq!(
        w.driver.metric(sts).await,
        2.0,
        "another service account with the same role has its own entry"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn failover_region_serves_when_the_primary_is_down_but_not_on_a_4xx() {
    require_root();
    let moto = moto();
    moto.create_secret_in("us-west-2", "i8/s", "west-value")
        .await;
    moto.create_secret("i8/s", "east-value").await;
    let proxy = AwsProxy::start(&moto.endpoint).await;
    // us-east-1's Secrets Manager is down; STS and us-west-2 work.
    proxy.fail_when(|r| {
        r.region.as_deref() == Some("us-east-1") && r.target.starts_with("secretsmanager.")
    });
    let w = World::with(&[("AWS_ENDPOINT_URL", &proxy.endpoint)], &[]).await;
    w.kube.put_service_account("i8", "app", Some(READER_ROLE));
    w.kube.put_class(
        "i8",
        "c",
        &[
            ("region", REGION),
            ("failoverRegion", "us-west-2"),
            (
                "objects",
                "- {objectName: i8/s, objectType: secretsmanager, objectAlias: s}",
            ),
        ],
    );
    let pod = PodSpec::new("i8", "p", "app");
    let target = w.dir.target(&pod.uid);
    w.publish(&target, "c", &pod).await.unwrap();
    assert_eq!(read(&target, "s"), "west-value");
    let regions: Vec<_> = proxy
        .requests()
        .into_iter()
        .filter(|r| r.target.starts_with("secretsmanager."))
        .map(|r| r.region.unwrap_or_default())
        .collect();
    assert!(
        regions.contains(&"us-east-1".to_string()) && regions.contains(&"us-west-2".to_string()),
        "{regions:?}"
    );
    assert_eq!(regions.last().map(String::as_str), Some("us-west-2"));
    // Every call names the driver and its version (CloudTrail's userAgent).
    let agent = format!("app/aws-secrets-csi-{}", env!("CARGO_PKG_VERSION"));
    for r in proxy.requests() {
        assert!(
            r.user_agent.contains(&agent),
            "{} {:?}",
            r.target,
            r.user_agent
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn when_both_regions_fail_the_error_gives_the_failover_regions_cause_too() {
    require_root();
    let moto = moto();
    // The secret exists only in us-east-1, which is down.
    moto.create_secret("i8b/s", "east-value").await;
    let proxy = AwsProxy::start(&moto.endpoint).await;
    proxy.fail_when(|r| {
        r.region.as_deref() == Some("us-east-1") && r.target.starts_with("secretsmanager.")
    });
    let w = World::with(&[("AWS_ENDPOINT_URL", &proxy.endpoint)], &[]).await;
    w.kube.put_service_account("i8b", "app", Some(READER_ROLE));
    w.kube.put_class(
        "i8b",
        "c",
        &[
            ("region", REGION),
            ("failoverRegion", "us-west-2"),
            (
                "objects",
                "- {objectName: i8b/s, objectType: secretsmanager, objectAlias: s}",
            ),
        ],
    );
    let pod = PodSpec::new("i8b", "p", "app");
    let target = w.dir.target(&pod.uid);
    let status = w.publish(&target, "c", &pod).await.unwrap_err();
    let message = status.message();
    assert!(
        message.contains("i8b/s in us-east-1: ServiceUnavailable")
            && message.contains("(failover i8b/s in us-west-2: ResourceNotFoundException"),
        "{message}"
    );
    // Unavailable first: kubelet's retry may well succeed.
    assert_eq!(status.code(), tonic::Code::Unavailable, "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_region_comes_from_the_node_label_when_nobody_names_one() {
    require_root();
    moto()
        .create_secret_in("eu-west-1", "i9/s", "eu-value")
        .await;
    let w = World::with(&[("AWS_REGION", ""), ("AWS_DEFAULT_REGION", "")], &[]).await;
    w.kube.put_node(
        "test-node",
        &[("topology.kubernetes.io/region", "eu-west-1")],
    );
    w.kube.put_service_account("i9", "app", Some(READER_ROLE));
    w.kube.put_class(
        "i9",
        "c",
        &[(
            "objects",
            "- {objectName: i9/s, objectType: secretsmanager, objectAlias: s}",
        )],
    );
    let mut node = w.driver.node().await;
    for name in ["p1", "p2"] {
        let pod = PodSpec::new("i9", name, "app");
        let target = w.dir.target(&pod.uid);
        node.node_publish_volume(publish_request(&target, "c", &pod))
            .await
            .unwrap();
        assert_eq!(read(&target, "s"), "eu-value");
    }
    assert_eq!(
        w.kube.gets("/api/v1/nodes/test-node"),
        1,
        "the node is read once"
    );
}
