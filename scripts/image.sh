#!/usr/bin/env bash
# Builds the driver's container image as an OCI archive, without a container
# engine: the release binary, exactly the shared libraries it loads (glibc,
# libm, libgcc_s and the loader; aws-lc is linked in) and the CA bundle (the
# AWS SDK refuses to start without root certificates), nothing else: no
# shell, no package manager. deploy/Dockerfile makes the same content with
# Docker.
#
#   scripts/image.sh [--binary PATH] [--out FILE] [--name REF]
#
# Defaults: a `cargo build --release` binary, target/image/aws-secrets-csi.oci.tar,
# docker.io/library/aws-secrets-csi:<version>. Load it with
#   ctr -n k8s.io images import target/image/aws-secrets-csi.oci.tar
# or `skopeo copy oci-archive:... docker://registry/...` to push it.
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
binary= out=target/image/aws-secrets-csi.oci.tar name="docker.io/library/aws-secrets-csi:$version"
while [ $# -gt 0 ]; do
  case $1 in
    --binary) binary=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --name) name=$2; shift 2 ;;
    *) echo "usage: $0 [--binary PATH] [--out FILE] [--name REF]" >&2; exit 2 ;;
  esac
done
if [ -z "$binary" ]; then
  cargo build --release --locked --bin aws-secrets-csi >&2
  binary=target/release/aws-secrets-csi
fi
cas=/etc/ssl/certs/ca-certificates.crt
[ -s "$cas" ] || { echo "$cas is missing: apt-get install ca-certificates" >&2; exit 1; }
mkdir -p "$(dirname "$out")"
python3 scripts/oci-image.py --name "$name" --out "$out" \
  --entrypoint '["/usr/local/bin/aws-secrets-csi"]' --cmd '["serve"]' --user 0 \
  --file "$binary:/usr/local/bin/aws-secrets-csi:0755" --libs-of "$binary" \
  --file "$cas:$cas:0644"
echo "$out: $(du -h "$out" | cut -f1)" >&2
