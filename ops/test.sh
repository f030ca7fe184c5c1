#!/usr/bin/env bash
# Runs every test of the workspace: unit, property, TestDriver, example,
# doc and integration tests (real RocksDB, real processes killed with
# SIGKILL, an S3-compatible server and a Kafka-compatible broker on loopback).
set -euo pipefail
cd "$(dirname "$0")/.."
ops/setup.sh --test
# `failpoints` compiles the crash points the crash-recovery tests use.
cargo test --workspace --features failpoints "$@"
