#!/usr/bin/env bash
# Runs every test of the workspace: unit, property, TestDriver, example,
# doc and integration tests (real RocksDB, real processes).
set -euo pipefail
cd "$(dirname "$0")/.."
ops/setup.sh
# `failpoints` compiles the crash points the crash-recovery tests use.
cargo test --workspace --features failpoints "$@"
