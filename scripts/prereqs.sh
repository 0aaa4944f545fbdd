# Checks what the demo and the test suite need on this machine, installs
# what Debian's packages can give (as root, with apt-get), and otherwise
# stops at once with one message that lists what is missing and how to get
# it. Sourced by scripts/peers.sh.
#
#   require_prerequisites demo|test
#
# PREREQS_NO_INSTALL=1 only reports (the test of this file uses it).

# The Rust toolchain Cargo.toml asks for (rust-version).
RUST_MIN=1.95
# Go for the peers built from Go modules (kube-apiserver v1.36, helm, ...).
GO_MIN=1.25

# version_at_least HAVE WANT: true when HAVE >= WANT (dotted numbers).
version_at_least() {
  [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]
}

require_prerequisites() {
  local purpose=$1 missing=() apt=() have
  # Rust: rustup's toolchains, not Debian's (too old for the AWS SDK).
  if have=$(rustc --version 2>/dev/null | awk '{print $2}') && [ -n "$have" ] && command -v cargo >/dev/null; then
    version_at_least "$have" "$RUST_MIN" ||
      missing+=("Rust >= $RUST_MIN (found $have): rustup update stable")
  else
    missing+=("Rust >= $RUST_MIN with cargo: install rustup, then: rustup toolchain install stable")
  fi
  command -v cc >/dev/null || apt+=(gcc libc6-dev)
  command -v python3 >/dev/null || apt+=(python3)
  # The scripts keep moto in their own virtual environment (a plain Debian
  # python3 refuses pip install outside one).
  if command -v python3 >/dev/null && ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    apt+=(python3-venv)
  fi
  command -v mountpoint >/dev/null || apt+=(util-linux)
  if [ "$purpose" = test ]; then
    if have=$(go env GOVERSION 2>/dev/null) && [ -n "$have" ]; then
      version_at_least "${have#go}" "$GO_MIN" ||
        missing+=("Go >= $GO_MIN (found ${have#go}): install a newer Go toolchain")
    else
      missing+=("Go >= $GO_MIN: install the Go toolchain (its go command on PATH)")
    fi
    command -v setpriv >/dev/null || apt+=(util-linux)
    command -v openssl >/dev/null || apt+=(openssl)
    command -v curl >/dev/null || apt+=(curl)
    # The real node of tests/node.rs.
    command -v containerd >/dev/null || apt+=(containerd)
    command -v runc >/dev/null || apt+=(runc)
    [ -s /etc/ssl/certs/ca-certificates.crt ] || apt+=(ca-certificates)
  fi
  if [ ${#apt[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && [ -z "${PREREQS_NO_INSTALL:-}" ]; then
      echo "installing Debian packages: ${apt[*]}" >&2
      if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt[@]}" >/dev/null; }; then
        missing+=("Debian packages ${apt[*]}: apt-get install ${apt[*]} (it failed here)")
      fi
    else
      missing+=("Debian packages ${apt[*]}: sudo apt-get install ${apt[*]}")
    fi
  fi
  if [ ${#missing[@]} -gt 0 ]; then
    {
      echo "cannot run the $purpose: missing prerequisites"
      printf '  - %s\n' "${missing[@]}"
    } >&2
    exit 1
  fi
}
