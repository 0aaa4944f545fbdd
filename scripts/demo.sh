#!/usr/bin/env bash
# Demo of the main job without a cluster: a local AWS emulator (moto) holds a
# secret and a parameter; `aws-secrets-csi mount` reads the example
# SecretProviderClass, fetches them and writes the files, as the driver does
# for a pod. Then `mount --watch` keeps them current while the secret rotates.
# As root the files land on a tmpfs; otherwise in a plain directory.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/peers.sh
require_prerequisites demo
ensure_moto

if [ ! -x target/debug/aws-secrets-csi ]; then
  echo "== building aws-secrets-csi (first build: about 5 minutes on 2 cores, 2 GB in target/)"
fi
cargo build --locked
bin=target/debug/aws-secrets-csi
class=deploy/examples/secretproviderclass.yaml
target=${DEMO_TARGET:-/tmp/aws-secrets-csi-demo}
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

python3 -m moto.server -H 127.0.0.1 -p "$port" >/dev/null 2>&1 &
moto_pid=$!
watch_pid=
cleanup() {
  [ -n "$watch_pid" ] && kill "$watch_pid" 2>/dev/null && wait "$watch_pid" 2>/dev/null
  if [ "$(id -u)" = 0 ] && mountpoint -q "$target" 2>/dev/null; then umount "$target"; fi
  rm -rf "$target"
  kill "$moto_pid" 2>/dev/null || true
}
trap cleanup EXIT

export AWS_ENDPOINT_URL="http://127.0.0.1:$port" AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo
for _ in $(seq 50); do
  python3 -c "import urllib.request; urllib.request.urlopen('$AWS_ENDPOINT_URL/moto-api/')" 2>/dev/null && break
  sleep 0.1
done

echo "== putting a secret and a parameter into the local AWS emulator"
python3 - <<'PY'
import json, os
import boto3
sm = boto3.client("secretsmanager")
sm.create_secret(Name="prod/db", SecretString=json.dumps({"username": "shop_app", "password": "demo-Pa55w0rd"}))
ssm = boto3.client("ssm")
ssm.put_parameter(Name="/shop/feature-flags", Value="checkout=v1", Type="String")
ssm.put_parameter(Name="/shop/feature-flags", Value="checkout=v2", Type="String", Overwrite=True)
ssm.label_parameter_version(Name="/shop/feature-flags", ParameterVersion=1, Labels=["stable"])
print("prod/db (Secrets Manager), /shop/feature-flags v1 (label stable) and v2 (SSM)")
PY

echo
echo "== aws-secrets-csi check -f $class"
"$bin" check -f "$class"

echo
echo "== aws-secrets-csi mount -f $class --target $target"
flags=()
[ "$(id -u)" = 0 ] || flags=(--no-tmpfs)
rm -rf "$target"
"$bin" mount -f "$class" --target "$target" "${flags[@]}"

echo
[ "$(id -u)" = 0 ] && grep " $target " /proc/self/mountinfo | sed 's/^/mount: /'
ls -la "$target"
for f in "$target"/*; do
  printf '%-22s %s  %s\n' "$(basename "$f")" "$(stat -L -c %a "$f")" "$(cat "$f")"
done

echo
echo "== rotation: aws-secrets-csi mount --watch --refresh-interval 1s, then the password changes in AWS"
"$bin" mount -f "$class" --target "$target" "${flags[@]}" --watch --refresh-interval 1s &
watch_pid=$!
sleep 1.5
before=$(readlink "$target/..data")
python3 - <<'PY'
import json
import boto3
boto3.client("secretsmanager").put_secret_value(SecretId="prod/db", SecretString=json.dumps({"username": "shop_app", "password": "rotated-N3wPa55"}))
print("put a new version of prod/db")
PY
for _ in $(seq 100); do
  [ "$(cat "$target/db-pass")" = rotated-N3wPa55 ] && break
  sleep 0.1
done
echo "db-pass is now: $(cat "$target/db-pass")"
echo "..data moved from $before to $(readlink "$target/..data") in one atomic rename"
kill "$watch_pid"; wait "$watch_pid" 2>/dev/null || true; watch_pid=
