#!/usr/bin/env bash
# A real node for tests/node.rs and scripts/node-demo.sh: Debian's containerd
# and runc, and kubelet (built by scripts/k8s-peers.sh), joined to a control
# plane as NODE_NAME. Everything lives in WORK_DIR: kubelet's root (a shared
# mount, for Bidirectional propagation), containerd's root, state and socket,
# the pods' logs. The node has an address of its own (on the loopback
# interface; kubelet refuses 127.0.0.1), so it does not depend on this
# machine's network. No CNI: pods use the host's
# network, and the node stays NotReady.
#
#   node.sh BIN_DIR WORK_DIR KUBECONFIG NODE_NAME IMAGE_ARCHIVE...
#
# Prints `READY <kubelet-root> <node-ip> <containerd-socket>` once the Node
# object exists. SIGUSR1 restarts kubelet (as an upgrade or a crash would).
# Stays until its parent process is gone, then stops kubelet, every
# container and containerd, and unmounts and removes everything it made.
set -euo pipefail
bin=$1 work=$2 kubeconfig=$3 node=$4
shift 4
parent=$PPID
node_ip=198.18.254.1
root=$work/kubelet
ctrd=$work/containerd
sock=$ctrd/containerd.sock
mkdir -p "$root" "$ctrd" "$work/pod-logs" "$work/cni/bin" "$work/cni/conf"

log() { echo "node.sh: $*" >&2; }

kubelet_pid= containerd_pid=
stop() {
  set +e
  [ -z "$kubelet_pid" ] || { kill "$kubelet_pid"; wait "$kubelet_pid"; } 2>/dev/null
  if [ -n "$containerd_pid" ]; then
    for task in $(ctr --address "$sock" -n k8s.io tasks ls -q 2>/dev/null); do
      ctr --address "$sock" -n k8s.io tasks kill -a -s SIGKILL "$task" >/dev/null 2>&1
    done
    sleep 1
    kill "$containerd_pid" 2>/dev/null; wait "$containerd_pid" 2>/dev/null
  fi
  pkill -9 -f "containerd-shim-runc-v2 .*-address $sock" 2>/dev/null
  # Deepest first; lazily, since a dying container may still hold one.
  for _ in 1 2 3; do
    findmnt -rn -o TARGET | grep -F "$work/" | sort -r | while read -r m; do umount -l "$m" 2>/dev/null; done
  done
  umount -l "$root" 2>/dev/null
  ip addr del "$node_ip/32" dev lo 2>/dev/null
  rm -rf "$work"
}
trap stop EXIT

ip addr del "$node_ip/32" dev lo 2>/dev/null || true
ip addr add "$node_ip/32" dev lo

# kubelet's root is a shared mount: the driver's tmpfs mounts, made in its
# container with Bidirectional propagation, must reach the pods.
mount --bind "$root" "$root"
mount --make-rshared "$root"

cat > "$ctrd/config.toml" <<TOML
version = 2
root = "$ctrd/root"
state = "$ctrd/state"
[grpc]
  address = "$sock"
[ttrpc]
  address = "$sock.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "localhost/aws-secrets-csi-test/pause:1"
  # runc here may not lower oom_score_adj (no CAP_SYS_RESOURCE): without
  # this, every sandbox fails with "can't get final child's PID from pipe".
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$work/cni/bin"
    conf_dir = "$work/cni/conf"
TOML
containerd --config "$ctrd/config.toml" >"$work/containerd.log" 2>&1 &
containerd_pid=$!
for _ in $(seq 100); do
  ctr --address "$sock" version >/dev/null 2>&1 && break
  kill -0 "$containerd_pid" 2>/dev/null || { echo "FAILED containerd exited: $(tail -5 "$work/containerd.log")"; exit 1; }
  sleep 0.1
done
for archive in "$@"; do
  ctr --address "$sock" -n k8s.io images import "$archive" >&2 ||
    { echo "FAILED cannot import $archive"; exit 1; }
done

cat > "$work/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This machine's cgroup v1 hierarchy; kubelet refuses it by default since 1.35.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
containerRuntimeEndpoint: unix://$sock
podLogsDir: $work/pod-logs
authentication: {anonymous: {enabled: true}, webhook: {enabled: false}}
authorization: {mode: AlwaysAllow}
address: $node_ip
port: 0
readOnlyPort: 0
healthzPort: 0
# Republish (and pod sync) every few seconds instead of every minute, so
# that rotation through kubelet's own republish shows within a test.
syncFrequency: 5s
evictionHard: {memory.available: "10Mi", nodefs.available: "1%", imagefs.available: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
localStorageCapacityIsolation: false
serializeImagePulls: false
volumePluginDir: $work/volume-plugins
resolvConf: ""
YAML

start_kubelet() {
  "$bin/kubelet" --config "$work/kubelet.yaml" --kubeconfig "$kubeconfig" --root-dir "$root" \
    --hostname-override "$node" --node-ip "$node_ip" --v 2 >>"$work/kubelet.log" 2>&1 &
  kubelet_pid=$!
}
restart_kubelet() {
  log "restarting kubelet"
  kill "$kubelet_pid" 2>/dev/null; wait "$kubelet_pid" 2>/dev/null
  start_kubelet
}
trap restart_kubelet USR1
start_kubelet

for _ in $(seq 600); do
  if "$bin/kubectl" --kubeconfig "$kubeconfig" get node "$node" >/dev/null 2>&1; then
    echo "READY $root $node_ip $sock"
    break
  fi
  kill -0 "$kubelet_pid" 2>/dev/null || { echo "FAILED kubelet exited: $(tail -5 "$work/kubelet.log")"; exit 1; }
  sleep 0.2
done

while kill -0 "$parent" 2>/dev/null; do sleep 0.5 & wait $! || true; done
