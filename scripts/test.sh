#!/usr/bin/env bash
# The full test suite: formatting, lints, unit tests, and the integration tests
# against real peers (moto, csi-sanity, a kube-apiserver and etcd built from
# Go modules, tmpfs mounts), and a short fuzz round. Run as root: the
# integration tests mount tmpfs file systems, as the driver does on a node.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/peers.sh

if [ "$(id -u)" != 0 ]; then
  echo "scripts/test.sh must run as root (the integration tests mount tmpfs)" >&2
  exit 1
fi
ensure_moto
ensure_csi_sanity
ensure_k8s_peers
ensure_helm

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
"$HELM" lint --strict deploy/chart/aws-secrets-csi
# A short fuzz round of the pure core (a long one: FUZZ_SECONDS=600).
FUZZ_SECONDS=${FUZZ_SECONDS:-20} bash scripts/fuzz.sh
cargo test --workspace --all-targets --locked
