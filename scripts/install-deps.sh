#!/usr/bin/env bash
# Installs Pulltrace's dependencies from Debian bookworm packages (idempotent).
#
#   scripts/install-deps.sh [GROUP...]     GROUP: build test demo docs ui images fuzz all (default: all)
#
# Only missing packages are installed; when nothing is missing, apt is not touched at all
# (no `apt-get update`). Package services are not started on install (policy-rc.d). Needs
# root, or sudo.
set -euo pipefail

build=(build-essential cmake pkg-config libuv1-dev liblua5.4-dev lua5.4 lua-cjson-dev lua-cjson
       libgrpc-dev protobuf-c-compiler libprotobuf-c-dev node-llhttp libcurl4-openssl-dev libssl-dev
       libjansson-dev libsimdjson-dev liburing-dev libyaml-dev libsqlite3-dev)
components=(containerd runc docker-registry skopeo umoci nginx-light openssl)
docs=(mkdocs mkdocs-material python3-pymdownx)
images=(buildah mmdebstrap skopeo uidmap)  # scripts/images.sh: the Dockerfile without a Docker engine
test=(libcmocka-dev lua-busted shellcheck python3-pytest python3-requests python3-jsonschema python3-yaml tmux clang
      libclang-rt-14-dev prometheus prometheus-alertmanager chromium "${components[@]}" "${docs[@]}" "${images[@]}")
demo=(python3-requests wrk libnginx-mod-nchan "${components[@]}")  # wrk, nchan (the fan-out reference): bench/server
fuzz=(clang libclang-rt-14-dev libcmocka-dev)  # scripts/fuzz.sh

usage() { sed -n '2,7s/^# \{0,1\}//p' "$0"; }

want=()
want_ui=0
[[ $# -eq 0 ]] && set -- all
for group in "$@"; do
  case "$group" in
    build) want+=("${build[@]}") ;;
    test) want+=("${build[@]}" "${test[@]}"); want_ui=1 ;;
    demo) want+=("${build[@]}" "${demo[@]}"); want_ui=1 ;;
    docs) want+=("${docs[@]}") ;;
    fuzz) want+=("${build[@]}" "${fuzz[@]}") ;;
    ui) want_ui=1 ;;
    images) want+=("${images[@]}") ;;
    all) want+=("${build[@]}" "${test[@]}" "${demo[@]}" "${docs[@]}" "${images[@]}"); want_ui=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install-deps: unknown group '$group'" >&2; usage >&2; exit 2 ;;
  esac
done

installed() {
  [[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" == installed ]]
}

missing=()
declare -A seen=()
for pkg in "${want[@]}"; do
  [[ -n "${seen[$pkg]:-}" ]] && continue
  seen[$pkg]=1
  installed "$pkg" || missing+=("$pkg")
done
# The UI build needs Node.js and npm; a machine that already has them (from any source) is fine.
if [[ $want_ui == 1 ]]; then
  command -v node >/dev/null 2>&1 || missing+=(nodejs)
  command -v npm >/dev/null 2>&1 || missing+=(npm)
fi

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-deps: all dependencies present ($*)"
  exit 0
fi

sudo=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null 2>&1 || { echo "install-deps: run as root (missing: ${missing[*]})" >&2; exit 1; }
  sudo=(sudo)
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Pulltrace starts its own private containerd, registry and nginx on 127.0.0.1. Keep the
# packages' system services from starting on install (docker-registry would take port 5000,
# nginx port 80), unless the machine already has a policy of its own.
policy=/usr/sbin/policy-rc.d
if [[ ! -e $policy ]]; then
  "${sudo[@]}" sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod 755 $policy"
  trap '"${sudo[@]}" rm -f "$policy"' EXIT
fi
"${sudo[@]}" apt-get update -q
"${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
