#!/usr/bin/env bash
# Starts tansu, a Kafka-compatible broker, on loopback for local runs and
# tests; installs it first when missing (about 20 minutes the first time).
#
#   ops/kafka/tansu.sh [PORT] [STORAGE]
#
# PORT defaults to 9092. STORAGE defaults to memory://tansu/ (fast; its
# ListOffsets for the latest offset is wrong, so nothing here relies on it);
# use sqlite://FILE (relative to the working directory: tansu joins even a
# leading / to it) for a broker that survives a restart (about ten times
# slower). Runs in the foreground: stop it with Ctrl-C.
set -euo pipefail
port="${1:-9092}"
storage="${2:-memory://tansu/}"
tansu="${TANSU:-$(command -v tansu || echo "$HOME/.cargo/bin/tansu")}"
if [ ! -x "$tansu" ]; then
  echo "ops/kafka/tansu.sh: installing tansu (cargo install, about 20 minutes)" >&2
  cargo install tansu --locked --features dynostore,libsql
  tansu="$HOME/.cargo/bin/tansu"
fi
exec "$tansu" broker \
  --listener-url "tcp://127.0.0.1:$port" \
  --advertised-listener-url "tcp://127.0.0.1:$port" \
  --storage-engine "$storage"
