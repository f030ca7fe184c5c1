#!/usr/bin/env bash
# Runs every test of the workspace: unit, property, TestDriver, example,
# doc and integration tests (real RocksDB, real processes killed with
# SIGKILL, an S3-compatible server and a Kafka-compatible broker on
# loopback), then the operations checks: the alert rules under promtool,
# a real Prometheus scraping a running worker, and the Kubernetes manifests
# against the Kubernetes API schemas.
set -euo pipefail
cd "$(dirname "$0")/.."
ops/setup.sh --test
# `failpoints` compiles the crash points the crash-recovery tests use.
cargo test --workspace --features failpoints "$@"

echo "== ops: Prometheus alert rules"
ops/prometheus/check.sh
echo "== ops: a real Prometheus scrapes a worker"
WEIR_BIN="${CARGO_TARGET_DIR:-target}/debug/examples/cef_alerts" ops/prometheus/scrape.sh
echo "== ops: Kubernetes manifests"
ops/k8s/validate.sh
