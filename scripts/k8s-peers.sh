#!/usr/bin/env bash
# Builds a real kube-apiserver, kube-controller-manager, kube-scheduler,
# kubelet, kubectl and etcd from Go modules (the Go
# module proxy; no release downloads) into a cache outside the repository,
# once per machine. Prints the directory holding the binaries.
#
#   K8S_VERSION (default v1.36.3), ETCD_VERSION (default v3.6.14),
#   K8S_PEERS_CACHE (default ${XDG_CACHE_HOME:-$HOME/.cache}/aws-secrets-csi)
#
# k8s.io/kubernetes requires its staging modules at v0.0.0 through replace
# directives that `go install` ignores, so a small wrapper module requires it
# and replaces each staging module with its published version (v0.X.Y for
# Kubernetes v1.X.Y). etcd's server module has replace directives too; as a
# dependency of the wrapper they are ignored and its real requirements apply.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.36.3}
ETCD_VERSION=${ETCD_VERSION:-v3.6.14}
cache=${K8S_PEERS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/aws-secrets-csi}
bin="$cache/k8s-$K8S_VERSION-etcd-$ETCD_VERSION/bin"

if [ -x "$bin/kube-apiserver" ] && [ -x "$bin/kubectl" ] && [ -x "$bin/etcd" ] && [ -x "$bin/kube-controller-manager" ] &&
  [ -x "$bin/kubelet" ] && [ -x "$bin/kube-scheduler" ]; then
  echo "$bin"
  exit 0
fi

work="$cache/build-$K8S_VERSION"
mkdir -p "$work" "$bin"
cd "$work"
staging_version="v0.${K8S_VERSION#v1.}"

gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | python3 -c 'import json, sys; print(json.load(sys.stdin)["GoMod"])')
{
  echo "module aws-secrets-csi.test/k8speers"
  echo
  echo "go 1.26"
  echo
  echo "require ("
  echo "	k8s.io/kubernetes $K8S_VERSION"
  echo "	go.etcd.io/etcd/server/v3 $ETCD_VERSION"
  echo ")"
  echo
  echo "replace ("
  grep -E '^\s+k8s\.io/[^ ]+ v0\.0\.0\s*$' "$gomod" | awk -v v="$staging_version" '{print "\t" $1 " => " $1 " " v}'
  echo ")"
} > go.mod
cat > tools.go <<'GO'
//go:build tools

package k8speers

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
echo "resolving modules for kube-apiserver $K8S_VERSION and etcd $ETCD_VERSION (first time only)" >&2
go mod tidy >&2
export CGO_ENABLED=0
# Each binary once: a cache from before a binary was added builds only it.
build() {
  if [ ! -x "$bin/$1" ]; then
    echo "building $1" >&2
    go build -o "$bin/$1" "$2" >&2
  fi
}
build etcd go.etcd.io/etcd/server/v3
build kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver
# For garbage collection of the Secrets the controller owns.
build kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager
build kubectl k8s.io/kubernetes/cmd/kubectl
# The real node of tests/node.rs: kubelet (with containerd and runc from
# Debian) and the scheduler that binds the DaemonSet's pod.
build kube-scheduler k8s.io/kubernetes/cmd/kube-scheduler
build kubelet k8s.io/kubernetes/cmd/kubelet
echo "$bin"
