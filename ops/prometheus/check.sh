#!/usr/bin/env bash
# Validates the Prometheus files of this directory: the alerting rules, the
# example configuration, and the rules' unit tests (alerts_test.yml).
# Installs Prometheus (Debian's `prometheus` package, which includes
# promtool) when promtool is missing and this runs as root.
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! command -v promtool >/dev/null 2>&1; then
    if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
        echo "check.sh: promtool is missing; install Prometheus (Debian: apt-get install prometheus) or run this as root on Debian" >&2
        exit 1
    fi
    echo "check.sh: installing Prometheus (for promtool)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends prometheus ||
        { apt-get update && apt-get install -y --no-install-recommends prometheus; }
fi

promtool --version 2>&1 | sed -n 1p
promtool check rules ops/prometheus/alerts.yml
promtool check config ops/prometheus/prometheus.yml
promtool test rules ops/prometheus/alerts_test.yml
echo "check.sh: rules, configuration and rule tests OK"
