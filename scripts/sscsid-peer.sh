#!/usr/bin/env bash
# Builds the upstream Secrets Store CSI Driver (the incumbent node driver)
# from Go modules into a cache outside the repository, once per machine, and
# a stand-in provider plugin from its own `provider/fake` package (the
# side-by-side test needs the driver, not a real provider). Prints the
# directory holding `secrets-store-csi-driver` and `fake-provider`.
#
# The module proxy here refuses the zip of monis.app/mlog v0.0.2, a logging
# helper of the driver's main package; a minimal local module with the five
# functions main calls stands in for it (klog does the logging).
#
#   SSCSID_VERSION (default v1.6.0), SSCSID_CACHE (default ~/.cache/aws-secrets-csi)
set -euo pipefail
SSCSID_VERSION=${SSCSID_VERSION:-v1.6.0}
cache=${SSCSID_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/aws-secrets-csi}
bin="$cache/sscsid-$SSCSID_VERSION/bin"
if [ -x "$bin/secrets-store-csi-driver" ] && [ -x "$bin/fake-provider" ]; then
  echo "$bin"
  exit 0
fi
work="$cache/build-sscsid-$SSCSID_VERSION"
mkdir -p "$work/mlog" "$work/fakeprovider" "$bin"
cd "$work"
cat > mlog/go.mod <<'GO'
module monis.app/mlog

go 1.22

require k8s.io/klog/v2 v2.130.1
GO
cat > mlog/mlog.go <<'GO'
// Package mlog stands in for monis.app/mlog v0.0.2 with the calls the
// Secrets Store CSI Driver's main package makes; klog does the logging.
package mlog

import (
	"context"
	"os"

	"k8s.io/klog/v2"
)

type LogFormat string

const (
	FormatText LogFormat = "text"
	FormatJSON LogFormat = "json"
)

func Setup() func() { return klog.Flush }

func ValidateAndSetKlogLevelAndFormatGlobally(_ context.Context, _ klog.Level, _ LogFormat) error {
	return nil
}

func Error(msg string, args ...any) { klog.ErrorS(nil, msg, args...) }

func Fatal(err error, args ...any) {
	klog.ErrorS(err, "fatal", args...)
	klog.Flush()
	os.Exit(1)
}
GO
cat > go.mod <<GO
module aws-secrets-csi.test/sscsidpeer

go 1.26

require (
	monis.app/mlog v0.0.2
	sigs.k8s.io/secrets-store-csi-driver $SSCSID_VERSION
)

replace monis.app/mlog => ./mlog
GO
cat > fakeprovider/main.go <<'GO'
// A provider plugin for the upstream driver: its own fake server, answering
// every mount with one file, foo = "bar", at version v1.
package main

import (
	"os"
	"os/signal"
	"syscall"

	"sigs.k8s.io/secrets-store-csi-driver/provider/fake"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"
)

func main() {
	server, err := fake.NewMocKCSIProviderServer(os.Args[1])
	if err != nil {
		panic(err)
	}
	server.SetObjects(map[string]string{"foo": "v1"})
	server.SetFiles([]*v1alpha1.File{{Path: "foo", Mode: 0644, Contents: []byte("bar")}})
	if err := server.Start(); err != nil {
		panic(err)
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
	server.Stop()
}
GO
cat > tools.go <<'GO'
//go:build tools

package sscsidpeer

import _ "sigs.k8s.io/secrets-store-csi-driver/cmd/secrets-store-csi-driver"
GO
echo "resolving modules for the Secrets Store CSI Driver $SSCSID_VERSION (first time only)" >&2
GOFLAGS=-mod=mod go mod tidy >&2
echo "building the Secrets Store CSI Driver $SSCSID_VERSION" >&2
CGO_ENABLED=0 go build -o "$bin/secrets-store-csi-driver" sigs.k8s.io/secrets-store-csi-driver/cmd/secrets-store-csi-driver >&2
CGO_ENABLED=0 go build -o "$bin/fake-provider" ./fakeprovider >&2
echo "$bin"
