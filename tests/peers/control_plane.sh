#!/usr/bin/env bash
# A real Kubernetes control plane for the e2e tests: etcd and kube-apiserver
# (built by scripts/k8s-peers.sh), on loopback, with a service-account issuer
# and signing key so that TokenRequest issues real tokens, RBAC on, and a
# static admin token for the test itself. Every request is written to an
# audit log (WORK_DIR/audit.log), so a test can see exactly which API calls
# the driver made.
#
#   control_plane.sh BIN_DIR WORK_DIR
#
# With NODE_CONTROLLERS=1 (tests/node.rs), a real node can join: the
# controller manager also runs the DaemonSet, Deployment, ReplicaSet,
# service-account and root-CA publisher controllers (pods need
# kube-root-ca.crt), and kube-scheduler binds their pods. No node-lifecycle controller: the node stays
# NotReady for want of a CNI, and nothing evicts its pods for that.
#
# Prints one line `READY <server-url> <admin-kubeconfig>` once /readyz
# answers, then stays until its parent process is gone, and stops both.
set -euo pipefail
bin=$1
work=$2
mkdir -p "$work/etcd" "$work/certs"
parent=$PPID

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
etcd_port=$(free_port); peer_port=$(free_port); api_port=$(free_port)

openssl genrsa -out "$work/sa.key" 2048 2>/dev/null
openssl rsa -in "$work/sa.key" -pubout -out "$work/sa.pub" 2>/dev/null
admin_token=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
echo "$admin_token,admin,admin,system:masters" > "$work/tokens.csv"
cat > "$work/audit-policy.yaml" <<AP
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
AP

"$bin/etcd" --name default --data-dir "$work/etcd" \
  --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
  --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
  --initial-cluster "default=http://127.0.0.1:$peer_port" --unsafe-no-fsync --log-level error \
  >"$work/etcd.log" 2>&1 &
etcd_pid=$!

"$bin/kube-apiserver" --etcd-servers "http://127.0.0.1:$etcd_port" \
  --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" --cert-dir "$work/certs" \
  --service-cluster-ip-range 10.0.0.0/24 --allow-privileged=true \
  --service-account-issuer https://kubernetes.default.svc.cluster.local \
  --service-account-key-file "$work/sa.pub" --service-account-signing-key-file "$work/sa.key" \
  --api-audiences https://kubernetes.default.svc.cluster.local \
  --token-auth-file "$work/tokens.csv" --authorization-mode RBAC \
  --audit-policy-file "$work/audit-policy.yaml" --audit-log-path "$work/audit.log" \
  >"$work/apiserver.log" 2>&1 &
api_pid=$!

# The API server drains slowly once etcd is gone; a test fixture need not wait.
stop() {
  [ -z "${kcm_pid:-}" ] || kill -9 "$kcm_pid" 2>/dev/null || true
  [ -z "${scheduler_pid:-}" ] || kill -9 "$scheduler_pid" 2>/dev/null || true
  kill -9 "$api_pid" 2>/dev/null || true; kill "$etcd_pid" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"
}
trap stop EXIT

server="https://127.0.0.1:$api_port"
for _ in $(seq 600); do
  if curl -sfk -H "Authorization: Bearer $admin_token" "$server/readyz" >/dev/null 2>&1; then
    break
  fi
  if ! kill -0 "$api_pid" 2>/dev/null; then
    echo "FAILED kube-apiserver exited: $(tail -5 "$work/apiserver.log")"
    exit 1
  fi
  sleep 0.1
done

cat > "$work/admin.kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: test
  cluster: {server: "$server", certificate-authority: "$work/certs/apiserver.crt"}
users:
- name: admin
  user: {token: "$admin_token"}
contexts:
- name: test
  context: {cluster: test, user: admin}
current-context: test
KC
# kube-controller-manager with only the garbage collector: deleting an
# owner (an ExternalSecret) deletes what it owns (its Secret).
kcm_pid= scheduler_pid=
controllers=garbagecollector
[ -z "${NODE_CONTROLLERS:-}" ] || controllers=garbage-collector-controller,daemonset-controller,deployment-controller,replicaset-controller,serviceaccount-controller,root-ca-certificate-publisher-controller
if [ -x "$bin/kube-controller-manager" ]; then
  "$bin/kube-controller-manager" --kubeconfig "$work/admin.kubeconfig" \
    --controllers "$controllers" --leader-elect=false --secure-port 0 \
    --root-ca-file "$work/certs/apiserver.crt" \
    >"$work/controller-manager.log" 2>&1 &
  kcm_pid=$!
fi
if [ -n "${NODE_CONTROLLERS:-}" ]; then
  "$bin/kube-scheduler" --kubeconfig "$work/admin.kubeconfig" --leader-elect=false --secure-port 0 \
    >"$work/scheduler.log" 2>&1 &
  scheduler_pid=$!
fi

echo "READY $server $work/admin.kubeconfig"

while kill -0 "$parent" 2>/dev/null; do sleep 0.5; done
