#!/usr/bin/env bash
# Installs the dependencies, builds, and runs the local demo (see docs/development.md).
#
#   scripts/demo.sh [DEMO OPTIONS]      e.g. --rate 1048576, --no-server, --help
#
# The demo (spec/e2e/harness/demo.py, the e2e tests' own harness) starts a private
# containerd, docker-registry on 127.0.0.1:5000, a throttling nginx on 127.0.0.1:5001,
# pulltrace-server on 127.0.0.1:8080 (metrics :9090) watching a fake Kubernetes API server
# (HTTPS, 127.0.0.1) and pulltrace-agent, then pulls demo images through CRI in a loop, standing
# in for kubelet: a pod and kubelet's events for each pull, and now and then a pod whose image
# tag does not exist (a failed pull). It also runs four more nodes (own containerd, nginx and
# agent each; --nodes N) and rolls one image out across all of them every round, one node
# stalling for a while. --no-kube leaves Kubernetes out. Ctrl-C stops everything
# it started.
# Environment: PT_BUILD_DIR (default: build), PT_SKIP_DEPS=1, PT_SKIP_BUILD=1.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
build=${PT_BUILD_DIR:-build}

for a in "$@"; do
  if [[ $a == -h || $a == --help ]]; then
    PYTHONPATH="$root/spec/e2e" exec /usr/bin/python3 -m harness.demo --help
  fi
done
if [[ $(id -u) -ne 0 ]]; then
  echo "demo.sh: the demo runs a private containerd and needs root (try: sudo $0)" >&2
  exit 1
fi

[[ "${PT_SKIP_DEPS:-0}" == 1 ]] || scripts/install-deps.sh demo
if [[ "${PT_SKIP_BUILD:-0}" != 1 ]]; then
  # The demo is the UI: turn it on even if an older configure of this directory had it off.
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPT_BUILD_UI=ON
  cmake --build "$build" -j "$(nproc 2>/dev/null || echo 2)"
fi

export PYTHONPATH="$root/spec/e2e" PYTHONDONTWRITEBYTECODE=1
exec /usr/bin/python3 -m harness.demo --build-dir "$build" "$@"
