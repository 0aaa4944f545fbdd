#!/usr/bin/env bash
# The two images a node test needs besides the driver's, made locally
# without a registry or a container engine, into a cache outside the
# repository (once per machine):
#   pause.oci.tar     the pod sandbox (tests/node/pause.c, static), named as
#                     containerd's sandbox_image in tests/peers/node.sh
#   busybox.oci.tar   the workload (Debian's busybox-static: sh, cat, sleep)
# Prints the directory holding them.
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${K8S_PEERS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/aws-secrets-csi}/node-images
mkdir -p "$cache"
if [ ! -s "$cache/pause.oci.tar" ]; then
  cc -static -Os -o "$cache/pause" tests/node/pause.c
  python3 scripts/oci-image.py --name localhost/aws-secrets-csi-test/pause:1 \
    --out "$cache/pause.oci.tar" --entrypoint '["/pause"]' --user 65535 \
    --file "$cache/pause:/pause:0755" >&2
fi
if [ ! -s "$cache/busybox.oci.tar" ]; then
  if [ ! -x "$cache/busybox/bin/busybox" ]; then
    deb=$(cd "$cache" && { apt-get download busybox-static >&2 || { apt-get update -qq >&2 && apt-get download busybox-static >&2; }; } && ls -t busybox-static_*.deb | head -1) || {
      echo "cannot download Debian's busybox-static (apt-get update first?)" >&2
      exit 1
    }
    dpkg-deb -x "$cache/$deb" "$cache/busybox"
  fi
  links=()
  for tool in sh cat sleep ls echo env test grep; do links+=(--link "/bin/$tool=busybox"); done
  python3 scripts/oci-image.py --name localhost/aws-secrets-csi-test/busybox:1 \
    --out "$cache/busybox.oci.tar" --cmd '["sh"]' \
    --file "$cache/busybox/bin/busybox:/bin/busybox:0755" "${links[@]}" >&2
fi
echo "$cache"
