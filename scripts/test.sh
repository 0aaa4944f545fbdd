#!/usr/bin/env bash
# The full test suite: formatting, lints, unit tests, and the integration tests
# against real peers (moto, csi-sanity, a kube-apiserver and etcd built from
# Go modules, tmpfs mounts), and a short fuzz round. Run as root: the
# integration tests mount tmpfs file systems, as the driver does on a node.
# Each step is announced and timed; a summary table ends the run, and its
# last line names the failed step, if any.
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "scripts/test.sh must run as root (the integration tests mount tmpfs)" >&2
  exit 1
fi
. scripts/peers.sh
require_prerequisites test

started=$(date +%s)
names=() results=() times=()
failed=

# step NAME COMMAND...: runs one step, announces it, records how it went.
step() {
  local name=$1 t0 status
  shift
  echo
  echo "==> $name"
  t0=$(date +%s)
  ( set -e; "$@" )
  status=$?
  names+=("$name")
  times+=("$(($(date +%s) - t0))")
  if [ "$status" = 0 ]; then
    results+=(passed)
    echo "<== $name: passed in ${times[-1]} s"
  else
    results+=(FAILED)
    echo "<== $name: FAILED (exit $status) after ${times[-1]} s"
    [ -n "$failed" ] || failed=$name
  fi
  return 0
}

# The peers are needed by what follows: export them into this shell.
echo "==> peers (first run: moto ~1 min, csi-sanity ~1 min, helm ~3 min, kube-apiserver/etcd/kubectl/kubelet ~13 min, the upstream driver ~2 min)"
t0=$(date +%s)
if ensure_moto && ensure_csi_sanity && ensure_k8s_peers && ensure_helm && ensure_sscsid; then
  names+=(peers) results+=(passed) times+=("$(($(date +%s) - t0))")
  echo "moto: $(command -v python3); csi-sanity: $CSI_SANITY; helm: $HELM; kube-apiserver, etcd, kubectl: $K8S_PEERS_BIN; upstream driver: $SSCSID_BIN"
  echo "<== peers: passed in ${times[-1]} s"
else
  names+=(peers) results+=(FAILED) times+=("$(($(date +%s) - t0))")
  failed=peers
fi

if [ -z "$failed" ]; then
  step "cargo fmt --check" cargo fmt --all -- --check
  step "cargo clippy" cargo clippy --workspace --all-targets --locked -- -D warnings
  step "helm lint" "$HELM" lint --strict deploy/chart/aws-secrets-csi
  # A short fuzz round of the pure core (a long one: FUZZ_SECONDS=600).
  step "fuzz (${FUZZ_SECONDS:-20} s a target)" env FUZZ_SECONDS="${FUZZ_SECONDS:-20}" bash scripts/fuzz.sh
  log=$(mktemp)
  # External Secrets Operator's own cases (a few minutes) run once, in
  # their own step below, where their scores are printed.
  step "cargo test" bash -c "set -o pipefail; cargo test --workspace --all-targets --locked -- --skip external_secrets_operators_own_tests 2>&1 | tee '$log'"
  # ASCP's own test cases against our binary (also run above): the score.
  step "ASCP conformance" bash -c "set -o pipefail; cargo test --locked --test conformance -- --nocapture 2>&1 | grep -E '^ASCP v3.1.1 conformance: '"
  # External Secrets Operator v2.9.0's own tests, ported as data: the
  # controller under both CRD sets, the template engine, its certificate
  # functions and the rules (the last three also ran above).
  eso_log=$(mktemp)
  step "External Secrets conformance" bash -c "set -o pipefail; { cargo test --locked --test eso_conformance -- --nocapture && cargo test --locked -p aws-secrets-csi-core --test eso_template --test eso_certs --test eso_rules -- --nocapture; } > '$eso_log' 2>&1; status=\$?; grep -E '^External Secrets v2.9.0 ' '$eso_log'; [ \$status = 0 ] || { grep -E '^(FAILED|thread )' '$eso_log' | head -40; exit \$status; }"
  rm -f "$eso_log"
fi

echo
echo "== summary ($(($(date +%s) - started)) s)"
printf '%-28s %-8s %6s\n' step result seconds
for i in "${!names[@]}"; do
  printf '%-28s %-8s %6s\n' "${names[$i]}" "${results[$i]}" "${times[$i]}"
done
counts=
if [ -n "${log:-}" ] && [ -f "$log" ]; then
  # The counts of every `test result:` line of cargo test, added up.
  counts=$(awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed", p, f }' "$log")
  rm -f "$log"
fi
if [ -n "$failed" ]; then
  [ -z "$counts" ] || echo "$counts"
  echo "FAILED step: $failed"
  exit 1
fi
echo "all ${#names[@]} steps passed"
echo "$counts"
