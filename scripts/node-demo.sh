#!/usr/bin/env bash
# The whole product on this machine: a one-node Kubernetes cluster
# (kube-apiserver, etcd, controller manager, scheduler, and a kubelet with
# containerd and runc), the chart installed with `helm install` from its own
# image with the controller on, and then, step by step, the External Secrets
# walkthrough (a ServiceAccount with an IAM role, a SecretStore with jwt
# auth, an ExternalSecret) becoming a Kubernetes Secret that follows AWS, and
# a pod that mounts the same secret as a file and follows it too. AWS is a
# local moto; only the secret's ARN points at it. Then everything is torn
# down. Run as root.
#
# First run builds the cluster's binaries from Go modules (about 15 minutes
# on 2 cores) and the driver (about 5); later runs take about two minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "scripts/node-demo.sh must run as root (containerd, kubelet, mounts)" >&2
  exit 1
fi
. scripts/peers.sh
require_prerequisites test
ensure_moto
ensure_k8s_peers
ensure_helm
bin=$K8S_PEERS_BIN

echo "== building the driver and its image (scripts/image.sh; no container engine)"
cargo build --locked --bin aws-secrets-csi
work=$(mktemp -d /tmp/asc-node-demo-XXXXXX)
bash scripts/image.sh --binary "${CARGO_TARGET_DIR:-target}/debug/aws-secrets-csi" --out "$work/aws-secrets-csi.oci.tar"
images=$(bash scripts/node-images.sh)

. scripts/node-cluster.sh
cleanup() {
  echo "== tearing down (kubelet, containers, containerd, control plane, mounts)"
  node_cluster_down
}
trap cleanup EXIT

echo "== starting the control plane and a local AWS (moto)"
moto_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 tests/peers/moto_server.py --port "$moto_port" >"$work/moto.out" 2>/dev/null &
pids+=($!)
echo "== starting the node: containerd, runc and kubelet (tests/peers/node.sh)"
node_cluster_up "$images/pause.oci.tar" "$images/busybox.oci.tar" "$work/aws-secrets-csi.oci.tar"
keys=$(wait_line "$work/moto.out")
kubectl get nodes -o wide

export AWS_ENDPOINT_URL="http://127.0.0.1:$moto_port" AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_ACCESS_KEY_ID=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['access_key'])" "$keys")
export AWS_SECRET_ACCESS_KEY=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['secret_key'])" "$keys")
aws_py() { python3 -c "import boto3; sm = boto3.client('secretsmanager'); $1"; }
arn=$(aws_py 'print(sm.create_secret(Name="eso/example/secrets", SecretString="first-Pa55")["ARN"])')
# The IAM role the walkthrough's ServiceAccount names, as one would make it:
# trusted for the cluster's web identities, allowed to read secrets.
python3 - <<'PY'
import boto3, json
iam = boto3.client("iam")
trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
         "Principal": {"Federated": "arn:aws:iam::123456789012:oidc-provider/oidc.example"},
         "Action": "sts:AssumeRoleWithWebIdentity"}]}
read = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Resource": "*",
        "Action": ["secretsmanager:GetSecretValue", "secretsmanager:BatchGetSecretValue"]}]}
iam.create_role(RoleName="external-secrets", AssumeRolePolicyDocument=json.dumps(trust))
iam.put_role_policy(RoleName="external-secrets", PolicyName="read", PolicyDocument=json.dumps(read))
PY
echo "in AWS (moto): secret eso/example/secrets = first-Pa55, role external-secrets may read it"
echo "  the secret's ARN: $arn"

echo
echo "== helm install aws-secrets-csi deploy/chart/aws-secrets-csi --set controller.enabled=true"
echo "   (image aws-secrets-csi:0.1.0: the node driver, a DaemonSet, and the controller, a Deployment)"
cat >"$work/values.yaml" <<YAML
kubeletPath: $root
stateDir: $work/node/driver-state
hostNetwork: true        # the node has no CNI
awsRegion: us-east-1
refreshInterval: 2s
logFormat: text
env:
  - {name: KUBERNETES_SERVICE_HOST, value: "127.0.0.1"}
  - {name: KUBERNETES_SERVICE_PORT, value: "$api_port"}
  - {name: AWS_ENDPOINT_URL, value: "$AWS_ENDPOINT_URL"}
  - {name: AWS_EC2_METADATA_DISABLED, value: "true"}
controller:
  enabled: true
  replicas: 1            # one node, host network: one replica
  tolerations:           # the node stays NotReady (no CNI)
    - {key: node.kubernetes.io/not-ready, operator: Exists, effect: NoSchedule}
YAML
if ! "$HELM" install aws-secrets-csi deploy/chart/aws-secrets-csi --kubeconfig "$kubeconfig" \
  -n aws-secrets-csi --create-namespace -f "$work/values.yaml" --wait --timeout 180s >/dev/null; then
  echo "helm install did not finish; the pods, their events and logs:" >&2
  kubectl get pods -A -o wide >&2 || true
  kubectl describe pods -n aws-secrets-csi >&2 || true
  kubectl logs -n aws-secrets-csi --all-containers --tail 20 -l app.kubernetes.io/instance=aws-secrets-csi >&2 || true
  exit 1
fi
kubectl get pods -n aws-secrets-csi -o wide
for _ in $(seq 60); do
  kubectl get csinode node-1 -o jsonpath='{.spec.drivers[*].name}' 2>/dev/null | grep -q aws-secrets-csi && break
  sleep 1
done
echo "kubelet's CSINode lists: $(kubectl get csinode node-1 -o jsonpath='{.spec.drivers[*].name}')"

