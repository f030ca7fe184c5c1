#!/usr/bin/env bash
# End-to-end check of weir's metrics with a real Prometheus, all on loopback.
#
# Starts the cef_alerts example in file mode, reading CEF lines from stdin
# that a loop here writes slowly so the worker keeps running, with its admin
# server on a free loopback port; starts Prometheus (with alerts.yml loaded)
# scraping that port every second; waits until Prometheus's query API
# returns data for weir's lag and input metrics; prints it; stops both.
#
# Builds nothing: the binary is $WEIR_BIN (default:
# ${CARGO_TARGET_DIR:-target}/debug/examples/cef_alerts; build it with
# `cargo build --example cef_alerts`). Prometheus is `prometheus` on PATH
# (Debian: apt-get install prometheus; ops/prometheus/check.sh installs it).
# $WEIR_SCRAPE_TIMEOUT (seconds, default 60) bounds the wait for data.
set -euo pipefail
cd "$(dirname "$0")/../.."

bin=${WEIR_BIN:-${CARGO_TARGET_DIR:-target}/debug/examples/cef_alerts}
timeout_s=${WEIR_SCRAPE_TIMEOUT:-60}

fail() {
    echo "scrape.sh: $*" >&2
    exit 1
}

[[ -x $bin ]] || fail "no cef_alerts binary at $bin (cargo build --example cef_alerts, or set WEIR_BIN)"
command -v prometheus >/dev/null 2>&1 ||
    fail "prometheus is not on PATH (Debian: apt-get install prometheus)"
command -v curl >/dev/null 2>&1 || fail "curl is not on PATH"

tmp=$(mktemp -d -t weir-scrape.XXXXXX)
feeder_pid=
worker_pid=
prom_pid=

# Stops what this script started, by pid: the feeder first (the worker then
# sees the end of its input), then the worker (SIGTERM: a final checkpoint)
# and Prometheus.
cleanup() {
    local status=$?
    local pid
    for pid in $feeder_pid $worker_pid $prom_pid; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in $feeder_pid $worker_pid $prom_pid; do
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$tmp"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A loopback port nothing listens on now, below the kernel's ephemeral
# range (32768 and up by default), where the local ends of the worker's and
# the tests' own connections would otherwise take it between this check
# and the bind (seen once: Prometheus failed with "address already in
# use"). A small race with other programs remains; a taken port shows up
# as a start failure below.
free_port() {
    local port low
    low=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
    ((low > 20000)) || low=60000
    for _ in $(seq 100); do
        port=$((20000 + RANDOM % (low - 20000)))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return 0
        fi
    done
    fail "found no free loopback port"
}

# The worker's and Prometheus's logs, when something went wrong.
show_logs() {
    local log
    for log in "$tmp/worker.log" "$tmp/prometheus.log"; do
        [[ -s $log ]] || continue
        echo "---- last lines of $(basename "$log")" >&2
        tail -n 20 "$log" >&2
    done
}

admin_port=$(free_port)
prom_port=$(free_port)
while [[ $prom_port == "$admin_port" ]]; do prom_port=$(free_port); done

# CEF input: ten login events a tenth of a second, over 50 source addresses,
# stamped with the current time, and now and then a line that is not CEF (a
# dead letter). Runs until killed or until the worker stops reading.
feed() {
    local i=0 now
    while :; do
        now=${EPOCHREALTIME//[.,]/}
        now=${now:0:13}
        for _ in 0 1 2 3 4 5 6 7 8 9; do
            i=$((i + 1))
            printf 'CEF:0|Acme|Auth|1.0|100|login|5|src=10.0.0.%d rt=%d outcome=failure\n' \
                $((i % 50)) "$now"
        done
        if ((i % 200 == 0)); then
            echo "this line is not CEF"
        fi
        sleep 0.1
    done
}

mkfifo "$tmp/input"
# The redirection blocks until the feeder opens the pipe, so start both.
"$bin" --input - --output "$tmp/alerts.jsonl" --state-dir "$tmp/state" \
    --admin-addr "127.0.0.1:$admin_port" <"$tmp/input" >"$tmp/worker.log" 2>&1 &
worker_pid=$!
feed >"$tmp/input" 2>/dev/null &
feeder_pid=$!
echo "scrape.sh: worker $bin (pid $worker_pid), admin server 127.0.0.1:$admin_port"

# The worker's own /metrics first, so a worker problem is not reported as a
# Prometheus one.
deadline=$((SECONDS + timeout_s))
until curl -fsS -o /dev/null "http://127.0.0.1:$admin_port/metrics" 2>/dev/null; do
    if ! kill -0 "$worker_pid" 2>/dev/null; then
        show_logs
        fail "the worker exited before serving /metrics on 127.0.0.1:$admin_port"
    fi
    if ((SECONDS >= deadline)); then
        show_logs
        fail "no /metrics on 127.0.0.1:$admin_port after ${timeout_s}s"
    fi
    sleep 0.5
done
echo "scrape.sh: the worker serves /metrics"

cat >"$tmp/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - $PWD/ops/prometheus/alerts.yml
scrape_configs:
  - job_name: weir
    scrape_timeout: 1s
    static_configs:
      - targets: ["127.0.0.1:$admin_port"]
EOF
prometheus --config.file="$tmp/prometheus.yml" --storage.tsdb.path="$tmp/tsdb" \
    --web.listen-address="127.0.0.1:$prom_port" >"$tmp/prometheus.log" 2>&1 &
prom_pid=$!
echo "scrape.sh: prometheus (pid $prom_pid) on 127.0.0.1:$prom_port"

api="http://127.0.0.1:$prom_port/api/v1"

# Prints the JSON answer to an instant query (empty when Prometheus does
# not answer yet).
query() {
    curl -fsS --get "$api/query" --data-urlencode "query=$1" 2>/dev/null || true
}

# True when an answer holds at least one series.
has_data() {
    [[ $1 == *'"status":"success"'* && $1 == *'"result":[{'* ]]
}

queries=(
    'sum(weir_consumer_lag_committed_records)'
    'sum(weir_records_in_total)'
)
answers=()
for q in "${queries[@]}"; do
    while :; do
        answer=$(query "$q")
        if has_data "$answer"; then
            answers+=("$answer")
            break
        fi
        for pid in "$worker_pid" "$prom_pid"; do
            if ! kill -0 "$pid" 2>/dev/null; then
                show_logs
                fail "$([[ $pid == "$worker_pid" ]] && echo worker || echo prometheus) exited while waiting for $q"
            fi
        done
        if ((SECONDS >= deadline)); then
            echo "scrape.sh: last answer to $q: ${answer:-none}" >&2
            targets=$(curl -fsS "$api/targets" 2>/dev/null || true)
            echo "scrape.sh: scrape target: $({ grep -oE '"(scrapeUrl|health|lastError)":"[^"]*"' <<<"$targets" || echo none; } | tr '\n' ' ')" >&2
            show_logs
            fail "Prometheus has no data for $q after ${timeout_s}s"
        fi
        sleep 1
    done
done

for i in "${!queries[@]}"; do
    echo "scrape.sh: ${queries[i]} => ${answers[i]}"
done
rules=$(curl -fsS "$api/rules" 2>/dev/null || true)
loaded=$({ grep -o '"type":"alerting"' <<<"$rules" || true; } | wc -l)
echo "scrape.sh: prometheus loaded $loaded alerting rules from ops/prometheus/alerts.yml"
((loaded > 0)) || fail "prometheus loaded no alerting rules"
echo "scrape.sh: OK"
