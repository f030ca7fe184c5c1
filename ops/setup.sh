#!/usr/bin/env bash
# Installs what weir needs on a fresh Debian machine that has the Rust
# toolchain and Python. Idempotent: installs only what is missing.
#
#   ops/setup.sh          build needs: libclang (RocksDB's bindings), g++, make
#   ops/setup.sh --test   also the test servers the tests start on loopback:
#                         moto (S3-compatible, from PyPI) and tansu
#                         (Kafka-compatible; about 20 minutes to build once)
set -euo pipefail

need=()
if ! ls /usr/lib/llvm-*/lib/libclang.so* >/dev/null 2>&1 && ! ldconfig -p 2>/dev/null | grep -q 'libclang\.so'; then
  need+=(libclang-dev)
fi
command -v g++ >/dev/null 2>&1 || need+=(g++)
command -v make >/dev/null 2>&1 || need+=(make)

if [ ${#need[@]} -gt 0 ]; then
  echo "ops/setup.sh: installing ${need[*]}" >&2
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

[ "${1:-}" = "--test" ] || exit 0

if ! python3 -c "import moto.server" >/dev/null 2>&1; then
  echo "ops/setup.sh: installing moto[server] (S3-compatible test server)" >&2
  python3 -m pip install -q "moto[server]" >/dev/null
fi

if ! command -v tansu >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/tansu" ]; then
  echo "ops/setup.sh: installing tansu (Kafka-compatible test broker; about 20 minutes)" >&2
  cargo install tansu --locked --features dynostore,libsql
fi
