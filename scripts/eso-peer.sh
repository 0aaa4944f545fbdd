#!/usr/bin/env bash
# Builds External Secrets Operator (the peer the controller benchmark runs
# beside ours) from Go modules into a cache outside the repository, once per
# machine. Prints the path of the binary. Its go.mod has a replace directive,
# so `go install` refuses it: a small wrapper module requires it and carries
# the same replace.
#
#   ESO_VERSION (default v0.16.2), ESO_CACHE (default ~/.cache/aws-secrets-csi)
set -euo pipefail
ESO_VERSION=${ESO_VERSION:-v0.16.2}
cache=${ESO_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/aws-secrets-csi}
bin="$cache/eso-$ESO_VERSION/bin/external-secrets"
if [ -x "$bin" ]; then
  echo "$bin"
  exit 0
fi
work="$cache/build-eso-$ESO_VERSION"
mkdir -p "$work" "$(dirname "$bin")"
cd "$work"
gomod=$(go mod download -json "github.com/external-secrets/external-secrets@$ESO_VERSION" | python3 -c 'import json, sys; print(json.load(sys.stdin)["GoMod"])')
{
  echo "module aws-secrets-csi.test/esopeer"
  echo
  echo "go 1.26"
  echo
  echo "require github.com/external-secrets/external-secrets $ESO_VERSION"
  echo
  grep -E '^replace ' "$gomod"
} > go.mod
cat > tools.go <<'GO'
//go:build tools

package esopeer

import _ "github.com/external-secrets/external-secrets"
GO
echo "resolving modules for External Secrets Operator $ESO_VERSION (first time only)" >&2
go mod tidy >&2
echo "building External Secrets Operator $ESO_VERSION" >&2
CGO_ENABLED=0 go build -o "$bin" github.com/external-secrets/external-secrets >&2
echo "$bin"
