#!/usr/bin/env bash
# Validates the Kubernetes manifests of ops/k8s (or of the directory given):
#
#   bash ops/k8s/validate.sh [DIR]
#
# Every manifest is checked strictly against the Kubernetes API schemas of
# the versions in K8S_VERSIONS (kubernetes-validate, from PyPI), the KEDA
# ScaledObject against schemas/keda-scaledobject-v1alpha1.json, and all of
# them for consistency with each other and with the worker (validate.py
# says what). Exits 0 when all is valid, 1 on an invalid manifest, 2 when
# the validator cannot be set up or run.
#
# Needs python3 only: it makes a virtual environment under
# ${WEIR_CACHE:-$HOME/.cache/weir}/venv-k8s on first use (installing
# Debian's python3-venv when it is missing and this runs as root) and
# reuses it afterwards, offline.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dir="${1:-$here}"
# Pinned so that a run today and a run next year check the same schemas.
KV_VERSION="1.37.0"
# The oldest Kubernetes the manifests support and the newest this
# validator knows.
K8S_VERSIONS=(1.32 1.37)
venv="${WEIR_CACHE:-${HOME:-/tmp}/.cache/weir}/venv-k8s"
py="$venv/bin/python"

say() { echo "validate.sh: $*" >&2; }

if [ ! -d "$dir" ]; then
  say "no such directory: $dir"
  exit 2
fi

venv_ready() {
  [ -x "$py" ] && "$py" -c "
import sys, kubernetes_validate, jsonschema, yaml
sys.exit(kubernetes_validate.__version__ != '$KV_VERSION')" >/dev/null 2>&1
}

make_venv() {
  command -v python3 >/dev/null 2>&1 || { say "python3 is required"; exit 2; }
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  if python3 -m venv "$venv" >/dev/null 2>&1 && [ -x "$py" ] && "$py" -m pip --version >/dev/null 2>&1; then
    return
  fi
  rm -rf "$venv"
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "python3 -m venv does not work; installing python3-venv"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    if python3 -m venv "$venv" && "$py" -m pip --version >/dev/null 2>&1; then
      return
    fi
    rm -rf "$venv"
  fi
  say "cannot create a Python virtual environment with 'python3 -m venv'."
  say "On Debian or Ubuntu install it as root: apt-get install -y python3-venv"
  exit 2
}

if ! venv_ready; then
  say "setting up kubernetes-validate $KV_VERSION in $venv"
  make_venv
  if ! "$py" -m pip install -q --disable-pip-version-check "kubernetes-validate==$KV_VERSION"; then
    rm -rf "$venv"
    say "pip could not install kubernetes-validate==$KV_VERSION"
    exit 2
  fi
  venv_ready || { say "kubernetes-validate $KV_VERSION did not install properly"; exit 2; }
fi

args=()
for v in "${K8S_VERSIONS[@]}"; do
  args+=(--k8s-version "$v")
done
echo "== kubernetes manifests: $dir (kubernetes-validate $KV_VERSION; Kubernetes ${K8S_VERSIONS[*]})"
rc=0
"$py" "$here/validate.py" "$dir" "${args[@]}" \
  --scaledobject-schema "$here/schemas/keda-scaledobject-v1alpha1.json" || rc=$?
exit "$rc"
