# Installs the real peers the tests and the demo use, when they are missing:
#   moto[server] (AWS emulator, from PyPI) and csi-sanity (from the Go module proxy).
# Sourced by scripts/test.sh and scripts/demo.sh.

MOTO_SPEC='moto[server]>=5.1.19,<6'
CSI_SANITY_MODULE='github.com/kubernetes-csi/csi-test/v5/cmd/csi-sanity@v5.4.0'

ensure_moto() {
  if python3 -c 'import moto, moto.server, boto3; v = tuple(int(x) for x in moto.__version__.split(".")[:3]); raise SystemExit(0 if v >= (5, 1, 19) else 1)' 2>/dev/null; then
    return 0
  fi
  echo "installing $MOTO_SPEC" >&2
  python3 -m pip install --quiet "$MOTO_SPEC"
}

ensure_csi_sanity() {
  if [ -n "${CSI_SANITY:-}" ] && [ -x "$CSI_SANITY" ]; then return 0; fi
  if command -v csi-sanity >/dev/null 2>&1; then export CSI_SANITY="$(command -v csi-sanity)"; return 0; fi
  local gobin
  gobin="$(go env GOPATH)/bin"
  if [ ! -x "$gobin/csi-sanity" ]; then
    echo "installing csi-sanity ($CSI_SANITY_MODULE)" >&2
    go install "$CSI_SANITY_MODULE"
  fi
  export CSI_SANITY="$gobin/csi-sanity"
}

# kube-apiserver, kubectl and etcd built from Go modules into a cache outside
# the repository (the first build takes about 11 minutes on 2 cores).
ensure_k8s_peers() {
  for tool in openssl curl; do
    command -v "$tool" >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq "$tool"; }
  done
  K8S_PEERS_BIN="$(bash scripts/k8s-peers.sh)"
  export K8S_PEERS_BIN
}

HELM_MODULE='helm.sh/helm/v3/cmd/helm@v3.22.0'

# helm, for linting and rendering the chart (from the Go module proxy).
ensure_helm() {
  if [ -n "${HELM:-}" ] && [ -x "$HELM" ]; then return 0; fi
  if command -v helm >/dev/null 2>&1; then export HELM="$(command -v helm)"; return 0; fi
  local gobin
  gobin="$(go env GOPATH)/bin"
  if [ ! -x "$gobin/helm" ]; then
    echo "installing helm ($HELM_MODULE)" >&2
    go install "$HELM_MODULE"
  fi
  export HELM="$gobin/helm"
}
