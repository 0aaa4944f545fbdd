# A one-node cluster on this machine, for scripts/node-demo.sh and
# scripts/node-memory.sh (sourced; tests/node.rs starts the same peers from
# Rust): the control plane of tests/peers/control_plane.sh with the node
# controllers and scheduler, and the node of tests/peers/node.sh. Everything
# lives under $work and stops with the calling script.
#
#   node_cluster_up IMAGE_ARCHIVE...
#
# Needs $bin (scripts/k8s-peers.sh's directory) and $work. Sets $server,
# $kubeconfig, $api_port and $root (kubelet's root), defines kubectl, and
# registers its processes in $pids for node_cluster_down (the EXIT trap).

pids=()
node_cluster_down() {
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill "${pids[i]}" 2>/dev/null || true
    wait "${pids[i]}" 2>/dev/null || true
  done
  rm -rf "$work"
}

# wait_line FILE: the first line of FILE, once there.
wait_line() {
  for _ in $(seq 1200); do [ -s "$1" ] && { head -1 "$1"; return; }; sleep 0.1; done
  echo "timed out waiting for $1" >&2
  return 1
}

kubectl() { "$bin/kubectl" --kubeconfig "$kubeconfig" "$@"; }

node_cluster_up() {
  local ready
  NODE_CONTROLLERS=1 bash tests/peers/control_plane.sh "$bin" "$work/cp" >"$work/cp.out" 2>&1 &
  pids+=($!)
  read -r ready server kubeconfig < <(wait_line "$work/cp.out")
  [ "$ready" = READY ] || { echo "control plane: $ready $server" >&2; return 1; }
  api_port=${server##*:}
  bash tests/peers/node.sh "$bin" "$work/node" "$kubeconfig" node-1 "$@" >"$work/node.out" 2>"$work/node.err" &
  pids+=($!)
  read -r ready root _ < <(wait_line "$work/node.out")
  [ "$ready" = READY ] || { echo "node: $ready $root" >&2; cat "$work/node.err" >&2; return 1; }
}
