#!/usr/bin/env bash
# Fuzzes the parts that take hostile input (class planning, path rules, AWS
# change events and the change record,
# rendering) with cargo-fuzz / libFuzzer, each target for FUZZ_SECONDS
# (default 20; scripts/test.sh runs this short round, a long run is e.g.
# FUZZ_SECONDS=600). The stable toolchain is used with RUSTC_BOOTSTRAP=1,
# since cargo-fuzz passes -Z sanitizer flags. A crash fails the script and
# leaves its input in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${FUZZ_SECONDS:-20}
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked --version 0.13.2
# Sanitizer builds of the whole dependency tree are slow: keep them outside
# the repository, across runs.
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/aws-secrets-csi/fuzz-target}
export RUSTC_BOOTSTRAP=1
cargo fuzz build --fuzz-dir . >&2
for target in plan paths render fanout template files changes; do
  mkdir -p "corpus/$target"
  echo "fuzzing $target for ${seconds}s" >&2
  cargo fuzz run --fuzz-dir . "$target" "corpus/$target" -- -max_total_time="$seconds" -rss_limit_mb=2048 2>&1 \
    | grep -E '^(#[0-9]+: DONE|Done [0-9]+ runs|==[0-9]+==ERROR|SUMMARY|thread .* panicked)' || true
  if compgen -G "artifacts/$target/*-*" >/dev/null; then
    echo "fuzz target $target found a failure (crash, leak, timeout or OOM): fuzz/artifacts/$target/" >&2
    exit 1
  fi
done
