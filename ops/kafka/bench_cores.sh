#!/usr/bin/env bash
# Runs bench_kafka (mock cluster) confined to 1, 2, 4, ... cores with
# taskset, to show how the weir job and the bare consumer scale with the
# cores they get. The job's runtime sizes itself from the cores it may use.
#
#   cargo build --release --example bench_kafka
#   ops/kafka/bench_cores.sh [CORES ...]          # default: 1 2 4 ... up to nproc
#
# BENCH_KAFKA names the binary (default: the release build's), and
# BENCH_ARGS the benchmark's arguments (default: 1,000,000 events, lz4 and
# zstd, one round, no hand-over). Every line the benchmark prints comes out
# prefixed with `cores=N`.
set -euo pipefail
cd "$(dirname "$0")/../.."

bin="${BENCH_KAFKA:-${CARGO_TARGET_DIR:-target}/release/examples/bench_kafka}"
[ -x "$bin" ] || { echo "bench_cores.sh: no benchmark binary at $bin (build it first, or set BENCH_KAFKA)" >&2; exit 2; }
read -r -a bench_args <<<"${BENCH_ARGS:---events 1000000 --rounds 1 --join-keys 0}"

cores=("$@")
if [ ${#cores[@]} -eq 0 ]; then
  n=1
  while [ "$n" -le "$(nproc)" ]; do cores+=("$n"); n=$((n * 2)); done
fi

for c in "${cores[@]}"; do
  [[ "$c" =~ ^[1-9][0-9]*$ ]] || { echo "bench_cores.sh: not a core count: $c" >&2; exit 2; }
  [ "$c" -le "$(nproc)" ] || { echo "bench_cores.sh: $c cores asked, this machine has $(nproc)" >&2; exit 2; }
  taskset -c "0-$((c - 1))" "$bin" "${bench_args[@]}" 2>&1 | sed "s/^/cores=$c /"
done