echo
echo "== the walkthrough: a ServiceAccount with an IAM role, a SecretStore (jwt auth),"
echo "   an ExternalSecret (refreshInterval 1h, creationPolicy Owner)"
cat >"$work/walkthrough.yaml" <<YAML
apiVersion: v1
kind: Namespace
metadata: {name: external-secrets}
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: external-secrets-sa
  namespace: external-secrets
  annotations: {eks.amazonaws.com/role-arn: "arn:aws:iam::123456789012:role/external-secrets"}
---
apiVersion: external-secrets.io/v1beta1
kind: SecretStore
metadata: {name: aws-secret-store, namespace: external-secrets}
spec:
  provider:
    aws:
      service: SecretsManager
      region: us-east-1
      auth:
        jwt:
          serviceAccountRef: {name: external-secrets-sa}
---
apiVersion: external-secrets.io/v1beta1
kind: ExternalSecret
metadata: {name: my-app-secrets, namespace: external-secrets}
spec:
  refreshInterval: 1h
  secretStoreRef: {name: aws-secret-store, kind: SecretStore}
  target: {name: my-app-secrets, creationPolicy: Owner}
  data:
    - secretKey: DB_PASSWORD
      remoteRef: {key: $arn}
YAML
sed 's/^/    /' "$work/walkthrough.yaml"
kubectl apply -f "$work/walkthrough.yaml"
secret_value() {
  kubectl get secret my-app-secrets -n external-secrets -o jsonpath='{.data.DB_PASSWORD}' 2>/dev/null | base64 -d 2>/dev/null
}
wait_value() {
  for _ in $(seq 90); do [ "$(secret_value)" = "$1" ] && return 0; sleep 1; done
  echo "the Secret did not get $1 (it holds: $(secret_value))" >&2
  kubectl get externalsecret my-app-secrets -n external-secrets -o yaml >&2 || true
  kubectl logs -n aws-secrets-csi deploy/aws-secrets-csi-controller --tail 30 >&2 || true
  return 1
}
wait_value first-Pa55
echo
echo "\$ kubectl get externalsecret,secretstore -n external-secrets"
kubectl get externalsecret,secretstore -n external-secrets
echo "Secret my-app-secrets: DB_PASSWORD=$(secret_value), owned by" \
  "$(kubectl get secret my-app-secrets -n external-secrets -o jsonpath='{.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}')"

echo
echo "== the secret rotates in AWS; the ExternalSecret refreshes every hour, so force it now"
echo "   with the documented annotation (any change of a label or an annotation syncs at once)"
aws_py 'sm.put_secret_value(SecretId="eso/example/secrets", SecretString="rotated-N3w")'
echo "in AWS: rotated-N3w; the Secret still holds: $(secret_value)"
echo "\$ kubectl annotate externalsecret my-app-secrets force-sync=\$(date +%s) --overwrite"
kubectl annotate externalsecret my-app-secrets -n external-secrets force-sync="$(date +%s)" --overwrite >/dev/null
wait_value rotated-N3w
echo "the Secret now holds: $(secret_value)"

echo
echo "== a pod that mounts the same secret as a file (a SecretProviderClass volume), printing it every 2 s"
kubectl apply -f - <<YAML
apiVersion: secrets-store.csi.x-k8s.io/v1
kind: SecretProviderClass
metadata: {name: my-app, namespace: external-secrets}
spec:
  provider: aws
  parameters:
    objects: |
      - objectName: "$arn"
        objectAlias: DB_PASSWORD
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: external-secrets}
spec:
  nodeName: node-1
  hostNetwork: true
  serviceAccountName: external-secrets-sa
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: localhost/aws-secrets-csi-test/busybox:1
    command: [sh, -c, 'while true; do echo "the pod reads: \$(cat /mnt/secrets/DB_PASSWORD)"; sleep 2; done']
    volumeMounts:
      - {name: secrets, mountPath: /mnt/secrets, readOnly: true}
  volumes:
    - name: secrets
      csi:
        driver: secrets-store.aws-secrets-csi.io
        readOnly: true
        volumeAttributes: {secretProviderClass: my-app}
YAML
kubectl wait --for=condition=Ready pod/web -n external-secrets --timeout=90s >/dev/null
sleep 3
pod_log() { cat "$work"/node/pod-logs/external-secrets_web_*/app/*.log 2>/dev/null | sed 's/^[^ ]* [^ ]* [^ ]* //'; }
pod_log | tail -1

echo
echo "== it rotates again: kubelet's republish brings it into the same file, a force-sync into the Secret"
aws_py 'sm.put_secret_value(SecretId="eso/example/secrets", SecretString="third-V4l")'
echo "in AWS: third-V4l"
for _ in $(seq 60); do pod_log | tail -1 | grep -q third-V4l && break; sleep 1; done
pod_log | tail -2
kubectl annotate externalsecret my-app-secrets -n external-secrets force-sync="$(date +%s)-2" --overwrite >/dev/null
wait_value third-V4l
echo "the Secret holds: $(secret_value)"

echo
echo "== kubectl delete externalsecret my-app-secrets, pod web: what they made goes with them"
kubectl delete externalsecret my-app-secrets -n external-secrets --wait=true >/dev/null
kubectl delete pod web -n external-secrets --wait=true >/dev/null
for _ in $(seq 60); do
  kubectl get secret my-app-secrets -n external-secrets >/dev/null 2>&1 || break
  sleep 1
done
if kubectl get secret my-app-secrets -n external-secrets >/dev/null 2>&1; then
  echo "Secret my-app-secrets is still there" >&2; exit 1
fi
echo "Secret my-app-secrets: deleted with its owner (garbage collection)"
if findmnt -rn -o TARGET | grep -q "$root/pods/.*/kubernetes.io~csi"; then
  echo "a volume is still mounted" >&2; exit 1
fi
echo "no CSI volume left mounted under $root/pods (kubelet unpublished, the tmpfs is gone)"
