#!/usr/bin/env bash
# Per-node memory of our DaemonSet against the upstream layout, on one real
# node (tests/peers/node.sh): both installed side by side, each registered
# with the same kubelet, then the resident memory (VmRSS) of every process
# of each layout, read from /proc once they have settled. Prints a table and
# the ratio. Run as root.
#
#   scripts/node-memory.sh UPSTREAM_BIN
#
# UPSTREAM_BIN holds the upstream layout's four programs, built however you
# build them (static Go binaries): secrets-store-csi-driver (v1.6.0),
# node-driver-registrar (v2.17.0), livenessprobe (v2.18.0) and
# secrets-store-csi-driver-provider-aws (v3.1.1). Ours is the release build
# (scripts/image.sh). The pods' sandboxes (pause) are not counted: one per
# pod, one pod for us and two for them.
set -euo pipefail
cd "$(dirname "$0")/.."
upstream=${1:?usage: scripts/node-memory.sh UPSTREAM_BIN}
upstream=$(cd "$upstream" && pwd)
programs=(secrets-store-csi-driver node-driver-registrar livenessprobe secrets-store-csi-driver-provider-aws)
for p in "${programs[@]}"; do
  [ -x "$upstream/$p" ] || { echo "missing $upstream/$p" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
. scripts/peers.sh
require_prerequisites test
ensure_k8s_peers
ensure_helm
bin=$K8S_PEERS_BIN
work=$(mktemp -d /tmp/asc-node-memory-XXXXXX)
. scripts/node-cluster.sh
trap node_cluster_down EXIT

echo "== images: ours (release build) and the upstream layout's four"
bash scripts/image.sh --out "$work/aws-secrets-csi.oci.tar" >/dev/null
images=$(bash scripts/node-images.sh)
archives=("$images/pause.oci.tar" "$work/aws-secrets-csi.oci.tar")
for p in "${programs[@]}"; do
  python3 scripts/oci-image.py --name "localhost/upstream/$p:1" --out "$work/$p.oci.tar" \
    --entrypoint "[\"/$p\"]" --file "$upstream/$p:/$p:0755" \
    --file /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:0644 >/dev/null
  archives+=("$work/$p.oci.tar")
done

node_cluster_up "${archives[@]}"

echo "== ours: helm install (one container)"
"$HELM" install aws-secrets-csi deploy/chart/aws-secrets-csi --kubeconfig "$kubeconfig" \
  -n aws-secrets-csi --create-namespace --wait --timeout 120s \
  --set kubeletPath="$root" --set stateDir="$work/node/driver-state" --set hostNetwork=true \
  --set syncSecrets=true --set awsRegion=us-east-1 --set metricsPort=8096 --set livenessPort=9809 \
  --set 'env[0].name=KUBERNETES_SERVICE_HOST' --set 'env[0].value=127.0.0.1' \
  --set 'env[1].name=KUBERNETES_SERVICE_PORT' --set-string "env[1].value=$api_port" >/dev/null

echo "== theirs: the driver with node-driver-registrar and livenessprobe, and the AWS provider"
providers=$work/node/providers
kubectl apply -f - >/dev/null <<YAML
apiVersion: v1
kind: ServiceAccount
metadata: {name: secrets-store-csi-driver, namespace: kube-system}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: csi-secrets-store-provider-aws, namespace: kube-system}
---
# Broad on purpose: this measures memory, not permissions.
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: upstream-layout-for-measurement}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}
subjects:
  - {kind: ServiceAccount, name: secrets-store-csi-driver, namespace: kube-system}
  - {kind: ServiceAccount, name: csi-secrets-store-provider-aws, namespace: kube-system}
