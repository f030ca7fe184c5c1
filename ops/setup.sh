#!/usr/bin/env bash
# Installs what weir needs on a fresh Debian machine that has the Rust
# toolchain and Python. Idempotent: installs only what is missing.
#
#   ops/setup.sh          build needs: libclang (RocksDB's bindings), g++, make,
#                         OpenSSL, zlib and pkg-config (librdkafka's TLS, gzip)
#   ops/setup.sh --test   also the test servers the tests start on loopback:
#                         moto (S3-compatible, from PyPI), tansu
#                         (Kafka-compatible; about 20 minutes to build once)
#                         and stunnel4 (TLS in front of tansu)
set -euo pipefail

need=()
if ! ls /usr/lib/llvm-*/lib/libclang.so* >/dev/null 2>&1 && ! ldconfig -p 2>/dev/null | grep -q 'libclang\.so'; then
  need+=(libclang-dev)
fi
command -v g++ >/dev/null 2>&1 || need+=(g++)
command -v make >/dev/null 2>&1 || need+=(make)
# librdkafka's TLS and gzip: OpenSSL and zlib headers, found by pkg-config.
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
[ -e /usr/include/openssl/ssl.h ] || need+=(libssl-dev)
[ -e /usr/include/zlib.h ] || need+=(zlib1g-dev)

# Installs the Debian packages given, if any.
apt_install() {
  [ $# -gt 0 ] || return 0
  echo "ops/setup.sh: installing $*" >&2
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

apt_install ${need[@]+"${need[@]}"}

[ "${1:-}" = "--test" ] || exit 0

# stunnel4 puts TLS in front of the test broker (tests/kafka_tls.rs);
# openssl makes the test's certificates.
test_need=()
command -v stunnel4 >/dev/null 2>&1 || test_need+=(stunnel4)
command -v openssl >/dev/null 2>&1 || test_need+=(openssl)
apt_install ${test_need[@]+"${test_need[@]}"}

if ! python3 -c "import moto.server" >/dev/null 2>&1; then
  echo "ops/setup.sh: installing moto[server] (S3-compatible test server)" >&2
  python3 -m pip install -q "moto[server]" >/dev/null
fi

if ! command -v tansu >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/tansu" ]; then
  echo "ops/setup.sh: installing tansu (Kafka-compatible test broker; about 20 minutes)" >&2
  cargo install tansu --locked --features dynostore,libsql
fi
