# Installs the real peers the tests and the demo use, when they are missing.
# Sourced by scripts/test.sh and scripts/demo.sh.

MOTO_SPEC='moto[server]>=5.1.19,<6'
# A gRPC client that is not Go (the C core), for tests/grpc_clients.rs.
GRPCIO_SPEC='grpcio>=1.60,<2'
CSI_SANITY_MODULE='github.com/kubernetes-csi/csi-test/v5/cmd/csi-sanity@v5.4.0'
HELM_MODULE='helm.sh/helm/v3/cmd/helm@v3.22.0'

. "$(dirname "${BASH_SOURCE[0]}")/prereqs.sh"

# The cache outside the repository where peers are kept across runs.
PEERS_CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/aws-secrets-csi

# moto (AWS emulator) with its server, and grpcio, from PyPI, in a virtual environment
# of its own in the cache (a plain Debian python3 refuses pip install
# outside one). Its bin directory goes first on PATH, so `python3` in the
# scripts and the tests is the one with moto.
ensure_moto() {
  local venv="$PEERS_CACHE/venv"
  local probe='import grpc, moto, moto.server, boto3; v = tuple(int(x) for x in moto.__version__.split(".")[:3]); raise SystemExit(0 if v >= (5, 1, 19) else 1)'
  if ! "$venv/bin/python3" -c "$probe" 2>/dev/null; then
    echo "installing $MOTO_SPEC into $venv (first run: about a minute)" >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python3" -m pip install --quiet --disable-pip-version-check "$MOTO_SPEC" "$GRPCIO_SPEC"
  fi
  export PATH="$venv/bin:$PATH"
}

# ensure_go_tool VAR BINARY MODULE: exports VAR as the path of BINARY (the
# one VAR names, else one on PATH, else `go install MODULE`).
ensure_go_tool() {
  local var=$1 bin=$2 module=$3 gobin
  local current=${!var:-}
  if [ -n "$current" ] && [ -x "$current" ]; then return 0; fi
  if command -v "$bin" >/dev/null 2>&1; then
    export "$var=$(command -v "$bin")"
    return 0
  fi
  gobin="$(go env GOPATH)/bin"
  if [ ! -x "$gobin/$bin" ]; then
    echo "installing $bin ($module)" >&2
    go install "$module"
  fi
  export "$var=$gobin/$bin"
}

ensure_csi_sanity() { ensure_go_tool CSI_SANITY csi-sanity "$CSI_SANITY_MODULE"; }

# helm, for linting and rendering the chart.
ensure_helm() { ensure_go_tool HELM helm "$HELM_MODULE"; }

# kube-apiserver, kubectl and etcd built from Go modules into a cache outside
# the repository (the first build takes about 11 minutes on 2 cores).
ensure_k8s_peers() {
  K8S_PEERS_BIN="$(bash scripts/k8s-peers.sh)"
  export K8S_PEERS_BIN
}

# The upstream Secrets Store CSI Driver v1.6.0 and a provider made from its
# fake, for the side-by-side test (the first build takes about 2 minutes).
ensure_sscsid() {
  SSCSID_BIN="$(bash scripts/sscsid-peer.sh)"
  export SSCSID_BIN
}