---
apiVersion: storage.k8s.io/v1
kind: CSIDriver
metadata: {name: secrets-store.csi.k8s.io}
spec:
  podInfoOnMount: true
  attachRequired: false
  volumeLifecycleModes: [Ephemeral]
  tokenRequests: [{audience: sts.amazonaws.com}]
  requiresRepublish: true
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: csi-secrets-store, namespace: kube-system}
spec:
  selector: {matchLabels: {app: csi-secrets-store}}
  template:
    metadata: {labels: {app: csi-secrets-store}}
    spec:
      serviceAccountName: secrets-store-csi-driver
      hostNetwork: true
      tolerations: [{operator: Exists}]
      containers:
        - name: node-driver-registrar
          image: localhost/upstream/node-driver-registrar:1
          args: [--csi-address=/csi/csi.sock, --kubelet-registration-path=$root/plugins/csi-secrets-store/csi.sock]
          volumeMounts:
            - {name: plugin-dir, mountPath: /csi}
            - {name: registration-dir, mountPath: /registration}
        - name: secrets-store
          image: localhost/upstream/secrets-store-csi-driver:1
          args:
            - --endpoint=unix:///csi/csi.sock
            - --nodeid=node-1
            - --provider-volume=/var/run/secrets-store-csi-providers
            - --metrics-addr=:8095
            - --enable-secret-rotation=false
          env:
            - {name: KUBERNETES_SERVICE_HOST, value: "127.0.0.1"}
            - {name: KUBERNETES_SERVICE_PORT, value: "$api_port"}
          securityContext: {privileged: true}
          ports: [{containerPort: 9808, name: healthz}]
          livenessProbe: {httpGet: {path: /healthz, port: healthz}, initialDelaySeconds: 30, periodSeconds: 15}
          volumeMounts:
            - {name: plugin-dir, mountPath: /csi}
            - {name: mountpoint-dir, mountPath: $root/pods, mountPropagation: Bidirectional}
            - {name: providers-dir, mountPath: /var/run/secrets-store-csi-providers}
        - name: liveness-probe
          image: localhost/upstream/livenessprobe:1
          args: [--csi-address=/csi/csi.sock, --probe-timeout=3s, --http-endpoint=0.0.0.0:9808]
          volumeMounts: [{name: plugin-dir, mountPath: /csi}]
      volumes:
        - {name: mountpoint-dir, hostPath: {path: $root/pods, type: DirectoryOrCreate}}
        - {name: registration-dir, hostPath: {path: $root/plugins_registry, type: Directory}}
        - {name: plugin-dir, hostPath: {path: $root/plugins/csi-secrets-store, type: DirectoryOrCreate}}
        - {name: providers-dir, hostPath: {path: $providers, type: DirectoryOrCreate}}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: csi-secrets-store-provider-aws, namespace: kube-system}
spec:
  selector: {matchLabels: {app: csi-secrets-store-provider-aws}}
  template:
    metadata: {labels: {app: csi-secrets-store-provider-aws}}
    spec:
      serviceAccountName: csi-secrets-store-provider-aws
      hostNetwork: true
      tolerations: [{operator: Exists}]
      containers:
        - name: provider-aws-installer
          image: localhost/upstream/secrets-store-csi-driver-provider-aws:1
          args: [--provider-volume=/var/run/secrets-store-csi-providers]
          env:
            - {name: KUBERNETES_SERVICE_HOST, value: "127.0.0.1"}
            - {name: KUBERNETES_SERVICE_PORT, value: "$api_port"}
            - {name: AWS_REGION, value: us-east-1}
          volumeMounts:
            - {name: providers-dir, mountPath: /var/run/secrets-store-csi-providers}
            - {name: mountpoint-dir, mountPath: $root/pods, mountPropagation: HostToContainer}
      volumes:
        - {name: providers-dir, hostPath: {path: $providers, type: DirectoryOrCreate}}
        - {name: mountpoint-dir, hostPath: {path: $root/pods, type: DirectoryOrCreate}}
YAML

echo "== waiting until kubelet lists both drivers and every container runs"
for _ in $(seq 120); do
  drivers=$(kubectl get csinode node-1 -o jsonpath='{.spec.drivers[*].name}' 2>/dev/null || true)
  running=$(kubectl get pods -A -o jsonpath='{range .items[*]}{range .status.containerStatuses[*]}{.ready}{"\n"}{end}{end}' | grep -c true || true)
  if [[ $drivers == *secrets-store.aws-secrets-csi.io* && $drivers == *secrets-store.csi.k8s.io* ]] && [ "$running" -ge 5 ]; then
    break
  fi
  sleep 1
done
echo "kubelet's CSINode: $drivers; ready containers: $running of 5"
kubectl get pods -A -o wide
sleep "${SETTLE_SECONDS:-20}"

# rss_of NAME: VmRSS in KiB of the process whose executable is NAME, under this node.
rss_of() {
  local pid exe
  for pid in $(pgrep -f "$1" || true); do
    exe=$(tr '\0' ' ' <"/proc/$pid/cmdline" | awk '{print $1}')
    [ "$(basename "$exe")" = "$1" ] || continue
    awk '/^VmRSS:/ {print $2}' "/proc/$pid/status"
    return
  done
  echo 0
}
echo
printf '%-44s %10s\n' "process (idle, registered)" "RSS KiB"
ours=$(rss_of aws-secrets-csi)
printf '%-44s %10s\n' "ours: aws-secrets-csi" "$ours"
theirs=0
for p in "${programs[@]}"; do
  r=$(rss_of "$p")
  printf '%-44s %10s\n' "theirs: $p" "$r"
  theirs=$((theirs + r))
done
printf '%-44s %10s\n' "theirs, all four" "$theirs"
python3 -c "import sys; o, t = int(sys.argv[1]), int(sys.argv[2]); print(f'per-node memory, ours / theirs: {o / 1024:.1f} MiB / {t / 1024:.1f} MiB = {o / t:.2f}' if t else 'theirs did not run')" "$ours" "$theirs"
