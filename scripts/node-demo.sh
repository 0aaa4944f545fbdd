#!/usr/bin/env bash
# The real thing on this machine: a one-node Kubernetes cluster (kube-apiserver,
# etcd, controller manager, scheduler, and a kubelet with containerd and runc),
# the driver installed from deploy/chart with `helm install` from its own
# image, and a pod that prints its secret while the secret rotates in AWS
# (a local moto). Then everything is torn down. Run as root.
#
# First run builds the cluster's binaries from Go modules (about 15 minutes
# on 2 cores) and the driver (about 5); later runs take about a minute.
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
bash scripts/image.sh --binary target/debug/aws-secrets-csi --out "$work/aws-secrets-csi.oci.tar"
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
python3 -c 'import boto3; boto3.client("secretsmanager").create_secret(Name="demo/db", SecretString="{\"password\": \"first-Pa55\"}")'

echo
echo "== helm install aws-secrets-csi deploy/chart/aws-secrets-csi (image aws-secrets-csi:0.1.0, one container per node)"
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
YAML
"$HELM" install aws-secrets-csi deploy/chart/aws-secrets-csi --kubeconfig "$kubeconfig" \
  -n aws-secrets-csi --create-namespace -f "$work/values.yaml" --wait --timeout 120s >/dev/null
kubectl get pods -n aws-secrets-csi -o wide
for _ in $(seq 60); do
  kubectl get csinode node-1 -o jsonpath='{.spec.drivers[*].name}' 2>/dev/null | grep -q aws-secrets-csi && break
  sleep 1
done
echo "kubelet's CSINode lists: $(kubectl get csinode node-1 -o jsonpath='{.spec.drivers[*].name}')"

echo
echo "== a pod with a SecretProviderClass volume, printing its secret every 2 s"
kubectl apply -f - <<'YAML'
apiVersion: v1
kind: ServiceAccount
metadata:
  name: app
  namespace: default
  annotations: {eks.amazonaws.com/role-arn: "arn:aws:iam::123456789012:role/reader"}
---
apiVersion: secrets-store.csi.x-k8s.io/v1
kind: SecretProviderClass
metadata: {name: db, namespace: default}
spec:
  provider: aws
  parameters:
    objects: |
      - objectName: demo/db
        objectType: secretsmanager
        jmesPath:
          - {path: password, objectAlias: password}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: default}
spec:
  nodeName: node-1
  hostNetwork: true
  serviceAccountName: app
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: localhost/aws-secrets-csi-test/busybox:1
    command: [sh, -c, 'while true; do echo "the pod reads: $(cat /mnt/secrets/password)"; sleep 2; done']
    volumeMounts:
      - {name: secrets, mountPath: /mnt/secrets, readOnly: true}
  volumes:
    - name: secrets
      csi:
        driver: secrets-store.aws-secrets-csi.io
        readOnly: true
        volumeAttributes: {secretProviderClass: db}
YAML
kubectl wait --for=condition=Ready pod/web --timeout=90s >/dev/null
sleep 3
pod_log() { cat "$work"/node/pod-logs/default_web_*/app/*.log 2>/dev/null | sed 's/^[^ ]* [^ ]* [^ ]* //'; }
pod_log | tail -2

echo
echo "== the secret rotates in AWS; kubelet's republish brings the new value into the same file"
python3 -c 'import boto3; boto3.client("secretsmanager").put_secret_value(SecretId="demo/db", SecretString="{\"password\": \"rotated-N3w\"}")'
for _ in $(seq 60); do pod_log | tail -1 | grep -q rotated-N3w && break; sleep 1; done
pod_log | tail -3

echo
echo "== kubectl delete pod web: kubelet unpublishes, the tmpfs goes"
kubectl delete pod web --wait=true >/dev/null
if findmnt -rn -o TARGET | grep -q "$root/pods/.*/kubernetes.io~csi"; then
  echo "a volume is still mounted" >&2; exit 1
fi
echo "no CSI volume left mounted under $root/pods"
